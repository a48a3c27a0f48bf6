//! Typed Proxmox VE API client.
//!
//! - [`PveClient`] — typed reads, async operations returning a [`Upid`], `set_config`,
//!   [`PveClient::wait_task`] (adaptive polling until a task stops) and
//!   [`PveClient::wait_task_with`] (the same, following the task log for a
//!   [`TaskObserver`]), [`PveClient::read_task_log`], [`PveClient::tasks`] (the node's task
//!   list).
//! - [`ApiSettings`] — where and how to connect (built from [`crate::config::AgentConfig`]).
//! - [`PveError`] — errors classified from what Proxmox really sends (reason phrase, body
//!   `message`, `errors` map, 403 privilege, lock name, 595/596 — and 502/503/504 on writes — outcome-unknown, 501 final); a failed
//!   task is [`PveError::Task`] with its [`TaskFailure::reasons`].
//! - [`tasklog`] — what a task log says: error and warning lines, progress, clean lines.
//! - [`tls`] — system roots, CA file, SHA-256 leaf pinning, or explicit insecure mode.
//! - [`certexpiry`] — when the server's (and the CA file's) certificates expire.
//!
//! # Follow a task while waiting
//!
//! ```
//! use std::time::Duration;
//!
//! use felhom_agent::pve::{
//!     ApiSettings, NodeName, PveClient, TaskObserver, TlsMode, TokenId, Upid, WaitOptions,
//! };
//! use felhom_agent::secret::Secret;
//! use felhom_protocol::Vmid;
//! use felhom_tests::pve_sim::{PveSim, SimOptions};
//!
//! /// Collects the log lines as they arrive (a real caller would log or forward them).
//! #[derive(Default)]
//! struct Lines(Vec<String>);
//!
//! impl TaskObserver for Lines {
//!     fn on_lines(&mut self, _upid: &Upid, lines: &[String], _elapsed: Duration) {
//!         self.0.extend(lines.iter().cloned());
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> anyhow::Result<()> {
//! # let sim = PveSim::start(SimOptions::default()).await?;
//! # let pve = PveClient::new(&ApiSettings {
//! #     api_url: sim.base_url().parse()?,
//! #     node: NodeName::new("pve")?,
//! #     token_id: TokenId::new("felhom@pve!agent")?,
//! #     token_secret: Secret::new(sim.token_secret()).expect("a non-empty secret"),
//! #     tls: TlsMode::Pinned(sim.fingerprint().parse()?),
//! #     tls_server_name: None,
//! #     request_timeout: Duration::from_secs(30),
//! #     max_response_bytes: felhom_agent::pve::DEFAULT_MAX_RESPONSE_BYTES,
//! # })?;
//! let upid = pve.snapshot_create(Vmid::new(100)?, &"before_upgrade".parse()?, None).await?;
//! let mut lines = Lines::default();
//! let done = pve
//!     .wait_task_with(&upid, WaitOptions::default(), &mut lines)
//!     .await?;
//! assert_eq!(done.exitstatus, "OK");
//! assert_eq!(lines.0.last().map(String::as_str), Some("TASK OK"));
//!
//! // The same log, read afterwards, and the node's recent tasks.
//! let log = pve.read_task_log(&upid, 0).await?;
//! assert_eq!(log.lines, lines.0);
//! let recent = pve.tasks(&Default::default()).await?;
//! assert_eq!(recent[0].upid, upid.as_str());
//! # Ok(())
//! # }
//! ```

pub mod archive;
pub mod args;
pub mod backup_list;
pub mod certexpiry;
mod client;
pub mod destroy;
pub mod error;
pub mod fieldwise;
pub mod ha;
mod http;
pub mod lenient;
pub mod nextid;
pub mod pending;
pub mod prune;
pub mod tasklist;
pub mod tasklog;
pub mod tasks;
pub mod tls;
pub mod types;
pub mod upid;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

pub use args::*;
pub use client::PveClient;
pub use error::{PveError, TaskFailure};
pub use tasklist::{TaskFilter, TaskListEntry, TaskType};
pub use tasks::{LogChunk, TaskObserver, TaskSuccess, WaitOptions};
pub use tls::{Fingerprint, TlsMode};
pub use types::*;
pub use upid::Upid;

use crate::secret::Secret;

/// A Proxmox node name (`[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeName(String);

impl NodeName {
    /// Validates a node name.
    pub fn new(name: &str) -> Result<NodeName, ArgumentError> {
        let b = name.as_bytes();
        let ok = !b.is_empty()
            && b.len() <= 63
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-');
        if ok {
            Ok(NodeName(name.to_string()))
        } else {
            Err(ArgumentError {
                what: "node name",
                reason: format!("{name:?}"),
            })
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for NodeName {
    type Err = ArgumentError;
    fn from_str(s: &str) -> Result<NodeName, ArgumentError> {
        NodeName::new(s)
    }
}

/// A full API token id `USER@REALM!TOKENID` (e.g. `felhom@pve!agent`). Not secret.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenId(String);

impl TokenId {
    /// Validates `USER@REALM!TOKENID`; the token part matches `[A-Za-z][A-Za-z0-9._-]+`.
    pub fn new(id: &str) -> Result<TokenId, ArgumentError> {
        let bad = |reason: &str| ArgumentError {
            what: "token id",
            reason: format!("{reason} (expected USER@REALM!TOKENID, got {id:?})"),
        };
        let (user, token) = id.split_once('!').ok_or_else(|| bad("missing '!'"))?;
        let (name, realm) = user
            .rsplit_once('@')
            .ok_or_else(|| bad("missing '@REALM'"))?;
        let printable = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_graphic() && !matches!(c, ':' | '=' | '!' | '/'))
        };
        if !printable(name) || !printable(realm) {
            return Err(bad("bad user or realm"));
        }
        let mut t = token.chars();
        let ok = t.next().is_some_and(|c| c.is_ascii_alphabetic())
            && token.len() >= 2
            && t.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !ok {
            return Err(bad("bad token name"));
        }
        Ok(TokenId(id.to_string()))
    }

    /// The full id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for TokenId {
    type Err = ArgumentError;
    fn from_str(s: &str) -> Result<TokenId, ArgumentError> {
        TokenId::new(s)
    }
}

/// Everything the client needs to connect. `Debug` shows the secret as `[redacted]`.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// `https://HOST:8006` (the client appends `/api2/json`). Must be https. The port is
    /// used as given — a URL without one means 443 here; the config loader fills in 8006.
    pub api_url: url::Url,
    /// The node this agent runs on.
    pub node: NodeName,
    /// Token id.
    pub token_id: TokenId,
    /// Token secret.
    pub token_secret: Secret,
    /// Certificate verification.
    pub tls: TlsMode,
    /// Verify the certificate chain for this DNS name (or IP) instead of the URL's host,
    /// while connecting to the URL's address (`tls_server_name`; system roots and CA file
    /// modes only).
    pub tls_server_name: Option<String>,
    /// Per-request timeout.
    pub request_timeout: Duration,
    /// Largest response body read; counted while reading, so memory never holds more
    /// (config key `max_response_bytes`, default [`DEFAULT_MAX_RESPONSE_BYTES`]).
    pub max_response_bytes: usize,
}

/// The default cap on one API response body: 32 MiB. The largest real bodies (cluster
/// resources of a big cluster, a long task log page) are a few MiB.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 32 * 1024 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_ids() {
        for ok in ["felhom@pve!agent", "root@pam!api_token", "a.b@pve!x1-2"] {
            assert!(TokenId::new(ok).is_ok(), "{ok}");
        }
        for bad in [
            "felhom@pve",
            "felhom!agent",
            "@pve!agent",
            "felhom@pve!",
            "felhom@pve!1a",
            "f@pve!a b",
            "f@pve!a=b",
        ] {
            assert!(TokenId::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn node_names() {
        assert!(NodeName::new("pve-1").is_ok());
        for bad in ["", "-pve", "pve-", "pve/1", "pve.example"] {
            assert!(NodeName::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn settings_debug_redacts_secret() {
        let s = ApiSettings {
            api_url: "https://127.0.0.1:8006".parse().unwrap(),
            node: NodeName::new("pve").unwrap(),
            token_id: TokenId::new("felhom@pve!agent").unwrap(),
            token_secret: Secret::new("s3cr3t-value").unwrap(),
            tls: TlsMode::Insecure,
            tls_server_name: None,
            request_timeout: Duration::from_secs(30),
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        };
        let dbg = format!("{s:?}");
        assert!(!dbg.contains("s3cr3t-value"));
        assert!(dbg.contains("[redacted]"));
    }
}
