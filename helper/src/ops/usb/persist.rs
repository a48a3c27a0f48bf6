//! How a managed mount survives a reboot, and what the helper remembers about it: one
//! [`Persistence`] value per configuration, either the systemd `.mount` units the helper
//! writes (with their marker line) or the fstab-format record file of the direct backend.
//! What the helper manages is exactly what it recorded.
//!
//! Also the mount options every managed mount gets ([`mount_options`]): chosen by the helper,
//! never by the filesystem's superblock.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use felhom_protocol::{FsType, FsUuid, HelperError, MountBackend, MountName};

use crate::config::{BackendChoice, LoadedConfig};
use crate::ops::io_error;

/// The options every managed mount gets, on kernels without `nosymfollow` (before 5.10).
pub const MOUNT_OPTIONS_BASE: &str = "nodev,nosuid,noexec";

/// The options every managed mount gets, on kernels with `nosymfollow`: symlinks on the disk
/// are not followed in path lookups, so a link written onto a backup disk cannot point root's
/// tools elsewhere.
pub const MOUNT_OPTIONS_NOSYMFOLLOW: &str = "nodev,nosuid,noexec,nosymfollow";

/// The first line of the direct backend's record file.
pub const RECORD_HEADER: &str = "# felhom-helper managed mounts (direct backend), fstab format.";

/// Whether a kernel release (`6.1.0-27-amd64`) has `nosymfollow` (Linux 5.10 and later).
pub fn release_has_nosymfollow(release: &str) -> bool {
    let mut it = release
        .split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty())
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (it.next().unwrap_or(0), it.next().unwrap_or(0));
    (major, minor) >= (5, 10)
}

/// The options for managed mounts on this kernel, without the filesystem's own (read once).
fn base_options() -> &'static str {
    static OPTS: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();
    OPTS.get_or_init(|| {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        if release_has_nosymfollow(release.trim()) {
            MOUNT_OPTIONS_NOSYMFOLLOW
        } else {
            MOUNT_OPTIONS_BASE
        }
    })
}

/// What a filesystem does on an I/O or metadata error, forced over the superblock's wish: a
/// USB cable that drops must never panic the node (`tune2fs -e panic` writes that wish into
/// an ext4 superblock). ext4 and exfat remount read-only; btrfs reports the error
/// (`fatal_errors=bug`, its default, written out so it cannot be otherwise); XFS has no such
/// option and shuts the filesystem down by itself.
pub fn error_option(fstype: FsType) -> Option<&'static str> {
    match fstype {
        FsType::Ext4 | FsType::Exfat => Some("errors=remount-ro"),
        FsType::Btrfs => Some("fatal_errors=bug"),
        FsType::Xfs => None,
    }
}

/// The options of a managed mount of `fstype` on this kernel: `nodev,nosuid,noexec`,
/// `nosymfollow` where the kernel has it, the error behaviour of [`error_option`], and
/// `nofail` (a missing disk never holds up boot).
pub fn mount_options(fstype: FsType) -> String {
    match error_option(fstype) {
        Some(e) => format!("{},{e},nofail", base_options()),
        None => format!("{},nofail", base_options()),
    }
}

/// The first line of every unit file the helper writes.
pub const UNIT_MARKER: &str = "# felhom-helper managed mount:";

/// Largest unit or record file the helper reads back.
const MAX_RECORD_BYTES: u64 = 256 * 1024;

/// A mount the helper manages, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Managed {
    /// Its name.
    pub name: MountName,
    /// The filesystem UUID.
    pub uuid: FsUuid,
    /// The filesystem type.
    pub fstype: FsType,
    /// `<mount_root>/<name>`.
    pub mount_point: PathBuf,
    /// The unit name (systemd backend).
    pub unit: Option<String>,
}

/// The mount point of a managed mount.
pub fn mount_point(cfg: &LoadedConfig, name: &MountName) -> PathBuf {
    cfg.config.mount_root.join(name.as_str())
}

