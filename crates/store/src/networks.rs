//! Networks and NICs, with atomic address allocation.

use async_trait::async_trait;
use nimbus_model::network::{FirewallProfile, Network, Nic};
use nimbus_model::{NetworkId, NicId, ProjectId, Result, ServerId};

/// A request to connect a server to a network.
#[derive(Clone, Debug)]
pub struct NicAllocation {
    pub server_id: ServerId,
    pub server_serial: i64,
    pub network_id: NetworkId,
    pub firewall: FirewallProfile,
    /// A specific IPv4 address, or the first free one.
    pub fixed_ip: Option<String>,
}

#[async_trait]
pub trait NetworkStore: Send + Sync {
    /// Insert; assigns the serial.
    async fn network_create(&self, network: Network) -> Result<Network>;
    /// A live network by id.
    async fn network_get(&self, id: NetworkId) -> Result<Option<Network>>;
    /// By serial, deleted ones included: Cyclades shows a deleted network as DELETED and
    /// tells "deleted" (400) from "never existed" (404).
    async fn network_get_by_serial(&self, serial: i64) -> Result<Option<Network>>;
    /// Live networks a project may see (shared ones and its own; `None` = all), by serial.
    async fn networks_list(&self, project: Option<ProjectId>) -> Result<Vec<Network>>;
    /// Guarded write; the stored record, or `None` if the generation moved.
    async fn network_update(&self, network: Network) -> Result<Option<Network>>;
    /// Mark deleted; `InUse` while NICs are attached, `NotFound` if already gone.
    async fn network_delete(&self, id: NetworkId) -> Result<()>;

    /// Create a NIC: the server's next ordinal (never one a removed NIC had), a MAC unique across all NICs, the requested
    /// or first free IPv4 of the network (`Exhausted` when the pool has no free address,
    /// `Conflict` when the requested one is taken), the EUI-64 IPv6 when the network has an IPv6 prefix. One
    /// transaction: concurrent allocations never share an address.
    async fn nic_allocate(&self, req: NicAllocation) -> Result<Nic>;
    async fn nic_get(&self, id: NicId) -> Result<Option<Nic>>;
    /// NICs of these servers, by server then ordinal, with network name and serial filled.
    async fn nics_for_servers(&self, servers: Vec<ServerId>) -> Result<Vec<Nic>>;
    async fn nics_for_network(&self, network: NetworkId) -> Result<Vec<Nic>>;
    /// `false` if it did not exist.
    async fn nic_delete(&self, id: NicId) -> Result<bool>;
    /// Remove every NIC of a server (idempotent), restarting its ordinals; returns how many.
    async fn nics_release(&self, server: ServerId) -> Result<u64>;
    async fn nic_set_firewall(&self, id: NicId, profile: FirewallProfile) -> Result<Option<Nic>>;
}
