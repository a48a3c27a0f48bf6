//! The token secret never reaches a log line, an error message or a Debug dump: all tracing
//! output (and `log` records, bridged) of a full client run at TRACE level is captured and
//! searched for the secret.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use felhom_agent::config::AgentConfig;
use felhom_agent::pve::{
    BackupMode, BackupRequest, BackupStarted, ConfigChange, ConfigKey, PveClient, SnapshotName,
    StorageId, WaitOptions,
};
use felhom_agent::secret::Secret;
use felhom_protocol::Vmid;
use felhom_tests::pve_sim::{Fault, FaultKind, PveSim, SimOptions, TaskOutcome};

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut v = self
            .0
            .lock()
            .map_err(|_| std::io::Error::other("capture poisoned"))?;
        v.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn secret_never_appears_in_logs_errors_or_debug() {
    let capture = Capture::default();
    let writer = capture.clone();
    tracing_subscriber::fmt()
        .with_env_filter("trace")
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .try_init()
        .unwrap();

    let sim = PveSim::start(SimOptions {
        task_duration: Duration::from_millis(50),
        unauthorized_delay: Duration::from_millis(50),
        ..SimOptions::default()
    })
    .await
    .unwrap();
    let secret = sim.token_secret().to_string();

    // Configuration from a file, secret from $CREDENTIALS_DIRECTORY, as under systemd.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pve-token"), format!("{secret}\n")).unwrap();
    let cfg_path = dir.path().join("agent.json");
    std::fs::write(
        &cfg_path,
        serde_json::json!({
            "api_url": sim.base_url(),
            "node": sim.node(),
            "token_id": sim.token_id(),
            "tls_fingerprint": sim.fingerprint(),
        })
        .to_string(),
    )
    .unwrap();
    let creds = dir.path().to_str().unwrap().to_string();
    let cfg = AgentConfig::load_with_env(Some(&cfg_path), &|k| {
        (k == "CREDENTIALS_DIRECTORY").then(|| creds.clone())
    })
    .unwrap();
    let settings = cfg.api_settings().unwrap();
    assert_eq!(
        settings.token_secret.expose(),
        secret,
        "the run uses the real secret"
    );
    let mut texts = vec![format!("{cfg:?}"), format!("{settings:?}")];

    let c = PveClient::new(&settings).unwrap();
    texts.push(format!("{c:?}"));
    let v100 = Vmid::new(100).unwrap();
    c.version().await.unwrap();
    c.containers().await.unwrap();
    let cfg100 = c.container_config(v100).await.unwrap();
    c.set_config(
        v100,
        &ConfigChange::new()
            .set(ConfigKey::Cores, "2")
            .unwrap()
            .digest(&cfg100.digest)
            .unwrap(),
    )
    .await
    .unwrap();
    let upid = c
        .snapshot_create(v100, &SnapshotName::new("s1").unwrap(), None)
        .await
        .unwrap();
    c.wait_task(&upid, WaitOptions::default()).await.unwrap();
    sim.state()
        .set_next_task_outcome(TaskOutcome::Warnings(vec!["careful".into()]));
    let started = c
        .vzdump(&BackupRequest {
            vmid: v100,
            mode: BackupMode::Snapshot,
            storage: StorageId::new("local").unwrap(),
            notes_template: None,
        })
        .await
        .unwrap();
    let BackupStarted::Task(upid) = started else {
        panic!("vzdump of CT 100 must start a task, got {started:?}")
    };
    let ok = c.wait_task(&upid, WaitOptions::default()).await.unwrap();
    assert_eq!(ok.warnings, vec!["WARN: careful".to_string()]);

    // Error paths: task error, 403, 596, retries, 401.
    sim.state()
        .set_next_task_outcome(TaskOutcome::Error("CT is locked (backup)".into()));
    let upid = c.stop(v100).await.unwrap();
    texts.push(format!(
        "{:?}",
        c.wait_task(&upid, WaitOptions::default()).await
    ));
    sim.state().revoke("/vms/101", "VM.PowerMgmt");
    texts.push(format!("{:?}", c.start(Vmid::new(101).unwrap()).await));
    sim.state().inject(Fault {
        method: None,
        path_contains: "/version".into(),
        kind: FaultKind::Status {
            code: 596,
            reason: "Connection timed out".into(),
        },
        times: 3,
    });
    let e = c.version().await.unwrap_err();
    texts.push(format!("{e:?} {e}"));
    let mut wrong = settings.clone();
    wrong.token_secret = Secret::new(format!("{secret}x")).unwrap();
    let e = PveClient::new(&wrong).unwrap().version().await.unwrap_err();
    texts.push(format!("{e:?} {e}"));

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("pve api call"),
        "the capture must hold the client's own log lines"
    );
    assert!(logs.contains("task started"));
    assert!(!logs.contains(&secret), "secret found in logs");
    for t in &texts {
        assert!(!t.contains(&secret), "secret found in {t}");
    }
    assert!(texts[0].contains("[redacted]") && texts[1].contains("[redacted]"));
    for r in sim.state().requests() {
        assert!(!format!("{r:?}").contains(&secret));
    }
}
