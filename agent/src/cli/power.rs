//! `shutdown VMID [--timeout S] [--force-stop]`: a clean shutdown through the API.

use std::time::Duration;

use felhom_protocol::Vmid;
use serde_json::json;

use super::CliError;
use super::commands::{task_json, task_line};
use super::output::Outcome;
use super::progress::{self, ProgressMode};
use crate::pve::{PveClient, WaitOptions};

/// Sends the shutdown and waits for its task: the container's own timeout plus five
/// minutes for Proxmox to start and end the task.
pub(super) async fn shutdown(
    pve: &PveClient,
    vmid: Vmid,
    timeout: u32,
    force_stop: bool,
    pm: ProgressMode,
) -> Result<Outcome, CliError> {
    let upid = pve.shutdown_with(vmid, timeout, force_stop).await?;
    let wait = Duration::from_secs(u64::from(timeout)) + Duration::from_secs(300);
    let done = progress::wait(pve, &upid, WaitOptions::with_timeout(wait), pm).await?;
    // HA carries the shutdown out with the guest's own timeout: wait that long too.
    let bound = super::ha::HA_WAIT + Duration::from_secs(u64::from(timeout));
    let (ha_line, ha) = super::ha::follow(pve, vmid, &upid, false, bound).await;
    Ok(Outcome::new(
        &json!({ "ok": true, "action": "shutdown", "vmid": vmid, "timeout": timeout, "force_stop": force_stop, "task": task_json(&done), "ha": ha }),
        task_line(&format!("shutdown CT {vmid}"), &done) + &ha_line,
    ))
}
