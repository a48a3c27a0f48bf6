//! The audit trail: one record per privileged operation, never forged and never drowned.
//!
//! - **One record is one line.** Every value that reaches a record — the validated request,
//!   an error text that may carry a tool's stderr — goes through [`escape`]: control
//!   characters (newline, carriage return, escape sequences, …) become visible `\n`, `\r`,
//!   `\x1b` escapes and the value is bounded, so a tool's output cannot start a second,
//!   legitimate-looking record or recolour a terminal.
//! - **Gaps are visible.** Each record carries `seq`, a number that grows by one per record
//!   (operation records and refusal summaries alike) for the life of the process.
//! - **Noise cannot push records out.** `hello` calls and refused connections are the cheap
//!   events a local client can repeat thousands of times a second; journald drops a unit's
//!   lines past its rate limit, and would drop real records with them. [`NoiseLimiter`] logs
//!   the first such event per kind and peer uid in a window and counts the rest into one
//!   summary line ("N refused connections from uid U in the last 10 s").
//!
//! Records are `tracing` events with target `audit` and the fields `seq`, `op`, `peer_uid`,
//! `peer_pid`, `request`, `outcome` and `duration_ms` (refusal summaries: `seq`, `peer_uid`,
//! `peer_gid`, `peer_pid`, `refused`), so a structured sink (the journal) gets each as a field.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use felhom_protocol::HelperError;

use crate::listener::Peer;

/// Longest value (in bytes, before escaping) a record carries; the rest is cut with a marker.
pub const MAX_VALUE: usize = 2048;

/// The aggregation window of [`NoiseLimiter`].
pub const NOISE_WINDOW: Duration = Duration::from_secs(10);

static SEQ: AtomicU64 = AtomicU64::new(1);

/// The next record number.
pub fn next_seq() -> u64 {
    SEQ.fetch_add(1, Ordering::Relaxed)
}

