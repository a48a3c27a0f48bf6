//! Hardware: the disks in `/sys/block`, SMART through smartctl, and hwmon sensors.
//!
//! SMART data is returned raw (smartctl's JSON and exit-status bits, bounded); the agent
//! parses it. Sensors are read from hwmon sysfs directly, without a subprocess.

use std::io::Read;
use std::path::Path;

use felhom_protocol::{DiskInfo, DiskName, HelperError, SensorKind, SensorReading, SmartReport};

use super::{OpEnv, tool_failed};
use crate::config::{LoadedConfig, Tool};

/// Kernel name prefixes of block devices that have no SMART data.
const VIRTUAL_PREFIXES: &[&str] = &[
    "loop", "ram", "zram", "dm-", "md", "sr", "nbd", "fd", "zd", "rbd", "drbd", "bcache",
];

/// Bounds on what the helper reads from sysfs.
const MAX_DISKS: usize = 512;
const MAX_HWMON_DEVICES: usize = 128;
const MAX_HWMON_FILES: usize = 1024;
const MAX_READINGS: usize = 2048;
const MAX_SYSFS_FILE: u64 = 4096;
const MAX_LABEL: usize = 64;

fn read_small(path: &Path) -> Option<String> {
    let mut s = String::new();
    std::fs::File::open(path)
        .ok()?
        .take(MAX_SYSFS_FILE)
        .read_to_string(&mut s)
        .ok()?;
    Some(s.trim().to_string())
}

fn is_virtual(name: &str) -> bool {
    VIRTUAL_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// `smart_scan`: the physical disks in `sysfs_block`.
pub fn scan(cfg: &LoadedConfig) -> Result<Vec<DiskInfo>, HelperError> {
    let root = &cfg.config.sysfs_block;
    let dir = std::fs::read_dir(root).map_err(|e| HelperError::Unavailable {
        what: format!("{}: {e}", root.display()),
    })?;
    let mut disks = Vec::new();
    for entry in dir.flatten().take(MAX_DISKS) {
        let raw = entry.file_name();
        let Some(name) = raw.to_str() else { continue };
        if is_virtual(name) {
            continue;
        }
        let Ok(disk) = DiskName::new(name) else {
            continue;
        };
        let base = entry.path();
        let sectors: u64 = read_small(&base.join("size"))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let model = read_small(&base.join("device/model"))
            .map(|m| felhom_protocol::text::label(&m, MAX_LABEL))
            .filter(|m| !m.is_empty());
        let removable = read_small(&base.join("removable")).as_deref() == Some("1");
        let rotational = match read_small(&base.join("queue/rotational")).as_deref() {
            Some("1") => Some(true),
            Some("0") => Some(false),
            _ => None,
        };
        disks.push(DiskInfo {
            name: disk,
            size_bytes: sectors.saturating_mul(512),
            model,
            removable,
            rotational,
        });
    }
    disks.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(disks)
}

/// Whether smartctl's JSON says the device type must be given (`-d`).
pub fn needs_device_type(json: &str) -> bool {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(json) else {
        return false;
    };
    let Some(messages) = v
        .get("smartctl")
        .and_then(|s| s.get("messages"))
        .and_then(|m| m.as_array())
    else {
        return false;
    };
    messages.iter().any(|m| {
        m.get("string").and_then(|s| s.as_str()).is_some_and(|s| {
            s.contains("Unknown USB bridge") || s.contains("Unable to detect device type")
        })
    })
}

/// The smartctl argv for a disk, optionally with a device type.
pub fn smartctl_argv(disk: &DiskName, device_type: Option<&str>) -> Vec<String> {
    let mut argv = vec!["--json=c".to_string(), "-x".to_string()];
    if let Some(t) = device_type {
        argv.push("-d".into());
        argv.push(t.into());
    }
    argv.push(format!("/dev/{disk}"));
    argv
}

/// `smart_read`: smartctl's raw JSON and exit bits, retrying once with `-d sat` when the
/// device type could not be detected (an unknown USB bridge).
pub async fn smart_read(env: OpEnv<'_>, disk: &DiskName) -> Result<SmartReport, HelperError> {
    let sys = env.cfg.config.sysfs_block.join(disk.as_str());
    if is_virtual(disk.as_str()) || !sys.exists() {
        return Err(HelperError::NotFound {
            what: format!(
                "disk {disk} (not in {})",
                env.cfg.config.sysfs_block.display()
            ),
        });
    }
    let mut device_type = None;
    let mut out = env.exec(Tool::Smartctl, &smartctl_argv(disk, None)).await?;
    let first_bits = out.exit_code.unwrap_or(0);
    if out.exit_code.is_some()
        && first_bits & 0b11 != 0
        && needs_device_type(&String::from_utf8_lossy(&out.stdout))
    {
        device_type = Some("sat".to_string());
        out = env
            .exec(Tool::Smartctl, &smartctl_argv(disk, Some("sat")))
            .await?;
    }
    let Some(code) = out.exit_code else {
        return Err(tool_failed(Tool::Smartctl, &out));
    };
    Ok(SmartReport {
        disk: disk.clone(),
        device_type,
        exit_status: u8::try_from(code & 0xff).unwrap_or(u8::MAX),
        json: String::from_utf8_lossy(&out.stdout).into_owned(),
        truncated: out.stdout_truncated,
    })
}

/// Parses an hwmon attribute file name: `(kind, index)` for `temp1_input`, `fan2_input`,
/// `in0_input`, `curr1_input`, `power1_input` and `power1_average`.
pub fn parse_attribute(file: &str) -> Option<(SensorKind, u32, &'static str)> {
    let (stem, suffix) = file.split_once('_')?;
    let (kind, prefix) = [
        (SensorKind::Temperature, "temp"),
        (SensorKind::Fan, "fan"),
        (SensorKind::Voltage, "in"),
        (SensorKind::Power, "power"),
        (SensorKind::Current, "curr"),
    ]
    .into_iter()
    .find(|(_, p)| stem.starts_with(p))?;
    let digits = &stem[prefix.len()..];
    if digits.is_empty() || digits.len() > 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let index: u32 = digits.parse().ok()?;
    let suffix = match (kind, suffix) {
        (_, "input") => "input",
        (SensorKind::Power, "average") => "average",
        _ => return None,
    };
    Some((kind, index, suffix))
}

/// Converts a raw hwmon value to SI units.
pub fn to_si(kind: SensorKind, raw: i64) -> f64 {
    let raw = raw as f64;
    match kind {
        SensorKind::Temperature => raw / 1000.0,
        SensorKind::Fan => raw,
        SensorKind::Voltage => raw / 1000.0,
        SensorKind::Power => raw / 1_000_000.0,
        SensorKind::Current => raw / 1000.0,
    }
}

fn kind_prefix(kind: SensorKind) -> &'static str {
    match kind {
        SensorKind::Temperature => "temp",
        SensorKind::Fan => "fan",
        SensorKind::Voltage => "in",
        SensorKind::Power => "power",
        SensorKind::Current => "curr",
    }
}

