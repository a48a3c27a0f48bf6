//! Per-field lenient decoding: one malformed field costs that field, not its neighbours.
//!
//! [`decode`] first decodes the whole body as usual. Only when that fails does it rebuild the
//! object field by field: the fields the type requires (named by serde's `missing field`
//! errors) first, then every other field on its own, keeping each that decodes together with
//! what is kept so far. A dropped field takes its default (usually `None`), exactly as if
//! Proxmox had not sent it. A nested object is kept or dropped whole (a bad `memory.used`
//! costs `memory`, whose figures are only meaningful together; not `cpu` or `uptime`). Each dropped field is
//! logged once per process (per endpoint and field), not every cycle.
//!
//! A body that is not an object, or whose required fields are themselves malformed, is
//! still an error: there is nothing sound to keep.

use std::collections::BTreeSet;
use std::sync::Mutex;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// Objects with more fields than this are not rebuilt (the decode error stands).
pub const MAX_FIELDS: usize = 128;

/// A field that was dropped while decoding, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DroppedField {
    /// The top-level field, e.g. `cpu` or `memory`.
    pub field: String,
    /// The decoder's complaint (control characters removed, at most 200 characters).
    pub reason: String,
}

/// The field a serde `missing field `x`` error names.
fn missing_field(message: &str) -> Option<&str> {
    let rest = message.split("missing field `").nth(1)?;
    rest.split('`').next()
}

fn clean(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(200).collect()
}

/// Rebuilds `full` keeping what `accepts` takes. `None` when not even the required fields
/// decode.
fn rebuild(
    full: &Map<String, Value>,
    accepts: impl Fn(&Map<String, Value>) -> Result<(), String>,
    dropped: &mut Vec<DroppedField>,
) -> Option<Map<String, Value>> {
    let mut kept = Map::new();
    // The required fields, as serde names them one by one.
    for _ in 0..=full.len() {
        match accepts(&kept) {
            Ok(()) => break,
            Err(e) => {
                let f = missing_field(&e)?;
                let v = full.get(f)?;
                if kept.contains_key(f) {
                    return None;
                }
                kept.insert(f.to_string(), v.clone());
            }
        }
    }
    accepts(&kept).ok()?;
    for (k, v) in full {
        if kept.contains_key(k) {
            continue;
        }
        let mut candidate = kept.clone();
        candidate.insert(k.clone(), v.clone());
        let reason = match accepts(&candidate) {
            Ok(()) => {
                kept = candidate;
                continue;
            }
            Err(e) => e,
        };
        dropped.push(DroppedField {
            field: k.clone(),
            reason: clean(&reason),
        });
    }
    Some(kept)
}

/// Decodes `v` as `T`, dropping the fields that do not decode (see the module
/// documentation). Returns the value and the fields dropped; the error of the whole decode
/// when nothing sound is left.
pub fn decode<T: DeserializeOwned>(v: Value) -> Result<(T, Vec<DroppedField>), serde_json::Error> {
    let err = match T::deserialize(&v) {
        Ok(t) => return Ok((t, Vec::new())),
        Err(e) => e,
    };
    // Rebuilding costs a decode per field: only for objects of a sane size (Proxmox's have
    // a few dozen fields), so a hostile body cannot make it quadratic.
    let Value::Object(full) = &v else {
        return Err(err);
    };
    if full.len() > MAX_FIELDS {
        return Err(err);
    }
    let accepts = |m: &Map<String, Value>| {
        T::deserialize(&Value::Object(m.clone()))
            .map(drop)
            .map_err(|e| e.to_string())
    };
    let mut dropped = Vec::new();
    let Some(kept) = rebuild(full, accepts, &mut dropped) else {
        return Err(err);
    };
    let t = T::deserialize(Value::Object(kept))?;
    Ok((t, dropped))
}

/// The JSON kind of `v` (`object`, `string`, …), for messages that must not echo a body.
pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// How many distinct (endpoint, field) pairs are remembered for [`warn_once`]; beyond it a
/// hostile server cannot grow the set (further new pairs are not logged).
const MAX_REMEMBERED: usize = 256;

static WARNED: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

/// Logs each dropped field once per process for `what` (an endpoint such as
/// `nodes/{node}/status`). Returns how many were logged now (tests).
pub fn warn_once(what: &str, dropped: &[DroppedField]) -> usize {
    let mut logged = 0;
    let Ok(mut seen) = WARNED.lock() else {
        return 0;
    };
    for d in dropped {
        let key = format!("{what}\u{0}{}", d.field);
        if seen.contains(&key) || seen.len() >= MAX_REMEMBERED {
            continue;
        }
        seen.insert(key);
        logged += 1;
        tracing::warn!(
            endpoint = %clean(what),
            field = %clean(&d.field),
            reason = %d.reason,
            "ignoring a malformed field in a Proxmox answer (logged once)"
        );
    }
    logged
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pve::{ContainerStatus, NodeStatus};

    #[test]
    fn a_malformed_field_costs_only_itself() {
        let v = serde_json::json!({
            "cpu": "lots",
            "uptime": 1234,
            "pveversion": "pve-manager/9.1.3/abc",
            "memory": {"total": 100, "used": "x", "free": 40},
            "loadavg": ["0.1", "0.2", "0.3"],
        });
        // The whole decode fails …
        assert!(serde_json::from_value::<NodeStatus>(v.clone()).is_err());
        // … field by field, only the bad values are lost.
        let (s, dropped): (NodeStatus, _) = decode(v).unwrap();
        assert_eq!(s.cpu, None);
        assert_eq!(s.uptime, Some(1234));
        assert_eq!(s.pveversion.as_deref(), Some("pve-manager/9.1.3/abc"));
        assert_eq!(s.memory, Default::default());
        assert_eq!(s.loadavg, vec![0.1, 0.2, 0.3]);
        let fields: Vec<&str> = dropped.iter().map(|d| d.field.as_str()).collect();
        assert_eq!(fields, ["cpu", "memory"]);
    }

    #[test]
    fn required_fields_are_kept_and_their_absence_is_an_error() {
        let v = serde_json::json!({"vmid": 105, "status": "running", "mem": [1], "name": "web"});
        let (c, dropped): (ContainerStatus, _) = decode(v).unwrap();
        assert_eq!(
            (c.vmid.get(), c.mem, c.name.as_deref()),
            (105, None, Some("web"))
        );
        assert_eq!(dropped.len(), 1);
        // A malformed required field: nothing sound is left.
        let v = serde_json::json!({"vmid": "abc", "status": "running"});
        assert!(decode::<ContainerStatus>(v).is_err());
        assert!(decode::<NodeStatus>(serde_json::json!([1, 2])).is_err());
        // Too many fields to rebuild: the error stands.
        let mut big = serde_json::Map::new();
        big.insert("cpu".into(), serde_json::json!("bad"));
        for i in 0..MAX_FIELDS {
            big.insert(format!("x{i}"), serde_json::json!(i));
        }
        assert!(decode::<NodeStatus>(Value::Object(big)).is_err());
    }

    #[test]
    fn each_field_is_logged_once() {
        let d = vec![DroppedField {
            field: "cpu".into(),
            reason: "bad".into(),
        }];
        assert_eq!(warn_once("test/once", &d), 1);
        assert_eq!(warn_once("test/once", &d), 0);
        assert_eq!(warn_once("test/other", &d), 1);
    }
}
