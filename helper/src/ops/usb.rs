//! USB disks: mount by filesystem UUID, persistently; unmount; list.
//!
//! The UUID is resolved without udev (`blkid -c /dev/null -U`), the device is re-probed
//! (`blkid -c /dev/null -p -o export`) and its TYPE and UUID must match. The helper computes
//! the mount point (`<mount_root>/<name>`) and forces `nodev,nosuid,noexec,nofail`.
//!
//! Persistence, by backend:
//! - `systemd`: a `.mount` unit named by systemd path escaping of the mount point, with
//!   `What=/dev/disk/by-uuid/<uuid>`, written atomically into `unit_dir`, then
//!   `systemctl daemon-reload` and `systemctl enable --now`, so PID 1 owns the mount.
//! - `direct`: `mount -t <type> -o <options> <device> <mount point>`, and an fstab-format line
//!   `UUID=<uuid> <mount point> <type> <options> 0 2` in `record_file`.
//!
//! What the helper manages is what it recorded: units carrying [`UNIT_MARKER`], or lines of
//! the record file. Whether something is mounted is read from `mountinfo`.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use felhom_protocol::{
    FsType, FsUuid, HelperError, MountBackend, MountInfo, MountName, UnmountReply, UsbMountRequest,
};

use super::{OpEnv, io_error, tool_failed};
use crate::config::{BackendChoice, LoadedConfig, Tool};

/// The options every managed mount gets.
pub const MOUNT_OPTIONS: &str = "nodev,nosuid,noexec,nofail";

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

/// The unit file the systemd backend writes.
pub fn unit_file(name: &MountName, uuid: &FsUuid, fstype: FsType, mount_point: &Path) -> String {
    format!(
        "{UNIT_MARKER} name={name} uuid={uuid} type={fstype}\n\
         # Written by felhom-helper. Remove it through the agent (usb unmount), not by hand.\n\
         [Unit]\n\
         Description=felhom USB disk {name} (UUID {uuid})\n\
         \n\
         [Mount]\n\
         What=/dev/disk/by-uuid/{uuid}\n\
         Where={mp}\n\
         Type={fstype}\n\
         Options={MOUNT_OPTIONS}\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n",
        mp = mount_point.display()
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
        "UUID={uuid} {} {fstype} {MOUNT_OPTIONS} 0 2",
        mount_point.display()
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

/// Parses `blkid -o export` output: `KEY=value` lines, records separated by blank lines.
/// Values are unescaped (blkid puts a backslash before unsafe characters).
pub fn parse_blkid_export(text: &str) -> Vec<Vec<(String, String)>> {
    let mut records = Vec::new();
    let mut current = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !current.is_empty() {
                records.push(std::mem::take(&mut current));
            }
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let mut value = String::with_capacity(v.len());
        let mut chars = v.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                if let Some(n) = chars.next() {
                    value.push(n);
                }
            } else {
                value.push(c);
            }
        }
        current.push((k.to_string(), value));
    }
    if !current.is_empty() {
        records.push(current);
    }
    records
}

/// One line of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// Where it is mounted (unescaped).
    pub mount_point: String,
    /// Per-mount options (`rw,nosuid,nodev,noexec,relatime`).
    pub options: String,
    /// Filesystem type.
    pub fstype: String,
    /// Mount source (device).
    pub source: String,
}

/// Decodes mountinfo's octal escapes (`\040` for space, …).
fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|d| (b'0'..=b'7').contains(d))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            out.push(u8::try_from(v).unwrap_or(b'?'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses mountinfo text; malformed lines are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(' ').collect();
            let sep = f.iter().position(|x| *x == "-")?;
            if sep < 6 || f.len() < sep + 3 {
                return None;
            }
            Some(MountEntry {
                mount_point: unescape_octal(f[4]),
                options: f[5].to_string(),
                fstype: f[sep + 1].to_string(),
                source: unescape_octal(f[sep + 2]),
            })
        })
        .collect()
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

/// The current mount table.
pub fn mounts(cfg: &LoadedConfig) -> Result<Vec<MountEntry>, HelperError> {
    let path = &cfg.config.mountinfo;
    // mountinfo can be long on busy hosts; read it whole (it is kernel-generated).
    let text = std::fs::read_to_string(path)
        .map_err(|e| io_error(&format!("reading {}", path.display()), &e))?;
    Ok(parse_mountinfo(&text))
}

