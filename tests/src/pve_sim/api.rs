//! The simulated API handlers: routing, permission checks, validation and task creation.
//! Every message string follows shared/reference/proxmox-api.md.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

pub(crate) use super::shared::{ApiError, ApiOk, ApiResult};
use super::state::{Container, Effect, Inner, config_digest, mac_for, rootfs_bytes};
use super::util::{now_epoch, truthy};

mod create_restore;
mod snapshots;
mod storage;
mod tasks;

use create_restore::*;
use snapshots::*;
use storage::*;
use tasks::*;

type Params = BTreeMap<String, String>;

const VM_CONFIG_PRIVS: &[&str] = &[
    "VM.Config.Disk",
    "VM.Config.CPU",
    "VM.Config.Memory",
    "VM.Config.Network",
    "VM.Config.Options",
];

/// Keys PUT config accepts (besides the numbered ones).
const CONFIG_KEYS: &[&str] = &[
    "arch",
    "cmode",
    "console",
    "cores",
    "cpulimit",
    "cpuunits",
    "debug",
    "description",
    "entrypoint",
    "env",
    "features",
    "hookscript",
    "hostname",
    "memory",
    "nameserver",
    "onboot",
    "ostype",
    "protection",
    "rootfs",
    "searchdomain",
    "startup",
    "swap",
    "tags",
    "template",
    "timezone",
    "tty",
    "unprivileged",
];

const INTEGER_KEYS: &[&str] = &[
    "cores",
    "cpuunits",
    "memory",
    "swap",
    "onboot",
    "protection",
    "tty",
    "template",
    "unprivileged",
    "console",
    "debug",
];

fn numbered(key: &str, prefix: &str) -> bool {
    key.strip_prefix(prefix)
        .is_some_and(|n| !n.is_empty() && n.len() <= 3 && n.bytes().all(|b| b.is_ascii_digit()))
}

fn is_config_key(key: &str) -> bool {
    CONFIG_KEYS.contains(&key)
        || ["net", "mp", "unused", "dev"]
            .iter()
            .any(|p| numbered(key, p))
}

fn check(inner: &Inner, path: &str, privilege: &str) -> Result<(), ApiError> {
    if inner.has(path, privilege) {
        Ok(())
    } else {
        Err(ApiError::perm(path, privilege))
    }
}

fn check_any(inner: &Inner, path: &str, privs: &[&str]) -> Result<(), ApiError> {
    if privs.iter().any(|p| inner.has(path, p)) {
        Ok(())
    } else {
        Err(ApiError::perm(path, &privs.join("|")))
    }
}

/// Validates a vmid given as a path or body parameter.
fn parse_vmid(name: &str, raw: &str) -> Result<u32, ApiError> {
    let v: u64 = raw.parse().map_err(|_| {
        ApiError::param(&[(name, format!("type check ('integer') failed - got '{raw}'"))])
    })?;
    if v < 100 {
        return Err(ApiError::param(&[(
            name,
            "value must have a minimum value of 100".to_string(),
        )]));
    }
    if v > 999_999_999 {
        return Err(ApiError::param(&[(
            name,
            "value must have a maximum value of 999999999".to_string(),
        )]));
    }
    Ok(v as u32)
}

fn required<'a>(params: &'a Params, name: &str) -> Result<&'a String, ApiError> {
    params.get(name).ok_or_else(|| {
        ApiError::param(&[(
            name,
            "property is missing and it is not optional".to_string(),
        )])
    })
}

fn not_found(inner: &Inner, vmid: u32) -> ApiError {
    ApiError::die(format!(
        "Configuration file 'nodes/{}/lxc/{vmid}.conf' does not exist",
        inner.node
    ))
}

fn container(inner: &Inner, vmid: u32) -> Result<&Container, ApiError> {
    inner
        .containers
        .get(&vmid)
        .ok_or_else(|| not_found(inner, vmid))
}

