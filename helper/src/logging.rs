//! Logging: journal entries with fields under systemd, one plain line per event elsewhere.
//!
//! - **Under systemd** (`JOURNAL_STREAM` names the device and inode of stderr, see
//!   [`felhom_protocol::journal::stderr_is_journal`], shared with the agent) every event is sent straight to journald over its native protocol
//!   (one datagram to [`JOURNAL_SOCKET`]): the level as `PRIORITY`, the message as `MESSAGE`,
//!   every other field as `FELHOM_<NAME>` (upper case), the target as `FELHOM_TARGET`. Events
//!   with target `audit` (the records of privileged operations and of refused connections)
//!   also carry `MESSAGE_ID=`[`AUDIT_MESSAGE_ID`], so
//!   `journalctl MESSAGE_ID=… FELHOM_OP=usb_mount` finds them. If a datagram cannot be sent,
//!   the same event is written to stderr as a plain line instead (so an audit record is never
//!   silently lost).
//! - **Writing never blocks a request.** Entries go through a bounded queue of
//!   [`JOURNAL_QUEUE`] entries to one writer thread, the only code that waits for journald.
//!   When journald stalls and the queue is full, an entry is counted instead of queued; the
//!   next entry the writer gets through is followed by a record `dropped N records` (target
//!   `audit`, field `FELHOM_DROPPED`). A dropped record of an operation that changes the host
//!   (see [`crate::audit::MUTATING`]) is also written to stderr as a plain line, without
//!   waiting (a stderr socket that would block loses the line, and the count says so).
//! - **Elsewhere** each event is one line on stderr, without colour escapes:
//!   `2026-12-02T01:02:03.456789Z  INFO target: message name="text" number=7`.
//!
//! Either way the text is made safe first, by the log-line policy shared with the agent
//! ([`felhom_protocol::text::log_value`], through [`clean`]): control characters in values
//! (escape sequences, newlines) and the invisible format characters of
//! [`felhom_protocol::text::is_invisible`] (line separators, bidi controls, zero-width
//! characters) are written escaped (`\u{1b}`, `\n`, `\u{202e}`), so a value cannot forge a second line, reorder or hide text, or send a
//! terminal escape, and journalctl never has to show a field as a blob. Every value is
//! bounded to [`MAX_VALUE_BYTES`] and an entry to [`MAX_FIELDS`] fields, so one entry always
//! fits one datagram.
//!
//! Which events are written is decided once, per call site, by a [`Filter`] (`RUST_LOG`
//! syntax without regular expressions; default [`DEFAULT_FILTER`]). Its default keeps tarpc's
//! own spans and events out: per request they would cost a span with formatted fields, and
//! its per-connection lines (`DeadlineExceeded`, `Requests stream errored out`) are not
//! aggregated; the helper's own records say the same, aggregated per uid (a call that runs
//! out of time is recorded as timed out or cancelled, a transport error by the server).
//!
//! The [`HelperSubscriber`], the filter and the native protocol are written here by hand
//! (a few hundred lines) rather than taken from `tracing-subscriber` and a journald crate: the
//! helper has no spans of its own to track, the root process's dependency tree stays small
//! (no registry, no regex engine, no formatter), it can fall back to stderr when journald is
//! away, and it can be tested against a socket of the test's own.

use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::time::Duration;
use std::time::{SystemTime, UNIX_EPOCH};

use felhom_protocol::civil::DateTime;
use felhom_protocol::journal::stderr_is_journal;
use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};

/// journald's socket for the native protocol.
pub const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

/// `MESSAGE_ID` of every audit entry (fixed; generated once for felhom-helper).
pub const AUDIT_MESSAGE_ID: &str = "848502c4b01247f996a33908f7914733";

/// Prefix of the journal fields made from an event's fields.
pub const FIELD_PREFIX: &str = "FELHOM_";

/// `SYSLOG_IDENTIFIER` of the helper's journal entries.
pub const SYSLOG_IDENTIFIER: &str = "felhom-helper";

/// The longest value (bytes) written to a journal field or a log line; longer ones are cut
/// and end in `…`.
pub const MAX_VALUE_BYTES: usize = 2048;

