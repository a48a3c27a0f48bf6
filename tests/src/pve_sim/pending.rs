//! Pending configuration changes of running containers (pve-container): a `PUT config` on
//! a running container applies the hot-pluggable keys at once and writes the others into
//! the config's `[pending]` section until the next start; `GET …/pending` lists every key
//! with its `value`, and `pending` (new value) or `delete` (1) where a change waits.

use serde_json::{Map, Value, json};

use super::shared::{ApiError, ApiResult};
use super::state::Inner;

/// Whether a change of `key` on a running container waits in `[pending]` for the next start,
/// as pve-container decides it (`src/PVE/LXC/Config.pm`, `vmconfig_hotplug_pending`, called
/// by `update_pct_config` when the CT runs):
/// - set at once: the `$LXC_FASTPLUG_OPTIONS` (description, onboot, startup, protection,
///   hostname, hookscript, cores, tags, lock) are moved from `[pending]` into the config;
///   cpulimit, cpuunits, memory, swap (cgroup limits) and `netN` (`update_net`) are hotplugged;
///   a new `mpN`/`devN` is hotplugged, an existing one is not ("don't try to hotplug over
///   existing mp");
/// - deleted at once: the fastplug options, `unusedN`, swap, cpulimit, cpuunits and `netN`;
/// - everything else (nameserver, searchdomain, an existing mpN, deleting an mpN, …) stays
///   in `[pending]` ("skip non-hotpluggable").
///
/// `exists` says whether the key is in the current config; `delete` whether the change is a
/// deletion.
pub(crate) fn needs_restart(key: &str, exists: bool, delete: bool) -> bool {
    const FASTPLUG: [&str; 9] = [
        "description",
        "onboot",
        "startup",
        "protection",
        "hostname",
        "hookscript",
        "cores",
        "tags",
        "lock",
    ];
    if FASTPLUG.contains(&key) {
        return false;
    }
    let numbered = |prefix: &str| {
        key.strip_prefix(prefix)
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    };
    if delete {
        !(numbered("unused") || numbered("net") || matches!(key, "swap" | "cpulimit" | "cpuunits"))
    } else if numbered("mp") || numbered("dev") {
        exists
    } else {
        !(numbered("net") || matches!(key, "cpulimit" | "cpuunits" | "memory" | "swap"))
    }
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

#[cfg(test)]
mod tests {
    use super::needs_restart;

    #[test]
    fn running_container_keys_follow_pve_container() {
        // Fastplug and hotplug keys are applied at once.
        for k in [
            "hostname",
            "cores",
            "description",
            "tags",
            "onboot",
            "protection",
        ] {
            assert!(!needs_restart(k, true, false), "{k}");
            assert!(!needs_restart(k, true, true), "delete {k}");
        }
        for k in ["memory", "swap", "cpulimit", "cpuunits", "net0"] {
            assert!(!needs_restart(k, true, false), "{k}");
        }
        // A new mount point is hotplugged, an existing one is not; deleting one waits.
        assert!(!needs_restart("mp0", false, false));
        assert!(needs_restart("mp0", true, false));
        assert!(needs_restart("mp0", true, true));
        // DNS settings wait, set or deleted.
        for k in ["nameserver", "searchdomain"] {
            assert!(needs_restart(k, false, false), "{k}");
            assert!(needs_restart(k, true, true), "delete {k}");
        }
        assert!(!needs_restart("swap", true, true));
        assert!(!needs_restart("unused0", true, true));
    }
}
