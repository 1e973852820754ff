//! The image registry and its content-addressed blob store.
//!
//! Blobs live under `<image_dir>/blobs/<sha512>`; an upload streams into `<image_dir>/tmp/`
//! while MD5 (Glance `checksum`) and SHA-512 (`os_hash_value`) are computed, then is renamed
//! into place. Bytes are never buffered whole in memory. A blob is removed when no live image
//! points at it any more.
//!
//! The rules are Glance's (glance 33, default configuration): who sees which image, which
//! attributes are read-only or reserved, the tag and property quotas, the status machine
//! (`queued` → `saving` → `active`, back to `queued` when an upload fails), and the list
//! semantics of its database layer (visibility defaults, `in:` and comparison operators,
//! property filters, key-based paging after a marker with `created_at` and `id` as
//! tie-breakers). Messages are Glance's so the API layer can pass them through.

use crate::Control;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use md5::{Digest, Md5};
use nimbus_model::identity::Context;
use nimbus_model::image::{Image, ImageFilter, ImageStatus, OS_HIDDEN, Visibility};
use nimbus_model::server::Server;
use nimbus_model::time::{Timestamp, now};
use nimbus_model::{Error, ImageId, ProjectId, Result};
use serde_json::Value;
use sha2::Sha512;
use std::cmp::Ordering;
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

/// Largest image accepted (Glance `image_size_cap` default, 1 TiB).
pub const IMAGE_SIZE_CAP: u64 = 1 << 40;
/// Glance `image_tag_quota` default.
pub const TAG_QUOTA: usize = 128;
/// Glance `image_property_quota` default.
pub const PROPERTY_QUOTA: usize = 128;
/// The hash algorithm of `os_hash_value` (Glance `hashing_algorithm` default).
pub const HASH_ALGO: &str = "sha512";

/// Attributes a client may never write (Glance answers 403 "read-only"). `id` may be
/// given at creation only.
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
    "os_hash_algo",
    "os_hash_value",
    "stores",
];
/// Names Glance reserves (403 "reserved"), besides the `os_glance` namespace.
pub const RESERVED: &[&str] = &["location", "locations", "deleted", "deleted_at"];
/// Glance's reserved property namespace.
pub const RESERVED_NAMESPACE: &str = "os_glance";
/// Core attributes with their own validation; they can be replaced but never removed.
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
/// Sort keys Glance accepts.
pub const SORT_KEYS: &[&str] = &[
    "name",
    "status",
    "container_format",
    "disk_format",
    "size",
    "id",
    "created_at",
    "updated_at",
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

/// How many leading bytes of an upload are kept for format inspection.
const HEAD_LEN: usize = 512;

/// What an upload produced.
#[derive(Clone, Debug)]
pub struct BlobInfo {
    pub sha512: String,
    pub md5: String,
    pub size: u64,
    /// The first bytes, for format inspection (virtual size).
    pub head: Vec<u8>,
}

/// A request to create an image record (Glance `POST /v2/images`).
#[derive(Clone, Debug, Default)]
pub struct ImageCreate {
    pub id: Option<ImageId>,
    pub name: Option<String>,
    pub visibility: Option<Visibility>,
    pub protected: bool,
    pub os_hidden: bool,
    pub disk_format: Option<String>,
    pub container_format: Option<String>,
    pub min_disk: u64,
    pub min_ram: u64,
    pub tags: Vec<String>,
    pub owner: Option<ProjectId>,
    pub properties: BTreeMap<String, Value>,
}

/// One change of a Glance PATCH, already parsed from JSON Patch.
#[derive(Clone, Debug)]
pub enum ImageChange {
    /// add or replace `/attr`.
    Set {
        attr: String,
        value: Value,
        replace: bool,
    },
    /// remove `/attr`.
    Remove { attr: String },
}

/// A comparison operator of Glance's filter syntax (`created_at=gte:2024-01-01T00:00:00Z`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Neq,
    Gt,
    Gte,
    Lt,
    Lte,
}

