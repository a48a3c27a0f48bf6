//! The agent's own cost in service mode: CPU time per collection cycle and peak RSS of the
//! real `felhom-agent run` against the Proxmox simulator and the real helper (socket-activated
//! when `systemd-socket-activate` is installed, as in production; the in-process fake helper
//! otherwise).
//!
//! Run: `cargo bench -p felhom-tests --bench agent_cycle` (optional argument: cycles, default
//! 40).
//!
//! The simulator counts the Proxmox requests: they are printed per cycle, for the default
//! inventory and for 1,000 containers with a backup each (the same count: nothing is
//! requested per guest; the bench fails if the counts differ), with the CPU per cycle of
//! each.
//!
//! Two runs of the service with a 0.2 s interval: one stopped (SIGTERM) after its first cycle,
//! one after `1 + N` cycles. CPU time comes from `wait4`'s rusage (user + system, all threads),
//! so the difference of the two runs divided by `N` is the CPU time of one cycle without the
//! start-up; peak RSS is the longer run's `ru_maxrss`. The start-up cost (the first run) is
//! printed too. Every cycle here starts with a fresh helper connection, as in production
//! (the agent lets go of the helper between cycles).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use felhom_tests::bins;
use felhom_tests::fake_helper::{FakeHelper, write_agent_config};
use felhom_tests::helper_harness::{HelperHarness, HelperHarnessOptions};
use felhom_tests::pve_sim::{PveSim, SimOptions};

/// CPU seconds (user + system) and peak RSS (KiB) of one `felhom-agent run` that is stopped
/// once it has logged `cycles` cycles.
struct Usage {
    cpu: Duration,
    user: Duration,
    sys: Duration,
    max_rss_kib: i64,
    wall: Duration,
}

fn tv(t: libc::timeval) -> Duration {
    Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
}

fn run_for(config: &Path, cycles: usize) -> Usage {
    let started = Instant::now();
    // Reaped with wait4 below (for its rusage), not through `Child::wait`.
    #[allow(clippy::zombie_processes)]
    let mut child = Command::new(bins::agent())
        .arg("--config")
        .arg(config)
        .arg("run")
        .env("FELHOM_INTERVAL_SECS", "0.2")
        .env_remove("RUST_LOG")
        .env_remove("JOURNAL_STREAM")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn felhom-agent run");
    let pid = child.id() as libc::pid_t;
    let stderr = child.stderr.take().unwrap();
    let mut seen = 0;
    let mut log = String::new();
    for line in BufReader::new(stderr).lines() {
        let line = line.unwrap();
        if line.contains(" cycle=") {
            seen += 1;
        }
        log.push_str(&line);
        log.push('\n');
        if seen >= cycles {
            break;
        }
    }
    assert_eq!(seen, cycles, "the agent stopped early:\n{log}");
    // SAFETY: plain kill(2) of our own child, which has not been reaped yet.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let mut status: libc::c_int = 0;
    // SAFETY: an all-zero `rusage` is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our own child, not yet waited for (the `Child` is never waited on);
    // `status` and `usage` are valid, writable, and live for the call.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(r, pid, "wait4: {}", std::io::Error::last_os_error());
    let (user, sys) = (tv(usage.ru_utime), tv(usage.ru_stime));
    Usage {
        cpu: user + sys,
        user,
        sys,
        max_rss_kib: usage.ru_maxrss,
        wall: started.elapsed(),
    }
}

