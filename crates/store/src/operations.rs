//! Operations (persisted long-running actions) and their events.

use async_trait::async_trait;
use nimbus_model::operation::{Operation, OperationEvent};
use nimbus_model::{OperationId, Result, ServerId};

#[async_trait]
pub trait OperationStore: Send + Sync {
    async fn operation_create(&self, op: Operation) -> Result<()>;
    async fn operation_get(&self, id: OperationId) -> Result<Option<Operation>>;
    /// A server's operations, newest first.
    async fn operations_for_server(&self, server: ServerId) -> Result<Vec<Operation>>;
    async fn operation_by_request(
        &self,
        server: ServerId,
        request_id: String,
    ) -> Result<Option<Operation>>;
    /// Pending and running operations, oldest first (the engine's work list).
    async fn operations_open(&self) -> Result<Vec<Operation>>;
    /// Move a pending operation to running. `false` if it was not pending (another worker
    /// took it, or it finished).
    async fn operation_claim(&self, id: OperationId) -> Result<bool>;
    /// Persist progress (step index, state, message, finish time).
    async fn operation_update(&self, op: Operation) -> Result<()>;
    /// Start an event (or restart it after a crash: an unfinished event of the same name is
    /// reused, so a resumed step does not record a duplicate).
    async fn event_start(&self, event: OperationEvent) -> Result<()>;
    /// Finish the latest unfinished event of that name.
    async fn event_finish(&self, event: OperationEvent) -> Result<()>;
    async fn events_for(&self, op: OperationId) -> Result<Vec<OperationEvent>>;
}
