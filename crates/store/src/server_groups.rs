//! Server group persistence. Membership is not stored here: it is derived from the
//! `server_group` of live servers, so it can never disagree with them.

use async_trait::async_trait;
use nimbus_model::server_group::ServerGroup;
use nimbus_model::{ProjectId, Result, ServerGroupId};

#[async_trait]
pub trait ServerGroupStore: Send + Sync {
    async fn server_group_create(&self, group: ServerGroup) -> Result<ServerGroup>;
    /// With `members` filled from live servers.
    async fn server_group_get(&self, id: ServerGroupId) -> Result<Option<ServerGroup>>;
    /// A project's groups (`None` = all), with members.
    async fn server_groups_list(&self, project: Option<ProjectId>) -> Result<Vec<ServerGroup>>;
    async fn server_group_delete(&self, id: ServerGroupId) -> Result<bool>;
}
