//! Where the listening socket comes from, and who may talk on it.
//!
//! Production: systemd socket activation (`felhom-helper.socket`). The helper checks the
//! activation environment strictly: `LISTEN_PID` must be this process, `LISTEN_FDS` exactly 1,
//! and fd 3 a listening `AF_UNIX` stream socket. Development: `--listen PATH` binds a socket
//! itself. With neither, the helper refuses to start.
//!
//! Every accepted connection is checked with `SO_PEERCRED` before a byte of it is decoded:
//! only root, the helper's own user and the configured agent user may talk to the helper.

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use nix::sys::socket::{AddressFamily, SockType, SockaddrLike, UnixAddr, getsockname, sockopt};

use crate::error::StartupError;

/// The first file descriptor systemd passes (`SD_LISTEN_FDS_START`).
const LISTEN_FDS_START: RawFd = 3;

/// Explains both ways to start the helper.
pub const NOT_ACTIVATED: &str = "felhom-helper must be started by systemd socket activation \
(felhom-helper.socket passes the listening socket; LISTEN_FDS/LISTEN_PID are not set), or in \
development mode with --listen PATH. Example: systemd-socket-activate -l /tmp/helper.sock \
felhom-helper --config helper.json, or felhom-helper --config helper.json --listen \
/tmp/helper.sock";

/// The listening socket and how it was obtained.
#[derive(Debug)]
pub enum ListenSocket {
    /// Passed by systemd; systemd owns the path.
    Activated(std::os::unix::net::UnixListener),
    /// Bound by the helper in development mode; the helper removes the path on exit.
    Bound(std::os::unix::net::UnixListener, PathBuf),
}

impl ListenSocket {
    /// Takes the socket from the environment (systemd) or binds `listen` (development).
    /// Must run before any thread is started, and before the tokio runtime.
    pub fn obtain(listen: Option<&Path>) -> Result<ListenSocket, StartupError> {
        let env_pid = std::env::var("LISTEN_PID").ok();
        let env_fds = std::env::var("LISTEN_FDS").ok();
        match (env_pid, env_fds, listen) {
            (None, None, None) => Err(StartupError::Activation(NOT_ACTIVATED.into())),
            (None, None, Some(path)) => bind(path),
            (pid, fds, None) => from_systemd(pid.as_deref(), fds.as_deref(), std::process::id()),
            (_, _, Some(_)) => Err(StartupError::Activation(
                "both systemd socket activation (LISTEN_FDS/LISTEN_PID) and --listen were \
                 given; use one"
                    .into(),
            )),
        }
    }

    /// The std listener.
    pub fn listener(&self) -> &std::os::unix::net::UnixListener {
        match self {
            ListenSocket::Activated(l) | ListenSocket::Bound(l, _) => l,
        }
    }

    /// Human description for the start-up log.
    pub fn describe(&self) -> String {
        match self {
            ListenSocket::Activated(_) => "socket from systemd (fd 3)".into(),
            ListenSocket::Bound(_, p) => format!("development socket {}", p.display()),
        }
    }

    /// Removes a socket path the helper bound itself.
    pub fn cleanup(&self) {
        if let ListenSocket::Bound(_, path) = self {
            let _ = std::fs::remove_file(path);
        }
    }

    /// The listener, and the path to remove on exit (development mode only).
    pub fn into_parts(self) -> (std::os::unix::net::UnixListener, Option<PathBuf>) {
        match self {
            ListenSocket::Activated(l) => (l, None),
            ListenSocket::Bound(l, p) => (l, Some(p)),
        }
    }
}

/// Validates the systemd activation variables against `my_pid`.
pub fn check_activation_env(
    pid: Option<&str>,
    fds: Option<&str>,
    my_pid: u32,
) -> Result<(), String> {
    let pid = pid.ok_or("LISTEN_FDS is set but LISTEN_PID is not")?;
    let fds = fds.ok_or("LISTEN_PID is set but LISTEN_FDS is not")?;
    let pid: u32 = pid
        .parse()
        .map_err(|_| format!("LISTEN_PID={pid:?} is not a process id"))?;
    if pid != my_pid {
        return Err(format!(
            "LISTEN_PID={pid} is not this process ({my_pid}): the sockets were meant for \
             another process"
        ));
    }
    if fds != "1" {
        return Err(format!(
            "LISTEN_FDS={fds:?}: felhom-helper takes exactly one socket (ListenStream= once, \
             Accept=no)"
        ));
    }
    Ok(())
}

