//! Errors of the Proxmox VE API client, classified from what Proxmox really sends.
//!
//! Proxmox puts the error text in the HTTP reason phrase (all versions) and, since
//! libpve-http-server-perl 5.2.0, also in the JSON body's `message`. [`classify`] turns
//! (status, reason phrase, body) into a [`PveError`] variant a caller can act on.

use std::collections::BTreeMap;
use std::time::Duration;

use super::upid::Upid;

/// Everything that can go wrong talking to the Proxmox VE API. No variant ever carries the
/// token secret.
#[derive(Debug, thiserror::Error)]
pub enum PveError {
    /// Any other API error: HTTP status, message and the per-parameter `errors` map.
    #[error("Proxmox API error {status}: {message}{}", fmt_errors(.errors))]
    Api {
        /// HTTP status code.
        status: u16,
        /// The body's `message`, else the reason phrase.
        message: String,
        /// Per-parameter errors (400 `Parameter verification failed.`).
        errors: BTreeMap<String, String>,
    },
    /// 403: the token lacks a privilege (`Permission check failed (/vms/100, VM.Snapshot)`).
    #[error("permission denied: {}", forbidden_text(.path, .privilege, .message))]
    Forbidden {
        /// The ACL path, when Proxmox named one.
        path: Option<String>,
        /// The missing privilege(s), e.g. `VM.Snapshot` or `VM.Snapshot|VM.Snapshot.Rollback`.
        privilege: Option<String>,
        /// Proxmox's full message.
        message: String,
    },
    /// 401: the token was rejected.
    #[error(
        "unauthorized ({message}): check the token id (USER@REALM!TOKENID) and secret, that the token is not expired, and — for a privilege-separated token — that an ACL grants the token itself a role"
    )]
    Unauthorized {
        /// Proxmox's message (`Authentication failed!`, `No ticket`).
        message: String,
    },
    /// The guest or resource does not exist (Proxmox answers 500 `… does not exist`).
    #[error("not found: {message}")]
    NotFound {
        /// Proxmox's message.
        message: String,
    },
    /// The guest is locked (`CT is locked (backup)`).
    #[error("guest is locked ({lock}): {message}")]
    Locked {
        /// The lock name (`backup`, `snapshot`, `rollback`, …).
        lock: String,
        /// Proxmox's message.
        message: String,
    },
    /// A non-idempotent request may or may not have been carried out (595/596 from the
    /// proxy, or the connection failed after the request was sent). Re-read state before
    /// doing anything else; the request is never retried automatically.
    #[error("outcome unknown for {method} {path}: {message}; re-read the state before retrying")]
    OutcomeUnknown {
        /// HTTP method.
        method: String,
        /// API path.
        path: String,
        /// HTTP status (0 when the connection failed).
        status: u16,
        /// What happened.
        message: String,
    },
    /// A task stopped with an error exit status (boxed: it carries the log tail).
    #[error("{0}")]
    Task(Box<TaskFailure>),
    /// A deadline passed.
    #[error("timed out after {waited:?} waiting for {what}")]
    Timeout {
        /// What was being waited for.
        what: String,
        /// How long.
        waited: Duration,
    },
    /// The server's certificate did not match the pinned fingerprint.
    #[error(
        "TLS: server certificate fingerprint {presented_fingerprint} does not match the pinned tls_fingerprint {expected_fingerprint}"
    )]
    Tls {
        /// SHA-256 of the certificate the server presented (uppercase colon hex).
        presented_fingerprint: String,
        /// The configured pin.
        expected_fingerprint: String,
    },
    /// TLS could not be set up locally (bad CA file, no system roots, …).
    #[error("TLS setup: {0}")]
    TlsSetup(String),
    /// The request could not be carried out (connect error, timeout on a read, …).
    #[error("transport error for {method} {path}: {message}")]
    Transport {
        /// HTTP method.
        method: String,
        /// API path.
        path: String,
        /// The error chain.
        message: String,
    },
    /// The response did not have the expected shape.
    #[error("cannot decode response of {path}: {message}")]
    Decode {
        /// API path.
        path: String,
        /// What was wrong.
        message: String,
    },
    /// A request argument was rejected before anything was sent.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