fn current_lock(ct: &Container) -> Option<String> {
    ct.config
        .get("lock")
        .and_then(Value::as_str)
        .map(str::to_string)
}

fn protected(ct: &Container) -> bool {
    matches!(ct.config.get("protection"), Some(v) if v == &json!(1) || v == &json!("1"))
}

fn locked_error(ct: &Container) -> Option<String> {
    current_lock(ct).map(|l| format!("CT is locked ({l})"))
}

/// Entry point: `rel` is the path below `/api2/json`, without query.
pub(crate) fn dispatch(inner: &mut Inner, method: &str, rel: &str, params: &Params) -> ApiResult {
    inner.settle();
    let segs: Vec<&str> = rel.split('/').filter(|s| !s.is_empty()).collect();
    let not_impl = || ApiError::new(501, format!("Method '{method} {rel}' not implemented"));
    match (method, segs.as_slice()) {
        ("GET", ["version"]) => Ok(version(inner).into()),
        ("GET", ["nodes"]) => Ok(nodes(inner).into()),
        ("GET", ["access", "permissions"]) => Ok(permissions(inner, params).into()),
        ("GET", ["cluster", "nextid"]) => {
            let asked = match params.get("vmid") {
                Some(v) => Some(parse_vmid("vmid", v)?),
                None => None,
            };
            super::drill::nextid(inner, asked)
        }
        (_, ["nodes", node, "tasks", upid, rest @ ..]) => {
            // `rel` arrives uri-unescaped already, like PVE's `uri_unescape` of the path.
            match (method, rest) {
                ("GET", ["status"]) => task_status(inner, node, upid),
                ("GET", ["log"]) => task_log(inner, node, upid, params),
                _ => Err(not_impl()),
            }
        }
        (_, ["nodes", node, rest @ ..]) => {
            if *node != inner.node {
                return Err(ApiError::die(format!(
                    "hostname lookup '{node}' failed - failed to get address info for: {node}: Name or service not known"
                )));
            }
            node_scoped(inner, method, rest, params).unwrap_or_else(|| Err(not_impl()))
        }
        _ => Err(not_impl()),
    }
}

fn node_scoped(
    inner: &mut Inner,
    method: &str,
    rest: &[&str],
    params: &Params,
) -> Option<ApiResult> {
    Some(match (method, rest) {
        ("GET", ["status"]) => node_status(inner),
        ("GET", ["tasks"]) => task_list(inner, params),
        ("GET", ["lxc"]) => Ok(lxc_list(inner).into()),
        ("POST", ["lxc"]) => create(inner, params),
        ("GET", ["storage"]) => Ok(storage_list(inner, params).into()),
        ("GET", ["storage", storage, "content"]) => storage_content(inner, storage, params),
        // A volid holds a `/` (`local:backup/…`); take the rest of the path whether or not
        // the client escaped it as %2F.
        ("DELETE", ["storage", storage, "content", volume @ ..]) if !volume.is_empty() => {
            delete_volume(inner, storage, &volume.join("/"))
        }
        ("POST", ["vzdump"]) => vzdump(inner, params),
        (_, ["lxc", vmid, rest @ ..]) => {
            let vmid = match parse_vmid("vmid", vmid) {
                Ok(v) => v,
                Err(e) => return Some(Err(e)),
            };
            if let Some(given) = params.get("vmid") {
                if given.parse::<u32>().ok() != Some(vmid) {
                    return Some(Err(ApiError::param(&[(
                        "vmid",
                        "duplicate parameter (already defined in URI) with conflicting values!"
                            .to_string(),
                    )])));
                }
            }
            match (method, rest) {
                ("GET", []) => Ok(json!([
                    {"subdir": "config"},
                    {"subdir": "pending"},
                    {"subdir": "status"},
                    {"subdir": "vncproxy"},
                    {"subdir": "termproxy"},
                    {"subdir": "vncwebsocket"},
                    {"subdir": "spiceproxy"},
                    {"subdir": "migrate"},
                    {"subdir": "clone"},
                    {"subdir": "rrd"},
                    {"subdir": "rrddata"},
                    {"subdir": "firewall"},
                    {"subdir": "snapshot"},
                    {"subdir": "resize"},
                    {"subdir": "interfaces"}
                ])
                .into()),
                ("DELETE", []) => destroy(inner, vmid, params),
                ("GET", ["status", "current"]) => ct_status(inner, vmid),
                (
                    "POST",
                    [
                        "status",
                        action @ ("start" | "stop" | "shutdown" | "reboot"),
                    ],
                ) => power(inner, vmid, action),
                ("GET", ["config"]) => get_config(inner, vmid, params),
                ("PUT", ["config"]) => put_config(inner, vmid, params),
                ("GET", ["pending"]) => super::pending::get_pending(inner, vmid),
                ("GET", ["snapshot"]) => snapshot_list(inner, vmid),
                ("POST", ["snapshot"]) => snapshot_create(inner, vmid, params),
                ("DELETE", ["snapshot", name]) => snapshot_delete(inner, vmid, name),
                ("POST", ["snapshot", name, "rollback"]) => rollback(inner, vmid, name, params),
                _ => return None,
            }
        }
        _ => return None,
    })
}

