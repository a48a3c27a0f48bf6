//! The helper's root-owned configuration file (`/etc/felhom/helper.json` by default).
//!
//! Every key is optional and has a production default; unknown keys are an error naming the
//! key. The file, and every tool it names, must not be writable by anyone but the helper's own
//! user (root in production): the helper refuses to start otherwise.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use felhom_protocol::{Bridge, FsType, MountBackend, StorageId};
use serde::Deserialize;

use crate::error::StartupError;

/// The default configuration file.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/felhom/helper.json";

/// The largest allowed `max_output_bytes`: two captured streams must fit in one reply frame.
pub const MAX_OUTPUT_LIMIT: usize = felhom_protocol::transport::MAX_REPLY_FRAME / 4;

/// The largest allowed `max_connections`: each connection is a file descriptor, and the
/// helper must keep room below systemd's default soft limit of 1024 for its tools' pipes.
pub const MAX_CONNECTIONS_LIMIT: usize = 512;

/// The helper's configuration, as written in the JSON file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The agent's user name (or numeric uid) allowed to connect besides root.
    pub agent_user: String,
    /// Exit after this many seconds with no connection and nothing in flight.
    pub idle_timeout_secs: u64,
    /// Absolute paths of the tools the helper runs.
    pub tools: Tools,
    /// Directory under which managed mounts live (`<mount_root>/<name>`).
    pub mount_root: PathBuf,
    /// Where the systemd backend writes `.mount` units.
    pub unit_dir: PathBuf,
    /// How mounts are made persistent.
    pub mount_backend: BackendChoice,
    /// The fstab-format record of the `direct` backend.
    pub record_file: PathBuf,
    /// Filesystem types that may be mounted (`ext4`, `xfs`, `btrfs`, and `exfat` if listed).
    pub allowed_filesystems: Vec<String>,
    /// The block-device sysfs tree (`/sys/block`).
    pub sysfs_block: PathBuf,
    /// The sysfs index of block devices by number (`/sys/dev/block/<major>:<minor>`), used to
    /// prove that a device to mount is a partition or disk on a USB bus.
    pub sysfs_dev_block: PathBuf,
    /// udev's stable names of disks (`/dev/disk/by-id`); a systemd mount unit names the USB
    /// disk by its `usb-…` link here.
    pub dev_disk_by_id: PathBuf,
    /// Permission bits of `mount_root`, as an octal string (default `"0750"`; group: the agent
    /// user's primary group). Checked at every start, and set when it differs.
    pub mount_root_mode: String,
    /// At SIGTERM, how long a running operation may go on before its tools are stopped.
    pub shutdown_grace_secs: u64,
    /// The hwmon sysfs tree (`/sys/class/hwmon`).
    pub sysfs_hwmon: PathBuf,
    /// The mount table the helper reads to tell whether something is mounted.
    pub mountinfo: PathBuf,
    /// The process table of the whole host (`/proc`): before a mount, every mount namespace
    /// (`<pid>/mountinfo`) and every open file (`<pid>/fd`) is searched for the disk.
    pub proc_root: PathBuf,
    /// Server-side time caps per operation, in seconds.
    pub time_caps: TimeCaps,
    /// Bound for each captured output stream of a tool (bytes).
    pub max_output_bytes: usize,
    /// What `golden_image_create` may name: storages, template storages and bridges.
    pub golden_image: GoldenImageBounds,
    /// The most connections served at once (1 to [`MAX_CONNECTIONS_LIMIT`], default 32);
    /// a connection past it is closed at accept, with an aggregated audit record.
    pub max_connections: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            agent_user: "felhom-agent".into(),
            idle_timeout_secs: 60,
            tools: Tools::default(),
            mount_root: "/mnt/felhom".into(),
            unit_dir: "/etc/systemd/system".into(),
            mount_backend: BackendChoice::Systemd,
            record_file: "/var/lib/felhom-helper/mounts.fstab".into(),
            allowed_filesystems: vec!["ext4".into(), "xfs".into(), "btrfs".into()],
            sysfs_block: "/sys/block".into(),
            sysfs_dev_block: "/sys/dev/block".into(),
            dev_disk_by_id: "/dev/disk/by-id".into(),
            mount_root_mode: "0750".into(),
            shutdown_grace_secs: 20,
            sysfs_hwmon: "/sys/class/hwmon".into(),
            mountinfo: "/proc/self/mountinfo".into(),
            proc_root: "/proc".into(),
            time_caps: TimeCaps::default(),
            max_output_bytes: 1024 * 1024,
            golden_image: GoldenImageBounds::default(),
            max_connections: 32,
        }
    }
}

