//! The tarpc service: peer check, one request at a time per connection, one privileged
//! operation at a time overall, server-side time caps, the audit log and idle exit.

use std::sync::Arc;
use std::time::Duration;

use felhom_protocol::{
    Capability, DiskInfo, DiskName, GoldenImageReply, GoldenImageRequest, HelloReply, Helper,
    HelperError, MountBackend, MountInfo, MountName, PROTOCOL_VERSION, SensorReading, SmartReport,
    UnmountReply, UsbMountRequest,
};
use futures::StreamExt;
use tarpc::context::Context;
use tarpc::server::{BaseChannel, Channel};
use tokio::sync::{Mutex, OwnedMutexGuard, OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;

use crate::audit::{Audit, NOISE_WINDOW, Noise, NoiseLimiter, Notes};
use crate::config::{BackendChoice, LoadedConfig, Tool};
use crate::contain;
use crate::error::StartupError;
use crate::exec::{PIPE_DRAIN, TERM_GRACE};
use crate::listener::{ListenSocket, Peer, PeerPolicy, peer_of};
use crate::ops::{OpEnv, golden_image, hardware, usb};

/// The helper's package version.
pub const HELPER_VERSION: &str = env!("CARGO_PKG_VERSION");

/// How much earlier than the client's deadline the helper stops a tool, so the client gets a
/// `TimedOut` reply rather than a dropped request: the tool's TERM grace, the output pipes'
/// drain time, and half a second for the reply.
const CLIENT_DEADLINE_MARGIN: Duration =
    Duration::from_millis(TERM_GRACE.as_millis() as u64 + PIPE_DRAIN.as_millis() as u64 + 500);

/// The same margin for operations that only read sysfs (no tool, nothing to TERM).
const CLIENT_DEADLINE_MARGIN_NO_TOOL: Duration = Duration::from_millis(500);

/// If less than this remains of the client's deadline once the lock is held, the operation
/// is refused as timed out without starting anything.
const MIN_REMAINING: Duration = Duration::from_secs(1);

/// Extra time, beyond the deadline and the TERM grace, before a stuck operation is dropped:
/// room for ending a tool's tree ([`crate::contain`]'s wait after SIGKILL), a mount's rollback
/// and reconciliation on their own fresh deadline ([`usb::CLEANUP_TIME`]), and a margin.
const BACKSTOP: Duration =
    Duration::from_secs(crate::contain::KILL_WAIT.as_secs() + usb::CLEANUP_TIME.as_secs() + 3);

/// Counts live connections and in-flight requests, for idle exit.
#[derive(Debug)]
pub struct Activity {
    tx: watch::Sender<usize>,
}

/// Keeps [`Activity`] non-idle while alive.
#[derive(Debug)]
pub struct ActivityGuard {
    activity: Arc<Activity>,
}

impl Drop for ActivityGuard {
    fn drop(&mut self) {
        // Only the step to idle wakes the idle timer.
        self.activity.tx.send_if_modified(|n| {
            *n = n.saturating_sub(1);
            *n == 0
        });
    }
}

impl Activity {
    /// A new, idle counter.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            tx: watch::Sender::new(0),
        })
    }

    /// Marks something as active until the guard is dropped. Only the step from idle to
    /// active wakes the idle timer: a request on an open connection (which is already
    /// active) costs no wake-up of the accept loop.
    pub fn enter(self: &Arc<Self>) -> ActivityGuard {
        self.tx.send_if_modified(|n| {
            *n += 1;
            *n == 1
        });
        ActivityGuard {
            activity: Arc::clone(self),
        }
    }

    /// Resolves once nothing has been active for `idle`.
    pub async fn idle_for(&self, idle: Duration) {
        let mut rx = self.tx.subscribe();
        loop {
            if rx.wait_for(|n| *n == 0).await.is_err() {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(idle) => {
                    if *rx.borrow() == 0 {
                        return;
                    }
                }
                changed = rx.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

/// State shared by all connections.
#[derive(Debug)]
pub struct Shared {
    cfg: Arc<LoadedConfig>,
    op_lock: Arc<Mutex<()>>,
    activity: Arc<Activity>,
    noise: Arc<NoiseLimiter>,
    /// One permit per connection being served (`max_connections`).
    connections: Arc<Semaphore>,
    /// Set at SIGTERM/SIGINT: no new privileged operation starts.
    stopping: std::sync::atomic::AtomicBool,
    /// What `hello` reports, worked out once at start-up (the tools were probed by the
    /// configuration's trust checks; a helper runs only until it idles out).
    capabilities: Vec<Capability>,
}

impl Shared {
    /// Shared state for `cfg`.
    pub fn new(cfg: LoadedConfig) -> Arc<Self> {
        Arc::new(Self {
            capabilities: capabilities(&cfg),
            connections: Arc::new(Semaphore::new(cfg.config.max_connections)),
            cfg: Arc::new(cfg),
            op_lock: Arc::new(Mutex::new(())),
            activity: Activity::new(),
            noise: Arc::new(NoiseLimiter::new(NOISE_WINDOW)),
            stopping: std::sync::atomic::AtomicBool::new(false),
        })
    }
}

/// One accepted, authorized connection: the service implementation.
#[derive(Debug, Clone)]
pub struct Connection {
    shared: Arc<Shared>,
    peer: Peer,
}

/// A running privileged operation: holds the global lock and knows its deadline.
struct Running {
    _permit: OwnedMutexGuard<()>,
    deadline: Instant,
    cap: Duration,
    op: &'static str,
}

impl Connection {
    /// The record of one call: on its own for an operation that changes the host,
    /// aggregated per peer uid and window for the others (see [`crate::audit`]).
    fn audit(&self, op: &'static str, request: &impl std::fmt::Debug) -> Audit {
        Audit::begin(op, request, self.peer).aggregated(&self.shared.noise)
    }

    /// Waits for the global lock (within the client's deadline), then computes the
    /// operation's deadline: the server cap, shortened by the client's deadline minus a
    /// margin that leaves room to stop a tool and reply. If too little of the client's time
    /// remains, the operation is refused as timed out without starting anything.
    async fn start(
        &self,
        ctx: &Context,
        op: &'static str,
        cap_secs: u64,
        runs_tools: bool,
    ) -> Result<Running, HelperError> {
        let client_deadline = Instant::from_std(ctx.deadline);
        if let Some(what) = survivors_busy() {
            return Err(HelperError::Busy { what });
        }
        let lock = Arc::clone(&self.shared.op_lock).lock_owned();
        let permit = tokio::time::timeout_at(client_deadline, lock)
            .await
            .map_err(|_| HelperError::Busy {
                what: survivors_busy()
                    .unwrap_or_else(|| "another privileged operation is still running".into()),
            })?;
        // A request that waited for the lock while the helper began to stop must not start
        // anything the shutdown would then cut off half-way.
        if self
            .shared
            .stopping
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            return Err(HelperError::Unavailable {
                what: "the helper is stopping; try again (socket activation starts it anew)".into(),
            });
        }
        let cap = Duration::from_secs(cap_secs);
        let margin = if runs_tools {
            CLIENT_DEADLINE_MARGIN
        } else {
            CLIENT_DEADLINE_MARGIN_NO_TOOL
        };
        let now = Instant::now();
        let by_server = now + cap;
        let deadline = match client_deadline.checked_sub(margin) {
            Some(by_client) if by_client >= by_server => by_server,
            Some(by_client) if by_client >= now + MIN_REMAINING => by_client,
            _ => {
                return Err(HelperError::TimedOut {
                    operation: op.to_string(),
                    after_secs: 0,
                });
            }
        };
        Ok(Running {
            _permit: permit,
            deadline,
            cap,
            op,
        })
    }

    /// Runs a state-changing operation in its own task, so that a client that cancels,
    /// disconnects or runs out of time cannot abort it between a tool and the bookkeeping
    /// that must follow (a mount and its record, a unit and `enable --now`). The task holds
    /// the operation lock and keeps the helper from idling out; it is bounded by the
    /// operation's deadline (and the backstop), not by the request. The operation gets the
    /// record's [`Notes`], to attach what it learned (the device it mounted) to the record.
    async fn detached<T, F>(&self, r: Running, audit: Audit, f: F) -> Result<T, HelperError>
    where
        T: Send + 'static,
        F: for<'a> FnOnce(
                OpEnv<'a>,
                Notes,
            ) -> std::pin::Pin<
                Box<dyn Future<Output = Result<T, HelperError>> + Send + 'a>,
            > + Send
            + 'static,
    {
        let shared = Arc::clone(&self.shared);
        let busy = shared.activity.enter();
        let notes = audit.notes();
        let task = tokio::spawn(async move {
            let result = Self::bounded(&r, f(env_of(&shared, &r), notes)).await;
            audit.finish(&result);
            release(r, busy);
            result
        });
        task.await.unwrap_or_else(|e| {
            Err(HelperError::Internal {
                message: format!("operation task failed: {e}"),
            })
        })
    }

    /// Runs `fut` with a backstop after the operation's deadline.
    async fn bounded<T>(
        r: &Running,
        fut: impl Future<Output = Result<T, HelperError>>,
    ) -> Result<T, HelperError> {
        tokio::time::timeout_at(r.deadline + TERM_GRACE + BACKSTOP, fut)
            .await
            .unwrap_or_else(|_| {
                Err(HelperError::TimedOut {
                    operation: r.op.to_string(),
                    after_secs: r.cap.as_secs(),
                })
            })
    }

    /// Runs blocking filesystem work (sysfs) on the blocking pool, bounded by the deadline.
    async fn blocking<T: Send + 'static>(
        r: &Running,
        f: impl FnOnce() -> Result<T, HelperError> + Send + 'static,
    ) -> Result<T, HelperError> {
        let task = tokio::task::spawn_blocking(f);
        match tokio::time::timeout_at(r.deadline, task).await {
            Ok(Ok(result)) => result,
            Ok(Err(e)) => Err(HelperError::Internal {
                message: format!("{} failed: {e}", r.op),
            }),
            Err(_) => Err(HelperError::TimedOut {
                operation: r.op.to_string(),
                after_secs: r.cap.as_secs(),
            }),
        }
    }
}

