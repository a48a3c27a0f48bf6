//! The typed Proxmox VE client against the simulator: every call, success and failure paths,
//! TLS modes, error classification, retries and task waiting.

use std::time::Duration;

use felhom_agent::pve::{
    ApiSettings, BackupMode, BackupRequest, BackupStarted, ConfigChange, ConfigKey, ContentKind,
    Fingerprint, GuestState, NodeName, PveClient, PveError, RestoreRequest, SnapshotName,
    StorageId, TlsMode, TokenId, Upid, VolumeId, WaitOptions,
};
use felhom_agent::secret::Secret;
use felhom_protocol::Vmid;
use felhom_tests::pve_sim::{Fault, FaultKind, PveSim, SimOptions, TaskOutcome};

fn vmid(n: u32) -> Vmid {
    Vmid::new(n).unwrap()
}

fn settings(sim: &PveSim, tls: TlsMode) -> ApiSettings {
    ApiSettings {
        api_url: sim.base_url().parse().unwrap(),
        node: NodeName::new(sim.node()).unwrap(),
        token_id: TokenId::new(sim.token_id()).unwrap(),
        token_secret: Secret::new(sim.token_secret()).unwrap(),
        tls,
        tls_server_name: None,
        request_timeout: Duration::from_secs(5),
        max_response_bytes: felhom_agent::pve::DEFAULT_MAX_RESPONSE_BYTES,
    }
}

fn pinned(sim: &PveSim) -> TlsMode {
    TlsMode::Pinned(sim.fingerprint().parse().unwrap())
}

async fn start(opts: SimOptions) -> (PveSim, PveClient) {
    let sim = PveSim::start(opts).await.unwrap();
    let client = PveClient::new(&settings(&sim, pinned(&sim))).unwrap();
    (sim, client)
}

async fn default_sim() -> (PveSim, PveClient) {
    start(SimOptions {
        task_duration: Duration::from_millis(100),
        ..SimOptions::default()
    })
    .await
}

fn legacy() -> SimOptions {
    SimOptions {
        legacy_wire: true,
        version: "7.4-16".into(),
        task_duration: Duration::from_millis(100),
        ..SimOptions::default()
    }
}

fn wait() -> WaitOptions {
    WaitOptions::with_timeout(Duration::from_secs(20))
}

fn snap(name: &str) -> SnapshotName {
    SnapshotName::new(name).unwrap()
}

/// How far past its deadline a bounded wait may return on a loaded 2-core CI machine; far
/// below what an unbounded poll takes (three request timeouts).
const SLACK: Duration = Duration::from_millis(2500);

#[tokio::test]
async fn typed_reads_on_both_wire_generations() {
    for opts in [SimOptions::default(), legacy()] {
        let legacy_wire = opts.legacy_wire;
        let (sim, c) = start(opts).await;
        let v = c.version().await.unwrap();
        assert_eq!(v.version, if legacy_wire { "7.4-16" } else { "9.1.3" });

        let nodes = c.nodes().await.unwrap();
        let me = nodes.iter().find(|n| n.node == "pve").unwrap();
        assert_eq!(me.status, "online");
        let fp: Fingerprint = me.ssl_fingerprint.as_deref().unwrap().parse().unwrap();
        assert_eq!(fp.to_string(), sim.fingerprint());

        let st = c.node_status().await.unwrap();
        assert_eq!(st.loadavg.len(), 3);
        assert!(st.memory.total > 0);

        let cts = c.containers().await.unwrap();
        let ids: Vec<u32> = cts.iter().map(|c| c.vmid.get()).collect();
        assert_eq!(ids, vec![100, 101], "legacy={legacy_wire}");
        assert_eq!(cts[0].status, GuestState::Running);
        assert_eq!(cts[0].name.as_deref(), Some("web"));
        assert_eq!(cts[1].status, GuestState::Stopped);

        let s = c.container_status(vmid(100)).await.unwrap();
        assert_eq!(s.status, GuestState::Running);
        assert!(s.maxmem.unwrap() > 0);

        let cfg = c.container_config(vmid(101)).await.unwrap();
        assert_eq!(cfg.digest.len(), 40);
        assert_eq!(cfg.hostname(), Some("db"));

        let snaps = c.snapshots(vmid(100)).await.unwrap();
        assert!(snaps.last().unwrap().is_current());

        let storages = c.storages().await.unwrap();
        let local = storages.iter().find(|s| s.storage == "local").unwrap();
        assert!(local.holds(ContentKind::Backup) && local.holds(ContentKind::Vztmpl));
        assert!(storages.iter().any(|s| s.storage == "local-lvm"));

        let local_id = StorageId::new("local").unwrap();
        let backups = c
            .storage_content(&local_id, Some(ContentKind::Backup))
            .await
            .unwrap();
        assert!(
            backups
                .iter()
                .any(|b| b.vmid == Some(vmid(101)) && b.content == "backup")
        );
        let templates = c
            .storage_content(&local_id, Some(ContentKind::Vztmpl))
            .await
            .unwrap();
        assert!(
            templates
                .iter()
                .any(|t| t.volid == "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst")
        );
        let all = c.storage_content(&local_id, None).await.unwrap();
        assert!(all.len() >= backups.len() + templates.len());
    }
}

