//! Whether anything anywhere on the host uses a disk: the last proof before a mount.
//!
//! The helper's own `/proc/self/mountinfo` shows only its own mount namespace. On a Proxmox
//! node a disk can be in use where that view does not reach: mounted inside a container's
//! mount namespace, passed through to a VM whose QEMU holds the device open, or claimed by a
//! kernel layer. So, for the device, its whole disk and every partition of that disk, the
//! helper looks from three places, each naming what holds the disk when it finds it:
//!
//! 1. **Every mount namespace**: `<proc>/<pid>/mountinfo` of one process per distinct
//!    `ns/mnt` inode (and of every process whose namespace link cannot be read). Finds
//!    mounts by device number, and btrfs mounts (which show an anonymous device number) by
//!    source name. Sees: containers, `unshare -m`, systemd units with private mounts.
//!    Misses: a namespace with no process left in it (kept alive only by a bind-mounted
//!    `ns/mnt` file), which step 3 still catches.
//! 2. **Every open file**: `<proc>/<pid>/fd/*`, each followed to its inode; a block device
//!    with one of the disk's device numbers is in use, whatever node name it was opened by.
//!    Sees: QEMU holding a passed-through disk, `dd`, a backup tool, a shell with the device
//!    on a redirect. Needs ptrace-read access to the process. The helper's unit does **not**
//!    grant CAP_SYS_PTRACE: it would raise the unit's exposure score from 5.3 to 5.6, past
//!    the bar. Without it, root reads the descriptors of root processes whose capabilities
//!    are a subset of its own, but not those of QEMU (root with every capability) or of
//!    unprivileged containers (uids 100000 and up); those are counted as unreadable.
//!    Misses: a device mapped into memory with its fd closed, and kernel users (swap, md,
//!    dm, loop backing files), which hold no fd.
//! 3. **Every file lock** (`<proc>/locks`, readable by all): QEMU locks each disk image it
//!    opens, passed-through block devices included, with open-file-description locks
//!    (`file.locking=auto`); a lock on the inode of one of the disk's device nodes in `/dev`
//!    means a VM (or another locking program) uses it. This is what finds a running VM's
//!    disk without CAP_SYS_PTRACE. Misses: QEMU started with `locking=off`, and a device
//!    opened through a node outside `/dev`.
//! 4. **An exclusive open** (`O_EXCL` on the block device): the kernel answers `EBUSY` when a
//!    filesystem (in any namespace), swap, md, dm, bcache or another exclusive opener holds
//!    it. Sees: every mount, whatever namespace. Misses: plain opens (QEMU, `dd`), which is
//!    why steps 2 and 3 exist.

use std::collections::HashSet;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use felhom_protocol::HelperError;

use super::mountinfo::{MountEntry, parse_devno, parse_mountinfo};

/// Largest `mountinfo` read from one process (a namespace with thousands of mounts fits).
const MAX_MOUNTINFO: u64 = 8 * 1024 * 1024;

/// Most processes looked at in one scan.
const MAX_PIDS: usize = 1 << 20;

/// Most descriptors looked at in one process.
const MAX_FDS: usize = 1 << 20;

/// One block device the scan looks for: the device to mount, its disk, or a sibling
/// partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The device number (`st_rdev`).
    pub rdev: u64,
    /// The kernel's name of the device (`sdb1`).
    pub kname: String,
    /// A node of this device to open exclusively, if one was found.
    pub node: Option<PathBuf>,
}

impl Target {
    fn devno(&self) -> String {
        format!("{}:{}", libc::major(self.rdev), libc::minor(self.rdev))
    }

    fn label(&self) -> String {
        format!("{} ({})", self.kname, self.devno())
    }
}

/// What one scan saw, for the log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScanStats {
    /// Processes looked at.
    pub processes: usize,
    /// Distinct mount namespaces whose tables were read (besides the helper's own).
    pub namespaces: usize,
    /// Descriptors followed.
    pub fds: usize,
    /// Processes whose descriptors could not be read (no ptrace access).
    pub unreadable: usize,
}

fn refuse(reason: String) -> HelperError {
    HelperError::Rejected {
        field: "device".into(),
        reason,
    }
}

