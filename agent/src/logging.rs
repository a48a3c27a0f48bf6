//! The agent's logging: journal entries with fields under systemd, plain lines on stderr
//! elsewhere, colour only when stderr is a terminal.
//!
//! Under systemd (`JOURNAL_STREAM` names the device and inode of stderr) events go straight
//! to journald through `tracing-journald`: the level as `PRIORITY`, the message as `MESSAGE`,
//! every other field as `FELHOM_<NAME>`, `SYSLOG_IDENTIFIER=felhom-agent`. Elsewhere they are
//! lines on stderr, with colour escapes only when stderr is a terminal. In those lines every
//! control character inside the message and the field values is written escaped
//! (`\u{1b}`, `\n`), so text that came from outside (a Proxmox error body, a disk's model)
//! can neither start a new line nor send a terminal escape.

use std::io::IsTerminal;
use std::os::unix::fs::MetadataExt;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::field::MakeExt;
use tracing_subscriber::prelude::*;

/// Prefix of the journal fields made from an event's fields (tracing-journald adds the `_`).
pub const FIELD_PREFIX: &str = "FELHOM";

/// Whether a `JOURNAL_STREAM` value (`"<device>:<inode>"`) names the file with this device
/// and inode.
pub fn journal_stream_matches(value: &str, dev: u64, ino: u64) -> bool {
    let Some((d, i)) = value.split_once(':') else {
        return false;
    };
    matches!((d.parse::<u64>(), i.parse::<u64>()), (Ok(d), Ok(i)) if d == dev && i == ino)
}

/// Whether stderr is the journal stream systemd connected (not merely an inherited
/// `JOURNAL_STREAM` with stderr redirected elsewhere).
pub fn stderr_is_journal() -> bool {
    let Some(value) = std::env::var("JOURNAL_STREAM").ok() else {
        return false;
    };
    std::fs::metadata("/proc/self/fd/2")
        .map(|m| journal_stream_matches(&value, m.dev(), m.ino()))
        .unwrap_or(false)
}

/// Sets up logging with this filter (see the module documentation).
pub fn init(filter: EnvFilter) {
    let journal = if stderr_is_journal() {
        tracing_journald::layer().ok().map(|l| {
            l.with_field_prefix(Some(FIELD_PREFIX.to_string()))
                .with_syslog_identifier("felhom-agent".to_string())
        })
    } else {
        None
    };
    match journal {
        Some(layer) => tracing_subscriber::registry()
            .with(filter)
            .with(layer)
            .init(),
        None => tracing_subscriber::registry()
            .with(filter)
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_target(false)
                    .with_ansi(std::io::stderr().is_terminal())
                    .fmt_fields(
                        tracing_subscriber::fmt::format::debug_fn(|w, field, value| {
                            let text = escape_controls(&format!("{value:?}"));
                            if field.name() == "message" {
                                write!(w, "{text}")
                            } else {
                                write!(w, "{field}={text}")
                            }
                        })
                        .delimited(" "),
                    ),
            )
            .init(),
    }
}

/// `text` with every control character written escaped (`\u{1b}`, `\n`, `\t`).
pub fn escape_controls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escape_controls("a\u{1b}[31mb\nc"), "a\\u{1b}[31mb\\nc");
        assert_eq!(escape_controls("plain €"), "plain €");
    }

    #[test]
    fn journal_stream_must_name_stderr() {
        assert!(journal_stream_matches("254:77", 254, 77));
        assert!(!journal_stream_matches("254:77", 254, 78));
        assert!(!journal_stream_matches("253:77", 254, 77));
        assert!(!journal_stream_matches("254", 254, 77));
        assert!(!journal_stream_matches("a:b", 254, 77));
    }
}
