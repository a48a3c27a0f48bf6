//! The node's task list: `GET /nodes/{node}/tasks`.
//!
//! Proxmox lists the running tasks (status `RUNNING`, no `endtime`) before the finished
//! ones, newest first. A token sees only its own tasks unless it has `Sys.Audit` on
//! `/nodes/{node}`.

use felhom_protocol::Vmid;
use reqwest::Method;
use serde::{Deserialize, Serialize};

use super::args::ArgumentError;
use super::client::PveClient;
use super::error::PveError;
use super::lenient as le;

/// A task type filter (`vzdump`, `vzstart`, …): 1–32 characters of `[a-z0-9_-]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct TaskType(String);

impl TaskType {
    /// Validates a task type.
    pub fn new(t: &str) -> Result<TaskType, ArgumentError> {
        let ok = !t.is_empty()
            && t.len() <= 32
            && t.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if ok {
            Ok(TaskType(t.to_string()))
        } else {
            Err(ArgumentError {
                what: "task type",
                reason: format!("{t:?} (expected e.g. vzdump, vzstart, vzsnapshot)"),
            })
        }
    }

    /// The type.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for TaskType {
    type Err = ArgumentError;
    fn from_str(s: &str) -> Result<TaskType, ArgumentError> {
        TaskType::new(s)
    }
}

impl std::fmt::Display for TaskType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which tasks [`PveClient::tasks`] lists. The default lists the 50 most recent tasks,
/// running ones included.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TaskFilter {
    /// Only tasks of this guest (`vmid`).
    pub vmid: Option<Vmid>,
    /// Only tasks of this type (`typefilter`).
    pub task_type: Option<TaskType>,
    /// Only tasks that did not end `OK` (`errors=1`; tasks with warnings stay listed).
    pub errors: bool,
    /// At most this many (`limit`, Proxmox's default 50).
    pub limit: Option<u32>,
}

/// One entry of `GET /nodes/{node}/tasks`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct TaskListEntry {
    /// The task's UPID (as text: the list is shown even if one UPID is odd).
    pub upid: String,
    /// Node.
    #[serde(default, deserialize_with = "le::string")]
    pub node: String,
    /// Task type.
    #[serde(rename = "type", default, deserialize_with = "le::string")]
    pub task_type: String,
    /// Task id (usually the vmid; may be empty).
    #[serde(default, deserialize_with = "le::string")]
    pub id: String,
    /// User (without the token part).
    #[serde(default, deserialize_with = "le::string")]
    pub user: String,
    /// Token name for token-started tasks.
    #[serde(default, deserialize_with = "le::opt_string")]
    pub tokenid: Option<String>,
    /// Start, epoch seconds.
    #[serde(default, deserialize_with = "le::opt_i64")]
    pub starttime: Option<i64>,
    /// End, epoch seconds (finished tasks only).
    #[serde(default, deserialize_with = "le::opt_i64")]
    pub endtime: Option<i64>,
    /// `RUNNING`, `OK`, `WARNINGS: N` or the error text.
    #[serde(default, deserialize_with = "le::opt_string")]
    pub status: Option<String>,
}

impl TaskListEntry {
    /// Whether the task is still running (status `RUNNING`, or no end time and no status).
    pub fn is_running(&self) -> bool {
        match self.status.as_deref() {
            Some(s) => s == "RUNNING",
            None => self.endtime.is_none(),
        }
    }

    /// Whether the task ended with an error (not `OK`, not `WARNINGS: N`, not running).
    pub fn is_error(&self) -> bool {
        !self.is_running()
            && self
                .status
                .as_deref()
                .is_some_and(|s| s != "OK" && !s.starts_with("WARNINGS: "))
    }

    /// Seconds from start to end, or to `now` (epoch seconds) while it runs.
    pub fn duration_secs(&self, now: i64) -> Option<u64> {
        let start = self.starttime?;
        let end = if self.is_running() {
            now
        } else {
            self.endtime?
        };
        u64::try_from(end - start).ok()
    }
}

impl PveClient {
    /// `GET /nodes/{node}/tasks?source=all` with the filter — running and finished tasks,
    /// newest first.
    pub async fn tasks(&self, filter: &TaskFilter) -> Result<Vec<TaskListEntry>, PveError> {
        let mut query: Vec<(&str, String)> = vec![("source", "all".to_string())];
        if let Some(v) = filter.vmid {
            query.push(("vmid", v.to_string()));
        }
        if let Some(t) = &filter.task_type {
            query.push(("typefilter", t.as_str().to_string()));
        }
        if filter.errors {
            query.push(("errors", "1".to_string()));
        }
        if let Some(l) = filter.limit {
            query.push(("limit", l.to_string()));
        }
        let segments = ["nodes", self.node().as_str(), "tasks"];
        let reply = self.http.call(Method::GET, &segments, &query, None).await?;
        serde_json::from_value(reply.data).map_err(|e| PveError::Decode {
            path: segments.join("/"),
            message: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_types_are_validated() {
        assert!(TaskType::new("vzdump").is_ok());
        assert!(TaskType::new("move_volume").is_ok());
        for bad in ["", "VZDUMP", "vz dump", "a&b=c", &"x".repeat(33)] {
            assert!(TaskType::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn entries_parse_leniently_and_classify() {
        let list: Vec<TaskListEntry> = serde_json::from_str(
            r#"[
              {"upid":"UPID:pve:0000A1B2:00C0FFEE:65B9F2A0:vzdump:101:felhom@pve!agent:",
               "node":"pve","pid":41394,"pstart":"12648430","starttime":1706684064,
               "type":"vzdump","id":"101","user":"felhom@pve","tokenid":"agent","status":"RUNNING"},
              {"upid":"UPID:pve:0000A1B0:00C0FF00:65B9F200:vzstart:100:root@pam:",
               "node":"pve","starttime":"1706683904","endtime":1706683906,
               "type":"vzstart","id":"100","user":"root@pam","status":"OK"},
              {"upid":"UPID:pve:0000A1A0:00C0FE00:65B9F100:vzdump::root@pam:",
               "node":"pve","starttime":1706683648,"endtime":1706683700,
               "type":"vzdump","id":"","user":"root@pam","status":"job errors"},
              {"upid":"UPID:pve:0000A1A1:00C0FE01:65B9F101:vzrestore:200:root@pam:",
               "starttime":1706683649,"endtime":1706683650,"type":"vzrestore","status":"WARNINGS: 1"}
            ]"#,
        )
        .unwrap();
        assert!(list[0].is_running());
        assert!(!list[0].is_error());
        assert_eq!(list[0].duration_secs(1_706_684_074), Some(10));
        assert_eq!(list[0].tokenid.as_deref(), Some("agent"));
        assert!(!list[1].is_running());
        assert_eq!(list[1].starttime, Some(1_706_683_904));
        assert_eq!(list[1].duration_secs(0), Some(2));
        assert!(list[2].is_error());
        assert!(!list[3].is_error());
    }
}
