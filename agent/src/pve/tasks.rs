//! Waiting for Proxmox tasks.
//!
//! [`PveClient::wait_task`] polls `GET …/tasks/{upid}/status` on an adaptive schedule: the
//! first poll comes [`WaitOptions::initial_interval`] (50 ms) after dispatch, each later gap
//! is 1.5× the previous one, capped at [`WaitOptions::max_interval`] (1 s). Short tasks
//! (snapshot, start) are therefore noticed within tens of milliseconds, and a long task
//! (backup, restore) costs at most one request per second — the rate of fixed-interval
//! clients. The whole wait — every poll and the final log read included — runs under
//! [`WaitOptions::timeout`]. A poll that fails with a retryable error (connect error, 5xx,
//! 595/596 from the proxy) does not end the wait: the task keeps running on the node, so
//! polling continues until the failures have lasted [`WaitOptions::error_grace`] (30 s).
//!
//! Exit status rules (pve-common `PVE::Tools::upid_status_is_error`): `OK` is success,
//! `WARNINGS: N` is success with the log's `WARN:` lines, anything else is
//! [`PveError::Task`] ([`TaskFailure`]) with the last log lines and, for a permission failure, the privilege.

use std::time::{Duration, Instant};

use super::client::PveClient;
use super::error::{PveError, TaskFailure, parse_permission_check};
use super::types::TaskState;
use super::upid::Upid;

/// How [`PveClient::wait_task`] polls.
#[derive(Debug, Clone, PartialEq)]
pub struct WaitOptions {
    /// Give up (with [`PveError::Timeout`]) after this long.
    pub timeout: Duration,
    /// Delay before the first poll, and the first gap.
    pub initial_interval: Duration,
    /// Largest gap between polls.
    pub max_interval: Duration,
    /// Growth factor of the gap.
    pub backoff: f64,
    /// How long a 400 `no such task` is tolerated after the wait started (the task may
    /// not be visible yet, e.g. behind a cluster proxy).
    pub not_found_grace: Duration,
    /// How many log lines a failed task's error carries.
    pub log_tail_lines: u64,
    /// How long status polls may keep failing with retryable errors (connect errors, 5xx,
    /// 595/596 from the proxy — each poll already retried by the HTTP layer) before the wait
    /// gives up with the last error. The task keeps running on the node meanwhile, so a
    /// short outage of pveproxy must not end the wait. Measured from the start of the first
    /// failed poll of an unbroken run of failures; the overall deadline still applies.
    pub error_grace: Duration,
}

impl Default for WaitOptions {
    fn default() -> Self {
        WaitOptions {
            timeout: Duration::from_secs(3600),
            initial_interval: Duration::from_millis(50),
            max_interval: Duration::from_secs(1),
            backoff: 1.5,
            not_found_grace: Duration::from_secs(5),
            log_tail_lines: 20,
            error_grace: Duration::from_secs(30),
        }
    }
}

impl WaitOptions {
    /// The default schedule with another overall deadline.
    pub fn with_timeout(timeout: Duration) -> WaitOptions {
        WaitOptions {
            timeout,
            ..WaitOptions::default()
        }
    }

    /// A fixed poll interval (what most other Proxmox clients do with 1 s); for comparison.
    pub fn fixed(interval: Duration, timeout: Duration) -> WaitOptions {
        WaitOptions {
            timeout,
            initial_interval: interval,
            max_interval: interval,
            backoff: 1.0,
            ..WaitOptions::default()
        }
    }

    fn next_interval(&self, current: Duration) -> Duration {
        current
            .mul_f64(self.backoff.max(1.0))
            .min(self.max_interval)
            .max(Duration::from_millis(1))
    }
}

/// A task that stopped successfully.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskSuccess {
    /// The task.
    pub upid: Upid,
    /// `OK` or `WARNINGS: N`.
    pub exitstatus: String,
    /// The `WARN:` lines of the log (empty for `OK`).
    pub warnings: Vec<String>,
}

/// `start + timeout`, or a far-away instant when that does not fit (`Duration::MAX`).
fn deadline_after(start: Instant, timeout: Duration) -> Instant {
    start
        .checked_add(timeout)
        .unwrap_or_else(|| start + Duration::from_secs(100 * 365 * 24 * 3600))
}

