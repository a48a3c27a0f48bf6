//! USB disks: mount by filesystem UUID, persistently; unmount; list.
//!
//! `usb_mount` mounts a filesystem only when it has proven that the operation is what its
//! name says ([`blockdev`]): exactly one device carries the UUID, and that device is a plain
//! USB disk or partition (not a loop, LVM, zvol, RAID or other layered device), with no
//! holders and not mounted anywhere. The device is re-probed (`blkid -p`) and its TYPE and
//! UUID must match. The helper computes the mount point (`<mount_root>/<name>`) and forces
//! `nodev,nosuid,noexec,nofail`, plus `nosymfollow` on kernels that have it.
//!
//! Persistence, by backend:
//! - `systemd`: a `.mount` unit named by systemd path escaping of the mount point, whose
//!   `What=` is the disk's stable USB name (`/dev/disk/by-id/usb-…-partN`), never the UUID: at
//!   boot PID 1 mounts that physical disk and nothing that merely copied its UUID. The unit is
//!   created exclusively (a file of that name that the helper did not write is refused),
//!   then `systemctl daemon-reload` and `systemctl enable --now`, so PID 1 owns the mount.
//! - `direct`: `mount -t <type> -o <options> <device> <mount point>` of the proven device, and
//!   an fstab-format line `UUID=<uuid> <mount point> <type> <options> 0 2` in `record_file`.
//!
//! After a mount the table is read again: the filesystem at the mount point must be the
//! proven device. A mount that fails or runs out of time is rolled back on a fresh, short
//! deadline ([`CLEANUP_TIME`]); then the mount table is read again and what is there is either
//! unmounted or recorded, so the helper's records, the kernel and the audit record agree.
//!
//! What the helper manages is what it recorded: units carrying the marker, or lines of the
//! record file ([`super::usb_records`]). Whether something is mounted is read from
//! `mountinfo` ([`super::mountinfo`]).

use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::time::Duration;

use felhom_protocol::{
    FsType, FsUuid, HelperError, MountBackend, MountInfo, MountName, UnmountReply, UsbMountRequest,
};

use super::blockdev::{self, Proven};
use super::mountinfo::{MountEntry, mounted_at, mounts};
use super::usb_records::{
    Managed, managed, mount_options, mount_point, record_line, rewrite_records, unit_file,
    unit_name, write_unit,
};
use super::{OpEnv, io_error, tool_failed};
use crate::config::{BackendChoice, LoadedConfig, Tool};

/// The fresh time a rollback and the reconciliation after it get, whatever was left of the
/// operation's own deadline.
pub const CLEANUP_TIME: Duration = Duration::from_secs(15);

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

