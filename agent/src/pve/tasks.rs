//! Waiting for Proxmox tasks.
//!
//! [`PveClient::wait_task`] polls `GET …/tasks/{upid}/status` on an adaptive schedule: the
//! first poll comes [`WaitOptions::initial_interval`] (50 ms) after dispatch, each later gap
//! is 1.5× the previous one, capped at [`WaitOptions::max_interval`] (1 s). Short tasks
//! (snapshot, start) are therefore noticed within tens of milliseconds, and a long task
//! (backup, restore) costs at most one request per second — the rate of fixed-interval
//! clients. The whole wait — every poll and the final log read included — runs under
//! [`WaitOptions::timeout`]. A poll that fails with a retryable error (connect error, 5xx
//! other than 501, 595/596 from the proxy) does not end the wait: the task keeps running on the node, so
//! polling continues until the failures have lasted [`WaitOptions::error_grace`] (30 s).
//!
//! Exit status rules (pve-common `PVE::Tools::upid_status_is_error`): `OK` is success,
//! `WARNINGS: N` is success with the log's `WARN:` lines, anything else is
//! [`PveError::Task`] ([`TaskFailure`]) with the lines that explain it (every error line
//! of the log, bounded — see [`tasklog`](super::tasklog)), the last log lines and, for a permission
//! failure, the privilege.
//!
//! [`PveClient::wait_task_with`] also follows the task log while it waits, handing every
//! poll and every new line to a [`TaskObserver`] (live progress), with at most one log
//! request per status poll. [`PveClient::read_task_log`] reads a whole log, or the part
//! after a given line, bounded.

use std::time::{Duration, Instant};

use super::client::PveClient;
use super::error::{PveError, TaskFailure, parse_permission_check};
use super::tasklog::{LogDigest, clean_line};
use super::types::{TaskLog, TaskState, TaskStatus};
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
    /// The `WARN:` lines of the log (empty for `OK`; at most 10 lines and 4 KiB).
    pub warnings: Vec<String>,
    /// `WARN:` lines left out of `warnings` by its bound.
    pub warnings_omitted: u64,
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

/// Lines asked for per task-log request.
pub const LOG_PAGE: u64 = 500;
/// At most this many lines are read from the start of one log in one call of
/// [`PveClient::read_task_log`]; a longer log is skipped to its end (see there).
pub const MAX_LOG_LINES: u64 = 10_000;

/// Watches a task while [`PveClient::wait_task_with`] waits for it: gets every status poll
/// and every new log line, each once, in order. Used by the CLI for live progress; a
/// library caller can log, forward or ignore them.
pub trait TaskObserver: Send {
    /// After every successful status poll.
    fn on_poll(&mut self, upid: &Upid, status: &TaskStatus, elapsed: Duration) {
        let _ = (upid, status, elapsed);
    }
    /// New log lines (already cleaned by [`clean_line`]), in log order.
    fn on_lines(&mut self, upid: &Upid, lines: &[String], elapsed: Duration) {
        let _ = (upid, lines, elapsed);
    }
}

/// A stretch of a task log read by [`PveClient::read_task_log`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LogChunk {
    /// The lines, cleaned ([`clean_line`]), in log order.
    pub lines: Vec<String>,
    /// The 0-based line number to read from next time.
    pub next: u64,
    /// The log's line count as Proxmox reported it (envelope `total`).
    pub total: Option<u64>,
    /// Lines that were skipped to stay within [`MAX_LOG_LINES`].
    pub skipped: u64,
}

/// The `no content` placeholder Proxmox sends for an empty log is not a line.
fn is_placeholder(page: &TaskLog, start: u64) -> bool {
    start == 0
        && page.lines.len() == 1
        && page.lines[0].n <= 1
        && page.lines[0].t == "no content"
        && page.total.is_none_or(|t| t <= 1)
}

/// Follows a task log: the next line to ask for, and the digest of what was seen.
struct Follower {
    next: u64,
    digest: LogDigest,
}

