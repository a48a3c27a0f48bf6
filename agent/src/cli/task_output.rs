//! How a finished Proxmox task is shown: the human line, the `--json` member, the error
//! document's `task` member, and how long each kind of task may take. Shared by every command
//! that waits for a task (snapshot, backup, restore, start, stop, shutdown, tasks, selftest).

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{Value, json};

use crate::pve::{TaskFailure, TaskSuccess};

/// How long short tasks (snapshot, start, stop) may take.
pub(super) const SHORT_TASK: Duration = Duration::from_secs(15 * 60);
/// How long backup and restore may take.
pub(super) const LONG_TASK: Duration = Duration::from_secs(6 * 3600);

/// The human line of a finished task: `WHAT: EXITSTATUS (task UPID)`, then its warnings.
pub(super) fn task_line(what: &str, s: &TaskSuccess) -> String {
    let mut line = format!("{what}: {} (task {})\n", s.exitstatus, s.upid);
    for w in &s.warnings {
        let _ = writeln!(line, "  warning: {w}");
    }
    if s.warnings_omitted > 0 {
        let _ = writeln!(
            line,
            "  … {} more warnings in the task log",
            s.warnings_omitted
        );
    }
    line
}

/// The `--json` member of a finished task: UPID, exit status and warnings.
pub(super) fn task_json(s: &TaskSuccess) -> serde_json::Value {
    json!({ "upid": s.upid.to_string(), "exitstatus": s.exitstatus, "warnings": s.warnings, "warnings_omitted": s.warnings_omitted })
}

/// The `--json` form of a failed task (the `task` member of the error document).
pub(super) fn failure_json(f: &TaskFailure) -> Value {
    json!({
        "upid": f.upid.to_string(),
        "type": f.task_type,
        "id": f.id,
        "exitstatus": f.exitstatus,
        "reasons": f.reasons,
        "reasons_omitted": f.reasons_omitted,
        "log_tail": f.log_tail,
        "privilege": f.privilege,
    })
}
