//! Answer patches: a field of a read's answer replaced (a malformed value, as a broken or
//! hostile node may send).

use serde_json::{Map, Value};

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

/// Applies the patches to the answer of `GET rel`.
pub(crate) fn apply(patches: &[FieldPatch], rel: &str, data: &mut Value) {
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
}
