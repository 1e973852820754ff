//! The image registry and its content-addressed blob store.
//!
//! Blobs live under `<image_dir>/blobs/<sha512>`; an upload streams into `<image_dir>/tmp/`
//! while MD5 (Glance `checksum`) and SHA-512 (`os_hash_value`) are computed, then is renamed
//! into place. Bytes are never buffered whole in memory. A blob is removed when no live image
//! points at it any more.

use crate::Control;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use md5::{Digest, Md5};
use nimbus_model::identity::Context;
use nimbus_model::image::{Image, ImageFilter, ImageStatus, Visibility};
use nimbus_model::server::Server;
use nimbus_model::time::now;
use nimbus_model::{Error, ImageId, ProjectId, Result};
use sha2::Sha512;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt;

/// Disk and container formats Glance accepts by default.
pub const DISK_FORMATS: &[&str] = &[
    "ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "iso", "ploop",
];
pub const CONTAINER_FORMATS: &[&str] = &[
    "ami",
    "ari",
    "aki",
    "bare",
    "ovf",
    "ova",
    "docker",
    "compressed",
];

/// Attributes a client may never set (Glance answers 403 for them).
pub const READ_ONLY: &[&str] = &[
    "id",
    "status",
    "checksum",
    "size",
    "virtual_size",
    "created_at",
    "updated_at",
    "file",
    "schema",
    "self",
    "direct_url",
    "locations",
    "os_hash_algo",
    "os_hash_value",
    "stores",
    "deleted",
    "deleted_at",
];
/// Core attributes with their own validation.
pub const CORE: &[&str] = &[
    "name",
    "visibility",
    "protected",
    "disk_format",
    "container_format",
    "min_disk",
    "min_ram",
    "tags",
    "owner",
    "os_hidden",
];

/// The blob store.
pub(crate) struct BlobStore {
    dir: PathBuf,
}

impl BlobStore {
    pub(crate) fn new(dir: PathBuf) -> Result<Self> {
        for sub in ["blobs", "tmp"] {
            std::fs::create_dir_all(dir.join(sub))
                .map_err(|e| Error::internal(format!("create {}: {e}", dir.join(sub).display())))?;
        }
        Ok(BlobStore { dir })
    }

    pub(crate) fn path(&self, hash: &str) -> PathBuf {
        self.dir.join("blobs").join(hash)
    }

    fn tmp(&self) -> PathBuf {
        self.dir.join("tmp").join(uuid::Uuid::new_v4().to_string())
    }
}

/// What an upload produced.
#[derive(Clone, Debug)]
pub struct BlobInfo {
    pub sha512: String,
    pub md5: String,
    pub size: u64,
}

/// A request to create an image record (Glance `POST /v2/images`).
#[derive(Clone, Debug, Default)]
pub struct ImageCreate {
    pub id: Option<ImageId>,
    pub name: Option<String>,
    pub visibility: Option<Visibility>,
    pub protected: bool,
    pub disk_format: Option<String>,
    pub container_format: Option<String>,
    pub min_disk: u64,
    pub min_ram: u64,
    pub tags: Vec<String>,
    pub owner: Option<ProjectId>,
    pub properties: BTreeMap<String, serde_json::Value>,
}

/// One change of a Glance PATCH, already parsed from JSON Patch.
#[derive(Clone, Debug)]
pub enum ImageChange {
    /// add or replace `/attr`.
    Set {
        attr: String,
        value: serde_json::Value,
        replace: bool,
    },
    /// remove `/attr`.
    Remove { attr: String },
}

#[derive(Clone, Debug, Default)]
pub struct ImageListQuery {
    pub filter: ImageFilter,
    pub marker: Option<ImageId>,
    pub limit: Option<usize>,
    /// Glance sort keys with direction; default created_at desc.
    pub sort: Vec<(String, bool)>,
}

fn check_format(field: &str, value: &str, allowed: &[&str]) -> Result<()> {
    if allowed.contains(&value) {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "Invalid value '{value}' for {field}: must be one of {}",
            allowed.join(", ")
        )))
    }
}

