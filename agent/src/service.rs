//! `felhom-agent run`: the systemd service (Type=notify).
//!
//! Every `interval_secs` it collects the read-only [health report](crate::report), logs a
//! one-line summary, and writes the report atomically to `<state_dir>/health.json` (temp
//! file, fsync, rename, fsync of the directory). It tells systemd `READY=1` as soon as the
//! state directory and the signal handlers are set up (before the first cycle, which may be
//! slow on a host with many or slow disks), and `STATUS=…` after each cycle. After each
//! cycle it also writes the [Prometheus metrics](crate::metrics) atomically to
//! `metrics_file` (default `<state_dir>/felhom-agent.prom`). It lets go of
//! the helper's connection after each cycle, so the socket-activated helper can reach its
//! idle exit.
//!
//! **Watchdog:** when systemd sets `WATCHDOG_USEC`, a separate task pings `WATCHDOG=1` at
//! half that period — but only while the service makes progress: the last cycle must have
//! finished (or the service started) within `2 × interval + MAX_CYCLE_TIME` (see
//! [`watchdog_allows`]). A cycle that hangs longer stops the pings, and systemd restarts the
//! service; a merely slow cycle does not trip the watchdog. Proxmox or the helper being away
//! only makes the report degraded. SIGTERM or SIGINT ends the loop promptly — also in the
//! middle of a cycle or the sleep — and the process exits 0.
//!
//! **Restore drills:** with `drill_guests` set, a [schedule](crate::drill::schedule) runs
//! beside the cycles as its own task; each cycle puts its state into `health.json`
//! (`drills`) and the metrics. On SIGTERM a drill under way is abandoned and its copy
//! destroyed; the service waits up to [`DRILL_STOP_GRACE`] for that (the unit's
//! `TimeoutStopSec=` is longer), and what is not finished by then the next start finishes.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sd_notify::NotifyState;
use tokio::signal::unix::{SignalKind, signal};

use crate::config::AgentConfig;
use crate::helper_client::HelperClient;
use crate::metrics::CycleInfo;
use crate::pve::PveClient;
use crate::report::{self, HealthReport};

/// The report's file name inside the state directory.
pub const HEALTH_FILE: &str = "health.json";

/// Mode of the metrics file: world-readable, so node_exporter (another user) can read it
/// through the state directory's search bit (`StateDirectoryMode=0751`). `health.json`
/// keeps the service's umask (0600).
pub const METRICS_MODE: u32 = 0o644;

/// The longest a collection cycle is expected to take (a SMART read of each disk, bounded
/// by the helper's deadlines, plus the Proxmox reads). With the sleep between cycles, the
/// watchdog keeps being pinged while the last cycle finished within
/// `2 × interval + MAX_CYCLE_TIME`.
pub const MAX_CYCLE_TIME: Duration = Duration::from_secs(10 * 60);

/// How long a stopping service waits for the cleanup of a drill under way.
pub const DRILL_STOP_GRACE: Duration = Duration::from_secs(20);

/// Whether the watchdog may be pinged when the last cycle finished (or the service started)
/// `since_progress` ago: the service is making progress unless a cycle has hung for longer
/// than `2 × interval + MAX_CYCLE_TIME`.
pub fn watchdog_allows(since_progress: Duration, interval: Duration) -> bool {
    since_progress <= interval.saturating_mul(2).saturating_add(MAX_CYCLE_TIME)
}

/// Why the service could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The state directory could not be created.
    #[error("cannot create state directory {path}: {source}")]
    StateDir {
        /// Directory.
        path: PathBuf,
        /// I/O error.
        source: std::io::Error,
    },
    /// A signal handler could not be installed.
    #[error("cannot install the {signal} handler: {source}")]
    Signal {
        /// Which signal.
        signal: &'static str,
        /// I/O error.
        source: std::io::Error,
    },
}

/// Writes `report` to `dir/health.json` atomically: readers see the old or the new file,
/// never a partial one.
pub fn write_report(dir: &Path, report: &HealthReport) -> std::io::Result<PathBuf> {
    let target = dir.join(HEALTH_FILE);
    let mut body = serde_json::to_vec_pretty(report).map_err(std::io::Error::other)?;
    body.push(b'\n');
    write_atomically(&target, &body, None)?;
    Ok(target)
}

/// Writes `body` to `target` through a temp file in the same directory (fsync, rename,
/// fsync of the directory): readers such as node_exporter's textfile collector see the old
/// or the new file, never a partial one. With `mode`, the file gets exactly that mode
/// (regardless of the umask); without, the umask decides.
pub fn write_atomically(target: &Path, body: &[u8], mode: Option<u32>) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = target
        .file_name()
        .ok_or_else(|| std::io::Error::other(format!("{} is not a file", target.display())))?;
    // A dot name: the textfile collector reads only *.prom, so it never sees the temp file.
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        if let Some(mode) = mode {
            f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        }
        f.write_all(body)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, target)?;
        // Make the rename itself durable.
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn notify(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "sd_notify failed");
    }
}

