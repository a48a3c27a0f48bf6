//! Benchmark: how quickly `wait_task` notices that a task ended, and how many requests it
//! spends, compared with fixed one-second polling (what bpg, proxmoxer, go-proxmox and PDM
//! do), against the in-process Proxmox simulator. The same run also measures
//! `wait_task_with` (following the task log for live progress), so the cost of following
//! — log requests per wait — is a ratio against plain `wait_task` from the same run.
//!
//! Run: `cargo bench -p felhom-tests --bench wait_task` (optional args: runs for short tasks,
//! runs for long tasks; defaults 20 and 8). Task durations are spread evenly over 0.2–0.3 s and 3–4 s.
//!
//! Notice latency = the moment `wait_task` returns − the moment the simulator's task ended.
//! The task's end is observed by a side task that asks the simulator every millisecond
//! whether any task is still running (the simulator ends a task exactly `task_duration`
//! after it started), so the figure is accurate to about 1 ms.

use std::time::{Duration, Instant};

use felhom_agent::pve::{
    ApiSettings, NodeName, PveClient, TaskObserver, TaskState, TlsMode, TokenId, Upid, WaitOptions,
};
use felhom_agent::secret::Secret;
use felhom_protocol::Vmid;
use felhom_tests::pve_sim::{PveSim, SimOptions};

/// How the caller waits.
#[derive(Clone)]
enum Strategy {
    /// `PveClient::wait_task` with these options.
    WaitTask(WaitOptions),
    /// `PveClient::wait_task_with` (follows the log) with these options.
    WaitTaskFollow(WaitOptions),
    /// Poll status immediately, then every second until stopped (bpg `WaitForTask`,
    /// proxmoxer `blocking_status`, go-proxmox `Task.Wait`, PDM).
    FixedOneSecond,
}

async fn fixed_one_second(client: &PveClient, upid: &Upid) -> anyhow::Result<()> {
    loop {
        if client.task_status(upid).await?.status == TaskState::Stopped {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Counts the lines handed over (so following does real work).
#[derive(Default)]
struct LineCounter(usize);

impl TaskObserver for LineCounter {
    fn on_lines(&mut self, _upid: &Upid, lines: &[String], _elapsed: Duration) {
        self.0 += lines.len();
    }
}

struct Sample {
    latency: Duration,
    status_requests: usize,
    log_requests: usize,
}

async fn one_run(sim: &PveSim, client: &PveClient, strategy: &Strategy) -> anyhow::Result<Sample> {
    let vmid = Vmid::new(101)?;
    let state = sim.state();
    let tasks_before = state.count_requests("GET", "/tasks/");
    let log_before = state.count_requests("GET", "/log");
    let upid = client.start(vmid).await?;
    let watcher = {
        let state = sim.state();
        tokio::spawn(async move {
            loop {
                if !state.tasks_running() {
                    return Instant::now();
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };
    match strategy {
        Strategy::WaitTask(opts) => {
            client.wait_task(&upid, opts.clone()).await?;
        }
        Strategy::WaitTaskFollow(opts) => {
            let mut lines = LineCounter::default();
            client
                .wait_task_with(&upid, opts.clone(), &mut lines)
                .await?;
        }
        Strategy::FixedOneSecond => fixed_one_second(client, &upid).await?,
    }
    let returned = Instant::now();
    let ended = watcher.await?;
    // Everything below `/tasks/` is a status poll or a log read.
    let log_requests = state.count_requests("GET", "/log") - log_before;
    let status_requests = state.count_requests("GET", "/tasks/") - tasks_before - log_requests;
    // Put the container back for the next run (not measured).
    let stop = client.stop(vmid).await?;
    client.wait_task(&stop, WaitOptions::default()).await?;
    Ok(Sample {
        latency: returned.saturating_duration_since(ended),
        status_requests,
        log_requests,
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn scenario(
    label: &str,
    base: Duration,
    spread: Duration,
    runs: usize,
    strategies: &[(&str, Strategy)],
) -> anyhow::Result<()> {
    let sim = PveSim::start(SimOptions::default()).await?;
    let settings = ApiSettings {
        api_url: sim.base_url().parse()?,
        node: NodeName::new(sim.node())?,
        token_id: TokenId::new(sim.token_id())?,
        token_secret: Secret::new(sim.token_secret())
            .ok_or_else(|| anyhow::anyhow!("bad simulator secret"))?,
        tls: TlsMode::Pinned(sim.fingerprint().parse()?),
        tls_server_name: None,
        request_timeout: Duration::from_secs(10),
        max_response_bytes: felhom_agent::pve::DEFAULT_MAX_RESPONSE_BYTES,
    };
    let client = PveClient::new(&settings)?;
    client.version().await?; // warm the connection
    for (name, strategy) in strategies {
        let mut samples = Vec::with_capacity(runs);
        for i in 0..runs {
            // Durations spread evenly over [base, base + spread): real tasks do not end in
            // phase with a 1 s poll clock, and an exact multiple of 1 s would flatter it.
            let duration = base + spread.mul_f64(i as f64 / runs as f64);
            sim.state().set_task_duration(duration);
            samples.push(one_run(&sim, &client, strategy).await?);
            sim.state().set_task_duration(Duration::from_millis(20));
        }
        let mut lat: Vec<f64> = samples.iter().map(|s| ms(s.latency)).collect();
        lat.sort_by(f64::total_cmp);
        let mean = lat.iter().sum::<f64>() / lat.len() as f64;
        let p50 = lat[lat.len() / 2];
        let max = lat[lat.len() - 1];
        let per_wait =
            |f: fn(&Sample) -> usize| samples.iter().map(f).sum::<usize>() as f64 / runs as f64;
        let status = per_wait(|s| s.status_requests);
        let logs = per_wait(|s| s.log_requests);
        println!(
            "| {label:<15} | {name:<32} | {runs:>4} | {mean:>9.1} | {p50:>8.1} | {max:>8.1} | {status:>10.1} | {logs:>7.1} | {:>8.1} |",
            status + logs
        );
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .filter_map(|a| a.parse::<usize>().ok());
    let short_runs = args.next().unwrap_or(20).max(1);
    let long_runs = args.next().unwrap_or(8).max(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let deadline = Duration::from_secs(120);
        let strategies = [
            (
                "wait_task (50 ms ×1.5 → 1 s)",
                Strategy::WaitTask(WaitOptions::with_timeout(deadline)),
            ),
            (
                "wait_task_with (follows the log)",
                Strategy::WaitTaskFollow(WaitOptions::with_timeout(deadline)),
            ),
            ("fixed 1 s poll", Strategy::FixedOneSecond),
        ];
        println!(
            "wait_task notice latency (task end → wait returns) and requests per wait (status polls, log reads)"
        );
        println!();
        println!(
            "| task            | strategy                         | runs | mean (ms) | p50 (ms) | max (ms) | status/wait | log/wait | all/wait |"
        );
        println!(
            "|-----------------|----------------------------------|------|-----------|----------|----------|-------------|----------|----------|"
        );
        scenario(
            "short 0.2–0.3 s",
            Duration::from_millis(200),
            Duration::from_millis(100),
            short_runs,
            &strategies,
        )
        .await?;
        scenario(
            "long 3–4 s",
            Duration::from_secs(3),
            Duration::from_secs(1),
            long_runs,
            &strategies,
        )
        .await?;
        anyhow::Ok(())
    })
}