#[tokio::test]
async fn missing_guest_is_not_found() {
    for opts in [SimOptions::default(), legacy()] {
        let (_sim, c) = start(opts).await;
        let err = c.container_status(vmid(4242)).await.unwrap_err();
        assert!(matches!(err, PveError::NotFound { .. }), "{err:?}");
        assert!(err.to_string().contains("does not exist"), "{err}");
        let err = c.container_config(vmid(4242)).await.unwrap_err();
        assert!(matches!(err, PveError::NotFound { .. }), "{err:?}");
    }
}

/// On older releases the message exists only in the reason phrase: `500 CT is locked
/// (backup)` with body `{"data":null}`.
#[tokio::test]
async fn lock_error_arrives_through_the_reason_phrase() {
    for opts in [legacy(), SimOptions::default()] {
        let (sim, c) = start(opts).await;
        sim.state().set_lock(100, Some("backup"));
        let change = ConfigChange::new().set(ConfigKey::Memory, "1024").unwrap();
        let err = c.set_config(vmid(100), &change).await.unwrap_err();
        match &err {
            PveError::Locked { lock, message } => {
                assert_eq!(lock, "backup");
                assert_eq!(message, "CT is locked (backup)");
            }
            other => panic!("{other:?}"),
        }
        // PUT is never retried.
        assert_eq!(sim.state().count_requests("PUT", "/lxc/100/config"), 1);
    }
}

#[tokio::test]
async fn set_config_with_digest_and_delete() {
    let (sim, c) = default_sim().await;
    let before = c.container_config(vmid(100)).await.unwrap();
    let change = ConfigChange::new()
        .set(ConfigKey::Memory, "768")
        .unwrap()
        .set(ConfigKey::Description, "managed by felhom")
        .unwrap()
        .digest(&before.digest)
        .unwrap();
    c.set_config(vmid(100), &change).await.unwrap();
    let after = c.container_config(vmid(100)).await.unwrap();
    assert_eq!(after.get("memory"), Some("768"));
    assert_ne!(after.digest, before.digest);
    let raw = sim.state().container_config(100).unwrap();
    assert_eq!(raw["memory"].to_string().trim_matches('"'), "768");

    // The old digest is now stale.
    let stale = ConfigChange::new()
        .set(ConfigKey::Memory, "512")
        .unwrap()
        .digest(&before.digest)
        .unwrap();
    let err = c.set_config(vmid(100), &stale).await.unwrap_err();
    assert!(
        err.to_string().contains("detected modified configuration"),
        "{err}"
    );

    let del = ConfigChange::new()
        .delete(ConfigKey::Description)
        .digest(&after.digest)
        .unwrap();
    c.set_config(vmid(100), &del).await.unwrap();
    let cfg = c.container_config(vmid(100)).await.unwrap();
    assert_eq!(cfg.get("description"), None);
    assert_eq!(cfg.get("memory"), Some("768"));

    // Nothing to change is refused locally.
    let err = c
        .set_config(vmid(100), &ConfigChange::new())
        .await
        .unwrap_err();
    assert!(matches!(err, PveError::InvalidArgument(_)));
}

