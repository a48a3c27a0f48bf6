//! The tarpc service — the whole allowlist — and the request and reply types of its methods.
//!
//! Requests carry only validated newtypes; nothing in a request is a path, an option string or
//! an argv. The helper computes those itself.

use serde::{Deserialize, Serialize};

use crate::error::HelperError;
use crate::types::{
    Bridge, Cores, DiskName, FsUuid, Hostname, MemoryMib, MountName, RootfsGib, StorageId,
    TemplateVolid, Vmid,
};

/// What a helper can do, as reported by `hello`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Capability {
    /// `golden_image_create`: `pct create` with keyctl and nesting.
    GoldenImage,
    /// `usb_mount`, `usb_unmount`, `usb_list`.
    UsbMount,
    /// `smart_scan`, `smart_read`.
    Smart,
    /// `sensors_read`.
    Sensors,
}

/// The reply to `hello`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelloReply {
    /// The helper's protocol version ([`crate::PROTOCOL_VERSION`] of its build).
    pub protocol_version: u32,
    /// The helper's package version.
    pub helper_version: String,
    /// The operations this helper offers on this host.
    pub capabilities: Vec<Capability>,
    /// How USB mounts are made persistent on this host.
    pub mount_backend: MountBackend,
}

/// A golden-image container to build with `pct create`. The helper fixes
/// `--unprivileged 1 --features keyctl=1,nesting=1` and the network options itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GoldenImageRequest {
    /// The new container's id.
    pub vmid: Vmid,
    /// The template to create it from.
    pub template: TemplateVolid,
    /// Its host name.
    pub hostname: Hostname,
    /// The storage for its root filesystem.
    pub storage: StorageId,
    /// Root filesystem size.
    pub rootfs_gib: RootfsGib,
    /// Memory.
    pub memory_mib: MemoryMib,
    /// CPU cores.
    pub cores: Cores,
    /// The bridge `net0` joins (DHCP).
    pub bridge: Bridge,
}

/// Captured output of a tool run by the helper, bounded.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ToolOutput {
    /// Exit code, or `None` when a signal ended the tool.
    pub exit_code: Option<i32>,
    /// Standard output (lossy UTF-8), cut at the helper's bound.
    pub stdout: String,
    /// Whether stdout was cut.
    pub stdout_truncated: bool,
    /// Standard error (lossy UTF-8), cut at the helper's bound.
    pub stderr: String,
    /// Whether stderr was cut.
    pub stderr_truncated: bool,
}

/// The reply to a successful `golden_image_create`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GoldenImageReply {
    /// The created container.
    pub vmid: Vmid,
    /// What `pct create` printed.
    pub output: ToolOutput,
}

/// Mount the filesystem with this UUID as `<mount_root>/<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsbMountRequest {
    /// The filesystem's UUID.
    pub uuid: FsUuid,
    /// The managed mount's name, which is also the last component of its mount point.
    pub name: MountName,
}

/// A filesystem type the helper may mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FsType {
    /// ext4.
    Ext4,
    /// XFS.
    Xfs,
    /// btrfs.
    Btrfs,
    /// exFAT (only when the helper's config opts in).
    Exfat,
}

impl FsType {
    /// The name mount(8) and blkid use.
    pub fn as_str(self) -> &'static str {
        match self {
            FsType::Ext4 => "ext4",
            FsType::Xfs => "xfs",
            FsType::Btrfs => "btrfs",
            FsType::Exfat => "exfat",
        }
    }

    /// Parses the name blkid prints; `None` for any other filesystem.
    pub fn from_blkid(s: &str) -> Option<FsType> {
        match s {
            "ext4" => Some(FsType::Ext4),
            "xfs" => Some(FsType::Xfs),
            "btrfs" => Some(FsType::Btrfs),
            "exfat" => Some(FsType::Exfat),
            _ => None,
        }
    }
}

impl std::fmt::Display for FsType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the helper makes mounts persistent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MountBackend {
    /// A systemd `.mount` unit started through systemctl, so PID 1 owns the mount.
    Systemd,
    /// mount(8) directly, with an fstab-format record kept by the helper.
    Direct,
}