fn info(cfg: &LoadedConfig, m: &Managed, table: &[MountEntry]) -> MountInfo {
    MountInfo {
        name: m.name.clone(),
        uuid: m.uuid.clone(),
        fstype: m.fstype,
        mount_point: m.mount_point.display().to_string(),
        options: mount_options().to_string(),
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

/// Finds the one device that carries `uuid`, re-probes it (TYPE and UUID must match) and
/// proves it is a USB disk that nothing else uses ([`blockdev::prove`]).
async fn resolve(env: &OpEnv<'_>, uuid: &FsUuid) -> Result<(Proven, FsType), HelperError> {
    // Every device with the UUID, not just the first one blkid finds (`-U` picks one).
    let args = [
        "-c",
        "/dev/null",
        "-t",
        &format!("UUID={uuid}"),
        "-o",
        "device",
    ]
    .map(String::from);
    let out = env.exec(Tool::Blkid, &args).await?;
    let devices = match out.exit_code {
        Some(0) => blockdev::parse_device_list(&String::from_utf8_lossy(&out.stdout))?,
        Some(2) => Vec::new(),
        _ => return Err(tool_failed(Tool::Blkid, &out)),
    };
    let dev = blockdev::only_one(uuid, &devices)?.to_string();
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
    let fstype = match FsType::from_blkid(ty) {
        Some(fs) if allowed.contains(&fs) => fs,
        _ => {
            return Err(HelperError::Rejected {
                field: "filesystem type".into(),
                reason: format!(
                    "UUID {uuid} is a {} filesystem; this helper mounts only {}",
                    if ty.is_empty() { "unknown" } else { ty },
                    names.join(", ")
                ),
            });
        }
    };
    let proven = env
        .blocking(move |cfg| {
            let table = mounts(cfg)?;
            blockdev::prove(cfg, &dev, &table)
        })
        .await?;
    Ok((proven, fstype))
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

/// Whether the filesystem mounted at `mp` is the proven device.
fn is_proven_mount(e: &MountEntry, proven: &Proven) -> bool {
    e.devno == proven.devno
        || std::fs::canonicalize(&e.source).ok() == std::fs::canonicalize(&proven.device).ok()
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
    let (proven, fstype) = resolve(&env, &req.uuid).await?;
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
                mount_options(),
                proven.device.as_str(),
                &mp.to_string_lossy(),
            ]
            .map(String::from);
            if let Err(e) = env.exec_ok(Tool::Mount, &args).await {
                return Err(reconcile(&env, &record, &proven, e).await);
            }
            if let Err(e) =
                rewrite_records(cfg, &req.name, Some(record_line(&req.uuid, &mp, fstype)))
            {
                return Err(reconcile(&env, &record, &proven, e).await);
            }
            record
        }
        BackendChoice::Systemd => {
            let Some(what) = proven.stable_id.clone() else {
                return Err(HelperError::Rejected {
                    field: "device".into(),
                    reason: format!(
                        "{} has no stable name in {} (udev has not named it), so no mount \
                         unit can name this disk; is udev running?",
                        proven.device,
                        c.dev_disk_by_id.display()
                    ),
                });
            };
            let unit = unit_name(&mp);
            let path = c.unit_dir.join(&unit);
            let text = unit_file(&req.name, &req.uuid, fstype, &mp, &what);
            env.blocking({
                let (path, name) = (path.clone(), req.name.clone());
                move |_| write_unit(&path, &name, &text)
            })
            .await?;
            let record = Managed {
                unit: Some(unit.clone()),
                ..record
            };
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
                return Err(reconcile(&env, &record, &proven, e).await);
            }
            record
        }
    };
    let table = env.blocking(mounts).await?;
    match mounted_at(&table, &mp) {
        Some(e) if !is_proven_mount(e, &proven) => {
            let e = HelperError::Busy {
                what: format!(
                    "{} appeared at {} instead of the proven {}; it is taken down again",
                    e.source,
                    mp.display(),
                    proven.device
                ),
            };
            Err(reconcile(&env, &record, &proven, e).await)
        }
        _ => Ok(info(cfg, &record, &table)),
    }
}

