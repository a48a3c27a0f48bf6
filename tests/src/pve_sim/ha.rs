//! HA-managed containers: `status/current` reports `ha.managed = 1` with the requested
//! state, and start/stop/shutdown answer with a `hastart`/`hastop` task that only queues
//! the request ("Requesting HA start for CT N"); the node's LRM then runs the real
//! `vzstart`/`vzstop` task, which takes longer (here: four task durations).

use serde_json::{Value, json};

use super::api::ApiResult;
use super::state::{Effect, Inner};

/// How many task durations the LRM's task takes after the HA request.
const LRM_FACTOR: u32 = 4;

/// The `ha` object of `status/current`.
pub(crate) fn ha_object(inner: &Inner, vmid: u32) -> Value {
    match inner.ha.get(&vmid) {
        Some(state) => json!({"managed": 1, "state": state, "group": "felhom"}),
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
    inner.ha.insert(vmid, state.to_string());
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
    if running != (action == "start") {
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
