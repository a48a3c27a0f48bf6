//! HA-managed containers: `status/current` reports `ha.managed = 1` with the requested
//! state, and start/stop/shutdown answer with a `hastart`/`hastop` task that only queues
//! the request ("Requesting HA start for CT N"); the node's LRM then runs the real
//! `vzstart`/`vzstop` task, which takes longer (here: four task durations).

use serde_json::{Value, json};

use super::shared::ApiResult;
use super::state::{Effect, Inner};

/// How many task durations the LRM's task takes after the HA request.
const LRM_FACTOR: u32 = 4;

/// The `ha` object of `status/current`: pve-ha-manager `HA/Config.pm`
/// `get_service_status` gives only `managed` and, when managed, `state` — the CRM's
/// current service state from the manager status (`started`, `request_stop`, `stopped`,
/// …), not the requested state; there is no `group` field.
pub(crate) fn ha_object(inner: &Inner, vmid: u32) -> Value {
    let running = inner.containers.get(&vmid).is_some_and(|c| c.running);
    match inner.ha.get(&vmid).map(String::as_str) {
        Some("stopped") if running => json!({"managed": 1, "state": "request_stop"}),
        Some(state) => json!({"managed": 1, "state": state}),
        None => json!({"managed": 0}),
    }
}

/// Start/stop/shutdown of an HA-managed container; `None` when it is not managed.
pub(crate) fn power(inner: &mut Inner, vmid: u32, action: &str) -> Option<ApiResult> {
    if !inner.ha.contains_key(&vmid) {
        return None;
    }
    let (ha_kind, state, lrm_kind, effect, verb) = match action {
        "start" => (
            "hastart",
            "started",
            "vzstart",
            Effect::Start(vmid),
            "start",
        ),
        "stop" => ("hastop", "stopped", "vzstop", Effect::Stop(vmid), "stop"),
        "shutdown" => (
            "hastop",
            "stopped",
            "vzshutdown",
            Effect::Stop(vmid),
            "stop",
        ),
        _ => return None,
    };
    // A service in the CRM's `error` state is not acted on until an admin clears it
    // (pve-ha-manager `HA/Manager.pm` `next_state_error`): the request is queued, nothing runs.
    let in_error = inner.ha.get(&vmid).is_some_and(|s| s == "error");
    if !in_error {
        inner.ha.insert(vmid, state.to_string());
    }
    let id = vmid.to_string();
    let upid = inner.start_task(
        ha_kind,
        &id,
        Vec::new(),
        vec![format!("Requesting HA {verb} for CT {vmid}")],
        None,
        None,
        None,
    );
    let running = inner.containers.get(&vmid).is_some_and(|c| c.running);
    if running != (action == "start") && !in_error {
        inner.start_task(
            lrm_kind,
            &id,
            Vec::new(),
            Vec::new(),
            Some(effect),
            None,
            None,
        );
        if let Some(t) = inner.tasks.last_mut() {
            t.duration *= LRM_FACTOR;
        }
    }
    Some(Ok(json!(upid).into()))
}