/// Escapes a path the way `systemd-escape --path` does: duplicate and trailing slashes are
/// dropped, the leading slash is stripped, `/` becomes `-`, and every byte other than ASCII
/// letters, digits, `:`, `_` and `.` (except a leading `.`) becomes `\xNN`. The root is `-`.
pub fn systemd_escape_path(path: &str) -> String {
    let parts: Vec<&str> = path
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    if parts.is_empty() {
        return "-".into();
    }
    let joined = parts.join("/");
    let mut out = String::with_capacity(joined.len() * 2);
    for (i, b) in joined.bytes().enumerate() {
        match b {
            b'/' => out.push('-'),
            b'.' if i == 0 => out.push_str("\\x2e"),
            b if b.is_ascii_alphanumeric() || b == b':' || b == b'_' || b == b'.' => {
                out.push(b as char)
            }
            b => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out
}

/// The `.mount` unit name for a mount point.
pub fn unit_name(mount_point: &Path) -> String {
    format!(
        "{}.mount",
        systemd_escape_path(&mount_point.to_string_lossy())
    )
}

/// The unit file the systemd backend writes. `what` is the USB disk's stable name
/// (`/dev/disk/by-id/usb-…-partN`), never the UUID: a UUID can be copied onto any
/// filesystem, a USB disk's bus, model and serial cannot be made up inside a guest.
pub fn unit_file(
    name: &MountName,
    uuid: &FsUuid,
    fstype: FsType,
    mount_point: &Path,
    what: &Path,
) -> String {
    format!(
        "{UNIT_MARKER} name={name} uuid={uuid} type={fstype}\n\
         # Written by felhom-helper. Remove it through the agent (usb unmount), not by hand.\n\
         # The disk is named by its stable USB identity; the helper checked that it carries\n\
         # UUID {uuid} and is the only device that does when it wrote this file.\n\
         [Unit]\n\
         Description=felhom USB disk {name} (UUID {uuid})\n\
         \n\
         [Mount]\n\
         What={what}\n\
         Where={mp}\n\
         Type={fstype}\n\
         Options={opts}\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n",
        mp = mount_point.display(),
        what = what.display(),
        opts = mount_options(fstype),
    )
}

/// Parses the marker line of a unit file the helper wrote; `None` for any other file.
pub fn parse_unit_marker(text: &str) -> Option<(MountName, FsUuid, FsType)> {
    let first = text.lines().next()?;
    let rest = first.strip_prefix(UNIT_MARKER)?;
    let (mut name, mut uuid, mut fstype) = (None, None, None);
    for field in rest.split_whitespace() {
        let (k, v) = field.split_once('=')?;
        match k {
            "name" => name = MountName::new(v).ok(),
            "uuid" => uuid = FsUuid::new(v).ok(),
            "type" => fstype = FsType::from_blkid(v),
            _ => return None,
        }
    }
    Some((name?, uuid?, fstype?))
}

/// The record line of the direct backend.
pub fn record_line(uuid: &FsUuid, mount_point: &Path, fstype: FsType) -> String {
    format!(
        "UUID={uuid} {} {fstype} {} 0 2",
        mount_point.display(),
        mount_options(fstype)
    )
}

/// Parses one record line; `None` for comments, blanks and anything not written by the
/// helper under `mount_root`.
pub fn parse_record_line(line: &str, mount_root: &Path) -> Option<(MountName, FsUuid, FsType)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let f: Vec<&str> = line.split_whitespace().collect();
    let [what, mp, ty, _opts, _, _] = f.as_slice() else {
        return None;
    };
    let uuid = FsUuid::new(what.strip_prefix("UUID=")?).ok()?;
    let rel = Path::new(mp).strip_prefix(mount_root).ok()?;
    let name = MountName::new(rel.to_str()?).ok()?;
    let fstype = FsType::from_blkid(ty)?;
    Some((name, uuid, fstype))
}

/// Reads at most [`MAX_RECORD_BYTES`] of a regular file: a symlink is not followed and a
/// FIFO or device is neither waited on (`O_NONBLOCK`) nor read.
fn read_bounded(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    if !f.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut s = String::new();
    f.take(MAX_RECORD_BYTES).read_to_string(&mut s)?;
    Ok(s)
}

/// The mounts the helper manages, from its unit files or its record file.
pub fn managed(cfg: &LoadedConfig) -> Result<Vec<Managed>, HelperError> {
    let c = &cfg.config;
    let mut out = Vec::new();
    match c.mount_backend {
        BackendChoice::Systemd => {
            let dir = match std::fs::read_dir(&c.unit_dir) {
                Ok(d) => d,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
                Err(e) => {
                    return Err(io_error(&format!("reading {}", c.unit_dir.display()), &e));
                }
            };
            for entry in dir.flatten() {
                let file_name = entry.file_name().to_string_lossy().into_owned();
                if !file_name.ends_with(".mount") {
                    continue;
                }
                // Only regular files (the helper writes nothing else); never a symlink,
                // FIFO or device.
                if !entry.file_type().is_ok_and(|t| t.is_file()) {
                    continue;
                }
                let Ok(text) = read_bounded(&entry.path()) else {
                    continue;
                };
                let Some((name, uuid, fstype)) = parse_unit_marker(&text) else {
                    continue;
                };
                let mp = mount_point(cfg, &name);
                if unit_name(&mp) != file_name {
                    tracing::warn!(unit = %file_name, "managed unit with a foreign name ignored");
                    continue;
                }
                out.push(Managed {
                    name,
                    uuid,
                    fstype,
                    mount_point: mp,
                    unit: Some(file_name),
                });
            }
        }
        BackendChoice::Direct => {
            let text = match read_bounded(&c.record_file) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
                Err(e) => {
                    return Err(io_error(
                        &format!("reading {}", c.record_file.display()),
                        &e,
                    ));
                }
            };
            for line in text.lines() {
                if let Some((name, uuid, fstype)) = parse_record_line(line, &c.mount_root) {
                    let mp = mount_point(cfg, &name);
                    out.push(Managed {
                        name,
                        uuid,
                        fstype,
                        mount_point: mp,
                        unit: None,
                    });
                }
            }
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out.dedup_by(|a, b| a.name == b.name);
    Ok(out)
}

/// Writes `text` into a fresh temporary file beside `path` (`.<name>.<suffix>`), synced,
/// and returns its path.
fn write_temp(path: &Path, suffix: &str, text: &str, mode: u32) -> std::io::Result<PathBuf> {
    let dir = path
        .parent()
        .ok_or_else(|| std::io::Error::other("path has no parent directory"))?;
    let file_name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("path has no file name"))?;
    let tmp = dir.join(format!(".{}.{suffix}", file_name.to_string_lossy()));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)?;
    let written = f.write_all(text.as_bytes()).and_then(|()| f.sync_all());
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(tmp)
}

