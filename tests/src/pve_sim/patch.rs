//! Answer patches: a field of a read's answer replaced (a malformed value, as a broken or
//! hostile node may send), and the `verification` object PBS reports for a backup.

use serde_json::{Map, Value, json};

use super::state::SimState;

/// One field replaced in the answers to `GET` paths ending with `path_suffix`: in the
/// object, or in each object of a list.
#[derive(Debug, Clone)]
pub(crate) struct FieldPatch {
    pub(crate) path_suffix: String,
    pub(crate) key: String,
    pub(crate) value: Value,
}

fn set(obj: &mut Map<String, Value>, key: &str, value: &Value) {
    obj.insert(key.to_string(), value.clone());
}

/// Applies the patches and the backup verifications to the answer of `GET rel`.
pub(crate) fn apply(
    patches: &[FieldPatch],
    verifications: &std::collections::BTreeMap<String, Value>,
    rel: &str,
    data: &mut Value,
) {
    if rel.ends_with("/content") && !verifications.is_empty() {
        if let Value::Array(items) = data {
            for item in items.iter_mut().filter_map(Value::as_object_mut) {
                let v = item
                    .get("volid")
                    .and_then(Value::as_str)
                    .and_then(|volid| verifications.get(volid))
                    .cloned();
                if let Some(v) = v {
                    item.insert("verification".into(), v);
                }
            }
        }
    }
    for p in patches.iter().filter(|p| rel.ends_with(&p.path_suffix)) {
        match data {
            Value::Object(obj) => set(obj, &p.key, &p.value),
            Value::Array(items) => {
                for obj in items.iter_mut().filter_map(Value::as_object_mut) {
                    set(obj, &p.key, &p.value);
                }
            }
            _ => {}
        }
    }
}

impl SimState {
    /// From now on, every `GET` whose path ends with `path_suffix` (e.g. `/status` of the
    /// node, `/lxc` for the list) answers with `key` set to `value` (in each entry of a list).
    pub fn patch_field(&self, path_suffix: &str, key: &str, value: Value) {
        self.lock().patches.push(FieldPatch {
            path_suffix: path_suffix.to_string(),
            key: key.to_string(),
            value,
        });
    }

    /// The storage listing reports this PBS verification for `volid` (`state`: `ok` or
    /// `failed`), as `{"state": …, "upid": …}`.
    pub fn set_backup_verification(&self, volid: &str, state: &str) {
        let upid = format!("UPID:pbs:00000001:00000001:00000001:verify:{volid}:root@pam:");
        self.lock()
            .verifications
            .insert(volid.to_string(), json!({"state": state, "upid": upid}));
    }
}
