//! Live progress on stderr while the CLI waits for a task.
//!
//! - On a terminal: one status line, redrawn after every status poll and every new log
//!   line: elapsed time, task type and id, the latest progress percentage (vzdump/restore
//!   progress lines) and the latest log line, cut to the terminal width. It is erased when
//!   the wait ends, so only the result remains.
//! - Not a terminal (a pipe, a log file, CI): the new log lines themselves, each once,
//!   prefixed with the elapsed time and the task.
//! - Off with `--quiet`, and with `--json` unless stderr is a terminal (stdout stays one
//!   JSON document either way).
//!
//! When progress is off the wait does not follow the log at all, so it costs no request.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use crate::pve::tasklog::parse_progress;
use crate::pve::{PveClient, PveError, TaskObserver, TaskStatus, TaskSuccess, Upid, WaitOptions};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// Nothing (and the log is not followed).
    Off,
    /// New log lines, one per line, with the elapsed time.
    Lines,
    /// One live status line (a terminal).
    Live,
}

impl ProgressMode {
    /// The mode for these flags and whether stderr is a terminal.
    pub fn choose(quiet: bool, json: bool, stderr_is_terminal: bool) -> ProgressMode {
        match (quiet, json, stderr_is_terminal) {
            (true, _, _) => ProgressMode::Off,
            (false, _, true) => ProgressMode::Live,
            (false, true, false) => ProgressMode::Off,
            (false, false, false) => ProgressMode::Lines,
        }
    }

    /// The mode for these flags on this process's stderr.
    pub fn detect(quiet: bool, json: bool) -> ProgressMode {
        ProgressMode::choose(quiet, json, std::io::stderr().is_terminal())
    }
}

/// Waits for `upid` with `opts`, showing progress on stderr as `mode` says.
pub async fn wait(
    pve: &PveClient,
    upid: &Upid,
    opts: WaitOptions,
    mode: ProgressMode,
) -> Result<TaskSuccess, PveError> {
    if mode == ProgressMode::Off {
        return pve.wait_task(upid, opts).await;
    }
    let mut p = Progress::new(mode, upid, std::io::stderr(), terminal_width());
    let result = pve.wait_task_with(upid, opts, &mut p).await;
    p.end();
    result
}

/// The terminal width from `COLUMNS`, else 80.
pub(super) fn terminal_width() -> usize {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<usize>().ok())
        .filter(|w| (20..=1000).contains(w))
        .unwrap_or(80)
}

