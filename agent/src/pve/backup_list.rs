//! The backups on one storage, as the run loop's backup inventory reads them: one
//! `GET /nodes/{node}/storage/{storage}/content?content=backup` per backup storage and cycle,
//! decoded field by field (see [`super::fieldwise`]), so a malformed `ctime` costs that
//! volume's age, not the storage's listing.

use felhom_protocol::Vmid;
use serde::{Deserialize, Serialize};

use super::args::StorageId;
use super::client::PveClient;
use super::error::PveError;
use super::lenient as le;
use super::types::ContentKind;

/// A PBS verification result (`verification` of a backup volume on a PBS storage).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct Verification {
    /// `ok` or `failed`.
    #[serde(default, deserialize_with = "le::opt_string")]
    pub state: Option<String>,
}

/// One backup volume: only what the inventory needs.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct BackupVolume {
    /// Volume id.
    pub volid: String,
    /// The guest it belongs to.
    #[serde(default, deserialize_with = "le::opt_vmid")]
    pub vmid: Option<Vmid>,
    /// Creation time, epoch seconds.
    #[serde(default, deserialize_with = "le::opt_i64")]
    pub ctime: Option<i64>,
    /// `lxc` or `qemu`.
    #[serde(default, deserialize_with = "le::opt_string")]
    pub subtype: Option<String>,
    /// The last verification, where PBS reports one.
    #[serde(default)]
    pub verification: Option<Verification>,
}

impl PveClient {
    /// `GET /nodes/{node}/storage/{storage}/content?content=backup`, field by field.
    pub async fn backup_volumes(&self, storage: &StorageId) -> Result<Vec<BackupVolume>, PveError> {
        self.get_list_fieldwise(
            &[
                "nodes",
                self.node().as_str(),
                "storage",
                storage.as_str(),
                "content",
            ],
            &[("content", ContentKind::Backup.as_str().to_string())],
        )
        .await
    }
}
