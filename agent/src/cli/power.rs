//! `start VMID`, `stop VMID` and `shutdown VMID [--timeout S] [--force-stop]`: a container's
//! power through the API, following the HA manager for an HA-managed guest.

use std::time::Duration;

use felhom_protocol::Vmid;
use serde_json::json;

use super::CliError;
use super::output::Outcome;
use super::progress::{self, ProgressMode};
use super::task_output::{SHORT_TASK, task_json, task_line};
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
    if force_stop {
        // An HA-managed guest's shutdown goes to the HA manager (pve-container
        // `API2/LXC/Status.pm` `vm_shutdown`: `ha-manager crm-command stop ct:N <timeout>`,
        // forceStop is not passed on), whose LRM shuts down without force (pve-ha-manager
        // `HA/Resources/PVECT.pm` `shutdown` calls `vm_shutdown` with only the timeout).
        // `--force-stop` would be ignored: refuse it and say what does work.
        let status = pve.container_status(vmid).await?;
        if status.ha.as_ref().is_some_and(|h| h.managed) {
            return Err(CliError::Failed(format!(
                "CT {vmid} is HA-managed: Proxmox hands a shutdown to the HA manager, which does not force-stop after the timeout, so --force-stop would be ignored; nothing was sent. Run `felhom-agent shutdown {vmid}` without --force-stop (it fails if the guest does not stop in time), or `felhom-agent stop {vmid}` for the HA manager's hard stop (`ha-manager crm-command stop ct:{vmid} 0`)"
            )));
        }
    }
    let upid = pve.shutdown_with(vmid, timeout, force_stop).await?;
    let wait = Duration::from_secs(u64::from(timeout)) + Duration::from_secs(300);
    let done = progress::wait(pve, &upid, WaitOptions::with_timeout(wait), pm).await?;
    // HA carries the shutdown out with the guest's own timeout: wait that long too.
    let bound = super::ha::HA_WAIT + Duration::from_secs(u64::from(timeout));
    let (ha_line, ha, failed) = super::ha::follow(pve, vmid, &upid, false, bound).await;
    Ok(Outcome::new(
        &json!({ "ok": !failed, "action": "shutdown", "vmid": vmid, "timeout": timeout, "force_stop": force_stop, "task": task_json(&done), "ha": ha }),
        task_line(&format!("shutdown CT {vmid}"), &done) + &ha_line,
    )
    .failed(failed))
}

/// `felhom-agent start VMID` (`start`) or `stop VMID`: starts the task, waits for it, then for
/// an HA-managed guest waits until it really is running or stopped.
pub(super) async fn power(
    pve: &PveClient,
    vmid: Vmid,
    start: bool,
    pm: ProgressMode,
) -> Result<Outcome, CliError> {
    let upid = if start {
        pve.start(vmid).await?
    } else {
        pve.stop(vmid).await?
    };
    let done = progress::wait(pve, &upid, WaitOptions::with_timeout(SHORT_TASK), pm).await?;
    let verb = if start { "start" } else { "stop" };
    let (ha_line, ha, failed) =
        super::ha::follow(pve, vmid, &upid, start, super::ha::HA_WAIT).await;
    Ok(Outcome::new(
        &json!({ "ok": !failed, "action": verb, "vmid": vmid, "task": task_json(&done), "ha": ha }),
        task_line(&format!("{verb} CT {vmid}"), &done) + &ha_line,
    )
    .failed(failed))
}
