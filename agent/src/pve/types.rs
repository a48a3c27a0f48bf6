//! Typed Proxmox VE API bodies (lenient on input) and validated request arguments.
//!
//! Response types ignore unknown fields and parse numbers and booleans leniently (see
//! [`super::lenient`]). Request types validate on construction, so an invalid snapshot name
//! or config value never reaches the wire.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

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
    /// SHA-1 of the config file; pass it back to [`ConfigChange::digest`].
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
    /// Backup notes.
    #[serde(default, deserialize_with = "le::opt_string")]
    pub notes: Option<String>,
    /// Protected from pruning.
    #[serde(default, deserialize_with = "le::bool")]
    pub protected: bool,
    /// `lxc` or `qemu` for backups.
    #[serde(default, deserialize_with = "le::opt_string")]
    pub subtype: Option<String>,
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

// ---------------------------------------------------------------------------------------
// Request arguments
// ---------------------------------------------------------------------------------------

/// A request argument that Proxmox would reject (or that we refuse to send).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what}: {reason}")]
pub struct ArgumentError {
    /// Which argument.
    pub what: &'static str,
    /// Why.
    pub reason: String,
}

fn arg_err(what: &'static str, reason: impl Into<String>) -> ArgumentError {
    ArgumentError {
        what,
        reason: reason.into(),
    }
}

/// A snapshot name per PVE rules (`pve-configid`: `[a-z][a-z0-9_-]+`, case-insensitive, so
/// at least two characters), at most 40 characters, not `current` or `vzdump`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(into = "String")]
pub struct SnapshotName(String);