/// The most fields of one event that are written; the rest are dropped.
pub const MAX_FIELDS: usize = 32;

/// The filter when `RUST_LOG` is unset or empty: `info`, with tarpc's spans and events left
/// out (the helper records calls, timeouts and transport errors itself, aggregated).
pub const DEFAULT_FILTER: &str = "info,tarpc=off";

/// The most entries waiting for the journal writer; past it entries are dropped and counted.
pub const JOURNAL_QUEUE: usize = 1024;

/// Sets up the process's logging (see the module documentation). `RUST_LOG` overrides
/// [`DEFAULT_FILTER`]; a value that does not parse is reported and the default is used.
pub fn init() {
    let (filter, bad) = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() => match spec.parse::<Filter>() {
            Ok(f) => (f, None),
            Err(e) => (Filter::default(), Some(e)),
        },
        _ => (Filter::default(), None),
    };
    let sink = if stderr_is_journal() {
        match JournalLayer::connect(Path::new(JOURNAL_SOCKET)) {
            Ok(j) => {
                let _ = PENDING.set(j.pending());
                Sink::Journal(j)
            }
            Err(_) => Sink::Stderr,
        }
    } else {
        Sink::Stderr
    };
    // Only fails when a global subscriber is already set (a second init): keep that one.
    let _ = tracing::subscriber::set_global_default(HelperSubscriber { filter, sink });
    if let Some(e) = bad {
        tracing::warn!("RUST_LOG ignored ({e}); using {DEFAULT_FILTER:?}");
    }
}

/// The queue of the process's journal writer, for [`flush`].
static PENDING: OnceLock<Arc<AtomicUsize>> = OnceLock::new();

/// Waits up to `max` for the journal writer to send what is queued (call it before the
/// process exits, whose end would otherwise cut the queue off); `true` once it is empty.
/// Returns at once when the process does not log to the journal.
pub fn flush(max: Duration) -> bool {
    match PENDING.get() {
        Some(p) => wait_empty(p, max),
        None => true,
    }
}

fn wait_empty(pending: &AtomicUsize, max: Duration) -> bool {
    let until = std::time::Instant::now() + max;
    while pending.load(Ordering::Acquire) > 0 {
        if std::time::Instant::now() >= until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    true
}

/// Which events are written: a level for every target, and levels for targets and their
/// modules (`RUST_LOG` syntax without spans or regular expressions:
/// `warn,felhom_helper=debug,tarpc=off`). The most specific target wins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    default: LevelFilter,
    /// (target, level), longest target first.
    targets: Vec<(String, LevelFilter)>,
}

impl Default for Filter {
    fn default() -> Self {
        // The constant is known to parse (a unit test checks it).
        DEFAULT_FILTER.parse().unwrap_or(Filter {
            default: LevelFilter::INFO,
            targets: Vec::new(),
        })
    }
}

impl std::str::FromStr for Filter {
    type Err = String;

    fn from_str(spec: &str) -> Result<Filter, String> {
        let mut filter = Filter {
            default: LevelFilter::ERROR,
            targets: Vec::new(),
        };
        for directive in spec.split(',').map(str::trim).filter(|d| !d.is_empty()) {
            let level = |s: &str| {
                s.trim().parse::<LevelFilter>().map_err(|_| {
                    format!("{s:?} is not a level (off, error, warn, info, debug, trace)")
                })
            };
            match directive.split_once('=') {
                None => match level(directive) {
                    Ok(l) => filter.default = l,
                    // A bare target means "everything from it".
                    Err(_) if is_target(directive) => filter
                        .targets
                        .push((directive.to_string(), LevelFilter::TRACE)),
                    Err(e) => return Err(e),
                },
                Some((target, l)) if is_target(target.trim()) => {
                    filter.targets.push((target.trim().to_string(), level(l)?));
                }
                Some((target, _)) => return Err(format!("{target:?} is not a target")),
            }
        }
        filter.targets.sort_by_key(|t| std::cmp::Reverse(t.0.len()));
        Ok(filter)
    }
}

fn is_target(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | ':' | '-'))
}

impl Filter {
    /// The level that applies to `target`.
    pub fn level_for(&self, target: &str) -> LevelFilter {
        self.targets
            .iter()
            .find(|(t, _)| {
                target
                    .strip_prefix(t.as_str())
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
            })
            .map_or(self.default, |(_, l)| *l)
    }

