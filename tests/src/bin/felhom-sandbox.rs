//! `felhom-sandbox`: the whole felhom system on one machine, without Proxmox and without root.
//!
//! `cargo run -p felhom-tests --bin felhom-sandbox`
//!
//! It starts the Proxmox VE simulator (in this process), the REAL `felhom-helper` on a
//! temporary socket (under `systemd-socket-activate` when installed, else in development
//! mode) with fake `pct`/`smartctl`/`blkid`/`mount` tools, a fake sysfs tree and a temporary
//! mount root, writes an agent config, and runs the REAL `felhom-agent` binary through a
//! tour of its commands. Each step prints the command, its exit code and a short output; the
//! sandbox exits non-zero if any step fails, and removes everything it created.

use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use felhom_tests::bins;
use felhom_tests::fake_helper::write_agent_config;
use felhom_tests::helper_harness::{HelperHarness, HelperHarnessOptions};
use felhom_tests::pve_sim::{PveSim, SimOptions};

/// The sandbox's own canned smartctl output (tests/sandbox-data/).
const SATA_SSD_JSON: &str = include_str!("../../sandbox-data/smartctl_sandbox_sata_ssd.json");
const NVME_JSON: &str = include_str!("../../sandbox-data/smartctl_sandbox_nvme.json");

/// The filesystem the fake blkid knows, for the USB step.
const USB_UUID: &str = "5a1e0c4d-2b3f-4e6a-8c9d-0e1f2a3b4c5d";
const TEMPLATE: &str = "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst";

/// How many lines of a step's output are shown.
const SHOWN_LINES: usize = 16;

struct Sandbox {
    sim: PveSim,
    helper: HelperHarness,
    config: PathBuf,
    _dir: tempfile::TempDir,
}

struct StepResult {
    title: String,
    ok: bool,
}

async fn setup() -> anyhow::Result<Sandbox> {
    println!("building felhom-agent and felhom-helper (once) …");
    let agent = tokio::task::block_in_place(bins::agent);
    let sim = PveSim::start(SimOptions {
        task_duration: Duration::from_millis(200),
        ..SimOptions::default()
    })
    .await
    .context("starting the Proxmox VE simulator")?;
    let activated = Path::new("/usr/bin/systemd-socket-activate").exists();
    let helper = tokio::task::block_in_place(|| {
        if activated {
            HelperHarness::start(HelperHarnessOptions::default())
        } else {
            HelperHarness::start_dev(HelperHarnessOptions::default())
        }
    })
    .context("starting felhom-helper")?;
    helper.add_fake_disk("sda", SATA_SSD_JSON, 0);
    helper.add_fake_disk("nvme0n1", NVME_JSON, 0);
    helper.add_fake_hwmon(
        "hwmon0",
        "coretemp",
        &[
            ("temp1_input", "45000"),
            ("temp1_label", "Package id 0"),
            ("temp2_input", "43000"),
            ("temp2_label", "Core 0"),
        ],
    );
    helper.add_fake_hwmon(
        "hwmon1",
        "nct6798",
        &[("fan1_input", "812"), ("in0_input", "1032")],
    );
    helper.add_fake_filesystem(USB_UUID, "ext4");
    let dir = tempfile::Builder::new()
        .prefix("felhom-sandbox-")
        .tempdir()
        .context("creating the agent's directory")?;
    let config = write_agent_config(dir.path(), &sim, helper.socket_path(), 60)?;
    println!();
    println!(
        "Proxmox VE simulator  {} (node {})",
        sim.base_url(),
        sim.node()
    );
    println!(
        "felhom-helper         {} ({}; fake tools, sysfs and mount root in {})",
        helper.socket_path().display(),
        if activated {
            "socket-activated by systemd-socket-activate"
        } else {
            "development mode, --listen"
        },
        helper.dir().display()
    );
    println!("felhom-agent          {}", agent.display());
    println!("agent config          {}", config.display());
    Ok(Sandbox {
        sim,
        helper,
        config,
        _dir: dir,
    })
}

