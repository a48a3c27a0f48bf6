//! The health report as a Prometheus text-format file, for node_exporter's textfile
//! collector. `run` writes it atomically after each cycle to `metrics_file` (default
//! `<state_dir>/felhom-agent.prom`).
//!
//! Every series carries `node`; names and units follow Prometheus conventions (base units,
//! `_seconds`, `_bytes`, `_celsius`, `_ratio`). A value the report does not have (a disk
//! without a temperature, a storage without a size) is left out rather than written as 0.
//!
//! | metric | labels | meaning |
//! |---|---|---|
//! | `felhom_up` | | 1: the report is ok; 0: degraded |
//! | `felhom_section_up` | `section` | 1: collected without error; 0: error |
//! | `felhom_cycle_duration_seconds` | | how long the last collection took |
//! | `felhom_report_timestamp_seconds` | | when the last report was made |
//! | `felhom_last_success_timestamp_seconds` | | the last report that was not degraded |
//! | `felhom_guests`, `felhom_guests_running` | | containers on the node, running ones |
//! | `felhom_guest_running` | `vmid`, `name` | 1 running, 0 otherwise |
//! | `felhom_storage_size_bytes`, `_used_bytes`, `_available_bytes` | `storage` | space |
//! | `felhom_storage_active` | `storage` | 1 active |
//! | `felhom_disk_smart_passed` | `disk` | SMART self-assessment: 1 passed, 0 failed (absent: no verdict) |
//! | `felhom_disk_smart_state` | `disk`, `state` | 1 for the disk's state: ok, warning, failing, unknown, unsupported (no SMART support), unreadable |
//! | `felhom_disk_temperature_celsius` | `disk` | current temperature |
//! | `felhom_disk_power_on_seconds` | `disk` | power-on time (hours × 3600) |
//! | `felhom_disk_reallocated_sectors`, `felhom_disk_pending_sectors` | `disk` | ATA 5 and 197, raw |
//! | `felhom_disk_nvme_used_ratio` | `disk` | NVMe "Percentage Used" / 100 (may exceed 1) |
//! | `felhom_disk_nvme_media_errors` | `disk` | NVMe media and data integrity errors |
//! | `felhom_hwmon_temperature_celsius`, `_fan_rpm`, `_volts`, `_watts`, `_amperes` | `chip`, `device`, `sensor` | hwmon readings |
//! | `felhom_guest_info` | `vmid`, `name`, `tags`, `template` | always 1 |
//! | `felhom_guest_cpu_usage_ratio`, `_cpu_limit`, `_memory_usage_bytes`, `_memory_size_bytes`, `_swap_usage_bytes`, `_swap_size_bytes`, `_disk_usage_bytes`, `_disk_size_bytes`, `_uptime_seconds` | `vmid` | from the guest list |
//! | `felhom_guest_network_receive_bytes_total`, `_network_transmit_bytes_total`, `_disk_read_bytes_total`, `_disk_written_bytes_total` | `vmid` | counters |
//! | `felhom_guest_lock_state` | `vmid`, `state` | 1 for the current lock ([`guests::LOCK_STATES`]) |
//! | `felhom_node_info`, `felhom_version_info` | `kernel`, `cpu_model`, `pveversion` / `version`, `release`, `repoid` | always 1 |
//! | `felhom_node_cpu_usage_ratio`, `_cpus`, `_load1`, `_memory_usage_bytes`, `_memory_size_bytes`, `_rootfs_usage_bytes`, `_rootfs_size_bytes`, `_uptime_seconds` | | node status |
//! | `felhom_backup_storage_up` | `storage` | 1: the backup listing was read |
//! | `felhom_guest_backups`, `felhom_guest_last_backup_timestamp_seconds` | `vmid`, `storage` | count and newest (0: none there) |
//! | `felhom_guest_last_backup_verified` | `vmid`, `storage` | PBS: 1 newest verified ok, 0 failed or not verified |
//! | `felhom_guest_newest_backup_timestamp_seconds` | `vmid` | newest anywhere, 0: none (see [`backups`]); a drill's copy is left out |
//! | `felhom_backup_drill_success` | `vmid` | the guest's last scheduled restore drill: 1 passed, 0 failed (see [`drills`]) |
//! | `felhom_backup_drill_timestamp_seconds` | `vmid` | when it ended; 0: a guest to drill not drilled yet |
//! | `felhom_backup_drill_duration_seconds` | `vmid` | how long it took, cleanup included |
//! | `felhom_backup_drill_cleanup_ok` | `vmid` | 1: its copy was removed (or never made); 0: it may be left over |
//! | `felhom_backup_drill_running` | | 1 while a scheduled drill runs |
//! | `felhom_backup_drill_leftover` | | 1 while a guest an earlier drill may have left sits at a scratch vmid, not proven the drill's, so not destroyed |

