//! Flavor persistence (and private-flavor access lists).

use async_trait::async_trait;
use nimbus_model::flavor::Flavor;
use nimbus_model::{FlavorId, ProjectId, Result};

#[async_trait]
pub trait FlavorStore: Send + Sync {
    /// Insert; `AlreadyExists` if the id or the name is taken. Assigns the serial.
    async fn flavor_create(&self, flavor: Flavor) -> Result<Flavor>;
    async fn flavor_get(&self, id: FlavorId) -> Result<Option<Flavor>>;
    async fn flavor_get_by_serial(&self, serial: i64) -> Result<Option<Flavor>>;
    /// Every flavor, ordered by id (Nova's default `flavorid` ascending).
    async fn flavors_list(&self) -> Result<Vec<Flavor>>;
    /// Replace the stored record (description, extra specs); `false` if it is gone.
    async fn flavor_update(&self, flavor: Flavor) -> Result<bool>;
    /// `false` if it did not exist.
    async fn flavor_delete(&self, id: FlavorId) -> Result<bool>;
    async fn flavor_access_list(&self, id: FlavorId) -> Result<Vec<ProjectId>>;
    /// `AlreadyExists` if the project already has access.
    async fn flavor_access_add(&self, id: FlavorId, project: ProjectId) -> Result<()>;
    /// `false` if the project had no access.
    async fn flavor_access_remove(&self, id: FlavorId, project: ProjectId) -> Result<bool>;
}
