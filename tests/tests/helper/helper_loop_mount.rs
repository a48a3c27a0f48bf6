//! Real mounts: ext4 images on loop devices, with the real helper, the `direct` backend and
//! the host's real blkid/mount/umount, checked in /proc/self/mountinfo. A loop device is not
//! a USB disk, so the helper refuses it as the real sysfs shows it; to test the successful
//! mount, a fake `/sys/dev/block` presents the loop device as a USB partition. Also: two real
//! devices with one UUID, and a device already mounted elsewhere, are refused. Needs root,
//! losetup and mkfs.ext4 (CI is root); elsewhere each test says why it skipped.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use felhom_protocol::*;
use felhom_tests::helper_harness::{
    FakeDisk, HelperHarness, HelperHarnessOptions, MountBackendChoice, RealLoopLease,
    real_loop_devices,
};
use tarpc::context;

const LOSETUP: &str = "/usr/sbin/losetup";
const MKFS: &str = "/usr/sbin/mkfs.ext4";

/// Detaches the loop device (after unmounting `mount_point` if still mounted), whatever
/// happens in the test.
struct LoopDevice {
    dev: String,
    mount_point: Option<PathBuf>,
    /// Dropped after the device is detached (fields drop after `drop`).
    _lease: RealLoopLease,
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        if let Some(mp) = &self.mount_point
            && mounted_options(mp).is_some()
        {
            let _ = Command::new("/usr/bin/umount").arg(mp).status();
        }
        let _ = Command::new(LOSETUP).args(["-d", &self.dev]).status();
    }
}

/// The per-mount options of `mp` in /proc/self/mountinfo, if mounted.
fn mounted_options(mp: &Path) -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mp = mp.to_string_lossy();
    text.lines().rev().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        (f.len() > 5 && f[4] == mp).then(|| f[5].to_string())
    })
}

fn skip_reason() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("not running as root".into());
    }
    for tool in [
        LOSETUP,
        MKFS,
        "/usr/sbin/blkid",
        "/usr/bin/mount",
        "/usr/bin/umount",
    ] {
        if !Path::new(tool).exists() {
            return Some(format!("{tool} is not installed"));
        }
    }
    if !Path::new("/dev/loop-control").exists() {
        return Some("/dev/loop-control is absent (no loop devices here)".into());
    }
    None
}

