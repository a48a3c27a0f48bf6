//! Restore drills on a schedule, inside `felhom-agent run`.
//!
//! Off by default. With `drill_guests` set (a list of vmids, or `all`: every container on
//! the node that is not a template, not a drill's copy and not inside the scratch range),
//! the service drills one guest at a time, each at most once per `drill_interval_secs`
//! (default 7 days): the guest whose last drill is oldest (never drilled: first) goes next.
//! Each drill restores the guest's newest backup into the lowest free vmid of
//! `drill_scratch_range`, exactly as `backup verify` does, and always destroys the copy.
//!
//! The results are kept in `<state_dir>/drills.json` (so a restart neither forgets them nor
//! drills everything again) and go into `health.json` (`drills`) and the metrics
//! (`felhom_backup_drill_*`). A drill that fails before it restores anything (no backup, no
//! free scratch vmid) is a failed drill too.
//!
//! **Stopping.** When the service stops mid-drill, the drill's cleanup runs (bounded by
//! the service; see [`crate::service`]), and the interrupted drill is not counted as a
//! result. The drill in flight is written to `drills.json` before its restore starts,
//! with the restore's task id as soon as Proxmox names it; if the cleanup could not finish
//! before the service ended, the next start finishes it. It waits for that restore task
//! and destroys the copy only when the task ended well or the guest carries the drill's
//! tag. An untagged guest at the scratch vmid is left in place and named (`leftover` in
//! `health.json`, `felhom_backup_drill_leftover` in the metrics) until that vmid is free.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use felhom_protocol::Vmid;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::Instrument;

use super::{
    DrillArgs, DrillContext, DrillError, DrillReport, Failure, Origin, RemoveError, ScratchRange,
    StopSignal, Voice, in_range, is_scratch_copy, is_transient, lock, now_secs, remove_scratch,
};
use crate::cli::progress::ProgressMode;
use crate::pve::{ContainerStatus, PveClient, PveError, StorageId, Upid};

/// The results file's name inside the state directory.
pub const DRILLS_FILE: &str = "drills.json";

/// The largest results file read back (it holds one small record per guest).
pub const MAX_DRILLS_FILE_BYTES: u64 = 4 << 20;

/// How long the scheduler waits before it tries again after Proxmox could not be read.
pub const RETRY_AFTER: Duration = Duration::from_secs(60);

/// How often the list of guests to drill is read again while none is due (`all` finds new
/// containers this way).
pub const RECHECK_EVERY: Duration = Duration::from_secs(3600);

/// Default of `drill_interval_secs`: once a week per guest.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(7 * 24 * 3600);

/// Which guests `run` drills (config key `drill_guests`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum DrillGuests {
    /// None: the schedule is off (the default).
    #[default]
    Off,
    /// Every container on the node that is not a template, not a drill's copy and not
    /// inside the scratch range.
    All,
    /// These containers.
    List(Vec<Vmid>),
}

impl std::fmt::Display for DrillGuests {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DrillGuests::Off => f.write_str("off"),
            DrillGuests::All => f.write_str("all"),
            DrillGuests::List(l) => {
                for (i, v) in l.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{v}")?;
                }
                Ok(())
            }
        }
    }
}

impl DrillGuests {
    /// Parses `drill_guests`: empty or `off` (none), `all`, or vmids separated by commas or
    /// spaces.
    pub fn parse(s: &str) -> Result<DrillGuests, String> {
        let s = s.trim();
        match s.to_ascii_lowercase().as_str() {
            "" | "off" | "none" => return Ok(DrillGuests::Off),
            "all" => return Ok(DrillGuests::All),
            _ => {}
        }
        let mut list = Vec::new();
        for part in s.split([',', ' ']).filter(|p| !p.is_empty()) {
            let vmid = part
                .parse::<u32>()
                .ok()
                .and_then(|n| Vmid::new(n).ok())
                .ok_or_else(|| {
                    format!("expected `all`, `off` or vmids separated by commas, got {part:?}")
                })?;
            if !list.contains(&vmid) {
                list.push(vmid);
            }
        }
        list.sort();
        Ok(DrillGuests::List(list))
    }
}

