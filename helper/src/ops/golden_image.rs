//! Golden image: `pct create` of an unprivileged container with `keyctl=1,nesting=1`.
//!
//! The helper fixes `--unprivileged 1`, `--features keyctl=1,nesting=1` and the network
//! options itself; the request carries only validated values. `--storage` is not passed:
//! `--rootfs <storage>:<GiB>` names the storage of the only volume created, and `--storage`
//! would only be the default for volumes given without one.

use felhom_protocol::{GoldenImageReply, GoldenImageRequest, HelperError};

use super::{OpEnv, tool_failed};
use crate::config::Tool;

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