/// How often the lock's keeper looks whether the survivors of an operation are gone.
const SURVIVOR_POLL: Duration = Duration::from_secs(1);

/// `Busy`'s text while processes of an earlier operation survive ([`contain::survivors`]).
fn survivors_busy() -> Option<String> {
    let left = contain::survivors();
    (!left.is_empty()).then(|| {
        format!(
            "processes of an earlier operation survived SIGKILL and still run: {}; no \
             privileged operation starts until they are gone",
            contain::describe(&left)
        )
    })
}

/// Ends a privileged operation: releases the operation lock, unless processes of the
/// operation survived ([`contain::survivors`], e.g. in uninterruptible sleep): then a thread
/// of the blocking pool keeps the lock, and the helper awake, until they are gone. (A plain
/// blocking loop, not another async task: smaller, and the runtime's shutdown timeout still
/// bounds the helper's exit.)
fn release<G: Send + 'static>(r: Running, busy: G) {
    if contain::survivors().is_empty() {
        return;
    }
    let op = r.op;
    tokio::task::spawn_blocking(move || {
        hold_while_survivors(op, (r, busy), SURVIVOR_POLL, || {
            contain::clear_tree(Duration::ZERO, None).survivors
        });
    });
}

/// Keeps `guard` (the operation lock and an activity guard) until `check`, run every `poll`,
/// finds no survivor left. Blocking.
fn hold_while_survivors<G>(
    op: &'static str,
    guard: G,
    poll: Duration,
    mut check: impl FnMut() -> Vec<contain::Survivor>,
) {
    // The operation's own audit record has named the survivors and said that the lock stays.
    loop {
        std::thread::sleep(poll);
        if check().is_empty() {
            break;
        }
    }
    tracing::warn!(
        operation = op,
        "the surviving processes of the operation are gone; the operation lock is released"
    );
    drop(guard);
}

