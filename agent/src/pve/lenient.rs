//! Lenient deserializers for Proxmox's Perl-generated JSON.
//!
//! Perl emits a scalar as a JSON number or a string depending on its last use, so numbers
//! may arrive as `"123"`, booleans as `0`/`1`/`""`/`"1"`, and a vmid as `"106"` on older
//! releases. These helpers accept all of those (like `proxmox_serde::perl`), for use with
//! `#[serde(default, deserialize_with = "…")]`.

use felhom_protocol::Vmid;
use serde::Deserialize;
use serde::de::{Deserializer, Error};
use serde_json::Value;

fn to_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        _ => None,
    }
}

fn to_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| *f >= 0.0 && f.fract() == 0.0)
                .map(|f| f as u64)
        }),
        Value::String(s) => {
            let s = s.trim();
            s.parse().ok().or_else(|| {
                s.parse::<f64>()
                    .ok()
                    .filter(|f| *f >= 0.0 && f.fract() == 0.0)
                    .map(|f| f as u64)
            })
        }
        Value::Bool(b) => Some(u64::from(*b)),
        _ => None,
    }
}

fn to_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn to_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => Some(n.as_f64().is_some_and(|f| f != 0.0)),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "" | "0" | "false" | "no" | "off" => Some(false),
            "1" | "true" | "yes" | "on" => Some(true),
            _ => None,
        },
        Value::Null => Some(false),
        _ => None,
    }
}

/// Optional float: number or numeric string; `null`/`""` become `None`.
pub fn opt_f64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    let v = Value::deserialize(d)?;
    match &v {
        Value::Null => Ok(None),
        Value::String(s) if s.trim().is_empty() => Ok(None),
        _ => to_f64(&v)
            .map(Some)
            .ok_or_else(|| D::Error::custom(format!("expected a number, got {v}"))),
    }
}

/// Optional unsigned integer: number or numeric string; `null`/`""` become `None`.
pub fn opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let v = Value::deserialize(d)?;
    match &v {
        Value::Null => Ok(None),
        Value::String(s) if s.trim().is_empty() => Ok(None),
        _ => to_u64(&v)
            .map(Some)
            .ok_or_else(|| D::Error::custom(format!("expected an unsigned integer, got {v}"))),
    }
}

/// Unsigned integer: number or numeric string.
pub fn u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let v = Value::deserialize(d)?;
    to_u64(&v).ok_or_else(|| D::Error::custom(format!("expected an unsigned integer, got {v}")))
}

/// Optional signed integer: number or numeric string; `null`/`""` become `None`.
pub fn opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let v = Value::deserialize(d)?;
    match &v {
        Value::Null => Ok(None),
        Value::String(s) if s.trim().is_empty() => Ok(None),
        _ => to_i64(&v)
            .map(Some)
            .ok_or_else(|| D::Error::custom(format!("expected an integer, got {v}"))),
    }
}

/// Boolean: `true`/`false`, `0`/`1`, `"0"`/`"1"`, `""`, `null`.
pub fn bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    let v = Value::deserialize(d)?;
    to_bool(&v).ok_or_else(|| D::Error::custom(format!("expected a boolean, got {v}")))
}

/// Optional boolean: like [`bool()`], but `null` becomes `None`.
pub fn opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    let v = Value::deserialize(d)?;
    if v.is_null() {
        return Ok(None);
    }
    to_bool(&v)
        .map(Some)
        .ok_or_else(|| D::Error::custom(format!("expected a boolean, got {v}")))
}

/// Optional string; numbers are turned into their decimal text, `null`/`""` into `None`.
pub fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let v = Value::deserialize(d)?;
    Ok(match v {
        Value::Null => None,
        Value::String(s) if s.is_empty() => None,
        Value::String(s) => Some(s),
        other => Some(other.to_string()),
    })
}

/// String; numbers are turned into their decimal text, `null` into `""`.
pub fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(opt_string(d)?.unwrap_or_default())
}

/// The longest text field of a listing kept (longer text is cut, with a note).
pub const MAX_TEXT_BYTES: usize = 4096;

