//! Parsing smartctl's JSON (as the helper returns it, raw) into a typed summary, and
//! explaining smartctl's exit-status bits.
//!
//! Every key of smartctl's JSON is optional (it depends on the device type, the smartctl
//! version and whether the device could be opened at all), so the parser walks a
//! [`serde_json::Value`] and fills what it finds. Health comes from `smart_status.passed`,
//! the NVMe critical warning and the exit bits — never from exit status 0 alone.

use felhom_protocol::SmartReport;
use serde::Serialize;
use serde_json::Value;

/// The meaning of each bit of smartctl's exit status (smartctl(8), EXIT STATUS).
pub const EXIT_BITS: [&str; 8] = [
    "command line did not parse",
    "device open failed, device did not return an IDENTIFY DEVICE structure, or device is in a low-power mode",
    "some SMART or other ATA command to the disk failed, or there was a checksum error in a SMART data structure",
    "SMART status check returned \"DISK FAILING\"",
    "prefail attributes are at or below their threshold",
    "some attributes have been at or below their threshold at some time in the past",
    "the device error log contains records of errors",
    "the device self-test log contains records of errors",
];

/// What exit bit 0 means when smartctl could not tell the device type: smartctl reports that
/// as a command-line problem, but the command line was fine.
pub const EXIT_BIT0_DEVICE_TYPE: &str = "device type not detected (the helper retries with -d sat; the disk may sit behind an unsupported USB bridge)";

/// smartctl messages that mean exit bit 0 is about the device type, not the command line.
const DEVICE_TYPE_MESSAGES: [&str; 2] = ["Unknown USB bridge", "Unable to detect device type"];

/// ATA attribute names whose normalized value is the SSD life remaining, percent, in order
/// of preference. Selected by name, because ids are vendor-specific (Kingston's 233 is
/// Flash_Writes_GiB, Intel's 233 is Media_Wearout_Indicator).
const WEAR_ATTRIBUTES: [&str; 7] = [
    "SSD_Life_Left",
    "Percent_Lifetime_Remain",
    "Percent_Life_Remaining",
    "Remaining_Lifetime_Perc",
    "Media_Wearout_Indicator",
    "Wear_Leveling_Count",
    "Perc_Rated_Life_Remain",
];

/// NVMe critical-warning bits (NVMe base spec, SMART / Health log byte 0).
const NVME_WARNING_BITS: [&str; 6] = [
    "available spare below threshold",
    "temperature above or below threshold",
    "NVM subsystem reliability degraded",
    "media placed in read-only mode",
    "volatile memory backup device failed",
    "persistent memory region unreliable",
];

/// One set bit of smartctl's exit status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExitBit {
    /// Bit number 0..=7.
    pub bit: u8,
    /// What it means.
    pub meaning: &'static str,
}

/// The overall verdict for one disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// SMART says passed and nothing is worrying.
    Ok,
    /// Passed, but something deserves attention (reallocated or pending sectors, error log
    /// entries, wear).
    Warning,
    /// SMART says the disk is failing (or an NVMe critical warning is set).
    Failing,
    /// No SMART verdict could be read.
    Unknown,
}

impl Health {
    /// A short word for tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Ok => "ok",
            Health::Warning => "warning",
            Health::Failing => "FAILING",
            Health::Unknown => "unknown",
        }
    }
}

/// NVMe-specific health figures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NvmeHealth {
    /// The critical-warning byte (0 = none).
    pub critical_warning: u8,
    /// The set bits of the critical-warning byte, explained.
    pub critical_warning_bits: Vec<&'static str>,
    /// Vendor estimate of life used, percent (may exceed 100).
    pub percentage_used: Option<u64>,
    /// Unrecovered data-integrity errors.
    pub media_errors: Option<u64>,
    /// Available spare, percent.
    pub available_spare: Option<u64>,
}