/// A mount the helper manages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountInfo {
    /// The managed mount's name.
    pub name: MountName,
    /// The filesystem's UUID.
    pub uuid: FsUuid,
    /// The filesystem type.
    pub fstype: FsType,
    /// Where it is mounted (computed by the helper: `<mount_root>/<name>`).
    pub mount_point: String,
    /// The options it is mounted with.
    pub options: String,
    /// Whether it is mounted right now.
    pub mounted: bool,
    /// How it is made persistent.
    pub backend: MountBackend,
    /// The systemd unit name, for the systemd backend.
    pub unit: Option<String>,
}

/// The reply to `usb_unmount`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnmountReply {
    /// The mount that was removed.
    pub name: MountName,
    /// Whether it was mounted before the call (its record is removed either way).
    pub was_mounted: bool,
}

/// A disk found in `/sys/block`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskInfo {
    /// Kernel name (`sda`, `nvme0n1`).
    pub name: DiskName,
    /// Size in bytes.
    pub size_bytes: u64,
    /// Model string from sysfs, trimmed, if any.
    pub model: Option<String>,
    /// Whether the kernel marks it removable.
    pub removable: bool,
    /// Whether it spins (`queue/rotational`), if known.
    pub rotational: Option<bool>,
}

/// Raw smartctl result for one disk. The helper does not interpret it; the agent parses the
/// JSON and explains the exit-status bits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmartReport {
    /// The disk read.
    pub disk: DiskName,
    /// The `-d` device type the helper had to use (`sat` after an unknown USB bridge), if any.
    pub device_type: Option<String>,
    /// smartctl's exit status, a bit mask (see smartctl(8) EXIT STATUS).
    pub exit_status: u8,
    /// smartctl's JSON output, as printed, cut at the helper's bound.
    pub json: String,
    /// Whether the JSON was cut (then it will not parse).
    pub truncated: bool,
}

/// What a sensor measures; the unit of [`SensorReading::value`] follows from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SensorKind {
    /// Degrees Celsius.
    Temperature,
    /// Revolutions per minute.
    Fan,
    /// Volts.
    Voltage,
    /// Watts.
    Power,
    /// Amperes.
    Current,
}

impl SensorKind {
    /// The SI unit symbol of this kind's values.
    pub fn unit(self) -> &'static str {
        match self {
            SensorKind::Temperature => "°C",
            SensorKind::Fan => "RPM",
            SensorKind::Voltage => "V",
            SensorKind::Power => "W",
            SensorKind::Current => "A",
        }
    }
}

/// One hwmon reading.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SensorReading {
    /// The chip's `name` from hwmon (`coretemp`, `nvme`, `nct6798`).
    pub chip: String,
    /// The hwmon directory it came from (`hwmon2`), to tell equal chips apart.
    pub device: String,
    /// The sensor's label, or its file stem (`temp1`) when it has none.
    pub label: String,
    /// What it measures.
    pub kind: SensorKind,
    /// The value in SI units (see [`SensorKind::unit`]).
    pub value: f64,
}

/// The helper's service: this trait *is* the allowlist. Each method's arguments are validated
/// when they are decoded.
#[tarpc::service]
pub trait Helper {
    /// Handshake: the agent sends its protocol version; the helper refuses a mismatch and
    /// otherwise says what it is and can do.
    async fn hello(agent_protocol: u32) -> Result<HelloReply, HelperError>;
    /// Builds a golden-image container with `pct create`.
    async fn golden_image_create(req: GoldenImageRequest) -> Result<GoldenImageReply, HelperError>;
    /// Mounts a filesystem by UUID, persistently.
    async fn usb_mount(req: UsbMountRequest) -> Result<MountInfo, HelperError>;
    /// Unmounts a managed mount and removes its record.
    async fn usb_unmount(name: MountName) -> Result<UnmountReply, HelperError>;
    /// Lists the mounts the helper manages.
    async fn usb_list() -> Result<Vec<MountInfo>, HelperError>;
    /// Lists the disks in `/sys/block` that SMART can be read from.
    async fn smart_scan() -> Result<Vec<DiskInfo>, HelperError>;
    /// Reads SMART data of one disk with smartctl.
    async fn smart_read(disk: DiskName) -> Result<SmartReport, HelperError>;
    /// Reads the hardware sensors from hwmon.
    async fn sensors_read() -> Result<Vec<SensorReading>, HelperError>;
}
