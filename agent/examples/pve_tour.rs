//! A walk through the `felhom_agent::pve` library: connect, read, start operations, follow
//! a task's log while waiting, read a failed task's reasons, list the node's tasks.
//!
//! ```sh
//! cargo run -p felhom-agent --example pve_tour                 # against an in-process simulator
//! cargo run -p felhom-agent --example pve_tour -- /etc/felhom/agent.json   # read-only, a real node
//! ```
//!
//! With a config file it only reads (version, containers, storages, recent tasks): it
//! changes nothing on a real node.

use std::time::Duration;

use felhom_agent::config::AgentConfig;
use felhom_agent::pve::{
    ApiSettings, BackupMode, BackupRequest, BackupStarted, NodeName, PveClient, PveError,
    StorageId, TaskFilter, TaskObserver, TlsMode, TokenId, Upid, WaitOptions,
};
use felhom_agent::secret::Secret;
use felhom_protocol::Vmid;
use felhom_tests::pve_sim::{PveSim, SimOptions};

/// Prints each new log line with the time since the wait began.
struct PrintLines;

impl TaskObserver for PrintLines {
    fn on_lines(&mut self, upid: &Upid, lines: &[String], elapsed: Duration) {
        for l in lines {
            println!(
                "    [{:>5.1}s] {} {}: {l}",
                elapsed.as_secs_f64(),
                upid.task_type(),
                upid.id()
            );
        }
    }
}

async fn reads(pve: &PveClient) -> Result<(), PveError> {
    let v = pve.version().await?;
    println!("Proxmox VE {} on node {}", v.version, pve.node());
    for c in pve.containers().await? {
        println!(
            "  CT {} {:?} {}",
            c.vmid,
            c.status,
            c.name.unwrap_or_default()
        );
    }
    for s in pve.storages().await? {
        println!(
            "  storage {} ({}) content {}",
            s.storage, s.storage_type, s.content
        );
    }
    for t in pve
        .tasks(&TaskFilter {
            limit: Some(5),
            ..TaskFilter::default()
        })
        .await?
    {
        println!(
            "  task {} {} {}",
            t.task_type,
            t.id,
            if t.is_running() {
                "running"
            } else {
                t.status.as_deref().unwrap_or("?")
            }
        );
    }
    Ok(())
}

async fn operations(pve: &PveClient, sim: &PveSim) -> anyhow::Result<()> {
    let opts = || WaitOptions::with_timeout(Duration::from_secs(120));
    let backup = BackupRequest {
        vmid: Vmid::new(100)?,
        mode: BackupMode::Snapshot,
        storage: StorageId::new("local")?,
        notes_template: Some("{{guestname}}".into()),
    };

    println!("\nbackup of CT 100, following its log:");
    let BackupStarted::Task(upid) = pve.vzdump(&backup).await? else {
        anyhow::bail!("no backup task started");
    };
    let done = pve.wait_task_with(&upid, opts(), &mut PrintLines).await?;
    println!("  → {}", done.exitstatus);

    println!("\nthe same backup while CT 100 is locked:");
    sim.state().set_lock(100, Some("snapshot"));
    let BackupStarted::Task(upid) = pve.vzdump(&backup).await? else {
        anyhow::bail!("no backup task started");
    };
    match pve.wait_task(&upid, opts()).await {
        Err(PveError::Task(f)) => {
            println!("  → failed: {}", f.exitstatus);
            for r in &f.reasons {
                println!("    because: {r}");
            }
        }
        other => anyhow::bail!("expected a failed task, got {other:?}"),
    }
    sim.state().set_lock(100, None);
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if let Some(path) = std::env::args_os().nth(1) {
        let config = AgentConfig::load(Some(std::path::Path::new(&path)))?;
        let pve = PveClient::new(&config.api_settings()?)?;
        reads(&pve).await?;
        return Ok(());
    }
    let sim = PveSim::start(SimOptions {
        task_duration: Duration::from_millis(1500),
        ..SimOptions::default()
    })
    .await?;
    let pve = PveClient::new(&ApiSettings {
        api_url: sim.base_url().parse()?,
        node: NodeName::new(sim.node())?,
        token_id: TokenId::new(sim.token_id())?,
        token_secret: Secret::new(sim.token_secret())
            .ok_or_else(|| anyhow::anyhow!("empty simulator secret"))?,
        tls: TlsMode::Pinned(sim.fingerprint().parse()?),
        tls_server_name: None,
        max_response_bytes: felhom_agent::pve::DEFAULT_MAX_RESPONSE_BYTES,
        request_timeout: Duration::from_secs(30),
    })?;
    reads(&pve).await?;
    operations(&pve, &sim).await?;
    println!("\nrecent tasks after the tour:");
    reads(&pve).await?;
    Ok(())
}