/// The typed summary of one smartctl run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SmartSummary {
    /// The disk (kernel name) the helper read.
    pub disk: String,
    /// smartctl's device type (`sat`, `nvme`, `scsi`, `usbjmicron`, …), if reported.
    pub device_type: Option<String>,
    /// `ATA`, `NVMe` or `SCSI`, if reported.
    pub protocol: Option<String>,
    /// Model (ATA/NVMe `model_name`, SCSI `scsi_model_name` or vendor + product).
    pub model: Option<String>,
    /// Serial number.
    pub serial: Option<String>,
    /// Firmware version.
    pub firmware: Option<String>,
    /// `smart_status.passed`; `None` when SMART gave no verdict.
    pub passed: Option<bool>,
    /// `smart_support.available`, if reported (ATA and SCSI; NVMe always has its log).
    pub smart_available: Option<bool>,
    /// True when the disk gave no verdict because it has no SMART support that smartctl can
    /// reach: it says so (`smart_support.available: false`), or smartctl could not open it
    /// as a SMART device (exit bit 1: virtual disks such as virtio, some USB bridges). Such
    /// a disk is `unknown`, never failing; tables show it as `no SMART`.
    pub no_smart_support: bool,
    /// Current temperature, °C. A reported 0 (RAID volumes, some bridges) is not a reading.
    pub temperature_c: Option<i64>,
    /// Power-on hours.
    pub power_on_hours: Option<u64>,
    /// ATA attribute 5, raw.
    pub reallocated_sectors: Option<u64>,
    /// ATA attribute 197, raw.
    pub pending_sectors: Option<u64>,
    /// ATA attribute 198, raw.
    pub offline_uncorrectable: Option<u64>,
    /// SSD wear remaining, percent: the normalized value of the first ATA attribute named
    /// SSD_Life_Left, Percent_Lifetime_Remain, Percent_Life_Remaining,
    /// Remaining_Lifetime_Perc, Media_Wearout_Indicator, Wear_Leveling_Count or
    /// Perc_Rated_Life_Remain, if reported.
    pub wear_remaining_percent: Option<u64>,
    /// ATA attributes whose `when_failed` is `now` or `past`, as `NAME (now)`.
    pub failed_attributes: Vec<String>,
    /// NVMe health log figures.
    pub nvme: Option<NvmeHealth>,
    /// smartctl's exit status.
    pub exit_status: u8,
    /// Its set bits, explained.
    pub exit_bits: Vec<ExitBit>,
    /// smartctl's own error and warning messages.
    pub messages: Vec<String>,
    /// The verdict.
    pub health: Health,
    /// Why the verdict is not `ok`, in words.
    pub problems: Vec<String>,
}

/// Why a smartctl result could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SmartParseError {
    /// The helper cut the JSON at its output bound.
    #[error("smartctl output for {disk} was truncated by the helper; it cannot be parsed")]
    Truncated {
        /// The disk.
        disk: String,
    },
    /// The output is not JSON.
    #[error("smartctl output for {disk} is not valid JSON: {message}")]
    InvalidJson {
        /// The disk.
        disk: String,
        /// The parser's message.
        message: String,
    },
}

/// Explains the set bits of a smartctl exit status.
pub fn explain_exit_status(status: u8) -> Vec<ExitBit> {
    (0u8..8)
        .filter(|b| status & (1 << b) != 0)
        .map(|bit| ExitBit {
            bit,
            meaning: EXIT_BITS[usize::from(bit)],
        })
        .collect()
}

fn text(v: &Value, path: &[&str]) -> Option<String> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    match cur {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        _ => None,
    }
}

fn uint(v: &Value, path: &[&str]) -> Option<u64> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_u64()
}

fn attribute(v: &Value, id: u64) -> Option<&Value> {
    v.get("ata_smart_attributes")?
        .get("table")?
        .as_array()?
        .iter()
        .find(|a| a.get("id").and_then(Value::as_u64) == Some(id))
}

fn attribute_by_name<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    v.get("ata_smart_attributes")?
        .get("table")?
        .as_array()?
        .iter()
        .find(|a| a.get("name").and_then(Value::as_str) == Some(name))
}

/// SSD life remaining, percent: the normalized `value` of the first wear attribute found by
/// name (see [`WEAR_ATTRIBUTES`]).
fn wear_remaining(v: &Value) -> Option<u64> {
    WEAR_ATTRIBUTES
        .iter()
        .find_map(|name| attribute_by_name(v, name)?.get("value")?.as_u64())
        .filter(|p| *p <= 100)
}

fn attribute_raw(v: &Value, id: u64) -> Option<u64> {
    attribute(v, id)?.get("raw")?.get("value")?.as_u64()
}

/// A plausible temperature: drives report 0 when they have no sensor, and some bridges
/// report garbage.
fn plausible_temperature(t: i64) -> Option<i64> {
    (t != 0 && (-40..=150).contains(&t)).then_some(t)
}

/// Parses one [`SmartReport`] from the helper.
pub fn summarize(report: &SmartReport) -> Result<SmartSummary, SmartParseError> {
    let disk = report.disk.to_string();
    if report.truncated {
        return Err(SmartParseError::Truncated { disk });
    }
    let v: Value =
        serde_json::from_str(&report.json).map_err(|e| SmartParseError::InvalidJson {
            disk: disk.clone(),
            message: e.to_string(),
        })?;
    Ok(summarize_value(
        disk,
        report.device_type.clone(),
        report.exit_status,
        &v,
    ))
}