/// Runs the service loop until SIGTERM or SIGINT.
pub async fn run(
    config: &AgentConfig,
    pve: PveClient,
    helper: HelperClient,
) -> Result<(), ServiceError> {
    let dir = config.state_dir.clone();
    std::fs::create_dir_all(&dir).map_err(|source| ServiceError::StateDir {
        path: dir.clone(),
        source,
    })?;
    let mut term = signal(SignalKind::terminate()).map_err(|source| ServiceError::Signal {
        signal: "SIGTERM",
        source,
    })?;
    let mut int = signal(SignalKind::interrupt()).map_err(|source| ServiceError::Signal {
        signal: "SIGINT",
        source,
    })?;

    let interval = config.interval;
    // Milliseconds since `started` at which the last cycle finished (0: the start). The
    // watchdog task pings only while this is recent enough, so a hung cycle is caught.
    let started = Instant::now();
    let progress_ms = Arc::new(AtomicU64::new(0));
    let elapsed_ms = move || u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let watchdog = sd_notify::watchdog_enabled().map(|usec| {
        let every = (usec / 2).max(Duration::from_millis(100));
        tracing::info!(?every, "systemd watchdog enabled");
        let progress_ms = progress_ms.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            let mut withheld = false;
            loop {
                tick.tick().await;
                let since = Duration::from_millis(
                    elapsed_ms().saturating_sub(progress_ms.load(Ordering::Relaxed)),
                );
                if watchdog_allows(since, interval) {
                    notify(&[NotifyState::Watchdog]);
                    withheld = false;
                } else if !withheld {
                    tracing::error!(
                        since_last_cycle_secs = since.as_secs(),
                        "a collection cycle seems hung; no longer pinging the systemd watchdog"
                    );
                    withheld = true;
                }
            }
        })
    });

    tracing::info!(
        interval_secs = interval.as_secs(),
        state = %dir.join(HEALTH_FILE).display(),
        helper = %helper.socket().display(),
        "felhom-agent service started"
    );
    // Ready as soon as the service is set up: the first cycle may take longer than systemd's
    // start timeout.
    notify(&[
        NotifyState::Ready,
        NotifyState::Status("started; first cycle running"),
    ]);
    let drills = config.drill.enabled().then(|| {
        crate::drill::schedule::start(
            pve.clone(),
            config.drill.clone(),
            config.drill_scratch_range,
            &dir,
        )
    });
    let mut cycle: u64 = 0;
    let mut last_success: Option<u64> = None;
    let signal_name = loop {
        cycle += 1;
        let cycle_started = Instant::now();
        let collected = tokio::select! {
            r = report::collect(Ok(&pve), &helper) => Some(r),
            _ = term.recv() => None,
            _ = int.recv() => None,
        };
        // Let go of the helper between cycles: it is socket-activated and exits when no
        // client is connected for its idle timeout; the next cycle activates it again.
        helper.disconnect().await;
        let Some(mut report) = collected else {
            break "signal during collection";
        };
        report.drills = drills.as_ref().map(|d| d.status());
        let line = report.one_line();
        match write_report(&dir, &report) {
            Ok(path) => {
                if report.is_degraded() {
                    tracing::warn!(cycle, file = %path.display(), "{line}");
                } else {
                    tracing::info!(cycle, file = %path.display(), "{line}");
                }
            }
            Err(e) => tracing::error!(cycle, error = %e, "{line}; cannot write {HEALTH_FILE}"),
        }
        if !report.is_degraded() {
            last_success = Some(report.generated_at);
        }
        let info = CycleInfo {
            duration_seconds: cycle_started.elapsed().as_secs_f64(),
            last_success,
        };
        let metrics = crate::metrics::render(&report, config.node.as_str(), info);
        if let Err(e) =
            write_atomically(&config.metrics_file, metrics.as_bytes(), Some(METRICS_MODE))
        {
            tracing::error!(cycle, error = %e, file = %config.metrics_file.display(), "cannot write the metrics file");
        }
        progress_ms.store(elapsed_ms(), Ordering::Relaxed);
        let status = format!("cycle {cycle}: {line}");
        notify(&[NotifyState::Status(&status)]);
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = term.recv() => break "SIGTERM",
            _ = int.recv() => break "SIGINT",
        }
    };
    notify(&[NotifyState::Stopping]);
    if let Some(d) = drills {
        d.stop();
        let mut task = d.task;
        if tokio::time::timeout(DRILL_STOP_GRACE, &mut task)
            .await
            .is_err()
        {
            task.abort();
            tracing::warn!(
                grace_secs = DRILL_STOP_GRACE.as_secs(),
                "the restore drill's cleanup did not finish in time; the next start finishes it"
            );
        }
    }
    if let Some(w) = watchdog {
        w.abort();
    }
    tracing::info!(
        reason = signal_name,
        cycles = cycle,
        "felhom-agent service stopping"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_is_pinged_only_while_cycles_finish() {
        let interval = Duration::from_secs(60);
        assert!(watchdog_allows(Duration::ZERO, interval));
        assert!(watchdog_allows(
            Duration::from_secs(120) + MAX_CYCLE_TIME,
            interval
        ));
        assert!(!watchdog_allows(
            Duration::from_secs(121) + MAX_CYCLE_TIME,
            interval
        ));
        // A huge interval does not overflow.
        assert!(watchdog_allows(Duration::from_secs(1), Duration::MAX));
    }

    #[test]
    fn write_atomically_sets_the_exact_mode_and_replaces_the_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("x.prom");
        std::fs::write(&target, "old").unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600)).unwrap();
        write_atomically(&target, b"new\n", Some(0o644)).unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "new\n");
        let mode = std::fs::metadata(&target).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        // A directory that does not exist: an error, nothing left behind.
        assert!(write_atomically(&dir.path().join("no/x.prom"), b"", Some(0o644)).is_err());
    }

    #[tokio::test]
    async fn report_is_written_atomically_as_json() {
        let dir = tempfile::tempdir().unwrap();
        let helper = HelperClient::new(dir.path().join("missing.sock"));
        let report = report::collect(Err("not configured".into()), &helper).await;
        let path = write_report(dir.path(), &report).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(v["overall"], "degraded");
        // No temp file is left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(HEALTH_FILE)]);
    }
}
