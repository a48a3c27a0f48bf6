//! The audit trail: one record per privileged operation, never forged and never drowned.
//!
//! - **One record is one line.** Every value that reaches a record — the validated request,
//!   an error text that may carry a tool's stderr — goes through the audit policy
//!   ([`felhom_protocol::text::audit_value`], see [`escape`]): control
//!   characters (newline, carriage return, escape sequences, …) become visible `\n`, `\r`,
//!   `\x1b` escapes and the value is bounded, so a tool's output cannot start a second,
//!   legitimate-looking record or recolour a terminal.
//! - **Gaps are visible.** Each record carries `seq`, a number that grows by one per record
//!   (operation records and refusal summaries alike) for the life of the process.
//! - **Noise cannot push records out.** Everything a local client can repeat cheaply — calls
//!   that do not change the host (`hello`, `usb_list`, `smart_scan`, `smart_read`,
//!   `sensors_read`), whatever their outcome (ok, failed, timed out, cancelled), refused
//!   connections, connections over `max_connections`, transport errors — is aggregated by
//!   [`NoiseLimiter`]: the first event per kind (for a call: operation and [`Ending`]) and peer
//!   uid in a window is logged, the rest counted into one summary line ("N more usb_list calls
//!   (ok) from uid U in 10 s"). journald drops a unit's lines past its rate limit, and would
//!   drop real records with them.
//! - **Calls that change the host are always recorded**, one record per call ([`MUTATING`]),
//!   with the facts the operation noted through [`Notes`] (device, devno, diskseq, by-id name).
//!
//! Records are `tracing` events with target `audit` and the fields `seq`, `op`, `peer_uid`,
//! `peer_pid`, `request`, `outcome` and `duration_ms`, then the noted facts `device`, `devno`,
//! `diskseq`, `by_id` when there are any (call summaries: `seq`, `op`, `peer_uid`, `peer_pid`,
//! `outcome`, `calls`; refusal summaries: `seq`, `peer_uid`, `peer_gid`, `peer_pid`, `refused`
//! or `over_cap`), so a structured sink (the journal) gets each as a field.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
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

/// `s` as one printable audit value of at most about [`MAX_VALUE`] bytes: the audit policy,
/// [`felhom_protocol::text::audit_value`] (`\n`, `\r`, `\t`, `\\`, `\xNN` and `\u{…}` escapes,
/// a cut value ends with `…[cut]`).
pub fn escape(s: &str) -> String {
    felhom_protocol::text::audit_value(s, MAX_VALUE)
}

/// The operations that change the host. Each call of one is recorded on its own, whatever
/// its outcome (done, refused, failed, timed out, cancelled); every other call is
/// aggregated per peer uid and window by [`NoiseLimiter`].
pub const MUTATING: [&str; 3] = ["golden_image_create", "usb_mount", "usb_unmount"];

/// Whether `op` changes the host (see [`MUTATING`]).
pub fn is_mutating(op: &str) -> bool {
    MUTATING.contains(&op)
}

/// A fact an operation learned while it ran, carried by its record as an extra field after
/// the fixed ones (`device=`, `devno=`, `diskseq=`, `by_id=` on a plain line;
/// `FELHOM_DEVICE`, `FELHOM_DEVNO`, `FELHOM_DISKSEQ`, `FELHOM_BY_ID` in the journal).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fact {
    /// The device node the operation acted on (`/dev/sdb1`).
    Device,
    /// Its device number, `major:minor` (`8:17`).
    Devno,
    /// Its `diskseq` (the kernel's sequence number of the disk, which a replaced disk changes).
    Diskseq,
    /// Its `/dev/disk/by-id` name (`usb-SanDisk_Ultra_4C53…-0:0-part1`).
    ById,
}

/// The facts of one record, each [`escape`]d and bounded.
#[derive(Debug, Default)]
struct Facts {
    device: Option<String>,
    devno: Option<String>,
    diskseq: Option<String>,
    by_id: Option<String>,
}

