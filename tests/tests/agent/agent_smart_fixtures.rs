//! The agent's SMART parser over every real smartctl capture in the shared fixtures
//! (`../shared/fixtures/rootops/smartctl_*.json`; skipped with a reason when absent).

use std::path::Path;

use felhom_agent::smart::{
    EXIT_BIT0_DEVICE_TYPE, Health, SmartSummary, summarize, summarize_value,
};
use felhom_protocol::{DiskName, SmartReport};
use felhom_tests::bins::shared_fixtures;

fn parse(dir: &Path, name: &str) -> SmartSummary {
    let json = std::fs::read_to_string(dir.join(name)).unwrap();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    // The helper reports smartctl's real exit status; the captures carry it in the JSON.
    let exit = v["smartctl"]["exit_status"].as_u64().unwrap_or(0) as u8;
    summarize(&SmartReport {
        disk: DiskName::new("sda").unwrap(),
        device_type: None,
        exit_status: exit,
        json,
        truncated: false,
    })
    .unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn every_smartctl_fixture_parses() {
    let Some(dir) = shared_fixtures("rootops") else {
        return;
    };
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("smartctl_") && n.ends_with(".json"))
        .collect();
    names.sort();
    assert!(names.len() >= 10, "only {names:?}");
    for n in &names {
        let s = parse(&dir, n);
        // Every summary serializes (it goes into health.json).
        serde_json::to_string(&s).unwrap();
        // Bits shown are exactly the set bits.
        let mask: u8 = s.exit_bits.iter().map(|b| 1u8 << b.bit).sum();
        assert_eq!(mask, s.exit_status, "{n}");
    }
}