impl CmpOp {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "eq" => CmpOp::Eq,
            "neq" => CmpOp::Neq,
            "gt" => CmpOp::Gt,
            "gte" => CmpOp::Gte,
            "lt" => CmpOp::Lt,
            "lte" => CmpOp::Lte,
            _ => return None,
        })
    }

    fn holds(self, o: Ordering) -> bool {
        match self {
            CmpOp::Eq => o == Ordering::Equal,
            CmpOp::Neq => o != Ordering::Equal,
            CmpOp::Gt => o == Ordering::Greater,
            CmpOp::Gte => o != Ordering::Less,
            CmpOp::Lt => o == Ordering::Less,
            CmpOp::Lte => o != Ordering::Greater,
        }
    }
}

/// Glance's `visibility` list filter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum VisibilityFilter {
    /// No filter: every visible image except other projects' community images.
    #[default]
    Default,
    /// `visibility=all`.
    All,
    Only(Visibility),
}

/// Glance list filters, all AND-ed. A `Vec` means "any of" (Glance's `in:` operator).
#[derive(Clone, Debug, Default)]
pub struct ImageListFilter {
    pub name: Option<Vec<String>>,
    pub id: Option<Vec<String>>,
    pub status: Option<Vec<String>>,
    pub disk_format: Option<Vec<String>>,
    pub container_format: Option<Vec<String>>,
    pub visibility: VisibilityFilter,
    pub owner: Option<String>,
    /// Every tag must be present.
    pub tags: Vec<String>,
    pub protected: Option<bool>,
    /// Glance lists hidden images only when asked (`os_hidden=true`), and then only those.
    pub os_hidden: bool,
    pub size_min: Option<i64>,
    pub size_max: Option<i64>,
    pub size: Option<u64>,
    pub virtual_size: Option<u64>,
    pub min_ram: Option<u64>,
    pub min_disk: Option<u64>,
    pub checksum: Option<String>,
    pub os_hash_algo: Option<String>,
    pub os_hash_value: Option<String>,
    pub created_at: Vec<(CmpOp, Timestamp)>,
    pub updated_at: Vec<(CmpOp, Timestamp)>,
    /// Free-form property equality (`?os_distro=ubuntu`).
    pub properties: BTreeMap<String, String>,
}

fn any_of(list: &Option<Vec<String>>, v: Option<&str>) -> bool {
    match list {
        None => true,
        Some(l) => v.is_some_and(|v| l.iter().any(|x| x == v)),
    }
}

/// A property value as Glance stores it (a string).
fn prop_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

impl ImageListFilter {
    pub fn matches(&self, i: &Image) -> bool {
        let eq_num = |want: Option<u64>, have: Option<u64>| want.is_none_or(|w| have == Some(w));
        let eq_str = |want: &Option<String>, have: Option<&str>| {
            want.as_deref().is_none_or(|w| have == Some(w))
        };
        any_of(&self.name, i.name.as_deref())
            && any_of(&self.id, Some(&i.id.to_string()))
            && any_of(&self.status, Some(i.status.as_str()))
            && any_of(&self.disk_format, i.disk_format.as_deref())
            && any_of(&self.container_format, i.container_format.as_deref())
            && eq_str(&self.owner, i.owner.as_ref().map(|o| o.as_str()))
            && self.tags.iter().all(|t| i.tags.contains(t))
            && self.protected.is_none_or(|p| i.protected == p)
            && i.os_hidden() == self.os_hidden
            && self
                .size_min
                .is_none_or(|m| i.size.is_some_and(|s| s as i128 >= m as i128))
            && self
                .size_max
                .is_none_or(|m| i.size.is_some_and(|s| s as i128 <= m as i128))
            && eq_num(self.size, i.size)
            && eq_num(self.virtual_size, i.virtual_size)
            && eq_num(self.min_ram, Some(i.min_ram))
            && eq_num(self.min_disk, Some(i.min_disk))
            && eq_str(&self.checksum, i.checksum.as_deref())
            && eq_str(&self.os_hash_value, i.os_hash_value.as_deref())
            && eq_str(
                &self.os_hash_algo,
                i.os_hash_value.as_ref().map(|_| HASH_ALGO),
            )
            && self
                .created_at
                .iter()
                .all(|(op, t)| op.holds(i.created_at.cmp(t)))
            && self
                .updated_at
                .iter()
                .all(|(op, t)| op.holds(i.updated_at.cmp(t)))
            && self.properties.iter().all(|(k, v)| {
                i.properties.get(k).and_then(prop_string).as_deref() == Some(v.as_str())
            })
    }
}

