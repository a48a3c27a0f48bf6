//! End to end: the real `felhom-helper` refuses what it must refuse and survives what it must
//! survive: foreign uids, garbage and oversized frames, hostile deadlines, hanging tools,
//! insecure or invalid configs; it exits when idle; and it links no HTTP/TLS stack.

use std::process::Command;
use std::time::{Duration, Instant};

use felhom_protocol::*;
use felhom_tests::helper_harness::{HelperHarness, HelperHarnessOptions, TimeCaps, ctx};
use tarpc::context;

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Whether `pid` is gone (or a zombie waiting to be reaped, which runs nothing).
fn gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X')),
    }
}

fn wait_gone(pids: &[i32]) {
    assert_eq!(pids.len(), 2, "the hanging tool writes two pids: {pids:?}");
    let until = Instant::now() + Duration::from_secs(10);
    for &pid in pids {
        while !gone(pid) {
            assert!(Instant::now() < until, "process {pid} was left behind");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

async fn hello_works(h: &HelperHarness) {
    let client = h.client().await.unwrap();
    let reply = client
        .hello(ctx(10), PROTOCOL_VERSION)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reply.protocol_version, PROTOCOL_VERSION);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_uid_that_is_not_allowed_is_dropped_before_decoding() {
    if !is_root() {
        eprintln!("skipping: needs root to run the probe as another uid with setpriv");
        return;
    }
    let setpriv = std::path::Path::new("/usr/bin/setpriv");
    if !setpriv.exists() {
        eprintln!("skipping: {} is not installed", setpriv.display());
        return;
    }
    let h = HelperHarness::start(HelperHarnessOptions::default()).unwrap();
    h.open_socket_to_everyone().unwrap();
    let probe = env!("CARGO_BIN_EXE_felhom-probe");
    // The probe binary must be reachable by uid 65534; copy it into the 0711 directory.
    let probe_copy = h.dir().join("felhom-probe");
    std::fs::copy(probe, &probe_copy).unwrap();

    let out = Command::new(setpriv)
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(&probe_copy)
        .arg(h.socket_path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout} {:?}", out.stderr);
    assert!(stdout.starts_with("refused"), "{stdout}");
    let log = h.log();
    assert!(
        log.contains("refused a connection") && log.contains("peer_uid=65534"),
        "{log}"
    );

    // Root (allowed) with the same probe gets an answer, and the helper still serves.
    let out = Command::new(&probe_copy)
        .arg(h.socket_path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", out);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("ok "));
    hello_works(&h).await;
}

/// Runs the probe (copied into the harness's 0711 directory) as `uid`:`gid` with no
/// supplementary groups; its exit code and stdout.
fn probe_as(h: &HelperHarness, uid: u32, gid: u32) -> (Option<i32>, String) {
    let probe_copy = h.dir().join("felhom-probe");
    if !probe_copy.exists() {
        std::fs::copy(env!("CARGO_BIN_EXE_felhom-probe"), &probe_copy).unwrap();
    }
    let out = Command::new("/usr/bin/setpriv")
        .arg(format!("--reuid={uid}"))
        .arg(format!("--regid={gid}"))
        .args(["--clear-groups", "--"])
        .arg(&probe_copy)
        .arg(h.socket_path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.code(), stdout)
}

/// The peer check is by uid alone: a foreign uid is refused even with gid 0 (root's group)
/// or the agent's number as its gid, and the agent's uid is served whatever its gid. Each
/// probe's uid differs from its gid, so a check that read the gid would get every case wrong.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_peer_check_is_by_uid_alone_whatever_the_gid() {
    if !is_root() {
        eprintln!("skipping: needs root to run the probe as other uids and gids with setpriv");
        return;
    }
    if !std::path::Path::new("/usr/bin/setpriv").exists() {
        eprintln!("skipping: /usr/bin/setpriv is not installed");
        return;
    }
    const AGENT: u32 = 4242;
    let h = HelperHarness::start(HelperHarnessOptions {
        agent_user: Some(AGENT.to_string()),
        ..Default::default()
    })
    .unwrap();
    h.open_socket_to_everyone().unwrap();
    for (uid, gid) in [(65534, 0), (65534, AGENT), (1000, 65534), (1000, 0)] {
        let (code, stdout) = probe_as(&h, uid, gid);
        assert_eq!(
            code,
            Some(1),
            "foreign uid {uid} with gid {gid} was not refused: {stdout}"
        );
        assert!(
            stdout.starts_with("refused"),
            "uid {uid} gid {gid}: {stdout}"
        );
    }
    for gid in [65534, 1000] {
        let (code, stdout) = probe_as(&h, AGENT, gid);
        assert_eq!(
            code,
            Some(0),
            "the agent's uid with gid {gid} was refused: {stdout}"
        );
        assert!(stdout.starts_with("ok "), "agent uid, gid {gid}: {stdout}");
    }
    let log = h.log();
    assert!(
        log.contains("refused a connection")
            && log.contains("peer_uid=65534 peer_gid=0")
            && log.contains("peer_uid=1000 peer_gid=65534"),
        "{log}"
    );
    hello_works(&h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_agent_user_is_a_start_up_error() {
    let mut h = HelperHarness::prepare(&HelperHarnessOptions {
        agent_user: Some("no-such-user-felhom".into()),
        ..Default::default()
    })
    .unwrap();
    let out = Command::new(felhom_tests::bins::helper())
        .arg("--config")
        .arg(h.config_path())
        .arg("--listen")
        .arg(h.socket_path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no-such-user-felhom"), "{stderr}");
    h.kill_helper();
}

/// How a connection ended after a frame was written to it.
#[derive(Debug)]
enum Ended {
    /// The helper closed the connection (EOF, or a reset because it dropped unread
    /// input); the bytes it sent first.
    Closed(Vec<u8>),
    /// Nothing happened within the wait: the helper has not (yet) handled the frame.
    StillOpen(Vec<u8>),
}

/// Writes `frame` on a fresh connection, keeps the write side open (so the helper cannot
/// be closing merely because the client did), and reads until the helper closes the
/// connection or `wait` passes.
async fn send_and_wait_for_close(h: &HelperHarness, frame: &[u8], wait: Duration) -> Ended {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::UnixStream::connect(h.socket_path())
        .await
        .unwrap();
    // The helper may close before it has read everything (an oversized length prefix);
    // then the write fails with a broken pipe or reset, which is an answer, not an error.
    if let Err(e) = s.write_all(frame).await {
        assert!(
            matches!(
                e.kind(),
                std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
            ),
            "writing the frame: {e}"
        );
    }
    let mut got = Vec::new();
    let read = tokio::time::timeout(wait, async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) => return Ok(()),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => return Err(e),
            }
        }
    })
    .await;
    match read {
        Ok(Ok(())) => Ended::Closed(got),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => Ended::Closed(got),
        Ok(Err(e)) => panic!("reading the helper's answer: {e}"),
        Err(_) => Ended::StillOpen(got),
    }
}

/// Asserts the helper refused `frame`: it closed the connection on its own, without a
/// reply. A connection that is merely still open after the wait is not a refusal.
async fn assert_refused(h: &HelperHarness, what: &str, frame: &[u8]) {
    match send_and_wait_for_close(h, frame, Duration::from_secs(10)).await {
        Ended::Closed(reply) => assert!(
            reply.is_empty(),
            "{what}: the helper answered {} bytes instead of closing",
            reply.len()
        ),
        Ended::StillOpen(got) => panic!(
            "{what}: the helper neither answered nor closed within 10 s (got {} bytes)",
            got.len()
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_oversized_frames_do_not_kill_the_helper() {
    let mut h = HelperHarness::start(HelperHarnessOptions::default()).unwrap();
    // Each frame on its own connection; each is handled (the helper closes the connection
    // itself) before the next is sent and before the liveness check.
    // Plain garbage: its first four bytes read as a length of about 1.2 GB.
    assert_refused(&h, "HTTP garbage", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    // A frame announcing 4 GiB, with three bytes of it.
    assert_refused(&h, "4 GiB length", &[0xff, 0xff, 0xff, 0xf0, 1, 2, 3]).await;
    // A frame just over the request limit, fully sent.
    let n = transport::MAX_REQUEST_FRAME + 1;
    let mut big = (n as u32).to_be_bytes().to_vec();
    big.extend(std::iter::repeat_n(0u8, n));
    assert_refused(&h, "oversized frame", &big).await;
    // A well-framed but undecodable message: an unknown message variant.
    let mut bad = 8u32.to_be_bytes().to_vec();
    bad.extend([0x07, 0xff, 0xfe, 0xfd, 0, 0, 0, 0]);
    assert_refused(&h, "unknown variant", &bad).await;
    // A real hello request cut short: a correct length prefix over the first 3 bytes of its
    // bincode body (a Request whose deadline and message are missing).
    let hello = encode_request(HelperRequest::Hello {
        agent_protocol: PROTOCOL_VERSION,
    })
    .await;
    assert!(hello.len() > 4 + 3, "{hello:?}");
    let mut cut = 3u32.to_be_bytes().to_vec();
    cut.extend(&hello[4..7]);
    assert_refused(&h, "truncated request", &cut).await;
    // The uncut request, as a control: the same path answers a valid frame.
    match send_and_wait_for_close(&h, &hello, Duration::from_secs(2)).await {
        Ended::Closed(reply) | Ended::StillOpen(reply) => {
            assert!(!reply.is_empty(), "no answer to a valid hello frame")
        }
    }

    hello_works(&h).await;
    assert!(h.try_wait().is_none(), "the helper died:\n{}", h.log());
    let log = h.log();
    assert!(
        !log.contains("panicked"),
        "no input may panic the helper:\n{log}"
    );
}

/// Encodes a real request frame (length prefix included).
async fn encode_request(message: HelperRequest) -> Vec<u8> {
    use futures::SinkExt;
    let (a, b) = tokio::net::UnixStream::pair().unwrap();
    let mut tx = transport::client_transport(a);
    tx.send(tarpc::ClientMessage::Request(tarpc::Request {
        context: ctx(30),
        id: 1,
        message,
    }))
    .await
    .unwrap();
    drop(tx);
    tokio_util_read_all(b).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_request_with_an_invalid_field_is_refused() {
    let mut h = HelperHarness::start(HelperHarnessOptions::default()).unwrap();
    // A well-framed usb_unmount whose MountName is patched from "aaaa" to "../x", and a
    // golden image request whose vmid (one-byte varint 100) is patched to 5.
    let mut unmount = encode_request(HelperRequest::UsbUnmount {
        name: MountName::new("aaaa").unwrap(),
    })
    .await;
    let at = unmount
        .windows(4)
        .position(|w| w == b"aaaa")
        .expect("the name is in the frame");
    unmount[at..at + 4].copy_from_slice(b"../x");
    let req = GoldenImageRequest {
        vmid: Vmid::new(100).unwrap(),
        template: TemplateVolid::new("local:vztmpl/x.tar.gz").unwrap(),
        hostname: Hostname::new("g").unwrap(),
        storage: StorageId::new("local").unwrap(),
        rootfs_gib: RootfsGib::DEFAULT,
        memory_mib: MemoryMib::DEFAULT,
        cores: Cores::DEFAULT,
        bridge: Bridge::new("vmbr0").unwrap(),
    };
    let mut golden = encode_request(HelperRequest::GoldenImageCreate { req }).await;
    let tpl = golden
        .windows(5)
        .position(|w| w == b"local")
        .expect("the template is in the frame");
    // The vmid precedes the template's length prefix (one byte) as a one-byte varint.
    assert_eq!(golden[tpl - 2], 100, "{golden:?}");
    golden[tpl - 2] = 5;
    // Refused: the helper closes the connection itself, without a reply (the invalid field
    // fails decoding). A wait that merely timed out does not count.
    assert_refused(&h, "usb_unmount with name ../x", &unmount).await;
    assert_refused(&h, "golden_image_create with vmid 5", &golden).await;
    assert!(
        h.tool_calls().is_empty(),
        "an invalid request ran a tool: {:?}",
        h.tool_calls()
    );
    let log = h.log();
    assert!(
        !log.contains("op=\"usb_unmount\"") && !log.contains("op=\"golden_image_create\""),
        "{log}"
    );
    hello_works(&h).await;
    assert!(h.try_wait().is_none(), "the helper died:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_client_deadline_does_not_kill_the_helper() {
    use futures::SinkExt;
    let mut h = HelperHarness::start(HelperHarnessOptions::default()).unwrap();
    // Encode a real hello with a 100 s deadline, then patch its deadline to u64::MAX seconds.
    let (a, b) = tokio::net::UnixStream::pair().unwrap();
    let mut tx = transport::client_transport(a);
    let mut c = context::current();
    c.deadline = Instant::now() + Duration::from_secs(100);
    tx.send(tarpc::ClientMessage::Request(tarpc::Request {
        context: c,
        id: 1,
        message: HelperRequest::Hello {
            agent_protocol: PROTOCOL_VERSION,
        },
    }))
    .await
    .unwrap();
    drop(tx);
    let mut raw = tokio_util_read_all(b).await;
    assert!(raw.len() > 6);
    let payload = raw.split_off(4);
    // Variant 0 (Request), then the deadline's seconds as a one-byte varint (99).
    assert_eq!(payload[0], 0);
    assert!(payload[1] == 99 || payload[1] == 100, "{payload:?}");
    // u64::MAX seconds overflows `Instant + Duration`; three years overflows the timer wheel
    // of tarpc's deadline queue. Both must be refused, not panic.
    let three_years: u32 = 3 * 365 * 24 * 3600;
    let mut huge = vec![0xfd];
    huge.extend(u64::MAX.to_le_bytes());
    let mut years = vec![0xfc];
    years.extend(three_years.to_le_bytes());
    for secs in [huge, years] {
        let mut patched = vec![0u8];
        patched.extend(secs);
        patched.extend(&payload[2..]);
        let mut frame = (patched.len() as u32).to_be_bytes().to_vec();
        frame.extend(&patched);
        h.send_raw(&frame).unwrap();
    }
    std::thread::sleep(Duration::from_millis(200));
    hello_works(&h).await;
    assert!(h.try_wait().is_none(), "the helper died:\n{}", h.log());
    let log = h.log();
    assert!(
        !log.contains("panicked"),
        "no input may panic the helper:\n{log}"
    );
}

async fn tokio_util_read_all(mut s: tokio::net::UnixStream) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut v = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut v)).await;
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_tool_is_killed_at_the_server_cap() {
    let h = HelperHarness::start(HelperHarnessOptions {
        time_caps: TimeCaps {
            smart: 2,
            ..TimeCaps::default()
        },
        ..Default::default()
    })
    .unwrap();
    h.add_fake_disk("sda", "{}", 0);
    h.set_hang("smartctl", true);
    let client = h.client().await.unwrap();
    // The client allows 300 s; the server cap (2 s) must win. Had the helper run the tool to
    // the client's deadline instead, the reply would come after almost 300 s and say so.
    let started = Instant::now();
    let err = client
        .smart_read(ctx(300), DiskName::new("sda").unwrap())
        .await
        .unwrap()
        .unwrap_err();
    let took = started.elapsed();
    // The tool ran for the cap (`after_secs` is its measured run time, whole seconds).
    assert!(
        matches!(&err, HelperError::TimedOut { operation, after_secs } if operation == "smart_read" && *after_secs <= 2),
        "{err:?}"
    );
    // The cap, the TERM grace (2 s) and slack for a loaded machine: far below the client's
    // 300 s, which is the only other bound that could have stopped the tool.
    assert!(took < Duration::from_secs(30), "took {took:?}");
    // The hanging smartctl and its child were stopped by the helper, not left running.
    wait_gone(&h.hang_pids());
    // The lock was released: the next operation runs.
    h.set_hang("smartctl", false);
    let r = client
        .smart_read(ctx(10), DiskName::new("sda").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.exit_status, 0);
    assert!(h.log().contains("timed out"), "{}", h.log());
}

fn golden_req(vmid: u32) -> GoldenImageRequest {
    GoldenImageRequest {
        vmid: Vmid::new(vmid).unwrap(),
        template: TemplateVolid::new("local:vztmpl/x.tar.gz").unwrap(),
        hostname: Hostname::new("g").unwrap(),
        storage: StorageId::new("local-lvm").unwrap(),
        rootfs_gib: RootfsGib::DEFAULT,
        memory_mib: MemoryMib::DEFAULT,
        cores: Cores::DEFAULT,
        bridge: Bridge::new("vmbr0").unwrap(),
    }
}

fn pct_calls(h: &HelperHarness) -> usize {
    h.tool_calls().iter().filter(|c| c[0] == "pct").count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_deadline_shortens_the_cap_and_leaves_no_process() {
    let h = HelperHarness::start(HelperHarnessOptions {
        time_caps: TimeCaps {
            golden_image: 7,
            ..TimeCaps::default()
        },
        ..Default::default()
    })
    .unwrap();
    h.set_hang("pct", true);
    let client = h.client().await.unwrap();
    // Cap is 7 s; the client gives 6 s, so the tool gets 6 s minus the helper's margin
    // (TERM grace, pipe drain, reply time: 1.5 s left) and the client sees a TimedOut reply
    // well before its own deadline.
    let started = Instant::now();
    let res = client.golden_image_create(ctx(6), golden_req(9001)).await;
    let took = started.elapsed();
    assert!(
        matches!(&res, Ok(Err(HelperError::TimedOut { operation, .. })) if operation == "golden_image_create"),
        "{res:?}"
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");
    wait_gone(&h.hang_pids());

    // Too little of the client's time left to run and stop a tool: refused without
    // starting pct at all.
    let before = pct_calls(&h);
    let started = Instant::now();
    let res = client.golden_image_create(ctx(2), golden_req(9001)).await;
    assert!(
        matches!(&res, Ok(Err(HelperError::TimedOut { .. }))),
        "{res:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(pct_calls(&h), before, "pct must not be started");

    // Just past the margin (TERM grace 2 s + pipe drain 2 s + 0.5 s for the reply = 4.5 s)
    // but short of it plus the 1 s a tool gets at least: refused the same way, without
    // starting pct, although the deadline minus the margin is still in the future.
    for ms in [4_800, 5_200] {
        let mut short = context::current();
        short.deadline = Instant::now() + Duration::from_millis(ms);
        let res = client.golden_image_create(short, golden_req(9001)).await;
        assert!(
            matches!(&res, Ok(Err(HelperError::TimedOut { after_secs: 0, .. }))),
            "{ms} ms: {res:?}"
        );
        assert_eq!(pct_calls(&h), before, "{ms} ms: pct must not be started");
    }

    // A cancelled request (the client drops the call) does not abort the operation half-way:
    // it runs on to its own deadline (the 7 s cap), then leaves nothing either.
    std::fs::remove_file(h.dir().join("state/hang-pids")).unwrap();
    let call = client.golden_image_create(ctx(60), golden_req(9001));
    let _ = tokio::time::timeout(Duration::from_millis(1500), call).await;
    let until = Instant::now() + Duration::from_secs(10);
    while h.hang_pids().len() < 2 {
        assert!(Instant::now() < until, "the hanging pct never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        h.hang_pids().iter().all(|p| !gone(*p)),
        "the operation was aborted by the client's cancellation"
    );
    wait_gone(&h.hang_pids());
    hello_works(&h).await;
    // The audit log records the detached operation's real outcome, not a cancellation.
    let log = h.log();
    assert!(!log.contains("cancelled before it finished"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_at_a_time_per_connection() {
    let h = HelperHarness::start(HelperHarnessOptions {
        time_caps: TimeCaps {
            smart: 3,
            ..TimeCaps::default()
        },
        ..Default::default()
    })
    .unwrap();
    h.add_fake_disk("sda", "{}", 0);
    h.set_hang("smartctl", true);
    let client = h.client().await.unwrap();
    let slow = client.smart_read(ctx(30), DiskName::new("sda").unwrap());
    let second = async {
        // Only once the first request is running (its fake smartctl wrote its pids).
        while h.hang_pids().len() < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let started = Instant::now();
        let r = client.usb_list(ctx(30)).await;
        (r, started.elapsed())
    };
    let (slow, (second, second_took)) = tokio::join!(slow, second);
    assert!(
        matches!(slow, Ok(Err(HelperError::TimedOut { .. }))),
        "{slow:?}"
    );
    // The second request on the same connection was refused by the per-channel limit, at
    // once (not after waiting for the first). tarpc sends it as WouldBlock, which the wire
    // encoding of io::ErrorKind turns into Other; the detail names the throttle.
    assert!(
        matches!(&second, Err(tarpc::client::RpcError::Server(e)) if e.detail.contains("throttled")),
        "{second:?}"
    );
    assert!(second_took < Duration::from_secs(2), "took {second_took:?}");
    wait_gone(&h.hang_pids());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_peers_do_not_keep_the_helper_alive() {
    if !is_root() {
        eprintln!("skipping: needs root to connect as another uid with setpriv");
        return;
    }
    let setpriv = std::path::Path::new("/usr/bin/setpriv");
    if !setpriv.exists() {
        eprintln!("skipping: {} is not installed", setpriv.display());
        return;
    }
    let mut h = HelperHarness::start(HelperHarnessOptions {
        idle_timeout_secs: 2,
        ..Default::default()
    })
    .unwrap();
    h.open_socket_to_everyone().unwrap();
    let probe_copy = h.dir().join("felhom-probe");
    std::fs::copy(env!("CARGO_BIN_EXE_felhom-probe"), &probe_copy).unwrap();
    // A refused peer every 200 ms for up to 8 s; the helper must still exit after ~2 s idle.
    let started = Instant::now();
    let mut exited = None;
    while started.elapsed() < Duration::from_secs(8) {
        let _ = Command::new(setpriv)
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(&probe_copy)
            .arg(h.socket_path())
            .output();
        if let Some(s) = h.try_wait() {
            exited = Some((s, started.elapsed()));
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let (status, after) = exited.unwrap_or_else(|| {
        panic!(
            "refused connections kept the helper from its idle exit:\n{}",
            h.log()
        )
    });
    assert!(status.success(), "{status}");
    assert!(
        after < Duration::from_secs(5),
        "exited only after {after:?}"
    );
    assert!(h.log().contains("refused a connection"), "{}", h.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_helper_exits_when_idle() {
    let mut h = HelperHarness::start(HelperHarnessOptions {
        idle_timeout_secs: 1,
        ..Default::default()
    })
    .unwrap();
    {
        hello_works(&h).await;
    }
    let status = h
        .wait_exit(Duration::from_secs(30))
        .unwrap_or_else(|| panic!("no idle exit:\n{}", h.log()));
    assert!(status.success(), "{status}");
    assert!(h.log().contains("idle"), "{}", h.log());
    // systemd would start it again on the next connection; so does the harness.
    h.launch_activated().unwrap();
    hello_works(&h).await;
}

fn run_helper(args: &[&std::ffi::OsStr], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(felhom_tests::bins::helper());
    cmd.args(args)
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_PID");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[test]
fn start_up_refusals_exit_2_with_a_clear_message() {
    use std::os::unix::fs::PermissionsExt;
    let h = HelperHarness::prepare(&HelperHarnessOptions::default()).unwrap();
    let cfg = h.config_path().as_os_str();
    let sock = h.socket_path().as_os_str();

    // No socket activation and no --listen.
    let out = run_helper(&["--config".as_ref(), cfg], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("socket activation") && err.contains("--listen"),
        "{err}"
    );

    // Activation variables meant for another process.
    let out = run_helper(
        &["--config".as_ref(), cfg],
        &[("LISTEN_FDS", "1"), ("LISTEN_PID", "1")],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not this process"));

    // Config writable by others.
    std::fs::set_permissions(h.config_path(), std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = run_helper(&["--config".as_ref(), cfg, "--listen".as_ref(), sock], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("writable"), "{err}");
    std::fs::set_permissions(h.config_path(), std::fs::Permissions::from_mode(0o600)).unwrap();

    // A tool writable by others.
    let pct = h.dir().join("tools/pct");
    std::fs::set_permissions(&pct, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = run_helper(&["--config".as_ref(), cfg, "--listen".as_ref(), sock], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("pct") && err.contains("writable"), "{err}");
    std::fs::set_permissions(&pct, std::fs::Permissions::from_mode(0o755)).unwrap();

    // A tool that is a symlink in a directory others can write (they could swap the link).
    let evil = h.dir().join("evil");
    std::fs::create_dir(&evil).unwrap();
    std::fs::set_permissions(&evil, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::os::unix::fs::symlink(&pct, evil.join("pct")).unwrap();
    let text = std::fs::read_to_string(h.config_path()).unwrap();
    let pct_json = serde_json::to_string(&pct.to_string_lossy()).unwrap();
    let evil_json = serde_json::to_string(&evil.join("pct").to_string_lossy()).unwrap();
    std::fs::write(h.config_path(), text.replace(&pct_json, &evil_json)).unwrap();
    let out = run_helper(&["--config".as_ref(), cfg, "--listen".as_ref(), sock], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("evil") && err.contains("writable"), "{err}");
    std::fs::write(h.config_path(), &text).unwrap();

    // A mount_root others can write (they could race `<name> -> /etc` against mount(8)).
    let mnt = h.mount_root();
    std::fs::set_permissions(&mnt, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = run_helper(&["--config".as_ref(), cfg, "--listen".as_ref(), sock], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("mnt") && err.contains("writable"), "{err}");
    std::fs::set_permissions(&mnt, std::fs::Permissions::from_mode(0o755)).unwrap();

    // An unknown key is named.
    let text = std::fs::read_to_string(h.config_path()).unwrap();
    std::fs::write(
        h.config_path(),
        text.replacen('{', "{\"mount_opts\": \"exec\",", 1),
    )
    .unwrap();
    let out = run_helper(&["--config".as_ref(), cfg, "--listen".as_ref(), sock], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("mount_opts"), "{err}");
    assert!(!h.socket_path().exists());
}

#[test]
fn the_helper_links_no_http_or_tls_crate() {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let out = Command::new(cargo)
        .args(["tree", "--manifest-path"])
        .arg(&manifest)
        .args([
            "-p",
            "felhom-helper",
            "-e",
            "normal,build",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8_lossy(&out.stdout);
    let crates: Vec<&str> = tree
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(
        crates.contains(&"felhom-helper") && crates.contains(&"tarpc"),
        "{tree}"
    );
    for banned in [
        "reqwest",
        "hyper",
        "hyper-util",
        "h2",
        "http",
        "rustls",
        "tokio-rustls",
        "native-tls",
        "openssl",
        "openssl-sys",
        "ring",
        "aws-lc-rs",
    ] {
        assert!(
            !crates.contains(&banned),
            "felhom-helper depends on {banned}:\n{tree}"
        );
    }
}

/// `line` without its leading timestamp (checked to be RFC 3339 UTC), with the values of
/// `seq`, `peer_pid` and `duration_ms` replaced by `N`; and the `seq` value.
fn audit_shape(line: &str) -> (String, u64) {
    let (ts, rest) = line.split_once(' ').expect("a timestamp");
    assert!(
        ts.len() >= 20 && ts.as_bytes()[10] == b'T' && ts.ends_with('Z'),
        "not an RFC 3339 UTC timestamp: {ts:?} in {line}"
    );
    let mut out = rest.trim_start().to_string();
    let mut seq = 0;
    for key in ["seq=", "peer_pid=", "duration_ms="] {
        let at = out
            .find(&format!(" {key}"))
            .unwrap_or_else(|| panic!("no {key} in {line}"))
            + 1
            + key.len();
        let digits = out[at..].bytes().take_while(u8::is_ascii_digit).count();
        assert!(digits > 0, "{key} has no number in {line}");
        if key == "seq=" {
            seq = out[at..at + digits].parse().unwrap();
        }
        out.replace_range(at..at + digits, "N");
    }
    (out, seq)
}

/// Pins the shape of an audit record in the helper's stderr log (the form the tests read):
/// `<RFC 3339 time>  <LEVEL> audit: privileged operation seq=N op="…" peer_uid=U
/// peer_pid=P request=… outcome=… duration_ms=D`, fields in that order, one line per
/// record, `seq` growing by one. The negative checks elsewhere
/// (`!log.contains("op=\"usb_unmount\"")`, "cancelled before it finished") rely on this
/// form: a change to it must fail here, not let those checks pass vacuously.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_record_format_is_pinned() {
    let h = HelperHarness::start(HelperHarnessOptions::default()).unwrap();
    h.add_fake_disk("sda", "{}", 0);
    let client = h.client().await.unwrap();
    let r = client
        .smart_read(ctx(30), DiskName::new("sda").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.exit_status, 0);
    let err = client
        .smart_read(ctx(30), DiskName::new("sdz").unwrap())
        .await
        .unwrap()
        .unwrap_err();
    let log = h.log();
    let records: Vec<&str> = log.lines().filter(|l| l.contains(" audit: ")).collect();
    assert_eq!(records.len(), 2, "one line per operation:\n{log}");
    let uid = nix::unistd::geteuid().as_raw();
    let (ok, seq_ok) = audit_shape(records[0]);
    assert_eq!(
        ok,
        format!(
            "INFO audit: privileged operation seq=N op=\"smart_read\" peer_uid={uid} peer_pid=N request=DiskName(\"sda\") outcome=ok duration_ms=N"
        ),
        "{log}"
    );
    let (failed, seq_failed) = audit_shape(records[1]);
    assert_eq!(
        failed,
        format!(
            "WARN audit: privileged operation seq=N op=\"smart_read\" peer_uid={uid} peer_pid=N request=DiskName(\"sdz\") outcome={err} duration_ms=N"
        ),
        "{log}"
    );
    assert_eq!(seq_failed, seq_ok + 1, "{log}");
    // The form the negative checks search for matches these records.
    assert!(records.iter().all(|l| l.contains("op=\"smart_read\"")));
}