/// Rolls back a mount that failed (or ran out of time, or mounted the wrong thing) on a fresh
/// deadline: the unit is disabled and removed, or the record line dropped; then the mount
/// table is read again, and a mount that is still there is unmounted or, if that fails,
/// recorded, so that `usb_list` and `usb_unmount` can see it. Returns `cause`, extended with
/// what the cleanup found.
async fn reconcile(
    env: &OpEnv<'_>,
    record: &Managed,
    proven: &Proven,
    cause: HelperError,
) -> HelperError {
    let fresh = env.for_cleanup(tokio::time::Instant::now() + CLEANUP_TIME);
    let cfg = fresh.cfg;
    let c = &cfg.config;
    let mp = record.mount_point.to_string_lossy().into_owned();
    if let Some(unit) = &record.unit {
        let _ = fresh
            .exec(
                Tool::Systemctl,
                &["disable".into(), "--now".into(), unit.clone()],
            )
            .await;
        let path = c.unit_dir.join(unit);
        let _ = std::fs::remove_file(&path);
        let _ = fresh
            .exec(Tool::Systemctl, &["daemon-reload".to_string()])
            .await;
    } else {
        let _ = rewrite_records(cfg, &record.name, None);
    }
    let still = |table: &[MountEntry]| mounted_at(table, &record.mount_point).is_some();
    let table = match fresh.blocking(mounts).await {
        Ok(t) => t,
        Err(e) => {
            return extend(
                cause,
                &format!(
                    "the mount table could not be read after the rollback ({e}); check {mp} by hand"
                ),
            );
        }
    };
    if !still(&table) {
        let _ = std::fs::remove_dir(&record.mount_point);
        return extend(cause, "rolled back: nothing is mounted there");
    }
    if fresh.cfg.has_tool(Tool::Umount) {
        let _ = fresh.exec(Tool::Umount, std::slice::from_ref(&mp)).await;
    }
    let table = fresh.blocking(mounts).await.unwrap_or(table);
    if !still(&table) {
        let _ = std::fs::remove_dir(&record.mount_point);
        return extend(
            cause,
            "rolled back: the mount that appeared was unmounted again",
        );
    }
    // It cannot be taken down: record it, so that the records show what the kernel has.
    let is_ours =
        mounted_at(&table, &record.mount_point).is_some_and(|e| is_proven_mount(e, proven));
    let kept = match &record.unit {
        Some(unit) => {
            let path = c.unit_dir.join(unit);
            let what = proven
                .stable_id
                .clone()
                .unwrap_or_else(|| proven.device.clone().into());
            let text = unit_file(
                &record.name,
                &record.uuid,
                record.fstype,
                &record.mount_point,
                &what,
            );
            write_unit(&path, &record.name, &text).is_ok()
        }
        None => rewrite_records(
            cfg,
            &record.name,
            Some(record_line(
                &record.uuid,
                &record.mount_point,
                record.fstype,
            )),
        )
        .is_ok(),
    };
    let state = match (kept, is_ours) {
        (true, true) => format!(
            "the disk is mounted at {mp} after all and could not be unmounted; it is recorded \
             as {:?}: remove it with usb unmount",
            record.name.as_str()
        ),
        (true, false) => format!(
            "something else is mounted at {mp} and could not be unmounted; it is recorded as \
             {:?}: inspect it, then remove it with usb unmount",
            record.name.as_str()
        ),
        (false, _) => {
            format!("{mp} is still mounted and could not be recorded; unmount it by hand")
        }
    };
    extend(cause, &state)
}

/// `e` with `note` appended to its text.
fn extend(e: HelperError, note: &str) -> HelperError {
    match e {
        HelperError::ToolFailed {
            tool,
            exit_code,
            stderr_tail,
        } => HelperError::ToolFailed {
            tool,
            exit_code,
            stderr_tail: format!("{stderr_tail} ({note})"),
        },
        HelperError::TimedOut {
            operation,
            after_secs,
        } => HelperError::Internal {
            message: format!("{operation} timed out after {after_secs} s; {note}"),
        },
        HelperError::Busy { what } => HelperError::Busy {
            what: format!("{what}; {note}"),
        },
        HelperError::Internal { message } => HelperError::Internal {
            message: format!("{message}; {note}"),
        },
        HelperError::Unavailable { what } => HelperError::Unavailable {
            what: format!("{what}; {note}"),
        },
        HelperError::NotFound { what } => HelperError::NotFound {
            what: format!("{what}; {note}"),
        },
        HelperError::Rejected { field, reason } => HelperError::Rejected {
            field,
            reason: format!("{reason}; {note}"),
        },
        other @ HelperError::VersionMismatch { .. } => other,
    }
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
    use crate::ops::mountinfo::{parse_mountinfo, unescape_octal};
    use crate::ops::usb_records::{
        UNIT_MARKER, parse_record_line, parse_unit_marker, systemd_escape_path,
    };

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
