//! The real `felhom-agent` binary: progress while waiting for a task (stderr is a pipe here,
//! so progress is the plain log lines), `--quiet`, `--json`, failure reasons, and the
//! `storage content`, `tasks list`, `tasks log [--follow]` and `shutdown` commands.

use std::time::Duration;

use felhom_tests::agent_env::{AgentEnv as Env, agent, env_with};
use felhom_tests::bins;
use felhom_tests::pve_sim::TaskOutcome;

async fn env() -> Env {
    env_with(Duration::from_millis(400)).await
}

/// stderr lines that are progress lines of the task `label` (`[1.2s] vzdump 100: …`).
fn progress_lines<'a>(stderr: &'a str, label: &str) -> Vec<&'a str> {
    let tag = format!("] {label}: ");
    stderr
        .lines()
        .filter(|l| l.starts_with('[') && l.contains(&tag))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_shows_each_log_line_once_on_stderr_unless_quiet() {
    let env = env().await;
    let r = agent(&env, &["backup", "100", "--storage", "local"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("archive: local:backup/vzdump-lxc-100-"),
        "{}",
        r.stdout
    );
    let lines = progress_lines(&r.stderr, "vzdump 100");
    let texts: Vec<&str> = lines
        .iter()
        .map(|l| l.split_once(": ").unwrap().1)
        .collect();
    assert!(
        texts[0].starts_with("INFO: starting new backup job: vzdump 100"),
        "{texts:?}"
    );
    assert!(
        texts.contains(&"INFO: Backup job finished successfully"),
        "{texts:?}"
    );
    assert_eq!(texts.last(), Some(&"TASK OK"));
    let mut unique = texts.clone();
    unique.dedup();
    assert_eq!(unique.len(), texts.len(), "each line once: {texts:?}");
    // No terminal: no status-line control sequences.
    assert!(!r.stderr.contains('\x1b'), "{:?}", r.stderr);
    // Progress never reaches stdout.
    assert!(!r.stdout.contains("INFO:"), "{}", r.stdout);

    let q = agent(&env, &["--quiet", "backup", "100", "--storage", "local"]).await;
    assert_eq!(q.code, 0, "{}", q.stderr);
    assert!(
        progress_lines(&q.stderr, "vzdump 100").is_empty(),
        "{}",
        q.stderr
    );
    // --quiet also means the log is not followed: for an OK task the only log request is
    // the one read after the task for the archive name (issue 9).
    let upid = env.sim.state().task_upids().pop().unwrap();
    assert_eq!(
        env.sim
            .state()
            .count_requests("GET", &format!("{upid}/log")),
        1
    );

    // --json: stdout is one JSON document, and (stderr not being a terminal) no progress.
    let j = agent(&env, &["--json", "snapshot", "create", "100", "pre"]).await;
    assert_eq!(j.code, 0, "{}", j.stderr);
    assert_eq!(j.json()["task"]["exitstatus"], "OK");
    assert!(
        progress_lines(&j.stderr, "vzsnapshot 100").is_empty(),
        "{}",
        j.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_backup_says_why_in_human_and_json_output() {
    let env = env().await;
    env.sim.state().set_lock(100, Some("snapshot"));
    let r = agent(&env, &["--quiet", "backup", "100", "--storage", "local"]).await;
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains(
            "task vzdump 100 failed: job errors\n  ERROR: Backup of VM 100 failed - CT is locked (snapshot)"
        ),
        "{}",
        r.stderr
    );
    assert!(r.stdout.is_empty(), "{}", r.stdout);

    let j = agent(&env, &["--json", "backup", "100", "--storage", "local"]).await;
    assert_eq!(j.code, 1);
    let v = j.json();
    assert_eq!(v["ok"], false);
    assert_eq!(v["exit_code"], 1);
    assert_eq!(v["task"]["exitstatus"], "job errors");
    assert_eq!(v["task"]["type"], "vzdump");
    assert_eq!(
        v["task"]["reasons"],
        serde_json::json!([
            "ERROR: Backup of VM 100 failed - CT is locked (snapshot)",
            "TASK ERROR: job errors"
        ])
    );
}

/// A task that ends `WARNINGS: 2` (two `WARN:` lines in its log) succeeds: exit code 0, the
/// result line names the status and each warning follows as a `warning:` line on stdout
/// (also with `--quiet`, which only silences progress); `--json` lists the lines in
/// `task.warnings`. Checked for a power command and for a backup, which print through
/// different commands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warnings_are_listed_in_human_and_json_output() {
    let env = env().await;
    let two = || TaskOutcome::Warnings(vec!["low on space".into(), "fan at 90%".into()]);
    let want_lines = serde_json::json!(["WARN: low on space", "WARN: fan at 90%"]);

    env.sim.state().set_next_task_outcome(two());
    let r = agent(&env, &["--json", "start", "101"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = r.json();
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["task"]["exitstatus"], "WARNINGS: 2", "{v}");
    assert_eq!(v["task"]["warnings"], want_lines, "{v}");
    assert_eq!(v["task"]["warnings_omitted"], 0, "{v}");
    assert_eq!(env.sim.state().container_running(101), Some(true));

    for quiet in [false, true] {
        let stop = agent(&env, &["--quiet", "stop", "101"]).await;
        assert_eq!(stop.code, 0, "{}", stop.stderr);
        env.sim.state().set_next_task_outcome(two());
        let args: &[&str] = if quiet {
            &["--quiet", "start", "101"]
        } else {
            &["start", "101"]
        };
        let r = agent(&env, args).await;
        assert_eq!(r.code, 0, "{args:?}: {}", r.stderr);
        let lines: Vec<&str> = r.stdout.lines().collect();
        assert!(
            lines.len() == 3 && lines[0].starts_with("start CT 101: WARNINGS: 2 (task UPID:"),
            "{args:?}: {}",
            r.stdout
        );
        assert_eq!(
            lines[1..],
            [
                "  warning: WARN: low on space",
                "  warning: WARN: fan at 90%"
            ],
            "{args:?}: {}",
            r.stdout
        );
    }

    env.sim.state().set_next_task_outcome(two());
    let r = agent(&env, &["--quiet", "backup", "100", "--storage", "local"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("WARNINGS: 2 (task UPID:")
            && r.stdout
                .contains("\n  warning: WARN: low on space\n  warning: WARN: fan at 90%\n"),
        "{}",
        r.stdout
    );
    env.sim.state().set_next_task_outcome(two());
    let r = agent(&env, &["--json", "backup", "100", "--storage", "local"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["task"]["warnings"], want_lines, "{}", r.stdout);
}

/// Only `OK` and `WARNINGS: <digits>` are success (pve-common's `upid_status_is_error`):
/// statuses that merely start like a warnings status are task failures, exit code 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_that_only_looks_like_warnings_is_a_failure() {
    let env = env().await;
    for status in [
        "WARNINGSX",
        "WARNINGS:",
        "WARNINGS: x",
        "WARNINGS: -2",
        "warnings: 2",
    ] {
        env.sim
            .state()
            .set_next_task_outcome(TaskOutcome::Error(status.into()));
        let r = agent(&env, &["--json", "start", "101"]).await;
        let v = r.json();
        assert_eq!(r.code, 1, "{status:?} counted as success: {v}");
        assert_eq!(v["ok"], false, "{status:?}: {v}");
        assert_eq!(v["task"]["exitstatus"], status, "{status:?}: {v}");
        assert_eq!(env.sim.state().container_running(101), Some(false));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_content_lists_backups_with_notes_and_protection() {
    let env = env().await;
    let state = env.sim.state();
    let volid = state.backups("local", 101).pop().unwrap();
    assert!(state.set_volume_protected(&volid, true));
    let r = agent(&env, &["--quiet", "backup", "100", "--storage", "local"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);

    let j = agent(
        &env,
        &[
            "--json",
            "storage",
            "content",
            "local",
            "--content",
            "backup",
        ],
    )
    .await;
    assert_eq!(j.code, 0, "{}", j.stderr);
    let v = j.json();
    let vols = v["volumes"].as_array().unwrap();
    assert_eq!(vols.len(), 2, "{v}");
    let old = vols.iter().find(|e| e["volid"] == volid.as_str()).unwrap();
    assert_eq!(old["protected"], true);
    assert_eq!(old["vmid"], 101);
    let new = vols.iter().find(|e| e["vmid"] == 100).unwrap();
    assert_eq!(new["notes"], "web (felhom-agent)");
    assert_eq!(new["protected"], false);
    assert_eq!(new["format"], "tar.zst");
    assert!(new["size"].as_u64().unwrap() > 0);

    let h = agent(&env, &["storage", "content", "local"]).await;
    assert_eq!(h.code, 0, "{}", h.stderr);
    let header = h.stdout.lines().next().unwrap();
    assert!(
        header.starts_with("VOLID") && header.contains("PROTECTED") && header.contains("NOTES"),
        "{}",
        h.stdout
    );
    let row = h.stdout.lines().find(|l| l.contains(&volid)).unwrap();
    assert!(row.contains("yes"), "{row}");
    // Templates are listed too without --content; rootdir volumes on local-lvm.
    assert!(
        h.stdout.contains("local:vztmpl/debian-12-standard"),
        "{}",
        h.stdout
    );
    let lvm = agent(
        &env,
        &["storage", "content", "local-lvm", "--content", "rootdir"],
    )
    .await;
    assert!(
        lvm.stdout.contains("local-lvm:vm-100-disk-0"),
        "{}",
        lvm.stdout
    );
    // Unknown content kind: usage error.
    let bad = agent(
        &env,
        &["storage", "content", "local", "--content", "snippets"],
    )
    .await;
    assert_eq!(bad.code, 2);
    // The plain `storage` still lists the storages.
    let list = agent(&env, &["storage"]).await;
    assert!(list.stdout.contains("local-lvm"), "{}", list.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_list_log_and_follow() {
    let env = env().await;
    let state = env.sim.state();
    let ok = agent(&env, &["--quiet", "start", "101"]).await;
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    state.set_lock(100, Some("backup"));
    let bad = agent(&env, &["--quiet", "backup", "100", "--storage", "local"]).await;
    assert_eq!(bad.code, 1);
    state.set_lock(100, None);
    let upids = state.task_upids();
    let (start_upid, dump_upid) = (&upids[0], &upids[1]);

    let j = agent(&env, &["--json", "tasks", "list"]).await;
    assert_eq!(j.code, 0, "{}", j.stderr);
    let v = j.json();
    let list = v.as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["upid"], dump_upid.as_str());
    assert_eq!(list[0]["error"], true);
    assert_eq!(list[0]["status"], "job errors");
    assert_eq!(list[1]["status"], "OK");
    assert_eq!(list[1]["user"], "felhom@pve!agent");
    assert!(list[1]["duration_secs"].as_u64().is_some());

    let e = agent(&env, &["tasks", "list", "--errors", "--type", "vzdump"]).await;
    assert_eq!(e.code, 0, "{}", e.stderr);
    assert!(e.stdout.contains(dump_upid.as_str()), "{}", e.stdout);
    assert!(!e.stdout.contains(start_upid.as_str()), "{}", e.stdout);
    assert!(e.stdout.contains("job errors"), "{}", e.stdout);
    let v101 = agent(
        &env,
        &["--json", "tasks", "list", "--vmid", "101", "--limit", "5"],
    )
    .await;
    assert_eq!(v101.json().as_array().unwrap().len(), 1);
    let bad_type = agent(&env, &["tasks", "list", "--type", "vz dump"]).await;
    assert_eq!(bad_type.code, 2);

    let log = agent(&env, &["tasks", "log", dump_upid]).await;
    assert_eq!(log.code, 0, "{}", log.stderr);
    assert!(
        log.stdout
            .contains("ERROR: Backup of VM 100 failed - CT is locked (backup)\n"),
        "{}",
        log.stdout
    );
    assert!(
        log.stdout.ends_with("TASK ERROR: job errors\n"),
        "{}",
        log.stdout
    );

    // --follow streams a running task and exits with its status.
    state.set_task_duration(Duration::from_millis(1200));
    let r = agent(&env, &["--quiet", "snapshot", "create", "100", "s1"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let snap_upid = state.task_upids().pop().unwrap();
    let f = agent(&env, &["tasks", "log", "--follow", &snap_upid]).await;
    assert_eq!(f.code, 0, "{}", f.stderr);
    assert!(f.stdout.ends_with("TASK OK\n"), "{}", f.stdout);

    // A running backup that fails: followed while it runs, exit 1.
    state.set_lock(100, Some("mounted"));
    let client_env = env.config.clone();
    let dump = tokio::spawn(async move {
        bins::run_agent(
            &client_env,
            &["--quiet", "backup", "100", "--storage", "local"],
        )
        .await
    });
    let running = loop {
        let ups = state.task_upids();
        if ups.len() > upids.len() + 1 {
            break ups.last().unwrap().clone();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let f = agent(&env, &["tasks", "log", "--follow", &running]).await;
    assert_eq!(f.code, 1, "{}\n{}", f.stdout, f.stderr);
    assert!(
        f.stdout.starts_with("INFO: starting new backup job"),
        "{}",
        f.stdout
    );
    assert!(
        f.stdout.ends_with("TASK ERROR: job errors\n"),
        "{}",
        f.stdout
    );
    assert!(f.stderr.contains("CT is locked (mounted)"), "{}", f.stderr);
    let lines: Vec<&str> = f.stdout.lines().collect();
    let mut unique = lines.clone();
    unique.dedup();
    assert_eq!(unique, lines, "each line once");
    assert_eq!(dump.await.unwrap().code, 1);
    // With --json the lines come in the document.
    let fj = agent(&env, &["--json", "tasks", "log", "--follow", &snap_upid]).await;
    assert_eq!(fj.code, 0);
    assert_eq!(
        fj.json()["lines"].as_array().unwrap().last().unwrap(),
        "TASK OK"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_for_the_task() {
    let env = env().await;
    let r = agent(
        &env,
        &["shutdown", "100", "--timeout", "20", "--force-stop"],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.starts_with("shutdown CT 100: OK (task UPID:pve:"),
        "{}",
        r.stdout
    );
    assert_eq!(env.sim.state().container_running(100), Some(false));
    let sent = env
        .sim
        .state()
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with("/status/shutdown"))
        .unwrap();
    assert_eq!(sent.body, "timeout=20&forceStop=1");
    // Not running any more: Proxmox's synchronous refusal, exit 1.
    let again = agent(&env, &["--json", "shutdown", "100"]).await;
    assert_eq!(again.code, 1);
    assert!(
        again.json()["error"]
            .as_str()
            .unwrap()
            .contains("CT 100 not running"),
        "{}",
        again.stdout
    );
    let bad = agent(&env, &["shutdown", "100", "--timeout", "0"]).await;
    assert_eq!(bad.code, 2);
}

/// `tasks list --errors` lists tasks that ended in failure only: Proxmox's `errors=1`
/// keeps running tasks (pve-manager `API2/Tasks.pm` `node_tasks` drops only status `ok`),
/// the agent drops them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_list_excludes_running_tasks() {
    let env = env().await;
    let state = env.sim.state();
    state.set_task_duration(Duration::from_secs(30));
    let before = state.task_upids().len();
    let client_env = env.config.clone();
    let start =
        tokio::spawn(
            async move { bins::run_agent(&client_env, &["--quiet", "start", "101"]).await },
        );
    let running = loop {
        let ups = state.task_upids();
        if ups.len() > before {
            break ups.last().unwrap().clone();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let all = agent(&env, &["--json", "tasks", "list"]).await;
    assert!(all.stdout.contains(running.as_str()), "{}", all.stdout);
    let e = agent(&env, &["--json", "tasks", "list", "--errors"]).await;
    assert_eq!(e.code, 0, "{}", e.stderr);
    assert!(
        !e.stdout.contains(running.as_str()),
        "a running task is not an error: {}",
        e.stdout
    );
    state.complete_running_tasks();
    let r = start.await.unwrap();
    assert_eq!(r.code, 0, "{}", r.stderr);
}