impl SnapshotName {
    /// Validates a snapshot name.
    pub fn new(name: &str) -> Result<SnapshotName, ArgumentError> {
        let what = "snapshot name";
        let mut chars = name.chars();
        match chars.next() {
            None => return Err(arg_err(what, "empty")),
            Some(c) if !c.is_ascii_alphabetic() => {
                return Err(arg_err(what, "must start with a letter"));
            }
            _ => {}
        }
        if !chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            return Err(arg_err(
                what,
                "only letters, digits, '_' and '-' are allowed",
            ));
        }
        if name.len() < 2 {
            return Err(arg_err(what, "at least 2 characters"));
        }
        if name.len() > 40 {
            return Err(arg_err(what, "at most 40 characters"));
        }
        if name == "current" || name == "vzdump" {
            return Err(arg_err(what, format!("'{name}' is reserved")));
        }
        Ok(SnapshotName(name.to_string()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<SnapshotName> for String {
    fn from(n: SnapshotName) -> String {
        n.0
    }
}

impl FromStr for SnapshotName {
    type Err = ArgumentError;
    fn from_str(s: &str) -> Result<SnapshotName, ArgumentError> {
        SnapshotName::new(s)
    }
}

impl<'de> Deserialize<'de> for SnapshotName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<SnapshotName, D::Error> {
        SnapshotName::new(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for SnapshotName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A storage id (`local`, `local-lvm`, `backup-nfs`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct StorageId(String);

impl StorageId {
    /// Validates a storage id: `[A-Za-z][A-Za-z0-9._-]*`, at most 64 characters.
    pub fn new(id: &str) -> Result<StorageId, ArgumentError> {
        let ok = id.len() <= 64
            && id.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if ok {
            Ok(StorageId(id.to_string()))
        } else {
            Err(arg_err("storage id", format!("{id:?}")))
        }
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StorageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for StorageId {
    type Err = ArgumentError;
    fn from_str(s: &str) -> Result<StorageId, ArgumentError> {
        StorageId::new(s)
    }
}

/// A volume id such as a backup archive `local:backup/vzdump-lxc-101-….tar.zst`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct VolumeId(String);

impl VolumeId {
    /// Validates `STORAGE:PATH` (no whitespace, no control characters, ≤ 255 bytes, no `..`).
    pub fn new(v: &str) -> Result<VolumeId, ArgumentError> {
        let what = "volume id";
        let Some((storage, rest)) = v.split_once(':') else {
            return Err(arg_err(what, "expected STORAGE:PATH"));
        };
        StorageId::new(storage).map_err(|_| arg_err(what, "bad storage part"))?;
        if rest.is_empty()
            || v.len() > 255
            || v.chars().any(|c| c.is_whitespace() || c.is_control())
            || rest.split('/').any(|seg| seg == "..")
        {
            return Err(arg_err(what, format!("{v:?}")));
        }
        Ok(VolumeId(v.to_string()))
    }

    /// The volume id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for VolumeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for VolumeId {
    type Err = ArgumentError;
    fn from_str(s: &str) -> Result<VolumeId, ArgumentError> {
        VolumeId::new(s)
    }
}

/// Restore a container from a backup archive (`POST /nodes/{node}/lxc`, `restore=1`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreRequest {
    /// Target guest id.
    pub vmid: Vmid,
    /// Backup volume.
    pub archive: VolumeId,
    /// Target storage for the root filesystem.
    pub storage: StorageId,
    /// Assign a fresh MAC address etc. (`unique=1`).
    pub unique: bool,
    /// Overwrite an existing (stopped) container (`force=1`).
    pub force: bool,
    /// Start after restore.
    pub start: bool,
}

/// Backup mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackupMode {
    /// Stop the guest for a consistent backup, start it again afterwards.
    Stop,
    /// Live snapshot (storage must support it; falls back to suspend).
    Snapshot,
}

impl BackupMode {
    /// The API name.
    pub fn as_str(self) -> &'static str {
        match self {
            BackupMode::Stop => "stop",
            BackupMode::Snapshot => "snapshot",
        }
    }
}

/// A vzdump backup of one container (always zstd-compressed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupRequest {
    /// The guest.
    pub vmid: Vmid,
    /// Mode.
    pub mode: BackupMode,
    /// Target storage.
    pub storage: StorageId,
    /// Notes template (`{{guestname}}`, `{{vmid}}`, …); single line, ≤ 1024 bytes.
    pub notes_template: Option<String>,
}

/// What vzdump answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackupStarted {
    /// A task was started.
    Task(Upid),
    /// Proxmox answered the literal `"OK"`: nothing to do on this node (no task started).
    NothingToDo,
}

/// Config keys `set_config` may change (a deliberate allowlist; root-only keys such as
/// `features`, `devN`, `hookscript` and `lxc.*` are absent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ConfigKey {
    /// CPU cores.
    Cores,
    /// CPU limit.
    Cpulimit,
    /// CPU weight.
    Cpuunits,
    /// Memory, MiB.
    Memory,
    /// Swap, MiB.
    Swap,
    /// Hostname.
    Hostname,
    /// Description (single line here).
    Description,
    /// Start at boot.
    Onboot,
    /// Startup order spec.
    Startup,
    /// DNS servers.
    Nameserver,
    /// DNS search domain.
    Searchdomain,
    /// Network interface `netN` (0..=31).
    Net(u8),
    /// Mount point `mpN` (0..=255).
    Mp(u8),
    /// Tags.
    Tags,
    /// Protection flag.
    Protection,
}

impl ConfigKey {
    /// The API name (`net0`, `memory`, …).
    pub fn name(self) -> String {
        match self {
            ConfigKey::Cores => "cores".into(),
            ConfigKey::Cpulimit => "cpulimit".into(),
            ConfigKey::Cpuunits => "cpuunits".into(),
            ConfigKey::Memory => "memory".into(),
            ConfigKey::Swap => "swap".into(),
            ConfigKey::Hostname => "hostname".into(),
            ConfigKey::Description => "description".into(),
            ConfigKey::Onboot => "onboot".into(),
            ConfigKey::Startup => "startup".into(),
            ConfigKey::Nameserver => "nameserver".into(),
            ConfigKey::Searchdomain => "searchdomain".into(),
            ConfigKey::Net(n) => format!("net{n}"),
            ConfigKey::Mp(n) => format!("mp{n}"),
            ConfigKey::Tags => "tags".into(),
            ConfigKey::Protection => "protection".into(),
        }
    }

    /// Validates a value for this key.
    pub fn check_value(self, value: &str) -> Result<(), ArgumentError> {
        let what = "config value";
        if value.chars().any(char::is_control) {
            return Err(arg_err(
                what,
                format!(
                    "{}: control characters (newline, …) are not allowed",
                    self.name()
                ),
            ));
        }
        if value.len() > 4096 {
            return Err(arg_err(what, format!("{}: too long", self.name())));
        }
        let uint = |max: u64| -> Result<(), ArgumentError> {
            match value.parse::<u64>() {
                Ok(n) if n <= max => Ok(()),
                _ => Err(arg_err(
                    what,
                    format!("{} must be an integer ≤ {max}, got {value:?}", self.name()),
                )),
            }
        };
        match self {
            ConfigKey::Cores => uint(8192).and_then(|()| {
                if value == "0" {
                    Err(arg_err(what, "cores must be ≥ 1"))
                } else {
                    Ok(())
                }
            }),
            ConfigKey::Memory => uint(1 << 40),
            ConfigKey::Swap => uint(1 << 40),
            ConfigKey::Cpuunits => uint(500_000),
            ConfigKey::Cpulimit => match value.parse::<f64>() {
                Ok(f) if (0.0..=8192.0).contains(&f) => Ok(()),
                _ => Err(arg_err(
                    what,
                    format!("cpulimit must be a number 0..8192, got {value:?}"),
                )),
            },
            ConfigKey::Onboot | ConfigKey::Protection => {
                if value == "0" || value == "1" {
                    Ok(())
                } else {
                    Err(arg_err(what, format!("{} must be 0 or 1", self.name())))
                }
            }
            ConfigKey::Hostname => {
                let ok = !value.is_empty()
                    && value.len() <= 253
                    && value.split('.').all(|l| {
                        !l.is_empty()
                            && l.len() <= 63
                            && !l.starts_with('-')
                            && !l.ends_with('-')
                            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    });
                if ok {
                    Ok(())
                } else {
                    Err(arg_err(what, format!("bad hostname {value:?}")))
                }
            }
            ConfigKey::Mp(_) => {
                // Bind mounts (absolute host paths) are root-only in Proxmox; refuse early.
                // The volume is the first, key-less option or `volume=…` (PVE's
                // `[volume=]<volume>,mp=<path>,…`).
                let host_path = value.split(',').enumerate().any(|(i, opt)| {
                    let opt = opt.trim();
                    let volume = match opt.split_once('=') {
                        Some((k, v)) if k.trim() == "volume" => v.trim(),
                        Some(_) => return false,
                        None if i == 0 => opt,
                        None => return false,
                    };
                    volume.starts_with('/')
                });
                if host_path {
                    Err(arg_err(
                        what,
                        "bind mount points (host paths) are root-only",
                    ))
                } else {
                    Ok(())
                }
            }
            _ => Ok(()),
        }
    }
}

impl FromStr for ConfigKey {
    type Err = ArgumentError;
    fn from_str(s: &str) -> Result<ConfigKey, ArgumentError> {
        let indexed = |prefix: &str, max: u8| -> Option<u8> {
            let n = s.strip_prefix(prefix)?;
            // Digits only: `u8::from_str` also takes a leading `+`, which would make
            // `net+31` an alias of `net31` (found by the set_config_args fuzz target).
            if n.is_empty()
                || (n.len() > 1 && n.starts_with('0'))
                || !n.bytes().all(|b| b.is_ascii_digit())
            {
                return None;
            }
            n.parse::<u8>().ok().filter(|n| *n <= max)
        };
        Ok(match s {
            "cores" => ConfigKey::Cores,
            "cpulimit" => ConfigKey::Cpulimit,
            "cpuunits" => ConfigKey::Cpuunits,
            "memory" => ConfigKey::Memory,
            "swap" => ConfigKey::Swap,
            "hostname" => ConfigKey::Hostname,
            "description" => ConfigKey::Description,
            "onboot" => ConfigKey::Onboot,
            "startup" => ConfigKey::Startup,
            "nameserver" => ConfigKey::Nameserver,
            "searchdomain" => ConfigKey::Searchdomain,
            "tags" => ConfigKey::Tags,
            "protection" => ConfigKey::Protection,
            _ => {
                if let Some(n) = indexed("net", 31) {
                    ConfigKey::Net(n)
                } else if let Some(n) = indexed("mp", 255) {
                    ConfigKey::Mp(n)
                } else {
                    return Err(arg_err(
                        "config key",
                        format!("{s:?} is not in the allowlist"),
                    ));
                }
            }
        })
    }
}

impl fmt::Display for ConfigKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// A `PUT …/config` change: values to set, keys to delete, and the digest read before.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigChange {
    set: BTreeMap<ConfigKey, String>,
    delete: Vec<ConfigKey>,
    digest: Option<String>,
}

impl ConfigChange {
    /// An empty change.
    pub fn new() -> ConfigChange {
        ConfigChange::default()
    }

