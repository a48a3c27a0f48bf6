//! Validated newtypes for every value that crosses the agent → helper boundary.
//!
//! Each type has one constructor that validates, and serde deserializes through it
//! (`#[serde(try_from = …)]`), so an invalid value cannot even be decoded on the root side.
//! The rules are deliberately narrower than what Linux or Proxmox would accept: a value that is
//! not obviously harmless is refused.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why a value was refused by a validating constructor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field}: {reason}")]
pub struct ValidationError {
    /// Which kind of value was refused (`vmid`, `hostname`, …).
    pub field: &'static str,
    /// Why, in words an operator understands.
    pub reason: String,
}

impl ValidationError {
    fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }
}

/// Implements `Display`, `FromStr`, `AsRef<str>` and the `TryFrom<String>` / `Into<String>`
/// pair serde uses, for a string newtype whose validating constructor is `Self::new`.
macro_rules! string_newtype {
    ($name:ident) => {
        impl $name {
            /// The validated value as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = ValidationError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::new(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = ValidationError;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                Self::new(&s)
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }
    };
}

/// Implements `Display`, `FromStr` and the serde conversions for a bounded integer newtype
/// whose validating constructor is `Self::new`.
macro_rules! int_newtype {
    ($name:ident, $inner:ty) => {
        impl $name {
            /// The validated number.
            pub fn get(self) -> $inner {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }

        impl FromStr for $name {
            type Err = ValidationError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                // Only plain ASCII digits: no sign, no whitespace, no leading `+`.
                if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(ValidationError::new(
                        Self::FIELD,
                        format!("{s:?} is not a decimal number"),
                    ));
                }
                let n: $inner = s.parse().map_err(|_| {
                    ValidationError::new(Self::FIELD, format!("{s:?} is out of range"))
                })?;
                Self::new(n)
            }
        }

        impl TryFrom<$inner> for $name {
            type Error = ValidationError;
            fn try_from(n: $inner) -> Result<Self, Self::Error> {
                Self::new(n)
            }
        }

        impl From<$name> for $inner {
            fn from(v: $name) -> $inner {
                v.0
            }
        }
    };
}

fn check_range<T: PartialOrd + fmt::Display + Copy>(
    field: &'static str,
    n: T,
    min: T,
    max: T,
) -> Result<T, ValidationError> {
    if n < min || n > max {
        Err(ValidationError::new(
            field,
            format!("{n} is outside {min}..={max}"),
        ))
    } else {
        Ok(n)
    }
}

/// Rejects the characters no validated string may contain, whatever its own rules: control
/// characters (NUL, newline, …) and anything outside ASCII (Unicode look-alikes).
fn check_plain_ascii(field: &'static str, s: &str, max_len: usize) -> Result<(), ValidationError> {
    if s.is_empty() {
        return Err(ValidationError::new(field, "must not be empty"));
    }
    if s.len() > max_len {
        return Err(ValidationError::new(
            field,
            format!("is {} bytes long, at most {max_len} allowed", s.len()),
        ));
    }
    if let Some(c) = s.chars().find(|c| !c.is_ascii() || c.is_ascii_control()) {
        return Err(ValidationError::new(
            field,
            format!("contains the disallowed character {c:?}"),
        ));
    }
    Ok(())
}

/// A Proxmox guest id, 100..=999999999.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct Vmid(u32);

impl Vmid {
    const FIELD: &'static str = "vmid";
    /// Smallest id Proxmox accepts.
    pub const MIN: u32 = 100;
    /// Largest id Proxmox accepts.
    pub const MAX: u32 = 999_999_999;

    /// Validates a guest id.
    pub fn new(n: u32) -> Result<Self, ValidationError> {
        check_range(Self::FIELD, n, Self::MIN, Self::MAX).map(Self)
    }
}
int_newtype!(Vmid, u32);

/// Size of a new container's root filesystem in GiB, 1..=16384.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct RootfsGib(u32);

impl RootfsGib {
    const FIELD: &'static str = "rootfs size (GiB)";
    /// The default used when the operator names none (Proxmox's own default is 4).
    pub const DEFAULT: RootfsGib = RootfsGib(8);

    /// Validates a root filesystem size.
    pub fn new(n: u32) -> Result<Self, ValidationError> {
        check_range(Self::FIELD, n, 1, 16_384).map(Self)
    }
}
int_newtype!(RootfsGib, u32);

