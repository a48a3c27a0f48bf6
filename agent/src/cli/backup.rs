//! `backup` and `restore`: the archive a backup wrote (from its task log, checked against
//! the storage), and the network identity of a restored container.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use felhom_protocol::Vmid;
use serde_json::json;

use super::output::Outcome;
use super::progress::{self, ProgressMode};
use super::task_output::{LONG_TASK, task_json, task_line};
use super::{CliError, Mode};
use crate::pve::archive::{self, ArchiveSource};
use crate::pve::prune::prune_from_log;
use crate::pve::{
    BackupMode, BackupRequest, BackupStarted, ConfigChange, ConfigKey, ContainerConfig,
    ContentKind, PveClient, PveError, RestoreRequest, StorageId, WaitOptions,
};

/// The text of vzdump's failure when the storage's retention allows no further backup and
/// `remove=0` was sent (pve-manager `PVE/VZDump.pm`).
const LIMIT_MARKER: &str = "max backup limit";

/// Adds the remedy to vzdump's "max backup limit" failure.
fn explain_limit(e: PveError, vmid: Vmid, storage: &StorageId) -> CliError {
    let text = e.to_string();
    if !text.contains(LIMIT_MARKER) {
        return e.into();
    }
    CliError::Failed(format!(
        "{text}\nremedy: storage {storage} keeps a limited number of backups of CT {vmid} (its prune-backups/maxfiles setting) and this backup did not prune (felhom-agent never prunes unless asked). Either run the backup again with --prune to let vzdump remove the oldest backups by the storage's retention, delete an old backup of CT {vmid} from {storage}, or raise the storage's limit."
    ))
}

/// `felhom-agent backup`: vzdump with `remove=0` unless `prune`; the archive is the one
/// the task log names, checked against the storage listing ([`archive::choose_archive`]).
pub(super) async fn backup(
    pve: &PveClient,
    vmid: Vmid,
    storage: &StorageId,
    mode: Mode,
    prune: bool,
    pm: ProgressMode,
) -> Result<Outcome, CliError> {
    let req = BackupRequest {
        vmid,
        mode: match mode {
            Mode::Stop => BackupMode::Stop,
            Mode::Snapshot => BackupMode::Snapshot,
        },
        storage: storage.clone(),
        notes_template: Some("{{guestname}} (felhom-agent)".into()),
    };
    let upid = match pve.vzdump_with(&req, prune).await? {
        BackupStarted::Task(u) => u,
        BackupStarted::NothingToDo => {
            return Err(CliError::Failed(format!(
                "Proxmox started no backup task: CT {vmid} is not on node {}",
                pve.node()
            )));
        }
    };
    let done = progress::wait(pve, &upid, WaitOptions::with_timeout(LONG_TASK), pm)
        .await
        .map_err(|e| explain_limit(e, vmid, storage))?;
    let (logged, pruned) = match pve.read_task_log(&upid, 0).await {
        Ok(chunk) => (
            archive::archive_from_log(&chunk.lines, vmid),
            Some(prune_from_log(&chunk.lines)),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "backup done, but its task log could not be read");
            (None, None)
        }
    };
    let task_start = i64::from(upid.starttime());
    let (archive, source, verified, ctime) = match pve.guest_backups(storage, vmid).await {
        Ok(list) => {
            match archive::choose_archive(logged.as_ref(), &list, storage, vmid, task_start) {
                Ok(found) => (found.volid, found.source, true, Some(found.ctime)),
                Err(problem) => {
                    return Err(CliError::Failed(format!(
                        "backup task {upid} finished ({}), but the archive it wrote could not be confirmed: {problem}",
                        done.exitstatus
                    )));
                }
            }
        }
        Err(e) => match &logged {
            Some(l) => {
                tracing::warn!(error = %e, "backup done, but the storage content could not be listed");
                (l.volid(storage), ArchiveSource::TaskLog, false, None)
            }
            None => {
                return Err(CliError::Failed(format!(
                    "backup task {upid} finished ({}), but its log names no archive and storage {storage} could not be listed: {e}",
                    done.exitstatus
                )));
            }
        },
    };
    let mut human = task_line(&format!("backup of CT {vmid} to {storage}"), &done);
    let how = match (source, verified) {
        (ArchiveSource::TaskLog, true) => "named in the task log, listed by the storage",
        (ArchiveSource::TaskLog, false) => {
            "named in the task log; NOT verified (the storage could not be listed)"
        }
        (ArchiveSource::Listing, _) => {
            "the task log names none; newest backup listed since the task started"
        }
    };
    let _ = writeln!(human, "archive: {archive} ({how})");
    if let Some(t) = ctime {
        let _ = writeln!(human, "archive ctime (as the storage lists it): {t}");
    }
    // What the prune did, from vzdump's own lines, never assumed.
    let prune_doc = match (&pruned, prune) {
        (_, false) => serde_json::Value::Null,
        (Some(p), true) if p.ran() => {
            let n = p.count.unwrap_or(p.removed.len() as u64);
            let _ = writeln!(
                human,
                "prune (--prune, retention {}): {n} older backup(s) removed{}",
                p.retention.as_deref().unwrap_or("unknown"),
                if p.removed.is_empty() {
                    String::new()
                } else {
                    format!(": {}", p.removed.join(", "))
                }
            );
            json!({ "ran": true, "retention": p.retention, "count": n, "removed": p.removed })
        }
        (Some(_), true) => {
            let _ = writeln!(
                human,
                "prune (--prune): the task log shows no prune (the storage keeps all backups, or vzdump skipped it)"
            );
            json!({ "ran": false, "count": 0, "removed": [] })
        }
        (None, true) => {
            let _ = writeln!(
                human,
                "prune (--prune): unknown, the task log could not be read"
            );
            json!({ "ran": null, "count": null, "removed": null })
        }
    };
    Ok(Outcome::new(
        &json!({
            "ok": true,
            "vmid": vmid,
            "storage": storage.as_str(),
            "archive": archive,
            "archive_source": source.as_str(),
            "archive_verified": verified,
            "archive_ctime": ctime,
            "prune_requested": prune,
            "pruned": prune_doc,
            "task": task_json(&done),
        }),
        human,
    ))
}