impl Follower {
    /// Feeds one page; returns the cleaned new lines.
    fn take(&mut self, start: u64, page: TaskLog) -> Vec<String> {
        if is_placeholder(&page, start) {
            return Vec::new();
        }
        let mut out = Vec::with_capacity(page.lines.len());
        for l in page.lines {
            // `n` is 1-based; a line before `next` was already seen (never twice).
            if l.n <= self.next && l.n != 0 {
                continue;
            }
            self.next = if l.n == 0 { self.next + 1 } else { l.n };
            out.push(self.digest.push(&l.t));
        }
        out
    }
}

impl PveClient {
    /// Reads a task log from the 0-based line `start`: pages of [`LOG_PAGE`] lines until
    /// the end, at most [`MAX_LOG_LINES`] lines; when the log is longer, the middle is
    /// skipped and its last [`LOG_PAGE`] lines are read (so the final `TASK …` line is
    /// always there). Lines are cleaned ([`clean_line`]); Proxmox's `no content`
    /// placeholder of an empty log is dropped.
    ///
    /// Works on a running task too (it returns what is written so far); pass the returned
    /// [`LogChunk::next`] as `start` to read only what came since.
    pub async fn read_task_log(&self, upid: &Upid, start: u64) -> Result<LogChunk, PveError> {
        let mut chunk = LogChunk {
            next: start,
            ..LogChunk::default()
        };
        let mut f = Follower {
            next: start,
            digest: LogDigest::new(0),
        };
        let mut read: u64 = 0;
        loop {
            let page = self.task_log(upid, f.next, LOG_PAGE).await?;
            let asked = f.next;
            let total = page.total;
            let got = page.lines.len() as u64;
            chunk.total = total;
            let lines = f.take(asked, page);
            read += lines.len() as u64;
            chunk.lines.extend(lines);
            chunk.next = f.next;
            let at_end = got < LOG_PAGE || total.is_some_and(|t| f.next >= t) || f.next == asked;
            if at_end {
                return Ok(chunk);
            }
            if read >= MAX_LOG_LINES {
                if let Some(t) = total.filter(|t| *t > f.next) {
                    // The last page, or all that is left when that is less.
                    let from = t.saturating_sub(LOG_PAGE).max(f.next);
                    chunk.skipped = from - f.next;
                    f.next = from;
                    let page = self.task_log(upid, f.next, LOG_PAGE).await?;
                    let asked = f.next;
                    chunk.total = page.total;
                    chunk.lines.extend(f.take(asked, page));
                    chunk.next = f.next;
                    return Ok(chunk);
                }
                chunk.skipped = total.map_or(0, |t| t.saturating_sub(f.next));
                return Ok(chunk);
            }
        }
    }

    /// Like [`PveClient::wait_task`], and follows the task log meanwhile: after each status
    /// poll that finds the task running, one log request fetches only the new lines
    /// (`start=<lines seen>`); once the task has stopped, the rest of the log is read once.
    /// So following costs at most one log request per status poll. The observer gets every
    /// poll and every new line, each once.
    ///
    /// The result is the same as [`PveClient::wait_task`]'s, and a failure's reasons and a
    /// success's warnings come from the lines already followed (no second read of the
    /// log). A log request that fails while the task runs is skipped (the next poll tries
    /// again); the wait itself only fails as `wait_task` does.
    pub async fn wait_task_with(
        &self,
        upid: &Upid,
        opts: WaitOptions,
        observer: &mut dyn TaskObserver,
    ) -> Result<TaskSuccess, PveError> {
        self.wait_inner(upid, opts, Some(observer)).await
    }

    /// Polls the task until it stops, then interprets its exit status. See the module docs.
    ///
    /// The whole wait, including every status poll (with the HTTP layer's read retries) and
    /// the final log read, ends at `opts.timeout`: a poll still running at the deadline is
    /// abandoned and the result is [`PveError::Timeout`]. The log is read only when the task
    /// did not end with `OK` (for its warnings or the reasons of its failure).
    pub async fn wait_task(&self, upid: &Upid, opts: WaitOptions) -> Result<TaskSuccess, PveError> {
        self.wait_inner(upid, opts, None).await
    }

