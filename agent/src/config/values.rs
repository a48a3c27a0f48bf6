//! The values of the agent's configuration keys: one parser per kind of value, the defaults
//! that go with them, and the `drill_*` keys of the restore drill schedule.

use std::path::PathBuf;
use std::time::Duration;

use super::{ConfigError, Lookup};
use crate::drill::schedule::{DrillGuests, DrillSchedule};
use crate::pve::StorageId;

/// The default scratch range of `backup verify`: 9000–9099.
pub const DEFAULT_DRILL_SCRATCH_RANGE: (u32, u32) = (9000, 9099);

/// `FIRST-LAST`: two valid vmids, FIRST ≤ LAST.
pub(super) fn parse_scratch_range(s: &str) -> Result<(u32, u32), String> {
    let bad =
        || format!("expected FIRST-LAST with vmids 100..=999999999 and FIRST <= LAST, got {s:?}");
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let a: u32 = a.trim().parse().map_err(|_| bad())?;
    let b: u32 = b.trim().parse().map_err(|_| bad())?;
    if felhom_protocol::Vmid::new(a).is_err() || felhom_protocol::Vmid::new(b).is_err() || a > b {
        return Err(bad());
    }
    Ok((a, b))
}

/// `true`/`1`/`yes` or `false`/`0`/`no`, any case.
pub(super) fn parse_bool(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(format!("expected true or false, got {s:?}")),
    }
}

/// Whole seconds, 1 ..= `max`.
pub(super) fn parse_secs(max: u64) -> impl Fn(&str) -> Result<Duration, String> {
    move |s: &str| match s.parse::<u64>() {
        Ok(n) if (1..=max).contains(&n) => Ok(Duration::from_secs(n)),
        _ => Err(format!("expected whole seconds 1..={max}, got {s:?}")),
    }
}

/// The `drill_*` keys of the schedule; a listed guest inside the scratch range is refused
/// (its drill could restore over it).
pub(super) fn drill_schedule(
    l: &Lookup<'_>,
    range: (u32, u32),
) -> Result<DrillSchedule, ConfigError> {
    let d = DrillSchedule::default();
    let guests = l
        .parsed("drill_guests", DrillGuests::parse)?
        .unwrap_or_default();
    if let DrillGuests::List(list) = &guests {
        if let Some(v) = list.iter().find(|v| crate::drill::in_range(range, **v)) {
            return Err(ConfigError::Invalid {
                key: "drill_guests",
                source_name: "the drill settings".into(),
                reason: format!(
                    "CT {v} lies inside drill_scratch_range {}-{}; drills restore into that range, so it cannot hold a guest to drill",
                    range.0, range.1
                ),
            });
        }
    }
    Ok(DrillSchedule {
        guests,
        interval: l
            .parsed("drill_interval_secs", parse_secs(366 * 24 * 3600))?
            .unwrap_or(d.interval),
        settle: l
            .parsed("drill_settle_secs", parse_secs(3600))?
            .unwrap_or(d.settle),
        timeout: l
            .parsed("drill_timeout_secs", parse_secs(86_400))?
            .unwrap_or(d.timeout),
        target_storage: l.parsed("drill_target_storage", |s| s.parse::<StorageId>())?,
    })
}

/// The port pveproxy listens on; used when `api_url` names none.
pub const DEFAULT_API_PORT: u16 = 8006;

/// The service interval: seconds, 0.1 ..= 86400, fractions allowed (a soak runs at 0.2 s).
pub(super) fn parse_interval(s: &str) -> Result<Duration, String> {
    match s.parse::<f64>() {
        Ok(n) if (0.1..=86_400.0).contains(&n) => Ok(Duration::from_millis((n * 1000.0) as u64)),
        _ => Err(format!("expected seconds from 0.1 to 86400, got {s:?}")),
    }
}

/// Default of `tls_expiry_warn_days`.
pub const DEFAULT_TLS_EXPIRY_WARN_DAYS: u32 = 30;

/// Days before a certificate's expiry that `selftest` warns: 0 ..= 3650 (0: never).
pub(super) fn parse_warn_days(s: &str) -> Result<u32, String> {
    match s.trim().parse::<u32>() {
        Ok(n) if n <= 3650 => Ok(n),
        _ => Err(format!(
            "expected whole days from 0 (never warn) to 3650, got {s:?}"
        )),
    }
}

/// A response size cap in bytes: 1 KiB ..= 1 GiB.
pub(super) fn parse_byte_cap(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if (1024..=1 << 30).contains(&n) => Ok(n),
        _ => Err(format!(
            "expected a byte count from 1024 to 1073741824, got {s:?}"
        )),
    }
}

/// Whether the authority of `s` (`scheme://[userinfo@]host[:port]…`) spells out a port.
/// Needed because `url` drops a port equal to the scheme default (`https://h:443` has
/// `port() == None`, like `https://h`).
fn has_explicit_port(s: &str) -> bool {
    let rest = s.split_once("://").map_or(s, |(_, r)| r);
    let authority = rest.split(['/', '?', '#', '\\']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let after_host = match host_port.strip_prefix('[') {
        Some(v6) => v6.split_once(']').map_or("", |(_, r)| r),
        None => host_port.split_once(':').map_or("", |(_, p)| p),
    };
    let port = after_host.strip_prefix(':').unwrap_or(after_host);
    !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit())
}

/// `https://HOST[:PORT]` without credentials, path, query or fragment; port 8006 when none
/// is given.
pub(super) fn parse_url(s: &str) -> Result<url::Url, String> {
    let mut u = url::Url::parse(s).map_err(|e| format!("{e} in {s:?}"))?;
    if u.scheme() != "https" {
        return Err(format!("must be https://HOST:PORT, got {s:?}"));
    }
    if u.host_str().is_none() || !u.username().is_empty() || u.password().is_some() {
        return Err("must be https://HOST:PORT without credentials".into());
    }
    if u.query().is_some() || u.fragment().is_some() || !matches!(u.path(), "" | "/") {
        return Err(format!(
            "give only https://HOST:PORT (the client appends /api2/json), got {s:?}"
        ));
    }
    if !has_explicit_port(s) {
        // pveproxy listens on 8006, not on the https default 443.
        u.set_port(Some(DEFAULT_API_PORT))
            .map_err(|()| format!("cannot set port {DEFAULT_API_PORT} on {s:?}"))?;
    }
    Ok(u)
}

/// An absolute path.
pub(super) fn abs_path(s: &str) -> Result<PathBuf, String> {
    let p = PathBuf::from(s);
    if p.is_absolute() {
        Ok(p)
    } else {
        Err(format!("must be an absolute path, got {s:?}"))
    }
}
