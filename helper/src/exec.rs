//! The only code in the helper that starts processes.
//!
//! Every tool runs from its absolute configured path with a cleared environment (only `PATH`
//! and `LC_ALL=C`), stdin from `/dev/null`, no shell, in its own process group. Its output is
//! captured up to a bound.
//!
//! No process outlives the run, whether it stays in the tool's group or not (see
//! [`crate::contain`]: the helper is the subreaper of everything it starts):
//! - when the tool exits, whatever it left running below the helper (a daemonized or
//!   `setsid()` grandchild) gets SIGTERM, then SIGKILL after [`TERM_GRACE`];
//! - at the deadline, or when the helper is shutting down ([`request_shutdown`]), the tool and
//!   everything below the helper get SIGTERM, then SIGKILL after the grace;
//! - if the future running a tool is dropped (only when the runtime itself is torn down),
//!   a guard does the same synchronously before the drop completes.
//!
//! [`run_as`] returns only once the tree is empty, so the caller's operation lock is held until
//! then.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use std::sync::atomic::{AtomicBool, Ordering};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::config::Tool;
use crate::contain;

static SHUTDOWN: AtomicBool = AtomicBool::new(false);
static SHUTDOWN_NOTIFY: Notify = Notify::const_new();

/// Tells every running tool to stop now (TERM, grace, KILL of its whole tree): the helper is
/// shutting down and its shutdown grace is over. Tools started afterwards are stopped at once.
pub fn request_shutdown() {
    SHUTDOWN.store(true, Ordering::SeqCst);
    SHUTDOWN_NOTIFY.notify_waiters();
}

/// Whether [`request_shutdown`] was called.
pub fn shutting_down() -> bool {
    SHUTDOWN.load(Ordering::SeqCst)
}

async fn shutdown_requested() {
    loop {
        let notified = SHUTDOWN_NOTIFY.notified();
        tokio::pin!(notified);
        // Register before checking the flag, so a request between the two is not missed.
        notified.as_mut().enable();
        if shutting_down() {
            return;
        }
        notified.await;
    }
}

/// The only `PATH` a tool sees.
pub const SAFE_PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

/// How long a tool has between SIGTERM and SIGKILL.
pub const TERM_GRACE: Duration = Duration::from_secs(2);

/// How long output pipes may stay open after the tool's group was killed (a descendant that
/// left the group could hold them).
pub(crate) const PIPE_DRAIN: Duration = Duration::from_secs(2);

/// What a finished tool left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// Exit code, or `None` when a signal ended it.
    pub exit_code: Option<i32>,
    /// Captured stdout, at most the bound.
    pub stdout: Vec<u8>,
    /// Whether stdout was cut at the bound.
    pub stdout_truncated: bool,
    /// Captured stderr, at most the bound.
    pub stderr: Vec<u8>,
    /// Whether stderr was cut at the bound.
    pub stderr_truncated: bool,
}

impl ExecOutput {
    /// Whether the tool exited with status 0.
    pub fn success(&self) -> bool {
        self.exit_code == Some(0)
    }

    /// The last part of stderr (or stdout when stderr is empty), for error messages.
    pub fn tail(&self) -> String {
        let src = if self.stderr.iter().all(u8::is_ascii_whitespace) {
            &self.stdout
        } else {
            &self.stderr
        };
        tail_text(src, 2048)
    }

    /// Converts to the protocol's bounded output type, with a visible truncation marker.
    pub fn to_tool_output(&self) -> felhom_protocol::ToolOutput {
        let (stdout, stdout_truncated) = bounded_text(&self.stdout, self.stdout_truncated);
        let (stderr, stderr_truncated) = bounded_text(&self.stderr, self.stderr_truncated);
        felhom_protocol::ToolOutput {
            exit_code: self.exit_code,
            stdout,
            stdout_truncated,
            stderr,
            stderr_truncated,
        }
    }
}

