//! What vzdump's pruning did, read from its task log.
//!
//! With `remove=1`, pve-manager `PVE/VZDump.pm` `exec_backup_task` logs
//! `prune older backups with retention: <keep-…=N, …>`, then pve-storage
//! `Storage/Plugin.pm` `prune_backups` logs `removing backup '<volid>'` for each removed
//! archive (without a storage, vzdump itself logs `delete old backup '<path>'`), and vzdump
//! ends with `pruned <N> backup(s)` (followed by ` not covered by keep-retention policy`
//! when N > 0). A PBS storage logs `running 'proxmox-backup-client prune' for '<group>'`
//! instead of the per-archive lines.

use serde::Serialize;

const RETENTION: &str = "prune older backups with retention: ";
const REMOVING: &str = "removing backup '";
const DELETING: &str = "delete old backup '";
const PRUNED: &str = "pruned ";

/// Longest name or retention text taken from a log line.
const MAX_LEN: usize = 512;

/// What the task log says the prune did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PruneReport {
    /// The retention vzdump applied (`keep-last=3, …`), when it logged one.
    pub retention: Option<String>,
    /// The count from `pruned N backup(s)`, when logged.
    pub count: Option<u64>,
    /// The archives named as removed, in log order.
    pub removed: Vec<String>,
}

impl PruneReport {
    /// Whether the log shows that a prune ran at all.
    pub fn ran(&self) -> bool {
        self.retention.is_some() || self.count.is_some() || !self.removed.is_empty()
    }
}

fn clean(text: &str) -> Option<String> {
    (!text.is_empty() && text.len() <= MAX_LEN && !text.chars().any(char::is_control))
        .then(|| text.to_string())
}

fn quoted<'a>(line: &'a str, marker: &str) -> Option<&'a str> {
    let rest = &line[line.find(marker)? + marker.len()..];
    Some(&rest[..rest.rfind('\'')?])
}

/// Reads the prune lines of a vzdump task log.
pub fn prune_from_log(lines: &[String]) -> PruneReport {
    let mut r = PruneReport::default();
    for line in lines {
        if let Some(at) = line.find(RETENTION) {
            r.retention = clean(line[at + RETENTION.len()..].trim_end());
        } else if let Some(v) = quoted(line, REMOVING).or_else(|| quoted(line, DELETING)) {
            if let Some(v) = clean(v) {
                r.removed.push(v);
            }
        } else if let Some(at) = line.find(PRUNED) {
            let rest = &line[at + PRUNED.len()..];
            if let Some((n, tail)) = rest.split_once(' ') {
                if tail.starts_with("backup(s)") {
                    r.count = n.parse().ok();
                }
            }
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn removed_archives_and_count_are_read() {
        let r = prune_from_log(&lines(&[
            "INFO: creating vzdump archive '/var/lib/vz/dump/vzdump-lxc-101-2026_12_04-06_00_00.tar.zst'",
            "INFO: prune older backups with retention: keep-last=2",
            "INFO: removing backup 'local:backup/vzdump-lxc-101-2026_12_01-06_00_00.tar.zst'",
            "INFO: pruned 1 backup(s) not covered by keep-retention policy",
        ]));
        assert_eq!(r.retention.as_deref(), Some("keep-last=2"));
        assert_eq!(r.count, Some(1));
        assert_eq!(
            r.removed,
            vec!["local:backup/vzdump-lxc-101-2026_12_01-06_00_00.tar.zst".to_string()]
        );
        assert!(r.ran());
    }

    #[test]
    fn a_prune_that_keeps_everything_removes_nothing() {
        let r = prune_from_log(&lines(&[
            "INFO: prune older backups with retention: keep-daily=7, keep-last=3",
            "INFO: pruned 0 backup(s)",
        ]));
        assert_eq!(r.count, Some(0));
        assert!(r.removed.is_empty());
        let none = prune_from_log(&lines(&["INFO: Finished Backup of VM 101 (00:00:10)"]));
        assert!(!none.ran());
    }
}
