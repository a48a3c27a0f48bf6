//! Reading Proxmox task logs: the lines that explain a failure, the warnings, progress
//! percentages, and cleaning a line before it reaches a terminal.
//!
//! A task log is text written by the node's worker process, so it is treated as hostile:
//! every line passes through [`clean_line`] (control characters replaced, length bounded)
//! before it is kept, and [`LogDigest`] keeps a bounded amount of it however long the log
//! is.
//!
//! Why the last line is not enough: a failed vzdump ends with
//! `INFO: Backup job finished with errors` / `TASK ERROR: job errors`, and the line that says
//! why (`ERROR: Backup of VM 101 failed - …`) comes before them. [`LogDigest`] therefore
//! collects every error line of the log (bounded), and falls back to the last lines when
//! there is none.
//!
//! ```
//! use felhom_agent::pve::tasklog::LogDigest;
//!
//! let log = [
//!     "INFO: starting new backup job: vzdump 101 --mode snapshot --storage local",
//!     "INFO: Starting Backup of VM 101 (lxc)",
//!     "ERROR: Backup of VM 101 failed - CT is locked (snapshot)",
//!     "INFO: Backup job finished with errors",
//!     "TASK ERROR: job errors",
//! ];
//! let mut digest = LogDigest::new(20);
//! for line in log {
//!     digest.push(line);
//! }
//! assert_eq!(
//!     digest.reasons(),
//!     vec![
//!         "ERROR: Backup of VM 101 failed - CT is locked (snapshot)".to_string(),
//!         "TASK ERROR: job errors".to_string(),
//!     ]
//! );
//! ```

use std::collections::VecDeque;

/// At most this many error (or warning) lines are kept per task.
pub const MAX_REASON_LINES: usize = 10;
/// At most this many bytes of error (or warning) lines are kept per task.
pub const MAX_REASON_BYTES: usize = 4096;
/// A longer log line is cut to this many bytes (at a character boundary) and marked `…`.
pub const MAX_LINE_BYTES: usize = 1024;
/// How many trailing lines [`LogDigest::reasons`] falls back to when the log has no error
/// line.
pub const FALLBACK_LINES: usize = 5;

/// The line with every control character (newline, escape, …) replaced by a space and its
/// length bounded to [`MAX_LINE_BYTES`]; trailing whitespace removed (the one-line policy,
/// [`felhom_protocol::text::one_line`]).
pub fn clean_line(line: &str) -> String {
    felhom_protocol::text::one_line(line, MAX_LINE_BYTES)
}

/// Whether a log line reports an error: `ERROR: …` (vzdump, many workers), the final
/// `TASK ERROR: …`, a tool's `…: error: …` line (e.g. `lvcreate … error: …`), a full
/// disk as tar reports it during a restore (`tar: …: Cannot write: No space left on device`),
/// or a lock failure (`can't lock file '…' - got timeout`, `CT is locked (backup)`).
pub fn is_error_line(line: &str) -> bool {
    let l = line.trim_start();
    l.starts_with("ERROR:")
        || is_task_error(l)
        || l.to_ascii_lowercase().contains(" error: ")
        || l.contains("No space left on device")
        || l.contains("can't lock file '")
        || l.contains(" is locked (")
}

/// Whether this is the worker's final `TASK ERROR: …` line.
fn is_task_error(line: &str) -> bool {
    line.trim_start().starts_with("TASK ERROR:")
}

/// Whether a log line is a warning: `WARN: …` / `WARNING: …` (counted by `TASK WARNINGS: N`).
pub fn is_warning_line(line: &str) -> bool {
    let l = line.trim_start();
    l.starts_with("WARN:") || l.starts_with("WARNING:")
}

