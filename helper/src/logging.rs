//! Logging: journal entries with fields under systemd, one plain line per event elsewhere.
//!
//! - **Under systemd** (`JOURNAL_STREAM` names the device and inode of stderr, see
//!   [`stderr_is_journal`]) every event is sent straight to journald over its native protocol
//!   (one datagram to [`JOURNAL_SOCKET`]) by [`JournalLayer`]: the level as `PRIORITY`, the
//!   message as `MESSAGE`, every other field as `FELHOM_<NAME>` (upper case), the target as
//!   `FELHOM_TARGET`. Events with target `audit` (the records of privileged operations and of
//!   refused connections) also carry `MESSAGE_ID=`[`AUDIT_MESSAGE_ID`], so
//!   `journalctl MESSAGE_ID=… FELHOM_OP=usb_mount` finds them. If a datagram cannot be sent,
//!   the same event is written to stderr as a plain line instead (so an audit record is never
//!   silently lost).
//! - **Elsewhere** each event is one line on stderr, without colour escapes.
//!
//! Either way the text is made safe first: control characters in values (escape sequences,
//! newlines) are written escaped (`\u{1b}`, `\n`), so a value cannot forge a second line or
//! a terminal escape, and journalctl never has to show a field as a blob. Every value is
//! bounded to [`MAX_VALUE_BYTES`] and an entry to [`MAX_FIELDS`] fields, so one entry always
//! fits one datagram.
//!
//! The native protocol is written here by hand (about a hundred lines) rather than taken
//! from a crate: it keeps the root helper's dependency tree as it was, it can fall back to
//! stderr when journald is away, and it can be tested against a socket of the test's own.

use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

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

/// Sets up the process's logging (see the module documentation). `RUST_LOG` overrides the
/// default filter `info`.
pub fn init() {
    use tracing_subscriber::prelude::*;
    let filter = || {
        tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
    };
    let journal = if stderr_is_journal() {
        JournalLayer::connect(Path::new(JOURNAL_SOCKET)).ok()
    } else {
        None
    };
    match journal {
        Some(layer) => tracing_subscriber::registry()
            .with(filter())
            .with(layer)
            .init(),
        None => tracing_subscriber::registry()
            .with(filter())
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .with_writer(|| SafeStderr),
            )
            .init(),
    }
}

/// One event's fields, made safe and bounded.
#[derive(Debug, Default)]
struct Fields {
    message: String,
    /// (journal field name without prefix, value)
    fields: Vec<(String, String)>,
}

impl Fields {
    fn of(event: &Event<'_>) -> Fields {
        let mut f = Fields::default();
        event.record(&mut f);
        f
    }

