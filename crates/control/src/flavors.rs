//! The flavor service: listing with Nova's visibility rules, admin create/delete, extra
//! specs, and access lists for private flavors.

use crate::Control;
use nimbus_model::flavor::{Flavor, FlavorCreate};
use nimbus_model::identity::Context;
use nimbus_model::time::now;
use nimbus_model::{Error, FlavorId, ProjectId, Result};
use std::collections::BTreeMap;

/// Nova's `is_public` query semantics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PublicFilter {
    /// Parameter absent: public flavors plus private ones the caller's project may use.
    #[default]
    Default,
    /// `is_public=None` (admins): every flavor.
    All,
    /// `is_public=true|false` (admins).
    Only(bool),
}

#[derive(Clone, Debug, Default)]
pub struct FlavorListQuery {
    pub is_public: PublicFilter,
    pub min_ram: Option<u64>,
    pub min_disk: Option<u64>,
    pub name: Option<String>,
    /// Nova sort keys: flavorid (default), name, memory_mb, vcpus, root_gb, ...
    pub sort_key: Option<String>,
    pub sort_desc: bool,
    pub marker: Option<FlavorId>,
    pub limit: Option<usize>,
}

/// The classic Nova flavors plus DevStack's tiny test ones (42/84), created on first start.
pub fn default_flavors() -> Vec<FlavorCreate> {
    let f = |id: &str, name: &str, vcpus, ram_mb, disk_gb| FlavorCreate {
        id: Some(FlavorId::from(id)),
        name: name.into(),
        vcpus,
        ram_mb,
        disk_gb,
        ephemeral_gb: 0,
        swap_mb: 0,
        rxtx_factor: 1.0,
        is_public: true,
        description: None,
    };
    vec![
        f("1", "m1.tiny", 1, 512, 1),
        f("2", "m1.small", 1, 2048, 20),
        f("3", "m1.medium", 2, 4096, 40),
        f("4", "m1.large", 4, 8192, 80),
        f("5", "m1.xlarge", 8, 16384, 160),
        f("42", "m1.nano", 1, 128, 1),
        f("84", "m1.micro", 1, 192, 1),
    ]
}

type FlavorOrder = dyn Fn(&Flavor, &Flavor) -> std::cmp::Ordering;

fn validate_flavor_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 255
        && !id.starts_with(' ')
        && !id.ends_with(' ')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | ' ' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "Invalid input for field/attribute id. Value: {id}. '{id}' does not match '^(?! )[a-zA-Z0-9. _-]+(?<! )$'"
        )))
    }
}

/// Nova's extra-spec key pattern.
pub fn validate_extra_spec(key: &str, value: &str) -> Result<()> {
    let ok_key = !key.is_empty()
        && key.len() <= 255
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ':' | '.' | ' ' | '/'));
    if !ok_key {
        return Err(Error::invalid(format!(
            "Invalid input for field/attribute extra_specs. Value: {key}. '{key}' does not match any of the regexes: '^[a-zA-Z0-9-_:. /]{{1,255}}$'"
        )));
    }
    if value.len() > 255 {
        return Err(Error::invalid(format!(
            "Invalid input for field/attribute {key}. Value is too long (maximum 255 characters)"
        )));
    }
    Ok(())
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

impl Control {
    /// Whether the caller may see/use a flavor.
    async fn flavor_visible(&self, ctx: &Context, f: &Flavor) -> Result<bool> {
        if f.is_public || ctx.is_admin() {
            return Ok(true);
        }
        Ok(self
            .inner
            .store
            .flavor_access_list(f.id.clone())
            .await?
            .contains(&ctx.project_id))
    }

    pub async fn flavor_get(&self, ctx: &Context, id: &FlavorId) -> Result<Flavor> {
        let f = self
            .inner
            .store
            .flavor_get(id.clone())
            .await?
            .ok_or_else(|| Error::flavor_not_found(id))?;
        if !self.flavor_visible(ctx, &f).await? {
            return Err(Error::flavor_not_found(id));
        }
        Ok(f)
    }