/// The percentage in a progress line, if it is one: vzdump's `INFO:  42% (…)` and restore's
/// `progress 42% (read …)`. Values outside 0–100 are not progress.
pub fn parse_progress(line: &str) -> Option<u8> {
    let l = line.trim_start();
    let rest = l
        .strip_prefix("INFO:")
        .or_else(|| l.strip_prefix("progress"))?
        .trim_start();
    let (num, after) = rest.split_once('%')?;
    if !(after.is_empty() || after.starts_with(' ')) {
        return None;
    }
    let n: u8 = num.trim().parse().ok()?;
    (n <= 100).then_some(n)
}

/// Bounded list of lines: at most [`MAX_REASON_LINES`] lines and [`MAX_REASON_BYTES`] bytes;
/// what did not fit is counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BoundedLines {
    lines: Vec<String>,
    bytes: usize,
    omitted: u64,
}

impl BoundedLines {
    /// Adds a line if it still fits, else counts it as omitted.
    pub fn push(&mut self, line: String) {
        if self.lines.len() < MAX_REASON_LINES && self.bytes + line.len() <= MAX_REASON_BYTES {
            self.bytes += line.len();
            self.lines.push(line);
        } else {
            self.omitted += 1;
        }
    }

    /// The kept lines, in log order.
    pub fn lines(&self) -> &[String] {
        &self.lines
    }

    /// How many matching lines were not kept.
    pub fn omitted(&self) -> u64 {
        self.omitted
    }

    /// Whether nothing was kept.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }
}

/// What a task log says, kept within fixed bounds however long the log is: the error lines,
/// the warning lines, the last lines, the latest progress percentage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogDigest {
    errors: BoundedLines,
    task_error: Option<String>,
    warnings: BoundedLines,
    tail: VecDeque<String>,
    tail_lines: usize,
    lines_seen: u64,
    progress: Option<u8>,
}

impl LogDigest {
    /// An empty digest that keeps the last `tail_lines` lines.
    pub fn new(tail_lines: usize) -> LogDigest {
        LogDigest {
            errors: BoundedLines::default(),
            task_error: None,
            warnings: BoundedLines::default(),
            tail: VecDeque::new(),
            tail_lines,
            lines_seen: 0,
            progress: None,
        }
    }

    /// Feeds one raw log line (it is cleaned first); returns the cleaned line.
    pub fn push(&mut self, raw: &str) -> String {
        let line = clean_line(raw);
        self.lines_seen += 1;
        if is_task_error(&line) {
            self.task_error = Some(line.clone());
        } else if is_error_line(&line) {
            self.errors.push(line.clone());
        } else if is_warning_line(&line) {
            self.warnings.push(line.clone());
        }
        if let Some(p) = parse_progress(&line) {
            self.progress = Some(p);
        }
        if self.tail_lines > 0 {
            if self.tail.len() == self.tail_lines {
                self.tail.pop_front();
            }
            self.tail.push_back(line.clone());
        }
        line
    }

    /// The error lines (bounded), without the final `TASK ERROR:` line.
    pub fn errors(&self) -> &BoundedLines {
        &self.errors
    }

    /// The warning lines (bounded).
    pub fn warnings(&self) -> &BoundedLines {
        &self.warnings
    }

    /// The last lines seen (at most `tail_lines`).
    pub fn tail(&self) -> Vec<String> {
        self.tail.iter().cloned().collect()
    }

    /// How many lines were fed.
    pub fn lines_seen(&self) -> u64 {
        self.lines_seen
    }

    /// The latest progress percentage seen.
    pub fn progress(&self) -> Option<u8> {
        self.progress
    }

    /// The final `TASK ERROR:` line, when the log has one.
    pub fn task_error(&self) -> Option<&str> {
        self.task_error.as_deref()
    }

