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
//! could not be killed). The operation lock is held until it returns.
//!
//! The tree is read from `/proc/<pid>/stat` of every process (the parent pid field), which
//! needs no privilege for the helper's own descendants.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::Pid;

/// How often [`clear_tree`] looks again while it waits for processes to go.
const POLL: Duration = Duration::from_millis(20);

/// How long [`clear_tree`] waits after SIGKILL before it gives up on a process (one stuck in
/// uninterruptible sleep, say) and reports it.
pub const KILL_WAIT: Duration = Duration::from_secs(5);

/// Largest number of processes read from `/proc` in one scan.
const MAX_SCAN: usize = 1 << 20;

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
}

/// Parses one `/proc/<pid>/stat` line: `pid (comm) state ppid …`. The command name may hold
/// spaces and parentheses, so the fields are counted from the last `)`.
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    if close < open {
        return None;
    }
    let pid = text[..open].trim().parse().ok()?;
    let mut rest = text[close + 1..].split_ascii_whitespace();
    let state = rest.next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some(ProcStat {
        pid,
        ppid,
        dead: state == "Z" || state == "X",
    })
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
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"));
        if let Some(st) = stat.ok().as_deref().and_then(parse_stat) {
            out.insert(st.pid, st);
        }
    }
    out
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

/// Reaps the direct children of this process that have exited, except `keep` (a child that
/// tokio still waits for). Re-parented orphans have no other parent to reap them.
fn reap_adopted(keep: Option<i32>) {
    let me = std::process::id() as i32;
    for st in tree(me) {
        if st.ppid == me && st.dead && Some(st.pid) != keep {
            let _ = waitpid(Pid::from_raw(st.pid), Some(WaitPidFlag::WNOHANG));
        }
    }
}

fn signal_all(procs: &[ProcStat], sig: Signal) {
    for p in procs {
        // ESRCH: it went on its own.
        let _ = kill(Pid::from_raw(p.pid), sig);
    }
}

/// What [`clear_tree`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cleared {
    /// How many processes were still there and were signalled.
    pub signalled: usize,
    /// Pids that survived SIGKILL for [`KILL_WAIT`] (uninterruptible sleep); empty normally.
    pub survivors: Vec<i32>,
}

/// Ends every process below this one: SIGTERM, up to `grace` for them to exit, SIGKILL for the
/// rest, then reaps the ones re-parented here. `keep` is a direct child tokio still waits
/// for (it is signalled, but tokio reaps it). Blocking; run it on a blocking thread.
pub fn clear_tree(grace: Duration, keep: Option<i32>) -> Cleared {
    let mut result = Cleared::default();
    let first = live_descendants();
    if first.is_empty() {
        reap_adopted(keep);
        return result;
    }
    result.signalled = first.len();
    signal_all(&first, Signal::SIGTERM);
    // SIGTERM to a stopped process takes effect once it runs again.
    signal_all(&first, Signal::SIGCONT);
    let until = std::time::Instant::now() + grace;
    while std::time::Instant::now() < until {
        reap_adopted(keep);
        if live_descendants().is_empty() {
            return result;
        }
        std::thread::sleep(POLL);
    }
    let until = std::time::Instant::now() + KILL_WAIT;
    loop {
        let left = live_descendants();
        if left.is_empty() {
            reap_adopted(keep);
            return result;
        }
        // Kill again each round: a process may have forked before it got the first SIGKILL.
        signal_all(&left, Signal::SIGKILL);
        reap_adopted(keep);
        if std::time::Instant::now() >= until {
            result.survivors = left.iter().map(|p| p.pid).collect();
            return result;
        }
        std::thread::sleep(POLL);
    }
}

/// [`clear_tree`] with SIGKILL at once, for paths that cannot wait (a dropped future at
/// shutdown). Blocking, but short.
pub fn kill_tree_now() {
    for _ in 0..50 {
        let left = live_descendants();
        if left.is_empty() {
            break;
        }
        signal_all(&left, Signal::SIGKILL);
        std::thread::sleep(Duration::from_millis(5));
    }
    reap_adopted(None);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_parse_with_odd_command_names() {
        assert_eq!(
            parse_stat("1234 (sleep) S 99 1234 1234 0 -1 4194304"),
            Some(ProcStat {
                pid: 1234,
                ppid: 99,
                dead: false
            })
        );
        assert_eq!(
            parse_stat("77 (a) b) (c) Z 5 0 0"),
            Some(ProcStat {
                pid: 77,
                ppid: 5,
                dead: true
            })
        );
        for bad in [
            "",
            "12",
            "12 (x",
            "x (y) S 1",
            "12 (y) S",
            ")( 1 (",
            "12 (y) S x",
        ] {
            assert_eq!(parse_stat(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn descendants_follow_parent_links_only_below_the_root() {
        let mk = |pid, ppid| ProcStat {
            pid,
            ppid,
            dead: false,
        };
        let table: HashMap<i32, ProcStat> = [
            mk(1, 0),
            mk(10, 1),
            mk(11, 10),
            mk(12, 11),
            mk(13, 10),
            mk(20, 1),
            mk(21, 20),
        ]
        .into_iter()
        .map(|p| (p.pid, p))
        .collect();
        let mut d: Vec<i32> = descendants_in(&table, 10).iter().map(|p| p.pid).collect();
        d.sort();
        assert_eq!(d, vec![11, 12, 13]);
        assert!(descendants_in(&table, 12).is_empty());
        assert_eq!(descendants_in(&table, 1).len(), 6);
    }
}