/// The drill schedule of `run` (config keys `drill_*`).
#[derive(Debug, Clone, PartialEq)]
pub struct DrillSchedule {
    /// Which guests.
    pub guests: DrillGuests,
    /// Each guest at most this often.
    pub interval: Duration,
    /// How long each copy must stay running.
    pub settle: Duration,
    /// Limit for one drill's restore, start and settle together.
    pub timeout: Duration,
    /// Where copies go (default: where each guest's rootfs is).
    pub target_storage: Option<StorageId>,
}

impl Default for DrillSchedule {
    fn default() -> Self {
        DrillSchedule {
            guests: DrillGuests::Off,
            interval: DEFAULT_INTERVAL,
            settle: Duration::from_secs(30),
            timeout: Duration::from_secs(3600),
            target_storage: None,
        }
    }
}

impl DrillSchedule {
    /// Whether any guest is to be drilled.
    pub fn enabled(&self) -> bool {
        self.guests != DrillGuests::Off
    }
}

/// The last drill of one guest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrillRecord {
    /// The guest.
    pub vmid: u32,
    /// When the drill ended (Unix time).
    pub finished_at: u64,
    /// The copy was restored and stayed running.
    pub passed: bool,
    /// Passed, and the copy was removed.
    pub ok: bool,
    /// The whole drill, seconds.
    pub duration_seconds: f64,
    /// The scratch vmid used, if one was.
    pub scratch_vmid: Option<u32>,
    /// The archive restored, if one was found.
    pub archive: Option<String>,
    /// Its age when the drill began.
    pub archive_age_seconds: Option<i64>,
    /// The failed step and why.
    pub failure: Option<Failure>,
    /// Why the copy could not be removed (it may be left over).
    pub cleanup_error: Option<String>,
}

impl DrillRecord {
    fn from_report(r: &DrillReport, finished_at: u64) -> DrillRecord {
        DrillRecord {
            vmid: r.vmid,
            finished_at,
            passed: r.passed,
            ok: r.ok,
            duration_seconds: r.total_seconds,
            scratch_vmid: Some(r.scratch_vmid),
            archive: Some(r.archive.clone()),
            archive_age_seconds: r.archive_age_seconds,
            failure: r.failure.clone(),
            cleanup_error: r.cleanup.error.clone(),
        }
    }

    /// A drill that could not begin (nothing was changed).
    fn not_begun(vmid: Vmid, scratch: Option<Vmid>, reason: String, seconds: f64) -> DrillRecord {
        DrillRecord {
            vmid: vmid.get(),
            finished_at: now_secs(),
            passed: false,
            ok: false,
            duration_seconds: seconds,
            scratch_vmid: scratch.map(Vmid::get),
            archive: None,
            archive_age_seconds: None,
            failure: Some(Failure {
                step: "prepare".into(),
                reason,
            }),
            cleanup_error: None,
        }
    }
}

/// The drill under way, as written to disk before its restore starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InFlight {
    /// The guest being drilled.
    pub vmid: u32,
    /// Its copy's vmid.
    pub scratch_vmid: u32,
    /// When the drill began (Unix time).
    pub started_at: u64,
    /// The restore's task id, once Proxmox named it.
    pub restore_task: Option<String>,
}

/// A guest at a scratch vmid that an earlier drill may have left, not proven to be the
/// drill's copy and so not destroyed. Shown until that vmid is free again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Leftover {
    /// The vmid.
    pub scratch_vmid: u32,
    /// Why it was left in place, and what to do.
    pub reason: String,
}

/// What `drills.json` holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Saved {
    /// A guest left at a scratch vmid for the operator to check.
    #[serde(default)]
    leftover: Option<Leftover>,
    /// The last drill of each guest, by vmid.
    #[serde(default)]
    results: BTreeMap<u32, DrillRecord>,
    /// The drill under way (or one a stop cut short).
    #[serde(default)]
    in_flight: Option<InFlight>,
}