// ------------------------------------------------------------------ cluster-level

fn version(inner: &Inner) -> Value {
    let v = &inner.version;
    let major: u32 = v
        .split(['.', '-'])
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(9);
    let release: String = v.split(['.', '-']).take(2).collect::<Vec<_>>().join(".");
    let repoid = super::util::sha1_hex(v.as_bytes());
    let repoid = if major >= 8 {
        &repoid[..16]
    } else {
        &repoid[..8]
    };
    json!({"version": v, "release": release, "repoid": repoid, "console": "xtermjs"})
}

fn nodes(inner: &Inner) -> Value {
    let mut n = json!({
        "node": inner.node,
        "status": "online",
        "id": format!("node/{}", inner.node),
        "type": "node",
        "level": "",
        "ssl_fingerprint": inner.fingerprint,
    });
    if inner.has(&format!("/nodes/{}", inner.node), "Sys.Audit") {
        if let Value::Object(m) = &mut n {
            m.insert("cpu".into(), json!(0.0184729064039409));
            m.insert("maxcpu".into(), json!(8));
            m.insert("mem".into(), json!(6_442_450_944u64));
            m.insert("maxmem".into(), json!(33_547_612_160u64));
            m.insert("disk".into(), json!(9_436_041_216u64));
            m.insert("maxdisk".into(), json!(100_861_726_720u64));
            m.insert(
                "uptime".into(),
                json!(now_epoch().saturating_sub(inner.boot_epoch)),
            );
        }
    }
    json!([n])
}

fn permissions(inner: &Inner, params: &Params) -> Value {
    let mut out = Map::new();
    let paths: Vec<String> = match params.get("path") {
        Some(p) => vec![p.clone()],
        None => inner.grants.iter().map(|(p, _)| p.clone()).collect(),
    };
    for p in paths {
        let privs: Map<String, Value> = inner
            .privs_on(&p)
            .into_iter()
            .map(|priv_| (priv_, json!(1)))
            .collect();
        out.insert(p, Value::Object(privs));
    }
    Value::Object(out)
}

