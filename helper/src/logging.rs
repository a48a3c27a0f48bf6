//! Logging: journal entries with fields under systemd, one plain line per event elsewhere.
//!
//! - **Under systemd** (`JOURNAL_STREAM` names the device and inode of stderr, see
//!   [`stderr_is_journal`]) every event is sent straight to journald over its native protocol
//!   (one datagram to [`JOURNAL_SOCKET`]): the level as `PRIORITY`, the message as `MESSAGE`,
//!   every other field as `FELHOM_<NAME>` (upper case), the target as `FELHOM_TARGET`. Events
//!   with target `audit` (the records of privileged operations and of refused connections)
//!   also carry `MESSAGE_ID=`[`AUDIT_MESSAGE_ID`], so
//!   `journalctl MESSAGE_ID=… FELHOM_OP=usb_mount` finds them. If a datagram cannot be sent,
//!   the same event is written to stderr as a plain line instead (so an audit record is never
//!   silently lost).
//! - **Elsewhere** each event is one line on stderr, without colour escapes:
//!   `2026-12-02T01:02:03.456789Z  INFO target: message name="text" number=7`.
//!
//! Either way the text is made safe first: control characters in values (escape sequences,
//! newlines) are written escaped (`\u{1b}`, `\n`), so a value cannot forge a second line or
//! a terminal escape, and journalctl never has to show a field as a blob. Every value is
//! bounded to [`MAX_VALUE_BYTES`] and an entry to [`MAX_FIELDS`] fields, so one entry always
//! fits one datagram.
//!
//! Which events are written is decided once, per call site, by a [`Filter`] (`RUST_LOG`
//! syntax without regular expressions; default [`DEFAULT_FILTER`]). Its default keeps tarpc's
//! own per-request span and events out: they would cost every call a span with formatted
//! fields, and the helper's audit records already say what each privileged call did.
//!
//! The [`HelperSubscriber`], the filter and the native protocol are written here by hand
//! (a few hundred lines) rather than taken from `tracing-subscriber` and a journald crate: the
//! helper has no spans of its own to track, the root process's dependency tree stays small
//! (no registry, no regex engine, no formatter), it can fall back to stderr when journald is
//! away, and it can be tested against a socket of the test's own.

use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

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

/// The filter when `RUST_LOG` is unset or empty: `info`, with tarpc's per-request span and
/// events (`info` and below) left out.
pub const DEFAULT_FILTER: &str = "info,tarpc=warn";

/// Whether `JOURNAL_STREAM` (`"<device>:<inode>"`, set by systemd for a service whose stderr
/// is connected to the journal) names the file behind stderr. A process that inherited the
/// variable but whose stderr was redirected elsewhere gets `false`.
pub fn stderr_is_journal() -> bool {
    let Some(value) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some(value) = value.to_str() else {
        return false;
    };
    let Ok(meta) = std::fs::metadata("/proc/self/fd/2") else {
        return false;
    };
    journal_stream_matches(value, meta.dev(), meta.ino())
}

/// Whether a `JOURNAL_STREAM` value names the file with this device and inode.
pub fn journal_stream_matches(value: &str, dev: u64, ino: u64) -> bool {
    let Some((d, i)) = value.split_once(':') else {
        return false;
    };
    matches!((d.parse::<u64>(), i.parse::<u64>()), (Ok(d), Ok(i)) if d == dev && i == ino)
}

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
        JournalLayer::connect(Path::new(JOURNAL_SOCKET))
            .map(Sink::Journal)
            .unwrap_or(Sink::Stderr)
    } else {
        Sink::Stderr
    };
    // Only fails when a global subscriber is already set (a second init): keep that one.
    let _ = tracing::subscriber::set_global_default(HelperSubscriber { filter, sink });
    if let Some(e) = bad {
        tracing::warn!("RUST_LOG ignored ({e}); using {DEFAULT_FILTER:?}");
    }
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

