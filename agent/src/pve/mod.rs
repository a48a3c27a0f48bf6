//! Typed Proxmox VE API client.
//!
//! - [`PveClient`] — typed reads, async operations returning a [`Upid`], `set_config`, and
//!   [`PveClient::wait_task`] (adaptive polling until a task stops).
//! - [`ApiSettings`] — where and how to connect (built from [`crate::config::AgentConfig`]).
//! - [`PveError`] — errors classified from what Proxmox really sends (reason phrase, body
//!   `message`, `errors` map, 403 privilege, lock name, 595/596 outcome-unknown).
//! - [`tls`] — system roots, CA file, SHA-256 leaf pinning, or explicit insecure mode.
//!
//! Ground truth for every quirk handled here: `shared/reference/proxmox-api.md`.

mod client;
pub mod error;
mod http;
pub mod lenient;
pub mod tasks;
pub mod tls;
pub mod types;
pub mod upid;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

pub use client::PveClient;
pub use error::{PveError, TaskFailure};
pub use tasks::{TaskSuccess, WaitOptions};
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
            request_timeout: Duration::from_secs(30),
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        };
        let dbg = format!("{s:?}");
        assert!(!dbg.contains("s3cr3t-value"));
        assert!(dbg.contains("[redacted]"));
    }
}
