//! Typed Proxmox VE API bodies, lenient on input: they ignore unknown fields and parse numbers
//! and booleans leniently (see [`super::lenient`]). The validated request arguments are in
//! [`super::args`].

use std::collections::BTreeMap;

use felhom_protocol::Vmid;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::lenient as le;
use super::upid::Upid;

/// `GET /version`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct VersionInfo {
    /// `7.4-16` (PVE ≤ 7) or `8.2.4` (PVE ≥ 8).
    #[serde(deserialize_with = "le::string")]
    pub version: String,
    /// Major.minor, e.g. `8.2`.
    #[serde(default, deserialize_with = "le::string")]
    pub release: String,
    /// Git commit of pve-manager.
    #[serde(default, deserialize_with = "le::string")]
    pub repoid: String,
}

/// One entry of `GET /nodes`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct NodeEntry {
    /// Node name.
    pub node: String,
    /// `online`, `offline` or `unknown`.
    #[serde(default, deserialize_with = "le::string")]
    pub status: String,
    /// SHA-256 fingerprint of the node's certificate (uppercase colon hex).
    #[serde(default, deserialize_with = "le::opt_string")]
    pub ssl_fingerprint: Option<String>,
    /// CPU usage 0..1 (omitted without Sys.Audit).
    #[serde(default, deserialize_with = "le::opt_f64")]
    pub cpu: Option<f64>,
    /// Number of CPUs.
    #[serde(default, deserialize_with = "le::opt_u64")]
    pub maxcpu: Option<u64>,
    /// Used memory, bytes.
    #[serde(default, deserialize_with = "le::opt_u64")]
    pub mem: Option<u64>,
    /// Total memory, bytes.
    #[serde(default, deserialize_with = "le::opt_u64")]
    pub maxmem: Option<u64>,
    /// Used root disk, bytes.
    #[serde(default, deserialize_with = "le::opt_u64")]
    pub disk: Option<u64>,
    /// Root disk size, bytes.
    #[serde(default, deserialize_with = "le::opt_u64")]
    pub maxdisk: Option<u64>,
    /// Uptime, seconds.
    #[serde(default, deserialize_with = "le::opt_u64")]
    pub uptime: Option<u64>,
}

/// Used/total figures (memory, swap, root filesystem), bytes.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct Usage {
    /// Total, bytes.
    #[serde(default, deserialize_with = "le::u64")]
    pub total: u64,
    /// Used, bytes.
    #[serde(default, deserialize_with = "le::u64")]
    pub used: u64,
    /// Free, bytes.
    #[serde(default, deserialize_with = "le::u64")]
    pub free: u64,
    /// Available to unprivileged users (root filesystem only), bytes.
    #[serde(default, deserialize_with = "le::opt_u64")]
    pub avail: Option<u64>,
}

/// CPU description in the node status.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct CpuInfo {
    /// CPU model.
    #[serde(default, deserialize_with = "le::string")]
    pub model: String,
    /// Logical CPUs.
    #[serde(default, deserialize_with = "le::opt_u64")]
    pub cpus: Option<u64>,
    /// Cores per socket.
    #[serde(default, deserialize_with = "le::opt_u64")]
    pub cores: Option<u64>,
    /// Sockets.
    #[serde(default, deserialize_with = "le::opt_u64")]
    pub sockets: Option<u64>,
    /// Clock, MHz (a string on the wire).
    #[serde(default, deserialize_with = "le::opt_f64")]
    pub mhz: Option<f64>,
}

/// `GET /nodes/{node}/status`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct NodeStatus {
    /// CPU usage 0..1.
    #[serde(default, deserialize_with = "le::opt_f64")]
    pub cpu: Option<f64>,
    /// 1/5/15-minute load (strings on the wire).
    #[serde(default, deserialize_with = "le::f64_list")]
    pub loadavg: Vec<f64>,
    /// Memory.
    #[serde(default)]
    pub memory: Usage,
    /// Swap.
    #[serde(default)]
    pub swap: Usage,
    /// Root filesystem.
    #[serde(default)]
    pub rootfs: Usage,
    /// Uptime, seconds.
    #[serde(default, deserialize_with = "le::opt_u64")]
    pub uptime: Option<u64>,
    /// Kernel version line.
    #[serde(default, deserialize_with = "le::opt_string")]
    pub kversion: Option<String>,
    /// `pve-manager/8.2.4/…`.
    #[serde(default, deserialize_with = "le::opt_string")]
    pub pveversion: Option<String>,
    /// CPU description.
    #[serde(default)]
    pub cpuinfo: CpuInfo,
}