async fn hash_into(
    tmp: &Path,
    mut stream: impl Stream<Item = std::io::Result<Bytes>> + Send + Unpin,
) -> Result<BlobInfo> {
    let mut file = tokio::fs::File::create(tmp)
        .await
        .map_err(|e| Error::internal(format!("create {}: {e}", tmp.display())))?;
    let mut sha = Sha512::new();
    let mut md5 = Md5::new();
    let mut size = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| Error::invalid(format!("Error reading the image data: {e}")))?;
        sha.update(&chunk);
        md5.update(&chunk);
        size += chunk.len() as u64;
        file.write_all(&chunk)
            .await
            .map_err(|e| Error::internal(format!("write image data: {e}")))?;
    }
    file.flush()
        .await
        .map_err(|e| Error::internal(format!("flush image data: {e}")))?;
    file.sync_all()
        .await
        .map_err(|e| Error::internal(format!("sync image data: {e}")))?;
    Ok(BlobInfo {
        sha512: hex::encode(sha.finalize()),
        md5: hex::encode(md5.finalize()),
        size,
    })
}

impl Control {
    fn image_visible(ctx: &Context, i: &Image) -> bool {
        !i.deleted
            && (ctx.is_admin()
                || matches!(i.visibility, Visibility::Public | Visibility::Community)
                || i.owner.as_ref() == Some(&ctx.project_id))
    }

    fn image_owned(ctx: &Context, i: &Image) -> bool {
        ctx.is_admin() || i.owner.as_ref() == Some(&ctx.project_id)
    }

    pub async fn image_get(&self, ctx: &Context, id: ImageId) -> Result<Image> {
        let img = self
            .inner
            .store
            .image_get(id)
            .await?
            .ok_or_else(|| Error::image_not_found(id))?;
        if !Self::image_visible(ctx, &img) {
            return Err(Error::image_not_found(id));
        }
        Ok(img)
    }

    /// An image by id even if deleted (servers show the image they booted from).
    pub async fn image_get_any(&self, id: ImageId) -> Result<Option<Image>> {
        self.inner.store.image_get(id).await
    }

    pub async fn images_list(&self, ctx: &Context, q: ImageListQuery) -> Result<Vec<Image>> {
        let viewer = if ctx.is_admin() {
            None
        } else {
            Some(ctx.project_id.clone())
        };
        let mut images = self.inner.store.images_list(q.filter, viewer).await?;
        let sort = if q.sort.is_empty() {
            vec![("created_at".to_owned(), true)]
        } else {
            q.sort
        };
        for (key, _) in &sort {
            if !matches!(
                key.as_str(),
                "created_at"
                    | "updated_at"
                    | "name"
                    | "id"
                    | "status"
                    | "size"
                    | "disk_format"
                    | "container_format"
                    | "visibility"
                    | "min_disk"
                    | "min_ram"
            ) {
                return Err(Error::invalid(format!("Invalid sort key: {key}.")));
            }
        }
        images.sort_by(|a, b| {
            for (key, desc) in &sort {
                let o = match key.as_str() {
                    "created_at" => a.created_at.cmp(&b.created_at),
                    "updated_at" => a.updated_at.cmp(&b.updated_at),
                    "name" => a.name.cmp(&b.name),
                    "id" => a.id.cmp(&b.id),
                    "status" => a.status.as_str().cmp(b.status.as_str()),
                    "size" => a.size.cmp(&b.size),
                    "disk_format" => a.disk_format.cmp(&b.disk_format),
                    "container_format" => a.container_format.cmp(&b.container_format),
                    "visibility" => a.visibility.as_str().cmp(b.visibility.as_str()),
                    "min_disk" => a.min_disk.cmp(&b.min_disk),
                    _ => a.min_ram.cmp(&b.min_ram),
                };
                let o = if *desc { o.reverse() } else { o };
                if o != std::cmp::Ordering::Equal {
                    return o;
                }
            }
            b.serial.cmp(&a.serial)
        });
        if let Some(marker) = q.marker {
            let pos = images.iter().position(|i| i.id == marker).ok_or_else(|| {
                Error::invalid(format!(
                    "Invalid marker. Image {marker} could not be found."
                ))
            })?;
            images.drain(..=pos);
        }
        if let Some(limit) = q.limit {
            images.truncate(limit);
        }
        Ok(images)
    }

