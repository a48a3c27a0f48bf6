//! Agent → helper round trips, against the floor of the transport.
//!
//! Run: `cargo bench -p felhom-tests --bench helper_rpc`
//!
//! Prints one table, then the ratios of the real helper to the reference server on their own
//! lines (`ratio warm: …`, `ratio cold: …`), all measured in the same run. The reference and
//! the helper are measured in **alternating rounds** (each round measures both, the order
//! switching every round), and the ratio reported is the **median of the per-round ratios**
//! (helper p50 / reference p50 in that round), with their min, quartiles and max: other work
//! on the machine (a build beside the bench) then lands on both sides of a round alike,
//! instead of on whichever phase it happened to overlap. The rows:
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
//! Warm: 20 rounds of 250 calls per side (both servers stay up, one open connection each).
//! Cold: 12 rounds of 5 activations per side.
//!
//! The cold rows are skipped with a reason when `systemd-socket-activate` is not installed.

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

/// `iterations` timed calls of `call`, after a few untimed ones.
async fn timed<F, Fut>(iterations: usize, mut call: F) -> Vec<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for _ in 0..20 {
        call().await;
    }
    let mut out = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let t = Instant::now();
        call().await;
        out.push(t.elapsed());
    }
    out
}

/// Warm rows: the reference server and the helper both stay up with one open connection
/// each, and are measured in alternating rounds. Returns all samples of each side and the
/// per-round ratios.
async fn warm(
    dir: &Path,
    rounds: usize,
    per_round: usize,
) -> (Vec<Duration>, Vec<Duration>, Vec<f64>) {
    let sock = dir.join("ref-warm.sock");
    let mut cmd = Command::new(REF);
    cmd.arg("--listen").arg(&sock);
    let _server = serve(cmd, &sock);
    let reference = raw_client(&sock).await;
    let harness = HelperHarness::start_dev(HelperHarnessOptions::default()).unwrap();
    let helper = HelperClient::new(harness.socket_path());
    for _ in 0..200 {
        reference
            .hello(ctx(), PROTOCOL_VERSION)
            .await
            .unwrap()
            .unwrap();
        if let Err(e) = helper.ping().await {
            panic!("{e}\n{}", harness.log());
        }
    }
    let (mut all_ref, mut all_helper, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let measure_ref = || {
            timed(per_round, || async {
                reference
                    .hello(ctx(), PROTOCOL_VERSION)
                    .await
                    .unwrap()
                    .unwrap();
            })
        };
        let measure_helper = || {
            timed(per_round, || async {
                helper.ping().await.unwrap();
            })
        };
        let (r, h) = if round % 2 == 0 {
            let r = measure_ref().await;
            (r, measure_helper().await)
        } else {
            let h = measure_helper().await;
            (measure_ref().await, h)
        };
        ratios.push(p50(&h) / p50(&r));
        all_ref.extend(r);
        all_helper.extend(h);
    }
    (all_ref, all_helper, ratios)
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

/// Both cold rows, one iteration of each in turn (the order switching every round), so that
/// the VM's drift during the run falls on both alike; all samples of each side and the
/// per-round ratios. `None` (with the reason printed) when they cannot run here.
async fn cold(
    dir: &Path,
    rounds: usize,
    per_round: usize,
) -> Option<(Vec<Duration>, Vec<Duration>, Vec<f64>)> {
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
    let (mut reference, mut helper, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let mut i = 0;
    for round in 0..rounds {
        let (mut r, mut h) = (Vec::new(), Vec::new());
        for k in 0..per_round {
            i += 1;
            let helper_first = (round + k) % 2 == 1;
            if helper_first {
                h.push(cold_helper(&mut harness).await);
            }
            r.push(reference_cold_once(dir, i).await);
            if !helper_first {
                h.push(cold_helper(&mut harness).await);
            }
        }
        ratios.push(p50(&h) / p50(&r));
        reference.extend(r);
        helper.extend(h);
    }
    Some((reference, helper, ratios))
}

async fn cold_helper(harness: &mut HelperHarness) -> Duration {
    match helper_cold_once(harness).await {
        Ok(d) => d,
        Err(e) => panic!("cold ping failed: {e}\n{}", harness.log()),
    }
}

/// `ratio NAME: median (min …, quartiles … – …, max …, N rounds)` of per-round ratios.
fn ratio_line(name: &str, ratios: &[f64]) -> String {
    let mut v = ratios.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let q = |p: usize| v[((n - 1) * p) / 4];
    format!(
        "ratio {name}: {:.2} (median of {n} rounds; min {:.2}, IQR {:.2}–{:.2}, max {:.2})",
        q(2),
        v[0],
        q(1),
        q(3),
        v[n - 1]
    )
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
    // (floor iterations, warm rounds, warm calls per round and side, cold rounds, cold
    // activations per round and side)
    let (n_floor, warm_rounds, warm_per_round, cold_rounds, cold_per_round) = if quick {
        (100, 2, 25, 2, 1)
    } else {
        (20_000, 20, 250, 12, 5)
    };
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    let floor = floor(dir.path(), n_floor);
    let (ref_warm, warm, warm_ratios) =
        runtime.block_on(warm(dir.path(), warm_rounds, warm_per_round));
    let cold = runtime.block_on(cold(dir.path(), cold_rounds, cold_per_round));

    println!();
    println!(
        "{:<46} {:>6} {:>11} {:>11} {:>11}",
        "round trip", "n", "mean µs", "p50 µs", "p99 µs"
    );
    row("floor: 64 B ping-pong over AF_UNIX", floor);
    row("reference server: hello (warm connection)", ref_warm);
    row("felhom-helper: agent hello (warm connection)", warm);
    let cold_ratios = cold.map(|(r, c, ratios)| {
        row("reference server: socket-activated, 2 calls", r);
        row("felhom-helper: socket-activated first ping", c);
        ratios
    });
    println!();
    println!("{}", ratio_line("warm", &warm_ratios));
    if let Some(r) = cold_ratios {
        println!("{}", ratio_line("cold", &r));
    }
}
