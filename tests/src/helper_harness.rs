//! Starts the REAL `felhom-helper` binary on a temporary socket, with a temporary config that
//! points at the fake tools of `tests/fake-tools/` and at fake sysfs trees.
//!
//! ```text
//! <tmp>/                 0700, owned by the test user
//!   helper.json          the config (0600)
//!   helper.sock          the socket (systemd-socket-activate or --listen makes it)
//!   helper.log           the helper's stderr (its log and audit records)
//!   tools/               copies of the fake tools (0755)
//!   state/               what the fake tools record and read (see tests/fake-tools/README.md)
//!   sys/block/           fake /sys/block
//!   sys/class/hwmon/     fake /sys/class/hwmon
//!   sys/dev/block/       fake /sys/dev/block: real device numbers of this machine's block
//!                        device nodes, linked to fake USB (or other) disks under sys/devices/
//!   dev-by-id/           fake /dev/disk/by-id
//!   mnt/                 mount_root
//!   units/               unit_dir (systemd backend)
//! ```
//!
//! [`HelperHarness::start`] runs `systemd-socket-activate -l <sock> felhom-helper --config
//! <cfg>` (what production looks like); [`HelperHarness::start_dev`] runs the helper with
//! `--listen <sock>`. Dropping the harness kills the helper and removes the directory.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use felhom_protocol::HelperClient;

/// A valid golden-image request for `vmid` (Debian 12 template on `local-lvm`, 8 GiB, 1 GiB
/// of memory, 2 cores, `vmbr0`), as the helper tests send it.
///
/// # Panics
/// When `vmid` is outside Proxmox's range: a test that asks for one has a bug.
#[allow(clippy::expect_used)] // test support: the documented panic is a failed test
pub fn golden_request(vmid: u32) -> felhom_protocol::GoldenImageRequest {
    use felhom_protocol::*;
    let ok = "the fixed test values are valid";
    GoldenImageRequest {
        vmid: Vmid::new(vmid).expect("a vmid in Proxmox's range"),
        template: TemplateVolid::new("local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst")
            .expect(ok),
        hostname: Hostname::new("golden").expect(ok),
        storage: StorageId::new("local-lvm").expect(ok),
        rootfs_gib: RootfsGib::new(8).expect(ok),
        memory_mib: MemoryMib::new(1024).expect(ok),
        cores: Cores::new(2).expect(ok),
        bridge: Bridge::new("vmbr0").expect(ok),
    }
}

/// A tarpc context whose deadline is `secs` seconds from now.
pub fn ctx(secs: u64) -> tarpc::context::Context {
    let mut c = tarpc::context::current();
    c.deadline = Instant::now() + Duration::from_secs(secs);
    c
}

/// Which mount backend the helper under test uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountBackendChoice {
    /// mount(8) (the fake one) plus an fstab-format record.
    Direct,
    /// `.mount` units in the temporary unit directory, started through the fake systemctl.
    Systemd,
}

/// Server-side time caps, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeCaps {
    /// `golden_image_create`.
    pub golden_image: u64,
    /// USB operations.
    pub mount: u64,
    /// SMART operations.
    pub smart: u64,
    /// Sensors.
    pub sensors: u64,
}

impl Default for TimeCaps {
    fn default() -> Self {
        Self {
            golden_image: 60,
            mount: 20,
            smart: 10,
            sensors: 5,
        }
    }
}

/// How to configure the helper under test.
#[derive(Debug, Clone)]
pub struct HelperHarnessOptions {
    /// Mount backend (default: direct).
    pub backend: MountBackendChoice,
    /// Idle timeout (default 600 s, so it does not exit in the middle of a test).
    pub idle_timeout_secs: u64,
    /// Time caps (defaults are short, for tests).
    pub time_caps: TimeCaps,
    /// Whether `exfat` is in `allowed_filesystems`.
    pub allow_exfat: bool,
    /// `agent_user` (default: the test's own uid, as a number).
    pub agent_user: Option<String>,
    /// `max_output_bytes` (default 1 MiB).
    pub max_output_bytes: usize,
    /// Use the host's real `blkid`, `mount`, `umount` and `/proc/self/mountinfo` instead of
    /// the fakes (the loop-device test, as root).
    pub real_mount_tools: bool,
    /// `shutdown_grace_secs` (default 20).
    pub shutdown_grace_secs: u64,
    /// Point `sysfs_dev_block` at the real `/sys/dev/block` (what the kernel says about a
    /// device) instead of the fake tree.
    pub real_sysfs: bool,
}