/// Parses smartctl JSON already decoded into a [`Value`]. `exit_status` is the process's exit
/// status (the JSON's `smartctl.exit_status` is used when they differ only if the former is 0).
pub fn summarize_value(
    disk: String,
    requested_type: Option<String>,
    exit_status: u8,
    v: &Value,
) -> SmartSummary {
    let json_exit = uint(v, &["smartctl", "exit_status"])
        .and_then(|n| u8::try_from(n).ok())
        .unwrap_or(0);
    let exit_status = if exit_status == 0 {
        json_exit
    } else {
        exit_status
    };
    let model = text(v, &["model_name"])
        .or_else(|| text(v, &["scsi_model_name"]))
        .or_else(
            || match (text(v, &["scsi_vendor"]), text(v, &["scsi_product"])) {
                (Some(a), Some(b)) => Some(format!("{a} {b}")),
                (a, b) => a.or(b),
            },
        );
    let passed = v
        .get("smart_status")
        .and_then(|s| s.get("passed"))
        .and_then(Value::as_bool);
    let nvme = v.get("nvme_smart_health_information_log").map(|log| {
        let cw = uint(log, &["critical_warning"])
            .and_then(|n| u8::try_from(n).ok())
            .unwrap_or(0);
        NvmeHealth {
            critical_warning: cw,
            critical_warning_bits: (0..NVME_WARNING_BITS.len())
                .filter(|b| cw & (1 << b) != 0)
                .map(|b| NVME_WARNING_BITS[b])
                .collect(),
            percentage_used: uint(log, &["percentage_used"]),
            media_errors: uint(log, &["media_errors"]),
            available_spare: uint(log, &["available_spare"]),
        }
    });
    let temperature_c = v
        .get("temperature")
        .and_then(|t| t.get("current"))
        .and_then(Value::as_i64)
        .and_then(plausible_temperature)
        .or_else(|| {
            v.get("nvme_smart_health_information_log")
                .and_then(|l| l.get("temperature"))
                .and_then(Value::as_i64)
                .and_then(plausible_temperature)
        });
    let power_on_hours = uint(v, &["power_on_time", "hours"])
        .or_else(|| uint(v, &["nvme_smart_health_information_log", "power_on_hours"]));
    let failed_attributes: Vec<String> = v
        .get("ata_smart_attributes")
        .and_then(|a| a.get("table"))
        .and_then(Value::as_array)
        .map(|rows| {
            rows.iter()
                .filter_map(|a| {
                    let when = a.get("when_failed").and_then(Value::as_str)?;
                    if when.is_empty() {
                        return None;
                    }
                    let name = a.get("name").and_then(Value::as_str).unwrap_or("?");
                    Some(format!("{name} ({when})"))
                })
                .collect()
        })
        .unwrap_or_default();
    let wear_remaining_percent = wear_remaining(v);
    let messages: Vec<String> = v
        .get("smartctl")
        .and_then(|s| s.get("messages"))
        .and_then(Value::as_array)
        .map(|m| {
            m.iter()
                .filter_map(|msg| {
                    let s = msg.get("string")?.as_str()?;
                    let sev = msg
                        .get("severity")
                        .and_then(Value::as_str)
                        .unwrap_or("information");
                    Some(format!("{sev}: {s}"))
                })
                .collect()
        })
        .unwrap_or_default();

    let mut exit_bits = explain_exit_status(exit_status);
    let device_type_unknown = v
        .get("smartctl")
        .and_then(|s| s.get("messages"))
        .and_then(Value::as_array)
        .is_some_and(|m| {
            m.iter().any(|msg| {
                msg.get("string")
                    .and_then(Value::as_str)
                    .is_some_and(|s| DEVICE_TYPE_MESSAGES.iter().any(|d| s.contains(d)))
            })
        });
    if device_type_unknown {
        for b in exit_bits.iter_mut().filter(|b| b.bit == 0) {
            b.meaning = EXIT_BIT0_DEVICE_TYPE;
        }
    }
    let smart_available = v
        .get("smart_support")
        .and_then(|s| s.get("available"))
        .and_then(Value::as_bool);
    let no_smart_support = passed.is_none()
        && nvme.is_none()
        && (smart_available == Some(false) || exit_bits.iter().any(|b| b.bit == 1));
    let mut summary = SmartSummary {
        disk,
        device_type: text(v, &["device", "type"]).or(requested_type),
        protocol: text(v, &["device", "protocol"]),
        model,
        serial: text(v, &["serial_number"]),
        firmware: text(v, &["firmware_version"]).or_else(|| text(v, &["scsi_revision"])),
        passed,
        smart_available,
        no_smart_support,
        temperature_c,
        power_on_hours,
        reallocated_sectors: attribute_raw(v, 5),
        pending_sectors: attribute_raw(v, 197),
        offline_uncorrectable: attribute_raw(v, 198),
        wear_remaining_percent,
        failed_attributes,
        nvme,
        exit_status,
        exit_bits,
        messages,
        health: Health::Unknown,
        problems: Vec::new(),
    };
    let (health, problems) = verdict(&summary);
    summary.health = health;
    summary.problems = problems;
    summary
}