/// Writes `text` to `path` atomically: a temporary file in the same directory, fsync,
/// rename.
pub fn write_atomic(path: &Path, text: &str, mode: u32) -> std::io::Result<()> {
    let tmp = write_temp(path, "felhom-tmp", text, mode)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// Writes a new file with `text`, failing with `AlreadyExists` if `path` exists: the content
/// goes to a temporary file first, which is then hard-linked to `path` (never replacing
/// anything) and removed, so `path` appears complete or not at all.
pub fn write_new(path: &Path, text: &str, mode: u32) -> std::io::Result<()> {
    let tmp = write_temp(path, "felhom-new", text, mode)?;
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    linked
}

/// Writes the unit file of a mount named `name`: a new file exclusively, or over a file that
/// the helper wrote for the same name. Any other file of that name (written by hand, by
/// another tool, a symlink) is left alone and refused.
pub fn write_unit(path: &Path, name: &MountName, text: &str) -> Result<(), HelperError> {
    let werr = |e: std::io::Error| io_error(&format!("writing {}", path.display()), &e);
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            write_new(path, text, 0o644).map_err(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    foreign_unit(path)
                } else {
                    werr(e)
                }
            })
        }
        Err(e) => Err(io_error(&format!("inspecting {}", path.display()), &e)),
        Ok(md) if !md.file_type().is_file() => Err(foreign_unit(path)),
        Ok(_) => {
            let ours = read_bounded(path)
                .ok()
                .and_then(|t| parse_unit_marker(&t))
                .is_some_and(|(n, _, _)| &n == name);
            if !ours {
                return Err(foreign_unit(path));
            }
            write_atomic(path, text, 0o644).map_err(werr)
        }
    }
}

