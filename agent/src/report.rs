//! The read-only health report: what `selftest` prints and what the service writes to
//! `health.json` every cycle.
//!
//! Each section is collected independently and is either `ok` (with data), `warning` (with
//! data and a message) or `error` (with a message). Proxmox or the helper being unreachable
//! makes the affected sections `error` and the report `degraded`; it never aborts collection.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use felhom_protocol::{Capability, HelloReply, MountBackend, SensorReading};
use serde::Serialize;

pub mod backups;

use crate::helper_client::HelperClient;
use crate::pve::{ContainerStatus, NodeStatus, PveClient, StorageEntry, VersionInfo};
use crate::smart::{Health, SmartSummary, summarize};

/// A section's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Collected; nothing wrong.
    Ok,
    /// Collected; something deserves attention (does not degrade the report).
    Warning,
    /// Could not be collected, or shows a failure.
    Error,
}

impl Status {
    /// The word printed in tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warning => "warning",
            Status::Error => "ERROR",
        }
    }
}

/// One section of the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Section<T> {
    /// ok / warning / error.
    pub status: Status,
    /// What was collected (absent when collection failed).
    pub data: Option<T>,
    /// Why it is not ok.
    pub message: Option<String>,
}

impl<T> Section<T> {
    /// A section that was collected without problems.
    pub fn ok(data: T) -> Section<T> {
        Section {
            status: Status::Ok,
            data: Some(data),
            message: None,
        }
    }

    /// A section that could not be collected.
    pub fn error(message: impl Into<String>) -> Section<T> {
        Section {
            status: Status::Error,
            data: None,
            message: Some(message.into()),
        }
    }
}

/// Proxmox version and node status.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PveInfo {
    /// `GET /version`.
    pub version: VersionInfo,
    /// `GET /nodes/{node}/status`.
    pub node_status: NodeStatus,
}

/// The helper's `hello`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HelperInfo {
    /// Socket the agent used.
    pub socket: String,
    /// Protocol version both sides speak.
    pub protocol_version: u32,
    /// The helper's package version.
    pub helper_version: String,
    /// What it offers on this host.
    pub capabilities: Vec<String>,
    /// How it makes mounts persistent.
    pub mount_backend: String,
}

impl HelperInfo {
    /// Builds the section data from a `hello` reply.
    pub fn from_hello(socket: &str, h: &HelloReply) -> HelperInfo {
        HelperInfo {
            socket: socket.to_string(),
            protocol_version: h.protocol_version,
            helper_version: h.helper_version.clone(),
            capabilities: h
                .capabilities
                .iter()
                .map(|c| {
                    match c {
                        Capability::GoldenImage => "golden_image",
                        Capability::UsbMount => "usb_mount",
                        Capability::Smart => "smart",
                        Capability::Sensors => "sensors",
                    }
                    .to_string()
                })
                .collect(),
            mount_backend: match h.mount_backend {
                MountBackend::Systemd => "systemd",
                MountBackend::Direct => "direct",
            }
            .to_string(),
        }
    }
}

/// SMART result of one disk.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DiskHealth {
    /// Kernel name.
    pub disk: String,
    /// Size from sysfs.
    pub size_bytes: u64,
    /// The parsed summary, when it could be read.
    pub summary: Option<SmartSummary>,
    /// Why it could not be read.
    pub error: Option<String>,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthReport {
    /// When collection finished, seconds since the epoch.
    pub generated_at: u64,
    /// The agent's version.
    pub agent_version: String,
    /// `ok` or `degraded` (some section is `error`).
    pub overall: Overall,
    /// Proxmox version and node status.
    pub pve: Section<PveInfo>,
    /// Containers on this node.
    pub guests: Section<Vec<ContainerStatus>>,
    /// Storages on this node.
    pub storage: Section<Vec<StorageEntry>>,
    /// Backups per guest on each backup storage ([`backups`]).
    pub backups: Section<Vec<backups::BackupStorage>>,
    /// The helper's handshake.
    pub helper: Section<HelperInfo>,
    /// SMART per disk.
    pub smart: Section<Vec<DiskHealth>>,
    /// Hardware sensors.
    pub sensors: Section<Vec<SensorReading>>,
    /// The restore drill schedule of `run` ([`crate::drill::schedule`]); absent when it is
    /// off (and outside `run`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drills: Option<crate::drill::schedule::DrillsStatus>,
}

/// The report's overall verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Overall {
    /// Every section is ok or warning.
    Ok,
    /// At least one section is error.
    Degraded,
}

