//! End to end: the real `felhom-helper` under `systemd-socket-activate`, a real tarpc client,
//! fake tools that record their argv, and fake sysfs trees. One test per operation family.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use felhom_protocol::*;
use felhom_tests::helper_harness::{
    HelperHarness, HelperHarnessOptions, MountBackendChoice, ctx, golden_request as golden,
};

const UUID: &str = "ada110f6-bd6d-49db-955d-342c27627b61";
const UUID2: &str = "0f3b9c1e-7d22-4c55-8a9e-1b2c3d4e5f60";

/// The options the helper must force on this machine's kernel: `nosymfollow` exists since
/// Linux 5.10 (worked out here from the release, not taken from the helper).
/// The options the helper forces for `fs` on this kernel.
fn expected_options_for(fs: FsType) -> String {
    let base = expected_options().replace(",nofail", "");
    match fs {
        FsType::Ext4 | FsType::Exfat => format!("{base},errors=remount-ro,nofail"),
        FsType::Btrfs => format!("{base},fatal_errors=bug,nofail"),
        FsType::Xfs => format!("{base},nofail"),
    }
}

fn expected_options() -> String {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut v = release
        .trim()
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (v.next().unwrap(), v.next().unwrap());
    if (major, minor) >= (5, 10) {
        "nodev,nosuid,noexec,nosymfollow,nofail".into()
    } else {
        "nodev,nosuid,noexec,nofail".into()
    }
}

fn uuid(s: &str) -> FsUuid {
    FsUuid::new(s).unwrap()
}

fn name(s: &str) -> MountName {
    MountName::new(s).unwrap()
}

fn start(backend: MountBackendChoice) -> HelperHarness {
    HelperHarness::start(HelperHarnessOptions {
        backend,
        ..Default::default()
    })
    .unwrap()
}

#[tokio::test]
async fn hello_reports_version_and_capabilities() {
    let h = start(MountBackendChoice::Direct);
    let client = h.client().await.unwrap();
    let hello = client
        .hello(ctx(10), PROTOCOL_VERSION)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(hello.protocol_version, PROTOCOL_VERSION);
    assert!(!hello.helper_version.is_empty());
    assert_eq!(hello.mount_backend, MountBackend::Direct);
    for c in [
        Capability::GoldenImage,
        Capability::UsbMount,
        Capability::Smart,
        Capability::Sensors,
    ] {
        assert!(hello.capabilities.contains(&c), "{c:?} in {hello:?}");
    }
    let err = client
        .hello(ctx(10), PROTOCOL_VERSION + 1)
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(
        err,
        HelperError::VersionMismatch {
            helper: PROTOCOL_VERSION,
            agent: PROTOCOL_VERSION + 1
        }
    );
}

#[tokio::test]
async fn golden_image_runs_the_fixed_pct_argv() {
    let h = start(MountBackendChoice::Direct);
    let client = h.client().await.unwrap();
    let reply = client
        .golden_image_create(ctx(30), golden(9000))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reply.vmid.get(), 9000);
    assert_eq!(reply.output.exit_code, Some(0));
    assert!(
        reply.output.stdout.contains("extracting archive"),
        "{reply:?}"
    );
    let calls = h.tool_calls();
    assert_eq!(
        calls,
        vec![vec![
            "pct",
            "create",
            "9000",
            "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst",
            "--unprivileged",
            "1",
            "--features",
            "keyctl=1,nesting=1",
            "--hostname",
            "golden",
            "--rootfs",
            "local-lvm:8",
            "--memory",
            "1024",
            "--cores",
            "2",
            "--net0",
            "name=eth0,bridge=vmbr0,ip=dhcp",
        ]]
    );
    // The same vmid again: pct says it exists, the helper says Busy.
    let err = client
        .golden_image_create(ctx(30), golden(9000))
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(&err, HelperError::Busy { what } if what.contains("9000")),
        "{err}"
    );
    let log = h.log();
    assert!(log.contains("golden_image_create"), "{log}");
    assert!(log.contains("peer_uid="), "audit record expected: {log}");
}

