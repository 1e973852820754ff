//! Server groups: affinity and anti-affinity policies the scheduler honours.

use crate::ids::*;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GroupPolicy {
    Affinity,
    AntiAffinity,
    SoftAffinity,
    SoftAntiAffinity,
}

impl GroupPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            GroupPolicy::Affinity => "affinity",
            GroupPolicy::AntiAffinity => "anti-affinity",
            GroupPolicy::SoftAffinity => "soft-affinity",
            GroupPolicy::SoftAntiAffinity => "soft-anti-affinity",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "affinity" => Some(Self::Affinity),
            "anti-affinity" => Some(Self::AntiAffinity),
            "soft-affinity" => Some(Self::SoftAffinity),
            "soft-anti-affinity" => Some(Self::SoftAntiAffinity),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServerGroup {
    pub id: ServerGroupId,
    pub name: String,
    pub policy: GroupPolicy,
    /// `max_server_per_host` for anti-affinity (microversion 2.64 rules).
    pub max_server_per_host: Option<u32>,
    pub project_id: ProjectId,
    pub user_id: UserId,
    pub members: Vec<ServerId>,
    pub created_at: Timestamp,
}
