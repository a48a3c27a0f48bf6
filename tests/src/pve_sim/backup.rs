//! vzdump details: where the archive goes (file storages and Proxmox Backup Server), the
//! task log line naming it, `remove` (pruning by the storage's `keep-last`) and the "max
//! backup limit" failure, and one-shot quirks that let tests exercise the agent's checks.

use super::state::{Effect, Inner, Volume};

/// The task log line vzdump writes for the archive (pve-manager `PVE/VZDump.pm`).
pub(crate) fn archive_line(inner: &Inner, volume: &Volume) -> String {
    let (store, rest) = volume.volid.split_once(':').unwrap_or(("", &volume.volid));
    if inner.is_pbs(store) {
        let snap = rest.strip_prefix("backup/").unwrap_or(rest);
        format!("INFO: creating Proxmox Backup Server archive '{snap}'")
    } else {
        format!(
            "INFO: creating vzdump archive '{}'",
            inner.archive_path(&volume.volid)
        )
    }
}

/// The unprotected backups of `vmid` on `storage`, newest first.
fn prunable(inner: &Inner, storage: &str, vmid: u32) -> Vec<(u64, String)> {
    let mut v: Vec<(u64, String)> = inner
        .storage(storage)
        .map(|s| {
            s.volumes
                .iter()
                .filter(|v| v.content == "backup" && v.vmid == Some(vmid) && !v.protected)
                .map(|v| (v.ctime, v.volid.clone()))
                .collect()
        })
        .unwrap_or_default();
    v.sort_by(|a, b| b.cmp(a));
    v
}

/// With `remove=0`, vzdump refuses a backup when the storage already holds `keep-last`
/// unprotected backups of the guest. The message is vzdump's.
pub(crate) fn limit_error(inner: &Inner, storage: &str, vmid: u32, remove: bool) -> Option<String> {
    let keep = inner.storage(storage)?.keep_last?;
    (!remove && prunable(inner, storage, vmid).len() >= keep as usize).then(|| {
        format!(
            "There is a max backup limit of {keep} enforced by the target storage or the vzdump parameters. Either increase the limit or delete old backup(s)."
        )
    })
}

/// With `remove=1` (the API default), the older backups beyond `keep-last` (counting the
/// new one) are removed after the backup; returns their removal effects and log lines.
pub(crate) fn prune(inner: &Inner, storage: &str, vmid: u32, log: &mut Vec<String>) -> Vec<Effect> {
    let Some(keep) = inner.storage(storage).and_then(|s| s.keep_last) else {
        return Vec::new();
    };
    log.push(format!(
        "INFO: prune older backups with retention: keep-last={keep}"
    ));
    let old: Vec<String> = prunable(inner, storage, vmid)
        .into_iter()
        .skip(keep.saturating_sub(1) as usize)
        .map(|(_, v)| v)
        .collect();
    for v in &old {
        log.push(format!("INFO: removing backup '{v}'"));
    }
    log.push(format!(
        "INFO: pruned {} backup(s) not covered by keep-retention policy",
        old.len()
    ));
    old.into_iter()
        .map(|volid| Effect::DeleteVolume {
            storage: storage.to_string(),
            volid,
        })
        .collect()
}