    /// Sets `key` to `value` (validated).
    pub fn set(
        mut self,
        key: ConfigKey,
        value: impl Into<String>,
    ) -> Result<ConfigChange, ArgumentError> {
        let value = value.into();
        key.check_value(&value)?;
        self.set.insert(key, value);
        Ok(self)
    }

    /// Deletes `key`.
    pub fn delete(mut self, key: ConfigKey) -> ConfigChange {
        if !self.delete.contains(&key) {
            self.delete.push(key);
        }
        self
    }

    /// Only apply if the config still has this digest (from [`ContainerConfig::digest`]).
    pub fn digest(mut self, digest: &str) -> Result<ConfigChange, ArgumentError> {
        if digest.is_empty() || digest.len() > 64 || !digest.chars().all(|c| c.is_ascii_hexdigit())
        {
            return Err(arg_err("digest", format!("{digest:?}")));
        }
        self.digest = Some(digest.to_string());
        Ok(self)
    }

    /// True when nothing would change.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.delete.is_empty()
    }

    /// The form fields to send.
    pub(crate) fn form(&self) -> Result<Vec<(String, String)>, ArgumentError> {
        if self.is_empty() {
            return Err(arg_err("config change", "nothing to change"));
        }
        if let Some(k) = self.delete.iter().find(|k| self.set.contains_key(k)) {
            return Err(arg_err(
                "config change",
                format!("{k} is both set and deleted"),
            ));
        }
        let mut form: Vec<(String, String)> = self
            .set
            .iter()
            .map(|(k, v)| (k.name(), v.clone()))
            .collect();
        if !self.delete.is_empty() {
            let names: Vec<String> = self.delete.iter().map(|k| k.name()).collect();
            form.push(("delete".into(), names.join(",")));
        }
        if let Some(d) = &self.digest {
            form.push(("digest".into(), d.clone()));
        }
        Ok(form)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_names() {
        for ok in ["ab", "a1", "before-upgrade", "S_1", &"x".repeat(40)] {
            assert!(SnapshotName::new(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "a",
            "1abc",
            "-a",
            "a b",
            "a.b",
            "current",
            "vzdump",
            &"x".repeat(41),
            "ä",
        ] {
            assert!(SnapshotName::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn config_keys_and_values() {
        assert_eq!("net3".parse::<ConfigKey>().unwrap(), ConfigKey::Net(3));
        assert_eq!("mp255".parse::<ConfigKey>().unwrap(), ConfigKey::Mp(255));
        for bad in [
            "net32",
            "net",
            "net01",
            "net+31",
            "mp+0",
            "net 1",
            "features",
            "lxc.apparmor.profile",
            "hookscript",
            "dev0",
        ] {
            assert!(bad.parse::<ConfigKey>().is_err(), "{bad}");
        }
        assert!(ConfigKey::Memory.check_value("2048").is_ok());
        assert!(ConfigKey::Memory.check_value("2G").is_err());
        assert!(ConfigKey::Description.check_value("a\nb").is_err());
        assert!(ConfigKey::Hostname.check_value("web-1.example").is_ok());
        assert!(ConfigKey::Hostname.check_value("-web").is_err());
        assert!(ConfigKey::Onboot.check_value("yes").is_err());
        assert!(ConfigKey::Mp(0).check_value("/srv/data,mp=/data").is_err());
        // The `volume=` form of a bind mount is refused too.
        assert!(ConfigKey::Mp(0).check_value("volume=/host,mp=/x").is_err());
        assert!(ConfigKey::Mp(0).check_value("mp=/x,volume=/host").is_err());
        assert!(
            ConfigKey::Mp(0)
                .check_value(" volume = /host,mp=/x")
                .is_err()
        );
        assert!(
            ConfigKey::Mp(0)
                .check_value("volume=local-lvm:8,mp=/data")
                .is_ok()
        );
        assert!(ConfigKey::Mp(0).check_value("local-lvm:8,mp=/data").is_ok());
    }

    #[test]
    fn config_change_form() {
        let c = ConfigChange::new()
            .set(ConfigKey::Memory, "1024")
            .unwrap()
            .delete(ConfigKey::Net(1))
            .digest("5911baea29f4c0073fb063fd9ab29e75892832bf")
            .unwrap();
        let form = c.form().unwrap();
        assert!(form.contains(&("memory".into(), "1024".into())));
        assert!(form.contains(&("delete".into(), "net1".into())));
        assert!(ConfigChange::new().form().is_err());
        let both = ConfigChange::new()
            .set(ConfigKey::Swap, "0")
            .unwrap()
            .delete(ConfigKey::Swap);
        assert!(both.form().is_err());
        assert!(ConfigChange::new().digest("zz").is_err());
    }

    #[test]
    fn volume_ids() {
        assert!(VolumeId::new("local:backup/vzdump-lxc-101-2024_01_31-12_00_00.tar.zst").is_ok());
        for bad in [
            "local",
            "local:",
            "lo cal:x",
            "local:../../etc/passwd",
            "local:a b",
        ] {
            assert!(VolumeId::new(bad).is_err(), "{bad}");
        }
    }

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
}
