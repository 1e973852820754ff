//! Identity: password and token authentication, token validation (cached), bootstrap of the
//! admin project/user, and the admin CRUD Keystone clients need.
//!
//! Tokens are 32 random bytes (URL-safe base64); only their SHA-256 is stored. Passwords are
//! argon2id PHC strings. A validated token is cached in memory until it expires or an
//! identity change (user, role, project) clears the cache.

use crate::Control;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine as _;
use nimbus_model::identity::*;
use nimbus_model::time::{Timestamp, now};
use nimbus_model::*;
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::RwLock;

/// Everything a validated token says about its bearer.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenInfo {
    pub user: User,
    pub project: Option<Project>,
    pub roles: Vec<Role>,
    pub methods: Vec<String>,
    pub audit_id: String,
    pub issued_at: Timestamp,
    pub expires_at: Timestamp,
}

impl TokenInfo {
    /// The request context for this bearer. `None` for unscoped tokens.
    pub fn context(&self, request_id: String) -> Option<Context> {
        let project = self.project.as_ref()?;
        Some(Context {
            user_id: self.user.id.clone(),
            user_name: self.user.name.clone(),
            project_id: project.id.clone(),
            project_name: project.name.clone(),
            roles: self.roles.iter().map(|r| r.name.clone()).collect(),
            request_id,
        })
    }
}

/// A freshly issued token: the secret is shown once.
#[derive(Clone, Debug)]
pub struct IssuedToken {
    pub secret: String,
    pub info: TokenInfo,
}

/// How a request names a user.
#[derive(Clone, Debug)]
pub enum UserRef {
    Id(UserId),
    Name { name: String, domain: DomainRef },
}

/// How a request names a project (scope).
#[derive(Clone, Debug)]
pub enum ProjectRef {
    Id(ProjectId),
    Name { name: String, domain: DomainRef },
}

#[derive(Clone, Debug)]
pub enum DomainRef {
    Id(String),
    Name(String),
}

impl DomainRef {
    /// Nimbus has one domain; anything else does not exist.
    fn resolve(&self) -> Option<&'static str> {
        match self {
            DomainRef::Id(id) if id == DEFAULT_DOMAIN_ID => Some(DEFAULT_DOMAIN_ID),
            DomainRef::Name(n) if n == DEFAULT_DOMAIN_NAME => Some(DEFAULT_DOMAIN_ID),
            _ => None,
        }
    }
}

/// Validated tokens by hash.
#[derive(Default)]
pub(crate) struct TokenCache {
    map: RwLock<HashMap<String, TokenInfo>>,
}

impl TokenCache {
    fn get(&self, hash: &str) -> Option<TokenInfo> {
        self.map
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(hash)
            .cloned()
    }

    fn put(&self, hash: String, info: TokenInfo) {
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        if map.len() > 100_000 {
            let t = now();
            map.retain(|_, i| i.expires_at > t);
        }
        map.insert(hash, info);
    }

    fn remove(&self, hash: &str) {
        self.map
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(hash);
    }

    pub(crate) fn clear(&self) {
        self.map.write().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

fn token_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn unauthorized() -> Error {
    Error::Unauthenticated("The request you have made requires authentication.".into())
}

/// What the bootstrap did.
#[derive(Clone, Debug)]
pub struct Bootstrap {
    pub admin_user: User,
    pub admin_project: Project,
    /// Set only when this call created the admin user (first start).
    pub generated_password: Option<String>,
}

impl Control {
    fn argon2(&self) -> Result<argon2::Argon2<'static>> {
        let params = argon2::Params::new(
            self.inner.config.argon2_m_kib,
            self.inner.config.argon2_t,
            1,
            None,
        )
        .map_err(|e| Error::internal(format!("argon2 params: {e}")))?;
        Ok(argon2::Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            params,
        ))
    }

    /// Hash a password (on the blocking pool: argon2 is deliberately slow).
    pub async fn hash_password(&self, password: &str) -> Result<String> {
        let argon = self.argon2()?;
        let password = password.to_owned();
        tokio::task::spawn_blocking(move || {
            let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
            argon
                .hash_password(password.as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|e| Error::internal(format!("hash password: {e}")))
        })
        .await
        .map_err(|e| Error::internal(format!("hash task: {e}")))?
    }