    /// By numeric serial (Cyclades ids).
    pub async fn flavor_get_by_serial(&self, ctx: &Context, serial: i64) -> Result<Flavor> {
        let f = self
            .inner
            .store
            .flavor_get_by_serial(serial)
            .await?
            .ok_or_else(|| Error::flavor_not_found(serial))?;
        if !self.flavor_visible(ctx, &f).await? {
            return Err(Error::flavor_not_found(serial));
        }
        Ok(f)
    }

    /// A flavor a new (or resized) server may use.
    pub(crate) async fn flavor_for_boot(&self, ctx: &Context, id: &FlavorId) -> Result<Flavor> {
        let f = self.flavor_get(ctx, id).await.map_err(|e| match e {
            Error::NotFound(_) => Error::invalid(format!("Flavor {id} could not be found.")),
            e => e,
        })?;
        if f.disabled {
            return Err(Error::invalid("Flavor is disabled."));
        }
        Ok(f)
    }

    pub async fn flavors_list(&self, ctx: &Context, q: FlavorListQuery) -> Result<Vec<Flavor>> {
        let all = self.inner.store.flavors_list().await?;
        let filter = if ctx.is_admin() {
            q.is_public
        } else {
            PublicFilter::Default
        };
        let mut out = Vec::new();
        for f in all {
            let visible = match filter {
                PublicFilter::All => true,
                PublicFilter::Only(false) => !f.is_public,
                PublicFilter::Only(true) | PublicFilter::Default => {
                    f.is_public
                        || self
                            .inner
                            .store
                            .flavor_access_list(f.id.clone())
                            .await?
                            .contains(&ctx.project_id)
                }
            };
            if !visible || (!ctx.is_admin() && f.disabled) {
                continue;
            }
            if q.min_ram.is_some_and(|m| f.ram_mb < m) || q.min_disk.is_some_and(|m| f.disk_gb < m)
            {
                continue;
            }
            if q.name.as_ref().is_some_and(|n| *n != f.name) {
                continue;
            }
            out.push(f);
        }
        let key = q.sort_key.as_deref().unwrap_or("flavorid");
        let cmp: Box<FlavorOrder> = match key {
            "flavorid" | "id" => Box::new(|a, b| a.id.cmp(&b.id)),
            "name" => Box::new(|a, b| a.name.cmp(&b.name)),
            "memory_mb" => Box::new(|a, b| a.ram_mb.cmp(&b.ram_mb)),
            "vcpus" => Box::new(|a, b| a.vcpus.cmp(&b.vcpus)),
            "root_gb" => Box::new(|a, b| a.disk_gb.cmp(&b.disk_gb)),
            "ephemeral_gb" => Box::new(|a, b| a.ephemeral_gb.cmp(&b.ephemeral_gb)),
            "swap" => Box::new(|a, b| a.swap_mb.cmp(&b.swap_mb)),
            "rxtx_factor" => Box::new(|a, b| a.rxtx_factor.total_cmp(&b.rxtx_factor)),
            "created_at" => Box::new(|a, b| a.created_at.cmp(&b.created_at)),
            "disabled" => Box::new(|a, b| a.disabled.cmp(&b.disabled)),
            "is_public" => Box::new(|a, b| a.is_public.cmp(&b.is_public)),
            other => return Err(Error::invalid(format!("Invalid sort_key {other}"))),
        };
        out.sort_by(|a, b| {
            let o = cmp(a, b).then_with(|| a.id.cmp(&b.id));
            if q.sort_desc { o.reverse() } else { o }
        });
        if let Some(marker) = &q.marker {
            let pos = out
                .iter()
                .position(|f| &f.id == marker)
                .ok_or_else(|| Error::invalid(format!("marker [{marker}] not found")))?;
            out.drain(..=pos);
        }
        let limit = q
            .limit
            .unwrap_or(self.inner.config.max_limit)
            .min(self.inner.config.max_limit);
        out.truncate(limit);
        Ok(out)
    }