    /// The lines that explain a failure: the error lines (bounded) followed by the final
    /// `TASK ERROR:` line (always kept), or — when the log has no error line at all — its
    /// last [`FALLBACK_LINES`] lines.
    pub fn reasons(&self) -> Vec<String> {
        if !self.errors.is_empty() || self.task_error.is_some() {
            let mut out = self.errors.lines().to_vec();
            out.extend(self.task_error.clone());
            return out;
        }
        let skip = self.tail.len().saturating_sub(FALLBACK_LINES);
        self.tail.iter().skip(skip).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(log: &[&str]) -> LogDigest {
        let mut d = LogDigest::new(20);
        for l in log {
            d.push(l);
        }
        d
    }

    #[test]
    fn vzdump_failing_one_guest_names_the_guest_and_why() {
        // One guest fails, the next one is backed up; the task ends with `job errors`.
        let d = digest(&[
            "INFO: starting new backup job: vzdump 100 101 --mode snapshot --storage local --compress zstd --node pve",
            "INFO: Starting Backup of VM 100 (lxc)",
            "INFO: Backup started at 2026-01-31 12:00:00",
            "INFO: status = running",
            "ERROR: Backup of VM 100 failed - CT is locked (snapshot)",
            "INFO: Failed at 2026-01-31 12:00:00",
            "INFO: Starting Backup of VM 101 (lxc)",
            "INFO: creating vzdump archive '/var/lib/vz/dump/vzdump-lxc-101-2026_01_31-12_00_01.tar.zst'",
            "INFO: Finished Backup of VM 101 (00:00:04)",
            "INFO: Backup job finished with errors",
            "TASK ERROR: job errors",
        ]);
        assert_eq!(
            d.reasons(),
            [
                "ERROR: Backup of VM 100 failed - CT is locked (snapshot)",
                "TASK ERROR: job errors"
            ]
        );
        assert!(d.warnings().is_empty());
        assert_eq!(d.lines_seen(), 11);
    }

    #[test]
    fn restore_failing_on_storage_keeps_the_tool_error() {
        // tar runs out of space; the task's own error only says that tar failed.
        let mut log = vec![
            "recovering backed-up configuration from 'local:backup/vzdump-lxc-101-2026_01_31-12_00_00.tar.zst'".to_string(),
            "  Logical volume \"vm-201-disk-0\" created.".to_string(),
            "extracting archive '/var/lib/vz/dump/vzdump-lxc-101-2026_01_31-12_00_00.tar.zst'".to_string(),
        ];
        for i in 0..30 {
            log.push(format!(
                "tar: ./usr/lib/file{i}: Cannot write: No space left on device"
            ));
        }
        log.push("Total bytes read: 1181116006 (1.1GiB, 212MiB/s)".into());
        log.push("tar: Exiting with failure status due to previous errors".into());
        log.push("  Logical volume \"vm-201-disk-0\" successfully removed.".into());
        log.push(
            "TASK ERROR: unable to restore CT 201 - command 'tar xpf - --zstd' failed: exit code 2"
                .into(),
        );
        let refs: Vec<&str> = log.iter().map(String::as_str).collect();
        let d = digest(&refs);
        let r = d.reasons();
        assert_eq!(r.len(), MAX_REASON_LINES + 1, "{r:?}");
        assert_eq!(
            r[0],
            "tar: ./usr/lib/file0: Cannot write: No space left on device"
        );
        assert_eq!(d.errors().omitted(), 20);
        // The final line is kept even when the bound is reached.
        assert!(
            r[MAX_REASON_LINES].starts_with("TASK ERROR: unable to restore CT 201"),
            "{r:?}"
        );
    }

    #[test]
    fn snapshot_failing_on_a_lock_after_cleanup_lines() {
        let d = digest(&[
            "create storage snapshot 'before-upgrade'",
            "snapshot create failed: starting cleanup",
            "ERROR: can't lock file '/run/lock/lxc/pve-config-100.lock' - got timeout",
            "no lock found trying to remove 'snapshot'  lock",
            "TASK ERROR: snapshot create failed - aborted",
        ]);
        assert_eq!(
            d.reasons(),
            [
                "ERROR: can't lock file '/run/lock/lxc/pve-config-100.lock' - got timeout",
                "TASK ERROR: snapshot create failed - aborted"
            ]
        );
    }

    #[test]
    fn no_error_line_falls_back_to_the_last_lines() {
        let log: Vec<String> = (1..=12).map(|i| format!("line {i}")).collect();
        let refs: Vec<&str> = log.iter().map(String::as_str).collect();
        let d = digest(&refs);
        assert_eq!(
            d.reasons(),
            ["line 8", "line 9", "line 10", "line 11", "line 12"]
        );
        assert_eq!(d.tail().len(), 12);
    }

    #[test]
    fn reasons_and_warnings_are_bounded() {
        let mut d = LogDigest::new(3);
        for i in 0..100 {
            d.push(&format!("ERROR: failure number {i}"));
            d.push(&format!("WARN: warning number {i}"));
        }
        assert_eq!(d.errors().lines().len(), MAX_REASON_LINES);
        assert_eq!(d.errors().omitted(), 90);
        assert_eq!(d.errors().lines()[0], "ERROR: failure number 0");
        assert_eq!(d.warnings().lines().len(), MAX_REASON_LINES);
        assert_eq!(d.tail().len(), 3);
        // The byte bound: long error lines (each cut to 1 KiB) fill 4 KiB before ten lines.
        let mut d = LogDigest::new(0);
        for _ in 0..10 {
            d.push(&format!("ERROR: {}", "x".repeat(1500)));
        }
        let kept: usize = d.errors().lines().iter().map(String::len).sum();
        assert!(kept <= MAX_REASON_BYTES, "{kept}");
        assert_eq!(d.errors().lines().len(), 3);
        assert_eq!(d.errors().omitted(), 7);
    }

    #[test]
    fn lines_are_cleaned_to_the_line_bound() {
        // The policy itself is tested in felhom_protocol::text; this is the bound.
        assert_eq!(clean_line("a\x1b[31mred\x07\r\n"), "a [31mred");
        let long = "é".repeat(2000);
        let c = clean_line(&long);
        assert!(c.len() <= MAX_LINE_BYTES + '…'.len_utf8(), "{}", c.len());
        assert!(c.ends_with('…'));
    }

    #[test]
    fn warnings_and_errors_are_classified() {
        assert!(is_warning_line("WARN: no efidisk configured!"));
        assert!(is_warning_line("WARNING: something"));
        assert!(!is_warning_line("INFO: WARN: quoted"));
        assert!(is_error_line("ERROR: Backup of VM 100 failed - x"));
        assert!(is_error_line("TASK ERROR: job errors"));
        assert!(is_error_line("lvcreate 'pve/vm-1-disk-0' error: no space"));
        assert!(!is_error_line("INFO: Backup job finished with errors"));
        assert!(!is_error_line("TASK OK"));
        assert!(is_error_line(
            "can't lock file '/run/lock/lxc/pve-config-100.lock' - got timeout"
        ));
        assert!(is_error_line("CT is locked (backup)"));
    }

    #[test]
    fn progress_percentages() {
        assert_eq!(
            parse_progress("INFO:  42% (1.2 GiB of 3.0 GiB) in 3s, read: 400.0 MiB/s"),
            Some(42)
        );
        assert_eq!(
            parse_progress("INFO: 100% (3.0 GiB of 3.0 GiB) in 8s"),
            Some(100)
        );
        assert_eq!(
            parse_progress("progress 7% (read 751619276 bytes, duration 2 sec)"),
            Some(7)
        );
        assert_eq!(parse_progress("INFO: status = running"), None);
        assert_eq!(parse_progress("INFO: 250% nonsense"), None);
        assert_eq!(parse_progress("INFO: 5%x"), None);
        let d = digest(&["INFO:  10% (x)", "INFO: status", "INFO:  55% (y)"]);
        assert_eq!(d.progress(), Some(55));
    }
}