/// The `golden_image` key: the only storages, template storages and bridges a
/// `golden_image_create` request may name. Anything else is refused before `pct` runs, with
/// the key to change. The defaults are a stock Proxmox VE install's: containers on
/// `local-lvm`, templates on `local`, the network on `vmbr0`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GoldenImageBounds {
    /// Storages the container's root filesystem may be created on (`--rootfs <storage>:…`).
    pub storages: Vec<String>,
    /// Storages the template may come from (the `<storage>` of `<storage>:vztmpl/<file>`).
    pub template_storages: Vec<String>,
    /// Bridges `net0` may be attached to.
    pub bridges: Vec<String>,
}

impl Default for GoldenImageBounds {
    fn default() -> Self {
        Self {
            storages: vec!["local-lvm".into()],
            template_storages: vec!["local".into()],
            bridges: vec!["vmbr0".into()],
        }
    }
}

impl GoldenImageBounds {
    /// Validates every value with the protocol's newtypes (what a request's values pass), so a
    /// value no request could ever match is a start-up error naming the key and the value.
    pub fn validate(&self) -> Result<(), String> {
        let bad = |key: &str, v: &str, e: felhom_protocol::ValidationError| {
            format!("golden_image.{key}: {v:?} is invalid: {e}")
        };
        for v in &self.storages {
            StorageId::new(v).map_err(|e| bad("storages", v, e))?;
        }
        for v in &self.template_storages {
            StorageId::new(v).map_err(|e| bad("template_storages", v, e))?;
        }
        for v in &self.bridges {
            Bridge::new(v).map_err(|e| bad("bridges", v, e))?;
        }
        Ok(())
    }
}

/// The `mount_backend` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendChoice {
    /// A systemd `.mount` unit per mount, started through systemctl.
    Systemd,
    /// mount(8) directly, with an fstab-format record.
    Direct,
}

impl From<BackendChoice> for MountBackend {
    fn from(b: BackendChoice) -> Self {
        match b {
            BackendChoice::Systemd => MountBackend::Systemd,
            BackendChoice::Direct => MountBackend::Direct,
        }
    }
}

/// Absolute paths of the tools.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Tools {
    /// `pct` (Proxmox container toolkit).
    pub pct: PathBuf,
    /// `smartctl`.
    pub smartctl: PathBuf,
    /// `blkid`.
    pub blkid: PathBuf,
    /// `mount`.
    pub mount: PathBuf,
    /// `umount`.
    pub umount: PathBuf,
    /// `systemctl`.
    pub systemctl: PathBuf,
}

impl Default for Tools {
    fn default() -> Self {
        Self {
            pct: "/usr/sbin/pct".into(),
            smartctl: "/usr/sbin/smartctl".into(),
            blkid: "/usr/sbin/blkid".into(),
            mount: "/usr/bin/mount".into(),
            umount: "/usr/bin/umount".into(),
            systemctl: "/usr/bin/systemctl".into(),
        }
    }
}

impl Tools {
    /// Every tool with its name.
    pub fn all(&self) -> [(Tool, &Path); 6] {
        [
            (Tool::Pct, &self.pct),
            (Tool::Smartctl, &self.smartctl),
            (Tool::Blkid, &self.blkid),
            (Tool::Mount, &self.mount),
            (Tool::Umount, &self.umount),
            (Tool::Systemctl, &self.systemctl),
        ]
    }

    fn set(&mut self, tool: Tool, p: PathBuf) {
        match tool {
            Tool::Pct => self.pct = p,
            Tool::Smartctl => self.smartctl = p,
            Tool::Blkid => self.blkid = p,
            Tool::Mount => self.mount = p,
            Tool::Umount => self.umount = p,
            Tool::Systemctl => self.systemctl = p,
        }
    }

