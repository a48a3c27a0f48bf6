//! The commands served by the root helper rather than the API: `golden-image create`,
//! `usb mount|unmount|list`, `smart [DISK]` and `sensors`.

use std::fmt::Write as _;

use felhom_protocol::{GoldenImageRequest, UsbMountRequest};
use serde::Serialize;
use serde_json::json;

use super::output::{Outcome, Table, opt};
use super::{CliError, GoldenImageArgs, UsbAction};
use crate::helper_client::HelperClient;
use crate::smart::{Health, SmartSummary, summarize};

/// `felhom-agent golden-image create …`: `pct create` through the helper.
pub(super) async fn golden_image(
    helper: &HelperClient,
    a: &GoldenImageArgs,
) -> Result<Outcome, CliError> {
    let req = GoldenImageRequest {
        vmid: a.vmid,
        template: a.template.clone(),
        hostname: a.hostname.clone(),
        storage: a.storage.clone(),
        rootfs_gib: a.rootfs_gb,
        memory_mib: a.memory_mb,
        cores: a.cores,
        bridge: a.bridge.clone(),
    };
    let reply = helper.golden_image_create(req).await?;
    let mut human = format!(
        "golden image CT {} created from {} (keyctl=1, nesting=1, unprivileged)\n",
        reply.vmid, a.template
    );
    for line in reply
        .output
        .stdout
        .lines()
        .rev()
        .take(3)
        .collect::<Vec<_>>()
        .iter()
        .rev()
    {
        let _ = writeln!(human, "  pct: {line}");
    }
    Ok(Outcome::new(
        &json!({ "ok": true, "vmid": reply.vmid, "output": reply.output }),
        human,
    ))
}

/// `felhom-agent usb mount|unmount|list`: managed USB mounts through the helper.
pub(super) async fn usb(helper: &HelperClient, action: &UsbAction) -> Result<Outcome, CliError> {
    match action {
        UsbAction::Mount { uuid, name } => {
            let m = helper
                .usb_mount(UsbMountRequest {
                    uuid: uuid.clone(),
                    name: name.clone(),
                })
                .await?;
            let human = format!(
                "mounted {} ({}) at {} [{}]{}\n",
                m.uuid,
                m.fstype,
                m.mount_point,
                m.options,
                m.unit
                    .as_deref()
                    .map_or_else(String::new, |u| format!(", unit {u}"))
            );
            Ok(Outcome::new(&m, human))
        }
        UsbAction::Unmount { name } => {
            let r = helper.usb_unmount(name.clone()).await?;
            let human = if r.was_mounted {
                format!("unmounted {} and removed its record\n", r.name)
            } else {
                format!("{} was not mounted; its record was removed\n", r.name)
            };
            Ok(Outcome::new(&r, human))
        }
        UsbAction::List => {
            let list = helper.usb_list().await?;
            let mut t = Table::new(&[
                "NAME",
                "UUID",
                "FSTYPE",
                "MOUNT POINT",
                "MOUNTED",
                "BACKEND",
            ]);
            for m in &list {
                t.row(vec![
                    m.name.to_string(),
                    m.uuid.to_string(),
                    m.fstype.to_string(),
                    m.mount_point.clone(),
                    if m.mounted { "yes" } else { "no" }.into(),
                    format!("{:?}", m.backend).to_lowercase(),
                ]);
            }
            Ok(Outcome::new(&list, t.render("no managed mounts")))
        }
    }
}

/// One disk's row in `smart`.
#[derive(Debug, Serialize)]
struct SmartRow {
    disk: String,
    summary: Option<SmartSummary>,
    error: Option<String>,
}