/// The operations this helper can serve with its configuration and tools.
fn capabilities(cfg: &LoadedConfig) -> Vec<Capability> {
    let c = &cfg.config;
    let mut caps = Vec::new();
    if cfg.has_tool(Tool::Pct) {
        caps.push(Capability::GoldenImage);
    }
    let mount_tools = match c.mount_backend {
        BackendChoice::Systemd => cfg.has_tool(Tool::Systemctl),
        BackendChoice::Direct => cfg.has_tool(Tool::Mount) && cfg.has_tool(Tool::Umount),
    };
    if cfg.has_tool(Tool::Blkid) && mount_tools {
        caps.push(Capability::UsbMount);
    }
    if cfg.has_tool(Tool::Smartctl) && c.sysfs_block.is_dir() {
        caps.push(Capability::Smart);
    }
    if c.sysfs_hwmon.is_dir() {
        caps.push(Capability::Sensors);
    }
    caps
}

fn env_of<'a>(shared: &'a Shared, r: &Running) -> OpEnv<'a> {
    OpEnv {
        cfg: &shared.cfg,
        deadline: r.deadline,
        operation: r.op,
        cleanup: false,
    }
}

impl Helper for Connection {
    async fn hello(self, _: Context, agent_protocol: u32) -> Result<HelloReply, HelperError> {
        self.shared.noise.note(Noise::Hello, self.peer);
        if agent_protocol != PROTOCOL_VERSION {
            return Err(HelperError::VersionMismatch {
                helper: PROTOCOL_VERSION,
                agent: agent_protocol,
            });
        }
        Ok(HelloReply {
            protocol_version: PROTOCOL_VERSION,
            helper_version: HELPER_VERSION.to_string(),
            capabilities: self.shared.capabilities.clone(),
            mount_backend: MountBackend::from(self.shared.cfg.config.mount_backend),
        })
    }

