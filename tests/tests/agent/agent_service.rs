//! `felhom-agent run`, the service: cycles, the atomically written `health.json`, systemd
//! notifications (READY, STATUS, WATCHDOG) and a clean exit on SIGTERM.

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::{Duration, Instant};

use felhom_tests::bins;
use felhom_tests::fake_helper::{Call, FakeHelper, Method, Scripted, write_agent_config};
use felhom_tests::pve_sim::{Fault, FaultKind, PveSim, SimOptions};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use tokio::net::UnixDatagram;

/// Generous upper bound for the polling loops; reached only when the test fails.
const PATIENCE: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_cycles_write_valid_json_notify_systemd_and_stop_on_sigterm() {
    tokio::task::block_in_place(bins::agent);
    let sim = PveSim::start(SimOptions::default()).await.unwrap();
    let helper = FakeHelper::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = write_agent_config(dir.path(), &sim, helper.socket_path(), 1).unwrap();
    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();

    let mut child = tokio::process::Command::new(bins::agent())
        .arg("--config")
        .arg(&config)
        .arg("run")
        .env("NOTIFY_SOCKET", &notify_path)
        .env("WATCHDOG_USEC", "400000")
        .env_remove("WATCHDOG_PID")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    // Collect notifications in the background.
    let messages = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sink = messages.clone();
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        while let Ok(n) = notify.recv(&mut buf).await {
            sink.lock()
                .unwrap()
                .push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    });

    // Wait for two distinct cycles; the file must parse every time it is read.
    let health = dir.path().join("state/health.json");
    let mut seen = BTreeSet::new();
    let start = Instant::now();
    while seen.len() < 2 {
        assert!(start.elapsed() < PATIENCE, "only saw cycles {seen:?}");
        if let Ok(bytes) = std::fs::read(&health) {
            let v: Value = serde_json::from_slice(&bytes)
                .unwrap_or_else(|e| panic!("health.json is not valid JSON: {e}"));
            assert_eq!(v["overall"], "ok", "{v:#}");
            assert_eq!(v["helper"]["status"], "ok");
            seen.insert(v["generated_at"].as_u64().unwrap());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The helper was asked for the report in each cycle.
    let scans = helper
        .calls()
        .iter()
        .filter(|c| **c == Call::SmartScan)
        .count();
    assert!(scans >= 2, "{:?}", helper.calls());

    // SIGTERM: exit 0, promptly.
    let pid = Pid::from_raw(i32::try_from(child.id().unwrap()).unwrap());
    kill(pid, Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(PATIENCE, child.wait())
        .await
        .expect("agent did not exit after SIGTERM")
        .unwrap();
    assert_eq!(status.code(), Some(0));
    // The agent's last datagram was queued before it exited; give the background reader the
    // moment it needs to take it off the socket (under load it may not have run yet).
    let drained = Instant::now();
    while !messages
        .lock()
        .unwrap()
        .iter()
        .any(|m| m.contains("STOPPING=1"))
        && drained.elapsed() < Duration::from_secs(5)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    reader.abort();

    let all = messages.lock().unwrap().join("\n");
    assert!(all.contains("READY=1"), "{all}");
    assert!(all.contains("STATUS=cycle 1: ok"), "{all}");
    assert!(all.contains("STATUS=cycle 2"), "{all}");
    assert!(all.contains("WATCHDOG=1"), "{all}");
    assert!(all.contains("STOPPING=1"), "{all}");
    // No temporary file is left in the state directory.
    let mut names: Vec<String> = std::fs::read_dir(dir.path().join("state"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, vec!["felhom-agent.prom", "health.json"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_keeps_going_without_the_helper_and_says_so() {
    tokio::task::block_in_place(bins::agent);
    let sim = PveSim::start(SimOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let absent = dir.path().join("absent.sock");
    // A long interval: SIGTERM must also end the sleep promptly.
    let config = write_agent_config(dir.path(), &sim, &absent, 3600).unwrap();
    let mut child = tokio::process::Command::new(bins::agent())
        .arg("--config")
        .arg(&config)
        .arg("run")
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let health = dir.path().join("state/health.json");
    let start = Instant::now();
    let v: Value = loop {
        assert!(start.elapsed() < PATIENCE, "no health.json");
        if let Ok(bytes) = std::fs::read(&health) {
            break serde_json::from_slice(&bytes).unwrap();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(v["overall"], "degraded");
    assert_eq!(v["pve"]["status"], "ok");
    assert_eq!(v["helper"]["status"], "error");
    assert!(
        v["helper"]["message"]
            .as_str()
            .unwrap()
            .contains("does not exist")
    );
    let pid = Pid::from_raw(i32::try_from(child.id().unwrap()).unwrap());
    kill(pid, Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(PATIENCE, child.wait())
        .await
        .expect("agent did not exit after SIGTERM")
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_reports_a_proxmox_outage_and_recovers() {
    tokio::task::block_in_place(bins::agent);
    let sim = PveSim::start(SimOptions::default()).await.unwrap();
    // Proxmox answers 503 to every attempt of the first cycle's version read (the client
    // tries a read three times).
    sim.state().inject(Fault {
        method: Some("GET".into()),
        path_contains: "/api2/json/version".into(),
        kind: FaultKind::Status {
            code: 503,
            reason: "Service Unavailable".into(),
        },
        times: 3,
    });
    let helper = FakeHelper::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = write_agent_config(dir.path(), &sim, helper.socket_path(), 1).unwrap();
    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    let mut child = tokio::process::Command::new(bins::agent())
        .arg("--config")
        .arg(&config)
        .arg("run")
        .env("NOTIFY_SOCKET", &notify_path)
        .env_remove("WATCHDOG_USEC")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut statuses = Vec::new();
    let mut buf = vec![0u8; 4096];
    let start = Instant::now();
    while !statuses.iter().any(|s: &String| s.contains(": ok:")) {
        let left = PATIENCE.saturating_sub(start.elapsed());
        let n = tokio::time::timeout(left, notify.recv(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("no recovery; statuses: {statuses:?}"))
            .unwrap();
        let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
        statuses.extend(
            msg.lines()
                .filter(|l| l.starts_with("STATUS=cycle "))
                .map(str::to_string),
        );
    }
    assert!(
        statuses[0].starts_with("STATUS=cycle 1: degraded (pve)"),
        "{statuses:?}"
    );
    let pid = Pid::from_raw(i32::try_from(child.id().unwrap()).unwrap());
    kill(pid, Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(PATIENCE, child.wait())
        .await
        .expect("agent did not exit after SIGTERM")
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

/// READY=1 comes as soon as the service is set up, not after the first (possibly slow)
/// cycle: systemd's start timeout must not depend on how long SMART reads take.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_is_sent_before_the_first_cycle_finishes() {
    tokio::task::block_in_place(bins::agent);
    let sim = PveSim::start(SimOptions::default()).await.unwrap();
    let helper = FakeHelper::start().await.unwrap();
    // The first cycle's SMART scan takes 5 s.
    helper.script(Method::SmartScan, Scripted::Delay(Duration::from_secs(5)));
    let dir = tempfile::tempdir().unwrap();
    let config = write_agent_config(dir.path(), &sim, helper.socket_path(), 3600).unwrap();
    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    let mut child = tokio::process::Command::new(bins::agent())
        .arg("--config")
        .arg(&config)
        .arg("run")
        .env("NOTIFY_SOCKET", &notify_path)
        .env_remove("WATCHDOG_USEC")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(PATIENCE, notify.recv(&mut buf))
        .await
        .expect("no notification")
        .unwrap();
    let first = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(first.contains("READY=1"), "{first}");
    assert!(!first.contains("STATUS=cycle"), "{first}");
    // The first cycle is still running when READY arrives.
    assert!(!dir.path().join("state/health.json").exists());
    // Its STATUS follows later.
    let n = tokio::time::timeout(PATIENCE, notify.recv(&mut buf))
        .await
        .expect("no STATUS after the first cycle")
        .unwrap();
    let second = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(second.starts_with("STATUS=cycle 1: ok"), "{second}");
    assert!(!second.contains("READY=1"), "{second}");
    child.kill().await.unwrap();
}