fn render_smart(rows: &[SmartRow]) -> String {
    let mut t = Table::new(&[
        "DISK", "HEALTH", "MODEL", "SERIAL", "TEMP", "POWER-ON", "REALLOC", "PENDING",
    ]);
    for r in rows {
        match &r.summary {
            Some(s) => t.row(vec![
                r.disk.clone(),
                if s.no_smart_support {
                    "no SMART".into()
                } else {
                    s.health.as_str().into()
                },
                opt(s.model.as_deref()),
                opt(s.serial.as_deref()),
                opt(s.temperature_c.map(|t| format!("{t}°C"))),
                opt(s.power_on_hours.map(|h| format!("{h} h"))),
                opt(s.reallocated_sectors),
                opt(s.pending_sectors),
            ]),
            None => t.row(vec![r.disk.clone(), "unreadable".into()]),
        }
    }
    let mut out = t.render("no disks");
    for r in rows {
        if let Some(e) = &r.error {
            let _ = writeln!(out, "{}: {e}", r.disk);
        }
        let Some(s) = &r.summary else { continue };
        if let Some(n) = &s.nvme {
            let _ = writeln!(
                out,
                "{}: NVMe critical warning 0x{:02x}{}, {}% used, {} media errors",
                r.disk,
                n.critical_warning,
                if n.critical_warning_bits.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", n.critical_warning_bits.join(", "))
                },
                opt(n.percentage_used),
                opt(n.media_errors)
            );
        }
        if s.exit_status != 0 {
            let bits: Vec<String> = s
                .exit_bits
                .iter()
                .map(|b| format!("bit {}: {}", b.bit, b.meaning))
                .collect();
            let _ = writeln!(
                out,
                "{}: smartctl exit status {} = {}",
                r.disk,
                s.exit_status,
                bits.join("; ")
            );
        }
        for p in &s.problems {
            if !p.starts_with("exit bit") {
                let _ = writeln!(out, "{}: {p}", r.disk);
            }
        }
    }
    out
}

/// `felhom-agent smart [DISK]`: SMART health of every disk (or one); a failing or unreadable
/// disk makes the outcome failed.
pub(super) async fn smart(
    helper: &HelperClient,
    disk: Option<felhom_protocol::DiskName>,
) -> Result<Outcome, CliError> {
    let disks = match disk {
        Some(d) => vec![d],
        None => helper
            .smart_scan()
            .await?
            .into_iter()
            .map(|d| d.name)
            .collect(),
    };
    let mut rows = Vec::new();
    for d in disks {
        let row = match helper.smart_read(d.clone()).await {
            Ok(raw) => match summarize(&raw) {
                Ok(s) => SmartRow {
                    disk: d.to_string(),
                    summary: Some(s),
                    error: None,
                },
                Err(e) => SmartRow {
                    disk: d.to_string(),
                    summary: None,
                    error: Some(e.to_string()),
                },
            },
            // One disk's failure does not hide the others; a helper that cannot be reached
            // at all fails the command.
            Err(e) if e.is_unreachable() => return Err(e.into()),
            Err(e) => SmartRow {
                disk: d.to_string(),
                summary: None,
                error: Some(e.to_string()),
            },
        };
        rows.push(row);
    }
    let failed = rows.iter().any(|r| {
        r.error.is_some()
            || r.summary
                .as_ref()
                .is_some_and(|s| s.health == Health::Failing)
    });
    let human = render_smart(&rows);
    Ok(Outcome::new(&json!({ "ok": !failed, "disks": rows }), human).failed(failed))
}

/// `felhom-agent sensors`: the hardware sensors through the helper.
pub(super) async fn sensors(helper: &HelperClient) -> Result<Outcome, CliError> {
    let list = helper.sensors_read().await?;
    let mut t = Table::new(&["CHIP", "DEVICE", "SENSOR", "VALUE"]);
    for s in &list {
        t.row(vec![
            s.chip.clone(),
            s.device.clone(),
            s.label.clone(),
            format!("{} {}", s.value, s.kind.unit()),
        ]);
    }
    Ok(Outcome::new(&list, t.render("no sensors")))
}
