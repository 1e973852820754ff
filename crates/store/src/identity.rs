//! Keystone persistence: projects, users, roles, assignments, tokens.

use async_trait::async_trait;
use nimbus_model::identity::{Project, Role, RoleAssignment, Token, User};
use nimbus_model::time::Timestamp;
use nimbus_model::{ProjectId, Result, RoleId, UserId};

#[async_trait]
pub trait IdentityStore: Send + Sync {
    /// `AlreadyExists` if the (domain, name) pair is taken.
    async fn project_create(&self, project: Project) -> Result<Project>;
    async fn project_get(&self, id: ProjectId) -> Result<Option<Project>>;
    async fn project_get_by_name(&self, domain_id: String, name: String)
    -> Result<Option<Project>>;
    async fn projects_list(&self) -> Result<Vec<Project>>;
    async fn project_update(&self, project: Project) -> Result<bool>;
    async fn project_delete(&self, id: ProjectId) -> Result<bool>;

    async fn user_create(&self, user: User) -> Result<User>;
    async fn user_get(&self, id: UserId) -> Result<Option<User>>;
    async fn user_get_by_name(&self, domain_id: String, name: String) -> Result<Option<User>>;
    async fn users_list(&self) -> Result<Vec<User>>;
    async fn user_update(&self, user: User) -> Result<bool>;
    async fn user_delete(&self, id: UserId) -> Result<bool>;

    /// Insert; `AlreadyExists` if the name is taken.
    async fn role_create(&self, role: Role) -> Result<Role>;
    async fn role_get(&self, id: RoleId) -> Result<Option<Role>>;
    async fn role_get_by_name(&self, name: String) -> Result<Option<Role>>;
    async fn roles_list(&self) -> Result<Vec<Role>>;

    /// Idempotent.
    async fn assignment_add(&self, assignment: RoleAssignment) -> Result<()>;
    async fn assignment_remove(&self, assignment: RoleAssignment) -> Result<bool>;
    /// Roles `user` holds on `project`.
    async fn roles_for(&self, user: UserId, project: ProjectId) -> Result<Vec<Role>>;
    async fn assignments_list(&self) -> Result<Vec<RoleAssignment>>;

    async fn token_insert(&self, token: Token) -> Result<()>;
    async fn token_get(&self, hash: String) -> Result<Option<Token>>;
    async fn token_delete(&self, hash: String) -> Result<bool>;
    /// Remove tokens that expired before `now`.
    async fn tokens_purge(&self, now: Timestamp) -> Result<u64>;
}