/// `comm` of a process as printable ASCII (at most 16 bytes; anything else becomes `?`).
fn comm_of(proc_root: &Path, pid: &str) -> String {
    let mut buf = Vec::new();
    let read = std::fs::File::open(proc_root.join(pid).join("comm"))
        .and_then(|f| f.take(64).read_to_end(&mut buf));
    if read.is_err() {
        return "?".into();
    }
    buf.iter()
        .take(16)
        .take_while(|b| **b != b'\n')
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '?'
            }
        })
        .collect()
}

fn read_bounded(path: &Path, max: u64) -> std::io::Result<String> {
    let mut s = String::new();
    std::fs::File::open(path)?
        .take(max)
        .read_to_string(&mut s)?;
    Ok(s)
}

/// The entry of `table` that shows one of `targets` mounted, if any.
fn mounted<'t>(
    table: &'t [MountEntry],
    targets: &'t [Target],
) -> Option<(&'t MountEntry, &'t Target)> {
    table.iter().find_map(|e| {
        let by_devno = parse_devno(&e.devno);
        targets
            .iter()
            .find(|t| by_devno == Some(t.rdev) || e.source == format!("/dev/{}", t.kname))
            .map(|t| (e, t))
    })
}

/// Refuses when `table` (the helper's own mount namespace) shows one of `targets` mounted.
pub fn refuse_if_mounted_here(
    device: &str,
    table: &[MountEntry],
    targets: &[Target],
) -> Result<(), HelperError> {
    match mounted(table, targets) {
        Some((e, t)) => Err(refuse(format!(
            "{device}: {} is already mounted at {}; a disk in use elsewhere is not mounted again",
            t.label(),
            e.mount_point
        ))),
        None => Ok(()),
    }
}

/// [`refuse_if_used_by_any_process`], refusing only when the use lasts: a prober (`blkid`,
/// udev) opens every block device for moments, a VM or a container holds it. A finding is
/// looked at again `EXCL_RETRIES` (3) times, `EXCL_RETRY_PAUSE` (100 ms) apart.
pub fn refuse_if_used_by_any_process_for_long(
    proc_root: &Path,
    device: &str,
    targets: &[Target],
) -> Result<ScanStats, HelperError> {
    let mut found = refuse_if_used_by_any_process(proc_root, device, targets);
    for _ in 0..EXCL_RETRIES {
        if found.is_ok() {
            break;
        }
        std::thread::sleep(EXCL_RETRY_PAUSE);
        found = refuse_if_used_by_any_process(proc_root, device, targets);
    }
    found
}

/// Steps 1 and 2 of the module documentation over `<proc_root>`: refuses, naming the
/// process, when any mount namespace other than the helper's own has one of `targets`
/// mounted, or any process (other than the helper) holds one open.
pub fn refuse_if_used_by_any_process(
    proc_root: &Path,
    device: &str,
    targets: &[Target],
) -> Result<ScanStats, HelperError> {
    let mut stats = ScanStats::default();
    let own_pid = std::process::id().to_string();
    let own_ns = std::fs::read_link(proc_root.join("self/ns/mnt")).ok();
    let mut seen_ns: HashSet<PathBuf> = own_ns.into_iter().collect();
    let dir = std::fs::read_dir(proc_root).map_err(|e| {
        refuse(format!(
            "{device}: the process table {} cannot be read ({e}), so the helper cannot tell \
             whether the disk is in use",
            proc_root.display()
        ))
    })?;
    for entry in dir.flatten().take(MAX_PIDS) {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|p| p.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        if pid == own_pid {
            continue;
        }
        stats.processes += 1;
        let base = proc_root.join(pid);
        // Step 1: its mount namespace, once per namespace.
        let fresh = match std::fs::read_link(base.join("ns/mnt")) {
            Ok(ns) => seen_ns.insert(ns),
            // Exited, or no ptrace access to the link: read its table anyway.
            Err(_) => true,
        };
        if fresh && let Ok(text) = read_bounded(&base.join("mountinfo"), MAX_MOUNTINFO) {
            stats.namespaces += 1;
            if let Some((e, t)) = mounted(&parse_mountinfo(&text), targets) {
                return Err(refuse(format!(
                    "{device}: {} is mounted in the mount namespace of pid {pid} ({}) at {}; \
                     a disk in use anywhere on the host is not mounted again",
                    t.label(),
                    comm_of(proc_root, pid),
                    e.mount_point
                )));
            }
        }
        // Step 2: its open files.
        let fds = match std::fs::read_dir(base.join("fd")) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(_) => {
                stats.unreadable += 1;
                continue;
            }
        };
        let mut denied = false;
        for fd in fds.flatten().take(MAX_FDS) {
            // Follows the magic link to the open inode; a process that exits meanwhile
            // gives ENOENT.
            let md = match std::fs::metadata(fd.path()) {
                Ok(md) => md,
                Err(e) => {
                    denied |= e.kind() == std::io::ErrorKind::PermissionDenied;
                    continue;
                }
            };
            stats.fds += 1;
            if !md.file_type().is_block_device() {
                continue;
            }
            if let Some(t) = targets.iter().find(|t| t.rdev == md.rdev()) {
                return Err(refuse(format!(
                    "{device}: {} is open by pid {pid} ({}); a disk in use anywhere on the \
                     host is not mounted again",
                    t.label(),
                    comm_of(proc_root, pid)
                )));
            }
        }
        if denied {
            stats.unreadable += 1;
        }
    }
    Ok(stats)
}

