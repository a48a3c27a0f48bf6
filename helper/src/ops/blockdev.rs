//! Proof that the device `usb_mount` is about to mount is a USB disk that nothing else uses.
//!
//! A filesystem UUID is just bytes a filesystem's owner wrote; on a hosting node a tenant
//! controls filesystems inside LVM volumes, zvols and loop images of its guests, and can give
//! one the UUID of the operator's backup disk. So the helper mounts a device only when sysfs
//! shows that it is the one thing the operation's name promises:
//!
//! - exactly one device carries the UUID (`blkid -t UUID=… -o device` lists them all);
//! - the device node is a block device, and its number leads, through `/sys/dev/block`, to a
//!   disk (or a partition of a disk) that is not virtual: no loop, device-mapper (LVM, LUKS),
//!   zvol (`zd`), md RAID, nbd, rbd, zram, ram, optical, drbd or bcache device;
//! - that disk sits on a USB bus (a `usbN` controller on its sysfs path) or is marked
//!   removable;
//! - neither the device nor its disk has holders (it is no LVM PV, RAID member, dm-crypt or
//!   bcache backing device), and a whole disk has no partitions;
//! - it is not mounted anywhere (by device number, or by source path in `mountinfo`).
//!
//! It also finds the disk's stable name in `/dev/disk/by-id` (udev's `usb-<vendor>_<model>_
//! <serial>-0:0[-partN]`), which the systemd backend's unit names instead of the UUID.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use felhom_protocol::{FsUuid, HelperError};

use super::mountinfo::MountEntry;
use crate::config::LoadedConfig;

/// Kernel name prefixes of virtual or layered block devices, with what they are.
const NOT_USB: &[(&str, &str)] = &[
    ("loop", "a loop device"),
    ("dm-", "a device-mapper volume (LVM, LUKS, multipath)"),
    ("zd", "a ZFS zvol"),
    ("md", "an md RAID array"),
    ("nbd", "a network block device"),
    ("rbd", "a Ceph RBD image"),
    ("zram", "a compressed RAM disk"),
    ("ram", "a RAM disk"),
    ("sr", "an optical drive"),
    ("drbd", "a DRBD device"),
    ("bcache", "a bcache device"),
];

/// Most entries read from one sysfs or `/dev/disk/by-id` directory.
const MAX_ENTRIES: usize = 4096;

/// A device that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proven {
    /// The device path blkid printed (e.g. `/dev/sdb1`).
    pub device: String,
    /// The kernel's name of the device (`sdb1`).
    pub kname: String,
    /// `major:minor`.
    pub devno: String,
    /// The kernel name of its disk (`sdb`).
    pub disk: String,
    /// Why it counts as a USB disk: `"usb"` (on a USB bus) or `"removable"`.
    pub via: &'static str,
    /// Its udev stable name under `dev_disk_by_id`, if there is one (a `usb-…` name first).
    pub stable_id: Option<PathBuf>,
}

fn refuse(reason: String) -> HelperError {
    HelperError::Rejected {
        field: "device".into(),
        reason,
    }
}

/// The device paths blkid printed for `blkid -t UUID=… -o device`, each checked.
pub fn parse_device_list(stdout: &str) -> Result<Vec<String>, HelperError> {
    let mut out: Vec<String> = Vec::new();
    for line in stdout.lines().map(str::trim).filter(|l| !l.is_empty()) {
        super::usb::check_device_path(line)?;
        if !out.iter().any(|d| d == line) {
            out.push(line.to_string());
        }
        if out.len() > 64 {
            break;
        }
    }
    Ok(out)
}

/// Refuses when more than one device carries the UUID, naming them all.
pub fn only_one<'a>(uuid: &FsUuid, devices: &'a [String]) -> Result<&'a str, HelperError> {
    match devices {
        [] => Err(HelperError::NotFound {
            what: format!("no filesystem with UUID {uuid} (is the disk plugged in?)"),
        }),
        [one] => Ok(one),
        many => Err(refuse(format!(
            "{} devices carry UUID {uuid}: {}; a UUID that is not unique cannot name a disk \
             (another copy may sit inside a guest's volume). Give the backup disk a new UUID \
             (e.g. tune2fs -U random, xfs_admin -U generate) and try again",
            many.len(),
            many.join(", ")
        ))),
    }
}

