//! Following task logs, failure reasons, the task list and clean shutdown, through the typed
//! client against the simulator.

use std::time::Duration;

use felhom_agent::pve::{
    ApiSettings, BackupMode, BackupRequest, BackupStarted, NodeName, PveClient, PveError,
    RestoreRequest, SnapshotName, StorageId, TaskFilter, TaskObserver, TaskStatus, TaskType,
    TlsMode, TokenId, Upid, VolumeId, WaitOptions,
};
use felhom_agent::secret::Secret;
use felhom_protocol::Vmid;
use felhom_tests::pve_sim::{PveSim, SimOptions, TaskOutcome};

fn vmid(n: u32) -> Vmid {
    Vmid::new(n).unwrap()
}

async fn sim_with(task_duration: Duration) -> (PveSim, PveClient) {
    let sim = PveSim::start(SimOptions {
        task_duration,
        ..SimOptions::default()
    })
    .await
    .unwrap();
    let settings = ApiSettings {
        api_url: sim.base_url().parse().unwrap(),
        node: NodeName::new(sim.node()).unwrap(),
        token_id: TokenId::new(sim.token_id()).unwrap(),
        token_secret: Secret::new(sim.token_secret()).unwrap(),
        tls: TlsMode::Pinned(sim.fingerprint().parse().unwrap()),
        tls_server_name: None,
        max_response_bytes: felhom_agent::pve::DEFAULT_MAX_RESPONSE_BYTES,
        request_timeout: Duration::from_secs(5),
    };
    let client = PveClient::new(&settings).unwrap();
    (sim, client)
}

fn wait() -> WaitOptions {
    WaitOptions::with_timeout(Duration::from_secs(30))
}

/// Records what `wait_task_with` hands over.
#[derive(Default)]
struct Recorder {
    polls: usize,
    running_polls: usize,
    lines: Vec<String>,
    batches: usize,
}

impl TaskObserver for Recorder {
    fn on_poll(&mut self, _upid: &Upid, status: &TaskStatus, _elapsed: Duration) {
        self.polls += 1;
        if status.exitstatus.is_none() {
            self.running_polls += 1;
        }
    }
    fn on_lines(&mut self, _upid: &Upid, lines: &[String], _elapsed: Duration) {
        self.batches += 1;
        self.lines.extend(lines.iter().cloned());
    }
}

async fn backup(c: &PveClient, n: u32) -> Upid {
    match c
        .vzdump(&BackupRequest {
            vmid: vmid(n),
            mode: BackupMode::Snapshot,
            storage: StorageId::new("local").unwrap(),
            notes_template: Some("{{guestname}}".into()),
        })
        .await
        .unwrap()
    {
        BackupStarted::Task(u) => u,
        BackupStarted::NothingToDo => panic!("no task"),
    }
}

/// The whole log as the simulator serves it.
async fn full_log(c: &PveClient, upid: &Upid) -> Vec<String> {
    c.task_log(upid, 0, 0)
        .await
        .unwrap()
        .lines
        .into_iter()
        .map(|l| l.t)
        .collect()
}

#[tokio::test]
async fn following_a_backup_hands_over_every_line_once_in_order() {
    let (sim, c) = sim_with(Duration::from_millis(1500)).await;
    let upid = backup(&c, 100).await;
    let mut rec = Recorder::default();
    let done = c.wait_task_with(&upid, wait(), &mut rec).await.unwrap();
    assert_eq!(done.exitstatus, "OK");
    // At most one log request per status poll: one per poll that found the task running,
    // plus one read of the rest once it stopped.
    let statuses = sim
        .state()
        .count_requests("GET", &format!("{}/status", upid.as_str()));
    let logs = sim
        .state()
        .count_requests("GET", &format!("{}/log", upid.as_str()));
    assert_eq!(rec.polls, statuses);
    let queries: Vec<String> = sim
        .state()
        .requests()
        .into_iter()
        .filter(|r| r.path.contains(upid.as_str()))
        .map(|r| format!("{} {}", r.path.rsplit('/').next().unwrap_or(""), r.query))
        .collect();
    assert!(
        logs <= statuses,
        "{logs} log requests for {statuses} polls: {queries:#?}"
    );
    assert_eq!(
        logs,
        rec.running_polls + 1,
        "running polls + one final read"
    );
    let log = full_log(&c, &upid).await;
    assert_eq!(rec.lines, log, "every line once, in order");
    assert!(
        rec.lines
            .iter()
            .any(|l| l.starts_with("INFO: creating vzdump archive '"))
    );
    // The log grew while the task ran, so lines arrived in several batches.
    assert!(rec.batches >= 2, "{} batches", rec.batches);
}