#[tokio::test]
async fn snapshot_create_rollback_delete() {
    let (sim, c) = default_sim().await;
    let upid = c
        .snapshot_create(vmid(100), &snap("before_upgrade"), Some("pre"))
        .await
        .unwrap();
    assert_eq!(upid.task_type(), "vzsnapshot");
    assert_eq!(upid.id(), "100");
    assert_eq!(upid.user(), "felhom@pve!agent");
    let ok = c.wait_task(&upid, wait()).await.unwrap();
    assert_eq!(ok.exitstatus, "OK");
    assert!(ok.warnings.is_empty());
    assert!(
        sim.state()
            .snapshot_names(100)
            .contains(&"before_upgrade".to_string())
    );
    let listed = c.snapshots(vmid(100)).await.unwrap();
    assert!(listed.iter().any(|s| s.name == "before_upgrade"));

    // Duplicate name: the task fails with Proxmox's message.
    let dup = c
        .snapshot_create(vmid(100), &snap("before_upgrade"), None)
        .await;
    match dup {
        Ok(upid) => {
            let err = c.wait_task(&upid, wait()).await.unwrap_err();
            let PveError::Task(f) = &err else {
                panic!("{err:?}")
            };
            assert!(f.exitstatus.contains("already used"), "{err}");
            assert_eq!(f.task_type, "vzsnapshot");
            assert_eq!(f.id, "100");
            assert!(!f.log_tail.is_empty());
        }
        Err(e) => assert!(e.to_string().contains("already"), "{e}"),
    }

    let upid = c
        .snapshot_rollback(vmid(100), &snap("before_upgrade"), true)
        .await
        .unwrap();
    assert_eq!(upid.task_type(), "vzrollback");
    c.wait_task(&upid, wait()).await.unwrap();
    assert_eq!(sim.state().container_running(100), Some(true));
    let body = &sim
        .state()
        .requests()
        .into_iter()
        .rfind(|r| r.path.ends_with("/rollback"))
        .unwrap()
        .body;
    assert!(body.contains("start=1"), "{body}");

    let upid = c
        .snapshot_delete(vmid(100), &snap("before_upgrade"))
        .await
        .unwrap();
    assert_eq!(upid.task_type(), "vzdelsnapshot");
    c.wait_task(&upid, wait()).await.unwrap();
    assert!(
        !sim.state()
            .snapshot_names(100)
            .contains(&"before_upgrade".to_string())
    );
}

#[tokio::test]
async fn power_operations() {
    let (sim, c) = default_sim().await;
    let upid = c.start(vmid(101)).await.unwrap();
    assert_eq!(upid.task_type(), "vzstart");
    c.wait_task(&upid, wait()).await.unwrap();
    assert_eq!(sim.state().container_running(101), Some(true));

    // Starting a running CT fails synchronously (500 `CT 101 already running`).
    let err = c.start(vmid(101)).await.unwrap_err();
    assert!(err.to_string().contains("already running"), "{err}");

    let upid = c.shutdown(vmid(101), 30).await.unwrap();
    assert_eq!(upid.task_type(), "vzshutdown");
    c.wait_task(&upid, wait()).await.unwrap();
    assert_eq!(sim.state().container_running(101), Some(false));
    assert!(
        sim.state()
            .requests()
            .iter()
            .any(|r| r.path.ends_with("/status/shutdown") && r.body.contains("timeout=30"))
    );

    let upid = c.stop(vmid(100)).await.unwrap();
    assert_eq!(upid.task_type(), "vzstop");
    c.wait_task(&upid, wait()).await.unwrap();
    assert_eq!(sim.state().container_running(100), Some(false));

    let err = c.stop(vmid(100)).await.unwrap_err();
    assert!(err.to_string().contains("not running"), "{err}");
}

