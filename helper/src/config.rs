//! The helper's root-owned configuration file (`/etc/felhom/helper.json` by default).
//!
//! Every key is optional and has a production default; unknown keys are an error naming the
//! key. The file, and every tool it names, must not be writable by anyone but the helper's own
//! user (root in production): the helper refuses to start otherwise.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use felhom_protocol::{FsType, MountBackend};
use serde::Deserialize;

use crate::error::StartupError;

/// The default configuration file.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/felhom/helper.json";

/// The largest allowed `max_output_bytes`: two captured streams must fit in one reply frame.
pub const MAX_OUTPUT_LIMIT: usize = felhom_protocol::transport::MAX_REPLY_FRAME / 4;

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
    /// The hwmon sysfs tree (`/sys/class/hwmon`).
    pub sysfs_hwmon: PathBuf,
    /// The mount table the helper reads to tell whether something is mounted.
    pub mountinfo: PathBuf,
    /// Server-side time caps per operation, in seconds.
    pub time_caps: TimeCaps,
    /// Bound for each captured output stream of a tool (bytes).
    pub max_output_bytes: usize,
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
            sysfs_hwmon: "/sys/class/hwmon".into(),
            mountinfo: "/proc/self/mountinfo".into(),
            time_caps: TimeCaps::default(),
            max_output_bytes: 1024 * 1024,
        }
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
    /// The file as written.
    pub config: Config,
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
    check_trusted(path)?;
    let text = std::fs::read_to_string(path).map_err(|e| err(format!("cannot read: {e}")))?;
    let config: Config = parse(&text).map_err(err)?;
    validate(path, config)
}

/// Parses the JSON text (no validation beyond the schema).
pub fn parse(text: &str) -> Result<Config, String> {
    serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))
}

fn validate(path: &Path, config: Config) -> Result<LoadedConfig, StartupError> {
    let err = |reason: String| StartupError::Config {
        path: path.to_path_buf(),
        reason,
    };
    let paths: [(&str, &Path); 6] = [
        ("mount_root", &config.mount_root),
        ("unit_dir", &config.unit_dir),
        ("record_file", &config.record_file),
        ("sysfs_block", &config.sysfs_block),
        ("sysfs_hwmon", &config.sysfs_hwmon),
        ("mountinfo", &config.mountinfo),
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
    let agent_uid = resolve_user(&config.agent_user).map_err(err)?;
    let mut missing_tools = Vec::new();
    for (tool, p) in config.tools.all() {
        if p.exists() {
            check_trusted(p)?;
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
        agent_uid,
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

/// Resolves a user name, or a numeric uid, to a uid.
pub fn resolve_user(name: &str) -> Result<u32, String> {
    if !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit()) {
        return name
            .parse::<u32>()
            .map_err(|_| format!("agent_user: uid {name} is out of range"));
    }
    match nix::unistd::User::from_name(name) {
        Ok(Some(u)) => Ok(u.uid.as_raw()),
        Ok(None) => Err(format!(
            "agent_user: no user named {name:?} (create it, or give a numeric uid)"
        )),
        Err(e) => Err(format!("agent_user: cannot look up {name:?}: {e}")),
    }
}

/// Checks that `path` (after resolving symlinks) and every directory above it can be changed
/// only by the helper's own user or root: owned by one of them and not group- or
/// world-writable (a directory with the sticky bit, like `/tmp`, is allowed to be).
pub fn check_trusted(path: &Path) -> Result<(), StartupError> {
    let insecure = |p: &Path, reason: String| StartupError::Insecure {
        path: p.to_path_buf(),
        reason,
    };
    let real =
        std::fs::canonicalize(path).map_err(|e| insecure(path, format!("cannot resolve: {e}")))?;
    let euid = nix::unistd::geteuid().as_raw();
    let mut current: Option<&Path> = Some(&real);
    let mut first = true;
    while let Some(p) = current {
        let md = std::fs::metadata(p).map_err(|e| insecure(p, format!("cannot stat: {e}")))?;
        let owner = md.uid();
        if owner != euid && owner != 0 {
            return Err(insecure(
                p,
                format!("it is owned by uid {owner}, not by root or the helper's user ({euid})"),
            ));
        }
        let mode = md.mode();
        let sticky_dir = md.is_dir() && mode & 0o1000 != 0;
        if mode & 0o022 != 0 && (first || !sticky_dir) {
            return Err(insecure(
                p,
                format!(
                    "it is writable by its group or by others (mode {:o}); chmod go-w it",
                    mode & 0o7777
                ),
            ));
        }
        first = false;
        current = p.parent();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn empty_object_gives_production_defaults() {
        let c = parse("{}").unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.tools.pct, Path::new("/usr/sbin/pct"));
        assert_eq!(c.mount_root, Path::new("/mnt/felhom"));
        assert_eq!(c.time_caps.golden_image, 1200);
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = parse(r#"{"agent_usr":"x"}"#).unwrap_err();
        assert!(e.contains("agent_usr"), "{e}");
        let e = parse(r#"{"tools":{"sh":"/bin/sh"}}"#).unwrap_err();
        assert!(e.contains("`sh`"), "{e}");
        let e = parse(r#"{"mount_backend":"fstab"}"#).unwrap_err();
        assert!(e.contains("fstab"), "{e}");
    }

    fn write_cfg(dir: &Path, text: &str) -> PathBuf {
        let p = dir.join("helper.json");
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        p
    }

    #[test]
    fn validation_refuses_bad_values() {
        let dir = tempfile::tempdir().unwrap();
        let uid = nix::unistd::geteuid().as_raw();
        for (bad, needle) in [
            (r#""mount_root":"relative""#, "absolute"),
            (r#""mount_root":"/""#, "must not be /"),
            (r#""unit_dir":"/etc/../tmp""#, ".."),
            (r#""idle_timeout_secs":0"#, "idle_timeout_secs"),
            (r#""allowed_filesystems":["vfat"]"#, "vfat"),
            (r#""max_output_bytes":10"#, "max_output_bytes"),
            (r#""time_caps":{"smart":0}"#, "time_caps.smart"),
            (r#""tools":{"pct":"pct"}"#, "tools.pct"),
        ] {
            let p = write_cfg(dir.path(), &format!(r#"{{"agent_user":"{uid}",{bad}}}"#));
            let e = load(&p).unwrap_err().to_string();
            assert!(e.contains(needle), "{bad}: {e}");
        }
    }

    #[test]
    fn writable_config_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let uid = nix::unistd::geteuid().as_raw();
        let p = write_cfg(dir.path(), &format!(r#"{{"agent_user":"{uid}"}}"#));
        assert!(load(&p).is_ok());
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o666)).unwrap();
        let e = load(&p).unwrap_err();
        assert!(matches!(e, StartupError::Insecure { .. }), "{e}");
        assert_eq!(e.exit_code(), 2);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(
            load(&p).is_err(),
            "a world-writable parent directory must be refused"
        );
    }

    #[test]
    fn users_resolve_by_name_or_number() {
        assert_eq!(resolve_user("root").unwrap(), 0);
        assert_eq!(resolve_user("4242").unwrap(), 4242);
        assert!(resolve_user("no-such-user-felhom").is_err());
        assert!(resolve_user("99999999999").is_err());
    }
}