impl HealthReport {
    /// Names and statuses of all sections, in report order.
    pub fn sections(&self) -> Vec<(&'static str, Status, Option<&str>)> {
        vec![
            ("pve", self.pve.status, self.pve.message.as_deref()),
            ("guests", self.guests.status, self.guests.message.as_deref()),
            (
                "storage",
                self.storage.status,
                self.storage.message.as_deref(),
            ),
            (
                "backups",
                self.backups.status,
                self.backups.message.as_deref(),
            ),
            ("helper", self.helper.status, self.helper.message.as_deref()),
            ("smart", self.smart.status, self.smart.message.as_deref()),
            (
                "sensors",
                self.sensors.status,
                self.sensors.message.as_deref(),
            ),
        ]
    }

    /// True when some section is `error`.
    pub fn is_degraded(&self) -> bool {
        self.overall == Overall::Degraded
    }

    /// A one-line summary for the log and systemd's `STATUS=`.
    pub fn one_line(&self) -> String {
        let guests = self.guests.data.as_ref().map_or(0, Vec::len);
        let running = self.guests.data.as_ref().map_or(0, |g| {
            g.iter()
                .filter(|c| c.status == crate::pve::GuestState::Running)
                .count()
        });
        let disks = self.smart.data.as_ref().map_or(0, Vec::len);
        let bad: Vec<&str> = self
            .sections()
            .into_iter()
            .filter(|(_, s, _)| *s == Status::Error)
            .map(|(n, _, _)| n)
            .collect();
        let head = match self.overall {
            Overall::Ok => "ok".to_string(),
            Overall::Degraded => format!("degraded ({})", bad.join(", ")),
        };
        format!("{head}: {running}/{guests} guests running, {disks} disks")
    }
}

fn err_text(e: &dyn std::fmt::Display) -> String {
    e.to_string()
}

async fn collect_pve(pve: &PveClient) -> Section<PveInfo> {
    let (version, status) = tokio::join!(pve.version(), pve.node_status());
    match (version, status) {
        (Ok(version), Ok(node_status)) => Section::ok(PveInfo {
            version,
            node_status,
        }),
        (Err(e), _) | (_, Err(e)) => Section::error(err_text(&e)),
    }
}

async fn collect_smart(helper: &HelperClient) -> Section<Vec<DiskHealth>> {
    let disks = match helper.smart_scan().await {
        Ok(d) => d,
        Err(e) => return Section::error(err_text(&e)),
    };
    let mut out = Vec::with_capacity(disks.len());
    let mut failing = Vec::new();
    let mut warning = Vec::new();
    for d in disks {
        let (summary, error) = match helper.smart_read(d.name.clone()).await {
            Ok(raw) => match summarize(&raw) {
                Ok(s) => (Some(s), None),
                Err(e) => (None, Some(err_text(&e))),
            },
            Err(e) => (None, Some(err_text(&e))),
        };
        match (&summary, &error) {
            (Some(s), _) if s.health == Health::Failing => {
                failing.push(format!("{} FAILING", d.name));
            }
            (Some(s), _) if s.health != Health::Ok => {
                warning.push(format!("{} {}", d.name, s.health.as_str()));
            }
            (_, Some(e)) => warning.push(format!("{}: {e}", d.name)),
            _ => {}
        }
        out.push(DiskHealth {
            disk: d.name.to_string(),
            size_bytes: d.size_bytes,
            summary,
            error,
        });
    }
    let (status, message) = if !failing.is_empty() {
        (Status::Error, Some(failing.join("; ")))
    } else if !warning.is_empty() {
        (Status::Warning, Some(warning.join("; ")))
    } else {
        (Status::Ok, None)
    };
    Section {
        status,
        data: Some(out),
        message,
    }
}

/// The longest the Proxmox part and the helper part of a report may each take; a part that
/// is not done by then is cut off and its sections are errors that say so. The worst case
/// the configuration allows is far longer (every disk × the helper's 30 s SMART deadline;
/// every read × 3 attempts × `request_timeout_secs`, up to an hour each), so the cycle bounds
/// itself here, below the service's [`MAX_CYCLE_TIME`](crate::service::MAX_CYCLE_TIME),
/// which the watchdog budget covers.
pub const COLLECT_BOUND: Duration = Duration::from_secs(9 * 60);