/// Most bytes of `<proc>/locks` read.
const MAX_LOCKS: u64 = 16 * 1024 * 1024;

/// The `(st_dev, st_ino)` of the device nodes in `/dev` of the targets (their own node and
/// `/dev/<kname>`), as `/proc/locks` names a locked file.
fn node_inodes(targets: &[Target]) -> Vec<(u64, u64, &Target)> {
    let mut out = Vec::new();
    for t in targets {
        let own = Path::new("/dev").join(&t.kname);
        for node in t.node.iter().map(PathBuf::as_path).chain([own.as_path()]) {
            if let Ok(md) = std::fs::metadata(node)
                && md.file_type().is_block_device()
                && md.rdev() == t.rdev
                && !out.iter().any(|(d, i, _)| (*d, *i) == (md.dev(), md.ino()))
            {
                out.push((md.dev(), md.ino(), t));
            }
        }
    }
    out
}

/// The `(pid, device, inode)` of one `/proc/locks` line: `N: KIND ADVISORY MODE PID
/// MAJ:MIN:INODE START END` (major and minor in hex; pid -1 for open-file-description
/// locks, whose owner the kernel does not name), with `->` before KIND for a waiting lock.
pub fn parse_lock_line(line: &str) -> Option<(i64, u64, u64)> {
    let fields: Vec<&str> = line.split_whitespace().filter(|f| *f != "->").collect();
    let pid: i64 = fields.get(4)?.parse().ok()?;
    let mut id = fields.get(5)?.split(':');
    let major = u32::from_str_radix(id.next()?, 16).ok()?;
    let minor = u32::from_str_radix(id.next()?, 16).ok()?;
    let ino: u64 = id.next()?.parse().ok()?;
    Some((pid, libc::makedev(major, minor), ino))
}

/// Step 3 of the module documentation: refuses when a file lock is held on a device node
/// of one of `targets`.
pub fn refuse_if_locked(
    proc_root: &Path,
    device: &str,
    targets: &[Target],
) -> Result<(), HelperError> {
    let inodes = node_inodes(targets);
    if inodes.is_empty() {
        return Ok(());
    }
    let Ok(text) = read_bounded(&proc_root.join("locks"), MAX_LOCKS) else {
        return Ok(());
    };
    for (pid, dev, ino) in text.lines().filter_map(parse_lock_line) {
        let Some((_, _, t)) = inodes.iter().find(|(d, i, _)| (*d, *i) == (dev, ino)) else {
            continue;
        };
        let by = if pid > 0 {
            format!("pid {pid} ({})", comm_of(proc_root, &pid.to_string()))
        } else {
            "an open-file-description lock, as QEMU takes on the disks of a running VM".into()
        };
        return Err(refuse(format!(
            "{device}: {} is locked by {by}; a disk in use anywhere on the host is not \
             mounted again",
            t.label()
        )));
    }
    Ok(())
}

/// Opens `node` read-only and exclusively (`O_EXCL`): the kernel refuses with `EBUSY` while
/// anything holds the device exclusively (a mount in any namespace, swap, md, dm, bcache).
pub fn open_exclusive(node: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_EXCL | libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOFOLLOW)
        .open(node)
}

