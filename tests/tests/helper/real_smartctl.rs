//! The SMART path with the real tools: the real `felhom-helper` (socket-activated, as root)
//! runs Debian's real `smartctl` on the disks this machine has, and the real `felhom-agent`
//! reports them. On a VM the disks are virtio or emulated and report no SMART data: the agent
//! must say so per disk, with smartctl's exit bits explained, and must never call such a disk
//! failing. On a machine with real SMART disks the same test checks that every disk gets a
//! verdict-backed state.
//!
//! Needs root (the helper's trust checks and smartctl's device access) and
//! `/usr/sbin/smartctl` (Debian's smartmontools, which CI installs); skips with a printed
//! reason otherwise.

use std::path::Path;

use felhom_tests::bins;
use felhom_tests::helper_harness::{HelperHarness, HelperHarnessOptions};
use serde_json::Value;

const SMARTCTL: &str = "/usr/sbin/smartctl";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_helper_and_real_smartctl_on_this_machines_disks() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipping: needs root (the real helper and smartctl's device access)");
        return;
    }
    if !Path::new(SMARTCTL).exists() {
        eprintln!("skipping: {SMARTCTL} is not installed (apt-get install smartmontools)");
        return;
    }
    let disks: Vec<String> = std::fs::read_dir("/sys/block")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| {
                    !["loop", "ram", "zram", "dm-", "md", "sr", "nbd"]
                        .iter()
                        .any(|p| n.starts_with(p))
                })
                .collect()
        })
        .unwrap_or_default();
    if disks.is_empty() {
        eprintln!("skipping: this machine has no disks in /sys/block that the helper reads");
        return;
    }
    tokio::task::block_in_place(bins::agent);

    // The harness's helper, but with the real smartctl and the real /sys/block.
    let mut h = HelperHarness::prepare(&HelperHarnessOptions::default()).unwrap();
    let mut cfg: Value = serde_json::from_slice(&std::fs::read(h.config_path()).unwrap()).unwrap();
    cfg["tools"]["smartctl"] = SMARTCTL.into();
    cfg["sysfs_block"] = "/sys/block".into();
    std::fs::write(h.config_path(), serde_json::to_vec_pretty(&cfg).unwrap()).unwrap();
    tokio::task::block_in_place(|| h.launch_activated()).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.json");
    std::fs::write(
        &config,
        serde_json::to_vec(&serde_json::json!({ "helper_socket": h.socket_path() })).unwrap(),
    )
    .unwrap();

    let human = bins::run_agent(&config, &["smart"]).await;
    let json = bins::run_agent(&config, &["--json", "smart"]).await;
    println!(
        "felhom-agent smart (exit {}):\n{}",
        human.code, human.stdout
    );
    let v: Value = serde_json::from_str(&json.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", json.stdout, json.stderr));
    let rows = v["disks"].as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["disk"].as_str().unwrap()).collect();
    for d in &disks {
        assert!(names.contains(&d.as_str()), "{d} missing from {names:?}");
        assert!(
            human.stdout.contains(d.as_str()),
            "{d} missing from the table"
        );
    }

    let mut any_failing = false;
    for r in rows {
        let disk = r["disk"].as_str().unwrap();
        let s = &r["summary"];
        assert!(
            !s.is_null(),
            "{disk}: the agent could not read smartctl's answer: {}\n{}",
            r["error"],
            h.log()
        );
        // smartctl's JSON went through: its exit status is in the summary, and every set bit
        // is explained.
        let status = s["exit_status"].as_u64().unwrap();
        let bits = s["exit_bits"].as_array().unwrap();
        assert_eq!(
            bits.len(),
            status.count_ones() as usize,
            "{disk}: exit status {status:#010b} but bits {bits:?}"
        );
        if s["passed"].is_null() {
            // No verdict (no SMART support, or smartctl cannot open it): never failing, and
            // the reason and the state are spelled out.
            assert_ne!(s["health"], "failing", "{disk}: {s:#}");
            assert_eq!(s["health"], "unknown", "{disk}: {s:#}");
            let problems = s["problems"].to_string();
            assert!(
                problems.contains("no SMART support") || problems.contains("no overall-health"),
                "{disk}: {problems}"
            );
            let line = human
                .stdout
                .lines()
                .find(|l| l.split_whitespace().next() == Some(disk))
                .unwrap_or_else(|| panic!("no row for {disk}:\n{}", human.stdout));
            assert!(!line.contains("FAILING"), "{line}");
            if s["no_smart_support"] == true {
                assert!(line.contains("no SMART"), "{line}");
            } else {
                assert!(line.contains("unknown"), "{line}");
            }
            // smartctl's "device open failed" bit means no SMART reachable, not a failure.
            if bits.iter().any(|b| b["bit"] == 1) {
                assert_eq!(s["no_smart_support"], true, "{disk}: {s:#}");
                assert!(human.stdout.contains(&format!("{disk}: no SMART support")));
            }
        } else if s["health"] == "failing" {
            any_failing = true;
        }
    }
    // The documented exit codes: 1 only when a disk is failing or could not be read; disks
    // without SMART are neither.
    let want = if any_failing { 1 } else { 0 };
    assert_eq!(human.code, want, "{}\n{}", human.stdout, human.stderr);
    assert_eq!(json.code, want);
    assert_eq!(v["ok"], !any_failing);
}