/// The MAC address (`hwaddr=`) of a `netN` value, upper-cased.
fn hwaddr(value: &str) -> Option<String> {
    value
        .split(',')
        .find_map(|p| p.trim().strip_prefix("hwaddr="))
        .map(str::to_ascii_uppercase)
}

/// The `netN` interfaces of a config with their MAC addresses (`None`: no `hwaddr=`).
fn macs(config: &ContainerConfig) -> BTreeMap<String, Option<String>> {
    config
        .entries
        .iter()
        .filter(|(k, _)| matches!(k.parse::<ConfigKey>(), Ok(ConfigKey::Net(_))))
        .map(|(k, v)| (k.clone(), hwaddr(v)))
        .collect()
}

/// Whether a `netN` value has a static address or gateway (`ip=`/`ip6=` other than
/// `dhcp`/`auto`/`manual`, or any `gw=`/`gw6=`): a copy keeps it when its MAC is removed.
fn has_static_address(value: &str) -> bool {
    value.split(',').any(|opt| {
        let Some((k, v)) = opt.trim().split_once('=') else {
            return false;
        };
        match k {
            "ip" | "ip6" => !matches!(v, "dhcp" | "auto" | "manual" | ""),
            "gw" | "gw6" => !v.is_empty(),
            _ => false,
        }
    })
}

