//! `selftest [--task VMID]`: the read-only health report, the certificate expiry warning, and
//! the optional snapshot → rollback → delete exercise on one container.

use std::fmt::Write as _;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use felhom_protocol::Vmid;
use serde::Serialize;
use serde_json::json;

use super::CliError;
use super::output::{Outcome, Table, opt, uptime};
use super::progress::{self, ProgressMode};
use super::task_output::SHORT_TASK;
use crate::config::AgentConfig;
use crate::helper_client::HelperClient;
use crate::pve::{GuestState, PveClient, SnapshotName, Upid, WaitOptions};
use crate::report::{self, HealthReport};

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

/// Collects the health report (and runs the task exercise with `--task`); degraded or a
/// failed step makes the outcome failed.
pub(super) async fn selftest(
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