/// Appended to captured text that was cut at the bound.
pub const TRUNCATION_MARKER: &str = "\n[... output truncated by felhom-helper ...]\n";

/// `bytes` as lossy UTF-8 of at most `bytes.len()` bytes (each invalid byte becomes a
/// three-byte U+FFFD, which could triple the size and overflow the reply frame), cut at a
/// character boundary, with the truncation marker when cut here or before.
fn bounded_text(bytes: &[u8], cut: bool) -> (String, bool) {
    let mut s = String::from_utf8_lossy(bytes).into_owned();
    let mut cut = cut;
    if s.len() > bytes.len() {
        let mut end = bytes.len();
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        cut = true;
    }
    if cut {
        s.push_str(TRUNCATION_MARKER);
    }
    (s, cut)
}

/// The last `max` bytes of `bytes` as trimmed lossy UTF-8.
pub fn tail_text(bytes: &[u8], max: usize) -> String {
    let start = bytes.len().saturating_sub(max);
    String::from_utf8_lossy(&bytes[start..]).trim().to_string()
}

/// Why a tool produced no [`ExecOutput`].
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The tool could not be started.
    #[error("cannot run {tool} ({path}): {source}")]
    Spawn {
        /// The tool.
        tool: &'static str,
        /// Its configured path.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The tool ran into the deadline and was killed with its process group.
    #[error("{tool} was stopped at its time limit after {after_secs} s")]
    TimedOut {
        /// The tool.
        tool: &'static str,
        /// How long it had run.
        after_secs: u64,
    },
    /// The helper is shutting down: the tool was stopped with its whole tree.
    #[error("{tool} was stopped because the helper is shutting down")]
    Cancelled {
        /// The tool.
        tool: &'static str,
    },
    /// Processes of the tool survived SIGKILL (uninterruptible sleep, e.g. stuck I/O). The
    /// operation lock stays held until they are gone ([`contain::survivors`]).
    #[error(
        "{tool} left processes that could not be killed: {}; no privileged operation starts \
         until they are gone",
        contain::describe(survivors)
    )]
    Uncontained {
        /// The tool.
        tool: &'static str,
        /// The processes that survived.
        survivors: Vec<contain::Survivor>,
    },
    /// Waiting for the tool failed.
    #[error("waiting for {tool}: {source}")]
    Wait {
        /// The tool.
        tool: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Ends the tool's tree if dropped while armed: a future that is dropped mid-run (the
/// runtime is being torn down) cannot await, so the guard sends SIGTERM to the group and the
/// tree, waits up to [`TERM_GRACE`] and sends SIGKILL to what is left, synchronously.
struct TreeGuard {
    pgid: Pid,
    armed: bool,
}

impl TreeGuard {
    fn signal(&self, sig: Signal) {
        // ESRCH (group already gone) is the normal case after a clean exit.
        let _ = killpg(self.pgid, sig);
    }
}

impl Drop for TreeGuard {
    fn drop(&mut self) {
        if self.armed {
            self.signal(Signal::SIGTERM);
            let cleared = contain::clear_tree(TERM_GRACE, Some(self.pgid.as_raw()));
            if !cleared.survivors.is_empty() {
                let _ = contain::kill_tree_now();
            }
        }
    }
}

/// How a tool's run ended.
enum Ending {
    Exited(std::process::ExitStatus),
    Deadline,
    Shutdown,
}

/// Runs `program` (the configured path of `tool`) with `args` until it exits or `deadline`
/// passes, capturing at most `max_output` bytes of each output stream.
pub async fn run(
    tool: Tool,
    program: &Path,
    args: &[String],
    deadline: Instant,
    max_output: usize,
) -> Result<ExecOutput, ExecError> {
    run_as(tool, program, program, args, deadline, max_output, true).await
}

/// [`run`], executing `program` (the canonical, checked path) with `argv0` as its `argv[0]`
/// (the path as configured, so multi-call binaries still see their name). With `stoppable`
/// false the tool is not stopped by [`request_shutdown`], only by its deadline: the rollback
/// of a mount at shutdown must still run, on its own short deadline.
pub async fn run_as(
    tool: Tool,
    program: &Path,
    argv0: &Path,
    args: &[String],
    deadline: Instant,
    max_output: usize,
    stoppable: bool,
) -> Result<ExecOutput, ExecError> {
    let started = Instant::now();
    let mut cmd = tokio::process::Command::new(program);
    cmd.arg0(argv0)
        .args(args)
        .env_clear()
        .env("PATH", SAFE_PATH)
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        // The guard below ends the whole tree (TERM first); tokio's own kill would be a
        // SIGKILL of the tool alone.
        .kill_on_drop(false);
    let mut child = cmd.spawn().map_err(|source| ExecError::Spawn {
        tool: tool.name(),
        path: program.display().to_string(),
        source,
    })?;
    let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) else {
        // The child has already been reaped, which cannot happen before we wait for it.
        return Err(ExecError::Wait {
            tool: tool.name(),
            source: std::io::Error::other("spawned child has no pid"),
        });
    };
    let mut guard = TreeGuard {
        pgid: Pid::from_raw(pid),
        armed: true,
    };
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let hard_deadline = deadline + TERM_GRACE + PIPE_DRAIN;

    let waiting = async {
        let ending = tokio::select! {
            status = child.wait() => match status {
                Ok(st) => Ending::Exited(st),
                Err(e) => return Err(e),
            },
            _ = tokio::time::sleep_until(deadline) => Ending::Deadline,
            _ = shutdown_requested(), if stoppable => Ending::Shutdown,
        };
        if !matches!(ending, Ending::Exited(_)) {
            guard.signal(Signal::SIGTERM);
        }
        // Whatever is left below the helper — the tool after a deadline, or a grandchild that
        // left the group after a normal exit — gets TERM, the grace, then KILL.
        let keep = match ending {
            Ending::Exited(_) => None,
            _ => Some(pid),
        };
        let cleared = tokio::task::spawn_blocking(move || contain::clear_tree(TERM_GRACE, keep))
            .await
            .unwrap_or_else(|_| contain::kill_tree_now());
        if cleared.signalled > 0 {
            tracing::warn!(
                tool = tool.name(),
                processes = cleared.signalled,
                "ended processes the tool left running"
            );
        }
        if !matches!(ending, Ending::Exited(_)) {
            // Dead by now (or KILLed above): reap it.
            guard.signal(Signal::SIGKILL);
            let _ = child.wait().await;
        }
        Ok((ending, cleared.survivors))
    };
    let reading = async {
        tokio::join!(
            read_bounded(stdout, max_output, hard_deadline),
            read_bounded(stderr, max_output, hard_deadline)
        )
    };
    let (ending, ((out, out_cut), (err, err_cut))) = tokio::join!(waiting, reading);
    guard.armed = false;
    let (ending, survivors) = ending.map_err(|source| ExecError::Wait {
        tool: tool.name(),
        source,
    })?;
    if !survivors.is_empty() {
        return Err(ExecError::Uncontained {
            tool: tool.name(),
            survivors,
        });
    }
    let status = match ending {
        Ending::Exited(status) => status,
        Ending::Deadline => {
            return Err(ExecError::TimedOut {
                tool: tool.name(),
                after_secs: started.elapsed().as_secs(),
            });
        }
        Ending::Shutdown => return Err(ExecError::Cancelled { tool: tool.name() }),
    };
    Ok(ExecOutput {
        exit_code: status.code(),
        stdout: out,
        stdout_truncated: out_cut,
        stderr: err,
        stderr_truncated: err_cut,
    })
}

