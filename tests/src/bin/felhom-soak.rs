//! `felhom-soak`: a fault-injection soak of the real service. Runs the real
//! `felhom-agent run` with a short interval against the Proxmox simulator and the real helper
//! (under `systemd-socket-activate`, with the fake tools), injects random faults (5xx, 596,
//! stalls, 401 bursts, connection resets, slow tools) and kills the helper at random points
//! (SIGKILL, possibly mid-call; it also exits when idle and is re-activated), and checks:
//!
//! - every cycle completes within its bound (the gap between two `STATUS=cycle` messages);
//! - no panic, and the agent exits 0 on SIGTERM at the end;
//! - `health.json`, read concurrently all the time, is always complete, valid JSON;
//! - the agent's RSS and open file descriptors stay flat (first, last and max printed);
//! - no helper tool process is left behind;
//! - watchdog pings keep coming.
//!
//! `cargo run --release -p felhom-tests --bin felhom-soak -- --cycles 2000`
//! Prints its figures on stdout and exits 1 when a check fails.

use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use felhom_tests::bins;
use felhom_tests::fake_helper::{healthy_ata_json, write_agent_config};
use felhom_tests::helper_harness::{HelperHarness, HelperHarnessOptions};
use felhom_tests::pve_sim::{Fault, FaultKind, PveSim, SimOptions};

/// Fault-injection soak of `felhom-agent run`.
#[derive(Parser, Debug)]
struct Args {
    /// Collection cycles to run.
    #[arg(long, default_value_t = 150)]
    cycles: u64,
    /// The agent's interval, in milliseconds.
    #[arg(long, default_value_t = 200)]
    interval_ms: u64,
    /// Seed of the fault schedule (the same seed gives the same schedule).
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// The longest a cycle may take, fault included: 3 attempts of a 2 s request timeout plus
/// back-off for a read, a stall, the helper's SMART deadline, and scheduling slack.
const CYCLE_BOUND: Duration = Duration::from_secs(30);
/// The watchdog period given to the agent (it pings every half of it).
const WATCHDOG: Duration = Duration::from_secs(2);

/// xorshift64*: a small deterministic generator for the fault schedule.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// (RSS KiB, open fds) of a process.
fn sample(pid: u32) -> Option<(u64, usize)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count();
    Some((rss, fds))
}

/// Pids of processes running one of the harness's fake tools (their command line names the
/// harness directory), other than the helper itself.
fn tool_processes(dir: &Path, helper: Option<u32>) -> Vec<(u32, String)> {
    let needle = dir.to_string_lossy().into_owned();
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if Some(pid) == helper || pid == std::process::id() {
            continue;
        }
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains(&needle) && cmd.contains("/tools/") {
            out.push((pid, cmd));
        }
    }
    out
}

#[derive(Default)]
struct Figures {
    faults: u64,
    helper_kills: u64,
    activations: u64,
}

fn main() {
    let args = Args::parse();
    if !Path::new("/usr/bin/systemd-socket-activate").exists() {
        println!(
            "skipped: /usr/bin/systemd-socket-activate is not installed (apt-get install systemd)"
        );
        return;
    }
    // Build (once) before anything starts.
    bins::agent();
    bins::helper();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    match rt.block_on(soak(&args)) {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("felhom-soak: {e:#}");
            std::process::exit(2);
        }
    }
}