/// A handle through which a running operation attaches [`Fact`]s to its audit record. It is
/// cheap to clone and can be moved into the operation's task; the record, written when the
/// operation finishes (or is cancelled), carries whatever was noted by then, so a refusal
/// that happens after the device was identified names it too.
///
/// ```ignore
/// // In the server: the notes of the record travel with the operation.
/// self.detached(r, audit, move |env, notes| Box::pin(async move {
///     let proven = probe(env, &req).await?;
///     notes.note(Fact::Device, proven.path.display());
///     notes.note(Fact::Devno, format_args!("{}:{}", proven.major, proven.minor));
///     notes.note(Fact::Diskseq, proven.diskseq);
///     notes.note(Fact::ById, &proven.by_id);
///     mount(env, proven).await
/// })).await
/// ```
#[derive(Debug, Clone, Default)]
pub struct Notes(Arc<Mutex<Facts>>);

impl Notes {
    /// Attaches `fact` with `value` (escaped, bounded to [`MAX_VALUE`]); a second note of
    /// the same fact replaces the first.
    pub fn note(&self, fact: Fact, value: impl std::fmt::Display) {
        let value = Some(escape(&value.to_string()));
        let mut f = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match fact {
            Fact::Device => f.device = value,
            Fact::Devno => f.devno = value,
            Fact::Diskseq => f.diskseq = value,
            Fact::ById => f.by_id = value,
        }
    }
}

/// How a call ended, for aggregation: calls of one operation from one uid are counted per
/// kind of ending, so the first failure of a kind is logged even after many successes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ending {
    /// It succeeded.
    Ok,
    /// It was refused or failed.
    Failed,
    /// It ran out of time (the server's cap or the client's deadline).
    TimedOut,
    /// It was dropped unfinished (the client went away, its deadline passed, or the helper
    /// is stopping).
    Cancelled,
}

impl Ending {
    fn of(e: &HelperError) -> Ending {
        match e {
            HelperError::TimedOut { .. } => Ending::TimedOut,
            _ => Ending::Failed,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Ending::Ok => "ok",
            Ending::Failed => "failed",
            Ending::TimedOut => "timed out",
            Ending::Cancelled => "cancelled",
        }
    }
}

/// One privileged operation's record: logged once when finished, or as cancelled when
/// dropped unfinished. The record of a call that does not change the host (not in
/// [`MUTATING`]) goes through a [`NoiseLimiter`] when one is given ([`Audit::aggregated`]).
#[derive(Debug)]
pub struct Audit {
    op: &'static str,
    request: String,
    peer: Peer,
    started: tokio::time::Instant,
    done: bool,
    notes: Notes,
    limiter: Option<Arc<NoiseLimiter>>,
}

impl Audit {
    /// Starts the record of `op` with the validated request's debug form.
    pub fn begin(op: &'static str, request: &impl std::fmt::Debug, peer: Peer) -> Self {
        Self {
            op,
            request: escape(&format!("{request:?}")),
            peer,
            started: tokio::time::Instant::now(),
            done: false,
            notes: Notes::default(),
            limiter: None,
        }
    }

    /// Aggregates this record through `limiter`: only the first call of this operation, peer
    /// uid and [`Ending`] in a window is logged in full, the rest are counted into one summary.
    /// Has no effect on a [`MUTATING`] operation, which is always recorded.
    pub fn aggregated(mut self, limiter: &Arc<NoiseLimiter>) -> Self {
        if !is_mutating(self.op) {
            self.limiter = Some(Arc::clone(limiter));
        }
        self
    }

    /// A handle to attach [`Fact`]s to this record (see [`Notes`]).
    pub fn notes(&self) -> Notes {
        self.notes.clone()
    }

    /// Attaches `fact` to this record (see [`Notes::note`]).
    pub fn note(&self, fact: Fact, value: impl std::fmt::Display) {
        self.notes.note(fact, value);
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
            Ok(_) => self.emit("ok", Ending::Ok),
            Err(e) => self.emit(&e.to_string(), Ending::of(e)),
        }
    }

    fn emit(&self, outcome: &str, ending: Ending) {
        if let Some(limiter) = &self.limiter {
            if !limiter.admit(Noise::Call(self.op, ending), self.peer) {
                return;
            }
        }
        let seq = next_seq();
        let ms = self.started.elapsed().as_millis() as u64;
        let outcome = escape(outcome);
        let f = self.notes.0.lock().unwrap_or_else(|p| p.into_inner());
        macro_rules! record {
            ($level:ident) => {
                tracing::$level!(
                    target: "audit",
                    seq,
                    op = self.op,
                    peer_uid = self.peer.uid,
                    peer_pid = self.peer.pid,
                    request = %self.request,
                    outcome = %outcome,
                    duration_ms = ms,
                    device = f.device.as_deref(),
                    devno = f.devno.as_deref(),
                    diskseq = f.diskseq.as_deref(),
                    by_id = f.by_id.as_deref(),
                    "privileged operation"
                )
            };
        }
        if ending == Ending::Ok {
            record!(info);
        } else {
            record!(warn);
        }
    }
}