    /// Whether an event or span with this metadata is written.
    pub fn enabled(&self, meta: &Metadata<'_>) -> bool {
        *meta.level() <= self.level_for(meta.target())
    }

    /// The most verbose level any target gets.
    pub fn max_level(&self) -> LevelFilter {
        self.targets
            .iter()
            .map(|(_, l)| *l)
            .fold(self.default, std::cmp::max)
    }
}

/// Where the written events go.
#[derive(Debug)]
enum Sink {
    Journal(JournalLayer),
    Stderr,
}

/// The helper's `tracing` subscriber: the [`Filter`] decides per call site (once, cached by
/// `tracing`), each enabled event goes to the journal or stderr. Spans are not tracked (the
/// helper opens none; the default filter keeps tarpc's out).
#[derive(Debug)]
pub struct HelperSubscriber {
    filter: Filter,
    sink: Sink,
}

impl HelperSubscriber {
    /// A subscriber writing plain lines to stderr.
    pub fn stderr(filter: Filter) -> HelperSubscriber {
        HelperSubscriber {
            filter,
            sink: Sink::Stderr,
        }
    }

    /// A subscriber sending journal entries through `journal`.
    pub fn journal(filter: Filter, journal: JournalLayer) -> HelperSubscriber {
        HelperSubscriber {
            filter,
            sink: Sink::Journal(journal),
        }
    }
}

impl Subscriber for HelperSubscriber {
    fn register_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
        if self.filter.enabled(meta) {
            Interest::always()
        } else {
            Interest::never()
        }
    }

    fn enabled(&self, meta: &Metadata<'_>) -> bool {
        self.filter.enabled(meta)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(self.filter.max_level())
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        // Spans are not tracked; every one gets the same (non-zero) id.
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        match &self.sink {
            Sink::Journal(j) => j.send(event),
            Sink::Stderr => {
                let meta = event.metadata();
                let line = plain_line(
                    SystemTime::now(),
                    meta.level(),
                    meta.target(),
                    &Fields::of(event),
                );
                let _ = std::io::stderr().lock().write_all(line.as_bytes());
            }
        }
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

/// One event's fields, made safe and bounded.
#[derive(Debug, Default)]
struct Fields {
    message: String,
    /// (journal field name without prefix, value, whether the value is text)
    fields: Vec<(String, String, bool)>,
}

impl Fields {
    fn of(event: &Event<'_>) -> Fields {
        let mut f = Fields::default();
        event.record(&mut f);
        f
    }

    fn push(&mut self, field: &Field, value: &str, text: bool) {
        if field.name() == "message" {
            self.message = clean(value);
        } else if self.fields.len() < MAX_FIELDS {
            self.fields
                .push((field_name(field.name()), clean(value), text));
        }
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.push(field, value, true);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        // One byte over the bound is enough for `clean` to mark the cut.
        let mut s = Bounded {
            out: String::new(),
            limit: MAX_VALUE_BYTES + 1,
        };
        let _ = write!(s, "{value:?}");
        self.push(field, &s.out, false);
    }
}

/// A `fmt::Write` that keeps at most `limit` bytes and then stops the formatting, so a huge
/// `Debug` value is never formatted in full.
struct Bounded {
    out: String,
    limit: usize,
}

impl std::fmt::Write for Bounded {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let room = self.limit.saturating_sub(self.out.len());
        if s.len() <= room {
            self.out.push_str(s);
            return Ok(());
        }
        let mut end = room;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        self.out.push_str(&s[..end]);
        Err(std::fmt::Error)
    }
}

/// A tracing field name as a journal field name (without the prefix): upper case, only
/// `A-Z`, `0-9` and `_`, not starting with `_` (such names are trusted fields in journald).
fn field_name(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    let s = s.trim_start_matches('_');
    if s.is_empty() {
        "FIELD".to_string()
    } else {
        s.chars().take(48).collect()
    }
}

/// A value with its control characters and invisible format characters escaped, cut to
/// [`MAX_VALUE_BYTES`]: the log-line policy, [`felhom_protocol::text::log_value`].
pub fn clean(value: &str) -> String {
    felhom_protocol::text::log_value(value, MAX_VALUE_BYTES)
}

