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

/// What happened after the task: a line for humans (empty when the guest is not HA-managed),
/// a JSON value (`null` when not HA-managed) and whether the command failed: the guest did
/// not reach the requested state within `bound`, or the HA stack put it in its `error`
/// state (pve-ha-manager `HA/Manager.pm`: a service in `error` is not acted on until an
/// admin clears it), in which case waiting ends at once.
pub(super) async fn follow(
    pve: &PveClient,
    vmid: Vmid,
    upid: &Upid,
    want_running: bool,
    bound: Duration,
) -> (String, Value, bool) {
    if !is_ha_request(upid) {
        return (String::new(), Value::Null, false);
    }
    let target = if want_running { "running" } else { "stopped" };
    let started = Instant::now();
    let mut last = None;
    let mut ha_state: Option<String> = None;
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
                        false,
                    );
                }
                ha_state = s.ha.and_then(|h| h.state);
                last = Some(s.status);
                if ha_state.as_deref() == Some("error") {
                    break;
                }
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
    let ha = crate::pve::error::clean_text(ha_state.as_deref().unwrap_or("unknown"), 64);
    let line = if ha == "error" {
        format!(
            "error: CT {vmid} is HA-managed and the HA manager put it in its error state: it will not bring it to {target} (it is {now}; check ha-manager status, then `ha-manager set ct:{vmid} --state disabled` to clear it)\n"
        )
    } else {
        format!(
            "error: CT {vmid} is HA-managed and did not reach {target} within {}s: it is still {now} (HA state {ha}); the request stays queued with the HA manager (check with felhom-agent guest {vmid} or ha-manager status)\n",
            bound.as_secs()
        )
    };
    (
        line,
        json!({ "managed": true, "target": target, "reached": false, "state": now, "ha_state": ha }),
        true,
    )
}
