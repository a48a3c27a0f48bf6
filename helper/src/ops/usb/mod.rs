//! USB disks: mount by filesystem UUID, persistently; unmount; list.
//!
//! A mount reads top to bottom:
//!
//! 1. [`probe`]: the proof. Exactly one device carries the UUID; it is a plain USB disk or
//!    partition; nothing anywhere on the host uses it ([`hostuse`]: every mount namespace,
//!    every open file, an exclusive open). The result is a [`probe::Proven`] device with
//!    its device number and disk sequence number.
//! 2. [`transaction`]: the mount as steps (mount point, [`persist`] record, activation,
//!    verification), each noted before it runs, ending in `commit()` or in a `rollback()`
//!    that undoes exactly the noted steps.
//!
//! The helper computes the mount point (`<mount_root>/<name>`) and forces its own options
//! ([`persist::mount_options`]): `nodev,nosuid,noexec`, `nosymfollow` where the kernel has
//! it, a safe error behaviour whatever the superblock asks for, and `nofail`. What the helper
//! manages is what it recorded ([`persist`]); whether something is mounted is read from
//! `mountinfo` ([`mountinfo`]).

pub mod hostuse;
pub mod mountinfo;
pub mod persist;
pub mod probe;
pub mod transaction;

use felhom_protocol::{HelperError, MountInfo, MountName, UnmountReply, UsbMountRequest};

use self::mountinfo::{MountEntry, mounted_at, mounts, parse_devno};
use self::persist::{Persistence, managed, mount_point};
use self::transaction::{MountTransaction, info};
use super::{OpEnv, io_error};
use crate::audit::{Fact, Notes};
use crate::config::{LoadedConfig, Tool};

pub use self::probe::{check_device_path, parse_blkid_export};
pub use self::transaction::CLEANUP_TIME;

/// `usb_list`.
pub fn list(cfg: &LoadedConfig) -> Result<Vec<MountInfo>, HelperError> {
    let table = mounts(cfg)?;
    let p = Persistence::of(cfg);
    Ok(managed(cfg)?.iter().map(|m| info(&p, m, &table)).collect())
}

/// What a mount request finds already there.
enum Existing {
    /// Nothing of that name: mount.
    Nothing,
    /// The same name and UUID, mounted: nothing to do.
    Mounted(MountInfo),
}

/// Refuses a request whose UUID or name is managed otherwise; finds the no-op.
async fn existing(env: &OpEnv<'_>, req: &UsbMountRequest) -> Result<Existing, HelperError> {
    let all = env.blocking(managed).await?;
    if let Some(m) = all
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
    let Some(m) = all.iter().find(|m| m.name == req.name) else {
        return Ok(Existing::Nothing);
    };
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
        return Ok(Existing::Mounted(info(
            &Persistence::of(env.cfg),
            m,
            &table,
        )));
    }
    Ok(Existing::Nothing)
}

/// Notes the device of a mount on the operation's audit record.
fn note_device(
    notes: &Notes,
    device: &str,
    devno: &str,
    diskseq: Option<u64>,
    by_id: Option<&std::path::Path>,
) {
    notes.note(Fact::Device, device);
    notes.note(Fact::Devno, devno);
    if let Some(seq) = diskseq {
        notes.note(Fact::Diskseq, seq);
    }
    if let Some(id) = by_id {
        notes.note(Fact::ById, id.display());
    }
}

/// Notes the device mounted in `e` (an unmount's record): its source, number, disk sequence
/// number and `usb-…` name, as far as the host still shows them.
fn note_mounted(cfg: &LoadedConfig, notes: &Notes, e: &MountEntry) {
    let rdev = parse_devno(&e.devno);
    let seq = hostuse::diskseq_of(std::path::Path::new(&e.source))
        .filter(|(r, _)| Some(*r) == rdev)
        .and_then(|(_, s)| s);
    let by_id = rdev.and_then(|r| probe::usb_by_id(&cfg.config.dev_disk_by_id, r));
    note_device(notes, &e.source, &e.devno, seq, by_id.as_deref());
}

/// `usb_mount`: the proof, then the transaction. The proven device's facts go on the audit
/// record (`notes`) as soon as they are known, so a refusal after the proof names it too.
pub async fn mount(
    env: OpEnv<'_>,
    req: &UsbMountRequest,
    notes: &Notes,
) -> Result<MountInfo, HelperError> {
    if let Existing::Mounted(info) = existing(&env, req).await? {
        return Ok(info);
    }
    let proven = probe::prove(&env, &req.uuid).await?;
    note_device(
        notes,
        &proven.device,
        &proven.devno,
        proven.diskseq,
        proven.stable_id.as_deref(),
    );
    let persistence = Persistence::of(env.cfg);
    let record = persistence.managed(
        &req.name,
        &req.uuid,
        proven.fstype,
        mount_point(env.cfg, &req.name),
    );
    let mut tx = MountTransaction::begin(&env, persistence, record, proven);
    let steps = async {
        tx.mount_point().await?;
        tx.record().await?;
        tx.activate().await?;
        tx.verify().await
    }
    .await;
    match steps {
        Ok(table) => Ok(tx.commit(&table)),
        Err(cause) => Err(tx.rollback(cause).await),
    }
}

/// `usb_unmount`: the mount is taken down (`umount`, or `disable --now` of the unit), then
/// its record removed.
pub async fn unmount(
    env: OpEnv<'_>,
    name: &MountName,
    notes: &Notes,
) -> Result<UnmountReply, HelperError> {
    let cfg = env.cfg;
    let m = env
        .blocking(managed)
        .await?
        .into_iter()
        .find(|m| &m.name == name)
        .ok_or_else(|| HelperError::NotFound {
            what: format!("no managed mount named {:?}", name.as_str()),
        })?;
    let table = env.blocking(mounts).await?;
    let was_mounted = match mounted_at(&table, &m.mount_point) {
        Some(e) => {
            note_mounted(cfg, notes, e);
            true
        }
        None => false,
    };
    let persistence = Persistence::of(cfg);
    match &persistence {
        Persistence::RecordFile { .. } => {
            if was_mounted {
                env.exec_ok(
                    Tool::Umount,
                    &[m.mount_point.to_string_lossy().into_owned()],
                )
                .await?;
            }
            persistence.forget(cfg, &m)?;
        }
        Persistence::Units { dir } => {
            let unit = m.unit.clone().unwrap_or_default();
            env.exec_ok(
                Tool::Systemctl,
                &["disable".into(), "--now".into(), unit.clone()],
            )
            .await?;
            let path = dir.join(&unit);
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
    use crate::ops::usb::mountinfo::{parse_mountinfo, unescape_octal};
    use crate::ops::usb::persist::{
        UNIT_MARKER, parse_record_line, parse_unit_marker, systemd_escape_path,
    };
    use std::path::Path;

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