    async fn wait_inner(
        &self,
        upid: &Upid,
        opts: WaitOptions,
        mut observer: Option<&mut dyn TaskObserver>,
    ) -> Result<TaskSuccess, PveError> {
        let started = Instant::now();
        let deadline = deadline_after(started, opts.timeout);
        let timed_out = || PveError::Timeout {
            what: format!("task {upid}"),
            waited: started.elapsed(),
        };
        let tail_lines = usize::try_from(opts.log_tail_lines).unwrap_or(usize::MAX);
        let mut follower = observer.is_some().then(|| Follower {
            next: 0,
            digest: LogDigest::new(tail_lines),
        });
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
                    if let Some(o) = observer.as_deref_mut() {
                        o.on_poll(upid, &st, started.elapsed());
                    }
                    let exitstatus = st.exitstatus.unwrap_or_else(|| "unexpected status".into());
                    tracing::debug!(upid = %upid, polls, %exitstatus, "task stopped");
                    let digest = match follower.take() {
                        Some(mut f) => {
                            // The rest of the log, once.
                            let read = tokio::time::timeout_at(
                                deadline.into(),
                                self.read_task_log(upid, f.next),
                            )
                            .await;
                            match read {
                                Ok(Ok(chunk)) => {
                                    for l in &chunk.lines {
                                        f.digest.push(l);
                                    }
                                    if let Some(o) = observer.as_deref_mut() {
                                        if !chunk.lines.is_empty() {
                                            o.on_lines(upid, &chunk.lines, started.elapsed());
                                        }
                                    }
                                }
                                Ok(Err(e)) => {
                                    tracing::warn!(upid = %upid, error = %e, "cannot read the end of the task log");
                                }
                                Err(_) => {
                                    tracing::warn!(upid = %upid, "deadline passed while reading the task log");
                                }
                            }
                            Some(f.digest)
                        }
                        None => None,
                    };
                    return self.finish(upid, exitstatus, &opts, deadline, digest).await;
                }
                Ok(st) => {
                    failing_since = None;
                    if let Some(o) = observer.as_deref_mut() {
                        o.on_poll(upid, &st, started.elapsed());
                    }
                    if let (Some(f), Some(o)) = (follower.as_mut(), observer.as_deref_mut()) {
                        // One log request per poll, only for the new lines.
                        let asked = f.next;
                        let page = tokio::time::timeout_at(
                            deadline.into(),
                            self.task_log(upid, asked, LOG_PAGE),
                        )
                        .await;
                        match page {
                            Ok(Ok(page)) => {
                                let lines = f.take(asked, page);
                                if !lines.is_empty() {
                                    o.on_lines(upid, &lines, started.elapsed());
                                }
                            }
                            Ok(Err(e)) => {
                                tracing::debug!(upid = %upid, error = %e, "cannot read the task log, will retry");
                            }
                            Err(_) => return Err(timed_out()),
                        }
                    }
                }
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

