//! Storage pools and data volumes, with atomic capacity and quota checks and attachment.

use async_trait::async_trait;
use nimbus_model::volume::{StoragePool, Volume};
use nimbus_model::{PoolId, ProjectId, Result, ServerId, VolumeId};

#[async_trait]
pub trait VolumeStore: Send + Sync {
    /// Insert; `AlreadyExists` if the name is taken. Assigns the serial.
    async fn pool_create(&self, pool: StoragePool) -> Result<StoragePool>;
    /// Every pool with `used_gb` filled, by serial.
    async fn pools_list(&self) -> Result<Vec<StoragePool>>;
    async fn pool_get(&self, id: PoolId) -> Result<Option<StoragePool>>;

    /// Insert a volume if its pool has room and the project's `volumes`/`gigabytes` limits
    /// (`-1` = unlimited) allow it, in one transaction. `Conflict` when the pool is full,
    /// `OverQuota` over a limit.
    async fn volume_create(
        &self,
        volume: Volume,
        max_volumes: i64,
        max_gigabytes: i64,
    ) -> Result<Volume>;
    async fn volume_get(&self, id: VolumeId) -> Result<Option<Volume>>;
    /// Live volumes of a project (`None` = all), by serial.
    async fn volumes_list(&self, project: Option<ProjectId>) -> Result<Vec<Volume>>;
    /// Delete an available volume; `InUse` while attached, `NotFound` if gone.
    async fn volume_delete(&self, id: VolumeId) -> Result<()>;
    /// Attach volumes to a server, all or nothing: each must be live, owned by `project`
    /// and available (or already attached to this server, which is a no-op). Devices are
    /// assigned after the server's existing ones.
    async fn volumes_attach(
        &self,
        server: ServerId,
        project: ProjectId,
        ids: Vec<VolumeId>,
    ) -> Result<Vec<Volume>>;
    /// Detach every volume of a server (idempotent).
    async fn volumes_detach_server(&self, server: ServerId) -> Result<u64>;
    async fn volumes_for_servers(&self, servers: Vec<ServerId>) -> Result<Vec<Volume>>;
}
