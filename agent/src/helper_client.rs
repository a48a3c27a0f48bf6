//! The agent's client for the root helper: tarpc over the helper's Unix socket.
//!
//! - **Lazy:** nothing connects until the first call.
//! - **Handshake:** every new connection starts with `hello`, which checks that both sides
//!   speak [`PROTOCOL_VERSION`].
//! - **Reconnect:** the helper exits when idle and systemd starts it again on the next
//!   connection, so a dropped connection is normal. A read-only call (hello, list, SMART,
//!   sensors) is retried once on a fresh connection; a call that changes the host (golden
//!   image, mount, unmount) is never retried — its outcome is unknown and the caller is told to
//!   re-read the state. This holds for a missed deadline too: the helper finishes a
//!   state-changing operation even when the client stops waiting. A connection whose
//!   dispatch has already ended (the helper closed it, e.g. at its idle exit) is replaced
//!   before a request is sent on it, so any call can go out on a fresh connection.
//! - **Deadlines:** each call carries its own deadline (see [`CallKind::deadline`]). The helper
//!   caps every operation itself; the agent's deadline can only shorten a call.
//!
//! ```
//! use felhom_agent::helper_client::HelperClient;
//! use felhom_tests::fake_helper::FakeHelper;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> anyhow::Result<()> {
//! // An in-process stand-in for felhom-helper (on a host: /run/felhom/helper.sock).
//! let fake = FakeHelper::start().await?;
//! let helper = HelperClient::new(fake.socket_path());
//! let hello = helper.hello().await?; // connects, checks the protocol version
//! assert_eq!(hello.protocol_version, felhom_protocol::PROTOCOL_VERSION);
//! let disks = helper.smart_scan().await?;
//! assert_eq!(disks[0].name.as_str(), "sda");
//! # Ok(())
//! # }
//! ```

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use felhom_protocol::transport::client_transport;
use felhom_protocol::{
    DiskInfo, DiskName, GoldenImageReply, GoldenImageRequest, HelloReply,
    HelperClient as RpcClient, HelperError, MountInfo, MountName, PROTOCOL_VERSION, SensorReading,
    SmartReport, UnmountReply, UsbMountRequest,
};
use tarpc::client::RpcError;
use tokio::net::UnixStream;
use tokio::sync::Mutex;

/// The production socket path.
pub const DEFAULT_SOCKET: &str = "/run/felhom/helper.sock";

/// The helper's operations, with their deadlines and whether they may be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    /// `hello`.
    Hello,
    /// `golden_image_create`.
    GoldenImage,
    /// `usb_mount`.
    UsbMount,
    /// `usb_unmount`.
    UsbUnmount,
    /// `usb_list`.
    UsbList,
    /// `smart_scan`.
    SmartScan,
    /// `smart_read`.
    SmartRead,
    /// `sensors_read`.
    Sensors,
}

impl CallKind {
    /// The operation's name as the helper's service calls it.
    pub fn name(self) -> &'static str {
        match self {
            CallKind::Hello => "hello",
            CallKind::GoldenImage => "golden_image_create",
            CallKind::UsbMount => "usb_mount",
            CallKind::UsbUnmount => "usb_unmount",
            CallKind::UsbList => "usb_list",
            CallKind::SmartScan => "smart_scan",
            CallKind::SmartRead => "smart_read",
            CallKind::Sensors => "sensors_read",
        }
    }

    /// How long the agent waits for the answer. `pct create` may download and unpack a
    /// template; a mount may run fsck through systemd (the helper caps it at 60 s, plus a
    /// margin for the reply).
    pub fn deadline(self) -> Duration {
        match self {
            CallKind::Hello => Duration::from_secs(5),
            CallKind::GoldenImage => Duration::from_secs(20 * 60),
            CallKind::UsbMount | CallKind::UsbUnmount => Duration::from_secs(75),
            CallKind::UsbList | CallKind::SmartScan => Duration::from_secs(10),
            CallKind::SmartRead => Duration::from_secs(30),
            CallKind::Sensors => Duration::from_secs(5),
        }
    }

    /// Whether the call only reads, so that repeating it after a dropped connection is safe.
    pub fn is_read_only(self) -> bool {
        !matches!(
            self,
            CallKind::GoldenImage | CallKind::UsbMount | CallKind::UsbUnmount
        )
    }
}

