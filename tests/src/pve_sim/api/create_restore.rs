//! Simulated container creation and restore (`POST /nodes/{node}/lxc`).

use super::*;

/// Config keys a create/restore call may pass through into the guest config.
pub(super) fn passthrough(params: &Params) -> Vec<(String, Value)> {
    params
        .iter()
        .filter(|(k, _)| {
            is_config_key(k) && !matches!(k.as_str(), "rootfs" | "unprivileged" | "features")
        })
        .map(|(k, v)| {
            let val = if INTEGER_KEYS.contains(&k.as_str()) {
                v.parse::<i64>()
                    .map(|n| json!(n))
                    .unwrap_or_else(|_| json!(v))
            } else {
                json!(v)
            };
            (k.clone(), val)
        })
        .collect()
}

/// Rootfs size in GiB from a `storage:8` or `size=8G` style `rootfs` parameter.
pub(super) fn rootfs_size_param(params: &Params) -> Option<String> {
    let r = params.get("rootfs")?;
    let first = r.split(',').next()?;
    if let Some((_, size)) = first.split_once(':') {
        if size.parse::<f64>().is_ok() {
            return Some(format!("{size}G"));
        }
    }
    r.split(',')
        .find_map(|o| o.strip_prefix("size=").map(str::to_string))
}