    pub async fn flavor_create(&self, ctx: &Context, req: FlavorCreate) -> Result<Flavor> {
        require_admin(ctx, "os_compute_api:os-flavor-manage:create")?;
        let name = req.name.trim();
        if name.is_empty() || name.len() > 255 || name != req.name {
            return Err(Error::invalid(format!(
                "Invalid input for field/attribute name. Value: {}. must be 1-255 characters without leading or trailing whitespace",
                req.name
            )));
        }
        if req.vcpus == 0 || req.vcpus > i32::MAX as u32 {
            return Err(Error::invalid(
                "Invalid input for field/attribute vcpus. Value must be between 1 and 2147483647",
            ));
        }
        if req.ram_mb == 0 || req.ram_mb > i32::MAX as u64 {
            return Err(Error::invalid(
                "Invalid input for field/attribute ram. Value must be between 1 and 2147483647",
            ));
        }
        if req.disk_gb > i32::MAX as u64
            || req.ephemeral_gb > i32::MAX as u64
            || req.swap_mb > i32::MAX as u64
        {
            return Err(Error::invalid(
                "Invalid input for field/attribute disk. Value is too large",
            ));
        }
        if !(req.rxtx_factor > 0.0 && req.rxtx_factor <= 3.40282e38) {
            return Err(Error::invalid(
                "Invalid input for field/attribute rxtx_factor. Value must be positive",
            ));
        }
        let id = match &req.id {
            Some(id) if id.as_str() != "auto" => {
                validate_flavor_id(id.as_str())?;
                id.clone()
            }
            _ => FlavorId(uuid::Uuid::new_v4().to_string()),
        };
        self.inner
            .store
            .flavor_create(Flavor {
                id,
                serial: 0,
                name: req.name,
                vcpus: req.vcpus,
                ram_mb: req.ram_mb,
                disk_gb: req.disk_gb,
                ephemeral_gb: req.ephemeral_gb,
                swap_mb: req.swap_mb,
                rxtx_factor: req.rxtx_factor,
                is_public: req.is_public,
                disabled: false,
                description: req.description,
                extra_specs: BTreeMap::new(),
                created_at: now(),
            })
            .await
            .map_err(|e| match e {
                Error::AlreadyExists(m) => Error::Conflict(m),
                e => e,
            })
    }

    pub async fn flavor_delete(&self, ctx: &Context, id: &FlavorId) -> Result<()> {
        require_admin(ctx, "os_compute_api:os-flavor-manage:delete")?;
        if !self.inner.store.flavor_delete(id.clone()).await? {
            return Err(Error::flavor_not_found(id));
        }
        Ok(())
    }

    /// Microversion 2.55: only the description may change.
    pub async fn flavor_set_description(
        &self,
        ctx: &Context,
        id: &FlavorId,
        description: Option<String>,
    ) -> Result<Flavor> {
        require_admin(ctx, "os_compute_api:os-flavor-manage:update")?;
        let mut f = self
            .inner
            .store
            .flavor_get(id.clone())
            .await?
            .ok_or_else(|| Error::flavor_not_found(id))?;
        f.description = description;
        self.inner.store.flavor_update(f.clone()).await?;
        Ok(f)
    }

    pub async fn flavor_extra_specs(
        &self,
        ctx: &Context,
        id: &FlavorId,
    ) -> Result<BTreeMap<String, String>> {
        Ok(self.flavor_get(ctx, id).await?.extra_specs)
    }

