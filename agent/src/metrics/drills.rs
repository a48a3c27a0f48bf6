//! The restore drill schedule's results ([`crate::drill::schedule`]), when it is on.
//!
//! Each guest to drill (the schedule's current targets) gets
//! `felhom_backup_drill_timestamp_seconds` — 0 until its first drill, so "never drilled"
//! alerts like "drilled too long ago" — and, once drilled, `felhom_backup_drill_success`,
//! `felhom_backup_drill_duration_seconds` and `felhom_backup_drill_cleanup_ok` of its last
//! drill. A guest no longer to be drilled has no series: its alerts resolve instead of
//! firing about drills it no longer gets.

use std::collections::BTreeMap;

use super::{Family, flag};
use crate::drill::schedule::DrillRecord;
use crate::report::HealthReport;

/// The drill families (none when the schedule is off).
pub(super) fn families(report: &HealthReport, node: &str) -> Vec<Family> {
    let Some(d) = &report.drills else {
        return Vec::new();
    };
    let n = ("node", node);
    let mut success = Family::new(
        "felhom_backup_drill_success",
        "1 when the guest's last scheduled restore drill passed (restored, started, stayed running), 0 when it failed.",
    );
    let mut timestamp = Family::new(
        "felhom_backup_drill_timestamp_seconds",
        "When the guest's last scheduled restore drill ended (Unix time; 0: not drilled yet).",
    );
    let mut duration = Family::new(
        "felhom_backup_drill_duration_seconds",
        "How long the guest's last scheduled restore drill took, cleanup included.",
    );
    let mut cleanup = Family::new(
        "felhom_backup_drill_cleanup_ok",
        "1 when the last drill's scratch copy was removed or never made, 0 when it may be left over.",
    );
    let mut running = Family::new(
        "felhom_backup_drill_running",
        "1 while a scheduled restore drill runs.",
    );
    running.add(&[n], flag(d.running.is_some()));
    let mut leftover = Family::new(
        "felhom_backup_drill_leftover",
        "1 while a guest sits at a scratch vmid that a drill may have left and could not prove its own (see health.json drills.leftover).",
    );
    leftover.add(&[n], flag(d.leftover.is_some()));
    let last: BTreeMap<u32, &DrillRecord> = d.last.iter().map(|r| (r.vmid, r)).collect();
    for vmid in &d.targets {
        let v = vmid.to_string();
        let l = [n, ("vmid", v.as_str())];
        let Some(r) = last.get(vmid) else {
            timestamp.add(&l, 0.0);
            continue;
        };
        success.add(&l, flag(r.passed));
        timestamp.add(&l, r.finished_at as f64);
        duration.add(&l, r.duration_seconds);
        cleanup.add(&l, flag(r.cleanup_error.is_none()));
    }
    vec![success, timestamp, duration, cleanup, running, leftover]
}

#[cfg(test)]
mod tests {
    use crate::drill::Failure;
    use crate::drill::schedule::{DrillRecord, DrillsStatus, InFlight};
    use crate::metrics::{CycleInfo, render};

    fn record(vmid: u32, passed: bool, cleanup_error: Option<&str>) -> DrillRecord {
        DrillRecord {
            vmid,
            finished_at: 1_700_000_000 + u64::from(vmid),
            passed,
            ok: passed && cleanup_error.is_none(),
            duration_seconds: 42.5,
            scratch_vmid: Some(9000),
            archive: Some("local:backup/vzdump-lxc-101.tar.zst".into()),
            archive_age_seconds: Some(3600),
            failure: (!passed).then(|| Failure {
                step: "settle".into(),
                reason: "stopped".into(),
            }),
            cleanup_error: cleanup_error.map(str::to_string),
        }
    }

    async fn text(drills: Option<DrillsStatus>) -> String {
        let dir = tempfile::tempdir().unwrap();
        let helper = crate::helper_client::HelperClient::new(dir.path().join("none.sock"));
        let mut r = crate::report::collect(Err("not configured".into()), &helper).await;
        r.drills = drills;
        render(
            &r,
            "pve",
            CycleInfo {
                duration_seconds: 1.0,
                last_success: None,
            },
        )
    }

    #[tokio::test]
    async fn each_guest_gets_its_last_drill_and_a_guest_never_drilled_gets_0() {
        let status = DrillsStatus {
            guests: "list",
            targets: vec![101, 102, 103],
            interval_seconds: 3600,
            scratch_range: [9000, 9099],
            running: Some(InFlight {
                vmid: 103,
                scratch_vmid: 9000,
                started_at: 1,
                restore_task: None,
            }),
            next: None,
            last: vec![
                record(101, true, None),
                record(102, false, Some("destroy: x")),
                // No longer a target (its record is from before a config change).
                record(104, true, None),
            ],
            leftover: None,
            problem: None,
        };
        let t = text(Some(status)).await;
        for line in [
            r#"felhom_backup_drill_success{node="pve",vmid="101"} 1"#,
            r#"felhom_backup_drill_success{node="pve",vmid="102"} 0"#,
            r#"felhom_backup_drill_timestamp_seconds{node="pve",vmid="101"} 1700000101"#,
            r#"felhom_backup_drill_timestamp_seconds{node="pve",vmid="103"} 0"#,
            r#"felhom_backup_drill_duration_seconds{node="pve",vmid="102"} 42.5"#,
            r#"felhom_backup_drill_cleanup_ok{node="pve",vmid="101"} 1"#,
            r#"felhom_backup_drill_cleanup_ok{node="pve",vmid="102"} 0"#,
            r#"felhom_backup_drill_running{node="pve"} 1"#,
            r#"felhom_backup_drill_leftover{node="pve"} 0"#,
            "# TYPE felhom_backup_drill_success gauge",
        ] {
            assert!(t.contains(line), "missing {line} in\n{t}");
        }
        assert!(
            !t.contains(r#"felhom_backup_drill_success{node="pve",vmid="103"}"#),
            "a guest not drilled yet has no success value:\n{t}"
        );
        assert!(
            !t.contains(r#"vmid="104""#),
            "not a target, no series:\n{t}"
        );
    }

    #[tokio::test]
    async fn no_drill_series_while_the_schedule_is_off() {
        assert!(!text(None).await.contains("felhom_backup_drill"));
    }
}