/// How many times an exclusive open is tried again after `EBUSY`.
const EXCL_RETRIES: usize = 3;

/// The pause between those tries.
const EXCL_RETRY_PAUSE: std::time::Duration = std::time::Duration::from_millis(100);

/// Step 4 of the module documentation for every target with a node. A helper that is not
/// root (development mode) cannot open block devices at all; it skips this step (and says
/// so in the log), as root a failure to open is an error.
pub fn refuse_if_claimed(device: &str, targets: &[Target]) -> Result<(), HelperError> {
    for t in targets {
        let Some(node) = &t.node else { continue };
        // A mount holds its claim; a prober's exclusive open lasts moments: EBUSY counts
        // only when it persists over a few tries.
        let mut opened = open_exclusive(node);
        for _ in 0..EXCL_RETRIES {
            match &opened {
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                    std::thread::sleep(EXCL_RETRY_PAUSE);
                    opened = open_exclusive(node);
                }
                _ => break,
            }
        }
        match opened {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                return Err(refuse(format!(
                    "{device}: {} ({}) is claimed exclusively (the kernel answers EBUSY to an \
                     exclusive open): it is mounted in some mount namespace, or held by swap, \
                     md RAID, device-mapper, bcache or another exclusive user",
                    node.display(),
                    t.label()
                )));
            }
            Err(e) if !nix::unistd::geteuid().is_root() => {
                tracing::debug!(node = %node.display(), error = %e,
                    "exclusive-open check skipped: the helper is not root (development mode)");
            }
            Err(e) => {
                return Err(refuse(format!(
                    "{device}: {} cannot be opened to check that nothing holds it ({e})",
                    node.display()
                )));
            }
        }
    }
    Ok(())
}

/// `BLKGETDISKSEQ` (`_IOR(0x12, 128, __u64)`, Linux 5.15): the disk's sequence number, which
/// the kernel raises whenever a new medium appears under a device number (a USB disk plugged
/// in again, a loop device given another backing file).
const BLKGETDISKSEQ: libc::c_ulong = 0x8008_1280;

/// The disk sequence number of the device open as `file`; `None` on kernels before 5.15.
pub fn diskseq(file: &std::fs::File) -> Option<u64> {
    use std::os::fd::AsRawFd;
    let mut seq: u64 = 0;
    // SAFETY: BLKGETDISKSEQ writes one u64 through the pointer, which points at `seq`, a live
    // u64 of this frame; the descriptor is owned by `file` and open for the whole call.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), BLKGETDISKSEQ, &mut seq as *mut u64) };
    (rc == 0).then_some(seq)
}

