//! HA-managed guests. For a guest under the HA manager, Proxmox answers start, stop and
//! shutdown with `hastart`/`hastop` tasks that end as soon as the request is queued for the
//! HA stack; the guest reaches the state later (the node's LRM runs the real `vzstart` /
//! `vzstop`). `status/current` says whether a guest is managed (`ha.managed = 1`).

use serde::{Deserialize, Serialize};

use super::lenient as le;
use super::upid::Upid;

/// The `ha` object of `GET …/lxc/{vmid}/status/current`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct HaStatus {
    /// Whether the HA manager handles the guest.
    #[serde(default, deserialize_with = "le::bool")]
    pub managed: bool,
    /// The CRM's current service state, when managed: pve-ha-manager `HA/Config.pm`
    /// `get_service_status` reads `service_status->{sid}->{state}` from the manager status
    /// (`started`, `stopped`, `request_stop`, `freeze`, `migrate`, `fence`, `error`, …) —
    /// where the HA stack is, not what was requested. Proxmox sends no other field.
    #[serde(default, deserialize_with = "le::opt_string")]
    pub state: Option<String>,
}

/// Whether a task only queued a request for the HA manager (`hastart`, `hastop`).
pub fn is_ha_request(upid: &Upid) -> bool {
    matches!(upid.task_type(), "hastart" | "hastop")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ha_object_decodes_leniently() {
        let h: HaStatus =
            serde_json::from_value(serde_json::json!({"managed": 1, "state": "started"})).unwrap();
        assert!(h.managed);
        let h: HaStatus = serde_json::from_value(serde_json::json!({"managed": "0"})).unwrap();
        assert!(!h.managed);
        let u: Upid = "UPID:pve:0001D3A0:0A1B2C3D:65BA1F00:hastart:100:root@pam:"
            .parse()
            .unwrap();
        assert!(is_ha_request(&u));
        let u: Upid = "UPID:pve:0001D3A0:0A1B2C3D:65BA1F00:vzstart:100:root@pam:"
            .parse()
            .unwrap();
        assert!(!is_ha_request(&u));
    }
}