fn priority(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

/// One entry in journald's native format (`NAME=value\n` per field; all values are free of
/// newlines after [`clean`]).
fn encode(level: &Level, target: &str, f: &Fields) -> Vec<u8> {
    let mut buf = Vec::with_capacity(256);
    let mut put = |name: &str, value: &str| {
        buf.extend_from_slice(name.as_bytes());
        buf.push(b'=');
        buf.extend_from_slice(value.as_bytes());
        buf.push(b'\n');
    };
    put("PRIORITY", &priority(level).to_string());
    put("SYSLOG_IDENTIFIER", SYSLOG_IDENTIFIER);
    put("MESSAGE", &f.message);
    if target == "audit" {
        put("MESSAGE_ID", AUDIT_MESSAGE_ID);
    }
    put(&format!("{FIELD_PREFIX}TARGET"), &clean(target));
    for (name, value, _) in &f.fields {
        put(&format!("{FIELD_PREFIX}{name}"), value);
    }
    buf
}

/// `at` as an RFC 3339 UTC timestamp with microseconds (the shared calendar,
/// [`felhom_protocol::civil`]).
fn timestamp(at: SystemTime) -> String {
    let d = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let t = DateTime::from_unix_u64(d.as_secs());
    format!("{}T{}.{:06}Z", t.date(), t.time(), d.subsec_micros())
}

/// The event as one plain line: `TIME LEVEL target: message name="text" name=value …`
/// (text values quoted, other values bare), for stderr and for when journald cannot take it.
fn plain_line(at: SystemTime, level: &Level, target: &str, f: &Fields) -> String {
    let mut line = format!(
        "{} {level:>5} {}: {}",
        timestamp(at),
        clean(target),
        f.message
    );
    for (name, value, text) in &f.fields {
        let name = name.to_ascii_lowercase();
        if *text {
            let _ = write!(line, " {name}=\"{}\"", value.replace('"', "\\\""));
        } else {
            let _ = write!(line, " {name}={value}");
        }
    }
    line.push('\n');
    line
}

/// Sends events as journal entries through a bounded queue and a writer thread (see the
/// module documentation).
#[derive(Debug)]
pub struct JournalLayer {
    queue: SyncSender<Queued>,
    dropped: Arc<AtomicU64>,
    /// Entries queued and not yet written.
    pending: Arc<AtomicUsize>,
    fallback: Fallback,
}

/// One event waiting for the writer thread.
#[derive(Debug)]
struct Queued {
    at: SystemTime,
    level: Level,
    target: &'static str,
    fields: Fields,
}

/// Where plain lines go when the journal does not take an entry.
#[derive(Debug, Clone)]
enum Fallback {
    Stderr,
    /// A test's buffer.
    #[cfg(test)]
    Capture(Arc<std::sync::Mutex<Vec<u8>>>),
}

impl Fallback {
    /// Writes `line`; with `wait` false (the logging side, which must never block) to a
    /// stderr socket (the journal stream under systemd) with `MSG_DONTWAIT`, to anything else
    /// with a plain write.
    fn write(&self, line: &[u8], wait: bool) {
        match self {
            Fallback::Stderr if wait => {
                let _ = std::io::stderr().lock().write_all(line);
            }
            Fallback::Stderr => {
                use nix::sys::socket::{MsgFlags, send};
                let fd = std::io::stderr();
                let flags = MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL;
                let sent = send(std::os::fd::AsRawFd::as_raw_fd(&fd), line, flags);
                if sent == Err(nix::errno::Errno::ENOTSOCK) {
                    let _ = fd.lock().write_all(line);
                }
            }
            #[cfg(test)]
            Fallback::Capture(buf) => buf
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend_from_slice(line),
        }
    }
}

impl JournalLayer {
    /// A sender to the journal socket at `path`; fails when nothing listens there.
    pub fn connect(path: &Path) -> std::io::Result<JournalLayer> {
        Self::with_fallback(path, Fallback::Stderr)
    }

    fn with_fallback(path: &Path, fallback: Fallback) -> std::io::Result<JournalLayer> {
        let socket = UnixDatagram::unbound()?;
        // journald discards an empty datagram; this only proves that it listens. Sent before
        // the socket is used by the writer, and without waiting: a journal that does not even
        // take this is treated as absent.
        socket.set_nonblocking(true)?;
        match socket.send_to(&[], path) {
            // A journal whose queue is full is there, only slow.
            Err(e) if e.kind() != std::io::ErrorKind::WouldBlock => return Err(e),
            _ => {}
        }
        socket.set_nonblocking(false)?;
        let (queue, rx) = std::sync::mpsc::sync_channel(JOURNAL_QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let pending = Arc::new(AtomicUsize::new(0));
        let writer = Writer {
            socket,
            path: path.to_path_buf(),
            dropped: Arc::clone(&dropped),
            pending: Arc::clone(&pending),
            fallback: fallback.clone(),
        };
        std::thread::Builder::new()
            .name("journal".into())
            .spawn(move || writer.run(rx))?;
        Ok(JournalLayer {
            queue,
            dropped,
            pending,
            fallback,
        })
    }

    /// The count of entries queued and not yet written.
    fn pending(&self) -> Arc<AtomicUsize> {
        Arc::clone(&self.pending)
    }

    /// Queues one event for the writer; never waits. When the queue is full the event is
    /// counted as dropped, and written to stderr when it is the record of a mutating call.
    fn send(&self, event: &Event<'_>) {
        let meta = event.metadata();
        let item = Queued {
            at: SystemTime::now(),
            level: *meta.level(),
            target: meta.target(),
            fields: Fields::of(event),
        };
        self.pending.fetch_add(1, Ordering::AcqRel);
        match self.queue.try_send(item) {
            Ok(()) => {}
            Err(TrySendError::Full(item)) => {
                self.pending.fetch_sub(1, Ordering::AcqRel);
                self.dropped.fetch_add(1, Ordering::Relaxed);
                if is_mutating_record(item.target, &item.fields) {
                    self.fallback.write(item.plain().as_bytes(), false);
                }
            }
            Err(TrySendError::Disconnected(item)) => {
                self.pending.fetch_sub(1, Ordering::AcqRel);
                self.fallback.write(item.plain().as_bytes(), false);
            }
        }
    }
}

/// Whether an event is the audit record of an operation that changes the host.
fn is_mutating_record(target: &str, f: &Fields) -> bool {
    target == "audit"
        && f.fields
            .iter()
            .any(|(name, value, _)| name == "OP" && crate::audit::is_mutating(value))
}

impl Queued {
    fn plain(&self) -> String {
        plain_line(self.at, &self.level, self.target, &self.fields)
    }
}

/// The journal writer thread: the only place that waits for journald.
struct Writer {
    socket: UnixDatagram,
    path: PathBuf,
    dropped: Arc<AtomicU64>,
    pending: Arc<AtomicUsize>,
    fallback: Fallback,
}

impl Writer {
    fn run(self, rx: Receiver<Queued>) {
        while let Ok(item) = rx.recv() {
            self.write(&item);
            let n = self.dropped.swap(0, Ordering::Relaxed);
            if n > 0 {
                self.write(&dropped_record(n));
            }
            self.pending.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Sends one entry, waiting as long as journald makes it; a plain line on stderr if
    /// the journal refuses it.
    fn write(&self, item: &Queued) {
        let entry = encode(&item.level, item.target, &item.fields);
        if self.socket.send_to(&entry, &self.path).is_err() {
            self.fallback.write(item.plain().as_bytes(), true);
        }
    }
}

/// The record that says `n` entries were dropped because the queue was full.
fn dropped_record(n: u64) -> Queued {
    let seq = crate::audit::next_seq().to_string();
    Queued {
        at: SystemTime::now(),
        level: Level::WARN,
        target: "audit",
        fields: Fields {
            message: format!(
                "dropped {n} records: the journal did not take them in time (queue of \
                 {JOURNAL_QUEUE} entries full)"
            ),
            fields: vec![
                ("SEQ".into(), seq, false),
                ("DROPPED".into(), n.to_string(), false),
            ],
        },
    }
}

#[cfg(test)]
mod tests;