/// A Glance image list request.
#[derive(Clone, Debug, Default)]
pub struct ImageListQuery {
    pub filter: ImageListFilter,
    /// Id of the last image of the previous page.
    pub marker: Option<String>,
    pub limit: Option<usize>,
    /// Sort keys with their direction (`true` = descending); empty = `created_at` desc.
    pub sort: Vec<(String, bool)>,
    /// Direction of the implicit `created_at`, `id` tie-breakers (Glance: the single
    /// direction given, else descending).
    pub default_desc: bool,
}

fn check_format(field: &str, value: &str, allowed: &[&str]) -> Result<()> {
    if allowed.contains(&value) {
        Ok(())
    } else {
        let list = allowed
            .iter()
            .map(|a| format!("'{a}'"))
            .collect::<Vec<_>>()
            .join(", ");
        Err(schema_error(
            &format!(
                "{} is not one of [None, {list}]",
                py_repr(&Value::from(value))
            ),
            "enum",
            &format!("schema['properties']['{field}']"),
            field,
            &Value::from(value),
        ))
    }
}

/// Python's `repr` of a JSON value, as jsonschema prints it in Glance's 400s.
pub fn py_repr(v: &Value) -> String {
    match v {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'")),
        Value::Array(a) => format!("[{}]", a.iter().map(py_repr).collect::<Vec<_>>().join(", ")),
        Value::Object(m) => format!(
            "{{{}}}",
            m.iter()
                .map(|(k, v)| format!("'{k}': {}", py_repr(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Glance's 400 for a body that fails its JSON schema (`InvalidObject` wrapping a
/// jsonschema `ValidationError`), naming the attribute.
pub fn schema_error(
    detail: &str,
    validator: &str,
    schema_path: &str,
    attr: &str,
    value: &Value,
) -> Error {
    Error::invalid(format!(
        "Provided object does not match schema 'image': {detail}\n\nFailed validating '{validator}' in {schema_path}\n\nOn instance['{attr}']:\n    {}",
        py_repr(value)
    ))
}

fn type_error(attr: &str, value: &Value, types: &str, schema_path: &str) -> Error {
    schema_error(
        &format!("{} is not of type {types}", py_repr(value)),
        "type",
        schema_path,
        attr,
        value,
    )
}

/// The pattern `kernel_id` and `ramdisk_id` must match (Glance's `schema-image.json`).
fn is_uuid_like(s: &str) -> bool {
    s.len() == 36 && uuid::Uuid::parse_str(s).is_ok()
}

/// Whether a client may write `attr` at all (read-only and reserved names are 403s).
pub fn check_writable(attr: &str, creating: bool) -> Result<()> {
    if attr == "locations" && !creating {
        return Err(Error::Forbidden(
            "It's not allowed to update locations if locations are invisible.".into(),
        ));
    }
    if READ_ONLY.contains(&attr) && !(creating && attr == "id") {
        return Err(Error::Forbidden(format!(
            "Attribute '{attr}' is read-only."
        )));
    }
    if RESERVED.contains(&attr) || attr.starts_with(RESERVED_NAMESPACE) {
        return Err(Error::Forbidden(format!("Attribute '{attr}' is reserved.")));
    }
    Ok(())
}

/// A free-form property must be a string (the image schema's `additionalProperties`);
/// `kernel_id` and `ramdisk_id` are null or a UUID.
pub fn check_property(key: &str, value: &Value) -> Result<()> {
    if key.chars().count() > 255 {
        return Err(Error::invalid(
            "Custom property should not be greater than 255 characters.",
        ));
    }
    if key.is_empty() {
        return Err(Error::invalid("Property names may not be empty."));
    }
    let path = format!("schema['properties']['{key}']");
    match (key, value) {
        ("kernel_id" | "ramdisk_id", Value::Null) => Ok(()),
        ("kernel_id" | "ramdisk_id", Value::String(s)) if !is_uuid_like(s) => Err(schema_error(
            &format!(
                "{} does not match '^([0-9a-fA-F]){{8}}-([0-9a-fA-F]){{4}}-([0-9a-fA-F]){{4}}-([0-9a-fA-F]){{4}}-([0-9a-fA-F]){{12}}$'",
                py_repr(value)
            ),
            "pattern",
            &path,
            key,
            value,
        )),
        ("kernel_id" | "ramdisk_id", Value::String(_)) => Ok(()),
        ("kernel_id" | "ramdisk_id", _) => Err(type_error(key, value, "'null', 'string'", &path)),
        (_, Value::String(_)) => Ok(()),
        _ => Err(type_error(
            key,
            value,
            "'string'",
            "schema['additionalProperties']",
        )),
    }
}

/// Glance's tag rules: strings of at most 255 characters, a set, at most [`TAG_QUOTA`].
fn normalize_tags(tags: &[String]) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::with_capacity(tags.len());
    for t in tags {
        if t.chars().count() > 255 {
            return Err(schema_error(
                &format!("{} is too long", py_repr(&Value::from(t.as_str()))),
                "maxLength",
                "schema['properties']['tags']['items']",
                "tags",
                &Value::from(t.as_str()),
            ));
        }
        if !out.contains(t) {
            out.push(t.clone());
        }
    }
    if out.len() > TAG_QUOTA {
        return Err(Error::PayloadTooLarge(format!(
            "The limit has been exceeded on the number of allowed image tags. Attempted: {}, Maximum: {TAG_QUOTA}",
            out.len()
        )));
    }
    Ok(out)
}

fn check_property_quota(i: &Image) -> Result<()> {
    let n = i.custom_properties().count();
    if n > PROPERTY_QUOTA {
        return Err(Error::PayloadTooLarge(format!(
            "The limit has been exceeded on the number of allowed image properties. Attempted: {n}, Maximum: {PROPERTY_QUOTA}"
        )));
    }
    Ok(())
}

/// What format inspection of the first bytes says (only what Nimbus can recognise).
fn detected_format(head: &[u8]) -> &'static str {
    if head.len() >= 4 && &head[..4] == b"QFI\xfb" {
        "qcow2"
    } else {
        "raw"
    }
}

/// Glance's `require_image_format_match` check for uploads of bare containers: data that
/// is not qcow2 may not be uploaded as `qcow2` (the one rich format Nimbus inspects). The
/// message is Glance's; the API answers it with 415.
pub fn format_mismatch(
    disk_format: Option<&str>,
    container_format: Option<&str>,
    head: &[u8],
) -> Option<String> {
    if container_format != Some("bare") || head.len() < 4 {
        return None;
    }
    let found = detected_format(head);
    match disk_format {
        Some("qcow2") if found != "qcow2" => Some(format!(
            "Image disk_format qcow2 does not match stream data {found}"
        )),
        _ => None,
    }
}

/// Glance's virtual size after an upload: the qcow2 header's size, or the byte count of a
/// raw image; unknown for other formats and non-bare containers.
fn virtual_size(i: &Image, info: &BlobInfo) -> Option<u64> {
    if i.container_format.as_deref() != Some("bare") {
        return None;
    }
    let found = detected_format(&info.head);
    let v = match (i.disk_format.as_deref(), found) {
        (Some("qcow2"), "qcow2") if info.head.len() >= 32 => {
            let mut b = [0u8; 8];
            b.copy_from_slice(&info.head[24..32]);
            u64::from_be_bytes(b)
        }
        (Some("raw"), _) => info.size,
        _ => 0,
    };
    (v > 0).then_some(v)
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
    let mut head = Vec::with_capacity(HEAD_LEN);
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| Error::invalid(format!("Error reading the image data: {e}")))?;
        size += chunk.len() as u64;
        if size > IMAGE_SIZE_CAP {
            return Err(Error::PayloadTooLarge(
                "The provided image is too large.".into(),
            ));
        }
        if head.len() < HEAD_LEN {
            let take = (HEAD_LEN - head.len()).min(chunk.len());
            head.extend_from_slice(&chunk[..take]);
        }
        sha.update(&chunk);
        md5.update(&chunk);
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
        head,
    })
}

/// Compare two images on one Glance sort key (NULLs first, as in SQL ascending order).
fn cmp_key(a: &Image, b: &Image, key: &str) -> Ordering {
    match key {
        "created_at" => a.created_at.cmp(&b.created_at),
        "updated_at" => a.updated_at.cmp(&b.updated_at),
        "name" => a.name.cmp(&b.name),
        "id" => a.id.cmp(&b.id),
        "status" => a.status.as_str().cmp(b.status.as_str()),
        "size" => a.size.cmp(&b.size),
        "disk_format" => a.disk_format.cmp(&b.disk_format),
        _ => a.container_format.cmp(&b.container_format),
    }
}

fn cmp_images(a: &Image, b: &Image, sort: &[(String, bool)]) -> Ordering {
    for (key, desc) in sort {
        let o = cmp_key(a, b, key);
        let o = if *desc { o.reverse() } else { o };
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}

impl Control {
    fn image_visible(ctx: &Context, i: &Image) -> bool {
        !i.deleted
            && (ctx.is_admin()
                || matches!(i.visibility, Visibility::Public | Visibility::Community)
                || i.owner.as_ref() == Some(&ctx.project_id))
    }

    fn image_owned(ctx: &Context, i: &Image) -> bool {
        ctx.is_admin() || (ctx.can_write() && i.owner.as_ref() == Some(&ctx.project_id))
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

    /// Glance's list: visibility rules, filters, sorting, paging after `marker`.
    pub async fn images_list(&self, ctx: &Context, q: ImageListQuery) -> Result<Vec<Image>> {
        for (key, _) in &q.sort {
            if !SORT_KEYS.contains(&key.as_str()) {
                return Err(Error::invalid(format!(
                    "Invalid sort key: {key}. It must be one of the following: {}.",
                    SORT_KEYS.join(", ")
                )));
            }
        }
        let mut sort = if q.sort.is_empty() {
            vec![("created_at".to_owned(), q.default_desc)]
        } else {
            q.sort
        };
        for key in ["created_at", "id"] {
            if !sort.iter().any(|(k, _)| k == key) {
                sort.push((key.to_owned(), q.default_desc));
            }
        }
        // The marker must exist and be visible; paging continues after its sort position
        // even if it no longer matches the filters (Glance pages on key values).
        let marker = match &q.marker {
            None => None,
            Some(m) => {
                let missing = || Error::invalid(format!("No image found with ID {m}"));
                let id: ImageId = m.parse().map_err(|_| missing())?;
                let img = self
                    .inner
                    .store
                    .image_get(id)
                    .await?
                    .filter(|i| !i.deleted)
                    .ok_or_else(missing)?;
                if !Self::image_visible(ctx, &img) {
                    return Err(Error::Forbidden(format!(
                        "Forbidding request, image {m} not visible"
                    )));
                }
                Some(img)
            }
        };
        let viewer = (!ctx.is_admin()).then(|| ctx.project_id.clone());
        let prefilter = ImageFilter {
            ids: q
                .filter
                .id
                .as_ref()
                .map(|ids| ids.iter().filter_map(|s| s.parse().ok()).collect()),
            ..Default::default()
        };
        let mut images = self.inner.store.images_list(prefilter, viewer).await?;
        let own = |i: &Image| i.owner.as_ref() == Some(&ctx.project_id);
        let f = &q.filter;
        images.retain(|i| {
            let visibility_ok = match f.visibility {
                VisibilityFilter::All => true,
                VisibilityFilter::Only(v) => i.visibility == v,
                VisibilityFilter::Default => i.visibility != Visibility::Community || own(i),
            };
            // Shared images are visible to members only, and Nimbus has no members yet.
            let shared_ok = ctx.is_admin() || i.visibility != Visibility::Shared || own(i);
            i.status != ImageStatus::Killed && visibility_ok && shared_ok && f.matches(i)
        });
        images.sort_by(|a, b| cmp_images(a, b, &sort));
        if let Some(m) = &marker {
            images.retain(|i| cmp_images(i, m, &sort) == Ordering::Greater);
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
            return Err(schema_error(
                &format!("{} is too long", py_repr(&Value::from(n.as_str()))),
                "maxLength",
                "schema['properties']['name']",
                "name",
                &Value::from(n.as_str()),
            ));
        }
        // Read-only and reserved names are refused before any value is looked at.
        for k in req.properties.keys() {
            check_writable(k, true)?;
        }
        for (k, v) in &req.properties {
            check_property(k, v)?;
        }
        let tags = normalize_tags(&req.tags)?;
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
                    "You are not authorized to complete add_image action.".into(),
                ));
            }
            _ => Some(ctx.project_id.clone()),
        };
        let mut properties = req.properties;
        properties.insert(OS_HIDDEN.into(), Value::Bool(req.os_hidden));
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
            tags,
            properties,
            created_at: t,
            updated_at: t,
            deleted: false,
            deleted_at: None,
            generation: 1,
        };
        check_property_quota(&image)?;
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
            return Err(Error::Forbidden(format!(
                "Not allowed to upload image data for image {id}"
            )));
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
            let missing: Vec<&str> = [
                ("disk_format", i.disk_format.is_none()),
                ("container_format", i.container_format.is_none()),
            ]
            .into_iter()
            .filter_map(|(k, m)| m.then_some(k))
            .collect();
            match missing.len() {
                0 => {}
                1 => {
                    return Err(Error::invalid(format!(
                        "Property {} must be set prior to saving data.",
                        missing[0]
                    )));
                }
                _ => {
                    return Err(Error::invalid(format!(
                        "Properties {} must be set prior to saving data.",
                        missing.join(", ")
                    )));
                }
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
                i.virtual_size = virtual_size(i, &info);
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
        if img.status == ImageStatus::Deactivated && !ctx.is_admin() {
            return Err(Error::Forbidden(
                "The requested image has been deactivated. Image data download is forbidden."
                    .into(),
            ));
        }
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

    /// Apply Glance PATCH changes, all or none.
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
            check_writable(attr, false)?;
        }
        if changes.is_empty() {
            return Ok(img);
        }
        self.mutate_image(id, |i| {
            if i.deleted {
                return Err(Error::image_not_found(id));
            }
            for c in &changes {
                apply_change(ctx, i, c)?;
            }
            check_property_quota(i)
        })
        .await
    }

    /// Replace every free-form property (Nova's image-metadata calls, `purge_props`).
    pub async fn image_replace_properties(
        &self,
        ctx: &Context,
        id: ImageId,
        properties: BTreeMap<String, String>,
    ) -> Result<Image> {
        let img = self.image_get(ctx, id).await?;
        let mut changes: Vec<ImageChange> = img
            .custom_properties()
            .filter(|(k, _)| !properties.contains_key(*k))
            .map(|(k, _)| ImageChange::Remove { attr: k.clone() })
            .collect();
        changes.extend(properties.into_iter().map(|(k, v)| ImageChange::Set {
            attr: k,
            value: Value::String(v),
            replace: false,
        }));
        self.image_update(ctx, id, changes).await
    }

    /// Glance `PUT /v2/images/{id}/tags/{tag}` (a set: adding twice is fine).
    pub async fn image_tag_add(&self, ctx: &Context, id: ImageId, tag: &str) -> Result<Image> {
        let img = self.image_get(ctx, id).await?;
        if !Self::image_owned(ctx, &img) {
            return Err(Error::Forbidden(format!(
                "Not allowed to update tags for image {id}."
            )));
        }
        self.mutate_image(id, |i| {
            if i.deleted {
                return Err(Error::image_not_found(id));
            }
            let mut tags = i.tags.clone();
            tags.push(tag.to_owned());
            i.tags = normalize_tags(&tags)?;
            Ok(())
        })
        .await
    }

    /// Glance `DELETE /v2/images/{id}/tags/{tag}`; a missing tag is a 404.
    pub async fn image_tag_delete(&self, ctx: &Context, id: ImageId, tag: &str) -> Result<Image> {
        let img = self.image_get(ctx, id).await?;
        if !Self::image_owned(ctx, &img) {
            return Err(Error::Forbidden(format!(
                "Not allowed to delete tags for image {id}."
            )));
        }
        self.mutate_image(id, |i| {
            if i.deleted {
                return Err(Error::image_not_found(id));
            }
            let before = i.tags.len();
            i.tags.retain(|t| t != tag);
            if i.tags.len() == before {
                return Err(Error::not_found("The resource could not be found."));
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
        let gone = self
            .mutate_image(id, |i| {
                if i.deleted {
                    return Err(Error::image_not_found(id));
                }
                // Checked on the fresh record so a concurrent "protect" wins.
                if i.protected {
                    return Err(Error::Forbidden(format!(
                        "Image {id} is protected and cannot be deleted."
                    )));
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
        let mut properties: BTreeMap<String, Value> = BTreeMap::new();
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
        // A snapshot is never hidden just because its base image was.
        properties.insert(OS_HIDDEN.into(), Value::Bool(false));
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

/// A non-negative JSON integer (Glance's schema says `integer`; the domain refuses
/// negatives).
fn as_u64(attr: &str, v: &Value) -> Result<u64> {
    match v {
        Value::Number(n) if n.is_u64() => Ok(n.as_u64().unwrap_or(0)),
        Value::Number(n) if n.is_i64() => Err(Error::invalid(format!(
            "Invalid value '{n}' for parameter '{attr}': Cannot be a negative value."
        ))),
        other => Err(type_error(
            attr,
            other,
            "'integer'",
            &format!("schema['properties']['{attr}']"),
        )),
    }
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
                    Value::Null => None,
                    Value::String(s) if s.chars().count() <= 255 => Some(s.clone()),
                    Value::String(_) => {
                        return Err(schema_error(
                            &format!("{} is too long", py_repr(value)),
                            "maxLength",
                            "schema['properties']['name']",
                            "name",
                            value,
                        ));
                    }
                    other => {
                        return Err(type_error(
                            "name",
                            other,
                            "'null', 'string'",
                            "schema['properties']['name']",
                        ));
                    }
                }
            }
            "visibility" => {
                let v = value.as_str().and_then(Visibility::parse).ok_or_else(|| {
                    schema_error(
                        &format!(
                            "{} is not one of ['community', 'public', 'private', 'shared']",
                            py_repr(value)
                        ),
                        "enum",
                        "schema['properties']['visibility']",
                        "visibility",
                        value,
                    )
                })?;
                if v == Visibility::Public && !ctx.is_admin() {
                    return Err(Error::Forbidden(
                        "You are not authorized to complete publicize_image action.".into(),
                    ));
                }
                i.visibility = v;
            }
            "protected" | "os_hidden" => {
                let b = value.as_bool().ok_or_else(|| {
                    type_error(
                        attr,
                        value,
                        "'boolean'",
                        &format!("schema['properties']['{attr}']"),
                    )
                })?;
                if attr == "protected" {
                    i.protected = b;
                } else {
                    i.properties.insert(OS_HIDDEN.into(), Value::Bool(b));
                }
            }
            "disk_format" | "container_format" => {
                let allowed = if attr == "disk_format" {
                    DISK_FORMATS
                } else {
                    CONTAINER_FORMATS
                };
                let new = match value {
                    Value::Null => None,
                    Value::String(s) => {
                        check_format(attr, s, allowed)?;
                        Some(s.clone())
                    }
                    other => {
                        return Err(type_error(
                            attr,
                            other,
                            "'null', 'string'",
                            &format!("schema['properties']['{attr}']"),
                        ));
                    }
                };
                if !matches!(i.status, ImageStatus::Queued | ImageStatus::Importing) {
                    return Err(Error::Forbidden(format!(
                        "Attribute {attr} can be only replaced for a queued image."
                    )));
                }
                if attr == "disk_format" {
                    i.disk_format = new;
                } else {
                    i.container_format = new;
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
                        type_error(
                            "tags",
                            value,
                            "'array' of 'string'",
                            "schema['properties']['tags']",
                        )
                    })?;
                i.tags = normalize_tags(&tags)?;
            }
            "owner" => {
                if !ctx.is_admin() {
                    return Err(Error::Forbidden(
                        "Owner can't be updated by non admin.".into(),
                    ));
                }
                i.owner = match value {
                    Value::Null => None,
                    Value::String(s) if s.chars().count() <= 255 => {
                        Some(ProjectId::from(s.clone()))
                    }
                    other => {
                        return Err(type_error(
                            "owner",
                            other,
                            "'null', 'string'",
                            "schema['properties']['owner']",
                        ));
                    }
                };
            }
            prop => {
                check_property(prop, value)?;
                if *replace && !i.properties.contains_key(prop) {
                    return Err(Error::Conflict(format!("Property {prop} does not exist.")));
                }
                i.properties.insert(prop.to_owned(), value.clone());
            }
        },
        ImageChange::Remove { attr } => {
            if CORE.contains(&attr.as_str()) {
                return Err(Error::Forbidden(format!(
                    "Property {attr} may not be removed."
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
        assert_eq!(info.head, b"hello world");
        assert_eq!(std::fs::read(&tmp).unwrap(), b"hello world");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn operators_and_formats() {
        assert!(CmpOp::parse("gte").unwrap().holds(Ordering::Equal));
        assert!(!CmpOp::parse("gt").unwrap().holds(Ordering::Equal));
        assert!(CmpOp::parse("neq").unwrap().holds(Ordering::Less));
        assert_eq!(CmpOp::parse("in"), None);
        let mut qcow = b"QFI\xfb".to_vec();
        qcow.extend_from_slice(&[0; 28]);
        assert_eq!(
            format_mismatch(Some("qcow2"), Some("bare"), b"plain bytes"),
            Some("Image disk_format qcow2 does not match stream data raw".into())
        );
        assert_eq!(format_mismatch(Some("qcow2"), Some("bare"), &qcow), None);
        assert_eq!(format_mismatch(Some("raw"), Some("bare"), &qcow), None);
        assert_eq!(format_mismatch(Some("qcow2"), Some("ovf"), b"xxxx"), None);
    }

    #[test]
    fn property_rules() {
        assert!(check_property("os_distro", &Value::from("ubuntu")).is_ok());
        let e = check_property("os_distro", &Value::from(5)).unwrap_err();
        assert!(e.to_string().contains("5 is not of type 'string'"), "{e}");
        assert!(e.to_string().contains("instance['os_distro']"), "{e}");
        assert!(check_property("kernel_id", &Value::Null).is_ok());
        assert!(check_property("kernel_id", &Value::from("nope")).is_err());
        assert!(matches!(
            check_writable("checksum", true),
            Err(Error::Forbidden(_))
        ));
        assert!(check_writable("id", true).is_ok());
        assert!(matches!(
            check_writable("id", false),
            Err(Error::Forbidden(_))
        ));
        assert!(matches!(
            check_writable("os_glance_x", true),
            Err(Error::Forbidden(m)) if m.contains("reserved")
        ));
        let tags: Vec<String> = vec!["a".into(), "b".into(), "a".into()];
        assert_eq!(normalize_tags(&tags).unwrap(), vec!["a", "b"]);
        let many: Vec<String> = (0..129).map(|n| n.to_string()).collect();
        assert!(matches!(
            normalize_tags(&many),
            Err(Error::PayloadTooLarge(_))
        ));
        assert_eq!(
            py_repr(&serde_json::json!([1, "a", null, true])),
            "[1, 'a', None, True]"
        );
    }
}
