//! felhom-flood: floods a helper socket with cheap calls and new connections from several
//! uids while it makes a number of mutating calls, for the audit test under a real journald
//! (`.ci/package.sh`, the boot test) and the local tests.
//!
//! ```text
//! felhom-flood SOCKET [--seconds N] [--as UID:GID]... [--mutating M] [--tag TAG]
//! ```
//!
//! - One worker process per `--as UID:GID` (default: the caller's own uid and gid) drops to
//!   that uid and gid (no supplementary groups; needs root) and, for N seconds (default 10,
//!   at most 600), opens a new connection every few calls and makes every cheap call —
//!   `hello`, `usb_list`, `smart_scan`, `smart_read`, `sensors_read` — plus calls with a 1 ms
//!   deadline, which time out. A uid the helper refuses floods it with refused connections.
//! - Meanwhile the parent makes M (default 20) `usb_unmount` calls of names that are not
//!   managed (`TAG-0` … `TAG-{M-1}`, tag default `flood`), spread over the N seconds: each is
//!   refused, and each must have its own audit record.
//!
//! Prints `cheap N`, `connections N`, `refused N` per worker and `mutating M answered A` last;
//! exits 0 when every mutating call was answered, 1 otherwise, 2 on usage errors.

use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use felhom_protocol::{DiskName, HelperClient, MountName, PROTOCOL_VERSION};

const WORKER_ENV: &str = "FELHOM_FLOOD_WORKER";

fn usage(why: &str) -> ExitCode {
    eprintln!(
        "felhom-flood: {why}\nusage: felhom-flood SOCKET [--seconds N] [--as UID:GID]... \
         [--mutating M] [--tag TAG]"
    );
    ExitCode::from(2)
}

fn ctx(ms: u64) -> tarpc::context::Context {
    let mut c = tarpc::context::current();
    c.deadline = Instant::now() + Duration::from_millis(ms);
    c
}

async fn connect(socket: &str) -> Option<HelperClient> {
    let stream = tokio::net::UnixStream::connect(socket).await.ok()?;
    Some(
        HelperClient::new(
            tarpc::client::Config::default(),
            felhom_protocol::transport::client_transport(stream),
        )
        .spawn(),
    )
}

/// The worker: cheap calls on fresh connections until `secs` are over.
async fn worker(socket: &str, secs: u64) {
    let until = Instant::now() + Duration::from_secs(secs);
    let (mut cheap, mut connections, mut refused) = (0u64, 0u64, 0u64);
    let disk = DiskName::new("sdz").ok();
    while Instant::now() < until {
        let Some(c) = connect(socket).await else {
            refused += 1;
            tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        };
        connections += 1;
        for _ in 0..4 {
            let mut ok = c.hello(ctx(5000), PROTOCOL_VERSION).await.is_ok();
            ok &= c.usb_list(ctx(5000)).await.is_ok();
            ok &= c.smart_scan(ctx(5000)).await.is_ok();
            if let Some(d) = &disk {
                ok &= c.smart_read(ctx(5000), d.clone()).await.is_ok();
            }
            ok &= c.sensors_read(ctx(5000)).await.is_ok();
            // Out of time before it can start.
            let _ = c.usb_list(ctx(1)).await;
            let _ = c.sensors_read(ctx(1)).await;
            if !ok {
                // The connection was closed (a refused uid): count it, open another.
                refused += 1;
                break;
            }
            cheap += 7;
        }
    }
    println!("cheap {cheap} connections {connections} refused {refused}");
}

/// Drops to `uid`:`gid` with no supplementary groups.
fn become_user(spec: &str) -> Result<(), String> {
    let (u, g) = spec
        .split_once(':')
        .ok_or_else(|| format!("{spec:?} is not UID:GID"))?;
    let uid: u32 = u.parse().map_err(|_| format!("bad uid {u:?}"))?;
    let gid: u32 = g.parse().map_err(|_| format!("bad gid {g:?}"))?;
    let (uid, gid) = (
        nix::unistd::Uid::from_raw(uid),
        nix::unistd::Gid::from_raw(gid),
    );
    if nix::unistd::getuid() == uid && nix::unistd::getgid() == gid {
        return Ok(());
    }
    nix::unistd::setgroups(&[]).map_err(|e| format!("setgroups: {e}"))?;
    nix::unistd::setresgid(gid, gid, gid).map_err(|e| format!("setresgid: {e}"))?;
    nix::unistd::setresuid(uid, uid, uid).map_err(|e| format!("setresuid: {e}"))?;
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(socket) = args.first().cloned() else {
        return usage("no socket given");
    };
    let (mut secs, mut mutating, mut tag, mut users) = (10u64, 20u32, "flood".to_string(), vec![]);
    let mut it = args.iter().skip(1);
    while let Some(flag) = it.next() {
        let Some(value) = it.next() else {
            return usage(&format!("{flag} needs a value"));
        };
        match flag.as_str() {
            "--seconds" => match value.parse::<u64>() {
                Ok(n) if (1..=600).contains(&n) => secs = n,
                _ => return usage("--seconds takes 1 to 600"),
            },
            "--mutating" => match value.parse::<u32>() {
                Ok(n) if n <= 10_000 => mutating = n,
                _ => return usage("--mutating takes 0 to 10000"),
            },
            "--tag" if MountName::new(&format!("{value}-0")).is_ok() => tag = value.clone(),
            "--as" => users.push(value.clone()),
            _ => return usage(&format!("unknown or bad option {flag} {value}")),
        }
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return usage(&format!("no runtime: {e}")),
    };
    if let Ok(spec) = std::env::var(WORKER_ENV) {
        if let Err(e) = become_user(&spec) {
            eprintln!("felhom-flood worker {spec}: {e}");
            return ExitCode::from(2);
        }
        runtime.block_on(worker(&socket, secs));
        return ExitCode::SUCCESS;
    }
    if users.is_empty() {
        users.push(format!(
            "{}:{}",
            nix::unistd::getuid(),
            nix::unistd::getgid()
        ));
    }
    let Ok(me) = std::env::current_exe() else {
        return usage("cannot find its own executable");
    };
    let mut workers = Vec::new();
    for spec in &users {
        let child = Command::new(&me)
            .arg(&socket)
            .args(["--seconds", &secs.to_string()])
            .env(WORKER_ENV, spec)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn();
        match child {
            Ok(c) => workers.push((spec.clone(), c)),
            Err(e) => return usage(&format!("cannot start a worker: {e}")),
        }
    }
    // The mutating calls, spread over the flood, each on its own connection.
    let answered = runtime.block_on(async {
        let gap = Duration::from_millis(secs * 1000 / u64::from(mutating.max(1)));
        let mut answered = 0u32;
        for i in 0..mutating {
            tokio::time::sleep(gap / 2).await;
            let Ok(name) = MountName::new(&format!("{tag}-{i}")) else {
                continue;
            };
            if let Some(c) = connect(&socket).await {
                match c.usb_unmount(ctx(30_000), name).await {
                    Ok(_) => answered += 1,
                    Err(e) => eprintln!("usb_unmount {tag}-{i}: {e}"),
                }
            }
            tokio::time::sleep(gap / 2).await;
        }
        answered
    });
    for (spec, child) in workers {
        match child.wait_with_output() {
            Ok(out) => print!("as {spec}: {}", String::from_utf8_lossy(&out.stdout)),
            Err(e) => eprintln!("worker {spec}: {e}"),
        }
    }
    println!("mutating {mutating} answered {answered}");
    if answered == mutating {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
