//! `guests`, `guest VMID` and `snapshot create|rollback|delete`: the containers on this node,
//! one container's status and config, and its snapshots.

use std::time::Duration;

use felhom_protocol::Vmid;
use serde_json::json;

use super::output::{Outcome, Table, bytes, opt, uptime};
use super::progress::{self, ProgressMode};
use super::task_output::{SHORT_TASK, task_json, task_line};
use super::{CliError, RollbackArgs, SnapshotAction};
use crate::pve::{GuestState, PveClient, WaitOptions};

/// `felhom-agent guests`: the containers on this node.
pub(super) async fn guests(pve: &PveClient) -> Result<Outcome, CliError> {
    let list = pve.containers().await?;
    let mut t = Table::new(&["VMID", "STATUS", "NAME", "MEMORY", "UPTIME", "LOCK"]);
    for c in &list {
        t.row(vec![
            c.vmid.to_string(),
            format!("{:?}", c.status).to_lowercase(),
            opt(c.name.as_deref()),
            match (c.mem, c.maxmem) {
                (Some(m), Some(x)) => format!("{} / {}", bytes(m), bytes(x)),
                (_, Some(x)) => bytes(x),
                _ => "-".into(),
            },
            opt(c.uptime.filter(|u| *u > 0).map(uptime)),
            opt(c.lock.as_deref()),
        ]);
    }
    Ok(Outcome::new(&list, t.render("no containers")))
}

/// The longest config value `guest` shows on a terminal (`--json` has it whole).
const GUEST_VALUE_MAX: usize = 1024;

/// `felhom-agent guest VMID`: status and config, raw `lxc.*` lines included.
pub(super) async fn guest(pve: &PveClient, vmid: Vmid) -> Result<Outcome, CliError> {
    let (status, config) = tokio::join!(pve.container_status(vmid), pve.container_config(vmid));
    let (status, config) = (status?, config?);
    // Every key and value comes from the container's config, which its owner writes (a
    // description can hold escape sequences and line breaks): cleaned before the terminal.
    let clean = |s: &str| crate::pve::error::clean_text(s, GUEST_VALUE_MAX);
    let mut human = format!(
        "CT {vmid}: {} ({})\n",
        format!("{:?}", status.status).to_lowercase(),
        clean(&opt(status.name.as_deref()))
    );
    let mut t = Table::new(&["KEY", "VALUE"]);
    for (k, v) in config
        .entries
        .iter()
        .chain(config.lxc.iter().map(|(k, v)| (k, v)))
    {
        t.row(vec![clean(k), clean(v)]);
    }
    human.push_str(&t.render("(empty config)"));
    Ok(Outcome::new(
        &json!({ "status": status, "config": config }),
        human,
    ))
}

/// `felhom-agent snapshot create|rollback|delete VMID NAME`: starts the task and waits for it.
pub(super) async fn snapshot(
    pve: &PveClient,
    action: &SnapshotAction,
    pm: ProgressMode,
) -> Result<Outcome, CliError> {
    let (verb, args, upid) = match action {
        SnapshotAction::Create(a) => (
            "create",
            a,
            pve.snapshot_create(a.vmid, &a.name, None).await?,
        ),
        SnapshotAction::Delete(a) => ("delete", a, pve.snapshot_delete(a.vmid, &a.name).await?),
        SnapshotAction::Rollback(a) => return rollback(pve, a, pm).await,
    };
    let done = progress::wait(pve, &upid, WaitOptions::with_timeout(SHORT_TASK), pm).await?;
    let what = format!("snapshot {verb} {} on CT {}", args.name, args.vmid);
    Ok(Outcome::new(
        &json!({ "ok": true, "action": verb, "vmid": args.vmid, "snapshot": args.name.as_str(), "task": task_json(&done) }),
        task_line(&what, &done),
    ))
}

/// How long `snapshot rollback --start` waits for the container to be running after the
/// rollback task: the start is a task of its own that the rollback worker begins at its end
/// (pve-container `src/PVE/API2/LXC/Snapshot.pm`, `rollback`: `vm_start` when `start`).
const ROLLBACK_START_WAIT: Duration = Duration::from_secs(60);

/// `snapshot rollback`: Proxmox stops a running container for the rollback and starts it
/// again only with `start=1` (`--start`). The report says the state the container is in
/// afterwards, read from `status/current`, and whether it was running before.
async fn rollback(
    pve: &PveClient,
    a: &RollbackArgs,
    pm: ProgressMode,
) -> Result<Outcome, CliError> {
    let vmid = a.target.vmid;
    let before = pve.container_status(vmid).await.ok().map(|s| s.status);
    let upid = pve.snapshot_rollback(vmid, &a.target.name, a.start).await?;
    let done = progress::wait(pve, &upid, WaitOptions::with_timeout(SHORT_TASK), pm).await?;
    let deadline = tokio::time::Instant::now() + ROLLBACK_START_WAIT;
    let after = loop {
        let now = pve.container_status(vmid).await.ok().map(|s| s.status);
        if !a.start || now == Some(GuestState::Running) || tokio::time::Instant::now() >= deadline {
            break now;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let state_name = |s: Option<GuestState>| match s {
        Some(GuestState::Running) => "running",
        Some(GuestState::Stopped) => "stopped",
        _ => "unknown",
    };
    let was_running = before == Some(GuestState::Running);
    let mut human = task_line(
        &format!("snapshot rollback {} on CT {vmid}", a.target.name),
        &done,
    );
    let failed = a.start && after != Some(GuestState::Running);
    match after {
        Some(GuestState::Running) if a.start => {
            human.push_str(&format!("CT {vmid} is running (started after the rollback)\n"));
        }
        Some(GuestState::Running) => human.push_str(&format!("CT {vmid} is running\n")),
        Some(GuestState::Stopped) if a.start => human.push_str(&format!(
            "CT {vmid} is stopped: the start after the rollback did not bring it up within {} s (see `felhom-agent tasks list --errors`)\n",
            ROLLBACK_START_WAIT.as_secs()
        )),
        Some(GuestState::Stopped) if was_running => human.push_str(&format!(
            "CT {vmid} is now stopped: Proxmox stopped it for the rollback (start it with `felhom-agent start {vmid}`, or roll back with --start)\n"
        )),
        Some(GuestState::Stopped) => human.push_str(&format!("CT {vmid} is stopped\n")),
        _ => human.push_str(&format!(
            "CT {vmid}'s state after the rollback is unknown (status/current could not be read or named no known state)\n"
        )),
    }
    Ok(Outcome::new(
        &json!({
            "ok": !failed, "action": "rollback", "vmid": vmid,
            "snapshot": a.target.name.as_str(), "task": task_json(&done),
            "start": a.start, "was": state_name(before), "state": state_name(after),
        }),
        human,
    )
    .failed(failed))
}