fn foreign_unit(path: &Path) -> HelperError {
    HelperError::Busy {
        what: format!(
            "{} exists and was not written by felhom-helper for this mount; it is left as it \
             is (remove or rename it first if it is not needed)",
            path.display()
        ),
    }
}

pub(crate) fn rewrite_records(
    cfg: &LoadedConfig,
    drop_name: &MountName,
    add: Option<String>,
) -> Result<(), HelperError> {
    let c = &cfg.config;
    let path = &c.record_file;
    let existing = match read_bounded(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(io_error(&format!("reading {}", path.display()), &e)),
    };
    let mut text = String::new();
    if existing.trim().is_empty() {
        text.push_str(RECORD_HEADER);
        text.push('\n');
    } else if existing.lines().next() != Some(RECORD_HEADER) {
        return Err(HelperError::Busy {
            what: format!(
                "{} does not start with the felhom-helper header; it is not rewritten",
                path.display()
            ),
        });
    }
    for line in existing.lines() {
        let drop = parse_record_line(line, &c.mount_root).is_some_and(|(n, _, _)| &n == drop_name);
        if !drop {
            text.push_str(line);
            text.push('\n');
        }
    }
    if let Some(line) = add {
        text.push_str(&line);
        text.push('\n');
    }
    if let Some(parent) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(|e| io_error(&format!("creating {}", parent.display()), &e))?;
    }
    write_atomic(path, &text, 0o644)
        .map_err(|e| io_error(&format!("writing {}", path.display()), &e))
}

/// How managed mounts persist, as the configuration chose: one value instead of a branch on
/// the backend in every step of a mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Persistence {
    /// A systemd `.mount` unit per mount in this directory; PID 1 mounts and unmounts, and
    /// mounts again at boot. The unit's `What=` is the disk's stable USB name.
    Units {
        /// `unit_dir`.
        dir: PathBuf,
    },
    /// mount(8) by the helper, and an fstab-format line per mount in this file.
    RecordFile {
        /// `record_file`.
        path: PathBuf,
    },
}

impl Persistence {
    /// The configuration's choice.
    pub fn of(cfg: &LoadedConfig) -> Persistence {
        let c = &cfg.config;
        match c.mount_backend {
            BackendChoice::Systemd => Persistence::Units {
                dir: c.unit_dir.clone(),
            },
            BackendChoice::Direct => Persistence::RecordFile {
                path: c.record_file.clone(),
            },
        }
    }

    /// The backend's name in replies.
    pub fn backend(&self) -> MountBackend {
        match self {
            Persistence::Units { .. } => MountBackend::Systemd,
            Persistence::RecordFile { .. } => MountBackend::Direct,
        }
    }

    /// The record of a mount about to be made at `mount_point` (with its unit name, for
    /// units).
    pub fn managed(
        &self,
        name: &MountName,
        uuid: &FsUuid,
        fstype: FsType,
        mount_point: PathBuf,
    ) -> Managed {
        Managed {
            name: name.clone(),
            uuid: uuid.clone(),
            fstype,
            unit: match self {
                Persistence::Units { .. } => Some(unit_name(&mount_point)),
                Persistence::RecordFile { .. } => None,
            },
            mount_point,
        }
    }

