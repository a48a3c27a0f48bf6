//! `backup verify`: the restore drill. Restores a backup of a container as a throwaway copy
//! into a scratch vmid, disconnects every network interface of the copy before its first
//! start, starts it, checks that it stays running with its uptime growing for the settle
//! time, then stops and destroys it — also when a step fails and on SIGTERM/SIGINT, unless
//! `--keep-on-failure`. `backup verify --cleanup` removes leftovers of earlier drills.
//!
//! The copy's network is cut by a PUT on the scratch guest (`link_down=1` on each `netN`),
//! not in the restore request: with `unique=1`, pve-container's restore merge
//! (`LXC/Create.pm` `sanitize_and_merge_config`) replaces each interface with the
//! archive's own plus a new MAC and drops what the request asked for.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use felhom_protocol::Vmid;
use serde_json::{Value, json};
use tokio::signal::unix::{SignalKind, signal};

use super::CliError;
use super::output::Outcome;
use super::progress::{self, ProgressMode};
use super::task_output::{LONG_TASK, SHORT_TASK};
use crate::pve::{
    ConfigChange, ConfigKey, ContainerConfig, GuestState, PveClient, PveError, RestoreRequest,
    StorageId, Upid, VolumeId, WaitOptions,
};

/// The tag every scratch guest carries; `--cleanup` removes only guests with it.
pub const DRILL_TAG: &str = "felhom-drill";

/// What `backup verify VMID` was asked to do.
#[derive(Debug, Clone)]
pub(super) struct DrillArgs {
    /// The guest whose backup is checked.
    pub vmid: Vmid,
    /// This archive instead of the newest one.
    pub archive: Option<VolumeId>,
    /// Look for the newest archive only on this storage.
    pub storage: Option<StorageId>,
    /// The scratch guest's id.
    pub scratch: Vmid,
    /// Where the copy's root filesystem goes.
    pub target_storage: Option<StorageId>,
    /// Leave the scratch guest in place when the drill fails.
    pub keep_on_failure: bool,
    /// Limit for restore, start and settle together.
    pub timeout: Duration,
    /// How long the copy must stay running.
    pub settle: Duration,
}

/// The scratch range from the configuration, `(first, last)` inclusive.
pub(super) type ScratchRange = (u32, u32);

fn usage(msg: String) -> CliError {
    CliError::Usage(msg)
}

fn in_range(range: ScratchRange, vmid: Vmid) -> bool {
    (range.0..=range.1).contains(&vmid.get())
}

/// The archive to restore and its creation time, when the storage lists it.
struct Chosen {
    volid: VolumeId,
    ctime: Option<i64>,
}

/// The newest backup of `vmid` on `storage`, or on every active storage with backup content.
async fn newest_archive(
    pve: &PveClient,
    vmid: Vmid,
    storage: Option<&StorageId>,
) -> Result<Chosen, CliError> {
    let stores: Vec<StorageId> = match storage {
        Some(s) => vec![s.clone()],
        None => pve
            .storages()
            .await?
            .into_iter()
            .filter(|s| s.active && s.content.split(',').any(|c| c.trim() == "backup"))
            .filter_map(|s| s.storage.parse().ok())
            .collect(),
    };
    let mut best: Option<(i64, String)> = None;
    for s in &stores {
        let list = match pve.guest_backups(s, vmid).await {
            Ok(l) => l,
            Err(e) if storage.is_some() => return Err(e.into()),
            Err(e) => {
                tracing::warn!(storage = %s, error = %e, "backup storage not listed; skipped");
                continue;
            }
        };
        for e in list {
            if e.vmid != Some(vmid) {
                continue;
            }
            let t = e.ctime.unwrap_or(0);
            if best.as_ref().is_none_or(|(bt, _)| t > *bt) {
                best = Some((t, e.volid.clone()));
            }
        }
    }
    let (ctime, volid) = best.ok_or_else(|| {
        CliError::Failed(format!(
            "no backup of CT {vmid} found on {}",
            match storage {
                Some(s) => format!("storage {s}"),
                None => "any active backup storage".to_string(),
            }
        ))
    })?;
    let volid = VolumeId::new(&volid).map_err(|e| CliError::Failed(e.to_string()))?;
    Ok(Chosen {
        volid,
        ctime: (ctime > 0).then_some(ctime),
    })
}

