//! Server statistics samples.

use async_trait::async_trait;
use nimbus_model::stats::Sample;
use nimbus_model::time::Timestamp;
use nimbus_model::{Result, ServerId};

#[async_trait]
pub trait StatsStore: Send + Sync {
    async fn samples_insert(&self, samples: Vec<Sample>) -> Result<()>;
    /// A server's samples at or after `since`, oldest first.
    async fn samples_for(&self, server: ServerId, since: Timestamp) -> Result<Vec<Sample>>;
    /// Drop samples older than `before`; returns how many.
    async fn samples_purge(&self, before: Timestamp) -> Result<u64>;
}