/// Guest run state.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GuestState {
    /// Running.
    Running,
    /// Stopped.
    Stopped,
    /// Anything else Proxmox may report in the future.
    #[serde(other)]
    Unknown,
}

/// One container in `GET /nodes/{node}/lxc`, or `GET …/lxc/{vmid}/status/current`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct ContainerStatus {
    /// Guest id (a string on PVE < 8.2).
    #[serde(deserialize_with = "le::vmid")]
    pub vmid: Vmid,
    /// Run state.
    pub status: GuestState,
    /// Hostname.
    #[serde(default, deserialize_with = "le::opt_string")]
    pub name: Option<String>,
    /// CPU usage 0..cpus.
    #[serde(default, deserialize_with = "le::opt_f64")]
    pub cpu: Option<f64>,
    /// CPU limit.
    #[serde(default, deserialize_with = "le::opt_f64")]
    pub cpus: Option<f64>,
    /// Memory used, bytes.
    #[serde(default, deserialize_with = "le::opt_u64")]
    pub mem: Option<u64>,
    /// Memory limit, bytes.
    #[serde(default, deserialize_with = "le::opt_u64")]
    pub maxmem: Option<u64>,
    /// Swap used, bytes.
    #[serde(default, deserialize_with = "le::opt_u64")]
    pub swap: Option<u64>,
    /// Swap limit, bytes.
    #[serde(default, deserialize_with = "le::opt_u64")]
    pub maxswap: Option<u64>,
    /// Root disk used, bytes.
    #[serde(default, deserialize_with = "le::opt_u64")]
    pub disk: Option<u64>,
    /// Root disk size, bytes.
    #[serde(default, deserialize_with = "le::opt_u64")]
    pub maxdisk: Option<u64>,
    /// Network bytes received since the container started (a counter).
    #[serde(default, deserialize_with = "le::opt_u64")]
    pub netin: Option<u64>,
    /// Network bytes sent since the container started (a counter).
    #[serde(default, deserialize_with = "le::opt_u64")]
    pub netout: Option<u64>,
    /// Bytes read from block devices since the container started (a counter).
    #[serde(default, deserialize_with = "le::opt_u64")]
    pub diskread: Option<u64>,
    /// Bytes written to block devices since the container started (a counter).
    #[serde(default, deserialize_with = "le::opt_u64")]
    pub diskwrite: Option<u64>,
    /// Uptime, seconds.
    #[serde(default, deserialize_with = "le::opt_u64")]
    pub uptime: Option<u64>,
    /// Init process id (running only).
    #[serde(default, deserialize_with = "le::opt_u64")]
    pub pid: Option<u64>,
    /// Tags, `;`-separated.
    #[serde(default, deserialize_with = "le::opt_string")]
    pub tags: Option<String>,
    /// Whether this is a template.
    #[serde(default, deserialize_with = "le::bool")]
    pub template: bool,
    /// The config lock, when set (`backup`, `snapshot`, …).
    #[serde(default, deserialize_with = "le::opt_string")]
    pub lock: Option<String>,
    /// HA state (`status/current` only; absent in the list).
    #[serde(default)]
    pub ha: Option<super::ha::HaStatus>,
}

/// `GET /nodes/{node}/lxc/{vmid}/config`: every key as text, plus the digest needed for a
/// safe `set_config`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContainerConfig {
    /// SHA-1 of the config file; pass it back to [`ConfigChange::digest`](super::args::ConfigChange::digest).
    pub digest: String,
    /// All other keys (numbers rendered as decimal text), e.g. `hostname`, `memory`, `net0`.
    pub entries: BTreeMap<String, String>,
    /// Raw `lxc.*` lines, in order.
    pub lxc: Vec<(String, String)>,
}

impl ContainerConfig {
    /// A config value by key.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries.get(key).map(String::as_str)
    }

    /// The configured hostname.
    pub fn hostname(&self) -> Option<&str> {
        self.get("hostname")
    }

    /// Parses a config body.
    pub fn from_value(value: Value) -> Result<ContainerConfig, String> {
        let Value::Object(map) = value else {
            return Err("config is not an object".into());
        };
        let mut digest = String::new();
        let mut entries = BTreeMap::new();
        let mut lxc = Vec::new();
        for (k, v) in map {
            match k.as_str() {
                "digest" => digest = le::value_text(&v),
                "lxc" => {
                    if let Value::Array(pairs) = v {
                        for p in pairs {
                            match p {
                                Value::Array(kv) if kv.len() == 2 => {
                                    lxc.push((le::value_text(&kv[0]), le::value_text(&kv[1])))
                                }
                                other => return Err(format!("bad lxc entry {other}")),
                            }
                        }
                    }
                }
                _ => {
                    entries.insert(k, le::value_text(&v));
                }
            }
        }
        Ok(ContainerConfig {
            digest,
            entries,
            lxc,
        })
    }
}