#[tokio::test]
async fn restore_from_backup() {
    let (sim, c) = default_sim().await;
    let volid = sim.state().add_backup("local", 101);
    let req = RestoreRequest {
        vmid: vmid(105),
        archive: VolumeId::new(&volid).unwrap(),
        storage: StorageId::new("local-lvm").unwrap(),
        unique: true,
        force: false,
        start: false,
        hostname: None,
    };
    let upid = c.restore(&req).await.unwrap();
    assert_eq!(upid.task_type(), "vzrestore");
    assert_eq!(upid.id(), "105");
    c.wait_task(&upid, wait()).await.unwrap();
    assert!(sim.state().container_exists(105));
    let body = &sim
        .state()
        .requests()
        .into_iter()
        .find(|r| r.method == "POST" && r.path.ends_with("/nodes/pve/lxc"))
        .unwrap()
        .body;
    for part in ["restore=1", "unique=1", "storage=local-lvm", "vmid=105"] {
        assert!(body.contains(part), "{body}");
    }

    // Restoring over an existing CT without force fails.
    let again = c.restore(&req).await;
    let err = match again {
        Ok(upid) => c.wait_task(&upid, wait()).await.unwrap_err(),
        Err(e) => e,
    };
    assert!(err.to_string().contains("already exists"), "{err}");

    // With force over the stopped CT it succeeds.
    let forced = RestoreRequest {
        force: true,
        ..req.clone()
    };
    let upid = c.restore(&forced).await.unwrap();
    c.wait_task(&upid, wait()).await.unwrap();

    // Without `unique` (and `force`) the form carries neither field, not even as 0.
    let plain = RestoreRequest {
        vmid: vmid(106),
        unique: false,
        ..req.clone()
    };
    let upid = c.restore(&plain).await.unwrap();
    c.wait_task(&upid, wait()).await.unwrap();
    let body = sim
        .state()
        .requests()
        .into_iter()
        .rev()
        .find(|r| r.method == "POST" && r.path.ends_with("/nodes/pve/lxc"))
        .unwrap()
        .body;
    let keys: Vec<String> = url::form_urlencoded::parse(body.as_bytes())
        .map(|(k, _)| k.into_owned())
        .collect();
    assert_eq!(keys, ["vmid", "ostemplate", "restore", "storage"], "{body}");
}

#[tokio::test]
async fn vzdump_task_and_the_literal_ok() {
    let (sim, c) = default_sim().await;
    let before = sim.state().backups("local", 100).len();
    let req = BackupRequest {
        vmid: vmid(100),
        mode: BackupMode::Snapshot,
        storage: StorageId::new("local").unwrap(),
        notes_template: Some("{{guestname}} by felhom".into()),
    };
    let BackupStarted::Task(upid) = c.vzdump(&req).await.unwrap() else {
        panic!("expected a task")
    };
    assert_eq!(upid.task_type(), "vzdump");
    c.wait_task(&upid, wait()).await.unwrap();
    assert_eq!(sim.state().backups("local", 100).len(), before + 1);
    let body = sim
        .state()
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with("/vzdump"))
        .unwrap()
        .body;
    assert!(
        body.contains("compress=zstd") && body.contains("mode=snapshot"),
        "{body}"
    );
    assert!(body.contains("notes-template="), "{body}");

    let stop = BackupRequest {
        mode: BackupMode::Stop,
        notes_template: None,
        ..req.clone()
    };
    let BackupStarted::Task(upid) = c.vzdump(&stop).await.unwrap() else {
        panic!("expected a task")
    };
    c.wait_task(&upid, wait()).await.unwrap();

    // A guest that is not on this node: Proxmox answers "OK" and starts nothing.
    let elsewhere = BackupRequest {
        vmid: vmid(777),
        ..req
    };
    assert_eq!(
        c.vzdump(&elsewhere).await.unwrap(),
        BackupStarted::NothingToDo
    );
}

