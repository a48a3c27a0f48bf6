//! What the simulator's modules share, below all of them: the API's reply types, the backup
//! quirks, and the pure rules the state applies (pending changes at start, PBS volids). It
//! depends on nothing of the simulator but `util`, so `state` (the data every handler works
//! on) sits on it, the handler modules (`api`, `backup`, `ha`, `pending`) on `state`, and
//! `server` on `api`: the imports run one way.

use serde_json::{Map, Value, json};

use super::util::civil_iso;

/// An API error as PVE reports it.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub(crate) status: u16,
    /// Full message including the trailing newline of Perl `die` strings.
    pub(crate) message: String,
    pub(crate) errors: Option<Map<String, Value>>,
}

impl ApiError {
    pub(crate) fn new(status: u16, msg: impl Into<String>) -> Self {
        let mut message = msg.into();
        if !message.ends_with('\n') {
            message.push('\n');
        }
        ApiError {
            status,
            message,
            errors: None,
        }
    }

    /// 500 with a handler `die` message.
    pub(crate) fn die(msg: impl Into<String>) -> Self {
        Self::new(500, msg)
    }

    /// 400 `Parameter verification failed.` with an `errors` map.
    pub(crate) fn param(errors: &[(&str, String)]) -> Self {
        let mut e = Self::new(400, "Parameter verification failed.");
        e.errors = Some(
            errors
                .iter()
                .map(|(k, v)| (k.to_string(), json!(v)))
                .collect(),
        );
        e
    }

    /// 403 `Permission check failed (<path>, <privs>)`.
    pub(crate) fn perm(path: &str, privs: &str) -> Self {
        Self::new(403, format!("Permission check failed ({path}, {privs})"))
    }

    /// 403 for root-only actions.
    pub(crate) fn root_only(what: &str) -> Self {
        Self::new(403, format!("Permission check failed ({what})"))
    }

    /// First line of the message (the HTTP reason phrase).
    pub(crate) fn reason(&self) -> String {
        self.message.lines().next().unwrap_or("").to_string()
    }
}

/// A successful reply: `data` plus optional envelope siblings such as `total`.
#[derive(Debug, Clone)]
pub(crate) struct ApiOk {
    pub(crate) data: Value,
    pub(crate) extra: Vec<(String, Value)>,
}

impl From<Value> for ApiOk {
    fn from(data: Value) -> Self {
        ApiOk {
            data,
            extra: Vec::new(),
        }
    }
}

pub(crate) type ApiResult = Result<ApiOk, ApiError>;

/// A one-shot deviation of the next vzdump, set through `SimState::set_backup_quirk`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackupQuirk {
    /// The task log names its archive, but the storage never lists it (as when a shared
    /// storage's listing lags or the archive went elsewhere).
    ArchiveNotListed,
    /// The task log has no `creating … archive` line (the archive is still listed).
    NoArchiveLine,
    /// Both: no line, and nothing new listed.
    NoLineNotListed,
}

impl BackupQuirk {
    pub(crate) fn lists_archive(self) -> bool {
        self == BackupQuirk::NoArchiveLine
    }

    pub(crate) fn logs_archive(self) -> bool {
        self == BackupQuirk::ArchiveNotListed
    }
}

/// The volid of a new archive: `<storage>:backup/ct/<vmid>/<ISO time>` on PBS.
pub(crate) fn pbs_volid(storage: &str, vmid: u32, at: u64) -> String {
    format!("{storage}:backup/ct/{vmid}/{}", civil_iso(at))
}

/// Applies the pending changes (at container start).
pub(crate) fn apply_pending(config: &mut Map<String, Value>, pending: &mut Map<String, Value>) {
    for (k, v) in std::mem::take(pending) {
        if v.is_null() {
            config.remove(&k);
        } else {
            config.insert(k, v);
        }
    }
}
