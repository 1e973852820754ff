//! Keystone's world: domains, projects, users, roles, assignments and tokens, plus the
//! per-request [`Context`] every service call receives.

use crate::ids::*;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

/// The only domain Nimbus creates; Keystone clients name it "Default" with id "default".
pub const DEFAULT_DOMAIN_ID: &str = "default";
pub const DEFAULT_DOMAIN_NAME: &str = "Default";

/// Role names with meaning to the policy.
pub const ROLE_ADMIN: &str = "admin";
pub const ROLE_MEMBER: &str = "member";
pub const ROLE_READER: &str = "reader";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Domain {
    pub id: DomainId,
    pub name: String,
    pub enabled: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Project {
    pub id: ProjectId,
    pub name: String,
    pub domain_id: DomainId,
    pub description: String,
    pub enabled: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub id: UserId,
    pub name: String,
    pub domain_id: DomainId,
    /// PHC string (argon2id). Never leaves the store except to be verified.
    pub password_hash: String,
    pub enabled: bool,
    pub default_project_id: Option<ProjectId>,
    pub email: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Role {
    pub id: RoleId,
    pub name: String,
}

/// A role a user holds on a project.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleAssignment {
    pub user_id: UserId,
    pub project_id: ProjectId,
    pub role_id: RoleId,
}

/// An issued token. Only the SHA-256 of the secret is stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Token {
    pub hash: String,
    pub user_id: UserId,
    pub project_id: Option<ProjectId>,
    pub methods: Vec<String>,
    pub roles: Vec<Role>,
    pub audit_id: String,
    pub issued_at: Timestamp,
    pub expires_at: Timestamp,
}

/// Who is calling, resolved from a token. Passed to every `control` call.
#[derive(Clone, Debug, PartialEq)]
pub struct Context {
    pub user_id: UserId,
    pub user_name: String,
    pub project_id: ProjectId,
    pub project_name: String,
    pub roles: Vec<String>,
    pub request_id: String,
}

impl Context {
    pub fn is_admin(&self) -> bool {
        self.roles.iter().any(|r| r == ROLE_ADMIN)
    }

    /// Readers may look but not touch.
    pub fn can_write(&self) -> bool {
        self.roles
            .iter()
            .any(|r| r == ROLE_ADMIN || r == ROLE_MEMBER)
    }
}
