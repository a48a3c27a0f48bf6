//! The restore drill schedule of `felhom-agent run` (the real binary) against the
//! simulator: configured guests are drilled once per interval, each result goes into
//! `health.json`, the metrics (accepted by `promtool check metrics` when it is installed)
//! and `drills.json`, which a restart reads back instead of drilling again; SIGTERM in the
//! middle of a drill destroys the copy and does not count the drill; a drill an earlier run
//! left in flight is finished at the next start, and only a copy proven to be the drill's
//! is destroyed then.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use felhom_tests::agent_env::{AgentEnv as Env, agent, env};
use felhom_tests::bins;
use felhom_tests::pve_sim::{Fault, FaultKind};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

const PATIENCE: Duration = Duration::from_secs(60);

/// Adds `extra` to the env's agent config and sets a 0.2 s service interval.
fn configure(env: &Env, extra: Value) {
    let mut c: Value = serde_json::from_slice(&std::fs::read(&env.config).unwrap()).unwrap();
    let obj = c.as_object_mut().unwrap();
    obj.insert("interval_secs".into(), json!(0.2));
    for (k, v) in extra.as_object().unwrap() {
        obj.insert(k.clone(), v.clone());
    }
    std::fs::write(&env.config, serde_json::to_vec_pretty(&c).unwrap()).unwrap();
}

fn state_dir(env: &Env) -> PathBuf {
    env.dir.path().join("state")
}