/// `12.3s` below a minute, `4m05s` above.
fn elapsed_text(d: Duration) -> String {
    let s = d.as_secs();
    if s < 60 {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

/// The first `width` characters of `s`.
fn fit(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_string();
    }
    let mut out: String = s.chars().take(width.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// A [`TaskObserver`] that renders progress to a writer (stderr in the CLI).
pub struct Progress<W: Write + Send> {
    mode: ProgressMode,
    label: String,
    out: W,
    width: usize,
    latest: Option<String>,
    percent: Option<u8>,
    drawn: bool,
}

impl<W: Write + Send> Progress<W> {
    /// Progress for `upid` in `mode`, written to `out`, a live line at most `width` wide.
    pub fn new(mode: ProgressMode, upid: &Upid, out: W, width: usize) -> Progress<W> {
        let label = if upid.id().is_empty() {
            upid.task_type().to_string()
        } else {
            format!("{} {}", upid.task_type(), upid.id())
        };
        Progress {
            mode,
            label,
            out,
            width,
            latest: None,
            percent: None,
            drawn: false,
        }
    }

    fn draw(&mut self, elapsed: Duration) {
        if self.mode != ProgressMode::Live {
            return;
        }
        let mut text = format!("[{}] {}", elapsed_text(elapsed), self.label);
        if let Some(p) = self.percent {
            text.push_str(&format!(" {p:>3}%"));
        }
        if let Some(l) = &self.latest {
            text.push_str(": ");
            text.push_str(l.trim());
        }
        let line = fit(&text, self.width.saturating_sub(1));
        let _ = write!(self.out, "\r\x1b[2K{line}");
        let _ = self.out.flush();
        self.drawn = true;
    }

    /// Erases the live line (call once the wait is over).
    pub fn end(&mut self) {
        if self.drawn {
            let _ = write!(self.out, "\r\x1b[2K");
            let _ = self.out.flush();
            self.drawn = false;
        }
    }

    /// The writer (for tests).
    pub fn into_inner(self) -> W {
        self.out
    }
}

impl<W: Write + Send> TaskObserver for Progress<W> {
    fn on_poll(&mut self, _upid: &Upid, _status: &TaskStatus, elapsed: Duration) {
        self.draw(elapsed);
    }

    fn on_lines(&mut self, _upid: &Upid, lines: &[String], elapsed: Duration) {
        for l in lines {
            if let Some(p) = parse_progress(l) {
                self.percent = Some(p);
            }
            if self.mode == ProgressMode::Lines {
                let _ = writeln!(self.out, "[{}] {}: {l}", elapsed_text(elapsed), self.label);
            }
        }
        if self.mode == ProgressMode::Lines {
            let _ = self.out.flush();
        }
        if let Some(last) = lines.iter().rev().find(|l| !l.trim().is_empty()) {
            self.latest = Some(last.clone());
        }
        self.draw(elapsed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upid() -> Upid {
        "UPID:pve:0000A1B2:00C0FFEE:65B9F2A0:vzdump:100:felhom@pve!agent:"
            .parse()
            .unwrap()
    }

    fn status() -> TaskStatus {
        serde_json::from_value(serde_json::json!({
            "upid": "UPID:pve:0000A1B2:00C0FFEE:65B9F2A0:vzdump:100:felhom@pve!agent:",
            "status": "running"
        }))
        .unwrap()
    }

    #[test]
    fn mode_follows_flags_and_terminal() {
        use ProgressMode::*;
        assert_eq!(ProgressMode::choose(true, false, true), Off);
        assert_eq!(ProgressMode::choose(false, false, true), Live);
        assert_eq!(ProgressMode::choose(false, true, true), Live);
        assert_eq!(ProgressMode::choose(false, true, false), Off);
        assert_eq!(ProgressMode::choose(false, false, false), Lines);
    }

    #[test]
    fn lines_mode_prints_each_new_line_once_with_elapsed_time() {
        let mut p = Progress::new(ProgressMode::Lines, &upid(), Vec::new(), 80);
        p.on_poll(&upid(), &status(), Duration::from_millis(100));
        p.on_lines(
            &upid(),
            &["INFO: Starting Backup of VM 100 (lxc)".into()],
            Duration::from_millis(1200),
        );
        p.on_lines(
            &upid(),
            &["INFO: status = running".into(), "INFO:  40% (x)".into()],
            Duration::from_secs(75),
        );
        p.end();
        let out = String::from_utf8(p.into_inner()).unwrap();
        assert_eq!(
            out,
            "[1.2s] vzdump 100: INFO: Starting Backup of VM 100 (lxc)\n\
             [1m15s] vzdump 100: INFO: status = running\n\
             [1m15s] vzdump 100: INFO:  40% (x)\n"
        );
    }

    #[test]
    fn live_mode_redraws_one_line_and_erases_it() {
        let mut p = Progress::new(ProgressMode::Live, &upid(), Vec::new(), 40);
        p.on_poll(&upid(), &status(), Duration::from_millis(500));
        p.on_lines(
            &upid(),
            &["INFO:  42% (1.2 GiB of 3.0 GiB) in 3s, read: 400 MiB/s".into()],
            Duration::from_secs(3),
        );
        p.end();
        let out = String::from_utf8(p.into_inner()).unwrap();
        assert!(!out.contains('\n'), "{out:?}");
        let frames: Vec<&str> = out.split("\r\x1b[2K").filter(|f| !f.is_empty()).collect();
        assert_eq!(frames[0], "[0.5s] vzdump 100");
        assert!(
            frames[1].starts_with("[3.0s] vzdump 100  42%: INFO:"),
            "{frames:?}"
        );
        assert!(frames[1].chars().count() <= 39, "{frames:?}");
        assert!(frames[1].ends_with('…'));
        assert!(out.ends_with("\r\x1b[2K"), "the line is erased at the end");
    }

    #[test]
    fn off_mode_is_not_drawn() {
        let mut p = Progress::new(ProgressMode::Off, &upid(), Vec::new(), 80);
        p.on_lines(&upid(), &["x".into()], Duration::ZERO);
        p.end();
        assert!(p.into_inner().is_empty());
    }
}
