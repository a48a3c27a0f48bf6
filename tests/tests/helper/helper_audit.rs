//! The audit cannot be drowned, and the helper cannot be exhausted (issue 20, items 4 and 5):
//! a flood of cheap calls is aggregated while every call that changes the host keeps its own
//! record, and a burst of connections past `max_connections` is closed at accept with one
//! aggregated record, after which the helper serves normally. Runs the real helper under
//! `systemd-socket-activate` with fake tools and a fake sysfs.

use std::io::Read;
use std::time::{Duration, Instant};

use felhom_protocol::*;
use felhom_tests::helper_harness::{HelperHarness, HelperHarnessOptions, ctx};
use tarpc::context::{self, Context};

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

/// Whether this test can run the helper in a mount namespace of its own (root, `unshare`,
/// `systemd-socket-activate`); else the reason.
fn namespace_tools() -> Result<(), String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("needs root for a mount namespace over /run".into());
    }
    for tool in ["/usr/bin/unshare", "/usr/bin/systemd-socket-activate"] {
        if !std::path::Path::new(tool).exists() {
            return Err(format!("{tool} is not installed"));
        }
    }
    Ok(())
}

/// The real helper, believing its stderr is the journal stream (`JOURNAL_STREAM` names its
/// log file), sends to a journal socket that nobody reads and whose queue is full (bound over
/// `/run/systemd/journal/socket` in a mount namespace of its own). The flood client's 1,100
/// refused `usb_unmount` calls and its cheap calls from two connections' worth of workers all
/// get their answers; every mutating record is either in the journal or, dropped, on stderr;
/// and once the journal reads again, an entry says how many were dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_that_never_reads_does_not_stall_the_helper() {
    if let Err(why) = namespace_tools() {
        eprintln!("skipping: {why}");
        return;
    }
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::net::UnixDatagram;
    const MUTATING: usize = 1100;
    let h = HelperHarness::prepare(&HelperHarnessOptions::default()).unwrap();
    let jsock = h.dir().join("journal.sock");
    let journal = UnixDatagram::bind(&jsock).unwrap();
    let filler = UnixDatagram::unbound().unwrap();
    filler.set_nonblocking(true).unwrap();
    let mut filled = 0usize;
    while filler.send_to(b"FILL=1\n", &jsock).is_ok() {
        filled += 1;
    }
    let log_path = h.dir().join("helper.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let meta = log.metadata().unwrap();
    let mut cmd = std::process::Command::new("/usr/bin/unshare");
    cmd.args(["-m", "--propagation", "private", "--", "/bin/sh", "-c"])
        .arg(
            "mount -t tmpfs tmpfs /run && mkdir -p /run/systemd/journal && \
             : > /run/systemd/journal/socket && mount --bind \"$1\" /run/systemd/journal/socket \
             && exec /usr/bin/systemd-socket-activate -E \"JOURNAL_STREAM=$5\" -l \"$2\" \"$3\" \
             --config \"$4\"",
        )
        .arg("sh")
        .arg(&jsock)
        .arg(h.socket_path())
        .arg(felhom_tests::bins::helper())
        .arg(h.config_path())
        // systemd-socket-activate passes only what -E names to the helper.
        .arg(format!("{}:{}", meta.dev(), meta.ino()))
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_PID")
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    let mut launcher = cmd.spawn().unwrap();
    let until = Instant::now() + Duration::from_secs(30);
    while !h.socket_path().exists() {
        assert!(Instant::now() < until, "no socket: {}", h.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    let flood = env!("CARGO_BIN_EXE_felhom-flood");
    let started = Instant::now();
    let out = tokio::task::spawn_blocking({
        let socket = h.socket_path().to_path_buf();
        move || {
            std::process::Command::new(flood)
                .arg(&socket)
                .args(["--seconds", "5", "--mutating", &MUTATING.to_string()])
                .args(["--tag", "stall"])
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let took = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("flood took {took:?}: {stdout}");
    assert!(
        out.status.success(),
        "calls were not answered while the journal stalled: {stdout}{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        h.log()
    );
    // The journal reads again: take everything, until it has been quiet for a while.
    journal
        .set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let (mut in_journal, mut dropped, mut fill_seen) = (0usize, 0u64, 0usize);
    while let Ok(n) = journal.recv(&mut buf) {
        let text = String::from_utf8_lossy(&buf[..n]);
        if text.starts_with("FILL=") {
            fill_seen += 1;
        } else if text.contains("FELHOM_OP=usb_unmount\n") && text.contains("stall-") {
            in_journal += 1;
        } else if let Some(d) = text.lines().find_map(|l| l.strip_prefix("FELHOM_DROPPED=")) {
            dropped += d.parse::<u64>().unwrap();
        }
    }
    // SIGTERM to the helper (systemd-socket-activate exec'd it: the launcher's pid).
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(launcher.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = launcher.wait();
    let stderr = h.log();
    let on_stderr = stderr
        .lines()
        .filter(|l| l.contains("op=\"usb_unmount\"") && l.contains("stall-"))
        .count();
    eprintln!(
        "journal: {in_journal} usb_unmount records, dropped {dropped}; stderr: {on_stderr}; \
         {fill_seen} of {filled} fill datagrams"
    );
    assert!(dropped > 0, "the journal never filled up: {stderr}");
    assert_eq!(
        in_journal + on_stderr,
        MUTATING,
        "every mutating record is in the journal or on stderr"
    );
}