    /// Writes what brings `m` back at boot: its unit file (naming the disk by `stable_id`,
    /// which units require) or its record line. Blocking file work.
    pub fn record(
        &self,
        cfg: &LoadedConfig,
        m: &Managed,
        stable_id: Option<&Path>,
        device: &str,
    ) -> Result<(), HelperError> {
        match self {
            Persistence::Units { dir } => {
                let Some(what) = stable_id else {
                    return Err(HelperError::Rejected {
                        field: "device".into(),
                        reason: format!(
                            "{device} has no stable name (a usb-… link) in {} (udev has not \
                             named it), so no mount unit can name this disk; is udev running?",
                            cfg.config.dev_disk_by_id.display()
                        ),
                    });
                };
                let unit = m.unit.clone().unwrap_or_else(|| unit_name(&m.mount_point));
                let text = unit_file(&m.name, &m.uuid, m.fstype, &m.mount_point, what);
                write_unit(&dir.join(unit), &m.name, &text)
            }
            Persistence::RecordFile { .. } => rewrite_records(
                cfg,
                &m.name,
                Some(record_line(&m.uuid, &m.mount_point, m.fstype)),
            ),
        }
    }

    /// Removes what [`Self::record`] wrote for `m`, if it is there and the helper's; says
    /// whether a unit file went (then systemd needs a `daemon-reload`). Blocking file work.
    pub fn forget(&self, cfg: &LoadedConfig, m: &Managed) -> Result<bool, HelperError> {
        match self {
            Persistence::Units { dir } => {
                let unit = m.unit.clone().unwrap_or_else(|| unit_name(&m.mount_point));
                let path = dir.join(unit);
                let ours = read_bounded(&path)
                    .ok()
                    .and_then(|t| parse_unit_marker(&t))
                    .is_some_and(|(n, _, _)| n == m.name);
                if !ours {
                    return Ok(false);
                }
                match std::fs::remove_file(&path) {
                    Ok(()) => Ok(true),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
                    Err(e) => Err(io_error(&format!("removing {}", path.display()), &e)),
                }
            }
            Persistence::RecordFile { .. } => rewrite_records(cfg, &m.name, None).map(|()| false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_matches_systemd_escape_path() {
        // Expected values from `systemd-escape --path` (systemd 252).
        for (path, want) in [
            ("/mnt/felhom/backup", "mnt-felhom-backup"),
            ("/mnt/usb-backup", "mnt-usb\\x2dbackup"),
            ("/mnt//x/", "mnt-x"),
            ("/", "-"),
            ("/mnt/.hidden", "mnt-.hidden"),
            ("/.x", "\\x2ex"),
            ("/a b/c:d_e.f", "a\\x20b-c:d_e.f"),
            ("/mnt/ü", "mnt-\\xc3\\xbc"),
            ("/a\\b", "a\\x5cb"),
        ] {
            assert_eq!(systemd_escape_path(path), want, "{path}");
        }
        assert_eq!(
            unit_name(Path::new("/mnt/felhom/usb-1")),
            "mnt-felhom-usb\\x2d1.mount"
        );
    }

    #[test]
    fn escaping_agrees_with_the_real_tool_when_present() {
        let tool = Path::new("/usr/bin/systemd-escape");
        if !tool.exists() {
            eprintln!("skipping: {} is not installed", tool.display());
            return;
        }
        let _serial = crate::exec::SPAWN_LOCK.blocking_lock();
        for p in [
            "/mnt/felhom/a-b",
            "/mnt/felhom/x9",
            "/srv/.d/e f",
            "/mnt/a:b_c.d",
        ] {
            let out = std::process::Command::new(tool)
                .args(["--path", p])
                .output()
                .unwrap();
            let want = String::from_utf8(out.stdout).unwrap();
            assert_eq!(systemd_escape_path(p), want.trim(), "{p}");
        }
    }

    #[test]
    fn records_and_markers_round_trip() {
        let uuid = FsUuid::new("ada110f6-bd6d-49db-955d-342c27627b61").unwrap();
        let name = MountName::new("backup-1").unwrap();
        let root = Path::new("/mnt/felhom");
        let mp = root.join("backup-1");
        let line = record_line(&uuid, &mp, FsType::Xfs);
        assert_eq!(
            line,
            format!(
                "UUID=ada110f6-bd6d-49db-955d-342c27627b61 /mnt/felhom/backup-1 xfs {} 0 2",
                mount_options(FsType::Xfs)
            )
        );
        assert_eq!(
            parse_record_line(&line, root),
            Some((name.clone(), uuid.clone(), FsType::Xfs))
        );
        assert_eq!(parse_record_line(&line, Path::new("/elsewhere")), None);
        assert_eq!(parse_record_line("# comment", root), None);
        assert_eq!(
            parse_record_line("UUID=x /mnt/felhom/a ext4 o 0 2", root),
            None
        );
        let by_id = Path::new("/dev/disk/by-id/usb-SanDisk_Extreme_AA010-0:0-part1");
        let unit = unit_file(&name, &uuid, FsType::Ext4, &mp, by_id);
        assert!(unit.contains("What=/dev/disk/by-id/usb-SanDisk_Extreme_AA010-0:0-part1\n"));
        assert!(!unit.contains("by-uuid"), "{unit}");
        assert!(unit.contains("Where=/mnt/felhom/backup-1\n"));
        assert!(unit.contains(&format!("Options={}\n", mount_options(FsType::Ext4))));
        assert!(unit.contains(",errors=remount-ro,nofail\n"), "{unit}");
        assert!(unit.contains("WantedBy=multi-user.target\n"));
        assert_eq!(parse_unit_marker(&unit), Some((name, uuid, FsType::Ext4)));
        assert_eq!(parse_unit_marker("[Unit]\n"), None);
        assert_eq!(
            parse_unit_marker(&format!("{UNIT_MARKER} name=../x uuid=DEAD-BEEF type=ext4")),
            None
        );
    }

    #[test]
    fn managed_skips_fifos_and_symlinks_in_the_unit_dir() {
        let dir = tempfile::tempdir().unwrap();
        let units = dir.path().join("units");
        std::fs::create_dir(&units).unwrap();
        let config = crate::config::Config {
            mount_root: "/mnt/felhom".into(),
            unit_dir: units.clone(),
            ..Default::default()
        };
        let cfg = LoadedConfig {
            configured_tools: config.tools.clone(),
            config,
            agent_uid: 0,
            allowed_filesystems: vec![],
            missing_tools: vec![],
        };
        let name = MountName::new("usb-1").unwrap();
        let uuid = FsUuid::new("ada110f6-bd6d-49db-955d-342c27627b61").unwrap();
        let mp = mount_point(&cfg, &name);
        let text = unit_file(&name, &uuid, FsType::Ext4, &mp, Path::new("/dev/x"));
        // A valid-looking unit reached through a symlink: not the helper's, ignored.
        std::fs::write(dir.path().join("elsewhere"), &text).unwrap();
        std::os::unix::fs::symlink(dir.path().join("elsewhere"), units.join(unit_name(&mp)))
            .unwrap();
        // A FIFO named like a unit: opening it for reading would block forever.
        nix::unistd::mkfifo(
            &units.join("mnt-felhom-fifo.mount"),
            nix::sys::stat::Mode::from_bits_truncate(0o644),
        )
        .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(managed(&cfg).map(|v| v.len()));
        });
        let found = rx
            .recv_timeout(std::time::Duration::from_secs(5))
            .expect("managed() blocked on a FIFO in the unit directory");
        assert_eq!(found.unwrap(), 0);
    }

    #[test]
    fn atomic_write_replaces_whole_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        write_atomic(&p, "one\n", 0o644).unwrap();
        write_atomic(&p, "two\n", 0o644).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "two\n");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn the_error_behaviour_is_forced_per_filesystem() {
        // The superblock's wish (tune2fs -e panic) is overridden for ext4 and exfat.
        assert!(mount_options(FsType::Ext4).contains(",errors=remount-ro,"));
        assert!(mount_options(FsType::Exfat).contains(",errors=remount-ro,"));
        assert!(mount_options(FsType::Btrfs).contains(",fatal_errors=bug,"));
        assert!(!mount_options(FsType::Xfs).contains("errors"));
        assert!(!mount_options(FsType::Xfs).contains("panic"));
    }

