//! Benchmark: how quickly `wait_task` notices that a task ended, and how many status
//! requests it spends, compared with fixed one-second polling (what bpg, proxmoxer,
//! go-proxmox and PDM do), against the in-process Proxmox simulator.
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
    ApiSettings, NodeName, PveClient, TaskState, TlsMode, TokenId, Upid, WaitOptions,
};
use felhom_agent::secret::Secret;
use felhom_protocol::Vmid;
use felhom_tests::pve_sim::{PveSim, SimOptions};

/// How the caller waits.
#[derive(Clone)]
enum Strategy {
    /// `PveClient::wait_task` with these options.
    WaitTask(WaitOptions),
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

struct Sample {
    latency: Duration,
    requests: usize,
}

async fn one_run(sim: &PveSim, client: &PveClient, strategy: &Strategy) -> anyhow::Result<Sample> {
    let vmid = Vmid::new(101)?;
    let state = sim.state();
    let before = state.count_requests("GET", "/tasks/");
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
        Strategy::FixedOneSecond => fixed_one_second(client, &upid).await?,
    }
    let returned = Instant::now();
    let ended = watcher.await?;
    let requests = state.count_requests("GET", "/tasks/") - before;
    // Put the container back for the next run (not measured).
    let stop = client.stop(vmid).await?;
    client.wait_task(&stop, WaitOptions::default()).await?;
    Ok(Sample {
        latency: returned.saturating_duration_since(ended),
        requests,
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
        let req = samples.iter().map(|s| s.requests).sum::<usize>() as f64 / runs as f64;
        println!(
            "| {label:<15} | {name:<28} | {runs:>4} | {mean:>9.1} | {p50:>8.1} | {max:>8.1} | {req:>12.1} |"
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
            ("fixed 1 s poll", Strategy::FixedOneSecond),
        ];
        println!("wait_task notice latency (task end → wait_task returns) and status requests per wait");
        println!();
        println!(
            "| task            | strategy                     | runs | mean (ms) | p50 (ms) | max (ms) | requests/wait |"
        );
        println!(
            "|-----------------|------------------------------|------|-----------|----------|----------|---------------|"
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
