//! The restore drill, as a library: restores a backup of a container as a throwaway copy
//! into a scratch vmid, disconnects every network interface of the copy before its first
//! start, starts it, checks that it stays running with its uptime growing for the settle
//! time, then stops and destroys it — also when a step fails and when the caller asks it to
//! stop, unless `keep_on_failure`. `felhom-agent backup verify` ([`crate::cli`]) runs one
//! drill; `felhom-agent run` runs them on a [`schedule`] configured by the
//! `drill_*` keys.
//!
//! The copy's network is cut by a PUT on the scratch guest (`link_down=1` on each `netN`),
//! not in the restore request: with `unique=1`, pve-container's restore merge
//! (`LXC/Create.pm` `sanitize_and_merge_config`) replaces each interface with the
//! archive's own plus a new MAC and drops what the request asked for.
//!
//! Only a guest proven to be the drill's is ever destroyed: its restore task ended well, or
//! it carries [`DRILL_TAG`].

pub mod schedule;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use felhom_protocol::Vmid;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::cli::progress::{self, ProgressMode};
use crate::pve::{
    ConfigChange, ConfigKey, ContainerConfig, ContainerStatus, GuestState, PveClient, PveError,
    RestoreRequest, StorageId, Upid, VolumeId, WaitOptions,
};

/// The tag every scratch guest carries; `--cleanup` removes only guests with it.
pub const DRILL_TAG: &str = "felhom-drill";

/// The longest the drill waits for the restore task (also when a cleanup waits for one).
pub const RESTORE_TASK_LIMIT: Duration = Duration::from_secs(6 * 3600);
/// The longest the drill waits for a start, stop or destroy task.
pub const STEP_TASK_LIMIT: Duration = Duration::from_secs(15 * 60);

/// What one drill is asked to do.
#[derive(Debug, Clone)]
pub struct DrillArgs {
    /// The guest whose backup is checked.
    pub vmid: Vmid,
    /// This archive instead of the newest one.
    pub archive: Option<VolumeId>,
    /// Look for the newest archive only on this storage.
    pub storage: Option<StorageId>,
    /// The scratch guest's id.
    pub scratch: Vmid,
    /// Where the copy's root filesystem goes (default: where the guest's rootfs is).
    pub target_storage: Option<StorageId>,
    /// Leave the scratch guest in place when the drill fails.
    pub keep_on_failure: bool,
    /// Limit for restore, start and settle together.
    pub timeout: Duration,
    /// How long the copy must stay running.
    pub settle: Duration,
}

/// The vmids a drill may use as its scratch guest, `(first, last)` inclusive (config key
/// `drill_scratch_range`).
pub type ScratchRange = (u32, u32);

/// Whether `vmid` lies inside `range`.
pub fn in_range(range: ScratchRange, vmid: Vmid) -> bool {
    (range.0..=range.1).contains(&vmid.get())
}

/// Where the drill's step messages go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Voice {
    /// `drill: …` lines on stderr (the CLI).
    Stderr,
    /// Log events (the service: the journal).
    Log,
}

impl Voice {
    fn say(self, msg: &str) {
        match self {
            Voice::Stderr => eprintln!("drill: {msg}"),
            Voice::Log => tracing::info!(target: "felhom_agent::drill", "{msg}"),
        }
    }
}

/// A future that ends when the caller wants the drill stopped, naming why (`SIGTERM`, …).
pub type StopSignal = Pin<Box<dyn Future<Output = &'static str> + Send>>;

/// How a drill shows its progress and learns of its restore task.
pub struct DrillContext<'a> {
    /// Progress of each task wait (stderr).
    pub progress: ProgressMode,
    /// Where step messages go.
    pub voice: Voice,
    /// Called with the restore's task id as soon as Proxmox names it (the scheduler keeps
    /// it on disk, so that after a restart it can tell whether a guest is the drill's).
    pub on_restore_task: Option<&'a (dyn Fn(&Upid) + Send + Sync)>,
}

/// Why a drill did not run at all; nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum DrillError {
    /// The request is not allowed (scratch vmid outside the range, in use, …).
    #[error("{0}")]
    Refused(String),
    /// There is nothing to restore, or the archive cannot be used.
    #[error("{0}")]
    NoBackup(String),
    /// Asked to stop before the drill changed anything.
    #[error("stopped by {0} before the drill changed anything")]
    Stopped(&'static str),
    /// A Proxmox read failed.
    #[error(transparent)]
    Pve(#[from] PveError),
}

/// The failed step of a drill and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    /// `restore`, `disconnect`, `start`, `settle`, `timeout` or `interrupted`.
    pub step: String,
    /// What went wrong.
    pub reason: String,
}