    async fn verify_password(&self, password: &str, phc: &str) -> Result<bool> {
        let password = password.to_owned();
        let phc = phc.to_owned();
        tokio::task::spawn_blocking(move || {
            let parsed = PasswordHash::new(&phc)
                .map_err(|e| Error::internal(format!("stored hash: {e}")))?;
            Ok(argon2::Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok())
        })
        .await
        .map_err(|e| Error::internal(format!("verify task: {e}")))?
    }

    async fn find_user(&self, r: &UserRef) -> Result<Option<User>> {
        match r {
            UserRef::Id(id) => self.inner.store.user_get(id.clone()).await,
            UserRef::Name { name, domain } => match domain.resolve() {
                Some(d) => {
                    self.inner
                        .store
                        .user_get_by_name(d.to_owned(), name.clone())
                        .await
                }
                None => Ok(None),
            },
        }
    }

    async fn find_project(&self, r: &ProjectRef) -> Result<Option<Project>> {
        match r {
            ProjectRef::Id(id) => self.inner.store.project_get(id.clone()).await,
            ProjectRef::Name { name, domain } => match domain.resolve() {
                Some(d) => {
                    self.inner
                        .store
                        .project_get_by_name(d.to_owned(), name.clone())
                        .await
                }
                None => Ok(None),
            },
        }
    }