fn read_trim(path: &Path) -> Option<String> {
    use std::io::Read;
    let mut s = String::new();
    std::fs::File::open(path)
        .ok()?
        .take(4096)
        .read_to_string(&mut s)
        .ok()?;
    Some(s.trim().to_string())
}

/// The names in a sysfs directory (`holders/`), bounded.
fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .take(MAX_ENTRIES)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn kind_of(kname: &str) -> Option<&'static str> {
    NOT_USB
        .iter()
        .find(|(p, _)| kname.starts_with(p))
        .map(|(_, what)| *what)
}

/// Whether a sysfs device path runs through a USB host controller (`…/usb2/2-1/…`).
pub fn on_usb_bus(sysfs_path: &Path) -> bool {
    sysfs_path.components().any(|c| {
        let s = c.as_os_str().to_string_lossy();
        s.strip_prefix("usb")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    })
}

/// Whether `name` is safe to write into a unit's `What=` (no `%` specifier, no backslash,
/// no space): udev's by-id names use only these characters.
fn safe_id_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:+@=#".contains(&b))
}

/// The device's stable name under `by_id`: a link there that resolves to the same device
/// number, preferring `usb-…` names.
fn stable_id(by_id: &Path, devno: u64) -> Option<PathBuf> {
    let dir = std::fs::read_dir(by_id).ok()?;
    let mut found: Vec<String> = dir
        .flatten()
        .take(MAX_ENTRIES)
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            if !safe_id_name(&name) {
                return None;
            }
            let md = std::fs::metadata(e.path()).ok()?;
            (md.file_type().is_block_device() && md.rdev() == devno).then_some(name)
        })
        .collect();
    found.sort_by_key(|n| (!n.starts_with("usb-"), n.clone()));
    found.first().map(|n| by_id.join(n))
}