/// What happened to the scratch guest after the drill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cleanup {
    /// The cleanup ran to its end (or nothing needed it).
    pub done: bool,
    /// Left in place on purpose (`keep_on_failure`).
    pub kept: bool,
    /// A guest was stopped and destroyed.
    pub destroyed: bool,
    /// Why the cleanup failed; the scratch guest may be left over.
    pub error: Option<String>,
}

/// The result of one drill (the CLI's `--json` document).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrillReport {
    /// Passed and cleaned up.
    pub ok: bool,
    /// The copy was restored, came up and stayed running.
    pub passed: bool,
    /// The guest whose backup was checked.
    pub vmid: u32,
    /// The scratch guest's vmid.
    pub scratch_vmid: u32,
    /// The archive restored.
    pub archive: String,
    /// Its creation time (Unix), when its storage lists it.
    pub archive_ctime: Option<i64>,
    /// Its age when the drill began, seconds.
    pub archive_age_seconds: Option<i64>,
    /// Where the copy's root filesystem went.
    pub target_storage: String,
    /// How long the restore task took.
    pub restore_seconds: Option<f64>,
    /// The `netN` keys set to `link_down=1` before the first start.
    pub interfaces_disconnected: Vec<String>,
    /// The boot check: `result` (`running`, `stopped`, `uptime-not-growing`,
    /// `not-started`) and the uptimes seen.
    pub boot: Value,
    /// The settle time asked for.
    pub settle_seconds: u64,
    /// The whole drill, cleanup included.
    pub total_seconds: f64,
    /// The failed step, if any.
    pub failure: Option<Failure>,
    /// The scratch guest's cleanup.
    pub cleanup: Cleanup,
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
) -> Result<Chosen, DrillError> {
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
    let mut unlisted: Option<PveError> = None;
    for s in &stores {
        let list = match pve.guest_backups(s, vmid).await {
            Ok(l) => l,
            Err(e) if storage.is_some() => return Err(DrillError::Pve(e)),
            Err(e) => {
                tracing::warn!(storage = %s, error = %e, "backup storage not listed; skipped");
                unlisted.get_or_insert(e);
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
    // None found, but a storage could not be listed: the newest may be there, so this is
    // not "no backup".
    if let (None, Some(e)) = (&best, unlisted) {
        return Err(DrillError::Pve(e));
    }
    let (ctime, volid) = best.ok_or_else(|| {
        DrillError::NoBackup(format!(
            "no backup of CT {vmid} found on {}",
            match storage {
                Some(s) => format!("storage {s}"),
                None => "any active backup storage".to_string(),
            }
        ))
    })?;
    let volid = VolumeId::new(&volid).map_err(|e| DrillError::NoBackup(e.to_string()))?;
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

/// Seconds since the epoch (0 if the clock is before it).
fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
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

/// Locks `m`, also after a panic elsewhere left it poisoned (the data stays usable).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
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
    ctx: &DrillContext<'_>,
) -> Result<(), PveError> {
    lock(shared).task = Some(upid.clone());
    let r = progress::wait(pve, upid, WaitOptions::with_timeout(limit), ctx.progress).await;
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
    ctx: &DrillContext<'_>,
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
    ctx.voice.say(&format!(
        "restoring {archive} into CT {scratch} on {target}"
    ));
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
    if let Some(note) = ctx.on_restore_task {
        note(&upid);
    }
    wait_task(pve, shared, &upid, RESTORE_TASK_LIMIT, ctx)
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
    ctx.voice.say(&format!(
        "CT {scratch}: {} interface(s) disconnected (link_down=1), onboot=0, tag {DRILL_TAG}",
        down.len()
    ));
    lock(shared).interfaces_disconnected = down;

    // 3. Start.
    let upid = pve.start(scratch).await.map_err(step_err("start"))?;
    lock(shared).started = true;
    wait_task(pve, shared, &upid, STEP_TASK_LIMIT, ctx)
        .await
        .map_err(step_err("start"))?;

    // 4. Settle: running at every poll, uptime growing.
    ctx.voice.say(&format!(
        "CT {scratch} started; checking that it stays running for {}s",
        args.settle.as_secs()
    ));
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
pub fn has_drill_tag(tags: Option<&str>) -> bool {
    tags.is_some_and(|t| t.split([';', ',', ' ']).any(|x| x == DRILL_TAG))
}

/// What the cleanup knows of the scratch guest's origin.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    /// A task still running (an interrupted restore or start): waited for first.
    pub in_flight: Option<Upid>,
    /// The drill's restore task, if Proxmox named one.
    pub restore_task: Option<Upid>,
    /// That restore ended well: the guest at the scratch vmid is the drill's copy.
    pub restored: bool,
}

/// Why a scratch guest was not removed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemoveError {
    /// A guest sits at the scratch vmid that is not proven to be the drill's: left in place.
    #[error("{0}")]
    NotProven(String),
    /// A Proxmox call or task failed; trying again later may work.
    #[error("{0}")]
    Failed(String),
}

/// Stops (if running) and destroys the scratch guest with purge; first waits for a task in
/// flight. Only a guest proven to be the drill's is destroyed: its restore ended well, or it
/// carries [`DRILL_TAG`]. A guest found at the scratch vmid after a restore that failed, or
/// whose outcome is unknown, and without the tag, may be another's (created between the
/// drill's check and its restore): it is left in place and named. Returns whether a guest
/// was destroyed.
pub async fn remove_scratch(
    pve: &PveClient,
    scratch: Vmid,
    origin: Origin,
    progress_mode: ProgressMode,
    voice: Voice,
) -> Result<bool, RemoveError> {
    let failed = |what: &str, e: PveError| RemoveError::Failed(format!("{what}: {e}"));
    let mut ours = origin.restored;
    if let Some(upid) = origin.in_flight {
        // An interrupted restore or start still holds the guest's lock: let it end.
        let done = progress::wait(
            pve,
            &upid,
            WaitOptions::with_timeout(RESTORE_TASK_LIMIT),
            progress_mode,
        )
        .await;
        let is_restore = origin.restore_task.as_ref() == Some(&upid);
        match done {
            Ok(_) => ours |= is_restore,
            // The task's end could not be learned (Proxmox unreachable, or still running
            // after the limit): neither proof nor disproof, so nothing is decided now.
            Err(e) if is_restore && is_transient(&e) => {
                return Err(RemoveError::Failed(format!(
                    "cannot tell whether the restore task {upid} ended well: {e}"
                )));
            }
            // It ended badly, or Proxmox does not know it: not a proof.
            Err(_) => {}
        }
    }
    let list = pve
        .containers()
        .await
        .map_err(|e| failed("list containers", e))?;
    let Some(ct) = list.into_iter().find(|c| c.vmid == scratch) else {
        return Ok(false);
    };
    if !ours && !has_drill_tag(ct.tags.as_deref()) {
        return Err(RemoveError::NotProven(format!(
            "CT {scratch} exists, but the drill's restore did not complete and it carries no {DRILL_TAG} tag: left in place, as it may not be the drill's copy; check it and remove it by hand"
        )));
    }
    let step = |what: &'static str, upid: Result<Upid, PveError>| async move {
        let upid = upid.map_err(|e| failed(what, e))?;
        progress::wait(
            pve,
            &upid,
            WaitOptions::with_timeout(STEP_TASK_LIMIT),
            progress_mode,
        )
        .await
        .map_err(|e| failed(what, e))
    };
    if ct.status == GuestState::Running {
        voice.say(&format!("stopping CT {scratch}"));
        step("stop", pve.stop(scratch).await).await?;
    }
    voice.say(&format!(
        "destroying CT {scratch} (purge, destroy-unreferenced-disks)"
    ));
    step("destroy", pve.destroy(scratch, true).await).await?;
    Ok(true)
}

/// Whether `e` leaves the answer open — Proxmox unreachable, slow, or not the server the
/// TLS settings expect — so that asking again later may give one.
pub fn is_transient(e: &PveError) -> bool {
    e.is_retryable_read()
        || matches!(
            e,
            PveError::Tls { .. } | PveError::Timeout { .. } | PveError::OutcomeUnknown { .. }
        )
}

/// Whether `ct` is a drill's scratch copy (it carries [`DRILL_TAG`]); such guests are left
/// out of the backup-age metrics and of `drill_guests = all`.
pub fn is_scratch_copy(ct: &ContainerStatus) -> bool {
    has_drill_tag(ct.tags.as_deref())
}

/// How the steps ended.
enum Ended {
    Done(Result<(), StepError>),
    Signal(&'static str),
    Timeout,
}

/// Checks that `args` may run: the scratch vmid differs from the guest, lies inside `range`
/// and is free; finds the archive and the target storage. Changes nothing.
async fn prepare(
    pve: &PveClient,
    args: &DrillArgs,
    range: ScratchRange,
) -> Result<(Chosen, StorageId), DrillError> {
    let scratch = args.scratch;
    if scratch == args.vmid {
        return Err(DrillError::Refused(format!(
            "--scratch-vmid {scratch} is the guest being checked; choose a free vmid in {}-{}",
            range.0, range.1
        )));
    }
    if !in_range(range, scratch) {
        return Err(DrillError::Refused(format!(
            "--scratch-vmid {scratch} is outside the scratch range {}-{} (config key drill_scratch_range)",
            range.0, range.1
        )));
    }
    let guests = pve.containers().await?;
    if guests.iter().any(|c| c.vmid == scratch) {
        return Err(DrillError::Refused(format!(
            "CT {scratch} exists; a drill restores only into a free vmid (leftovers of earlier drills: backup verify --cleanup)"
        )));
    }
    // This node's list does not show a VM or another node's guest: ask the cluster.
    if !pve.vmid_is_free(scratch).await? {
        return Err(DrillError::Refused(format!(
            "vmid {scratch} is in use elsewhere in the cluster (a VM, or a guest on another node); choose another scratch vmid"
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
                DrillError::Refused(format!(
                    "cannot tell where CT {}'s root filesystem lives; give --target-storage (drill_target_storage for the schedule)",
                    args.vmid
                ))
            })?
        }
    };
    Ok((chosen, target))
}

/// Runs one drill. Refusals and failed reads before anything was changed are a
/// [`DrillError`]; once the restore was asked for, the result is a [`DrillReport`] whatever
/// happened, with the scratch guest cleaned up (unless `keep_on_failure` and it failed).
/// When `stop` ends, the running step is abandoned (a task in flight is waited for) and the
/// cleanup runs; `stop` is not listened to during the cleanup, so it is not cut short.
pub async fn verify(
    pve: &PveClient,
    args: &DrillArgs,
    range: ScratchRange,
    ctx: &DrillContext<'_>,
    mut stop: StopSignal,
) -> Result<DrillReport, DrillError> {
    let total = Instant::now();
    let scratch = args.scratch;
    let (chosen, target) = tokio::select! {
        r = prepare(pve, args, range) => r?,
        name = &mut stop => return Err(DrillError::Stopped(name)),
    };
    let now = i64::try_from(now_secs()).unwrap_or(i64::MAX);
    let age = chosen.ctime.map(|t| now.saturating_sub(t).max(0));

    let shared: Shared = Arc::default();
    let ended = tokio::select! {
        r = tokio::time::timeout(args.timeout, steps(pve, args, &chosen.volid, &target, &shared, ctx)) => match r {
            Ok(r) => Ended::Done(r),
            Err(_) => Ended::Timeout,
        },
        name = &mut stop => Ended::Signal(name),
    };
    let failure = match ended {
        Ended::Done(Ok(())) => None,
        Ended::Done(Err(e)) => Some(Failure {
            step: e.step.into(),
            reason: e.reason,
        }),
        Ended::Timeout => Some(Failure {
            step: "timeout".into(),
            reason: format!(
                "the drill did not finish within the timeout of {}s",
                args.timeout.as_secs()
            ),
        }),
        Ended::Signal(name) => Some(Failure {
            step: "interrupted".into(),
            reason: format!("stopped by {name}"),
        }),
    };
    if let Some(f) = &failure {
        ctx.voice
            .say(&format!("FAILED at {}: {}", f.step, f.reason));
    }
    let passed = failure.is_none();
    let (origin, restore_started, restore_seconds, interfaces_disconnected, boot) = {
        let p = lock(&shared);
        (
            Origin {
                in_flight: p.task.clone(),
                restore_task: p.restore_task.clone(),
                restored: p.restored,
            },
            p.restore_started,
            p.restore_seconds,
            p.interfaces_disconnected.clone(),
            p.boot
                .clone()
                .unwrap_or_else(|| json!({ "result": "not-started" })),
        )
    };
    // Cleanup: always, unless asked to keep a failed copy.
    let keep = !passed && args.keep_on_failure;
    let cleanup = if keep {
        ctx.voice.say(&format!(
            "keep_on_failure: CT {scratch} is left in place for inspection"
        ));
        Cleanup {
            done: false,
            kept: true,
            destroyed: false,
            error: None,
        }
    } else if !restore_started {
        Cleanup {
            done: true,
            kept: false,
            destroyed: false,
            error: None,
        }
    } else {
        match remove_scratch(pve, scratch, origin, ctx.progress, ctx.voice).await {
            Ok(destroyed) => Cleanup {
                done: true,
                kept: false,
                destroyed,
                error: None,
            },
            Err(e) => {
                ctx.voice
                    .say(&format!("cleanup of CT {scratch} failed: {e}"));
                Cleanup {
                    done: false,
                    kept: false,
                    destroyed: false,
                    error: Some(e.to_string()),
                }
            }
        }
    };
    Ok(DrillReport {
        ok: passed && cleanup.error.is_none(),
        passed,
        vmid: args.vmid.get(),
        scratch_vmid: scratch.get(),
        archive: chosen.volid.as_str().to_string(),
        archive_ctime: chosen.ctime,
        archive_age_seconds: age,
        target_storage: target.as_str().to_string(),
        restore_seconds,
        interfaces_disconnected,
        boot,
        settle_seconds: args.settle.as_secs(),
        total_seconds: total.elapsed().as_secs_f64(),
        failure,
        cleanup,
    })
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
