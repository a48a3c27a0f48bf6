//! The Proxmox VE simulator as a standalone binary.
//!
//! Prints one JSON line (`base_url`, `fingerprint`, `token_id`, `node`, `ca_pem`) on stdout,
//! optionally writes an agent config (`--write-config DIR`), and serves until SIGTERM or
//! Ctrl-C.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use felhom_tests::pve_sim::{PveSim, SimOptions};

/// Command line of `felhom-pve-sim`.
#[derive(Debug, Parser)]
#[command(
    name = "felhom-pve-sim",
    about = "A simulated Proxmox VE API over HTTPS for tests"
)]
struct Args {
    /// How long asynchronous tasks run, in milliseconds.
    #[arg(long, default_value_t = 300)]
    task_ms: u64,
    /// Imitate the PVE 7 wire format (errors only in the reason phrase, string numbers).
    #[arg(long)]
    legacy_wire: bool,
    /// Port on 127.0.0.1 (0 = ephemeral).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Node name.
    #[arg(long, default_value = "pve")]
    node: String,
    /// Reported PVE version.
    #[arg(long)]
    pve_version: Option<String>,
    /// Delay before a 401 answer, in milliseconds (PVE: 3000).
    #[arg(long, default_value_t = 3000)]
    unauthorized_delay_ms: u64,
    /// Write DIR/agent.json, DIR/pve-token (mode 0600) and DIR/ca.pem for the agent.
    #[arg(long, value_name = "DIR")]
    write_config: Option<PathBuf>,
}

fn write_config(dir: &Path, sim: &PveSim) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let token_path = dir.join("pve-token");
    let _ = std::fs::remove_file(&token_path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&token_path)
        .with_context(|| format!("creating {}", token_path.display()))?;
    f.write_all(sim.token_secret().as_bytes())
        .with_context(|| format!("writing {}", token_path.display()))?;
    let token_abs = std::fs::canonicalize(&token_path).unwrap_or(token_path);
    let config = serde_json::json!({
        "api_url": sim.base_url(),
        "node": sim.node(),
        "token_id": sim.token_id(),
        "token_secret_file": token_abs,
        "tls_fingerprint": sim.fingerprint(),
    });
    // The CA too, for trying `tls_ca_file` instead of the pin (not referenced by agent.json).
    let ca_path = dir.join("ca.pem");
    std::fs::write(&ca_path, sim.ca_pem())
        .with_context(|| format!("writing {}", ca_path.display()))?;
    let cfg_path = dir.join("agent.json");
    std::fs::write(&cfg_path, format!("{config:#}\n"))
        .with_context(|| format!("writing {}", cfg_path.display()))?;
    Ok(())
}

async fn run(args: Args) -> anyhow::Result<()> {
    let mut opts = SimOptions {
        node: args.node,
        legacy_wire: args.legacy_wire,
        task_duration: Duration::from_millis(args.task_ms),
        unauthorized_delay: Duration::from_millis(args.unauthorized_delay_ms),
        ..SimOptions::default()
    };
    if let Some(v) = args.pve_version {
        opts.version = v;
    } else if args.legacy_wire {
        opts.version = "7.4-16".to_string();
    }
    let sim = PveSim::start_on(opts, args.port).await?;
    if let Some(dir) = &args.write_config {
        write_config(dir, &sim)?;
    }
    // Install the handler before announcing readiness, so a SIGTERM right after the line is
    // handled gracefully.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing SIGTERM handler")?;
    let line = serde_json::json!({
        "base_url": sim.base_url(),
        "fingerprint": sim.fingerprint(),
        "token_id": sim.token_id(),
        "node": sim.node(),
        "ca_pem": sim.ca_pem(),
    });
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").context("writing to stdout")?;
    out.flush().context("flushing stdout")?;
    drop(out);

    tokio::select! {
        _ = term.recv() => {}
        r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C")?,
    }
    drop(sim);
    Ok(())
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("felhom-pve-sim: cannot start runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("felhom-pve-sim: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