    fn push(&mut self, field: &Field, value: String) {
        if field.name() == "message" {
            self.message = clean(&value);
        } else if self.fields.len() < MAX_FIELDS {
            self.fields.push((field_name(field.name()), clean(&value)));
        }
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.push(field, value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let mut s = String::new();
        let _ = write!(s, "{value:?}");
        self.push(field, s);
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
    for (name, value) in &f.fields {
        put(&format!("{FIELD_PREFIX}{name}"), value);
    }
    buf
}

/// The same event as one plain line, `LEVEL target: message name="value" …`, for when
/// journald cannot take it.
fn plain_line(level: &Level, target: &str, f: &Fields) -> String {
    let mut line = format!("{level:>5} {}: {}", clean(target), f.message);
    for (name, value) in &f.fields {
        let name = name.to_ascii_lowercase();
        let _ = write!(line, " {name}=\"{}\"", value.replace('"', "\\\""));
    }
    line.push('\n');
    line
}

/// `text` with every control character but a final newline written escaped.
fn safe_line(text: &str) -> String {
    let (body, newline) = match text.strip_suffix('\n') {
        Some(body) => (body, "\n"),
        None => (text, ""),
    };
    let mut line = String::with_capacity(body.len() + 1);
    for c in body.chars() {
        if c.is_control() {
            let _ = write!(line, "{}", c.escape_default());
        } else {
            line.push(c);
        }
    }
    line.push_str(newline);
    line
}

/// stderr for the plain log lines: each formatted event arrives in one `write`, and every
/// control character in it but the final newline is written escaped, so a value shown with
/// `Display` cannot start a second line or send a terminal escape.
#[derive(Debug)]
pub struct SafeStderr;

impl std::io::Write for SafeStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let line = safe_line(&String::from_utf8_lossy(buf));
        std::io::stderr().lock().write_all(line.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Sends each event as a journal entry (see the module documentation).
#[derive(Debug)]
pub struct JournalLayer {
    socket: UnixDatagram,
    path: PathBuf,
}

impl JournalLayer {
    /// A layer sending to the journal socket at `path`; fails when nothing listens there.
    pub fn connect(path: &Path) -> std::io::Result<JournalLayer> {
        let socket = UnixDatagram::unbound()?;
        // journald discards an empty datagram; this only proves that it listens.
        socket.send_to(&[], path)?;
        Ok(JournalLayer {
            socket,
            path: path.to_path_buf(),
        })
    }
}

impl<S: Subscriber> Layer<S> for JournalLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        let fields = Fields::of(event);
        let entry = encode(meta.level(), meta.target(), &fields);
        if self.socket.send_to(&entry, &self.path).is_err() {
            let line = plain_line(meta.level(), meta.target(), &fields);
            let _ = std::io::stderr().lock().write_all(line.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use tracing_subscriber::prelude::*;

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

    fn capture(emit: impl FnOnce()) -> Vec<BTreeMap<String, String>> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.sock");
        let server = UnixDatagram::bind(&path).unwrap();
        server.set_nonblocking(true).unwrap();
        let layer = JournalLayer::connect(&path).unwrap();
        let mut buf = vec![0u8; 256 * 1024];
        // The probe datagram of connect().
        assert_eq!(server.recv(&mut buf).unwrap(), 0);
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), emit);
        let mut entries = Vec::new();
        while let Ok(n) = server.recv(&mut buf) {
            entries.push(parse(&buf[..n]));
        }
        entries
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
        let entries = capture(|| tracing::error!(target: "audit", request = %big, "m"));
        assert_eq!(entries.len(), 1);
        let v = &entries[0]["FELHOM_REQUEST"];
        assert!(v.len() <= MAX_VALUE_BYTES + '…'.len_utf8(), "{}", v.len());
        assert!(v.ends_with('…'));
        assert_eq!(entries[0]["PRIORITY"], "3");
    }

    #[test]
    fn plain_line_is_one_line_with_escaped_values() {
        let f = Fields {
            message: clean("privileged\noperation"),
            fields: vec![
                ("OP".into(), "usb_mount".into()),
                ("REQUEST".into(), clean("a b\n\u{1b}[2J")),
                ("PEER_UID".into(), "998".into()),
            ],
        };
        let line = plain_line(&Level::WARN, "audit", &f);
        assert_eq!(line.matches('\n').count(), 1);
        assert!(!line.contains('\u{1b}'));
        assert_eq!(
            line,
            " WARN audit: privileged\\noperation op=\"usb_mount\" request=\"a b\\n\\u{1b}[2J\" peer_uid=\"998\"\n"
        );
    }

    #[test]
    fn safe_stderr_escapes_control_characters_but_the_final_newline() {
        assert_eq!(safe_line("a\u{1b}[31m\nb\n"), "a\\u{1b}[31m\\nb\n");
        assert_eq!(safe_line("x\r\u{9b}y"), "x\\r\\u{9b}y");
        assert_eq!(safe_line("plain line\n"), "plain line\n");
        let mut w = SafeStderr;
        assert_eq!(std::io::Write::write(&mut w, b"ok\n").unwrap(), 3);
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