fn read_json(path: &Path) -> Option<Value> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// `run` as a child process.
fn service(env: &Env) -> tokio::process::Child {
    tokio::process::Command::new(bins::agent())
        .arg("--config")
        .arg(&env.config)
        .arg("run")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// `run` drilling CT 101 with a settle time of 1 s.
fn service_drilling_101(env: &Env) -> tokio::process::Child {
    configure(
        env,
        json!({ "drill_guests": "101", "drill_settle_secs": 1 }),
    );
    service(env)
}

/// `run` drilling CT 101 with a settle time of 2 minutes, once its copy CT 9000 runs.
async fn service_in_a_long_drill(env: &Env) -> tokio::process::Child {
    configure(
        env,
        json!({ "drill_guests": "101", "drill_settle_secs": 120 }),
    );
    let child = service(env);
    let start = Instant::now();
    while env.sim.state().container_running(9000) != Some(true) {
        assert!(start.elapsed() < PATIENCE, "the drill's copy never ran");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child
}

/// Sends SIGTERM to the service and returns its exit code and stderr.
async fn stop(child: tokio::process::Child) -> (i32, String) {
    let pid = Pid::from_raw(i32::try_from(child.id().unwrap()).unwrap());
    kill(pid, Signal::SIGTERM).unwrap();
    let out = tokio::time::timeout(PATIENCE, child.wait_with_output())
        .await
        .expect("the service exits after SIGTERM")
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Polls `health.json` until `done` holds for its `drills` section.
async fn wait_for_drills(env: &Env, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let health = state_dir(env).join("health.json");
    let start = Instant::now();
    loop {
        if let Some(v) = read_json(&health) {
            if done(&v["drills"]) {
                return v["drills"].clone();
            }
        }
        assert!(
            start.elapsed() < PATIENCE,
            "{what}: never seen; last health.json: {:#}",
            read_json(&health).unwrap_or(Value::Null)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn last_of(drills: &Value, vmid: u64) -> Option<&Value> {
    drills["last"]
        .as_array()?
        .iter()
        .find(|r| r["vmid"].as_u64() == Some(vmid))
}

/// Restores (and creates) asked for: `POST /nodes/pve/lxc`.
fn restores(env: &Env) -> usize {
    env.sim
        .state()
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/nodes/pve/lxc"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_drills_each_guest_once_per_interval_and_reports_it() {
    let env = env().await;
    let state = env.sim.state();
    // 101 has a backup; 100 has none, so its drill fails before it changes anything.
    configure(
        &env,
        json!({ "drill_guests": "101,100", "drill_settle_secs": 1, "drill_interval_secs": 3600 }),
    );
    let child = service(&env);
    let drills = wait_for_drills(&env, "both drills", |d| {
        last_of(d, 100).is_some() && last_of(d, 101).is_some()
    })
    .await;
    let ok = last_of(&drills, 101).unwrap();
    assert_eq!(ok["passed"], true, "{drills:#}");
    assert_eq!(ok["ok"], true, "{drills:#}");
    assert_eq!(ok["scratch_vmid"], 9000, "{drills:#}");
    assert!(
        ok["duration_seconds"].as_f64().unwrap() >= 1.0,
        "{drills:#}"
    );
    let bad = last_of(&drills, 100).unwrap();
    assert_eq!(bad["passed"], false, "{drills:#}");
    assert_eq!(bad["failure"]["step"], "prepare", "{drills:#}");
    assert!(
        bad["failure"]["reason"]
            .as_str()
            .unwrap()
            .contains("no backup of CT 100"),
        "{drills:#}"
    );
    assert_eq!(drills["targets"], json!([100, 101]), "{drills:#}");
    assert_eq!(drills["interval_seconds"], 3600);
    // The next drill is due an interval after the older of the two.
    let next = drills["next"]["due_at"].as_u64().unwrap();
    let first_end = [ok, bad]
        .iter()
        .map(|r| r["finished_at"].as_u64().unwrap())
        .min()
        .unwrap();
    assert_eq!(next, first_end + 3600, "{drills:#}");
    // The copy is gone and the source untouched.
    assert!(!state.container_exists(9000));
    assert!(state.container_exists(101));

    // The metrics carry both results.
    let prom = state_dir(&env).join("felhom-agent.prom");
    let start = Instant::now();
    let text = loop {
        let t = std::fs::read_to_string(&prom).unwrap_or_default();
        if t.contains("felhom_backup_drill_success{node=\"pve\",vmid=\"100\"}") {
            break t;
        }
        assert!(start.elapsed() < PATIENCE, "metrics without drills:\n{t}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for line in [
        r#"felhom_backup_drill_success{node="pve",vmid="101"} 1"#,
        r#"felhom_backup_drill_success{node="pve",vmid="100"} 0"#,
        r#"felhom_backup_drill_cleanup_ok{node="pve",vmid="101"} 1"#,
        r#"felhom_backup_drill_running{node="pve"} 0"#,
    ] {
        assert!(text.contains(line), "missing {line} in:\n{text}");
    }
    assert!(
        text.contains(r#"felhom_backup_drill_timestamp_seconds{node="pve",vmid="101"} "#)
            && text.contains(r#"felhom_backup_drill_duration_seconds{node="pve",vmid="101"} "#),
        "{text}"
    );
    let promtool = Path::new("/usr/bin/promtool");
    if promtool.exists() {
        let out = std::process::Command::new(promtool)
            .args(["check", "metrics"])
            .stdin(std::fs::File::open(&prom).unwrap())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool check metrics: {}{}\n{text}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    } else {
        eprintln!("skipping promtool check metrics: /usr/bin/promtool is not installed");
    }

    // More cycles: no second drill inside the interval.
    let restores_before = restores(&env);
    assert_eq!(restores_before, 1, "one restore, for 101");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(restores(&env), restores_before);
    let (code, stderr) = stop(child).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("restore drill passed"), "{stderr}");

    // A restart reads drills.json back: the results are kept and nothing is drilled again.
    let saved = read_json(&state_dir(&env).join("drills.json")).unwrap();
    assert_eq!(saved["in_flight"], Value::Null, "{saved:#}");
    // CT 100 is taken off the list: its record and its series go.
    configure(&env, json!({ "drill_guests": "101" }));
    let child = service(&env);
    let again = wait_for_drills(&env, "the results after a restart", |d| {
        last_of(d, 101).is_some() && d["next"].is_object() && last_of(d, 100).is_none()
    })
    .await;
    assert_eq!(last_of(&again, 101), last_of(&drills, 101), "{again:#}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(restores(&env), restores_before);
    let text = std::fs::read_to_string(&prom).unwrap();
    assert!(
        !text.contains(r#"felhom_backup_drill_success{node="pve",vmid="100"}"#)
            && text.contains(r#"felhom_backup_drill_success{node="pve",vmid="101"} 1"#),
        "{text}"
    );
    let (code, stderr) = stop(child).await;
    assert_eq!(code, 0, "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_drill_destroys_the_copy_and_does_not_count_the_drill() {
    let env = env().await;
    let state = env.sim.state();
    let child = service_in_a_long_drill(&env).await;
    let (code, stderr) = stop(child).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(!state.container_exists(9000), "{stderr}");
    assert!(!state.tasks_running());
    let saved = read_json(&state_dir(&env).join("drills.json")).unwrap();
    assert_eq!(saved["in_flight"], Value::Null, "{saved:#}");
    assert_eq!(
        saved["results"],
        json!({}),
        "an interrupted drill is no result: {saved:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_left_in_flight_is_finished_at_the_next_start_only_when_it_is_the_drills() {
    let env = env().await;
    let state = env.sim.state();
    let dir = state_dir(&env);
    std::fs::create_dir_all(&dir).unwrap();
    // An earlier run died after tagging its copy: the copy is destroyed at the start.
    state.add_container(9000, "copy", true);
    assert!(state.set_config_value(9000, "tags", Some(json!("felhom-drill"))));
    let in_flight = |scratch: u32| {
        json!({ "results": {}, "in_flight": {
            "vmid": 101, "scratch_vmid": scratch, "started_at": 1, "restore_task": null } })
    };
    std::fs::write(dir.join("drills.json"), in_flight(9000).to_string()).unwrap();
    // A long interval, and 101's drill is due at once: it must wait for the cleanup.
    let child = service_drilling_101(&env);
    let drills = wait_for_drills(&env, "the drill after the cleanup", |d| {
        last_of(d, 101).is_some()
    })
    .await;
    assert_eq!(last_of(&drills, 101).unwrap()["passed"], true, "{drills:#}");
    assert!(!state.container_exists(9000));
    // The tagged copy was destroyed first, then the new drill restored into 9000 again.
    assert_eq!(state.count_requests("DELETE", "/lxc/9000"), 2);
    let (code, stderr) = stop(child).await;
    assert_eq!(code, 0, "{stderr}");

    // An untagged guest at the recorded scratch vmid, with no restore task on record: it may
    // be another's, so it stays, and health.json names it.
    state.add_container(9001, "someone-elses", false);
    std::fs::write(dir.join("drills.json"), in_flight(9001).to_string()).unwrap();
    let deletes = state.count_requests("DELETE", "/lxc/9001");
    let child = service(&env);
    let drills = wait_for_drills(&env, "the leftover named", |d| {
        d["leftover"]["scratch_vmid"] == 9001
            && d["leftover"]["reason"]
                .as_str()
                .is_some_and(|p| p.contains("CT 9001") && p.contains("left in place"))
    })
    .await;
    assert!(state.container_exists(9001), "{drills:#}");
    assert_eq!(state.count_requests("DELETE", "/lxc/9001"), deletes);
    let prom_path = dir.join("felhom-agent.prom");
    let start = Instant::now();
    loop {
        let prom = std::fs::read_to_string(&prom_path).unwrap_or_default();
        if prom.contains(r#"felhom_backup_drill_leftover{node="pve"} 1"#) {
            break;
        }
        assert!(start.elapsed() < PATIENCE, "no leftover metric:\n{prom}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Once the operator removed it, the notice goes.
    assert!(state.remove_container(9001));
    wait_for_drills(&env, "the leftover cleared", |d| {
        d.is_object() && d["leftover"].is_null()
    })
    .await;
    let (code, stderr) = stop(child).await;
    assert_eq!(code, 0, "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_from_the_cli_spares_the_copy_of_the_drill_under_way() {
    let env = env().await;
    let state = env.sim.state();
    let child = service_in_a_long_drill(&env).await;
    // A leftover of an earlier drill, tagged, beside the running copy.
    state.add_container(9005, "old-copy", false);
    assert!(state.set_config_value(9005, "tags", Some(json!("felhom-drill"))));
    let r = agent(&env, &["--json", "backup", "verify", "--cleanup"]).await;
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let v = r.json();
    assert_eq!(v["removed"], json!([9005]), "{v:#}");
    assert_eq!(v["skipped"], json!([9000]), "{v:#}");
    assert_eq!(state.container_running(9000), Some(true));
    let (code, stderr) = stop(child).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(!state.container_exists(9000));

    // A record an old run left behind (begun long ago) protects nothing.
    state.add_container(9000, "left", false);
    assert!(state.set_config_value(9000, "tags", Some(json!("felhom-drill"))));
    std::fs::write(
        state_dir(&env).join("drills.json"),
        json!({ "in_flight": { "vmid": 101, "scratch_vmid": 9000, "started_at": 1 } }).to_string(),
    )
    .unwrap();
    let r = agent(&env, &["--json", "backup", "verify", "--cleanup"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["removed"], json!([9000]), "{}", r.stdout);
    assert!(!state.container_exists(9000));
}

/// Restores CT 101's newest backup into CT 9000 with the CLI, as a drill's restore would (no
/// tag yet), and returns the restore task's UPID.
async fn restore_untagged_copy(env: &Env) -> String {
    let archive = env.sim.state().backups("local", 101).pop().unwrap();
    let r = agent(
        env,
        &[
            "--json",
            "restore",
            &archive,
            "--vmid",
            "9000",
            "--storage",
            "local-lvm",
            "--unique",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    r.json()["task"]["upid"].as_str().unwrap().to_string()
}

fn write_in_flight(env: &Env, restore_task: &str) {
    let dir = state_dir(env);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("drills.json"),
        json!({ "in_flight": {
            "vmid": 101, "scratch_vmid": 9000, "started_at": 1, "restore_task": restore_task } })
        .to_string(),
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untagged_copy_whose_restore_ended_well_is_the_drills_and_is_destroyed() {
    let env = env().await;
    let state = env.sim.state();
    // The earlier run died after its restore ended, before it tagged the copy.
    let upid = restore_untagged_copy(&env).await;
    assert!(state.container_exists(9000));
    write_in_flight(&env, &upid);
    let child = service_drilling_101(&env);
    let drills = wait_for_drills(&env, "the drill after the cleanup", |d| {
        last_of(d, 101).is_some()
    })
    .await;
    assert_eq!(drills["leftover"], Value::Null, "{drills:#}");
    // Destroyed by the recovery, then restored and destroyed again by the new drill.
    assert_eq!(state.count_requests("DELETE", "/lxc/9000"), 2);
    assert!(!state.container_exists(9000));
    let (code, stderr) = stop(child).await;
    assert_eq!(code, 0, "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_task_that_cannot_be_read_decides_nothing_and_is_tried_again() {
    let env = env().await;
    let state = env.sim.state();
    let upid = restore_untagged_copy(&env).await;
    write_in_flight(&env, &upid);
    // Every read of a task's status fails: whether the restore ended well is unknown.
    state.inject(Fault {
        method: Some("GET".into()),
        path_contains: "/tasks/".into(),
        kind: FaultKind::CloseConnection,
        times: 100_000,
    });
    let child = service_drilling_101(&env);
    let drills = wait_for_drills(&env, "the failed cleanup named", |d| {
        d["problem"]
            .as_str()
            .is_some_and(|p| p.contains("cannot tell whether the restore task"))
    })
    .await;
    // Not destroyed, not declared someone else's: the record stays for the next attempt.
    assert!(state.container_exists(9000), "{drills:#}");
    assert_eq!(drills["leftover"], Value::Null, "{drills:#}");
    assert_eq!(drills["running"]["scratch_vmid"], 9000, "{drills:#}");
    assert_eq!(state.count_requests("DELETE", "/lxc/9000"), 0);
    let (code, stderr) = stop(child).await;
    assert_eq!(code, 0, "{stderr}");
    let saved = read_json(&state_dir(&env).join("drills.json")).unwrap();
    assert_eq!(
        saved["in_flight"]["restore_task"],
        upid.as_str(),
        "{saved:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schedule_skips_scratch_vmids_taken_elsewhere_in_the_cluster() {
    let env = env().await;
    let state = env.sim.state();
    // This node's list shows neither; a restore into either would fail.
    state.add_cluster_guest(9000, "VM", "pve2");
    state.add_cluster_guest(9001, "CT", "pve3");
    let child = service_drilling_101(&env);
    let drills = wait_for_drills(&env, "the drill", |d| last_of(d, 101).is_some()).await;
    let r = last_of(&drills, 101).unwrap();
    assert_eq!(r["passed"], true, "{drills:#}");
    assert_eq!(r["scratch_vmid"], 9002, "{drills:#}");
    let (code, stderr) = stop(child).await;
    assert_eq!(code, 0, "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_storage_that_cannot_be_listed_is_no_failed_drill() {
    let env = env().await;
    let state = env.sim.state();
    // Every backup listing fails: whether CT 101 has a backup is unknown, not "none".
    state.inject(Fault {
        method: Some("GET".into()),
        path_contains: "/storage/local/content".into(),
        kind: FaultKind::CloseConnection,
        times: 100_000,
    });
    let child = service_drilling_101(&env);
    let drills = wait_for_drills(&env, "the problem named", |d| {
        d["problem"]
            .as_str()
            .is_some_and(|p| p.contains("the drill of CT 101 could not begin"))
    })
    .await;
    assert_eq!(drills["last"], json!([]), "no result: {drills:#}");
    assert_eq!(restores(&env), 0);
    let (code, stderr) = stop(child).await;
    assert_eq!(code, 0, "{stderr}");
    let text = std::fs::read_to_string(state_dir(&env).join("felhom-agent.prom")).unwrap();
    assert!(
        !text.contains("felhom_backup_drill_success{"),
        "a drill that could not begin is no failure:\n{text}"
    );
}
