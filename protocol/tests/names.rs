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
