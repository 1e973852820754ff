//! `/images`: list (with `changes-since` and 304), detail, details, delete, and the image
//! metadata calls. Cyclades image metadata are the image's free-form properties (Glance's
//! "additional properties"); Glance's own attributes (`name`, `visibility`, ...) are not
//! metadata and cannot be set through these calls.

use super::fault::CyResult;
use super::{Cy, empty};
use crate::AppState;
use crate::common::body::JsonBody;
use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::get;
use nimbus_control::images::{CORE, ImageChange, READ_ONLY};
use nimbus_model::image::{Image, ImageStatus};
use nimbus_model::time::Timestamp;
use nimbus_model::{Error, ImageId};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// The seed's POLL_LIMIT: image `changes-since` must lie within this many seconds of now.
pub const POLL_LIMIT_SECS: i64 = 3600;
/// Most metadata items an image may carry (Glance's default `image_property_quota`).
pub const MAX_IMAGE_METADATA: usize = 128;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/compute/v2.0/images", get(index))
        .route("/compute/v2.0/images/detail", get(detail))
        .route("/compute/v2.0/images/{id}", get(show).delete(delete))
        .route(
            "/compute/v2.0/images/{id}/metadata",
            get(metadata_list).post(metadata_merge),
        )
        .route(
            "/compute/v2.0/images/{id}/metadata/{key}",
            get(metadatum_get)
                .put(metadatum_put)
                .delete(metadatum_delete),
        )
}

/// Image times as the seed prints them: whole seconds, `+00:00`.
fn image_time(t: &Timestamp) -> String {
    t.format("%Y-%m-%dT%H:%M:%S+00:00").to_string()
}

/// Glance statuses in Cyclades words.
pub fn status(s: ImageStatus) -> &'static str {
    match s {
        ImageStatus::Active => "ACTIVE",
        ImageStatus::Queued
        | ImageStatus::Saving
        | ImageStatus::Uploading
        | ImageStatus::Importing => "SAVING",
        ImageStatus::Killed => "ERROR",
        ImageStatus::Deleted | ImageStatus::PendingDelete => "DELETED",
        ImageStatus::Deactivated => "UNKNOWN",
    }
}

fn progress(s: ImageStatus) -> u8 {
    match s {
        ImageStatus::Active | ImageStatus::Deleted | ImageStatus::PendingDelete => 100,
        _ => 0,
    }
}

fn metadata(i: &Image) -> Map<String, Value> {
    i.properties
        .iter()
        .filter(|(k, _)| !reserved(k))
        .filter_map(|(k, v)| {
            let text = match v {
                Value::String(s) => s.clone(),
                Value::Null => return None,
                other => other.to_string(),
            };
            Some((k.clone(), Value::String(text)))
        })
        .collect()
}

fn reserved(key: &str) -> bool {
    CORE.contains(&key) || READ_ONLY.contains(&key)
}

fn view(i: &Image) -> Value {
    json!({
        "id": i.id.to_string(),
        "name": i.name.clone().unwrap_or_default(),
        "status": status(i.status),
        "updated": image_time(&i.updated_at),
        "created": image_time(&i.created_at),
        "progress": progress(i.status),
        "metadata": metadata(i),
    })
}

async fn list(cy: Cy, detailed: bool) -> CyResult {
    let since = cy.changes_since()?;
    if let Some(t) = since
        && nimbus_model::time::now() - t > chrono::Duration::seconds(POLL_LIMIT_SECS)
    {
        return Err(Error::invalid(format!(
            "Too old changes-since value: images can be polled at most {POLL_LIMIT_SECS} seconds back."
        ))
        .into());
    }
    let images: Vec<Image> = cy
        .control()
        .images_list(&cy.ctx, Default::default())
        .await?
        .into_iter()
        .filter(|i| since.is_none_or(|t| i.updated_at >= t))
        .collect();
    if since.is_some() && images.is_empty() {
        return Ok(empty(StatusCode::NOT_MODIFIED));
    }
    let items: Vec<Value> = images
        .iter()
        .map(|i| {
            if detailed {
                view(i)
            } else {
                json!({"id": i.id.to_string(), "name": i.name.clone().unwrap_or_default()})
            }
        })
        .collect();
    Ok(crate::common::json(
        StatusCode::OK,
        json!({"images": items}),
    ))
}

async fn index(cy: Cy) -> CyResult {
    list(cy, false).await
}

async fn detail(cy: Cy) -> CyResult {
    list(cy, true).await
}

