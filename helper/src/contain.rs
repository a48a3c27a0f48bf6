//! Containment of every process an operation starts.
//!
//! A tool run by [`crate::exec`] gets its own process group, but a tool may leave it:
//! `pct create` runs its real work in a worker that calls `setsid()` whenever stdin is not a
//! terminal, and any tool can double-fork or daemonize. Killing the group would then miss the
//! worker, and the helper would release its one-operation lock while the work goes on.
//!
//! So the helper makes itself a *child subreaper* ([`become_subreaper`]): an orphan anywhere
//! below it is re-parented to the helper instead of PID 1, and stays in the helper's tree
//! however often it forks or changes session. Privileged operations run one at a time, so at
//! the end of an operation every process below the helper belongs to that operation:
//! [`clear_tree`] sends them SIGTERM, waits a grace period, sends SIGKILL to what is left, reaps
//! what was re-parented to the helper, and returns only when nothing is left (or reports what
//! could not be killed). The operation lock is held until it returns — and, when something
//! survived, until that is gone too ([`survivors`]; the server keeps the lock).
//!
//! Three rules keep this honest:
//! - **Signals go through pidfds**, never to a bare pid: a pid read from `/proc` may be
//!   recycled by an unrelated process before the signal is sent. Each process of the tree is
//!   opened with `pidfd_open(2)`, and the descriptor is kept only if `/proc/<pid>/stat`, read
//!   *after* the open, still shows the start time the scan saw (then the descriptor is that
//!   process: it held the pid from the scan to the check). `pidfd_send_signal(2)` on it can
//!   reach no other process; one that has exited (the pidfd polls readable) is dropped.
//! - **Two consecutive empty scans**: a read of `/proc` is not atomic, so a process forked
//!   while the scan runs (or just after it) can be missed once. The tree counts as empty only
//!   when two scans, a poll interval apart, both find nothing.
//! - **A survivor is reported and remembered**: what outlives SIGKILL for [`KILL_WAIT`] (a
//!   process in uninterruptible sleep, say) is returned with its pid and command name and
//!   kept in [`survivors`] until a later [`clear_tree`] finds the tree empty.
//!
//! The tree is read from `/proc/<pid>/stat` of every process (the parent pid field), which
//! needs no privilege for the helper's own descendants.

use std::collections::{HashMap, HashSet};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::Pid;

/// How often [`clear_tree`] looks again while it waits for processes to go.
const POLL: Duration = Duration::from_millis(20);

/// How long [`clear_tree`] waits after SIGKILL before it gives up on a process (one stuck in
/// uninterruptible sleep, say) and reports it.
pub const KILL_WAIT: Duration = Duration::from_secs(5);

/// Largest number of processes read from `/proc` in one scan.
const MAX_SCAN: usize = 1 << 20;

/// Longest command name kept for a report (the kernel's own limit is 15 bytes).
const MAX_COMM: usize = 64;

/// Makes this process the child subreaper for everything it starts. Called once at start-up;
/// an error means containment cannot be promised, and the helper refuses to start.
pub fn become_subreaper() -> nix::Result<()> {
    nix::sys::prctl::set_child_subreaper(true)
}

/// One process as `/proc/<pid>/stat` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// Its pid.
    pub pid: i32,
    /// Its parent's pid.
    pub ppid: i32,
    /// Whether it has exited and waits to be reaped (state `Z`) or is being torn down (`X`).
    pub dead: bool,
    /// Its start time (clock ticks after boot): with the pid, it names one process.
    pub start: u64,
}

/// Parses one `/proc/<pid>/stat` line: `pid (comm) state ppid …`. The command name may hold
/// spaces and parentheses, so the fields are counted from the last `)`.
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    parse_stat_comm(text).map(|(st, _)| st)
}

/// [`parse_stat`], with the command name (control characters replaced, bounded).
fn parse_stat_comm(text: &str) -> Option<(ProcStat, String)> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    if close < open {
        return None;
    }
    let pid = text[..open].trim().parse().ok()?;
    let mut rest = text[close + 1..].split_ascii_whitespace();
    let state = rest.next()?;
    let ppid = rest.next()?.parse().ok()?;
    // Field 22 (starttime); fields 5 to 21 lie between it and ppid.
    let start = rest.nth(17)?.parse().ok()?;
    let comm = felhom_protocol::text::process_name(&text[open + 1..close], MAX_COMM);
    Some((
        ProcStat {
            pid,
            ppid,
            dead: state == "Z" || state == "X",
            start,
        },
        comm,
    ))
}

