//! The audit cannot be drowned, and the helper cannot be exhausted (issue 20, items 4 and 5):
//! a flood of cheap calls is aggregated while every call that changes the host keeps its own
//! record, and a burst of connections past `max_connections` is closed at accept with one
//! aggregated record, after which the helper serves normally. Runs the real helper under
//! `systemd-socket-activate` with fake tools and a fake sysfs.

// Test code: a panic is a failed test (helpers outside #[test] fns included).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;
use std::time::{Duration, Instant};

use felhom_protocol::*;
use felhom_tests::helper_harness::{HelperHarness, HelperHarnessOptions};
use tarpc::context::{self, Context};

fn ctx(secs: u64) -> Context {
    let mut c = context::current();
    c.deadline = Instant::now() + Duration::from_secs(secs);
    c
}

fn ctx_ms(ms: u64) -> Context {
    let mut c = context::current();
    c.deadline = Instant::now() + Duration::from_millis(ms);
    c
}

/// Prepares a helper with `key` set to `value` in its configuration, and starts it.
fn start_with(key: &str, value: serde_json::Value) -> HelperHarness {
    let mut h = HelperHarness::prepare(&HelperHarnessOptions::default()).unwrap();
    let text = std::fs::read_to_string(h.config_path()).unwrap();
    let mut cfg: serde_json::Value = serde_json::from_str(&text).unwrap();
    cfg[key] = value;
    std::fs::write(h.config_path(), serde_json::to_string(&cfg).unwrap()).unwrap();
    h.launch_activated().unwrap();
    h
}

async fn client(h: &HelperHarness) -> anyhow::Result<HelperClient> {
    let stream = tokio::net::UnixStream::connect(h.socket_path()).await?;
    Ok(HelperClient::new(
        tarpc::client::Config::default(),
        felhom_protocol::transport::client_transport(stream),
    )
    .spawn())
}

/// SIGTERM, and the log once the helper has exited (it writes its summaries at exit).
fn stop_and_log(mut h: HelperHarness) -> String {
    h.terminate();
    assert!(
        h.wait_exit(Duration::from_secs(30)).is_some(),
        "the helper did not exit at SIGTERM"
    );
    h.log()
}

/// A flood of every cheap call (and of calls that time out at once) from several
/// connections, interleaved with 20 refused `usb_unmount` calls: the cheap calls leave a
/// handful of lines (the first of each kind, then one summary each), and each of the 20
/// mutating calls has its own record.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cheap_calls_are_aggregated_and_every_mutating_call_is_recorded() {
    let h = HelperHarness::start(HelperHarnessOptions::default()).unwrap();
    h.add_fake_disk("sda", "{}", 0);
    h.add_fake_hwmon("hwmon0", "coretemp", &[("temp1_input", "42000")]);
    let before = h.log().lines().count();
    let mut tasks = Vec::new();
    for t in 0..4u64 {
        let c = client(&h).await.unwrap();
        tasks.push(tokio::spawn(async move {
            let until = Instant::now() + Duration::from_secs(3);
            let mut calls = 0u64;
            while Instant::now() < until {
                let _ = c.hello(ctx(5), PROTOCOL_VERSION).await;
                let _ = c.usb_list(ctx(5)).await;
                let _ = c.smart_scan(ctx(5)).await;
                let _ = c.sensors_read(ctx(5)).await;
                let _ = c.smart_read(ctx(5), DiskName::new("sdz").unwrap()).await;
                // Out of time before it starts.
                let _ = c.usb_list(ctx_ms(1 + t)).await;
                calls += 6;
            }
            calls
        }));
    }
    let c = client(&h).await.unwrap();
    for i in 0..20 {
        let name = MountName::new(&format!("gone-{i}")).unwrap();
        let r = c.usb_unmount(ctx(10), name).await.unwrap();
        assert!(
            r.is_err(),
            "unmounting what was never mounted must be refused"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut calls = 0;
    for t in tasks {
        calls += t.await.unwrap();
    }
    assert!(calls > 500, "the flood must be a flood: {calls} calls");
    let log = stop_and_log(h);
    let lines: Vec<&str> = log.lines().skip(before).collect();
    eprintln!("{calls} cheap calls left {} log lines", lines.len());
    for i in 0..20 {
        let needle = format!("MountName(\"gone-{i}\")");
        let n = lines
            .iter()
            .filter(|l| l.contains("op=\"usb_unmount\"") && l.contains(&needle))
            .count();
        assert_eq!(n, 1, "usb_unmount gone-{i} must have one record:\n{log}");
    }
    assert!(
        lines.len() < 60,
        "cheap calls must be aggregated, got {} lines:\n{}",
        lines.len(),
        lines.join("\n")
    );
    // The counts are in summaries, and tarpc's own lines are not there.
    for op in ["usb_list", "smart_scan", "sensors_read"] {
        assert!(
            lines
                .iter()
                .any(|l| l.contains(&format!("more {op} calls (ok) from uid"))),
            "no summary of {op}:\n{log}"
        );
    }
    assert!(!log.contains("DeadlineExceeded"), "{log}");
}

/// Raises the soft limit of open files to at least `n`, if the hard limit allows it.
fn raise_nofile(n: u64) -> bool {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return false;
    }
    if lim.rlim_cur >= n {
        return true;
    }
    if lim.rlim_max < n {
        return false;
    }
    lim.rlim_cur = n;
    // SAFETY: setrlimit only reads the struct it is given.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 }
}