#[tokio::test]
async fn golden_image_names_only_configured_storages_templates_and_bridges() {
    // Default helper.json (no golden_image key): a stock PVE install's local-lvm, local, vmbr0.
    let h = start(MountBackendChoice::Direct);
    let client = h.client().await.unwrap();
    let with = |storage: &str, template: &str, bridge: &str| GoldenImageRequest {
        storage: StorageId::new(storage).unwrap(),
        template: TemplateVolid::new(template).unwrap(),
        bridge: Bridge::new(bridge).unwrap(),
        ..golden(9100)
    };
    let template = "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst";
    for (req, field, reason) in [
        (
            with("tank", template, "vmbr0"),
            "storage",
            "storage 'tank' is not in golden_image.storages (helper.json); add it there to allow it",
        ),
        (
            with("local-lvm", "nfs1:vztmpl/debian-12.tar.zst", "vmbr0"),
            "template",
            "template storage 'nfs1' is not in golden_image.template_storages (helper.json); \
             add it there to allow it",
        ),
        (
            with("local-lvm", template, "vmbr9"),
            "bridge",
            "bridge 'vmbr9' is not in golden_image.bridges (helper.json); add it there to allow it",
        ),
    ] {
        let err = client
            .golden_image_create(ctx(30), req)
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(
            err,
            HelperError::Rejected {
                field: field.into(),
                reason: reason.into()
            }
        );
    }
    assert!(h.tool_calls().is_empty(), "pct ran: {:?}", h.tool_calls());
    // The stock values pass and reach pct.
    let reply = client
        .golden_image_create(ctx(30), golden(9100))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reply.output.exit_code, Some(0));
    assert_eq!(h.tool_calls().len(), 1, "{:?}", h.tool_calls());
    drop(client);
    drop(h);

    // An operator's own lists replace the defaults: tank and vmbr9 pass, local-lvm no longer.
    let mut h = HelperHarness::prepare(&HelperHarnessOptions::default()).unwrap();
    let text = std::fs::read_to_string(h.config_path()).unwrap();
    let mut cfg: serde_json::Value = serde_json::from_str(&text).unwrap();
    cfg["golden_image"] = serde_json::json!({
        "storages": ["tank"],
        "template_storages": ["local", "nfs1"],
        "bridges": ["vmbr9"],
    });
    std::fs::write(h.config_path(), cfg.to_string()).unwrap();
    h.launch_activated().unwrap();
    let client = h.client().await.unwrap();
    let reply = client
        .golden_image_create(
            ctx(30),
            with("tank", "nfs1:vztmpl/debian-12.tar.zst", "vmbr9"),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reply.output.exit_code, Some(0));
    let calls = h.tool_calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert!(calls[0].contains(&"tank:8".to_string()), "{calls:?}");
    assert!(
        calls[0].contains(&"name=eth0,bridge=vmbr9,ip=dhcp".to_string()),
        "{calls:?}"
    );
    let err = client
        .golden_image_create(ctx(30), golden(9101))
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(&err, HelperError::Rejected { field, .. } if field == "storage"),
        "{err}"
    );
    assert_eq!(h.tool_calls().len(), 1, "pct ran for a refused request");
}