/// Collects the report. `pve` is an error message when no API client could be built.
/// Each half (Proxmox, helper) is bounded by [`COLLECT_BOUND`].
pub async fn collect(pve: Result<&PveClient, String>, helper: &HelperClient) -> HealthReport {
    collect_within(pve, helper, COLLECT_BOUND).await
}

/// [`collect`] with another bound (tests).
pub async fn collect_within(
    pve: Result<&PveClient, String>,
    helper: &HelperClient,
    bound: Duration,
) -> HealthReport {
    let cut = || {
        format!(
            "not collected within {} s (the cycle's bound); the rest of the report is current",
            bound.as_secs()
        )
    };
    let pve_part = async {
        match pve {
            Ok(pve) => {
                let storage_then_backups = async {
                    match pve.storages().await {
                        Ok(list) => {
                            let b = backups::collect(pve, &list).await;
                            (Section::ok(list), b)
                        }
                        Err(e) => (
                            Section::error(err_text(&e)),
                            Section::error("skipped: the storage list is unavailable"),
                        ),
                    }
                };
                let (info, guests, (storage, backups)) =
                    tokio::join!(collect_pve(pve), pve.containers(), storage_then_backups);
                (
                    info,
                    guests.map_or_else(|e| Section::error(err_text(&e)), Section::ok),
                    storage,
                    backups,
                )
            }
            Err(msg) => (
                Section::error(msg.clone()),
                Section::error(msg.clone()),
                Section::error(msg.clone()),
                Section::error(msg),
            ),
        }
    };
    let helper_part = async {
        let socket = helper.socket().display().to_string();
        match helper.ping().await {
            Ok(h) => {
                let hello = Section::ok(HelperInfo::from_hello(&socket, &h));
                let smart = collect_smart(helper).await;
                let sensors = helper
                    .sensors_read()
                    .await
                    .map_or_else(|e| Section::error(err_text(&e)), Section::ok);
                (hello, smart, sensors)
            }
            Err(e) => {
                let msg = err_text(&e);
                let skipped = |what: &str| format!("{what} skipped: helper unavailable");
                (
                    Section::error(msg),
                    Section::error(skipped("SMART")),
                    Section::error(skipped("sensors")),
                )
            }
        }
    };
    let pve_part = async {
        tokio::time::timeout(bound, pve_part)
            .await
            .unwrap_or_else(|_| {
                (
                    Section::error(cut()),
                    Section::error(cut()),
                    Section::error(cut()),
                    Section::error(cut()),
                )
            })
    };
    let helper_part = async {
        tokio::time::timeout(bound, helper_part)
            .await
            .unwrap_or_else(|_| {
                (
                    Section::error(cut()),
                    Section::error(cut()),
                    Section::error(cut()),
                )
            })
    };
    let ((pve, guests, storage, backups), (helper, smart, sensors)) =
        tokio::join!(pve_part, helper_part);
    let mut report = HealthReport {
        generated_at: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
        overall: Overall::Ok,
        pve,
        guests,
        storage,
        backups,
        helper,
        smart,
        sensors,
        drills: None,
    };
    if report
        .sections()
        .iter()
        .any(|(_, s, _)| *s == Status::Error)
    {
        report.overall = Overall::Degraded;
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unreachable_everything_is_degraded_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let helper = HelperClient::new(dir.path().join("none.sock"));
        let r = collect(Err("no API configured".into()), &helper).await;
        assert!(r.is_degraded());
        assert_eq!(r.pve.status, Status::Error);
        assert!(
            r.helper
                .message
                .as_deref()
                .unwrap()
                .contains("does not exist")
        );
        assert!(r.one_line().starts_with("degraded"), "{}", r.one_line());
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["overall"], "degraded");
        assert_eq!(json["smart"]["status"], "error");
    }

    #[tokio::test]
    async fn a_part_that_hangs_is_cut_at_the_bound() {
        // A helper socket that accepts connections and never answers.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("silent.sock");
        let _listener = tokio::net::UnixListener::bind(&path).unwrap();
        let helper = HelperClient::new(path);
        let r = collect_within(
            Err("no API configured".into()),
            &helper,
            Duration::from_millis(300),
        )
        .await;
        for s in [&r.helper.message, &r.smart.message, &r.sensors.message] {
            assert!(
                s.as_deref().unwrap().contains("not collected within 0 s"),
                "{s:?}"
            );
        }
        assert!(r.is_degraded());
    }

    #[test]
    fn the_cycle_bound_is_inside_the_watchdog_budget() {
        assert!(COLLECT_BOUND < crate::service::MAX_CYCLE_TIME);
    }
}