fn verdict(s: &SmartSummary) -> (Health, Vec<String>) {
    let mut failing = Vec::new();
    let mut warnings = Vec::new();
    let mut unknown = Vec::new();
    if s.passed == Some(false) {
        failing.push("SMART overall-health self-assessment: FAILED".to_string());
    }
    for b in &s.exit_bits {
        let line = format!("exit bit {}: {}", b.bit, b.meaning);
        match b.bit {
            0 | 1 => unknown.push(line),
            3 | 4 => failing.push(line),
            _ => warnings.push(line),
        }
    }
    if let Some(n) = &s.nvme {
        if n.critical_warning != 0 {
            failing.push(format!(
                "NVMe critical warning 0x{:02x}: {}",
                n.critical_warning,
                n.critical_warning_bits.join(", ")
            ));
        }
        if n.media_errors.is_some_and(|e| e > 0) {
            warnings.push(format!(
                "NVMe media errors: {}",
                n.media_errors.unwrap_or(0)
            ));
        }
        if n.percentage_used.is_some_and(|p| p >= 90) {
            warnings.push(format!(
                "NVMe life used: {}%",
                n.percentage_used.unwrap_or(0)
            ));
        }
    }
    if let Some(n) = s.reallocated_sectors.filter(|n| *n > 0) {
        warnings.push(format!("{n} reallocated sectors"));
    }
    if let Some(n) = s.pending_sectors.filter(|n| *n > 0) {
        warnings.push(format!("{n} pending sectors"));
    }
    if let Some(n) = s.offline_uncorrectable.filter(|n| *n > 0) {
        warnings.push(format!("{n} offline uncorrectable sectors"));
    }
    if let Some(w) = s.wear_remaining_percent.filter(|w| *w <= 10) {
        warnings.push(format!("SSD wear indicator at {w}% remaining"));
    }
    for a in &s.failed_attributes {
        warnings.push(format!("attribute failed: {a}"));
    }
    if s.no_smart_support {
        let why = if s.smart_available == Some(false) {
            "the device reports none"
        } else {
            "smartctl could not open it as a SMART device (exit bit 1; usual for virtual \
             disks such as virtio and for some USB bridges; on a physical disk, check the \
             helper's capabilities)"
        };
        unknown.insert(0, format!("no SMART support: {why}; not a disk failure"));
    }
    if s.passed.is_none() && s.nvme.is_none() && unknown.is_empty() {
        unknown.push("SMART gave no overall-health verdict (not supported or not enabled)".into());
    }
    let health = if !failing.is_empty() {
        Health::Failing
    } else if !unknown.is_empty() && s.passed.is_none() {
        Health::Unknown
    } else if !warnings.is_empty() {
        Health::Warning
    } else if s.passed == Some(true) {
        Health::Ok
    } else {
        Health::Unknown
    };
    let mut problems = failing;
    problems.extend(unknown);
    problems.extend(warnings);
    for m in &s.messages {
        if m.starts_with("error:") {
            problems.push(m.clone());
        }
    }
    (health, problems)
}

#[cfg(test)]
mod tests {
    use super::*;
    use felhom_protocol::DiskName;

    fn report(json: &str, exit: u8) -> SmartReport {
        SmartReport {
            disk: DiskName::new("sda").unwrap(),
            device_type: None,
            exit_status: exit,
            json: json.into(),
            truncated: false,
        }
    }

    #[test]
    fn exit_216_is_bits_3_4_6_7() {
        let bits: Vec<u8> = explain_exit_status(216).iter().map(|b| b.bit).collect();
        assert_eq!(bits, vec![3, 4, 6, 7]);
        assert!(explain_exit_status(8)[0].meaning.contains("DISK FAILING"));
        assert!(explain_exit_status(0).is_empty());
    }

