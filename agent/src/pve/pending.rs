//! Pending configuration changes (`GET /nodes/{node}/lxc/{vmid}/pending`): on a running
//! container, Proxmox applies some keys at once and keeps others in the config's
//! `[pending]` section until the next start. Each entry names a key with its current
//! `value`, and `pending` (the new value) or `delete` when a change waits.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::lenient as le;

/// One key in `…/pending`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct PendingEntry {
    /// The config key.
    #[serde(deserialize_with = "le::string")]
    pub key: String,
    /// The current value (absent for a key that only exists as pending).
    #[serde(default)]
    pub value: Option<Value>,
    /// The value waiting for the next start.
    #[serde(default)]
    pub pending: Option<Value>,
    /// A deletion waiting for the next start (1, or 2 for a forced one).
    #[serde(default, deserialize_with = "le::opt_u64")]
    pub delete: Option<u64>,
}

impl PendingEntry {
    /// Whether a change of this key waits for the next start.
    pub fn waits(&self) -> bool {
        self.pending.is_some() || self.delete.is_some_and(|d| d > 0)
    }
}

/// Splits `keys` (the keys just changed) into applied and pending, by `entries`.
pub fn split_applied<'a>(
    keys: &'a [String],
    entries: &[PendingEntry],
) -> (Vec<&'a str>, Vec<&'a str>) {
    keys.iter()
        .map(String::as_str)
        .partition(|k| !entries.iter().any(|e| e.key.as_str() == *k && e.waits()))
}

/// Keys Proxmox writes into a running container's config at once (no `[pending]` entry) that
/// the container only reads when it starts: `hostname` is one of pve-container's
/// `$LXC_FASTPLUG_OPTIONS` (`src/PVE/LXC/Config.pm`), so `…/pending` lists it as current,
/// but the running container keeps its old name until the next start, when `lxc.uts.name`
/// (`src/PVE/LXC.pm` `update_lxc_config`) and `/etc/hostname` (`PVE::LXC::Setup`) are written.
pub const READ_AT_START: [&str; 1] = ["hostname"];

/// Of the keys `applied` says are applied, those a running container only takes at its next
/// start ([`READ_AT_START`]), split off: `(applied, at_next_start)`.
pub fn split_read_at_start<'a>(applied: &[&'a str], running: bool) -> (Vec<&'a str>, Vec<&'a str>) {
    applied
        .iter()
        .copied()
        .partition(|k| !(running && READ_AT_START.contains(k)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_decode_and_split() {
        let wire = serde_json::json!([
            {"key": "memory", "value": 1024},
            {"key": "nameserver", "value": "192.0.2.1", "pending": "192.0.2.53"},
            {"key": "searchdomain", "value": "example.com", "delete": 1},
            {"key": "cores", "value": "2"}
        ]);
        let entries: Vec<PendingEntry> = serde_json::from_value(wire).unwrap();
        assert!(entries[1].waits() && entries[2].waits() && !entries[0].waits());
        let keys = vec![
            "memory".to_string(),
            "nameserver".to_string(),
            "searchdomain".to_string(),
        ];
        let (applied, pending) = split_applied(&keys, &entries);
        assert_eq!(applied, vec!["memory"]);
        assert_eq!(pending, vec!["nameserver", "searchdomain"]);
    }

    #[test]
    fn hostname_of_a_running_container_waits_for_the_start() {
        let applied = ["memory", "hostname", "cores"];
        assert_eq!(
            split_read_at_start(&applied, true),
            (vec!["memory", "cores"], vec!["hostname"])
        );
        assert_eq!(
            split_read_at_start(&applied, false),
            (applied.to_vec(), vec![])
        );
    }
}
