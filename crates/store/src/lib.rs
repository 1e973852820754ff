//! Persistence. One [`Store`] trait, split into one sub-trait per resource (mirroring
//! `control/<resource>.rs` and the API modules), and its SQLite implementation.
//!
//! Rules every backend keeps:
//! - Writes that change a resource's state are conditional on its `generation` and report
//!   whether they applied (`Ok(false)` = someone else wrote first; re-read and decide again).
//! - Multi-row invariants (quota vs. usage, host capacity vs. claims, group policies) are
//!   checked inside the same transaction as the write that depends on them.
//! - Backend errors are mapped to [`nimbus_model::Error`] here; nothing above sees SQL.
//!
//! Storage layout: each resource has typed columns for what is filtered, sorted or summed,
//! plus a JSON document with the whole record. See `docs/storage.md`.

pub mod conformance;
mod flavors;
mod hosts;
mod identity;
mod images;
mod keypairs;
mod networks;
mod operations;
mod quotas;
mod server_groups;
mod servers;
pub mod sqlite;
mod stats;
mod volumes;

pub use flavors::FlavorStore;
pub use hosts::{Claim, ClaimOutcome, GroupConstraint, HostStore};
pub use identity::IdentityStore;
pub use images::ImageStore;
pub use keypairs::KeypairStore;
pub use networks::{NetworkStore, NicAllocation};
pub use operations::OperationStore;
pub use quotas::QuotaStore;
pub use server_groups::ServerGroupStore;
pub use servers::{ServerCreateOutcome, ServerStore};
pub use sqlite::SqliteStore;
pub use stats::StatsStore;
pub use volumes::VolumeStore;

/// The whole persistence interface.
pub trait Store:
    ServerStore
    + FlavorStore
    + ImageStore
    + IdentityStore
    + KeypairStore
    + NetworkStore
    + OperationStore
    + QuotaStore
    + HostStore
    + ServerGroupStore
    + StatsStore
    + VolumeStore
    + Send
    + Sync
    + 'static
{
}

impl<T> Store for T where
    T: ServerStore
        + FlavorStore
        + ImageStore
        + IdentityStore
        + KeypairStore
        + NetworkStore
        + OperationStore
        + QuotaStore
        + HostStore
        + ServerGroupStore
        + StatsStore
        + VolumeStore
        + Send
        + Sync
        + 'static
{
}

/// Open a store from a URL: `sqlite:PATH`, `sqlite::memory:` or a bare path.
pub async fn open(url: &str) -> nimbus_model::Result<std::sync::Arc<dyn Store>> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Err(nimbus_model::Error::NotImplemented(
            "the PostgreSQL backend is not available in this build".into(),
        ));
    }
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    let store = if path == ":memory:" {
        SqliteStore::memory().await?
    } else {
        SqliteStore::open(path).await?
    };
    Ok(std::sync::Arc::new(store))
}