impl<'de> Deserialize<'de> for ContainerConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<ContainerConfig, D::Error> {
        ContainerConfig::from_value(Value::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// One entry of `GET …/lxc/{vmid}/snapshot`. The list ends with the pseudo-snapshot
/// `current` ("You are here!").
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct SnapshotEntry {
    /// Snapshot name (`current` for the live state).
    pub name: String,
    /// Description.
    #[serde(default, deserialize_with = "le::opt_string")]
    pub description: Option<String>,
    /// Creation time, epoch seconds.
    #[serde(default, deserialize_with = "le::opt_i64")]
    pub snaptime: Option<i64>,
    /// Parent snapshot.
    #[serde(default, deserialize_with = "le::opt_string")]
    pub parent: Option<String>,
    /// `prepare` / `delete` while an operation is (or was left) in progress.
    #[serde(default, deserialize_with = "le::opt_string")]
    pub snapstate: Option<String>,
}

impl SnapshotEntry {
    /// True for the pseudo-entry `current`.
    pub fn is_current(&self) -> bool {
        self.name == "current"
    }
}

/// One entry of `GET /nodes/{node}/storage`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct StorageEntry {
    /// Storage id.
    pub storage: String,
    /// Storage type (`dir`, `lvmthin`, `pbs`, …).
    #[serde(rename = "type", default, deserialize_with = "le::string")]
    pub storage_type: String,
    /// Comma-separated content types (`vztmpl,backup,iso`).
    #[serde(default, deserialize_with = "le::string")]
    pub content: String,
    /// Active.
    #[serde(default, deserialize_with = "le::bool")]
    pub active: bool,
    /// Enabled.
    #[serde(default, deserialize_with = "le::opt_bool")]
    pub enabled: Option<bool>,
    /// Shared between nodes.
    #[serde(default, deserialize_with = "le::bool")]
    pub shared: bool,
    /// Size, bytes.
    #[serde(default, deserialize_with = "le::opt_u64")]
    pub total: Option<u64>,
    /// Used, bytes.
    #[serde(default, deserialize_with = "le::opt_u64")]
    pub used: Option<u64>,
    /// Available, bytes.
    #[serde(default, deserialize_with = "le::opt_u64")]
    pub avail: Option<u64>,
    /// used / total.
    #[serde(default, deserialize_with = "le::opt_f64")]
    pub used_fraction: Option<f64>,
}

impl StorageEntry {
    /// Whether the storage holds this content kind.
    pub fn holds(&self, kind: ContentKind) -> bool {
        self.content.split(',').any(|c| c.trim() == kind.as_str())
    }
}

/// Storage content kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContentKind {
    /// vzdump backups.
    Backup,
    /// Container templates.
    Vztmpl,
    /// ISO images.
    Iso,
    /// VM disk images.
    Images,
    /// Container root directories / volumes.
    Rootdir,
    /// Snippets.
    Snippets,
}

impl ContentKind {
    /// The API name.
    pub fn as_str(self) -> &'static str {
        match self {
            ContentKind::Backup => "backup",
            ContentKind::Vztmpl => "vztmpl",
            ContentKind::Iso => "iso",
            ContentKind::Images => "images",
            ContentKind::Rootdir => "rootdir",
            ContentKind::Snippets => "snippets",
        }
    }
}