/// A value with its control characters escaped, cut to [`MAX_VALUE_BYTES`].
pub fn clean(value: &str) -> String {
    let mut out = String::with_capacity(value.len().min(MAX_VALUE_BYTES));
    for c in value.chars() {
        let before = out.len();
        if c.is_control() {
            let _ = write!(out, "{}", c.escape_default());
        } else {
            out.push(c);
        }
        if out.len() > MAX_VALUE_BYTES {
            out.truncate(before);
            out.push('…');
            break;
        }
    }
    out
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

/// `at` as an RFC 3339 UTC timestamp with microseconds.
fn timestamp(at: SystemTime) -> String {
    let d = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (proleptic Gregorian calendar).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_micros()
    )
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

/// Sends events as journal entries (see the module documentation).
#[derive(Debug)]
pub struct JournalLayer {
    socket: UnixDatagram,
    path: PathBuf,
}

impl JournalLayer {
    /// A sender to the journal socket at `path`; fails when nothing listens there.
    pub fn connect(path: &Path) -> std::io::Result<JournalLayer> {
        let socket = UnixDatagram::unbound()?;
        // journald discards an empty datagram; this only proves that it listens.
        socket.send_to(&[], path)?;
        Ok(JournalLayer {
            socket,
            path: path.to_path_buf(),
        })
    }

    /// Sends one event; writes it to stderr as a plain line when the journal does not take it.
    fn send(&self, event: &Event<'_>) {
        let meta = event.metadata();
        let fields = Fields::of(event);
        let entry = encode(meta.level(), meta.target(), &fields);
        if self.socket.send_to(&entry, &self.path).is_err() {
            let line = plain_line(SystemTime::now(), meta.level(), meta.target(), &fields);
            let _ = std::io::stderr().lock().write_all(line.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::time::Duration;

    /// Parses a native-protocol entry written in the `NAME=value\n` form.
    fn parse(entry: &[u8]) -> BTreeMap<String, String> {
        let text = std::str::from_utf8(entry).unwrap();
        assert!(text.ends_with('\n'), "{text:?}");
        text.lines()
            .map(|l| {
                let (k, v) = l.split_once('=').unwrap();
                (k.to_string(), v.to_string())
            })
            .collect()
    }

    fn capture_with(filter: Filter, emit: impl FnOnce()) -> Vec<BTreeMap<String, String>> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.sock");
        let server = UnixDatagram::bind(&path).unwrap();
        server.set_nonblocking(true).unwrap();
        let journal = JournalLayer::connect(&path).unwrap();
        let mut buf = vec![0u8; 256 * 1024];
        // The probe datagram of connect().
        assert_eq!(server.recv(&mut buf).unwrap(), 0);
        tracing::subscriber::with_default(HelperSubscriber::journal(filter, journal), emit);
        let mut entries = Vec::new();
        while let Ok(n) = server.recv(&mut buf) {
            entries.push(parse(&buf[..n]));
        }
        entries
    }

    fn capture(emit: impl FnOnce()) -> Vec<BTreeMap<String, String>> {
        capture_with(Filter::default(), emit)
    }

    #[test]
    fn audit_record_becomes_an_entry_with_prefixed_fields_and_the_message_id() {
        let entries = capture(|| {
            tracing::warn!(
                target: "audit",
                op = "usb_mount",
                peer_uid = 998u32,
                peer_pid = 4242u32,
                request = %"UsbMountRequest { uuid: \"x\" }\n\u{1b}[31mFAKE",
                outcome = "ok",
                duration_ms = 17u64,
                seq = 3u64,
                "privileged operation"
            );
            tracing::info!(target: "felhom_helper::server", peer_uid = 0u32, "idle; exiting");
        });
        assert_eq!(entries.len(), 2, "{entries:?}");
        let a = &entries[0];
        assert_eq!(a["MESSAGE_ID"], AUDIT_MESSAGE_ID);
        assert_eq!(a["PRIORITY"], "4");
        assert_eq!(a["MESSAGE"], "privileged operation");
        assert_eq!(a["SYSLOG_IDENTIFIER"], "felhom-helper");
        assert_eq!(a["FELHOM_TARGET"], "audit");
        assert_eq!(a["FELHOM_OP"], "usb_mount");
        assert_eq!(a["FELHOM_PEER_UID"], "998");
        assert_eq!(a["FELHOM_PEER_PID"], "4242");
        assert_eq!(a["FELHOM_OUTCOME"], "ok");
        assert_eq!(a["FELHOM_DURATION_MS"], "17");
        assert_eq!(a["FELHOM_SEQ"], "3");
        // The newline and the escape sequence arrive escaped, not raw.
        assert_eq!(
            a["FELHOM_REQUEST"],
            "UsbMountRequest { uuid: \"x\" }\\n\\u{1b}[31mFAKE"
        );
        let other = &entries[1];
        assert!(!other.contains_key("MESSAGE_ID"), "{other:?}");
        assert_eq!(other["PRIORITY"], "6");
        assert_eq!(other["MESSAGE"], "idle; exiting");
        assert_eq!(other["FELHOM_TARGET"], "felhom_helper::server");
    }

    #[test]
    fn huge_values_are_cut() {
        let big = "x".repeat(100_000);
        let entries =
            capture(|| tracing::error!(target: "audit", request = %big, text = big.as_str(), "m"));
        assert_eq!(entries.len(), 1);
        for name in ["FELHOM_REQUEST", "FELHOM_TEXT"] {
            let v = &entries[0][name];
            assert!(v.len() <= MAX_VALUE_BYTES + '…'.len_utf8(), "{}", v.len());
            assert!(v.ends_with('…'), "{name}");
        }
        assert_eq!(entries[0]["PRIORITY"], "3");
    }

    #[test]
    fn a_huge_debug_value_is_not_formatted_in_full() {
        /// Counts how many bytes its Debug impl was allowed to write.
        struct Endless(std::cell::Cell<usize>);
        impl std::fmt::Debug for Endless {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                for _ in 0..1_000_000 {
                    f.write_str("0123456789")?;
                    self.0.set(self.0.get() + 10);
                }
                Ok(())
            }
        }
        let value = Endless(std::cell::Cell::new(0));
        let entries = capture(|| tracing::warn!(big = ?value, "m"));
        assert!(entries[0]["FELHOM_BIG"].ends_with('…'));
        assert!(value.0.get() <= MAX_VALUE_BYTES + 10, "{}", value.0.get());
    }

    #[test]
    fn the_default_filter_keeps_tarpc_request_spans_and_events_out() {
        let f = Filter::default();
        assert_eq!(f.level_for("felhom_helper::server"), LevelFilter::INFO);
        assert_eq!(f.level_for("audit"), LevelFilter::INFO);
        assert_eq!(f.level_for("tarpc"), LevelFilter::WARN);
        assert_eq!(f.level_for("tarpc::server"), LevelFilter::WARN);
        // A target that merely starts with the same letters is not tarpc's.
        assert_eq!(f.level_for("tarpcish"), LevelFilter::INFO);
        let entries = capture(|| {
            tracing::info!(target: "tarpc::server", "ReceiveRequest");
            let span = tracing::info_span!(target: "tarpc::server", "RPC", rpc.trace_id = 7);
            let _e = span.enter();
            tracing::warn!(target: "tarpc::server", "Requests stream errored out");
        });
        assert_eq!(entries.len(), 1, "{entries:?}");
        assert_eq!(entries[0]["MESSAGE"], "Requests stream errored out");
    }

    #[test]
    fn rust_log_directives_parse_and_the_most_specific_target_wins() {
        let f: Filter = "warn, felhom_helper=debug ,felhom_helper::exec=trace,tarpc=off"
            .parse()
            .unwrap();
        assert_eq!(f.level_for("audit"), LevelFilter::WARN);
        assert_eq!(f.level_for("felhom_helper::server"), LevelFilter::DEBUG);
        assert_eq!(f.level_for("felhom_helper::exec"), LevelFilter::TRACE);
        assert_eq!(f.level_for("tarpc::client"), LevelFilter::OFF);
        assert_eq!(f.max_level(), LevelFilter::TRACE);
        let bare: Filter = "felhom_helper".parse().unwrap();
        assert_eq!(bare.level_for("felhom_helper::ops"), LevelFilter::TRACE);
        assert_eq!(bare.level_for("audit"), LevelFilter::ERROR);
        for bad in ["info!", "x=loud", "a b=info", "[span]=info", "=info"] {
            assert!(bad.parse::<Filter>().is_err(), "{bad:?} parsed");
        }
        let entries = capture_with(f, || {
            tracing::info!(target: "audit", "dropped");
            tracing::debug!(target: "felhom_helper::server", "kept");
        });
        let messages: Vec<&str> = entries.iter().map(|e| e["MESSAGE"].as_str()).collect();
        assert_eq!(messages, ["kept"]);
    }

    #[test]
    fn timestamps_are_rfc3339_utc_with_microseconds() {
        let at = |s: u64, us: u64| UNIX_EPOCH + Duration::from_secs(s) + Duration::from_micros(us);
        assert_eq!(timestamp(at(0, 0)), "1970-01-01T00:00:00.000000Z");
        assert_eq!(timestamp(at(951_782_400, 0)), "2000-02-29T00:00:00.000000Z");
        assert_eq!(
            timestamp(at(1_764_633_723, 456_789)),
            "2025-12-02T00:02:03.456789Z"
        );
        assert_eq!(
            timestamp(at(4_102_444_799, 1)),
            "2099-12-31T23:59:59.000001Z"
        );
    }

    #[test]
    fn plain_line_is_one_line_with_escaped_values() {
        let f = Fields {
            message: clean("privileged\noperation"),
            fields: vec![
                ("OP".into(), "usb_mount".into(), true),
                ("REQUEST".into(), clean("a \"b\"\n\u{1b}[2J"), true),
                ("PEER_UID".into(), "998".into(), false),
            ],
        };
        let at = UNIX_EPOCH + Duration::from_secs(1_764_633_723);
        let line = plain_line(at, &Level::WARN, "audit", &f);
        assert_eq!(line.matches('\n').count(), 1);
        assert!(!line.contains('\u{1b}'));
        assert_eq!(
            line,
            "2025-12-02T00:02:03.000000Z  WARN audit: privileged\\noperation op=\"usb_mount\" \
             request=\"a \\\"b\\\"\\n\\u{1b}[2J\" peer_uid=998\n"
        );
    }

    #[test]
    fn journal_stream_must_name_stderr() {
        assert!(journal_stream_matches("8:1234", 8, 1234));
        assert!(!journal_stream_matches("8:1234", 8, 1235));
        assert!(!journal_stream_matches("9:1234", 8, 1234));
        assert!(!journal_stream_matches("", 8, 1234));
        assert!(!journal_stream_matches("8", 8, 1234));
        assert!(!journal_stream_matches("8:x", 8, 1234));
    }

    #[test]
    fn field_names_are_journal_safe() {
        assert_eq!(field_name("peer_uid"), "PEER_UID");
        assert_eq!(field_name("_hidden"), "HIDDEN");
        assert_eq!(field_name("a.b-c"), "A_B_C");
        assert_eq!(field_name("__"), "FIELD");
    }

    #[test]
    fn connect_fails_when_nothing_listens() {
        let dir = tempfile::tempdir().unwrap();
        assert!(JournalLayer::connect(&dir.path().join("none.sock")).is_err());
    }
}