#[tokio::test]
async fn waiting_without_an_observer_reads_no_log_for_an_ok_task() {
    let (sim, c) = sim_with(Duration::from_millis(300)).await;
    let upid = backup(&c, 100).await;
    c.wait_task(&upid, wait()).await.unwrap();
    assert_eq!(
        sim.state()
            .count_requests("GET", &format!("{}/log", upid.as_str())),
        0
    );
}

#[tokio::test]
async fn a_vzdump_failing_one_guest_names_the_guest_and_why() {
    let (sim, c) = sim_with(Duration::from_millis(200)).await;
    sim.state().set_lock(100, Some("snapshot"));
    for follow in [false, true] {
        let upid = backup(&c, 100).await;
        let err = if follow {
            c.wait_task_with(&upid, wait(), &mut Recorder::default())
                .await
                .unwrap_err()
        } else {
            c.wait_task(&upid, wait()).await.unwrap_err()
        };
        let PveError::Task(f) = &err else {
            panic!("{err:?}")
        };
        assert_eq!(f.exitstatus, "job errors");
        assert_eq!(
            f.reasons,
            [
                "ERROR: Backup of VM 100 failed - CT is locked (snapshot)",
                "TASK ERROR: job errors"
            ],
            "follow={follow}"
        );
        // The reason is not the last line of the log.
        let log = full_log(&c, &upid).await;
        assert_eq!(
            log.last().map(String::as_str),
            Some("TASK ERROR: job errors")
        );
        assert_eq!(
            log[log.len() - 2],
            "INFO: Backup job finished with errors",
            "{log:?}"
        );
        let text = err.to_string();
        assert!(
            text.starts_with("task vzdump 100 failed: job errors\n  ERROR: Backup of VM 100 failed - CT is locked (snapshot)"),
            "{text}"
        );
        // The final line only repeats the exit status, so the text leaves it out.
        assert!(!text.contains("TASK ERROR"), "{text}");
    }
}

#[tokio::test]
async fn a_restore_failing_on_storage_reports_the_full_disk() {
    let (sim, c) = sim_with(Duration::from_millis(200)).await;
    let state = sim.state();
    let archive = state.backups("local", 101).into_iter().next().unwrap();
    assert!(state.set_storage_used("local-lvm", u64::MAX));
    let upid = c
        .restore(&RestoreRequest {
            vmid: vmid(201),
            archive: VolumeId::new(&archive).unwrap(),
            storage: StorageId::new("local-lvm").unwrap(),
            unique: false,
            force: false,
            start: false,
            hostname: None,
        })
        .await
        .unwrap();
    let err = c.wait_task(&upid, wait()).await.unwrap_err();
    let PveError::Task(f) = &err else {
        panic!("{err:?}")
    };
    assert!(
        f.exitstatus
            .starts_with("unable to restore CT 201 - command"),
        "{f:?}"
    );
    assert!(
        f.reasons[0].ends_with("Cannot write: No space left on device"),
        "{:?}",
        f.reasons
    );
    assert!(
        f.reasons
            .last()
            .unwrap()
            .starts_with("TASK ERROR: unable to restore CT 201")
    );
    assert!(
        !state.container_exists(201),
        "a failed restore leaves no CT"
    );
    assert!(err.to_string().contains("No space left on device"), "{err}");
}

#[tokio::test]
async fn a_snapshot_failing_on_a_lock_keeps_the_lock_line() {
    let (sim, c) = sim_with(Duration::from_millis(100)).await;
    sim.state().set_next_task_outcome(TaskOutcome::ErrorWithLog {
        lines: vec![
            "snapshot create failed: starting cleanup".into(),
            "can't lock file '/run/lock/lxc/pve-config-100.lock' - got timeout".into(),
        ],
        message: "lvcreate snapshot 'pve/snap_vm-100-disk-0_pre' error: Cannot create new thin volume, free space in thin pool pve/data reached threshold.".into(),
    });
    let upid = c
        .snapshot_create(vmid(100), &SnapshotName::new("pre").unwrap(), None)
        .await
        .unwrap();
    let err = c.wait_task(&upid, wait()).await.unwrap_err();
    let PveError::Task(f) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(
        f.reasons[0],
        "can't lock file '/run/lock/lxc/pve-config-100.lock' - got timeout"
    );
    assert!(f.reasons[1].starts_with("TASK ERROR: lvcreate snapshot"));
    assert_eq!(f.reasons.len(), 2);
}

#[tokio::test]
async fn warnings_come_from_the_warn_lines_bounded() {
    let (sim, c) = sim_with(Duration::from_millis(100)).await;
    let many: Vec<String> = (0..25).map(|i| format!("warning {i}")).collect();
    sim.state()
        .set_next_task_outcome(TaskOutcome::Warnings(many));
    let upid = c.start(vmid(101)).await.unwrap();
    let ok = c
        .wait_task_with(&upid, wait(), &mut Recorder::default())
        .await
        .unwrap();
    assert_eq!(ok.exitstatus, "WARNINGS: 25");
    assert_eq!(ok.warnings.len(), 10);
    assert_eq!(ok.warnings[0], "WARN: warning 0");
    assert_eq!(ok.warnings_omitted, 15);
}

