//! Logs fit where they go: with stderr not a terminal (a pipe here, the journal's stream
//! under systemd) the real `felhom-agent` writes no colour escape sequences. The journal
//! path itself is checked on a real systemd by `.ci/package.sh`; the helper's journal
//! encoding by the unit tests of `felhom_helper::logging`.

use felhom_tests::bins;
use felhom_tests::fake_helper::{FakeHelper, write_agent_config};
use felhom_tests::pve_sim::{PveSim, SimOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_logs_without_escape_sequences_when_stderr_is_a_pipe() {
    tokio::task::block_in_place(bins::agent);
    let sim = PveSim::start(SimOptions::default()).await.unwrap();
    let helper = FakeHelper::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = write_agent_config(dir.path(), &sim, helper.socket_path(), 1).unwrap();
    let out = tokio::process::Command::new(bins::agent())
        .arg("--config")
        .arg(&config)
        .arg("selftest")
        .env("RUST_LOG", "debug")
        // Inherited from a systemd session, but stderr here is a pipe, not the journal.
        .env("JOURNAL_STREAM", "1:1")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Debug logging produced lines (so the check below can fail) …
    assert!(stderr.contains("DEBUG"), "no debug lines: {stderr}");
    // … and none of them carries an escape character.
    assert!(
        !stderr.contains('\u{1b}'),
        "escape sequences on a pipe: {stderr:?}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains('\u{1b}'));
}