/// Why a helper call failed. `Display` is the message the operator sees.
#[derive(Debug, thiserror::Error)]
pub enum HelperClientError {
    /// The socket path does not exist.
    #[error(
        "helper socket {path} does not exist: is felhom-helper.socket enabled and started? (systemctl enable --now felhom-helper.socket)"
    )]
    SocketMissing {
        /// The socket path.
        path: PathBuf,
    },
    /// Connecting was refused by the file permissions.
    #[error(
        "permission denied on {path}: is this user in group felhom-agent? (id -nG; the socket is 0660 root:felhom-agent)"
    )]
    PermissionDenied {
        /// The socket path.
        path: PathBuf,
    },
    /// The socket exists but nothing accepts connections on it.
    #[error(
        "nothing is listening on helper socket {path} ({source}): check systemctl status felhom-helper.socket felhom-helper.service"
    )]
    NotListening {
        /// The socket path.
        path: PathBuf,
        /// The connect error.
        source: io::Error,
    },
    /// Another connect error.
    #[error("cannot connect to helper socket {path}: {source}")]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// The connect error.
        source: io::Error,
    },
    /// The helper answered the request with an error.
    #[error("helper: {0}")]
    Helper(HelperError),
    /// The helper's `hello` named another protocol version.
    #[error(
        "protocol version mismatch: helper speaks {helper}, agent speaks {agent}; install matching felhom-agent and felhom-helper versions"
    )]
    VersionMismatch {
        /// The helper's version.
        helper: u32,
        /// Ours.
        agent: u32,
    },
    /// The helper did not answer in time.
    #[error("{operation}: the helper did not answer within {} s", .after.as_secs())]
    Deadline {
        /// The operation.
        operation: &'static str,
        /// The deadline.
        after: Duration,
    },
    /// The connection broke during a read-only call, and the one retry failed too.
    #[error(
        "{operation}: the connection to the helper was lost ({detail}); check journalctl -u felhom-helper.service"
    )]
    Disconnected {
        /// The operation.
        operation: &'static str,
        /// What tarpc reported.
        detail: String,
    },
    /// The connection broke, or the deadline passed, while a call that changes the host was
    /// in flight.
    #[error(
        "{operation}: {detail}; the outcome is unknown — re-read the state (felhom-agent usb list / guests) before retrying"
    )]
    OutcomeUnknown {
        /// The operation.
        operation: &'static str,
        /// What happened (the connection was lost, or no answer in time).
        detail: String,
    },
}

impl HelperClientError {
    /// The helper's own error, when it answered with one.
    pub fn helper_error(&self) -> Option<&HelperError> {
        match self {
            HelperClientError::Helper(e) => Some(e),
            _ => None,
        }
    }

    /// True when the helper could not be reached at all (socket missing, denied, nothing
    /// listening).
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            HelperClientError::SocketMissing { .. }
                | HelperClientError::PermissionDenied { .. }
                | HelperClientError::NotListening { .. }
                | HelperClientError::Connect { .. }
        )
    }
}

#[derive(Debug, Clone)]
struct Connection {
    /// Counts connections, so a failed call only discards the connection it used.
    generation: u64,
    rpc: RpcClient,
    hello: HelloReply,
    /// The connection's dispatch task; once it has finished, nothing can be sent on it.
    dispatch: Arc<tokio::task::JoinHandle<()>>,
}

impl Connection {
    /// Whether the connection can still carry a request (its dispatch task runs).
    fn is_alive(&self) -> bool {
        !self.dispatch.is_finished()
    }
}

#[derive(Debug, Default)]
struct State {
    conn: Option<Connection>,
    generations: u64,
}

/// A lazily connecting, reconnecting client for the root helper. Cheap to clone; clones
/// share the connection.
#[derive(Debug, Clone)]
pub struct HelperClient {
    socket: PathBuf,
    state: Arc<Mutex<State>>,
}

