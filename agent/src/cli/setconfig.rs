//! `set-config`: the PUT, then what Proxmox really did — which changes are applied and
//! which wait in `…/pending` until the container's next start.

use felhom_protocol::Vmid;
use serde_json::json;

use super::CliError;
use super::output::Outcome;
use crate::pve::GuestState;
use crate::pve::pending::{split_applied, split_read_at_start};
use crate::pve::{ConfigChange, ConfigKey, PveClient, PveError};

/// Proxmox's refusal of a `PUT …/config` whose `digest` no longer matches the config
/// (pve-guest-common `PVE::AbstractConfig::assert_if_modified`).
const MODIFIED_MARKER: &str = "detected modified configuration";

/// Says what the digest refusal means: the config changed between the agent's read and
/// its write, and nothing was changed.
fn explain_modified(e: PveError, vmid: Vmid, digest: &str) -> CliError {
    let text = e.to_string();
    if !text.contains(MODIFIED_MARKER) {
        return e.into();
    }
    CliError::Failed(format!(
        "{text}\nCT {vmid}'s configuration changed after felhom-agent read it (digest {digest}), so Proxmox refused the change and nothing was written; look at the configuration as it is now, then run set-config again."
    ))
}

/// Changes allowed keys (digest-guarded), then reads `…/pending` to report the changes that
/// are applied and those that wait for a restart; of the applied ones, those a running
/// container reads only at start (`hostname`) are reported as `at_next_start`. When `pending` cannot be read, the output
/// says so (`pending_known: false`) instead of claiming either.
pub(super) async fn set_config(
    pve: &PveClient,
    vmid: Vmid,
    changes: Vec<(ConfigKey, String)>,
) -> Result<Outcome, CliError> {
    let current = pve.container_config(vmid).await?;
    let mut change = ConfigChange::new();
    if !current.digest.is_empty() {
        change = change
            .digest(&current.digest)
            .map_err(|e| CliError::Failed(e.to_string()))?;
    }
    let mut shown = Vec::new();
    let mut keys = Vec::new();
    for (k, v) in changes {
        shown.push(format!("{k}={v}"));
        keys.push(k.to_string());
        change = change
            .set(k, v)
            .map_err(|e| CliError::Usage(e.to_string()))?;
    }
    pve.set_config(vmid, &change)
        .await
        .map_err(|e| explain_modified(e, vmid, &current.digest))?;
    let with_value = |names: &[&str]| -> Vec<String> {
        keys.iter()
            .zip(&shown)
            .filter(|(k, _)| names.contains(&k.as_str()))
            .map(|(_, s)| s.clone())
            .collect()
    };
    match pve.pending(vmid).await {
        Ok(entries) => {
            let (applied, pending) = split_applied(&keys, &entries);
            // Whether the CT runs decides whether a key read only at start is in effect;
            // when the state cannot be read, the agent does not claim it is.
            let running = match pve.container_status(vmid).await {
                Ok(s) => s.status != GuestState::Stopped,
                Err(e) => {
                    tracing::warn!(error = %e, "could not read the container's state after set-config");
                    true
                }
            };
            let (applied, at_start) = split_read_at_start(&applied, running);
            let applied = with_value(&applied);
            let at_start = with_value(&at_start);
            let pending = with_value(&pending);
            let mut human = format!("CT {vmid}: set {}\n", shown.join(" "));
            if !applied.is_empty() {
                human.push_str(&format!("applied now: {}\n", applied.join(" ")));
            }
            if !at_start.is_empty() {
                human.push_str(&format!(
                    "in the configuration now, but the running container takes it at its next start: {}\n",
                    at_start.join(" ")
                ));
            }
            if !pending.is_empty() {
                human.push_str(&format!(
                    "pending until the container's next start (Proxmox keeps them in …/pending): {}\n",
                    pending.join(" ")
                ));
            }
            Ok(Outcome::new(
                &json!({ "ok": true, "vmid": vmid, "set": shown, "applied": applied, "at_next_start": at_start, "pending": pending, "pending_known": true }),
                human,
            ))
        }
        Err(e) => {
            tracing::warn!(error = %e, "config changed, but its pending changes could not be read");
            Ok(Outcome::new(
                &json!({ "ok": true, "vmid": vmid, "set": shown, "applied": null, "at_next_start": null, "pending": null, "pending_known": false }),
                format!(
                    "CT {vmid}: set {} (could not read …/pending: {e}; whether each change is applied now or at the next start is unknown)\n",
                    shown.join(" ")
                ),
            ))
        }
    }
}