#[tokio::test]
async fn usb_mount_direct_backend_end_to_end() {
    let h = start(MountBackendChoice::Direct);
    let dev = h.add_fake_filesystem(UUID, "ext4");
    let client = h.client().await.unwrap();
    let req = UsbMountRequest {
        uuid: uuid(UUID),
        name: name("backup-1"),
    };
    let info = client
        .usb_mount(ctx(30), req.clone())
        .await
        .unwrap()
        .unwrap();
    let mp = h.mount_root().join("backup-1");
    assert!(info.mounted, "{info:?}");
    assert_eq!(info.mount_point, mp.display().to_string());
    assert_eq!(info.fstype, FsType::Ext4);
    assert_eq!(info.options, expected_options_for(FsType::Ext4));
    assert_eq!(info.backend, MountBackend::Direct);
    assert!(mp.is_dir());
    let calls = h.tool_calls();
    let mp_s = mp.display().to_string();
    assert_eq!(
        calls,
        vec![
            vec![
                "blkid",
                "-c",
                "/dev/null",
                "-t",
                &format!("UUID={UUID}"),
                "-o",
                "device"
            ],
            vec!["blkid", "-c", "/dev/null", "-p", "-o", "export", &dev],
            vec![
                "mount",
                "-i",
                "-t",
                "ext4",
                "-o",
                &expected_options_for(FsType::Ext4),
                &dev,
                &mp_s
            ],
            // The UUID read again from the mounted device.
            vec!["blkid", "-c", "/dev/null", "-p", "-o", "export", &dev],
        ]
    );
    let record = std::fs::read_to_string(h.record_file()).unwrap();
    assert!(
        record.contains(&format!(
            "UUID={UUID} {mp_s} ext4 {} 0 2",
            expected_options_for(FsType::Ext4)
        )),
        "{record}"
    );

    // Idempotent: same UUID, same name, already mounted: no new tool call.
    let again = client
        .usb_mount(ctx(30), req.clone())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again, info);
    assert_eq!(h.tool_calls().len(), 4);

    // The name is taken by another UUID; the UUID is managed under another name.
    h.add_fake_filesystem(UUID2, "xfs");
    let err = client
        .usb_mount(
            ctx(30),
            UsbMountRequest {
                uuid: uuid(UUID2),
                name: name("backup-1"),
            },
        )
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, HelperError::Busy { .. }), "{err}");
    let err = client
        .usb_mount(
            ctx(30),
            UsbMountRequest {
                uuid: uuid(UUID),
                name: name("other"),
            },
        )
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, HelperError::Busy { .. }), "{err}");

    let list = client.usb_list(ctx(10)).await.unwrap().unwrap();
    assert_eq!(list, vec![info.clone()]);

    let reply = client
        .usb_unmount(ctx(30), name("backup-1"))
        .await
        .unwrap()
        .unwrap();
    assert!(reply.was_mounted);
    assert_eq!(
        h.tool_calls().last().unwrap(),
        &vec!["umount".to_string(), mp_s.clone()]
    );
    let record = std::fs::read_to_string(h.record_file()).unwrap();
    assert!(!record.contains(UUID), "{record}");
    assert!(
        !std::fs::read_to_string(h.mountinfo_path())
            .unwrap()
            .contains(&mp_s)
    );
    assert!(client.usb_list(ctx(10)).await.unwrap().unwrap().is_empty());
    let err = client
        .usb_unmount(ctx(30), name("backup-1"))
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, HelperError::NotFound { .. }), "{err}");
}

