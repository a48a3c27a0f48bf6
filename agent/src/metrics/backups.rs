//! Backup age per guest, from the cycle's [backup inventory](crate::report::backups).
//!
//! Every container on the node gets a series per backup storage that was listed — 0 backups
//! and a timestamp of 0 where that storage holds none — and one
//! `felhom_guest_newest_backup_timestamp_seconds` over all storages, 0 when there is no
//! backup anywhere, so absence is alertable (`time() - … > 26 * 3600`). That one is left out
//! while some backup storage could not be listed (the newest backup may be on it); see
//! `felhom_backup_storage_up`. A restore drill's copy (tagged `felhom-drill`) is left out:
//! it has no backup of its own and exists only for the drill.

use std::collections::BTreeMap;

use super::{Family, flag};
use crate::report::HealthReport;

/// The backup families.
pub(super) fn families(report: &HealthReport, node: &str) -> Vec<Family> {
    let n = ("node", node);
    let mut up = Family::new(
        "felhom_backup_storage_up",
        "1 when the backup storage's listing was read this cycle, 0 otherwise.",
    );
    let mut count = Family::new(
        "felhom_guest_backups",
        "Backups of the container on the storage.",
    );
    let mut last = Family::new(
        "felhom_guest_last_backup_timestamp_seconds",
        "Creation time of the container's newest backup on the storage (Unix time; 0: none).",
    );
    let mut verified = Family::new(
        "felhom_guest_last_backup_verified",
        "Proxmox Backup Server storages: 1 when the newest backup's verification is ok, 0 when it failed or has not run.",
    );
    let mut newest = Family::new(
        "felhom_guest_newest_backup_timestamp_seconds",
        "Creation time of the container's newest backup on any storage (Unix time; 0: none anywhere).",
    );
    let (Some(guests), Some(storages)) = (&report.guests.data, &report.backups.data) else {
        return vec![up, count, last, verified, newest];
    };
    // A restore drill's copy has no backup of its own: it would look like a guest never
    // backed up.
    let guests: Vec<_> = guests
        .iter()
        .filter(|g| !crate::drill::is_scratch_copy(g))
        .collect();
    let mut best: BTreeMap<String, f64> =
        guests.iter().map(|g| (g.vmid.to_string(), 0.0)).collect();
    for s in storages {
        up.add(&[n, ("storage", &s.storage)], flag(s.listed));
        if !s.listed {
            continue;
        }
        for g in &guests {
            let vmid = g.vmid.to_string();
            let l = [n, ("vmid", vmid.as_str()), ("storage", s.storage.as_str())];
            let found = s.guests.iter().find(|b| b.vmid == g.vmid);
            let ts = found.and_then(|b| b.newest_ctime).unwrap_or(0).max(0) as f64;
            count.add(&l, found.map_or(0.0, |b| b.count as f64));
            last.add(&l, ts);
            if let Some(b) = found.filter(|_| s.pbs) {
                verified.add(&l, flag(b.newest_verification.as_deref() == Some("ok")));
            }
            if let Some(v) = best.get_mut(&vmid) {
                *v = v.max(ts);
            }
        }
    }
    if storages.iter().all(|s| s.listed) {
        for (vmid, ts) in &best {
            newest.add(&[n, ("vmid", vmid)], *ts);
        }
    }
    vec![up, count, last, verified, newest]
}

#[cfg(test)]
mod tests {
    use felhom_protocol::Vmid;

    use crate::metrics::{CycleInfo, render};
    use crate::report::Section;
    use crate::report::backups::{BackupStorage, GuestBackups};

    async fn report(storages: Vec<BackupStorage>) -> crate::report::HealthReport {
        let dir = tempfile::tempdir().unwrap();
        let helper = crate::helper_client::HelperClient::new(dir.path().join("none.sock"));
        let mut r = crate::report::collect(Err("not configured".into()), &helper).await;
        r.guests = Section::ok(
            [100, 101]
                .iter()
                .map(|v| {
                    serde_json::from_value(serde_json::json!({
                        "vmid": v, "status": "running", "lock": "weird\nlock"
                    }))
                    .unwrap()
                })
                .collect(),
        );
        r.backups = Section::ok(storages);
        r
    }

    fn storage(name: &str, listed: bool, verification: &str) -> BackupStorage {
        BackupStorage {
            storage: name.into(),
            pbs: true,
            listed,
            error: (!listed).then(|| "down".into()),
            guests: vec![GuestBackups {
                vmid: Vmid::new(100).unwrap(),
                count: 3,
                newest_ctime: Some(1_700_000_000),
                newest_volid: "x".into(),
                newest_verification: Some(verification.into()),
            }],
        }
    }

    fn text(r: &crate::report::HealthReport) -> String {
        render(
            r,
            "pve",
            CycleInfo {
                duration_seconds: 1.0,
                last_success: None,
            },
        )
    }

    #[tokio::test]
    async fn a_failed_verification_is_0_and_an_unlisted_storage_hides_the_newest() {
        let t = text(&report(vec![storage("pbs", true, "failed")]).await);
        let has = |l: &str| assert!(t.contains(&format!("{l}\n")), "{l} in\n{t}");
        has(r#"felhom_guest_last_backup_verified{node="pve",vmid="100",storage="pbs"} 0"#);
        has(r#"felhom_guest_backups{node="pve",vmid="101",storage="pbs"} 0"#);
        has(r#"felhom_guest_newest_backup_timestamp_seconds{node="pve",vmid="100"} 1700000000"#);
        has(r#"felhom_guest_newest_backup_timestamp_seconds{node="pve",vmid="101"} 0"#);
        // An unknown lock value: its own series, the line break escaped.
        has(r#"felhom_guest_lock_state{node="pve",vmid="100",state="weird\nlock"} 1"#);
        has(r#"felhom_guest_lock_state{node="pve",vmid="100",state="backup"} 0"#);

        let t = text(
            &report(vec![
                storage("pbs", true, "ok"),
                storage("usb", false, "ok"),
            ])
            .await,
        );
        assert!(t.contains(
            "felhom_guest_last_backup_verified{node=\"pve\",vmid=\"100\",storage=\"pbs\"} 1\n"
        ));
        assert!(t.contains("felhom_backup_storage_up{node=\"pve\",storage=\"usb\"} 0\n"));
        // The newest backup may be on the storage that could not be listed: no false 0.
        assert!(
            !t.contains("felhom_guest_newest_backup_timestamp_seconds{"),
            "{t}"
        );
        assert!(!t.contains("felhom_guest_backups{node=\"pve\",vmid=\"100\",storage=\"usb\"}"));
    }

    #[tokio::test]
    async fn a_drill_copy_is_not_a_guest_without_backups() {
        let mut r = report(vec![storage("pbs", true, "ok")]).await;
        if let Some(g) = r.guests.data.as_mut() {
            g.push(
                serde_json::from_value(serde_json::json!({
                    "vmid": 9000, "status": "running", "tags": "felhom-drill"
                }))
                .unwrap(),
            );
        }
        let t = text(&r);
        assert!(
            t.contains(
                "felhom_guest_newest_backup_timestamp_seconds{node=\"pve\",vmid=\"101\"} 0\n"
            ),
            "{t}"
        );
        assert!(!t.contains("vmid=\"9000\",storage="), "{t}");
        assert!(
            !t.contains("felhom_guest_newest_backup_timestamp_seconds{node=\"pve\",vmid=\"9000\"}"),
            "{t}"
        );
    }
}
