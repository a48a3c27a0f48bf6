//! Simulated snapshots: list, create, delete and rollback
//! (`/nodes/{node}/lxc/{vmid}/snapshot…`).

use super::*;

pub(super) fn snapshot_list(inner: &Inner, vmid: u32) -> ApiResult {
    check(inner, &format!("/vms/{vmid}"), "VM.Audit")?;
    let ct = container(inner, vmid)?;
    let mut list: Vec<Value> = ct
        .snapshots
        .iter()
        .map(|s| {
            let mut m = Map::new();
            m.insert("name".into(), json!(s.name));
            m.insert("description".into(), json!(s.description));
            m.insert("snaptime".into(), json!(s.snaptime));
            if let Some(p) = &s.parent {
                m.insert("parent".into(), json!(p));
            }
            Value::Object(m)
        })
        .collect();
    let mut current = Map::new();
    current.insert("name".into(), json!("current"));
    current.insert("description".into(), json!("You are here!"));
    current.insert("digest".into(), json!(config_digest(&ct.config)));
    current.insert("running".into(), json!(i32::from(ct.running)));
    if let Some(p) = &ct.parent {
        current.insert("parent".into(), json!(p));
    }
    list.push(Value::Object(current));
    Ok(Value::Array(list).into())
}

pub(super) fn valid_configid(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() >= 2
        && b.len() <= 40
        && b[0].is_ascii_alphabetic()
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'-')
}

pub(super) fn snapshot_create(inner: &mut Inner, vmid: u32, params: &Params) -> ApiResult {
    let name = required(params, "snapname")?.clone();
    if !valid_configid(&name) {
        return Err(ApiError::param(&[(
            "snapname",
            format!("invalid format - invalid configuration ID '{name}'"),
        )]));
    }
    check(inner, &format!("/vms/{vmid}"), "VM.Snapshot")?;
    let ct = container(inner, vmid)?;
    if name == "current" || name == "vzdump" {
        return Err(ApiError::die(format!(
            "unable to use snapshot name '{name}' (reserved name)"
        )));
    }
    let forced = locked_error(ct).or_else(|| {
        ct.snapshots
            .iter()
            .any(|s| s.name == name)
            .then(|| format!("snapshot name '{name}' already used"))
    });
    let description = params.get("description").cloned().unwrap_or_default();
    let done = vec![format!(
        "  Logical volume \"snap_vm-{vmid}-disk-0_{name}\" created."
    )];
    let upid = inner.start_task(
        "vzsnapshot",
        &vmid.to_string(),
        Vec::new(),
        done,
        Some(Effect::Snapshot {
            vmid,
            name,
            description,
        }),
        Some((vmid, "snapshot")),
        forced,
    );
    Ok(json!(upid).into())
}

pub(super) fn snapshot_delete(inner: &mut Inner, vmid: u32, name: &str) -> ApiResult {
    check(inner, &format!("/vms/{vmid}"), "VM.Snapshot")?;
    let ct = container(inner, vmid)?;
    let forced = locked_error(ct).or_else(|| {
        (!ct.snapshots.iter().any(|s| s.name == name))
            .then(|| format!("snapshot '{name}' does not exist"))
    });
    let done = vec![format!(
        "  Logical volume \"snap_vm-{vmid}-disk-0_{name}\" successfully removed."
    )];
    let upid = inner.start_task(
        "vzdelsnapshot",
        &vmid.to_string(),
        Vec::new(),
        done,
        Some(Effect::DeleteSnapshot {
            vmid,
            name: name.to_string(),
        }),
        Some((vmid, "snapshot-delete")),
        forced,
    );
    Ok(json!(upid).into())
}

pub(super) fn rollback(inner: &mut Inner, vmid: u32, name: &str, params: &Params) -> ApiResult {
    check_any(
        inner,
        &format!("/vms/{vmid}"),
        &["VM.Snapshot", "VM.Snapshot.Rollback"],
    )?;
    let ct = container(inner, vmid)?;
    let forced = locked_error(ct).or_else(|| {
        (!ct.snapshots.iter().any(|s| s.name == name))
            .then(|| format!("snapshot '{name}' does not exist"))
    });
    let start = truthy(params.get("start"));
    let upid = inner.start_task(
        "vzrollback",
        &vmid.to_string(),
        Vec::new(),
        vec![
            format!("  Logical volume \"vm-{vmid}-disk-0\" successfully removed."),
            format!("  Logical volume \"vm-{vmid}-disk-0\" created."),
        ],
        Some(Effect::Rollback {
            vmid,
            name: name.to_string(),
            start,
        }),
        Some((vmid, "rollback")),
        forced,
    );
    Ok(json!(upid).into())
}