fn from_systemd(
    pid: Option<&str>,
    fds: Option<&str>,
    my_pid: u32,
) -> Result<ListenSocket, StartupError> {
    check_activation_env(pid, fds, my_pid).map_err(StartupError::Activation)?;
    let bad = |why: String| StartupError::Activation(format!("fd 3 from systemd: {why}"));
    let flags = fcntl(
        // SAFETY: fd 3 is only borrowed for this call; F_GETFD on a closed fd returns EBADF.
        unsafe { BorrowedFd::borrow_raw(LISTEN_FDS_START) },
        FcntlArg::F_GETFD,
    )
    .map_err(|e| bad(format!("not open: {e}")))?;
    // SAFETY: LISTEN_PID names this process and LISTEN_FDS=1, so by the socket activation
    // protocol fd 3 was passed to us and nothing else in this process owns it; F_GETFD just
    // proved it is open. From here on the OwnedFd is its only owner.
    let fd = unsafe { OwnedFd::from_raw_fd(LISTEN_FDS_START) };
    let mut fdflags = FdFlag::from_bits_truncate(flags);
    fdflags.insert(FdFlag::FD_CLOEXEC);
    fcntl(&fd, FcntlArg::F_SETFD(fdflags)).map_err(|e| bad(format!("cannot set CLOEXEC: {e}")))?;
    let ty = nix::sys::socket::getsockopt(&fd, sockopt::SockType)
        .map_err(|e| bad(format!("not a socket: {e}")))?;
    if ty != SockType::Stream {
        return Err(bad(format!(
            "socket type is {ty:?}, expected a stream socket"
        )));
    }
    let addr: UnixAddr =
        getsockname(fd.as_raw_fd()).map_err(|e| bad(format!("cannot read its address: {e}")))?;
    if addr.family() != Some(AddressFamily::Unix) {
        return Err(bad("not an AF_UNIX socket".into()));
    }
    let listening = nix::sys::socket::getsockopt(&fd, sockopt::AcceptConn)
        .map_err(|e| bad(format!("cannot query it: {e}")))?;
    if !listening {
        return Err(bad(
            "not a listening socket (Accept=no expects ListenStream=)".into(),
        ));
    }
    let listener = std::os::unix::net::UnixListener::from(fd);
    listener
        .set_nonblocking(true)
        .map_err(|e| StartupError::Listen(e.to_string()))?;
    Ok(ListenSocket::Activated(listener))
}

fn bind(path: &Path) -> Result<ListenSocket, StartupError> {
    if let Ok(md) = std::fs::symlink_metadata(path) {
        if md.file_type().is_socket() {
            // A stale socket from an earlier development run.
            std::fs::remove_file(path)
                .map_err(|e| StartupError::Listen(format!("{}: {e}", path.display())))?;
        } else {
            return Err(StartupError::Listen(format!(
                "{} exists and is not a socket; refusing to replace it",
                path.display()
            )));
        }
    }
    let listener = std::os::unix::net::UnixListener::bind(path)
        .map_err(|e| StartupError::Listen(format!("cannot bind {}: {e}", path.display())))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .map_err(|e| StartupError::Listen(format!("{}: {e}", path.display())))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| StartupError::Listen(e.to_string()))?;
    Ok(ListenSocket::Bound(listener, path.to_path_buf()))
}

/// The identity of a connected peer, from `SO_PEERCRED`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// Effective uid at connect time.
    pub uid: u32,
    /// Effective gid at connect time.
    pub gid: u32,
    /// Process id at connect time (informational only: pids are reused).
    pub pid: Option<i32>,
}

/// Who may connect.
#[derive(Debug, Clone)]
pub struct PeerPolicy {
    allowed: Vec<u32>,
}

impl PeerPolicy {
    /// Root, the helper's own effective uid, and the agent's uid.
    pub fn new(agent_uid: u32) -> Self {
        let mut allowed = vec![0, nix::unistd::geteuid().as_raw(), agent_uid];
        allowed.sort_unstable();
        allowed.dedup();
        Self { allowed }
    }

    /// Whether `peer` may talk to the helper.
    pub fn allows(&self, peer: &Peer) -> bool {
        self.allowed.contains(&peer.uid)
    }

    /// The allowed uids.
    pub fn allowed_uids(&self) -> &[u32] {
        &self.allowed
    }
}

/// Reads the peer's credentials of an accepted connection.
pub fn peer_of(stream: &tokio::net::UnixStream) -> std::io::Result<Peer> {
    let cred = stream.peer_cred()?;
    Ok(Peer {
        uid: cred.uid(),
        gid: cred.gid(),
        pid: cred.pid(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activation_env_is_checked_strictly() {
        assert!(check_activation_env(Some("42"), Some("1"), 42).is_ok());
        for (pid, fds, needle) in [
            (Some("43"), Some("1"), "not this process"),
            (Some("x"), Some("1"), "not a process id"),
            (Some("-42"), Some("1"), "not a process id"),
            (Some("42"), Some("2"), "exactly one"),
            (Some("42"), Some("0"), "exactly one"),
            (Some("42"), Some(" 1"), "exactly one"),
            (None, Some("1"), "LISTEN_PID is not"),
            (Some("42"), None, "LISTEN_FDS is not"),
        ] {
            let e = check_activation_env(pid, fds, 42).unwrap_err();
            assert!(e.contains(needle), "{pid:?} {fds:?}: {e}");
        }
    }

    #[test]
    fn policy_allows_root_self_and_agent_only() {
        let me = nix::unistd::geteuid().as_raw();
        let p = PeerPolicy::new(4242);
        let peer = |uid| Peer {
            uid,
            gid: 0,
            pid: None,
        };
        assert!(p.allows(&peer(0)));
        assert!(p.allows(&peer(me)));
        assert!(p.allows(&peer(4242)));
        if me != 65534 {
            assert!(!p.allows(&peer(65534)));
        }
        assert!(!p.allows(&peer(4243)));
    }

    #[test]
    fn dev_bind_refuses_to_replace_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("not-a-socket");
        std::fs::write(&f, "x").unwrap();
        assert!(bind(&f).is_err());
        let s = dir.path().join("h.sock");
        let l = bind(&s).unwrap();
        assert!(s.exists());
        l.cleanup();
        assert!(!s.exists());
    }
}