#[tokio::test]
async fn read_task_log_reads_a_running_log_then_only_what_came_since() {
    let (sim, c) = sim_with(Duration::from_millis(1200)).await;
    let upid = backup(&c, 100).await;
    let first = c.read_task_log(&upid, 0).await.unwrap();
    assert!(!first.lines.is_empty());
    assert_eq!(first.next, first.lines.len() as u64);
    while sim.state().tasks_running() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rest = c.read_task_log(&upid, first.next).await.unwrap();
    let mut joined = first.lines.clone();
    joined.extend(rest.lines.clone());
    assert_eq!(joined, full_log(&c, &upid).await);
    assert_eq!(rest.lines.last().map(String::as_str), Some("TASK OK"));
    // Nothing new after the end.
    let none = c.read_task_log(&upid, rest.next).await.unwrap();
    assert!(none.lines.is_empty(), "{none:?}");
}

#[tokio::test]
async fn the_task_list_filters_by_guest_type_and_errors() {
    let (sim, c) = sim_with(Duration::from_millis(50)).await;
    let state = sim.state();
    let ok = backup(&c, 100).await;
    c.wait_task(&ok, wait()).await.unwrap();
    state.set_lock(101, Some("mounted"));
    let bad = backup(&c, 101).await;
    let _ = c.wait_task(&bad, wait()).await.unwrap_err();
    state.set_lock(101, None);
    state.set_task_duration(Duration::from_secs(30));
    let running = c.start(vmid(101)).await.unwrap();

    let all = c.tasks(&TaskFilter::default()).await.unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[0].upid, running.as_str(), "running tasks first");
    assert!(all[0].is_running());
    assert_eq!(all[0].tokenid.as_deref(), Some("agent"));
    assert_eq!(all[0].user, "felhom@pve");

    let only_vzdump = c
        .tasks(&TaskFilter {
            task_type: Some(TaskType::new("vzdump").unwrap()),
            ..TaskFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(only_vzdump.len(), 2);
    assert_eq!(only_vzdump[0].upid, bad.as_str(), "newest first");

    let errors = c
        .tasks(&TaskFilter {
            errors: true,
            ..TaskFilter::default()
        })
        .await
        .unwrap();
    let error_upids: Vec<&str> = errors.iter().map(|e| e.upid.as_str()).collect();
    assert!(error_upids.contains(&bad.as_str()));
    assert!(!error_upids.contains(&ok.as_str()));
    assert!(errors.iter().any(|e| e.is_error()));

    let of_100 = c
        .tasks(&TaskFilter {
            vmid: Some(vmid(100)),
            ..TaskFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(of_100.len(), 1);
    assert_eq!(of_100[0].upid, ok.as_str());
    assert_eq!(of_100[0].status.as_deref(), Some("OK"));

    let one = c
        .tasks(&TaskFilter {
            limit: Some(1),
            ..TaskFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(one.len(), 1);
    state.complete_running_tasks();
}

#[tokio::test]
async fn shutdown_sends_timeout_and_force_stop() {
    let (sim, c) = sim_with(Duration::from_millis(100)).await;
    let upid = c.shutdown_with(vmid(100), 15, true).await.unwrap();
    assert_eq!(upid.task_type(), "vzshutdown");
    c.wait_task(&upid, wait()).await.unwrap();
    assert_eq!(sim.state().container_running(100), Some(false));
    let sent = sim
        .state()
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with("/status/shutdown"))
        .unwrap();
    assert!(sent.body.contains("timeout=15"), "{}", sent.body);
    assert!(sent.body.contains("forceStop=1"), "{}", sent.body);
    // Without --force-stop the parameter is not sent at all.
    let upid = c.start(vmid(100)).await.unwrap();
    c.wait_task(&upid, wait()).await.unwrap();
    let upid = c.shutdown(vmid(100), 60).await.unwrap();
    c.wait_task(&upid, wait()).await.unwrap();
    let last = sim
        .state()
        .requests()
        .into_iter()
        .rfind(|r| r.path.ends_with("/status/shutdown"))
        .unwrap();
    assert_eq!(last.body, "timeout=60");
}

/// A stopped task whose status carries no exit status (a broken node) is a failure, never
/// taken for success: `wait_task` exists to tell the two apart.
#[tokio::test]
async fn a_stopped_task_without_an_exit_status_is_a_failure() {
    let (sim, c) = sim_with(Duration::from_millis(100)).await;
    for follow in [false, true] {
        sim.state().set_next_task_outcome(TaskOutcome::NoExitStatus);
        let upid = backup(&c, 100).await;
        let res = if follow {
            c.wait_task_with(&upid, wait(), &mut Recorder::default())
                .await
        } else {
            c.wait_task(&upid, wait()).await
        };
        // The simulator really sent a stopped status without `exitstatus`.
        let st = c.task_status(&upid).await.unwrap();
        assert_eq!(st.status, felhom_agent::pve::TaskState::Stopped);
        assert_eq!(st.exitstatus, None, "{st:?}");
        let err = res.unwrap_err();
        let PveError::Task(f) = &err else {
            panic!("follow={follow}: {err:?}")
        };
        assert_eq!(f.exitstatus, "unexpected status", "follow={follow}");
        assert!(err.to_string().contains("unexpected status"), "{err}");
        // Nothing was written: the backup's effect was not applied.
        assert!(
            sim.state().backups("local", 100).is_empty(),
            "{:?}",
            sim.state().backups("local", 100)
        );
    }
}

/// A task the node does not know (400 `no such task`) is tolerated only for the grace
/// after dispatch; then the wait ends with that error, long before its overall timeout.
#[tokio::test]
async fn a_task_still_unknown_after_the_grace_ends_the_wait_long_before_the_timeout() {
    let (sim, c) = sim_with(Duration::from_millis(100)).await;
    let ghost: Upid = "UPID:pve:00001234:00ABCDEF:65000000:vzstart:101:felhom@pve!agent:"
        .parse()
        .unwrap();
    let timeout = Duration::from_secs(20);
    let opts = WaitOptions {
        not_found_grace: Duration::from_millis(500),
        ..WaitOptions::with_timeout(timeout)
    };
    let t0 = std::time::Instant::now();
    let err = c.wait_task(&ghost, opts).await.unwrap_err();
    let took = t0.elapsed();
    assert!(err.is_no_such_task(), "{err:?}");
    // Polled through the grace (several polls), then gave up at its end, not at the timeout.
    assert!(
        sim.state()
            .count_requests("GET", &format!("{}/status", ghost.as_str()))
            >= 2
    );
    assert!(
        took >= Duration::from_millis(500) && took < timeout / 2,
        "{took:?}"
    );
}

/// A long log is read in pages of 500 lines, at most 10,000 lines from where the read
/// starts; then the middle is skipped and the last 500 lines (with the final `TASK` line) are
/// read. A shorter one is read whole, page by page.
#[tokio::test]
async fn a_long_task_log_is_read_in_pages_and_bounded() {
    let (sim, c) = sim_with(Duration::from_millis(50)).await;
    // The task's own lines before the scripted ones, and the final `TASK ERROR:` line.
    let own = {
        sim.state()
            .set_next_task_outcome(TaskOutcome::ErrorWithLog {
                lines: Vec::new(),
                message: "long".into(),
            });
        let upid = c.start(vmid(101)).await.unwrap();
        assert!(c.wait_task(&upid, wait()).await.is_err());
        c.read_task_log(&upid, 0).await.unwrap().total.unwrap() as usize
    };
    // Totals of 1,000 and 10,200 lines: a last page that ends exactly at the total, and a
    // rest after 10,000 lines shorter than a page (read, not skipped).
    for (n, whole) in [
        (1_234usize, true),
        (1_000 - own, true),
        (10_200 - own, true),
        (12_000, false),
    ] {
        sim.state()
            .set_next_task_outcome(TaskOutcome::ErrorWithLog {
                lines: (1..=n).map(|i| format!("line {i}")).collect(),
                message: "long".into(),
            });
        let upid = c.start(vmid(101)).await.unwrap();
        assert!(c.wait_task(&upid, wait()).await.is_err());
        let before = sim
            .state()
            .count_requests("GET", &format!("{}/log", upid.as_str()));
        let chunk = c.read_task_log(&upid, 0).await.unwrap();
        let requests = sim
            .state()
            .count_requests("GET", &format!("{}/log", upid.as_str()))
            - before;
        let total = chunk.total.unwrap();
        assert!(total > n as u64, "{total}");
        assert_eq!(chunk.next, total, "n={n}");
        assert_eq!(
            chunk.lines.last().map(String::as_str),
            Some("TASK ERROR: long")
        );
        if whole {
            assert_eq!(chunk.lines.len() as u64, total);
            assert_eq!(chunk.skipped, 0);
            assert_eq!(requests as u64, total.div_ceil(500), "n={n} total={total}");
        } else {
            assert_eq!(chunk.lines.len(), 10_000 + 500, "n={n}");
            assert_eq!(chunk.skipped, total - 10_500, "n={n}");
            assert_eq!(
                chunk.lines[9_999],
                format!("line {}", 10_000 - (total as usize - n - 1))
            );
            assert_eq!(requests, 21, "20 pages, then the last one");
        }
    }
}
