//! Pending configuration changes of running containers (pve-container): a `PUT config` on
//! a running container applies the hot-pluggable keys at once and writes the others into
//! the config's `[pending]` section until the next start; `GET …/pending` lists every key
//! with its `value`, and `pending` (new value) or `delete` (1) where a change waits.

use serde_json::{Map, Value, json};

use super::shared::{ApiError, ApiResult};
use super::state::Inner;

/// Keys a running container cannot take without a restart (in this simulator: the DNS
/// settings, which pve-container writes into the container at start).
pub(crate) fn needs_restart(key: &str) -> bool {
    matches!(key, "nameserver" | "searchdomain")
}

/// `GET /nodes/{node}/lxc/{vmid}/pending`.
pub(crate) fn get_pending(inner: &Inner, vmid: u32) -> ApiResult {
    if !inner.has(&format!("/vms/{vmid}"), "VM.Audit") {
        return Err(ApiError::new(
            403,
            format!("Permission check failed (/vms/{vmid}, VM.Audit)"),
        ));
    }
    let Some(ct) = inner.containers.get(&vmid) else {
        return Err(ApiError::new(
            500,
            format!(
                "Configuration file 'nodes/{}/lxc/{vmid}.conf' does not exist",
                inner.node
            ),
        ));
    };
    let mut keys: Vec<&String> = ct.config.keys().chain(ct.pending.keys()).collect();
    keys.sort();
    keys.dedup();
    let list: Vec<Value> = keys
        .into_iter()
        .filter(|k| k.as_str() != "lock")
        .map(|k| {
            let mut m = Map::new();
            m.insert("key".into(), json!(k));
            if let Some(v) = ct.config.get(k) {
                m.insert("value".into(), v.clone());
            }
            match ct.pending.get(k) {
                Some(Value::Null) => {
                    m.insert("delete".into(), json!(1));
                }
                Some(p) => {
                    m.insert("pending".into(), p.clone());
                }
                None => {}
            }
            Value::Object(m)
        })
        .collect();
    Ok(Value::Array(list).into())
}
