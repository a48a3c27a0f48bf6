//! `backup` and `restore`: the archive a backup wrote (from its task log, checked against
//! the storage), and the network identity of a restored container.

use std::fmt::Write as _;

use felhom_protocol::Vmid;
use serde_json::json;

use super::commands::{LONG_TASK, task_json, task_line};
use super::output::Outcome;
use super::progress::{self, ProgressMode};
use super::{CliError, Mode};
use crate::pve::archive::{self, ArchiveSource};
use crate::pve::{
    BackupMode, BackupRequest, BackupStarted, ConfigChange, ConfigKey, ContentKind, PveClient,
    PveError, RestoreRequest, StorageId, WaitOptions,
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
    let logged = match pve.read_task_log(&upid, 0).await {
        Ok(chunk) => archive::archive_from_log(&chunk.lines, vmid),
        Err(e) => {
            tracing::warn!(error = %e, "backup done, but its task log could not be read");
            None
        }
    };
    let task_start = i64::from(upid.starttime());
    let (archive, source, verified) = match pve.guest_backups(storage, vmid).await {
        Ok(list) => {
            match archive::choose_archive(logged.as_ref(), &list, storage, vmid, task_start) {
                Ok(found) => (found.volid, found.source, true),
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
                (l.volid(storage), ArchiveSource::TaskLog, false)
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
    if prune {
        let _ = writeln!(
            human,
            "older backups were pruned by the storage's retention settings (--prune)"
        );
    }
    Ok(Outcome::new(
        &json!({
            "ok": true,
            "vmid": vmid,
            "storage": storage.as_str(),
            "archive": archive,
            "archive_source": source.as_str(),
            "archive_verified": verified,
            "pruned": prune,
            "task": task_json(&done),
        }),
        human,
    ))
}

/// The value of a `netN` entry without its `hwaddr=` option, when it has one.
fn without_hwaddr(value: &str) -> Option<String> {
    let parts: Vec<&str> = value.split(',').collect();
    let kept: Vec<&str> = parts
        .iter()
        .copied()
        .filter(|p| !p.trim_start().starts_with("hwaddr="))
        .collect();
    (kept.len() != parts.len()).then(|| kept.join(","))
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
/// vmid differs from the archive's guest — by removing the MAC addresses and setting the
/// hostname (the given one, or [`derived_hostname`]). A restore onto the archive's own vmid
/// (disaster recovery) keeps MACs and hostname; a given `--hostname` is still applied.
pub(super) async fn restore(
    pve: &PveClient,
    req: RestoreRequest,
    identity: Option<Option<String>>,
    pm: ProgressMode,
) -> Result<Outcome, CliError> {
    let vmid = req.vmid;
    let owner = archive_owner(pve, &req).await;
    let upid = pve.restore(&req).await?;
    let done = progress::wait(pve, &upid, WaitOptions::with_timeout(LONG_TASK), pm).await?;
    let mut human = task_line(&format!("restore of {} to CT {vmid}", req.archive), &done);
    let owner_json = owner.map(|o| o.get());
    let Some(given) = identity else {
        let _ = writeln!(
            human,
            "network identity kept (--keep-identity): the container has the archive's MAC addresses and hostname"
        );
        return Ok(Outcome::new(
            &json!({ "ok": true, "vmid": vmid, "archive": req.archive.as_str(), "archive_vmid": owner_json, "task": task_json(&done), "identity": { "case": "kept", "reset": false } }),
            human,
        ));
    };
    let same_guest = owner == Some(vmid);
    let config = pve.container_config(vmid).await.map_err(|e| {
        CliError::Failed(format!(
            "CT {vmid} was restored, but reading its config to {} failed: {e}; the container exists and still has the source's MAC addresses and hostname{}",
            if same_guest { "apply --hostname" } else { "reset the network identity" },
            if same_guest { "" } else { " — fix them (felhom-agent set-config) before starting it next to the original" }
        ))
    })?;
    let source_hostname = config.entries.get("hostname").map(String::as_str);
    let (hostname, hostname_origin) = match (given, same_guest) {
        (Some(h), _) => (h, "given"),
        (None, false) => (derived_hostname(source_hostname, vmid), "derived"),
        (None, true) => (source_hostname.unwrap_or_default().to_string(), "kept"),
    };
    let mut change = ConfigChange::new();
    if !config.digest.is_empty() {
        change = change
            .digest(&config.digest)
            .map_err(|e| CliError::Failed(e.to_string()))?;
    }
    let mut reset = Vec::new();
    let mut static_nets = Vec::new();
    if !same_guest {
        for (key, value) in &config.entries {
            let Ok(k @ ConfigKey::Net(_)) = key.parse::<ConfigKey>() else {
                continue;
            };
            if has_static_address(value) {
                static_nets.push(key.clone());
            }
            if let Some(v) = without_hwaddr(value) {
                change = change
                    .set(k, v)
                    .map_err(|e| CliError::Failed(e.to_string()))?;
                reset.push(key.clone());
            }
        }
    }
    let hostname_changed = hostname_origin != "kept" && source_hostname != Some(hostname.as_str());
    if hostname_changed {
        change = change
            .set(ConfigKey::Hostname, hostname.clone())
            .map_err(|e| CliError::Failed(e.to_string()))?;
    }
    let case = if same_guest { "same-vmid" } else { "copy" };
    if same_guest {
        let _ = writeln!(
            human,
            "restored over its own guest (CT {vmid}, the archive's vmid: disaster recovery): MAC addresses and hostname kept"
        );
    } else {
        let from = owner.map_or_else(
            || "an unknown guest (the archive's name and listing do not say)".to_string(),
            |o| format!("CT {o}"),
        );
        let _ = writeln!(
            human,
            "restored as a copy of {from} into CT {vmid}: resetting the network identity"
        );
    }
    if !change.is_empty() {
        pve.set_config(vmid, &change).await.map_err(|e| {
            CliError::Failed(format!(
                "CT {vmid} was restored, but changing its {} failed: {e}; it still has the archive's MAC addresses and hostname{}",
                if same_guest { "hostname" } else { "network identity" },
                if same_guest { "" } else { " — fix them before starting it next to the original" }
            ))
        })?;
    } else if !same_guest {
        let _ = writeln!(
            human,
            "network identity: nothing to reset (no MAC address in the restored config, hostname already {hostname})"
        );
    }
    if !reset.is_empty() {
        let _ = writeln!(
            human,
            "network identity reset: removed the MAC address of {} (Proxmox assigns new ones)",
            reset.join(", ")
        );
    }
    if hostname_changed {
        let how = if hostname_origin == "given" {
            "(--hostname)"
        } else {
            "(derived from the source's; use --hostname to choose one)"
        };
        let _ = writeln!(human, "hostname set to {hostname} {how}");
    }
    if !static_nets.is_empty() {
        let nets = static_nets.join(", ");
        tracing::warn!(%vmid, interfaces = %nets, "restored copy keeps static addresses");
        let _ = writeln!(
            human,
            "warning: {nets} of CT {vmid} have a static ip=/ip6=/gw= setting: the copy will clash with the original's address when both run (removing the MAC does not change it); change them with felhom-agent set-config before starting it"
        );
    }
    let identity_doc = json!({
        "case": case,
        "reset": !change.is_empty(),
        "interfaces": reset,
        "hostname": hostname,
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
    fn hwaddr_is_removed_from_net_entries() {
        assert_eq!(
            without_hwaddr("name=eth0,bridge=vmbr0,hwaddr=BC:24:11:00:00:01,ip=dhcp,type=veth")
                .as_deref(),
            Some("name=eth0,bridge=vmbr0,ip=dhcp,type=veth")
        );
        assert_eq!(without_hwaddr("name=eth0,bridge=vmbr0"), None);
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