    async fn golden_image_create(
        self,
        ctx: Context,
        req: GoldenImageRequest,
    ) -> Result<GoldenImageReply, HelperError> {
        const OP: &str = "golden_image_create";
        let audit = self.audit(OP, &req);
        let cap = self.shared.cfg.config.time_caps.golden_image;
        let r = match self.start(&ctx, OP, cap, true).await {
            Ok(r) => r,
            Err(e) => return audit.fail(e),
        };
        self.detached(r, audit, move |env, _notes| {
            Box::pin(async move { golden_image::create(env, &req).await })
        })
        .await
    }

    async fn usb_mount(self, ctx: Context, req: UsbMountRequest) -> Result<MountInfo, HelperError> {
        const OP: &str = "usb_mount";
        let audit = self.audit(OP, &req);
        let cap = self.shared.cfg.config.time_caps.mount;
        let r = match self.start(&ctx, OP, cap, true).await {
            Ok(r) => r,
            Err(e) => return audit.fail(e),
        };
        self.detached(r, audit, move |env, notes| {
            Box::pin(async move { usb::mount(env, &req, &notes).await })
        })
        .await
    }

    async fn usb_unmount(self, ctx: Context, name: MountName) -> Result<UnmountReply, HelperError> {
        const OP: &str = "usb_unmount";
        let audit = self.audit(OP, &name);
        let cap = self.shared.cfg.config.time_caps.mount;
        let r = match self.start(&ctx, OP, cap, true).await {
            Ok(r) => r,
            Err(e) => return audit.fail(e),
        };
        self.detached(r, audit, move |env, notes| {
            Box::pin(async move { usb::unmount(env, &name, &notes).await })
        })
        .await
    }

    async fn usb_list(self, ctx: Context) -> Result<Vec<MountInfo>, HelperError> {
        const OP: &str = "usb_list";
        let audit = self.audit(OP, &());
        let result = async {
            let r = self
                .start(&ctx, OP, self.shared.cfg.config.time_caps.mount, false)
                .await?;
            let shared = Arc::clone(&self.shared);
            Self::blocking(&r, move || usb::list(&shared.cfg)).await
        }
        .await;
        audit.finish(&result);
        result
    }