    pub async fn image_create(&self, ctx: &Context, req: ImageCreate) -> Result<Image> {
        if !ctx.can_write() {
            return Err(Error::Forbidden(
                "You are not authorized to complete add_image action.".into(),
            ));
        }
        if let Some(f) = &req.disk_format {
            check_format("disk_format", f, DISK_FORMATS)?;
        }
        if let Some(f) = &req.container_format {
            check_format("container_format", f, CONTAINER_FORMATS)?;
        }
        if let Some(n) = &req.name
            && n.chars().count() > 255
        {
            return Err(Error::invalid(
                "Invalid value for name: must be at most 255 characters",
            ));
        }
        let visibility = req.visibility.unwrap_or(Visibility::Shared);
        if visibility == Visibility::Public && !ctx.is_admin() {
            return Err(Error::Forbidden(
                "You are not authorized to complete publicize_image action.".into(),
            ));
        }
        let owner = match req.owner {
            Some(o) if ctx.is_admin() => Some(o),
            Some(o) if o != ctx.project_id => {
                return Err(Error::Forbidden(
                    "You are not permitted to create images owned by another project.".into(),
                ));
            }
            _ => Some(ctx.project_id.clone()),
        };
        for k in req.properties.keys() {
            if READ_ONLY.contains(&k.as_str()) {
                return Err(Error::Forbidden(format!("Attribute '{k}' is read-only.")));
            }
        }
        let t = now();
        let image = Image {
            id: req.id.unwrap_or_default(),
            serial: 0,
            name: req.name,
            status: ImageStatus::Queued,
            visibility,
            protected: req.protected,
            owner,
            disk_format: req.disk_format,
            container_format: req.container_format,
            size: None,
            virtual_size: None,
            checksum: None,
            os_hash_value: None,
            min_disk: req.min_disk,
            min_ram: req.min_ram,
            tags: req.tags,
            properties: req.properties,
            created_at: t,
            updated_at: t,
            deleted: false,
            deleted_at: None,
            generation: 1,
        };
        self.inner
            .store
            .image_create(image)
            .await
            .map_err(|e| match e {
                Error::AlreadyExists(m) => Error::Conflict(m),
                e => e,
            })
    }

    /// Guarded read-modify-write of an image record.
    async fn mutate_image<F>(&self, id: ImageId, mut f: F) -> Result<Image>
    where
        F: FnMut(&mut Image) -> Result<()>,
    {
        for _ in 0..100 {
            let mut img = self
                .inner
                .store
                .image_get(id)
                .await?
                .ok_or_else(|| Error::image_not_found(id))?;
            f(&mut img)?;
            img.updated_at = now();
            if let Some(stored) = self.inner.store.image_update(img).await? {
                return Ok(stored);
            }
        }
        Err(Error::internal(format!(
            "image {id}: too many concurrent writers"
        )))
    }

