//! Quotas: effective limits and usage.
//!
//! A project's limit for a resource is its override if it has one, else the `default` quota
//! class's value (os-quota-class-sets), else the configured default — Nova's DB quota driver
//! order. Per-user quotas are not kept: a `user_id` on the API reads the project's limits
//! (what Nova shows for a user without overrides) and counts that user's usage.

use crate::Control;
use nimbus_model::identity::Context;
use nimbus_model::quota::{QUOTA_RESOURCES, QuotaSet};
use nimbus_model::server::{ServerFilter, ServerPage};
use nimbus_model::{Error, ProjectId, Result, UserId};
use std::collections::BTreeMap;

/// Nova's deprecated nova-network quotas: reported and settable up to microversion 2.35
/// (and in quota classes before 2.50), unlimited by default, and nothing counts against
/// them.
pub const LEGACY_NETWORK_RESOURCES: &[&str] = &[
    "fixed_ips",
    "floating_ips",
    "security_groups",
    "security_group_rules",
];

/// Usage numbers Nova reports in `/limits` and `os-quota-sets/detail`.
#[derive(Clone, Debug, Default)]
pub struct QuotaUsage {
    pub instances: i64,
    pub cores: i64,
    pub ram: i64,
    pub key_pairs: i64,
    pub server_groups: i64,
    pub server_group_members: i64,
}

impl QuotaUsage {
    /// `in_use` for a resource name (0 for the ones nothing is counted against).
    pub fn get(&self, resource: &str) -> i64 {
        match resource {
            "instances" => self.instances,
            "cores" => self.cores,
            "ram" => self.ram,
            "key_pairs" => self.key_pairs,
            "server_groups" => self.server_groups,
            "server_group_members" => self.server_group_members,
            _ => 0,
        }
    }
}

/// Quota classes share the overrides table under a pseudo project id; Keystone project ids
/// never contain ':' so they cannot collide.
fn class_key(class: &str) -> ProjectId {
    ProjectId::from(format!("quota-class:{class}"))
}

fn settable(resource: &str) -> bool {
    QUOTA_RESOURCES.contains(&resource) || LEGACY_NETWORK_RESOURCES.contains(&resource)
}

fn require_admin(ctx: &Context, policy: &str) -> Result<()> {
    if ctx.is_admin() {
        Ok(())
    } else {
        Err(Error::Forbidden(format!(
            "Policy doesn't allow {policy} to be performed."
        )))
    }
}

/// Nova `_validate_quota_limit` (minimum side; `-1` is infinity).
fn check_minimum(resource: &str, limit: i64, minimum: i64) -> Result<()> {
    if limit != -1 && limit < minimum {
        return Err(Error::invalid(format!(
            "Quota limit {limit} for {resource} must be greater than or equal to already used and reserved {minimum}."
        )));
    }
    Ok(())
}

impl Control {
    pub async fn effective_quota(&self, project: &ProjectId) -> Result<QuotaSet> {
        let mut q = self.quota_default_set().await?;
        q.limits
            .extend(self.inner.store.quota_overrides(project.clone()).await?);
        Ok(q)
    }

    fn quota_target(ctx: &Context, project: &ProjectId) -> Result<()> {
        if project != &ctx.project_id && !ctx.is_admin() {
            return Err(Error::Forbidden(
                "Policy doesn't allow os_compute_api:os-quota-sets:show to be performed."
                    .to_string(),
            ));
        }
        Ok(())
    }

    /// Nova `identity.verify_project_id`: a project the identity service does not know is a
    /// 400.
    pub async fn quota_verify_project(&self, project: &ProjectId) -> Result<()> {
        match self.inner.store.project_get(project.clone()).await? {
            Some(_) => Ok(()),
            None => Err(Error::invalid(format!(
                "Project ID {project} is not a valid project."
            ))),
        }
    }

    pub async fn quota_get(&self, ctx: &Context, project: &ProjectId) -> Result<QuotaSet> {
        Self::quota_target(ctx, project)?;
        self.effective_quota(project).await
    }

    /// The configured defaults (before any quota-class override).
    pub fn quota_defaults(&self) -> QuotaSet {
        self.inner.config.default_quota.clone()
    }

    /// What a project without overrides gets: configured defaults with the `default` quota
    /// class applied (os-quota-sets `/defaults`).
    pub async fn quota_default_set(&self) -> Result<QuotaSet> {
        let mut q = self.inner.config.default_quota.clone();
        q.limits.extend(
            self.inner
                .store
                .quota_overrides(class_key("default"))
                .await?,
        );
        Ok(q)
    }

    /// Usage as [`Self::quota_usage_for`] without a user, except that `key_pairs` counts the
    /// caller's own key pairs when they look at their own project.
    pub async fn quota_usage(&self, ctx: &Context, project: &ProjectId) -> Result<QuotaUsage> {
        let mut usage = self.quota_usage_for(ctx, project, None).await?;
        if project == &ctx.project_id {
            usage.key_pairs = self
                .inner
                .store
                .keypairs_list(ctx.user_id.clone())
                .await?
                .len() as i64;
        }
        Ok(usage)
    }