/// `sensors_read`: every readable hwmon input, in SI units.
pub fn sensors(root: &Path) -> Result<Vec<SensorReading>, HelperError> {
    let dir = std::fs::read_dir(root).map_err(|e| HelperError::Unavailable {
        what: format!("{}: {e}", root.display()),
    })?;
    let mut devices: Vec<(String, std::path::PathBuf)> = dir
        .flatten()
        .take(MAX_HWMON_DEVICES)
        .filter_map(|e| {
            let n = e.file_name().to_str()?.to_string();
            n.starts_with("hwmon").then(|| (n, e.path()))
        })
        .collect();
    devices.sort();
    let mut readings = Vec::new();
    for (device, path) in devices {
        let chip = read_small(&path.join("name"))
            .map(|n| felhom_protocol::text::label(&n, MAX_LABEL))
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| device.clone());
        let Ok(files) = std::fs::read_dir(&path) else {
            continue;
        };
        let mut found: Vec<(SensorKind, u32, &'static str, String)> = Vec::new();
        for f in files.flatten().take(MAX_HWMON_FILES) {
            let Some(name) = f.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if let Some((kind, index, suffix)) = parse_attribute(&name) {
                found.push((kind, index, suffix, name));
            }
        }
        // power*_input wins over power*_average for the same sensor.
        found.sort_by(|a, b| {
            (kind_prefix(a.0), a.1, a.2 != "input").cmp(&(kind_prefix(b.0), b.1, b.2 != "input"))
        });
        found.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1);
        for (kind, index, _, file) in found {
            if readings.len() >= MAX_READINGS {
                break;
            }
            let Some(raw) = read_small(&path.join(&file)).and_then(|v| v.parse::<i64>().ok())
            else {
                continue;
            };
            let stem = format!("{}{index}", kind_prefix(kind));
            let label = read_small(&path.join(format!("{stem}_label")))
                .map(|l| felhom_protocol::text::label(&l, MAX_LABEL))
                .filter(|l| !l.is_empty())
                .unwrap_or(stem);
            readings.push(SensorReading {
                chip: chip.clone(),
                device: device.clone(),
                label,
                kind,
                value: to_si(kind, raw),
            });
        }
    }
    Ok(readings)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(p: &Path, s: &str) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, s).unwrap();
    }

    #[test]
    fn attributes_are_recognized() {
        assert_eq!(
            parse_attribute("temp1_input"),
            Some((SensorKind::Temperature, 1, "input"))
        );
        assert_eq!(
            parse_attribute("power2_average"),
            Some((SensorKind::Power, 2, "average"))
        );
        assert_eq!(
            parse_attribute("in0_input"),
            Some((SensorKind::Voltage, 0, "input"))
        );
        for bad in [
            "temp1_max",
            "temp_input",
            "tempx_input",
            "fan1_average",
            "name",
            "intrusion0_alarm",
            "temp99999_input",
            "",
            "_",
        ] {
            assert_eq!(parse_attribute(bad), None, "{bad}");
        }
    }

    #[test]
    fn hwmon_tree_is_read_in_si_units() {
        let dir = tempfile::tempdir().unwrap();
        let h0 = dir.path().join("hwmon0");
        write(&h0.join("name"), "coretemp\n");
        write(&h0.join("temp1_input"), "45000\n");
        write(&h0.join("temp1_label"), "Package id 0\n");
        write(&h0.join("temp1_max"), "100000\n");
        write(&h0.join("temp2_input"), "garbage\n");
        let h1 = dir.path().join("hwmon1");
        write(&h1.join("name"), "nct6798\n");
        write(&h1.join("fan1_input"), "1200\n");
        write(&h1.join("in0_input"), "1032\n");
        write(&h1.join("power1_average"), "2500000\n");
        write(&h1.join("power1_input"), "3000000\n");
        write(&h1.join("curr1_input"), "-1500\n");
        write(&dir.path().join("not-hwmon/temp1_input"), "1\n");
        let r = sensors(dir.path()).unwrap();
        let got: Vec<(String, String, SensorKind, f64)> = r
            .iter()
            .map(|s| (s.chip.clone(), s.label.clone(), s.kind, s.value))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "coretemp".into(),
                    "Package id 0".into(),
                    SensorKind::Temperature,
                    45.0
                ),
                ("nct6798".into(), "curr1".into(), SensorKind::Current, -1.5),
                ("nct6798".into(), "fan1".into(), SensorKind::Fan, 1200.0),
                ("nct6798".into(), "in0".into(), SensorKind::Voltage, 1.032),
                ("nct6798".into(), "power1".into(), SensorKind::Power, 3.0),
            ]
        );
        assert_eq!(r[1].device, "hwmon1");
        assert!(sensors(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn usb_bridge_messages_trigger_the_sat_retry() {
        let bridge = r#"{"smartctl":{"messages":[{"string":"/dev/sdb: Unknown USB bridge [0x048d:0x1234 (0x200)]","severity":"error"}],"exit_status":1}}"#;
        assert!(needs_device_type(bridge));
        assert!(!needs_device_type(r#"{"smartctl":{"exit_status":0}}"#));
        assert!(!needs_device_type("not json"));
        assert_eq!(
            smartctl_argv(&DiskName::new("sdb").unwrap(), Some("sat")).join(" "),
            "--json=c -x -d sat /dev/sdb"
        );
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/rootops");
        if let Ok(t) = std::fs::read_to_string(dir.join("local_smartctl_unable_to_detect.json")) {
            assert!(needs_device_type(&t));
        } else {
            eprintln!("skipping fixture check: shared fixtures absent");
        }
    }

    #[test]
    fn scan_skips_virtual_devices() {
        let dir = tempfile::tempdir().unwrap();
        write(&dir.path().join("sda/size"), "1000\n");
        write(&dir.path().join("sda/device/model"), "Samsung SSD 870 \n");
        write(&dir.path().join("sda/queue/rotational"), "0\n");
        write(&dir.path().join("sda/removable"), "0\n");
        write(&dir.path().join("sdb/removable"), "1\n");
        for v in ["loop0", "dm-0", "zram0", "md127", "sr0", "nbd3", "Bad"] {
            std::fs::create_dir_all(dir.path().join(v)).unwrap();
        }
        let cfg_dir = dir.path().to_path_buf();
        let disks = scan_dir(&cfg_dir);
        assert_eq!(disks.len(), 2);
        assert_eq!(disks[0].name.as_str(), "sda");
        assert_eq!(disks[0].size_bytes, 512_000);
        assert_eq!(disks[0].model.as_deref(), Some("Samsung SSD 870"));
        assert_eq!(disks[0].rotational, Some(false));
        assert!(disks[1].removable);
        assert_eq!(disks[1].rotational, None);
    }

    fn scan_dir(dir: &Path) -> Vec<DiskInfo> {
        let config = crate::config::Config {
            sysfs_block: dir.to_path_buf(),
            ..Default::default()
        };
        let cfg = LoadedConfig {
            configured_tools: config.tools.clone(),
            config,
            agent_uid: 0,
            allowed_filesystems: vec![],
            missing_tools: vec![],
        };
        scan(&cfg).unwrap()
    }
}