/// The next drill.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NextDrill {
    /// The guest.
    pub vmid: u32,
    /// When it is due (Unix time; now or earlier: as soon as the drill before it ends).
    pub due_at: u64,
}

/// The schedule's state, as `health.json` shows it (`drills`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DrillsStatus {
    /// `all`, or `list`.
    pub guests: &'static str,
    /// The guests last found to be drilled.
    pub targets: Vec<u32>,
    /// Seconds between two drills of one guest.
    pub interval_seconds: u64,
    /// The scratch range.
    pub scratch_range: [u32; 2],
    /// The drill under way.
    pub running: Option<InFlight>,
    /// The next drill, when known.
    pub next: Option<NextDrill>,
    /// The last drill of each guest drilled so far, by vmid.
    pub last: Vec<DrillRecord>,
    /// A guest left at a scratch vmid for the operator to check (it may not be a drill's).
    pub leftover: Option<Leftover>,
    /// What keeps the schedule from working as configured right now, if anything.
    pub problem: Option<String>,
}

/// Reads `drills.json`: `Ok(None)` when there is none, the size bounded while reading.
fn read_saved(path: &Path) -> Result<Option<Saved>, String> {
    use std::io::Read;
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let mut body = Vec::new();
    let n = file
        .take(MAX_DRILLS_FILE_BYTES + 1)
        .read_to_end(&mut body)
        .map_err(|e| e.to_string())?;
    if n as u64 > MAX_DRILLS_FILE_BYTES {
        return Err(format!("larger than {MAX_DRILLS_FILE_BYTES} bytes"));
    }
    serde_json::from_slice::<Saved>(&body)
        .map(Some)
        .map_err(|e| e.to_string())
}

/// Reads `drills.json` for the scheduler; a missing file is an empty record, an unreadable
/// one is set aside (renamed `drills.json.bad`) and logged, so a damaged file costs the
/// history, not the schedule.
fn load(path: &Path) -> Saved {
    match read_saved(path) {
        Ok(s) => s.unwrap_or_default(),
        Err(e) if path.exists() => {
            let aside = path.with_extension("json.bad");
            let _ = std::fs::rename(path, &aside);
            tracing::error!(file = %path.display(), moved_to = %aside.display(), error = %e, "the drill results are unreadable; set aside, starting without them");
            Saved::default()
        }
        Err(e) => {
            tracing::error!(file = %path.display(), error = %e, "cannot read the drill results; starting without them");
            Saved::default()
        }
    }
}

/// The scratch vmid of the drill the service has under way, from `<state_dir>/drills.json`,
/// when that drill began less than `fresh` ago (an older record is one a stopped service
/// left: its copy is a leftover like any other). `None` when there is none or the file
/// cannot be read (it is only read, never changed).
pub fn drill_under_way(state_dir: &Path, fresh: Duration) -> Option<u32> {
    let saved = read_saved(&state_dir.join(DRILLS_FILE)).ok()??;
    let inf = saved.in_flight?;
    (now_secs().saturating_sub(inf.started_at) < fresh.as_secs()).then_some(inf.scratch_vmid)
}

/// How many vmids of the scratch range one drill asks the cluster about, at most.
pub const MAX_SCRATCH_PROBES: usize = 16;

/// The lowest vmid of `range` that no container on the node uses and that the cluster
/// reports free (`/cluster/nextid`: no VM or other node's guest has it either); at most
/// [`MAX_SCRATCH_PROBES`] are asked about.
pub async fn free_scratch(
    pve: &PveClient,
    range: ScratchRange,
    guests: &[ContainerStatus],
) -> Result<Option<Vmid>, PveError> {
    let candidates = (range.0..=range.1)
        .filter_map(|n| Vmid::new(n).ok())
        .filter(|v| !guests.iter().any(|g| g.vmid == *v))
        .take(MAX_SCRATCH_PROBES);
    for v in candidates {
        if pve.vmid_is_free(v).await? {
            return Ok(Some(v));
        }
    }
    Ok(None)
}

