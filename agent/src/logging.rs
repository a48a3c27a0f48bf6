//! The agent's logging: journal entries with fields under systemd, plain lines on stderr
//! elsewhere, colour only when stderr is a terminal.
//!
//! Under systemd (`JOURNAL_STREAM` names the device and inode of stderr) events go straight
//! to journald through `tracing-journald`: the level as `PRIORITY`, the message as `MESSAGE`,
//! every other field as `FELHOM_<NAME>`, `SYSLOG_IDENTIFIER=felhom-agent`. Elsewhere they are
//! lines on stderr, with colour escapes only when stderr is a terminal.

use std::io::IsTerminal;
use std::os::unix::fs::MetadataExt;

use tracing_subscriber::EnvFilter;
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
                    .with_ansi(std::io::stderr().is_terminal()),
            )
            .init(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_stream_must_name_stderr() {
        assert!(journal_stream_matches("254:77", 254, 77));
        assert!(!journal_stream_matches("254:77", 254, 78));
        assert!(!journal_stream_matches("253:77", 254, 77));
        assert!(!journal_stream_matches("254", 254, 77));
        assert!(!journal_stream_matches("a:b", 254, 77));
    }
}
