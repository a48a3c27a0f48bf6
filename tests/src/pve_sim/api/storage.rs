//! Simulated storages: listing, content, volume deletion and vzdump.

use super::*;

pub(super) fn storage_entry(s: &crate::pve_sim::state::Storage) -> Value {
    let mut content = s.content.clone();
    content.sort();
    let avail = s.total.saturating_sub(s.used);
    json!({
        "storage": s.name,
        "type": s.kind,
        "content": content.join(","),
        "active": 1,
        "enabled": 1,
        "shared": 0,
        "total": s.total,
        "used": s.used,
        "avail": avail,
        "used_fraction": s.used as f64 / s.total.max(1) as f64,
    })
}

pub(super) fn storage_list(inner: &Inner, params: &Params) -> Value {
    let list: Vec<Value> = inner
        .storages
        .iter()
        .filter(|s| {
            let p = format!("/storage/{}", s.name);
            inner.has(&p, "Datastore.Audit") || inner.has(&p, "Datastore.AllocateSpace")
        })
        .filter(|s| {
            params
                .get("content")
                .is_none_or(|want| want.split(',').all(|w| s.content.iter().any(|c| c == w)))
        })
        .filter(|s| params.get("storage").is_none_or(|n| *n == s.name))
        .map(storage_entry)
        .collect();
    Value::Array(list)
}

pub(super) fn storage_content(inner: &Inner, storage: &str, params: &Params) -> ApiResult {
    let path = format!("/storage/{storage}");
    check_any(
        inner,
        &path,
        &["Datastore.Audit", "Datastore.AllocateSpace"],
    )?;
    let Some(s) = inner.storage(storage) else {
        return Err(ApiError::die(format!("storage '{storage}' does not exist")));
    };
    let want_vmid = match params.get("vmid") {
        Some(v) => Some(parse_vmid("vmid", v)?),
        None => None,
    };
    let full = inner.has(&path, "Datastore.Allocate");
    let list: Vec<Value> = s
        .volumes
        .iter()
        .filter(|v| params.get("content").is_none_or(|c| *c == v.content))
        .filter(|v| want_vmid.is_none_or(|w| v.vmid == Some(w)))
        .filter(|v| match v.vmid {
            Some(owner) if !full => {
                let vp = format!("/vms/{owner}");
                inner.has(&vp, "VM.Backup") || inner.has(&vp, "VM.Audit")
            }
            _ => true,
        })
        .map(|v| {
            let mut m = Map::new();
            m.insert("volid".into(), json!(v.volid));
            m.insert("content".into(), json!(v.content));
            m.insert("format".into(), json!(v.format));
            m.insert("size".into(), json!(v.size));
            m.insert("ctime".into(), json!(v.ctime));
            if let Some(vmid) = v.vmid {
                m.insert("vmid".into(), json!(vmid));
            }
            if v.content == "backup" {
                m.insert("subtype".into(), json!("lxc"));
                if let Some(n) = &v.notes {
                    m.insert("notes".into(), json!(n));
                }
                if v.protected {
                    m.insert("protected".into(), json!(1));
                }
                if let Some(state) = inner.verified.get(&v.volid) {
                    m.insert(
                        "verification".into(),
                        json!({"state": state, "upid": "UPID:pbs:000003E8:00000001:00000002:6750D2A0:verificationjob:pbs\\x3av\\x3aab12:root@pam:"}),
                    );
                }
            }
            Value::Object(m)
        })
        .collect();
    // Container volumes on this storage come from the containers' `rootfs` (raw LVs).
    let mut list = list;
    if s.content.iter().any(|c| c == "rootdir")
        && params.get("content").is_none_or(|c| c == "rootdir")
    {
        let prefix = format!("{storage}:");
        for (vmid, ct) in &inner.containers {
            if want_vmid.is_some_and(|w| w != *vmid) || ct.pid == 0 {
                continue;
            }
            let Some(rootfs) = ct.config.get("rootfs").and_then(Value::as_str) else {
                continue;
            };
            let Some(vol) = rootfs.split(',').next().filter(|v| v.starts_with(&prefix)) else {
                continue;
            };
            if !full && !inner.has(&format!("/vms/{vmid}"), "VM.Audit") {
                continue;
            }
            // LVM lists an LV's size and no `used` (pve-storage `LVMPlugin::list_images`).
            list.push(json!({
                "volid": vol,
                "content": "rootdir",
                "format": "raw",
                "size": rootfs_bytes(&ct.config),
                "ctime": ct.started_at,
                "vmid": vmid,
            }));
        }
    }
    Ok(Value::Array(list).into())
}