    /// The configured path of `tool`.
    pub fn path(&self, tool: Tool) -> &Path {
        match tool {
            Tool::Pct => &self.pct,
            Tool::Smartctl => &self.smartctl,
            Tool::Blkid => &self.blkid,
            Tool::Mount => &self.mount,
            Tool::Umount => &self.umount,
            Tool::Systemctl => &self.systemctl,
        }
    }
}

/// The tools the helper may run. `exec` takes one of these, never a path from a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    /// `pct`.
    Pct,
    /// `smartctl`.
    Smartctl,
    /// `blkid`.
    Blkid,
    /// `mount`.
    Mount,
    /// `umount`.
    Umount,
    /// `systemctl`.
    Systemctl,
}

impl Tool {
    /// The tool's short name, used in errors and the audit log.
    pub fn name(self) -> &'static str {
        match self {
            Tool::Pct => "pct",
            Tool::Smartctl => "smartctl",
            Tool::Blkid => "blkid",
            Tool::Mount => "mount",
            Tool::Umount => "umount",
            Tool::Systemctl => "systemctl",
        }
    }
}

/// Server-side time caps, in seconds. The client's deadline can shorten them, never extend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimeCaps {
    /// `golden_image_create` (`pct create`).
    pub golden_image: u64,
    /// `usb_mount`, `usb_unmount`, `usb_list`.
    pub mount: u64,
    /// `smart_scan`, `smart_read`.
    pub smart: u64,
    /// `sensors_read`.
    pub sensors: u64,
}

impl Default for TimeCaps {
    fn default() -> Self {
        Self {
            golden_image: 1200,
            mount: 60,
            smart: 30,
            sensors: 5,
        }
    }
}

/// The configuration after validation, with the agent's uid resolved.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    /// The file as written, except that `mount_root`, `unit_dir` (when present) and the
    /// tools (when present) are canonical, trust-checked paths.
    pub config: Config,
    /// The tool paths as written in the file (used as `argv[0]` and in messages).
    pub configured_tools: Tools,
    /// The agent user's uid.
    pub agent_uid: u32,
    /// The allowed filesystem types.
    pub allowed_filesystems: Vec<FsType>,
    /// Tools that exist (the others make their operations unavailable).
    pub missing_tools: Vec<Tool>,
}

impl LoadedConfig {
    /// The idle timeout.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.config.idle_timeout_secs)
    }

    /// Whether `tool` was found at start-up.
    pub fn has_tool(&self, tool: Tool) -> bool {
        !self.missing_tools.contains(&tool)
    }
}

/// Reads, parses, validates and security-checks the configuration file.
pub fn load(path: &Path) -> Result<LoadedConfig, StartupError> {
    let err = |reason: String| StartupError::Config {
        path: path.to_path_buf(),
        reason,
    };
    let mut trusted = TrustedDirs::default();
    let real = trusted.check(path)?;
    let text = read_trusted_file(&real)?;
    let config: Config = parse(&text).map_err(err)?;
    validate(path, config, &mut trusted)
}

/// Largest configuration file the helper reads.
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// Opens `path` (already trust-checked and canonical) without following a symlink, checks
/// the opened file itself (regular, owner, mode) and reads it through the same descriptor.
fn read_trusted_file(path: &Path) -> Result<String, StartupError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let insecure = |reason: String| StartupError::Insecure {
        path: path.to_path_buf(),
        reason,
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| insecure(format!("cannot open: {e}")))?;
    let md = file
        .metadata()
        .map_err(|e| insecure(format!("cannot stat: {e}")))?;
    let euid = nix::unistd::geteuid().as_raw();
    if !md.is_file() {
        return Err(insecure("not a regular file".into()));
    }
    if md.uid() != euid && md.uid() != 0 {
        return Err(insecure(format!(
            "it is owned by uid {}, not by root or the helper's user ({euid})",
            md.uid()
        )));
    }
    if md.mode() & 0o022 != 0 {
        return Err(insecure(format!(
            "it is writable by its group or by others (mode {:o}); chmod go-w it",
            md.mode() & 0o7777
        )));
    }
    let mut text = String::new();
    file.take(MAX_CONFIG_BYTES)
        .read_to_string(&mut text)
        .map_err(|e| StartupError::Config {
            path: path.to_path_buf(),
            reason: format!("cannot read: {e}"),
        })?;
    Ok(text)
}

/// Parses the JSON text (no validation beyond the schema).
pub fn parse(text: &str) -> Result<Config, String> {
    serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))
}

