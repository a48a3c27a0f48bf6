//! `felhom-agent selftest` warns ahead of certificate expiry: the certificate the server
//! presents (the pinned leaf with `tls_fingerprint`, which Proxmox's renewal replaces) and
//! the certificates in `tls_ca_file`, `tls_expiry_warn_days` (default 30) before they
//! expire. A warning goes to stderr and into `--json` (`tls_expiry`); the selftest still
//! succeeds.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use felhom_tests::bins::{self, AgentRun};
use felhom_tests::fake_helper::{FakeHelper, write_agent_config};
use felhom_tests::pve_sim::{PveSim, SimOptions};
use serde_json::Value;

const DAY: Duration = Duration::from_secs(86_400);
const WARNING: &str = "felhom-agent: warning:";

struct Env {
    _sim: PveSim,
    _helper: FakeHelper,
    _dir: tempfile::TempDir,
    config: PathBuf,
}

/// How the agent verifies the simulator's certificate.
enum Trust {
    /// `tls_fingerprint` of the leaf.
    PinLeaf,
    /// `tls_ca_file` with the simulator's CA.
    CaFile,
}

/// A simulator whose leaf expires in `leaf_days` and CA in `ca_days`, a fake helper and an
/// agent config trusting it by `trust`, with `extra` keys added.
async fn start(leaf_days: u32, ca_days: u32, trust: Trust, extra: &[(&str, Value)]) -> Env {
    tokio::task::block_in_place(bins::agent);
    let sim =
        PveSim::start_with_cert_lifetimes(SimOptions::default(), DAY * leaf_days, DAY * ca_days)
            .await
            .unwrap();
    let helper = FakeHelper::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = write_agent_config(dir.path(), &sim, helper.socket_path(), 1).unwrap();
    let mut v: Value = serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    let obj = v.as_object_mut().unwrap();
    if let Trust::CaFile = trust {
        let ca = dir.path().join("pve-root-ca.pem");
        std::fs::write(&ca, sim.ca_pem()).unwrap();
        obj.remove("tls_fingerprint");
        obj.insert("tls_ca_file".into(), Value::from(ca.to_str().unwrap()));
    }
    for (k, val) in extra {
        obj.insert((*k).to_string(), val.clone());
    }
    std::fs::write(&config, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
    Env {
        _sim: sim,
        _helper: helper,
        _dir: dir,
        config,
    }
}

async fn selftest_json(env: &Env) -> (AgentRun, Value) {
    let r = bins::run_agent(&env.config, &["--json", "selftest"]).await;
    assert_eq!(
        r.code, 0,
        "a warning does not fail the selftest\n{}\n{}",
        r.stdout, r.stderr
    );
    let v = r.json();
    assert_eq!(v["ok"], true, "{v:#}");
    let t = v["tls_expiry"].clone();
    (r, t)
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// `not_after` is `days` from now (within a minute of test run time).
fn about_days_from_now(not_after: &Value, days: i64) {
    let t = not_after
        .as_i64()
        .unwrap_or_else(|| panic!("not a time: {not_after}"));
    let want = now() + days * 86_400;
    assert!((want - 120..=want + 5).contains(&t), "{t} vs {want}");
}

fn warning_lines(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| l.starts_with(WARNING)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_leaf_expiring_in_10_days_is_warned_about() {
    let env = start(10, 3650, Trust::PinLeaf, &[]).await;
    let (r, t) = selftest_json(&env).await;
    assert_eq!(t["warn_days"], 30);
    about_days_from_now(&t["server_not_after"], 10);
    let w = t["warnings"].as_array().unwrap();
    assert_eq!(w.len(), 1, "{t:#}");
    assert_eq!(w[0]["certificate"], "server");
    // Whole days left: 9 or 10, depending on the seconds between issuing and checking.
    let left = w[0]["days_left"].as_i64().unwrap();
    assert!((9..=10).contains(&left), "{t:#}");
    let lines = warning_lines(&r.stderr);
    assert_eq!(lines.len(), 1, "{}", r.stderr);
    let says = format!("the certificate the Proxmox API presents expires in {left} day(s)");
    assert!(
        lines[0].contains(&says) && lines[0].contains("pve-root-ca.pem"),
        "{}",
        lines[0]
    );

    // Human output: the same warning on stderr, stdout unchanged in kind, exit 0.
    let r = bins::run_agent(&env.config, &["selftest"]).await;
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(warning_lines(&r.stderr).len(), 1, "{}", r.stderr);
    assert!(!r.stdout.contains(WARNING), "results only on stdout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaf_expiring_in_90_days_is_not_warned_about() {
    let env = start(90, 3650, Trust::PinLeaf, &[]).await;
    let (r, t) = selftest_json(&env).await;
    about_days_from_now(&t["server_not_after"], 90);
    assert_eq!(t["warnings"], serde_json::json!([]), "{t:#}");
    assert!(warning_lines(&r.stderr).is_empty(), "{}", r.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ca_files_certificate_is_checked_too_and_the_window_is_configurable() {
    let env = start(90, 10, Trust::CaFile, &[]).await;
    let (r, t) = selftest_json(&env).await;
    about_days_from_now(&t["server_not_after"], 90);
    let cas = t["ca_file_not_after"].as_array().unwrap();
    assert_eq!(cas.len(), 1, "{t:#}");
    about_days_from_now(&cas[0], 10);
    let w = t["warnings"].as_array().unwrap();
    assert_eq!(w.len(), 1, "{t:#}");
    assert_eq!(w[0]["certificate"], "ca_file");
    let lines = warning_lines(&r.stderr);
    assert_eq!(lines.len(), 1, "{}", r.stderr);
    assert!(lines[0].contains("tls_ca_file"), "{}", lines[0]);

    // A 5-day window: nothing to say yet; 0: never.
    for days in [5, 0] {
        let env = start(
            90,
            10,
            Trust::CaFile,
            &[("tls_expiry_warn_days", days.into())],
        )
        .await;
        let (r, t) = selftest_json(&env).await;
        assert_eq!(t["warn_days"], days);
        assert_eq!(t["warnings"], serde_json::json!([]), "{t:#}");
        assert!(warning_lines(&r.stderr).is_empty(), "{}", r.stderr);
    }
    // A 100-day window reaches the leaf as well.
    let env = start(
        90,
        10,
        Trust::CaFile,
        &[("tls_expiry_warn_days", 100.into())],
    )
    .await;
    let (r, t) = selftest_json(&env).await;
    assert_eq!(t["warnings"].as_array().unwrap().len(), 2, "{t:#}");
    assert_eq!(warning_lines(&r.stderr).len(), 2, "{}", r.stderr);
}