#[tokio::test]
async fn usb_mount_refuses_unknown_and_disallowed_filesystems() {
    let h = start(MountBackendChoice::Direct);
    let client = h.client().await.unwrap();
    let err = client
        .usb_mount(
            ctx(30),
            UsbMountRequest {
                uuid: uuid(UUID),
                name: name("x"),
            },
        )
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, HelperError::NotFound { .. }), "{err}");

    for (u, ty) in [(UUID2, "vfat"), ("DEAD-BEEF", "exfat"), (UUID, "ntfs")] {
        h.add_fake_filesystem(u, ty);
        let err = client
            .usb_mount(
                ctx(30),
                UsbMountRequest {
                    uuid: uuid(u),
                    name: name("x"),
                },
            )
            .await
            .unwrap()
            .unwrap_err();
        assert!(
            matches!(&err, HelperError::Rejected { reason, .. } if reason.contains(ty)),
            "{ty}: {err}"
        );
    }
    assert!(
        !h.tool_calls().iter().any(|c| c[0] == "mount"),
        "nothing may be mounted"
    );
    // The mount point must be a plain empty directory the helper owns.
    h.add_fake_filesystem(UUID2, "ext4");
    std::os::unix::fs::symlink("/etc", h.mount_root().join("link")).unwrap();
    std::fs::create_dir(h.mount_root().join("full")).unwrap();
    std::fs::write(h.mount_root().join("full/data"), "x").unwrap();
    for (n, symlink) in [("link", true), ("full", false)] {
        let err = client
            .usb_mount(
                ctx(30),
                UsbMountRequest {
                    uuid: uuid(UUID2),
                    name: name(n),
                },
            )
            .await
            .unwrap()
            .unwrap_err();
        if symlink {
            assert!(
                matches!(&err, HelperError::Rejected { reason, .. } if reason.contains("symbolic link")),
                "{err}"
            );
        } else {
            assert!(
                matches!(&err, HelperError::Busy { what } if what.contains("non-empty")),
                "{err}"
            );
        }
    }
    assert!(
        !h.tool_calls().iter().any(|c| c[0] == "mount"),
        "nothing may be mounted"
    );
    // A failing mount(8) is a ToolFailed with its stderr, and leaves no record.
    h.add_fake_filesystem(UUID2, "btrfs");
    h.set_mount_fails(true);
    let err = client
        .usb_mount(
            ctx(30),
            UsbMountRequest {
                uuid: uuid(UUID2),
                name: name("y"),
            },
        )
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(&err, HelperError::ToolFailed { tool, exit_code: Some(32), stderr_tail } if tool == "mount" && stderr_tail.contains("bad superblock")),
        "{err}"
    );
    assert!(client.usb_list(ctx(10)).await.unwrap().unwrap().is_empty());
}