/// Reads `reader` to its end (or `deadline`), keeping at most `max` bytes and draining the
/// rest so the writer never blocks on a full pipe.
async fn read_bounded<R: AsyncRead + Unpin>(
    reader: Option<R>,
    max: usize,
    deadline: Instant,
) -> (Vec<u8>, bool) {
    let Some(mut reader) = reader else {
        return (Vec::new(), false);
    };
    let mut kept = Vec::new();
    let mut truncated = false;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match tokio::time::timeout_at(deadline, reader.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                let room = max.saturating_sub(kept.len());
                if n > room {
                    truncated = true;
                }
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
            Err(_) => {
                truncated = true;
                break;
            }
        }
    }
    (kept, truncated)
}

/// Serializes the tests of this crate that start processes: [`run`] ends every process below
/// the test binary when a tool finishes, as it does in the helper, where operations run one
/// at a time.
#[cfg(test)]
pub(crate) static SPAWN_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Vec<String> {
        vec!["-c".into(), script.into()]
    }

    fn soon(secs: u64) -> Instant {
        Instant::now() + Duration::from_secs(secs)
    }

    #[test]
    fn an_uncontained_tool_names_its_survivors() {
        let e = ExecError::Uncontained {
            tool: "pct",
            survivors: vec![contain::Survivor {
                pid: 11,
                comm: "stuck".into(),
            }],
        };
        assert_eq!(
            e.to_string(),
            "pct left processes that could not be killed: pid 11 (stuck); no privileged \
             operation starts until they are gone"
        );
    }

    #[tokio::test]
    async fn environment_is_cleared_and_output_captured() {
        let _serial = SPAWN_LOCK.lock().await;
        // The test process has a full environment (PATH, HOME, CARGO_*); none of it may leak.
        assert!(std::env::var_os("PATH").is_some());
        let out = run(
            Tool::Pct,
            Path::new("/bin/sh"),
            &sh("env | sort; echo err >&2; exit 3"),
            soon(10),
            4096,
        )
        .await
        .unwrap();
        let env = String::from_utf8(out.stdout.clone()).unwrap();
        let mut lines: Vec<&str> = env.lines().filter(|l| !l.starts_with("PWD=")).collect();
        lines.retain(|l| !l.starts_with("SHLVL=") && !l.starts_with("_="));
        assert_eq!(lines, vec!["LC_ALL=C", &format!("PATH={SAFE_PATH}")]);
        assert_eq!(out.exit_code, Some(3));
        assert_eq!(out.stderr, b"err\n");
        assert!(!out.success());
        assert_eq!(out.tail(), "err");
    }

    #[tokio::test]
    async fn output_is_bounded_and_marked() {
        let _serial = SPAWN_LOCK.lock().await;
        let out = run(
            Tool::Smartctl,
            Path::new("/bin/sh"),
            &sh("i=0; while [ $i -lt 2000 ]; do echo 0123456789; i=$((i+1)); done"),
            soon(10),
            1000,
        )
        .await
        .unwrap();
        assert_eq!(out.stdout.len(), 1000);
        assert!(out.stdout_truncated);
        assert!(out.success());
        let t = out.to_tool_output();
        assert!(t.stdout.ends_with(TRUNCATION_MARKER));
    }

    #[tokio::test]
    async fn output_within_or_at_the_bound_is_not_marked_truncated() {
        let _serial = SPAWN_LOCK.lock().await;
        // Exactly the bound on stdout, well under it on stderr: nothing was cut.
        let out = run(
            Tool::Smartctl,
            Path::new("/bin/sh"),
            &sh("printf '%0100d' 0; printf 'short' >&2"),
            soon(10),
            100,
        )
        .await
        .unwrap();
        assert_eq!(out.stdout.len(), 100);
        assert!(!out.stdout_truncated, "exactly the bound is not a cut");
        assert_eq!(out.stderr, b"short");
        assert!(!out.stderr_truncated, "under the bound is not a cut");
        let t = out.to_tool_output();
        assert!(!t.stdout.ends_with(TRUNCATION_MARKER));
        // One byte over the bound is.
        let out = run(
            Tool::Smartctl,
            Path::new("/bin/sh"),
            &sh("printf '%0101d' 0"),
            soon(10),
            100,
        )
        .await
        .unwrap();
        assert_eq!(out.stdout.len(), 100);
        assert!(out.stdout_truncated);
    }

    #[tokio::test]
    async fn output_is_read_past_the_deadline_while_a_leftover_holds_the_pipe() {
        let _serial = SPAWN_LOCK.lock().await;
        contain::become_subreaper().unwrap();
        // The tool exits at once, but a background process that ignores SIGTERM keeps its
        // stdout open until the SIGKILL after TERM_GRACE (2 s), past the 1 s deadline. The
        // pipes may stay open until deadline + TERM_GRACE + PIPE_DRAIN, so the output is read
        // to its end, not cut at the deadline.
        let started = Instant::now();
        let out = run(
            Tool::Pct,
            Path::new("/bin/sh"),
            &sh("(trap '' TERM; sleep 30) & echo done; exit 0"),
            soon(1),
            100,
        )
        .await
        .unwrap();
        assert!(out.success());
        assert_eq!(out.stdout, b"done\n");
        assert!(
            !out.stdout_truncated,
            "the read stopped at the deadline, {:?} after the start",
            started.elapsed()
        );
        assert!(contain::live_descendants().is_empty());
    }

    #[test]
    fn invalid_utf8_output_stays_within_the_bound() {
        let out = ExecOutput {
            exit_code: Some(0),
            stdout: vec![0xff; 1000],
            stdout_truncated: false,
            stderr: b"ok \xe2\x82".to_vec(),
            stderr_truncated: false,
        };
        let t = out.to_tool_output();
        assert!(
            t.stdout.len() <= 1000 + TRUNCATION_MARKER.len(),
            "{}",
            t.stdout.len()
        );
        assert!(t.stdout_truncated);
        assert!(t.stdout.ends_with(TRUNCATION_MARKER));
        // "ok " plus one U+FFFD (3 bytes) is 6 bytes: within the 5-byte bound it is cut.
        assert!(t.stderr.starts_with("ok "));
        assert!(t.stderr_truncated);
        let fine = ExecOutput {
            stdout: "héllo".as_bytes().to_vec(),
            ..out
        };
        let t = fine.to_tool_output();
        assert_eq!(t.stdout, "héllo");
        assert!(!t.stdout_truncated);
    }

    /// Puts a pipe on this process's fd 0 while alive, so a child that inherited our stdin
    /// would not see /dev/null (the test runner's own stdin may well be /dev/null).
    struct PipeOnStdin {
        saved: std::os::fd::OwnedFd,
        _write: std::os::fd::OwnedFd,
    }

    impl PipeOnStdin {
        fn new() -> Self {
            use std::os::fd::{AsRawFd, FromRawFd};
            let (read, write) = nix::unistd::pipe().unwrap();
            // SAFETY: dup of fd 0 returns a new descriptor we own.
            let saved = unsafe { libc::dup(0) };
            assert!(saved >= 0);
            // SAFETY: `saved` is a fresh descriptor nobody else owns.
            let saved = unsafe { std::os::fd::OwnedFd::from_raw_fd(saved) };
            // SAFETY: dup2 onto fd 0; the pipe's read end stays owned by `read` (dropped).
            assert!(unsafe { libc::dup2(read.as_raw_fd(), 0) } == 0);
            Self {
                saved,
                _write: write,
            }
        }
    }

    impl Drop for PipeOnStdin {
        fn drop(&mut self) {
            use std::os::fd::AsRawFd;
            // SAFETY: restores the saved descriptor onto fd 0.
            unsafe { libc::dup2(self.saved.as_raw_fd(), 0) };
        }
    }

    #[tokio::test]
    async fn stdin_is_null() {
        let _serial = SPAWN_LOCK.lock().await;
        let _pipe = PipeOnStdin::new();
        let mine = std::fs::read_link("/proc/self/fd/0").unwrap();
        assert!(mine.to_string_lossy().starts_with("pipe:"), "{mine:?}");
        let out = run(
            Tool::Blkid,
            Path::new("/bin/sh"),
            &sh("readlink /proc/self/fd/0"),
            soon(10),
            100,
        )
        .await
        .unwrap();
        assert!(out.success());
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "/dev/null");
    }

    #[tokio::test]
    async fn missing_program_is_a_spawn_error() {
        let _serial = SPAWN_LOCK.lock().await;
        let e = run(Tool::Pct, Path::new("/nonexistent/pct"), &[], soon(1), 100)
            .await
            .unwrap_err();
        assert!(matches!(e, ExecError::Spawn { tool: "pct", .. }), "{e}");
    }

    fn alive(pid: i32) -> bool {
        nix::sys::signal::kill(Pid::from_raw(pid), None).is_ok()
            && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| s.contains(") Z "))
                .unwrap_or(true)
    }

    #[tokio::test]
    async fn deadline_kills_the_whole_group() {
        let _serial = SPAWN_LOCK.lock().await;
        let dir = tempfile::tempdir().unwrap();
        let pids = dir.path().join("pids");
        let script = format!(
            "trap '' TERM; sleep 300 & echo $! > {p}; echo $$ >> {p}; wait",
            p = pids.display()
        );
        let e = run(Tool::Pct, Path::new("/bin/sh"), &sh(&script), soon(1), 100)
            .await
            .unwrap_err();
        assert!(matches!(e, ExecError::TimedOut { .. }), "{e}");
        let text = std::fs::read_to_string(&pids).unwrap();
        for pid in text.split_whitespace() {
            let pid: i32 = pid.parse().unwrap();
            // The grandchild may take a moment to be reaped by init; SIGKILL was sent.
            let mut gone = false;
            for _ in 0..50 {
                if !alive(pid) {
                    gone = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            assert!(gone, "pid {pid} survived the deadline");
        }
    }

    #[tokio::test]
    async fn dropping_the_future_kills_the_group() {
        let _serial = SPAWN_LOCK.lock().await;
        let dir = tempfile::tempdir().unwrap();
        let pids = dir.path().join("pids");
        let script = format!(
            "sleep 300 & echo $! > {p}; echo $$ >> {p}; wait",
            p = pids.display()
        );
        let args = sh(&script);
        let fut = run(Tool::Pct, Path::new("/bin/sh"), &args, soon(300), 100);
        let _ = tokio::time::timeout(Duration::from_millis(500), fut).await;
        let text = std::fs::read_to_string(&pids).unwrap();
        for pid in text.split_whitespace() {
            let pid: i32 = pid.parse().unwrap();
            let mut gone = false;
            for _ in 0..100 {
                if !alive(pid) {
                    gone = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert!(gone, "pid {pid} survived the dropped request");
        }
    }

    /// Waits up to two seconds for each pid in `file` to be gone.
    async fn assert_all_gone(file: &Path, what: &str) {
        let text = std::fs::read_to_string(file).unwrap();
        let pids: Vec<i32> = text
            .split_whitespace()
            .map(|p| p.parse().unwrap())
            .collect();
        assert!(!pids.is_empty(), "{what}: the script recorded no pid");
        for pid in pids {
            let mut gone = false;
            for _ in 0..100 {
                if !alive(pid) {
                    gone = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert!(gone, "{what}: pid {pid} outlived the tool");
        }
    }

    /// Waits (bounded) until `file` holds at least one line, i.e. the script got that far.
    async fn wait_for_file(file: &Path) {
        for _ in 0..250 {
            if std::fs::read_to_string(file).is_ok_and(|t| t.ends_with('\n')) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("{} never appeared", file.display());
    }

    #[tokio::test]
    async fn a_setsid_grandchild_is_ended_when_the_tool_exits() {
        let _serial = SPAWN_LOCK.lock().await;
        contain::become_subreaper().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let pids = dir.path().join("pids");
        let termed = dir.path().join("termed");
        // The worker leaves the tool's process group and session, like pct's fork_worker, and
        // says when it got SIGTERM (it must get TERM before KILL).
        let script = format!(
            "setsid sh -c 'trap \"echo t > {t}; exit 0\" TERM; echo $$ > {p}; \
             while :; do sleep 0.05; done' </dev/null >/dev/null 2>&1 & \
             while [ ! -s {p} ]; do sleep 0.02; done; exit 0",
            p = pids.display(),
            t = termed.display()
        );
        let out = run(Tool::Pct, Path::new("/bin/sh"), &sh(&script), soon(20), 100)
            .await
            .unwrap();
        assert!(out.success());
        assert_all_gone(&pids, "setsid worker").await;
        assert!(
            termed.exists(),
            "the worker got SIGKILL without SIGTERM first"
        );
        assert!(contain::live_descendants().is_empty());
    }

    #[tokio::test]
    async fn a_double_forked_daemon_is_ended_when_the_tool_exits() {
        let _serial = SPAWN_LOCK.lock().await;
        contain::become_subreaper().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let pids = dir.path().join("pids");
        // The intermediate child exits at once, so the daemon is an orphan (re-parented to
        // the subreaper) in a new session, holding no pipe of the tool.
        let script = format!(
            "( setsid sh -c 'echo $$ > {p}; exec sleep 300' </dev/null >/dev/null 2>&1 & ); \
             while [ ! -s {p} ]; do sleep 0.02; done; exit 0",
            p = pids.display()
        );
        let out = run(Tool::Pct, Path::new("/bin/sh"), &sh(&script), soon(20), 100)
            .await
            .unwrap();
        assert!(out.success());
        assert_all_gone(&pids, "double-forked daemon").await;
        assert!(contain::live_descendants().is_empty());
    }

    #[tokio::test]
    async fn a_tool_that_hangs_after_setsid_is_ended_at_the_deadline_with_its_worker() {
        let _serial = SPAWN_LOCK.lock().await;
        contain::become_subreaper().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let pids = dir.path().join("pids");
        let script = format!(
            "setsid sh -c 'trap \"\" TERM; echo $$ >> {p}; exec sleep 300' </dev/null >/dev/null 2>&1 & \
             trap '' TERM; echo $$ >> {p}; sleep 300",
            p = pids.display()
        );
        let e = run(Tool::Pct, Path::new("/bin/sh"), &sh(&script), soon(1), 100)
            .await
            .unwrap_err();
        assert!(matches!(e, ExecError::TimedOut { .. }), "{e}");
        assert_all_gone(&pids, "hanging tool and worker").await;
        assert!(contain::live_descendants().is_empty());
    }

    #[tokio::test]
    async fn shutdown_stops_a_running_tool_and_its_worker() {
        let _serial = SPAWN_LOCK.lock().await;
        contain::become_subreaper().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let pids = dir.path().join("pids");
        let script = format!(
            "setsid sleep 300 </dev/null >/dev/null 2>&1 & echo $! >> {p}; echo $$ >> {p}; sleep 300",
            p = pids.display()
        );
        let args = sh(&script);
        let running = run(Tool::Pct, Path::new("/bin/sh"), &args, soon(300), 100);
        let trigger = async {
            wait_for_file(&pids).await;
            // Both pids are written by now (the second line follows at once).
            tokio::time::sleep(Duration::from_millis(100)).await;
            request_shutdown();
        };
        let (result, ()) = tokio::join!(running, trigger);
        SHUTDOWN.store(false, Ordering::SeqCst);
        let e = result.unwrap_err();
        assert!(matches!(e, ExecError::Cancelled { .. }), "{e}");
        assert_all_gone(&pids, "tool stopped at shutdown").await;
    }
}