async fn image(cy: &Cy, raw: &str) -> Result<Image, Error> {
    let not_found = || Error::not_found(format!("Image {raw} not found."));
    let id: ImageId = raw.parse().map_err(|_| not_found())?;
    cy.control()
        .image_get(&cy.ctx, id)
        .await
        .map_err(|e| match e {
            Error::NotFound(_) => not_found(),
            e => e,
        })
}

async fn show(cy: Cy, Path(id): Path<String>) -> CyResult {
    let i = image(&cy, &id).await?;
    Ok(crate::common::json(
        StatusCode::OK,
        json!({"image": view(&i)}),
    ))
}

async fn delete(cy: Cy, Path(id): Path<String>) -> CyResult {
    let i = image(&cy, &id).await?;
    cy.control().image_delete(&cy.ctx, i.id).await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

#[derive(Deserialize)]
struct MetadataBody {
    metadata: BTreeMap<String, String>,
}

fn check_keys<'a>(keys: impl IntoIterator<Item = &'a String>) -> Result<(), Error> {
    for k in keys {
        if k.is_empty() || k.chars().count() > 255 {
            return Err(Error::invalid("Metadata keys must be 1-255 characters."));
        }
        if reserved(k) {
            return Err(Error::invalid(format!(
                "'{k}' is an image attribute, not metadata."
            )));
        }
    }
    Ok(())
}

/// Set metadata items (merge), refusing to pass the metadata limit.
async fn set_items(cy: &Cy, i: &Image, md: BTreeMap<String, String>) -> Result<Image, Error> {
    check_keys(md.keys())?;
    let current = metadata(i);
    let after = current.len() + md.keys().filter(|k| !current.contains_key(*k)).count();
    if after > MAX_IMAGE_METADATA {
        return Err(Error::OverQuota(format!(
            "Maximum number of image metadata ({MAX_IMAGE_METADATA}) exceeded."
        )));
    }
    let changes = md
        .into_iter()
        .map(|(attr, v)| ImageChange::Set {
            attr,
            value: Value::String(v),
            replace: false,
        })
        .collect();
    cy.control().image_update(&cy.ctx, i.id, changes).await
}

/// Listing is a read: 200 (the seed's table says 201, which no client expects for a GET).
async fn metadata_list(cy: Cy, Path(id): Path<String>) -> CyResult {
    let i = image(&cy, &id).await?;
    Ok(crate::common::json(
        StatusCode::OK,
        json!({"metadata": metadata(&i)}),
    ))
}

async fn metadata_merge(
    cy: Cy,
    Path(id): Path<String>,
    JsonBody(b): JsonBody<MetadataBody>,
) -> CyResult {
    let i = image(&cy, &id).await?;
    let updated = set_items(&cy, &i, b.metadata).await?;
    Ok(crate::common::json(
        StatusCode::CREATED,
        json!({"metadata": metadata(&updated)}),
    ))
}

async fn metadatum_get(cy: Cy, Path((id, key)): Path<(String, String)>) -> CyResult {
    let i = image(&cy, &id).await?;
    let md = metadata(&i);
    let v = md
        .get(&key)
        .ok_or_else(|| Error::not_found(format!("Metadata key {key} not found.")))?;
    Ok(crate::common::json(
        StatusCode::OK,
        super::item_reply(&key, v),
    ))
}

async fn metadatum_put(
    cy: Cy,
    Path((id, key)): Path<(String, String)>,
    JsonBody(b): JsonBody<super::ItemBody>,
) -> CyResult {
    let (word, item) = b.item(&key)?;
    let i = image(&cy, &id).await?;
    let updated = set_items(&cy, &i, item).await?;
    let md = metadata(&updated);
    Ok(crate::common::json(
        StatusCode::CREATED,
        json!({word: {key.clone(): md.get(&key)}}),
    ))
}

async fn metadatum_delete(cy: Cy, Path((id, key)): Path<(String, String)>) -> CyResult {
    let i = image(&cy, &id).await?;
    if reserved(&key) || !metadata(&i).contains_key(&key) {
        return Err(Error::not_found(format!("Metadata key {key} not found.")).into());
    }
    cy.control()
        .image_update(&cy.ctx, i.id, vec![ImageChange::Remove { attr: key }])
        .await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert_eq!(status(ImageStatus::Active), "ACTIVE");
        assert_eq!(status(ImageStatus::Queued), "SAVING");
        assert_eq!(status(ImageStatus::Killed), "ERROR");
        assert_eq!(status(ImageStatus::Deleted), "DELETED");
        assert_eq!(progress(ImageStatus::Active), 100);
        assert_eq!(progress(ImageStatus::Saving), 0);
        assert!(reserved("name") && reserved("status") && !reserved("os"));
    }
}