/// Every process on the system, by pid (a bounded scan of `/proc`).
fn scan() -> HashMap<i32, ProcStat> {
    let mut out = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten().take(MAX_SCAN) {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        // A process that exited between readdir and read is simply gone.
        if let Some(st) = read_stat(pid) {
            out.insert(st.pid, st);
        }
    }
    out
}

fn read_stat(pid: i32) -> Option<ProcStat> {
    read_stat_comm(pid).map(|(st, _)| st)
}

fn read_stat_comm(pid: i32) -> Option<(ProcStat, String)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat_comm(&text)
}

/// The processes below `root` in `table` (not `root` itself), parents before children.
pub fn descendants_in(table: &HashMap<i32, ProcStat>, root: i32) -> Vec<ProcStat> {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for st in table.values() {
        children.entry(st.ppid).or_default().push(st.pid);
    }
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let mut queue = vec![root];
    while let Some(p) = queue.pop() {
        for &c in children.get(&p).map(Vec::as_slice).unwrap_or(&[]) {
            if c != root && seen.insert(c) {
                if let Some(st) = table.get(&c) {
                    out.push(*st);
                }
                queue.push(c);
            }
        }
    }
    out
}

/// Every process below `root` (not `root` itself), with its state, from a scan of the whole
/// process table. (`/proc/<pid>/task/<tid>/children` would be cheaper, but proc(5) warns
/// that it is not reliable while the tasks run, and a re-parented orphan is exactly what
/// must not be missed.)
fn tree(root: i32) -> Vec<ProcStat> {
    descendants_in(&scan(), root)
}

/// The live processes below this one.
pub fn live_descendants() -> Vec<ProcStat> {
    tree(std::process::id() as i32)
        .into_iter()
        .filter(|p| !p.dead)
        .collect()
}

/// Reaps the direct children of `me` in `table` that have exited, except `keep` (a child
/// that tokio still waits for). Re-parented orphans have no other parent to reap them. (A
/// zombie child's pid cannot be recycled before it is reaped, so the pid is safe here.)
fn reap_adopted(me: i32, table: &HashMap<i32, ProcStat>, keep: Option<i32>) {
    for st in table.values() {
        if st.ppid == me && st.dead && Some(st.pid) != keep {
            let _ = waitpid(Pid::from_raw(st.pid), Some(WaitPidFlag::WNOHANG));
        }
    }
}

/// A process that outlived SIGKILL: its pid and command name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Survivor {
    /// Its pid (in the helper's pid namespace).
    pub pid: i32,
    /// Its command name (`/proc/<pid>/stat`; control characters replaced).
    pub comm: String,
}

impl std::fmt::Display for Survivor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {} ({})", self.pid, self.comm)
    }
}

/// `pid 1 (a), pid 2 (b)`.
pub fn describe(survivors: &[Survivor]) -> String {
    survivors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// What [`clear_tree`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cleared {
    /// How many processes were still there and were signalled.
    pub signalled: usize,
    /// Processes that survived SIGKILL for [`KILL_WAIT`] (uninterruptible sleep); empty
    /// normally.
    pub survivors: Vec<Survivor>,
}

/// The processes below the helper as containment sees and signals them. [`ProcHost`] is the
/// real one; the tests substitute others to drive the rules with situations that cannot be
/// made on demand (a process that SIGKILL does not end, a fork right after a scan).
pub(crate) trait Host {
    /// A reference to one process that outlives its pid's reuse (a pidfd).
    type Handle;
    /// The pid whose descendants are cleared.
    fn me(&self) -> i32;
    /// Every process on the system.
    fn scan(&mut self) -> HashMap<i32, ProcStat>;
    /// A handle on the process `st` describes, with its command name — only if it is still
    /// that process (same pid and start time) and alive.
    fn open(&mut self, st: &ProcStat) -> Option<(Self::Handle, String)>;
    /// Whether the process behind `h` has exited.
    fn exited(&mut self, h: &Self::Handle) -> bool;
    /// Sends `sig` to the process behind `h`, and to no other.
    fn signal(&mut self, h: &Self::Handle, sig: Signal);
    /// Reaps the exited direct children in `table`, except `keep`.
    fn reap(&mut self, table: &HashMap<i32, ProcStat>, keep: Option<i32>);
}