fn validate(
    path: &Path,
    mut config: Config,
    trusted: &mut TrustedDirs,
) -> Result<LoadedConfig, StartupError> {
    let err = |reason: String| StartupError::Config {
        path: path.to_path_buf(),
        reason,
    };
    let paths: [(&str, &Path); 9] = [
        ("mount_root", &config.mount_root),
        ("unit_dir", &config.unit_dir),
        ("record_file", &config.record_file),
        ("sysfs_block", &config.sysfs_block),
        ("sysfs_dev_block", &config.sysfs_dev_block),
        ("dev_disk_by_id", &config.dev_disk_by_id),
        ("sysfs_hwmon", &config.sysfs_hwmon),
        ("mountinfo", &config.mountinfo),
        ("proc_root", &config.proc_root),
    ];
    for (key, p) in paths.iter().copied() {
        check_config_path(key, p).map_err(err)?;
    }
    for (tool, p) in config.tools.all() {
        check_config_path(&format!("tools.{}", tool.name()), p).map_err(err)?;
    }
    if config.mount_root == Path::new("/") {
        return Err(err("mount_root must not be /".into()));
    }
    if config.idle_timeout_secs == 0 || config.idle_timeout_secs > 24 * 3600 {
        return Err(err("idle_timeout_secs must be between 1 and 86400".into()));
    }
    if config.shutdown_grace_secs > 3600 {
        return Err(err("shutdown_grace_secs must be at most 3600".into()));
    }
    let mount_root_mode = parse_mode(&config.mount_root_mode).map_err(err)?;
    let caps = config.time_caps;
    for (key, v) in [
        ("golden_image", caps.golden_image),
        ("mount", caps.mount),
        ("smart", caps.smart),
        ("sensors", caps.sensors),
    ] {
        if v == 0 || v > 24 * 3600 {
            return Err(err(format!(
                "time_caps.{key} must be between 1 and 86400 seconds"
            )));
        }
    }
    if config.max_output_bytes < 1024 || config.max_output_bytes > MAX_OUTPUT_LIMIT {
        return Err(err(format!(
            "max_output_bytes must be between 1024 and {MAX_OUTPUT_LIMIT}"
        )));
    }
    if config.max_connections == 0 || config.max_connections > MAX_CONNECTIONS_LIMIT {
        return Err(err(format!(
            "max_connections must be between 1 and {MAX_CONNECTIONS_LIMIT}"
        )));
    }
    let mut allowed = Vec::new();
    for name in &config.allowed_filesystems {
        let fs = FsType::from_blkid(name).ok_or_else(|| {
            err(format!(
                "allowed_filesystems: {name:?} is not one of ext4, xfs, btrfs, exfat"
            ))
        })?;
        if !allowed.contains(&fs) {
            allowed.push(fs);
        }
    }
    config.golden_image.validate().map_err(err)?;
    let agent = resolve_agent(&config.agent_user).map_err(err)?;
    // Where the helper mounts, writes units and records must be the helper's alone: mount(8)
    // follows symlinks in its target, so a writable mount_root would let the agent race a
    // `<name> -> /etc` link. mount_root is stored canonical (what mountinfo shows).
    config.mount_root =
        prepare_mount_root_in(&config.mount_root, mount_root_mode, agent.gid, trusted)?;
    if config.mount_root == Path::new("/") {
        return Err(err("mount_root must not be /".into()));
    }
    if let Some(real) = trusted.check_or_ancestor(&config.unit_dir)? {
        config.unit_dir = real;
    }
    if let Some(parent) = config.record_file.parent() {
        trusted.check_or_ancestor(parent)?;
    }
    if std::fs::symlink_metadata(&config.record_file).is_ok() {
        trusted.check(&config.record_file)?;
    }
    let configured_tools = config.tools.clone();
    let mut missing_tools = Vec::new();
    for (tool, p) in configured_tools.all() {
        if std::fs::symlink_metadata(p).is_ok() {
            // Exec the path that was checked, not one whose links could change later.
            let (real, md) = trusted.walk(p)?;
            if !md.is_file() {
                return Err(StartupError::Insecure {
                    path: p.to_path_buf(),
                    reason: format!("{} is not a regular file", real.display()),
                });
            }
            config.tools.set(tool, real);
        } else {
            tracing::warn!(
                tool = tool.name(),
                path = %p.display(),
                "tool not found; its operations are unavailable"
            );
            missing_tools.push(tool);
        }
    }
    Ok(LoadedConfig {
        config,
        configured_tools,
        agent_uid: agent.uid,
        allowed_filesystems: allowed,
        missing_tools,
    })
}

