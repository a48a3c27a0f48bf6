//! Proxmox task identifiers (UPIDs).
//!
//! Format (pve-common `PVE::UPID`):
//! `UPID:{node}:{pid:08X}:{pstart:08X}:{starttime:08X}:{type}:{id}:{user}:` — `pstart` may
//! have 9 hex digits (uptime > 497 days), `id` may be empty, `user` is `user@realm` or, for
//! API tokens, `user@realm!tokenid`. A [`Upid`] keeps the exact string it was parsed from, so
//! it prints back byte for byte.

use std::fmt;
use std::str::FromStr;

/// A parsed UPID.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Upid {
    raw: String,
    node: String,
    pid: u32,
    pstart: u64,
    starttime: u32,
    task_type: String,
    id: String,
    user: String,
}

/// A string that is not a valid UPID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid UPID {raw:?}: {reason}")]
pub struct UpidParseError {
    /// The rejected text (UPIDs carry no secrets).
    pub raw: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

fn is_node_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
}

fn is_field(s: &str, allow_empty: bool) -> bool {
    (allow_empty || !s.is_empty()) && !s.chars().any(|c| c == ':' || c == '/' || c.is_whitespace())
}

fn hex_field(s: &str, min: usize, max: usize) -> Option<u64> {
    if s.len() < min || s.len() > max || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(s, 16).ok()
}

impl Upid {
    /// The node the task runs on (status and log must be queried there).
    pub fn node(&self) -> &str {
        &self.node
    }
    /// The worker's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }
    /// The worker's process start time (clock ticks since boot).
    pub fn pstart(&self) -> u64 {
        self.pstart
    }
    /// Task start, seconds since the Unix epoch.
    pub fn starttime(&self) -> u32 {
        self.starttime
    }
    /// Task type, e.g. `vzdump`, `vzrestore`, `vzsnapshot`.
    pub fn task_type(&self) -> &str {
        &self.task_type
    }
    /// Task id, usually the vmid; may be empty.
    pub fn id(&self) -> &str {
        &self.id
    }
    /// The full user that started the task (`user@realm` or `user@realm!tokenid`).
    pub fn user(&self) -> &str {
        &self.user
    }
    /// The API token name, when a token started the task.
    pub fn token_name(&self) -> Option<&str> {
        self.user.split_once('!').map(|(_, t)| t)
    }
    /// The exact UPID string.
    pub fn as_str(&self) -> &str {
        &self.raw
    }
}

impl FromStr for Upid {
    type Err = UpidParseError;

    fn from_str(s: &str) -> Result<Upid, UpidParseError> {
        let err = |reason| UpidParseError {
            raw: s.chars().take(200).collect(),
            reason,
        };
        let parts: Vec<&str> = s.split(':').collect();
        if parts.len() != 9 || parts[0] != "UPID" || !parts[8].is_empty() {
            return Err(err(
                "expected UPID:node:pid:pstart:starttime:type:id:user: (9 colon-separated fields, trailing colon)",
            ));
        }
        if !is_node_name(parts[1]) {
            return Err(err("bad node name"));
        }
        let pid = hex_field(parts[2], 8, 8).ok_or_else(|| err("pid must be 8 hex digits"))?;
        let pstart =
            hex_field(parts[3], 8, 9).ok_or_else(|| err("pstart must be 8 or 9 hex digits"))?;
        let starttime =
            hex_field(parts[4], 8, 8).ok_or_else(|| err("starttime must be 8 hex digits"))?;
        if !is_field(parts[5], false) {
            return Err(err("bad task type"));
        }
        if !is_field(parts[6], true) {
            return Err(err("bad task id"));
        }
        if !is_field(parts[7], false) || !parts[7].contains('@') {
            return Err(err("bad user"));
        }
        Ok(Upid {
            raw: s.to_string(),
            node: parts[1].to_string(),
            // 8 hex digits always fit in u32.
            pid: u32::try_from(pid).map_err(|_| err("pid out of range"))?,
            pstart,
            starttime: u32::try_from(starttime).map_err(|_| err("starttime out of range"))?,
            task_type: parts[5].to_string(),
            id: parts[6].to_string(),
            user: parts[7].to_string(),
        })
    }
}

impl fmt::Display for Upid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl fmt::Debug for Upid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Upid({})", self.raw)
    }
}

impl serde::Serialize for Upid {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.raw)
    }
}

impl<'de> serde::Deserialize<'de> for Upid {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Upid, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_of_a_token_upid() {
        let u: Upid = "UPID:proxmox2:000D7AA2:08D5A17C:63DF62A5:vzclone:200:root@pam!api_token:"
            .parse()
            .unwrap();
        assert_eq!(u.node(), "proxmox2");
        assert_eq!(u.pid(), 0x000D7AA2);
        assert_eq!(u.pstart(), 0x08D5A17C);
        assert_eq!(u.starttime(), 0x63DF62A5);
        assert_eq!(u.task_type(), "vzclone");
        assert_eq!(u.id(), "200");
        assert_eq!(u.user(), "root@pam!api_token");
        assert_eq!(u.token_name(), Some("api_token"));
    }

    #[test]
    fn nine_hex_pstart_and_empty_id() {
        let u: Upid = "UPID:pve:00061CB3:1010BA69C:64EFECB0:imgcopy::root@pam:"
            .parse()
            .unwrap();
        assert_eq!(u.pstart(), 0x1010BA69C);
        assert_eq!(u.id(), "");
        assert_eq!(u.token_name(), None);
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "OK",
            "UPID:pve:00061CB3:010BA69C:64EFECB0:imgcopy::root@pam",
            "UPID:pve:61CB3:010BA69C:64EFECB0:imgcopy::root@pam:",
            "UPID:pve:00061CB3:010BA69C:64EFECB0::1:root@pam:",
            "UPID:-pve:00061CB3:010BA69C:64EFECB0:x:1:root@pam:",
            "UPID:pve:00061CB3:010BA69C:64EFECB0:x:1::",
            "UPID:pve:00061CB3:010BA69C:64EFECB0:x:1 2:root@pam:",
            "UPID:pve:0006ZCB3:010BA69C:64EFECB0:x:1:root@pam:",
            "UPID:pve:00061CB3:010BA69C11:64EFECB0:x:1:root@pam:",
        ] {
            assert!(bad.parse::<Upid>().is_err(), "{bad}");
        }
    }

    #[test]
    fn serde_round_trip() {
        let s = "\"UPID:pve0:0009E9B0:103F1191:660069E7:vzcreate:101:root@pam:\"";
        let u: Upid = serde_json::from_str(s).unwrap();
        assert_eq!(serde_json::to_string(&u).unwrap(), s);
    }
}
