//! Storage pools and data volumes: admin-defined pools, project volumes allocated from
//! them (capacity and quota checked atomically by the store), attached to a server at
//! create and detached when it is deleted (data volumes outlive their server).

use crate::Control;
use nimbus_model::identity::Context;
use nimbus_model::time::now;
use nimbus_model::volume::{StoragePool, Volume, VolumeStatus};
use nimbus_model::{Error, PoolId, Result, VolumeId};

impl Control {
    /// Create the `default` pool on first start.
    pub async fn ensure_default_pool(&self) -> Result<StoragePool> {
        if let Some(p) = self.inner.store.pools_list().await?.into_iter().next() {
            return Ok(p);
        }
        self.inner
            .store
            .pool_create(StoragePool {
                id: PoolId::new(),
                serial: 0,
                name: "default".into(),
                capacity_gb: self.inner.config.default_pool_gb,
                used_gb: 0,
                backend: "local".into(),
                created_at: now(),
            })
            .await
    }

    pub async fn pools_list(&self, _ctx: &Context) -> Result<Vec<StoragePool>> {
        self.inner.store.pools_list().await
    }

    /// A pool by id or name.
    pub async fn pool_find(&self, _ctx: &Context, r: &str) -> Result<StoragePool> {
        let pools = self.inner.store.pools_list().await?;
        pools
            .into_iter()
            .find(|p| p.id.to_string() == r || p.name == r)
            .ok_or_else(|| Error::not_found(format!("Storage pool {r} could not be found.")))
    }

    pub async fn pool_create(
        &self,
        ctx: &Context,
        name: &str,
        capacity_gb: u64,
    ) -> Result<StoragePool> {
        if !ctx.is_admin() {
            return Err(Error::Forbidden(
                "Only administrators may create storage pools.".into(),
            ));
        }
        if name.trim().is_empty() || name.chars().count() > 255 {
            return Err(Error::invalid(
                "Invalid pool name: it must be 1-255 characters.",
            ));
        }
        self.inner
            .store
            .pool_create(StoragePool {
                id: PoolId::new(),
                serial: 0,
                name: name.to_owned(),
                capacity_gb,
                used_gb: 0,
                backend: "local".into(),
                created_at: now(),
            })
            .await
            .map_err(|e| match e {
                Error::AlreadyExists(m) => Error::Conflict(m),
                e => e,
            })
    }

    pub async fn volume_create(
        &self,
        ctx: &Context,
        name: &str,
        size_gb: u64,
        pool: Option<&str>,
    ) -> Result<Volume> {
        Self::require_writer(ctx)?;
        if name.chars().count() > 255 {
            return Err(Error::invalid(
                "Invalid volume name: at most 255 characters.",
            ));
        }
        if size_gb == 0 || size_gb > 16 * 1024 {
            return Err(Error::invalid(
                "Invalid volume size: it must be 1-16384 GB.",
            ));
        }
        let pool = match pool {
            Some(r) => self.pool_find(ctx, r).await.map_err(|e| match e {
                Error::NotFound(m) => Error::invalid(m),
                e => e,
            })?,
            None => self.ensure_default_pool().await?,
        };
        let quota = self.effective_quota(&ctx.project_id).await?;
        let t = now();
        self.inner
            .store
            .volume_create(
                Volume {
                    id: VolumeId::new(),
                    serial: 0,
                    name: name.to_owned(),
                    size_gb,
                    pool_id: pool.id,
                    pool_name: pool.name,
                    status: VolumeStatus::Available,
                    attached_to: None,
                    device: None,
                    project_id: ctx.project_id.clone(),
                    user_id: ctx.user_id.clone(),
                    created_at: t,
                    updated_at: t,
                },
                quota.get("volumes"),
                quota.get("gigabytes"),
            )
            .await
    }

    pub async fn volumes_list(&self, ctx: &Context) -> Result<Vec<Volume>> {
        self.inner
            .store
            .volumes_list(Some(ctx.project_id.clone()))
            .await
    }

    pub async fn volume_get(&self, ctx: &Context, id: VolumeId) -> Result<Volume> {
        self.inner
            .store
            .volume_get(id)
            .await?
            .filter(|v| v.project_id == ctx.project_id || ctx.is_admin())
            .ok_or_else(|| Error::not_found(format!("Volume {id} could not be found.")))
    }

    pub async fn volume_delete(&self, ctx: &Context, id: VolumeId) -> Result<()> {
        Self::require_writer(ctx)?;
        self.volume_get(ctx, id).await?;
        self.inner.store.volume_delete(id).await
    }
}