    /// Build and store a token for `user` scoped to `scope`.
    async fn issue(
        &self,
        user: User,
        scope: Option<&ProjectRef>,
        methods: Vec<String>,
        audit_id: Option<String>,
    ) -> Result<IssuedToken> {
        let (project, roles) = match scope {
            Some(p) => {
                let project = self
                    .find_project(p)
                    .await?
                    .filter(|p| p.enabled)
                    .ok_or_else(unauthorized)?;
                let roles = self
                    .inner
                    .store
                    .roles_for(user.id.clone(), project.id.clone())
                    .await?;
                if roles.is_empty() {
                    return Err(unauthorized());
                }
                let all = self.inner.store.roles_list().await?;
                (Some(project), with_implied_roles(roles, &all))
            }
            None => (None, Vec::new()),
        };
        let mut raw = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut raw);
        let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
        let issued_at = now();
        let ttl = chrono::Duration::from_std(self.inner.config.token_ttl)
            .unwrap_or(chrono::Duration::hours(1));
        let audit = audit_id.unwrap_or_else(|| {
            let mut a = [0u8; 16];
            rand::thread_rng().fill_bytes(&mut a);
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(a)
        });
        let info = TokenInfo {
            user: user.clone(),
            project: project.clone(),
            roles: roles.clone(),
            methods: methods.clone(),
            audit_id: audit.clone(),
            issued_at,
            expires_at: issued_at + ttl,
        };
        let hash = token_hash(&secret);
        self.inner
            .store
            .token_insert(Token {
                hash: hash.clone(),
                user_id: user.id.clone(),
                project_id: project.map(|p| p.id),
                methods,
                roles,
                audit_id: audit,
                issued_at,
                expires_at: info.expires_at,
            })
            .await?;
        self.inner.tokens.put(hash, info.clone());
        Ok(IssuedToken { secret, info })
    }

    /// Keystone `password` method.
    pub async fn authenticate_password(
        &self,
        user: &UserRef,
        password: &str,
        scope: Option<&ProjectRef>,
    ) -> Result<IssuedToken> {
        let Some(u) = self.find_user(user).await?.filter(|u| u.enabled) else {
            return Err(unauthorized());
        };
        if !self.verify_password(password, &u.password_hash).await? {
            return Err(unauthorized());
        }
        // Keystone: without an explicit scope, a user with a default project they hold a role
        // on gets a token scoped to it; otherwise the token is unscoped.
        let default_scope = match (scope, &u.default_project_id) {
            (None, Some(p))
                if !self
                    .inner
                    .store
                    .roles_for(u.id.clone(), p.clone())
                    .await?
                    .is_empty() =>
            {
                Some(ProjectRef::Id(p.clone()))
            }
            _ => None,
        };
        let scope = scope.or(default_scope.as_ref());
        self.issue(u, scope, vec!["password".into()], None).await
    }

    /// Keystone `token` method: a new token from a valid one, possibly rescoped.
    pub async fn authenticate_token(
        &self,
        secret: &str,
        scope: Option<&ProjectRef>,
    ) -> Result<IssuedToken> {
        let old = self.validate_token(secret).await?;
        let scope = match scope {
            Some(s) => Some(s.clone()),
            None => old.project.as_ref().map(|p| ProjectRef::Id(p.id.clone())),
        };
        let mut methods = old.methods.clone();
        if !methods.iter().any(|m| m == "token") {
            methods.push("token".into());
        }
        self.issue(old.user, scope.as_ref(), methods, Some(old.audit_id))
            .await
    }

    /// Resolve a token, or 401.
    pub async fn validate_token(&self, secret: &str) -> Result<TokenInfo> {
        let hash = token_hash(secret);
        let t = now();
        if let Some(info) = self.inner.tokens.get(&hash) {
            if info.expires_at > t {
                return Ok(info);
            }
            self.inner.tokens.remove(&hash);
            return Err(unauthorized());
        }
        let token = self
            .inner
            .store
            .token_get(hash.clone())
            .await?
            .ok_or_else(unauthorized)?;
        if token.expires_at <= t {
            return Err(unauthorized());
        }
        let user = self
            .inner
            .store
            .user_get(token.user_id.clone())
            .await?
            .filter(|u| u.enabled)
            .ok_or_else(unauthorized)?;
        let project = match &token.project_id {
            Some(p) => Some(
                self.inner
                    .store
                    .project_get(p.clone())
                    .await?
                    .filter(|p| p.enabled)
                    .ok_or_else(unauthorized)?,
            ),
            None => None,
        };
        let info = TokenInfo {
            user,
            project,
            roles: token.roles,
            methods: token.methods,
            audit_id: token.audit_id,
            issued_at: token.issued_at,
            expires_at: token.expires_at,
        };
        self.inner.tokens.put(hash, info.clone());
        Ok(info)
    }

    /// Keystone `DELETE /v3/auth/tokens`.
    pub async fn revoke_token(&self, secret: &str) -> Result<()> {
        let hash = token_hash(secret);
        self.inner.tokens.remove(&hash);
        if !self.inner.store.token_delete(hash).await? {
            return Err(Error::not_found("Could not find token."));
        }
        Ok(())
    }

    /// Create the roles, the admin project and user on first start. Idempotent: on later
    /// starts it finds them and changes nothing (the admin password is only set when the
    /// user is created, or when `reset_password` is given).
    pub async fn bootstrap(
        &self,
        admin_password: Option<&str>,
        reset_password: bool,
    ) -> Result<Bootstrap> {
        let store = &self.inner.store;
        let mut admin_role = None;
        for name in [ROLE_ADMIN, ROLE_MEMBER, ROLE_READER] {
            let role = match store.role_get_by_name(name.into()).await? {
                Some(r) => r,
                None => {
                    store
                        .role_create(Role {
                            id: RoleId(keystone_id()),
                            name: name.into(),
                        })
                        .await?
                }
            };
            if name == ROLE_ADMIN {
                admin_role = Some(role);
            }
        }
        let admin_role = admin_role.ok_or_else(|| Error::internal("admin role missing"))?;
        let project = match store
            .project_get_by_name(DEFAULT_DOMAIN_ID.into(), "admin".into())
            .await?
        {
            Some(p) => p,
            None => {
                store
                    .project_create(Project {
                        id: ProjectId(keystone_id()),
                        name: "admin".into(),
                        domain_id: DomainId::from(DEFAULT_DOMAIN_ID),
                        description: "Bootstrap project for initializing the cloud.".into(),
                        enabled: true,
                    })
                    .await?
            }
        };
        let mut generated = None;
        let user = match store
            .user_get_by_name(DEFAULT_DOMAIN_ID.into(), "admin".into())
            .await?
        {
            Some(mut u) => {
                if reset_password {
                    let pw = admin_password
                        .map(str::to_owned)
                        .unwrap_or_else(crate::servers::generate_password);
                    u.password_hash = self.hash_password(&pw).await?;
                    store.user_update(u.clone()).await?;
                    if admin_password.is_none() {
                        generated = Some(pw);
                    }
                }
                u
            }
            None => {
                let pw = admin_password.map(str::to_owned).unwrap_or_else(|| {
                    let mut raw = [0u8; 18];
                    rand::thread_rng().fill_bytes(&mut raw);
                    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
                });
                let u = store
                    .user_create(User {
                        id: UserId(keystone_id()),
                        name: "admin".into(),
                        domain_id: DomainId::from(DEFAULT_DOMAIN_ID),
                        password_hash: self.hash_password(&pw).await?,
                        enabled: true,
                        default_project_id: Some(project.id.clone()),
                        email: None,
                    })
                    .await?;
                if admin_password.is_none() {
                    generated = Some(pw);
                }
                u
            }
        };
        store
            .assignment_add(RoleAssignment {
                user_id: user.id.clone(),
                project_id: project.id.clone(),
                role_id: admin_role.id,
            })
            .await?;
        self.inner.tokens.clear();
        Ok(Bootstrap {
            admin_user: user,
            admin_project: project,
            generated_password: generated,
        })
    }

    // ---- admin CRUD (Keystone v3 projects, users, roles, assignments) ----

    fn identity_admin(ctx: &Context, what: &str) -> Result<()> {
        if ctx.is_admin() {
            Ok(())
        } else {
            Err(Error::Forbidden(format!(
                "You are not authorized to perform the requested action: {what}."
            )))
        }
    }

    pub async fn project_create(
        &self,
        ctx: &Context,
        name: &str,
        description: &str,
        enabled: bool,
    ) -> Result<Project> {
        Self::identity_admin(ctx, "identity:create_project")?;
        if name.is_empty() || name.len() > 64 {
            return Err(Error::invalid(
                "Invalid input for field 'name': must be 1-64 characters.",
            ));
        }
        self.inner
            .store
            .project_create(Project {
                id: ProjectId(keystone_id()),
                name: name.to_owned(),
                domain_id: DomainId::from(DEFAULT_DOMAIN_ID),
                description: description.to_owned(),
                enabled,
            })
            .await
            .map_err(|e| match e {
                Error::AlreadyExists(m) => Error::Conflict(m),
                e => e,
            })
    }

    pub async fn projects_list(&self, ctx: &Context) -> Result<Vec<Project>> {
        if ctx.is_admin() {
            return self.inner.store.projects_list().await;
        }
        // Non-admins see the projects they have roles on.
        let mine: Vec<ProjectId> = self
            .inner
            .store
            .assignments_list()
            .await?
            .into_iter()
            .filter(|a| a.user_id == ctx.user_id)
            .map(|a| a.project_id)
            .collect();
        Ok(self
            .inner
            .store
            .projects_list()
            .await?
            .into_iter()
            .filter(|p| mine.contains(&p.id))
            .collect())
    }

    pub async fn project_get(&self, ctx: &Context, id: &ProjectId) -> Result<Project> {
        let p = self
            .inner
            .store
            .project_get(id.clone())
            .await?
            .ok_or_else(|| Error::not_found(format!("Could not find project: {id}.")))?;
        if !ctx.is_admin() && p.id != ctx.project_id {
            return Err(Error::Forbidden(
                "You are not authorized to perform the requested action: identity:get_project."
                    .into(),
            ));
        }
        Ok(p)
    }

    pub async fn project_update(
        &self,
        ctx: &Context,
        id: &ProjectId,
        name: Option<String>,
        description: Option<String>,
        enabled: Option<bool>,
    ) -> Result<Project> {
        Self::identity_admin(ctx, "identity:update_project")?;
        let mut p = self.project_get(ctx, id).await?;
        if let Some(n) = name {
            p.name = n;
        }
        if let Some(d) = description {
            p.description = d;
        }
        if let Some(e) = enabled {
            p.enabled = e;
        }
        self.inner.store.project_update(p.clone()).await?;
        self.inner.tokens.clear();
        Ok(p)
    }

    pub async fn project_delete(&self, ctx: &Context, id: &ProjectId) -> Result<()> {
        Self::identity_admin(ctx, "identity:delete_project")?;
        if !self.inner.store.project_delete(id.clone()).await? {
            return Err(Error::not_found(format!("Could not find project: {id}.")));
        }
        self.inner.tokens.clear();
        Ok(())
    }

    pub async fn user_create(
        &self,
        ctx: &Context,
        name: &str,
        password: Option<&str>,
        default_project: Option<ProjectId>,
        enabled: bool,
        email: Option<String>,
    ) -> Result<User> {
        Self::identity_admin(ctx, "identity:create_user")?;
        if name.is_empty() || name.len() > 255 {
            return Err(Error::invalid(
                "Invalid input for field 'name': must be 1-255 characters.",
            ));
        }
        let hash = match password {
            Some(p) => self.hash_password(p).await?,
            // No password: nobody can log in as this user until one is set.
            None => "!".into(),
        };
        self.inner
            .store
            .user_create(User {
                id: UserId(keystone_id()),
                name: name.to_owned(),
                domain_id: DomainId::from(DEFAULT_DOMAIN_ID),
                password_hash: hash,
                enabled,
                default_project_id: default_project,
                email,
            })
            .await
            .map_err(|e| match e {
                Error::AlreadyExists(m) => Error::Conflict(m),
                e => e,
            })
    }

    pub async fn users_list(&self, ctx: &Context) -> Result<Vec<User>> {
        Self::identity_admin(ctx, "identity:list_users")?;
        self.inner.store.users_list().await
    }

    pub async fn user_get(&self, ctx: &Context, id: &UserId) -> Result<User> {
        if !ctx.is_admin() && *id != ctx.user_id {
            return Err(Error::Forbidden(
                "You are not authorized to perform the requested action: identity:get_user.".into(),
            ));
        }
        self.inner
            .store
            .user_get(id.clone())
            .await?
            .ok_or_else(|| Error::not_found(format!("Could not find user: {id}.")))
    }

    pub async fn user_update(
        &self,
        ctx: &Context,
        id: &UserId,
        name: Option<String>,
        password: Option<String>,
        enabled: Option<bool>,
        default_project: Option<Option<ProjectId>>,
    ) -> Result<User> {
        Self::identity_admin(ctx, "identity:update_user")?;
        let mut u = self.user_get(ctx, id).await?;
        if let Some(n) = name {
            u.name = n;
        }
        if let Some(p) = password {
            u.password_hash = self.hash_password(&p).await?;
        }
        if let Some(e) = enabled {
            u.enabled = e;
        }
        if let Some(p) = default_project {
            u.default_project_id = p;
        }
        self.inner.store.user_update(u.clone()).await?;
        self.inner.tokens.clear();
        Ok(u)
    }

    pub async fn user_delete(&self, ctx: &Context, id: &UserId) -> Result<()> {
        Self::identity_admin(ctx, "identity:delete_user")?;
        if !self.inner.store.user_delete(id.clone()).await? {
            return Err(Error::not_found(format!("Could not find user: {id}.")));
        }
        self.inner.tokens.clear();
        Ok(())
    }

    pub async fn roles_list(&self, _ctx: &Context) -> Result<Vec<Role>> {
        self.inner.store.roles_list().await
    }

    pub async fn role_get(&self, id: &RoleId) -> Result<Role> {
        self.inner
            .store
            .role_get(id.clone())
            .await?
            .ok_or_else(|| Error::not_found(format!("Could not find role: {id}.")))
    }

    /// Grant (`grant = true`) or revoke a role on a project.
    pub async fn role_assignment(
        &self,
        ctx: &Context,
        project: &ProjectId,
        user: &UserId,
        role: &RoleId,
        grant: bool,
    ) -> Result<()> {
        Self::identity_admin(ctx, "identity:create_grant")?;
        self.inner
            .store
            .project_get(project.clone())
            .await?
            .ok_or_else(|| Error::not_found(format!("Could not find project: {project}.")))?;
        self.inner
            .store
            .user_get(user.clone())
            .await?
            .ok_or_else(|| Error::not_found(format!("Could not find user: {user}.")))?;
        self.role_get(role).await?;
        let a = RoleAssignment {
            user_id: user.clone(),
            project_id: project.clone(),
            role_id: role.clone(),
        };
        if grant {
            self.inner.store.assignment_add(a).await?;
        } else if !self.inner.store.assignment_remove(a).await? {
            return Err(Error::not_found(format!(
                "Could not find role assignment with role: {role}, user or group: {user}, project, domain, or system: {project}."
            )));
        }
        self.inner.tokens.clear();
        Ok(())
    }

    /// Is `role` granted to `user` on `project`?
    pub async fn role_check(
        &self,
        ctx: &Context,
        project: &ProjectId,
        user: &UserId,
        role: &RoleId,
    ) -> Result<bool> {
        Self::identity_admin(ctx, "identity:check_grant")?;
        Ok(self
            .inner
            .store
            .roles_for(user.clone(), project.clone())
            .await?
            .iter()
            .any(|r| &r.id == role))
    }

    pub async fn role_assignments_list(&self, ctx: &Context) -> Result<Vec<RoleAssignment>> {
        if ctx.is_admin() {
            return self.inner.store.assignments_list().await;
        }
        Ok(self
            .inner
            .store
            .assignments_list()
            .await?
            .into_iter()
            .filter(|a| a.user_id == ctx.user_id)
            .collect())
    }

    /// Projects a user may scope to (Keystone `/v3/auth/projects`, `/v3/users/{id}/projects`).
    pub async fn user_projects(&self, user: &UserId) -> Result<Vec<Project>> {
        let ids: Vec<ProjectId> = self
            .inner
            .store
            .assignments_list()
            .await?
            .into_iter()
            .filter(|a| &a.user_id == user)
            .map(|a| a.project_id)
            .collect();
        Ok(self
            .inner
            .store
            .projects_list()
            .await?
            .into_iter()
            .filter(|p| ids.contains(&p.id))
            .collect())
    }

    pub(crate) async fn purge_tokens(&self) -> Result<u64> {
        self.inner.store.tokens_purge(now()).await
    }
}

