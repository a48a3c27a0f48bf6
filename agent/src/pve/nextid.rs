//! Whether a vmid is free in the whole cluster: `GET /cluster/nextid?vmid=N`, which
//! pve-manager (`PVE/API2/Cluster.pm`, `nextid`) answers from the cluster's vmlist — VMs and
//! containers on every node — with the vmid itself when it is free and a 400 whose `errors`
//! name `vmid` (`VM N already exists`) when it is not. Any user may ask (`permissions =>
//! { user => 'all' }`). The restore drill asks before it restores into a scratch vmid: this
//! node's container list does not show a VM or another node's guest there.

use felhom_protocol::Vmid;
use serde_json::Value;

use super::client::PveClient;
use super::error::PveError;

impl PveClient {
    /// Whether `vmid` is unused cluster-wide (at the time of the check).
    pub async fn vmid_is_free(&self, vmid: Vmid) -> Result<bool, PveError> {
        let id = vmid.to_string();
        match self
            .get::<Value>(&["cluster", "nextid"], &[("vmid", id.clone())])
            .await
        {
            // The id comes back as a string (JSON::XS, see the reference notes) or a number.
            Ok(v) => {
                let echoed = match &v {
                    Value::String(s) => s.trim() == id,
                    Value::Number(n) => n.as_u64() == Some(u64::from(vmid.get())),
                    _ => false,
                };
                if echoed {
                    Ok(true)
                } else {
                    Err(PveError::Decode {
                        path: "cluster/nextid".into(),
                        message: format!("expected {id} back, got {v}"),
                    })
                }
            }
            Err(PveError::Api {
                status: 400,
                errors,
                ..
            }) if errors.contains_key("vmid") => Ok(false),
            Err(e) => Err(e),
        }
    }
}