/// What a failed RPC means for the connection.
enum Failure {
    /// The connection is gone (shutdown, send error, channel error).
    Transport(String),
    /// The deadline passed.
    Deadline,
}

fn classify(e: RpcError) -> Failure {
    match e {
        RpcError::DeadlineExceeded => Failure::Deadline,
        RpcError::Server(s) if s.kind == io::ErrorKind::TimedOut => Failure::Deadline,
        other => Failure::Transport(error_chain(&other)),
    }
}

/// The error for a call whose deadline passed. A state-changing operation keeps running in
/// the helper after the client stops waiting, so its outcome is unknown.
fn deadline_error(kind: CallKind, after: Duration) -> HelperClientError {
    if kind.is_read_only() {
        HelperClientError::Deadline {
            operation: kind.name(),
            after,
        }
    } else {
        HelperClientError::OutcomeUnknown {
            operation: kind.name(),
            detail: format!(
                "the helper did not answer within {} s (it finishes the operation on its own)",
                after.as_secs()
            ),
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

fn context_with(deadline: Duration) -> tarpc::context::Context {
    let mut ctx = tarpc::context::current();
    ctx.deadline = Instant::now() + deadline;
    ctx
}

impl HelperClient {
    /// A client for the helper listening on `socket`. Connects on the first call.
    pub fn new(socket: impl Into<PathBuf>) -> HelperClient {
        HelperClient {
            socket: socket.into(),
            state: Arc::new(Mutex::new(State::default())),
        }
    }

    /// The socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    async fn open(&self, generation: u64) -> Result<Connection, HelperClientError> {
        let path = self.socket.clone();
        let stream = UnixStream::connect(&path)
            .await
            .map_err(|source| match source.kind() {
                io::ErrorKind::NotFound => HelperClientError::SocketMissing { path },
                io::ErrorKind::PermissionDenied => HelperClientError::PermissionDenied { path },
                io::ErrorKind::ConnectionRefused => {
                    HelperClientError::NotListening { path, source }
                }
                _ => HelperClientError::Connect { path, source },
            })?;
        let new = RpcClient::new(tarpc::client::Config::default(), client_transport(stream));
        let rpc = new.client;
        let dispatch = Arc::new(tokio::spawn(async move {
            if let Err(e) = new.dispatch.await {
                tracing::debug!(error = %error_chain(&e), "helper connection closed");
            }
        }));
        let deadline = CallKind::Hello.deadline();
        let reply = tokio::time::timeout(
            deadline + Duration::from_secs(1),
            rpc.hello(context_with(deadline), PROTOCOL_VERSION),
        )
        .await;
        let hello = match reply {
            Err(_) => {
                return Err(HelperClientError::Deadline {
                    operation: CallKind::Hello.name(),
                    after: deadline,
                });
            }
            Ok(Err(e)) => {
                return Err(match classify(e) {
                    Failure::Deadline => HelperClientError::Deadline {
                        operation: CallKind::Hello.name(),
                        after: deadline,
                    },
                    Failure::Transport(detail) => HelperClientError::Disconnected {
                        operation: CallKind::Hello.name(),
                        detail,
                    },
                });
            }
            Ok(Ok(Err(HelperError::VersionMismatch { helper, agent }))) => {
                return Err(HelperClientError::VersionMismatch { helper, agent });
            }
            Ok(Ok(Err(e))) => return Err(HelperClientError::Helper(e)),
            Ok(Ok(Ok(h))) => h,
        };
        if hello.protocol_version != PROTOCOL_VERSION {
            return Err(HelperClientError::VersionMismatch {
                helper: hello.protocol_version,
                agent: PROTOCOL_VERSION,
            });
        }
        tracing::debug!(
            socket = %self.socket.display(),
            helper_version = %hello.helper_version,
            "connected to helper"
        );
        Ok(Connection {
            generation,
            rpc,
            hello,
            dispatch,
        })
    }

    /// The current connection, opening one (with its `hello`) if there is none.
    async fn connection(&self) -> Result<Connection, HelperClientError> {
        let mut state = self.state.lock().await;
        if let Some(c) = &state.conn {
            if c.is_alive() {
                return Ok(c.clone());
            }
            // The helper closed this connection (e.g. its idle exit) while we held it:
            // nothing was sent on it, so a fresh connection is safe for any call.
            tracing::debug!("helper connection was closed; reconnecting");
            state.conn = None;
        }
        state.generations += 1;
        let conn = self.open(state.generations).await?;
        state.conn = Some(conn.clone());
        Ok(conn)
    }

    /// Drops the current connection (if any), so the helper sees no client and can reach its
    /// idle exit. The next call connects again (socket activation starts the helper anew).
    /// Clones share the connection, so this disconnects them too; a call already in flight
    /// keeps its own handle and finishes normally.
    pub async fn disconnect(&self) {
        self.state.lock().await.conn = None;
    }

    /// Forgets the connection `generation` (if it is still the current one).
    async fn discard(&self, generation: u64) {
        let mut state = self.state.lock().await;
        if state
            .conn
            .as_ref()
            .is_some_and(|c| c.generation == generation)
        {
            state.conn = None;
        }
    }

    async fn call<T, F, Fut>(&self, kind: CallKind, f: F) -> Result<T, HelperClientError>
    where
        F: Fn(RpcClient, tarpc::context::Context) -> Fut,
        Fut: std::future::Future<Output = Result<Result<T, HelperError>, RpcError>>,
    {
        let deadline = kind.deadline();
        let mut attempt = 0;
        // Why the previous attempt's connection was lost, when this is the retry.
        let mut lost: Option<String> = None;
        loop {
            attempt += 1;
            let conn = match (self.connection().await, lost.take()) {
                (Ok(c), _) => c,
                (Err(e), None) => return Err(e),
                (Err(e), Some(detail)) => {
                    return Err(HelperClientError::Disconnected {
                        operation: kind.name(),
                        detail: format!("{detail}; reconnecting failed: {e}"),
                    });
                }
            };
            let fut = f(conn.rpc.clone(), context_with(deadline));
            let result = tokio::time::timeout(deadline + Duration::from_secs(1), fut).await;
            let failure = match result {
                Ok(Ok(Ok(v))) => return Ok(v),
                Ok(Ok(Err(e))) => return Err(HelperClientError::Helper(e)),
                Ok(Err(e)) => classify(e),
                Err(_) => Failure::Deadline,
            };
            // Whatever failed, the next call starts on a fresh connection.
            self.discard(conn.generation).await;
            match failure {
                Failure::Deadline => return Err(deadline_error(kind, deadline)),
                Failure::Transport(detail) if !kind.is_read_only() => {
                    return Err(HelperClientError::OutcomeUnknown {
                        operation: kind.name(),
                        detail: format!(
                            "the connection to the helper was lost before it answered ({detail})"
                        ),
                    });
                }
                Failure::Transport(detail) if attempt >= 2 => {
                    return Err(HelperClientError::Disconnected {
                        operation: kind.name(),
                        detail,
                    });
                }
                Failure::Transport(detail) => {
                    tracing::info!(
                        operation = kind.name(),
                        %detail,
                        "helper connection lost; retrying once on a new connection"
                    );
                    lost = Some(detail);
                }
            }
        }
    }

    /// Connects if needed and returns the helper's `hello` reply from the current connection.
    pub async fn hello(&self) -> Result<HelloReply, HelperClientError> {
        let conn = self.connection().await?;
        Ok(conn.hello)
    }

    /// Sends a fresh `hello` on the current connection (reconnecting if needed): a round trip
    /// that also proves the connection is alive.
    pub async fn ping(&self) -> Result<HelloReply, HelperClientError> {
        self.call(CallKind::Hello, |c, ctx| async move {
            c.hello(ctx, PROTOCOL_VERSION).await
        })
        .await
    }

    /// Builds a golden-image container (never retried).
    pub async fn golden_image_create(
        &self,
        req: GoldenImageRequest,
    ) -> Result<GoldenImageReply, HelperClientError> {
        self.call(CallKind::GoldenImage, |c, ctx| {
            let req = req.clone();
            async move { c.golden_image_create(ctx, req).await }
        })
        .await
    }

    /// Mounts a filesystem by UUID (never retried).
    pub async fn usb_mount(&self, req: UsbMountRequest) -> Result<MountInfo, HelperClientError> {
        self.call(CallKind::UsbMount, |c, ctx| {
            let req = req.clone();
            async move { c.usb_mount(ctx, req).await }
        })
        .await
    }

    /// Unmounts a managed mount (never retried).
    pub async fn usb_unmount(&self, name: MountName) -> Result<UnmountReply, HelperClientError> {
        self.call(CallKind::UsbUnmount, |c, ctx| {
            let name = name.clone();
            async move { c.usb_unmount(ctx, name).await }
        })
        .await
    }

    /// Lists the managed mounts.
    pub async fn usb_list(&self) -> Result<Vec<MountInfo>, HelperClientError> {
        self.call(
            CallKind::UsbList,
            |c, ctx| async move { c.usb_list(ctx).await },
        )
        .await
    }

    /// Lists the disks SMART can be read from.
    pub async fn smart_scan(&self) -> Result<Vec<DiskInfo>, HelperClientError> {
        self.call(CallKind::SmartScan, |c, ctx| async move {
            c.smart_scan(ctx).await
        })
        .await
    }

    /// Reads one disk's raw SMART data.
    pub async fn smart_read(&self, disk: DiskName) -> Result<SmartReport, HelperClientError> {
        self.call(CallKind::SmartRead, |c, ctx| {
            let disk = disk.clone();
            async move { c.smart_read(ctx, disk).await }
        })
        .await
    }

    /// Reads the hardware sensors.
    pub async fn sensors_read(&self) -> Result<Vec<SensorReading>, HelperClientError> {
        self.call(CallKind::Sensors, |c, ctx| async move {
            c.sensors_read(ctx).await
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_reads_are_retryable() {
        for k in [
            CallKind::Hello,
            CallKind::UsbList,
            CallKind::SmartScan,
            CallKind::SmartRead,
            CallKind::Sensors,
        ] {
            assert!(k.is_read_only(), "{k:?}");
        }
        for k in [
            CallKind::GoldenImage,
            CallKind::UsbMount,
            CallKind::UsbUnmount,
        ] {
            assert!(!k.is_read_only(), "{k:?}");
        }
        assert_eq!(CallKind::GoldenImage.deadline(), Duration::from_secs(1200));
        assert!(CallKind::UsbMount.deadline() > Duration::from_secs(60));
    }

    #[test]
    fn a_missed_deadline_of_a_change_leaves_the_outcome_unknown() {
        for k in [
            CallKind::GoldenImage,
            CallKind::UsbMount,
            CallKind::UsbUnmount,
        ] {
            let e = deadline_error(k, k.deadline());
            assert!(
                matches!(e, HelperClientError::OutcomeUnknown { .. }),
                "{k:?}: {e}"
            );
            let msg = e.to_string();
            assert!(msg.contains("outcome is unknown"), "{msg}");
            assert!(msg.contains("did not answer within"), "{msg}");
        }
        let e = deadline_error(CallKind::SmartRead, Duration::from_secs(30));
        assert!(matches!(e, HelperClientError::Deadline { .. }), "{e}");
        assert!(e.to_string().contains("did not answer within 30 s"));
    }

    #[tokio::test]
    async fn missing_socket_says_what_to_check() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("helper.sock");
        let client = HelperClient::new(&path);
        let err = client.sensors_read().await.unwrap_err();
        assert!(matches!(err, HelperClientError::SocketMissing { .. }));
        let msg = err.to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains("felhom-helper.socket"), "{msg}");
    }

    #[tokio::test]
    async fn socket_without_listener_is_not_listening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("helper.sock");
        // Bind and drop: the path stays, nothing listens.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let err = HelperClient::new(&path).hello().await.unwrap_err();
        assert!(
            matches!(err, HelperClientError::NotListening { .. }),
            "{err}"
        );
        assert!(err.is_unreachable());
    }
}