fn node_status(inner: &Inner) -> ApiResult {
    check(inner, &format!("/nodes/{}", inner.node), "Sys.Audit")?;
    let major = inner.version.split('.').next().unwrap_or("9").to_string();
    let kernel = if major == "7" {
        "5.15.158-2-pve"
    } else {
        "6.14.11-4-pve"
    };
    Ok(json!({
        "cpu": 0.0184729064039409,
        "wait": 0.000412371134020619,
        "idle": 0,
        "uptime": now_epoch().saturating_sub(inner.boot_epoch),
        "loadavg": ["0.31", "0.27", "0.22"],
        "kversion": format!("Linux {kernel} #1 SMP PREEMPT_DYNAMIC PMX {kernel} (2025-10-10T09:12Z)"),
        "pveversion": format!("pve-manager/{}/{}", inner.version, &super::util::sha1_hex(inner.version.as_bytes())[..16]),
        "cpuinfo": {
            "model": "AMD Ryzen 7 5700U with Radeon Graphics",
            "sockets": 1,
            "cores": 8,
            "cpus": 16,
            "mhz": "1796.543",
            "hvm": "1",
            "user_hz": 100,
            "flags": "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat svm"
        },
        "memory": {"total": 33_547_612_160u64, "used": 6_442_450_944u64, "free": 27_105_161_216u64},
        "swap": {"total": 8_589_930_496u64, "used": 0, "free": 8_589_930_496u64},
        "rootfs": {"total": 100_861_726_720u64, "used": 9_436_041_216u64, "free": 86_265_040_896u64, "avail": 86_265_040_896u64},
        "ksm": {"shared": 0},
        "current-kernel": {"sysname": "Linux", "release": kernel, "machine": "x86_64", "version": "#1 SMP PREEMPT_DYNAMIC PMX"},
        "boot-info": {"mode": "efi", "secureboot": 0}
    })
    .into())
}

// ------------------------------------------------------------------ containers

/// A container's list/status object; `legacy` renders numbers as strings like PVE 6/7.
fn ct_entry(inner: &Inner, vmid: u32, ct: &Container, full: bool) -> Value {
    let legacy = inner.legacy_wire;
    let num = |v: u64| -> Value {
        if legacy {
            json!(v.to_string())
        } else {
            json!(v)
        }
    };
    let cfg_u64 = |k: &str, d: u64| -> u64 {
        match ct.config.get(k) {
            Some(Value::Number(n)) => n.as_u64().unwrap_or(d),
            Some(Value::String(s)) => s.parse().unwrap_or(d),
            _ => d,
        }
    };
    let maxmem = cfg_u64("memory", 512) * 1_048_576;
    let maxswap = cfg_u64("swap", 512) * 1_048_576;
    let cpus = cfg_u64("cores", 1);
    let maxdisk = rootfs_bytes(&ct.config);
    let running = ct.running;
    let uptime = if running {
        now_epoch().saturating_sub(ct.started_at)
    } else {
        0
    };
    let seed = u64::from(vmid);
    let mut m = Map::new();
    m.insert(
        "vmid".into(),
        if legacy {
            json!(vmid.to_string())
        } else {
            json!(vmid)
        },
    );
    m.insert(
        "name".into(),
        json!(
            ct.config
                .get("hostname")
                .and_then(Value::as_str)
                .unwrap_or("")
        ),
    );
    m.insert(
        "status".into(),
        json!(if running { "running" } else { "stopped" }),
    );
    m.insert("type".into(), json!("lxc"));
    m.insert(
        "cpu".into(),
        if running { json!(0.00312) } else { json!(0) },
    );
    m.insert("cpus".into(), num(cpus));
    m.insert("maxmem".into(), num(maxmem));
    m.insert(
        "mem".into(),
        num(if running { 48_234_496 + seed * 4096 } else { 0 }),
    );
    m.insert("maxswap".into(), num(maxswap));
    m.insert("swap".into(), num(0));
    m.insert("maxdisk".into(), num(maxdisk));
    m.insert(
        "disk".into(),
        num(if running {
            1_143_795_712 + seed * 8192
        } else {
            0
        }),
    );
    for k in ["netin", "netout", "diskread", "diskwrite"] {
        m.insert(
            k.into(),
            num(if running { 1_000_000 + seed * 77 } else { 0 }),
        );
    }
    m.insert("uptime".into(), num(uptime));
    if running {
        m.insert("pid".into(), num(u64::from(ct.pid)));
    }
    if let Some(lock) = current_lock(ct) {
        m.insert("lock".into(), json!(lock));
    }
    if let Some(tags) = ct.config.get("tags") {
        m.insert("tags".into(), tags.clone());
    }
    if cfg_u64("template", 0) == 1 {
        m.insert("template".into(), num(1));
    }
    if full {
        m.insert("ha".into(), super::ha::ha_object(inner, vmid));
    }
    Value::Object(m)
}

