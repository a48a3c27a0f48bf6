//! Command handlers: each turns parsed arguments into typed API or helper calls and an
//! [`Outcome`].

use std::fmt::Write as _;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use felhom_protocol::{GoldenImageRequest, UsbMountRequest, Vmid};
use serde::Serialize;
use serde_json::json;

use super::output::{Outcome, Table, bytes, opt, uptime};
use super::progress::{self, ProgressMode};
use super::{
    Cli, CliError, Command, GoldenImageAction, GoldenImageArgs, RollbackArgs, SnapshotAction,
    UsbAction,
};
use crate::config::AgentConfig;
use crate::helper_client::HelperClient;
use crate::pve::{
    ConfigKey, GuestState, PveClient, RestoreRequest, SnapshotName, TaskSuccess, Upid, WaitOptions,
};
use crate::report::{self, HealthReport};
use crate::smart::{Health, SmartSummary, summarize};

/// How long short tasks (snapshot, start, stop) may take.
pub(super) const SHORT_TASK: Duration = Duration::from_secs(15 * 60);
/// How long backup and restore may take.
pub(super) const LONG_TASK: Duration = Duration::from_secs(6 * 3600);

/// The config keys `set-config` accepts, for the usage message.
pub const ALLOWED_CONFIG_KEYS: &str = "cores, cpulimit, cpuunits, memory, swap, hostname, description, onboot, startup, nameserver, searchdomain, tags, protection, net0..net31, mp0..mp255";

fn load_config(cli: &Cli) -> Result<AgentConfig, CliError> {
    Ok(AgentConfig::load(cli.config.as_deref())?)
}

pub(super) fn pve_client(config: &AgentConfig) -> Result<PveClient, CliError> {
    let settings = config.api_settings()?;
    Ok(PveClient::new(&settings)?)
}

pub(super) async fn dispatch(cli: Cli) -> Result<Outcome, CliError> {
    // Commands that only talk to the helper need no API settings, so they work on a host
    // whose agent.json is not written yet.
    let helper_only = || -> Result<HelperClient, CliError> {
        let socket = AgentConfig::load_helper_socket(cli.config.as_deref())?;
        Ok(HelperClient::new(&socket))
    };
    match &cli.command {
        Command::GoldenImage {
            action: GoldenImageAction::Create(args),
        } => return golden_image(&helper_only()?, args).await,
        Command::Usb { action } => return usb(&helper_only()?, action).await,
        Command::Smart { disk } => return smart(&helper_only()?, disk.clone()).await,
        Command::Sensors => return sensors(&helper_only()?).await,
        _ => {}
    }
    let config = load_config(&cli)?;
    let helper = || HelperClient::new(&config.helper_socket);
    let pm = ProgressMode::detect(cli.quiet, cli.json);
    match &cli.command {
        Command::Selftest { task } => selftest(&config, &helper(), *task, pm).await,
        Command::Guests => guests(&pve_client(&config)?).await,
        Command::Guest { vmid } => guest(&pve_client(&config)?, *vmid).await,
        Command::Snapshot { action } => snapshot(&pve_client(&config)?, action, pm).await,
        Command::Backup {
            vmid,
            storage,
            mode,
            prune,
        } => super::backup::backup(&pve_client(&config)?, *vmid, storage, *mode, *prune, pm).await,
        Command::Restore {
            archive,
            vmid,
            storage,
            unique,
            force,
            hostname,
            keep_identity,
        } => {
            let req = RestoreRequest {
                vmid: *vmid,
                archive: archive.clone(),
                storage: storage.clone(),
                unique: *unique,
                force: *force,
                start: false,
                hostname: None,
            };
            let identity = if *keep_identity {
                None
            } else {
                Some(hostname.as_ref().map(|h| h.to_string()))
            };
            super::backup::restore(&pve_client(&config)?, req, identity, pm).await
        }
        Command::Start { vmid } => power(&pve_client(&config)?, *vmid, true, pm).await,
        Command::Stop { vmid } => power(&pve_client(&config)?, *vmid, false, pm).await,
        Command::Shutdown {
            vmid,
            timeout,
            force_stop,
        } => super::power::shutdown(&pve_client(&config)?, *vmid, *timeout, *force_stop, pm).await,
        Command::SetConfig { vmid, changes } => {
            let change = parse_changes(changes)?;
            super::setconfig::set_config(&pve_client(&config)?, *vmid, change).await
        }
        Command::Storage { action: None } => storage(&pve_client(&config)?).await,
        Command::Storage {
            action: Some(action),
        } => super::storage::run(&pve_client(&config)?, action).await,
        Command::Tasks { action } => {
            super::tasks::run(&pve_client(&config)?, action, cli.json, pm).await
        }
        Command::GoldenImage { .. }
        | Command::Usb { .. }
        | Command::Smart { .. }
        | Command::Sensors => unreachable_helper_only(),
        Command::Run => {
            let pve = pve_client(&config)?;
            crate::service::run(&config, pve, helper())
                .await
                .map_err(|e| CliError::Failed(e.to_string()))?;
            Ok(Outcome::new(&json!({ "ok": true }), String::new()))
        }
    }
}