/// What a fake filesystem's device looks like in the fake sysfs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FakeDisk {
    /// A partition of a disk on a USB bus, with a `usb-…-part1` name in by-id.
    Usb,
    /// The same, without a by-id name.
    UsbWithoutId,
    /// A partition of a SATA disk that is not removable.
    Ata,
    /// A partition of a SATA disk marked removable.
    Removable,
    /// A partition of a USB disk that is held by another device (an LVM PV, say).
    UsbWithHolders,
    /// A whole USB disk that has partitions.
    UsbWholeDiskWithPartitions,
    /// A loop device.
    Loop,
    /// A device-mapper volume.
    DeviceMapper,
    /// A ZFS zvol partition.
    Zvol,
}

impl Default for HelperHarnessOptions {
    fn default() -> Self {
        Self {
            backend: MountBackendChoice::Direct,
            idle_timeout_secs: 600,
            time_caps: TimeCaps::default(),
            allow_exfat: false,
            agent_user: None,
            max_output_bytes: 1024 * 1024,
            real_mount_tools: false,
            real_sysfs: false,
            shutdown_grace_secs: 20,
        }
    }
}

/// A running helper in a temporary directory. See the module documentation.
#[derive(Debug)]
pub struct HelperHarness {
    dir: tempfile::TempDir,
    socket: PathBuf,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    next_node: std::cell::Cell<usize>,
    /// Taken when the first fake filesystem is given a real node; see [`real_loop_devices`].
    fake_nodes: std::cell::OnceCell<FakeNodeLease>,
}

/// The block device nodes of this machine, for fake filesystems to stand on: the helper
/// `stat`s a device (it must be a block device; its number leads into sysfs), so the fakes
/// use real nodes, presented through the fake `/sys/dev/block`.
///
/// The helper also looks at the whole host before a mount (it opens the node exclusively and
/// searches every process's descriptors and mount namespace), so a node must be idle, and two
/// tests running side by side must not share one: idle loop devices (not attached) are preferred, and nodes are handed out
/// round-robin across every harness of the process ([`NEXT_NODE`]).
fn block_nodes() -> Vec<PathBuf> {
    use std::os::unix::fs::FileTypeExt;
    let mut nodes: Vec<PathBuf> = std::fs::read_dir("/dev")
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_block_device()))
                .map(|e| e.path())
                .filter(|p| p != Path::new("/dev/sda1"))
                .collect()
        })
        .unwrap_or_default();
    nodes.sort();
    let idle_loops: Vec<PathBuf> = nodes
        .iter()
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.starts_with("loop")
                    && n[4..].bytes().all(|b| b.is_ascii_digit())
                    && !Path::new("/sys/block").join(n).join("loop").exists()
            })
        })
        .cloned()
        .collect();
    if idle_loops.is_empty() {
        nodes
    } else {
        idle_loops
    }
}

/// The next node to hand out, shared by every harness of the test process.
static NEXT_NODE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Whether a Unix socket bound at `path` listens (`__SO_ACCEPTCON` in the flags column of
/// `/proc/net/unix`). Without that table (not Linux), whether the file exists.
fn listening(path: &Path) -> bool {
    let Ok(table) = std::fs::read_to_string("/proc/net/unix") else {
        return path.exists();
    };
    let path = path.to_string_lossy();
    // Num RefCount Protocol Flags Type St Inode Path
    table.lines().skip(1).any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() == 8
            && f[7] == path
            && u32::from_str_radix(f[3], 16).is_ok_and(|flags| flags & 0x1_0000 != 0)
    })
}

/// Who uses the idle loop devices of this process: harnesses that hand them to fake
/// filesystems, and tests that attach images to them (`losetup --find` takes the first idle
/// one, which a fake filesystem may stand on). The two never overlap; since the test files
/// share one process per test binary, this keeps them apart.
#[derive(Debug, Default)]
struct LoopUse {
    /// Harnesses holding a [`FakeNodeLease`].
    fakes: usize,
    /// Holders of a [`RealLoopLease`].
    reals: usize,
    /// Callers of [`real_loop_devices`] waiting for the fakes to go (no new fake starts).
    reals_waiting: usize,
}

