//! The one error type the helper returns, serialized to the agent.

use serde::{Deserialize, Serialize};

use crate::types::ValidationError;

/// Why the helper did not do what was asked. Every variant carries enough context for a human
/// message; the agent shows `Display` to the operator.
///
/// Bincode is positional: add new variants only at the end, and bump
/// [`PROTOCOL_VERSION`](crate::PROTOCOL_VERSION) when changing any.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum HelperError {
    /// The request was refused before anything was done.
    #[error("request rejected: {field}: {reason}")]
    Rejected {
        /// The field or aspect of the request that was refused.
        field: String,
        /// Why it was refused.
        reason: String,
    },
    /// The thing the request names does not exist.
    #[error("not found: {what}")]
    NotFound {
        /// What was looked for.
        what: String,
    },
    /// The thing the request names is in use or conflicts with existing state.
    #[error("busy: {what}")]
    Busy {
        /// What is busy, and why.
        what: String,
    },
    /// A tool the helper ran exited unsuccessfully.
    #[error("{tool} failed (exit {}): {stderr_tail}", exit_code.map_or_else(|| "by signal".to_string(), |c| c.to_string()))]
    ToolFailed {
        /// The tool's name (`pct`, `smartctl`, `blkid`, …).
        tool: String,
        /// Its exit code, or `None` when a signal ended it.
        exit_code: Option<i32>,
        /// The last part of what it wrote to stderr (or stdout when stderr was empty).
        stderr_tail: String,
    },
    /// The operation ran into the helper's time cap or the caller's deadline.
    #[error("{operation} timed out after {after_secs} s")]
    TimedOut {
        /// The operation that timed out.
        operation: String,
        /// After how many seconds it was stopped.
        after_secs: u64,
    },
    /// The operation cannot be done on this host (a tool or a sysfs tree is missing).
    #[error("unavailable: {what}")]
    Unavailable {
        /// What is missing.
        what: String,
    },
    /// The helper failed in a way that is not the request's fault.
    #[error("helper internal error: {message}")]
    Internal {
        /// What went wrong.
        message: String,
    },
    /// The agent speaks another protocol version than the helper.
    #[error(
        "protocol version mismatch: helper speaks {helper}, agent speaks {agent}; install matching versions"
    )]
    VersionMismatch {
        /// The helper's protocol version.
        helper: u32,
        /// The agent's protocol version.
        agent: u32,
    },
}

impl From<ValidationError> for HelperError {
    fn from(e: ValidationError) -> Self {
        HelperError::Rejected {
            field: e.field.to_string(),
            reason: e.reason,
        }
    }
}
