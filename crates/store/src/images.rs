//! Image records. The bytes live outside the database, in the content-addressed blob store
//! that `control` manages; a record names its blob by `os_hash_value`.

use async_trait::async_trait;
use nimbus_model::image::{Image, ImageFilter};
use nimbus_model::{ImageId, ProjectId, Result};

#[async_trait]
pub trait ImageStore: Send + Sync {
    /// Insert; assigns the serial. `AlreadyExists` if the id is taken.
    async fn image_create(&self, image: Image) -> Result<Image>;
    /// By id, including deleted records (servers keep pointing at their image).
    async fn image_get(&self, id: ImageId) -> Result<Option<Image>>;
    /// Live images matching `filter` that `viewer` may see (`None` = all, for admins):
    /// public and community ones, the viewer's own, newest first.
    async fn images_list(
        &self,
        filter: ImageFilter,
        viewer: Option<ProjectId>,
    ) -> Result<Vec<Image>>;
    /// Guarded write (generation); the stored record or `None` if the generation moved.
    async fn image_update(&self, image: Image) -> Result<Option<Image>>;
    /// How many live images point at the blob `hash` (for garbage collection).
    async fn image_blob_refs(&self, hash: String) -> Result<u64>;
}