static LOOP_USE: std::sync::Mutex<LoopUse> = std::sync::Mutex::new(LoopUse {
    fakes: 0,
    reals: 0,
    reals_waiting: 0,
});
static LOOP_USE_CHANGED: std::sync::Condvar = std::sync::Condvar::new();

fn loop_use() -> std::sync::MutexGuard<'static, LoopUse> {
    LOOP_USE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn wait_loop_use(
    g: std::sync::MutexGuard<'static, LoopUse>,
) -> std::sync::MutexGuard<'static, LoopUse> {
    LOOP_USE_CHANGED
        .wait(g)
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A harness's share of the block nodes for fake filesystems (released when it is dropped).
#[derive(Debug)]
struct FakeNodeLease;

impl FakeNodeLease {
    fn take() -> FakeNodeLease {
        let mut g = loop_use();
        while g.reals > 0 || g.reals_waiting > 0 {
            g = wait_loop_use(g);
        }
        g.fakes += 1;
        FakeNodeLease
    }
}

impl Drop for FakeNodeLease {
    fn drop(&mut self) {
        loop_use().fakes -= 1;
        LOOP_USE_CHANGED.notify_all();
    }
}

/// Held by a test while it attaches images to real loop devices; see [`real_loop_devices`].
#[derive(Debug)]
pub struct RealLoopLease(());

impl Drop for RealLoopLease {
    fn drop(&mut self) {
        loop_use().reals -= 1;
        LOOP_USE_CHANGED.notify_all();
    }
}

/// Waits until no harness of this process has fake filesystems on block nodes, and keeps new
/// ones from starting until the returned lease (and every other one) is dropped. A test takes
/// it before `losetup --find` and drops it after detaching: the device it attaches is then
/// none that a fake filesystem stands on (the helper opens those nodes exclusively and looks
/// for their users). Tests holding it may run side by side. Never take it while a harness of
/// the same test has fake filesystems: that waits forever.
pub fn real_loop_devices() -> RealLoopLease {
    let mut g = loop_use();
    g.reals_waiting += 1;
    while g.fakes > 0 {
        g = wait_loop_use(g);
    }
    g.reals_waiting -= 1;
    g.reals += 1;
    RealLoopLease(())
}

/// `major:minor` of a block device node.
pub fn devno_of(node: &Path) -> anyhow::Result<String> {
    use std::os::unix::fs::MetadataExt;
    let rdev = std::fs::metadata(node)
        .with_context(|| format!("stat {}", node.display()))?
        .rdev();
    Ok(format!("{}:{}", libc::major(rdev), libc::minor(rdev)))
}

fn fake_tools_src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fake-tools")
}

const TOOLS: [&str; 6] = ["pct", "smartctl", "blkid", "mount", "umount", "systemctl"];

fn chmod(path: &Path, mode: u32) -> anyhow::Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {mode:o} {}", path.display()))
}