/// The listed ctime of a given archive, if its storage lists it.
async fn archive_ctime(pve: &PveClient, vmid: Vmid, volid: &VolumeId) -> Option<i64> {
    let (store, _) = volid.as_str().split_once(':')?;
    let store: StorageId = store.parse().ok()?;
    let list = pve.guest_backups(&store, vmid).await.ok()?;
    list.into_iter()
        .find(|e| e.volid == volid.as_str())
        .and_then(|e| e.ctime)
}

/// The storage of a config's `rootfs` (`local-lvm:vm-100-disk-0,size=8G` → `local-lvm`).
fn rootfs_storage(config: &ContainerConfig) -> Option<StorageId> {
    let rootfs = config.get("rootfs")?;
    let first = rootfs.split(',').next()?;
    let (store, _) = first.split_once(':')?;
    store.parse().ok()
}

/// A `netN` value with `link_down=1` (any earlier `link_down=` replaced).
fn with_link_down(value: &str) -> String {
    let mut opts: Vec<&str> = value
        .split(',')
        .filter(|o| !o.trim().starts_with("link_down=") && !o.trim().is_empty())
        .collect();
    opts.push("link_down=1");
    opts.join(",")
}

/// Whether a `netN` value has `link_down=1`.
fn link_is_down(value: &str) -> bool {
    value.split(',').any(|o| o.trim() == "link_down=1")
}

/// The `netN` keys of a config.
fn net_keys(config: &ContainerConfig) -> Vec<(ConfigKey, String, String)> {
    config
        .entries
        .iter()
        .filter_map(|(k, v)| match k.parse::<ConfigKey>() {
            Ok(key @ ConfigKey::Net(_)) => Some((key, k.clone(), v.clone())),
            _ => None,
        })
        .collect()
}

fn now_epoch() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// What the drill's steps found, filled in as they go (read after an interruption too).
#[derive(Debug, Default)]
struct Progress {
    /// The task being waited for (a cleanup waits for it to end first).
    task: Option<Upid>,
    /// The restore request was accepted: the scratch guest may exist.
    restore_started: bool,
    /// The restore's task, once Proxmox named it.
    restore_task: Option<Upid>,
    /// The restore task ended well: the scratch guest is the drill's own copy.
    restored: bool,
    restore_seconds: Option<f64>,
    interfaces_disconnected: Vec<String>,
    started: bool,
    boot: Option<Value>,
}

type Shared = Arc<Mutex<Progress>>;

fn lock(p: &Shared) -> std::sync::MutexGuard<'_, Progress> {
    p.lock().unwrap_or_else(|e| e.into_inner())
}

/// A failed step: which one and why.
struct StepError {
    step: &'static str,
    reason: String,
}

fn step_err(step: &'static str) -> impl Fn(PveError) -> StepError {
    move |e| StepError {
        step,
        reason: e.to_string(),
    }
}

/// Waits for `upid`, remembering it as the task in flight.
async fn wait_task(
    pve: &PveClient,
    shared: &Shared,
    upid: &Upid,
    limit: Duration,
    pm: ProgressMode,
) -> Result<(), PveError> {
    lock(shared).task = Some(upid.clone());
    let r = progress::wait(pve, upid, WaitOptions::with_timeout(limit), pm).await;
    lock(shared).task = None;
    r.map(|_| ())
}

