//! Tests of containment: the stat parser, pidfds against recycled pids, the two-empty-scans
//! rule, and survivors of SIGKILL.

use super::*;
use std::process::{Child, Command, Stdio};

/// A `/proc/<pid>/stat` line with the given fields (starttime is field 22).
fn line(pid: i32, comm: &str, state: &str, ppid: i32, start: u64) -> String {
    format!("{pid} ({comm}) {state} {ppid} 1 1 0 -1 4194304 90 0 0 0 0 0 0 0 20 0 1 0 {start} 1 1")
}

#[test]
fn stat_lines_parse_with_odd_command_names() {
    assert_eq!(
        parse_stat(&line(1234, "sleep", "S", 99, 5555)),
        Some(ProcStat {
            pid: 1234,
            ppid: 99,
            dead: false,
            start: 5555,
        })
    );
    assert_eq!(
        parse_stat_comm(&line(77, "a) b) (c", "Z", 5, 8)),
        Some((
            ProcStat {
                pid: 77,
                ppid: 5,
                dead: true,
                start: 8,
            },
            "a) b) (c".to_string()
        ))
    );
    let (_, comm) = parse_stat_comm(&line(9, "a\nb\u{1b}", "S", 1, 1)).unwrap();
    assert_eq!(comm, "a?b?");
    for bad in [
        "",
        "12",
        "12 (x",
        "x (y) S 1",
        "12 (y) S",
        ")( 1 (",
        "12 (y) S x",
        // No start time.
        "1234 (sleep) S 99 1234 1234 0 -1 4194304",
    ] {
        assert_eq!(parse_stat(bad), None, "{bad:?}");
    }
    // The real thing, for this process.
    let me = read_stat(std::process::id() as i32).unwrap();
    assert_eq!(me.pid, std::process::id() as i32);
    assert!(me.start > 0);
}

#[test]
fn descendants_follow_parent_links_only_below_the_root() {
    let mk = |pid, ppid| ProcStat {
        pid,
        ppid,
        dead: false,
        start: 1,
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

fn alive(pid: i32) -> bool {
    // Alive and not a zombie.
    read_stat(pid).is_some_and(|st| !st.dead)
}

fn sleeper() -> Child {
    Command::new("sleep").arg("1000").spawn().unwrap()
}

/// Starts `setsid sleep 1000` from a shell that exits at once: the sleep leaves the
/// session and the process group, and is re-parented to this (subreaper) process.
fn orphan() -> i32 {
    let out = Command::new("/bin/sh")
        .args([
            "-c",
            "setsid sleep 1000 </dev/null >/dev/null 2>&1 & echo $!",
        ])
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    let pid: i32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert!(alive(pid));
    pid
}

#[test]
fn a_handle_is_opened_only_on_the_process_the_scan_saw() {
    let _serial = crate::exec::SPAWN_LOCK.blocking_lock();
    let mut child = sleeper();
    let pid = child.id() as i32;
    let st = read_stat(pid).unwrap();
    // The pid now names a process that started at another time: no handle, no signal.
    let recycled = ProcStat {
        start: st.start + 1,
        ..st
    };
    assert!(ProcHost.open(&recycled).is_none());
    std::thread::sleep(Duration::from_millis(50));
    assert!(alive(pid), "the process behind a recycled pid was touched");
    // The process itself: a handle, and the signal reaches it.
    let (fd, comm) = ProcHost.open(&st).unwrap();
    assert_eq!(comm, "sleep");
    assert!(!fd.exited());
    fd.signal(Signal::SIGKILL).unwrap();
    child.wait().unwrap();
    assert!(fd.exited(), "the pidfd of a reaped process polls readable");
    // A handle on an exited, reaped process signals nothing.
    let e = fd.signal(Signal::SIGKILL).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ESRCH));
}

/// The real kernel reuses the pid of a reaped process; a pidfd taken before still names
/// the old one. Needs the right to set `ns_last_pid` (root), which steers the next pid.
#[test]
fn a_pidfd_never_signals_the_next_owner_of_its_pid() {
    let _serial = crate::exec::SPAWN_LOCK.blocking_lock();
    let last_pid = "/proc/sys/kernel/ns_last_pid";
    let mut first = sleeper();
    let pid = first.id() as i32;
    let fd = PidFd::open(pid).unwrap();
    first.kill().unwrap();
    first.wait().unwrap();
    let mut next = None;
    for _ in 0..200 {
        if let Err(e) = std::fs::write(last_pid, (pid - 1).to_string()) {
            eprintln!("skipping the pid-reuse test: cannot write {last_pid}: {e}");
            return;
        }
        let mut c = sleeper();
        if c.id() as i32 == pid {
            next = Some(c);
            break;
        }
        // Another process on the host took the pid first; try again.
        let _ = c.kill();
        let _ = c.wait();
    }
    let Some(mut next) = next else {
        eprintln!("skipping the pid-reuse test: pid {pid} was never handed out again");
        return;
    };
    assert!(fd.exited());
    let e = fd.signal(Signal::SIGKILL).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ESRCH));
    std::thread::sleep(Duration::from_millis(50));
    assert!(
        next.try_wait().unwrap().is_none(),
        "the new owner of the pid was killed"
    );
    next.kill().unwrap();
    next.wait().unwrap();
}

