//! Simulated task status, log and list.

use super::*;

/// Validates the UPID syntax like PVE's decoder; returns its node.
pub(super) fn upid_node(upid: &str) -> Option<&str> {
    let rest = upid.strip_prefix("UPID:")?;
    let parts: Vec<&str> = rest.split(':').collect();
    // node, pid, pstart, starttime, type, id, user, "" (trailing colon)
    if parts.len() != 8 || !parts[7].is_empty() {
        return None;
    }
    let hex = |s: &str, min: usize, max: usize| {
        s.len() >= min && s.len() <= max && s.bytes().all(|b| b.is_ascii_hexdigit())
    };
    let node_ok = !parts[0].is_empty()
        && parts[0]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if node_ok
        && hex(parts[1], 8, 8)
        && hex(parts[2], 8, 9)
        && hex(parts[3], 8, 8)
        && !parts[4].is_empty()
        && !parts[6].is_empty()
    {
        Some(parts[0])
    } else {
        None
    }
}

pub(super) fn find_task<'a>(
    inner: &'a Inner,
    node: &str,
    upid: &str,
) -> Result<&'a crate::pve_sim::state::Task, ApiError> {
    let Some(upid_node) = upid_node(upid) else {
        return Err(ApiError::param(&[(
            "upid",
            "unable to parse worker upid".into(),
        )]));
    };
    let no_such = || ApiError::param(&[("upid", "no such task".into())]);
    if upid_node != node || node != inner.node {
        return Err(no_such());
    }
    inner
        .tasks
        .iter()
        .find(|t| t.upid == upid)
        .ok_or_else(no_such)
}

pub(super) fn task_status(inner: &Inner, node: &str, upid: &str) -> ApiResult {
    let t = find_task(inner, node, upid)?;
    let (user, tokenid) = t.user.split_once('!').unwrap_or((t.user.as_str(), ""));
    let mut m = Map::new();
    m.insert("upid".into(), json!(t.upid));
    m.insert("node".into(), json!(t.node));
    m.insert("pid".into(), json!(t.pid));
    m.insert("pstart".into(), json!(t.pstart));
    m.insert("starttime".into(), json!(t.starttime));
    m.insert("type".into(), json!(t.kind));
    m.insert("id".into(), json!(t.id));
    m.insert("user".into(), json!(user));
    if !tokenid.is_empty() {
        m.insert("tokenid".into(), json!(tokenid));
    }
    match &t.finished {
        Some((_, exit)) => {
            m.insert("status".into(), json!("stopped"));
            if t.outcome != crate::pve_sim::options::TaskOutcome::NoExitStatus {
                m.insert("exitstatus".into(), json!(exit));
            }
        }
        None => {
            m.insert("status".into(), json!("running"));
        }
    }
    Ok(Value::Object(m).into())
}

pub(super) fn task_log(inner: &Inner, node: &str, upid: &str, params: &Params) -> ApiResult {
    let t = find_task(inner, node, upid)?;
    let int = |name: &str, default: usize| -> Result<usize, ApiError> {
        match params.get(name) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| {
                ApiError::param(&[(name, format!("type check ('integer') failed - got '{v}'"))])
            }),
        }
    };
    let start = int("start", 0)?;
    let limit = int("limit", 50)?;
    let mut lines = t.log();
    if lines.is_empty() {
        lines.push("no content".to_string());
    }
    let total = lines.len();
    let items: Vec<Value> = lines
        .iter()
        .enumerate()
        .skip(start)
        .take(if limit == 0 { usize::MAX } else { limit })
        .map(|(i, l)| json!({"n": i + 1, "t": l}))
        .collect();
    Ok(ApiOk {
        data: Value::Array(items),
        extra: vec![("total".into(), json!(total))],
    })
}

/// `GET /nodes/{node}/tasks`: `source` (`archive` = finished, the default; `active`;
/// `all`), `vmid`, `typefilter`, `errors` (drop `OK`), `start`, `limit` (default 50);
/// running tasks first with status `RUNNING`, then finished ones, newest first; envelope
/// `total` counts every match. Token tasks are shown as `user` + `tokenid`.
pub(super) fn task_list(inner: &Inner, params: &Params) -> ApiResult {
    let int = |name: &str, default: usize| -> Result<usize, ApiError> {
        match params.get(name) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| {
                ApiError::param(&[(name, format!("type check ('integer') failed - got '{v}'"))])
            }),
        }
    };
    let start = int("start", 0)?;
    let limit = int("limit", 50)?;
    let source = params.get("source").map_or("archive", String::as_str);
    if !matches!(source, "archive" | "active" | "all") {
        return Err(ApiError::param(&[(
            "source",
            format!(
                "value '{source}' does not have a value in the enumeration 'archive, active, all'"
            ),
        )]));
    }
    let vmid = match params.get("vmid") {
        Some(v) => Some(parse_vmid("vmid", v)?.to_string()),
        None => None,
    };
    let errors = truthy(params.get("errors"));
    let typefilter = params.get("typefilter");
    let active = inner.tasks.iter().rev().filter(|t| t.finished.is_none());
    let archived = inner.tasks.iter().rev().filter(|t| t.finished.is_some());
    let ordered: Vec<&crate::pve_sim::state::Task> = match source {
        "active" => active.collect(),
        "all" => active.chain(archived).collect(),
        _ => archived.collect(),
    };
    let matching: Vec<&crate::pve_sim::state::Task> = ordered
        .into_iter()
        .filter(|t| typefilter.is_none_or(|f| *f == t.kind))
        .filter(|t| vmid.as_ref().is_none_or(|v| *v == t.id))
        .filter(|t| !errors || t.finished.as_ref().is_none_or(|(_, exit)| exit != "OK"))
        .collect();
    let total = matching.len();
    let list: Vec<Value> = matching
        .into_iter()
        .skip(start)
        .take(limit)
        .map(|t| {
            let (user, tokenid) = t.user.split_once('!').unwrap_or((t.user.as_str(), ""));
            let mut m = Map::new();
            m.insert("upid".into(), json!(t.upid));
            m.insert("node".into(), json!(t.node));
            m.insert("pid".into(), json!(t.pid));
            m.insert("pstart".into(), json!(t.pstart));
            m.insert("starttime".into(), json!(t.starttime));
            m.insert("type".into(), json!(t.kind));
            m.insert("id".into(), json!(t.id));
            m.insert("user".into(), json!(user));
            if !tokenid.is_empty() {
                m.insert("tokenid".into(), json!(tokenid));
            }
            match &t.finished {
                Some((_, exit)) => {
                    m.insert("status".into(), json!(exit));
                    m.insert("endtime".into(), json!(t.starttime + t.duration.as_secs()));
                }
                None => {
                    m.insert("status".into(), json!("RUNNING"));
                }
            }
            Value::Object(m)
        })
        .collect();
    Ok(ApiOk {
        data: Value::Array(list),
        extra: vec![("total".into(), json!(total))],
    })
}