#[tokio::test]
async fn forbidden_names_the_privilege() {
    let (sim, c) = default_sim().await;
    sim.state().revoke("/vms/100", "VM.Snapshot");
    let err = c
        .snapshot_create(vmid(100), &snap("x1"), None)
        .await
        .unwrap_err();
    match &err {
        PveError::Forbidden {
            path, privilege, ..
        } => {
            assert_eq!(path.as_deref(), Some("/vms/100"));
            assert_eq!(privilege.as_deref(), Some("VM.Snapshot"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "permission denied: needs VM.Snapshot on /vms/100"
    );
    // Other guests are unaffected.
    c.snapshot_create(vmid(101), &snap("x1"), None)
        .await
        .unwrap();
}

#[tokio::test]
async fn warnings_are_success_with_the_warning_lines() {
    let (sim, c) = default_sim().await;
    sim.state()
        .set_next_task_outcome(TaskOutcome::Warnings(vec![
            "skipping custom lxc options, restore manually as root:".into(),
        ]));
    let upid = c.start(vmid(101)).await.unwrap();
    let ok = c.wait_task(&upid, wait()).await.unwrap();
    assert_eq!(ok.exitstatus, "WARNINGS: 1");
    assert_eq!(ok.warnings.len(), 1);
    assert!(ok.warnings[0].contains("skipping custom lxc options"));
}

#[tokio::test]
async fn task_error_carries_status_log_and_privilege() {
    let (sim, c) = default_sim().await;
    sim.state().set_next_task_outcome(TaskOutcome::Error(
        "Permission check failed (/storage/local, Datastore.AllocateSpace)".into(),
    ));
    let upid = c.start(vmid(101)).await.unwrap();
    let err = c.wait_task(&upid, wait()).await.unwrap_err();
    let PveError::Task(f) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(f.upid, upid);
    assert_eq!(f.task_type, "vzstart");
    assert_eq!(f.id, "101");
    assert_eq!(
        f.exitstatus,
        "Permission check failed (/storage/local, Datastore.AllocateSpace)"
    );
    assert_eq!(f.privilege.as_deref(), Some("Datastore.AllocateSpace"));
    assert!(
        f.log_tail.iter().any(|l| l.starts_with("TASK ERROR:")),
        "{:?}",
        f.log_tail
    );
    assert!(f.log_tail.len() <= 20);

    sim.state()
        .set_next_task_outcome(TaskOutcome::Error("job errors".into()));
    let BackupStarted::Task(upid) = c
        .vzdump(&BackupRequest {
            vmid: vmid(100),
            mode: BackupMode::Stop,
            storage: StorageId::new("local").unwrap(),
            notes_template: None,
        })
        .await
        .unwrap()
    else {
        panic!()
    };
    let err = c.wait_task(&upid, wait()).await.unwrap_err();
    assert!(err.to_string().contains("job errors"), "{err}");
}

#[tokio::test]
async fn proxy_error_on_post_is_outcome_unknown_and_sent_once() {
    let (sim, c) = default_sim().await;
    sim.state().inject(Fault {
        method: Some("POST".into()),
        path_contains: "/status/start".into(),
        kind: FaultKind::Status {
            code: 596,
            reason: "Connection timed out".into(),
        },
        times: 5,
    });
    let err = c.start(vmid(101)).await.unwrap_err();
    match &err {
        PveError::OutcomeUnknown { status, .. } => assert_eq!(*status, 596),
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("re-read"), "{err}");
    assert_eq!(sim.state().count_requests("POST", "/status/start"), 1);

    // A dropped connection after sending is also outcome-unknown, also sent once.
    sim.state().inject(Fault {
        method: Some("POST".into()),
        path_contains: "/snapshot".into(),
        kind: FaultKind::CloseConnection,
        times: 1,
    });
    let err = c
        .snapshot_create(vmid(100), &snap("s1"), None)
        .await
        .unwrap_err();
    assert!(matches!(err, PveError::OutcomeUnknown { .. }), "{err:?}");
    assert_eq!(sim.state().count_requests("POST", "/snapshot"), 1);
}

#[tokio::test]
async fn reads_are_retried_with_backoff() {
    let (sim, c) = default_sim().await;
    sim.state().inject(Fault {
        method: Some("GET".into()),
        path_contains: "/version".into(),
        kind: FaultKind::Status {
            code: 596,
            reason: "Connection timed out".into(),
        },
        times: 2,
    });
    c.version().await.unwrap();
    assert_eq!(sim.state().count_requests("GET", "/version"), 3);

    sim.state().inject(Fault {
        method: Some("GET".into()),
        path_contains: "/nodes/pve/status".into(),
        kind: FaultKind::CloseConnection,
        times: 1,
    });
    c.node_status().await.unwrap();
    assert_eq!(sim.state().count_requests("GET", "/nodes/pve/status"), 2);

    // Bounded: after three attempts the error surfaces.
    sim.state().inject(Fault {
        method: Some("GET".into()),
        path_contains: "/storage".into(),
        kind: FaultKind::Status {
            code: 503,
            reason: "Service Unavailable".into(),
        },
        times: 10,
    });
    let err = c.storages().await.unwrap_err();
    assert!(matches!(err, PveError::Api { status: 503, .. }), "{err:?}");
    assert_eq!(sim.state().count_requests("GET", "/storage"), 3);
}

#[tokio::test]
async fn stalled_post_is_outcome_unknown_and_not_retried() {
    let sim = PveSim::start(SimOptions::default()).await.unwrap();
    let mut s = settings(&sim, pinned(&sim));
    s.request_timeout = Duration::from_millis(500);
    let c = PveClient::new(&s).unwrap();
    sim.state().inject(Fault {
        method: Some("POST".into()),
        path_contains: "/status/start".into(),
        kind: FaultKind::Stall(Duration::from_secs(3)),
        times: 1,
    });
    let err = c.start(vmid(101)).await.unwrap_err();
    assert!(matches!(err, PveError::OutcomeUnknown { .. }), "{err:?}");
    assert_eq!(sim.state().count_requests("POST", "/status/start"), 1);
}

#[tokio::test]
async fn unauthorized_with_a_wrong_secret() {
    let sim = PveSim::start(SimOptions {
        unauthorized_delay: Duration::from_millis(100),
        ..SimOptions::default()
    })
    .await
    .unwrap();
    let mut s = settings(&sim, pinned(&sim));
    s.token_secret = Secret::new("00000000-wrong").unwrap();
    let c = PveClient::new(&s).unwrap();
    let err = c.version().await.unwrap_err();
    assert!(matches!(err, PveError::Unauthorized { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("token") && text.contains("ACL"), "{text}");
    assert!(!text.contains("00000000-wrong"));
    // 401 is not retried.
    assert_eq!(sim.state().count_requests("GET", "/version"), 1);
}

#[tokio::test]
async fn tls_modes() {
    let sim = PveSim::start(SimOptions::default()).await.unwrap();

    // Right pin, in lower case too.
    let lower = TlsMode::Pinned(sim.fingerprint().to_lowercase().parse().unwrap());
    PveClient::new(&settings(&sim, lower))
        .unwrap()
        .version()
        .await
        .unwrap();

    // Wrong pin: refused, and the error shows what the server presented.
    let wrong: Fingerprint = "00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF"
        .parse()
        .unwrap();
    let c = PveClient::new(&settings(&sim, TlsMode::Pinned(wrong))).unwrap();
    let err = c.version().await.unwrap_err();
    match &err {
        PveError::Tls {
            presented_fingerprint,
            ..
        } => assert_eq!(presented_fingerprint, &sim.fingerprint()),
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains(&sim.fingerprint()));
    assert_eq!(sim.state().count_requests("GET", "/version"), 1);

    // CA file.
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, sim.ca_pem()).unwrap();
    PveClient::new(&settings(&sim, TlsMode::CaFile(ca)))
        .unwrap()
        .version()
        .await
        .unwrap();

    // System roots do not know the simulator's CA.
    if let Ok(c) = PveClient::new(&settings(&sim, TlsMode::SystemRoots)) {
        let err = c.version().await.unwrap_err();
        assert!(matches!(err, PveError::Transport { .. }), "{err:?}");
    }

    // Explicit insecure mode connects.
    PveClient::new(&settings(&sim, TlsMode::Insecure))
        .unwrap()
        .version()
        .await
        .unwrap();
}

#[tokio::test]
async fn task_status_and_log() {
    let (_sim, c) = default_sim().await;
    let upid = c.start(vmid(101)).await.unwrap();
    let st = c.task_status(&upid).await.unwrap();
    assert_eq!(st.upid, upid);
    assert_eq!(st.task_type, "vzstart");
    c.wait_task(&upid, wait()).await.unwrap();
    let st = c.task_status(&upid).await.unwrap();
    assert_eq!(st.exitstatus.as_deref(), Some("OK"));
    let log = c.task_log(&upid, 0, 0).await.unwrap();
    assert!(log.total.unwrap() >= 1);
    assert_eq!(log.lines.last().unwrap().t, "TASK OK");
    assert_eq!(log.lines[0].n, 1);

    // A task the node does not know: 400 `no such task`.
    let ghost: Upid = "UPID:pve:00001234:00ABCDEF:65000000:vzstart:101:felhom@pve!agent:"
        .parse()
        .unwrap();
    let err = c.task_status(&ghost).await.unwrap_err();
    assert!(err.is_no_such_task(), "{err:?}");
}

#[tokio::test]
async fn wait_task_tolerates_no_such_task_right_after_dispatch() {
    let (sim, c) = default_sim().await;
    let upid = c.start(vmid(101)).await.unwrap();
    sim.state().inject(Fault {
        method: Some("GET".into()),
        path_contains: "/tasks/".into(),
        kind: FaultKind::Status {
            code: 400,
            reason: "no such task".into(),
        },
        times: 2,
    });
    c.wait_task(&upid, wait()).await.unwrap();
    assert!(sim.state().count_requests("GET", "/tasks/") >= 3);
}

#[tokio::test]
async fn wait_task_deadline() {
    let (sim, c) = default_sim().await;
    sim.state().set_task_duration(Duration::from_secs(30));
    let upid = c.start(vmid(101)).await.unwrap();
    let timeout = Duration::from_millis(400);
    let t0 = std::time::Instant::now();
    let err = c
        .wait_task(&upid, WaitOptions::with_timeout(timeout))
        .await
        .unwrap_err();
    let elapsed = t0.elapsed();
    assert!(matches!(err, PveError::Timeout { .. }), "{err:?}");
    assert!(
        elapsed >= timeout && elapsed < timeout + Duration::from_secs(1),
        "{elapsed:?}"
    );
}

/// Status polls that hang (a stalled pveproxy) do not stretch the wait past its deadline:
/// each poll is cut off at the deadline and the result is `Timeout`, not the poll's
/// transport error after three full request timeouts.
#[tokio::test]
async fn wait_task_deadline_with_stalled_status_polls() {
    let sim = PveSim::start(SimOptions {
        task_duration: Duration::from_secs(30),
        ..SimOptions::default()
    })
    .await
    .unwrap();
    let mut s = settings(&sim, pinned(&sim));
    s.request_timeout = Duration::from_secs(2);
    let c = PveClient::new(&s).unwrap();
    let upid = c.start(vmid(101)).await.unwrap();
    sim.state().inject(Fault {
        method: Some("GET".into()),
        path_contains: "/tasks/".into(),
        kind: FaultKind::Stall(Duration::from_secs(10)),
        times: 100,
    });
    let timeout = Duration::from_secs(1);
    let t0 = std::time::Instant::now();
    let err = c
        .wait_task(&upid, WaitOptions::with_timeout(timeout))
        .await
        .unwrap_err();
    let elapsed = t0.elapsed();
    assert!(matches!(err, PveError::Timeout { .. }), "{err:?}");
    assert!(
        elapsed >= timeout && elapsed < timeout + SLACK,
        "{elapsed:?}"
    );
    assert!(sim.state().count_requests("GET", "/tasks/") >= 1);
}

/// The log read after a failed task is bounded by the same deadline: the task's own error
/// comes back (without the log tail) instead of waiting for the stalled log.
#[tokio::test]
async fn wait_task_deadline_bounds_the_log_read() {
    let sim = PveSim::start(SimOptions {
        task_duration: Duration::from_millis(100),
        ..SimOptions::default()
    })
    .await
    .unwrap();
    let mut s = settings(&sim, pinned(&sim));
    s.request_timeout = Duration::from_secs(2);
    let c = PveClient::new(&s).unwrap();
    sim.state()
        .set_next_task_outcome(TaskOutcome::Error("CT is locked (backup)".into()));
    let upid = c.start(vmid(101)).await.unwrap();
    sim.state().inject(Fault {
        method: Some("GET".into()),
        path_contains: "/log".into(),
        kind: FaultKind::Stall(Duration::from_secs(10)),
        times: 100,
    });
    let timeout = Duration::from_millis(1500);
    let t0 = std::time::Instant::now();
    let err = c
        .wait_task(&upid, WaitOptions::with_timeout(timeout))
        .await
        .unwrap_err();
    let elapsed = t0.elapsed();
    let PveError::Task(f) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(f.exitstatus, "CT is locked (backup)");
    assert!(f.log_tail.is_empty(), "{:?}", f.log_tail);
    assert!(elapsed < timeout + SLACK, "{elapsed:?}");
}

/// A proxy hiccup on the status endpoint that outlasts the HTTP layer's three read attempts
/// does not end the wait while the task keeps running.
#[tokio::test]
async fn wait_task_keeps_polling_through_transient_errors() {
    let (sim, c) = default_sim().await;
    sim.state().set_task_duration(Duration::from_secs(2));
    let upid = c.start(vmid(101)).await.unwrap();
    sim.state().inject(Fault {
        method: Some("GET".into()),
        path_contains: "/tasks/".into(),
        kind: FaultKind::Status {
            code: 596,
            reason: "Connection timed out".into(),
        },
        times: 7,
    });
    let ok = c.wait_task(&upid, wait()).await.unwrap();
    assert_eq!(ok.exitstatus, "OK");
    assert!(sim.state().count_requests("GET", "/tasks/") >= 8);
    assert_eq!(sim.state().container_running(101), Some(true));
}

/// Continuous failure is tolerated only for `error_grace`; then the last error surfaces
/// (long before the overall deadline).
#[tokio::test]
async fn wait_task_gives_up_after_continuous_failure() {
    let (sim, c) = default_sim().await;
    sim.state().set_task_duration(Duration::from_secs(30));
    let upid = c.start(vmid(101)).await.unwrap();
    sim.state().inject(Fault {
        method: Some("GET".into()),
        path_contains: "/tasks/".into(),
        kind: FaultKind::Status {
            code: 503,
            reason: "Service Unavailable".into(),
        },
        times: 1000,
    });
    let opts = WaitOptions {
        error_grace: Duration::from_secs(1),
        ..wait()
    };
    let t0 = std::time::Instant::now();
    let err = c.wait_task(&upid, opts).await.unwrap_err();
    let elapsed = t0.elapsed();
    assert!(matches!(err, PveError::Api { status: 503, .. }), "{err:?}");
    assert!(
        elapsed >= Duration::from_secs(1) && elapsed < Duration::from_secs(5),
        "{elapsed:?}"
    );
    // More than one poll (each with the HTTP layer's three attempts) was tried.
    assert!(sim.state().count_requests("GET", "/tasks/") >= 6);
}

/// The transport itself refuses plain HTTP (the token would travel in clear text), whoever
/// built the settings.
#[tokio::test]
async fn plain_http_api_url_is_refused() {
    let sim = PveSim::start(SimOptions::default()).await.unwrap();
    let mut s = settings(&sim, pinned(&sim));
    for url in [
        format!("http://{}", sim.addr()),
        format!("ftp://{}", sim.addr()),
    ] {
        s.api_url = url.parse().unwrap();
        let err = PveClient::new(&s).unwrap_err();
        match &err {
            PveError::InvalidArgument(m) => assert!(m.contains("https"), "{m}"),
            other => panic!("{url}: {other:?}"),
        }
    }
    assert!(sim.state().requests().is_empty());
}