/// The real host: `/proc`, `pidfd_open(2)`, `pidfd_send_signal(2)`, `waitpid(2)`.
#[derive(Debug, Default)]
pub(crate) struct ProcHost;

/// A pidfd: a reference to one process, never to whatever holds its pid later.
#[derive(Debug)]
pub(crate) struct PidFd(OwnedFd);

impl PidFd {
    /// `pidfd_open(pid, 0)`.
    pub(crate) fn open(pid: i32) -> std::io::Result<PidFd> {
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1; no
        // memory is passed.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let fd = i32::try_from(fd).map_err(|_| std::io::Error::other("descriptor out of range"))?;
        // SAFETY: the kernel just returned this descriptor to us; nothing else owns it.
        Ok(PidFd(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Whether the process has exited (a pidfd polls readable then).
    pub(crate) fn exited(&self) -> bool {
        let mut pfd = libc::pollfd {
            fd: self.0.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, count 1, no timeout.
        let n = unsafe { libc::poll(&mut pfd, 1, 0) };
        n > 0 && pfd.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0
    }

    /// `pidfd_send_signal(fd, sig, NULL, 0)`. ESRCH means the process has exited.
    pub(crate) fn signal(&self, sig: Signal) -> std::io::Result<()> {
        // SAFETY: a valid descriptor, a signal number, a null siginfo and no flags.
        let r = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.0.as_raw_fd(),
                sig as libc::c_int,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if r < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

impl Host for ProcHost {
    type Handle = PidFd;

    fn me(&self) -> i32 {
        std::process::id() as i32
    }

    fn scan(&mut self) -> HashMap<i32, ProcStat> {
        scan()
    }

    fn open(&mut self, st: &ProcStat) -> Option<(PidFd, String)> {
        let fd = PidFd::open(st.pid).ok()?;
        // Read after the open: if the pid still shows the scanned start time, the process
        // held the pid from the scan to now, so it is the one the descriptor refers to.
        let (now, comm) = read_stat_comm(st.pid)?;
        (now.start == st.start && !now.dead).then_some((fd, comm))
    }

    fn exited(&mut self, h: &PidFd) -> bool {
        h.exited()
    }

    fn signal(&mut self, h: &PidFd, sig: Signal) {
        // ESRCH: it went on its own.
        let _ = h.signal(sig);
    }

    fn reap(&mut self, table: &HashMap<i32, ProcStat>, keep: Option<i32>) {
        reap_adopted(self.me(), table, keep);
    }
}

/// One process of the tree that has been opened and signalled.
struct Tracked<H> {
    pid: i32,
    start: u64,
    comm: String,
    handle: H,
}

/// The rules of [`clear_tree`] on any [`Host`]: SIGTERM (and SIGCONT) to every live process
/// below `host.me()` as it is found, up to `grace` for them to go, then SIGKILL each round
/// for up to `kill_wait`; done after two consecutive empty scans; what is left then is
/// returned as survivors. Signals go only through handles opened while the process was in
/// the tree.
pub(crate) fn clear_with<H: Host>(
    host: &mut H,
    grace: Duration,
    kill_wait: Duration,
    keep: Option<i32>,
) -> Cleared {
    let me = host.me();
    let mut tracked: Vec<Tracked<H::Handle>> = Vec::new();
    let mut signalled = 0usize;
    let mut empty_scans = 0u32;
    let term_until = Instant::now() + grace;
    let mut kill_until: Option<Instant> = None;
    loop {
        let table = host.scan();
        host.reap(&table, keep);
        let live: Vec<ProcStat> = descendants_in(&table, me)
            .into_iter()
            .filter(|p| !p.dead)
            .collect();
        for st in &live {
            if tracked
                .iter()
                .any(|t| t.pid == st.pid && t.start == st.start)
            {
                continue;
            }
            // Not opened (it exited, or the pid now names another process): the next scan
            // looks again; it is never signalled by its pid.
            let Some((handle, comm)) = host.open(st) else {
                continue;
            };
            if kill_until.is_some() {
                host.signal(&handle, Signal::SIGKILL);
            } else {
                host.signal(&handle, Signal::SIGTERM);
                // SIGTERM to a stopped process takes effect once it runs again.
                host.signal(&handle, Signal::SIGCONT);
            }
            signalled += 1;
            tracked.push(Tracked {
                pid: st.pid,
                start: st.start,
                comm,
                handle,
            });
        }
        tracked.retain(|t| !host.exited(&t.handle));
        let unopened: Vec<&ProcStat> = live
            .iter()
            .filter(|st| {
                !tracked
                    .iter()
                    .any(|t| t.pid == st.pid && t.start == st.start)
            })
            .collect();
        if tracked.is_empty() && unopened.is_empty() {
            empty_scans += 1;
            if empty_scans >= 2 {
                return Cleared {
                    signalled,
                    survivors: Vec::new(),
                };
            }
            std::thread::sleep(POLL);
            continue;
        }
        empty_scans = 0;
        let now = Instant::now();
        match kill_until {
            None if now >= term_until => {
                kill_until = Some(now + kill_wait);
                for t in &tracked {
                    host.signal(&t.handle, Signal::SIGKILL);
                }
            }
            None => {}
            Some(until) => {
                // Kill again each round (harmless), and give up at the end of the wait.
                for t in &tracked {
                    host.signal(&t.handle, Signal::SIGKILL);
                }
                if now >= until {
                    let mut survivors: Vec<Survivor> = tracked
                        .iter()
                        .map(|t| Survivor {
                            pid: t.pid,
                            comm: t.comm.clone(),
                        })
                        .collect();
                    // A live process that could not be opened (no pidfd) is not signalled,
                    // but it is not "gone" either.
                    survivors.extend(unopened.iter().map(|st| {
                        Survivor {
                            pid: st.pid,
                            comm: read_stat_comm(st.pid)
                                .filter(|(now, _)| now.start == st.start)
                                .map_or_else(|| "?".into(), |(_, c)| c),
                        }
                    }));
                    return Cleared {
                        signalled,
                        survivors,
                    };
                }
            }
        }
        std::thread::sleep(POLL);
    }
}

/// What the last [`clear_tree`] could not end (empty when it found the tree empty).
static SURVIVORS: Mutex<Vec<Survivor>> = Mutex::new(Vec::new());

/// The processes of an operation that survived the last [`clear_tree`] (empty normally).
/// While this is not empty, no privileged operation may start.
pub fn survivors() -> Vec<Survivor> {
    SURVIVORS.lock().map(|s| s.clone()).unwrap_or_default()
}

fn remember(survivors: &[Survivor]) {
    if let Ok(mut s) = SURVIVORS.lock() {
        s.clear();
        s.extend_from_slice(survivors);
    }
}

/// Sets [`survivors`] for a test of what depends on it.
#[cfg(test)]
pub(crate) fn set_survivors_for_test(survivors: &[Survivor]) {
    remember(survivors);
}

/// Ends every process below this one: SIGTERM, up to `grace` for them to exit, SIGKILL for the
/// rest (for up to [`KILL_WAIT`]), then reaps the ones re-parented here. `keep` is a direct
/// child tokio still waits for (it is signalled, but tokio reaps it). The result is also
/// what [`survivors`] answers until the next call. Blocking; run it on a blocking thread.
pub fn clear_tree(grace: Duration, keep: Option<i32>) -> Cleared {
    let cleared = clear_with(&mut ProcHost, grace, KILL_WAIT, keep);
    remember(&cleared.survivors);
    cleared
}

/// [`clear_tree`] with SIGKILL at once and a short wait, for paths that cannot wait (a
/// dropped future at shutdown). Blocking, but short.
pub fn kill_tree_now() -> Cleared {
    let cleared = clear_with(
        &mut ProcHost,
        Duration::ZERO,
        Duration::from_millis(250),
        None,
    );
    remember(&cleared.survivors);
    cleared
}

#[cfg(test)]
mod tests;
