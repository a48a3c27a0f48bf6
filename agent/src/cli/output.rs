//! Result documents and human-readable tables.

use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;

/// The result of a command: a JSON document for `--json`, a text rendering otherwise, and
/// whether it counts as a failure (exit 1) even though it completed.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The `--json` document.
    pub json: Value,
    /// The human rendering (ends with a newline).
    pub human: String,
    /// Exit 1 although the command ran (degraded report, failing disk).
    pub failed: bool,
}

impl Outcome {
    /// A successful outcome from serializable data and its rendering.
    pub fn new(data: &impl Serialize, human: String) -> Outcome {
        Outcome {
            json: serde_json::to_value(data).unwrap_or_else(
                |e| serde_json::json!({ "error": format!("cannot serialize result: {e}") }),
            ),
            human,
            failed: false,
        }
    }

    /// Marks the outcome as failed (exit 1).
    pub fn failed(mut self, failed: bool) -> Outcome {
        self.failed = failed;
        self
    }
}

/// A simple left-aligned text table.
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles.
    pub fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|s| s.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row (missing cells print empty).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Renders the table, or `empty` when it has no rows.
    pub fn render(&self, empty: &str) -> String {
        if self.rows.is_empty() {
            return format!("{empty}\n");
        }
        let cols = self.header.len();
        let mut width: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for r in &self.rows {
            for (i, c) in r.iter().enumerate().take(cols) {
                width[i] = width[i].max(c.chars().count());
            }
        }
        let mut out = String::new();
        let line = |cells: &[String], out: &mut String| {
            let mut s = String::new();
            for (i, w) in width.iter().enumerate() {
                let c = cells.get(i).map_or("", String::as_str);
                if i + 1 == cols {
                    s.push_str(c);
                } else {
                    let pad = w.saturating_sub(c.chars().count());
                    s.push_str(c);
                    s.push_str(&" ".repeat(pad + 2));
                }
            }
            let _ = writeln!(out, "{}", s.trim_end());
        };
        line(&self.header, &mut out);
        for r in &self.rows {
            line(r, &mut out);
        }
        out
    }
}

/// `1.5 GiB`-style sizes.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// `3d 4h`-style durations from seconds.
pub fn uptime(secs: u64) -> String {
    let (d, h, m) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else {
        format!("{m}m {}s", secs % 60)
    }
}

/// Epoch seconds as `YYYY-MM-DD HH:MM:SS` (UTC; the shared calendar,
/// [`felhom_protocol::civil`]).
pub fn utc(epoch: i64) -> String {
    felhom_protocol::civil::DateTime::from_unix(epoch).to_string()
}

/// An optional value, or `-`.
pub fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let mut t = Table::new(&["A", "LONG"]);
        t.row(vec!["xyz".into(), "1".into()]);
        assert_eq!(t.render("none"), "A    LONG\nxyz  1\n");
        assert_eq!(Table::new(&["A"]).render("none"), "none\n");
    }

    #[test]
    fn sizes_and_times() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(uptime(90_061), "1d 1h");
        assert_eq!(uptime(61), "1m 1s");
        // The calendar is tested in felhom_protocol::civil; this is the format.
        assert_eq!(utc(1_706_702_400), "2024-01-31 12:00:00");
    }
}