use std::collections::BTreeSet;
use std::fmt::Write as _;

use felhom_protocol::SensorKind;

pub mod backups;
pub mod drills;
pub mod guests;

use crate::pve::GuestState;
use crate::report::{HealthReport, Status};
use crate::smart::Health;

/// The metrics file's name in the state directory, when `metrics_file` is not set.
pub const DEFAULT_METRICS_FILE: &str = "felhom-agent.prom";

/// What the service knows about its cycles besides the report.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CycleInfo {
    /// How long the last collection took, seconds.
    pub duration_seconds: f64,
    /// When the last report that was not degraded was made, seconds since the epoch.
    pub last_success: Option<u64>,
}

/// One metric family: its samples, written after its HELP and TYPE lines.
struct Family {
    name: &'static str,
    help: &'static str,
    kind: &'static str,
    samples: Vec<(String, f64)>,
    seen: BTreeSet<String>,
}

impl Family {
    fn new(name: &'static str, help: &'static str) -> Family {
        Family {
            name,
            help,
            kind: "gauge",
            samples: Vec::new(),
            seen: BTreeSet::new(),
        }
    }

    /// A counter family (its name ends in `_total`).
    fn counter(name: &'static str, help: &'static str) -> Family {
        Family {
            kind: "counter",
            ..Family::new(name, help)
        }
    }

    /// Adds a sample; a repeated label set (two readings that look the same) is dropped,
    /// since a duplicate series makes the whole file invalid.
    fn add(&mut self, labels: &[(&str, &str)], value: f64) {
        let mut l = String::new();
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                l.push(',');
            }
            let _ = write!(
                l,
                "{k}=\"{}\"",
                felhom_protocol::text::prometheus_label(v, MAX_LABEL_CHARS)
            );
        }
        if self.seen.insert(l.clone()) {
            self.samples.push((l, value));
        }
    }

    fn write(&self, out: &mut String) {
        if self.samples.is_empty() {
            return;
        }
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} {}", self.name, self.kind);
        for (labels, value) in &self.samples {
            let _ = writeln!(out, "{}{{{labels}}} {}", self.name, number(*value));
        }
    }
}

/// The longest label value (characters) a series carries.
const MAX_LABEL_CHARS: usize = 128;

fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{v}")
    }
}

fn flag(b: bool) -> f64 {
    if b { 1.0 } else { 0.0 }
}

