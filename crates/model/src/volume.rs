//! Storage pools and data volumes (VPE's `disk_pool` and `disks`).
//!
//! Pools are admin-defined capacity buckets; volumes are allocated from a pool and can be
//! attached to at most one server. Attachment is recorded on the volume (the server's
//! volume list is derived from it, like its NICs).

use crate::ids::*;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoragePool {
    pub id: PoolId,
    pub serial: i64,
    pub name: String,
    pub capacity_gb: u64,
    /// Sum of the sizes of the pool's live volumes (filled on read).
    #[serde(default)]
    pub used_gb: u64,
    /// How volumes are stored: `local` (files on the server's compute host).
    pub backend: String,
    pub created_at: Timestamp,
}

/// Volume status (Cinder's names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VolumeStatus {
    Available,
    InUse,
    Error,
    Deleting,
}

impl VolumeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            VolumeStatus::Available => "available",
            VolumeStatus::InUse => "in-use",
            VolumeStatus::Error => "error",
            VolumeStatus::Deleting => "deleting",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Volume {
    pub id: VolumeId,
    pub serial: i64,
    pub name: String,
    pub size_gb: u64,
    pub pool_id: PoolId,
    /// Filled on read.
    #[serde(default)]
    pub pool_name: String,
    pub status: VolumeStatus,
    pub attached_to: Option<ServerId>,
    /// Device name in the guest once attached (`vdb`, `vdc`, ...).
    pub device: Option<String>,
    pub project_id: ProjectId,
    pub user_id: UserId,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// Guest device name of the `index`-th data disk (the root disk is `vda`).
pub fn data_device(index: usize) -> String {
    let letter = (b'b' + (index % 25) as u8) as char;
    format!("vd{letter}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names() {
        assert_eq!(data_device(0), "vdb");
        assert_eq!(data_device(1), "vdc");
        assert_eq!(data_device(24), "vdz");
    }
}
