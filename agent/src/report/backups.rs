//! The backup inventory of a cycle: for every backup storage, each guest's number of backups,
//! the newest one's creation time and, on Proxmox Backup Server, its verification state.
//!
//! One `GET …/storage/{storage}/content?content=backup` per active, enabled storage that holds
//! `backup` content — the requests per cycle depend on the number of backup storages, never on
//! the number of guests. A storage whose listing fails is kept with its error (the section is
//! then `warning`: the rest is current); it does not degrade the report.

use std::collections::BTreeMap;

use felhom_protocol::Vmid;
use serde::Serialize;

use crate::pve::backup_list::BackupVolume;
use crate::pve::{ContentKind, PveClient, StorageEntry, StorageId};

use super::{Section, Status};

/// One guest's backups on one storage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GuestBackups {
    /// The guest.
    pub vmid: Vmid,
    /// How many backups the storage lists for it.
    pub count: u64,
    /// The newest backup's creation time (epoch seconds), when the storage reports one.
    pub newest_ctime: Option<i64>,
    /// The newest backup's volume id.
    pub newest_volid: String,
    /// The newest backup's PBS verification state (`ok`, `failed`), when reported.
    pub newest_verification: Option<String>,
}

/// One backup storage.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BackupStorage {
    /// Storage id.
    pub storage: String,
    /// Whether it is a Proxmox Backup Server storage (which reports verification).
    pub pbs: bool,
    /// Whether its listing was read this cycle.
    pub listed: bool,
    /// Why it was not.
    pub error: Option<String>,
    /// Per guest (containers; backups of VMs are left out), by vmid.
    pub guests: Vec<GuestBackups>,
}

/// The storages the inventory covers: not disabled, holding backups (an inactive one is
/// reported as not listed).
pub fn backup_storages(storages: &[StorageEntry]) -> Vec<&StorageEntry> {
    storages
        .iter()
        .filter(|s| s.holds(ContentKind::Backup) && s.enabled != Some(false))
        .collect()
}

/// Sums up one storage's listing per guest.
pub fn summarize(volumes: &[BackupVolume]) -> Vec<GuestBackups> {
    let mut by: BTreeMap<Vmid, GuestBackups> = BTreeMap::new();
    for v in volumes {
        let Some(vmid) = v.vmid else { continue };
        if v.subtype.as_deref().is_some_and(|t| t != "lxc") {
            continue;
        }
        let g = by.entry(vmid).or_insert_with(|| GuestBackups {
            vmid,
            count: 0,
            newest_ctime: None,
            newest_volid: String::new(),
            newest_verification: None,
        });
        g.count += 1;
        let newer = match (v.ctime, g.newest_ctime) {
            (Some(t), Some(n)) => t > n,
            (Some(_), None) => true,
            (None, _) => g.newest_volid.is_empty(),
        };
        if newer {
            g.newest_ctime = v.ctime.or(g.newest_ctime);
            g.newest_volid.clone_from(&v.volid);
            g.newest_verification = v.verification.as_ref().and_then(|x| x.state.clone());
        }
    }
    by.into_values().collect()
}

/// Lists the backups of every backup storage (concurrently; one request each).
pub async fn collect(pve: &PveClient, storages: &[StorageEntry]) -> Section<Vec<BackupStorage>> {
    let reads = backup_storages(storages).into_iter().map(|s| async move {
        let pbs = s.storage_type == "pbs";
        let mut out = BackupStorage {
            storage: s.storage.clone(),
            pbs,
            listed: false,
            error: None,
            guests: Vec::new(),
        };
        if !s.active {
            out.error = Some("storage is not active".into());
            return out;
        }
        let id = match StorageId::new(&s.storage) {
            Ok(id) => id,
            Err(e) => {
                out.error = Some(e.to_string());
                return out;
            }
        };
        match pve.backup_volumes(&id).await {
            Ok(v) => {
                out.listed = true;
                out.guests = summarize(&v);
            }
            Err(e) => out.error = Some(e.to_string()),
        }
        out
    });
    let list = futures::future::join_all(reads).await;
    let failed: Vec<String> = list
        .iter()
        .filter_map(|s| s.error.as_ref().map(|e| format!("{}: {e}", s.storage)))
        .collect();
    Section {
        status: if failed.is_empty() {
            Status::Ok
        } else {
            Status::Warning
        },
        data: Some(list),
        message: (!failed.is_empty()).then(|| failed.join("; ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vol(volid: &str, vmid: u32, ctime: Option<i64>, verify: Option<&str>) -> BackupVolume {
        BackupVolume {
            volid: volid.into(),
            vmid: Some(Vmid::new(vmid).unwrap()),
            ctime,
            subtype: Some("lxc".into()),
            verification: verify.map(|s| crate::pve::backup_list::Verification {
                state: Some(s.into()),
            }),
        }
    }

    #[test]
    fn the_newest_backup_per_guest_wins_and_vms_are_left_out() {
        let mut vm = vol("pbs:backup/vm/102/x", 102, Some(50), None);
        vm.subtype = Some("qemu".into());
        let s = summarize(&[
            vol("a", 100, Some(10), Some("ok")),
            vol("b", 100, Some(30), Some("failed")),
            vol("c", 100, Some(20), Some("ok")),
            vol("d", 101, None, None),
            vm,
        ]);
        assert_eq!(s.len(), 2);
        assert_eq!(
            (s[0].count, s[0].newest_ctime, s[0].newest_volid.as_str()),
            (3, Some(30), "b")
        );
        assert_eq!(s[0].newest_verification.as_deref(), Some("failed"));
        assert_eq!((s[1].count, s[1].newest_ctime), (1, None));
    }
}
