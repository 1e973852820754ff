//! Flavors: hardware shapes a server boots with.

use crate::ids::*;
use crate::server::FlavorSnapshot;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Flavor {
    pub id: FlavorId,
    /// Numeric serial (Cyclades flavor id).
    pub serial: i64,
    pub name: String,
    pub vcpus: u32,
    pub ram_mb: u64,
    pub disk_gb: u64,
    pub ephemeral_gb: u64,
    pub swap_mb: u64,
    pub rxtx_factor: f64,
    pub is_public: bool,
    pub disabled: bool,
    pub description: Option<String>,
    pub extra_specs: BTreeMap<String, String>,
    pub created_at: Timestamp,
}

impl Flavor {
    pub fn snapshot(&self) -> FlavorSnapshot {
        FlavorSnapshot {
            id: self.id.clone(),
            name: self.name.clone(),
            vcpus: self.vcpus,
            ram_mb: self.ram_mb,
            disk_gb: self.disk_gb,
            ephemeral_gb: self.ephemeral_gb,
            swap_mb: self.swap_mb,
            extra_specs: self.extra_specs.clone(),
        }
    }
}

/// What an admin sends to create a flavor; `id: None` generates a UUID.
#[derive(Clone, Debug)]
pub struct FlavorCreate {
    pub id: Option<FlavorId>,
    pub name: String,
    pub vcpus: u32,
    pub ram_mb: u64,
    pub disk_gb: u64,
    pub ephemeral_gb: u64,
    pub swap_mb: u64,
    pub rxtx_factor: f64,
    pub is_public: bool,
    pub description: Option<String>,
}