    /// Usage as Nova counts it for os-quota-sets detail and /limits: project-wide counts, with
    /// the per-user resources (key pairs, server group members) at 0 unless a user is named;
    /// with a user, that user's servers, key pairs and groups in the project.
    pub async fn quota_usage_for(
        &self,
        ctx: &Context,
        project: &ProjectId,
        user: Option<&UserId>,
    ) -> Result<QuotaUsage> {
        Self::quota_target(ctx, project)?;
        let groups = self
            .inner
            .store
            .server_groups_list(Some(project.clone()))
            .await?;
        let Some(user) = user else {
            let compute = self.inner.store.compute_usage(project.clone()).await?;
            return Ok(QuotaUsage {
                instances: compute.instances,
                cores: compute.cores,
                ram: compute.ram,
                key_pairs: 0,
                server_groups: groups.len() as i64,
                server_group_members: 0,
            });
        };
        let filter = ServerFilter {
            project_id: Some(project.clone()),
            user_id: Some(user.clone()),
            ..Default::default()
        };
        let page = ServerPage {
            limit: None,
            ..Default::default()
        };
        let servers: Vec<_> = self
            .inner
            .store
            .servers_list(filter, page)
            .await?
            .into_iter()
            .filter(|s| !s.deleted)
            .collect();
        Ok(QuotaUsage {
            instances: servers.len() as i64,
            cores: servers.iter().map(|s| s.flavor.vcpus as i64).sum(),
            ram: servers.iter().map(|s| s.flavor.ram_mb as i64).sum(),
            key_pairs: self.inner.store.keypairs_list(user.clone()).await?.len() as i64,
            server_groups: groups.iter().filter(|g| &g.user_id == user).count() as i64,
            server_group_members: servers.iter().filter(|s| s.server_group.is_some()).count()
                as i64,
        })
    }

    /// Admin: set some limits for a project, without checking them against usage.
    pub async fn quota_update(
        &self,
        ctx: &Context,
        project: &ProjectId,
        limits: BTreeMap<String, i64>,
    ) -> Result<QuotaSet> {
        self.quota_set_limits(ctx, project, limits, true).await
    }

    /// Admin: set some limits for a project. Unknown resources are a 400 naming them; unless
    /// `force`, a limit below current usage is a 400 (Nova's `force` flag).
    pub async fn quota_set_limits(
        &self,
        ctx: &Context,
        project: &ProjectId,
        limits: BTreeMap<String, i64>,
        force: bool,
    ) -> Result<QuotaSet> {
        require_admin(ctx, "os_compute_api:os-quota-sets:update")?;
        for (k, v) in &limits {
            if !settable(k) {
                return Err(Error::invalid(format!("Bad key(s) {k} in quota_set")));
            }
            if *v < -1 {
                return Err(Error::invalid(format!(
                    "Invalid input for field/attribute {k}. Value: {v}. {v} is less than the minimum of -1"
                )));
            }
        }
        if !force {
            let usage = self.quota_usage_for(ctx, project, None).await?;
            for (k, v) in &limits {
                check_minimum(k, *v, usage.get(k))?;
            }
        }
        self.inner.store.quota_set(project.clone(), limits).await?;
        self.effective_quota(project).await
    }

    pub async fn quota_reset(&self, ctx: &Context, project: &ProjectId) -> Result<()> {
        require_admin(ctx, "os_compute_api:os-quota-sets:delete")?;
        self.inner.store.quota_clear(project.clone()).await
    }

    /// Admin: a quota class — the configured defaults with the class's own values on top.
    /// Only the `default` class affects projects, as in Nova.
    pub async fn quota_class_get(&self, ctx: &Context, class: &str) -> Result<QuotaSet> {
        require_admin(ctx, "os_compute_api:os-quota-class-sets:show")?;
        let mut q = self.inner.config.default_quota.clone();
        q.limits
            .extend(self.inner.store.quota_overrides(class_key(class)).await?);
        Ok(q)
    }

    /// Admin: set some limits of a quota class.
    pub async fn quota_class_update(
        &self,
        ctx: &Context,
        class: &str,
        limits: BTreeMap<String, i64>,
    ) -> Result<QuotaSet> {
        require_admin(ctx, "os_compute_api:os-quota-class-sets:update")?;
        if class.is_empty() || class.chars().count() > 255 {
            return Err(Error::invalid(
                "quota_class_name has a length outside 1-255 characters",
            ));
        }
        for (k, v) in &limits {
            if !settable(k) {
                return Err(Error::invalid(format!("Bad key(s) {k} in quota_class_set")));
            }
            if *v < -1 {
                return Err(Error::invalid(format!(
                    "Invalid input for field/attribute {k}. Value: {v}. {v} is less than the minimum of -1"
                )));
            }
        }
        self.inner.store.quota_set(class_key(class), limits).await?;
        self.quota_class_get(ctx, class).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimum_check_treats_minus_one_as_infinite() {
        assert!(check_minimum("instances", -1, 5).is_ok());
        assert!(check_minimum("instances", 5, 5).is_ok());
        let e = check_minimum("instances", 4, 5).unwrap_err();
        assert_eq!(
            e.public_message(),
            "Quota limit 4 for instances must be greater than or equal to already used and reserved 5."
        );
        assert!(settable("floating_ips") && settable("cores") && !settable("networks"));
    }
}
