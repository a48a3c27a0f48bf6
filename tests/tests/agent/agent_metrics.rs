//! `felhom-agent run` writes the Prometheus metrics file after each cycle: every guest,
//! storage, disk and sensor of the health report is in it with the report's values, the file
//! is world-readable and replaced atomically, and `promtool check metrics` accepts it (when
//! promtool is installed: Debian's `prometheus` package, which CI installs).

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use felhom_tests::bins;
use felhom_tests::fake_helper::{FakeHelper, write_agent_config};
use felhom_tests::pve_sim::{PveSim, SimOptions};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

const PATIENCE: Duration = Duration::from_secs(60);

/// `name{labels}` → value, for every sample line.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap();
            (series.to_string(), value.parse::<f64>().unwrap())
        })
        .collect()
}

fn get(m: &BTreeMap<String, f64>, series: &str) -> f64 {
    *m.get(series)
        .unwrap_or_else(|| panic!("missing series {series}\nhave: {:#?}", m.keys()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_writes_a_valid_metrics_file_matching_the_report() {
    tokio::task::block_in_place(bins::agent);
    let sim = PveSim::start(SimOptions::default()).await.unwrap();
    // A PBS storage: CT 100's backup there is verified, CT 101 has none there (its only
    // backup is on `local`); CT 102 has no backup anywhere. CT 100 is locked for a backup
    // and carries tags with a quote and a control character.
    let st = sim.state();
    st.add_pbs_storage("pbs");
    st.add_backup_aged("pbs", 100, 7200);
    let newest_100 = st.add_backup_aged("pbs", 100, 3600);
    st.set_backup_verified(&newest_100, "ok");
    st.add_container(102, "mail", true);
    st.set_lock(100, Some("backup"));
    st.set_config_value(100, "tags", Some(serde_json::json!("prod;a\"b\u{7}c")));
    let helper = FakeHelper::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = write_agent_config(dir.path(), &sim, helper.socket_path(), 1).unwrap();
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

    // The default place: the state directory.
    let prom = dir.path().join("state/felhom-agent.prom");
    let health = dir.path().join("state/health.json");
    let start = Instant::now();
    // Read the pair from the same cycle: the report's timestamp is in both.
    let (text, report) = loop {
        assert!(
            start.elapsed() < PATIENCE,
            "no metrics file at {}",
            prom.display()
        );
        if let (Ok(text), Ok(json)) = (
            std::fs::read_to_string(&prom),
            std::fs::read_to_string(&health),
        ) {
            let report: Value = serde_json::from_str(&json).unwrap();
            let at = report["generated_at"].as_f64().unwrap();
            let m = samples(&text);
            if m.get(&format!(
                "felhom_report_timestamp_seconds{{node=\"{}\"}}",
                sim.node()
            )) == Some(&at)
            {
                break (text, report);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let pid = Pid::from_raw(i32::try_from(child.id().unwrap()).unwrap());
    kill(pid, Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(PATIENCE, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));

    let m = samples(&text);
    let node = sim.node();
    let n = format!("node=\"{node}\"");
    assert_eq!(get(&m, &format!("felhom_up{{{n}}}")), 1.0);
    for section in [
        "pve", "guests", "storage", "backups", "helper", "smart", "sensors",
    ] {
        assert_eq!(
            get(
                &m,
                &format!("felhom_section_up{{{n},section=\"{section}\"}}")
            ),
            1.0
        );
    }
    assert!(get(&m, &format!("felhom_cycle_duration_seconds{{{n}}}")) > 0.0);
    assert_eq!(
        get(&m, &format!("felhom_last_success_timestamp_seconds{{{n}}}")),
        report["generated_at"].as_f64().unwrap()
    );

    // Guests: the counts and one series per container, as in the report.
    let guests = report["guests"]["data"].as_array().unwrap();
    assert!(!guests.is_empty());
    let running = guests.iter().filter(|g| g["status"] == "running").count();
    assert_eq!(
        get(&m, &format!("felhom_guests{{{n}}}")),
        guests.len() as f64
    );
    assert_eq!(
        get(&m, &format!("felhom_guests_running{{{n}}}")),
        running as f64
    );
    for g in guests {
        let series = format!(
            "felhom_guest_running{{{n},vmid=\"{}\",name=\"{}\"}}",
            g["vmid"],
            g["name"].as_str().unwrap_or("")
        );
        let want = if g["status"] == "running" { 1.0 } else { 0.0 };
        assert_eq!(get(&m, &series), want, "{series}");
    }

    // Parity with prometheus-pve-exporter: the list's figures per guest, as in the report.
    for g in guests {
        let l = format!("{n},vmid=\"{}\"", g["vmid"]);
        for (family, key) in [
            ("felhom_guest_cpu_usage_ratio", "cpu"),
            ("felhom_guest_cpu_limit", "cpus"),
            ("felhom_guest_memory_usage_bytes", "mem"),
            ("felhom_guest_memory_size_bytes", "maxmem"),
            ("felhom_guest_disk_usage_bytes", "disk"),
            ("felhom_guest_disk_size_bytes", "maxdisk"),
            ("felhom_guest_network_receive_bytes_total", "netin"),
            ("felhom_guest_network_transmit_bytes_total", "netout"),
            ("felhom_guest_disk_read_bytes_total", "diskread"),
            ("felhom_guest_disk_written_bytes_total", "diskwrite"),
            ("felhom_guest_uptime_seconds", "uptime"),
        ] {
            let want = g[key].as_f64().unwrap_or_else(|| panic!("{key} in {g}"));
            assert_eq!(get(&m, &format!("{family}{{{l}}}")), want, "{family} {l}");
        }
        let lock = g["lock"].as_str().unwrap_or("");
        for st in ["backup", "snapshot", "rollback"] {
            assert_eq!(
                get(
                    &m,
                    &format!("felhom_guest_lock_state{{{l},state=\"{st}\"}}")
                ),
                if st == lock { 1.0 } else { 0.0 }
            );
        }
    }
    assert_eq!(
        get(
            &m,
            &format!("felhom_guest_lock_state{{{n},vmid=\"100\",state=\"backup\"}}")
        ),
        1.0
    );
    // Tags as an info label: the quote escaped, the control character gone.
    assert_eq!(
        get(
            &m,
            &format!(
                "felhom_guest_info{{{n},vmid=\"100\",name=\"web\",tags=\"prod;a\\\"bc\",template=\"0\"}}"
            )
        ),
        1.0
    );
    let v = &report["pve"]["data"]["version"];
    assert_eq!(
        get(
            &m,
            &format!(
                "felhom_version_info{{{n},version=\"{}\",release=\"{}\",repoid=\"{}\"}}",
                v["version"].as_str().unwrap(),
                v["release"].as_str().unwrap(),
                v["repoid"].as_str().unwrap()
            )
        ),
        1.0
    );
    let ns = &report["pve"]["data"]["node_status"];
    assert_eq!(
        get(&m, &format!("felhom_node_memory_size_bytes{{{n}}}")),
        ns["memory"]["total"].as_f64().unwrap()
    );
    assert_eq!(
        get(&m, &format!("felhom_node_uptime_seconds{{{n}}}")),
        ns["uptime"].as_f64().unwrap()
    );

    // Backup age per guest and storage, as in the storage listings.
    let ctime = |storage: &str, vmid: u32| -> f64 {
        report["backups"]["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["storage"] == storage)
            .unwrap()["guests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["vmid"] == vmid)
            .map_or(0.0, |g| g["newest_ctime"].as_f64().unwrap())
    };
    let b = |family: &str, vmid: u32, storage: &str| {
        get(
            &m,
            &format!("{family}{{{n},vmid=\"{vmid}\",storage=\"{storage}\"}}"),
        )
    };
    let last = "felhom_guest_last_backup_timestamp_seconds";
    assert_eq!(b("felhom_guest_backups", 100, "pbs"), 2.0);
    assert_eq!(b(last, 100, "pbs"), ctime("pbs", 100));
    assert!(b(last, 100, "pbs") > 0.0);
    assert_eq!(b("felhom_guest_last_backup_verified", 100, "pbs"), 1.0);
    assert_eq!(b("felhom_guest_backups", 101, "local"), 1.0);
    assert_eq!(b(last, 101, "local"), ctime("local", 101));
    assert_eq!(b("felhom_guest_backups", 101, "pbs"), 0.0);
    assert_eq!(b(last, 101, "pbs"), 0.0);
    // `local` is no PBS storage: no verification series there.
    assert!(!m.contains_key(&format!(
        "felhom_guest_last_backup_verified{{{n},vmid=\"101\",storage=\"local\"}}"
    )));
    let newest = |vmid: u32| {
        get(
            &m,
            &format!("felhom_guest_newest_backup_timestamp_seconds{{{n},vmid=\"{vmid}\"}}"),
        )
    };
    assert_eq!(newest(100), ctime("pbs", 100));
    assert_eq!(newest(101), ctime("local", 101));
    // No backup anywhere: 0, so an age alert fires.
    assert_eq!(newest(102), 0.0);
    for storage in ["local", "pbs"] {
        assert_eq!(
            get(
                &m,
                &format!("felhom_backup_storage_up{{{n},storage=\"{storage}\"}}")
            ),
            1.0
        );
    }

    // Storage: bytes and the active flag, as in the report.
    for s in report["storage"]["data"].as_array().unwrap() {
        let l = format!("{n},storage=\"{}\"", s["storage"].as_str().unwrap());
        if let Some(used) = s["used"].as_f64() {
            assert_eq!(get(&m, &format!("felhom_storage_used_bytes{{{l}}}")), used);
        }
        if let Some(avail) = s["avail"].as_f64() {
            assert_eq!(
                get(&m, &format!("felhom_storage_available_bytes{{{l}}}")),
                avail
            );
        }
        let active = if s["active"] == true { 1.0 } else { 0.0 };
        assert_eq!(get(&m, &format!("felhom_storage_active{{{l}}}")), active);
    }

    // Disks: the SMART verdict and figures, as in the report.
    let disks = report["smart"]["data"].as_array().unwrap();
    assert!(!disks.is_empty());
    for d in disks {
        let s = &d["summary"];
        let l = format!("{n},disk=\"{}\"", d["disk"].as_str().unwrap());
        assert_eq!(
            get(&m, &format!("felhom_disk_smart_passed{{{l}}}")),
            if s["passed"] == true { 1.0 } else { 0.0 }
        );
        assert_eq!(
            get(&m, &format!("felhom_disk_smart_state{{{l},state=\"ok\"}}")),
            if s["health"] == "ok" { 1.0 } else { 0.0 }
        );
        assert_eq!(
            get(
                &m,
                &format!("felhom_disk_smart_state{{{l},state=\"failing\"}}")
            ),
            0.0
        );
        assert_eq!(
            get(&m, &format!("felhom_disk_temperature_celsius{{{l}}}")),
            s["temperature_c"].as_f64().unwrap()
        );
        assert_eq!(
            get(&m, &format!("felhom_disk_power_on_seconds{{{l}}}")),
            s["power_on_hours"].as_f64().unwrap() * 3600.0
        );
        if let Some(v) = s["reallocated_sectors"].as_f64() {
            assert_eq!(
                get(&m, &format!("felhom_disk_reallocated_sectors{{{l}}}")),
                v
            );
        }
    }

    // Sensors: one series per reading, in the family of its kind.
    let sensors = report["sensors"]["data"].as_array().unwrap();
    assert!(!sensors.is_empty());
    for r in sensors {
        let family = match r["kind"].as_str().unwrap() {
            "Temperature" => "felhom_hwmon_temperature_celsius",
            "Fan" => "felhom_hwmon_fan_rpm",
            "Voltage" => "felhom_hwmon_volts",
            "Power" => "felhom_hwmon_watts",
            "Current" => "felhom_hwmon_amperes",
            other => panic!("unknown sensor kind {other}"),
        };
        let series = format!(
            "{family}{{{n},chip=\"{}\",device=\"{}\",sensor=\"{}\"}}",
            r["chip"].as_str().unwrap(),
            r["device"].as_str().unwrap(),
            r["label"].as_str().unwrap()
        );
        assert_eq!(get(&m, &series), r["value"].as_f64().unwrap(), "{series}");
    }

    // Readable by node_exporter (another user); no temp file left behind.
    let mode = std::fs::metadata(&prom).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644);
    let leftovers: Vec<String> = std::fs::read_dir(dir.path().join("state"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // The format itself, by Prometheus's own checker.
    let promtool = std::path::Path::new("/usr/bin/promtool");
    if promtool.exists() {
        let mut p = std::process::Command::new(promtool)
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        p.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
        let out = p.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "promtool check metrics: {}{}\n{text}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    } else {
        eprintln!(
            "skipping promtool check metrics: /usr/bin/promtool is not installed (Debian package prometheus)"
        );
    }
}

fn client(sim: &PveSim) -> felhom_agent::pve::PveClient {
    use felhom_agent::pve::{ApiSettings, NodeName, PveClient, TlsMode, TokenId};
    PveClient::new(&ApiSettings {
        api_url: sim.base_url().parse().unwrap(),
        node: NodeName::new(sim.node()).unwrap(),
        token_id: TokenId::new(sim.token_id()).unwrap(),
        token_secret: felhom_agent::secret::Secret::new(sim.token_secret()).unwrap(),
        tls: TlsMode::Pinned(sim.fingerprint().parse().unwrap()),
        tls_server_name: None,
        request_timeout: Duration::from_secs(5),
        max_response_bytes: felhom_agent::pve::DEFAULT_MAX_RESPONSE_BYTES,
    })
    .unwrap()
}

/// A report from the simulator (no helper: its sections are errors, which does not matter
/// here).
async fn report_of(sim: &PveSim) -> felhom_agent::report::HealthReport {
    let dir = tempfile::tempdir().unwrap();
    let helper = felhom_agent::helper_client::HelperClient::new(dir.path().join("none.sock"));
    felhom_agent::report::collect(Ok(&client(sim)), &helper).await
}

#[tokio::test]
async fn a_malformed_status_field_costs_only_that_value() {
    use felhom_agent::report::Status;
    let sim = PveSim::start(SimOptions::default()).await.unwrap();
    let st = sim.state();
    st.patch_field("/nodes/pve/status", "cpu", serde_json::json!("a lot"));
    st.patch_field(
        "/nodes/pve/status",
        "memory",
        serde_json::json!({"total": 100, "used": [1], "free": 3}),
    );
    // And one in every entry of the guest list.
    st.patch_field("/nodes/pve/lxc", "netin", serde_json::json!({"x": 1}));
    let r = report_of(&sim).await;
    assert_eq!(r.pve.status, Status::Ok, "{:?}", r.pve.message);
    let pve = r.pve.data.as_ref().unwrap();
    assert_eq!(pve.version.version, "9.1.3");
    let s = &pve.node_status;
    // The malformed values are gone, their neighbours are not.
    assert_eq!(s.cpu, None);
    assert_eq!(s.memory.total, 0);
    assert!(s.uptime.is_some_and(|u| u > 0));
    assert!(s.pveversion.as_deref().unwrap().contains("9.1.3"));
    assert_eq!(s.rootfs.total, 100_861_726_720);
    assert_eq!(s.loadavg.len(), 3);
    assert_eq!(r.guests.status, Status::Ok, "{:?}", r.guests.message);
    let guests = r.guests.data.as_ref().unwrap();
    assert_eq!(guests.len(), 2);
    assert!(
        guests
            .iter()
            .all(|g| g.netin.is_none() && g.netout.is_some())
    );
    // The metrics keep the version and leave out what is unknown.
    let text = felhom_agent::metrics::render(
        &r,
        "pve",
        felhom_agent::metrics::CycleInfo {
            duration_seconds: 0.1,
            last_success: None,
        },
    );
    assert!(
        text.contains("felhom_version_info{node=\"pve\",version=\"9.1.3\""),
        "{text}"
    );
    assert!(!text.contains("felhom_node_cpu_usage_ratio{"), "{text}");
    assert!(
        !text.contains("felhom_guest_network_receive_bytes_total{"),
        "{text}"
    );
    assert!(text.contains("felhom_node_uptime_seconds{"), "{text}");
}

#[tokio::test]
async fn requests_per_cycle_do_not_grow_with_the_guests() {
    let sim = PveSim::start(SimOptions::default()).await.unwrap();
    let st = sim.state();
    st.add_pbs_storage("pbs");
    async fn cycle(sim: &PveSim) -> (felhom_agent::report::HealthReport, usize) {
        let before = sim.state().requests().len();
        let r = report_of(sim).await;
        (r, sim.state().requests().len() - before)
    }
    let (r, few) = cycle(&sim).await;
    assert_eq!(r.guests.data.as_ref().unwrap().len(), 2);
    for vmid in 200..400 {
        st.add_container(vmid, &format!("ct{vmid}"), vmid % 2 == 0);
        st.add_backup_aged("pbs", vmid, 60);
    }
    let (r, many) = cycle(&sim).await;
    assert_eq!(r.guests.data.as_ref().unwrap().len(), 202);
    // version, node status, guests, storages, and one listing per backup storage.
    assert_eq!((few, many), (6, 6));
    let listed: Vec<String> = sim
        .state()
        .requests()
        .iter()
        .filter(|q| q.path.ends_with("/content"))
        .map(|q| format!("{}?{}", q.path, q.query))
        .collect();
    assert!(
        listed.iter().all(|l| l.ends_with("?content=backup")),
        "{listed:?}"
    );
}

/// The ```yaml block of the docs that holds the backup-age alert (README.md, or a page under
/// docs/ once the guide moves there).
fn documented_alert_rule() -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = vec![root.join("README.md")];
    if let Ok(dir) = std::fs::read_dir(root.join("docs")) {
        files.extend(dir.map(|e| e.unwrap().path()));
    }
    for f in files
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "md"))
    {
        let text = std::fs::read_to_string(f).unwrap();
        for block in text.split("```yaml\n").skip(1) {
            let block = block.split("```").next().unwrap();
            if block.contains("alert: FelhomBackupTooOld") {
                return block.to_string();
            }
        }
    }
    panic!("no ```yaml block with `alert: FelhomBackupTooOld` in {files:?}");
}

#[test]
fn the_documented_backup_and_drill_alerts_pass_promtool_and_fire_when_they_should() {
    let rules = documented_alert_rule();
    let promtool = std::path::Path::new("/usr/bin/promtool");
    if !promtool.exists() {
        eprintln!(
            "skipping promtool check rules: /usr/bin/promtool is not installed (Debian package prometheus)"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rules.yml"), &rules).unwrap();
    // CT 100's newest backup is 8,000 s old at 30 h; CT 101 has none (0). CT 100's drill
    // passed and CT 101's failed and left its copy, both 21 h before the 9th day; CT 102 was
    // never drilled.
    std::fs::write(
        dir.path().join("test.yml"),
        r#"rule_files:
  - rules.yml
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'felhom_guest_newest_backup_timestamp_seconds{node="pve",vmid="100"}'
        values: '100000+0x2000'
      - series: 'felhom_guest_newest_backup_timestamp_seconds{node="pve",vmid="101"}'
        values: '0+0x2000'
      - series: 'felhom_backup_drill_success{node="pve",vmid="100"}'
        values: '1+0x2000'
      - series: 'felhom_backup_drill_success{node="pve",vmid="101"}'
        values: '0+0x2000'
      - series: 'felhom_backup_drill_timestamp_seconds{node="pve",vmid="100"}'
        values: '700000+0x14000'
      - series: 'felhom_backup_drill_timestamp_seconds{node="pve",vmid="101"}'
        values: '700000+0x14000'
      - series: 'felhom_backup_drill_timestamp_seconds{node="pve",vmid="102"}'
        values: '0+0x14000'
      - series: 'felhom_backup_drill_cleanup_ok{node="pve",vmid="100"}'
        values: '1+0x2000'
      - series: 'felhom_backup_drill_cleanup_ok{node="pve",vmid="101"}'
        values: '0+0x2000'
      - series: 'felhom_backup_drill_leftover{node="pve"}'
        values: '0+0x2000'
    alert_rule_test:
      - eval_time: 30h
        alertname: FelhomBackupTooOld
        exp_alerts:
          - exp_labels:
              severity: warning
              node: pve
              vmid: "101"
            exp_annotations:
              summary: "CT 101 on pve: no backup in the last 26 hours"
      - eval_time: 30h
        alertname: FelhomRestoreDrillFailed
        exp_alerts:
          - exp_labels:
              severity: warning
              node: pve
              vmid: "101"
            exp_annotations:
              summary: "CT 101 on pve: its last restore drill failed (health.json drills.last)"
      - eval_time: 9d
        alertname: FelhomRestoreDrillMissing
        exp_alerts:
          - exp_labels:
              severity: warning
              node: pve
              vmid: "102"
            exp_annotations:
              summary: "CT 102 on pve: no restore drill in the last 8 days"
      - eval_time: 30h
        alertname: FelhomRestoreDrillLeftover
        exp_alerts:
          - exp_labels:
              severity: warning
              node: pve
              vmid: "101"
            exp_annotations:
              summary: "pve: a restore drill's scratch copy may be left over (felhom-agent backup verify --cleanup)"
"#,
    )
    .unwrap();
    for args in [
        ["check", "rules", "rules.yml"],
        ["test", "rules", "test.yml"],
    ] {
        let out = std::process::Command::new(promtool)
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}\n{rules}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
