//! Agent → helper round trips, against the floor of the transport.
//!
//! Run: `cargo bench -p felhom-tests --bench helper_rpc`
//!
//! Prints one table with three rows:
//! 1. **floor** — a 64-byte ping-pong between two processes over an AF_UNIX stream socket
//!    (this bench re-executes itself as the echo process);
//! 2. **hello, warm** — the agent's `HelperClient::ping` (tarpc `hello`, bincode framing) to the
//!    real `felhom-helper` in development mode (`--listen`) on an open connection;
//! 3. **first call, socket-activated** — `systemd-socket-activate` holds the socket, and the
//!    agent's first call (connect + `hello` handshake + `hello`) has to start the helper; a
//!    fresh activation for every iteration. Skipped with a reason when
//!    `systemd-socket-activate` is not installed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use felhom_agent::helper_client::HelperClient;
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
    println!("{name:<42} {n:>6} {mean:>11.1} {p50:>11.1} {p99:>11.1}");
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

async fn warm_hello(iterations: usize) -> Vec<Duration> {
    let harness = HelperHarness::start_dev(HelperHarnessOptions::default()).unwrap();
    let client = HelperClient::new(harness.socket_path());
    for _ in 0..200 {
        client.ping().await.unwrap();
    }
    let mut out = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let t = Instant::now();
        client.ping().await.unwrap();
        out.push(t.elapsed());
    }
    out
}

async fn activated_first_call(iterations: usize) -> Option<Vec<Duration>> {
    let mut out = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        // Prepares a fresh directory and config, and waits until systemd-socket-activate
        // has bound the socket; the helper itself starts only on the first connection.
        let harness = HelperHarness::start(HelperHarnessOptions::default());
        let harness = match harness {
            Ok(h) => h,
            Err(e) => {
                println!("(socket-activated row skipped: {e})");
                return None;
            }
        };
        let client = HelperClient::new(harness.socket_path());
        let t = Instant::now();
        client.ping().await.unwrap();
        out.push(t.elapsed());
    }
    Some(out)
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
        (20_000, 5_000, 30)
    };
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    let floor = floor(dir.path(), n_floor);
    let warm = runtime.block_on(warm_hello(n_warm));
    let cold = runtime.block_on(activated_first_call(n_cold));

    println!();
    println!(
        "{:<42} {:>6} {:>11} {:>11} {:>11}",
        "round trip", "n", "mean µs", "p50 µs", "p99 µs"
    );
    row("floor: 64 B ping-pong over AF_UNIX", floor);
    row("agent → helper hello (warm connection)", warm);
    if let Some(cold) = cold {
        row("first call, socket-activates the helper", cold);
    }
}
