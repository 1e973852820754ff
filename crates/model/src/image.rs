//! Images in the registry. Bytes live in a content-addressed local store keyed by their
//! SHA-512 (`os_hash_value`); the record here says which blob an image points at.

use crate::ids::*;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Glance v2 image status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageStatus {
    Queued,
    Saving,
    Uploading,
    Importing,
    Active,
    Killed,
    Deleted,
    PendingDelete,
    Deactivated,
}

impl ImageStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ImageStatus::Queued => "queued",
            ImageStatus::Saving => "saving",
            ImageStatus::Uploading => "uploading",
            ImageStatus::Importing => "importing",
            ImageStatus::Active => "active",
            ImageStatus::Killed => "killed",
            ImageStatus::Deleted => "deleted",
            ImageStatus::PendingDelete => "pending_delete",
            ImageStatus::Deactivated => "deactivated",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            ImageStatus::Queued,
            ImageStatus::Saving,
            ImageStatus::Uploading,
            ImageStatus::Importing,
            ImageStatus::Active,
            ImageStatus::Killed,
            ImageStatus::Deleted,
            ImageStatus::PendingDelete,
            ImageStatus::Deactivated,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
}

/// Glance v2 visibility.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Visibility {
    Public,
    Private,
    Shared,
    Community,
}

impl Visibility {
    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Public => "public",
            Visibility::Private => "private",
            Visibility::Shared => "shared",
            Visibility::Community => "community",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "public" => Some(Visibility::Public),
            "private" => Some(Visibility::Private),
            "shared" => Some(Visibility::Shared),
            "community" => Some(Visibility::Community),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Image {
    pub id: ImageId,
    /// Numeric serial (Cyclades shows image ids as given, but keeps one like every object).
    pub serial: i64,
    pub name: Option<String>,
    pub status: ImageStatus,
    pub visibility: Visibility,
    pub protected: bool,
    pub owner: Option<ProjectId>,
    pub disk_format: Option<String>,
    pub container_format: Option<String>,
    pub size: Option<u64>,
    pub virtual_size: Option<u64>,
    /// MD5 hex of the bytes (Glance `checksum`).
    pub checksum: Option<String>,
    /// SHA-512 hex of the bytes (Glance `os_hash_value`); also the blob's address.
    pub os_hash_value: Option<String>,
    pub min_disk: u64,
    pub min_ram: u64,
    pub tags: Vec<String>,
    /// Free-form properties (Glance "additional properties"), e.g. `os_distro`, `kernel_id`.
    pub properties: BTreeMap<String, serde_json::Value>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub deleted: bool,
    pub deleted_at: Option<Timestamp>,
    pub generation: i64,
}

/// The property key under which Glance's `os_hidden` flag is kept (it is a core attribute
/// in Glance, but the record keeps it among the properties so the stored shape stays put).
pub const OS_HIDDEN: &str = "os_hidden";

impl Image {
    /// Glance `os_hidden`: hidden images stay out of the default list.
    pub fn os_hidden(&self) -> bool {
        self.properties
            .get(OS_HIDDEN)
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false)
    }

    /// The free-form ("additional") properties a client set, without the core attributes
    /// that live in the property map.
    pub fn custom_properties(&self) -> impl Iterator<Item = (&String, &serde_json::Value)> {
        self.properties
            .iter()
            .filter(|(k, _)| k.as_str() != OS_HIDDEN)
    }
}

/// Coarse filters the store applies when listing images (the control layer refines them
/// with Glance's full filter semantics).
#[derive(Clone, Debug, Default)]
pub struct ImageFilter {
    pub name: Option<String>,
    pub ids: Option<Vec<ImageId>>,
    pub status: Option<ImageStatus>,
    pub visibility: Option<Visibility>,
    pub owner: Option<ProjectId>,
    pub tags: Vec<String>,
    pub disk_format: Option<String>,
    pub container_format: Option<String>,
    pub min_ram: Option<u64>,
    pub min_disk: Option<u64>,
    pub protected: Option<bool>,
}