/// Memory of a new container in MiB, 16..=1048576 (Proxmox's minimum is 16).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct MemoryMib(u32);

impl MemoryMib {
    const FIELD: &'static str = "memory (MiB)";
    /// The default used when the operator names none (Proxmox's own default).
    pub const DEFAULT: MemoryMib = MemoryMib(512);

    /// Validates a memory size.
    pub fn new(n: u32) -> Result<Self, ValidationError> {
        check_range(Self::FIELD, n, 16, 1_048_576).map(Self)
    }
}
int_newtype!(MemoryMib, u32);

/// Number of CPU cores of a new container, 1..=8192 (Proxmox's range).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct Cores(u32);

impl Cores {
    const FIELD: &'static str = "cores";
    /// The default used when the operator names none.
    pub const DEFAULT: Cores = Cores(1);

    /// Validates a core count.
    pub fn new(n: u32) -> Result<Self, ValidationError> {
        check_range(Self::FIELD, n, 1, 8192).map(Self)
    }
}
int_newtype!(Cores, u32);

/// A Proxmox storage id: a letter, then letters, digits, `-`, `_` or `.`, ending in a letter or
/// digit (Proxmox's `pve-storage-id`), at most 64 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct StorageId(String);

impl StorageId {
    const FIELD: &'static str = "storage id";

    /// Validates a storage id.
    pub fn new(s: &str) -> Result<Self, ValidationError> {
        check_plain_ascii(Self::FIELD, s, 64)?;
        let b = s.as_bytes();
        if !b[0].is_ascii_alphabetic() {
            return Err(ValidationError::new(
                Self::FIELD,
                "must start with a letter",
            ));
        }
        if !b[b.len() - 1].is_ascii_alphanumeric() {
            return Err(ValidationError::new(
                Self::FIELD,
                "must end with a letter or digit",
            ));
        }
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        {
            return Err(ValidationError::new(
                Self::FIELD,
                format!("contains the disallowed character {c:?}"),
            ));
        }
        if s.contains("..") {
            return Err(ValidationError::new(Self::FIELD, "must not contain \"..\""));
        }
        Ok(Self(s.to_owned()))
    }
}
string_newtype!(StorageId);

/// A container template volume id, `<storage>:vztmpl/<file>`, where the file ends in
/// `.tar.gz`, `.tar.xz` or `.tar.zst`, holds only letters, digits, `.`, `_`, `-` and `+`, does not
/// start with `-` or `.`, and has no `/` or `..`. At most 255 bytes in all.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TemplateVolid(String);

impl TemplateVolid {
    const FIELD: &'static str = "template volume id";
    const EXTENSIONS: [&'static str; 3] = [".tar.gz", ".tar.xz", ".tar.zst"];

    /// Validates a template volume id.
    pub fn new(s: &str) -> Result<Self, ValidationError> {
        check_plain_ascii(Self::FIELD, s, 255)?;
        let Some((storage, rest)) = s.split_once(':') else {
            return Err(ValidationError::new(
                Self::FIELD,
                "must look like <storage>:vztmpl/<file>",
            ));
        };
        StorageId::new(storage).map_err(|e| ValidationError::new(Self::FIELD, e.to_string()))?;
        let Some(file) = rest.strip_prefix("vztmpl/") else {
            return Err(ValidationError::new(
                Self::FIELD,
                "must look like <storage>:vztmpl/<file>",
            ));
        };
        if file.contains('/') || file.contains("..") {
            return Err(ValidationError::new(
                Self::FIELD,
                "the file part must not contain \"/\" or \"..\"",
            ));
        }
        if file.starts_with('-') || file.starts_with('.') {
            return Err(ValidationError::new(
                Self::FIELD,
                "the file part must not start with \"-\" or \".\"",
            ));
        }
        if let Some(c) = file
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+')))
        {
            return Err(ValidationError::new(
                Self::FIELD,
                format!("the file part contains the disallowed character {c:?}"),
            ));
        }
        let ext_ok = Self::EXTENSIONS
            .iter()
            .any(|ext| file.len() > ext.len() && file.ends_with(ext));
        if !ext_ok {
            return Err(ValidationError::new(
                Self::FIELD,
                "the file must end in .tar.gz, .tar.xz or .tar.zst",
            ));
        }
        Ok(Self(s.to_owned()))
    }

    /// The storage part, before the `:`.
    pub fn storage(&self) -> &str {
        self.0.split_once(':').map_or("", |(s, _)| s)
    }
}
string_newtype!(TemplateVolid);

/// An RFC 1123 host name: dot-separated labels of 1..=63 letters, digits and `-`, no label
/// starting or ending with `-`, at most 253 bytes. Stored as given (Proxmox keeps case).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Hostname(String);

impl Hostname {
    const FIELD: &'static str = "hostname";

