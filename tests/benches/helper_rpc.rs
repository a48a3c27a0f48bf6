//! Agent → helper round trips, against the floor of the transport.
//!
//! Run: `cargo bench -p felhom-tests --bench helper_rpc`
//!
//! Prints one table, then the ratios of the real helper to the design's floor on their own
//! lines (`ratio warm: …`, `ratio cold: …`, medians), all measured in the same run:
//! 1. **floor** — a 64-byte ping-pong between two processes over an AF_UNIX stream socket
//!    (this bench re-executes itself as the echo process);
//! 2. **reference, warm** — a plain tarpc client's `hello` to `felhom-ref-helper` (a minimal
//!    server of the same service, transport and crate versions, current-thread runtime; see
//!    `tests/src/bin/felhom-ref-helper.rs`) on an open connection;
//! 3. **helper, warm** — the agent's `HelperClient::ping` (tarpc `hello`) to the real
//!    `felhom-helper` in development mode (`--listen`) on an open connection;
//! 4. **reference, cold** — `systemd-socket-activate` holds the socket and execs the reference
//!    server on the first connection; connect and two `hello` round trips (what the agent
//!    makes on a new connection: its handshake, then the call);
//! 5. **helper, cold** — the same with the real helper and the agent's first `ping` (connect,
//!    handshake `hello`, `hello`); a fresh activation for every iteration, in one directory
//!    (as the reference's). Both cold rows connect 20 ms after their socket appeared, and
//!    take turns, one iteration each.
//!
//! The cold rows are skipped with a reason when `systemd-socket-activate` is not installed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use felhom_agent::helper_client::HelperClient;
use felhom_protocol::PROTOCOL_VERSION;
use felhom_tests::helper_harness::{HelperHarness, HelperHarnessOptions};

const ECHO_ENV: &str = "FELHOM_BENCH_ECHO_SOCKET";

/// Mean, median and 99th percentile of a sample, in microseconds.
fn stats(mut v: Vec<Duration>) -> (f64, f64, f64, usize) {
    v.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let n = v.len();
    let mean = v.iter().map(|d| us(*d)).sum::<f64>() / n as f64;
    let p50 = us(v[n / 2]);
    let p99 = us(v[((n * 99) / 100).min(n - 1)]);
    (mean, p50, p99, n)
}

fn row(name: &str, sample: Vec<Duration>) {
    let (mean, p50, p99, n) = stats(sample);
    println!("{name:<46} {n:>6} {mean:>11.1} {p50:>11.1} {p99:>11.1}");
}

/// The echo side of the floor measurement: connect, then echo 64-byte messages until EOF.
fn echo(path: &str) {
    let mut s = UnixStream::connect(path).unwrap();
    let mut buf = [0u8; 64];
    while s.read_exact(&mut buf).is_ok() {
        if s.write_all(&buf).is_err() {
            break;
        }
    }
}

fn floor(dir: &Path, iterations: usize) -> Vec<Duration> {
    let path = dir.join("echo.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env(ECHO_ENV, &path)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let (mut s, _) = listener.accept().unwrap();
    let msg = [0x5au8; 64];
    let mut buf = [0u8; 64];
    for _ in 0..1000 {
        s.write_all(&msg).unwrap();
        s.read_exact(&mut buf).unwrap();
    }
    let mut out = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let t = Instant::now();
        s.write_all(&msg).unwrap();
        s.read_exact(&mut buf).unwrap();
        out.push(t.elapsed());
    }
    drop(s);
    child.wait().unwrap();
    out
}

const REF: &str = env!("CARGO_BIN_EXE_felhom-ref-helper");
const ACTIVATE: &str = "/usr/bin/systemd-socket-activate";

/// How long both cold rows wait, once the socket exists, before they connect: the two
/// launchers poll for the socket at different intervals, and on a VM how long the CPUs have
/// been idle shows in how fast the exec'd server runs.
const SETTLE: Duration = Duration::from_millis(20);

/// A plain tarpc client of the helper service on `path`.
async fn raw_client(path: &Path) -> felhom_protocol::HelperClient {
    // The path appears at bind(), an instant before listen(): retry a refused connect.
    let until = Instant::now() + Duration::from_secs(5);
    let stream = loop {
        match tokio::net::UnixStream::connect(path).await {
            Err(e)
                if e.kind() == std::io::ErrorKind::ConnectionRefused && Instant::now() < until =>
            {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            other => break other.unwrap(),
        }
    };
    felhom_protocol::HelperClient::new(
        tarpc::client::Config::default(),
        felhom_protocol::transport::client_transport(stream),
    )
    .spawn()
}

fn ctx() -> tarpc::context::Context {
    let mut c = tarpc::context::current();
    c.deadline = Instant::now() + Duration::from_secs(5);
    c
}

/// Starts `cmd` and waits for `socket` to appear; the child is killed by the guard.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(mut cmd: Command, socket: &Path) -> Server {
    let _ = std::fs::remove_file(socket);
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_PID")
        .spawn()
        .unwrap();
    let server = Server(child);
    let until = Instant::now() + Duration::from_secs(10);
    while !socket.exists() {
        assert!(
            Instant::now() < until,
            "{} did not appear",
            socket.display()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    server
}

async fn reference_warm(dir: &Path, iterations: usize) -> Vec<Duration> {
    let sock = dir.join("ref-warm.sock");
    let mut cmd = Command::new(REF);
    cmd.arg("--listen").arg(&sock);
    let _server = serve(cmd, &sock);
    let client = raw_client(&sock).await;
    for _ in 0..200 {
        client
            .hello(ctx(), PROTOCOL_VERSION)
            .await
            .unwrap()
            .unwrap();
    }
    let mut out = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let t = Instant::now();
        client
            .hello(ctx(), PROTOCOL_VERSION)
            .await
            .unwrap()
            .unwrap();
        out.push(t.elapsed());
    }
    out
}

async fn helper_warm(iterations: usize) -> Vec<Duration> {
    let harness = HelperHarness::start_dev(HelperHarnessOptions::default()).unwrap();
    let client = HelperClient::new(harness.socket_path());
    for _ in 0..200 {
        if let Err(e) = client.ping().await {
            panic!("{e}\n{}", harness.log());
        }
    }
    let mut out = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let t = Instant::now();
        client.ping().await.unwrap();
        out.push(t.elapsed());
    }
    out
}