/// The helper-only commands return before the full configuration is loaded.
fn unreachable_helper_only() -> Result<Outcome, CliError> {
    Err(CliError::Failed(
        "internal error: a helper-only command reached the API dispatch".into(),
    ))
}

// ---- selftest ---------------------------------------------------------------------------

/// One step of the `selftest --task` exercise.
#[derive(Debug, Clone, Serialize)]
struct Step {
    step: String,
    ok: bool,
    upid: Option<String>,
    exitstatus: Option<String>,
    message: Option<String>,
    millis: u128,
}

async fn run_step<F>(pve: &PveClient, step: &str, start: F, pm: ProgressMode) -> Step
where
    F: std::future::Future<Output = Result<Upid, crate::pve::PveError>>,
{
    let t = Instant::now();
    let result = match start.await {
        Ok(upid) => progress::wait(pve, &upid, WaitOptions::with_timeout(SHORT_TASK), pm)
            .await
            .map(|s| (upid, s)),
        Err(e) => Err(e),
    };
    let millis = t.elapsed().as_millis();
    match result {
        Ok((upid, s)) => Step {
            step: step.to_string(),
            ok: true,
            upid: Some(upid.to_string()),
            exitstatus: Some(s.exitstatus),
            message: None,
            millis,
        },
        Err(e) => Step {
            step: step.to_string(),
            ok: false,
            upid: None,
            exitstatus: None,
            message: Some(e.to_string()),
            millis,
        },
    }
}

/// snapshot → rollback → delete snapshot on `vmid`. The snapshot is deleted even when the
/// rollback fails, so the exercise leaves nothing behind.
async fn task_exercise(pve: &PveClient, vmid: Vmid, pm: ProgressMode) -> Vec<Step> {
    let ts = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let name = match SnapshotName::new(&format!("felhom-selftest-{ts}")) {
        Ok(n) => n,
        Err(e) => {
            return vec![Step {
                step: "snapshot name".into(),
                ok: false,
                upid: None,
                exitstatus: None,
                message: Some(e.to_string()),
                millis: 0,
            }];
        }
    };
    let running = match pve.container_status(vmid).await {
        Ok(s) => s.status == GuestState::Running,
        Err(e) => {
            return vec![Step {
                step: format!("read CT {vmid}"),
                ok: false,
                upid: None,
                exitstatus: None,
                message: Some(e.to_string()),
                millis: 0,
            }];
        }
    };
    let mut steps = Vec::new();
    let create = run_step(
        pve,
        &format!("snapshot create {vmid} {name}"),
        pve.snapshot_create(vmid, &name, Some("felhom-agent selftest (removed at once)")),
        pm,
    )
    .await;
    let created = create.ok;
    steps.push(create);
    if !created {
        return steps;
    }
    steps.push(
        run_step(
            pve,
            &format!("snapshot rollback {vmid} {name}"),
            pve.snapshot_rollback(vmid, &name, running),
            pm,
        )
        .await,
    );
    steps.push(
        run_step(
            pve,
            &format!("snapshot delete {vmid} {name}"),
            pve.snapshot_delete(vmid, &name),
            pm,
        )
        .await,
    );
    steps
}