    /// Validates a host name.
    pub fn new(s: &str) -> Result<Self, ValidationError> {
        check_plain_ascii(Self::FIELD, s, 253)?;
        for label in s.split('.') {
            if label.is_empty() {
                return Err(ValidationError::new(Self::FIELD, "has an empty label"));
            }
            if label.len() > 63 {
                return Err(ValidationError::new(
                    Self::FIELD,
                    "has a label longer than 63 characters",
                ));
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err(ValidationError::new(
                    Self::FIELD,
                    "a label must not start or end with \"-\"",
                ));
            }
            if let Some(c) = label
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
            {
                return Err(ValidationError::new(
                    Self::FIELD,
                    format!("contains the disallowed character {c:?}"),
                ));
            }
        }
        Ok(Self(s.to_owned()))
    }
}
string_newtype!(Hostname);

/// A Linux bridge name for `net0`: 1..=15 letters, digits, `_`, `.` or `-` (IFNAMSIZ), starting
/// with a letter.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Bridge(String);

impl Bridge {
    const FIELD: &'static str = "bridge";

    /// Validates a bridge name.
    pub fn new(s: &str) -> Result<Self, ValidationError> {
        check_plain_ascii(Self::FIELD, s, 15)?;
        if !s.as_bytes()[0].is_ascii_alphabetic() {
            return Err(ValidationError::new(
                Self::FIELD,
                "must start with a letter",
            ));
        }
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
        {
            return Err(ValidationError::new(
                Self::FIELD,
                format!("contains the disallowed character {c:?}"),
            ));
        }
        Ok(Self(s.to_owned()))
    }
}
string_newtype!(Bridge);

/// Which filesystem family a UUID belongs to, judged by its shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FsUuidKind {
    /// `8-4-4-4-12` hex, as ext4, xfs and btrfs use (lowercase, as blkid prints it).
    Rfc4122,
    /// `XXXX-XXXX` hex, as exFAT uses (uppercase, as blkid prints it).
    Fat,
}

/// A filesystem UUID: `8-4-4-4-12` hex (ext4, xfs, btrfs) or `XXXX-XXXX` hex (exFAT). Input in
/// either case is accepted and normalized to the case blkid prints (lowercase for the long
/// form, uppercase for the short one), so it names the right `/dev/disk/by-uuid/` entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct FsUuid(String);

impl FsUuid {
    const FIELD: &'static str = "filesystem UUID";

    /// Validates a filesystem UUID.
    pub fn new(s: &str) -> Result<Self, ValidationError> {
        check_plain_ascii(Self::FIELD, s, 36)?;
        let groups: Vec<&str> = s.split('-').collect();
        let lens: Vec<usize> = groups.iter().map(|g| g.len()).collect();
        let all_hex = groups
            .iter()
            .all(|g| g.bytes().all(|b| b.is_ascii_hexdigit()));
        if !all_hex {
            return Err(ValidationError::new(
                Self::FIELD,
                "must be hexadecimal groups separated by \"-\"",
            ));
        }
        match lens.as_slice() {
            [8, 4, 4, 4, 12] => Ok(Self(s.to_ascii_lowercase())),
            [4, 4] => Ok(Self(s.to_ascii_uppercase())),
            _ => Err(ValidationError::new(
                Self::FIELD,
                "must be 8-4-4-4-12 hex (ext4, xfs, btrfs) or XXXX-XXXX hex (exFAT)",
            )),
        }
    }

    /// The filesystem family this UUID's shape belongs to.
    pub fn kind(&self) -> FsUuidKind {
        if self.0.len() == 9 {
            FsUuidKind::Fat
        } else {
            FsUuidKind::Rfc4122
        }
    }
}
string_newtype!(FsUuid);

