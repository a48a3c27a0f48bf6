//! The one text policy of felhom: how text from outside (a Proxmox answer, a tool's stderr, a
//! disk's model, a process name, a client's request) is made safe before it reaches a
//! terminal, a log line, a journal field, an audit record or a metrics scrape.
//!
//! Every function here removes or rewrites every control character (C0, DEL, C1 — so every
//! terminal escape sequence and every line break) and bounds the length; they differ in what a
//! control character becomes, because each output has its own reader:
//!
//! | Output | Function | A control character becomes | Invisible format characters ([`is_invisible`]) | Bound |
//! |---|---|---|---|---|
//! | Terminal and report text from Proxmox: error messages, reason phrases, guest names and config in tables, HA state, `health.json` messages | [`terminal`] | tab, LF, CR: a space; any other: U+FFFD | kept | `max` bytes, then `… [N more bytes cut]` |
//! | One-line cells: task-log lines, exit statuses, storage and task table cells | [`one_line`] | a space (trailing whitespace trimmed) | kept | `max` bytes, then `…` |
//! | Log lines and journal fields: the agent's stderr lines, the helper's stderr lines and journal fields | [`log_value`] | a Rust escape: `\n`, `\t`, `\u{1b}` | a Rust escape: `\u{202e}` | `max` bytes, then `…` (agent: unbounded) |
//! | Audit record values (the helper's `request`, `outcome` and facts) | [`audit_value`] | `\n`, `\r`, `\t`; other C0 and DEL `\xNN`, C1 `\u{NN}` (and `\` as `\\`, so the escapes are unambiguous) | `\u{NNNN}` | `max` bytes, then `…[cut]` |
//! | Prometheus label values (the agent's metrics) | [`prometheus_label`] | LF: `\n`; any other: dropped (and `\`, `"` escaped as the text format requires) | kept | 128 characters |
//! | Labels read from sysfs (sensor and disk names in the helper's replies) | [`label`] | dropped (surrounding whitespace trimmed) | kept | `max` characters |
//! | Process names from `/proc` (the helper's refusals name the holders of a disk) | [`process_name`] | `?` | kept | `max` characters |
//! | JSON documents (`--json`, `health.json`, the helper's replies) | none of these: `serde_json` | escaped by serde_json (C0 as `\n`, `\u001b`); DEL and C1 verbatim | verbatim | — |
//!
//! JSON needs no function of its own: serde_json writes every C0 character as an escape, so a
//! JSON document is always one line and never carries an escape sequence. Text from outside
//! that a JSON report shows a human (error messages) has been through [`terminal`] where it
//! entered the agent; values `--json` reports as data (a guest's config) are kept as Proxmox
//! sent them. The agent's journal fields go through `tracing-journald`, whose native protocol
//! carries any value as one field.

use std::fmt::Write as _;

/// Whether `c` is one of the format characters that change how a line *looks* without
/// being control characters: the line and paragraph separators (U+2028, U+2029, which some
/// viewers break lines at), the bidirectional embeddings, overrides and isolates (U+202A–U+202E,
/// U+2066–U+2069, which reorder what follows them), and the zero-width characters (U+200B–U+200F,
/// U+2060, U+FEFF, which hide inside a value). [`log_value`] and [`audit_value`] write them as
/// `\u{…}` escapes.
pub fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{200b}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2060}'
            | '\u{2066}'..='\u{2069}'
            | '\u{feff}'
    )
}

/// Text from outside for a terminal, a log line or a JSON report: tabs and line breaks become
/// spaces, every other control character (C0, DEL, C1 — so every terminal escape sequence)
/// becomes U+FFFD, and text beyond `max` bytes is cut at a character boundary with a note of
/// how many bytes were cut.
pub fn terminal(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max) + 32);
    let mut cut_at = None;
    for (i, c) in s.char_indices() {
        let c = match c {
            '\t' | '\n' | '\r' => ' ',
            c if c.is_control() => '\u{FFFD}',
            c => c,
        };
        if out.len() + c.len_utf8() > max {
            cut_at = Some(i);
            break;
        }
        out.push(c);
    }
    if let Some(i) = cut_at {
        let _ = write!(out, "… [{} more bytes cut]", s.len() - i);
    }
    out
}

/// The text as one table cell or log line: every control character (newline, escape, …)
/// replaced by a space, cut at `max` bytes (at a character boundary) and marked `…`; when not
/// cut, trailing whitespace is removed.
pub fn one_line(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max.saturating_add(3)));
    for c in s.chars() {
        let c = if c.is_control() { ' ' } else { c };
        if out.len() + c.len_utf8() > max {
            out.push('…');
            return out;
        }
        out.push(c);
    }
    let kept = out.trim_end().len();
    out.truncate(kept);
    out
}

/// A value for a log line or a journal field: its control characters and invisible format
/// characters ([`is_invisible`]) written as Rust escapes (`\n`, `\t`, `\u{1b}`, `\u{202e}`),
/// the result cut at `max` bytes (never inside an escape) and then marked `…`.
pub fn log_value(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max));
    for c in s.chars() {
        let before = out.len();
        if c.is_control() || is_invisible(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
        if out.len() > max {
            out.truncate(before);
            out.push('…');
            break;
        }
    }
    out
}

/// `s` as one printable audit value of at most about `max` bytes: `\n`, `\r`, `\t` and `\\` are
/// written as such, every other control character (C0, DEL, C1) as `\xNN` or `\u{NN}`, the
/// invisible format characters of [`is_invisible`] as `\u{NNNN}`, and a cut value ends with
/// `…[cut]`.
pub fn audit_value(s: &str, max: usize) -> String {
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
            c if c.is_control() || is_invisible(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// A label value in the Prometheus text format: `\`, `"` and newline escaped, other control
/// characters dropped, at most `max_chars` characters (counted before escaping).
pub fn prometheus_label(s: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s
        .chars()
        .filter(|c| *c == '\n' || !c.is_control())
        .take(max_chars)
    {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A short label read from the kernel (a sysfs name or model): control characters dropped,
/// at most `max_chars` characters, surrounding whitespace trimmed.
pub fn label(s: &str, max_chars: usize) -> String {
    s.chars()
        .filter(|c| !c.is_control())
        .take(max_chars)
        .collect::<String>()
        .trim()
        .to_string()
}

/// A process name (`/proc/PID/stat`'s `comm`): at most `max_chars` characters, each control
/// character shown as `?` (the name stays recognisable and its length honest).
pub fn process_name(s: &str, max_chars: usize) -> String {
    s.chars()
        .take(max_chars)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests;