fn render_report(r: &HealthReport) -> String {
    let mut t = Table::new(&["SECTION", "STATUS", "DETAIL"]);
    let pve_detail = r.pve.data.as_ref().map(|p| {
        format!(
            "Proxmox VE {} (up {}, load {})",
            p.version.version,
            opt(p.node_status.uptime.map(uptime)),
            p.node_status
                .loadavg
                .first()
                .map_or_else(|| "-".to_string(), |l| format!("{l:.2}"))
        )
    });
    let guests_detail = r.guests.data.as_ref().map(|g| {
        let running = g.iter().filter(|c| c.status == GuestState::Running).count();
        format!("{} containers, {running} running", g.len())
    });
    let storage_detail = r.storage.data.as_ref().map(|s| {
        let active = s.iter().filter(|e| e.active).count();
        format!("{} storages, {active} active", s.len())
    });
    let helper_detail = r.helper.data.as_ref().map(|h| {
        format!(
            "felhom-helper {} at {}, protocol {}, mounts: {}",
            h.helper_version, h.socket, h.protocol_version, h.mount_backend
        )
    });
    let smart_detail = r.smart.data.as_ref().map(|d| {
        let parts: Vec<String> = d
            .iter()
            .map(|x| {
                let h = x
                    .summary
                    .as_ref()
                    .map_or("unreadable", |s| s.health.as_str());
                format!("{} {h}", x.disk)
            })
            .collect();
        format!("{} disks: {}", d.len(), parts.join(", "))
    });
    let sensors_detail = r
        .sensors
        .data
        .as_ref()
        .map(|s| format!("{} readings", s.len()));
    for (name, (status, message), detail) in [
        ("pve", (r.pve.status, &r.pve.message), pve_detail),
        (
            "guests",
            (r.guests.status, &r.guests.message),
            guests_detail,
        ),
        (
            "storage",
            (r.storage.status, &r.storage.message),
            storage_detail,
        ),
        (
            "helper",
            (r.helper.status, &r.helper.message),
            helper_detail,
        ),
        ("smart", (r.smart.status, &r.smart.message), smart_detail),
        (
            "sensors",
            (r.sensors.status, &r.sensors.message),
            sensors_detail,
        ),
    ] {
        let mut d = detail.unwrap_or_default();
        if let Some(m) = message {
            if !d.is_empty() {
                d.push_str(" — ");
            }
            d.push_str(m);
        }
        t.row(vec![name.to_string(), status.as_str().to_string(), d]);
    }
    let mut out = t.render("");
    let _ = writeln!(out, "overall: {}", r.one_line());
    out
}

/// Warns (stderr) about certificates the API connection relies on that expire within
/// `warn_days`: the one the server presented (the pinned leaf with `tls_fingerprint`) and
/// those in `tls_ca_file`. A warning does not fail the selftest. Returns the `--json` field.
fn tls_expiry(pve: &PveClient, warn_days: u32) -> serde_json::Value {
    let dates = pve.cert_dates();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let warnings = dates.warnings(now, warn_days);
    for w in &warnings {
        eprintln!("felhom-agent: warning: {}", w.message);
    }
    json!({
        "warn_days": warn_days,
        "server_not_after": dates.server_not_after,
        "ca_file_not_after": dates.ca_file_not_after,
        "warnings": warnings,
    })
}

async fn selftest(
    config: &AgentConfig,
    helper: &HelperClient,
    task: Option<Vmid>,
    pm: ProgressMode,
) -> Result<Outcome, CliError> {
    let settings = config.api_settings()?;
    let pve = PveClient::new(&settings).map_err(|e| e.to_string());
    let report = report::collect(pve.as_ref().map_err(Clone::clone), helper).await;
    let mut human = render_report(&report);
    let mut failed = report.is_degraded();
    let mut doc = json!({ "report": report });
    if let Ok(pve) = &pve {
        doc["tls_expiry"] = tls_expiry(pve, config.tls_expiry_warn_days);
    }
    if let Some(vmid) = task {
        let steps = match &pve {
            Ok(pve) => task_exercise(pve, vmid, pm).await,
            Err(e) => vec![Step {
                step: "connect".into(),
                ok: false,
                upid: None,
                exitstatus: None,
                message: Some(e.clone()),
                millis: 0,
            }],
        };
        let _ = writeln!(human, "\ntask exercise on CT {vmid}:");
        for s in &steps {
            let _ = writeln!(
                human,
                "  {:<4} {} ({} ms){}",
                if s.ok { "ok" } else { "FAIL" },
                s.step,
                s.millis,
                match (&s.exitstatus, &s.message) {
                    (_, Some(m)) => format!(": {m}"),
                    (Some(x), None) => format!(": {x}"),
                    _ => String::new(),
                }
            );
        }
        let all_ok = steps.len() == 3 && steps.iter().all(|s| s.ok);
        failed |= !all_ok;
        doc["task_exercise"] = json!({ "vmid": vmid, "ok": all_ok, "steps": steps });
    }
    doc["ok"] = json!(!failed);
    Ok(Outcome {
        json: doc,
        human,
        failed,
    })
}