    /// Interprets the exit status; `digest` is the followed log, if any (else the log is
    /// read here when the status is not `OK`).
    async fn finish(
        &self,
        upid: &Upid,
        exitstatus: String,
        opts: &WaitOptions,
        deadline: Instant,
        digest: Option<LogDigest>,
    ) -> Result<TaskSuccess, PveError> {
        if exitstatus == "OK" {
            return Ok(TaskSuccess {
                upid: upid.clone(),
                exitstatus,
                warnings: Vec::new(),
                warnings_omitted: 0,
            });
        }
        let digest = match digest {
            Some(d) => d,
            None => {
                let tail_lines = usize::try_from(opts.log_tail_lines).unwrap_or(usize::MAX);
                let mut d = LogDigest::new(tail_lines);
                match tokio::time::timeout_at(deadline.into(), self.read_task_log(upid, 0)).await {
                    Ok(Ok(chunk)) => {
                        for l in &chunk.lines {
                            d.push(l);
                        }
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(upid = %upid, error = %e, "cannot read task log");
                    }
                    Err(_) => {
                        tracing::warn!(upid = %upid, "deadline passed while reading the task log");
                    }
                }
                d
            }
        };
        if is_warnings(&exitstatus) {
            let warnings = digest.warnings().lines().to_vec();
            for w in &warnings {
                tracing::warn!(upid = %upid, warning = %w, "task warning");
            }
            return Ok(TaskSuccess {
                upid: upid.clone(),
                exitstatus,
                warnings,
                warnings_omitted: digest.warnings().omitted(),
            });
        }
        let reasons = digest.reasons();
        let log_tail = digest.tail();
        let privilege = std::iter::once(exitstatus.as_str())
            .chain(reasons.iter().map(String::as_str))
            .chain(log_tail.iter().map(String::as_str))
            .find_map(|l| parse_permission_check(l).1);
        Err(PveError::Task(Box::new(TaskFailure {
            upid: upid.clone(),
            task_type: upid.task_type().to_string(),
            id: upid.id().to_string(),
            exitstatus: clean_line(&exitstatus),
            reasons,
            reasons_omitted: digest.errors().omitted(),
            log_tail,
            privilege,
        })))
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

    fn page(lines: &[(u64, &str)], total: Option<u64>) -> TaskLog {
        TaskLog {
            lines: lines
                .iter()
                .map(|(n, t)| super::super::types::TaskLogLine {
                    n: *n,
                    t: t.to_string(),
                })
                .collect(),
            total,
        }
    }

    #[test]
    fn follower_hands_over_each_line_once_and_skips_the_placeholder() {
        let mut f = Follower {
            next: 0,
            digest: LogDigest::new(10),
        };
        // An empty log is sent as one `no content` line: not a line, nothing consumed.
        assert!(f.take(0, page(&[(1, "no content")], Some(0))).is_empty());
        assert_eq!(f.next, 0);
        assert_eq!(
            f.take(0, page(&[(1, "a"), (2, "b\x1b[2J")], Some(2))),
            ["a", "b [2J"]
        );
        assert_eq!(f.next, 2);
        // A page that repeats seen lines (an overlapping request) yields only new ones.
        assert_eq!(
            f.take(1, page(&[(2, "b"), (3, "ERROR: c")], Some(3))),
            ["ERROR: c"]
        );
        assert_eq!(f.next, 3);
        assert_eq!(f.digest.lines_seen(), 3);
        assert_eq!(f.digest.reasons(), ["ERROR: c"]);
        // A real line 1 reading "no content" in a longer log is a line.
        let mut g = Follower {
            next: 0,
            digest: LogDigest::new(10),
        };
        assert_eq!(
            g.take(0, page(&[(1, "no content"), (2, "x")], Some(2))),
            ["no content", "x"]
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

    #[test]
    fn with_timeout_and_fixed_set_what_they_name() {
        let d = WaitOptions::default();
        let t = WaitOptions::with_timeout(Duration::from_millis(400));
        assert_eq!(t.timeout, Duration::from_millis(400));
        assert_eq!(
            WaitOptions {
                timeout: d.timeout,
                ..t.clone()
            },
            d,
            "only the timeout differs from the default"
        );
        let f = WaitOptions::fixed(Duration::from_millis(250), Duration::from_secs(5));
        assert_eq!(f.timeout, Duration::from_secs(5));
        assert_eq!(f.initial_interval, Duration::from_millis(250));
        assert_eq!(f.max_interval, Duration::from_millis(250));
        assert_eq!(f.backoff, 1.0);
        assert_eq!(
            f.next_interval(Duration::from_millis(250)),
            Duration::from_millis(250)
        );
        assert_eq!(f.not_found_grace, d.not_found_grace);
        assert_eq!(f.error_grace, d.error_grace);
    }

    #[test]
    fn an_unbounded_timeout_means_a_deadline_a_century_away() {
        let start = Instant::now();
        let far = deadline_after(start, Duration::MAX);
        assert!(
            far >= start + Duration::from_secs(99 * 365 * 24 * 3600),
            "{:?}",
            far - start
        );
        assert_eq!(
            deadline_after(start, Duration::from_secs(7)),
            start + Duration::from_secs(7)
        );
    }

    #[test]
    fn unnumbered_lines_advance_the_follower_by_one_each() {
        let mut f = Follower {
            next: 0,
            digest: LogDigest::new(10),
        };
        assert_eq!(f.take(0, page(&[(0, "a"), (0, "b")], None)), ["a", "b"]);
        assert_eq!(f.next, 2);
        assert_eq!(f.take(2, page(&[(3, "c"), (0, "d")], None)), ["c", "d"]);
        assert_eq!(f.next, 4);
    }
}