/// Optional display text from Proxmox ([`opt_string`]), bounded to [`MAX_TEXT_BYTES`] with
/// every control character made harmless ([`super::error::clean_text`]).
pub fn opt_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(opt_string(d)?.map(|s| super::error::clean_text(&s, MAX_TEXT_BYTES)))
}

/// Display text from Proxmox, as [`opt_text`]; absent becomes `""`.
pub fn string_text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(opt_text(d)?.unwrap_or_default())
}

/// A storage volume's `verification` object; anything that is not an object is `None`
/// (one odd entry does not make the whole listing unreadable).
pub fn opt_verification<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<super::types::Verification>, D::Error> {
    let v = Value::deserialize(d)?;
    Ok(match v {
        Value::Object(_) => serde_json::from_value(v).ok(),
        _ => None,
    })
}

fn vmid_of<E: Error>(v: &Value) -> Result<Vmid, E> {
    let n = to_u64(v).ok_or_else(|| E::custom(format!("expected a vmid, got {v}")))?;
    let n = u32::try_from(n).map_err(|_| E::custom(format!("vmid {n} out of range")))?;
    Vmid::new(n).map_err(|e| E::custom(e.to_string()))
}

/// A vmid given as a number or (before pve-container 5.0.10) as a string.
pub fn vmid<'de, D: Deserializer<'de>>(d: D) -> Result<Vmid, D::Error> {
    let v = Value::deserialize(d)?;
    vmid_of(&v)
}

/// An optional vmid; `null`, `""` and `0` become `None`.
pub fn opt_vmid<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vmid>, D::Error> {
    let v = Value::deserialize(d)?;
    match &v {
        Value::Null => Ok(None),
        Value::String(s) if s.trim().is_empty() => Ok(None),
        _ if to_u64(&v) == Some(0) => Ok(None),
        _ => vmid_of(&v).map(Some),
    }
}

/// A list of floats given as numbers or strings (node `loadavg`).
pub fn f64_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
    let v = Value::deserialize(d)?;
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => items
            .iter()
            .map(|i| {
                to_f64(i).ok_or_else(|| D::Error::custom(format!("expected a number, got {i}")))
            })
            .collect(),
        other => Err(D::Error::custom(format!("expected a list, got {other}"))),
    }
}

/// Renders a config value as Proxmox shows it in `pct config` (numbers as decimal text).
pub fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct T {
        #[serde(default, deserialize_with = "opt_u64")]
        n: Option<u64>,
        #[serde(default, deserialize_with = "bool")]
        b: bool,
        #[serde(deserialize_with = "vmid")]
        vmid: Vmid,
        #[serde(default, deserialize_with = "opt_f64")]
        f: Option<f64>,
    }

    #[test]
    fn accepts_perl_shapes() {
        for (json, n, b, f) in [
            (
                r#"{"n":5,"b":1,"vmid":106,"f":0.5}"#,
                Some(5),
                true,
                Some(0.5),
            ),
            (
                r#"{"n":"5","b":"1","vmid":"106","f":"0.5"}"#,
                Some(5),
                true,
                Some(0.5),
            ),
            (r#"{"n":"","b":"","vmid":"106","f":""}"#, None, false, None),
            (r#"{"b":0,"vmid":"106"}"#, None, false, None),
            (r#"{"n":5.0,"b":true,"vmid":106}"#, Some(5), true, None),
        ] {
            let t: T = serde_json::from_str(json).unwrap();
            assert_eq!((t.n, t.b, t.vmid.get(), t.f), (n, b, 106, f), "{json}");
        }
    }

    #[test]
    fn rejects_garbage() {
        assert!(serde_json::from_str::<T>(r#"{"n":"x","vmid":106}"#).is_err());
        assert!(serde_json::from_str::<T>(r#"{"vmid":"abc"}"#).is_err());
        assert!(serde_json::from_str::<T>(r#"{"vmid":5}"#).is_err());
        assert!(serde_json::from_str::<T>(r#"{"b":"maybe","vmid":106}"#).is_err());
    }
}
