//! Quotas: effective limits (configured defaults overlaid by per-project overrides) and usage.

use crate::Control;
use nimbus_model::identity::Context;
use nimbus_model::quota::{QUOTA_RESOURCES, QuotaSet};
use nimbus_model::{Error, ProjectId, Result};
use std::collections::BTreeMap;

/// Usage numbers Nova reports in `/limits` and `os-quota-sets/detail`.
#[derive(Clone, Debug, Default)]
pub struct QuotaUsage {
    pub instances: i64,
    pub cores: i64,
    pub ram: i64,
    pub key_pairs: i64,
    pub server_groups: i64,
}

impl Control {
    pub async fn effective_quota(&self, project: &ProjectId) -> Result<QuotaSet> {
        let mut q = self.inner.config.default_quota.clone();
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

    pub async fn quota_get(&self, ctx: &Context, project: &ProjectId) -> Result<QuotaSet> {
        Self::quota_target(ctx, project)?;
        self.effective_quota(project).await
    }

    pub fn quota_defaults(&self) -> QuotaSet {
        self.inner.config.default_quota.clone()
    }

    pub async fn quota_usage(&self, ctx: &Context, project: &ProjectId) -> Result<QuotaUsage> {
        Self::quota_target(ctx, project)?;
        let compute = self.inner.store.compute_usage(project.clone()).await?;
        let key_pairs = if project == &ctx.project_id {
            self.inner
                .store
                .keypairs_list(ctx.user_id.clone())
                .await?
                .len() as i64
        } else {
            0
        };
        let server_groups = self
            .inner
            .store
            .server_groups_list(Some(project.clone()))
            .await?
            .len() as i64;
        Ok(QuotaUsage {
            instances: compute.instances,
            cores: compute.cores,
            ram: compute.ram,
            key_pairs,
            server_groups,
        })
    }

    /// Admin: set some limits for a project. Unknown resources are a 400 naming them.
    pub async fn quota_update(
        &self,
        ctx: &Context,
        project: &ProjectId,
        limits: BTreeMap<String, i64>,
    ) -> Result<QuotaSet> {
        if !ctx.is_admin() {
            return Err(Error::Forbidden(
                "Policy doesn't allow os_compute_api:os-quota-sets:update to be performed.".into(),
            ));
        }
        for (k, v) in &limits {
            if !QUOTA_RESOURCES.contains(&k.as_str()) {
                return Err(Error::invalid(format!("Bad key(s) {k} in quota_set")));
            }
            if *v < -1 {
                return Err(Error::invalid(format!(
                    "Invalid input for field/attribute {k}. Value: {v}. {v} is less than the minimum of -1"
                )));
            }
        }
        self.inner.store.quota_set(project.clone(), limits).await?;
        self.effective_quota(project).await
    }

    pub async fn quota_reset(&self, ctx: &Context, project: &ProjectId) -> Result<()> {
        if !ctx.is_admin() {
            return Err(Error::Forbidden(
                "Policy doesn't allow os_compute_api:os-quota-sets:delete to be performed.".into(),
            ));
        }
        self.inner.store.quota_clear(project.clone()).await
    }
}