    async fn smart_scan(self, ctx: Context) -> Result<Vec<DiskInfo>, HelperError> {
        const OP: &str = "smart_scan";
        let audit = self.audit(OP, &());
        let result = async {
            let r = self
                .start(&ctx, OP, self.shared.cfg.config.time_caps.smart, false)
                .await?;
            let shared = Arc::clone(&self.shared);
            Self::blocking(&r, move || hardware::scan(&shared.cfg)).await
        }
        .await;
        audit.finish(&result);
        result
    }

    async fn smart_read(self, ctx: Context, disk: DiskName) -> Result<SmartReport, HelperError> {
        const OP: &str = "smart_read";
        let audit = self.audit(OP, &disk);
        let cap = self.shared.cfg.config.time_caps.smart;
        let r = match self.start(&ctx, OP, cap, true).await {
            Ok(r) => r,
            Err(e) => return audit.fail(e),
        };
        // Detached like the state-changing operations: a client that goes away does not
        // drop a running smartctl; it ends within the cap, with its whole tree.
        self.detached(r, audit, move |env, _notes| {
            Box::pin(async move { hardware::smart_read(env, &disk).await })
        })
        .await
    }

    async fn sensors_read(self, ctx: Context) -> Result<Vec<SensorReading>, HelperError> {
        const OP: &str = "sensors_read";
        let audit = self.audit(OP, &());
        let result = async {
            let r = self
                .start(&ctx, OP, self.shared.cfg.config.time_caps.sensors, false)
                .await?;
            let root = self.shared.cfg.config.sysfs_hwmon.clone();
            Self::blocking(&r, move || hardware::sensors(&root)).await
        }
        .await;
        audit.finish(&result);
        result
    }
}

/// Serves connections on `socket` until idle for the configured time, or SIGTERM/SIGINT.
pub async fn serve(cfg: LoadedConfig, socket: ListenSocket) -> Result<(), StartupError> {
    let idle = cfg.idle_timeout();
    let policy = PeerPolicy::new(cfg.agent_uid);
    let describe = socket.describe();
    let (std_listener, cleanup) = socket.into_parts();
    let listener = tokio::net::UnixListener::from_std(std_listener)
        .map_err(|e| StartupError::Listen(e.to_string()))?;
    let shared = Shared::new(cfg);
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| StartupError::Runtime(format!("cannot handle SIGTERM: {e}")))?;
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(|e| StartupError::Runtime(format!("cannot handle SIGINT: {e}")))?;
    tracing::info!(
        listening = %describe,
        allowed_uids = ?policy.allowed_uids(),
        idle_timeout_secs = idle.as_secs(),
        backend = ?shared.cfg.config.mount_backend,
        "felhom-helper {HELPER_VERSION} serving"
    );
    // Created once: refused peers and accept errors must not re-arm it; real activity
    // (an accepted connection, a request) does, through the activity counter.
    let idle_exit = shared.activity.idle_for(idle);
    tokio::pin!(idle_exit);
    let mut flush = tokio::time::interval(NOISE_WINDOW);
    flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let result = loop {
        tokio::select! {
            accepted = listener.accept() => {
                match accepted {
                    Ok((stream, _)) => accept(&shared, &policy, stream),
                    Err(e) => {
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
            _ = flush.tick() => shared.noise.flush(false),
            _ = &mut idle_exit => {
                tracing::info!("idle for {} s with nothing in flight; exiting", idle.as_secs());
                break Ok(());
            }
            _ = sigterm.recv() => {
                tracing::info!("SIGTERM; exiting");
                break Ok(());
            }
            _ = sigint.recv() => {
                tracing::info!("SIGINT; exiting");
                break Ok(());
            }
        }
    };
    // No new connection from here on. An operation still running gets its shutdown grace to
    // finish; then its tools are stopped (TERM, grace, KILL of the whole tree) and it
    // records its outcome before the helper exits.
    drop(listener);
    shared
        .stopping
        .store(true, std::sync::atomic::Ordering::SeqCst);
    finish_in_flight(&shared).await;
    shared.noise.flush(true);
    if let Some(path) = cleanup {
        let _ = std::fs::remove_file(path);
    }
    result
}

/// Waits for a running privileged operation at shutdown: up to `shutdown_grace_secs` for it
/// to finish, then stops its tools and waits for it to record its outcome.
async fn finish_in_flight(shared: &Arc<Shared>) {
    let grace = Duration::from_secs(shared.cfg.config.shutdown_grace_secs);
    let lock = Arc::clone(&shared.op_lock);
    if let Ok(_idle) = tokio::time::timeout(grace, lock.lock()).await {
        return;
    }
    tracing::warn!(
        grace_secs = grace.as_secs(),
        "an operation is still running after the shutdown grace; stopping its tools"
    );
    crate::exec::request_shutdown();
    let wind_down = TERM_GRACE + crate::contain::KILL_WAIT + usb::CLEANUP_TIME;
    if tokio::time::timeout(wind_down, lock.lock()).await.is_err() {
        // Survivors of SIGKILL, if any, are inherited by PID 1.
        tracing::error!(
            survivors = %contain::describe(&contain::survivors()),
            "the running operation did not wind down; exiting anyway"
        );
    }
}

/// Serves one accepted connection, if its peer may connect and fewer than `max_connections`
/// are being served; else closes it at once, with an aggregated record.
fn accept(shared: &Arc<Shared>, policy: &PeerPolicy, stream: tokio::net::UnixStream) {
    let peer = match peer_of(&stream) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!("dropping a connection whose peer credentials are unreadable: {e}");
            return;
        }
    };
    if !policy.allows(&peer) {
        shared.noise.note(Noise::Refused, peer);
        return;
    }
    let Ok(slot) = Arc::clone(&shared.connections).try_acquire_owned() else {
        shared.noise.note(Noise::OverCap, peer);
        return;
    };
    tracing::debug!(
        peer_uid = peer.uid,
        peer_pid = peer.pid,
        "connection accepted"
    );
    let guard = shared.activity.enter();
    let activity = Arc::clone(&shared.activity);
    let conn = Connection {
        shared: Arc::clone(shared),
        peer,
    };
    tokio::spawn(serve_connection(conn, stream, guard, slot, activity));
}

