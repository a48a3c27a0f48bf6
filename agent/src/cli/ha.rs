//! After a power task of an HA-managed guest: the `hastart`/`hastop` task only queued the
//! request, so wait (bounded) until `status/current` shows the target state, or say plainly
//! that the HA manager will carry it out.

use std::time::{Duration, Instant};

use felhom_protocol::Vmid;
use serde_json::{Value, json};

use crate::pve::ha::is_ha_request;
use crate::pve::{GuestState, PveClient, Upid};

/// How long to wait for the HA manager to bring the guest to the target state.
pub(super) const HA_WAIT: Duration = Duration::from_secs(120);

/// Poll interval while waiting for the HA manager.
const HA_POLL: Duration = Duration::from_millis(500);

/// What happened after the task: a line for humans (empty when the guest is not HA-managed)
/// and a JSON value (`null` when not HA-managed).
pub(super) async fn follow(
    pve: &PveClient,
    vmid: Vmid,
    upid: &Upid,
    want_running: bool,
    bound: Duration,
) -> (String, Value) {
    if !is_ha_request(upid) {
        return (String::new(), Value::Null);
    }
    let target = if want_running { "running" } else { "stopped" };
    let started = Instant::now();
    let mut last = None;
    loop {
        match pve.container_status(vmid).await {
            Ok(s) => {
                let reached = matches!(
                    (&s.status, want_running),
                    (GuestState::Running, true) | (GuestState::Stopped, false)
                );
                if reached {
                    let secs = started.elapsed().as_secs_f64();
                    return (
                        format!(
                            "CT {vmid} is HA-managed: the HA manager brought it to {target} ({secs:.1}s after the request was queued)\n"
                        ),
                        json!({ "managed": true, "target": target, "reached": true }),
                    );
                }
                last = Some(s.status);
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading the status of an HA-managed guest failed")
            }
        }
        if started.elapsed() >= bound {
            break;
        }
        tokio::time::sleep(HA_POLL).await;
    }
    let now = match last {
        Some(GuestState::Running) => "running",
        Some(GuestState::Stopped) => "stopped",
        _ => "in an unknown state",
    };
    (
        format!(
            "CT {vmid} is HA-managed: the request is queued and the HA manager will carry it out; after {}s it is still {now} (check with felhom-agent guest {vmid} or ha-manager status)\n",
            bound.as_secs()
        ),
        json!({ "managed": true, "target": target, "reached": false, "state": now }),
    )
}
