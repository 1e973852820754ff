//! Quotas: per-project limits, with defaults from configuration.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The resources Nova's `os-quota-sets` reports (microversion ≥ 2.57 drops the injected-file
/// and network ones from the body; the store keeps them all).
pub const QUOTA_RESOURCES: &[&str] = &[
    "instances",
    "cores",
    "ram",
    "key_pairs",
    "metadata_items",
    "server_groups",
    "server_group_members",
    "injected_files",
    "injected_file_content_bytes",
    "injected_file_path_bytes",
    "volumes",
    "gigabytes",
];

/// Limits for one project; `-1` means unlimited, as in Nova.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaSet {
    pub limits: BTreeMap<String, i64>,
}

impl QuotaSet {
    /// Nova's defaults.
    pub fn nova_defaults() -> Self {
        let limits = [
            ("instances", 10),
            ("cores", 20),
            ("ram", 51200),
            ("key_pairs", 100),
            ("metadata_items", 128),
            ("server_groups", 10),
            ("server_group_members", 10),
            ("injected_files", 5),
            ("injected_file_content_bytes", 10240),
            ("injected_file_path_bytes", 255),
            // Cinder's defaults.
            ("volumes", 10),
            ("gigabytes", 1000),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        QuotaSet { limits }
    }

    pub fn get(&self, resource: &str) -> i64 {
        self.limits.get(resource).copied().unwrap_or(-1)
    }
}

/// What a project uses now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComputeUsage {
    pub instances: i64,
    pub cores: i64,
    pub ram: i64,
}

/// Check a requested delta against limits; returns the first resource that would be
/// exceeded, with (limit, used, requested).
pub fn first_exceeded(
    limits: &QuotaSet,
    used: &ComputeUsage,
    want: &ComputeUsage,
) -> Option<(&'static str, i64, i64, i64)> {
    for (name, u, w) in [
        ("instances", used.instances, want.instances),
        ("cores", used.cores, want.cores),
        ("ram", used.ram, want.ram),
    ] {
        let limit = limits.get(name);
        if limit >= 0 && u + w > limit {
            return Some((name, limit, u, w));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_check_table() {
        let q = QuotaSet::nova_defaults();
        let used = ComputeUsage {
            instances: 9,
            cores: 18,
            ram: 1024,
        };
        let one = ComputeUsage {
            instances: 1,
            cores: 2,
            ram: 512,
        };
        assert_eq!(first_exceeded(&q, &used, &one), None);
        let two = ComputeUsage {
            instances: 2,
            cores: 2,
            ram: 512,
        };
        assert_eq!(
            first_exceeded(&q, &used, &two),
            Some(("instances", 10, 9, 2))
        );
        let fat = ComputeUsage {
            instances: 1,
            cores: 4,
            ram: 512,
        };
        assert_eq!(first_exceeded(&q, &used, &fat), Some(("cores", 20, 18, 4)));
        let mut unlimited = q.clone();
        unlimited.limits.insert("instances".into(), -1);
        assert_eq!(first_exceeded(&unlimited, &used, &two), None);
    }
}
