//! Server persistence.

use async_trait::async_trait;
use nimbus_model::operation::Operation;
use nimbus_model::quota::{ComputeUsage, QuotaSet};
use nimbus_model::server::{Server, ServerFilter, ServerPage};
use nimbus_model::time::Timestamp;
use nimbus_model::{Result, ServerId};

/// The result of an atomic quota-checked create.
#[derive(Debug)]
pub enum ServerCreateOutcome {
    /// Stored, with serials assigned.
    Created(Vec<Server>),
    /// Nothing stored: `resource` would exceed `limit` (`used` now, `requested` more).
    OverQuota {
        resource: String,
        limit: i64,
        used: i64,
        requested: i64,
    },
}

#[async_trait]
pub trait ServerStore: Send + Sync {
    /// Insert `servers` (and one operation per server) in one transaction, after checking the
    /// owning project's usage plus the new servers against `quota`, and attaching each
    /// server's requested `volumes` (as `VolumeStore::volumes_attach` would). All or nothing.
    async fn servers_create(
        &self,
        servers: Vec<Server>,
        operations: Vec<Operation>,
        quota: QuotaSet,
    ) -> Result<ServerCreateOutcome>;

    /// A server by id, including soft-deleted rows.
    async fn server_get(&self, id: ServerId) -> Result<Option<Server>>;

    /// A server by its numeric serial, including soft-deleted rows.
    async fn server_get_by_serial(&self, serial: i64) -> Result<Option<Server>>;

    /// Servers matching `filter`, ordered and paged by `page`. A marker that is not in the
    /// filtered set is an `InvalidRequest` naming it.
    async fn servers_list(&self, filter: ServerFilter, page: ServerPage) -> Result<Vec<Server>>;

    /// Write `server` if its stored generation still equals `server.generation`. Returns the
    /// stored record (generation bumped), or `None` if another write came first.
    async fn server_update(&self, server: Server) -> Result<Option<Server>>;

    /// [`Self::server_update`] and insert `operation`, in one transaction.
    async fn server_update_with_operation(
        &self,
        server: Server,
        operation: Operation,
    ) -> Result<Option<Server>>;

    /// What a project's live servers use (for quotas and limits).
    async fn compute_usage(&self, project_id: nimbus_model::ProjectId) -> Result<ComputeUsage>;

    /// Remove soft-deleted servers deleted before `before` and their operations.
    async fn servers_purge(&self, before: Timestamp) -> Result<u64>;
}