impl HelperHarness {
    /// Prepares the directory and config without starting anything.
    pub fn prepare(opts: &HelperHarnessOptions) -> anyhow::Result<HelperHarness> {
        let dir = tempfile::Builder::new()
            .prefix("felhom-helper-")
            .tempdir()
            .context("creating the temporary directory")?;
        let root = dir.path();
        chmod(root, 0o700)?;
        for sub in [
            "tools",
            "state",
            "state/smart",
            "state/fs",
            "sys/block",
            "sys/class/hwmon",
            "sys/dev/block",
            "dev-by-id",
            "mnt",
            "units",
        ] {
            std::fs::create_dir_all(root.join(sub))?;
            chmod(&root.join(sub), 0o755)?;
        }
        for tool in TOOLS.iter().chain(["common.sh"].iter()) {
            let dst = root.join("tools").join(tool);
            std::fs::copy(fake_tools_src().join(tool), &dst)
                .with_context(|| format!("copying fake tool {tool}"))?;
            chmod(&dst, if *tool == "common.sh" { 0o644 } else { 0o755 })?;
        }
        std::fs::write(
            root.join("state/mountinfo"),
            "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n",
        )?;
        std::fs::write(root.join("state/calls"), "")?;
        std::fs::write(
            root.join("state/unit_dir"),
            root.join("units").to_string_lossy().as_bytes(),
        )?;
        let config = root.join("helper.json");
        let mut fs = vec!["ext4", "xfs", "btrfs"];
        if opts.allow_exfat {
            fs.push("exfat");
        }
        let real = |t: &str| match t {
            "blkid" => Some("/usr/sbin/blkid"),
            "mount" => Some("/usr/bin/mount"),
            "umount" => Some("/usr/bin/umount"),
            _ => None,
        };
        let tools: serde_json::Map<String, serde_json::Value> = TOOLS
            .iter()
            .map(|t| {
                let path = match real(t) {
                    Some(p) if opts.real_mount_tools => PathBuf::from(p),
                    _ => root.join("tools").join(t),
                };
                (t.to_string(), path.to_string_lossy().into())
            })
            .collect();
        let mountinfo = if opts.real_mount_tools {
            PathBuf::from("/proc/self/mountinfo")
        } else {
            root.join("state/mountinfo")
        };
        let agent_user = opts
            .agent_user
            .clone()
            .unwrap_or_else(|| nix::unistd::geteuid().as_raw().to_string());
        let cfg = serde_json::json!({
            "agent_user": agent_user,
            "idle_timeout_secs": opts.idle_timeout_secs,
            "tools": tools,
            "mount_root": root.join("mnt"),
            "unit_dir": root.join("units"),
            "mount_backend": match opts.backend {
                MountBackendChoice::Direct => "direct",
                MountBackendChoice::Systemd => "systemd",
            },
            "record_file": root.join("state/mounts.fstab"),
            "allowed_filesystems": fs,
            "sysfs_block": root.join("sys/block"),
            "sysfs_hwmon": root.join("sys/class/hwmon"),
            "sysfs_dev_block": if opts.real_sysfs {
                PathBuf::from("/sys/dev/block")
            } else {
                root.join("sys/dev/block")
            },
            "dev_disk_by_id": root.join("dev-by-id"),
            "shutdown_grace_secs": opts.shutdown_grace_secs,
            "mountinfo": mountinfo,
            "time_caps": {
                "golden_image": opts.time_caps.golden_image,
                "mount": opts.time_caps.mount,
                "smart": opts.time_caps.smart,
                "sensors": opts.time_caps.sensors,
            },
            "max_output_bytes": opts.max_output_bytes,
        });
        std::fs::write(&config, serde_json::to_string_pretty(&cfg)?)?;
        chmod(&config, 0o600)?;
        Ok(HelperHarness {
            socket: root.join("helper.sock"),
            log: root.join("helper.log"),
            config,
            dir,
            child: None,
            next_node: std::cell::Cell::new(0),
            fake_nodes: std::cell::OnceCell::new(),
        })
    }

    /// Starts the real helper under `systemd-socket-activate`, as systemd would.
    pub fn start(opts: HelperHarnessOptions) -> anyhow::Result<HelperHarness> {
        let mut h = Self::prepare(&opts)?;
        h.launch_activated()?;
        Ok(h)
    }