    /// Merge `specs` into the flavor's extra specs.
    pub async fn flavor_extra_specs_set(
        &self,
        ctx: &Context,
        id: &FlavorId,
        specs: BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>> {
        require_admin(ctx, "os_compute_api:os-flavor-extra-specs:create")?;
        for (k, v) in &specs {
            validate_extra_spec(k, v)?;
        }
        let mut f = self
            .inner
            .store
            .flavor_get(id.clone())
            .await?
            .ok_or_else(|| Error::flavor_not_found(id))?;
        f.extra_specs.extend(specs);
        self.inner.store.flavor_update(f.clone()).await?;
        Ok(f.extra_specs)
    }

    pub async fn flavor_extra_spec_delete(
        &self,
        ctx: &Context,
        id: &FlavorId,
        key: &str,
    ) -> Result<()> {
        require_admin(ctx, "os_compute_api:os-flavor-extra-specs:delete")?;
        let mut f = self
            .inner
            .store
            .flavor_get(id.clone())
            .await?
            .ok_or_else(|| Error::flavor_not_found(id))?;
        if f.extra_specs.remove(key).is_none() {
            return Err(Error::not_found(format!(
                "Flavor {id} has no extra specs with key {key}."
            )));
        }
        self.inner.store.flavor_update(f).await?;
        Ok(())
    }

    pub async fn flavor_access_list(&self, ctx: &Context, id: &FlavorId) -> Result<Vec<ProjectId>> {
        let f = self.flavor_get(ctx, id).await?;
        if f.is_public {
            return Err(Error::not_found(
                "Access list not available for public flavors.",
            ));
        }
        require_admin(ctx, "os_compute_api:os-flavor-access")?;
        self.inner.store.flavor_access_list(id.clone()).await
    }

    pub async fn flavor_access_add(
        &self,
        ctx: &Context,
        id: &FlavorId,
        project: ProjectId,
    ) -> Result<Vec<ProjectId>> {
        require_admin(ctx, "os_compute_api:os-flavor-access:add_tenant_access")?;
        let f = self
            .inner
            .store
            .flavor_get(id.clone())
            .await?
            .ok_or_else(|| Error::flavor_not_found(id))?;
        if f.is_public {
            return Err(Error::Conflict(
                "Can not add access to a public flavor.".into(),
            ));
        }
        self.inner
            .store
            .flavor_access_add(id.clone(), project)
            .await
            .map_err(|e| match e {
                Error::AlreadyExists(m) => Error::Conflict(m),
                e => e,
            })?;
        self.inner.store.flavor_access_list(id.clone()).await
    }

    pub async fn flavor_access_remove(
        &self,
        ctx: &Context,
        id: &FlavorId,
        project: ProjectId,
    ) -> Result<Vec<ProjectId>> {
        require_admin(ctx, "os_compute_api:os-flavor-access:remove_tenant_access")?;
        self.inner
            .store
            .flavor_get(id.clone())
            .await?
            .ok_or_else(|| Error::flavor_not_found(id))?;
        if !self
            .inner
            .store
            .flavor_access_remove(id.clone(), project.clone())
            .await?
        {
            return Err(Error::not_found(format!(
                "Flavor access not found for {id} / {project} combination."
            )));
        }
        self.inner.store.flavor_access_list(id.clone()).await
    }

    /// Create the default flavors if there are none.
    pub async fn ensure_default_flavors(&self) -> Result<()> {
        if !self.inner.store.flavors_list().await?.is_empty() {
            return Ok(());
        }
        for f in default_flavors() {
            let flavor = Flavor {
                id: f
                    .id
                    .clone()
                    .unwrap_or_else(|| FlavorId(uuid::Uuid::new_v4().to_string())),
                serial: 0,
                name: f.name,
                vcpus: f.vcpus,
                ram_mb: f.ram_mb,
                disk_gb: f.disk_gb,
                ephemeral_gb: f.ephemeral_gb,
                swap_mb: f.swap_mb,
                rxtx_factor: f.rxtx_factor,
                is_public: f.is_public,
                disabled: false,
                description: f.description,
                extra_specs: BTreeMap::new(),
                created_at: now(),
            };
            self.inner.store.flavor_create(flavor).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flavor_id_and_extra_spec_rules() {
        assert!(validate_flavor_id("m1.tiny").is_ok());
        assert!(validate_flavor_id("42").is_ok());
        assert!(validate_flavor_id(" lead").is_err());
        assert!(validate_flavor_id("bad/id").is_err());
        assert!(validate_flavor_id("").is_err());
        assert!(validate_extra_spec("hw:cpu_policy", "dedicated").is_ok());
        assert!(validate_extra_spec("bad*key", "v").is_err());
        assert!(validate_extra_spec("k", &"v".repeat(256)).is_err());
    }
}