fn lxc_list(inner: &Inner) -> Value {
    let list: Vec<Value> = inner
        .containers
        .iter()
        .filter(|(vmid, _)| inner.has(&format!("/vms/{vmid}"), "VM.Audit"))
        .map(|(vmid, ct)| ct_entry(inner, *vmid, ct, false))
        .collect();
    Value::Array(list)
}

fn ct_status(inner: &Inner, vmid: u32) -> ApiResult {
    check(inner, &format!("/vms/{vmid}"), "VM.Audit")?;
    let ct = container(inner, vmid)?;
    Ok(ct_entry(inner, vmid, ct, true).into())
}

fn get_config(inner: &Inner, vmid: u32, params: &Params) -> ApiResult {
    check(inner, &format!("/vms/{vmid}"), "VM.Audit")?;
    let ct = container(inner, vmid)?;
    let mut config = match params.get("snapshot") {
        Some(name) => ct
            .snapshots
            .iter()
            .find(|s| &s.name == name)
            .map(|s| s.config.clone())
            .ok_or_else(|| ApiError::die(format!("snapshot '{name}' does not exist")))?,
        None => ct.config.clone(),
    };
    let digest = config_digest(&ct.config);
    if let Some(parent) = &ct.parent {
        if !params.contains_key("snapshot") {
            config.insert("parent".into(), json!(parent));
        }
    }
    config.insert("digest".into(), json!(digest));
    Ok(Value::Object(config).into())
}

/// Parses `keyctl=1,nesting=1` into a map with `0` defaults dropped.
fn feature_map(s: &str) -> BTreeMap<String, String> {
    s.split(',')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, "1"));
            (k.trim().to_string(), v.trim().to_string())
        })
        .filter(|(_, v)| v != "0")
        .collect()
}

/// The feature-flag rules of `check_ct_modify_config_perm` for a token (never root@pam).
fn check_features(
    inner: &Inner,
    vmid: u32,
    old: &str,
    new: &str,
    unprivileged: bool,
) -> Result<(), ApiError> {
    let (a, b) = (feature_map(old), feature_map(new));
    let changed: Vec<&String> = a
        .keys()
        .chain(b.keys())
        .filter(|k| a.get(*k) != b.get(*k))
        .collect();
    if changed.is_empty() {
        return Ok(());
    }
    if !unprivileged {
        return Err(ApiError::root_only(
            "changing feature flags for privileged container is only allowed for root@pam",
        ));
    }
    if changed.iter().all(|k| k.as_str() == "nesting") {
        return check(inner, &format!("/vms/{vmid}"), "VM.Allocate");
    }
    Err(ApiError::root_only(
        "changing feature flags (except nesting) is only allowed for root@pam",
    ))
}

/// The privilege PUT config needs for one key (features handled separately).
fn key_privilege(key: &str, value: Option<&str>) -> Result<&'static str, ApiError> {
    Ok(match key {
        "cores" | "cpuunits" | "cpulimit" => "VM.Config.CPU",
        "memory" | "swap" => "VM.Config.Memory",
        "rootfs" => "VM.Config.Disk",
        k if numbered(k, "mp") || numbered(k, "unused") => {
            if value.is_some_and(|v| v.starts_with('/')) {
                return Err(ApiError::root_only(
                    "mount point type bind is only allowed for root@pam",
                ));
            }
            "VM.Config.Disk"
        }
        k if numbered(k, "net") => "VM.Config.Network",
        "hostname" | "nameserver" | "searchdomain" => "VM.Config.Network",
        k if numbered(k, "dev") => {
            return Err(ApiError::root_only(
                "configuring device passthrough is only allowed for root@pam",
            ));
        }
        "hookscript" => {
            return Err(ApiError::root_only(
                "changing the hookscript is only allowed for root@pam",
            ));
        }
        _ => "VM.Config.Options",
    })
}