    /// Starts the real helper in development mode (`--listen <sock>`).
    pub fn start_dev(opts: HelperHarnessOptions) -> anyhow::Result<HelperHarness> {
        let mut h = Self::prepare(&opts)?;
        let cmd = h.helper_command(&["--listen".into(), h.socket.clone().into()]);
        h.spawn(cmd)?;
        // The file appears at bind(), a moment before listen(): wait until it accepts.
        let until = Instant::now() + Duration::from_secs(10);
        while std::os::unix::net::UnixStream::connect(&h.socket).is_err() {
            if Instant::now() > until {
                bail!("helper socket never accepted a connection:\n{}", h.log());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(h)
    }

    /// (Re)starts the helper under `systemd-socket-activate` on the same directory, e.g. after
    /// it exited when idle.
    pub fn launch_activated(&mut self) -> anyhow::Result<()> {
        let activate = Path::new("/usr/bin/systemd-socket-activate");
        if !activate.exists() {
            bail!(
                "{} is not installed (apt-get install systemd)",
                activate.display()
            );
        }
        let _ = std::fs::remove_file(&self.socket);
        let mut cmd = Command::new(activate);
        cmd.arg("-l")
            .arg(&self.socket)
            .arg(crate::bins::helper())
            .arg("--config")
            .arg(&self.config);
        self.spawn(cmd)
    }

    /// Like [`Self::launch_activated`], with the capability bounding set of the shipped unit
    /// (`CapabilityBoundingSet=` of `systemd/felhom-helper.service`, applied with
    /// `setpriv`): the helper sees the host with the privileges it has in production.
    pub fn launch_activated_as_unit(&mut self) -> anyhow::Result<()> {
        let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../systemd/felhom-helper.service");
        let text = std::fs::read_to_string(&unit)?;
        let caps = text
            .lines()
            .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
            .context("the unit has no CapabilityBoundingSet=")?;
        let mut spec = String::from("-all");
        for cap in caps.split_whitespace() {
            spec.push_str(",+");
            spec.push_str(&cap.trim_start_matches("CAP_").to_ascii_lowercase());
        }
        let _ = std::fs::remove_file(&self.socket);
        let mut cmd = Command::new("/usr/bin/systemd-socket-activate");
        cmd.arg("-l")
            .arg(&self.socket)
            .arg("/usr/bin/setpriv")
            .arg(format!("--bounding-set={spec}"))
            .arg(format!("--inh-caps={spec}"))
            .arg(crate::bins::helper())
            .arg("--config")
            .arg(&self.config);
        self.spawn(cmd)
    }

    fn helper_command(&self, extra: &[std::ffi::OsString]) -> Command {
        let mut cmd = Command::new(crate::bins::helper());
        cmd.arg("--config").arg(&self.config).args(extra);
        cmd
    }

    fn spawn(&mut self, mut cmd: Command) -> anyhow::Result<()> {
        self.kill_helper();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID")
            .env("RUST_LOG", "info");
        let child = cmd.spawn().with_context(|| format!("starting {cmd:?}"))?;
        self.child = Some(child);
        let until = Instant::now() + Duration::from_secs(30);
        // The file appears at bind(), a moment before listen(); a connect in between is refused
        // (seen under load), so wait for the listening socket itself.
        while !self.socket.exists() || !listening(&self.socket) {
            if let Some(status) = self.try_wait() {
                bail!(
                    "helper exited with {status} before listening:\n{}",
                    self.log()
                );
            }
            if Instant::now() > until {
                bail!("helper socket did not appear:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// The socket the helper listens on.
    pub fn socket_path(&self) -> &Path {
        &self.socket
    }

    /// The temporary directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The config file.
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// `mount_root` of the helper under test.
    pub fn mount_root(&self) -> PathBuf {
        self.dir().join("mnt")
    }

    /// `unit_dir` of the helper under test.
    pub fn unit_dir(&self) -> PathBuf {
        self.dir().join("units")
    }

    /// `record_file` of the helper under test.
    pub fn record_file(&self) -> PathBuf {
        self.dir().join("state/mounts.fstab")
    }

    /// The fake mount table (`mountinfo` of the helper under test).
    pub fn mountinfo_path(&self) -> PathBuf {
        self.dir().join("state/mountinfo")
    }

    /// Everything the helper has logged so far (stderr, including the audit records).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The argv of every fake tool call so far, in order: `[tool, arg1, arg2, …]`.
    pub fn tool_calls(&self) -> Vec<Vec<String>> {
        std::fs::read_to_string(self.dir().join("state/calls"))
            .unwrap_or_default()
            .lines()
            .map(|l| l.split('\t').map(str::to_string).collect())
            .collect()
    }

    /// Adds a disk to the fake `/sys/block` and gives the fake smartctl its output for it.
    pub fn add_fake_disk(&self, name: &str, smartctl_json: &str, exit_status: u8) {
        let base = self.dir().join("sys/block").join(name);
        let _ = std::fs::create_dir_all(base.join("device"));
        let _ = std::fs::create_dir_all(base.join("queue"));
        let _ = std::fs::write(base.join("size"), "1953525168\n");
        let _ = std::fs::write(base.join("removable"), "0\n");
        let _ = std::fs::write(base.join("device/model"), format!("FAKE {name}\n"));
        let _ = std::fs::write(base.join("queue/rotational"), "1\n");
        self.set_smart_output(name, None, smartctl_json, exit_status);
    }

    /// Sets the fake smartctl's output for `disk`, optionally only for `-d <device_type>`.
    pub fn set_smart_output(
        &self,
        disk: &str,
        device_type: Option<&str>,
        json: &str,
        exit_status: u8,
    ) {
        let stem = match device_type {
            Some(t) => format!("{disk}.{t}"),
            None => disk.to_string(),
        };
        let dir = self.dir().join("state/smart");
        let _ = std::fs::write(dir.join(format!("{stem}.json")), json);
        let _ = std::fs::write(dir.join(format!("{stem}.exit")), exit_status.to_string());
    }

    /// Makes the fake blkid know a filesystem on a partition of a USB disk; returns its
    /// device path (a real block device node of this machine; see [`FakeDisk`]).
    pub fn add_fake_filesystem(&self, uuid: &str, fstype: &str) -> String {
        self.add_fake_filesystem_on(uuid, fstype, FakeDisk::Usb)
    }

    /// [`Self::add_fake_filesystem`] on a device of the given kind.
    pub fn add_fake_filesystem_on(&self, uuid: &str, fstype: &str, disk: FakeDisk) -> String {
        let node = self.next_block_node();
        let _ = std::fs::write(self.dir().join("state/fs").join(uuid), fstype);
        let _ = std::fs::write(
            self.dir().join("state/fs").join(format!("{uuid}.dev")),
            format!("{}\n", node.display()),
        );
        self.present(&node, disk)
            .unwrap_or_else(|e| panic!("presenting {} as {disk:?}: {e:#}", node.display()));
        node.display().to_string()
    }

    /// Makes a second device carry a filesystem's UUID (a copy of the UUID elsewhere).
    pub fn add_duplicate_device(&self, uuid: &str, disk: FakeDisk) -> String {
        let node = self.next_block_node();
        let list = self.dir().join("state/fs").join(format!("{uuid}.dev"));
        let mut text = std::fs::read_to_string(&list).unwrap_or_default();
        text.push_str(&format!("{}\n", node.display()));
        let _ = std::fs::write(&list, text);
        self.present(&node, disk)
            .unwrap_or_else(|e| panic!("presenting {}: {e:#}", node.display()));
        node.display().to_string()
    }

    fn next_block_node(&self) -> PathBuf {
        let nodes = block_nodes();
        assert!(
            !nodes.is_empty(),
            "this machine has no block device node in /dev for the fake filesystems"
        );
        self.fake_nodes.get_or_init(FakeNodeLease::take);
        self.next_node.set(self.next_node.get() + 1);
        let i = NEXT_NODE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        nodes[i % nodes.len()].clone()
    }

    /// Presents the real block device `node` in the fake `/sys/dev/block` as `disk` (and in
    /// the fake by-id directory, for the USB kinds). The loop-device test uses it to show
    /// its loop device as a USB partition.
    pub fn present(&self, node: &Path, disk: FakeDisk) -> anyhow::Result<()> {
        let devno = devno_of(node)?;
        let n = self.next_node.get() + 100 * (disk as usize);
        let sys = self.dir().join("sys");
        let usb = format!(
            "devices/pci0000:00/0000:00:14.0/usb2/2-{n}/2-{n}:1.0/host{n}/target{n}:0:0/{n}:0:0:0/block"
        );
        let ata =
            format!("devices/pci0000:00/0000:00:17.0/ata{n}/host{n}/target{n}:0:0/{n}:0:0:0/block");
        let (disk_dir, dev_dir, removable) = match disk {
            FakeDisk::Usb | FakeDisk::UsbWithoutId | FakeDisk::UsbWithHolders => {
                let d = sys.join(&usb).join(format!("sdu{n}"));
                (d.clone(), d.join(format!("sdu{n}1")), "0")
            }
            FakeDisk::UsbWholeDiskWithPartitions => {
                let d = sys.join(&usb).join(format!("sdw{n}"));
                (d.clone(), d.clone(), "0")
            }
            FakeDisk::Ata => {
                let d = sys.join(&ata).join(format!("sda{n}"));
                (d.clone(), d.join(format!("sda{n}1")), "0")
            }
            FakeDisk::Removable => {
                let d = sys.join(&ata).join(format!("sdr{n}"));
                (d.clone(), d.join(format!("sdr{n}1")), "1")
            }
            FakeDisk::Loop => {
                let d = sys.join(format!("devices/virtual/block/loop{n}"));
                (d.clone(), d.clone(), "0")
            }
            FakeDisk::DeviceMapper => {
                let d = sys.join(format!("devices/virtual/block/dm-{n}"));
                (d.clone(), d.clone(), "0")
            }
            FakeDisk::Zvol => {
                let d = sys.join(format!("devices/virtual/block/zd{n}"));
                (d.clone(), d.join(format!("zd{n}p1")), "0")
            }
        };
        std::fs::create_dir_all(disk_dir.join("holders"))?;
        std::fs::write(disk_dir.join("removable"), format!("{removable}\n"))?;
        std::fs::create_dir_all(dev_dir.join("holders"))?;
        if dev_dir != disk_dir {
            std::fs::write(dev_dir.join("partition"), "1\n")?;
        }
        match disk {
            FakeDisk::UsbWithHolders => {
                std::fs::create_dir_all(dev_dir.join("holders/dm-7"))?;
            }
            FakeDisk::UsbWholeDiskWithPartitions => {
                let part = disk_dir.join(format!("sdw{n}1"));
                std::fs::create_dir_all(part.join("holders"))?;
                std::fs::write(part.join("partition"), "1\n")?;
            }
            _ => {}
        }
        let link = sys.join("dev/block").join(&devno);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&dev_dir, &link)?;
        if matches!(
            disk,
            FakeDisk::Usb | FakeDisk::UsbWithHolders | FakeDisk::UsbWholeDiskWithPartitions
        ) {
            let id = self
                .dir()
                .join("dev-by-id")
                .join(format!("usb-Fake_Disk_{n}-0:0-part1"));
            let _ = std::fs::remove_file(&id);
            std::os::unix::fs::symlink(node, &id)?;
        }
        Ok(())
    }

    /// The fake by-id directory (`dev_disk_by_id` of the helper under test).
    pub fn by_id_dir(&self) -> PathBuf {
        self.dir().join("dev-by-id")
    }

    /// Adds a fake hwmon device `hwmon<N>` with a `name` and attribute files.
    pub fn add_fake_hwmon(&self, device: &str, chip: &str, files: &[(&str, &str)]) {
        let base = self.dir().join("sys/class/hwmon").join(device);
        let _ = std::fs::create_dir_all(&base);
        let _ = std::fs::write(base.join("name"), format!("{chip}\n"));
        for (f, v) in files {
            let _ = std::fs::write(base.join(f), format!("{v}\n"));
        }
    }

    /// Makes a fake tool hang (start a grandchild and wait) until turned off.
    pub fn set_hang(&self, tool: &str, hang: bool) {
        let p = self.dir().join("state").join(format!("hang-{tool}"));
        if hang {
            let _ = std::fs::write(p, "");
        } else {
            let _ = std::fs::remove_file(p);
        }
    }

    /// Makes a fake tool (mount, pct) sleep `secs` seconds before doing its work; `None` turns it
    /// off.
    pub fn set_delay(&self, tool: &str, secs: Option<u32>) {
        let p = self.dir().join("state").join(format!("delay-{tool}"));
        match secs {
            Some(s) => {
                let _ = std::fs::write(p, s.to_string());
            }
            None => {
                let _ = std::fs::remove_file(p);
            }
        }
    }

    /// Makes a fake tool start a `setsid` worker that outlives it (`hang`: and then hang).
    pub fn set_detach(&self, tool: &str, mode: Option<&str>) {
        let p = self.dir().join("state").join(format!("detach-{tool}"));
        match mode {
            Some(m) => {
                let _ = std::fs::write(p, m);
            }
            None => {
                let _ = std::fs::remove_file(p);
            }
        }
    }

    /// Bytes a fake tool prints on stderr when it fails (mount).
    pub fn set_tool_stderr(&self, tool: &str, bytes: &[u8]) {
        let _ = std::fs::write(
            self.dir().join("state").join(format!("stderr-{tool}")),
            bytes,
        );
    }

    /// Makes the fake mount (and systemctl enable) fail.
    pub fn set_mount_fails(&self, fail: bool) {
        let p = self.dir().join("state/fail-mount");
        if fail {
            let _ = std::fs::write(p, "");
        } else {
            let _ = std::fs::remove_file(p);
        }
    }

    /// Sends SIGTERM to the helper.
    pub fn terminate(&self) {
        if let Some(pid) = self.helper_pid() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    }

    /// The pids a hanging fake tool wrote: its grandchild, then itself.
    pub fn hang_pids(&self) -> Vec<i32> {
        std::fs::read_to_string(self.dir().join("state/hang-pids"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    }

    /// Lets any local user reach the socket (for the peer-check test: the SO_PEERCRED check,
    /// not file permissions, must refuse them).
    pub fn open_socket_to_everyone(&self) -> anyhow::Result<()> {
        chmod(self.dir(), 0o711)?;
        chmod(&self.socket, 0o666)
    }

    /// Connects a tarpc client to the helper.
    pub async fn client(&self) -> anyhow::Result<HelperClient> {
        let stream = tokio::net::UnixStream::connect(&self.socket)
            .await
            .with_context(|| format!("connecting to {}", self.socket.display()))?;
        Ok(HelperClient::new(
            tarpc::client::Config::default(),
            felhom_protocol::transport::client_transport(stream),
        )
        .spawn())
    }

    /// Writes raw bytes to a fresh connection and closes it.
    pub fn send_raw(&self, bytes: &[u8]) -> anyhow::Result<()> {
        let mut s = std::os::unix::net::UnixStream::connect(&self.socket)?;
        let _ = s.write_all(bytes);
        Ok(())
    }

    /// The helper's pid (the `systemd-socket-activate` pid, which execs the helper).
    pub fn helper_pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The helper's exit status, if it has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Waits up to `timeout` for the helper to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let until = Instant::now() + timeout;
        loop {
            if let Some(s) = self.try_wait() {
                return Some(s);
            }
            if Instant::now() > until {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the helper (SIGKILL) and reaps it.
    pub fn kill_helper(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for HelperHarness {
    fn drop(&mut self) {
        self.kill_helper();
        // Kill a fake tool left hanging by a failed test.
        for pid in self.hang_pids() {
            // Only if the pid is still a fake tool (pids are reused).
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline);
            if !(cmdline.contains("sleep\x001000")
                || cmdline.contains(&*self.dir().to_string_lossy()))
            {
                continue;
            }
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::mpsc;
    use std::time::Duration;

    use super::{FakeNodeLease, listening, real_loop_devices};

    /// Long enough for a thread that is not blocked to report; the blocked case waits it out.
    const MOMENT: Duration = Duration::from_millis(300);
    /// Reached only when the test fails.
    const PATIENCE: Duration = Duration::from_secs(60);

    #[test]
    fn real_loop_devices_wait_for_fake_nodes_and_fake_nodes_for_them() {
        // A harness with fake filesystems on nodes: attaching real loop devices waits.
        let fake = FakeNodeLease::take();
        let (tx, rx) = mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let real = real_loop_devices();
            tx.send(()).unwrap();
            real
        });
        assert!(
            rx.recv_timeout(MOMENT).is_err(),
            "a real loop device was attached while a fake filesystem stood on a node"
        );
        drop(fake);
        rx.recv_timeout(PATIENCE)
            .expect("the fake node lease was dropped");
        let real = waiter.join().unwrap();
        // Real loop devices in use: a new harness waits before it hands out a node.
        let (tx, rx) = mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let fake = FakeNodeLease::take();
            tx.send(()).unwrap();
            fake
        });
        assert!(
            rx.recv_timeout(MOMENT).is_err(),
            "a fake filesystem was given a node while real loop devices were attached"
        );
        drop(real);
        rx.recv_timeout(PATIENCE)
            .expect("the real loop lease was dropped");
        drop(waiter.join().unwrap());
    }

    #[test]
    fn real_loop_leases_do_not_exclude_each_other() {
        let (tx, rx) = mpsc::channel();
        let first = real_loop_devices();
        std::thread::spawn(move || {
            let second = real_loop_devices();
            tx.send(()).unwrap();
            drop(second);
        });
        rx.recv_timeout(PATIENCE)
            .expect("a second real loop lease waited for the first");
        drop(first);
    }

    #[test]
    fn a_bound_socket_is_listening_only_after_listen() {
        use nix::sys::socket::{
            AddressFamily, Backlog, SockFlag, SockType, UnixAddr, bind, listen, socket,
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let fd = socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .unwrap();
        bind(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            &UnixAddr::new(&path).unwrap(),
        )
        .unwrap();
        assert!(path.exists());
        assert!(!listening(&path), "bound, not yet listening");
        listen(&fd, Backlog::new(1).unwrap()).unwrap();
        assert!(listening(&path));
        assert!(!listening(&dir.path().join("other.sock")));
    }
}
