//! The real `felhom-agent` binary against the Proxmox simulator and the in-process fake
//! helper: the CLI sends exactly the expected typed requests, every helper error reaches the
//! user as a clear message with exit 1, and usage/config errors exit 2.

use felhom_protocol::*;
use felhom_tests::agent_env::{agent, env};
use felhom_tests::bins;
use felhom_tests::fake_helper::{
    Call, FakeDisk, Method, Scripted, healthy_ata_json, write_agent_config,
};
use felhom_tests::pve_sim::{Fault, FaultKind};
use serde_json::Value;

fn hello() -> Call {
    Call::Hello(PROTOCOL_VERSION)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smart_scans_then_reads_each_disk_and_parses_the_json() {
    let env = env().await;
    let r = agent(&env, &["--json", "smart"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        env.helper.calls(),
        vec![
            hello(),
            Call::SmartScan,
            Call::SmartRead(DiskName::new("sda").unwrap())
        ]
    );
    let v = r.json();
    let s = &v["disks"][0]["summary"];
    assert_eq!(s["model"], "FAKE SSD 500GB");
    assert_eq!(s["serial"], "FAKE0001");
    assert_eq!(s["temperature_c"], 33);
    assert_eq!(s["health"], "ok");

    // One disk only: no scan.
    let r = agent(&env, &["smart", "sda"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("FAKE SSD 500GB"), "{}", r.stdout);
    assert_eq!(
        env.helper.calls()[3..],
        [hello(), Call::SmartRead(DiskName::new("sda").unwrap())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_disk_exits_1_and_explains_the_exit_bits() {
    let env = env().await;
    let mut json: Value = serde_json::from_str(&healthy_ata_json("BAD HDD", "B1", 40)).unwrap();
    json["smart_status"]["passed"] = Value::Bool(false);
    env.helper.set_disks(vec![FakeDisk {
        info: DiskInfo {
            name: DiskName::new("sdb").unwrap(),
            size_bytes: 1,
            model: None,
            removable: false,
            rotational: Some(true),
        },
        exit_status: 0b1101_1000,
        json: json.to_string(),
    }]);
    let r = agent(&env, &["smart"]).await;
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("FAILING"), "{}", r.stdout);
    assert!(r.stdout.contains("DISK FAILING"), "{}", r.stdout);
    assert!(r.stdout.contains("bit 7"), "{}", r.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usb_and_golden_image_send_exactly_the_typed_requests() {
    let env = env().await;
    let uuid = "3f9c1e2a-5b7d-4e8f-9a0b-1c2d3e4f5a6b";
    let r = agent(&env, &["usb", "mount", uuid, "--name", "backup"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("/mnt/felhom/backup"), "{}", r.stdout);
    let r = agent(&env, &["--json", "usb", "list"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()[0]["name"], "backup");
    let r = agent(&env, &["usb", "unmount", "backup"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = agent(
        &env,
        &[
            "golden-image",
            "create",
            "--vmid",
            "9000",
            "--template",
            "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst",
            "--hostname",
            "golden",
            "--memory-mb",
            "2048",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = agent(&env, &["sensors"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("Package id 0"), "{}", r.stdout);

    assert_eq!(
        env.helper.calls_without_hello(),
        vec![
            Call::UsbMount(UsbMountRequest {
                uuid: FsUuid::new(uuid).unwrap(),
                name: MountName::new("backup").unwrap(),
            }),
            Call::UsbList,
            Call::UsbUnmount(MountName::new("backup").unwrap()),
            Call::GoldenImageCreate(GoldenImageRequest {
                vmid: Vmid::new(9000).unwrap(),
                template: TemplateVolid::new(
                    "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst"
                )
                .unwrap(),
                hostname: Hostname::new("golden").unwrap(),
                storage: StorageId::new("local-lvm").unwrap(),
                rootfs_gib: RootfsGib::new(8).unwrap(),
                memory_mib: MemoryMib::new(2048).unwrap(),
                cores: Cores::new(2).unwrap(),
                bridge: Bridge::new("vmbr0").unwrap(),
            }),
            Call::SensorsRead,
        ]
    );
    // Every process opened one connection and started it with hello.
    assert_eq!(env.helper.connections(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_helper_error_reaches_the_user_with_exit_1() {
    let env = env().await;
    let errors = [
        HelperError::Rejected {
            field: "uuid".into(),
            reason: "no such filesystem type".into(),
        },
        HelperError::NotFound {
            what: "filesystem with UUID 1234-ABCD".into(),
        },
        HelperError::Busy {
            what: "/mnt/felhom/backup is in use".into(),
        },
        HelperError::ToolFailed {
            tool: "mount".into(),
            exit_code: Some(32),
            stderr_tail: "wrong fs type".into(),
        },
        HelperError::TimedOut {
            operation: "usb_mount".into(),
            after_secs: 60,
        },
        HelperError::Unavailable {
            what: "smartctl is not installed".into(),
        },
        HelperError::Internal {
            message: "lock poisoned".into(),
        },
        HelperError::VersionMismatch {
            helper: 7,
            agent: 1,
        },
    ];
    for e in errors {
        env.helper.fail_next(Method::UsbMount, e.clone());
        let r = agent(&env, &["usb", "mount", "1234-ABCD", "--name", "backup"]).await;
        assert_eq!(r.code, 1, "{e:?}: {}", r.stderr);
        assert!(
            r.stderr.contains(&e.to_string()),
            "{e:?} not shown: {}",
            r.stderr
        );
        assert!(r.stdout.is_empty(), "{}", r.stdout);
        // --json: one JSON error document on stdout.
        env.helper.fail_next(Method::UsbMount, e.clone());
        let r = agent(
            &env,
            &["--json", "usb", "mount", "1234-ABCD", "--name", "b"],
        )
        .await;
        assert_eq!(r.code, 1);
        let v = r.json();
        assert_eq!(v["ok"], false);
        assert!(v["error"].as_str().unwrap().contains(&e.to_string()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_mismatch_in_hello_is_refused() {
    let env = env().await;
    env.helper.set_hello_version(PROTOCOL_VERSION + 1);
    let r = agent(&env, &["sensors"]).await;
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("protocol version mismatch"),
        "{}",
        r.stderr
    );
    // Only the handshake was sent.
    assert_eq!(env.helper.calls(), vec![hello()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_connection_is_retried_for_reads_only() {
    let env = env().await;
    // A read: the connection dies mid-call, the agent reconnects once and succeeds.
    env.helper.script(Method::SensorsRead, Scripted::Crash);
    let r = agent(&env, &["sensors"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        env.helper.calls(),
        vec![hello(), Call::SensorsRead, hello(), Call::SensorsRead]
    );
    assert_eq!(env.helper.connections(), 2);

    // A mount: never repeated; the outcome is unknown.
    env.helper.script(Method::UsbMount, Scripted::Crash);
    let r = agent(&env, &["usb", "mount", "1234-ABCD", "--name", "backup"]).await;
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("outcome is unknown"), "{}", r.stderr);
    let mounts = env
        .helper
        .calls()
        .iter()
        .filter(|c| matches!(c, Call::UsbMount(_)))
        .count();
    assert_eq!(mounts, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_socket_says_what_to_check() {
    let env = env().await;
    let dir = tempfile::tempdir().unwrap();
    let absent = dir.path().join("helper.sock");
    let config = write_agent_config(dir.path(), &env.sim, &absent, 1).unwrap();
    let out = tokio::process::Command::new(bins::agent())
        .arg("--config")
        .arg(&config)
        .args(["usb", "list"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&absent.display().to_string()), "{err}");
    assert!(
        err.contains("systemctl enable --now felhom-helper.socket"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selftest_reports_every_section_and_runs_the_task_exercise() {
    let env = env().await;
    let r = agent(&env, &["--json", "selftest"]).await;
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let v = r.json();
    let rep = &v["report"];
    assert_eq!(rep["overall"], "ok", "{rep:#}");
    for s in ["pve", "guests", "storage", "helper", "smart", "sensors"] {
        assert_eq!(rep[s]["status"], "ok", "{s}: {:#}", rep[s]);
    }
    assert_eq!(rep["pve"]["data"]["version"]["version"], "9.1.3");
    assert_eq!(rep["helper"]["data"]["helper_version"], "fake-0.0.0");
    assert!(
        env.helper.calls().ends_with(&[
            Call::SmartScan,
            Call::SmartRead(DiskName::new("sda").unwrap()),
            Call::SensorsRead
        ]),
        "{:?}",
        env.helper.calls()
    );
    assert!(v.get("task_exercise").is_none());

    let r = agent(&env, &["selftest", "--task", "100"]).await;
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("snapshot rollback 100"), "{}", r.stdout);
    let state = env.sim.state();
    assert!(
        state
            .snapshot_names(100)
            .iter()
            .all(|n| !n.starts_with("felhom-selftest"))
    );
    assert_eq!(state.count_requests("POST", "/lxc/100/snapshot"), 2);
    assert_eq!(state.count_requests("DELETE", "/lxc/100/snapshot/"), 1);
    assert_eq!(state.container_running(100), Some(true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selftest_without_a_helper_is_degraded() {
    let env = env().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_agent_config(dir.path(), &env.sim, &dir.path().join("no.sock"), 1).unwrap();
    let out = tokio::process::Command::new(bins::agent())
        .arg("--config")
        .arg(&config)
        .arg("selftest")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("degraded"), "{text}");
    assert!(text.contains("does not exist"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_and_config_errors_exit_2() {
    let env = env().await;
    let r = agent(&env, &["selftest", "--task"]).await;
    assert_eq!(r.code, 2, "{}", r.stderr);
    let r = agent(&env, &["set-config", "100", "features=keyctl=1"]).await;
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("allowed keys: cores"), "{}", r.stderr);
    let r = agent(&env, &["usb", "unmount", "../etc"]).await;
    assert_eq!(r.code, 2, "{}", r.stderr);
    // A bind mount in the `volume=` form is refused like the positional one.
    let r = agent(&env, &["set-config", "100", "mp0=volume=/host,mp=/x"]).await;
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("root-only"), "{}", r.stderr);
    // A clap usage error with --json: a JSON document on stdout, clap's message on stderr.
    let r = agent(&env, &["--json", "selftest", "--task"]).await;
    assert_eq!(r.code, 2, "{}", r.stderr);
    let v = r.json();
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(v["exit_code"], 2, "{v}");
    assert!(v["error"].as_str().unwrap().contains("--task"), "{v}");
    assert!(r.stderr.contains("For more information"), "{}", r.stderr);
    let out = tokio::process::Command::new(bins::agent())
        .args(["--config", "/nonexistent/agent.json", "guests"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/agent.json"));
    // Nothing reached the helper.
    assert!(env.helper.calls().is_empty());
}

/// A token file others could read (or another user owns) is refused like an OpenSSH key:
/// exit 2, naming the file and the fix, before any request; a systemd credential (a file
/// under `$CREDENTIALS_DIRECTORY`) is exempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_file_open_to_others_is_refused_with_exit_2() {
    use std::os::unix::fs::PermissionsExt;
    let env = env().await;
    let token = env.dir.path().join("pve-token");
    let chmod = |mode: u32| {
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    assert_eq!(agent(&env, &["guests"]).await.code, 0);
    let before = env.sim.state().requests().len();
    for mode in [0o640, 0o604, 0o660] {
        chmod(mode);
        let r = agent(&env, &["guests"]).await;
        assert_eq!(r.code, 2, "mode {mode:o}: {}\n{}", r.stdout, r.stderr);
        assert!(
            r.stderr.contains(&token.display().to_string()),
            "{}",
            r.stderr
        );
        assert!(
            r.stderr
                .contains(&format!("chmod 0600 {}", token.display())),
            "{}",
            r.stderr
        );
        assert!(!r.stderr.contains(env.sim.token_secret()), "{}", r.stderr);
    }
    assert_eq!(
        env.sim.state().requests().len(),
        before,
        "no request with a refused secret"
    );
    // The same file as a systemd credential: systemd owns and protects it.
    let out = tokio::process::Command::new(bins::agent())
        .arg("--config")
        .arg(&env.config)
        .arg("guests")
        .env("CREDENTIALS_DIRECTORY", env.dir.path())
        .env_remove("RUST_LOG")
        .output()
        .await
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    chmod(0o600);
    assert_eq!(agent(&env, &["guests"]).await.code, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxmox_commands_go_through_the_api() {
    let env = env().await;
    let state = env.sim.state();
    let r = agent(&env, &["--json", "guests"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let vmids: Vec<u64> = r
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["vmid"].as_u64().unwrap())
        .collect();
    assert!(vmids.contains(&100) && vmids.contains(&101), "{vmids:?}");

    let r = agent(&env, &["set-config", "101", "memory=2048", "cores=3"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let cfg = state.container_config(101).unwrap();
    assert_eq!(cfg["memory"].to_string(), "2048");
    assert_eq!(cfg["cores"].to_string(), "3");

    // Restore CT 101's backup as CT 200: the MAC address is not the archive's.
    let archive = state.backups("local", 101)[0].clone();
    let mac_101 = cfg["net0"].as_str().unwrap().to_string();
    let r = agent(
        &env,
        &[
            "restore",
            &archive,
            "--vmid",
            "200",
            "--storage",
            "local-lvm",
            "--hostname",
            "db-copy",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .contains("new MAC addresses assigned by Proxmox at restore (unique=1)"),
        "{}",
        r.stdout
    );
    let cfg200 = state.container_config(200).unwrap();
    assert_eq!(cfg200["hostname"], "db-copy");
    let net0 = cfg200["net0"].as_str().unwrap();
    let old_mac = mac_101
        .split(',')
        .find(|p| p.starts_with("hwaddr="))
        .unwrap();
    assert!(!net0.contains(old_mac), "{net0} still has {old_mac}");

    // --keep-identity leaves the archive's MAC.
    let r = agent(
        &env,
        &[
            "restore",
            &archive,
            "--vmid",
            "201",
            "--storage",
            "local-lvm",
            "--keep-identity",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("identity kept"), "{}", r.stdout);

    let r = agent(&env, &["--json", "backup", "100", "--storage", "local"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let archive = r.json()["archive"].as_str().unwrap().to_string();
    assert!(state.backups("local", 100).contains(&archive), "{archive}");

    let r = agent(&env, &["snapshot", "create", "101", "before"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(state.snapshot_names(101).contains(&"before".to_string()));
    let r = agent(&env, &["stop", "100"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(state.container_running(100), Some(false));

    let r = agent(&env, &["start", "100"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(state.container_running(100), Some(true));
    let upid = state.task_upids().last().unwrap().clone();
    let r = agent(&env, &["--json", "tasks", "wait", &upid]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["task"]["exitstatus"], "OK");
    let r = agent(&env, &["tasks", "wait", "not-a-upid"]).await;
    assert_eq!(r.code, 2, "{}", r.stderr);

    let r = agent(&env, &["--json", "storage"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = r.json();
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["storage"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"local") && names.contains(&"local-lvm"),
        "{names:?}"
    );

    let r = agent(&env, &["--json", "guest", "101"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["config"]["entries"]["hostname"], "db");

    // An API failure is exit 1 with Proxmox's message.
    let r = agent(&env, &["guest", "4242"]).await;
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("4242"), "{}", r.stderr);
}

/// Helper-only commands need no API settings: a config that names only the helper socket is
/// enough, while an API command with the same config says which key is missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helper_commands_work_without_api_settings() {
    let mut env = env().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.json");
    std::fs::write(
        &config,
        serde_json::to_vec(&serde_json::json!({ "helper_socket": env.helper.socket_path() }))
            .unwrap(),
    )
    .unwrap();
    env.config = config;
    let r = agent(&env, &["--json", "sensors"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(env.helper.calls(), vec![hello(), Call::SensorsRead]);
    let r = agent(&env, &["guests"]).await;
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("api_url"), "{}", r.stderr);
}

/// The options of a `netN` value without `hwaddr`, in order.
fn without_mac(net: &str) -> String {
    net.split(',')
        .filter(|o| !o.starts_with("hwaddr="))
        .collect::<Vec<_>>()
        .join(",")
}

/// Restore resets the network identity exactly: every NIC keeps all its other options and
/// only loses `hwaddr` (a NIC without one stays as it is), and without --hostname the
/// hostname becomes `<source>-<vmid>`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_resets_each_mac_and_derives_a_hostname() {
    let env = env().await;
    let state = env.sim.state();
    // CT 102 with two NICs, the second without a MAC in its config.
    state.add_container(102, "web", false);
    let net1 = "name=eth1,bridge=vmbr1,firewall=0,ip=10.0.0.5/24,type=veth";
    assert!(state.set_config_value(102, "net1", Some(Value::from(net1))));
    let src = state.container_config(102).unwrap();
    let src_net0 = src["net0"].as_str().unwrap().to_string();
    assert!(src_net0.contains("hwaddr="), "{src_net0}");
    let archive = state.add_backup("local", 102);

    let r = agent(
        &env,
        &[
            "--json",
            "restore",
            &archive,
            "--vmid",
            "202",
            "--storage",
            "local-lvm",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let v = r.json();
    assert_eq!(v["identity"]["reset"], true, "{v:#}");
    assert_eq!(v["identity"]["hostname"], "web-202", "{v:#}");
    assert_eq!(v["identity"]["hostname_origin"], "derived", "{v:#}");
    assert_eq!(v["identity"]["source_hostname"], "web", "{v:#}");
    let cfg = state.container_config(202).unwrap();
    assert_eq!(cfg["hostname"], "web-202");
    // net0: all options of the source's net0, with a new MAC from Proxmox (unique=1).
    let net0 = cfg["net0"].as_str().unwrap();
    assert_eq!(without_mac(net0), without_mac(&src_net0));
    assert_ne!(net0, src_net0, "the copy has a new MAC");
    // net1 had no MAC in the archive: Proxmox gives it one, its options are unchanged.
    assert_eq!(without_mac(cfg["net1"].as_str().unwrap()), net1);
    assert_eq!(
        state.count_requests("PUT", "/lxc/202/config"),
        0,
        "nothing is written after the restore"
    );
    // Nothing else of the config changed.
    for (k, val) in &src {
        if !["hostname", "net0", "net1", "rootfs"].contains(&k.as_str()) {
            assert_eq!(cfg.get(k), Some(val), "{k}");
        }
    }

    // Human output says what was done.
    let r = agent(
        &env,
        &[
            "restore",
            &archive,
            "--vmid",
            "203",
            "--storage",
            "local-lvm",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("hostname web-203 (derived"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("net0: MAC ") && r.stdout.contains("(new)"),
        "{}",
        r.stdout
    );

    // Reading the restored config fails: the error says the restore (with unique=1) was
    // done and how to check the result.
    state.inject(Fault {
        method: Some("GET".into()),
        path_contains: "/lxc/204/config".into(),
        kind: FaultKind::Status {
            code: 503,
            reason: "Service Unavailable".into(),
        },
        times: 10,
    });
    let r = agent(
        &env,
        &[
            "restore",
            &archive,
            "--vmid",
            "204",
            "--storage",
            "local-lvm",
        ],
    )
    .await;
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("CT 204 was restored with unique=1")
            && r.stderr.contains("reading its config back failed"),
        "{}",
        r.stderr
    );
    assert!(state.container_exists(204));
}

/// `guest VMID` on a terminal: the config's values come from the container's owner, so a
/// description with an escape sequence and line breaks is shown cleaned, on one row, and the
/// raw `lxc.*` lines that `pct config` shows are there too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guest_view_cleans_every_value_and_shows_raw_lxc_keys() {
    let env = env().await;
    let state = env.sim.state();
    assert!(state.set_config_value(
        101,
        "description",
        Some(serde_json::json!(
            "\u{1b}[2J\u{1b}]0;owned\u{7}first line\nsecond line"
        )),
    ));
    assert!(state.set_config_value(
        101,
        "lxc",
        Some(serde_json::json!([
            ["lxc.cgroup2.devices.allow", "c 10:200 rwm"],
            ["lxc.mount.entry", "/dev/net dev/net none bind,create=dir"]
        ])),
    ));
    let r = agent(&env, &["guest", "101"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        !r.stdout.contains('\u{1b}') && !r.stdout.contains('\u{7}'),
        "control characters reached the terminal: {:?}",
        r.stdout
    );
    let row = r
        .stdout
        .lines()
        .find(|l| l.starts_with("description"))
        .unwrap_or_else(|| panic!("no description row in {}", r.stdout));
    assert!(row.contains("first line second line"), "{row:?}");
    assert!(
        r.stdout
            .lines()
            .any(|l| l.starts_with("lxc.cgroup2.devices.allow") && l.contains("c 10:200 rwm")),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("lxc.mount.entry"), "{}", r.stdout);
    // --json keeps the values as Proxmox sent them (JSON escapes them itself).
    let r = agent(&env, &["--json", "guest", "101"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = r.json();
    assert_eq!(
        v["config"]["entries"]["description"],
        "\u{1b}[2J\u{1b}]0;owned\u{7}first line\nsecond line"
    );
}

/// Proxmox stops a running container for a rollback and starts it again only with
/// `start=1`: without `--start` the agent says the CT is now stopped; with `--start` it
/// sends `start=1` and reports the CT running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_of_a_running_container_says_it_stopped_or_starts_it() {
    let env = env().await;
    let state = env.sim.state();
    assert_eq!(state.container_running(100), Some(true));
    let r = agent(&env, &["snapshot", "create", "100", "pre"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);

    let r = agent(&env, &["snapshot", "rollback", "100", "pre"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout
            .contains("CT 100 is now stopped: Proxmox stopped it for the rollback"),
        "{}",
        r.stdout
    );
    assert_eq!(state.container_running(100), Some(false));
    let sent = state.requests();
    let last = sent
        .iter()
        .rfind(|q| q.path.ends_with("/rollback"))
        .unwrap();
    assert!(!last.body.contains("start"), "{}", last.body);

    // Stopped before: the report just says stopped.
    let r = agent(&env, &["--json", "snapshot", "rollback", "100", "pre"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = r.json();
    assert_eq!(
        (v["was"].as_str(), v["state"].as_str()),
        (Some("stopped"), Some("stopped")),
        "{v:#}"
    );

    assert_eq!(agent(&env, &["start", "100"]).await.code, 0);
    let r = agent(
        &env,
        &["--json", "snapshot", "rollback", "100", "pre", "--start"],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = r.json();
    assert_eq!(v["was"], "running", "{v:#}");
    assert_eq!(v["state"], "running", "{v:#}");
    assert_eq!(v["start"], true, "{v:#}");
    assert_eq!(state.container_running(100), Some(true));
    let sent = state.requests();
    let last = sent
        .iter()
        .rfind(|q| q.path.ends_with("/rollback"))
        .unwrap();
    assert!(last.body.contains("start=1"), "{}", last.body);
}