fn fresh_uuid() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let x = nanos ^ (u128::from(std::process::id()) << 64);
    let h = format!("{x:032x}");
    format!(
        "{}-{}-4{}-8{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

/// A 32 MiB ext4 image with `uuid` at `dir/file`.
fn ext4_image(dir: &Path, file: &str, uuid: &str) -> PathBuf {
    let image = dir.join(file);
    std::fs::File::create(&image)
        .unwrap()
        .set_len(32 * 1024 * 1024)
        .unwrap();
    let out = Command::new(MKFS)
        .args(["-q", "-F", "-U", uuid])
        .arg(&image)
        .output()
        .unwrap();
    assert!(out.status.success(), "mkfs.ext4: {out:?}");
    image
}

/// An ext4 image with `uuid` in `dir`, attached to a loop device; `None` (with the reason
/// printed) when losetup cannot attach it here.
fn loop_with_uuid(dir: &Path, file: &str, uuid: &str) -> Option<LoopDevice> {
    let image = ext4_image(dir, file, uuid);
    let lease = real_loop_devices();
    let out = Command::new(LOSETUP)
        .args(["--find", "--show"])
        .arg(&image)
        .output()
        .unwrap();
    if !out.status.success() {
        eprintln!(
            "skipping: losetup failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        return None;
    }
    let lo = LoopDevice {
        dev: String::from_utf8_lossy(&out.stdout).trim().to_string(),
        mount_point: None,
        _lease: lease,
    };
    // Without udev, blkid finds the new device by scanning /proc/partitions; give the
    // kernel a moment to list it so the helper's own lookup is not racing losetup.
    let found = (0..50).any(|_| {
        let ok = Command::new("/usr/sbin/blkid")
            .args([
                "-c",
                "/dev/null",
                "-t",
                &format!("UUID={uuid}"),
                "-o",
                "device",
            ])
            .output()
            .is_ok_and(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .any(|l| l == lo.dev)
            });
        if !ok {
            std::thread::sleep(Duration::from_millis(100));
        }
        ok
    });
    assert!(found, "blkid never found the new filesystem on {}", lo.dev);
    Some(lo)
}

fn real_tools(real_sysfs: bool) -> HelperHarness {
    HelperHarness::start(HelperHarnessOptions {
        backend: MountBackendChoice::Direct,
        real_mount_tools: true,
        real_sysfs,
        ..Default::default()
    })
    .unwrap()
}

fn ctx60() -> context::Context {
    let mut ctx = context::current();
    ctx.deadline = Instant::now() + Duration::from_secs(60);
    ctx
}

fn req(uuid: &str, name: &str) -> UsbMountRequest {
    UsbMountRequest {
        uuid: FsUuid::new(uuid).unwrap(),
        name: MountName::new(name).unwrap(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_loop_device_is_refused_because_it_is_not_a_usb_disk() {
    if let Some(why) = skip_reason() {
        eprintln!("skipping the real loop-device refusal test: {why}");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let uuid = fresh_uuid();
    let Some(mut lo) = loop_with_uuid(work.path(), "a.img", &uuid) else {
        return;
    };
    let h = real_tools(true);
    let mp = h.mount_root().join("lo");
    lo.mount_point = Some(mp.clone());
    let client = h.client().await.unwrap();
    let err = client
        .usb_mount(ctx60(), req(&uuid, "lo"))
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(&err, HelperError::Rejected { reason, .. } if reason.contains("loop device") && reason.contains(&lo.dev)),
        "{err}"
    );
    assert_eq!(mounted_options(&mp), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_real_devices_with_one_uuid_are_refused_naming_both() {
    if let Some(why) = skip_reason() {
        eprintln!("skipping the duplicate-UUID test: {why}");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let uuid = fresh_uuid();
    let Some(a) = loop_with_uuid(work.path(), "a.img", &uuid) else {
        return;
    };
    let Some(b) = loop_with_uuid(work.path(), "b.img", &uuid) else {
        return;
    };
    // Both look like USB partitions: only the shared UUID is wrong.
    let h = real_tools(false);
    h.present(Path::new(&a.dev), FakeDisk::Usb).unwrap();
    h.present(Path::new(&b.dev), FakeDisk::Usb).unwrap();
    let client = h.client().await.unwrap();
    let err = client
        .usb_mount(ctx60(), req(&uuid, "dup"))
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(&err, HelperError::Rejected { reason, .. } if reason.contains("2 devices carry UUID") && reason.contains(&a.dev) && reason.contains(&b.dev)),
        "{err}"
    );
    assert_eq!(mounted_options(&h.mount_root().join("dup")), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_device_mounted_elsewhere_is_not_mounted_a_second_time() {
    if let Some(why) = skip_reason() {
        eprintln!("skipping the already-mounted test: {why}");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let uuid = fresh_uuid();
    let Some(mut lo) = loop_with_uuid(work.path(), "a.img", &uuid) else {
        return;
    };
    let elsewhere = work.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let out = Command::new("/usr/bin/mount")
        .args(["-o", "ro", &lo.dev])
        .arg(&elsewhere)
        .output()
        .unwrap();
    assert!(out.status.success(), "mount: {out:?}");
    lo.mount_point = Some(elsewhere.clone());
    let h = real_tools(false);
    h.present(Path::new(&lo.dev), FakeDisk::Usb).unwrap();
    let client = h.client().await.unwrap();
    let err = client
        .usb_mount(ctx60(), req(&uuid, "again"))
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(&err, HelperError::Rejected { reason, .. } if reason.contains("already mounted at") && reason.contains(&elsewhere.display().to_string())),
        "{err}"
    );
    assert_eq!(mounted_options(&h.mount_root().join("again")), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ext4_loop_device_is_mounted_by_uuid_with_safe_options() {
    if let Some(why) = skip_reason() {
        eprintln!("skipping the real loop-device mount test: {why}");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let uuid = fresh_uuid();
    let Some(mut lo) = loop_with_uuid(work.path(), "disk.img", &uuid) else {
        return;
    };

    // The real sysfs would refuse a loop device; present it as a USB partition.
    let h = real_tools(false);
    h.present(Path::new(&lo.dev), FakeDisk::Usb).unwrap();
    let mp = h.mount_root().join("loopdisk");
    lo.mount_point = Some(mp.clone());
    let client = h.client().await.unwrap();
    let mut ctx = context::current();
    ctx.deadline = Instant::now() + Duration::from_secs(60);
    let info = client
        .usb_mount(
            ctx,
            UsbMountRequest {
                uuid: FsUuid::new(&uuid).unwrap(),
                name: MountName::new("loopdisk").unwrap(),
            },
        )
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("usb_mount: {e}\n{}", h.log()));
    assert!(info.mounted, "{info:?}");
    assert_eq!(info.fstype, FsType::Ext4);
    assert_eq!(info.mount_point, mp.display().to_string());
    let options = mounted_options(&mp).expect("the mount is in /proc/self/mountinfo");
    for opt in ["nodev", "nosuid", "noexec"] {
        assert!(options.split(',').any(|o| o == opt), "{opt} in {options}");
    }
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut v = release
        .trim()
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    if (v.next().unwrap(), v.next().unwrap()) >= (5, 10) {
        assert!(
            options.split(',').any(|o| o == "nosymfollow"),
            "nosymfollow in {options}"
        );
    }
    let record = std::fs::read_to_string(h.record_file()).unwrap();
    assert!(
        record.contains(&format!("UUID={uuid} {}", mp.display())),
        "{record}"
    );

    let reply = client
        .usb_unmount(ctx, MountName::new("loopdisk").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(reply.was_mounted);
    assert_eq!(
        mounted_options(&mp),
        None,
        "still mounted after usb_unmount"
    );
    assert!(client.usb_list(ctx).await.unwrap().unwrap().is_empty());
    drop(lo);
}

/// A child process this test started, ended by its pid (never by name) when dropped.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until `pred` holds (up to 10 s).
fn wait_for(what: &str, mut pred: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(10);
    while !pred() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_mounted_in_another_mount_namespace_is_refused_naming_the_process() {
    if let Some(why) = skip_reason() {
        eprintln!("skipping the other-namespace test: {why}");
        return;
    }
    if !Path::new("/usr/bin/unshare").exists() {
        eprintln!("skipping the other-namespace test: /usr/bin/unshare is not installed");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let uuid = fresh_uuid();
    let Some(lo) = loop_with_uuid(work.path(), "a.img", &uuid) else {
        return;
    };
    // A container's view: the disk mounted in a private mount namespace, invisible in the
    // helper's own /proc/self/mountinfo. The mount goes away with the namespace's process.
    let inside = work.path().join("ct-mnt");
    std::fs::create_dir(&inside).unwrap();
    let holder = Child(
        Command::new("/usr/bin/unshare")
            .args(["-m", "--propagation", "private", "/bin/sh", "-c"])
            .arg(format!(
                "/usr/bin/mount -o ro {} {} && exec /bin/sleep 600",
                lo.dev,
                inside.display()
            ))
            .spawn()
            .unwrap(),
    );
    let pid = holder.0.id();
    wait_for("the mount inside the namespace", || {
        std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))
            .is_ok_and(|t| t.contains(&inside.display().to_string()))
    });
    assert_eq!(
        mounted_options(&inside),
        None,
        "the mount must not be visible here"
    );
    let h = real_tools(false);
    h.present(Path::new(&lo.dev), FakeDisk::Usb).unwrap();
    let client = h.client().await.unwrap();
    let err = client
        .usb_mount(ctx60(), req(&uuid, "ns"))
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(&err, HelperError::Rejected { reason, .. }
            if reason.contains(&format!("mounted in the mount namespace of pid {pid} (sleep)"))
            && reason.contains(&inside.display().to_string())),
        "{err}"
    );
    assert_eq!(mounted_options(&h.mount_root().join("ns")), None);
    assert!(!h.record_file().exists(), "nothing recorded");
    drop(holder);
    drop(lo);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_held_open_by_a_process_is_refused_naming_it_and_mounts_once_it_is_closed() {
    if let Some(why) = skip_reason() {
        eprintln!("skipping the held-open test: {why}");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let uuid = fresh_uuid();
    let Some(mut lo) = loop_with_uuid(work.path(), "a.img", &uuid) else {
        return;
    };
    // QEMU with the disk passed through: a plain open, no mount, no O_EXCL.
    let dev = std::fs::File::open(&lo.dev).unwrap();
    let holder = Child(
        Command::new("/bin/sleep")
            .arg("600")
            .stdin(dev)
            .spawn()
            .unwrap(),
    );
    let pid = holder.0.id();
    let h = real_tools(false);
    h.present(Path::new(&lo.dev), FakeDisk::Usb).unwrap();
    let mp = h.mount_root().join("held");
    lo.mount_point = Some(mp.clone());
    let client = h.client().await.unwrap();
    let err = client
        .usb_mount(ctx60(), req(&uuid, "held"))
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(&err, HelperError::Rejected { reason, .. }
            if reason.contains(&format!("is open by pid {pid} (sleep)"))),
        "{err}"
    );
    assert_eq!(mounted_options(&mp), None);
    // The control: once the holder is gone, the same disk mounts.
    drop(holder);
    let info = client
        .usb_mount(ctx60(), req(&uuid, "held"))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("usb_mount after the holder left: {e}\n{}", h.log()));
    assert!(info.mounted);
    assert!(mounted_options(&mp).is_some());
    client
        .usb_unmount(ctx60(), MountName::new("held").unwrap())
        .await
        .unwrap()
        .unwrap();
}

/// The superblock options (the last field) of `mp` in /proc/self/mountinfo, if mounted.
fn super_options(mp: &Path) -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mp = mp.to_string_lossy();
    text.lines().rev().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        (f.len() > 5 && f[4] == mp).then(|| f.last().unwrap_or(&"").to_string())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_superblock_asking_for_panic_on_errors_is_mounted_with_errors_remount_ro() {
    if let Some(why) = skip_reason() {
        eprintln!("skipping the errors=panic test: {why}");
        return;
    }
    let tune2fs = "/usr/sbin/tune2fs";
    if !Path::new(tune2fs).exists() {
        eprintln!("skipping the errors=panic test: {tune2fs} is not installed");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let uuid = fresh_uuid();
    let Some(mut lo) = loop_with_uuid(work.path(), "panic.img", &uuid) else {
        return;
    };
    let out = Command::new(tune2fs)
        .args(["-e", "panic", &lo.dev])
        .output()
        .unwrap();
    assert!(out.status.success(), "tune2fs: {out:?}");
    let h = real_tools(false);
    h.present(Path::new(&lo.dev), FakeDisk::Usb).unwrap();
    let mp = h.mount_root().join("panicky");
    lo.mount_point = Some(mp.clone());
    let client = h.client().await.unwrap();
    let info = client
        .usb_mount(ctx60(), req(&uuid, "panicky"))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("usb_mount: {e}\n{}", h.log()));
    assert!(info.options.contains("errors=remount-ro"), "{info:?}");
    let sb = super_options(&mp).expect("mounted");
    assert!(
        sb.split(',').any(|o| o == "errors=remount-ro"),
        "the superblock's errors=panic must be overridden: {sb}"
    );
    let kname = lo.dev.trim_start_matches("/dev/");
    if let Ok(opts) = std::fs::read_to_string(format!("/proc/fs/ext4/{kname}/options")) {
        assert!(opts.lines().any(|l| l == "errors=remount-ro"), "{opts}");
        assert!(!opts.lines().any(|l| l == "errors=panic"), "{opts}");
    }
    client
        .usb_unmount(ctx60(), MountName::new("panicky").unwrap())
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_swapped_between_the_proof_and_the_mount_is_unmounted_and_refused() {
    if let Some(why) = skip_reason() {
        eprintln!("skipping the swapped-device test: {why}");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let uuid = fresh_uuid();
    let Some(mut lo) = loop_with_uuid(work.path(), "proven.img", &uuid) else {
        return;
    };
    // The impostor carries the same UUID (a copy made to pass for the backup disk), so only
    // the disk sequence number tells the two apart.
    let impostor = ext4_image(work.path(), "impostor.img", &uuid);
    let seq_before = std::fs::read_to_string(format!(
        "/sys/block/{}/diskseq",
        lo.dev.trim_start_matches("/dev/")
    ))
    .ok();
    let mut h = HelperHarness::prepare(&HelperHarnessOptions {
        backend: MountBackendChoice::Direct,
        real_mount_tools: true,
        ..Default::default()
    })
    .unwrap();
    // A mount(8) that first gives the loop device another backing file: the swap happens
    // after every proof and right before the mount.
    let hook = h.dir().join("tools/mount-after-swap");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\n{LOSETUP} -d {dev}\nfor i in 1 2 3 4 5 6 7 8 9 10; do\n  \
             {LOSETUP} {dev} {img} && break\n  sleep 0.2\ndone\nexec /usr/bin/mount \"$@\"\n",
            dev = lo.dev,
            img = impostor.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let cfg_path = h.config_path().to_path_buf();
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    cfg["tools"]["mount"] = hook.display().to_string().into();
    std::fs::write(&cfg_path, serde_json::to_string_pretty(&cfg).unwrap()).unwrap();
    h.launch_activated().unwrap();
    h.present(Path::new(&lo.dev), FakeDisk::Usb).unwrap();
    let mp = h.mount_root().join("swapped");
    lo.mount_point = Some(mp.clone());
    let client = h.client().await.unwrap();
    let err = client
        .usb_mount(ctx60(), req(&uuid, "swapped"))
        .await
        .unwrap()
        .unwrap_err();
    let seq_after = std::fs::read_to_string(format!(
        "/sys/block/{}/diskseq",
        lo.dev.trim_start_matches("/dev/")
    ))
    .ok();
    assert_ne!(seq_before, seq_after, "the hook did not swap the device");
    let msg = err.to_string();
    assert!(
        msg.contains("changed between the proof and the mount") && msg.contains("disk sequence"),
        "{msg}\n{}",
        h.log()
    );
    assert!(msg.contains("unmounted again"), "{msg}");
    assert_eq!(
        mounted_options(&mp),
        None,
        "the impostor must not stay mounted"
    );
    let record = std::fs::read_to_string(h.record_file()).unwrap_or_default();
    assert!(!record.contains(&uuid), "nothing recorded: {record}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_locked_by_a_process_the_helper_cannot_trace_is_refused() {
    if let Some(why) = skip_reason() {
        eprintln!("skipping the file-lock test: {why}");
        return;
    }
    for tool in ["/usr/bin/setpriv"] {
        if !Path::new(tool).exists() {
            eprintln!("skipping the file-lock test: {tool} is not installed");
            return;
        }
    }
    let work = tempfile::tempdir().unwrap();
    let uuid = fresh_uuid();
    let Some(mut lo) = loop_with_uuid(work.path(), "a.img", &uuid) else {
        return;
    };
    // A VM's QEMU as the helper sees it in production: a process it may not trace (here
    // another uid, like an unprivileged container's), holding the disk open with a lock on
    // it. The helper runs with the unit's capability bounding set, without CAP_SYS_PTRACE,
    // so the process's descriptors are hidden from it; the lock table is not.
    let dev = std::fs::File::open(&lo.dev).unwrap();
    let fd = std::os::fd::AsRawFd::as_raw_fd(&dev);
    let mut cmd = Command::new("/bin/sleep");
    cmd.arg("600");
    // SAFETY: between fork and exec the closure only makes async-signal-safe system calls
    // (flock, fcntl, setgroups, setresgid, setresuid) on a descriptor this process owns.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
            // Keep the locked descriptor across exec, lock it, then become uid 100000.
            if libc::fcntl(fd, libc::F_SETFD, 0) != 0
                || libc::flock(fd, libc::LOCK_SH) != 0
                || libc::setgroups(0, std::ptr::null()) != 0
                || libc::setresgid(100000, 100000, 100000) != 0
                || libc::setresuid(100000, 100000, 100000) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let holder = Child(cmd.spawn().unwrap());
    drop(dev);
    let pid = holder.0.id();
    wait_for("the lock", || {
        std::fs::read_to_string("/proc/locks").is_ok_and(|t| {
            t.lines()
                .any(|l| l.split_whitespace().nth(4) == Some(&pid.to_string()))
        })
    });
    let mut h = HelperHarness::prepare(&HelperHarnessOptions {
        backend: MountBackendChoice::Direct,
        real_mount_tools: true,
        ..Default::default()
    })
    .unwrap();
    h.launch_activated_as_unit().unwrap();
    h.present(Path::new(&lo.dev), FakeDisk::Usb).unwrap();
    let mp = h.mount_root().join("locked");
    lo.mount_point = Some(mp.clone());
    let client = h.client().await.unwrap();
    let err = client
        .usb_mount(ctx60(), req(&uuid, "locked"))
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(&err, HelperError::Rejected { reason, .. }
            if reason.contains(&format!("is locked by pid {pid} (sleep)"))),
        "{err}\n{}",
        h.log()
    );
    assert_eq!(mounted_options(&mp), None);
    drop(holder);
}
