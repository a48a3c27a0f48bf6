//! The root helper does only what its operations' names promise (issue: helper safety):
//! `usb_mount` mounts only a proven USB disk that nothing else uses, no process outlives its
//! operation (setsid workers included, also at SIGTERM), and the audit trail cannot be
//! drowned by noise or forged by a tool's output. Runs the real helper under
//! `systemd-socket-activate` with fake tools and a fake sysfs; the loop-device variants are in
//! `helper_loop_mount.rs`.

use std::process::Command;
use std::time::{Duration, Instant};

use felhom_protocol::*;
use felhom_tests::helper_harness::{
    FakeDisk, HelperHarness, HelperHarnessOptions, MountBackendChoice, TimeCaps, ctx,
    golden_request as golden,
};

const UUID: &str = "ada110f6-bd6d-49db-955d-342c27627b61";
const UUID2: &str = "0f4c2d9e-7a1b-4c3d-8e5f-6a7b8c9d0e1f";

fn mount_req(name: &str) -> UsbMountRequest {
    UsbMountRequest {
        uuid: FsUuid::new(UUID).unwrap(),
        name: MountName::new(name).unwrap(),
    }
}

fn start(backend: MountBackendChoice) -> HelperHarness {
    HelperHarness::start(HelperHarnessOptions {
        backend,
        ..Default::default()
    })
    .unwrap()
}