/// The disk sequence number of the block device `node` (opened read-only, not exclusively),
/// with its device number; `None` when the node cannot be opened or the kernel has none.
pub fn diskseq_of(node: &Path) -> Option<(u64, Option<u64>)> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(node)
        .ok()?;
    let md = f.metadata().ok()?;
    md.file_type()
        .is_block_device()
        .then(|| (md.rdev(), diskseq(&f)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(rdev: u64, kname: &str) -> Target {
        Target {
            rdev,
            kname: kname.into(),
            node: None,
        }
    }

    #[test]
    fn lock_lines_are_parsed() {
        assert_eq!(
            parse_lock_line("4: OFDLCK ADVISORY  READ -1 00:06:93 100 100"),
            Some((-1, libc::makedev(0, 6), 93))
        );
        assert_eq!(
            parse_lock_line("2: -> POSIX  ADVISORY  WRITE 812 fe:01:42 0 EOF"),
            Some((812, libc::makedev(0xfe, 1), 42))
        );
        for bad in [
            "",
            "1: FLOCK",
            "1: FLOCK ADVISORY WRITE x fe:00:1 0 EOF",
            "1: A B C 1 zz:0:1",
        ] {
            assert_eq!(parse_lock_line(bad), None, "{bad}");
        }
    }

    #[test]
    fn mounts_are_found_by_devno_or_by_btrfs_source() {
        let table = parse_mountinfo(
            "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n\
             40 22 0:55 / /srv/b rw - btrfs /dev/sdc1 rw\n",
        );
        let sdb1 = target(libc::makedev(8, 17), "sdb1");
        assert!(mounted(&table, std::slice::from_ref(&sdb1)).is_none());
        let sda1 = target(libc::makedev(8, 1), "sda1");
        let e = refuse_if_mounted_here("/dev/sda1", &table, &[sdb1.clone(), sda1])
            .unwrap_err()
            .to_string();
        assert!(e.contains("sda1 (8:1) is already mounted at /"), "{e}");
        let sdc1 = target(libc::makedev(8, 33), "sdc1");
        assert_eq!(
            mounted(&table, &[sdb1, sdc1]).map(|(e, _)| e.mount_point.as_str()),
            Some("/srv/b")
        );
    }

    #[test]
    fn a_fake_proc_is_scanned_for_namespaces_and_open_files() {
        let dir = tempfile::tempdir().unwrap();
        let proc_root = dir.path();
        // A process in another namespace with the disk mounted.
        let p = proc_root.join("4321");
        std::fs::create_dir_all(p.join("fd")).unwrap();
        std::fs::write(p.join("comm"), "lxc-start\x1b[31m\n").unwrap();
        std::fs::write(
            p.join("mountinfo"),
            "1 0 8:17 / /var/lib/lxc/101/rootfs/mnt rw - ext4 /dev/sdb1 rw\n",
        )
        .unwrap();
        let sdb1 = target(libc::makedev(8, 17), "sdb1");
        let e = refuse_if_used_by_any_process(proc_root, "/dev/sdb1", std::slice::from_ref(&sdb1))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("mounted in the mount namespace of pid 4321 (lxc-start?[31m)"),
            "{e}"
        );
        // Not mounted, but open: any block device node of this machine stands in for the
        // disk (the scan follows the link and compares device numbers, not names).
        std::fs::write(p.join("mountinfo"), "").unwrap();
        std::os::unix::fs::symlink("/dev/null", p.join("fd/1")).unwrap();
        let stats =
            refuse_if_used_by_any_process(proc_root, "/dev/sdb1", std::slice::from_ref(&sdb1))
                .unwrap();
        assert_eq!((stats.processes, stats.namespaces, stats.fds), (1, 1, 1));
        let block = std::fs::read_dir("/dev")
            .unwrap()
            .flatten()
            .find(|e| e.file_type().is_ok_and(|t| t.is_block_device()));
        let Some(block) = block else {
            eprintln!("skipping the open-file half: no block device node in /dev");
            return;
        };
        let rdev = std::fs::metadata(block.path()).unwrap().rdev();
        std::os::unix::fs::symlink(block.path(), p.join("fd/7")).unwrap();
        let e = refuse_if_used_by_any_process(proc_root, "/dev/sdb1", &[sdb1, target(rdev, "x")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("is open by pid 4321 (lxc-start?[31m)"), "{e}");
        // /dev/null has a device number too, but it is a character device: never a match.
        let null = std::fs::metadata("/dev/null").unwrap().rdev();
        std::fs::remove_file(p.join("fd/7")).unwrap();
        assert!(
            refuse_if_used_by_any_process(proc_root, "/dev/x", &[target(null, "null")]).is_ok()
        );
    }

    const LOSETUP: &str = "/usr/sbin/losetup";

    /// A loop device of the test's own, for the exclusive-open test: a temporary backing file
    /// attached with `losetup --find --show`, whose attach fails for all but one of several
    /// processes taking the same free device (losetup then takes the next), so test runs side
    /// by side (two worktrees, a mutation run) never share one; once attached, it is no idle
    /// loop node that felhom-tests' harness would give a fake filesystem either. Detached
    /// when dropped, also when the test fails.
    struct OwnLoop {
        node: PathBuf,
        /// Removed after the device is detached (fields drop after `drop`).
        _backing: tempfile::NamedTempFile,
    }

    impl OwnLoop {
        /// Attaches one; `Err(why)` when this machine cannot (not root, no loop devices, no
        /// losetup, or losetup fails).
        fn attach() -> Result<OwnLoop, String> {
            if !nix::unistd::geteuid().is_root() {
                return Err("not running as root".into());
            }
            if !Path::new("/dev/loop-control").exists() {
                return Err("/dev/loop-control is absent (no loop devices here)".into());
            }
            if !Path::new(LOSETUP).exists() {
                return Err(format!("{LOSETUP} is not installed"));
            }
            let backing = tempfile::NamedTempFile::new()
                .map_err(|e| format!("cannot create a backing file: {e}"))?;
            backing
                .as_file()
                .set_len(1 << 20)
                .map_err(|e| format!("cannot size the backing file: {e}"))?;
            let out = std::process::Command::new(LOSETUP)
                .args(["--find", "--show"])
                .arg(backing.path())
                .output()
                .map_err(|e| format!("cannot run {LOSETUP}: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "losetup --find --show failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
            let node = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            Ok(OwnLoop {
                node,
                _backing: backing,
            })
        }
    }

    impl Drop for OwnLoop {
        fn drop(&mut self) {
            // A claim still open (a failed test's holder thread) does not stop this: the
            // kernel then detaches the device when it is last closed.
            match std::process::Command::new(LOSETUP)
                .arg("-d")
                .arg(&self.node)
                .status()
            {
                Ok(s) if s.success() => {}
                other => eprintln!("cannot detach {}: {other:?}", self.node.display()),
            }
        }
    }

    /// Holds `node` exclusively for `hold` in a thread; returns once the claim is taken.
    fn claim_for(node: &Path, hold: std::time::Duration) -> std::thread::JoinHandle<()> {
        let (tx, rx) = std::sync::mpsc::channel();
        let node = node.to_path_buf();
        let t = std::thread::spawn(move || {
            let f = open_exclusive(&node).unwrap();
            tx.send(()).unwrap();
            std::thread::sleep(hold);
            drop(f);
        });
        rx.recv().unwrap();
        t
    }

    #[test]
    fn a_passing_exclusive_claim_is_waited_out_and_a_lasting_one_refuses() {
        let lo = match OwnLoop::attach() {
            Ok(lo) => lo,
            Err(why) => {
                eprintln!("skipping the exclusive-open test: {why}");
                return;
            }
        };
        let node = lo.node.clone();
        let rdev = std::fs::metadata(&node).unwrap().rdev();
        let t = Target {
            rdev,
            kname: node.file_name().unwrap().to_string_lossy().into_owned(),
            node: Some(node.clone()),
        };
        // Nothing holds it yet: not refused.
        refuse_if_claimed("/dev/x", std::slice::from_ref(&t)).unwrap();
        // A prober's claim for 150 ms: the retries outlast it.
        let holder = claim_for(&node, std::time::Duration::from_millis(150));
        refuse_if_claimed("/dev/x", std::slice::from_ref(&t)).unwrap();
        holder.join().unwrap();
        // A claim that stays (a mount's): refused, naming the node.
        let holder = claim_for(&node, std::time::Duration::from_secs(2));
        let e = refuse_if_claimed("/dev/x", std::slice::from_ref(&t))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("is claimed exclusively") && e.contains(&node.display().to_string()),
            "{e}"
        );
        holder.join().unwrap();
    }

    #[test]
    fn a_passing_open_is_waited_out_and_a_lasting_one_refuses() {
        let Some(block) = std::fs::read_dir("/dev")
            .unwrap()
            .flatten()
            .find(|e| e.file_type().is_ok_and(|t| t.is_block_device()))
        else {
            eprintln!("skipping the passing-open test: no block device node in /dev");
            return;
        };
        let rdev = std::fs::metadata(block.path()).unwrap().rdev();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("777");
        std::fs::create_dir_all(p.join("fd")).unwrap();
        std::fs::write(p.join("comm"), "blkid\n").unwrap();
        let fd = p.join("fd/3");
        std::os::unix::fs::symlink(block.path(), &fd).unwrap();
        let t = [target(rdev, "sdz1")];
        // A prober's open, gone after 150 ms: waited out.
        let gone = fd.clone();
        let prober = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(150));
            std::fs::remove_file(gone).unwrap();
        });
        refuse_if_used_by_any_process_for_long(dir.path(), "/dev/sdz1", &t).unwrap();
        prober.join().unwrap();
        // One that stays: refused.
        std::os::unix::fs::symlink(block.path(), &fd).unwrap();
        let e = refuse_if_used_by_any_process_for_long(dir.path(), "/dev/sdz1", &t)
            .unwrap_err()
            .to_string();
        assert!(e.contains("is open by pid 777 (blkid)"), "{e}");
    }
}