#[test]
fn clear_tree_ends_a_double_forked_setsid_orphan() {
    let _serial = crate::exec::SPAWN_LOCK.blocking_lock();
    become_subreaper().unwrap();
    let pid = orphan();
    let st = read_stat(pid).unwrap();
    assert_eq!(st.ppid, std::process::id() as i32, "re-parented here");
    let cleared = clear_tree(Duration::from_secs(2), None);
    assert_eq!(cleared.signalled, 1, "{cleared:?}");
    assert!(cleared.survivors.is_empty(), "{cleared:?}");
    assert!(survivors().is_empty());
    // Gone and reaped, not a zombie.
    assert!(read_stat(pid).is_none_or(|now| now.start != st.start));
}

/// The real host, with a hook after each scan.
struct Hooked<F: FnMut(usize, &mut HashMap<i32, ProcStat>)> {
    scans: usize,
    hook: F,
}

impl<F: FnMut(usize, &mut HashMap<i32, ProcStat>)> Host for Hooked<F> {
    type Handle = PidFd;
    fn me(&self) -> i32 {
        ProcHost.me()
    }
    fn scan(&mut self) -> HashMap<i32, ProcStat> {
        let mut t = ProcHost.scan();
        self.scans += 1;
        (self.hook)(self.scans, &mut t);
        t
    }
    fn open(&mut self, st: &ProcStat) -> Option<(PidFd, String)> {
        ProcHost.open(st)
    }
    fn exited(&mut self, h: &PidFd) -> bool {
        ProcHost.exited(h)
    }
    fn signal(&mut self, h: &PidFd, sig: Signal) {
        ProcHost.signal(h, sig)
    }
    fn reap(&mut self, table: &HashMap<i32, ProcStat>, keep: Option<i32>) {
        ProcHost.reap(table, keep)
    }
}

#[test]
fn a_process_forked_right_after_an_empty_scan_is_found_by_the_second() {
    let _serial = crate::exec::SPAWN_LOCK.blocking_lock();
    become_subreaper().unwrap();
    let me = std::process::id() as i32;
    let mut first_was_empty = false;
    let mut late = None;
    let mut host = Hooked {
        scans: 0,
        hook: |n: usize, t: &mut HashMap<i32, ProcStat>| {
            if n == 1 {
                first_was_empty = descendants_in(t, me).iter().all(|p| p.dead);
                // Forked just after the scan looked: the scan could not see it.
                late = Some(orphan());
            }
        },
    };
    let cleared = clear_with(
        &mut host,
        Duration::from_secs(2),
        Duration::from_secs(1),
        None,
    );
    assert!(first_was_empty, "the first scan was to find nothing");
    let pid = late.unwrap();
    assert_eq!(cleared.signalled, 1, "{cleared:?}");
    assert!(cleared.survivors.is_empty(), "{cleared:?}");
    assert!(!alive(pid), "the late process was left running");
}

#[test]
fn a_pid_whose_process_is_not_the_scanned_one_is_never_signalled() {
    let _serial = crate::exec::SPAWN_LOCK.blocking_lock();
    let mut victim = sleeper();
    let pid = victim.id() as i32;
    // Every scan shows the pid with another start time: the process the scan "saw"
    // is gone and the pid now names this one.
    let mut host = Hooked {
        scans: 0,
        hook: |_: usize, t: &mut HashMap<i32, ProcStat>| {
            if let Some(st) = t.get_mut(&pid) {
                st.start += 1;
            }
        },
    };
    let cleared = clear_with(
        &mut host,
        Duration::from_millis(100),
        Duration::from_millis(200),
        None,
    );
    assert!(
        victim.try_wait().unwrap().is_none(),
        "the victim was signalled"
    );
    assert_eq!(cleared.signalled, 0, "{cleared:?}");
    // Not "gone" either: reported, so the lock stays held.
    assert_eq!(
        cleared.survivors.iter().map(|s| s.pid).collect::<Vec<_>>(),
        vec![pid]
    );
    victim.kill().unwrap();
    victim.wait().unwrap();
}