/// Checks everything the module documentation lists for `device`, with `table` the current
/// mount table.
pub fn prove(
    cfg: &LoadedConfig,
    device: &str,
    table: &[MountEntry],
) -> Result<Proven, HelperError> {
    let c = &cfg.config;
    let md = std::fs::metadata(device)
        .map_err(|e| refuse(format!("{device} cannot be examined: {e}")))?;
    if !md.file_type().is_block_device() {
        return Err(refuse(format!("{device} is not a block device")));
    }
    let rdev = md.rdev();
    let (major, minor) = (libc::major(rdev), libc::minor(rdev));
    let devno = format!("{major}:{minor}");
    let link = c.sysfs_dev_block.join(&devno);
    let sys = std::fs::canonicalize(&link).map_err(|e| {
        refuse(format!(
            "{device} ({devno}) has no entry {}: {e}",
            link.display()
        ))
    })?;
    let kname = sys
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let is_partition = sys.join("partition").exists();
    let disk_dir = if is_partition {
        sys.parent().map(Path::to_path_buf).unwrap_or_default()
    } else {
        sys.clone()
    };
    let disk = disk_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    for name in [&kname, &disk] {
        if let Some(what) = kind_of(name) {
            return Err(refuse(format!(
                "{device} is {what} ({name}), not a USB disk"
            )));
        }
    }
    if sys.components().any(|c| c.as_os_str() == "virtual") {
        return Err(refuse(format!(
            "{device} ({kname}) is a virtual block device, not a USB disk"
        )));
    }
    for (dir, name) in [(&sys, &kname), (&disk_dir, &disk)] {
        let holders = entries(&dir.join("holders"));
        if !holders.is_empty() {
            return Err(refuse(format!(
                "{device} ({name}) is in use by {} (an LVM, RAID, dm-crypt or bcache layer); \
                 it is not a plain USB disk",
                holders.join(", ")
            )));
        }
    }
    if !is_partition {
        let parts: Vec<String> = entries(&sys)
            .into_iter()
            .filter(|n| sys.join(n).join("partition").exists())
            .collect();
        if !parts.is_empty() {
            return Err(refuse(format!(
                "{device} is a whole disk with partitions ({}); mount the partition that \
                 holds the filesystem",
                parts.join(", ")
            )));
        }
    }
    let via = if on_usb_bus(&disk_dir) {
        "usb"
    } else if read_trim(&disk_dir.join("removable")).as_deref() == Some("1") {
        "removable"
    } else {
        return Err(refuse(format!(
            "{device} is on disk {disk}, which is neither on a USB bus nor removable ({}); \
             only USB disks are mounted",
            disk_dir.display()
        )));
    };
    let canonical_dev = std::fs::canonicalize(device).ok();
    if let Some(e) = table.iter().find(|e| {
        e.devno == devno
            || (e.source.starts_with('/')
                && std::fs::canonicalize(&e.source).ok() == canonical_dev
                && canonical_dev.is_some())
    }) {
        return Err(refuse(format!(
            "{device} is already mounted at {}; a disk in use elsewhere is not mounted again",
            e.mount_point
        )));
    }
    Ok(Proven {
        device: device.to_string(),
        kname,
        devno,
        disk,
        via,
        stable_id: stable_id(&c.dev_disk_by_id, rdev),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usb_bus_is_recognized_on_the_sysfs_path() {
        for yes in [
            "/sys/devices/pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0/host6/target6:0:0/6:0:0:0/block/sdb",
            "/x/usb10/10-2/block/sdc",
        ] {
            assert!(on_usb_bus(Path::new(yes)), "{yes}");
        }
        for no in [
            "/sys/devices/pci0000:00/0000:00:17.0/ata1/host0/target0:0:0/0:0:0:0/block/sda",
            "/sys/devices/virtual/block/loop0",
            "/sys/devices/x/usbfoo/block/sdz",
            "/sys/devices/x/usb/block/sdz",
        ] {
            assert!(!on_usb_bus(Path::new(no)), "{no}");
        }
    }

    #[test]
    fn device_lists_are_checked_and_a_shared_uuid_is_refused() {
        let uuid = FsUuid::new("ada110f6-bd6d-49db-955d-342c27627b61").unwrap();
        let list = parse_device_list("/dev/sdb1\n/dev/loop3\n\n/dev/sdb1\n").unwrap();
        assert_eq!(list, vec!["/dev/sdb1", "/dev/loop3"]);
        let e = only_one(&uuid, &list).unwrap_err().to_string();
        assert!(e.contains("2 devices carry UUID"), "{e}");
        assert!(
            e.contains("/dev/sdb1") && e.contains("/dev/loop3"),
            "names both: {e}"
        );
        assert_eq!(only_one(&uuid, &list[..1]).unwrap(), "/dev/sdb1");
        assert!(matches!(
            only_one(&uuid, &[]),
            Err(HelperError::NotFound { .. })
        ));
        assert!(parse_device_list("/dev/../etc/passwd\n").is_err());
    }

    #[test]
    fn by_id_names_that_could_inject_into_a_unit_are_not_used() {
        for ok in [
            "usb-SanDisk_Extreme_1234-0:0-part1",
            "ata-X_Y-part2",
            "wwn-0x5000c500a1b2c3d4",
        ] {
            assert!(safe_id_name(ok), "{ok}");
        }
        for bad in ["usb-a%nb", "usb-a b", "usb-a\\x20b", "", "usb-\n"] {
            assert!(!safe_id_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn virtual_kinds_are_named() {
        assert_eq!(kind_of("loop7"), Some("a loop device"));
        assert_eq!(kind_of("zd16p1"), Some("a ZFS zvol"));
        assert_eq!(kind_of("dm-3").map(|k| k.contains("LVM")), Some(true));
        assert_eq!(kind_of("sdb1"), None);
        assert_eq!(kind_of("nvme0n1p1"), None);
    }
}