/// Restore, disconnect, start, settle.
async fn steps(
    pve: &PveClient,
    args: &DrillArgs,
    archive: &VolumeId,
    target: &StorageId,
    shared: &Shared,
    pm: ProgressMode,
) -> Result<(), StepError> {
    let scratch = args.scratch;
    // 1. Restore as a copy with new MACs (unique=1); never started by the restore itself.
    let req = RestoreRequest {
        vmid: scratch,
        archive: archive.clone(),
        storage: target.clone(),
        unique: true,
        force: false,
        start: false,
        hostname: None,
    };
    eprintln!("drill: restoring {archive} into CT {scratch} on {target}");
    let t0 = Instant::now();
    let upid = match pve.restore(&req).await {
        Ok(u) => u,
        Err(e) => {
            // A 595/596 may have started the restore: the cleanup then looks for the copy.
            if matches!(e, PveError::OutcomeUnknown { .. }) {
                lock(shared).restore_started = true;
            }
            return Err(step_err("restore")(e));
        }
    };
    {
        let mut p = lock(shared);
        p.restore_started = true;
        p.restore_task = Some(upid.clone());
    }
    wait_task(pve, shared, &upid, LONG_TASK, pm)
        .await
        .map_err(step_err("restore"))?;
    {
        let mut p = lock(shared);
        p.restored = true;
        p.restore_seconds = Some(t0.elapsed().as_secs_f64());
    }

    // 2. Before the first start: every interface down, no start at boot, tag, description.
    let config = pve
        .container_config(scratch)
        .await
        .map_err(step_err("disconnect"))?;
    let nets = net_keys(&config);
    let mut change = ConfigChange::new();
    if !config.digest.is_empty() {
        change = change.digest(&config.digest).map_err(|e| StepError {
            step: "disconnect",
            reason: e.to_string(),
        })?;
    }
    let description = format!(
        "felhom restore drill of CT {} from {archive}; safe to remove (felhom-agent backup verify --cleanup)",
        args.vmid
    );
    let mut sets = vec![
        (ConfigKey::Onboot, "0".to_string()),
        (ConfigKey::Tags, DRILL_TAG.to_string()),
        (ConfigKey::Description, description),
    ];
    for (key, _, value) in &nets {
        sets.push((*key, with_link_down(value)));
    }
    for (key, value) in sets {
        change = change.set(key, value).map_err(|e| StepError {
            step: "disconnect",
            reason: e.to_string(),
        })?;
    }
    pve.set_config(scratch, &change)
        .await
        .map_err(step_err("disconnect"))?;
    // Read it back: never start a copy whose network is still connected.
    let after = pve
        .container_config(scratch)
        .await
        .map_err(step_err("disconnect"))?;
    let mut down = Vec::new();
    for (_, name, value) in net_keys(&after) {
        if !link_is_down(&value) {
            return Err(StepError {
                step: "disconnect",
                reason: format!(
                    "{name} of CT {scratch} is not link_down=1 after the change; not starting it"
                ),
            });
        }
        down.push(name);
    }
    eprintln!(
        "drill: CT {scratch}: {} interface(s) disconnected (link_down=1), onboot=0, tag {DRILL_TAG}",
        down.len()
    );
    lock(shared).interfaces_disconnected = down;

    // 3. Start.
    let upid = pve.start(scratch).await.map_err(step_err("start"))?;
    lock(shared).started = true;
    wait_task(pve, shared, &upid, SHORT_TASK, pm)
        .await
        .map_err(step_err("start"))?;

    // 4. Settle: running at every poll, uptime growing.
    eprintln!(
        "drill: CT {scratch} started; checking that it stays running for {}s",
        args.settle.as_secs()
    );
    let begin = Instant::now();
    let mut first_uptime = None;
    let mut last_uptime = None;
    let mut polls = 0u32;
    loop {
        let st = pve
            .container_status(scratch)
            .await
            .map_err(step_err("settle"))?;
        polls += 1;
        let elapsed = begin.elapsed().as_secs_f64();
        if st.status != GuestState::Running {
            let boot = json!({
                "result": "stopped",
                "after_seconds": elapsed,
                "uptime_first": first_uptime,
                "uptime_last": last_uptime,
                "polls": polls,
            });
            lock(shared).boot = Some(boot);
            return Err(StepError {
                step: "settle",
                reason: format!(
                    "CT {scratch} did not stay running: status {:?} {elapsed:.1}s after the start",
                    st.status
                ),
            });
        }
        if first_uptime.is_none() {
            first_uptime = st.uptime;
        }
        last_uptime = st.uptime;
        if begin.elapsed() >= args.settle {
            break;
        }
        let left = args.settle.saturating_sub(begin.elapsed());
        tokio::time::sleep(left.min(Duration::from_secs(1))).await;
    }
    let growing = match (first_uptime, last_uptime) {
        (Some(a), Some(b)) => b > a,
        _ => false,
    };
    let boot = json!({
        "result": if growing { "running" } else { "uptime-not-growing" },
        "settle_seconds": begin.elapsed().as_secs_f64(),
        "uptime_first": first_uptime,
        "uptime_last": last_uptime,
        "polls": polls,
    });
    lock(shared).boot = Some(boot);
    if !growing {
        return Err(StepError {
            step: "settle",
            reason: format!(
                "CT {scratch} reports status running but its uptime did not grow ({first_uptime:?} → {last_uptime:?})"
            ),
        });
    }
    Ok(())
}