/// Runs `felhom-agent --config … <args>`, prints the step, and applies `check` to stdout
/// (a step passes when the exit code is 0 and `check` returns `None`).
async fn step(
    sb: &Sandbox,
    title: &str,
    args: &[&str],
    check: impl Fn(&str) -> Option<String>,
) -> StepResult {
    step_full(sb, title, args, 0, |out, _| check(out)).await
}

/// How a step's stderr is shown: live-progress lines (`[1.2s] vzdump 100: …`, what the
/// agent prints while it waits for a task when stderr is not a terminal) and the agent's
/// error text.
fn show_stderr(stderr: &str) {
    let progress: Vec<&str> = stderr.lines().filter(|l| l.starts_with('[')).collect();
    for l in progress.iter().take(SHOWN_LINES) {
        println!("  stderr (progress): {l}");
    }
    if progress.len() > SHOWN_LINES {
        println!(
            "  stderr (progress): … ({} more lines)",
            progress.len() - SHOWN_LINES
        );
    }
    let mut in_error = false;
    for l in stderr.lines() {
        if l.starts_with("felhom-agent: error:") {
            in_error = true;
        } else if !l.starts_with("  ") {
            in_error = false;
        }
        if in_error {
            println!("  stderr: {l}");
        }
    }
}

/// Runs `felhom-agent --config … <args>` expecting exit code `want`; `check` gets stdout
/// and stderr. Progress lines and the agent's error text from stderr are shown.
async fn step_full(
    sb: &Sandbox,
    title: &str,
    args: &[&str],
    want: i32,
    check: impl Fn(&str, &str) -> Option<String>,
) -> StepResult {
    println!();
    println!("── {title}");
    println!("$ felhom-agent {}", args.join(" "));
    let started = Instant::now();
    let out = tokio::process::Command::new(bins::agent())
        .arg("--config")
        .arg(&sb.config)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await;
    let out = match out {
        Ok(o) => o,
        Err(e) => {
            println!("  FAILED: cannot run felhom-agent: {e}");
            return StepResult {
                title: title.into(),
                ok: false,
            };
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    show_stderr(&stderr);
    let lines: Vec<&str> = stdout.lines().collect();
    for l in lines.iter().take(SHOWN_LINES) {
        println!("  {l}");
    }
    if lines.len() > SHOWN_LINES {
        println!("  … ({} more lines)", lines.len() - SHOWN_LINES);
    }
    let code = out.status.code();
    let problem = if code != Some(want) {
        Some(format!("exit status {} (expected {want})", out.status))
    } else {
        check(&stdout, &stderr)
    };
    let ok = problem.is_none();
    match problem {
        None => println!("  → ok (exit {want}, {} ms)", started.elapsed().as_millis()),
        Some(p) => {
            println!("  → FAILED: {p}");
            for l in stderr
                .lines()
                .rev()
                .take(8)
                .collect::<Vec<_>>()
                .iter()
                .rev()
            {
                println!("  stderr: {l}");
            }
        }
    }
    StepResult {
        title: title.into(),
        ok,
    }
}

/// Checks that the backup's progress reached stderr while the task ran: log lines of the
/// vzdump task, with more than one elapsed time (they arrived over the task's run), ending
/// with `TASK OK`.
fn backup_progress(stderr: &str) -> Option<String> {
    let progress: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with('[') && l.contains("] vzdump 100: "))
        .collect();
    let mut times: Vec<&str> = progress
        .iter()
        .filter_map(|l| l.split(']').next())
        .collect();
    times.dedup();
    if !progress.last().is_some_and(|l| l.ends_with(": TASK OK")) {
        return Some(format!(
            "no progress lines ending in TASK OK on stderr: {progress:?}"
        ));
    }
    if times.len() < 2 {
        return Some(format!(
            "progress lines did not arrive while the task ran: {progress:?}"
        ));
    }
    None
}

/// Applies a check of the system's state after a step: the step fails when `problem` is
/// `Some`, and the reason is printed.
fn verify(r: StepResult, what: &str, problem: Option<String>) -> StepResult {
    if !r.ok {
        return r;
    }
    match problem {
        None => {
            println!("  ✓ {what}");
            r
        }
        Some(p) => {
            println!("  → FAILED: {what}: {p}");
            StepResult { ok: false, ..r }
        }
    }
}

/// The `hwaddr=` option of a container's `net0`, if any.
fn net0_mac(state: &felhom_tests::pve_sim::SimState, vmid: u32) -> Option<String> {
    let cfg = state.container_config(vmid)?;
    let net0 = cfg.get("net0")?.as_str()?.to_string();
    net0.split(',')
        .find_map(|o| o.strip_prefix("hwaddr="))
        .map(str::to_ascii_uppercase)
}

/// Whether `argv` has `flag` immediately followed by `value`.
fn has_pair(argv: &[String], flag: &str, value: &str) -> bool {
    argv.windows(2).any(|w| w[0] == flag && w[1] == value)
}

fn expect(what: &'static str) -> impl Fn(&str) -> Option<String> {
    move |out: &str| {
        if out.contains(what) {
            None
        } else {
            Some(format!("output does not mention {what:?}"))
        }
    }
}

async fn tour(sb: &Sandbox) -> Vec<StepResult> {
    let state = sb.sim.state();
    let mut results = Vec::new();
    results.push(
        step(
            sb,
            "health report (read-only)",
            &["selftest"],
            expect("overall: ok"),
        )
        .await,
    );
    results.push(
        step(
            sb,
            "health report + snapshot → rollback → delete on CT 100",
            &["selftest", "--task", "100"],
            expect("snapshot delete 100"),
        )
        .await,
    );
    let archive = state.backups("local", 101).into_iter().next();
    match archive {
        Some(archive) => {
            let r = step(
                sb,
                "restore CT 101's backup as CT 201 (new MAC, new hostname)",
                &[
                    "restore",
                    &archive,
                    "--vmid",
                    "201",
                    "--storage",
                    "local-lvm",
                    "--hostname",
                    "db-restored",
                ],
                expect("new MAC addresses assigned by Proxmox at restore"),
            )
            .await;
            let problem = if state.container_exists(201) {
                let (old, new) = (net0_mac(&state, 101), net0_mac(&state, 201));
                match (&old, &new) {
                    (Some(o), Some(n)) if o == n => {
                        Some(format!("CT 201's net0 still has CT 101's MAC {o}"))
                    }
                    _ => None,
                }
            } else {
                Some("the simulator has no CT 201".into())
            };
            results.push(verify(
                r,
                "CT 201's net0 MAC differs from CT 101's (checked in the simulator)",
                problem,
            ));
        }
        None => {
            println!("\n── restore: FAILED: the simulator has no backup of CT 101");
            results.push(StepResult {
                title: "restore".into(),
                ok: false,
            });
        }
    }
    // The restore drill: CT 101's newest backup restored as a disconnected copy, booted,
    // checked for a settle time, stopped and destroyed.
    let r = step(
        sb,
        "restore drill: CT 101's newest backup as CT 9050 (link_down), booted, destroyed",
        &[
            "backup",
            "verify",
            "101",
            "--scratch-vmid",
            "9050",
            "--settle",
            "2",
        ],
        expect("PASSED"),
    )
    .await;
    let problem = state
        .container_exists(9050)
        .then(|| "the scratch guest CT 9050 is still there".to_string());
    results.push(verify(
        r,
        "the scratch guest CT 9050 is gone (checked in the simulator)",
        problem,
    ));
    // A slower task, so the live progress has something to show.
    state.set_task_duration(Duration::from_millis(1500));
    results.push(
        step_full(
            sb,
            "back up CT 100 to storage local (progress on stderr; the archive named by the task log)",
            &["backup", "100", "--storage", "local", "--mode", "snapshot"],
            0,
            |out, err| {
                if !out.contains("archive: local:backup/vzdump-lxc-100-") {
                    return Some("output does not mention the archive".into());
                }
                if !out.contains("(named in the task log, listed by the storage)") {
                    return Some("the archive was not taken from the task log".into());
                }
                if !err.contains("creating vzdump archive '/var/lib/vz/dump/vzdump-lxc-100-") {
                    return Some("the task log line naming the archive was not shown".into());
                }
                backup_progress(err)
            },
        )
        .await,
    );
    state.set_task_duration(Duration::from_millis(200));
    // A failing task: CT 101 is locked by a snapshot in progress; the agent must say why,
    // although the log's last lines are only `Backup job finished with errors` and
    // `TASK ERROR: job errors`.
    state.set_lock(101, Some("snapshot"));
    results.push(
        step_full(
            sb,
            "back up CT 101 while it is locked: a failing task and its reason",
            &["--quiet", "backup", "101", "--storage", "local"],
            1,
            |_, err| {
                let want = "ERROR: Backup of VM 101 failed - CT is locked (snapshot)";
                (!err.contains(want)).then(|| format!("stderr does not say {want:?}"))
            },
        )
        .await,
    );
    state.set_lock(101, None);
    let r = step(
        sb,
        "golden image through the helper (pct create, keyctl + nesting)",
        &[
            "golden-image",
            "create",
            "--vmid",
            "9000",
            "--template",
            TEMPLATE,
            "--hostname",
            "golden",
            "--storage",
            "local-lvm",
        ],
        expect("golden image CT 9000 created"),
    )
    .await;
    let creates: Vec<Vec<String>> = sb
        .helper
        .tool_calls()
        .into_iter()
        .filter(|c| {
            c.first().is_some_and(|t| t == "pct") && c.get(1).is_some_and(|a| a == "create")
        })
        .collect();
    let problem = match creates.last() {
        None => Some("the fake pct recorded no `pct create`".to_string()),
        Some(argv) if !has_pair(argv, "--features", "keyctl=1,nesting=1") => {
            Some(format!("no `--features keyctl=1,nesting=1` in {argv:?}"))
        }
        Some(argv) if !has_pair(argv, "--unprivileged", "1") => {
            Some(format!("no `--unprivileged 1` in {argv:?}"))
        }
        Some(_) => None,
    };
    results.push(verify(
        r,
        "the fake pct ran `pct create … --unprivileged 1 --features keyctl=1,nesting=1`",
        problem,
    ));
    let mount_point = sb.helper.mount_root().join("sandbox-usb");
    let mp = mount_point.display().to_string();
    results.push(
        step(
            sb,
            "mount a USB filesystem by UUID in the temporary mount root",
            &["usb", "mount", USB_UUID, "--name", "sandbox-usb"],
            move |out: &str| (!out.contains(&mp)).then(|| format!("not mounted at {mp}")),
        )
        .await,
    );
    results.push(
        step(
            sb,
            "list managed mounts",
            &["usb", "list"],
            expect("sandbox-usb"),
        )
        .await,
    );
    results.push(
        step(
            sb,
            "unmount it",
            &["usb", "unmount", "sandbox-usb"],
            expect("unmounted sandbox-usb"),
        )
        .await,
    );
    results.push(
        step(
            sb,
            "SMART summary of the fake disks",
            &["smart"],
            expect("Felhom Sandbox NVMe 1TB"),
        )
        .await,
    );
    results.push(
        step(
            sb,
            "hardware sensors from the fake hwmon tree",
            &["sensors"],
            expect("Package id 0"),
        )
        .await,
    );
    results.push(service_step(sb).await);
    results
}

/// The service: `felhom-agent run` with a restore drill schedule for CT 101 (settings from
/// the environment, as a systemd drop-in would set them), until its first drill shows in
/// `health.json` and the metrics; then SIGTERM.
async fn service_step(sb: &Sandbox) -> StepResult {
    let title = "the service: run with a drill schedule for CT 101 (health.json, metrics, SIGTERM)";
    println!();
    println!("── {title}");
    println!(
        "$ FELHOM_INTERVAL_SECS=0.5 FELHOM_DRILL_GUESTS=101 FELHOM_DRILL_SETTLE_SECS=1 felhom-agent run"
    );
    let failed = |why: String| {
        println!("  → FAILED: {why}");
        StepResult {
            title: title.into(),
            ok: false,
        }
    };
    let state_dir = match sb.config.parent() {
        Some(d) => d.join("state"),
        None => return failed("the agent config has no directory".into()),
    };
    let started = Instant::now();
    let child = tokio::process::Command::new(bins::agent())
        .arg("--config")
        .arg(&sb.config)
        .arg("run")
        .env("FELHOM_INTERVAL_SECS", "0.5")
        .env("FELHOM_DRILL_GUESTS", "101")
        .env("FELHOM_DRILL_SETTLE_SECS", "1")
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let child = match child {
        Ok(c) => c,
        Err(e) => return failed(format!("cannot run felhom-agent: {e}")),
    };
    let health = state_dir.join("health.json");
    let mut drill = None;
    while started.elapsed() < Duration::from_secs(60) {
        let v: Option<serde_json::Value> = std::fs::read(&health)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        if let Some(r) = v.as_ref().and_then(|v| {
            v["drills"]["last"]
                .as_array()
                .and_then(|l| l.iter().find(|r| r["vmid"] == 101).cloned())
        }) {
            drill = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Let the next cycle write the metrics with the drill in them.
    tokio::time::sleep(Duration::from_millis(800)).await;
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    let out = match tokio::time::timeout(Duration::from_secs(60), child.wait_with_output()).await {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => return failed(format!("waiting for the service: {e}")),
        Err(_) => return failed("the service did not exit within 60 s of SIGTERM".into()),
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    for l in stderr
        .lines()
        .filter(|l| l.contains("drill"))
        .take(SHOWN_LINES)
    {
        println!("  stderr (log): {l}");
    }
    let Some(drill) = drill else {
        return failed("no drill of CT 101 in health.json within 60 s".into());
    };
    println!(
        "  health.json drills.last: CT 101 passed={} scratch CT {} archive {} in {:.1}s",
        drill["passed"],
        drill["scratch_vmid"],
        drill["archive"],
        drill["duration_seconds"].as_f64().unwrap_or(0.0)
    );
    let metrics = std::fs::read_to_string(state_dir.join("felhom-agent.prom")).unwrap_or_default();
    for l in metrics
        .lines()
        .filter(|l| l.starts_with("felhom_backup_drill_") && l.contains("vmid=\"101\""))
    {
        println!("  metrics: {l}");
    }
    if drill["passed"] != true {
        return failed(format!("the scheduled drill failed: {}", drill["failure"]));
    }
    if !metrics.contains("felhom_backup_drill_success{node=\"pve\",vmid=\"101\"} 1") {
        return failed("the metrics file has no felhom_backup_drill_success 1 for CT 101".into());
    }
    if out.status.code() != Some(0) {
        return failed(format!("the service exited with {}", out.status));
    }
    if let Some(scratch) = drill["scratch_vmid"]
        .as_u64()
        .and_then(|v| u32::try_from(v).ok())
    {
        if sb.sim.state().container_exists(scratch) {
            return failed(format!("the drill's copy CT {scratch} is still there"));
        }
        println!("  ✓ the drill's copy CT {scratch} is gone (checked in the simulator)");
    }
    println!(
        "  → ok (exit 0 after SIGTERM, {} ms)",
        started.elapsed().as_millis()
    );
    StepResult {
        title: title.into(),
        ok: true,
    }
}

async fn run() -> anyhow::Result<bool> {
    let sb = setup().await?;
    // Ctrl-C ends the tour; the sandbox is still dropped, so nothing is left behind.
    let results = tokio::select! {
        r = tour(&sb) => r,
        _ = tokio::signal::ctrl_c() => {
            println!("\ninterrupted; cleaning up");
            drop(sb);
            return Ok(false);
        }
    };
    let failed: Vec<&str> = results
        .iter()
        .filter(|r| !r.ok)
        .map(|r| r.title.as_str())
        .collect();
    println!();
    println!(
        "sandbox: {}/{} steps ok{}",
        results.len() - failed.len(),
        results.len(),
        if failed.is_empty() {
            String::new()
        } else {
            format!("; failed: {}", failed.join("; "))
        }
    );
    if !failed.is_empty() {
        let log = sb.helper.log();
        let tail: Vec<&str> = log.lines().rev().take(15).collect();
        println!("\nlast lines of the helper's log:");
        for l in tail.iter().rev() {
            println!("  {l}");
        }
    }
    // Dropping the sandbox stops the helper and the simulator and removes the directories.
    drop(sb);
    Ok(failed.is_empty())
}

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("felhom-sandbox: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("felhom-sandbox: {e:#}");
            ExitCode::FAILURE
        }
    }
}