fn put_config(inner: &mut Inner, vmid: u32, params: &Params) -> ApiResult {
    let path = format!("/vms/{vmid}");
    check_any(inner, &path, VM_CONFIG_PRIVS)?;
    // Schema validation happens before the handler runs.
    let mut errors: Vec<(&str, String)> = Vec::new();
    let mut sets: Vec<(String, Value)> = Vec::new();
    for (k, v) in params {
        match k.as_str() {
            "digest" => {
                if v.len() > 40 {
                    errors.push(("digest", "value may only be 40 characters long".into()));
                }
            }
            "delete" | "revert" | "node" | "vmid" => {}
            key if is_config_key(key) => {
                if INTEGER_KEYS.contains(&key) {
                    match v.parse::<i64>() {
                        Ok(n) => sets.push((k.clone(), json!(n))),
                        Err(_) => errors.push((
                            k.as_str(),
                            format!("type check ('integer') failed - got '{v}'"),
                        )),
                    }
                } else {
                    sets.push((k.clone(), json!(v)));
                }
            }
            _ => errors.push((
                k.as_str(),
                "property is not defined in schema and the schema does not allow additional properties".into(),
            )),
        }
    }
    let deletes: Vec<String> = params
        .get("delete")
        .map(|d| {
            d.split([',', ';', ' '])
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    if !errors.is_empty() {
        return Err(ApiError::param(&errors));
    }
    let ct = container(inner, vmid)?;
    if let Some(msg) = locked_error(ct) {
        return Err(ApiError::die(msg));
    }
    if let Some(d) = params.get("digest") {
        if *d != config_digest(&ct.config) {
            return Err(ApiError::die(
                "detected modified configuration - file changed by other user? Try again.",
            ));
        }
    }
    if sets.is_empty() && deletes.is_empty() && !params.contains_key("revert") {
        return Err(ApiError::die("no options specified"));
    }
    for d in &deletes {
        if !is_config_key(d) {
            return Err(ApiError::param(&[(
                "delete",
                format!("unknown option '{d}'"),
            )]));
        }
    }
    let unprivileged = ct.config.get("unprivileged").and_then(Value::as_i64) == Some(1);
    let old_features = ct
        .config
        .get("features")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    for (k, v) in &sets {
        if k == "features" {
            check_features(
                inner,
                vmid,
                &old_features,
                v.as_str().unwrap_or(""),
                unprivileged,
            )?;
        } else if k == "unprivileged" {
            return Err(ApiError::param(&[(
                "unprivileged",
                "unable to modify read-only option: 'unprivileged'".into(),
            )]));
        } else {
            check(inner, &path, key_privilege(k, v.as_str())?)?;
        }
    }
    for d in &deletes {
        if d == "features" {
            check_features(inner, vmid, &old_features, "", unprivileged)?;
        } else {
            check(inner, &path, key_privilege(d, None)?)?;
        }
    }
    // A `netN` whose MAC changes drops the old MAC's IPAM/DHCP reservation, whoever it
    // belongs to (pve-container `LXC/Config.pm` `vmconfig_apply_pending`: old and new
    // `hwaddr` differ → `PVE::Network::SDN::Vnets::del_ips_from_mac($old_net->{bridge},
    // $old_net->{hwaddr}, …)`; `update_pct_config` gives a value without `hwaddr` a random one).
    for (k, v) in &sets {
        if !numbered(k, "net") {
            continue;
        }
        let old = inner
            .containers
            .get(&vmid)
            .and_then(|c| c.config.get(k))
            .and_then(Value::as_str)
            .and_then(super::ipam::hwaddr);
        let new = v.as_str().and_then(super::ipam::hwaddr);
        if let Some(old) = old {
            if new.as_ref() != Some(&old) {
                inner.ipam.remove(&old);
            }
        }
    }
    if let Some(ct) = inner.containers.get_mut(&vmid) {
        let running = ct.running;
        for d in &deletes {
            let exists = ct.config.contains_key(d);
            if running && super::pending::needs_restart(d, exists, true) {
                ct.pending.insert(d.clone(), Value::Null);
            } else {
                ct.config.remove(d);
            }
        }
        for (k, v) in sets {
            let exists = ct.config.contains_key(&k);
            if running && super::pending::needs_restart(&k, exists, false) {
                ct.pending.insert(k, v);
            } else {
                ct.pending.remove(&k);
                ct.config.insert(k, v);
            }
        }
    }
    Ok(Value::Null.into())
}

fn power(inner: &mut Inner, vmid: u32, action: &str) -> ApiResult {
    check(inner, &format!("/vms/{vmid}"), "VM.PowerMgmt")?;
    let running = container(inner, vmid)?.running;
    // The running check comes before the HA branch (pve-container `API2/LXC/Status.pm`
    // `vm_start`: "CT N already running"; `vm_stop`/`vm_shutdown`: "CT N not running").
    match action {
        "start" if running => return Err(ApiError::die(format!("CT {vmid} already running"))),
        "stop" | "shutdown" if !running => {
            return Err(ApiError::die(format!("CT {vmid} not running")));
        }
        _ => {}
    }
    if let Some(r) = super::ha::power(inner, vmid, action) {
        return r;
    }
    let ct = container(inner, vmid)?;
    let (kind, effect) = match action {
        "start" => {
            if ct.running {
                return Err(ApiError::die(format!("CT {vmid} already running")));
            }
            ("vzstart", Effect::Start(vmid))
        }
        "reboot" => {
            if !ct.running {
                return Err(ApiError::die(format!("CT {vmid} not running")));
            }
            ("vzreboot", Effect::Start(vmid))
        }
        other => {
            if !ct.running {
                return Err(ApiError::die(format!("CT {vmid} not running")));
            }
            if other == "stop" {
                ("vzstop", Effect::Stop(vmid))
            } else {
                ("vzshutdown", Effect::Stop(vmid))
            }
        }
    };
    // pve-container >= 5.0.10 (PVE 8.2) checks the lock inside the task; PVE 7 (legacy
    // wire) refused synchronously.
    if inner.legacy_wire {
        if let Some(msg) = locked_error(ct) {
            return Err(ApiError::die(msg));
        }
    }
    let forced = locked_error(ct);
    let upid = inner.start_task(
        kind,
        &vmid.to_string(),
        Vec::new(),
        Vec::new(),
        Some(effect),
        None,
        forced,
    );
    Ok(json!(upid).into())
}

fn destroy(inner: &mut Inner, vmid: u32, params: &Params) -> ApiResult {
    let purge = super::drill::destroy_params(params)?;
    check(inner, &format!("/vms/{vmid}"), "VM.Allocate")?;
    let ct = container(inner, vmid)?;
    if let Some(msg) = locked_error(ct) {
        return Err(ApiError::die(msg));
    }
    if protected(ct) {
        return Err(ApiError::die(format!(
            "can't remove CT {vmid} - protection mode enabled"
        )));
    }
    if ct.running {
        return Err(ApiError::die(format!(
            "unable to destroy CT {vmid} - container is running"
        )));
    }
    let disk = format!("  Logical volume \"vm-{vmid}-disk-0\" successfully removed.");
    let upid = inner.start_task(
        "vzdestroy",
        &vmid.to_string(),
        Vec::new(),
        vec![disk],
        Some(Effect::Destroy { vmid, purge }),
        Some((vmid, "destroyed")),
        None,
    );
    Ok(json!(upid).into())
}

// ------------------------------------------------------------------ snapshots