/// Whether a container's tags (`;`-separated, as Proxmox lists them) carry [`DRILL_TAG`].
fn has_drill_tag(tags: Option<&str>) -> bool {
    tags.is_some_and(|t| t.split([';', ',', ' ']).any(|x| x == DRILL_TAG))
}

/// What the cleanup knows of the scratch guest's origin.
struct Origin {
    /// A task still running (an interrupted restore or start): waited for first.
    in_flight: Option<Upid>,
    /// The drill's restore task, if Proxmox named one.
    restore_task: Option<Upid>,
    /// That restore ended well: the guest at the scratch vmid is the drill's copy.
    restored: bool,
}

/// Stops (if running) and destroys the scratch guest with purge; first waits for a task in
/// flight. Only a guest proven to be the drill's is destroyed: its restore ended well, or it
/// carries [`DRILL_TAG`]. A guest found at the scratch vmid after a restore that failed, or
/// whose outcome is unknown, and without the tag, may be another's (created between the
/// drill's check and its restore): it is left in place and named. Returns whether a guest
/// was destroyed, or why it could not be.
async fn remove_scratch(
    pve: &PveClient,
    scratch: Vmid,
    origin: Origin,
    pm: ProgressMode,
) -> Result<bool, String> {
    let mut ours = origin.restored;
    if let Some(upid) = origin.in_flight {
        // An interrupted restore or start still holds the guest's lock: let it end.
        let done = progress::wait(pve, &upid, WaitOptions::with_timeout(LONG_TASK), pm).await;
        ours |= done.is_ok() && origin.restore_task.as_ref() == Some(&upid);
    }
    let list = pve.containers().await.map_err(|e| e.to_string())?;
    let Some(ct) = list.into_iter().find(|c| c.vmid == scratch) else {
        return Ok(false);
    };
    if !ours && !has_drill_tag(ct.tags.as_deref()) {
        return Err(format!(
            "CT {scratch} exists, but the drill's restore did not complete and it carries no {DRILL_TAG} tag: left in place, as it may not be the drill's copy; check it and remove it by hand"
        ));
    }
    if ct.status == GuestState::Running {
        eprintln!("drill: stopping CT {scratch}");
        let upid = pve.stop(scratch).await.map_err(|e| format!("stop: {e}"))?;
        progress::wait(pve, &upid, WaitOptions::with_timeout(SHORT_TASK), pm)
            .await
            .map_err(|e| format!("stop: {e}"))?;
    }
    eprintln!("drill: destroying CT {scratch} (purge, destroy-unreferenced-disks)");
    let upid = pve
        .destroy(scratch, true)
        .await
        .map_err(|e| format!("destroy: {e}"))?;
    progress::wait(pve, &upid, WaitOptions::with_timeout(SHORT_TASK), pm)
        .await
        .map_err(|e| format!("destroy: {e}"))?;
    Ok(true)
}