/// Runs the service for 1 and for `1 + n` cycles against `sim`: the two usages and the
/// Proxmox requests per cycle. Every cycle makes the same requests, so they are the distinct
/// requests (method, path, query) of the longer run — exact even when SIGTERM cuts a cycle
/// short, and a request per guest would show up as one per guest.
fn measure(sim: &PveSim, config: &Path, n: usize) -> (Usage, Usage, usize) {
    let one = run_for(config, 1);
    let from = sim.state().requests().len();
    let many = run_for(config, 1 + n);
    let distinct: std::collections::BTreeSet<(String, String, String)> = sim.state().requests()
        [from..]
        .iter()
        .map(|r| (r.method.clone(), r.path.clone(), r.query.clone()))
        .collect();
    (one, many, distinct.len())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    // `cargo test --benches` runs this once with few cycles.
    let quick = !std::env::args().any(|a| a == "--bench");
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(if quick { 2 } else { 40 });
    bins::agent();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let sim = runtime
        .block_on(PveSim::start(SimOptions::default()))
        .unwrap();
    // The real helper, socket-activated (it idles out and is started again as in
    // production); the fake helper when systemd-socket-activate is missing.
    let real = HelperHarness::start(HelperHarnessOptions::default());
    let fake;
    let (socket, which) = match &real {
        Ok(h) => (
            h.socket_path().to_path_buf(),
            "real helper, socket-activated",
        ),
        Err(e) => {
            println!("(fake helper: the real one cannot be socket-activated here: {e})");
            fake = runtime.block_on(FakeHelper::start()).unwrap();
            (fake.socket_path().to_path_buf(), "fake helper")
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let config = write_agent_config(dir.path(), &sim, &socket, 1).unwrap();

    let (one, many, requests) = measure(&sim, &config, n);
    let per_cycle = many.cpu.saturating_sub(one.cpu) / n as u32;
    let user = many.user.saturating_sub(one.user) / n as u32;
    let sys = many.sys.saturating_sub(one.sys) / n as u32;
    println!();
    println!("felhom-agent run against the simulator ({which}), interval 0.2 s");
    println!("{:<44} {:>10}", "what", "value");
    println!(
        "{:<44} {:>10.2}",
        "start-up + first cycle, CPU ms",
        ms(one.cpu)
    );
    println!(
        "{:<44} {:>10.2}",
        format!("CPU ms per cycle (mean of {n})"),
        ms(per_cycle)
    );
    println!("{:<44} {:>10.2}", "  of which user ms", ms(user));
    println!("{:<44} {:>10.2}", "  of which system ms", ms(sys));
    println!("{:<44} {:>10}", "Proxmox requests per cycle", requests);
    println!(
        "{:<44} {:>10.1}",
        format!("peak RSS MiB (after {} cycles)", 1 + n),
        many.max_rss_kib as f64 / 1024.0
    );
    println!(
        "{:<44} {:>10.2}",
        "wall s (longer run)",
        many.wall.as_secs_f64()
    );

    // The same with 1,000 containers, each with a backup: the requests per cycle stay
    // the same (no request per guest); the CPU grows with the size of the answers.
    let big = runtime
        .block_on(PveSim::start(SimOptions::default()))
        .unwrap();
    let st = big.state();
    for vmid in 1000..1998 {
        st.add_container(vmid, &format!("ct{vmid}"), vmid % 4 != 0);
        st.add_backup_aged("local", vmid, 3600 + u64::from(vmid));
    }
    let big_dir = tempfile::tempdir().unwrap();
    let big_config = write_agent_config(big_dir.path(), &big, &socket, 1).unwrap();
    let (big_one, big_many, big_requests) = measure(&big, &big_config, n);
    let big_cycle = big_many.cpu.saturating_sub(big_one.cpu) / n as u32;
    println!();
    println!("the same with 1,000 containers (one backup each)");
    println!(
        "{:<44} {:>10.2}",
        format!("CPU ms per cycle (mean of {n})"),
        ms(big_cycle)
    );
    println!("{:<44} {:>10}", "Proxmox requests per cycle", big_requests);
    println!(
        "{:<44} {:>10.1}",
        format!("peak RSS MiB (after {} cycles)", 1 + n),
        big_many.max_rss_kib as f64 / 1024.0
    );
    println!();
    println!("cpu per cycle ms: {:.2}", ms(per_cycle));
    println!("peak rss mib: {:.1}", many.max_rss_kib as f64 / 1024.0);
    println!("requests per cycle: {requests}");
    println!("1000 guests cpu per cycle ms: {:.2}", ms(big_cycle));
    println!("1000 guests requests per cycle: {big_requests}");
    assert_eq!(
        requests, big_requests,
        "the requests per cycle grew with the number of guests"
    );
}