/// The name of a managed mount, one path component: `[a-z0-9][a-z0-9-]{0,31}`. The helper
/// mounts it at `<mount_root>/<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MountName(String);

impl MountName {
    const FIELD: &'static str = "mount name";

    /// Validates a mount name.
    pub fn new(s: &str) -> Result<Self, ValidationError> {
        check_plain_ascii(Self::FIELD, s, 32)?;
        let b = s.as_bytes();
        if !(b[0].is_ascii_lowercase() || b[0].is_ascii_digit()) {
            return Err(ValidationError::new(
                Self::FIELD,
                "must start with a lowercase letter or digit",
            ));
        }
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
        {
            return Err(ValidationError::new(
                Self::FIELD,
                format!("contains the disallowed character {c:?} (allowed: a-z, 0-9, -)"),
            ));
        }
        Ok(Self(s.to_owned()))
    }
}
string_newtype!(MountName);

/// A kernel block-device name such as `sda`, `vdb` or `nvme0n1` — a name in `/sys/block`,
/// never a path: a lowercase letter, then lowercase letters and digits, at most 32 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DiskName(String);

impl DiskName {
    const FIELD: &'static str = "disk name";

    /// Validates a block-device name.
    pub fn new(s: &str) -> Result<Self, ValidationError> {
        check_plain_ascii(Self::FIELD, s, 32)?;
        if !s.as_bytes()[0].is_ascii_lowercase() {
            return Err(ValidationError::new(
                Self::FIELD,
                "must start with a lowercase letter (a name like sda or nvme0n1, not a path)",
            ));
        }
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit()))
        {
            return Err(ValidationError::new(
                Self::FIELD,
                format!("contains the disallowed character {c:?} (a name like sda, not a path)"),
            ));
        }
        if let Some(p) = VIRTUAL_DISK_PREFIXES.iter().find(|p| s.starts_with(*p)) {
            return Err(ValidationError::new(
                Self::FIELD,
                format!("{p}… devices are virtual and have no SMART data"),
            ));
        }
        if is_partition_name(s) {
            return Err(ValidationError::new(
                Self::FIELD,
                "names a partition; give the whole disk (sda, nvme0n1)",
            ));
        }
        Ok(Self(s.to_owned()))
    }
}
string_newtype!(DiskName);

/// Kernel name prefixes of block devices without SMART data (loop, RAM disks, device mapper,
/// software RAID, optical, network and ZFS volumes …), refused at decode.
const VIRTUAL_DISK_PREFIXES: &[&str] = &[
    "loop", "ram", "zram", "md", "sr", "nbd", "fd", "zd", "rbd", "drbd", "bcache",
];