/// One volume in `GET /nodes/{node}/storage/{storage}/content`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct StorageContentEntry {
    /// Volume id, e.g. `local:backup/vzdump-lxc-101-2024_01_31-12_00_00.tar.zst`.
    pub volid: String,
    /// Content kind as text (`backup`, `vztmpl`, …).
    #[serde(default, deserialize_with = "le::string")]
    pub content: String,
    /// Format (`tar.zst`, `raw`, …).
    #[serde(default, deserialize_with = "le::string")]
    pub format: String,
    /// Size, bytes.
    #[serde(default, deserialize_with = "le::opt_u64")]
    pub size: Option<u64>,
    /// Creation time, epoch seconds.
    #[serde(default, deserialize_with = "le::opt_i64")]
    pub ctime: Option<i64>,
    /// Owning guest (backups, images).
    #[serde(default, deserialize_with = "le::opt_vmid")]
    pub vmid: Option<Vmid>,
    /// Backup notes (cleaned: line breaks become spaces, other control characters U+FFFD).
    #[serde(default, deserialize_with = "le::opt_text")]
    pub notes: Option<String>,
    /// Protected from pruning.
    #[serde(default, deserialize_with = "le::bool")]
    pub protected: bool,
    /// `lxc` or `qemu` for backups.
    #[serde(default, deserialize_with = "le::opt_text")]
    pub subtype: Option<String>,
    /// The size Proxmox could only estimate (`approximate-size`: a qcow2 volume on an LVM
    /// storage whose LV is not active lists its LV size here instead of `size`,
    /// pve-storage `LVMPlugin::list_images`).
    #[serde(
        rename = "approximate-size",
        default,
        deserialize_with = "le::opt_u64",
        skip_serializing_if = "Option::is_none"
    )]
    pub approximate_size: Option<u64>,
    /// Used space, bytes (most storage plugins do not report it).
    #[serde(default, deserialize_with = "le::opt_u64")]
    pub used: Option<u64>,
    /// The parent volume of a linked clone.
    #[serde(default, deserialize_with = "le::opt_text")]
    pub parent: Option<String>,
    /// For an encrypted backup: the key's fingerprint, or `1` when it is unknown.
    #[serde(default, deserialize_with = "le::opt_text")]
    pub encrypted: Option<String>,
    /// The last verification of a backup (Proxmox Backup Server).
    #[serde(default, deserialize_with = "le::opt_verification")]
    pub verification: Option<Verification>,
}

/// The last verification of a backup, as `…/content` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Verification {
    /// The state (`ok`, `failed`, …).
    #[serde(default, deserialize_with = "le::string_text")]
    pub state: String,
    /// The verification task's UPID (a Proxmox Backup Server UPID, kept as text).
    #[serde(default, deserialize_with = "le::opt_text")]
    pub upid: Option<String>,
}

/// Task run state.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    /// Still running.
    Running,
    /// Stopped; see `exitstatus`.
    Stopped,
    /// Anything else.
    #[serde(other)]
    Unknown,
}

/// `GET /nodes/{node}/tasks/{upid}/status`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct TaskStatus {
    /// The task.
    pub upid: Upid,
    /// Node.
    #[serde(default, deserialize_with = "le::string")]
    pub node: String,
    /// Task type.
    #[serde(rename = "type", default, deserialize_with = "le::string")]
    pub task_type: String,
    /// Task id (may be empty).
    #[serde(default, deserialize_with = "le::string")]
    pub id: String,
    /// User (without the token part for token tasks).
    #[serde(default, deserialize_with = "le::string")]
    pub user: String,
    /// Token name for token-started tasks.
    #[serde(default, deserialize_with = "le::opt_string")]
    pub tokenid: Option<String>,
    /// Start, epoch seconds.
    #[serde(default, deserialize_with = "le::opt_i64")]
    pub starttime: Option<i64>,
    /// Running or stopped.
    pub status: TaskState,
    /// `OK`, `WARNINGS: N` or the error line; only when stopped.
    #[serde(default, deserialize_with = "le::opt_string")]
    pub exitstatus: Option<String>,
}

/// One task log line.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct TaskLogLine {
    /// Line number, 1-based.
    #[serde(deserialize_with = "le::u64")]
    pub n: u64,
    /// Text.
    #[serde(default, deserialize_with = "le::string")]
    pub t: String,
}

/// A page of a task log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskLog {
    /// The lines of this page.
    pub lines: Vec<TaskLogLine>,
    /// Total number of lines (envelope `total`), when sent.
    pub total: Option<u64>,
}

/// One entry of `GET /cluster/resources` (for fixtures and inventory).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct ClusterResource {
    /// `qemu/100`, `node/pve`, `storage/pve/local`, …
    pub id: String,
    /// `qemu`, `lxc`, `node`, `storage`, `pool`, `sdn`.
    #[serde(rename = "type")]
    pub resource_type: String,
    /// Node.
    #[serde(default, deserialize_with = "le::opt_string")]
    pub node: Option<String>,
    /// Guest id for guests.
    #[serde(default, deserialize_with = "le::opt_vmid")]
    pub vmid: Option<Vmid>,
    /// Status text.
    #[serde(default, deserialize_with = "le::opt_string")]
    pub status: Option<String>,
    /// Name.
    #[serde(default, deserialize_with = "le::opt_string")]
    pub name: Option<String>,
}