#[tokio::test]
async fn exfat_mounts_only_when_the_config_opts_in() {
    let h = HelperHarness::start(HelperHarnessOptions {
        allow_exfat: true,
        ..Default::default()
    })
    .unwrap();
    h.add_fake_filesystem("DEAD-BEEF", "exfat");
    let client = h.client().await.unwrap();
    let info = client
        .usb_mount(
            ctx(30),
            UsbMountRequest {
                uuid: uuid("dead-beef"),
                name: name("stick"),
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(info.fstype, FsType::Exfat);
    assert_eq!(info.uuid.as_str(), "DEAD-BEEF");
    assert!(info.mounted);
}

#[tokio::test]
async fn usb_mount_systemd_backend_writes_and_removes_a_mount_unit() {
    let h = start(MountBackendChoice::Systemd);
    let dev = h.add_fake_filesystem(UUID, "xfs");
    let by_id: Vec<PathBuf> = std::fs::read_dir(h.by_id_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(by_id.len(), 1);
    assert_eq!(
        std::fs::canonicalize(&by_id[0]).unwrap(),
        std::fs::canonicalize(&dev).unwrap()
    );
    let client = h.client().await.unwrap();
    let info = client
        .usb_mount(
            ctx(30),
            UsbMountRequest {
                uuid: uuid(UUID),
                name: name("usb-2"),
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert!(info.mounted, "{info:?}");
    assert_eq!(info.backend, MountBackend::Systemd);
    let unit = info.unit.clone().unwrap();
    assert!(unit.ends_with("-mnt-usb\\x2d2.mount"), "{unit}");
    if let Ok(out) = std::process::Command::new("/usr/bin/systemd-escape")
        .args(["--path", "--suffix=mount", &info.mount_point])
        .output()
    {
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), unit);
    }
    let text = std::fs::read_to_string(h.unit_dir().join(&unit)).unwrap();
    for line in [
        // The physical USB disk's stable name, never the UUID (which anything can copy).
        format!("What={}", by_id[0].display()),
        format!("Where={}", info.mount_point),
        "Type=xfs".to_string(),
        format!("Options={}", expected_options_for(FsType::Xfs)),
        "WantedBy=multi-user.target".to_string(),
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
    }
    let calls = h.tool_calls();
    let tail: Vec<Vec<String>> = calls[calls.len() - 3..calls.len() - 1].to_vec();
    assert_eq!(
        tail,
        vec![
            vec!["systemctl".to_string(), "daemon-reload".into()],
            vec![
                "systemctl".into(),
                "enable".into(),
                "--now".into(),
                unit.clone()
            ],
        ]
    );
    assert!(
        !calls.iter().any(|c| c[0] == "mount"),
        "PID 1 mounts, not the helper"
    );
    assert_eq!(client.usb_list(ctx(10)).await.unwrap().unwrap(), vec![info]);

    let reply = client
        .usb_unmount(ctx(30), name("usb-2"))
        .await
        .unwrap()
        .unwrap();
    assert!(reply.was_mounted);
    assert!(!h.unit_dir().join(&unit).exists());
    let calls = h.tool_calls();
    assert_eq!(
        calls[calls.len() - 2..].to_vec(),
        vec![
            vec![
                "systemctl".to_string(),
                "disable".into(),
                "--now".into(),
                unit
            ],
            vec!["systemctl".into(), "daemon-reload".into()],
        ]
    );
    assert!(client.usb_list(ctx(10)).await.unwrap().unwrap().is_empty());
}

#[tokio::test]
async fn smart_scan_and_read_with_usb_bridge_retry() {
    let h = start(MountBackendChoice::Direct);
    let ok = r#"{"json_format_version":[1,0],"smartctl":{"exit_status":0},"smart_status":{"passed":true}}"#;
    h.add_fake_disk("sda", ok, 0);
    let bridge = r#"{"smartctl":{"messages":[{"string":"/dev/sdb: Unknown USB bridge [0x048d:0x1234 (0x200)]","severity":"error"}],"exit_status":1}}"#;
    let failing = r#"{"smartctl":{"exit_status":216},"smart_status":{"passed":false}}"#;
    h.add_fake_disk("sdb", bridge, 1);
    h.set_smart_output("sdb", Some("sat"), failing, 216);
    std::fs::create_dir_all(h.dir().join("sys/block/loop0")).unwrap();
    std::fs::create_dir_all(h.dir().join("sys/block/dm-0")).unwrap();
    let client = h.client().await.unwrap();

    let disks = client.smart_scan(ctx(10)).await.unwrap().unwrap();
    let names: Vec<&str> = disks.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, vec!["sda", "sdb"]);
    assert_eq!(disks[0].size_bytes, 1953525168 * 512);
    assert_eq!(disks[0].model.as_deref(), Some("FAKE sda"));

    let r = client
        .smart_read(ctx(10), DiskName::new("sda").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((r.exit_status, r.json.trim(), r.device_type), (0, ok, None));
    assert!(!r.truncated);

    let r = client
        .smart_read(ctx(10), DiskName::new("sdb").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.exit_status, 216);
    assert_eq!(r.device_type.as_deref(), Some("sat"));
    assert_eq!(r.json.trim(), failing);
    let calls = h.tool_calls();
    assert_eq!(
        calls,
        vec![
            vec!["smartctl", "--json=c", "-x", "/dev/sda"],
            vec!["smartctl", "--json=c", "-x", "/dev/sdb"],
            vec!["smartctl", "--json=c", "-x", "-d", "sat", "/dev/sdb"],
        ]
    );
    // A virtual device cannot even be named: DiskName refuses it before anything is sent.
    assert!(DiskName::new("loop0").is_err());
    for missing in ["sdz"] {
        let err = client
            .smart_read(ctx(10), DiskName::new(missing).unwrap())
            .await
            .unwrap()
            .unwrap_err();
        assert!(
            matches!(err, HelperError::NotFound { .. }),
            "{missing}: {err}"
        );
    }
    assert_eq!(h.tool_calls().len(), 3, "no smartctl for unknown disks");
}

#[tokio::test]
async fn smart_json_is_bounded() {
    let h = HelperHarness::start(HelperHarnessOptions {
        max_output_bytes: 4096,
        ..Default::default()
    })
    .unwrap();
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(100_000));
    h.add_fake_disk("sda", &big, 0);
    let client = h.client().await.unwrap();
    let r = client
        .smart_read(ctx(10), DiskName::new("sda").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(r.truncated);
    assert_eq!(r.json.len(), 4096);
}

#[tokio::test]
async fn sensors_come_from_hwmon_in_si_units() {
    let h = start(MountBackendChoice::Direct);
    h.add_fake_hwmon(
        "hwmon0",
        "coretemp",
        &[("temp1_input", "42500"), ("temp1_label", "Package id 0")],
    );
    h.add_fake_hwmon(
        "hwmon3",
        "nct6798",
        &[
            ("fan2_input", "900"),
            ("in1_input", "3300"),
            ("power1_average", "12000000"),
        ],
    );
    let client = h.client().await.unwrap();
    let r = client.sensors_read(ctx(10)).await.unwrap().unwrap();
    let got: Vec<(&str, &str, &str, SensorKind, f64)> = r
        .iter()
        .map(|s| {
            (
                s.chip.as_str(),
                s.device.as_str(),
                s.label.as_str(),
                s.kind,
                s.value,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "coretemp",
                "hwmon0",
                "Package id 0",
                SensorKind::Temperature,
                42.5
            ),
            ("nct6798", "hwmon3", "fan2", SensorKind::Fan, 900.0),
            ("nct6798", "hwmon3", "in1", SensorKind::Voltage, 3.3),
            ("nct6798", "hwmon3", "power1", SensorKind::Power, 12.0),
        ]
    );
    assert!(h.tool_calls().is_empty(), "sensors run no subprocess");
}

#[tokio::test]
async fn development_mode_serves_the_same_service() {
    let h = HelperHarness::start_dev(HelperHarnessOptions::default()).unwrap();
    let client = h.client().await.unwrap();
    let hello = client
        .hello(ctx(10), PROTOCOL_VERSION)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(hello.protocol_version, PROTOCOL_VERSION);
    assert!(h.log().contains("development socket"), "{}", h.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_direct_mount_still_finishes_and_is_recorded() {
    let h = start(MountBackendChoice::Direct);
    let u = "0b7c4e2a-1f3d-4a5b-9c8d-7e6f5a4b3c2d";
    h.add_fake_filesystem(u, "ext4");
    // mount(8) takes 2 s; the client gives up after 0.7 s (it cancels the request).
    h.set_delay("mount", Some(2));
    let client = h.client().await.unwrap();
    let call = client.usb_mount(
        ctx(30),
        UsbMountRequest {
            uuid: uuid(u),
            name: name("late"),
        },
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(700), call)
            .await
            .is_err(),
        "the mount should still be running"
    );
    // The operation was not aborted between mount(8) and its record: both happen.
    let mp = h.mount_root().join("late");
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let record = std::fs::read_to_string(h.record_file()).unwrap_or_default();
        let table = std::fs::read_to_string(h.mountinfo_path()).unwrap();
        if record.contains(u) && table.contains(&*mp.to_string_lossy()) {
            break;
        }
        assert!(
            Instant::now() < until,
            "cancelled mount left mounted={} recorded={}:\n{}",
            table.contains(&*mp.to_string_lossy()),
            record.contains(u),
            h.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    h.set_delay("mount", None);
    let list = client.usb_list(ctx(10)).await.unwrap().unwrap();
    assert!(
        list.iter().any(|m| m.name.as_str() == "late" && m.mounted),
        "{list:?}"
    );
}
