//! `tasks wait`, `tasks list`, `tasks log [--follow]`.

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;

use super::output::{Outcome, Table, opt, uptime, utc};
use super::progress::{self, ProgressMode};
use super::task_output::{LONG_TASK, task_json, task_line};
use super::{CliError, TasksAction};
use crate::pve::{PveClient, TaskFilter, TaskObserver, TaskStatus, Upid, WaitOptions};

/// Runs a `tasks` subcommand.
pub(super) async fn run(
    pve: &PveClient,
    action: &TasksAction,
    json: bool,
    pm: ProgressMode,
) -> Result<Outcome, CliError> {
    match action {
        TasksAction::Wait { upid } => wait(pve, upid, pm).await,
        TasksAction::List {
            vmid,
            task_type,
            errors,
            limit,
        } => {
            let filter = TaskFilter {
                vmid: *vmid,
                task_type: task_type.clone(),
                errors: *errors,
                limit: Some(*limit),
            };
            list(pve, &filter).await
        }
        TasksAction::Log { upid, follow } => {
            if *follow {
                follow_log(pve, upid, json, pm).await
            } else {
                log(pve, upid).await
            }
        }
    }
}

async fn wait(pve: &PveClient, upid: &Upid, pm: ProgressMode) -> Result<Outcome, CliError> {
    let done = progress::wait(pve, upid, WaitOptions::with_timeout(LONG_TASK), pm).await?;
    Ok(Outcome::new(
        &json!({ "ok": true, "task": task_json(&done) }),
        task_line(&format!("task {}", upid.task_type()), &done),
    ))
}

fn now_epoch() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

async fn list(pve: &PveClient, filter: &TaskFilter) -> Result<Outcome, CliError> {
    let list = pve.tasks(filter).await?;
    let now = now_epoch();
    let mut t = Table::new(&[
        "STARTED (UTC)",
        "TYPE",
        "ID",
        "USER",
        "STATUS",
        "DURATION",
        "UPID",
    ]);
    let mut docs = Vec::new();
    // Proxmox's `errors=1` only drops status `OK` (pve-manager `API2/Tasks.pm`
    // `node_tasks`: `$statusfilter->{ok} = 0`); a running task has no status and is kept
    // as `unknown`. `--errors` means tasks that ended in failure: drop running ones here.
    for e in list.iter().filter(|e| !(filter.errors && e.is_running())) {
        let user = match &e.tokenid {
            Some(tok) => format!("{}!{tok}", e.user),
            None => e.user.clone(),
        };
        let status = if e.is_running() {
            "running".to_string()
        } else {
            crate::pve::tasklog::clean_line(e.status.as_deref().unwrap_or("unknown"))
        };
        let duration = e.duration_secs(now);
        t.row(vec![
            opt(e.starttime.map(utc)),
            crate::pve::tasklog::clean_line(&e.task_type),
            crate::pve::tasklog::clean_line(&e.id),
            crate::pve::tasklog::clean_line(&user),
            status.clone(),
            opt(duration.map(uptime)),
            crate::pve::tasklog::clean_line(&e.upid),
        ]);
        docs.push(json!({
            "upid": e.upid,
            "type": e.task_type,
            "id": e.id,
            "user": user,
            "starttime": e.starttime,
            "endtime": e.endtime,
            "running": e.is_running(),
            "status": if e.is_running() { None } else { e.status.clone() },
            "error": e.is_error(),
            "duration_secs": duration,
        }));
    }
    Ok(Outcome::new(&docs, t.render("no tasks")))
}

async fn log(pve: &PveClient, upid: &Upid) -> Result<Outcome, CliError> {
    let chunk = pve.read_task_log(upid, 0).await?;
    let mut human = String::new();
    for l in &chunk.lines {
        human.push_str(l);
        human.push('\n');
    }
    if chunk.skipped > 0 {
        human.push_str(&format!(
            "({} lines in the middle of the log were not read)\n",
            chunk.skipped
        ));
    }
    Ok(Outcome::new(
        &json!({ "upid": upid.to_string(), "lines": chunk.lines, "total": chunk.total, "skipped": chunk.skipped }),
        human,
    ))
}

/// Writes each new log line to the process's stdout as it arrives (human output: the log is
/// the result, streamed rather than returned), or collects them for the JSON document.
struct Streamer {
    json: bool,
    collected: Vec<String>,
    progress: Option<progress::Progress<std::io::Stderr>>,
}

impl TaskObserver for Streamer {
    fn on_poll(&mut self, upid: &Upid, status: &TaskStatus, elapsed: Duration) {
        if let Some(p) = self.progress.as_mut() {
            p.on_poll(upid, status, elapsed);
        }
    }

    fn on_lines(&mut self, upid: &Upid, lines: &[String], elapsed: Duration) {
        if self.json {
            // Bounded like every other kept log: the JSON document holds at most this many.
            let room = MAX_JSON_LINES.saturating_sub(self.collected.len());
            self.collected.extend(lines.iter().take(room).cloned());
            if let Some(p) = self.progress.as_mut() {
                p.on_lines(upid, lines, elapsed);
            }
        } else {
            let mut out = std::io::stdout().lock();
            for l in lines {
                let _ = writeln!(out, "{l}");
            }
            let _ = out.flush();
        }
    }
}

/// At most this many lines go into the `--json` document of `tasks log --follow`.
const MAX_JSON_LINES: usize = 10_000;

async fn follow_log(
    pve: &PveClient,
    upid: &Upid,
    json: bool,
    pm: ProgressMode,
) -> Result<Outcome, CliError> {
    // Human output streams the log itself to stdout; with --json the lines are collected
    // and a live status line (terminal only) shows progress on stderr.
    let progress = (json && pm == ProgressMode::Live).then(|| {
        progress::Progress::new(
            ProgressMode::Live,
            upid,
            std::io::stderr(),
            progress::terminal_width(),
        )
    });
    let mut s = Streamer {
        json,
        collected: Vec::new(),
        progress,
    };
    let result = pve
        .wait_task_with(upid, WaitOptions::with_timeout(LONG_TASK), &mut s)
        .await;
    if let Some(p) = s.progress.as_mut() {
        p.end();
    }
    let done = result?;
    Ok(Outcome::new(
        &json!({ "ok": true, "upid": upid.to_string(), "lines": s.collected, "task": task_json(&done) }),
        String::new(),
    ))
}
