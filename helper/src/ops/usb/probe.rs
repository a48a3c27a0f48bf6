//! The proof: which device carries the UUID, that it is a USB disk, and that nothing anywhere
//! on the host uses it. What comes out is a [`Proven`] device: its path, device number and
//! disk sequence number, which the mount is later checked against.
//!
//! A filesystem UUID is just bytes a filesystem's owner wrote; on a hosting node a tenant
//! controls filesystems inside LVM volumes, zvols and loop images of its guests, and can give
//! one the UUID of the operator's backup disk. So the helper mounts a device only when it has
//! shown, in this order:
//!
//! 1. exactly one device carries the UUID (`blkid -t UUID=… -o device` lists them all), and
//!    a fresh probe of it (`blkid -p`) reports that UUID and an allowed type;
//! 2. the node is a block device whose number leads, through `/sys/dev/block`, to a disk (or
//!    a partition of a disk) that is not virtual: no loop, device-mapper (LVM, LUKS), zvol
//!    (`zd`), md RAID, nbd, rbd, zram, ram, optical, drbd or bcache device;
//! 3. that disk sits below a USB controller in sysfs (a `usbN` root hub on its path, or an
//!    ancestor whose subsystem is `usb`). The `removable` flag alone is not enough: an iSCSI
//!    LUN or a floppy can carry it;
//! 4. neither the device nor its disk has holders (it is no LVM PV, RAID member, dm-crypt or
//!    bcache backing device), and a whole disk has no partitions;
//! 5. its stable name is a `usb-…` name in `/dev/disk/by-id` (never `ata-`, `scsi-` or
//!    `wwn-`), and no other disk's `usb-…` name carries the same serial: a second device
//!    presenting the serial of the backup disk is a copy, and the unit's `What=` could name
//!    either at the next boot;
//! 6. nothing on the whole host uses the device, its disk or any partition of that disk
//!    ([`super::hostuse`]): not mounted in any mount namespace, not open in any process, not
//!    claimed exclusively;
//! 7. its disk sequence number is read, so that a different medium appearing under the same
//!    device number before the mount is noticed afterwards.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use felhom_protocol::{FsType, FsUuid, HelperError};

use super::hostuse::{self, Target};
use super::mountinfo::{mounts, parse_devno};
use crate::config::{LoadedConfig, Tool};
use crate::ops::{OpEnv, tool_failed};

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
    /// The device number as `st_rdev`.
    pub rdev: u64,
    /// The disk sequence number at proof time (`None` on kernels without one, or in
    /// development mode, where the helper cannot open block devices).
    pub diskseq: Option<u64>,
    /// The kernel name of its disk (`sdb`).
    pub disk: String,
    /// Its udev stable name under `dev_disk_by_id` (a `usb-…` name), if there is one.
    pub stable_id: Option<PathBuf>,
    /// The filesystem type the probe reported.
    pub fstype: FsType,
    /// What the host scan looked at.
    pub scan: hostuse::ScanStats,
}