/// One entry of `GET /cluster/status`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct ClusterStatusEntry {
    /// `cluster` or `node/<name>`.
    pub id: String,
    /// `cluster` or `node`.
    #[serde(rename = "type")]
    pub entry_type: String,
    /// Name.
    #[serde(default, deserialize_with = "le::string")]
    pub name: String,
    /// Node online.
    #[serde(default, deserialize_with = "le::opt_bool")]
    pub online: Option<bool>,
    /// Cluster quorate.
    #[serde(default, deserialize_with = "le::opt_bool")]
    pub quorate: Option<bool>,
}

/// `GET /access/permissions`: path → privilege → propagate.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Permissions(pub BTreeMap<String, BTreeMap<String, bool>>);

impl Permissions {
    /// Whether `privilege` is listed for exactly `path`.
    pub fn has(&self, path: &str, privilege: &str) -> bool {
        self.0.get(path).is_some_and(|p| p.contains_key(privilege))
    }
}

impl<'de> Deserialize<'de> for Permissions {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Permissions, D::Error> {
        #[derive(Deserialize)]
        struct Flag(#[serde(deserialize_with = "le::bool")] bool);
        let raw: BTreeMap<String, BTreeMap<String, Flag>> = BTreeMap::deserialize(d)?;
        Ok(Permissions(
            raw.into_iter()
                .map(|(k, v)| (k, v.into_iter().map(|(p, f)| (p, f.0)).collect()))
                .collect(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_config_keeps_digest_and_lxc() {
        let v: Value = serde_json::from_str(
            r#"{"digest":"abc1","memory":512,"hostname":"h","onboot":1,"lxc":[["lxc.a","b"]]}"#,
        )
        .unwrap();
        let c = ContainerConfig::from_value(v).unwrap();
        assert_eq!(c.digest, "abc1");
        assert_eq!(c.get("memory"), Some("512"));
        assert_eq!(c.hostname(), Some("h"));
        assert_eq!(c.lxc, vec![("lxc.a".to_string(), "b".to_string())]);
    }

    /// Every field `…/content` lists (pve-storage `API2/Storage/Content.pm` `index`) is
    /// decoded, numbers given as text included, and display text is cleaned and bounded.
    #[test]
    fn storage_content_keeps_every_listed_field() {
        let wire = serde_json::json!([
            {
                "volid": "pbs:backup/ct/101/2026-12-04T09:00:00Z", "content": "backup",
                "format": "pbs-ct", "size": "2147483648", "ctime": 1_764_838_800,
                "vmid": 101, "subtype": "lxc", "notes": "line one\n\u{1b}[31mred",
                "protected": 1, "encrypted": "ab:cd:ef",
                "verification": {"state": "ok", "upid": "UPID:pbs:0000:0001:0002:0003:verificationjob:x:root@pam:"},
                "used": 4096, "parent": "base-9000-disk-0"
            },
            {"volid": "vg:vm-102-disk-0.qcow2", "content": "images", "format": "qcow2",
             "approximate-size": 8_589_934_592_u64, "vmid": 102, "ctime": "1764838800",
             "verification": "odd"}
        ]);
        let list: Vec<StorageContentEntry> = serde_json::from_value(wire).unwrap();
        let b = &list[0];
        assert_eq!(b.size, Some(2_147_483_648));
        assert_eq!(b.used, Some(4096));
        assert_eq!(b.parent.as_deref(), Some("base-9000-disk-0"));
        assert_eq!(b.encrypted.as_deref(), Some("ab:cd:ef"));
        assert_eq!(b.notes.as_deref(), Some("line one \u{fffd}[31mred"));
        let v = b.verification.as_ref().unwrap();
        assert_eq!(v.state, "ok");
        assert!(v.upid.as_deref().unwrap().starts_with("UPID:pbs:"));
        let lv = &list[1];
        assert_eq!((lv.size, lv.approximate_size), (None, Some(8_589_934_592)));
        assert_eq!(lv.ctime, Some(1_764_838_800));
        assert!(lv.verification.is_none());
        // The JSON report carries them under Proxmox's names.
        let out = serde_json::to_value(&list).unwrap();
        assert_eq!(out[0]["verification"]["state"], "ok");
        assert_eq!(out[0]["encrypted"], "ab:cd:ef");
        assert_eq!(out[1]["approximate-size"], 8_589_934_592_u64);
        // A note longer than the bound is cut, with a note of how much.
        let long: Vec<StorageContentEntry> = serde_json::from_value(
            serde_json::json!([{"volid": "l:x", "notes": "n".repeat(10_000)}]),
        )
        .unwrap();
        let n = long[0].notes.as_deref().unwrap();
        assert!(
            n.len() < 4200 && n.contains("more bytes cut"),
            "{}",
            n.len()
        );
    }
}