/// 10,000 connections held open at once: only `max_connections` of them are served, the rest
/// are closed at accept with one aggregated record, and the helper serves normally after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_connections_is_capped_and_the_helper_serves_after_it() {
    const BURST: usize = 10_000;
    const CAP: usize = 8;
    if !raise_nofile(BURST as u64 + 512) {
        eprintln!("skipping: the open-files limit cannot be raised to hold {BURST} connections");
        return;
    }
    let h = start_with("max_connections", serde_json::json!(CAP));
    let socket = h.socket_path().to_path_buf();
    let held = tokio::task::spawn_blocking(move || {
        let mut held = Vec::with_capacity(BURST);
        for _ in 0..BURST {
            held.push(std::os::unix::net::UnixStream::connect(&socket).unwrap());
        }
        held
    })
    .await
    .unwrap();
    // Give the helper time to take every connection off the backlog.
    let until = Instant::now() + Duration::from_secs(60);
    let open = loop {
        let open = held
            .iter()
            .filter(|s| {
                let mut s: &std::os::unix::net::UnixStream = s;
                s.set_nonblocking(true).unwrap();
                let mut b = [0u8; 1];
                matches!(s.read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
            })
            .count();
        if open <= CAP || Instant::now() > until {
            break open;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(open, CAP, "{open} of {BURST} connections are being served");
    // While the cap is taken, a new connection is closed at once.
    let c = client(&h).await.unwrap();
    assert!(c.hello(ctx(5), PROTOCOL_VERSION).await.is_err());
    drop(held);
    // Served normally once they are gone.
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let c = client(&h).await.unwrap();
        match c.hello(ctx(5), PROTOCOL_VERSION).await {
            Ok(Ok(r)) => {
                assert_eq!(r.protocol_version, PROTOCOL_VERSION);
                break;
            }
            other => assert!(
                Instant::now() < until,
                "no service after the burst: {other:?}\n{}",
                h.log()
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = stop_and_log(h);
    let capped: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("closed a connection at accept") || l.contains("closed at accept"))
        .collect();
    // A record of the first in each window, one summary of the rest: together they count
    // every connection closed (the burst's and the probe's above).
    let refused = BURST - CAP + 1;
    let firsts = capped.iter().filter(|l| l.contains("over_cap=1")).count();
    let summed: usize = capped
        .iter()
        .filter_map(|l| {
            let head = l.split(" more connections closed").next()?;
            head.rsplit(' ').next()?.parse::<usize>().ok()
        })
        .sum();
    assert!(firsts >= 1 && capped.len() <= 6, "{}", capped.join("\n"));
    assert_eq!(firsts + summed, refused, "{}", capped.join("\n"));
    assert!(
        log.lines().count() < 40,
        "the burst must not flood the log:\n{log}"
    );
}