/// A task that stopped with an error exit status.
///
/// Its text is `task TYPE ID failed: EXITSTATUS`, followed by the reasons, one per
/// indented line (the final `TASK ERROR:` line is left out when it only repeats the exit
/// status).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "task {task_type} {id} failed: {}{}",
    clean_text(.exitstatus, MAX_MESSAGE_BYTES),
    fmt_reasons(.exitstatus, .reasons, .reasons_omitted)
)]
pub struct TaskFailure {
    /// The task.
    pub upid: Upid,
    /// Task type (`vzdump`, `vzrestore`, …).
    pub task_type: String,
    /// Task id (usually the vmid).
    pub id: String,
    /// Proxmox's exit status, e.g. `CT is locked (backup)` or `job errors`.
    pub exitstatus: String,
    /// The lines that explain the failure: every error line of the log (`ERROR:`, a tool's
    /// `error:`, `No space left on device`; at most 10 lines and 4 KiB) and the final
    /// `TASK ERROR:` line, or the last 5 lines when the log has no error line. Empty when
    /// the log could not be read.
    pub reasons: Vec<String>,
    /// Error lines left out of `reasons` by its bound.
    pub reasons_omitted: u64,
    /// The last lines of the task log.
    pub log_tail: Vec<String>,
    /// The missing privilege, when the task failed a permission check.
    pub privilege: Option<String>,
}

/// The longest message (reason phrase, body `message`, task exit status or log line) kept
/// from a response; the rest is cut with a note of how much was cut.
pub const MAX_MESSAGE_BYTES: usize = 1024;
/// The most entries of a 400's `errors` map kept; each key is cut at 64 bytes and each value at
/// [`MAX_ERROR_VALUE_BYTES`].
pub const MAX_ERRORS: usize = 32;
/// The longest value of one `errors` entry kept.
pub const MAX_ERROR_VALUE_BYTES: usize = 256;

/// Makes text from outside safe for a terminal, a log line or a JSON report: the terminal
/// policy of the shared text module ([`felhom_protocol::text::terminal`]; tabs and line breaks
/// become spaces, every other control character U+FFFD, cut at `max` bytes with a note).
pub use felhom_protocol::text::terminal as clean_text;

fn fmt_errors(errors: &BTreeMap<String, String>) -> String {
    errors
        .iter()
        .map(|(k, v)| format!("; {k}: {v}"))
        .collect::<String>()
}

fn fmt_reasons(exitstatus: &str, reasons: &[String], omitted: &u64) -> String {
    let mut out = String::new();
    for r in reasons {
        if r.strip_prefix("TASK ERROR: ") == Some(exitstatus) {
            continue;
        }
        out.push_str("\n  ");
        out.push_str(r);
    }
    if *omitted > 0 {
        out.push_str(&format!("\n  … {omitted} more error lines in the task log"));
    }
    out
}

fn forbidden_text(path: &Option<String>, privilege: &Option<String>, message: &str) -> String {
    match (privilege, path) {
        (Some(p), Some(path)) => format!("needs {p} on {path}"),
        _ => message.to_string(),
    }
}

impl PveError {
    /// True for the 400 `no such task` a task status query may return right after dispatch.
    pub fn is_no_such_task(&self) -> bool {
        match self {
            PveError::Api {
                status: 400,
                message,
                errors,
            } => {
                message.contains("no such task")
                    || errors.values().any(|v| v.contains("no such task"))
            }
            _ => false,
        }
    }

    /// True when an idempotent request may be retried: connect/transport errors, 5xx and
    /// 59x that are not a definite answer (not-found, locked). 501 (not implemented: the
    /// endpoint or method does not exist on this release) is final.
    pub fn is_retryable_read(&self) -> bool {
        match self {
            PveError::Transport { .. } => true,
            PveError::Api { status, .. } => *status >= 500 && *status != 501,
            _ => false,
        }
    }
}

/// Parses `Permission check failed (/vms/100, VM.Snapshot)` into (path, privilege). The
/// root-only form `(changing feature flags … only allowed for root@pam)` yields
/// (None, None); the caller keeps the whole message.
pub fn parse_permission_check(message: &str) -> (Option<String>, Option<String>) {
    let Some(start) = message.find("Permission check failed (") else {
        return (None, None);
    };
    let rest = &message[start + "Permission check failed (".len()..];
    let Some(end) = rest.rfind(')') else {
        return (None, None);
    };
    let inner = &rest[..end];
    match inner.split_once(", ") {
        Some((path, privs))
            if path.starts_with('/') && !privs.is_empty() && !privs.contains(' ') =>
        {
            (Some(path.to_string()), Some(privs.to_string()))
        }
        _ => (None, None),
    }
}

/// Extracts the lock name from `CT is locked (backup)` / `VM is locked (…)`.
pub fn parse_lock(message: &str) -> Option<String> {
    let start = message.find("is locked (")? + "is locked (".len();
    let rest = &message[start..];
    let end = rest.find(')')?;
    let lock = &rest[..end];
    (!lock.is_empty()).then(|| lock.to_string())
}

