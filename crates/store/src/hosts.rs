//! Compute hosts and the resource claims servers hold on them.

use async_trait::async_trait;
use nimbus_model::host::{Host, HostUsage, Resources};
use nimbus_model::{HostId, Result, ServerGroupId, ServerId};

/// A server-group rule the claim must respect, checked in the claim's transaction so two
/// concurrent members cannot both see "no conflict".
#[derive(Clone, Debug)]
pub enum GroupConstraint {
    /// Every other live member must be on this host (or there are none yet).
    Affinity(ServerGroupId),
    /// Fewer than `max_per_host` other live members may be on this host, so placing this one
    /// keeps the count ≤ `max_per_host`.
    AntiAffinity {
        group: ServerGroupId,
        max_per_host: u32,
    },
}

/// A request to reserve `resources` on `host` for `server`.
#[derive(Clone, Debug)]
pub struct Claim {
    pub host_id: HostId,
    pub server_id: ServerId,
    pub resources: Resources,
    pub group: Option<GroupConstraint>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClaimOutcome {
    Claimed,
    /// The host lacks capacity (after allocation ratios) or is gone/disabled/down.
    NoCapacity,
    /// The server group's policy forbids this host.
    GroupConflict,
}

#[async_trait]
pub trait HostStore: Send + Sync {
    /// Insert a host, or update the one with the same name keeping its id and serial.
    async fn host_upsert(&self, host: Host) -> Result<Host>;
    async fn host_get(&self, id: HostId) -> Result<Option<Host>>;
    async fn host_get_by_serial(&self, serial: i64) -> Result<Option<Host>>;
    async fn hosts_list(&self) -> Result<Vec<Host>>;
    /// Replace the stored record; `false` if it is gone.
    async fn host_update(&self, host: Host) -> Result<bool>;
    /// Remove a host record (os-services delete); `false` if it was not there. The caller
    /// makes sure no server is placed on it.
    async fn host_delete(&self, id: HostId) -> Result<bool>;
    /// Every host with the sum of its claims.
    async fn host_usages(&self) -> Result<Vec<HostUsage>>;
    /// Atomically check capacity (and the group rule) and record the claim. A server holds
    /// at most one claim: claiming again replaces the previous one (resize).
    async fn claim(&self, claim: Claim) -> Result<ClaimOutcome>;
    /// Drop a server's claim (idempotent).
    async fn release(&self, server: ServerId) -> Result<()>;
    async fn allocation_get(&self, server: ServerId) -> Result<Option<(HostId, Resources)>>;
}