    #[test]
    fn nosymfollow_follows_the_kernel_release() {
        for (release, want) in [
            ("6.1.0-27-amd64", true),
            ("6.8.12-4-pve", true),
            ("5.10.0-30-amd64", true),
            ("5.4.0-200-generic", false),
            ("4.19.0-26-amd64", false),
            ("", false),
            ("garbage", false),
        ] {
            assert_eq!(release_has_nosymfollow(release), want, "{release}");
        }
        for fs in [FsType::Ext4, FsType::Xfs, FsType::Btrfs, FsType::Exfat] {
            let o = mount_options(fs);
            assert!(o.starts_with("nodev,nosuid,noexec"), "{o}");
            assert!(o.ends_with(",nofail"), "{o}");
        }
    }

    fn name_uuid() -> (MountName, FsUuid) {
        (
            MountName::new("usb-1").unwrap(),
            FsUuid::new("ada110f6-bd6d-49db-955d-342c27627b61").unwrap(),
        )
    }

    #[test]
    fn a_unit_file_that_is_not_the_helpers_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let (name, uuid) = name_uuid();
        let path = dir.path().join("mnt-felhom-usb\\x2d1.mount");
        let ours = unit_file(
            &name,
            &uuid,
            FsType::Ext4,
            Path::new("/mnt/felhom/usb-1"),
            Path::new("/dev/x"),
        );
        // A hand-written unit of the same name stays as it is.
        let theirs = "[Mount]\nWhat=/dev/sdz1\nWhere=/mnt/felhom/usb-1\n";
        std::fs::write(&path, theirs).unwrap();
        let e = write_unit(&path, &name, &ours).unwrap_err().to_string();
        assert!(e.contains("not written by felhom-helper"), "{e}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), theirs);
        // The helper's unit for another name is not the helper's to replace either.
        let other = unit_file(
            &MountName::new("other").unwrap(),
            &uuid,
            FsType::Ext4,
            Path::new("/mnt/felhom/other"),
            Path::new("/dev/x"),
        );
        std::fs::write(&path, &other).unwrap();
        assert!(write_unit(&path, &name, &ours).is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), other);
        // A symlink of that name is refused and left alone.
        std::fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", &path).unwrap();
        assert!(write_unit(&path, &name, &ours).is_err());
        assert!(
            std::fs::symlink_metadata(&path)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        // A new file is created; the helper's own file for the same name is replaced.
        std::fs::remove_file(&path).unwrap();
        write_unit(&path, &name, &ours).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), ours);
        let newer = ours.replace("nofail", "nofail,x-test");
        write_unit(&path, &name, &newer).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), newer);
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn write_new_never_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        write_new(&p, "one\n", 0o644).unwrap();
        let e = write_new(&p, "two\n", 0o644).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "one\n");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_record_file_without_the_header_is_not_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::config::Config {
            mount_root: "/mnt/felhom".into(),
            record_file: dir.path().join("mounts.fstab"),
            ..Default::default()
        };
        let cfg = LoadedConfig {
            configured_tools: config.tools.clone(),
            config,
            agent_uid: 0,
            allowed_filesystems: vec![],
            missing_tools: vec![],
        };
        let (name, uuid) = name_uuid();
        let line = record_line(&uuid, Path::new("/mnt/felhom/usb-1"), FsType::Ext4);
        let path = cfg.config.record_file.clone();
        std::fs::write(&path, "/dev/sda1 / ext4 defaults 0 1\n").unwrap();
        let e = rewrite_records(&cfg, &name, Some(line.clone()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("header"), "{e}");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "/dev/sda1 / ext4 defaults 0 1\n"
        );
        std::fs::remove_file(&path).unwrap();
        rewrite_records(&cfg, &name, Some(line.clone())).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, format!("{RECORD_HEADER}\n{line}\n"));
        rewrite_records(&cfg, &name, None).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("{RECORD_HEADER}\n")
        );
    }
}