impl Drop for Audit {
    fn drop(&mut self) {
        if !self.done {
            self.emit(
                "cancelled before it finished (the client went away, or the helper is \
                 stopping); any process it started was ended",
                Ending::Cancelled,
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
    /// A connection closed at accept because `max_connections` were open.
    OverCap,
    /// A connection that ended with an error of its transport (a frame that does not decode,
    /// a reset).
    ConnectionError,
    /// A call of an operation that does not change the host, by how it ended.
    Call(&'static str, Ending),
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
        if self.admit(kind, peer) {
            first(kind, peer);
        }
    }

    /// Counts one event; `true` when it opens a window, and the caller logs it in full.
    pub fn admit(&self, kind: Noise, peer: Peer) -> bool {
        let now = Instant::now();
        let mut map = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_TRACKED && !map.contains_key(&(kind, peer.uid)) {
            Self::drain(&mut map, now, Duration::ZERO, self.window);
        }
        match map.get_mut(&(kind, peer.uid)) {
            Some(w) if now.duration_since(w.started) < self.window => {
                w.suppressed += 1;
                w.last = peer;
                false
            }
            _ => {
                if let Some(old) = map.remove(&(kind, peer.uid)) {
                    summary(kind, &old, self.window);
                }
                map.insert(
                    (kind, peer.uid),
                    Window {
                        started: now,
                        suppressed: 0,
                        last: peer,
                    },
                );
                true
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

/// The record of the first event of a window (a [`Noise::Call`] is logged by its [`Audit`],
/// a [`Noise::ConnectionError`] by the server, with its error).
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
        Noise::OverCap => tracing::warn!(
            target: "audit",
            seq = next_seq(),
            peer_uid = peer.uid,
            peer_gid = peer.gid,
            peer_pid = peer.pid,
            over_cap = 1u64,
            "closed a connection at accept: max_connections are open"
        ),
        Noise::ConnectionError | Noise::Call(..) => {}
    }
}

fn summary(kind: Noise, w: &Window, window: Duration) {
    if w.suppressed == 0 {
        return;
    }
    let secs = window.as_secs().max(1);
    let (n, uid) = (w.suppressed, w.last.uid);
    match kind {
        Noise::Hello => tracing::info!(
            peer_uid = uid,
            peer_pid = w.last.pid,
            hellos = n,
            "{n} more hello calls from uid {uid} in {secs} s"
        ),
        Noise::Refused => tracing::warn!(
            target: "audit",
            seq = next_seq(),
            peer_uid = uid,
            peer_gid = w.last.gid,
            peer_pid = w.last.pid,
            refused = n,
            "{n} more refused connections from uid {uid} in {secs} s"
        ),
        Noise::OverCap => tracing::warn!(
            target: "audit",
            seq = next_seq(),
            peer_uid = uid,
            peer_gid = w.last.gid,
            peer_pid = w.last.pid,
            over_cap = n,
            "{n} more connections closed at accept (max_connections open) from uid {uid} \
             in {secs} s"
        ),
        Noise::ConnectionError => tracing::warn!(
            peer_uid = uid,
            peer_pid = w.last.pid,
            errors = n,
            "{n} more connections from uid {uid} ended with a transport error in {secs} s"
        ),
        Noise::Call(op, ending) => tracing::info!(
            target: "audit",
            seq = next_seq(),
            op,
            peer_uid = uid,
            peer_pid = w.last.pid,
            outcome = ending.as_str(),
            calls = n,
            "{n} more {op} calls ({}) from uid {uid} in {secs} s",
            ending.as_str()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_keeps_one_record_on_one_line() {
        // The policy itself is tested in felhom_protocol::text; this is the record's bound.
        let forged = "mount failed\nINFO audit: seq=9\r\x1b[31m";
        assert_eq!(
            escape(forged),
            "mount failed\\nINFO audit: seq=9\\r\\x1b[31m"
        );
        let e = escape(&"a".repeat(10_000));
        assert_eq!(e, format!("{}…[cut]", "a".repeat(MAX_VALUE)));
    }

    fn peer(uid: u32) -> Peer {
        Peer {
            uid,
            gid: uid,
            pid: Some(1),
        }
    }

    #[test]
    fn calls_are_aggregated_per_operation_ending_and_uid() {
        let l = NoiseLimiter::new(Duration::from_secs(3600));
        let ok = Noise::Call("usb_list", Ending::Ok);
        assert!(l.admit(ok, peer(0)));
        assert!(!l.admit(ok, peer(0)));
        assert!(!l.admit(ok, peer(0)));
        // Another uid, another ending, another operation: each opens its own window.
        assert!(l.admit(ok, peer(7)));
        assert!(l.admit(Noise::Call("usb_list", Ending::TimedOut), peer(0)));
        assert!(l.admit(Noise::Call("smart_scan", Ending::Ok), peer(0)));
        // A window that is over opens again.
        let short = NoiseLimiter::new(Duration::ZERO);
        assert!(short.admit(ok, peer(0)));
        assert!(short.admit(ok, peer(0)));
    }

    /// Counts the audit records written, by level.
    fn records(emit: impl FnOnce()) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.sock");
        let server = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        server
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let j = crate::logging::JournalLayer::connect(&path).unwrap();
        let filter = crate::logging::Filter::default();
        tracing::subscriber::with_default(
            crate::logging::HelperSubscriber::journal(filter, j),
            emit,
        );
        let mut buf = vec![0u8; 65536];
        let mut out = Vec::new();
        while let Ok(n) = server.recv(&mut buf) {
            if n > 0 {
                out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
        out
    }

    #[tokio::test]
    async fn mutating_calls_are_recorded_one_by_one_and_cheap_ones_aggregated() {
        let limiter = Arc::new(NoiseLimiter::new(Duration::from_secs(3600)));
        let out = records(|| {
            for _ in 0..50 {
                Audit::begin("usb_list", &(), peer(0))
                    .aggregated(&limiter)
                    .finish::<()>(&Ok(()));
                Audit::begin("usb_unmount", &"x", peer(0))
                    .aggregated(&limiter)
                    .fail::<()>(HelperError::NotFound { what: "x".into() })
                    .ok();
                // Dropped unfinished: a cancelled cheap call.
                drop(Audit::begin("sensors_read", &(), peer(0)).aggregated(&limiter));
            }
            limiter.flush(true);
        });
        let count = |needle: &str| out.iter().filter(|e| e.contains(needle)).count();
        assert_eq!(count("FELHOM_OP=usb_unmount\n"), 50, "{out:#?}");
        // One full record and one summary each.
        assert_eq!(count("FELHOM_OP=usb_list\n"), 2, "{out:#?}");
        assert!(
            out.iter()
                .any(|e| e.contains("49 more usb_list calls (ok) from uid 0"))
        );
        assert_eq!(count("FELHOM_OP=sensors_read\n"), 2, "{out:#?}");
        assert!(
            out.iter()
                .any(|e| e.contains("FELHOM_CALLS=49") && e.contains("cancelled"))
        );
    }

    #[tokio::test]
    async fn noted_facts_follow_the_fixed_fields() {
        let out = records(|| {
            let a = Audit::begin("usb_mount", &"req", peer(0));
            let notes = a.notes();
            notes.note(Fact::Device, "/dev/sdb1");
            notes.note(Fact::Devno, "8:17");
            notes.note(Fact::Diskseq, 42);
            a.note(Fact::ById, "usb-Stick_123-0:0-part1\u{202e}");
            a.finish::<()>(&Ok(()));
        });
        assert_eq!(out.len(), 1, "{out:#?}");
        let e = &out[0];
        let at = |k: &str| e.find(k).unwrap_or_else(|| panic!("no {k} in {e}"));
        assert!(
            at("FELHOM_DURATION_MS=") < at("FELHOM_DEVICE=/dev/sdb1\n"),
            "{e}"
        );
        assert!(e.contains("FELHOM_DEVNO=8:17\n"), "{e}");
        assert!(e.contains("FELHOM_DISKSEQ=42\n"), "{e}");
        assert!(
            e.contains("FELHOM_BY_ID=usb-Stick_123-0:0-part1\\u{202e}\n"),
            "{e}"
        );
    }

    #[test]
    fn sequence_numbers_grow() {
        let a = next_seq();
        let b = next_seq();
        assert!(b > a);
    }
}