#[test]
fn specific_values_of_the_captures() {
    let Some(dir) = shared_fixtures("rootops") else {
        return;
    };

    let s = parse(&dir, "smartctl_ata_ok.json");
    assert_eq!(s.health, Health::Ok);
    assert_eq!(s.passed, Some(true));
    assert_eq!(s.model.as_deref(), Some("HGST HUH728080ALE604"));
    assert_eq!(s.serial.as_deref(), Some("VJGBBRTX"));
    assert_eq!(s.temperature_c, Some(29));
    assert_eq!(s.power_on_hours, Some(62794));
    assert_eq!(s.reallocated_sectors, Some(0));
    assert_eq!(s.pending_sectors, Some(0));

    let s = parse(&dir, "smartctl_failing.json");
    assert_eq!(s.passed, Some(false));
    assert_eq!(s.health, Health::Failing);
    assert_eq!(s.exit_status, 216);
    let bits: Vec<u8> = s.exit_bits.iter().map(|b| b.bit).collect();
    assert_eq!(bits, vec![3, 4, 6, 7]);
    assert!(s.exit_bits[0].meaning.contains("DISK FAILING"));
    assert_eq!(s.reallocated_sectors, Some(1975));
    assert_eq!(s.pending_sectors, Some(8));
    assert!(
        s.failed_attributes
            .iter()
            .any(|a| a.starts_with("Reallocated_Sector_Ct")),
        "{:?}",
        s.failed_attributes
    );
    assert_eq!(s.device_type.as_deref(), Some("usbjmicron"));

    let s = parse(&dir, "smartctl_nvme.json");
    assert_eq!(s.health, Health::Ok);
    let n = s.nvme.unwrap();
    assert_eq!(n.critical_warning, 0);
    assert_eq!(n.percentage_used, Some(0));
    assert_eq!(n.media_errors, Some(0));
    assert_eq!(s.temperature_c, Some(39));

    let s = parse(&dir, "smartctl_nvme_failing.json");
    assert_eq!(s.health, Health::Failing);
    let n = s.nvme.as_ref().unwrap();
    assert_eq!(n.critical_warning, 16);
    assert_eq!(
        n.critical_warning_bits,
        vec!["volatile memory backup device failed"]
    );
    assert_eq!(
        s.exit_bits.iter().map(|b| b.bit).collect::<Vec<_>>(),
        vec![3]
    );

    // A RAID volume reports temperature 0 and no SMART verdict.
    let s = parse(&dir, "smartctl_raid_volume_no_smart.json");
    assert_eq!(s.temperature_c, None);
    assert_eq!(s.passed, None);
    assert_eq!(s.health, Health::Unknown);
    assert_eq!(s.model.as_deref(), Some("AVAGO MR9361-8i"));

    // SAS: SCSI model name, passed.
    let s = parse(&dir, "smartctl_scsi_sas_ok.json");
    assert_eq!(s.health, Health::Ok);
    assert_eq!(s.model.as_deref(), Some("HGST HUS728T8TAL5204"));
    assert_eq!(s.power_on_hours, Some(48465));

    // Passed, but worn out and with reallocated sectors: a warning, not ok.
    let s = parse(&dir, "smartctl_ata_ssd_worn_out.json");
    assert_eq!(s.passed, Some(true));
    assert_eq!(s.health, Health::Warning);
    assert_eq!(s.reallocated_sectors, Some(2));
    assert_eq!(s.wear_remaining_percent, Some(1));

    // Exit 64: error log entries; still passed.
    let s = parse(&dir, "smartctl_ata_errorlog_exit64.json");
    assert_eq!(s.health, Health::Warning);
    assert_eq!(
        s.exit_bits.iter().map(|b| b.bit).collect::<Vec<_>>(),
        vec![6]
    );

    // The device could not be opened or identified: no verdict, the message is kept.
    let s = parse(&dir, "smartctl_usb_bridge_error.json");
    assert_eq!(s.health, Health::Unknown);
    assert!(
        s.problems.iter().any(|p| p.contains("Unknown USB bridge")),
        "{:?}",
        s.problems
    );
    assert_eq!(
        s.exit_bits.iter().map(|b| b.bit).collect::<Vec<_>>(),
        vec![0]
    );
    assert_eq!(s.exit_bits[0].meaning, EXIT_BIT0_DEVICE_TYPE);
    let s = parse(&dir, "local_smartctl_unable_to_detect.json");
    assert_eq!(s.health, Health::Unknown);
    assert_eq!(s.exit_bits[0].meaning, EXIT_BIT0_DEVICE_TYPE);
    assert!(
        !s.problems.iter().any(|p| p.contains("did not parse")),
        "{:?}",
        s.problems
    );

    // SSD wear, chosen by attribute name.
    assert_eq!(
        parse(&dir, "smartctl_ata_exit4.json").wear_remaining_percent,
        Some(98)
    );
    assert_eq!(
        parse(&dir, "smartctl_ata_xall.json").wear_remaining_percent,
        Some(81)
    );

    let s = parse(&dir, "smartctl_open_failed.json");
    assert_eq!(s.health, Health::Unknown);
    assert_eq!(
        s.exit_bits.iter().map(|b| b.bit).collect::<Vec<_>>(),
        vec![1]
    );
}

/// Exit bit 0 together with an undetected device type, in a small capture written for this
/// test (runs without the shared fixtures).
#[test]
fn undetected_device_type_is_not_a_command_line_error() {
    let v = serde_json::json!({
        "smartctl": {
            "version": [7, 3],
            "exit_status": 1,
            "messages": [
                { "string": "/dev/sdc: Unable to detect device type", "severity": "error" }
            ]
        }
    });
    let s = summarize_value("sdc".into(), None, 1, &v);
    assert_eq!(s.health, Health::Unknown);
    assert_eq!(s.exit_bits.len(), 1);
    assert_eq!(s.exit_bits[0].bit, 0);
    assert_eq!(s.exit_bits[0].meaning, EXIT_BIT0_DEVICE_TYPE);
    assert!(
        s.problems
            .iter()
            .any(|p| p == &format!("exit bit 0: {EXIT_BIT0_DEVICE_TYPE}")),
        "{:?}",
        s.problems
    );
    // Kingston-style attributes: 233 is not a wear indicator.
    let v = serde_json::json!({
        "smart_status": { "passed": true },
        "ata_smart_attributes": { "table": [
            { "id": 231, "name": "SSD_Life_Left", "value": 98, "raw": { "value": 98 } },
            { "id": 233, "name": "Flash_Writes_GiB", "value": 100, "raw": { "value": 979 } }
        ]}
    });
    assert_eq!(
        summarize_value("sdd".into(), None, 0, &v).wear_remaining_percent,
        Some(98)
    );
}