/// The guests to drill, given the node's containers.
fn targets(plan: &DrillGuests, range: ScratchRange, guests: &[ContainerStatus]) -> Vec<Vmid> {
    match plan {
        DrillGuests::Off => Vec::new(),
        DrillGuests::List(l) => l.clone(),
        DrillGuests::All => {
            let mut v: Vec<Vmid> = guests
                .iter()
                .filter(|g| !g.template && !is_scratch_copy(g) && !in_range(range, g.vmid))
                .map(|g| g.vmid)
                .collect();
            v.sort();
            v
        }
    }
}

/// The guest due next and when: never drilled first, then the oldest last drill.
fn next_due(
    targets: &[Vmid],
    results: &BTreeMap<u32, DrillRecord>,
    interval: Duration,
) -> Option<NextDrill> {
    targets
        .iter()
        .map(|v| {
            let due = results
                .get(&v.get())
                .map_or(0, |r| r.finished_at.saturating_add(interval.as_secs()));
            NextDrill {
                vmid: v.get(),
                due_at: due,
            }
        })
        .min_by_key(|n| (n.due_at, n.vmid))
}

/// The running schedule: the task's handle and what it reports.
pub struct Running {
    /// The scheduler task.
    pub task: tokio::task::JoinHandle<()>,
    status: Arc<Mutex<DrillsStatus>>,
    stop: watch::Sender<bool>,
}

impl Running {
    /// A snapshot of the schedule's state for `health.json`.
    pub fn status(&self) -> DrillsStatus {
        lock(&self.status).clone()
    }

    /// Asks the scheduler to stop: a drill under way is abandoned and cleaned up.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }
}

/// Starts the schedule as a task. `state_dir` holds [`DRILLS_FILE`].
pub fn start(
    pve: PveClient,
    plan: DrillSchedule,
    range: ScratchRange,
    state_dir: &Path,
) -> Running {
    let file = state_dir.join(DRILLS_FILE);
    let saved = load(&file);
    let status = Arc::new(Mutex::new(DrillsStatus {
        guests: if plan.guests == DrillGuests::All {
            "all"
        } else {
            "list"
        },
        targets: match &plan.guests {
            DrillGuests::List(l) => l.iter().map(|v| v.get()).collect(),
            _ => Vec::new(),
        },
        interval_seconds: plan.interval.as_secs(),
        scratch_range: [range.0, range.1],
        running: saved.in_flight.clone(),
        next: None,
        last: saved.results.values().cloned().collect(),
        leftover: saved.leftover.clone(),
        problem: None,
    }));
    let (stop, stop_rx) = watch::channel(false);
    let scheduler = Scheduler {
        pve,
        plan,
        range,
        file,
        saved: Mutex::new(saved),
        status: status.clone(),
        stop: stop_rx,
    };
    Running {
        task: tokio::spawn(scheduler.run()),
        status,
        stop,
    }
}

struct Scheduler {
    pve: PveClient,
    plan: DrillSchedule,
    range: ScratchRange,
    file: PathBuf,
    saved: Mutex<Saved>,
    status: Arc<Mutex<DrillsStatus>>,
    stop: watch::Receiver<bool>,
}

impl Scheduler {
    fn stopped(&self) -> bool {
        *self.stop.borrow()
    }

    /// A future that ends when the service stops.
    fn stop_signal(&self) -> StopSignal {
        let mut rx = self.stop.clone();
        Box::pin(async move {
            let _ = rx.wait_for(|s| *s).await;
            "the service stopping"
        })
    }