fn check_config_path(key: &str, p: &Path) -> Result<(), String> {
    let s = p.as_os_str().as_encoded_bytes();
    if !p.is_absolute() {
        return Err(format!(
            "{key} must be an absolute path, got {}",
            p.display()
        ));
    }
    if p.components().any(|c| c == std::path::Component::ParentDir) {
        return Err(format!("{key} must not contain \"..\""));
    }
    if s.iter().any(|b| b.is_ascii_control() || *b == b' ') {
        return Err(format!(
            "{key} must not contain spaces or control characters"
        ));
    }
    Ok(())
}

/// The agent's account as the helper needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentAccount {
    /// The uid allowed to connect besides root.
    pub uid: u32,
    /// Its primary group (the group of `mount_root`), when the account database knows the
    /// uid; `None` for a bare numeric uid without an entry.
    pub gid: Option<u32>,
}

/// Resolves a user name, or a numeric uid, to the agent's uid and primary group, with one
/// lookup in the account database (NSS; its first use is a measurable part of every
/// socket-activated start).
pub fn resolve_agent(name: &str) -> Result<AgentAccount, String> {
    if !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit()) {
        let uid = name
            .parse::<u32>()
            .map_err(|_| format!("agent_user: uid {name} is out of range"))?;
        let gid = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .ok()
            .flatten()
            .map(|u| u.gid.as_raw());
        return Ok(AgentAccount { uid, gid });
    }
    match nix::unistd::User::from_name(name) {
        Ok(Some(u)) => Ok(AgentAccount {
            uid: u.uid.as_raw(),
            gid: Some(u.gid.as_raw()),
        }),
        Ok(None) => Err(format!(
            "agent_user: no user named {name:?} (create it, or give a numeric uid)"
        )),
        Err(e) => Err(format!("agent_user: cannot look up {name:?}: {e}")),
    }
}

/// Checks that `path` can be changed only by the helper's own user or root, and returns its
/// canonical form. The path is walked component by component WITHOUT following symlinks
/// first: every directory on the way (including the directory holding each symlink) and
/// every entry (symlinks included) must be owned by root or the helper's user, and no
/// directory may be group- or world-writable unless it has the sticky bit (like `/tmp`).
/// Symlink targets are walked the same way. The final file or directory must not be
/// group- or world-writable at all.
pub fn check_trusted(path: &Path) -> Result<PathBuf, StartupError> {
    TrustedDirs::default().check(path)
}

/// The directories that trust walks have already proven (real directories, owned by root or
/// the helper's user, not writable by group or others unless sticky), so that later walks of
/// the same start-up do not `stat` them again: the config file, `mount_root`, `unit_dir`,
/// the record file and six tools share most of their ancestors. A walk still checks every
/// final component itself, and every symlink.
#[derive(Debug, Default)]
pub struct TrustedDirs {
    dirs: Vec<PathBuf>,
}

impl TrustedDirs {
    /// [`check_trusted`], reusing and extending what this set has proven.
    pub fn check(&mut self, path: &Path) -> Result<PathBuf, StartupError> {
        self.walk(path).map(|(real, _)| real)
    }