async fn soak(args: &Args) -> anyhow::Result<bool> {
    let mut rng = Rng(args.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let sim = PveSim::start(SimOptions::default()).await?;
    let mut h = HelperHarness::start(HelperHarnessOptions {
        idle_timeout_secs: 2,
        ..HelperHarnessOptions::default()
    })?;
    h.add_fake_disk("sda", &healthy_ata_json("SOAK SSD", "SOAK0001", 35), 0);
    let dir = tempfile::tempdir()?;
    let config = write_agent_config(dir.path(), &sim, h.socket_path(), 1)?;
    let mut cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(&config)?)?;
    cfg["interval_secs"] = serde_json::json!(args.interval_ms as f64 / 1000.0);
    cfg["request_timeout_secs"] = serde_json::json!(2);
    std::fs::write(&config, serde_json::to_vec_pretty(&cfg)?)?;

    // systemd's notification socket, played by us.
    let notify_path = dir.path().join("notify.sock");
    let notify = tokio::net::UnixDatagram::bind(&notify_path)?;
    let messages: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
    let cycles_seen = Arc::new(AtomicU64::new(0));
    let reader = {
        let messages = messages.clone();
        let cycles_seen = cycles_seen.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while let Ok(n) = notify.recv(&mut buf).await {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                if text.contains("STATUS=cycle ") {
                    cycles_seen.fetch_add(1, Ordering::SeqCst);
                }
                messages.lock().unwrap().push((Instant::now(), text));
            }
        })
    };

    let agent_log = dir.path().join("agent.log");
    let mut agent = tokio::process::Command::new(bins::agent())
        .arg("--config")
        .arg(&config)
        .arg("run")
        .env("NOTIFY_SOCKET", &notify_path)
        .env("WATCHDOG_USEC", WATCHDOG.as_micros().to_string())
        .env_remove("WATCHDOG_PID")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&agent_log)?)
        .kill_on_drop(true)
        .spawn()
        .context("starting felhom-agent run")?;
    let agent_pid = agent.id().context("agent pid")?;

    // health.json, read all the time by another thread.
    let health = dir.path().join("state/health.json");
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let bad_reads: Arc<Mutex<Vec<String>>> = Arc::default();
    let health_reader = {
        let (health, stop, reads, bad) = (
            health.clone(),
            stop.clone(),
            reads.clone(),
            bad_reads.clone(),
        );
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                if let Ok(bytes) = std::fs::read(&health) {
                    reads.fetch_add(1, Ordering::SeqCst);
                    if let Err(e) = serde_json::from_slice::<serde_json::Value>(&bytes) {
                        bad.lock()
                            .unwrap()
                            .push(format!("{e} ({} bytes)", bytes.len()));
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };

    let started = Instant::now();
    let deadline = started
        + (Duration::from_millis(args.interval_ms) + CYCLE_BOUND) * 4
        + Duration::from_millis(args.interval_ms * 3) * args.cycles as u32;
    let mut figures = Figures::default();
    let mut samples: Vec<(u64, usize)> = Vec::new();
    let mut warm: Option<(u64, usize)> = None;
    let mut agent_died = None;
    while cycles_seen.load(Ordering::SeqCst) < args.cycles {
        if Instant::now() > deadline {
            break;
        }
        if let Some(status) = agent.try_wait()? {
            agent_died = Some(status);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50 + rng.below(350))).await;
        let fault = |kind: FaultKind, times: u32| Fault {
            method: None,
            path_contains: String::new(),
            kind,
            times,
        };
        let status = |code: u16, reason: &str| FaultKind::Status {
            code,
            reason: reason.to_string(),
        };
        match rng.below(100) {
            0..=11 => {
                sim.state().inject(fault(
                    status(500, "Internal Server Error"),
                    1 + rng.below(3) as u32,
                ));
                figures.faults += 1;
            }
            12..=19 => {
                sim.state()
                    .inject(fault(status(596, "Connection timed out"), 1));
                figures.faults += 1;
            }
            20..=25 => {
                let d = Duration::from_millis(100 + rng.below(1500));
                sim.state().inject(fault(FaultKind::Stall(d), 1));
                figures.faults += 1;
            }
            26..=31 => {
                sim.state()
                    .inject(fault(status(401, "authentication failure"), 3));
                figures.faults += 1;
            }
            32..=39 => {
                sim.state().inject(fault(FaultKind::CloseConnection, 1));
                figures.faults += 1;
            }
            40..=47 => {
                h.kill_helper();
                figures.helper_kills += 1;
            }
            48..=52 => {
                // A slow smartctl makes the next kills land in the middle of a call.
                h.set_delay("smartctl", Some(1));
                figures.faults += 1;
            }
            53..=60 => h.set_delay("smartctl", None),
            _ => {}
        }
        // systemd re-activates the socket after the helper exits (killed or idle).
        if h.helper_pid().is_none() || h.try_wait().is_some() {
            h.launch_activated()?;
            figures.activations += 1;
        }
        if let Some(s) = sample(agent_pid) {
            samples.push(s);
            if warm.is_none() && cycles_seen.load(Ordering::SeqCst) >= 10 {
                warm = Some(s);
            }
        }
    }
    let elapsed = started.elapsed();
    let cycles = cycles_seen.load(Ordering::SeqCst);

    // End: SIGTERM, exit 0.
    let mut exit_ok = false;
    if agent_died.is_none() {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(agent_pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        )?;
        match tokio::time::timeout(Duration::from_secs(30), agent.wait()).await {
            Ok(Ok(s)) => exit_ok = s.code() == Some(0),
            _ => {
                let _ = agent.kill().await;
            }
        }
    }
    stop.store(true, Ordering::SeqCst);
    let _ = health_reader.join();
    reader.abort();
    h.set_delay("smartctl", None);
    // A tool that was running when the helper was killed gets a moment to finish.
    let mut leftovers = tool_processes(h.dir(), h.helper_pid());
    let until = Instant::now() + Duration::from_secs(5);
    while !leftovers.is_empty() && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(200)).await;
        leftovers = tool_processes(h.dir(), h.helper_pid());
    }

    // Figures.
    let msgs = messages.lock().unwrap().clone();
    let gaps = |pred: &dyn Fn(&str) -> bool| -> (Duration, usize) {
        let times: Vec<Instant> = msgs
            .iter()
            .filter(|(_, m)| pred(m))
            .map(|(t, _)| *t)
            .collect();
        let max = times
            .windows(2)
            .map(|w| w[1] - w[0])
            .max()
            .unwrap_or_default();
        (max, times.len())
    };
    let (max_cycle_gap, _) = gaps(&|m| m.contains("STATUS=cycle "));
    let (max_watchdog_gap, pings) = gaps(&|m| m.contains("WATCHDOG=1"));
    let degraded = msgs
        .iter()
        .filter(|(_, m)| m.contains("STATUS=cycle ") && !m.contains(": ok"))
        .count();
    let log = std::fs::read_to_string(&agent_log).unwrap_or_default();
    let panicked = log.contains("panicked");
    let first = samples.first().copied().unwrap_or_default();
    let warm = warm.unwrap_or(first);
    let last = samples.last().copied().unwrap_or_default();
    let max_rss = samples.iter().map(|s| s.0).max().unwrap_or_default();
    let max_fds = samples.iter().map(|s| s.1).max().unwrap_or_default();
    let bad = bad_reads.lock().unwrap().clone();

    println!(
        "felhom-soak: seed {}, interval {} ms, {cycles} cycles in {:.0} s ({degraded} degraded by faults)",
        args.seed,
        args.interval_ms,
        elapsed.as_secs_f64()
    );
    println!(
        "  faults injected {}, helper SIGKILLs {}, helper (re)activations {}",
        figures.faults, figures.helper_kills, figures.activations
    );
    println!(
        "  longest cycle gap {:.2} s (bound {} s); watchdog pings {pings}, longest gap {:.2} s (period {} s)",
        max_cycle_gap.as_secs_f64(),
        CYCLE_BOUND.as_secs(),
        max_watchdog_gap.as_secs_f64(),
        WATCHDOG.as_secs()
    );
    println!(
        "  agent RSS KiB first {} / after warm-up {} / last {} / max {}; fds first {} / after warm-up {} / last {} / max {}",
        first.0, warm.0, last.0, max_rss, first.1, warm.1, last.1, max_fds
    );
    println!(
        "  health.json read {} times concurrently, {} invalid",
        reads.load(Ordering::SeqCst),
        bad.len()
    );
    println!("  tool processes left behind: {}", leftovers.len());

    let mut failures = Vec::new();
    if let Some(s) = agent_died {
        failures.push(format!("the agent died: {s}"));
    }
    if cycles < args.cycles {
        failures.push(format!("only {cycles} of {} cycles", args.cycles));
    }
    if max_cycle_gap > CYCLE_BOUND {
        failures.push(format!("a cycle took {max_cycle_gap:?}"));
    }
    if panicked {
        failures.push("the agent panicked (see its log)".into());
    }
    if agent_died.is_none() && !exit_ok {
        failures.push("the agent did not exit 0 on SIGTERM".into());
    }
    if !bad.is_empty() {
        failures.push(format!(
            "invalid health.json reads: {:?}",
            &bad[..bad.len().min(3)]
        ));
    }
    if reads.load(Ordering::SeqCst) == 0 {
        failures.push("health.json was never read".into());
    }
    // Flat: after warm-up, RSS may wander by allocator noise but not grow with cycles.
    if last.0 > warm.0 + 16 * 1024 {
        failures.push(format!("RSS grew from {} to {} KiB", warm.0, last.0));
    }
    if last.1 > warm.1 + 8 {
        failures.push(format!("open fds grew from {} to {}", warm.1, last.1));
    }
    if !leftovers.is_empty() {
        failures.push(format!("tool processes left behind: {leftovers:?}"));
    }
    if pings < 2 || max_watchdog_gap > WATCHDOG + Duration::from_secs(1) {
        failures.push(format!(
            "watchdog pings: {pings}, longest gap {max_watchdog_gap:?}"
        ));
    }
    if failures.is_empty() {
        println!("all checks passed");
        Ok(true)
    } else {
        for f in &failures {
            println!("FAILED: {f}");
        }
        if panicked {
            println!("agent log:\n{log}");
        }
        Ok(false)
    }
}