// ---- Proxmox commands -------------------------------------------------------------------

async fn guests(pve: &PveClient) -> Result<Outcome, CliError> {
    let list = pve.containers().await?;
    let mut t = Table::new(&["VMID", "STATUS", "NAME", "MEMORY", "UPTIME", "LOCK"]);
    for c in &list {
        t.row(vec![
            c.vmid.to_string(),
            format!("{:?}", c.status).to_lowercase(),
            opt(c.name.as_deref()),
            match (c.mem, c.maxmem) {
                (Some(m), Some(x)) => format!("{} / {}", bytes(m), bytes(x)),
                (_, Some(x)) => bytes(x),
                _ => "-".into(),
            },
            opt(c.uptime.filter(|u| *u > 0).map(uptime)),
            opt(c.lock.as_deref()),
        ]);
    }
    Ok(Outcome::new(&list, t.render("no containers")))
}

/// The longest config value `guest` shows on a terminal (`--json` has it whole).
const GUEST_VALUE_MAX: usize = 1024;

/// `felhom-agent guest VMID`: status and config, raw `lxc.*` lines included.
async fn guest(pve: &PveClient, vmid: Vmid) -> Result<Outcome, CliError> {
    let (status, config) = tokio::join!(pve.container_status(vmid), pve.container_config(vmid));
    let (status, config) = (status?, config?);
    // Every key and value comes from the container's config, which its owner writes (a
    // description can hold escape sequences and line breaks): cleaned before the terminal.
    let clean = |s: &str| crate::pve::error::clean_text(s, GUEST_VALUE_MAX);
    let mut human = format!(
        "CT {vmid}: {} ({})\n",
        format!("{:?}", status.status).to_lowercase(),
        clean(&opt(status.name.as_deref()))
    );
    let mut t = Table::new(&["KEY", "VALUE"]);
    for (k, v) in config
        .entries
        .iter()
        .chain(config.lxc.iter().map(|(k, v)| (k, v)))
    {
        t.row(vec![clean(k), clean(v)]);
    }
    human.push_str(&t.render("(empty config)"));
    Ok(Outcome::new(
        &json!({ "status": status, "config": config }),
        human,
    ))
}

pub(super) fn task_line(what: &str, s: &TaskSuccess) -> String {
    let mut line = format!("{what}: {} (task {})\n", s.exitstatus, s.upid);
    for w in &s.warnings {
        let _ = writeln!(line, "  warning: {w}");
    }
    if s.warnings_omitted > 0 {
        let _ = writeln!(
            line,
            "  … {} more warnings in the task log",
            s.warnings_omitted
        );
    }
    line
}

pub(super) fn task_json(s: &TaskSuccess) -> serde_json::Value {
    json!({ "upid": s.upid.to_string(), "exitstatus": s.exitstatus, "warnings": s.warnings, "warnings_omitted": s.warnings_omitted })
}

async fn snapshot(
    pve: &PveClient,
    action: &SnapshotAction,
    pm: ProgressMode,
) -> Result<Outcome, CliError> {
    let (verb, args, upid) = match action {
        SnapshotAction::Create(a) => (
            "create",
            a,
            pve.snapshot_create(a.vmid, &a.name, None).await?,
        ),
        SnapshotAction::Delete(a) => ("delete", a, pve.snapshot_delete(a.vmid, &a.name).await?),
        SnapshotAction::Rollback(a) => return rollback(pve, a, pm).await,
    };
    let done = progress::wait(pve, &upid, WaitOptions::with_timeout(SHORT_TASK), pm).await?;
    let what = format!("snapshot {verb} {} on CT {}", args.name, args.vmid);
    Ok(Outcome::new(
        &json!({ "ok": true, "action": verb, "vmid": args.vmid, "snapshot": args.name.as_str(), "task": task_json(&done) }),
        task_line(&what, &done),
    ))
}

