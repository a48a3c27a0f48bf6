//! `guests`, `guest VMID` and `snapshot create|rollback|delete`: the containers on this node,
//! one container's status and config, and its snapshots.

use felhom_protocol::Vmid;
use serde_json::json;

use super::output::{Outcome, Table, bytes, opt, uptime};
use super::progress::{self, ProgressMode};
use super::task_output::{SHORT_TASK, task_json, task_line};
use super::{CliError, SnapshotAction};
use crate::pve::{PveClient, WaitOptions};

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
    let (verb, args) = match action {
        SnapshotAction::Create(a) => ("create", a),
        SnapshotAction::Rollback(a) => ("rollback", a),
        SnapshotAction::Delete(a) => ("delete", a),
    };
    let upid = match action {
        SnapshotAction::Create(a) => pve.snapshot_create(a.vmid, &a.name, None).await?,
        SnapshotAction::Rollback(a) => pve.snapshot_rollback(a.vmid, &a.name, false).await?,
        SnapshotAction::Delete(a) => pve.snapshot_delete(a.vmid, &a.name).await?,
    };
    let done = progress::wait(pve, &upid, WaitOptions::with_timeout(SHORT_TASK), pm).await?;
    let what = format!("snapshot {verb} {} on CT {}", args.name, args.vmid);
    Ok(Outcome::new(
        &json!({ "ok": true, "action": verb, "vmid": args.vmid, "snapshot": args.name.as_str(), "task": task_json(&done) }),
        task_line(&what, &done),
    ))
}