pub(super) fn create(inner: &mut Inner, params: &Params) -> ApiResult {
    let mut errors: Vec<(&str, String)> = Vec::new();
    if !params.contains_key("vmid") {
        errors.push(("vmid", "property is missing and it is not optional".into()));
    }
    match params.get("ostemplate") {
        None => errors.push((
            "ostemplate",
            "property is missing and it is not optional".into(),
        )),
        Some(t) if t.len() > 255 => {
            errors.push(("ostemplate", "value may only be 255 characters long".into()))
        }
        _ => {}
    }
    if params.contains_key("unique") && !truthy(params.get("restore")) {
        errors.push((
            "unique",
            "option can only be used together with 'restore'".into(),
        ));
    }
    if !errors.is_empty() {
        return Err(ApiError::param(&errors));
    }
    let vmid = parse_vmid("vmid", params.get("vmid").map(String::as_str).unwrap_or(""))?;
    let ostemplate = params.get("ostemplate").cloned().unwrap_or_default();
    let restore = truthy(params.get("restore"));
    let force = truthy(params.get("force"));
    let unique = truthy(params.get("unique"));
    let start = truthy(params.get("start"));
    let storage = params
        .get("storage")
        .cloned()
        .unwrap_or_else(|| "local".to_string());
    let vm_path = format!("/vms/{vmid}");
    let exists = inner.containers.contains_key(&vmid);

    // Permission checks (before any existence check, as PVE does).
    if exists && restore && force {
        check(inner, &vm_path, "VM.Backup")?;
    } else {
        check(inner, &vm_path, "VM.Allocate")?;
    }
    check(
        inner,
        &format!("/storage/{storage}"),
        "Datastore.AllocateSpace",
    )?;
    let (src_store, _) = ostemplate.split_once(':').unwrap_or(("local", ""));
    let src_path = format!("/storage/{src_store}");
    let volume = inner.volume(&ostemplate).cloned();
    if !inner.has(&src_path, "Datastore.Allocate") {
        match volume.as_ref() {
            Some(v) if v.content == "backup" => {
                let owner = v.vmid.unwrap_or(0);
                if owner != vmid {
                    check(inner, &src_path, "Datastore.AllocateSpace")?;
                    check(inner, &format!("/vms/{owner}"), "VM.Backup")?;
                }
            }
            _ => check_any(
                inner,
                &src_path,
                &["Datastore.AllocateSpace", "Datastore.Audit"],
            )?,
        }
    }
    if let Some(features) = params.get("features") {
        let unpriv_given = params.get("unprivileged").map(|u| truthy(Some(u)));
        let unprivileged = match unpriv_given {
            Some(u) => u,
            // On restore the handler sees `unprivileged` undefined; plain create defaults to 1.
            None => !restore,
        };
        check_features(inner, vmid, "", features, unprivileged)?;
    }

    // Synchronous checks.
    if exists && !(restore && force) {
        return Err(ApiError::die(format!(
            "CT {vmid} already exists on node '{}'",
            inner.node
        )));
    }
    // pve-cluster `check_vmid_unused`: the vmid is taken elsewhere in the cluster.
    if let Some((kind, node)) = inner.cluster_guests.get(&vmid).filter(|_| !exists) {
        return Err(ApiError::die(format!(
            "{kind} {vmid} already exists on node '{node}'"
        )));
    }
    if exists && inner.containers.get(&vmid).is_some_and(|c| c.running) {
        return Err(ApiError::die("can't overwrite running container"));
    }
    if let Some(ct) = inner.containers.get(&vmid) {
        if let Some(msg) = locked_error(ct) {
            return Err(ApiError::die(msg));
        }
        if protected(ct) {
            return Err(ApiError::die(format!(
                "unable to restore CT {vmid} - protection mode enabled"
            )));
        }
    }
    let Some(target) = inner.storage(&storage) else {
        return Err(ApiError::die(format!("storage '{storage}' does not exist")));
    };
    if !target.content.iter().any(|c| c == "rootdir") {
        return Err(ApiError::die(format!(
            "storage '{storage}' does not support container directories"
        )));
    }
    let Some(volume) = volume else {
        return Err(ApiError::die(format!(
            "volume '{ostemplate}' does not exist"
        )));
    };
    if restore && volume.content != "backup" {
        return Err(ApiError::die(format!(
            "unable to restore CT {vmid} - volume '{ostemplate}' is not a backup archive"
        )));
    }

    let mut config = if restore {
        volume.archive_config.clone().unwrap_or_default()
    } else {
        let mut c = Map::new();
        c.insert("arch".into(), json!("amd64"));
        c.insert("hostname".into(), json!(format!("CT{vmid}")));
        c.insert("memory".into(), json!(512));
        c.insert("swap".into(), json!(512));
        let ostype = if ostemplate.contains("ubuntu") {
            "ubuntu"
        } else if ostemplate.contains("alpine") {
            "alpine"
        } else {
            "debian"
        };
        c.insert("ostype".into(), json!(ostype));
        c.insert("unprivileged".into(), json!(1));
        c
    };
    config.remove("lock");
    let old_size = config
        .get("rootfs")
        .and_then(Value::as_str)
        .and_then(|r| r.split(',').find_map(|o| o.strip_prefix("size=")))
        .map(str::to_string);
    let size = rootfs_size_param(params)
        .or(old_size)
        .unwrap_or_else(|| "4G".to_string());
    config.insert(
        "rootfs".into(),
        json!(format!("{storage}:vm-{vmid}-disk-0,size={size}")),
    );
    for (k, v) in passthrough(params) {
        config.insert(k, v);
    }
    if let Some(f) = params.get("features") {
        config.insert("features".into(), json!(f));
    }
    if let Some(u) = params.get("unprivileged") {
        config.insert("unprivileged".into(), json!(i32::from(truthy(Some(u)))));
    }
    // Fresh MAC addresses for new NICs, or for all of them with `unique`.
    let net_keys: Vec<String> = config
        .keys()
        .filter(|k| numbered(k, "net"))
        .cloned()
        .collect();
    for (i, k) in net_keys.iter().enumerate() {
        let Some(v) = config.get(k).and_then(Value::as_str).map(str::to_string) else {
            continue;
        };
        let has_mac = v.split(',').any(|o| o.starts_with("hwaddr="));
        if has_mac && !unique {
            continue;
        }
        let mac = mac_for(vmid.wrapping_mul(31).wrapping_add(i as u32 + 7));
        let mut opts: Vec<String> = v
            .split(',')
            .filter(|o| !o.starts_with("hwaddr="))
            .map(str::to_string)
            .collect();
        opts.insert(1.min(opts.len()), format!("hwaddr={mac}"));
        config.insert(k.clone(), json!(opts.join(",")));
    }

    let archive = inner.archive_path(&ostemplate);
    let disk = format!("  Logical volume \"vm-{vmid}-disk-0\" created.");
    let blocks = rootfs_bytes(&config) / 4096;
    let mkfs = format!(
        "Creating filesystem with {blocks} 4k blocks and {} inodes",
        blocks / 4
    );
    let (kind, running_log, done_log) = if restore {
        (
            "vzrestore",
            vec![
                format!("recovering backed-up configuration from '{ostemplate}'"),
                disk,
                mkfs,
                format!("restoring '{ostemplate}' now.."),
                format!("extracting archive '{archive}'"),
            ],
            vec![
                format!(
                    "Total bytes read: {} (1.1GiB, 212MiB/s)",
                    1_181_116_006u64 + u64::from(vmid)
                ),
                "merging backed-up and given configuration..".to_string(),
            ],
        )
    } else {
        let file = ostemplate.rsplit('/').next().unwrap_or(&ostemplate);
        (
            "vzcreate",
            vec![
                disk,
                mkfs,
                format!("extracting archive '/var/lib/vz/template/cache/{file}'"),
            ],
            vec![
                "Total bytes read: 524083200 (500MiB, 187MiB/s)".to_string(),
                "Detected container architecture: amd64".to_string(),
                "Creating SSH host key 'ssh_host_ed25519_key' - this may take some time ..."
                    .to_string(),
                "done: SHA256:0hkN9yAhu4Vq1kq0o5sWm0qf7pW1qzFQnO2xD9t8bYc root@localhost"
                    .to_string(),
            ],
        )
    };
    // A restore onto a storage without room for the root filesystem fails the way tar
    // reports it; the task's own error only says that tar failed.
    let mut running_log = running_log;
    let mut forced = None;
    let room = inner
        .storage(&storage)
        .map_or(u64::MAX, |s| s.total.saturating_sub(s.used));
    if restore && room < rootfs_bytes(&config) {
        for file in [
            "./usr/lib/x86_64-linux-gnu/libicudata.so.72.1",
            "./usr/share/locale/locale.alias",
            "./var/lib/dpkg/status",
        ] {
            running_log.push(format!(
                "tar: {file}: Cannot write: No space left on device"
            ));
        }
        running_log.push(format!(
            "Total bytes read: {} (1.1GiB, 212MiB/s)",
            1_181_116_006u64 + u64::from(vmid)
        ));
        running_log.push("tar: Exiting with failure status due to previous errors".into());
        running_log.push(format!(
            "  Logical volume \"vm-{vmid}-disk-0\" successfully removed."
        ));
        forced = Some(format!(
            "unable to restore CT {vmid} - command 'lxc-usernsexec -m u:0:100000:65536 -m g:0:100000:65536 -- tar xpf - --zstd --totals --one-file-system -p --sparse --numeric-owner --acls --xattrs -C /var/lib/lxc/{vmid}/rootfs --skip-old-files --anchored --exclude ./dev/*' failed: exit code 2"
        ));
    }
    if !exists {
        // Placeholder guest carrying the `create` lock while the task runs (pid 0 marks it).
        let mut placeholder = Map::new();
        placeholder.insert(
            "hostname".into(),
            config.get("hostname").cloned().unwrap_or(json!("")),
        );
        inner.containers.insert(
            vmid,
            Container {
                config: placeholder,
                running: false,
                started_at: 0,
                pid: 0,
                snapshots: Vec::new(),
                parent: None,
                pending: Map::new(),
            },
        );
    }
    let upid = inner.start_task(
        kind,
        &vmid.to_string(),
        running_log,
        done_log,
        Some(Effect::Create {
            vmid,
            config,
            start,
            ipam: restore && unique,
        }),
        Some((vmid, "create")),
        forced,
    );
    Ok(json!(upid).into())
}