/// Turns an HTTP error response into a [`PveError`].
///
/// `reason` is the real reason phrase from the status line (where Proxmox puts the message);
/// `idempotent` tells whether a 595/596 — or a 502/503/504 from a reverse proxy in front
/// of pveproxy, which may have passed the request on — means "unknown outcome".
pub fn classify(
    method: &str,
    path: &str,
    status: u16,
    reason: Option<&str>,
    body: &[u8],
    idempotent: bool,
) -> PveError {
    let json: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let body_message = json
        .as_ref()
        .and_then(|v| v.get("message"))
        .and_then(|m| m.as_str())
        .map(|m| clean_text(m.trim_end(), MAX_MESSAGE_BYTES))
        .filter(|m| !m.is_empty());
    let errors: BTreeMap<String, String> = json
        .as_ref()
        .and_then(|v| v.get("errors"))
        .and_then(|e| e.as_object())
        .map(|m| {
            m.iter()
                .take(MAX_ERRORS)
                .map(|(k, v)| {
                    let text = match v.as_str() {
                        Some(t) => clean_text(t.trim_end(), MAX_ERROR_VALUE_BYTES),
                        // A nested value: only its first bytes are shown, so it is not
                        // rendered whole.
                        None => clean_text(&super::lenient::value_text(v), MAX_ERROR_VALUE_BYTES),
                    };
                    (clean_text(k, 64), text)
                })
                .collect()
        })
        .unwrap_or_default();
    let message = body_message
        .or_else(|| {
            reason
                .map(|r| clean_text(r.trim(), MAX_MESSAGE_BYTES))
                .filter(|r| !r.is_empty())
        })
        .or_else(|| {
            http::StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .map(str::to_string)
        })
        .unwrap_or_else(|| format!("HTTP {status}"));

    if status == 401 {
        return PveError::Unauthorized { message };
    }
    if status == 403 {
        let (path, privilege) = parse_permission_check(&message);
        return PveError::Forbidden {
            path,
            privilege,
            message,
        };
    }
    if ((502..=504).contains(&status) || (595..=599).contains(&status)) && !idempotent {
        return PveError::OutcomeUnknown {
            method: method.to_string(),
            path: path.to_string(),
            status,
            message: format!("HTTP {status} {message}"),
        };
    }
    if status == 500 {
        if let Some(lock) = parse_lock(&message) {
            return PveError::Locked { lock, message };
        }
        if message.contains("does not exist") || message.contains("no such resource") {
            return PveError::NotFound { message };
        }
    }
    PveError::Api {
        status,
        message,
        errors,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_phrase_is_the_message_on_old_releases() {
        let e = classify(
            "GET",
            "/x",
            500,
            Some("CT is locked (backup)"),
            br#"{"data":null}"#,
            true,
        );
        match e {
            PveError::Locked { lock, message } => {
                assert_eq!(lock, "backup");
                assert_eq!(message, "CT is locked (backup)");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn body_message_wins_and_loses_its_newline() {
        let e = classify(
            "GET",
            "/x",
            500,
            Some("trunc"),
            b"{\"data\":null,\"message\":\"Configuration file 'nodes/pve/lxc/105.conf' does not exist\\n\"}",
            true,
        );
        assert!(
            matches!(e, PveError::NotFound { ref message } if message == "Configuration file 'nodes/pve/lxc/105.conf' does not exist"),
            "{e:?}"
        );
    }

    #[test]
    fn forbidden_names_the_privilege() {
        let e = classify(
            "POST",
            "/x",
            403,
            Some("Permission check failed (/vms/100, VM.Snapshot)"),
            b"",
            false,
        );
        assert_eq!(
            e.to_string(),
            "permission denied: needs VM.Snapshot on /vms/100"
        );
        let (p, v) = parse_permission_check(
            "Permission check failed (/vms/100, VM.Snapshot|VM.Snapshot.Rollback)",
        );
        assert_eq!(p.as_deref(), Some("/vms/100"));
        assert_eq!(v.as_deref(), Some("VM.Snapshot|VM.Snapshot.Rollback"));
        let (p, v) = parse_permission_check(
            "Permission check failed (changing feature flags (except nesting) is only allowed for root@pam)",
        );
        assert_eq!((p, v), (None, None));
    }

    /// Every 403 message form of the API reference: only `(path, Priv)` and its `check_any`
    /// `A|B` variant name a privilege; the bare form, the root-only forms and the
    /// "not available with API token" form keep Proxmox's whole message.
    #[test]
    fn every_documented_403_form_is_parsed_exactly() {
        let forbidden =
            |reason: &str, body: &[u8]| match classify("PUT", "/x", 403, Some(reason), body, false)
            {
                PveError::Forbidden {
                    path,
                    privilege,
                    message,
                } => (path, privilege, message),
                other => panic!("{reason}: not Forbidden: {other:?}"),
            };
        let shown = |reason: &str, body: &[u8]| {
            classify("PUT", "/x", 403, Some(reason), body, false).to_string()
        };

        // 1. ACL check: one privilege on a path.
        let m = "Permission check failed (/vms/100, VM.Snapshot)";
        let (p, v, _) = forbidden(m, b"");
        assert_eq!(
            (p.as_deref(), v.as_deref()),
            (Some("/vms/100"), Some("VM.Snapshot"))
        );
        assert_eq!(
            shown(m, b""),
            "permission denied: needs VM.Snapshot on /vms/100"
        );

        // 2. check_any: alternatives joined with `|`.
        let m =
            "Permission check failed (/storage/local, Datastore.Allocate|Datastore.AllocateSpace)";
        let (p, v, _) = forbidden(m, b"");
        assert_eq!(
            (p.as_deref(), v.as_deref()),
            (
                Some("/storage/local"),
                Some("Datastore.Allocate|Datastore.AllocateSpace")
            )
        );
        assert_eq!(
            shown(m, b""),
            "permission denied: needs Datastore.Allocate|Datastore.AllocateSpace on /storage/local"
        );

        // 3. Bare, no detail.
        let m = "Permission check failed";
        assert_eq!(forbidden(m, b""), (None, None, m.to_string()));
        assert_eq!(shown(m, b""), "permission denied: Permission check failed");

        // Root-only forms: a sentence in the parentheses, no ACL path.
        for what in [
            "changing feature flags (except nesting) is only allowed for root@pam",
            "changing feature flags for privileged container is only allowed for root@pam",
            "mount point type bind is only allowed for root@pam",
            "configuring device passthrough is only allowed for root@pam",
            "changing the hookscript is only allowed for root@pam",
            "user != root@pam",
        ] {
            let m = format!("Permission check failed ({what})");
            assert_eq!(forbidden(&m, b""), (None, None, m.clone()), "{m}");
            assert_eq!(shown(&m, b""), format!("permission denied: {m}"));
        }

        // 4. An endpoint that refuses API tokens. Proxmox's text ends with `ticket.\n` inside
        // the parentheses, and its ", " must not be read as a (path, privilege) split.
        let body = br#"{"data":null,"message":"Permission check failed (URI '/nodes/pve/lxc/100/config' not available with API token, need proper ticket.\n)\n"}"#;
        let want = "Permission check failed (URI '/nodes/pve/lxc/100/config' not available with API token, need proper ticket. )";
        let (p, v, message) = forbidden("Forbidden", body);
        assert_eq!((p, v), (None, None), "{message}");
        assert_eq!(message, want);
        let text = shown("Forbidden", body);
        assert_eq!(text, format!("permission denied: {want}"));
        assert!(!text.contains("needs "), "{text}");
        // The same form as a reason phrase only (older releases), cut before the `)`.
        let m = "Permission check failed (URI '/nodes/pve/lxc/100/config' not available with API token, need proper ticket.";
        assert_eq!(forbidden(m, b""), (None, None, m.to_string()));
    }

    #[test]
    fn param_errors_and_no_such_task() {
        let e = classify(
            "GET",
            "/x",
            400,
            Some("Parameter verification failed."),
            br#"{"data":null,"errors":{"upid":"no such task"}}"#,
            true,
        );
        assert!(e.is_no_such_task());
        assert!(e.to_string().contains("upid: no such task"));
    }

    #[test]
    fn proxy_errors_depend_on_idempotency() {
        let e = classify("POST", "/x", 596, Some("Connection timed out"), b"", false);
        assert!(matches!(e, PveError::OutcomeUnknown { status: 596, .. }));
        let e = classify("GET", "/x", 596, Some("Connection timed out"), b"", true);
        assert!(e.is_retryable_read());
    }

    #[test]
    fn gateway_errors_on_writes_are_outcome_unknown_and_501_is_final() {
        for code in [502, 503, 504] {
            let e = classify("POST", "/x", code, Some("Bad Gateway"), b"", false);
            assert!(matches!(e, PveError::OutcomeUnknown { status, .. } if status == code));
            let e = classify("GET", "/x", code, Some("Bad Gateway"), b"", true);
            assert!(e.is_retryable_read(), "{code}");
        }
        let e = classify(
            "GET",
            "/x",
            501,
            Some("Method 'GET /x' not implemented"),
            b"",
            true,
        );
        assert!(!e.is_retryable_read());
        let e = classify("POST", "/x", 501, Some("not implemented"), b"", false);
        assert!(matches!(e, PveError::Api { status: 501, .. }), "{e:?}");
        let e = classify("GET", "/x", 500, Some("got timeout"), b"", true);
        assert!(e.is_retryable_read());
    }

    #[test]
    fn unauthorized_has_a_hint() {
        let e = classify("GET", "/x", 401, Some("Authentication failed!"), b"", true);
        assert!(e.to_string().contains("ACL"));
    }
}