fn refuse(reason: String) -> HelperError {
    HelperError::Rejected {
        field: "device".into(),
        reason,
    }
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

/// The device paths blkid printed for `blkid -t UUID=… -o device`, each checked.
pub fn parse_device_list(stdout: &str) -> Result<Vec<String>, HelperError> {
    let mut out: Vec<String> = Vec::new();
    for line in stdout.lines().map(str::trim).filter(|l| !l.is_empty()) {
        check_device_path(line)?;
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

/// Probes `node` afresh (`blkid -p`, no cache) and returns its `UUID` and `TYPE`.
pub async fn probe_filesystem(
    env: &OpEnv<'_>,
    node: &str,
) -> Result<(String, String), HelperError> {
    let args = ["-c", "/dev/null", "-p", "-o", "export", node].map(String::from);
    let probe = env.exec_ok(Tool::Blkid, &args).await?;
    let records = parse_blkid_export(&String::from_utf8_lossy(&probe.stdout));
    let rec = records.first().ok_or_else(|| HelperError::NotFound {
        what: format!("{node} holds no recognizable filesystem"),
    })?;
    let get = |k: &str| {
        rec.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    Ok((get("UUID"), get("TYPE")))
}

/// Steps 1–7 of the module documentation for `uuid`.
pub async fn prove(env: &OpEnv<'_>, uuid: &FsUuid) -> Result<Proven, HelperError> {
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
        Some(0) => parse_device_list(&String::from_utf8_lossy(&out.stdout))?,
        Some(2) => Vec::new(),
        _ => return Err(tool_failed(Tool::Blkid, &out)),
    };
    let dev = only_one(uuid, &devices)?.to_string();
    let (probed_uuid, ty) = probe_filesystem(env, &dev).await?;
    if !probed_uuid.eq_ignore_ascii_case(uuid.as_str()) {
        return Err(HelperError::Busy {
            what: format!(
                "{dev} was found for UUID {uuid} but now reports UUID {probed_uuid:?}; \
                 the disk changed, try again"
            ),
        });
    }
    let allowed = &env.cfg.allowed_filesystems;
    let fstype = match FsType::from_blkid(&ty) {
        Some(fs) if allowed.contains(&fs) => fs,
        _ => {
            let names: Vec<&str> = allowed.iter().map(|f| f.as_str()).collect();
            return Err(HelperError::Rejected {
                field: "filesystem type".into(),
                reason: format!(
                    "UUID {uuid} is a {} filesystem; this helper mounts only {}",
                    if ty.is_empty() { "unknown" } else { &ty },
                    names.join(", ")
                ),
            });
        }
    };
    env.blocking(move |cfg| prove_device(cfg, &dev, fstype))
        .await
}

/// The sysfs facts of a device.
struct Sysfs {
    kname: String,
    is_partition: bool,
    /// The disk's sysfs directory (the device's own for a whole disk).
    disk_dir: PathBuf,
    disk: String,
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

/// Whether some ancestor of a sysfs device directory belongs to the `usb` subsystem.
fn has_usb_ancestor(sysfs_path: &Path) -> bool {
    sysfs_path.ancestors().skip(1).take(64).any(|a| {
        std::fs::read_link(a.join("subsystem"))
            .ok()
            .is_some_and(|l| l.file_name().is_some_and(|n| n == "usb"))
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

/// The whole-disk part of a `usb-…` by-id name (`usb-Vendor_Model_SERIAL-0:0` of
/// `usb-Vendor_Model_SERIAL-0:0-part1`).
fn disk_id(name: &str) -> &str {
    match name.rsplit_once("-part") {
        Some((disk, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => disk,
        _ => name,
    }
}

/// The serial of a `usb-…` by-id name: udev writes `usb-<vendor>_<model>_<serial>-<i>:<lun>`,
/// so the serial is the last `_` field before the instance suffix.
pub fn usb_serial(name: &str) -> Option<&str> {
    let id = disk_id(name).strip_prefix("usb-")?;
    let id = match id.rsplit_once('-') {
        Some((head, tail)) if tail.contains(':') => head,
        _ => id,
    };
    let serial = id.rsplit('_').next()?;
    (!serial.is_empty()).then_some(serial)
}

/// The `usb-…` name under `by_id` of the block device numbered `rdev`, if there is one.
pub fn usb_by_id(by_id: &Path, rdev: u64) -> Option<PathBuf> {
    let mut names: Vec<String> = std::fs::read_dir(by_id)
        .ok()?
        .flatten()
        .take(MAX_ENTRIES)
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            let md = std::fs::metadata(e.path()).ok()?;
            (name.starts_with("usb-")
                && safe_id_name(&name)
                && md.file_type().is_block_device()
                && md.rdev() == rdev)
                .then_some(name)
        })
        .collect();
    names.sort();
    names.first().map(|n| by_id.join(n))
}

/// The device's stable `usb-…` name under `by_id` (a link that resolves to the same device
/// number); refuses when another disk's `usb-…` name carries the same serial.
fn stable_id(device: &str, by_id: &Path, rdev: u64) -> Result<Option<PathBuf>, HelperError> {
    let Ok(dir) = std::fs::read_dir(by_id) else {
        return Ok(None);
    };
    let links: Vec<(String, Option<u64>)> = dir
        .flatten()
        .take(MAX_ENTRIES)
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            if !name.starts_with("usb-") || !safe_id_name(&name) {
                return None;
            }
            let md = std::fs::metadata(e.path()).ok();
            let rdev = md
                .filter(|m| m.file_type().is_block_device())
                .map(|m| m.rdev());
            Some((name, rdev))
        })
        .collect();
    let mut mine: Vec<&str> = links
        .iter()
        .filter(|(_, r)| *r == Some(rdev))
        .map(|(n, _)| n.as_str())
        .collect();
    mine.sort();
    let Some(name) = mine.first().copied() else {
        return Ok(None);
    };
    if let Some(serial) = usb_serial(name) {
        let mut others: Vec<&str> = links
            .iter()
            .map(|(n, _)| n.as_str())
            .filter(|n| disk_id(n) != disk_id(name) && usb_serial(n) == Some(serial))
            .collect();
        others.sort();
        others.dedup();
        if !others.is_empty() {
            return Err(refuse(format!(
                "{device} is {name}, but {} carries the same USB serial {serial:?}; two disks \
                 with one serial cannot be told apart at the next boot (one may be a copy made \
                 to pass for the backup disk). Unplug the other disk and try again",
                others.join(", ")
            )));
        }
    }
    Ok(Some(by_id.join(name)))
}

/// Steps 2–4: what sysfs says about the device with number `rdev`.
fn check_sysfs(cfg: &LoadedConfig, device: &str, rdev: u64) -> Result<Sysfs, HelperError> {
    let devno = format!("{}:{}", libc::major(rdev), libc::minor(rdev));
    let link = cfg.config.sysfs_dev_block.join(&devno);
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
        let parts = partitions(&sys);
        if !parts.is_empty() {
            let names: Vec<&str> = parts.iter().map(|(n, _)| n.as_str()).collect();
            return Err(refuse(format!(
                "{device} is a whole disk with partitions ({}); mount the partition that \
                 holds the filesystem",
                names.join(", ")
            )));
        }
    }
    if !(on_usb_bus(&disk_dir) || has_usb_ancestor(&disk_dir)) {
        let removable = read_trim(&disk_dir.join("removable")).as_deref() == Some("1");
        return Err(refuse(format!(
            "{device} is on disk {disk}, which is not on a USB bus ({}){}; only USB disks are \
             mounted",
            disk_dir.display(),
            if removable {
                " although it is marked removable (an iSCSI LUN, a floppy or a card reader \
                 can be; that flag alone does not make a USB disk)"
            } else {
                ""
            }
        )));
    }
    Ok(Sysfs {
        kname,
        is_partition,
        disk_dir,
        disk,
    })
}

/// The partitions of a disk's sysfs directory, with their device numbers where sysfs gives
/// them (`<part>/dev`).
fn partitions(disk_dir: &Path) -> Vec<(String, Option<u64>)> {
    entries(disk_dir)
        .into_iter()
        .filter(|n| disk_dir.join(n).join("partition").exists())
        .map(|n| {
            let devno = read_trim(&disk_dir.join(&n).join("dev")).and_then(|d| parse_devno(&d));
            (n, devno)
        })
        .collect()
}

/// A node in `/dev` for a device, verified to be that device: `/dev/block/<major>:<minor>`
/// (udev's) or `/dev/<kname>`.
pub fn node_for(rdev: u64, kname: &str) -> Option<PathBuf> {
    let by_devno = PathBuf::from(format!(
        "/dev/block/{}:{}",
        libc::major(rdev),
        libc::minor(rdev)
    ));
    [by_devno, Path::new("/dev").join(kname)]
        .into_iter()
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.file_type().is_block_device() && m.rdev() == rdev)
        })
}

/// Steps 2–7 for the one device that carries the UUID.
fn prove_device(cfg: &LoadedConfig, device: &str, fstype: FsType) -> Result<Proven, HelperError> {
    let c = &cfg.config;
    let md = std::fs::metadata(device)
        .map_err(|e| refuse(format!("{device} cannot be examined: {e}")))?;
    if !md.file_type().is_block_device() {
        return Err(refuse(format!("{device} is not a block device")));
    }
    let rdev = md.rdev();
    let devno = format!("{}:{}", libc::major(rdev), libc::minor(rdev));
    let sys = check_sysfs(cfg, device, rdev)?;
    let stable_id = stable_id(device, &c.dev_disk_by_id, rdev)?;
    // Step 6: the device, its disk and every partition of that disk.
    let mut targets = vec![Target {
        rdev,
        kname: sys.kname.clone(),
        node: Some(PathBuf::from(device)),
    }];
    if sys.is_partition {
        let disk_rdev = read_trim(&sys.disk_dir.join("dev")).and_then(|d| parse_devno(&d));
        if let Some(r) = disk_rdev {
            targets.push(Target {
                rdev: r,
                kname: sys.disk.clone(),
                node: node_for(r, &sys.disk),
            });
        }
        for (name, part) in partitions(&sys.disk_dir) {
            match part {
                Some(r) if r != rdev => targets.push(Target {
                    rdev: r,
                    kname: name.clone(),
                    node: node_for(r, &name),
                }),
                _ => {}
            }
        }
    }
    hostuse::refuse_if_mounted_here(device, &mounts(cfg)?, &targets)?;
    let scan = hostuse::refuse_if_used_by_any_process_for_long(&c.proc_root, device, &targets)?;
    hostuse::refuse_if_locked(&c.proc_root, device, &targets)?;
    hostuse::refuse_if_claimed(device, &targets)?;
    tracing::info!(
        device,
        processes = scan.processes,
        namespaces = scan.namespaces,
        fds = scan.fds,
        unreadable = scan.unreadable,
        "host scan: the disk is not in use (the descriptors of the unreadable processes, \
         which the helper may not trace, were not seen; their locks and mounts were)"
    );
    // Step 7.
    let diskseq = hostuse::diskseq_of(Path::new(device))
        .filter(|(r, _)| *r == rdev)
        .and_then(|(_, seq)| seq);
    Ok(Proven {
        device: device.to_string(),
        kname: sys.kname,
        devno,
        rdev,
        diskseq,
        disk: sys.disk,
        stable_id,
        fstype,
        scan,
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
    fn usb_serials_come_from_the_by_id_name() {
        for (name, serial) in [
            ("usb-SanDisk_Extreme_AA010-0:0-part1", Some("AA010")),
            ("usb-SanDisk_Extreme_AA010-0:0", Some("AA010")),
            (
                "usb-Generic_Card_Reader_000000000819-0:1",
                Some("000000000819"),
            ),
            ("usb-Plain-0:0", Some("Plain")),
            ("ata-Samsung_SSD_S3Z-part1", None),
            ("usb-", None),
        ] {
            assert_eq!(usb_serial(name), serial, "{name}");
        }
        assert_eq!(disk_id("usb-A_B_C-0:0-part12"), "usb-A_B_C-0:0");
        assert_eq!(disk_id("usb-A_B_C-0:0-partX"), "usb-A_B_C-0:0-partX");
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
