//! The simulator's public configuration and observation types: how it behaves
//! ([`SimOptions`]), how a task ends ([`TaskOutcome`]), an injected [`Fault`] and a recorded
//! request. Every other module of the simulator may depend on this one; it depends on none of
//! them (the imports of `pve_sim` run one way).

use std::time::Duration;

/// How the simulator behaves; [`Default`] gives a PVE 9 node called `pve`.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Node name (`pve`).
    pub node: String,
    /// Full token id `USER@REALM!TOKENID` (`felhom@pve!agent`).
    pub token_id: String,
    /// The token secret (a fixed UUID-like test value).
    pub token_secret: String,
    /// `false`: PVE 8.3+/9 wire (error text in reason phrase and body `message`).
    /// `true`: PVE 7 wire (error text only in the reason phrase, `vmid` and status numbers
    /// as JSON strings).
    pub legacy_wire: bool,
    /// How long asynchronous tasks run (300 ms).
    pub task_duration: Duration,
    /// Delay before every 401 (PVE uses 3 s).
    pub unauthorized_delay: Duration,
    /// Reported PVE version, e.g. `9.1.3` (or `7.4-16`).
    pub version: String,
}

/// The fixed test token secret used by [`SimOptions::default`].
pub const DEFAULT_TOKEN_SECRET: &str = "5f0c3a9e-8d2b-4c71-9e36-2a4b7d1c0f58";

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            node: "pve".to_string(),
            token_id: "felhom@pve!agent".to_string(),
            token_secret: DEFAULT_TOKEN_SECRET.to_string(),
            legacy_wire: false,
            task_duration: Duration::from_millis(300),
            unauthorized_delay: Duration::from_secs(3),
            version: "9.1.3".to_string(),
        }
    }
}

/// The outcome of a simulated task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskOutcome {
    /// `TASK OK`, exit status `OK`.
    Ok,
    /// Log lines `WARN: <each>`, then `TASK WARNINGS: N`; exit status `WARNINGS: N`. The
    /// task's effect is applied.
    Warnings(Vec<String>),
    /// `TASK ERROR: <msg>`; exit status `<msg>`; no effect.
    Error(String),
    /// `lines` (e.g. an `ERROR:` line and cleanup lines), then `TASK ERROR: <message>`; exit
    /// status `<message>`; no effect. For logs where the reason is not the last line.
    ErrorWithLog {
        /// Lines written before the final `TASK ERROR:` line.
        lines: Vec<String>,
        /// The exit status.
        message: String,
    },
    /// The task stops, but its status carries no `exitstatus` (a broken or hostile node;
    /// real PVE always sends one for a stopped task). The log has no `TASK` line, the task
    /// list shows `unknown`, and there is no effect.
    NoExitStatus,
}

/// A fault injected into the next `times` matching requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// HTTP method to match (`None` = any).
    pub method: Option<String>,
    /// Substring of the request path (e.g. `/status/start`).
    pub path_contains: String,
    /// What happens instead of (or before) the normal answer.
    pub kind: FaultKind,
    /// How many matching requests are affected.
    pub times: u32,
}

/// The kind of an injected fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultKind {
    /// Answer with this status and reason phrase (e.g. 596 `Connection timed out`); the
    /// request is not executed.
    Status {
        /// HTTP status code.
        code: u16,
        /// Reason phrase (also the body `message` unless legacy wire).
        reason: String,
    },
    /// Execute the request normally (a task starts, a config changes), then answer with
    /// this status and reason instead of the result — the pveproxy → pvedaemon timeout
    /// (`596 Connection timed out`) where the outcome is unknown to the client.
    ExecuteThenStatus {
        /// HTTP status code.
        code: u16,
        /// Reason phrase (also the body `message` unless legacy wire).
        reason: String,
    },
    /// Sleep this long, then answer normally (a client that gave up still caused the
    /// request's effect).
    Stall(Duration),
    /// Drop the connection without answering; the request is not executed.
    CloseConnection,
}

/// One request as the simulator saw it (never contains the token secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// HTTP method.
    pub method: String,
    /// Full path, e.g. `/api2/json/nodes/pve/lxc`.
    pub path: String,
    /// Raw query string (without `?`).
    pub query: String,
    /// Raw request body (form-urlencoded or JSON).
    pub body: String,
}
