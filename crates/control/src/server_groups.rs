//! Server groups (os-server-groups): affinity policies the scheduler honours.

use crate::Control;
use nimbus_model::identity::Context;
use nimbus_model::server_group::{GroupPolicy, ServerGroup};
use nimbus_model::time::now;
use nimbus_model::{Error, Result, ServerGroupId};

impl Control {
    pub async fn server_group_create(
        &self,
        ctx: &Context,
        name: &str,
        policy: GroupPolicy,
        max_server_per_host: Option<u32>,
    ) -> Result<ServerGroup> {
        if !ctx.can_write() {
            return Err(Error::Forbidden(
                "Policy doesn't allow os_compute_api:os-server-groups:create to be performed."
                    .into(),
            ));
        }
        if name.trim().is_empty() || name.chars().count() > 255 {
            return Err(Error::invalid(format!(
                "Invalid input for field/attribute name. Value: {name}. must be 1-255 characters"
            )));
        }
        if max_server_per_host.is_some() && policy != GroupPolicy::AntiAffinity {
            return Err(Error::invalid("Only anti-affinity policy supports rules."));
        }
        if max_server_per_host == Some(0) {
            return Err(Error::invalid(
                "Invalid input for field/attribute max_server_per_host. Value: 0. 0 is less than the minimum of 1",
            ));
        }
        let limit = self
            .effective_quota(&ctx.project_id)
            .await?
            .get("server_groups");
        if limit >= 0 {
            let have = self
                .inner
                .store
                .server_groups_list(Some(ctx.project_id.clone()))
                .await?
                .len() as i64;
            if have >= limit {
                return Err(Error::OverQuota(
                    "Quota exceeded, too many server groups.".into(),
                ));
            }
        }
        self.inner
            .store
            .server_group_create(ServerGroup {
                id: ServerGroupId::new(),
                name: name.to_owned(),
                policy,
                max_server_per_host,
                project_id: ctx.project_id.clone(),
                user_id: ctx.user_id.clone(),
                members: Vec::new(),
                created_at: now(),
            })
            .await
    }

    /// A group by id. Like Nova (whose policy check runs after the lookup), another
    /// project's group is a 403, not a 404.
    pub async fn server_group_get(&self, ctx: &Context, id: ServerGroupId) -> Result<ServerGroup> {
        self.server_group_get_for(ctx, id, "show").await
    }

    async fn server_group_get_for(
        &self,
        ctx: &Context,
        id: ServerGroupId,
        action: &str,
    ) -> Result<ServerGroup> {
        let group = self
            .inner
            .store
            .server_group_get(id)
            .await?
            .ok_or_else(|| Error::not_found(format!("Instance group {id} could not be found.")))?;
        if group.project_id != ctx.project_id && !ctx.is_admin() {
            return Err(Error::Forbidden(format!(
                "Policy doesn't allow os_compute_api:os-server-groups:{action} to be performed."
            )));
        }
        Ok(group)
    }

    pub async fn server_groups_list(
        &self,
        ctx: &Context,
        all_projects: bool,
    ) -> Result<Vec<ServerGroup>> {
        let project = if all_projects && ctx.is_admin() {
            None
        } else {
            Some(ctx.project_id.clone())
        };
        self.inner.store.server_groups_list(project).await
    }

    pub async fn server_group_delete(&self, ctx: &Context, id: ServerGroupId) -> Result<()> {
        self.server_group_get_for(ctx, id, "delete").await?;
        if !ctx.can_write() {
            return Err(Error::Forbidden(
                "Policy doesn't allow os_compute_api:os-server-groups:delete to be performed."
                    .into(),
            ));
        }
        if !self.inner.store.server_group_delete(id).await? {
            return Err(Error::not_found(format!(
                "Instance group {id} could not be found."
            )));
        }
        Ok(())
    }
}