/// Renders the report (see the module documentation for the metrics).
pub fn render(report: &HealthReport, node: &str, cycle: CycleInfo) -> String {
    let n = ("node", node);
    let mut fams: Vec<Family> = Vec::new();
    let mut fam = |name, help| {
        fams.push(Family::new(name, help));
        fams.len() - 1
    };
    let up = fam(
        "felhom_up",
        "1 when the health report is ok, 0 when degraded.",
    );
    let section_up = fam(
        "felhom_section_up",
        "1 when the report section was collected without error, 0 otherwise.",
    );
    let duration = fam(
        "felhom_cycle_duration_seconds",
        "How long the last collection cycle took.",
    );
    let ts = fam(
        "felhom_report_timestamp_seconds",
        "When the last health report was made (Unix time).",
    );
    let success = fam(
        "felhom_last_success_timestamp_seconds",
        "When the last health report that was not degraded was made (Unix time).",
    );
    let guests = fam("felhom_guests", "Containers on the node.");
    let guests_running = fam("felhom_guests_running", "Running containers on the node.");
    let guest_running = fam(
        "felhom_guest_running",
        "1 when the container is running, 0 otherwise.",
    );
    let st_size = fam("felhom_storage_size_bytes", "Size of the storage.");
    let st_used = fam("felhom_storage_used_bytes", "Used space on the storage.");
    let st_avail = fam(
        "felhom_storage_available_bytes",
        "Available space on the storage.",
    );
    let st_active = fam("felhom_storage_active", "1 when the storage is active.");
    let passed = fam(
        "felhom_disk_smart_passed",
        "SMART overall self-assessment: 1 passed, 0 failed (absent when there is no verdict).",
    );
    let state = fam(
        "felhom_disk_smart_state",
        "1 for the disk's SMART state (ok, warning, failing, unknown, unsupported, unreadable), 0 for the others.",
    );
    let temp = fam(
        "felhom_disk_temperature_celsius",
        "Current disk temperature.",
    );
    let poh = fam(
        "felhom_disk_power_on_seconds",
        "Disk power-on time (power-on hours times 3600).",
    );
    let realloc = fam(
        "felhom_disk_reallocated_sectors",
        "Reallocated sectors (ATA attribute 5, raw).",
    );
    let pending = fam(
        "felhom_disk_pending_sectors",
        "Sectors pending reallocation (ATA attribute 197, raw).",
    );
    let nvme_used = fam(
        "felhom_disk_nvme_used_ratio",
        "NVMe Percentage Used divided by 100 (may exceed 1).",
    );
    let nvme_media = fam(
        "felhom_disk_nvme_media_errors",
        "NVMe media and data integrity errors.",
    );
    let hw_temp = fam(
        "felhom_hwmon_temperature_celsius",
        "hwmon temperature sensor.",
    );
    let hw_fan = fam("felhom_hwmon_fan_rpm", "hwmon fan speed.");
    let hw_volts = fam("felhom_hwmon_volts", "hwmon voltage sensor.");
    let hw_watts = fam("felhom_hwmon_watts", "hwmon power sensor.");
    let hw_amps = fam("felhom_hwmon_amperes", "hwmon current sensor.");

    fams[up].add(&[n], flag(!report.is_degraded()));
    for (name, status, _) in report.sections() {
        fams[section_up].add(&[n, ("section", name)], flag(status != Status::Error));
    }
    fams[duration].add(&[n], cycle.duration_seconds);
    fams[ts].add(&[n], report.generated_at as f64);
    if let Some(t) = cycle.last_success {
        fams[success].add(&[n], t as f64);
    }

    if let Some(list) = &report.guests.data {
        let running = list
            .iter()
            .filter(|g| g.status == GuestState::Running)
            .count();
        fams[guests].add(&[n], list.len() as f64);
        fams[guests_running].add(&[n], running as f64);
        for g in list {
            let vmid = g.vmid.to_string();
            let name = g.name.as_deref().unwrap_or("");
            fams[guest_running].add(
                &[n, ("vmid", &vmid), ("name", name)],
                flag(g.status == GuestState::Running),
            );
        }
    }

    if let Some(list) = &report.storage.data {
        for s in list {
            let l = [n, ("storage", s.storage.as_str())];
            if let Some(v) = s.total {
                fams[st_size].add(&l, v as f64);
            }
            if let Some(v) = s.used {
                fams[st_used].add(&l, v as f64);
            }
            if let Some(v) = s.avail {
                fams[st_avail].add(&l, v as f64);
            }
            fams[st_active].add(&l, flag(s.active));
        }
    }

    if let Some(list) = &report.smart.data {
        for d in list {
            let l = [n, ("disk", d.disk.as_str())];
            let current = match &d.summary {
                None => "unreadable",
                Some(s) if s.no_smart_support => "unsupported",
                Some(s) => match s.health {
                    Health::Ok => "ok",
                    Health::Warning => "warning",
                    Health::Failing => "failing",
                    Health::Unknown => "unknown",
                },
            };
            for st in [
                "ok",
                "warning",
                "failing",
                "unknown",
                "unsupported",
                "unreadable",
            ] {
                fams[state].add(
                    &[n, ("disk", d.disk.as_str()), ("state", st)],
                    flag(st == current),
                );
            }
            let Some(s) = &d.summary else { continue };
            if let Some(p) = s.passed {
                fams[passed].add(&l, flag(p));
            }
            if let Some(t) = s.temperature_c {
                fams[temp].add(&l, t as f64);
            }
            if let Some(h) = s.power_on_hours {
                fams[poh].add(&l, h as f64 * 3600.0);
            }
            if let Some(v) = s.reallocated_sectors {
                fams[realloc].add(&l, v as f64);
            }
            if let Some(v) = s.pending_sectors {
                fams[pending].add(&l, v as f64);
            }
            if let Some(nv) = &s.nvme {
                if let Some(p) = nv.percentage_used {
                    fams[nvme_used].add(&l, p as f64 / 100.0);
                }
                if let Some(m) = nv.media_errors {
                    fams[nvme_media].add(&l, m as f64);
                }
            }
        }
    }

    if let Some(list) = &report.sensors.data {
        for r in list {
            let l = [
                n,
                ("chip", r.chip.as_str()),
                ("device", r.device.as_str()),
                ("sensor", r.label.as_str()),
            ];
            let f = match r.kind {
                SensorKind::Temperature => hw_temp,
                SensorKind::Fan => hw_fan,
                SensorKind::Voltage => hw_volts,
                SensorKind::Power => hw_watts,
                SensorKind::Current => hw_amps,
            };
            fams[f].add(&l, r.value);
        }
    }

    fams.extend(guests::families(report, node));
    fams.extend(backups::families(report, node));
    fams.extend(drills::families(report, node));

    let mut out = String::new();
    for f in &fams {
        f.write(&mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_degraded_report_says_so_and_invents_no_values() {
        let dir = tempfile::tempdir().unwrap();
        let helper = crate::helper_client::HelperClient::new(dir.path().join("none.sock"));
        let report = crate::report::collect(Err("not configured".into()), &helper).await;
        let text = render(
            &report,
            "pve",
            CycleInfo {
                duration_seconds: 0.5,
                last_success: None,
            },
        );
        assert!(text.contains("felhom_up{node=\"pve\"} 0\n"), "{text}");
        assert!(text.contains("felhom_section_up{node=\"pve\",section=\"pve\"} 0\n"));
        assert!(text.contains("felhom_section_up{node=\"pve\",section=\"helper\"} 0\n"));
        assert!(text.contains("felhom_cycle_duration_seconds{node=\"pve\"} 0.5\n"));
        // Nothing was collected: no guest, storage, disk or sensor series, no success time.
        for absent in [
            "felhom_last_success",
            "felhom_guest",
            "felhom_storage",
            "felhom_disk",
            "felhom_hwmon",
        ] {
            assert!(!text.contains(absent), "{absent} in {text}");
        }
        // Every family has its HELP and TYPE.
        assert_eq!(
            text.matches("# HELP ").count(),
            text.matches("# TYPE ").count()
        );
    }

    #[tokio::test]
    async fn disks_nvme_and_no_smart_states_have_their_series() {
        use crate::report::{DiskHealth, Section};
        use felhom_protocol::{DiskName, SmartReport};
        let dir = tempfile::tempdir().unwrap();
        let helper = crate::helper_client::HelperClient::new(dir.path().join("none.sock"));
        let mut report = crate::report::collect(Err("not configured".into()), &helper).await;
        let disk = |name: &str, exit: u8, json: &str| {
            let raw = SmartReport {
                disk: DiskName::new(name).unwrap(),
                device_type: None,
                exit_status: exit,
                json: json.into(),
                truncated: false,
            };
            DiskHealth {
                disk: name.into(),
                size_bytes: 1,
                summary: Some(crate::smart::summarize(&raw).unwrap()),
                error: None,
            }
        };
        report.smart = Section::ok(vec![
            disk(
                "nvme0n1",
                0,
                r#"{"smart_status":{"passed":true},"nvme_smart_health_information_log":{"critical_warning":0,"temperature":41,"percentage_used":7,"media_errors":2,"power_on_hours":100}}"#,
            ),
            disk("vda", 2, r#"{"smartctl":{"exit_status":2}}"#),
            DiskHealth {
                disk: "sdz".into(),
                size_bytes: 1,
                summary: None,
                error: Some("timed out".into()),
            },
        ]);
        let text = render(
            &report,
            "pve",
            CycleInfo {
                duration_seconds: 1.0,
                last_success: Some(5),
            },
        );
        let has = |line: &str| assert!(text.contains(&format!("{line}\n")), "{line} in\n{text}");
        has(r#"felhom_disk_nvme_used_ratio{node="pve",disk="nvme0n1"} 0.07"#);
        has(r#"felhom_disk_nvme_media_errors{node="pve",disk="nvme0n1"} 2"#);
        has(r#"felhom_disk_power_on_seconds{node="pve",disk="nvme0n1"} 360000"#);
        has(r#"felhom_disk_smart_passed{node="pve",disk="nvme0n1"} 1"#);
        has(r#"felhom_disk_smart_state{node="pve",disk="vda",state="unsupported"} 1"#);
        has(r#"felhom_disk_smart_state{node="pve",disk="vda",state="failing"} 0"#);
        has(r#"felhom_disk_smart_state{node="pve",disk="sdz",state="unreadable"} 1"#);
        has(r#"felhom_last_success_timestamp_seconds{node="pve"} 5"#);
        // No verdict: no passed series for vda (not a made-up 0).
        assert!(!text.contains(r#"felhom_disk_smart_passed{node="pve",disk="vda"}"#));
    }

    #[test]
    fn numbers_use_the_text_format_spellings() {
        assert_eq!(number(1.0), "1");
        assert_eq!(number(0.25), "0.25");
        assert_eq!(number(f64::NAN), "NaN");
        assert_eq!(number(f64::INFINITY), "+Inf");
        assert_eq!(number(f64::NEG_INFINITY), "-Inf");
    }

    #[test]
    fn duplicate_series_are_dropped_and_empty_families_left_out() {
        let mut f = Family::new("felhom_x", "help");
        f.add(&[("a", "1")], 1.0);
        f.add(&[("a", "1")], 2.0);
        f.add(&[("a", "2")], 3.0);
        let mut out = String::new();
        f.write(&mut out);
        assert_eq!(
            out,
            "# HELP felhom_x help\n# TYPE felhom_x gauge\nfelhom_x{a=\"1\"} 1\nfelhom_x{a=\"2\"} 3\n"
        );
        let mut out = String::new();
        Family::new("felhom_y", "help").write(&mut out);
        assert!(out.is_empty());
    }
}