fn mounted_at<'a>(table: &'a [MountEntry], mp: &Path) -> Option<&'a MountEntry> {
    let mp = mp.to_string_lossy();
    // The last entry for a path is the one visible there.
    table.iter().rev().find(|e| e.mount_point == mp)
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

fn info(cfg: &LoadedConfig, m: &Managed, table: &[MountEntry]) -> MountInfo {
    MountInfo {
        name: m.name.clone(),
        uuid: m.uuid.clone(),
        fstype: m.fstype,
        mount_point: m.mount_point.display().to_string(),
        options: MOUNT_OPTIONS.to_string(),
        mounted: mounted_at(table, &m.mount_point).is_some(),
        backend: MountBackend::from(cfg.config.mount_backend),
        unit: m.unit.clone(),
    }
}

/// `usb_list`.
pub fn list(cfg: &LoadedConfig) -> Result<Vec<MountInfo>, HelperError> {
    let table = mounts(cfg)?;
    Ok(managed(cfg)?.iter().map(|m| info(cfg, m, &table)).collect())
}

/// Checks the device path blkid printed: an absolute path under `/dev`, nothing odd in it.
pub fn check_device_path(dev: &str) -> Result<(), HelperError> {
    let ok = dev.starts_with("/dev/")
        && dev.len() <= 255
        && !dev.split('/').any(|c| c == "..")
        && dev
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/-_.:+".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(HelperError::Internal {
            message: format!("blkid printed an unexpected device path {dev:?}"),
        })
    }
}

