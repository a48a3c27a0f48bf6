//! The agent's logging: journal entries with fields under systemd, plain lines on stderr
//! elsewhere, colour only when stderr is a terminal.
//!
//! Under systemd (`JOURNAL_STREAM` names the device and inode of stderr) events go straight
//! to journald through `tracing-journald`: the level as `PRIORITY`, the message as `MESSAGE`,
//! every other field as `FELHOM_<NAME>`, `SYSLOG_IDENTIFIER=felhom-agent`. Elsewhere they are
//! lines on stderr, with colour escapes only when stderr is a terminal. In those lines every
//! control character and invisible format character inside the message and the field values
//! is written escaped (`\u{1b}`, `\n`, `\u{202e}`: the log-line policy,
//! [`felhom_protocol::text::log_value`]), so text that came from outside (a Proxmox error
//! body, a disk's model) can neither start a new line nor send a terminal escape. The journal
//! check is [`felhom_protocol::journal::stderr_is_journal`], shared with the helper.

use std::io::IsTerminal;

use felhom_protocol::journal::stderr_is_journal;
use felhom_protocol::text;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::field::MakeExt;
use tracing_subscriber::prelude::*;

/// Prefix of the journal fields made from an event's fields (tracing-journald adds the `_`).
pub const FIELD_PREFIX: &str = "FELHOM";

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
                            // Not cut: Proxmox text is bounded where it enters the agent
                            // (`text::terminal`), the rest is the agent's own.
                            let text = text::log_value(&format!("{value:?}"), usize::MAX);
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