    /// Stream the image's bytes in (Glance `PUT /file`).
    pub async fn image_upload(
        &self,
        ctx: &Context,
        id: ImageId,
        stream: impl Stream<Item = std::io::Result<Bytes>> + Send + Unpin,
    ) -> Result<Image> {
        let img = self.image_get(ctx, id).await?;
        if !Self::image_owned(ctx, &img) {
            return Err(Error::Forbidden(
                "You are not authorized to complete upload_image action.".into(),
            ));
        }
        if img.disk_format.is_none() || img.container_format.is_none() {
            return Err(Error::invalid(
                "Properties disk_format, container_format must be set prior to saving data.",
            ));
        }
        // queued → saving, or refuse.
        self.mutate_image(id, |i| {
            if i.deleted {
                return Err(Error::image_not_found(id));
            }
            if i.status != ImageStatus::Queued {
                return Err(Error::Conflict(format!(
                    "Image status transition from {} to saving is not allowed",
                    i.status.as_str()
                )));
            }
            i.status = ImageStatus::Saving;
            Ok(())
        })
        .await?;
        let tmp = self.inner.blobs.tmp();
        match hash_into(&tmp, stream).await {
            Ok(info) => self.image_commit_blob(id, &tmp, info).await,
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                // Back to queued so the client can retry the upload.
                let _ = self
                    .mutate_image(id, |i| {
                        if i.status == ImageStatus::Saving {
                            i.status = ImageStatus::Queued;
                        }
                        Ok(())
                    })
                    .await;
                Err(e)
            }
        }
    }

    /// Move a hashed temp file into the blob store and activate the image.
    async fn image_commit_blob(&self, id: ImageId, tmp: &Path, info: BlobInfo) -> Result<Image> {
        let dest = self.inner.blobs.path(&info.sha512);
        if tokio::fs::metadata(&dest).await.is_ok() {
            let _ = tokio::fs::remove_file(tmp).await;
        } else {
            tokio::fs::rename(tmp, &dest)
                .await
                .map_err(|e| Error::internal(format!("store blob {}: {e}", dest.display())))?;
        }
        let result = self
            .mutate_image(id, |i| {
                if i.deleted {
                    return Err(Error::image_not_found(id));
                }
                i.status = ImageStatus::Active;
                i.size = Some(info.size);
                i.virtual_size = None;
                i.checksum = Some(info.md5.clone());
                i.os_hash_value = Some(info.sha512.clone());
                Ok(())
            })
            .await;
        if result.is_err() {
            self.blob_gc(&info.sha512).await;
        }
        result
    }

    /// Import a byte stream produced by an agent (a snapshot) as the image's data.
    pub(crate) async fn image_import_stream(
        &self,
        id: ImageId,
        stream: crate::agents::FileStream,
        disk_format: &str,
    ) -> Result<Image> {
        let tmp = self.inner.blobs.tmp();
        let info = match hash_into(&tmp, stream).await {
            Ok(i) => i,
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                return Err(e);
            }
        };
        let fmt = disk_format.to_owned();
        self.mutate_image(id, |i| {
            if i.disk_format.is_none() {
                i.disk_format = Some(fmt.clone());
            }
            Ok(())
        })
        .await?;
        self.image_commit_blob(id, &tmp, info).await
    }

    /// Stream the bytes out. `None` when the image has no data (Glance answers 204).
    pub async fn image_download(
        &self,
        ctx: &Context,
        id: ImageId,
    ) -> Result<(Image, Option<tokio::fs::File>)> {
        let img = self.image_get(ctx, id).await?;
        let Some(hash) = img
            .os_hash_value
            .clone()
            .filter(|_| img.status == ImageStatus::Active)
        else {
            return Ok((img, None));
        };
        let path = self.inner.blobs.path(&hash);
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| Error::internal(format!("open blob {}: {e}", path.display())))?;
        Ok((img, Some(file)))
    }

    /// Where an image's bytes are on this machine (the in-process agent reads them there).
    pub fn image_blob_path(&self, hash: &str) -> PathBuf {
        self.inner.blobs.path(hash)
    }

    /// Apply Glance PATCH changes.
    pub async fn image_update(
        &self,
        ctx: &Context,
        id: ImageId,
        changes: Vec<ImageChange>,
    ) -> Result<Image> {
        let img = self.image_get(ctx, id).await?;
        if !Self::image_owned(ctx, &img) {
            return Err(Error::Forbidden(
                "You are not authorized to complete modify_image action.".into(),
            ));
        }
        for c in &changes {
            let attr = match c {
                ImageChange::Set { attr, .. } | ImageChange::Remove { attr } => attr,
            };
            if READ_ONLY.contains(&attr.as_str()) {
                return Err(Error::Forbidden(format!(
                    "Attribute '{attr}' is read-only."
                )));
            }
        }
        self.mutate_image(id, |i| {
            for c in &changes {
                apply_change(ctx, i, c)?;
            }
            Ok(())
        })
        .await
    }

    pub async fn image_delete(&self, ctx: &Context, id: ImageId) -> Result<()> {
        let img = self.image_get(ctx, id).await?;
        if !Self::image_owned(ctx, &img) {
            return Err(Error::Forbidden(
                "You are not authorized to complete delete_image action.".into(),
            ));
        }
        if img.protected {
            return Err(Error::Forbidden(format!(
                "Image {id} is protected and cannot be deleted."
            )));
        }
        let gone = self
            .mutate_image(id, |i| {
                if i.deleted {
                    return Err(Error::image_not_found(id));
                }
                i.deleted = true;
                i.deleted_at = Some(now());
                i.status = ImageStatus::Deleted;
                Ok(())
            })
            .await?;
        if let Some(hash) = gone.os_hash_value {
            self.blob_gc(&hash).await;
        }
        Ok(())
    }

    async fn blob_gc(&self, hash: &str) {
        match self.inner.store.image_blob_refs(hash.to_owned()).await {
            Ok(0) => {
                let _ = tokio::fs::remove_file(self.inner.blobs.path(hash)).await;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "blob reference count failed"),
        }
    }

    /// The queued record of a server snapshot (Nova createImage).
    pub(crate) async fn image_create_snapshot_record(
        &self,
        ctx: &Context,
        server: &Server,
        name: &str,
        metadata: BTreeMap<String, String>,
    ) -> Result<Image> {
        let base = match server.image_id {
            Some(id) => self.inner.store.image_get(id).await?,
            None => None,
        };
        let mut properties: BTreeMap<String, serde_json::Value> = BTreeMap::new();
        if let Some(b) = &base {
            // Inherit the base image's properties (Nova does, minus a few).
            for (k, v) in &b.properties {
                properties.insert(k.clone(), v.clone());
            }
            properties.insert("base_image_ref".into(), b.id.to_string().into());
        }
        properties.insert("image_type".into(), "snapshot".into());
        properties.insert("instance_uuid".into(), server.id.to_string().into());
        properties.insert("user_id".into(), ctx.user_id.to_string().into());
        properties.insert("owner_project_name".into(), ctx.project_name.clone().into());
        properties.insert("owner_user_name".into(), ctx.user_name.clone().into());
        for (k, v) in metadata {
            properties.insert(k, v.into());
        }
        let t = now();
        let image = Image {
            id: ImageId::new(),
            serial: 0,
            name: Some(name.to_owned()),
            status: ImageStatus::Queued,
            visibility: Visibility::Private,
            protected: false,
            owner: Some(server.project_id.clone()),
            disk_format: base.as_ref().and_then(|b| b.disk_format.clone()),
            container_format: base
                .as_ref()
                .and_then(|b| b.container_format.clone())
                .or(Some("bare".into())),
            size: None,
            virtual_size: None,
            checksum: None,
            os_hash_value: None,
            min_disk: server
                .flavor
                .disk_gb
                .max(base.as_ref().map(|b| b.min_disk).unwrap_or(0)),
            min_ram: base.as_ref().map(|b| b.min_ram).unwrap_or(0),
            tags: Vec::new(),
            properties,
            created_at: t,
            updated_at: t,
            deleted: false,
            deleted_at: None,
            generation: 1,
        };
        self.inner.store.image_create(image).await
    }

    /// A snapshot that failed: its record goes away (Nova deletes it).
    pub(crate) async fn image_mark_killed(&self, id: ImageId) -> Result<()> {
        self.mutate_image(id, |i| {
            i.status = ImageStatus::Deleted;
            i.deleted = true;
            i.deleted_at = Some(now());
            Ok(())
        })
        .await
        .map(|_| ())
    }
}