/// Serves the requests of one connection until it closes. A transport error (a frame that
/// does not decode, a reset) ends the connection and is recorded through the noise limiter,
/// in place of tarpc's own per-connection log line.
async fn serve_connection(
    conn: Connection,
    stream: tokio::net::UnixStream,
    _guard: ActivityGuard,
    _slot: OwnedSemaphorePermit,
    activity: Arc<Activity>,
) {
    let (shared, peer) = (Arc::clone(&conn.shared), conn.peer);
    let transport = felhom_protocol::transport::server_transport(stream);
    let serve = conn.serve();
    let mut requests = BaseChannel::with_defaults(transport)
        .max_concurrent_requests(1)
        .requests();
    while let Some(item) = requests.next().await {
        match item {
            Ok(request) => {
                let in_flight = activity.enter();
                let serve = serve.clone();
                tokio::spawn(async move {
                    request.execute(serve).await;
                    drop(in_flight);
                });
            }
            Err(e) => {
                if shared.noise.admit(Noise::ConnectionError, peer) {
                    tracing::warn!(
                        peer_uid = peer.uid,
                        peer_pid = peer.pid,
                        error = %e,
                        "a connection ended with a transport error (further ones from this uid \
                         are counted for {} s)",
                        NOISE_WINDOW.as_secs()
                    );
                }
                break;
            }
        }
    }
    tracing::debug!(peer_uid = peer.uid, "connection closed");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contain::Survivor;

    fn test_config() -> LoadedConfig {
        let config = crate::config::Config::default();
        LoadedConfig {
            configured_tools: config.tools.clone(),
            config,
            agent_uid: 0,
            allowed_filesystems: vec![],
            missing_tools: vec![],
        }
    }

    fn ctx(secs: u64) -> Context {
        let mut c = tarpc::context::current();
        c.deadline = std::time::Instant::now() + Duration::from_secs(secs);
        c
    }

    fn stuck() -> Survivor {
        Survivor {
            pid: 4242,
            comm: "stuck".into(),
        }
    }

    #[tokio::test]
    async fn a_survivor_keeps_the_lock_and_later_requests_are_busy_naming_it() {
        // The survivor list is process-wide, and other tests' tools end with a clear_tree.
        let _serial = crate::exec::SPAWN_LOCK.lock().await;
        let shared = Shared::new(test_config());
        let conn = Connection {
            shared: Arc::clone(&shared),
            peer: Peer {
                uid: 0,
                gid: 0,
                pid: None,
            },
        };
        // An operation without survivors releases the lock at once.
        let r = conn.start(&ctx(10), "op", 60, true).await.unwrap();
        contain::set_survivors_for_test(&[]);
        release(r, shared.activity.enter());
        assert!(shared.op_lock.try_lock().is_ok());
        assert_eq!(*shared.activity.tx.borrow(), 0);

        // One whose tool left a process that SIGKILL did not end keeps it.
        let r = conn.start(&ctx(10), "op", 60, true).await.unwrap();
        contain::set_survivors_for_test(&[stuck()]);
        release(r, shared.activity.enter());
        tokio::task::yield_now().await;
        assert!(shared.op_lock.try_lock().is_err(), "the lock was released");
        assert_eq!(*shared.activity.tx.borrow(), 1, "the helper may idle out");
        for op in ["usb_list", "golden_image_create"] {
            // At once, not when the client's deadline runs out waiting for the lock.
            let e =
                tokio::time::timeout(Duration::from_secs(5), conn.start(&ctx(60), op, 60, true))
                    .await
                    .expect("Busy at once")
                    .err()
                    .unwrap();
            assert!(
                matches!(&e, HelperError::Busy { what } if what.contains("pid 4242 (stuck)")),
                "{e}"
            );
        }
        // The keeper's own look (a real scan: nothing runs below this test process now)
        // finds it gone, and releases the lock.
        let until = Instant::now() + Duration::from_secs(10);
        while shared.op_lock.try_lock().is_err() {
            assert!(Instant::now() < until, "the lock was never released");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(contain::survivors().is_empty());
        assert!(conn.start(&ctx(10), "usb_list", 60, false).await.is_ok());
    }

    #[tokio::test]
    async fn the_keeper_holds_the_lock_while_any_look_finds_a_survivor() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let looks = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&looks);
        // Still there at the first two looks, gone at the third.
        let look = move || {
            if counted.fetch_add(1, Ordering::SeqCst) < 2 {
                vec![stuck()]
            } else {
                vec![]
            }
        };
        let poll = Duration::from_millis(200);
        let lock = Arc::new(Mutex::new(()));
        let guard = Arc::clone(&lock).lock_owned().await;
        let keeper = tokio::task::spawn_blocking(move || {
            hold_while_survivors("op", guard, poll, look);
        });
        tokio::time::sleep(poll * 2 + poll / 2).await;
        assert!(looks.load(Ordering::SeqCst) >= 2);
        assert!(
            lock.try_lock().is_err(),
            "released while a survivor was seen"
        );
        tokio::time::timeout(poll * 10, keeper)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(looks.load(Ordering::SeqCst), 3);
        assert!(lock.try_lock().is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn idle_waits_for_activity_to_end() {
        let a = Activity::new();
        let g = a.enter();
        let idle = a.idle_for(Duration::from_secs(5));
        tokio::pin!(idle);
        // Active: never idle, however long we wait.
        assert!(
            tokio::time::timeout(Duration::from_secs(60), &mut idle)
                .await
                .is_err()
        );
        drop(g);
        // Idle now: resolves after the idle time.
        assert!(
            tokio::time::timeout(Duration::from_secs(6), &mut idle)
                .await
                .is_ok()
        );
    }

    /// `hello` offers the USB mount only when every tool of the chosen backend is there: the
    /// direct backend needs `mount` and `umount` (a mount it could not undo is not offered),
    /// the systemd backend `systemctl`, and both `blkid`.
    #[test]
    fn usb_mount_is_offered_only_with_every_tool_its_backend_needs() {
        let offered = |backend, missing: &[Tool]| {
            let mut cfg = test_config();
            cfg.config.mount_backend = backend;
            cfg.missing_tools = missing.to_vec();
            capabilities(&cfg).contains(&Capability::UsbMount)
        };
        assert!(offered(BackendChoice::Direct, &[Tool::Systemctl]));
        assert!(!offered(BackendChoice::Direct, &[Tool::Umount]));
        assert!(!offered(BackendChoice::Direct, &[Tool::Mount]));
        assert!(!offered(BackendChoice::Direct, &[Tool::Blkid]));
        assert!(offered(
            BackendChoice::Systemd,
            &[Tool::Mount, Tool::Umount]
        ));
        assert!(!offered(BackendChoice::Systemd, &[Tool::Systemctl]));
        assert!(!offered(BackendChoice::Systemd, &[Tool::Blkid]));
    }

    /// SMART is offered only with `smartctl` and a sysfs block directory, sensors only with a
    /// hwmon directory: `hello` never promises what the next call would refuse.
    #[test]
    fn smart_and_sensors_are_offered_only_with_what_they_read() {
        let dir = tempfile::tempdir().unwrap();
        let absent = dir.path().join("absent");
        let caps = |missing: &[Tool], block: &std::path::Path, hwmon: &std::path::Path| {
            let mut cfg = test_config();
            cfg.missing_tools = missing.to_vec();
            cfg.config.sysfs_block = block.to_path_buf();
            cfg.config.sysfs_hwmon = hwmon.to_path_buf();
            capabilities(&cfg)
        };
        let here = dir.path();
        let all = caps(&[], here, here);
        assert!(all.contains(&Capability::Smart) && all.contains(&Capability::Sensors));
        assert!(!caps(&[Tool::Smartctl], here, here).contains(&Capability::Smart));
        assert!(!caps(&[], &absent, here).contains(&Capability::Smart));
        let no_hwmon = caps(&[], here, &absent);
        assert!(no_hwmon.contains(&Capability::Smart), "{no_hwmon:?}");
        assert!(!no_hwmon.contains(&Capability::Sensors), "{no_hwmon:?}");
    }

    /// A stuck operation (its future never ends, whatever its deadline says) is dropped with
    /// `TimedOut`, but only once the time it may still need is over: its tool's TERM grace,
    /// the tree kill's wait after SIGKILL and a mount rollback's own cleanup deadline, then
    /// 3 s. Earlier would cut a rollback short and leave a half-made mount; much later, a
    /// wedged operation holds the one-operation lock for nothing. (Paused clock: exact.)
    #[tokio::test(start_paused = true)]
    async fn a_stuck_operation_is_dropped_only_once_its_cleanup_time_is_over() {
        let lock = Arc::new(Mutex::new(()));
        let cap = Duration::from_secs(10);
        let deadline = Instant::now() + cap;
        let r = Running {
            _permit: Arc::clone(&lock).lock_owned().await,
            deadline,
            cap,
            op: "usb_mount",
        };
        let room = TERM_GRACE + contain::KILL_WAIT + usb::CLEANUP_TIME + Duration::from_secs(3);
        let op = Connection::bounded(&r, std::future::pending::<Result<(), HelperError>>());
        tokio::pin!(op);
        let slack = Duration::from_millis(10);
        let early = tokio::time::timeout_at(deadline + room - slack, &mut op).await;
        assert!(early.is_err(), "dropped before its cleanup time: {early:?}");
        match tokio::time::timeout_at(deadline + room + slack, &mut op).await {
            Ok(Err(HelperError::TimedOut {
                operation,
                after_secs,
            })) => assert_eq!((operation.as_str(), after_secs), ("usb_mount", 10)),
            other => panic!("a stuck operation still held after its backstop: {other:?}"),
        }
    }

    #[tokio::test]
    async fn the_longest_accepted_client_deadline_does_not_panic_the_timers() {
        let far = Instant::now()
            + Duration::from_secs(felhom_protocol::transport::MAX_DEADLINE_SECS)
            + CLIENT_DEADLINE_MARGIN;
        let r = tokio::time::timeout_at(far, async { 7 }).await;
        assert_eq!(r.ok(), Some(7));
        let pending = tokio::time::timeout_at(far, std::future::pending::<()>());
        assert!(
            tokio::time::timeout(Duration::from_millis(50), pending)
                .await
                .is_err()
        );
    }
}