    /// [`check_trusted_or_ancestor`], reusing and extending what this set has proven.
    pub fn check_or_ancestor(&mut self, path: &Path) -> Result<Option<PathBuf>, StartupError> {
        let mut p = path;
        loop {
            match std::fs::symlink_metadata(p) {
                Ok(_) => {
                    let real = self.check(p)?;
                    return Ok((p == path).then_some(real));
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => match p.parent() {
                    Some(parent) => p = parent,
                    None => return Ok(None),
                },
                Err(e) => {
                    return Err(StartupError::Insecure {
                        path: p.to_path_buf(),
                        reason: format!("cannot stat: {e}"),
                    });
                }
            }
        }
    }

    fn proven(&self, dir: &Path) -> bool {
        self.dirs.iter().any(|d| d == dir)
    }

    fn remember(&mut self, dir: &Path) {
        if !self.proven(dir) {
            self.dirs.push(dir.to_path_buf());
        }
    }

    /// The walk behind [`check_trusted`]: the canonical path and the metadata of its final
    /// component (never a symlink).
    fn walk(&mut self, path: &Path) -> Result<(PathBuf, std::fs::Metadata), StartupError> {
        trusted_walk(path, self)
    }
}

/// How many symlinks [`check_trusted`] follows before giving up (as the kernel does).
const MAX_SYMLINKS: usize = 40;

fn trusted_walk(
    path: &Path,
    proven: &mut TrustedDirs,
) -> Result<(PathBuf, std::fs::Metadata), StartupError> {
    use std::path::Component;
    let insecure = |p: &Path, reason: String| StartupError::Insecure {
        path: p.to_path_buf(),
        reason,
    };
    if !path.is_absolute() {
        return Err(insecure(path, "not an absolute path".into()));
    }
    let euid = nix::unistd::geteuid().as_raw();
    let check_owner = |p: &Path, md: &std::fs::Metadata| {
        let owner = md.uid();
        if owner != euid && owner != 0 {
            return Err(insecure(
                p,
                format!("it is owned by uid {owner}, not by root or the helper's user ({euid})"),
            ));
        }
        Ok(())
    };
    let check_mode = |p: &Path, md: &std::fs::Metadata, last: bool| {
        let mode = md.mode();
        let sticky_dir = md.is_dir() && mode & 0o1000 != 0;
        if mode & 0o022 != 0 && (last || !sticky_dir) {
            return Err(insecure(
                p,
                format!(
                    "it is writable by its group or by others (mode {:o}); chmod go-w it",
                    mode & 0o7777
                ),
            ));
        }
        Ok(())
    };
    // The components still to walk, in reverse order (a stack).
    let mut todo: Vec<std::ffi::OsString> = Vec::new();
    let push_path = |todo: &mut Vec<std::ffi::OsString>, p: &Path| {
        let parts: Vec<_> = p
            .components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(n.to_os_string()),
                Component::ParentDir => Some("..".into()),
                _ => None,
            })
            .collect();
        todo.extend(parts.into_iter().rev());
    };
    push_path(&mut todo, path);
    let root = PathBuf::from("/");
    let md = std::fs::symlink_metadata(&root).map_err(|e| insecure(&root, e.to_string()))?;
    check_owner(&root, &md)?;
    check_mode(&root, &md, todo.is_empty())?;
    if md.is_dir() {
        proven.remember(&root);
    }
    let mut current = root;
    let mut last_md = md;
    let mut links = 0usize;
    // Whether the walk's last step was a `..` (e.g. a symlink to `..`): the directory it ends
    // in was checked on the way down, but only by the rule for directories on the way.
    let mut ended_on_parent = false;
    while let Some(part) = todo.pop() {
        ended_on_parent = part == "..";
        if ended_on_parent {
            // `current` is already checked and canonical; its parent was checked on the way.
            current.pop();
            continue;
        }
        let next = current.join(&part);
        // A directory on the way that an earlier walk proved needs no second look; the
        // final component is always checked (its mode rule is stricter, and it may be a
        // file).
        if !todo.is_empty() && proven.proven(&next) {
            current = next;
            continue;
        }
        let md = std::fs::symlink_metadata(&next)
            .map_err(|e| insecure(&next, format!("cannot stat: {e}")))?;
        check_owner(&next, &md)?;
        if md.file_type().is_symlink() {
            links += 1;
            if links > MAX_SYMLINKS {
                return Err(insecure(path, "too many levels of symbolic links".into()));
            }
            let target = std::fs::read_link(&next)
                .map_err(|e| insecure(&next, format!("cannot read the link: {e}")))?;
            if target.is_absolute() {
                current = PathBuf::from("/");
            }
            push_path(&mut todo, &target);
            continue;
        }
        let last = todo.is_empty();
        if !last && !md.is_dir() {
            return Err(insecure(&next, "not a directory".into()));
        }
        check_mode(&next, &md, last)?;
        if md.is_dir() {
            proven.remember(&next);
        }
        current = next;
        last_md = md;
    }
    if ended_on_parent {
        let md = std::fs::symlink_metadata(&current)
            .map_err(|e| insecure(&current, format!("cannot stat: {e}")))?;
        check_owner(&current, &md)?;
        check_mode(&current, &md, true)?;
        last_md = md;
    }
    Ok((current, last_md))
}