    #[test]
    fn a_disk_without_smart_is_unknown_and_says_so_never_failing() {
        // What smartctl says for a virtio disk: no device type, then (with -d sat) the
        // device cannot be opened as a SMART device: exit bit 1.
        let virtio = r#"{"smartctl":{"messages":[{"string":"open device: /dev/vda [SAT] failed: Operation not permitted","severity":"error"}],"exit_status":2}}"#;
        let s = summarize(&report(virtio, 2)).unwrap();
        assert_eq!(s.health, Health::Unknown);
        assert!(s.no_smart_support);
        assert!(s.problems[0].starts_with("no SMART support: smartctl could not open it"));
        assert!(s.problems.iter().any(|p| p.starts_with("exit bit 1:")));
        // A device that says it has no SMART.
        let none = r#"{"smart_support":{"available":false},"model_name":"QEMU HARDDISK"}"#;
        let s = summarize(&report(none, 4)).unwrap();
        assert_eq!(s.health, Health::Unknown);
        assert_eq!(s.smart_available, Some(false));
        assert!(s.no_smart_support);
        assert!(s.problems[0].starts_with("no SMART support: the device reports none"));
        // A disk whose SMART says FAILED stays failing even with exit bit 1 set.
        let failed = r#"{"smart_status":{"passed":false}}"#;
        let s = summarize(&report(failed, 2 | 8)).unwrap();
        assert_eq!(s.health, Health::Failing);
        assert!(!s.no_smart_support);
        // A healthy disk is not "no SMART".
        let ok =
            r#"{"smart_support":{"available":true,"enabled":true},"smart_status":{"passed":true}}"#;
        assert!(!summarize(&report(ok, 0)).unwrap().no_smart_support);
    }

    #[test]
    fn minimal_passed_disk_is_ok() {
        let s = summarize(&report(
            r#"{"smart_status":{"passed":true},"temperature":{"current":31},"model_name":"X"}"#,
            0,
        ))
        .unwrap();
        assert_eq!(s.health, Health::Ok);
        assert_eq!(s.temperature_c, Some(31));
        assert_eq!(s.model.as_deref(), Some("X"));
    }

    #[test]
    fn zero_temperature_is_not_a_reading() {
        let s = summarize(&report(r#"{"temperature":{"current":0}}"#, 4)).unwrap();
        assert_eq!(s.temperature_c, None);
        assert_eq!(s.health, Health::Unknown);
    }

    #[test]
    fn wear_is_picked_by_attribute_name() {
        // Kingston: 233 is Flash_Writes_GiB (value 100), 231 SSD_Life_Left (98).
        let s = summarize(&report(
            r#"{"smart_status":{"passed":true},"ata_smart_attributes":{"table":[
                {"id":231,"name":"SSD_Life_Left","value":98,"raw":{"value":98}},
                {"id":233,"name":"Flash_Writes_GiB","value":100,"raw":{"value":979}}]}}"#,
            0,
        ))
        .unwrap();
        assert_eq!(s.wear_remaining_percent, Some(98));
        // No wear attribute at all.
        let s = summarize(&report(
            r#"{"ata_smart_attributes":{"table":[{"id":233,"name":"Flash_Writes_GiB","value":100}]}}"#,
            0,
        ))
        .unwrap();
        assert_eq!(s.wear_remaining_percent, None);
    }

    #[test]
    fn exit_bit_0_with_an_undetected_device_type_is_explained() {
        let json = r#"{"smartctl":{"exit_status":1,"messages":[
            {"string":"/dev/sdb: Unknown USB bridge [0x1234:0x5678 (0x100)]","severity":"error"}]}}"#;
        let s = summarize(&report(json, 1)).unwrap();
        assert_eq!(s.exit_bits.len(), 1);
        assert_eq!(s.exit_bits[0].meaning, EXIT_BIT0_DEVICE_TYPE);
        assert!(
            s.problems
                .iter()
                .any(|p| p.contains("device type not detected")),
            "{:?}",
            s.problems
        );
        // A real command-line problem keeps the standard meaning.
        let s = summarize(&report(r#"{"smartctl":{"exit_status":1}}"#, 1)).unwrap();
        assert_eq!(s.exit_bits[0].meaning, EXIT_BITS[0]);
    }

    #[test]
    fn truncated_and_garbage_are_errors() {
        let mut r = report("{", 0);
        assert!(matches!(
            summarize(&r),
            Err(SmartParseError::InvalidJson { .. })
        ));
        r.truncated = true;
        assert!(matches!(
            summarize(&r),
            Err(SmartParseError::Truncated { .. })
        ));
    }
}