/// `DELETE …/storage/{storage}/content/{volume}`: a worker (`imgdel`) removes the volume.
pub(super) fn delete_volume(inner: &mut Inner, storage: &str, volume: &str) -> ApiResult {
    let volid = if volume.contains(':') {
        volume.to_string()
    } else {
        format!("{storage}:{volume}")
    };
    let (store, _) = volid.split_once(':').unwrap_or((storage, ""));
    let path = format!("/storage/{store}");
    let owner = inner.volume(&volid).and_then(|v| v.vmid);
    if !inner.has(&path, "Datastore.Allocate") {
        match owner {
            Some(vmid) if volid.contains(":backup/") => {
                check(inner, &path, "Datastore.AllocateSpace")?;
                check(inner, &format!("/vms/{vmid}"), "VM.Backup")?;
            }
            _ => check(inner, &path, "Datastore.Allocate")?,
        }
    }
    if inner.storage(store).is_none() {
        return Err(ApiError::die(format!("storage '{store}' does not exist")));
    }
    let Some(vol) = inner.volume(&volid).cloned() else {
        return Err(ApiError::die(format!("volume '{volid}' does not exist")));
    };
    let done = if vol.content == "backup" {
        vec![format!("Removed volume '{volid}'")]
    } else {
        Vec::new()
    };
    let upid = inner.start_task(
        "imgdel",
        "",
        Vec::new(),
        done,
        Some(Effect::DeleteVolume {
            storage: store.to_string(),
            volid,
        }),
        None,
        None,
    );
    Ok(json!(upid).into())
}