fn is_warnings(exitstatus: &str) -> bool {
    exitstatus
        .strip_prefix("WARNINGS: ")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

impl PveClient {
    /// Polls the task until it stops, then interprets its exit status. See the module docs.
    ///
    /// The whole wait, including every status poll (with the HTTP layer's read retries) and
    /// the final log read, ends at `opts.timeout`: a poll still running at the deadline is
    /// abandoned and the result is [`PveError::Timeout`].
    pub async fn wait_task(&self, upid: &Upid, opts: WaitOptions) -> Result<TaskSuccess, PveError> {
        let started = Instant::now();
        let deadline = deadline_after(started, opts.timeout);
        let timed_out = || PveError::Timeout {
            what: format!("task {upid}"),
            waited: started.elapsed(),
        };
        let mut interval = opts.initial_interval;
        let mut polls: u32 = 0;
        // Start of the first poll in the current unbroken run of failed polls.
        let mut failing_since: Option<Instant> = None;
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(timed_out());
            }
            tokio::time::sleep(interval.min(deadline - now)).await;
            polls += 1;
            let poll_started = Instant::now();
            let polled = tokio::time::timeout_at(deadline.into(), self.task_status(upid)).await;
            let Ok(polled) = polled else {
                tracing::debug!(upid = %upid, polls, "deadline passed during a status poll");
                return Err(timed_out());
            };
            match polled {
                Ok(st) if st.status == TaskState::Stopped => {
                    let exitstatus = st.exitstatus.unwrap_or_else(|| "unexpected status".into());
                    tracing::debug!(upid = %upid, polls, %exitstatus, "task stopped");
                    return self.finish(upid, exitstatus, &opts, deadline).await;
                }
                Ok(_) => failing_since = None,
                Err(e) if e.is_no_such_task() && started.elapsed() < opts.not_found_grace => {
                    tracing::debug!(upid = %upid, "task not visible yet, retrying");
                }
                Err(e) if e.is_retryable_read() => {
                    let since = *failing_since.get_or_insert(poll_started);
                    if since.elapsed() >= opts.error_grace {
                        tracing::warn!(
                            upid = %upid,
                            error = %e,
                            failing_for_ms = since.elapsed().as_millis() as u64,
                            "task status still unreadable, giving up"
                        );
                        return Err(e);
                    }
                    tracing::warn!(upid = %upid, error = %e, "cannot read task status, will retry");
                }
                Err(e) => return Err(e),
            }
            interval = opts.next_interval(interval);
        }
    }

    async fn finish(
        &self,
        upid: &Upid,
        exitstatus: String,
        opts: &WaitOptions,
        deadline: Instant,
    ) -> Result<TaskSuccess, PveError> {
        if exitstatus == "OK" {
            return Ok(TaskSuccess {
                upid: upid.clone(),
                exitstatus,
                warnings: Vec::new(),
            });
        }
        if is_warnings(&exitstatus) {
            let log = tokio::time::timeout_at(deadline.into(), self.task_log(upid, 0, 0)).await;
            let warnings = match log {
                Ok(Ok(log)) => log
                    .lines
                    .into_iter()
                    .map(|l| l.t)
                    .filter(|t| t.contains("WARN:") || t.starts_with("WARN"))
                    .collect(),
                Ok(Err(e)) => {
                    tracing::warn!(upid = %upid, error = %e, "cannot read warnings from task log");
                    Vec::new()
                }
                Err(_) => {
                    tracing::warn!(upid = %upid, "deadline passed while reading the task warnings");
                    Vec::new()
                }
            };
            for w in &warnings {
                tracing::warn!(upid = %upid, warning = %w, "task warning");
            }
            return Ok(TaskSuccess {
                upid: upid.clone(),
                exitstatus,
                warnings,
            });
        }
        let log_tail =
            tokio::time::timeout_at(deadline.into(), self.log_tail(upid, opts.log_tail_lines))
                .await
                .unwrap_or_else(|_| {
                    tracing::warn!(upid = %upid, "deadline passed while reading the task log");
                    Vec::new()
                });
        let privilege = std::iter::once(exitstatus.as_str())
            .chain(log_tail.iter().map(String::as_str))
            .find_map(|l| parse_permission_check(l).1);
        Err(PveError::Task(Box::new(TaskFailure {
            upid: upid.clone(),
            task_type: upid.task_type().to_string(),
            id: upid.id().to_string(),
            exitstatus,
            log_tail,
            privilege,
        })))
    }

    /// The last `lines` lines of a task log (empty if the log cannot be read: the task's
    /// own error is more useful than a log error).
    async fn log_tail(&self, upid: &Upid, lines: u64) -> Vec<String> {
        let first = match self.task_log(upid, 0, lines).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(upid = %upid, error = %e, "cannot read task log");
                return Vec::new();
            }
        };
        let page = match first.total {
            Some(total) if total > lines => match self.task_log(upid, total - lines, lines).await {
                Ok(l) => l,
                Err(_) => first,
            },
            _ => first,
        };
        let mut out: Vec<String> = page.lines.into_iter().map(|l| l.t).collect();
        let keep = usize::try_from(lines).unwrap_or(usize::MAX);
        if out.len() > keep {
            out.drain(..out.len() - keep);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_backs_off_to_one_second() {
        let o = WaitOptions::default();
        let mut i = o.initial_interval;
        let mut gaps = vec![i];
        for _ in 0..12 {
            i = o.next_interval(i);
            gaps.push(i);
        }
        assert_eq!(gaps[1], Duration::from_millis(75));
        assert!(gaps.windows(2).all(|w| w[1] >= w[0]));
        assert_eq!(*gaps.last().unwrap(), Duration::from_secs(1));
        let f = WaitOptions::fixed(Duration::from_secs(1), Duration::from_secs(5));
        assert_eq!(
            f.next_interval(Duration::from_secs(1)),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn warnings_status() {
        assert!(is_warnings("WARNINGS: 1"));
        assert!(is_warnings("WARNINGS: 12"));
        assert!(!is_warnings("WARNINGS: "));
        assert!(!is_warnings("WARNINGS: x"));
        assert!(!is_warnings("OK"));
        assert!(!is_warnings("job errors"));
    }
}
