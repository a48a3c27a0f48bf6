//! End to end: the real `felhom-helper` checks the descriptor systemd hands it. With
//! `LISTEN_PID`/`LISTEN_FDS` naming it, fd 3 must be an open, listening `AF_UNIX` stream socket;
//! anything else is refused at start-up (exit 2) with a message that says what was wrong,
//! before any request could be read from it.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use felhom_tests::helper_harness::{HelperHarness, HelperHarnessOptions};

/// What fd 3 of the helper is.
enum Fd3 {
    /// This descriptor, duplicated onto fd 3.
    Socket(OwnedFd),
    /// Nothing: fd 3 is closed.
    Closed,
}

/// Runs the real helper with the activation variables naming it and `fd3` as fd 3; returns
/// its exit code and stderr. A helper still running after 20 s (it accepted the descriptor)
/// is killed, by its pid, and reported as `None`.
fn activate_with(fd3: Fd3) -> (Option<i32>, String) {
    let h = HelperHarness::prepare(&HelperHarnessOptions {
        idle_timeout_secs: 1,
        ..Default::default()
    })
    .unwrap();
    let helper = felhom_tests::bins::helper();
    let mut cmd = Command::new("/bin/sh");
    // `$$` is the shell's pid, which `exec` hands on to the helper: LISTEN_PID names it.
    cmd.arg("-c")
        .arg(r#"export LISTEN_PID=$$ LISTEN_FDS=1; exec "$0" --config "$1""#)
        .arg(&helper)
        .arg(h.config_path())
        .env_remove("LISTEN_PID")
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_FDNAMES")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let raw = match &fd3 {
        Fd3::Socket(fd) => Some(fd.as_raw_fd()),
        Fd3::Closed => None,
    };
    // SAFETY: the closure runs in the forked child before exec and calls only
    // async-signal-safe functions (dup2, fcntl, close) on descriptors it names by number.
    unsafe {
        cmd.pre_exec(move || {
            match raw {
                Some(3) => {
                    // Already fd 3: only clear close-on-exec.
                    if libc::fcntl(3, libc::F_SETFD, 0) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Some(fd) => {
                    if libc::dup2(fd, 3) != 3 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                None => {
                    libc::close(3);
                }
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    drop(fd3);
    let until = Instant::now() + Duration::from_secs(20);
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if Instant::now() >= until {
            child.kill().unwrap();
            child.wait().unwrap();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (code, err)
}

fn assert_refused(fd3: Fd3, needle: &str) {
    let (code, err) = activate_with(fd3);
    assert_eq!(code, Some(2), "not refused at start-up:\n{err}");
    assert!(
        err.contains("fd 3 from systemd") && err.contains(needle),
        "expected {needle:?}:\n{err}"
    );
}

#[test]
fn a_datagram_socket_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let sock = std::os::unix::net::UnixDatagram::bind(dir.path().join("d.sock")).unwrap();
    assert_refused(Fd3::Socket(sock.into()), "expected a stream socket");
}

#[test]
fn a_stream_socket_that_does_not_listen_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    // A connected stream socket (what `Accept=yes` would pass): a stream, AF_UNIX, not listening.
    let conn = std::os::unix::net::UnixStream::connect(&path).unwrap();
    assert_refused(Fd3::Socket(conn.into()), "not a listening socket");
}

#[test]
fn a_tcp_listener_is_refused() {
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (code, err) = activate_with(Fd3::Socket(tcp.into()));
    assert_eq!(code, Some(2), "not refused at start-up:\n{err}");
    assert!(err.contains("fd 3 from systemd"), "{err}");
}

#[test]
fn a_closed_fd_3_is_refused() {
    assert_refused(Fd3::Closed, "not open");
}

#[test]
fn a_listening_unix_stream_socket_is_accepted() {
    // The control: the same launch with a proper socket starts, and leaves at its idle exit
    // (1 s) with status 0, so the refusals above are about fd 3 alone.
    let dir = tempfile::tempdir().unwrap();
    let listener = std::os::unix::net::UnixListener::bind(dir.path().join("ok.sock")).unwrap();
    let (code, err) = activate_with(Fd3::Socket(listener.into()));
    assert!(
        !err.contains("fd 3 from systemd"),
        "a proper socket was refused:\n{err}"
    );
    assert_eq!(code, Some(0), "{err}");
}