/// The hostname a restored container gets when none is given: `<source>-<vmid>`, applied to
/// the first label of the source's hostname (a domain after it is kept), with that label
/// truncated so the result fits a 63-character RFC 1123 label. Falls back to `ct-<vmid>`
/// when the source has no usable hostname.
pub fn derived_hostname(source: Option<&str>, vmid: Vmid) -> String {
    let suffix = format!("-{vmid}");
    let fallback = format!("ct{suffix}");
    let Some(source) = source.map(str::trim).filter(|s| !s.is_empty()) else {
        return fallback;
    };
    let (label, domain) = match source.split_once('.') {
        Some((l, d)) => (l, Some(d)),
        None => (source, None),
    };
    let keep = 63usize.saturating_sub(suffix.len());
    let label: String = label.chars().take(keep).collect();
    let label = label.trim_end_matches('-');
    let mut name = format!("{label}{suffix}");
    if let Some(d) = domain {
        name.push('.');
        name.push_str(d);
    }
    if label.is_empty() || ConfigKey::Hostname.check_value(&name).is_err() {
        // Try without the domain, then give up on the source's name.
        let short = format!("{label}{suffix}");
        if !label.is_empty() && ConfigKey::Hostname.check_value(&short).is_ok() {
            return short;
        }
        return fallback;
    }
    name
}

/// The guest an archive was taken from: from its name, else from its storage's listing.
async fn archive_owner(pve: &PveClient, req: &RestoreRequest) -> Option<Vmid> {
    if let Some(v) = archive::archive_vmid(req.archive.as_str()) {
        return Some(v);
    }
    let (store, _) = req.archive.as_str().split_once(':')?;
    let store: StorageId = store.parse().ok()?;
    let list = pve
        .storage_content(&store, Some(ContentKind::Backup))
        .await
        .ok()?;
    list.into_iter()
        .find(|e| e.volid == req.archive.as_str())
        .and_then(|e| e.vmid)
}