/// How the steps ended.
enum Ended {
    Done(Result<(), StepError>),
    Signal(&'static str),
    Timeout,
}

/// `felhom-agent backup verify VMID …`.
pub(super) async fn verify(
    pve: &PveClient,
    args: &DrillArgs,
    range: ScratchRange,
    pm: ProgressMode,
) -> Result<Outcome, CliError> {
    let total = Instant::now();
    let scratch = args.scratch;
    // Refusals: nothing is changed.
    if scratch == args.vmid {
        return Err(usage(format!(
            "--scratch-vmid {scratch} is the guest being checked; choose a free vmid in {}-{}",
            range.0, range.1
        )));
    }
    if !in_range(range, scratch) {
        return Err(usage(format!(
            "--scratch-vmid {scratch} is outside the scratch range {}-{} (config key drill_scratch_range)",
            range.0, range.1
        )));
    }
    let guests = pve.containers().await?;
    if guests.iter().any(|c| c.vmid == scratch) {
        return Err(usage(format!(
            "CT {scratch} exists; a drill restores only into a free vmid (leftovers of earlier drills: backup verify --cleanup)"
        )));
    }
    let chosen = match &args.archive {
        Some(a) => Chosen {
            volid: a.clone(),
            ctime: archive_ctime(pve, args.vmid, a).await,
        },
        None => newest_archive(pve, args.vmid, args.storage.as_ref()).await?,
    };
    let target = match &args.target_storage {
        Some(t) => t.clone(),
        None => {
            let cfg = pve.container_config(args.vmid).await.ok();
            cfg.as_ref().and_then(rootfs_storage).ok_or_else(|| {
                usage(format!(
                    "cannot tell where CT {}'s root filesystem lives; give --target-storage",
                    args.vmid
                ))
            })?
        }
    };
    let age = chosen.ctime.map(|t| now_epoch().saturating_sub(t).max(0));

    let mut term = signal(SignalKind::terminate())
        .map_err(|e| CliError::Failed(format!("cannot install the SIGTERM handler: {e}")))?;
    let mut int = signal(SignalKind::interrupt())
        .map_err(|e| CliError::Failed(format!("cannot install the SIGINT handler: {e}")))?;
    let shared: Shared = Arc::default();
    let ended = tokio::select! {
        r = tokio::time::timeout(args.timeout, steps(pve, args, &chosen.volid, &target, &shared, pm)) => match r {
            Ok(r) => Ended::Done(r),
            Err(_) => Ended::Timeout,
        },
        _ = term.recv() => Ended::Signal("SIGTERM"),
        _ = int.recv() => Ended::Signal("SIGINT"),
    };
    let failure = match ended {
        Ended::Done(Ok(())) => None,
        Ended::Done(Err(e)) => Some((e.step, e.reason)),
        Ended::Timeout => Some((
            "timeout",
            format!(
                "the drill did not finish within --timeout {}s",
                args.timeout.as_secs()
            ),
        )),
        Ended::Signal(name) => Some(("interrupted", format!("stopped by {name}"))),
    };
    if let Some((step, reason)) = &failure {
        eprintln!("drill: FAILED at {step}: {reason}");
    }
    let passed = failure.is_none();
    let (origin, restore_started, progress_doc) = {
        let p = lock(&shared);
        (
            Origin {
                in_flight: p.task.clone(),
                restore_task: p.restore_task.clone(),
                restored: p.restored,
            },
            p.restore_started,
            json!({
                "restore_seconds": p.restore_seconds,
                "interfaces_disconnected": p.interfaces_disconnected,
                "started": p.started,
                "boot": p.boot.clone().unwrap_or_else(|| json!({ "result": "not-started" })),
            }),
        )
    };
    // Cleanup: always, unless asked to keep a failed copy. Signals are no longer listened
    // for, so a second SIGTERM does not cut the cleanup short.
    let keep = !passed && args.keep_on_failure;
    let cleanup = if keep {
        eprintln!("drill: --keep-on-failure: CT {scratch} is left in place for inspection");
        json!({ "done": false, "kept": true, "destroyed": false, "error": null })
    } else if !restore_started {
        json!({ "done": true, "kept": false, "destroyed": false, "error": null })
    } else {
        match remove_scratch(pve, scratch, origin, pm).await {
            Ok(destroyed) => {
                json!({ "done": true, "kept": false, "destroyed": destroyed, "error": null })
            }
            Err(e) => {
                eprintln!("drill: cleanup of CT {scratch} failed: {e}");
                json!({ "done": false, "kept": false, "destroyed": false, "error": e })
            }
        }
    };
    let cleanup_failed = cleanup["error"].is_string();
    let total_seconds = total.elapsed().as_secs_f64();
    let doc = json!({
        "ok": passed && !cleanup_failed,
        "passed": passed,
        "vmid": args.vmid,
        "scratch_vmid": scratch,
        "archive": chosen.volid.as_str(),
        "archive_ctime": chosen.ctime,
        "archive_age_seconds": age,
        "target_storage": target.as_str(),
        "restore_seconds": progress_doc["restore_seconds"],
        "interfaces_disconnected": progress_doc["interfaces_disconnected"],
        "boot": progress_doc["boot"],
        "settle_seconds": args.settle.as_secs(),
        "total_seconds": total_seconds,
        "failure": failure.as_ref().map(|(step, reason)| json!({ "step": step, "reason": reason })),
        "cleanup": cleanup,
    });
    let mut human = String::new();
    let _ = writeln!(
        human,
        "restore drill of CT {}: {}",
        args.vmid,
        if passed { "PASSED" } else { "FAILED" }
    );
    let _ = writeln!(
        human,
        "archive: {}{}",
        chosen.volid,
        match age {
            Some(a) => format!(" (age {})", age_text(a)),
            None => " (age unknown: the storage does not list it)".into(),
        }
    );
    let _ = writeln!(human, "scratch: CT {scratch} on {target}");
    match doc["restore_seconds"].as_f64() {
        Some(s) => {
            let _ = writeln!(human, "restore: {s:.1}s");
        }
        None => {
            let _ = writeln!(human, "restore: not completed");
        }
    }
    let _ = writeln!(
        human,
        "boot: {}",
        doc["boot"]["result"].as_str().unwrap_or("unknown")
    );
    if let Some((step, reason)) = &failure {
        let _ = writeln!(human, "failed at {step}: {reason}");
    }
    let _ = writeln!(
        human,
        "cleanup: {}",
        if keep {
            format!("kept CT {scratch} (--keep-on-failure); remove it with backup verify --cleanup")
        } else if let Some(e) = doc["cleanup"]["error"].as_str() {
            format!("FAILED ({e}); CT {scratch} may be left over")
        } else if doc["cleanup"]["destroyed"] == true {
            format!("CT {scratch} stopped and destroyed")
        } else {
            "nothing to remove".to_string()
        }
    );
    let _ = writeln!(human, "total: {total_seconds:.1}s");
    Ok(Outcome::new(&doc, human).failed(!passed || cleanup_failed))
}

fn age_text(secs: i64) -> String {
    let h = secs / 3600;
    if h >= 48 {
        format!("{}d{}h", h / 24, h % 24)
    } else {
        format!("{h}h{:02}m", (secs % 3600) / 60)
    }
}

/// `felhom-agent backup verify --cleanup`: removes every container inside the scratch range
/// tagged [`DRILL_TAG`] (stopping it first). Others are never touched.
pub(super) async fn cleanup(
    pve: &PveClient,
    range: ScratchRange,
    pm: ProgressMode,
) -> Result<Outcome, CliError> {
    let guests = pve.containers().await?;
    let mut removed = Vec::new();
    let mut errors = Vec::new();
    let mut human = String::new();
    for ct in guests {
        if !has_drill_tag(ct.tags.as_deref()) || !in_range(range, ct.vmid) {
            continue;
        }
        let origin = Origin {
            in_flight: None,
            restore_task: None,
            restored: false,
        };
        match remove_scratch(pve, ct.vmid, origin, pm).await {
            Ok(_) => {
                let _ = writeln!(human, "removed CT {} (drill leftover)", ct.vmid);
                removed.push(ct.vmid.get());
            }
            Err(e) => {
                let _ = writeln!(human, "CT {}: cleanup failed: {e}", ct.vmid);
                errors.push(json!({ "vmid": ct.vmid.get(), "error": e }));
            }
        }
    }
    if removed.is_empty() && errors.is_empty() {
        let _ = writeln!(
            human,
            "no drill leftovers (tag {DRILL_TAG}) in {}-{}",
            range.0, range.1
        );
    }
    let failed = !errors.is_empty();
    Ok(Outcome::new(
        &json!({ "ok": !failed, "range": [range.0, range.1], "removed": removed, "errors": errors }),
        human,
    )
    .failed(failed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_down_is_added_once() {
        assert_eq!(
            with_link_down("name=eth0,bridge=vmbr0,hwaddr=BC:24:11:00:00:01,ip=dhcp"),
            "name=eth0,bridge=vmbr0,hwaddr=BC:24:11:00:00:01,ip=dhcp,link_down=1"
        );
        assert_eq!(
            with_link_down("name=eth0,link_down=0,bridge=vmbr0"),
            "name=eth0,bridge=vmbr0,link_down=1"
        );
        assert!(link_is_down(&with_link_down("name=eth0")));
        assert!(!link_is_down("name=eth0,link_down=0"));
    }

    #[test]
    fn scratch_range_is_inclusive() {
        let v = |n| Vmid::new(n).unwrap();
        assert!(in_range((9000, 9099), v(9000)));
        assert!(in_range((9000, 9099), v(9099)));
        assert!(!in_range((9000, 9099), v(9100)));
        assert!(!in_range((9000, 9099), v(8999)));
    }
}
