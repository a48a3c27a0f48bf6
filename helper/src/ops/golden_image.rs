//! Golden image: `pct create` of an unprivileged container with `keyctl=1,nesting=1`.
//!
//! The helper fixes `--unprivileged 1`, `--features keyctl=1,nesting=1` and the network
//! options itself; the request carries only validated values. `--storage` is not passed:
//! `--rootfs <storage>:<GiB>` names the storage of the only volume created, and `--storage`
//! would only be the default for volumes given without one.
//!
//! The request may name only the storages, template storages and bridges that helper.json's
//! `golden_image` key allows ([`check_bounds`]); anything else is refused before `pct` runs.

use felhom_protocol::{GoldenImageReply, GoldenImageRequest, HelperError};

use super::{OpEnv, tool_failed};
use crate::config::{GoldenImageBounds, Tool};

/// Refuses a request that names a storage, template storage or bridge outside `bounds`; the
/// reason names the helper.json key that would allow it.
pub fn check_bounds(
    bounds: &GoldenImageBounds,
    req: &GoldenImageRequest,
) -> Result<(), HelperError> {
    // (request field, what it names, helper.json key, the value, what the key allows)
    let checks: [(&str, &str, &str, &str, &[String]); 3] = [
        (
            "storage",
            "storage",
            "storages",
            req.storage.as_str(),
            &bounds.storages,
        ),
        (
            "template",
            "template storage",
            "template_storages",
            req.template.storage(),
            &bounds.template_storages,
        ),
        (
            "bridge",
            "bridge",
            "bridges",
            req.bridge.as_str(),
            &bounds.bridges,
        ),
    ];
    for (field, what, key, value, allowed) in checks {
        if !allowed.iter().any(|a| a == value) {
            return Err(HelperError::Rejected {
                field: field.into(),
                reason: format!(
                    "{what} '{value}' is not in golden_image.{key} (helper.json); add it there \
                     to allow it"
                ),
            });
        }
    }
    Ok(())
}

/// The argv after the `pct` program path.
pub fn build_argv(req: &GoldenImageRequest) -> Vec<String> {
    vec![
        "create".into(),
        req.vmid.to_string(),
        req.template.to_string(),
        "--unprivileged".into(),
        "1".into(),
        "--features".into(),
        "keyctl=1,nesting=1".into(),
        "--hostname".into(),
        req.hostname.to_string(),
        "--rootfs".into(),
        format!("{}:{}", req.storage, req.rootfs_gib),
        "--memory".into(),
        req.memory_mib.to_string(),
        "--cores".into(),
        req.cores.to_string(),
        "--net0".into(),
        format!("name=eth0,bridge={},ip=dhcp", req.bridge),
    ]
}

/// Runs `pct create`.
pub async fn create(
    env: OpEnv<'_>,
    req: &GoldenImageRequest,
) -> Result<GoldenImageReply, HelperError> {
    check_bounds(&env.cfg.config.golden_image, req)?;
    let out = env.exec(Tool::Pct, &build_argv(req)).await?;
    if out.success() {
        return Ok(GoldenImageReply {
            vmid: req.vmid,
            output: out.to_tool_output(),
        });
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains(&format!("CT {} already exists", req.vmid)) {
        return Err(HelperError::Busy {
            what: format!("CT {} already exists; choose another vmid", req.vmid),
        });
    }
    Err(tool_failed(Tool::Pct, &out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use felhom_protocol::*;

    fn request(storage: &str, template: &str, bridge: &str) -> GoldenImageRequest {
        GoldenImageRequest {
            vmid: Vmid::new(9000).unwrap(),
            template: TemplateVolid::new(template).unwrap(),
            hostname: Hostname::new("golden-1").unwrap(),
            storage: StorageId::new(storage).unwrap(),
            rootfs_gib: RootfsGib::new(8).unwrap(),
            memory_mib: MemoryMib::new(1024).unwrap(),
            cores: Cores::new(2).unwrap(),
            bridge: Bridge::new(bridge).unwrap(),
        }
    }

    const TEMPLATE: &str = "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst";

    #[test]
    fn only_configured_storages_templates_and_bridges_pass() {
        let stock = GoldenImageBounds::default();
        assert_eq!(
            check_bounds(&stock, &request("local-lvm", TEMPLATE, "vmbr0")),
            Ok(())
        );
        for (req, field, needle) in [
            (
                request("tank", TEMPLATE, "vmbr0"),
                "storage",
                "storage 'tank' is not in golden_image.storages (helper.json); add it there",
            ),
            // `local` holds templates on a stock install, not container volumes.
            (
                request("local", TEMPLATE, "vmbr0"),
                "storage",
                "storage 'local' is not in golden_image.storages",
            ),
            (
                request("local-lvm", "nfs1:vztmpl/evil.tar.zst", "vmbr0"),
                "template",
                "template storage 'nfs1' is not in golden_image.template_storages (helper.json)",
            ),
            (
                request("local-lvm", TEMPLATE, "vmbr1"),
                "bridge",
                "bridge 'vmbr1' is not in golden_image.bridges (helper.json)",
            ),
            // Exact names: no prefix or case folding.
            (
                request("local-lvm2", TEMPLATE, "vmbr0"),
                "storage",
                "golden_image.storages",
            ),
            (
                request("local-lvm", TEMPLATE, "VMBR0"),
                "bridge",
                "golden_image.bridges",
            ),
        ] {
            match check_bounds(&stock, &req) {
                Err(HelperError::Rejected { field: f, reason }) => {
                    assert_eq!(f, field, "{reason}");
                    assert!(reason.contains(needle), "{reason}");
                }
                other => panic!("{req:?}: {other:?}"),
            }
        }
        let wider = GoldenImageBounds {
            storages: vec!["local-lvm".into(), "tank".into()],
            template_storages: vec!["local".into(), "nfs1".into()],
            bridges: vec!["vmbr0".into(), "vmbr1".into()],
        };
        assert_eq!(
            check_bounds(&wider, &request("tank", "nfs1:vztmpl/a.tar.zst", "vmbr1")),
            Ok(())
        );
        let none = GoldenImageBounds {
            storages: vec![],
            template_storages: vec![],
            bridges: vec![],
        };
        assert!(check_bounds(&none, &request("local-lvm", TEMPLATE, "vmbr0")).is_err());
    }

    #[test]
    fn argv_is_fixed_and_complete() {
        let req = GoldenImageRequest {
            vmid: Vmid::new(9000).unwrap(),
            template: TemplateVolid::new("local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst")
                .unwrap(),
            hostname: Hostname::new("golden-1").unwrap(),
            storage: StorageId::new("local-lvm").unwrap(),
            rootfs_gib: RootfsGib::new(8).unwrap(),
            memory_mib: MemoryMib::new(1024).unwrap(),
            cores: Cores::new(2).unwrap(),
            bridge: Bridge::new("vmbr0").unwrap(),
        };
        assert_eq!(
            build_argv(&req).join(" "),
            "create 9000 local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst --unprivileged 1 \
             --features keyctl=1,nesting=1 --hostname golden-1 --rootfs local-lvm:8 \
             --memory 1024 --cores 2 --net0 name=eth0,bridge=vmbr0,ip=dhcp"
        );
    }
}
