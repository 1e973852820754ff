//! Per-project quota overrides (defaults come from configuration).

use async_trait::async_trait;
use nimbus_model::{ProjectId, Result};
use std::collections::BTreeMap;

#[async_trait]
pub trait QuotaStore: Send + Sync {
    /// The project's overrides only.
    async fn quota_overrides(&self, project: ProjectId) -> Result<BTreeMap<String, i64>>;
    async fn quota_set(&self, project: ProjectId, limits: BTreeMap<String, i64>) -> Result<()>;
    /// Back to defaults.
    async fn quota_clear(&self, project: ProjectId) -> Result<()>;
}
