//! `felhom-agent run`: the systemd service (Type=notify).
//!
//! Every `interval_secs` it collects the read-only [health report](crate::report), logs a
//! one-line summary, and writes the report atomically to `<state_dir>/health.json` (temp
//! file, fsync, rename, fsync of the directory). It tells systemd `READY=1` as soon as the
//! state directory and the signal handlers are set up (before the first cycle, which may be
//! slow on a host with many or slow disks), and `STATUS=…` after each cycle. It lets go of
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

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sd_notify::NotifyState;
use tokio::signal::unix::{SignalKind, signal};

use crate::config::AgentConfig;
use crate::helper_client::HelperClient;
use crate::pve::PveClient;
use crate::report::{self, HealthReport};

/// The report's file name inside the state directory.
pub const HEALTH_FILE: &str = "health.json";

/// The longest a collection cycle is expected to take (a SMART read of each disk, bounded
/// by the helper's deadlines, plus the Proxmox reads). With the sleep between cycles, the
/// watchdog keeps being pinged while the last cycle finished within
/// `2 × interval + MAX_CYCLE_TIME`.
pub const MAX_CYCLE_TIME: Duration = Duration::from_secs(10 * 60);

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
    let tmp = dir.join(format!(".{HEALTH_FILE}.{}.tmp", std::process::id()));
    let body = serde_json::to_vec_pretty(report).map_err(std::io::Error::other)?;
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&body)?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, &target)?;
        // Make the rename itself durable.
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map(|()| target)
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
    let mut cycle: u64 = 0;
    let signal_name = loop {
        cycle += 1;
        let collected = tokio::select! {
            r = report::collect(Ok(&pve), &helper) => Some(r),
            _ = term.recv() => None,
            _ = int.recv() => None,
        };
        // Let go of the helper between cycles: it is socket-activated and exits when no
        // client is connected for its idle timeout; the next cycle activates it again.
        helper.disconnect().await;
        let Some(report) = collected else {
            break "signal during collection";
        };
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