/// How long `snapshot rollback --start` waits for the container to be running after the
/// rollback task: the start is a task of its own that the rollback worker begins at its end
/// (pve-container `src/PVE/API2/LXC/Snapshot.pm`, `rollback`: `vm_start` when `start`).
const ROLLBACK_START_WAIT: Duration = Duration::from_secs(60);

/// `snapshot rollback`: Proxmox stops a running container for the rollback and starts it
/// again only with `start=1` (`--start`). The report says the state the container is in
/// afterwards, read from `status/current`, and whether it was running before.
async fn rollback(
    pve: &PveClient,
    a: &RollbackArgs,
    pm: ProgressMode,
) -> Result<Outcome, CliError> {
    let vmid = a.target.vmid;
    let before = pve.container_status(vmid).await.ok().map(|s| s.status);
    let upid = pve.snapshot_rollback(vmid, &a.target.name, a.start).await?;
    let done = progress::wait(pve, &upid, WaitOptions::with_timeout(SHORT_TASK), pm).await?;
    let deadline = tokio::time::Instant::now() + ROLLBACK_START_WAIT;
    let after = loop {
        let now = pve.container_status(vmid).await.ok().map(|s| s.status);
        if !a.start || now == Some(GuestState::Running) || tokio::time::Instant::now() >= deadline {
            break now;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let state_name = |s: Option<GuestState>| match s {
        Some(GuestState::Running) => "running",
        Some(GuestState::Stopped) => "stopped",
        _ => "unknown",
    };
    let was_running = before == Some(GuestState::Running);
    let mut human = task_line(
        &format!("snapshot rollback {} on CT {vmid}", a.target.name),
        &done,
    );
    let failed = a.start && after != Some(GuestState::Running);
    match after {
        Some(GuestState::Running) if a.start => {
            human.push_str(&format!("CT {vmid} is running (started after the rollback)\n"));
        }
        Some(GuestState::Running) => human.push_str(&format!("CT {vmid} is running\n")),
        Some(GuestState::Stopped) if a.start => human.push_str(&format!(
            "CT {vmid} is stopped: the start after the rollback did not bring it up within {} s (see `felhom-agent tasks list --errors`)\n",
            ROLLBACK_START_WAIT.as_secs()
        )),
        Some(GuestState::Stopped) if was_running => human.push_str(&format!(
            "CT {vmid} is now stopped: Proxmox stopped it for the rollback (start it with `felhom-agent start {vmid}`, or roll back with --start)\n"
        )),
        Some(GuestState::Stopped) => human.push_str(&format!("CT {vmid} is stopped\n")),
        _ => human.push_str(&format!(
            "CT {vmid}'s state after the rollback is unknown (status/current could not be read or named no known state)\n"
        )),
    }
    Ok(Outcome::new(
        &json!({
            "ok": !failed, "action": "rollback", "vmid": vmid,
            "snapshot": a.target.name.as_str(), "task": task_json(&done),
            "start": a.start, "was": state_name(before), "state": state_name(after),
        }),
        human,
    )
    .failed(failed))
}

async fn power(
    pve: &PveClient,
    vmid: Vmid,
    start: bool,
    pm: ProgressMode,
) -> Result<Outcome, CliError> {
    let upid = if start {
        pve.start(vmid).await?
    } else {
        pve.stop(vmid).await?
    };
    let done = progress::wait(pve, &upid, WaitOptions::with_timeout(SHORT_TASK), pm).await?;
    let verb = if start { "start" } else { "stop" };
    let (ha_line, ha, failed) =
        super::ha::follow(pve, vmid, &upid, start, super::ha::HA_WAIT).await;
    Ok(Outcome::new(
        &json!({ "ok": !failed, "action": verb, "vmid": vmid, "task": task_json(&done), "ha": ha }),
        task_line(&format!("{verb} CT {vmid}"), &done) + &ha_line,
    )
    .failed(failed))
}

/// Parses `KEY=VALUE` arguments through the typed allowlist; any problem is a usage error.
pub fn parse_changes(changes: &[String]) -> Result<Vec<(ConfigKey, String)>, CliError> {
    let mut out = Vec::new();
    for c in changes {
        let Some((k, v)) = c.split_once('=') else {
            return Err(CliError::Usage(format!(
                "{c:?} is not KEY=VALUE (allowed keys: {ALLOWED_CONFIG_KEYS})"
            )));
        };
        let key: ConfigKey = k.parse().map_err(|_| {
            CliError::Usage(format!(
                "config key {k:?} is not allowed (allowed keys: {ALLOWED_CONFIG_KEYS})"
            ))
        })?;
        key.check_value(v)
            .map_err(|e| CliError::Usage(e.to_string()))?;
        if out.iter().any(|(seen, _)| *seen == key) {
            return Err(CliError::Usage(format!("config key {k} given twice")));
        }
        out.push((key, v.to_string()));
    }
    Ok(out)
}

async fn storage(pve: &PveClient) -> Result<Outcome, CliError> {
    let list = pve.storages().await?;
    let mut t = Table::new(&["STORAGE", "TYPE", "ACTIVE", "USED", "TOTAL", "CONTENT"]);
    for s in &list {
        t.row(vec![
            s.storage.clone(),
            s.storage_type.clone(),
            if s.active { "yes" } else { "no" }.into(),
            opt(s.used.map(bytes)),
            opt(s.total.map(bytes)),
            s.content.clone(),
        ]);
    }
    Ok(Outcome::new(&list, t.render("no storages")))
}

// ---- helper commands --------------------------------------------------------------------

async fn golden_image(helper: &HelperClient, a: &GoldenImageArgs) -> Result<Outcome, CliError> {
    let req = GoldenImageRequest {
        vmid: a.vmid,
        template: a.template.clone(),
        hostname: a.hostname.clone(),
        storage: a.storage.clone(),
        rootfs_gib: a.rootfs_gb,
        memory_mib: a.memory_mb,
        cores: a.cores,
        bridge: a.bridge.clone(),
    };
    let reply = helper.golden_image_create(req).await?;
    let mut human = format!(
        "golden image CT {} created from {} (keyctl=1, nesting=1, unprivileged)\n",
        reply.vmid, a.template
    );
    for line in reply
        .output
        .stdout
        .lines()
        .rev()
        .take(3)
        .collect::<Vec<_>>()
        .iter()
        .rev()
    {
        let _ = writeln!(human, "  pct: {line}");
    }
    Ok(Outcome::new(
        &json!({ "ok": true, "vmid": reply.vmid, "output": reply.output }),
        human,
    ))
}

async fn usb(helper: &HelperClient, action: &UsbAction) -> Result<Outcome, CliError> {
    match action {
        UsbAction::Mount { uuid, name } => {
            let m = helper
                .usb_mount(UsbMountRequest {
                    uuid: uuid.clone(),
                    name: name.clone(),
                })
                .await?;
            let human = format!(
                "mounted {} ({}) at {} [{}]{}\n",
                m.uuid,
                m.fstype,
                m.mount_point,
                m.options,
                m.unit
                    .as_deref()
                    .map_or_else(String::new, |u| format!(", unit {u}"))
            );
            Ok(Outcome::new(&m, human))
        }
        UsbAction::Unmount { name } => {
            let r = helper.usb_unmount(name.clone()).await?;
            let human = if r.was_mounted {
                format!("unmounted {} and removed its record\n", r.name)
            } else {
                format!("{} was not mounted; its record was removed\n", r.name)
            };
            Ok(Outcome::new(&r, human))
        }
        UsbAction::List => {
            let list = helper.usb_list().await?;
            let mut t = Table::new(&[
                "NAME",
                "UUID",
                "FSTYPE",
                "MOUNT POINT",
                "MOUNTED",
                "BACKEND",
            ]);
            for m in &list {
                t.row(vec![
                    m.name.to_string(),
                    m.uuid.to_string(),
                    m.fstype.to_string(),
                    m.mount_point.clone(),
                    if m.mounted { "yes" } else { "no" }.into(),
                    format!("{:?}", m.backend).to_lowercase(),
                ]);
            }
            Ok(Outcome::new(&list, t.render("no managed mounts")))
        }
    }
}

/// One disk's row in `smart`.
#[derive(Debug, Serialize)]
struct SmartRow {
    disk: String,
    summary: Option<SmartSummary>,
    error: Option<String>,
}

fn render_smart(rows: &[SmartRow]) -> String {
    let mut t = Table::new(&[
        "DISK", "HEALTH", "MODEL", "SERIAL", "TEMP", "POWER-ON", "REALLOC", "PENDING",
    ]);
    for r in rows {
        match &r.summary {
            Some(s) => t.row(vec![
                r.disk.clone(),
                if s.no_smart_support {
                    "no SMART".into()
                } else {
                    s.health.as_str().into()
                },
                opt(s.model.as_deref()),
                opt(s.serial.as_deref()),
                opt(s.temperature_c.map(|t| format!("{t}°C"))),
                opt(s.power_on_hours.map(|h| format!("{h} h"))),
                opt(s.reallocated_sectors),
                opt(s.pending_sectors),
            ]),
            None => t.row(vec![r.disk.clone(), "unreadable".into()]),
        }
    }
    let mut out = t.render("no disks");
    for r in rows {
        if let Some(e) = &r.error {
            let _ = writeln!(out, "{}: {e}", r.disk);
        }
        let Some(s) = &r.summary else { continue };
        if let Some(n) = &s.nvme {
            let _ = writeln!(
                out,
                "{}: NVMe critical warning 0x{:02x}{}, {}% used, {} media errors",
                r.disk,
                n.critical_warning,
                if n.critical_warning_bits.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", n.critical_warning_bits.join(", "))
                },
                opt(n.percentage_used),
                opt(n.media_errors)
            );
        }
        if s.exit_status != 0 {
            let bits: Vec<String> = s
                .exit_bits
                .iter()
                .map(|b| format!("bit {}: {}", b.bit, b.meaning))
                .collect();
            let _ = writeln!(
                out,
                "{}: smartctl exit status {} = {}",
                r.disk,
                s.exit_status,
                bits.join("; ")
            );
        }
        for p in &s.problems {
            if !p.starts_with("exit bit") {
                let _ = writeln!(out, "{}: {p}", r.disk);
            }
        }
    }
    out
}

async fn smart(
    helper: &HelperClient,
    disk: Option<felhom_protocol::DiskName>,
) -> Result<Outcome, CliError> {
    let disks = match disk {
        Some(d) => vec![d],
        None => helper
            .smart_scan()
            .await?
            .into_iter()
            .map(|d| d.name)
            .collect(),
    };
    let mut rows = Vec::new();
    for d in disks {
        let row = match helper.smart_read(d.clone()).await {
            Ok(raw) => match summarize(&raw) {
                Ok(s) => SmartRow {
                    disk: d.to_string(),
                    summary: Some(s),
                    error: None,
                },
                Err(e) => SmartRow {
                    disk: d.to_string(),
                    summary: None,
                    error: Some(e.to_string()),
                },
            },
            // One disk's failure does not hide the others; a helper that cannot be reached
            // at all fails the command.
            Err(e) if e.is_unreachable() => return Err(e.into()),
            Err(e) => SmartRow {
                disk: d.to_string(),
                summary: None,
                error: Some(e.to_string()),
            },
        };
        rows.push(row);
    }
    let failed = rows.iter().any(|r| {
        r.error.is_some()
            || r.summary
                .as_ref()
                .is_some_and(|s| s.health == Health::Failing)
    });
    let human = render_smart(&rows);
    Ok(Outcome::new(&json!({ "ok": !failed, "disks": rows }), human).failed(failed))
}

async fn sensors(helper: &HelperClient) -> Result<Outcome, CliError> {
    let list = helper.sensors_read().await?;
    let mut t = Table::new(&["CHIP", "DEVICE", "SENSOR", "VALUE"]);
    for s in &list {
        t.row(vec![
            s.chip.clone(),
            s.device.clone(),
            s.label.clone(),
            format!("{} {}", s.value, s.kind.unit()),
        ]);
    }
    Ok(Outcome::new(&list, t.render("no sensors")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_config_arguments_go_through_the_allowlist() {
        let ok =
            parse_changes(&["memory=2048".into(), "net0=name=eth0,bridge=vmbr0".into()]).unwrap();
        assert_eq!(ok[0], (ConfigKey::Memory, "2048".into()));
        assert_eq!(ok[1].0, ConfigKey::Net(0));
        for bad in [
            "features=keyctl=1",
            "memory",
            "memory=lots",
            "lxc.cap.drop=x",
        ] {
            let e = parse_changes(&[bad.into()]).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad}");
        }
        let e = parse_changes(&["hookscript=local:snippets/x".into()]).unwrap_err();
        assert!(e.to_string().contains("allowed keys"), "{e}");
        assert!(parse_changes(&["cores=1".into(), "cores=2".into()]).is_err());
    }
}