/// Resolves a UUID to its block device and verifies its type, returning `(device, type)`.
async fn resolve(env: &OpEnv<'_>, uuid: &FsUuid) -> Result<(String, FsType), HelperError> {
    let args = ["-c", "/dev/null", "-U", uuid.as_str()].map(String::from);
    let out = env.exec(Tool::Blkid, &args).await?;
    match out.exit_code {
        Some(0) => {}
        Some(2) => {
            return Err(HelperError::NotFound {
                what: format!("no filesystem with UUID {uuid} (is the disk plugged in?)"),
            });
        }
        _ => return Err(tool_failed(Tool::Blkid, &out)),
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let dev = stdout.lines().next().unwrap_or("").trim().to_string();
    check_device_path(&dev)?;
    let args = ["-c", "/dev/null", "-p", "-o", "export", dev.as_str()].map(String::from);
    let probe = env.exec_ok(Tool::Blkid, &args).await?;
    let records = parse_blkid_export(&String::from_utf8_lossy(&probe.stdout));
    let rec = records.first().ok_or_else(|| HelperError::NotFound {
        what: format!("{dev} (UUID {uuid}) holds no recognizable filesystem"),
    })?;
    let get = |k: &str| {
        rec.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    let probed_uuid = get("UUID").unwrap_or("");
    if !probed_uuid.eq_ignore_ascii_case(uuid.as_str()) {
        return Err(HelperError::Busy {
            what: format!(
                "{dev} was found for UUID {uuid} but now reports UUID {probed_uuid:?}; \
                 the disk changed, try again"
            ),
        });
    }
    let ty = get("TYPE").unwrap_or("");
    let allowed = &env.cfg.allowed_filesystems;
    let names: Vec<&str> = allowed.iter().map(|f| f.as_str()).collect();
    match FsType::from_blkid(ty) {
        Some(fs) if allowed.contains(&fs) => Ok((dev, fs)),
        _ => Err(HelperError::Rejected {
            field: "filesystem type".into(),
            reason: format!(
                "UUID {uuid} is a {} filesystem; this helper mounts only {}",
                if ty.is_empty() { "unknown" } else { ty },
                names.join(", ")
            ),
        }),
    }
}

/// Makes sure the mount point is a plain empty directory the helper may mount on.
fn prepare_mount_point(
    cfg: &LoadedConfig,
    mp: &Path,
    table: &[MountEntry],
) -> Result<(), HelperError> {
    // mount_root was created, trust-checked and canonicalized at start-up; it must still be
    // that directory (not a symlink put there since).
    let root = &cfg.config.mount_root;
    match std::fs::symlink_metadata(root) {
        Ok(md) if md.is_dir() => {}
        Ok(_) => {
            return Err(HelperError::Internal {
                message: format!("{} is no longer a directory", root.display()),
            });
        }
        Err(e) => return Err(io_error(&format!("inspecting {}", root.display()), &e)),
    }
    match std::fs::symlink_metadata(mp) {
        Ok(md) if md.file_type().is_symlink() => {
            return Err(HelperError::Rejected {
                field: "mount point".into(),
                reason: format!("{} is a symbolic link", mp.display()),
            });
        }
        Ok(md) if !md.is_dir() => {
            return Err(HelperError::Busy {
                what: format!("{} exists and is not a directory", mp.display()),
            });
        }
        Ok(_) => {
            if let Some(e) = mounted_at(table, mp) {
                return Err(HelperError::Busy {
                    what: format!(
                        "{} is already a mount point of {} ({}), not managed by felhom",
                        mp.display(),
                        e.source,
                        e.fstype
                    ),
                });
            }
            let non_empty = std::fs::read_dir(mp)
                .map_err(|e| io_error(&format!("reading {}", mp.display()), &e))?
                .next()
                .is_some();
            if non_empty {
                return Err(HelperError::Busy {
                    what: format!(
                        "{} is a non-empty directory not managed by felhom",
                        mp.display()
                    ),
                });
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .mode(0o755)
                .create(mp)
                .map_err(|e| io_error(&format!("creating {}", mp.display()), &e))?;
        }
        Err(e) => return Err(io_error(&format!("inspecting {}", mp.display()), &e)),
    }
    Ok(())
}

/// Writes `text` to `path` atomically: a temporary file in the same directory, fsync,
/// rename.
pub fn write_atomic(path: &Path, text: &str, mode: u32) -> std::io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| std::io::Error::other("path has no parent directory"))?;
    let file_name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("path has no file name"))?;
    let tmp = dir.join(format!(".{}.felhom-tmp", file_name.to_string_lossy()));
    let _ = std::fs::remove_file(&tmp);
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

fn rewrite_records(
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
    if !existing.starts_with('#') {
        text.push_str("# felhom-helper managed mounts (direct backend), fstab format.\n");
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

/// `usb_mount`.
pub async fn mount(env: OpEnv<'_>, req: &UsbMountRequest) -> Result<MountInfo, HelperError> {
    let cfg = env.cfg;
    let c = &cfg.config;
    let existing = env.blocking(managed).await?;
    if let Some(m) = existing
        .iter()
        .find(|m| m.uuid == req.uuid && m.name != req.name)
    {
        return Err(HelperError::Busy {
            what: format!(
                "UUID {} is already managed as {:?}; unmount that first",
                req.uuid,
                m.name.as_str()
            ),
        });
    }
    let same = existing.iter().find(|m| m.name == req.name);
    if let Some(m) = same {
        if m.uuid != req.uuid {
            return Err(HelperError::Busy {
                what: format!(
                    "the name {:?} is already used by UUID {}",
                    req.name.as_str(),
                    m.uuid
                ),
            });
        }
        let table = env.blocking(mounts).await?;
        if mounted_at(&table, &m.mount_point).is_some() {
            // Same UUID, same name, already mounted: nothing to do.
            return Ok(info(cfg, m, &table));
        }
    }
    let (dev, fstype) = resolve(&env, &req.uuid).await?;
    let mp = mount_point(cfg, &req.name);
    let table = env.blocking(mounts).await?;
    prepare_mount_point(cfg, &mp, &table)?;
    let record = Managed {
        name: req.name.clone(),
        uuid: req.uuid.clone(),
        fstype,
        mount_point: mp.clone(),
        unit: None,
    };
    let record = match c.mount_backend {
        BackendChoice::Direct => {
            let args = [
                "-t",
                fstype.as_str(),
                "-o",
                MOUNT_OPTIONS,
                dev.as_str(),
                &mp.to_string_lossy(),
            ]
            .map(String::from);
            env.exec_ok(Tool::Mount, &args).await?;
            if let Err(e) =
                rewrite_records(cfg, &req.name, Some(record_line(&req.uuid, &mp, fstype)))
            {
                let _ = env
                    .exec(Tool::Umount, &[mp.to_string_lossy().into_owned()])
                    .await;
                return Err(e);
            }
            record
        }
        BackendChoice::Systemd => {
            let unit = unit_name(&mp);
            let path = c.unit_dir.join(&unit);
            write_atomic(&path, &unit_file(&req.name, &req.uuid, fstype, &mp), 0o644)
                .map_err(|e| io_error(&format!("writing {}", path.display()), &e))?;
            let started = async {
                env.exec_ok(Tool::Systemctl, &["daemon-reload".to_string()])
                    .await?;
                env.exec_ok(
                    Tool::Systemctl,
                    &["enable".into(), "--now".into(), unit.clone()],
                )
                .await
            }
            .await;
            if let Err(e) = started {
                let _ = env
                    .exec(
                        Tool::Systemctl,
                        &["disable".into(), "--now".into(), unit.clone()],
                    )
                    .await;
                let _ = std::fs::remove_file(&path);
                let _ = env
                    .exec(Tool::Systemctl, &["daemon-reload".to_string()])
                    .await;
                return Err(e);
            }
            Managed {
                unit: Some(unit),
                ..record
            }
        }
    };
    let table = env.blocking(mounts).await?;
    Ok(info(cfg, &record, &table))
}

/// `usb_unmount`.
pub async fn unmount(env: OpEnv<'_>, name: &MountName) -> Result<UnmountReply, HelperError> {
    let cfg = env.cfg;
    let c = &cfg.config;
    let m = env
        .blocking(managed)
        .await?
        .into_iter()
        .find(|m| &m.name == name)
        .ok_or_else(|| HelperError::NotFound {
            what: format!("no managed mount named {:?}", name.as_str()),
        })?;
    let was_mounted = mounted_at(&env.blocking(mounts).await?, &m.mount_point).is_some();
    match c.mount_backend {
        BackendChoice::Direct => {
            if was_mounted {
                env.exec_ok(
                    Tool::Umount,
                    &[m.mount_point.to_string_lossy().into_owned()],
                )
                .await?;
            }
            rewrite_records(cfg, name, None)?;
        }
        BackendChoice::Systemd => {
            let unit = m.unit.clone().unwrap_or_else(|| unit_name(&m.mount_point));
            env.exec_ok(
                Tool::Systemctl,
                &["disable".into(), "--now".into(), unit.clone()],
            )
            .await?;
            let path = c.unit_dir.join(&unit);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error(&format!("removing {}", path.display()), &e)),
            }
            env.exec_ok(Tool::Systemctl, &["daemon-reload".to_string()])
                .await?;
        }
    }
    if mounted_at(&env.blocking(mounts).await?, &m.mount_point).is_none() {
        // Leave no empty directory behind; a non-empty one stays (rmdir refuses).
        let _ = std::fs::remove_dir(&m.mount_point);
    }
    Ok(UnmountReply {
        name: name.clone(),
        was_mounted,
    })
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
    fn blkid_export_is_parsed_with_escapes() {
        let text = "DEVNAME=/dev/sdb1\nUUID=ada110f6-bd6d-49db-955d-342c27627b61\n\
                    LABEL=my\\ disk\\\"x\nTYPE=ext4\n\nDEVNAME=/dev/sdc1\nTYPE=xfs\n";
        let r = parse_blkid_export(text);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0][2], ("LABEL".into(), "my disk\"x".into()));
        assert_eq!(r[0][3], ("TYPE".into(), "ext4".into()));
        assert_eq!(r[1][1], ("TYPE".into(), "xfs".into()));
        assert!(parse_blkid_export("").is_empty());
        assert!(parse_blkid_export("garbage without equals\n\n").is_empty());
    }

    #[test]
    fn blkid_export_fixtures_parse_when_present() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/rootops");
        let Ok(text) = std::fs::read_to_string(dir.join("local_blkid_export_6fs.txt")) else {
            eprintln!("skipping: shared fixtures absent");
            return;
        };
        let recs = parse_blkid_export(&text);
        let types: Vec<String> = recs
            .iter()
            .filter_map(|r| r.iter().find(|(k, _)| k == "TYPE").map(|(_, v)| v.clone()))
            .collect();
        for t in ["ext4", "xfs", "btrfs", "exfat"] {
            assert!(types.iter().any(|x| x == t), "{t} in {types:?}");
        }
        if let Ok(esc) = std::fs::read_to_string(dir.join("blkid_export_escaped_label.txt")) {
            let r = parse_blkid_export(&esc);
            let ty = r[0].iter().find(|(k, _)| k == "TYPE").unwrap();
            assert_eq!(ty.1, "cramfs");
        }
    }

    #[test]
    fn mountinfo_is_parsed_and_unescaped() {
        let text = "36 35 98:0 /mnt1 /mnt/parent rw,noatime master:1 - ext3 /dev/root rw\n\
                    40 20 8:17 / /mnt/felhom/a\\040b rw,nosuid,nodev,noexec,relatime - ext4 /dev/sdb1 rw\n\
                    garbage\n";
        let m = parse_mountinfo(text);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].fstype, "ext3");
        assert_eq!(m[1].mount_point, "/mnt/felhom/a b");
        assert_eq!(m[1].source, "/dev/sdb1");
        assert!(m[1].options.contains("noexec"));
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
            "UUID=ada110f6-bd6d-49db-955d-342c27627b61 /mnt/felhom/backup-1 xfs \
             nodev,nosuid,noexec,nofail 0 2"
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
        let unit = unit_file(&name, &uuid, FsType::Ext4, &mp);
        assert!(unit.contains("What=/dev/disk/by-uuid/ada110f6-bd6d-49db-955d-342c27627b61\n"));
        assert!(unit.contains("Where=/mnt/felhom/backup-1\n"));
        assert!(unit.contains("Options=nodev,nosuid,noexec,nofail\n"));
        assert!(unit.contains("WantedBy=multi-user.target\n"));
        assert_eq!(parse_unit_marker(&unit), Some((name, uuid, FsType::Ext4)));
        assert_eq!(parse_unit_marker("[Unit]\n"), None);
        assert_eq!(
            parse_unit_marker(&format!("{UNIT_MARKER} name=../x uuid=DEAD-BEEF type=ext4")),
            None
        );
    }

    #[test]
    fn device_paths_are_checked() {
        for ok in [
            "/dev/sdb1",
            "/dev/nvme0n1p2",
            "/dev/mapper/vg-lv",
            "/dev/loop7",
        ] {
            assert!(check_device_path(ok).is_ok(), "{ok}");
        }
        for bad in [
            "sdb1",
            "/dev/../etc/passwd",
            "/dev/a b",
            "/dev/a,b",
            "/etc/x",
            "",
            "/dev/\n",
        ] {
            assert!(check_device_path(bad).is_err(), "{bad:?}");
        }
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
        let text = unit_file(&name, &uuid, FsType::Ext4, &mp);
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

    /// Deterministic pseudo-random inputs (no extra crate): hostile strings and byte soup.
    fn hostile_inputs() -> Vec<String> {
        let mut v: Vec<String> = [
            "",
            "\\",
            "\\0",
            "\\777",
            "=",
            "==",
            "\n\n\n",
            " - ",
            "- - - - - -",
            "1 2 3 4 5 6 - ",
            "UUID=",
            "UUID= / ext4",
            "\u{0}\u{7f}",
            "é\\\\\\",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for len in 0..200 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    b" -=\\/\n#UID0123456789abcdefmnt:x"[(x % 30) as usize]
                })
                .collect();
            v.push(String::from_utf8_lossy(&bytes).into_owned());
        }
        v
    }

    #[test]
    fn no_tool_output_or_record_can_panic_the_parsers() {
        let root = Path::new("/mnt/felhom");
        for s in hostile_inputs() {
            let _ = parse_blkid_export(&s);
            let _ = parse_mountinfo(&s);
            let _ = parse_record_line(&s, root);
            let _ = parse_unit_marker(&s);
            let _ = parse_unit_marker(&format!("{UNIT_MARKER}{s}"));
            let _ = check_device_path(&s);
            let _ = systemd_escape_path(&s);
            let _ = unescape_octal(&s);
        }
    }
}
