//! End to end: the real `felhom-agent` binary, the real `felhom-helper` (socket-activated by
//! `systemd-socket-activate`, with fake tools) and the Proxmox simulator. The helper dies in
//! the middle of a call, its socket is absent, and it refuses requests; the agent reports each
//! clearly and recovers when the helper is activated again.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use felhom_tests::bins::{self, run_agent as agent};
use felhom_tests::fake_helper::{healthy_ata_json, write_agent_config};
use felhom_tests::helper_harness::{HelperHarness, HelperHarnessOptions};
use felhom_tests::pve_sim::{PveSim, SimOptions};

/// Upper bound for waiting on a condition; reached only when a test fails.
const PATIENCE: Duration = Duration::from_secs(60);

/// Starts the simulator and the socket-activated helper; `None` (test skipped, reason
/// printed) when `systemd-socket-activate` is not installed.
async fn setup() -> Option<(PveSim, HelperHarness, tempfile::TempDir, PathBuf)> {
    tokio::task::block_in_place(bins::agent);
    let helper =
        match tokio::task::block_in_place(|| HelperHarness::start(HelperHarnessOptions::default()))
        {
            Ok(h) => h,
            Err(e) => {
                eprintln!("skipping: {e}");
                return None;
            }
        };
    helper.add_fake_disk("sda", &healthy_ata_json("E2E DISK", "E2E-1", 30), 0);
    let sim = PveSim::start(SimOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = write_agent_config(dir.path(), &sim, helper.socket_path(), 1).unwrap();
    Some((sim, helper, dir, config))
}

/// Waits until a fake tool of the helper is hanging (it wrote its pids).
async fn wait_for_hang(helper: &HelperHarness) {
    let start = Instant::now();
    while helper.hang_pids().is_empty() {
        assert!(start.elapsed() < PATIENCE, "the fake tool never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helper_killed_mid_read_is_reported_and_the_next_call_succeeds() {
    let Some((_sim, mut helper, _dir, config)) = setup().await else {
        return;
    };
    let r = agent(&config, &["smart", "sda"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("E2E DISK"), "{}", r.stdout);

    helper.set_hang("smartctl", true);
    let pending = tokio::spawn({
        let config = config.clone();
        async move { agent(&config, &["smart", "sda"]).await }
    });
    wait_for_hang(&helper).await;
    tokio::task::block_in_place(|| helper.kill_helper());
    let r = pending.await.unwrap();
    // `smart` reports a disk it could not read in its table (stdout) and exits 1.
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .contains("sda: smart_read: the connection to the helper was lost"),
        "{}",
        r.stdout
    );
    // The agent retried the read once on a new connection, which found nobody listening.
    assert!(r.stdout.contains("reconnecting failed"), "{}", r.stdout);

    // Activation again (what systemd does on the next connection): the next call succeeds.
    helper.set_hang("smartctl", false);
    tokio::task::block_in_place(|| helper.launch_activated()).unwrap();
    let r = agent(&config, &["smart", "sda"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("E2E DISK"), "{}", r.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helper_killed_mid_golden_image_leaves_the_outcome_unknown() {
    let Some((_sim, mut helper, _dir, config)) = setup().await else {
        return;
    };
    helper.set_hang("pct", true);
    let pending = tokio::spawn({
        let config = config.clone();
        async move {
            agent(
                &config,
                &[
                    "golden-image",
                    "create",
                    "--vmid",
                    "9000",
                    "--template",
                    "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst",
                    "--hostname",
                    "golden",
                ],
            )
            .await
        }
    });
    wait_for_hang(&helper).await;
    tokio::task::block_in_place(|| helper.kill_helper());
    let r = pending.await.unwrap();
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("outcome is unknown"), "{}", r.stderr);
    // Never repeated: pct create was run exactly once.
    let creates = helper
        .tool_calls()
        .iter()
        .filter(|c| {
            c.first().is_some_and(|t| t == "pct") && c.get(1).is_some_and(|a| a == "create")
        })
        .count();
    assert_eq!(creates, 1, "{:?}", helper.tool_calls());

    helper.set_hang("pct", false);
    tokio::task::block_in_place(|| helper.launch_activated()).unwrap();
    let r = agent(&config, &["sensors"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absent_socket_and_dead_helper_say_what_to_check() {
    let Some((sim, mut helper, dir, _config)) = setup().await else {
        return;
    };
    let absent = helper.dir().join("absent.sock");
    let cfg_dir = dir.path().join("absent");
    let config = write_agent_config(&cfg_dir, &sim, &absent, 1).unwrap();
    let r = agent(&config, &["usb", "list"]).await;
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains(&format!(
            "helper socket {} does not exist: is felhom-helper.socket enabled and started?",
            absent.display()
        )),
        "{}",
        r.stderr
    );

    // The socket file is left behind by a dead helper: nothing listens.
    tokio::task::block_in_place(|| helper.kill_helper());
    let config =
        write_agent_config(&dir.path().join("dead"), &sim, helper.socket_path(), 1).unwrap();
    let r = agent(&config, &["sensors"]).await;
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("nothing is listening"), "{}", r.stderr);

    // selftest: the API sections are fine, the helper sections say why they are not.
    let r = agent(&config, &["--json", "selftest"]).await;
    assert_eq!(r.code, 1);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["report"]["pve"]["status"], "ok");
    assert_eq!(v["report"]["helper"]["status"], "error");
    assert_eq!(v["report"]["overall"], "degraded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helper_refusals_reach_the_user() {
    let Some((_sim, helper, _dir, config)) = setup().await else {
        return;
    };
    // No filesystem with this UUID.
    let r = agent(
        &config,
        &[
            "usb",
            "mount",
            "0bad0bad-0000-4000-8000-000000000000",
            "--name",
            "x",
        ],
    )
    .await;
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("helper: "), "{}", r.stderr);
    assert!(
        r.stderr.contains("0bad0bad-0000-4000-8000-000000000000"),
        "{}",
        r.stderr
    );

    // exFAT is not in this helper's allowed_filesystems.
    helper.add_fake_filesystem("ABCD-1234", "exfat");
    let r = agent(&config, &["usb", "mount", "ABCD-1234", "--name", "stick"]).await;
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("helper: "), "{}", r.stderr);
    assert!(r.stderr.contains("exfat"), "{}", r.stderr);

    // Unmounting something that is not a managed mount.
    let r = agent(&config, &["usb", "unmount", "nothing"]).await;
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("helper: "), "{}", r.stderr);

    // A mount that works, end to end, in the temporary mount root.
    helper.add_fake_filesystem("1b2c3d4e-0000-4000-8000-0000000000aa", "ext4");
    let r = agent(
        &config,
        &[
            "--json",
            "usb",
            "mount",
            "1b2c3d4e-0000-4000-8000-0000000000aa",
            "--name",
            "data",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        v["mount_point"],
        helper.mount_root().join("data").display().to_string()
    );
    assert_eq!(v["mounted"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_outside_the_socket_group_is_told_to_check_the_group() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipping: needs root to run the agent as another user");
        return;
    }
    let Some((sim, helper, _dir, _config)) = setup().await else {
        return;
    };
    // A config the other user can read, pointing at the helper's socket (in a 0700 directory
    // owned by root, as /run/felhom would deny a user outside the group).
    let dir = tempfile::tempdir().unwrap();
    let config = write_agent_config(dir.path(), &sim, helper.socket_path(), 1).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = tokio::process::Command::new(bins::agent())
        .arg("--config")
        .arg(&config)
        .args(["usb", "list"])
        .uid(65534)
        .gid(65534)
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "permission denied on {}: is this user in group felhom-agent?",
            helper.socket_path().display()
        )),
        "{err}"
    );
}

/// `run` lets go of the helper after each cycle, so the socket-activated helper reaches its
/// idle exit while the service sleeps (a held connection would keep it alive forever).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_disconnects_between_cycles_so_the_helper_exits_when_idle() {
    tokio::task::block_in_place(bins::agent);
    let opts = HelperHarnessOptions {
        idle_timeout_secs: 1,
        ..HelperHarnessOptions::default()
    };
    let mut helper = match tokio::task::block_in_place(|| HelperHarness::start(opts)) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("skipping: {e}");
            return;
        }
    };
    helper.add_fake_disk("sda", &healthy_ata_json("IDLE DISK", "IDLE-1", 30), 0);
    let sim = PveSim::start(SimOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The interval is far longer than the helper's idle timeout.
    let config = write_agent_config(dir.path(), &sim, helper.socket_path(), 3600).unwrap();
    let mut child = tokio::process::Command::new(bins::agent())
        .arg("--config")
        .arg(&config)
        .arg("run")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // The first cycle talked to the helper.
    let health = dir.path().join("state/health.json");
    let start = Instant::now();
    let v: serde_json::Value = loop {
        assert!(start.elapsed() < PATIENCE, "no health.json");
        if let Ok(bytes) = std::fs::read(&health) {
            break serde_json::from_slice(&bytes).unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(v["helper"]["status"], "ok", "{v:#}");
    // While `run` sleeps, the helper exits on its own, saying it was idle.
    let exited = tokio::task::block_in_place(|| helper.wait_exit(Duration::from_secs(15)));
    assert!(
        exited.is_some(),
        "the helper is still running 15 s after the cycle (idle timeout 1 s): the agent kept its connection open\n{}",
        helper.log()
    );
    assert!(helper.log().contains("idle for 1 s"), "{}", helper.log());
    assert!(
        child.try_wait().unwrap().is_none(),
        "the agent should still be running"
    );
    child.kill().await.unwrap();
}

/// A connection the helper closed while the client held it (its idle exit, a restart) is
/// replaced before a request is sent on it, so even a state-changing call goes out on a fresh
/// connection instead of failing as "outcome unknown".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_closed_by_the_helper_is_replaced_before_sending() {
    let mut helper =
        match tokio::task::block_in_place(|| HelperHarness::start(HelperHarnessOptions::default()))
        {
            Ok(h) => h,
            Err(e) => {
                eprintln!("skipping: {e}");
                return;
            }
        };
    let client = felhom_agent::helper_client::HelperClient::new(helper.socket_path());
    client.hello().await.unwrap();
    // The helper goes away and socket activation starts a new one.
    tokio::task::block_in_place(|| {
        helper.kill_helper();
        helper.launch_activated()
    })
    .unwrap();
    // Give the old connection's dispatch a moment to see the EOF.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let name = felhom_protocol::MountName::new("nothing").unwrap();
    let err = client.usb_unmount(name).await.unwrap_err();
    // The new helper answered (it refuses: not a managed mount).
    assert!(err.helper_error().is_some(), "{err}");
}
