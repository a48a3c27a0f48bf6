//! The names the protocol's enums give to tools and to people: the filesystem types blkid
//! prints and mount(8) takes, and the sensor units.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use felhom_protocol::{FsType, SensorKind};

#[test]
fn filesystem_types_parse_from_and_print_as_blkid_names() {
    for (name, fs) in [
        ("ext4", FsType::Ext4),
        ("xfs", FsType::Xfs),
        ("btrfs", FsType::Btrfs),
        ("exfat", FsType::Exfat),
    ] {
        assert_eq!(FsType::from_blkid(name), Some(fs), "{name}");
        assert_eq!(fs.as_str(), name);
        assert_eq!(fs.to_string(), name);
    }
    for other in ["vfat", "ntfs", "EXT4", "ext4 ", "", "ext3", "swap"] {
        assert_eq!(FsType::from_blkid(other), None, "{other:?}");
    }
}

#[test]
fn sensor_kinds_name_their_si_unit() {
    for (kind, unit) in [
        (SensorKind::Temperature, "°C"),
        (SensorKind::Fan, "RPM"),
        (SensorKind::Voltage, "V"),
        (SensorKind::Power, "W"),
        (SensorKind::Current, "A"),
    ] {
        assert_eq!(kind.unit(), unit, "{kind:?}");
    }
}

#[test]
fn whole_disks_are_accepted_and_partitions_refused_by_name() {
    use felhom_protocol::DiskName;
    for disk in [
        "sda", "sdb", "vdb", "hdc", "xvda", "sdaa", "nvme0n1", "nvme10n1", "mmcblk0", "nvme0p",
    ] {
        assert!(DiskName::new(disk).is_ok(), "{disk} refused");
    }
    for part in [
        "sda1",
        "vdb2",
        "xvda3",
        "sdaa10",
        "nvme0n1p1",
        "mmcblk0p2",
        "nvme10n1p12",
    ] {
        let e = DiskName::new(part).unwrap_err().to_string();
        assert!(e.contains("partition"), "{part}: {e}");
    }
}

#[test]
fn control_and_non_ascii_characters_are_refused_by_the_common_check() {
    use felhom_protocol::{DiskName, TemplateVolid};
    for bad in ["sd\u{7}a", "sdé", "sd\u{1b}a"] {
        let e = DiskName::new(bad).unwrap_err().to_string();
        assert!(e.contains("disallowed character"), "{bad:?}: {e}");
    }
    for bad in [
        "local:vztmpl/debian\u{7}.tar.zst",
        "local:vztmpl/débian.tar.zst",
        "local:vztmpl/debian\n.tar.zst",
    ] {
        let e = TemplateVolid::new(bad).unwrap_err().to_string();
        assert!(e.contains("disallowed character"), "{bad:?}: {e}");
    }
}