fn mounts_called(h: &HelperHarness) -> bool {
    h.tool_calls().iter().any(|c| {
        c[0] == "mount" || (c[0] == "systemctl" && c.get(1).is_some_and(|a| a == "enable"))
    })
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_plain_usb_disk_is_mounted() {
    for (disk, needle) in [
        (FakeDisk::Ata, "not on a USB bus"),
        // A removable disk that is not on USB (an iSCSI LUN, a floppy) is not a USB disk.
        (FakeDisk::Removable, "although it is marked removable"),
        (FakeDisk::Loop, "loop device"),
        (FakeDisk::DeviceMapper, "device-mapper"),
        (FakeDisk::Zvol, "zvol"),
        (FakeDisk::UsbWithHolders, "in use by dm-7"),
        (
            FakeDisk::UsbWholeDiskWithPartitions,
            "whole disk with partitions",
        ),
    ] {
        let h = start(MountBackendChoice::Direct);
        let dev = h.add_fake_filesystem_on(UUID, "ext4", disk);
        let client = h.client().await.unwrap();
        let err = client
            .usb_mount(ctx(30), mount_req("b"))
            .await
            .unwrap()
            .unwrap_err();
        assert!(
            matches!(&err, HelperError::Rejected { field, reason } if field == "device" && reason.contains(needle) && reason.contains(&dev)),
            "{disk:?}: {err}"
        );
        assert!(!mounts_called(&h), "{disk:?}: nothing may be mounted");
        assert!(!h.record_file().exists(), "{disk:?}: nothing recorded");
        assert!(
            !h.mount_root().join("b").exists(),
            "{disk:?}: no mount point made"
        );
    }
    // The control: the same check passes a partition of a disk on a USB bus.
    let h = start(MountBackendChoice::Direct);
    h.add_fake_filesystem_on(UUID, "ext4", FakeDisk::Usb);
    let client = h.client().await.unwrap();
    let info = client
        .usb_mount(ctx(30), mount_req("usb"))
        .await
        .unwrap()
        .unwrap();
    assert!(info.mounted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_uuid_on_two_devices_is_refused_naming_both() {
    let h = start(MountBackendChoice::Direct);
    let usb = h.add_fake_filesystem(UUID, "ext4");
    // The tenant's copy of the UUID, inside a zvol of its VM.
    let copy = h.add_duplicate_device(UUID, FakeDisk::Zvol);
    let client = h.client().await.unwrap();
    let err = client
        .usb_mount(ctx(30), mount_req("b"))
        .await
        .unwrap()
        .unwrap_err();
    let HelperError::Rejected { reason, .. } = &err else {
        panic!("{err}");
    };
    assert!(reason.contains("2 devices carry UUID"), "{reason}");
    assert!(reason.contains(&usb) && reason.contains(&copy), "{reason}");
    assert!(!mounts_called(&h));
    // Not even probed: the refusal comes from the list of devices.
    assert!(!h.tool_calls().iter().any(|c| c.contains(&"-p".to_string())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_mounted_elsewhere_is_not_mounted_again() {
    let h = start(MountBackendChoice::Direct);
    let dev = h.add_fake_filesystem(UUID, "ext4");
    let devno = felhom_tests::helper_harness::devno_of(std::path::Path::new(&dev)).unwrap();
    let mut table = std::fs::read_to_string(h.mountinfo_path()).unwrap();
    table.push_str(&format!(
        "300 22 {devno} / /srv/data rw,relatime - ext4 {dev} rw\n"
    ));
    std::fs::write(h.mountinfo_path(), table).unwrap();
    let client = h.client().await.unwrap();
    let err = client
        .usb_mount(ctx(30), mount_req("b"))
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(&err, HelperError::Rejected { reason, .. } if reason.contains("already mounted at /srv/data")),
        "{err}"
    );
    assert!(!mounts_called(&h));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_systemd_backend_needs_a_stable_usb_name_and_never_overwrites_a_foreign_unit() {
    let h = start(MountBackendChoice::Systemd);
    h.add_fake_filesystem_on(UUID, "ext4", FakeDisk::UsbWithoutId);
    let client = h.client().await.unwrap();
    let err = client
        .usb_mount(ctx(30), mount_req("b"))
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(&err, HelperError::Rejected { reason, .. } if reason.contains("no stable name")),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(h.unit_dir()).unwrap().count(), 0);

    let h = start(MountBackendChoice::Systemd);
    h.add_fake_filesystem(UUID, "ext4");
    let mp = h.mount_root().join("b");
    // systemd-escape --path: components joined by '-', a '-' inside one written \x2d.
    let escaped: Vec<String> = mp
        .to_string_lossy()
        .split('/')
        .filter(|c| !c.is_empty())
        .map(|c| c.replace('-', "\\x2d"))
        .collect();
    let unit = h.unit_dir().join(format!("{}.mount", escaped.join("-")));
    let theirs = "[Mount]\nWhat=/dev/sdz9\nWhere=/somewhere\n";
    std::fs::write(&unit, theirs).unwrap();
    let client = h.client().await.unwrap();
    let err = client
        .usb_mount(ctx(30), mount_req("b"))
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(&err, HelperError::Busy { what } if what.contains("not written by felhom-helper")),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&unit).unwrap(), theirs);
    assert!(!h.tool_calls().iter().any(|c| c[0] == "systemctl"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_enable_is_rolled_back_on_a_fresh_deadline() {
    let h = HelperHarness::start(HelperHarnessOptions {
        backend: MountBackendChoice::Systemd,
        time_caps: TimeCaps {
            mount: 3,
            ..Default::default()
        },
        ..Default::default()
    })
    .unwrap();
    h.add_fake_filesystem(UUID, "ext4");
    h.set_hang("systemctl-enable", true);
    let client = h.client().await.unwrap();
    let started = Instant::now();
    let err = client
        .usb_mount(ctx(60), mount_req("b"))
        .await
        .unwrap()
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("timed out") && msg.contains("rolled back"),
        "{msg}"
    );
    assert!(started.elapsed() < Duration::from_secs(40));
    // The rollback ran although the operation's own deadline had passed.
    let calls = h.tool_calls();
    let enable = calls
        .iter()
        .position(|c| c.get(1).is_some_and(|a| a == "enable"))
        .expect("enable was called");
    assert!(
        calls[enable..]
            .iter()
            .any(|c| c[0] == "systemctl" && c.get(1).is_some_and(|a| a == "disable")),
        "disable --now after the hanging enable: {calls:?}"
    );
    assert_eq!(std::fs::read_dir(h.unit_dir()).unwrap().count(), 0);
    for pid in h.hang_pids() {
        assert!(!alive(pid), "pid {pid} of the hanging systemctl survived");
    }
    // State and audit agree: nothing is managed, and the record says rolled back.
    h.set_hang("systemctl-enable", false);
    let list = client.usb_list(ctx(10)).await.unwrap().unwrap();
    assert!(list.is_empty(), "{list:?}");
    let log = h.log();
    assert!(
        log.lines()
            .any(|l| l.contains("op=\"usb_mount\"") && l.contains("rolled back")),
        "{log}"
    );
    // And the name is free again.
    let info = client
        .usb_mount(ctx(30), mount_req("b"))
        .await
        .unwrap()
        .unwrap();
    assert!(info.mounted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mount_that_appears_after_a_timeout_is_taken_down_and_the_audit_says_so() {
    // The direct backend's mount(8) outlives the cap but completes in the meantime: the
    // helper finds the mount at reconciliation and unmounts it.
    let h = HelperHarness::start(HelperHarnessOptions {
        time_caps: TimeCaps {
            mount: 2,
            ..Default::default()
        },
        ..Default::default()
    })
    .unwrap();
    h.add_fake_filesystem(UUID, "ext4");
    // The fake mount sleeps, then writes its line; with a TERM trap it would finish, but the
    // fake mount does not trap TERM, so put the entry in the table ourselves at the cap,
    // as a mount(8) that finished at the last moment would.
    h.set_delay("mount", Some(30));
    let client = h.client().await.unwrap();
    let mp = h.mount_root().join("b");
    let table_path = h.mountinfo_path();
    let mp_s = mp.display().to_string();
    let injector = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1500));
        let mut t = std::fs::read_to_string(&table_path).unwrap();
        t.push_str(&format!("901 1 0:98 / {mp_s} rw - ext4 /dev/late rw\n"));
        std::fs::write(&table_path, t).unwrap();
    });
    let err = client
        .usb_mount(ctx(60), mount_req("b"))
        .await
        .unwrap()
        .unwrap_err();
    injector.join().unwrap();
    let msg = err.to_string();
    assert!(msg.contains("timed out"), "{msg}");
    assert!(
        msg.contains("unmounted again"),
        "reconciliation must report what it did: {msg}"
    );
    assert!(
        h.tool_calls()
            .iter()
            .any(|c| c[0] == "umount" && c.get(1).is_some_and(|a| *a == mp.display().to_string())),
        "{:?}",
        h.tool_calls()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_setsid_worker_of_pct_is_ended_before_the_next_operation_starts() {
    let h = HelperHarness::start(HelperHarnessOptions {
        time_caps: TimeCaps {
            golden_image: 2,
            ..Default::default()
        },
        ..Default::default()
    })
    .unwrap();
    // pct exits at once but leaves a worker in its own session (fork_worker's setsid()).
    h.set_detach("pct", Some("leave"));
    let client = h.client().await.unwrap();
    let req = golden(9100);
    client
        .golden_image_create(ctx(30), req.clone())
        .await
        .unwrap()
        .unwrap();
    let pids = h.hang_pids();
    assert_eq!(pids.len(), 1, "the worker recorded its pid");
    assert!(!alive(pids[0]), "the setsid worker outlived the operation");

    // pct hangs after starting the worker: at the cap both go, and an operation that waited
    // for the lock starts only once they are gone.
    let _ = std::fs::remove_file(h.dir().join("state/hang-pids"));
    h.set_detach("pct", Some("hang"));
    let req2 = golden(9101);
    let c1 = client.clone();
    let first = tokio::spawn(async move { c1.golden_image_create(ctx(60), req2).await });
    tokio::time::sleep(Duration::from_millis(700)).await;
    let second = h.client().await.unwrap();
    let listed = second.usb_list(ctx(60)).await.unwrap();
    let listed_at: Vec<bool> = h.hang_pids().iter().map(|p| alive(*p)).collect();
    assert!(listed.is_ok(), "{listed:?}");
    assert_eq!(listed_at.len(), 2, "worker and pct recorded their pids");
    assert!(
        listed_at.iter().all(|a| !a),
        "the second operation ran while processes of the first were alive"
    );
    let err = first.await.unwrap().unwrap().unwrap_err();
    assert!(matches!(err, HelperError::TimedOut { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_an_operation_finish_its_grace_then_ends_its_tree_and_audits_it() {
    let mut h = HelperHarness::start(HelperHarnessOptions {
        shutdown_grace_secs: 1,
        ..Default::default()
    })
    .unwrap();
    h.set_detach("pct", Some("hang"));
    let client = h.client().await.unwrap();
    let req = golden(9200);
    let call = tokio::spawn(async move { client.golden_image_create(ctx(120), req).await });
    let until = Instant::now() + Duration::from_secs(10);
    while h.hang_pids().len() < 2 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pids = h.hang_pids();
    assert_eq!(pids.len(), 2);
    let sent = Instant::now();
    h.terminate();
    let status = h.wait_exit(Duration::from_secs(30)).expect("helper exited");
    assert!(status.success(), "{status}");
    // Grace (1 s) + TERM grace (2 s) + slack; far below the 60 s golden-image cap.
    assert!(
        sent.elapsed() < Duration::from_secs(15),
        "{:?}",
        sent.elapsed()
    );
    for pid in pids {
        assert!(!alive(pid), "pid {pid} outlived the helper's shutdown");
    }
    let reply = call.await.unwrap();
    if let Ok(r) = reply {
        let e = r.unwrap_err();
        assert!(e.to_string().contains("shutting down"), "{e}");
    }
    let log = h.log();
    assert!(
        log.lines()
            .any(|l| l.contains("op=\"golden_image_create\"") && l.contains("shutting down")),
        "{log}"
    );
}

/// A request that waits for the operation lock when SIGTERM arrives is refused as
/// `Unavailable` once the running operation ends (within the shutdown grace), and its tool
/// never runs: nothing new starts that the shutdown would cut off half-way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_queued_behind_a_running_operation_at_sigterm_never_starts() {
    let mut h = HelperHarness::start(HelperHarnessOptions {
        shutdown_grace_secs: 20,
        ..Default::default()
    })
    .unwrap();
    // The running operation's pct takes 3 s, well within the 20 s grace.
    h.set_delay("pct", Some(3));
    let first_client = h.client().await.unwrap();
    let first = tokio::spawn(async move {
        first_client
            .golden_image_create(ctx(60), golden(9300))
            .await
    });
    let until = Instant::now() + Duration::from_secs(10);
    while !h.tool_calls().iter().any(|c| c.iter().any(|a| a == "9300")) {
        assert!(Instant::now() < until, "the first pct never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Another connection's request queues behind it for the operation lock.
    let second_client = h.client().await.unwrap();
    let second = tokio::spawn(async move {
        second_client
            .golden_image_create(ctx(60), golden(9301))
            .await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    h.terminate();
    let status = h.wait_exit(Duration::from_secs(30)).expect("helper exited");
    assert!(status.success(), "{status}");
    // The running operation finished normally within the grace.
    let done = first.await.unwrap();
    assert!(matches!(&done, Ok(Ok(_))), "{done:?}");
    // The queued one was refused (its reply may be lost when the helper exits right after).
    let refused = second.await.unwrap();
    if let Ok(r) = &refused {
        assert!(
            matches!(r, Err(HelperError::Unavailable { .. })),
            "{refused:?}"
        );
    }
    assert!(
        !h.tool_calls().iter().any(|c| c.iter().any(|a| a == "9301")),
        "the queued request ran its tool: {:?}",
        h.tool_calls()
    );
    let log = h.log();
    assert!(
        log.lines()
            .any(|l| l.contains("9301") && l.contains("the helper is stopping")),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_of_hellos_and_refusals_cannot_push_out_an_audit_record() {
    let h = start(MountBackendChoice::Direct);
    h.add_fake_filesystem(UUID, "ext4");
    let before = h.log().lines().count();
    // Four clients say hello on new connections as fast as they can for two seconds.
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let socket = h.socket_path().to_path_buf();
        tasks.push(tokio::spawn(async move {
            let until = Instant::now() + Duration::from_secs(2);
            let mut n = 0u32;
            while Instant::now() < until {
                let Ok(stream) = tokio::net::UnixStream::connect(&socket).await else {
                    continue;
                };
                let c = HelperClient::new(
                    tarpc::client::Config::default(),
                    felhom_protocol::transport::client_transport(stream),
                )
                .spawn();
                if c.hello(ctx(5), PROTOCOL_VERSION)
                    .await
                    .is_ok_and(|r| r.is_ok())
                {
                    n += 1;
                }
            }
            n
        }));
    }
    // As root, a refused uid floods too.
    let refused =
        if nix::unistd::geteuid().is_root() && std::path::Path::new("/usr/bin/setpriv").exists() {
            h.open_socket_to_everyone().unwrap();
            let probe = h.dir().join("felhom-probe");
            std::fs::copy(env!("CARGO_BIN_EXE_felhom-probe"), &probe).unwrap();
            let out = Command::new("/usr/bin/setpriv")
                .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
                .arg(&probe)
                .arg(h.socket_path())
                .args(["--flood", "2"])
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            text.trim()
                .strip_prefix("connections ")
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0)
        } else {
            eprintln!("note: not root; the refused-uid half of the flood is skipped");
            0
        };
    let mut hellos = 0;
    for t in tasks {
        hellos += t.await.unwrap();
    }
    assert!(hellos > 100, "the flood must be a flood: {hellos} hellos");
    // The privileged operation right after the flood has its record.
    let client = h.client().await.unwrap();
    client
        .usb_mount(ctx(30), mount_req("after-flood"))
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = h.log();
    let lines: Vec<&str> = log.lines().skip(before).collect();
    eprintln!(
        "flood: {hellos} hellos and {refused} refused connections produced {} log lines",
        lines.len()
    );
    assert!(
        lines.len() < 50,
        "noise must be aggregated, got {} lines:\n{}",
        lines.len(),
        lines.join("\n")
    );
    let record = lines
        .iter()
        .find(|l| l.contains("op=\"usb_mount\"") && l.contains("after-flood"))
        .unwrap_or_else(|| panic!("no audit record of the mount:\n{log}"));
    assert!(record.contains("seq="), "{record}");
    if refused > 0 {
        assert!(
            lines
                .iter()
                .any(|l| l.contains("refused a connection") && l.contains("peer_uid=65534")),
            "the first refusal is recorded: {log}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_stderr_cannot_forge_an_audit_record() {
    let h = start(MountBackendChoice::Direct);
    h.add_fake_filesystem(UUID, "ext4");
    h.set_mount_fails(true);
    h.set_tool_stderr(
        "mount",
        b"bad\n2026-12-01T00:00:00Z  INFO audit: seq=1 op=\"usb_mount\" outcome=\"ok\"\r\x1b[2K\x1b[32mgreen\x1b[0m\n",
    );
    let client = h.client().await.unwrap();
    let before = h.log().lines().count();
    let err = client
        .usb_mount(ctx(30), mount_req("forged"))
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, HelperError::ToolFailed { .. }), "{err}");
    let log = h.log();
    let new: Vec<&str> = log.lines().skip(before).collect();
    assert!(!log.contains('\x1b'), "raw escape in the log: {log:?}");
    assert!(!log.contains('\r'), "raw carriage return in the log");
    let audits: Vec<&&str> = new.iter().filter(|l| l.contains("op=")).collect();
    assert_eq!(
        audits.len(),
        1,
        "exactly one audit line for the one operation:\n{}",
        new.join("\n")
    );
    assert!(
        audits[0].contains("\\nINFO") || audits[0].contains("\\n2026"),
        "{}",
        audits[0]
    );
    assert!(audits[0].contains("\\x1b[32m"), "{}", audits[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_hanging_mount_still_rolls_it_back() {
    let mut h = HelperHarness::start(HelperHarnessOptions {
        backend: MountBackendChoice::Systemd,
        shutdown_grace_secs: 1,
        time_caps: TimeCaps {
            mount: 60,
            ..Default::default()
        },
        ..Default::default()
    })
    .unwrap();
    h.add_fake_filesystem(UUID, "ext4");
    h.set_hang("systemctl-enable", true);
    let client = h.client().await.unwrap();
    let call = tokio::spawn(async move { client.usb_mount(ctx(120), mount_req("b")).await });
    let until = Instant::now() + Duration::from_secs(10);
    while h.hang_pids().len() < 2 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(h.hang_pids().len(), 2, "systemctl enable is hanging");
    // PID 1's mount job completes while enable still hangs: the rollback's `disable --now`
    // has to take it down again.
    let mp = h.mount_root().join("b");
    let mut table = std::fs::read_to_string(h.mountinfo_path()).unwrap();
    table.push_str(&format!(
        "902 1 0:97 / {} rw - ext4 /dev/late rw\n",
        mp.display()
    ));
    std::fs::write(h.mountinfo_path(), table).unwrap();
    h.terminate();
    let status = h.wait_exit(Duration::from_secs(40)).expect("helper exited");
    assert!(status.success(), "{status}");
    let _ = call.await;
    // The rollback ran after the shutdown stopped the hanging enable: the shutdown does not
    // stop cleanup tools, only their own fresh deadline would.
    let calls = h.tool_calls();
    let enable = calls
        .iter()
        .position(|c| c.get(1).is_some_and(|a| a == "enable"))
        .expect("enable was called");
    assert!(
        calls[enable..]
            .iter()
            .any(|c| c[0] == "systemctl" && c.get(1).is_some_and(|a| a == "disable")),
        "{calls:?}"
    );
    assert_eq!(std::fs::read_dir(h.unit_dir()).unwrap().count(), 0);
    let table = std::fs::read_to_string(h.mountinfo_path()).unwrap();
    assert!(
        !table.contains(&mp.display().to_string()),
        "still mounted after the rollback: {table}"
    );
    let log = h.log();
    assert!(
        log.lines().any(|l| l.contains("op=\"usb_mount\"")
            && l.contains("shutting down")
            && l.contains("nothing is mounted there")),
        "{log}"
    );
}

/// The by-id names of the fake disks (the harness names them `usb-Fake_Disk_<n>-0:0-part1`).
fn by_id_names(h: &HelperHarness) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(h.by_id_dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_disk_with_the_same_usb_serial_is_refused() {
    for backend in [MountBackendChoice::Direct, MountBackendChoice::Systemd] {
        let h = start(backend);
        h.add_fake_filesystem(UUID, "ext4");
        let mine = by_id_names(&h).remove(0);
        let serial = mine
            .trim_start_matches("usb-Fake_Disk_")
            .trim_end_matches("-0:0-part1")
            .to_string();
        // Another device, another vendor and model, the same serial: a gadget made to pass
        // for the backup disk. It points at a different block device than ours.
        let other = h.add_fake_filesystem(UUID2, "ext4");
        let copy = h.by_id_dir().join(format!("usb-Evil_Gadget_{serial}-0:0"));
        std::os::unix::fs::symlink(&other, &copy).unwrap();
        let client = h.client().await.unwrap();
        let err = client
            .usb_mount(ctx(30), mount_req("b"))
            .await
            .unwrap()
            .unwrap_err();
        assert!(
            matches!(&err, HelperError::Rejected { reason, .. }
                if reason.contains("the same USB serial") && reason.contains(&format!("usb-Evil_Gadget_{serial}-0:0"))),
            "{backend:?}: {err}"
        );
        assert!(!mounts_called(&h), "{backend:?}");
        // The control: without the copy the disk mounts.
        std::fs::remove_file(&copy).unwrap();
        let info = client
            .usb_mount(ctx(30), mount_req("b"))
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("{backend:?}: {e}"));
        assert!(info.mounted);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_usb_by_id_name_can_name_the_disk_in_a_unit() {
    let h = start(MountBackendChoice::Systemd);
    let dev = h.add_fake_filesystem_on(UUID, "ext4", FakeDisk::UsbWithoutId);
    // udev's other names for the same device: an ATA name and a WWN. Neither is a USB
    // identity, so neither may stand in a unit's What=.
    for n in ["ata-Fake_SSD_123-part1", "wwn-0x5000c500a1b2c3d4-part1"] {
        std::os::unix::fs::symlink(&dev, h.by_id_dir().join(n)).unwrap();
    }
    let client = h.client().await.unwrap();
    let err = client
        .usb_mount(ctx(30), mount_req("b"))
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(&err, HelperError::Rejected { reason, .. } if reason.contains("no stable name (a usb-… link)")),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(h.unit_dir()).unwrap().count(), 0);
    assert!(!mounts_called(&h));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unit_that_starts_without_mounting_is_a_failure_and_is_rolled_back() {
    let h = start(MountBackendChoice::Systemd);
    h.add_fake_filesystem(UUID, "ext4");
    std::fs::write(h.dir().join("state/enable-no-mount"), "").unwrap();
    let client = h.client().await.unwrap();
    let err = client
        .usb_mount(ctx(30), mount_req("b"))
        .await
        .unwrap()
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("reported success, but nothing is mounted") && msg.contains("rolled back"),
        "{msg}"
    );
    // Exactly the steps taken are undone: the unit is disabled and its file removed.
    let calls = h.tool_calls();
    assert!(
        calls
            .iter()
            .any(|c| c[0] == "systemctl" && c.get(1).is_some_and(|a| a == "disable")),
        "{calls:?}"
    );
    assert_eq!(std::fs::read_dir(h.unit_dir()).unwrap().count(), 0);
    assert!(client.usb_list(ctx(10)).await.unwrap().unwrap().is_empty());
    assert!(
        !h.mount_root().join("b").exists(),
        "the mount point it made is gone"
    );
}

/// A FUSE mount (`felhom-stuck-fuse`) whose lookup of `stuck` is never answered; dropping it
/// ends the server (which frees a process stuck there) and detaches the mount.
struct StuckFuse {
    server: std::process::Child,
    mountpoint: std::path::PathBuf,
}

impl StuckFuse {
    fn start(mountpoint: &std::path::Path, marker: &std::path::Path) -> Option<StuckFuse> {
        std::fs::create_dir_all(mountpoint).unwrap();
        let server = Command::new(env!("CARGO_BIN_EXE_felhom-stuck-fuse"))
            .arg(mountpoint)
            .arg(marker)
            .spawn()
            .unwrap();
        let mut fuse = StuckFuse {
            server,
            mountpoint: mountpoint.to_path_buf(),
        };
        let until = Instant::now() + Duration::from_secs(10);
        let needle = format!(" {} ", mountpoint.display());
        while !std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .contains(&needle)
        {
            if fuse.server.try_wait().unwrap().is_some() || Instant::now() > until {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(fuse)
    }

    /// Ends the server: the stuck lookup fails and its process can die.
    fn release(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

impl Drop for StuckFuse {
    fn drop(&mut self) {
        self.release();
        let _ = nix::mount::umount2(&self.mountpoint, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// A process of an operation that SIGKILL cannot end — a real one, in uninterruptible sleep
/// on a FUSE request its server has taken and never answers — fails the operation naming it,
/// keeps the operation lock (later requests get `Busy` naming it, pct does not run again)
/// until it is gone, and then the helper serves again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_that_survives_sigkill_keeps_the_lock_until_it_is_gone() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipping the SIGKILL-survivor test: mounting a FUSE filesystem needs root");
        return;
    }
    if !std::path::Path::new("/dev/fuse").exists() {
        eprintln!("skipping the SIGKILL-survivor test: no /dev/fuse");
        return;
    }
    let h = start(MountBackendChoice::Direct);
    let mountpoint = h.dir().join("fuse");
    let marker = h.dir().join("state/fuse-lookup-taken");
    let Some(mut fuse) = StuckFuse::start(&mountpoint, &marker) else {
        eprintln!("skipping the SIGKILL-survivor test: the FUSE mount did not come up");
        return;
    };
    std::fs::write(
        h.dir().join("state/stuck-pct"),
        format!(
            "{}\n{}\n",
            mountpoint.join("stuck").display(),
            marker.display()
        ),
    )
    .unwrap();
    let client = h.client().await.unwrap();
    let err = client
        .golden_image_create(ctx(60), golden(9300))
        .await
        .unwrap()
        .unwrap_err();
    let pids = h.hang_pids();
    assert_eq!(pids.len(), 1, "the worker recorded its pid");
    let stuck = pids[0];
    let named = format!("pid {stuck} (stat)");
    assert!(
        matches!(&err, HelperError::Internal { message } if message.contains(&named)
            && message.contains("could not be killed")),
        "{err}"
    );
    assert!(alive(stuck), "the worker was to survive SIGKILL");
    let state = std::fs::read_to_string(format!("/proc/{stuck}/stat")).unwrap();
    assert!(
        state.contains(") D "),
        "not in uninterruptible sleep: {state}"
    );
    // The audit record of the operation names it.
    assert!(
        h.log()
            .lines()
            .any(|l| l.contains("golden_image_create") && l.contains(&named)),
        "{}",
        h.log()
    );

    // While it lives, no privileged operation starts: Busy, naming it, at once.
    std::fs::remove_file(h.dir().join("state/stuck-pct")).unwrap();
    let asked = Instant::now();
    let busy = client
        .golden_image_create(ctx(60), golden(9301))
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "waited for the lock"
    );
    assert!(
        matches!(&busy, HelperError::Busy { what } if what.contains(&named)),
        "{busy}"
    );
    let listed = client.usb_list(ctx(60)).await.unwrap().unwrap_err();
    assert!(
        matches!(&listed, HelperError::Busy { what } if what.contains(&named)),
        "{listed}"
    );
    let pct_runs = |h: &HelperHarness| h.tool_calls().iter().filter(|c| c[0] == "pct").count();
    assert_eq!(pct_runs(&h), 1, "pct ran while the survivor lived");

    // The FUSE server goes away, the stuck lookup fails, the survivor dies; the helper's
    // next look finds the tree empty and releases the lock.
    fuse.release();
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        match client.usb_list(ctx(60)).await.unwrap() {
            Ok(_) => break,
            Err(HelperError::Busy { .. }) if Instant::now() < until => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => panic!("the lock was never released: {other:?}\n{}", h.log()),
        }
    }
    assert!(!alive(stuck));
    client
        .golden_image_create(ctx(60), golden(9302))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(pct_runs(&h), 2);
    drop(fuse);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mount_and_unmount_records_name_the_device_its_number_and_usb_name() {
    let h = start(MountBackendChoice::Direct);
    let dev = h.add_fake_filesystem(UUID, "ext4");
    let devno = felhom_tests::helper_harness::devno_of(std::path::Path::new(&dev)).unwrap();
    let by_id = by_id_names(&h).remove(0);
    let client = h.client().await.unwrap();
    client
        .usb_mount(ctx(30), mount_req("rec"))
        .await
        .unwrap()
        .unwrap();
    client
        .usb_unmount(ctx(30), MountName::new("rec").unwrap())
        .await
        .unwrap()
        .unwrap();
    let log = h.log();
    for op in ["op=\"usb_mount\"", "op=\"usb_unmount\""] {
        let line = log
            .lines()
            .find(|l| l.contains(op) && l.contains("outcome"))
            .unwrap_or_else(|| panic!("no {op} record in\n{log}"));
        assert!(line.contains(&format!("device=\"{dev}\"")), "{line}");
        assert!(line.contains(&format!("devno=\"{devno}\"")), "{line}");
        assert!(line.contains(&by_id), "{line}");
    }
}