/// Whether a (lowercase alphanumeric) block-device name is a partition: `sda1`, `vdb2`,
/// `xvda1`, `hda3` (letters-only disk families followed by digits) or `nvme0n1p1`,
/// `mmcblk0p2` (a digit, `p`, digits).
fn is_partition_name(s: &str) -> bool {
    let letters_disk = ["sd", "vd", "hd", "xvd"].iter().any(|p| s.starts_with(p));
    if letters_disk && s.ends_with(|c: char| c.is_ascii_digit()) {
        return true;
    }
    match s.rsplit_once('p') {
        Some((head, tail)) => {
            !tail.is_empty()
                && tail.bytes().all(|b| b.is_ascii_digit())
                && head.ends_with(|c: char| c.is_ascii_digit())
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hostile_common() -> Vec<String> {
        let mut v: Vec<String> = [
            "",
            "/",
            "..",
            "../etc",
            "a/b",
            "a\0b",
            "a\nb",
            "a\rb",
            "a\tb",
            "a,b",
            "a=b",
            "-a",
            "--help",
            "a b",
            "a;b",
            "a|b",
            "a&b",
            "$(id)",
            "`id`",
            "a>b",
            "a<b",
            "a*",
            "a?",
            "a'b",
            "a\"b",
            "a\\b",
            "~root",
            "a{b}",
            "a!b",
            "a#b",
            // Unicode look-alikes: Cyrillic а, fullwidth solidus, Greek ο, non-breaking space.
            "\u{430}bc",
            "a\u{ff0f}b",
            "n\u{3bf}de",
            "a\u{a0}b",
            "a\u{200b}b",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.push("a".repeat(300));
        v
    }

    #[test]
    fn vmid_range() {
        for ok in [100, 101, 999_999_999] {
            assert_eq!(Vmid::new(ok).unwrap().get(), ok);
        }
        for bad in [0, 1, 99, 1_000_000_000, u32::MAX] {
            assert!(Vmid::new(bad).is_err(), "{bad}");
        }
        for bad in [
            "",
            "-1",
            "+100",
            " 100",
            "100 ",
            "1e3",
            "0x64",
            "99",
            "4294967296",
            "10a",
        ] {
            assert!(bad.parse::<Vmid>().is_err(), "{bad:?}");
        }
        assert_eq!("100".parse::<Vmid>().unwrap().get(), 100);
    }

    #[test]
    fn bounded_sizes() {
        assert!(RootfsGib::new(0).is_err());
        assert!(RootfsGib::new(16_385).is_err());
        assert!(RootfsGib::new(8).is_ok());
        assert!(MemoryMib::new(15).is_err());
        assert!(MemoryMib::new(1_048_577).is_err());
        assert!(MemoryMib::new(2048).is_ok());
        assert!(Cores::new(0).is_err());
        assert!(Cores::new(8193).is_err());
        assert!(Cores::new(4).is_ok());
    }

    #[test]
    fn template_volid() {
        for ok in [
            "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst",
            "local:vztmpl/alpine-3.19-default_20240207_amd64.tar.xz",
            "nas-1.store:vztmpl/ubuntu-24.04-standard_24.04-2_amd64.tar.gz",
            "local:vztmpl/img+extra.tar.zst",
        ] {
            let v = TemplateVolid::new(ok).unwrap();
            assert_eq!(v.as_str(), ok);
        }
        assert_eq!(
            TemplateVolid::new("local:vztmpl/a.tar.zst")
                .unwrap()
                .storage(),
            "local"
        );
        let mut bad: Vec<String> = hostile_common();
        bad.extend(
            [
                "local:vztmpl/../../etc/shadow.tar.gz",
                "local:vztmpl/sub/dir.tar.gz",
                "local:vztmpl/.hidden.tar.gz",
                "local:vztmpl/-rf.tar.gz",
                "local:vztmpl/x.tar",
                "local:vztmpl/x.iso",
                "local:vztmpl/.tar.zst",
                "local:iso/x.tar.zst",
                "local:backup/vzdump-lxc-101.tar.zst",
                ":vztmpl/x.tar.zst",
                "1local:vztmpl/x.tar.zst",
                "local-:vztmpl/x.tar.zst",
                "/var/lib/vz/template/cache/x.tar.zst",
                "local:vztmpl/x.tar.zst\n",
                "local:vztmpl/x y.tar.zst",
                "local:vztmpl/x,y.tar.zst",
                "local:vztmpl/x=y.tar.zst",
                "local:vztmpl/x;rm.tar.zst",
                "local:vztmpl/x\u{2024}tar.zst",
            ]
            .iter()
            .map(|s| s.to_string()),
        );
        bad.push(format!("local:vztmpl/{}.tar.zst", "a".repeat(250)));
        for b in &bad {
            assert!(TemplateVolid::new(b).is_err(), "{b:?} was accepted");
        }
    }

    #[test]
    fn hostname() {
        for ok in ["ct100", "web-1", "a", "golden.example.com", "A1-b2"] {
            assert!(Hostname::new(ok).is_ok(), "{ok}");
        }
        let mut bad = hostile_common();
        bad.extend(
            [
                "-web",
                "web-",
                "a..b",
                ".a",
                "a.",
                "under_score",
                &"a".repeat(64),
                &format!("{}.{}", "a".repeat(63), "b".repeat(190)),
            ]
            .iter()
            .map(|s| s.to_string()),
        );
        for b in &bad {
            assert!(Hostname::new(b).is_err(), "{b:?} was accepted");
        }
    }

    #[test]
    fn storage_and_bridge() {
        for ok in ["local", "local-lvm", "nas_1", "ceph.pool"] {
            assert!(StorageId::new(ok).is_ok(), "{ok}");
        }
        for ok in ["vmbr0", "vmbr1", "br-lan", "vmbr0.100"] {
            assert!(Bridge::new(ok).is_ok(), "{ok}");
        }
        let mut bad = hostile_common();
        bad.extend(
            ["1abc", "abc-", "a..b", "local:", "_x"]
                .iter()
                .map(|s| s.to_string()),
        );
        for b in &bad {
            assert!(StorageId::new(b).is_err(), "storage {b:?} was accepted");
        }
        let mut bad = hostile_common();
        bad.extend(
            ["0vmbr", "vmbr0123456789ab", "vmbr 0", "vmbr0,tag=5"]
                .iter()
                .map(|s| s.to_string()),
        );
        for b in &bad {
            assert!(Bridge::new(b).is_err(), "bridge {b:?} was accepted");
        }
    }

    #[test]
    fn fs_uuid() {
        let u = FsUuid::new("ADA110F6-BD6D-49DB-955D-342C27627B61").unwrap();
        assert_eq!(u.as_str(), "ada110f6-bd6d-49db-955d-342c27627b61");
        assert_eq!(u.kind(), FsUuidKind::Rfc4122);
        let f = FsUuid::new("dead-beef").unwrap();
        assert_eq!(f.as_str(), "DEAD-BEEF");
        assert_eq!(f.kind(), FsUuidKind::Fat);
        let mut bad = hostile_common();
        bad.extend(
            [
                "ada110f6-bd6d-49db-955d-342c27627b6",
                "ada110f6-bd6d-49db-955d-342c27627b611",
                "ada110f6bd6d49db955d342c27627b61",
                "gda110f6-bd6d-49db-955d-342c27627b61",
                "09CBB6DE30C87310",
                "2019-09-10-22-54-36-00",
                "DEAD-BEE",
                "DEAD--BEEF",
                "xxxxxx-xxxx-xxxx-xxxx-xxxx-xxxx-xxxxxx",
                "../../sda1",
                "ada110f6-bd6d-49db-955d-342c27627b61/..",
                "ada110f6-bd6d-49db-955d-342c27627b61 ",
            ]
            .iter()
            .map(|s| s.to_string()),
        );
        for b in &bad {
            assert!(FsUuid::new(b).is_err(), "{b:?} was accepted");
        }
    }

    #[test]
    fn mount_name() {
        for ok in ["backup", "usb-1", "0disk", &"a".repeat(32)] {
            assert!(MountName::new(ok).is_ok(), "{ok}");
        }
        let mut bad = hostile_common();
        bad.extend(
            [
                "Backup",
                "-x",
                "a_b",
                "a.b",
                ".",
                &"a".repeat(33),
                "usb\u{2010}1",
            ]
            .iter()
            .map(|s| s.to_string()),
        );
        for b in &bad {
            assert!(MountName::new(b).is_err(), "{b:?} was accepted");
        }
    }

    #[test]
    fn disk_name() {
        for ok in ["sda", "sdab", "vdb", "nvme0n1", "xvda", "mmcblk0"] {
            assert!(DiskName::new(ok).is_ok(), "{ok}");
        }
        let mut bad = hostile_common();
        bad.extend(
            [
                "/dev/sda",
                "dev/sda",
                "0sda",
                "SDA",
                "sda1!",
                "cciss!c0d0",
                "sda-1",
                "nvme0n1p1 ",
                // Partitions and devices without SMART data are refused at decode.
                "sda1",
                "sdab12",
                "vdb2",
                "xvda1",
                "nvme0n1p1",
                "mmcblk0p2",
                "loop0",
                "zram0",
                "md127",
                "sr0",
                "nbd3",
                "zd16",
                "ram0",
            ]
            .iter()
            .map(|s| s.to_string()),
        );
        for b in &bad {
            assert!(DiskName::new(b).is_err(), "{b:?} was accepted");
        }
    }

    #[test]
    fn hostile_value_count() {
        // The issue asks for at least 60 hostile values in all; each type above gets the
        // common set plus its own.
        assert!(hostile_common().len() >= 35);
    }

    #[test]
    fn serde_validates_on_decode() {
        assert!(serde_json::from_str::<Vmid>("5").is_err());
        assert!(serde_json::from_str::<MountName>("\"../x\"").is_err());
        assert!(serde_json::from_str::<DiskName>("\"/dev/sda\"").is_err());
        let m: MountName = serde_json::from_str("\"backup\"").unwrap();
        assert_eq!(m.as_str(), "backup");
        let u: FsUuid = serde_json::from_str("\"dead-beef\"").unwrap();
        assert_eq!(u.as_str(), "DEAD-BEEF");
    }
}