/// `felhom-agent restore`. `identity`: `None` keeps the archive's identity
/// (`--keep-identity`); `Some(hostname)` resets it when the restore is a copy — the target
/// vmid differs from the archive's guest. The reset is Proxmox's own, in the restore call:
/// `unique=1` (pve-container `LXC/Create.pm` `sanitize_and_merge_config` gives every `netN`
/// a random `hwaddr`, and `API2/LXC.pm` `create_vm` then registers it in IPAM with
/// `create_ifaces_ipams_ips`) and the hostname as a restore parameter (the given one, or
/// [`derived_hostname`] from the source guest's). Never a later PUT that drops `hwaddr=`:
/// on SDN with IPAM, `LXC/Config.pm` `vmconfig_apply_pending` calls `del_ips_from_mac` for
/// the old MAC — the SOURCE guest's reservation. A restore onto the archive's own vmid
/// (disaster recovery) keeps MACs and hostname unless `--unique`/`--hostname` say otherwise.
/// Every case reports each interface's MAC before (the source guest's, when it can be read)
/// and after (read back from the restored config).
pub(super) async fn restore(
    pve: &PveClient,
    mut req: RestoreRequest,
    identity: Option<Option<String>>,
    pm: ProgressMode,
) -> Result<Outcome, CliError> {
    let vmid = req.vmid;
    let owner = archive_owner(pve, &req).await;
    let same_guest = owner == Some(vmid);
    let copy = identity.is_some() && !same_guest;
    // The source guest as it is now (on a same-vmid restore: the guest being replaced).
    let source = match owner {
        Some(o) => match pve.container_config(o).await {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::info!(owner = %o, error = %e, "source guest's config not readable; MACs before the restore unknown");
                None
            }
        },
        None => None,
    };
    let source_hostname = source
        .as_ref()
        .and_then(|c| c.get("hostname"))
        .map(str::to_string);
    let before = source.as_ref().map(macs).unwrap_or_default();
    let given = identity.clone().flatten();
    let (hostname, hostname_origin) = match (&given, copy, same_guest) {
        (Some(h), _, _) => (Some(h.clone()), "given"),
        (None, true, _) => match &source_hostname {
            Some(_) => (
                Some(derived_hostname(source_hostname.as_deref(), vmid)),
                "derived",
            ),
            // Derived after the restore, from the archive's hostname.
            None => (None, "derived"),
        },
        (None, false, _) => (None, "kept"),
    };
    let asked_unique = req.unique;
    if copy {
        req.unique = true;
    }
    if hostname_origin != "kept" && hostname.is_some() {
        req.hostname.clone_from(&hostname);
    }
    let upid = pve.restore(&req).await?;
    let done = progress::wait(pve, &upid, WaitOptions::with_timeout(LONG_TASK), pm).await?;
    let mut human = task_line(&format!("restore of {} to CT {vmid}", req.archive), &done);
    let owner_json = owner.map(|o| o.get());
    let case = match (&identity, same_guest) {
        (None, _) => "kept",
        (Some(_), true) => "same-vmid",
        (Some(_), false) => "copy",
    };
    let config = pve.container_config(vmid).await.map_err(|e| {
        CliError::Failed(format!(
            "CT {vmid} was restored{}, but reading its config back failed: {e}; check its MAC addresses and hostname with felhom-agent guest {vmid}",
            if req.unique { " with unique=1 (Proxmox assigned new MAC addresses)" } else { "" }
        ))
    })?;
    let mut final_hostname = config.get("hostname").map(str::to_string);
    // No source guest to derive the hostname from before the restore: derive it from the
    // archive's now, and set only the hostname (no `netN` is written).
    if copy && hostname.is_none() {
        let derived = derived_hostname(final_hostname.as_deref(), vmid);
        let mut change = ConfigChange::new();
        if !config.digest.is_empty() {
            change = change
                .digest(&config.digest)
                .map_err(|e| CliError::Failed(e.to_string()))?;
        }
        change = change
            .set(ConfigKey::Hostname, derived.clone())
            .map_err(|e| CliError::Failed(e.to_string()))?;
        pve.set_config(vmid, &change).await.map_err(|e| {
            CliError::Failed(format!(
                "CT {vmid} was restored with new MAC addresses (unique=1), but setting its hostname to {derived} failed: {e}; it still has the archive's hostname — change it before starting it next to the original"
            ))
        })?;
        final_hostname = Some(derived);
    }
    let after = macs(&config);
    let mut interfaces = Vec::new();
    let mut changed = Vec::new();
    for (iface, new) in &after {
        let old = before.get(iface).cloned().flatten();
        let is_changed = match (&old, new) {
            (Some(o), Some(n)) => Some(o != n),
            _ => None,
        };
        if is_changed == Some(true) {
            changed.push(iface.clone());
        }
        interfaces.push(json!({ "interface": iface, "mac_before": old, "mac_after": new, "changed": is_changed }));
        let show = |m: &Option<String>| m.clone().unwrap_or_else(|| "unknown".into());
        let what = match is_changed {
            Some(true) => "new",
            Some(false) => "kept",
            None => "before unknown",
        };
        let _ = writeln!(
            human,
            "{iface}: MAC {} -> {} ({what})",
            show(&old),
            show(new)
        );
    }
    match case {
        "kept" => {
            let _ = writeln!(
                human,
                "network identity kept (--keep-identity): hostname {}{}",
                final_hostname.as_deref().unwrap_or("(none)"),
                if req.unique {
                    "; MAC addresses regenerated by Proxmox (--unique)"
                } else {
                    ""
                }
            );
        }
        "same-vmid" => {
            let _ = writeln!(
                human,
                "restored over its own guest (CT {vmid}, the archive's vmid: disaster recovery): {}",
                if req.unique {
                    "MAC addresses regenerated by Proxmox (--unique)"
                } else {
                    "MAC addresses kept"
                }
            );
        }
        _ => {
            let from = owner.map_or_else(
                || "an unknown guest (the archive's name and listing do not say)".to_string(),
                |o| format!("CT {o}"),
            );
            let _ = writeln!(
                human,
                "restored as a copy of {from} into CT {vmid}: new MAC addresses assigned by Proxmox at restore (unique=1{})",
                if asked_unique { ", --unique" } else { "" }
            );
        }
    }
    let hostname_changed = hostname_origin != "kept" && final_hostname != source_hostname;
    if hostname_origin != "kept" {
        let how = if hostname_origin == "given" {
            "(--hostname)"
        } else {
            "(derived from the source's; use --hostname to choose one)"
        };
        let _ = writeln!(
            human,
            "hostname {} {how}",
            final_hostname.as_deref().unwrap_or("(none)")
        );
    }
    let mut static_nets = Vec::new();
    if copy {
        for (key, value) in &config.entries {
            if matches!(key.parse::<ConfigKey>(), Ok(ConfigKey::Net(_)))
                && has_static_address(value)
            {
                static_nets.push(key.clone());
            }
        }
    }
    if !static_nets.is_empty() {
        let nets = static_nets.join(", ");
        tracing::warn!(%vmid, interfaces = %nets, "restored copy keeps static addresses");
        let _ = writeln!(
            human,
            "warning: {nets} of CT {vmid} have a static ip=/ip6=/gw= setting: the copy will clash with the original's address when both run (a new MAC does not change it); change them with felhom-agent set-config before starting it"
        );
    }
    let identity_doc = json!({
        "case": case,
        "unique": req.unique,
        "reset": req.unique || hostname_changed,
        "interfaces": interfaces,
        "mac_changed": changed,
        "hostname": final_hostname,
        "hostname_origin": hostname_origin,
        "source_hostname": source_hostname,
        "static_address_interfaces": static_nets,
    });
    Ok(Outcome::new(
        &json!({ "ok": true, "vmid": vmid, "archive": req.archive.as_str(), "archive_vmid": owner_json, "task": task_json(&done), "identity": identity_doc }),
        human,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hwaddr_is_read_from_net_entries() {
        assert_eq!(
            hwaddr("name=eth0,bridge=vmbr0,hwaddr=bc:24:11:00:00:01,ip=dhcp,type=veth").as_deref(),
            Some("BC:24:11:00:00:01")
        );
        assert_eq!(hwaddr("name=eth0,bridge=vmbr0"), None);
    }

    #[test]
    fn static_addresses_are_recognised() {
        assert!(has_static_address("name=eth0,bridge=vmbr0,ip=192.0.2.5/24"));
        assert!(has_static_address("name=eth0,ip=dhcp,gw=192.0.2.1"));
        assert!(has_static_address("name=eth0,ip6=2001:db8::5/64"));
        assert!(!has_static_address(
            "name=eth0,bridge=vmbr0,ip=dhcp,ip6=auto"
        ));
        assert!(!has_static_address(
            "name=eth0,ip6=manual,hwaddr=BC:24:11:00:00:01"
        ));
    }
}

#[cfg(test)]
mod hostname_tests {
    use super::*;

    fn vmid(n: u32) -> Vmid {
        Vmid::new(n).unwrap()
    }

    #[test]
    fn derived_hostname_appends_the_vmid_and_fits_a_label() {
        assert_eq!(derived_hostname(Some("web"), vmid(201)), "web-201");
        assert_eq!(
            derived_hostname(Some("web.example.com"), vmid(201)),
            "web-201.example.com"
        );
        assert_eq!(derived_hostname(None, vmid(7000)), "ct-7000");
        assert_eq!(derived_hostname(Some(""), vmid(7000)), "ct-7000");
        let long = "a".repeat(63);
        let d = derived_hostname(Some(&long), vmid(123_456));
        assert_eq!(d.len(), 63, "{d}");
        assert!(d.ends_with("a-123456"), "{d}");
        // Truncation must not leave "--".
        let dashy = format!("{}-bbb", "a".repeat(56));
        let d = derived_hostname(Some(&dashy), vmid(12345));
        assert_eq!(d, format!("{}-12345", "a".repeat(56)));
        for d in [
            derived_hostname(Some(&long), vmid(100)),
            derived_hostname(Some("x_y"), vmid(100)),
        ] {
            assert!(ConfigKey::Hostname.check_value(&d).is_ok(), "{d}");
        }
        assert_eq!(derived_hostname(Some("x_y"), vmid(100)), "ct-100");
    }
}
