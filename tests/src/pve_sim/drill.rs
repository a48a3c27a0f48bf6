//! What the restore drill needs of the simulator: `DELETE lxc/{vmid}` with `purge` and
//! `destroy-unreferenced-disks`, a container that does not stay running
//! ([`SimState::set_stop_after_start`]), and `GET /cluster/nextid` over this node's
//! containers and the guests elsewhere in the cluster ([`SimState::add_cluster_guest`]).

use std::time::{Duration, Instant};

use serde_json::Value;

use super::shared::{ApiError, ApiResult};
use super::state::{Inner, SimState};

/// The parameters `DELETE /nodes/{node}/lxc/{vmid}` accepts (pve-container
/// `API2/LXC.pm` `destroy_vm`): `purge`, `destroy-unreferenced-disks`, `force` (booleans).
/// Returns whether `purge` was set.
pub(crate) fn destroy_params(
    params: &std::collections::BTreeMap<String, String>,
) -> Result<bool, ApiError> {
    let mut errors = Vec::new();
    for (k, v) in params {
        match k.as_str() {
            "purge" | "destroy-unreferenced-disks" | "force" => {
                if !matches!(v.as_str(), "0" | "1") {
                    errors.push((k.as_str(), format!("type check ('boolean') failed - got '{v}'")));
                }
            }
            "node" | "vmid" => {}
            _ => errors.push((
                k.as_str(),
                "property is not defined in schema and the schema does not allow additional properties".to_string(),
            )),
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::param(&errors));
    }
    Ok(params.get("purge").is_some_and(|v| v == "1"))
}

/// `GET /cluster/nextid[?vmid=N]` as pve-manager's `PVE/API2/Cluster.pm` `nextid` answers it:
/// the asked vmid when no guest in the cluster has it, else a 400 naming `vmid` (`VM N already
/// exists`); without one, the first free id from 100. The id is a JSON string, as JSON::XS
/// writes it there.
pub(crate) fn nextid(inner: &Inner, asked: Option<u32>) -> ApiResult {
    let taken = |v: u32| inner.containers.contains_key(&v) || inner.cluster_guests.contains_key(&v);
    match asked {
        Some(v) if taken(v) => Err(ApiError::param(&[(
            "vmid",
            format!("VM {v} already exists"),
        )])),
        Some(v) => Ok(Value::String(v.to_string()).into()),
        None => {
            let free = (100..1_000_000).find(|v| !taken(*v)).unwrap_or(1_000_000);
            Ok(Value::String(free.to_string()).into())
        }
    }
}

impl Inner {
    /// Removes a destroyed guest; `purge` also removes it from the HA resources.
    pub(crate) fn destroy(&mut self, vmid: u32, purge: bool) {
        self.containers.remove(&vmid);
        // The knob stays: a later guest with this id (the next drill's copy) stops too.
        self.stop_at.remove(&vmid);
        if purge {
            self.ha.remove(&vmid);
        }
    }

    /// After a start: schedules the stop of a container that does not stay running.
    pub(crate) fn arm_stop(&mut self, vmid: u32) {
        if let Some(d) = self.stop_after.get(&vmid) {
            self.stop_at.insert(vmid, Instant::now() + *d);
        }
    }

    /// Stops the containers whose time is up.
    pub(crate) fn stop_due(&mut self, now: Instant) {
        let due: Vec<u32> = self
            .stop_at
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(v, _)| *v)
            .collect();
        for vmid in due {
            self.stop_at.remove(&vmid);
            if let Some(ct) = self.containers.get_mut(&vmid) {
                ct.running = false;
            }
        }
    }
}

impl SimState {
    /// Makes CT `vmid` — also one that does not exist yet, such as a drill's scratch
    /// guest — stop on its own `after` each start (init crashes), as a copy that does not
    /// boot would.
    pub fn set_stop_after_start(&self, vmid: u32, after: Duration) {
        self.lock().stop_after.insert(vmid, after);
    }

    /// Makes a failed restore (or create) leave a guest behind at its vmid, stopped: as when
    /// pve-container's cleanup after the failure fails too, or another client created that
    /// vmid meanwhile. A drill cannot tell the two apart, so it must leave it in place.
    pub fn set_failed_restore_leaves_guest(&self, leave: bool) {
        self.lock().failed_restore_leaves_guest = leave;
    }

    /// Puts a guest at `vmid` elsewhere in the cluster: `kind` `VM` (a QEMU guest) or `CT` on
    /// `node`. This node's container list does not show it; `/cluster/nextid` does, and a
    /// create or restore into that vmid fails as pve-cluster's `check_vmid_unused` makes it.
    pub fn add_cluster_guest(&self, vmid: u32, kind: &str, node: &str) {
        self.lock()
            .cluster_guests
            .insert(vmid, (kind.to_string(), node.to_string()));
    }
}
