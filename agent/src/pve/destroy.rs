//! Destroying a container: `DELETE /nodes/{node}/lxc/{vmid}` (task `vzdestroy`), as the
//! restore drill removes its scratch guest.

use felhom_protocol::Vmid;
use reqwest::Method;

use super::client::PveClient;
use super::error::PveError;
use super::upid::Upid;

impl PveClient {
    /// `DELETE /nodes/{node}/lxc/{vmid}` with `purge=1` (remove the guest from backup jobs,
    /// replication and HA) and `destroy-unreferenced-disks=1` (also the disks on enabled
    /// storages that carry its vmid but are not in its config) when `purge` is set. The
    /// container must be stopped.
    pub async fn destroy(&self, vmid: Vmid, purge: bool) -> Result<Upid, PveError> {
        let id = vmid.to_string();
        let mut form = Vec::new();
        if purge {
            form.push(("purge".to_string(), "1".to_string()));
            form.push(("destroy-unreferenced-disks".to_string(), "1".to_string()));
        }
        self.dispatch(
            Method::DELETE,
            &["nodes", self.node().as_str(), "lxc", &id],
            &form,
        )
        .await
    }
}