/// A host of made-up processes: ones that SIGKILL ends, and ones it does not (a process
/// in uninterruptible sleep, which cannot be made on demand).
#[derive(Default)]
struct Fake {
    procs: HashMap<i32, (ProcStat, &'static str, bool)>,
    signals: Vec<(i32, Signal)>,
}

impl Fake {
    fn add(&mut self, pid: i32, comm: &'static str, unkillable: bool) {
        let st = ProcStat {
            pid,
            ppid: 1,
            dead: false,
            start: pid as u64,
        };
        self.procs.insert(pid, (st, comm, unkillable));
    }
}

impl Host for Fake {
    type Handle = i32;
    fn me(&self) -> i32 {
        1
    }
    fn scan(&mut self) -> HashMap<i32, ProcStat> {
        self.procs
            .values()
            .map(|(st, _, _)| (st.pid, *st))
            .collect()
    }
    fn open(&mut self, st: &ProcStat) -> Option<(i32, String)> {
        let (now, comm, _) = self.procs.get(&st.pid)?;
        (now.start == st.start).then(|| (st.pid, comm.to_string()))
    }
    fn exited(&mut self, h: &i32) -> bool {
        !self.procs.contains_key(h)
    }
    fn signal(&mut self, h: &i32, sig: Signal) {
        self.signals.push((*h, sig));
        let killable = self.procs.get(h).is_some_and(|(_, _, u)| !u);
        if killable && matches!(sig, Signal::SIGTERM | Signal::SIGKILL) {
            self.procs.remove(h);
        }
    }
    fn reap(&mut self, _: &HashMap<i32, ProcStat>, _: Option<i32>) {}
}

#[test]
fn a_process_that_outlives_sigkill_is_reported_with_its_name() {
    let mut host = Fake::default();
    host.add(10, "pct", false);
    host.add(11, "stuck", true);
    let grace = Duration::from_millis(60);
    let kill_wait = Duration::from_millis(120);
    let started = Instant::now();
    let cleared = clear_with(&mut host, grace, kill_wait, None);
    assert!(started.elapsed() >= grace + kill_wait, "gave up early");
    assert_eq!(cleared.signalled, 2);
    assert_eq!(
        cleared.survivors,
        vec![Survivor {
            pid: 11,
            comm: "stuck".into()
        }]
    );
    assert_eq!(describe(&cleared.survivors), "pid 11 (stuck)");
    let to_11: Vec<Signal> = host
        .signals
        .iter()
        .filter(|(p, _)| *p == 11)
        .map(|(_, s)| *s)
        .collect();
    assert_eq!(
        &to_11[..3],
        &[Signal::SIGTERM, Signal::SIGCONT, Signal::SIGKILL]
    );
    // Once it is gone, the tree is clear.
    host.procs.clear();
    let cleared = clear_with(&mut host, grace, kill_wait, None);
    assert!(cleared.survivors.is_empty());
}

#[test]
fn the_tree_is_empty_only_after_two_empty_scans_in_a_row() {
    /// Scans scripted in order; the last one repeats.
    struct Script {
        scans: Vec<Vec<i32>>,
        n: usize,
        signalled: Vec<i32>,
    }
    impl Host for Script {
        type Handle = i32;
        fn me(&self) -> i32 {
            1
        }
        fn scan(&mut self) -> HashMap<i32, ProcStat> {
            let i = self.n.min(self.scans.len() - 1);
            self.n += 1;
            self.scans[i]
                .iter()
                .map(|&pid| {
                    let st = ProcStat {
                        pid,
                        ppid: 1,
                        dead: false,
                        start: 7,
                    };
                    (pid, st)
                })
                .collect()
        }
        fn open(&mut self, st: &ProcStat) -> Option<(i32, String)> {
            Some((st.pid, "x".into()))
        }
        fn exited(&mut self, h: &i32) -> bool {
            self.signalled.contains(h)
        }
        fn signal(&mut self, h: &i32, _: Signal) {
            self.signalled.push(*h);
        }
        fn reap(&mut self, _: &HashMap<i32, ProcStat>, _: Option<i32>) {}
    }
    // Empty, then a process (missed by the first scan), then empty for good.
    let mut host = Script {
        scans: vec![vec![], vec![42], vec![]],
        n: 0,
        signalled: vec![],
    };
    let cleared = clear_with(&mut host, Duration::ZERO, Duration::ZERO, None);
    assert_eq!(cleared.signalled, 1);
    assert!(host.signalled.contains(&42));
    assert_eq!(host.n, 4, "done after the two empty scans that followed");
}