pub(super) fn vzdump(inner: &mut Inner, params: &Params) -> ApiResult {
    let Some(list) = params.get("vmid") else {
        if truthy(params.get("all")) {
            return Ok(json!("OK").into());
        }
        return Err(ApiError::param(&[(
            "vmid",
            "property is missing and it is not optional".into(),
        )]));
    };
    let mut vmids = Vec::new();
    for part in list.split([',', ';', ' ']).filter(|p| !p.is_empty()) {
        vmids.push(parse_vmid("vmid", part)?);
    }
    let storage = params
        .get("storage")
        .cloned()
        .unwrap_or_else(|| "local".to_string());
    let mode = params
        .get("mode")
        .cloned()
        .unwrap_or_else(|| "snapshot".to_string());
    if !matches!(mode.as_str(), "snapshot" | "suspend" | "stop") {
        return Err(ApiError::param(&[(
            "mode",
            format!(
                "value '{mode}' does not have a value in the enumeration 'snapshot, suspend, stop'"
            ),
        )]));
    }
    let compress = params
        .get("compress")
        .cloned()
        .unwrap_or_else(|| "0".into());
    let ext = match compress.as_str() {
        "0" => "",
        "1" | "lzo" => ".lzo",
        "gzip" => ".gz",
        "zstd" => ".zst",
        other => {
            return Err(ApiError::param(&[(
                "compress",
                format!(
                    "value '{other}' does not have a value in the enumeration '0, 1, gzip, lzo, zstd'"
                ),
            )]));
        }
    };
    for vmid in &vmids {
        check(inner, &format!("/vms/{vmid}"), "VM.Backup")?;
    }
    check(
        inner,
        &format!("/storage/{storage}"),
        "Datastore.AllocateSpace",
    )?;
    if let Some(node) = params.get("node") {
        if *node != inner.node {
            return Ok(json!("OK").into());
        }
    }
    let local: Vec<u32> = vmids
        .iter()
        .copied()
        .filter(|v| inner.containers.contains_key(v))
        .collect();
    if local.is_empty() {
        // Silent exit: the guests run on other nodes.
        return Ok(json!("OK").into());
    }
    let Some(target) = inner.storage(&storage) else {
        return Err(ApiError::die(format!("storage '{storage}' does not exist")));
    };
    if !target.content.iter().any(|c| c == "backup") {
        return Err(ApiError::die(format!(
            "storage '{storage}' does not support backups"
        )));
    }
    // vzdump stamps each archive when that guest's backup begins, after the task started
    // (so the archive's ctime is never before the UPID's start time).
    let now = now_epoch() + 1;
    let stamp = inner.stamp();
    let remove = params.get("remove").is_none_or(|r| truthy(Some(r)));
    let quirk = inner.backup_quirk.take();
    let mut cmd = format!("vzdump {}", list);
    for k in ["mode", "storage", "compress", "remove", "notes-template"] {
        if let Some(v) = params.get(k) {
            cmd.push_str(&format!(" --{k} '{v}'"));
        }
    }
    cmd.push_str(&format!(" --node {}", inner.node));
    let mut running_log = vec![format!("INFO: starting new backup job: {cmd}")];
    let mut done_log = Vec::new();
    let mut effects = Vec::new();
    let mut failed = false;
    for (i, vmid) in local.iter().enumerate() {
        let Some(ct) = inner.containers.get(vmid) else {
            continue;
        };
        let guest = ct
            .config
            .get("hostname")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let lines = if i == 0 {
            &mut running_log
        } else {
            &mut done_log
        };
        lines.push(format!("INFO: Starting Backup of VM {vmid} (lxc)"));
        lines.push(format!("INFO: Backup started at {stamp}"));
        lines.push(format!(
            "INFO: status = {}",
            if ct.running { "running" } else { "stopped" }
        ));
        let limit = crate::pve_sim::backup::limit_error(inner, &storage, *vmid, remove);
        if let Some(msg) = locked_error(ct).or(limit) {
            lines.push(format!("ERROR: Backup of VM {vmid} failed - {msg}"));
            lines.push(format!("INFO: Failed at {stamp}"));
            failed = true;
            continue;
        }
        lines.push(format!("INFO: CT Name: {guest}"));
        lines.push("INFO: including mount point rootfs ('/') in backup".to_string());
        // A stopped guest is always backed up in stop mode (pve-manager `VZDump.pm`
        // `exec_backup_task`: `my $mode = $running ? $task->{mode} : 'stop'`).
        let effective = if ct.running { mode.as_str() } else { "stop" };
        lines.push(format!("INFO: backup mode: {effective}"));
        lines.push("INFO: ionice priority: 7".to_string());
        let mut volume = inner.new_backup_volume(&storage, *vmid, now + i as u64, ext);
        if let Some(template) = params.get("notes-template") {
            let notes = template
                .replace("{{guestname}}", &guest)
                .replace("{{vmid}}", &vmid.to_string())
                .replace("{{node}}", &inner.node)
                .replace("{{cluster}}", "");
            volume.notes = Some(notes);
        }
        if quirk.is_none_or(|q| q.logs_archive()) {
            lines.push(crate::pve_sim::backup::archive_line(inner, &volume));
        }
        done_log.push(format!(
            "INFO: Total bytes written: {} (1.1GiB, 289MiB/s)",
            volume.size * 3
        ));
        done_log.push(format!(
            "INFO: archive file size: {}MB",
            volume.size / 1_000_000
        ));
        if volume.notes.is_some() {
            done_log.push("INFO: adding notes to backup".to_string());
        }
        done_log.push(format!("INFO: Finished Backup of VM {vmid} (00:00:04)"));
        done_log.push(format!("INFO: Backup finished at {stamp}"));
        let pruned = if remove {
            crate::pve_sim::backup::prune(inner, &storage, *vmid, &mut done_log)
        } else {
            Vec::new()
        };
        if quirk.is_none_or(|q| q.lists_archive()) {
            effects.push(Effect::Backup {
                storage: storage.clone(),
                volume,
            });
        }
        effects.extend(pruned);
    }
    let forced = if failed {
        done_log.push("INFO: Backup job finished with errors".to_string());
        // Lines after a failure belong to the final log; keep them visible then.
        running_log.append(&mut done_log);
        Some("job errors".to_string())
    } else {
        done_log.push("INFO: Backup job finished successfully".to_string());
        None
    };
    let id = if local.len() == 1 {
        local[0].to_string()
    } else {
        String::new()
    };
    let lock = if local.len() == 1 && !failed {
        Some((local[0], "backup"))
    } else {
        None
    };
    let upid = inner.start_task(
        "vzdump",
        &id,
        running_log,
        done_log,
        Some(Effect::Batch(effects)),
        lock,
        forced,
    );
    Ok(json!(upid).into())
}
