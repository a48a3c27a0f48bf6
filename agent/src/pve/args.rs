//! Validated request arguments: snapshot names, storage and volume ids, restore and backup
//! requests, and the `set-config` allowlist. Each validates on construction, so an invalid
//! value never reaches the wire.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use felhom_protocol::Vmid;
use serde::{Deserialize, Serialize};

use super::upid::Upid;

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
    /// Hostname for the restored container, given at restore time: pve-container's
    /// create-with-restore path (`API2/LXC.pm` `create_vm`) takes every config property and
    /// `Create.pm` `sanitize_and_merge_config` keeps a given key over the archive's.
    /// Checked by [`ConfigKey::Hostname`] before it is sent.
    pub hostname: Option<String>,
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

/// One entry of [`CONFIG_KEY_NAMES`]: a key with one name, or a numbered family of keys.
#[derive(Debug, Clone, Copy)]
pub enum ConfigKeyName {
    /// A key with one name (`memory`).
    Plain(&'static str, ConfigKey),
    /// A numbered family: its prefix, its highest number, and the key of a number
    /// (`net0` … `net31`).
    Numbered(&'static str, u8, fn(u8) -> ConfigKey),
}

/// The `set_config` allowlist by name, in the order the CLI help and the docs list it: the one
/// table that [`ConfigKey::name`], parsing a [`ConfigKey`], the CLI's help and usage messages
/// ([`allowed_config_keys`]) and the docs' key list are built from (tests check the CLI help
/// and the docs against it).
pub const CONFIG_KEY_NAMES: &[ConfigKeyName] = &[
    ConfigKeyName::Plain("cores", ConfigKey::Cores),
    ConfigKeyName::Plain("cpulimit", ConfigKey::Cpulimit),
    ConfigKeyName::Plain("cpuunits", ConfigKey::Cpuunits),
    ConfigKeyName::Plain("memory", ConfigKey::Memory),
    ConfigKeyName::Plain("swap", ConfigKey::Swap),
    ConfigKeyName::Plain("hostname", ConfigKey::Hostname),
    ConfigKeyName::Plain("description", ConfigKey::Description),
    ConfigKeyName::Plain("onboot", ConfigKey::Onboot),
    ConfigKeyName::Plain("startup", ConfigKey::Startup),
    ConfigKeyName::Plain("nameserver", ConfigKey::Nameserver),
    ConfigKeyName::Plain("searchdomain", ConfigKey::Searchdomain),
    ConfigKeyName::Plain("tags", ConfigKey::Tags),
    ConfigKeyName::Plain("protection", ConfigKey::Protection),
    ConfigKeyName::Numbered("net", 31, ConfigKey::Net),
    ConfigKeyName::Numbered("mp", 255, ConfigKey::Mp),
];

impl ConfigKeyName {
    /// How the CLI help and usage messages name it: `memory`, `net0..net31`.
    pub fn help_form(self) -> String {
        match self {
            ConfigKeyName::Plain(name, _) => name.to_string(),
            ConfigKeyName::Numbered(prefix, max, _) => format!("{prefix}0..{prefix}{max}"),
        }
    }

    /// How the docs name it: `memory`, `netN`.
    pub fn docs_form(self) -> String {
        match self {
            ConfigKeyName::Plain(name, _) => name.to_string(),
            ConfigKeyName::Numbered(prefix, _, _) => format!("{prefix}N"),
        }
    }
}

/// The allowed `set_config` keys as the CLI's help and usage messages list them:
/// `cores, cpulimit, …, net0..net31, mp0..mp255`.
pub fn allowed_config_keys() -> String {
    CONFIG_KEY_NAMES
        .iter()
        .map(|k| k.help_form())
        .collect::<Vec<_>>()
        .join(", ")
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
    /// The API name (`net0`, `memory`, …), from [`CONFIG_KEY_NAMES`].
    pub fn name(self) -> String {
        for entry in CONFIG_KEY_NAMES {
            match *entry {
                ConfigKeyName::Plain(name, key) if key == self => return name.to_string(),
                ConfigKeyName::Numbered(prefix, _, key_of) => {
                    if let Some(n) = self.number()
                        && key_of(n) == self
                    {
                        return format!("{prefix}{n}");
                    }
                }
                ConfigKeyName::Plain(..) => {}
            }
        }
        // Unreachable while every variant has its entry (a test checks each one); the Debug
        // form (`Cores`) is no API name, so Proxmox would refuse it rather than take it.
        format!("{self:?}")
    }

    /// The number of a numbered key (`netN`, `mpN`).
    fn number(self) -> Option<u8> {
        match self {
            ConfigKey::Net(n) | ConfigKey::Mp(n) => Some(n),
            _ => None,
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
            // pve-container `src/PVE/LXC/Config.pm` confdesc: `memory` has `minimum => 16`;
            // a smaller value would only come back as Proxmox's 400.
            ConfigKey::Memory => uint(1 << 40).and_then(|()| match value.parse::<u64>() {
                Ok(n) if n >= 16 => Ok(()),
                _ => Err(arg_err(
                    what,
                    format!("memory must be at least 16 (MiB), got {value:?}"),
                )),
            }),
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
        for entry in CONFIG_KEY_NAMES {
            match *entry {
                ConfigKeyName::Plain(name, key) if name == s => return Ok(key),
                ConfigKeyName::Numbered(prefix, max, key_of) => {
                    if let Some(n) = indexed(prefix, max) {
                        return Ok(key_of(n));
                    }
                }
                ConfigKeyName::Plain(..) => {}
            }
        }
        Err(arg_err(
            "config key",
            format!("{s:?} is not in the allowlist"),
        ))
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

    /// Only apply if the config still has this digest (from [`ContainerConfig::digest`](super::types::ContainerConfig::digest)).
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
        // pve-container src/PVE/LXC/Config.pm, confdesc `memory`: `minimum => 16`.
        assert!(ConfigKey::Memory.check_value("16").is_ok());
        for small in ["0", "1", "15"] {
            let e = ConfigKey::Memory.check_value(small).unwrap_err();
            assert!(e.to_string().contains("at least 16"), "{small}: {e}");
        }
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
    fn config_values_are_bounded_at_4096_bytes() {
        for key in [ConfigKey::Description, ConfigKey::Tags, ConfigKey::Mp(0)] {
            let at = "x".repeat(4096);
            assert!(key.check_value(&at).is_ok(), "{key}");
            assert!(ConfigChange::new().set(key, at).is_ok(), "{key}");
            let over = "x".repeat(4097);
            let err = key.check_value(&over).unwrap_err();
            assert!(err.to_string().contains("too long"), "{key}: {err}");
            assert!(ConfigChange::new().set(key, over).is_err(), "{key}");
        }
        // Bytes, not characters: 2,048 two-byte characters fit, one more byte does not.
        let wide = "é".repeat(2048);
        assert!(ConfigKey::Description.check_value(&wide).is_ok());
        assert!(
            ConfigKey::Description
                .check_value(&format!("{wide}x"))
                .is_err()
        );
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
    fn numeric_config_values_are_exact_at_their_bounds() {
        let ok = |k: ConfigKey, v: &str| assert!(k.check_value(v).is_ok(), "{k}={v} refused");
        let bad = |k: ConfigKey, v: &str| assert!(k.check_value(v).is_err(), "{k}={v} accepted");
        ok(ConfigKey::Cores, "1");
        ok(ConfigKey::Cores, "8192");
        bad(ConfigKey::Cores, "0");
        bad(ConfigKey::Cores, "8193");
        bad(ConfigKey::Cores, "two");
        // Swap may be 0; memory starts at 16 (pve-container Config.pm: `minimum => 16`).
        ok(ConfigKey::Swap, "0");
        ok(ConfigKey::Memory, "16");
        bad(ConfigKey::Memory, "15");
        for k in [ConfigKey::Memory, ConfigKey::Swap] {
            ok(k, &(1u64 << 40).to_string());
            bad(k, &((1u64 << 40) + 1).to_string());
            bad(k, "-1");
        }
        ok(ConfigKey::Cpuunits, "500000");
        bad(ConfigKey::Cpuunits, "500001");
        ok(ConfigKey::Cpulimit, "0");
        ok(ConfigKey::Cpulimit, "1.5");
        ok(ConfigKey::Cpulimit, "8192");
        bad(ConfigKey::Cpulimit, "8192.5");
        bad(ConfigKey::Cpulimit, "-0.5");
        bad(ConfigKey::Cpulimit, "lots");
        for k in [ConfigKey::Onboot, ConfigKey::Protection] {
            ok(k, "0");
            ok(k, "1");
            bad(k, "2");
            bad(k, "true");
        }
        // Keys without a value rule take any single-line value within the bound.
        ok(ConfigKey::Startup, "order=1,up=30");
        ok(ConfigKey::Net(0), "name=eth0,bridge=vmbr0,ip=dhcp");
    }

    #[test]
    fn every_config_key_parses_from_its_own_name() {
        let keys = [
            ConfigKey::Cores,
            ConfigKey::Cpulimit,
            ConfigKey::Cpuunits,
            ConfigKey::Memory,
            ConfigKey::Swap,
            ConfigKey::Hostname,
            ConfigKey::Description,
            ConfigKey::Onboot,
            ConfigKey::Startup,
            ConfigKey::Nameserver,
            ConfigKey::Searchdomain,
            ConfigKey::Net(0),
            ConfigKey::Net(31),
            ConfigKey::Mp(0),
            ConfigKey::Mp(255),
            ConfigKey::Tags,
            ConfigKey::Protection,
        ];
        for k in keys {
            assert_eq!(k.name().parse::<ConfigKey>().unwrap(), k);
            assert_eq!(k.to_string(), k.name());
        }
        assert_eq!(ConfigKey::Net(3).to_string(), "net3");
        // Only the first, key-less option of a mount point is its volume.
        assert!(
            ConfigKey::Mp(0)
                .check_value("local-lvm:8,mp=/data,/elsewhere")
                .is_ok()
        );
    }

    /// Which variant a key is. No wildcard: a new variant does not compile until it is given
    /// its number here, and then `every_variant_has_its_entry_in_the_name_table` fails until it
    /// has its entry in [`CONFIG_KEY_NAMES`].
    fn variant(k: ConfigKey) -> usize {
        match k {
            ConfigKey::Cores => 0,
            ConfigKey::Cpulimit => 1,
            ConfigKey::Cpuunits => 2,
            ConfigKey::Memory => 3,
            ConfigKey::Swap => 4,
            ConfigKey::Hostname => 5,
            ConfigKey::Description => 6,
            ConfigKey::Onboot => 7,
            ConfigKey::Startup => 8,
            ConfigKey::Nameserver => 9,
            ConfigKey::Searchdomain => 10,
            ConfigKey::Net(_) => 11,
            ConfigKey::Mp(_) => 12,
            ConfigKey::Tags => 13,
            ConfigKey::Protection => 14,
        }
    }
    const VARIANTS: usize = 15;

    #[test]
    fn every_variant_has_its_entry_in_the_name_table() {
        let mut seen = BTreeMap::new();
        for entry in CONFIG_KEY_NAMES {
            let keys: Vec<(String, ConfigKey)> = match *entry {
                ConfigKeyName::Plain(name, key) => vec![(name.to_string(), key)],
                ConfigKeyName::Numbered(prefix, max, key_of) => (0..=max)
                    .map(|n| (format!("{prefix}{n}"), key_of(n)))
                    .collect(),
            };
            for (name, key) in keys {
                // Each name parses to its key and back, and names one key only.
                assert_eq!(name.parse::<ConfigKey>().unwrap(), key, "{name}");
                assert_eq!(key.name(), name);
                assert!(seen.insert(name.clone(), key).is_none(), "{name} twice");
            }
        }
        let variants: std::collections::BTreeSet<usize> =
            seen.values().map(|k| variant(*k)).collect();
        assert_eq!(
            variants,
            (0..VARIANTS).collect(),
            "a variant lacks its entry"
        );
        assert_eq!(seen.len(), 13 + 32 + 256);
        assert!("net32".parse::<ConfigKey>().is_err());
        assert!("mp256".parse::<ConfigKey>().is_err());
    }

    #[test]
    fn the_allowed_keys_text_lists_the_table_in_order() {
        assert_eq!(
            allowed_config_keys(),
            "cores, cpulimit, cpuunits, memory, swap, hostname, description, onboot, startup, nameserver, searchdomain, tags, protection, net0..net31, mp0..mp255"
        );
        let docs: Vec<String> = CONFIG_KEY_NAMES.iter().map(|k| k.docs_form()).collect();
        assert_eq!(docs.first().map(String::as_str), Some("cores"));
        assert_eq!(docs.last().map(String::as_str), Some("mpN"));
    }

    #[test]
    fn a_digest_is_one_to_64_hex_digits_and_a_delete_alone_is_a_change() {
        let hex64 = "a".repeat(64);
        assert!(ConfigChange::new().digest(&hex64).is_ok());
        assert!(ConfigChange::new().digest(&"a".repeat(65)).is_err());
        assert!(ConfigChange::new().digest("").is_err());
        assert!(ConfigChange::new().digest("5911baea").is_ok());
        let only_delete = ConfigChange::new().delete(ConfigKey::Net(1));
        assert!(!only_delete.is_empty());
        assert_eq!(
            only_delete.form().unwrap(),
            [("delete".to_string(), "net1".to_string())]
        );
        assert!(ConfigChange::new().is_empty());
    }

    #[test]
    fn names_and_volume_ids_give_back_their_text() {
        let s = SnapshotName::new("before-upgrade").unwrap();
        assert_eq!(String::from(s), "before-upgrade");
        let v = VolumeId::new("local:backup/vzdump-lxc-101-x.tar.zst").unwrap();
        assert_eq!(v.as_str(), "local:backup/vzdump-lxc-101-x.tar.zst");
    }
}
