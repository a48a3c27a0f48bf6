//! Peak RSS of the real `felhom-agent` when the API answers with a gigabyte body sent as fast
//! as it can be read, against the same command answered with a small body (the reference,
//! measured in the same run). The response cap (`max_response_bytes`, default 32 MiB) must
//! keep the gigabyte case near the reference; the goal is under 64 MiB.
//!
//! `cargo bench -p felhom-tests --bench hostile_body_rss`

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use felhom_tests::bins;
use felhom_tests::hostile_server::{HostileServer, Misbehaviour};

const GIB: u64 = 1 << 30;

/// Runs `felhom-agent guests` with `config` and returns (exit code, peak RSS in KiB, seconds).
fn run_agent_rss(config: &Path) -> (i32, i64, f64) {
    let started = Instant::now();
    // Reaped with wait4 below (for its rusage), not through `Child::wait`.
    #[allow(clippy::zombie_processes)]
    let child = Command::new(bins::agent())
        .arg("--config")
        .arg(config)
        .arg("guests")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn felhom-agent");
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: an all-zero `rusage` is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our own child, not yet waited for (the `Child` is never waited on);
    // `status` and `usage` are valid, writable, and live for the call.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(r, pid, "wait4: {}", std::io::Error::last_os_error());
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    (code, usage.ru_maxrss, started.elapsed().as_secs_f64())
}

fn write_config(dir: &Path, server: &HostileServer) -> std::path::PathBuf {
    let secret = dir.join("secret");
    std::fs::write(&secret, "0b4cf2e1-aaaa-bbbb-cccc-123456789abc").unwrap();
    let config = dir.join("agent.json");
    std::fs::write(
        &config,
        serde_json::json!({
            "api_url": server.base_url(),
            "node": "pve",
            "token_id": "felhom@pve!agent",
            "token_secret_file": secret,
            "tls_fingerprint": server.fingerprint(),
            "request_timeout_secs": 30,
        })
        .to_string(),
    )
    .unwrap();
    config
}

fn main() {
    // `cargo bench` passes `--bench`; a filter other than our name means "not this one".
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if args
        .iter()
        .any(|a| !a.starts_with('-') && !"hostile_body_rss".contains(a.as_str()))
    {
        return;
    }
    bins::agent();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();

    let _guard = rt.enter();
    let small = rt
        .block_on(HostileServer::start(Misbehaviour::Respond {
            status: 200,
            reason: b"OK".to_vec(),
            body: br#"{"data":[]}"#.to_vec(),
        }))
        .unwrap();
    let small_dir = dir.path().join("small");
    std::fs::create_dir(&small_dir).unwrap();
    let (code, ref_kib, ref_s) = run_agent_rss(&write_config(&small_dir, &small));
    assert_eq!(code, 0, "the reference run failed");

    let huge = rt
        .block_on(HostileServer::start(Misbehaviour::HugeBody {
            bytes: GIB,
            announce: false,
        }))
        .unwrap();
    let huge_dir = dir.path().join("huge");
    std::fs::create_dir(&huge_dir).unwrap();
    let (code, huge_kib, huge_s) = run_agent_rss(&write_config(&huge_dir, &huge));
    assert_ne!(code, 0, "a gigabyte body was accepted");

    let mib = |kib: i64| kib as f64 / 1024.0;
    println!("felhom-agent guests, peak RSS (ru_maxrss):");
    println!(
        "  reference, 11-byte body:            {:7.1} MiB  ({ref_s:.2} s)",
        mib(ref_kib)
    );
    println!(
        "  1 GiB chunked body, 32 MiB cap:     {:7.1} MiB  ({huge_s:.2} s, refused)",
        mib(huge_kib)
    );
    println!(
        "  ratio: {:.2}x the reference; goal under 64 MiB: {}",
        huge_kib as f64 / ref_kib as f64,
        if huge_kib < 64 * 1024 {
            "met"
        } else {
            "NOT met"
        }
    );
}