/// Checks `path` if it exists, else the nearest existing directory above it (whatever the
/// helper creates there later inherits that trust). Returns the canonical `path` when it
/// exists.
pub fn check_trusted_or_ancestor(path: &Path) -> Result<Option<PathBuf>, StartupError> {
    TrustedDirs::default().check_or_ancestor(path)
}

/// Parses `mount_root_mode`: octal, at most `0755`, never writable by group or others.
fn parse_mode(text: &str) -> Result<u32, String> {
    let bad = || {
        format!(
            "mount_root_mode must be an octal mode such as \"0750\" with no write bit for \
             group or others, got {text:?}"
        )
    };
    let digits = text.strip_prefix('0').unwrap_or(text);
    if digits.is_empty() || digits.len() > 3 {
        return Err(bad());
    }
    let mode = u32::from_str_radix(digits, 8).map_err(|_| bad())?;
    if mode & 0o022 != 0 || mode & 0o700 != 0o700 {
        return Err(bad());
    }
    Ok(mode)
}

/// Creates `mount_root` if missing, refuses a symlink there, gives it `mode` and (as root)
/// the agent user's group `agent_gid`, checks its trust and returns its canonical path (what
/// `/proc/self/mountinfo` shows).
#[cfg(test)]
fn prepare_mount_root(
    p: &Path,
    mode: u32,
    agent_gid: Option<u32>,
) -> Result<PathBuf, StartupError> {
    prepare_mount_root_in(p, mode, agent_gid, &mut TrustedDirs::default())
}

/// [`prepare_mount_root`] within one start-up's trust walks.
fn prepare_mount_root_in(
    p: &Path,
    mode: u32,
    agent_gid: Option<u32>,
    trusted: &mut TrustedDirs,
) -> Result<PathBuf, StartupError> {
    use std::os::unix::fs::DirBuilderExt;
    let insecure = |reason: String| StartupError::Insecure {
        path: p.to_path_buf(),
        reason,
    };
    // Without trailing slashes: `lstat("link/")` follows the link, so the symlink check below
    // would not see one.
    let p: &Path = &p.components().collect::<PathBuf>();
    // The parents must be trusted before anything is created under them.
    if let Some(parent) = p.parent() {
        trusted.check_or_ancestor(parent)?;
    }
    match std::fs::symlink_metadata(p) {
        Ok(md) if md.file_type().is_symlink() => {
            return Err(insecure(
                "mount_root is a symbolic link; give the real directory".into(),
            ));
        }
        Ok(md) if !md.is_dir() => return Err(insecure("mount_root is not a directory".into())),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(p)
                .map_err(|e| insecure(format!("cannot create it: {e}")))?;
        }
        Err(e) => return Err(insecure(format!("cannot stat: {e}"))),
    }
    let (real, md) = trusted.walk(p)?;
    // Checked before anything is changed: the chown and chmod below must never reach `/`.
    if real == Path::new("/") {
        return Err(insecure(
            "mount_root resolves to /; give a directory of its own (e.g. /mnt/felhom)".into(),
        ));
    }
    // Who may look into the mounted disks: root (vzdump, pvedaemon) and the agent's group.
    // The walk has already required the helper's user (root, in production) or root as the
    // owner. Group and mode are set only when they differ from the walk's look at the
    // directory: an unchanged directory keeps its ctime, and its inode is not rewritten at
    // every activation.
    if let Some(gid) = agent_gid.filter(|g| md.gid() != *g) {
        if nix::unistd::geteuid().is_root() {
            nix::unistd::chown(&real, None, Some(nix::unistd::Gid::from_raw(gid)))
                .map_err(|e| insecure(format!("cannot chown: {e}")))?;
        }
    }
    if md.mode() & 0o7777 != mode {
        std::fs::set_permissions(&real, std::os::unix::fs::PermissionsExt::from_mode(mode))
            .map_err(|e| insecure(format!("cannot chmod {mode:o}: {e}")))?;
    }
    Ok(real)
}

#[cfg(test)]
mod tests;