fn as_u64(attr: &str, v: &serde_json::Value) -> Result<u64> {
    v.as_u64().ok_or_else(|| {
        Error::invalid(format!(
            "Invalid value for {attr}: must be a non-negative integer"
        ))
    })
}

fn apply_change(ctx: &Context, i: &mut Image, c: &ImageChange) -> Result<()> {
    match c {
        ImageChange::Set {
            attr,
            value,
            replace,
        } => match attr.as_str() {
            "name" => {
                i.name = match value {
                    serde_json::Value::Null => None,
                    serde_json::Value::String(s) if s.chars().count() <= 255 => Some(s.clone()),
                    _ => {
                        return Err(Error::invalid(
                            "Invalid value for name: must be a string of at most 255 characters",
                        ));
                    }
                }
            }
            "visibility" => {
                let v = value.as_str().and_then(Visibility::parse).ok_or_else(|| {
                    Error::invalid("Invalid value for visibility: must be one of public, private, shared, community")
                })?;
                if v == Visibility::Public && !ctx.is_admin() {
                    return Err(Error::Forbidden(
                        "You are not authorized to complete publicize_image action.".into(),
                    ));
                }
                i.visibility = v;
            }
            "protected" => {
                i.protected = value.as_bool().ok_or_else(|| {
                    Error::invalid("Invalid value for protected: must be a boolean")
                })?
            }
            "disk_format" | "container_format" => {
                if i.status != ImageStatus::Queued {
                    return Err(Error::Forbidden(format!(
                        "Attribute {attr} can be only replaced for a queued image."
                    )));
                }
                let s = value
                    .as_str()
                    .ok_or_else(|| Error::invalid(format!("Invalid value for {attr}")))?;
                if attr == "disk_format" {
                    check_format(attr, s, DISK_FORMATS)?;
                    i.disk_format = Some(s.to_owned());
                } else {
                    check_format(attr, s, CONTAINER_FORMATS)?;
                    i.container_format = Some(s.to_owned());
                }
            }
            "min_disk" => i.min_disk = as_u64(attr, value)?,
            "min_ram" => i.min_ram = as_u64(attr, value)?,
            "tags" => {
                let tags = value
                    .as_array()
                    .and_then(|a| {
                        a.iter()
                            .map(|t| t.as_str().map(str::to_owned))
                            .collect::<Option<Vec<_>>>()
                    })
                    .ok_or_else(|| {
                        Error::invalid("Invalid value for tags: must be a list of strings")
                    })?;
                i.tags = tags;
            }
            "owner" => {
                if !ctx.is_admin() {
                    return Err(Error::Forbidden("Attribute 'owner' is reserved.".into()));
                }
                i.owner = value.as_str().map(ProjectId::from);
            }
            "os_hidden" => {
                i.properties.insert(attr.clone(), value.clone());
            }
            prop => {
                if *replace && !i.properties.contains_key(prop) {
                    return Err(Error::Conflict(format!("Property {prop} does not exist.")));
                }
                let ok =
                    value.is_string() || value.is_null() || value.is_boolean() || value.is_number();
                if !ok {
                    return Err(Error::invalid(format!(
                        "Invalid value for {prop}: must be a string"
                    )));
                }
                i.properties.insert(prop.to_owned(), value.clone());
            }
        },
        ImageChange::Remove { attr } => {
            if CORE.contains(&attr.as_str()) {
                return Err(Error::Forbidden(format!(
                    "Properties {attr} cannot be removed."
                )));
            }
            if i.properties.remove(attr).is_none() {
                return Err(Error::Conflict(format!("Property {attr} does not exist.")));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashing_matches_known_digests() {
        let dir = std::env::temp_dir().join(format!("nimbus-hash-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let tmp = dir.join("x");
        let chunks = vec![
            Ok(Bytes::from_static(b"hello ")),
            Ok(Bytes::from_static(b"world")),
        ];
        let info = hash_into(&tmp, futures::stream::iter(chunks))
            .await
            .unwrap();
        assert_eq!(info.size, 11);
        assert_eq!(info.md5, "5eb63bbbe01eeed093cb22bb8f5acdc3");
        assert!(
            info.sha512
                .starts_with("309ecc489c12d6eb4cc40f50c902f2b4d0ed77ee511a7c7a9bcd3ca86d4cd86f")
        );
        assert_eq!(std::fs::read(&tmp).unwrap(), b"hello world");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