    /// Sleeps for `d`; true when the service stops meanwhile.
    async fn pause(&self, d: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(d) => self.stopped(),
            _ = self.stop_signal() => true,
        }
    }

    /// Writes `drills.json` and mirrors it into the status.
    fn save(&self) {
        let saved = lock(&self.saved).clone();
        {
            let mut st = lock(&self.status);
            st.running = saved.in_flight.clone();
            st.last = saved.results.values().cloned().collect();
            st.leftover = saved.leftover.clone();
        }
        let body = match serde_json::to_vec_pretty(&saved) {
            Ok(mut b) => {
                b.push(b'\n');
                b
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot encode the drill results");
                return;
            }
        };
        if let Err(e) = crate::service::write_atomically(&self.file, &body, None) {
            tracing::error!(file = %self.file.display(), error = %e, "cannot write the drill results");
            lock(&self.status).problem = Some(format!("cannot write {}: {e}", self.file.display()));
        }
    }

    fn problem(&self, p: Option<String>) {
        lock(&self.status).problem = p;
    }

    async fn run(self) {
        tracing::info!(
            guests = %self.plan.guests,
            interval_secs = self.plan.interval.as_secs(),
            scratch_range = %format_args!("{}-{}", self.range.0, self.range.1),
            "restore drill schedule started"
        );
        loop {
            if self.stopped() {
                return;
            }
            // A drill a stop cut short: finish its cleanup first.
            let in_flight = lock(&self.saved).in_flight.clone();
            if let Some(inf) = in_flight {
                let finished = tokio::select! {
                    r = self.recover(&inf) => r,
                    _ = self.stop_signal() => return,
                };
                if !finished {
                    if self.pause(RETRY_AFTER).await {
                        return;
                    }
                    continue;
                }
            }
            let guests = match self.pve.containers().await {
                Ok(g) => g,
                Err(e) => {
                    tracing::warn!(error = %e, "drill schedule: cannot list the containers; trying again later");
                    self.problem(Some(format!("cannot list the containers: {e}")));
                    if self.pause(RETRY_AFTER).await {
                        return;
                    }
                    continue;
                }
            };
            let gone = lock(&self.saved)
                .leftover
                .as_ref()
                .is_some_and(|l| !guests.iter().any(|g| g.vmid.get() == l.scratch_vmid));
            if gone {
                lock(&self.saved).leftover = None;
                self.save();
            }
            let targets = targets(&self.plan.guests, self.range, &guests);
            // A guest no longer to be drilled (taken off the list, or gone with `all`) drops
            // its record: its series end, rather than alerting about drills it no longer gets.
            let dropped = {
                let mut saved = lock(&self.saved);
                let before = saved.results.len();
                saved
                    .results
                    .retain(|v, _| targets.iter().any(|t| t.get() == *v));
                saved.results.len() != before
            };
            if dropped {
                self.save();
            }
            let next = next_due(&targets, &lock(&self.saved).results, self.plan.interval);
            {
                let mut st = lock(&self.status);
                st.targets = targets.iter().map(|v| v.get()).collect();
                st.next = next.clone();
                st.problem = None;
            }
            let now = now_secs();
            match next {
                Some(n) if n.due_at <= now => {
                    let Ok(vmid) = Vmid::new(n.vmid) else {
                        continue;
                    };
                    if self.drill(vmid, &guests).await {
                        return;
                    }
                }
                Some(n) => {
                    let wait = Duration::from_secs(n.due_at - now).min(RECHECK_EVERY);
                    if self.pause(wait).await {
                        return;
                    }
                }
                None => {
                    if self.pause(RECHECK_EVERY).await {
                        return;
                    }
                }
            }
        }
    }

    /// Finishes the cleanup of a drill an earlier run left in flight. False when it should
    /// be tried again later (Proxmox could not be asked).
    async fn recover(&self, inf: &InFlight) -> bool {
        let Ok(scratch) = Vmid::new(inf.scratch_vmid) else {
            lock(&self.saved).in_flight = None;
            self.save();
            return true;
        };
        let restore_task = inf
            .restore_task
            .as_deref()
            .and_then(|t| t.parse::<Upid>().ok());
        tracing::info!(
            vmid = inf.vmid,
            scratch_vmid = inf.scratch_vmid,
            "drill schedule: finishing the cleanup of a drill an earlier run left in flight"
        );
        let origin = Origin {
            in_flight: restore_task.clone(),
            restore_task,
            restored: false,
        };
        match remove_scratch(&self.pve, scratch, origin, ProgressMode::Off, Voice::Log).await {
            Ok(destroyed) => {
                tracing::info!(
                    scratch_vmid = inf.scratch_vmid,
                    destroyed,
                    "drill schedule: earlier drill cleaned up"
                );
            }
            Err(RemoveError::NotProven(m)) => {
                tracing::error!(scratch_vmid = inf.scratch_vmid, "drill schedule: {m}");
                lock(&self.saved).leftover = Some(Leftover {
                    scratch_vmid: inf.scratch_vmid,
                    reason: m,
                });
            }
            Err(RemoveError::Failed(m)) => {
                tracing::warn!(scratch_vmid = inf.scratch_vmid, error = %m, "drill schedule: cleanup of an earlier drill failed; trying again later");
                self.problem(Some(format!(
                    "cleanup of CT {} from an earlier drill failed: {m}",
                    inf.scratch_vmid
                )));
                return false;
            }
        }
        lock(&self.saved).in_flight = None;
        self.save();
        true
    }

    /// A drill of `vmid` could not begin because Proxmox did not answer: no result is
    /// recorded (that would read as a failed backup for a whole interval); the problem is
    /// shown and the drill is tried again after [`RETRY_AFTER`]. True when the service is
    /// stopping.
    async fn unanswered(&self, vmid: Vmid, e: &PveError) -> bool {
        tracing::warn!(vmid = vmid.get(), error = %e, "restore drill could not begin: Proxmox did not answer; trying again later");
        self.problem(Some(format!(
            "the drill of CT {vmid} could not begin: {e}; trying again in {}s",
            RETRY_AFTER.as_secs()
        )));
        self.pause(RETRY_AFTER).await
    }

    /// Runs one drill of `vmid` and records it. True when the service is stopping.
    async fn drill(&self, vmid: Vmid, guests: &[ContainerStatus]) -> bool {
        let began = std::time::Instant::now();
        let record = |r: DrillRecord| {
            if r.passed {
                tracing::info!(
                    vmid = r.vmid,
                    duration_secs = r.duration_seconds,
                    "restore drill passed"
                );
            } else {
                let f = r.failure.as_ref();
                tracing::error!(
                    vmid = r.vmid,
                    step = f.map_or("", |f| f.step.as_str()),
                    reason = f.map_or("", |f| f.reason.as_str()),
                    "restore drill FAILED"
                );
            }
            let mut s = lock(&self.saved);
            s.results.insert(r.vmid, r);
            s.in_flight = None;
        };
        let scratch = match free_scratch(&self.pve, self.range, guests).await {
            Ok(Some(v)) => v,
            Ok(None) => {
                record(DrillRecord::not_begun(
                    vmid,
                    None,
                    format!(
                        "no free vmid in the scratch range {}-{} (config key drill_scratch_range; the first {MAX_SCRATCH_PROBES} not used on this node are taken in the cluster)",
                        self.range.0, self.range.1
                    ),
                    began.elapsed().as_secs_f64(),
                ));
                self.save();
                return false;
            }
            Err(e) => return self.unanswered(vmid, &e).await,
        };
        lock(&self.saved).in_flight = Some(InFlight {
            vmid: vmid.get(),
            scratch_vmid: scratch.get(),
            started_at: now_secs(),
            restore_task: None,
        });
        self.save();
        tracing::info!(
            vmid = vmid.get(),
            scratch_vmid = scratch.get(),
            "restore drill starting"
        );
        let args = DrillArgs {
            vmid,
            archive: None,
            storage: None,
            scratch,
            target_storage: self.plan.target_storage.clone(),
            keep_on_failure: false,
            timeout: self.plan.timeout,
            settle: self.plan.settle,
        };
        let note = |upid: &Upid| {
            if let Some(inf) = lock(&self.saved).in_flight.as_mut() {
                inf.restore_task = Some(upid.as_str().to_string());
            }
            self.save();
        };
        let ctx = DrillContext {
            progress: ProgressMode::Off,
            voice: Voice::Log,
            on_restore_task: Some(&note),
        };
        // The drill's own log lines carry the guest and the copy as fields.
        let span = tracing::info_span!("drill", vmid = vmid.get(), scratch_vmid = scratch.get());
        let result = super::verify(&self.pve, &args, self.range, &ctx, self.stop_signal())
            .instrument(span)
            .await;
        let stopping = self.stopped();
        match result {
            Ok(report) if stopping && !report.passed => {
                // Cut short by the stop: not a result. A copy the cleanup could not remove
                // stays in flight for the next start.
                if report.cleanup.done {
                    lock(&self.saved).in_flight = None;
                }
            }
            Ok(report) => record(DrillRecord::from_report(&report, now_secs())),
            Err(DrillError::Stopped(_)) => lock(&self.saved).in_flight = None,
            // Proxmox did not answer a read before anything changed: no result; again soon.
            Err(DrillError::Pve(e)) if is_transient(&e) => {
                lock(&self.saved).in_flight = None;
                self.save();
                return self.unanswered(vmid, &e).await;
            }
            Err(e) => record(DrillRecord::not_begun(
                vmid,
                Some(scratch),
                e.to_string(),
                began.elapsed().as_secs_f64(),
            )),
        }
        self.save();
        stopping
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(n: u32) -> Vmid {
        Vmid::new(n).unwrap()
    }

    fn record(vmid: u32, finished_at: u64) -> DrillRecord {
        DrillRecord {
            vmid,
            finished_at,
            passed: true,
            ok: true,
            duration_seconds: 1.0,
            scratch_vmid: Some(9000),
            archive: None,
            archive_age_seconds: None,
            failure: None,
            cleanup_error: None,
        }
    }

    #[test]
    fn drill_guests_parse() {
        assert_eq!(DrillGuests::parse("").unwrap(), DrillGuests::Off);
        assert_eq!(DrillGuests::parse(" OFF ").unwrap(), DrillGuests::Off);
        assert_eq!(DrillGuests::parse("all").unwrap(), DrillGuests::All);
        assert_eq!(
            DrillGuests::parse("102, 101 102").unwrap(),
            DrillGuests::List(vec![v(101), v(102)])
        );
        assert_eq!(
            DrillGuests::List(vec![v(101), v(102)]).to_string(),
            "101,102"
        );
        assert_eq!(DrillGuests::All.to_string(), "all");
        for bad in ["101,abc", "99", "-1", "101;102"] {
            assert!(DrillGuests::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_never_drilled_guest_goes_first_then_the_oldest() {
        let interval = Duration::from_secs(100);
        let mut results = BTreeMap::new();
        results.insert(101, record(101, 1_000));
        results.insert(102, record(102, 500));
        let n = next_due(&[v(101), v(102), v(103)], &results, interval).unwrap();
        assert_eq!((n.vmid, n.due_at), (103, 0));
        let n = next_due(&[v(101), v(102)], &results, interval).unwrap();
        assert_eq!((n.vmid, n.due_at), (102, 600));
        assert_eq!(next_due(&[], &results, interval), None);
    }

    #[test]
    fn the_results_file_survives_a_round_trip_and_a_bad_one_is_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DRILLS_FILE);
        assert_eq!(load(&path), Saved::default());
        let mut saved = Saved::default();
        saved.results.insert(101, record(101, 5));
        saved.in_flight = Some(InFlight {
            vmid: 101,
            scratch_vmid: 9000,
            started_at: 4,
            restore_task: None,
        });
        std::fs::write(&path, serde_json::to_vec(&saved).unwrap()).unwrap();
        assert_eq!(load(&path), saved);
        std::fs::write(&path, b"{not json").unwrap();
        assert_eq!(load(&path), Saved::default());
        assert!(!path.exists());
        assert!(dir.path().join("drills.json.bad").exists());
    }
}