/// Connect and two `hello` round trips to a reference server that
/// `systemd-socket-activate` execs on the first connection.
async fn reference_cold_once(dir: &Path, i: usize) -> Duration {
    let sock = dir.join(format!("ref-cold-{i}.sock"));
    let mut cmd = Command::new(ACTIVATE);
    cmd.arg("-l").arg(&sock).arg(REF);
    let _server = serve(cmd, &sock);
    std::thread::sleep(SETTLE);
    let t = Instant::now();
    let client = raw_client(&sock).await;
    client
        .hello(ctx(), PROTOCOL_VERSION)
        .await
        .unwrap()
        .unwrap();
    client
        .hello(ctx(), PROTOCOL_VERSION)
        .await
        .unwrap()
        .unwrap();
    t.elapsed()
}

/// The agent's first `ping` to a freshly socket-activated helper (relaunched in the
/// harness's directory), which is then ended.
async fn helper_cold_once(harness: &mut HelperHarness) -> anyhow::Result<Duration> {
    // Waits until systemd-socket-activate has bound the socket; the helper itself starts
    // only on the first connection.
    harness.launch_activated()?;
    let client = HelperClient::new(harness.socket_path());
    std::thread::sleep(SETTLE);
    let t = Instant::now();
    client.ping().await?;
    let elapsed = t.elapsed();
    harness.kill_helper();
    Ok(elapsed)
}

/// Both cold rows, one iteration of each in turn, so that the VM's drift during the run
/// falls on both alike. `None` (with the reason printed) when they cannot run here.
async fn cold(dir: &Path, iterations: usize) -> Option<(Vec<Duration>, Vec<Duration>)> {
    if !Path::new(ACTIVATE).exists() {
        println!("(cold rows skipped: {ACTIVATE} is not installed)");
        return None;
    }
    // One directory and config for all iterations, as the reference keeps its directory: a
    // fresh tree per iteration would put its writes and removal next to what is measured.
    let mut harness = match HelperHarness::prepare(&HelperHarnessOptions::default()) {
        Ok(h) => h,
        Err(e) => {
            println!("(cold rows skipped: {e})");
            return None;
        }
    };
    let mut reference = Vec::with_capacity(iterations);
    let mut helper = Vec::with_capacity(iterations);
    for i in 0..iterations {
        reference.push(reference_cold_once(dir, i).await);
        match helper_cold_once(&mut harness).await {
            Ok(d) => helper.push(d),
            Err(e) => panic!("cold ping failed: {e}\n{}", harness.log()),
        }
    }
    Some((reference, helper))
}

fn p50(v: &[Duration]) -> f64 {
    let mut v = v.to_vec();
    v.sort();
    v[v.len() / 2].as_secs_f64()
}

fn main() {
    if let Ok(path) = std::env::var(ECHO_ENV) {
        echo(&path);
        return;
    }
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this once with few
    // iterations.
    let quick = !std::env::args().any(|a| a == "--bench");
    let (n_floor, n_warm, n_cold) = if quick {
        (100, 50, 2)
    } else {
        (20_000, 5_000, 60)
    };
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    let floor = floor(dir.path(), n_floor);
    let ref_warm = runtime.block_on(reference_warm(dir.path(), n_warm));
    let warm = runtime.block_on(helper_warm(n_warm));
    let cold = runtime.block_on(cold(dir.path(), n_cold));

    println!();
    println!(
        "{:<46} {:>6} {:>11} {:>11} {:>11}",
        "round trip", "n", "mean µs", "p50 µs", "p99 µs"
    );
    let ratio_warm = p50(&warm) / p50(&ref_warm);
    row("floor: 64 B ping-pong over AF_UNIX", floor);
    row("reference server: hello (warm connection)", ref_warm);
    row("felhom-helper: agent hello (warm connection)", warm);
    let ratio_cold = cold.map(|(r, c)| {
        let ratio = p50(&c) / p50(&r);
        row("reference server: socket-activated, 2 calls", r);
        row("felhom-helper: socket-activated first ping", c);
        ratio
    });
    println!();
    println!("ratio warm: {ratio_warm:.2}");
    if let Some(r) = ratio_cold {
        println!("ratio cold: {r:.2}");
    }
}
