//! The client's types against real Proxmox bodies from `../shared/fixtures/pve/` and the
//! real UPIDs listed in `../shared/reference/proxmox-api.md` §3.1. Skips (printing why)
//! when `../shared` is absent.

use std::path::Path;

use felhom_agent::pve::error::classify;
use felhom_agent::pve::types::{
    ClusterResource, ClusterStatusEntry, ContainerConfig, ContainerStatus, GuestState, NodeEntry,
    NodeStatus, Permissions, VersionInfo,
};
use felhom_agent::pve::{Fingerprint, PveError, Upid};
use serde::de::DeserializeOwned;
use serde_json::Value;

fn data_of<T: DeserializeOwned>(dir: &Path, file: &str) -> T {
    let text = std::fs::read_to_string(dir.join(file)).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    serde_json::from_value(v["data"].clone())
        .unwrap_or_else(|e| panic!("{file} does not deserialize: {e}"))
}

#[test]
fn every_fixture_body_deserializes() {
    let Some(dir) = felhom_tests::bins::shared_fixtures("pve") else {
        return;
    };
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if !name.ends_with(".json") || name == "schema_excerpt.json" {
            continue;
        }
        seen += 1;
        match name.as_str() {
            "pve7_nodes_list.json" => {
                let nodes: Vec<NodeEntry> = data_of(&dir, &name);
                assert!(!nodes.is_empty());
                for n in &nodes {
                    let fp = n.ssl_fingerprint.as_deref().unwrap();
                    let parsed: Fingerprint = fp.parse().unwrap();
                    assert_eq!(parsed.to_string(), fp, "PVE prints uppercase colon hex");
                }
                assert!(nodes.iter().any(|n| n.maxcpu.is_some() && n.cpu.is_some()));
            }
            "pve7_node_status.json" => {
                let s: NodeStatus = data_of(&dir, &name);
                assert_eq!(s.loadavg.len(), 3, "loadavg arrives as strings");
                assert!(s.cpuinfo.mhz.is_some(), "mhz arrives as a string");
                assert!(s.memory.total > 0 && s.rootfs.avail.is_some());
            }
            "pve7_node_version.json" => {
                let v: VersionInfo = data_of(&dir, &name);
                assert!(!v.version.is_empty() && !v.repoid.is_empty());
            }
            "pve7_lxc_list_vmid_string.json" => {
                let raw: Value =
                    serde_json::from_str(&std::fs::read_to_string(dir.join(&name)).unwrap())
                        .unwrap();
                let list: Vec<ContainerStatus> = data_of(&dir, &name);
                assert_eq!(list.len(), raw["data"].as_array().unwrap().len());
                for (c, r) in list.iter().zip(raw["data"].as_array().unwrap()) {
                    let wire = r["vmid"].as_str().expect("fixture has string vmids");
                    assert_eq!(c.vmid.to_string(), wire);
                    assert_eq!(
                        c.status == GuestState::Running,
                        r["status"] == "running",
                        "{wire}"
                    );
                    assert_eq!(c.template, r.get("template") == Some(&Value::from(1)));
                }
            }
            "pve7_lxc_config.json" => {
                let c: ContainerConfig = data_of(&dir, &name);
                assert_eq!(c.digest.len(), 40);
                assert!(c.get("memory").is_some() && c.hostname().is_some());
                assert!(!c.lxc.is_empty());
                assert!(!c.entries.contains_key("digest") && !c.entries.contains_key("lxc"));
            }
            "pve7_cluster_status.json" => {
                let s: Vec<ClusterStatusEntry> = data_of(&dir, &name);
                assert!(
                    s.iter()
                        .any(|e| e.entry_type == "cluster" && e.quorate.is_some())
                );
                assert!(
                    s.iter()
                        .any(|e| e.entry_type == "node" && e.online.is_some())
                );
            }
            "pve7_cluster_resources.json" => {
                let r: Vec<ClusterResource> = data_of(&dir, &name);
                assert!(
                    r.iter()
                        .any(|e| e.resource_type == "qemu" && e.vmid.is_some())
                );
            }
            "pve7_access_permissions_root.json" => {
                let p: Permissions = data_of(&dir, &name);
                assert!(p.has("/", "Sys.Audit"), "root has Sys.Audit on /");
            }
            "pve7_error_400_cluster_nextid_body.json" => {
                let body = std::fs::read(dir.join(&name)).unwrap();
                let e = classify(
                    "GET",
                    "/cluster/nextid",
                    400,
                    Some("Parameter verification failed."),
                    &body,
                    true,
                );
                match e {
                    PveError::Api {
                        status: 400,
                        message,
                        errors,
                    } => {
                        assert_eq!(message, "Parameter verification failed.");
                        assert!(errors["vmid"].contains("already exists"));
                    }
                    other => panic!("{other:?}"),
                }
            }
            other => panic!("fixture {other} has no mapping to a client type; add one"),
        }
    }
    assert!(seen >= 9, "expected the shared fixtures, saw {seen}");
}

/// The real UPIDs quoted in the reference (§3.1) parse and print back identically.
#[test]
fn real_upids_round_trip() {
    let reference =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/reference/proxmox-api.md");
    let Ok(text) = std::fs::read_to_string(&reference) else {
        eprintln!("skipping: {} is absent", reference.display());
        return;
    };
    let section = text
        .split("### 3.1 UPID format")
        .nth(1)
        .and_then(|s| s.split("### 3.2").next())
        .expect("§3.1 in the reference");
    let upids: Vec<&str> = section
        .split('`')
        .filter(|s| s.starts_with("UPID:") && !s.contains('%') && !s.contains('<'))
        .collect();
    assert!(upids.len() >= 9, "found {upids:?}");
    for raw in &upids {
        let u: Upid = raw.parse().unwrap_or_else(|e| panic!("{raw}: {e}"));
        assert_eq!(u.to_string(), *raw);
        let back: Upid = serde_json::from_value(Value::from(*raw)).unwrap();
        assert_eq!(back, u);
    }
    let big: Upid = "UPID:pve-srv:0012D68C:8206F38C:65144CB7:qmcreate:501:root@pam:"
        .parse()
        .unwrap();
    assert_eq!(
        (big.pid(), big.pstart(), big.starttime()),
        (1_234_572, 2_181_493_644, 0x6514_4CB7)
    );
    let empty: Upid = "UPID:pve:00061CB3:010BA69C:64EFECB0:imgcopy::root@pam:"
        .parse()
        .unwrap();
    assert_eq!(
        (empty.pid(), empty.pstart(), empty.starttime()),
        (400_563, 17_540_764, 1_693_445_296)
    );
    assert_eq!(empty.id(), "");
}
