//! `backup verify`: one restore drill from the command line ([`crate::drill`] does the
//! work), and `backup verify --cleanup`, which removes leftovers of earlier drills.
//!
//! SIGTERM and SIGINT stop the drill; its cleanup still runs, and a second signal does not
//! cut it short.

use std::fmt::Write as _;

use serde_json::json;
use tokio::signal::unix::{SignalKind, signal};

use super::CliError;
use super::output::Outcome;
use super::progress::ProgressMode;
use crate::drill::{
    self, DRILL_TAG, DrillArgs, DrillContext, DrillError, DrillReport, Origin, ScratchRange,
    StopSignal, Voice,
};
use crate::pve::PveClient;

/// SIGTERM or SIGINT, whichever comes first.
fn signals() -> Result<StopSignal, CliError> {
    let mut term = signal(SignalKind::terminate())
        .map_err(|e| CliError::Failed(format!("cannot install the SIGTERM handler: {e}")))?;
    let mut int = signal(SignalKind::interrupt())
        .map_err(|e| CliError::Failed(format!("cannot install the SIGINT handler: {e}")))?;
    Ok(Box::pin(async move {
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        }
    }))
}

/// `felhom-agent backup verify VMID …`.
pub(super) async fn verify(
    pve: &PveClient,
    args: &DrillArgs,
    range: ScratchRange,
    pm: ProgressMode,
) -> Result<Outcome, CliError> {
    let ctx = DrillContext {
        progress: pm,
        voice: Voice::Stderr,
        on_restore_task: None,
    };
    let report = match drill::verify(pve, args, range, &ctx, signals()?).await {
        Ok(r) => r,
        Err(DrillError::Refused(m)) => return Err(CliError::Usage(m)),
        Err(DrillError::Pve(e)) => return Err(CliError::Pve(e)),
        Err(e @ (DrillError::NoBackup(_) | DrillError::Stopped(_))) => {
            return Err(CliError::Failed(e.to_string()));
        }
    };
    let human = render(&report, args.keep_on_failure);
    let failed = !report.ok;
    Ok(Outcome::new(&report, human).failed(failed))
}

/// The text report of a drill.
fn render(r: &DrillReport, keep_on_failure: bool) -> String {
    let scratch = r.scratch_vmid;
    let mut human = String::new();
    let _ = writeln!(
        human,
        "restore drill of CT {}: {}",
        r.vmid,
        if r.passed { "PASSED" } else { "FAILED" }
    );
    let _ = writeln!(
        human,
        "archive: {}{}",
        r.archive,
        match r.archive_age_seconds {
            Some(a) => format!(" (age {})", age_text(a)),
            None => " (age unknown: the storage does not list it)".into(),
        }
    );
    let _ = writeln!(human, "scratch: CT {scratch} on {}", r.target_storage);
    match r.restore_seconds {
        Some(s) => {
            let _ = writeln!(human, "restore: {s:.1}s");
        }
        None => {
            let _ = writeln!(human, "restore: not completed");
        }
    }
    let _ = writeln!(
        human,
        "boot: {}",
        r.boot["result"].as_str().unwrap_or("unknown")
    );
    if let Some(f) = &r.failure {
        let _ = writeln!(human, "failed at {}: {}", f.step, f.reason);
    }
    let _ = writeln!(
        human,
        "cleanup: {}",
        if r.cleanup.kept && keep_on_failure {
            format!("kept CT {scratch} (--keep-on-failure); remove it with backup verify --cleanup")
        } else if let Some(e) = &r.cleanup.error {
            format!("FAILED ({e}); CT {scratch} may be left over")
        } else if r.cleanup.destroyed {
            format!("CT {scratch} stopped and destroyed")
        } else {
            "nothing to remove".to_string()
        }
    );
    let _ = writeln!(human, "total: {:.1}s", r.total_seconds);
    human
}

/// `4h05m` below two days, `3d2h` above.
fn age_text(secs: i64) -> String {
    let h = secs / 3600;
    if h >= 48 {
        format!("{}d{}h", h / 24, h % 24)
    } else {
        format!("{h}h{:02}m", (secs % 3600) / 60)
    }
}

/// `felhom-agent backup verify --cleanup`: removes every container inside the scratch range
/// tagged [`DRILL_TAG`] (stopping it first), except `busy`, the copy of the drill the service
/// has under way. Others are never touched.
pub(super) async fn cleanup(
    pve: &PveClient,
    range: ScratchRange,
    busy: Option<u32>,
    pm: ProgressMode,
) -> Result<Outcome, CliError> {
    let guests = pve.containers().await?;
    let mut removed = Vec::new();
    let mut skipped = Vec::new();
    let mut errors = Vec::new();
    let mut human = String::new();
    for ct in guests {
        if !drill::has_drill_tag(ct.tags.as_deref()) || !drill::in_range(range, ct.vmid) {
            continue;
        }
        if busy == Some(ct.vmid.get()) {
            let _ = writeln!(
                human,
                "CT {}: skipped: the copy of the restore drill the service is running (drills.json)",
                ct.vmid
            );
            skipped.push(ct.vmid.get());
            continue;
        }
        match drill::remove_scratch(pve, ct.vmid, Origin::default(), pm, Voice::Stderr).await {
            Ok(_) => {
                let _ = writeln!(human, "removed CT {} (drill leftover)", ct.vmid);
                removed.push(ct.vmid.get());
            }
            Err(e) => {
                let _ = writeln!(human, "CT {}: cleanup failed: {e}", ct.vmid);
                errors.push(json!({ "vmid": ct.vmid.get(), "error": e.to_string() }));
            }
        }
    }
    if removed.is_empty() && errors.is_empty() && skipped.is_empty() {
        let _ = writeln!(
            human,
            "no drill leftovers (tag {DRILL_TAG}) in {}-{}",
            range.0, range.1
        );
    }
    let failed = !errors.is_empty();
    Ok(Outcome::new(
        &json!({ "ok": !failed, "range": [range.0, range.1], "removed": removed, "skipped": skipped, "errors": errors }),
        human,
    )
    .failed(failed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_as_hours_then_days() {
        assert_eq!(age_text(0), "0h00m");
        assert_eq!(age_text(3600 + 5 * 60), "1h05m");
        assert_eq!(age_text(47 * 3600 + 59 * 60), "47h59m");
        assert_eq!(age_text(50 * 3600), "2d2h");
    }
}