/// `s` as one printable line of at most about `max` bytes: `\n`, `\r`, `\t` and `\\` are
/// written as such, every other control character (C0, DEL, C1) as `\xNN` or `\u{NN}`, and a
/// cut value ends with `…[cut]`.
pub fn escape(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max) + 8);
    for (i, c) in s.char_indices() {
        if i >= max {
            out.push_str("…[cut]");
            break;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// One privileged operation's record: logged once when finished, or as cancelled when
/// dropped unfinished.
#[derive(Debug)]
pub struct Audit {
    op: &'static str,
    request: String,
    peer: Peer,
    started: tokio::time::Instant,
    done: bool,
}

impl Audit {
    /// Starts the record of `op` with the validated request's debug form.
    pub fn begin(op: &'static str, request: &impl std::fmt::Debug, peer: Peer) -> Self {
        Self {
            op,
            request: escape(&format!("{request:?}"), MAX_VALUE),
            peer,
            started: tokio::time::Instant::now(),
            done: false,
        }
    }

    /// Logs the outcome and returns the error.
    pub fn fail<T>(self, e: HelperError) -> Result<T, HelperError> {
        let result = Err(e);
        self.finish(&result);
        result
    }

    /// Logs the outcome.
    pub fn finish<T>(mut self, result: &Result<T, HelperError>) {
        self.done = true;
        match result {
            Ok(_) => self.emit("ok", false),
            Err(e) => self.emit(&e.to_string(), true),
        }
    }

    fn emit(&self, outcome: &str, failed: bool) {
        let seq = next_seq();
        let ms = self.started.elapsed().as_millis() as u64;
        let outcome = escape(outcome, MAX_VALUE);
        if failed {
            tracing::warn!(
                target: "audit",
                seq,
                op = self.op,
                peer_uid = self.peer.uid,
                peer_pid = self.peer.pid,
                request = %self.request,
                outcome = %outcome,
                duration_ms = ms,
                "privileged operation"
            );
        } else {
            tracing::info!(
                target: "audit",
                seq,
                op = self.op,
                peer_uid = self.peer.uid,
                peer_pid = self.peer.pid,
                request = %self.request,
                outcome = %outcome,
                duration_ms = ms,
                "privileged operation"
            );
        }
    }
}

impl Drop for Audit {
    fn drop(&mut self) {
        if !self.done {
            self.emit(
                "cancelled before it finished (the client went away, or the helper is \
                 stopping); any process it started was ended",
                true,
            );
        }
    }
}

/// A noisy event kind that [`NoiseLimiter`] aggregates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Noise {
    /// A `hello` call (every new agent connection makes one).
    Hello,
    /// A connection refused by the peer check.
    Refused,
}

#[derive(Debug)]
struct Window {
    started: Instant,
    suppressed: u64,
    last: Peer,
}

/// Logs the first event of each kind per peer uid in a [`NOISE_WINDOW`], counts the rest and
/// logs the count once the window is over (on the next event, or at [`NoiseLimiter::flush`],
/// which the server calls every window and at exit).
#[derive(Debug)]
pub struct NoiseLimiter {
    window: Duration,
    windows: Mutex<HashMap<(Noise, u32), Window>>,
}

/// Most peers tracked at once; past it the oldest windows are summarized early.
const MAX_TRACKED: usize = 1024;

impl NoiseLimiter {
    /// A limiter with the given window.
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Notes one event: logs it if it opens a window, else counts it.
    pub fn note(&self, kind: Noise, peer: Peer) {
        let now = Instant::now();
        let mut map = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_TRACKED && !map.contains_key(&(kind, peer.uid)) {
            Self::drain(&mut map, now, Duration::ZERO, self.window);
        }
        match map.get_mut(&(kind, peer.uid)) {
            Some(w) if now.duration_since(w.started) < self.window => {
                w.suppressed += 1;
                w.last = peer;
            }
            _ => {
                if let Some(old) = map.remove(&(kind, peer.uid)) {
                    summary(kind, &old, self.window);
                }
                first(kind, peer);
                map.insert(
                    (kind, peer.uid),
                    Window {
                        started: now,
                        suppressed: 0,
                        last: peer,
                    },
                );
            }
        }
    }

    /// Logs the counts of the windows that are over (all of them with `all`) and forgets them.
    pub fn flush(&self, all: bool) {
        let now = Instant::now();
        let mut map = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let age = if all { Duration::ZERO } else { self.window };
        Self::drain(&mut map, now, age, self.window);
    }

    fn drain(
        map: &mut HashMap<(Noise, u32), Window>,
        now: Instant,
        age: Duration,
        window: Duration,
    ) {
        map.retain(|(kind, _), w| {
            if now.duration_since(w.started) >= age {
                summary(*kind, w, window);
                false
            } else {
                true
            }
        });
    }
}

fn first(kind: Noise, peer: Peer) {
    match kind {
        Noise::Hello => tracing::info!(
            peer_uid = peer.uid,
            peer_pid = peer.pid,
            "hello (further hello calls from this uid are counted for {} s)",
            NOISE_WINDOW.as_secs()
        ),
        Noise::Refused => tracing::warn!(
            target: "audit",
            seq = next_seq(),
            peer_uid = peer.uid,
            peer_gid = peer.gid,
            peer_pid = peer.pid,
            refused = 1u64,
            "refused a connection from a uid that is not allowed"
        ),
    }
}

fn summary(kind: Noise, w: &Window, window: Duration) {
    if w.suppressed == 0 {
        return;
    }
    let secs = window.as_secs().max(1);
    match kind {
        Noise::Hello => tracing::info!(
            peer_uid = w.last.uid,
            peer_pid = w.last.pid,
            hellos = w.suppressed,
            "{} more hello calls from uid {} in {secs} s",
            w.suppressed,
            w.last.uid
        ),
        Noise::Refused => tracing::warn!(
            target: "audit",
            seq = next_seq(),
            peer_uid = w.last.uid,
            peer_gid = w.last.gid,
            peer_pid = w.last.pid,
            refused = w.suppressed,
            "{} more refused connections from uid {} in {secs} s",
            w.suppressed,
            w.last.uid
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_keeps_one_record_on_one_line() {
        let forged = "mount failed\nINFO audit: seq=9 op=\"usb_mount\" outcome=ok\r\x1b[31mred\x1b[0m\ttab\\";
        let e = escape(forged, MAX_VALUE);
        assert!(!e.contains('\n') && !e.contains('\r') && !e.contains('\x1b'));
        assert!(!e.chars().any(char::is_control), "{e:?}");
        assert_eq!(
            e,
            "mount failed\\nINFO audit: seq=9 op=\"usb_mount\" outcome=ok\\r\\x1b[31mred\\x1b[0m\\ttab\\\\"
        );
        assert_eq!(escape("\u{0}\u{7f}\u{85}é", 100), "\\x00\\x7f\\u{85}é");
    }

    #[test]
    fn escaping_bounds_the_value() {
        let long = "a".repeat(10_000);
        let e = escape(&long, 100);
        assert_eq!(e, format!("{}…[cut]", "a".repeat(100)));
        // A cut never splits a character.
        let e = escape(&"é".repeat(100), 11);
        assert!(e.ends_with("…[cut]"));
    }

    #[test]
    fn sequence_numbers_grow() {
        let a = next_seq();
        let b = next_seq();
        assert!(b > a);
    }
}