/// Keystone's default role inference (`admin` implies `member`, `member` implies `reader`):
/// a token carries the assigned roles plus every role they imply, as Keystone's do, so a
/// policy written for `reader` admits members and admins. Only roles that exist are added.
fn with_implied_roles(mut roles: Vec<Role>, all: &[Role]) -> Vec<Role> {
    const IMPLIES: [(&str, &str); 2] = [(ROLE_ADMIN, ROLE_MEMBER), (ROLE_MEMBER, ROLE_READER)];
    // Two passes reach the transitive closure of this two-step chain.
    for _ in 0..IMPLIES.len() {
        for (prior, implied) in IMPLIES {
            let has = |n: &str| roles.iter().any(|r| r.name == n);
            if has(prior)
                && !has(implied)
                && let Some(r) = all.iter().find(|r| r.name == implied)
            {
                roles.push(r.clone());
            }
        }
    }
    roles
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(name: &str) -> Role {
        Role {
            id: RoleId::from(format!("id-{name}")),
            name: name.into(),
        }
    }

    #[test]
    fn implied_roles_follow_keystone_defaults() {
        let all = [role("admin"), role("member"), role("reader"), role("other")];
        let names = |assigned: &[&str], all: &[Role]| -> Vec<String> {
            let got = with_implied_roles(assigned.iter().map(|n| role(n)).collect(), all);
            got.into_iter().map(|r| r.name).collect()
        };
        let table: [(&[&str], &[&str]); 5] = [
            (&["admin"], &["admin", "member", "reader"]),
            (&["member"], &["member", "reader"]),
            (&["reader"], &["reader"]),
            (&["other"], &["other"]),
            (&["reader", "admin"], &["reader", "admin", "member"]),
        ];
        for (assigned, want) in table {
            assert_eq!(names(assigned, &all), want, "{assigned:?}");
        }
        // A deployment without a reader role gets no made-up one.
        assert_eq!(names(&["admin"], &all[..2]), ["admin", "member"]);
    }
}
