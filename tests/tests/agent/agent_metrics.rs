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
    for section in ["pve", "guests", "storage", "helper", "smart", "sensors"] {
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
