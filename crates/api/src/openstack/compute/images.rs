//! `/images`: Nova's image proxy over the image registry (microversions 2.1–2.35; from 2.36
//! it answers 404), and `/images/{id}/metadata` (up to 2.38). Shapes follow nova 34's
//! `images.py`, `image_metadata.py` and `views/images.py`, including how Nova translates
//! what Glance v2 returns (custom properties become `metadata`, a missing size is 0).

use super::Api;
use super::fault::{ComputeError, ComputeResult};
use crate::AppState;
use crate::common::body::JsonBody;
use crate::common::time::{isotime, parse_iso};
use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use nimbus_control::images::{CmpOp, ImageListFilter, ImageListQuery};
use nimbus_model::image::{Image, ImageStatus};
use nimbus_model::{Error, ImageId};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// nova `MAX_PROXY_API_SUPPORT_VERSION` and `MAX_IMAGE_META_PROXY_API_VERSION`.
const MAX_PROXY: u16 = 35;
const MAX_META_PROXY: u16 = 38;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/compute/v2.1/images", get(index))
        .route("/compute/v2.1/images/detail", get(detail))
        .route("/compute/v2.1/images/{id}", get(show).delete(delete))
        .route(
            "/compute/v2.1/images/{id}/metadata",
            get(meta_index).post(meta_create).put(meta_update_all),
        )
        .route(
            "/compute/v2.1/images/{id}/metadata/{key}",
            get(meta_show).put(meta_update).delete(meta_delete),
        )
}

/// Nova answers a method outside its microversion range with a plain 404.
fn supported(api: &Api, max: u16) -> Result<(), ComputeError> {
    if api.v.at_least(max + 1) {
        Err(Error::not_found("The resource could not be found.").into())
    } else {
        Ok(())
    }
}

fn image_not_found() -> ComputeError {
    Error::not_found("Image not found.").into()
}

fn parse_id(id: &str) -> Result<ImageId, ComputeError> {
    id.parse().map_err(|_| image_not_found())
}

/// nova `_get_status`.
fn status(s: ImageStatus) -> &'static str {
    match s {
        ImageStatus::Active => "ACTIVE",
        ImageStatus::Queued | ImageStatus::Saving => "SAVING",
        ImageStatus::Deleted | ImageStatus::PendingDelete => "DELETED",
        ImageStatus::Killed => "ERROR",
        _ => "UNKNOWN",
    }
}

/// nova `_get_progress`.
fn progress(s: ImageStatus) -> u8 {
    match s {
        ImageStatus::Queued => 25,
        ImageStatus::Saving => 50,
        ImageStatus::Active => 100,
        _ => 0,
    }
}

/// oslo `strutils.bool_from_string` (non-strict).
fn truthy(s: &str) -> bool {
    matches!(
        s.trim().to_ascii_lowercase().as_str(),
        "1" | "t" | "true" | "on" | "y" | "yes"
    )
}

/// The image's properties as Nova sees them through Glance: the free-form ones, with
/// Glance's null-to-"" rendering and Nova's JSON decoding of `block_device_mapping` and
/// `mappings`.
fn properties(i: &Image) -> Map<String, Value> {
    let glance = crate::openstack::image::view(i);
    let mut out = Map::new();
    for (k, _) in i.custom_properties() {
        let mut v = glance.get(k).cloned().unwrap_or(Value::Null);
        if matches!(k.as_str(), "block_device_mapping" | "mappings")
            && let Some(parsed) = v.as_str().and_then(|s| serde_json::from_str(s).ok())
        {
            v = parsed;
        }
        out.insert(k.clone(), v);
    }
    out
}

fn links(api: &Api, id: &str) -> Value {
    json!([
        {"rel": "self", "href": api.links.href("images", id)},
        {"rel": "bookmark", "href": api.links.bookmark("images", id)},
        {
            "rel": "alternate",
            "type": "application/vnd.openstack.image",
            "href": format!("{}/image/images/{id}", api.state.public_url()),
        },
    ])
}

fn basic(api: &Api, i: &Image) -> Value {
    let id = i.id.to_string();
    json!({"id": id, "name": i.name, "links": links(api, &id)})
}

/// nova `ViewBuilder.show`.
fn view(api: &Api, i: &Image) -> Value {
    let id = i.id.to_string();
    let metadata = properties(i);
    let mut m = Map::new();
    m.insert("id".into(), json!(id));
    m.insert("name".into(), json!(i.name));
    m.insert("minRam".into(), json!(i.min_ram));
    m.insert("minDisk".into(), json!(i.min_disk));
    m.insert("created".into(), json!(isotime(&i.created_at)));
    m.insert("updated".into(), json!(isotime(&i.updated_at)));
    m.insert("status".into(), json!(status(i.status)));
    m.insert("progress".into(), json!(progress(i.status)));
    m.insert("OS-EXT-IMG-SIZE:size".into(), json!(i.size.unwrap_or(0)));
    m.insert("links".into(), links(api, &id));
    if let Some(server) = metadata.get("instance_uuid").filter(|v| !v.is_null()) {
        let sid = server
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| server.to_string());
        m.insert(
            "server".into(),
            json!({"id": sid, "links": api.links.pair("servers", &sid)}),
        );
    }
    if let Some(adc) = metadata.get("auto_disk_config").and_then(Value::as_str) {
        m.insert(
            "OS-DCF:diskConfig".into(),
            json!(if truthy(adc) { "AUTO" } else { "MANUAL" }),
        );
    }
    m.insert("metadata".into(), Value::Object(metadata));
    Value::Object(m)
}

/// nova `_get_filters` + glance `_extract_query_params_v2`, as Glance applies them.
fn list_query(api: &Api) -> Result<ImageListQuery, Error> {
    let mut f = ImageListFilter::default();
    let int = |k: &str, v: &str| {
        v.trim()
            .parse::<u64>()
            .map_err(|_| Error::invalid(format!("Invalid {k} filter [{v}]")))
    };
    for (k, _) in &api.query {
        let Some(v) = api.param(k) else { continue };
        match k.as_str() {
            "name" => f.name = Some(vec![v.to_owned()]),
            "status" => f.status = Some(vec![v.to_ascii_lowercase()]),
            "changes-since" => {
                let t = parse_iso(v).ok_or_else(|| {
                    Error::invalid(
                        "Bad \"updated_at\" query filter format. Use ISO 8601 DateTime notation.",
                    )
                })?;
                f.updated_at = vec![(CmpOp::Gte, t)];
            }
            "server" => {
                let uuid = v.rsplit_once('/').map_or(v, |(_, id)| id);
                f.properties.insert("instance_uuid".into(), uuid.to_owned());
            }
            "type" => {
                f.properties.insert("image_type".into(), v.to_owned());
            }
            // Glance v2 compares these for equality (Nova passes them through).
            "minRam" => f.min_ram = Some(int(k, v)?),
            "minDisk" => f.min_disk = Some(int(k, v)?),
            other => {
                if let Some(prop) = other.strip_prefix("property-") {
                    f.properties.insert(prop.to_owned(), v.to_owned());
                }
            }
        }
    }
    Ok(ImageListQuery {
        filter: f,
        marker: api.param("marker").map(str::to_owned),
        // glanceclient follows every page when Nova gives no limit.
        limit: api.limit()?.filter(|l| *l > 0),
        sort: Vec::new(),
        default_desc: true,
    })
}

async fn list(api: &Api, detailed: bool) -> ComputeResult {
    supported(api, MAX_PROXY)?;
    let images = api
        .control()
        .images_list(&api.ctx, list_query(api)?)
        .await?;
    let items: Vec<Value> = images
        .iter()
        .map(|i| {
            if detailed {
                view(api, i)
            } else {
                basic(api, i)
            }
        })
        .collect();
    let mut body = json!({ "images": items });
    let coll = if detailed { "images/detail" } else { "images" };
    let last = images.last().map(|i| i.id.to_string());
    if let Some(links) = api.collection_links(coll, images.len(), last.as_deref()) {
        body["images_links"] = links;
    }
    Ok(crate::common::json(StatusCode::OK, body))
}

async fn index(api: Api) -> ComputeResult {
    list(&api, false).await
}

async fn detail(api: Api) -> ComputeResult {
    list(&api, true).await
}

/// The image as Nova's `_get_image` sees it: missing, deleted or invisible → 404.
async fn get_image(api: &Api, id: &str) -> Result<Image, ComputeError> {
    let iid = parse_id(id)?;
    api.control()
        .image_get(&api.ctx, iid)
        .await
        .map_err(|e| match e {
            Error::NotFound(_) => image_not_found(),
            e => e.into(),
        })
}

async fn show(api: Api, Path(id): Path<String>) -> ComputeResult {
    supported(&api, MAX_PROXY)?;
    let img = get_image(&api, &id).await?;
    Ok(crate::common::json(
        StatusCode::OK,
        json!({"image": view(&api, &img)}),
    ))
}

async fn delete(api: Api, Path(id): Path<String>) -> ComputeResult {
    supported(&api, MAX_PROXY)?;
    let iid = parse_id(&id)?;
    api.control()
        .image_delete(&api.ctx, iid)
        .await
        .map_err(|e| match e {
            Error::NotFound(_) => image_not_found(),
            Error::Forbidden(_) => {
                Error::Forbidden("You are not allowed to delete the image.".into()).into()
            }
            e => ComputeError(e),
        })?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---- metadata ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MetadataBody {
    metadata: BTreeMap<String, Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MetaBody {
    meta: BTreeMap<String, Value>,
}

/// nova `parameter_types.metadata`: keys `^[a-zA-Z0-9-_:. ]{1,255}$`, string values of at
/// most 255 characters.
fn check_metadata(
    field: &str,
    md: BTreeMap<String, Value>,
) -> Result<BTreeMap<String, String>, Error> {
    let key_ok = |k: &str| {
        let n = k.chars().count();
        (1..=255).contains(&n)
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_:. ".contains(c))
    };
    let mut out = BTreeMap::new();
    for (k, v) in md {
        if !key_ok(&k) {
            return Err(Error::invalid(format!(
                "Invalid input for field/attribute {field}. Value: {k}. Additional properties are not allowed ('{k}' does not match any of the regexes: '^[a-zA-Z0-9-_:. ]{{1,255}}$')"
            )));
        }
        match v {
            Value::String(s) if s.chars().count() <= 255 => {
                out.insert(k, s);
            }
            Value::String(s) => {
                return Err(Error::invalid(format!(
                    "Invalid input for field/attribute {k}. Value: {s}. '{s}' is too long"
                )));
            }
            other => {
                return Err(Error::invalid(format!(
                    "Invalid input for field/attribute {k}. Value: {other}. {other} is not of type 'string'"
                )));
            }
        }
    }
    Ok(out)
}

/// The string form of the current free-form properties (what Nova sends back to Glance).
fn string_properties(i: &Image) -> BTreeMap<String, String> {
    properties(i)
        .into_iter()
        .map(|(k, v)| {
            let s = match v {
                Value::String(s) => s,
                Value::Null => String::new(),
                other => other.to_string(),
            };
            (k, s)
        })
        .collect()
}

/// nova `check_img_metadata_properties_quota`.
async fn check_quota(api: &Api, md: &BTreeMap<String, String>) -> Result<(), ComputeError> {
    if md.is_empty() {
        return Ok(());
    }
    let limit = api
        .control()
        .effective_quota(&api.ctx.project_id)
        .await?
        .get("metadata_items");
    if limit >= 0 && md.len() as i64 > limit {
        return Err(Error::Forbidden("Image metadata limit exceeded".into()).into());
    }
    Ok(())
}

/// Write the properties back as Nova does (`purge_props=True`).
async fn save(api: &Api, img: &Image, md: BTreeMap<String, String>) -> Result<Image, ComputeError> {
    api.control()
        .image_replace_properties(&api.ctx, img.id, md)
        .await
        .map_err(|e| match e {
            Error::NotFound(_) => image_not_found(),
            Error::Forbidden(_) => {
                Error::Forbidden(format!("Not authorized for image {}.", img.id)).into()
            }
            e => ComputeError(e),
        })
}

async fn meta_index(api: Api, Path(id): Path<String>) -> ComputeResult {
    supported(&api, MAX_META_PROXY)?;
    let img = get_image(&api, &id).await?;
    Ok(crate::common::json(
        StatusCode::OK,
        json!({"metadata": properties(&img)}),
    ))
}

async fn meta_show(api: Api, Path((id, key)): Path<(String, String)>) -> ComputeResult {
    supported(&api, MAX_META_PROXY)?;
    let img = get_image(&api, &id).await?;
    let md = properties(&img);
    let v = md
        .get(&key)
        .ok_or_else(|| Error::not_found("The resource could not be found."))?;
    Ok(crate::common::json(
        StatusCode::OK,
        json!({"meta": {key.clone(): v}}),
    ))
}

async fn meta_create(
    api: Api,
    Path(id): Path<String>,
    JsonBody(b): JsonBody<MetadataBody>,
) -> ComputeResult {
    supported(&api, MAX_META_PROXY)?;
    let new = check_metadata("metadata", b.metadata)?;
    let img = get_image(&api, &id).await?;
    let mut md = string_properties(&img);
    md.extend(new);
    check_quota(&api, &md).await?;
    let saved = save(&api, &img, md).await?;
    Ok(crate::common::json(
        StatusCode::OK,
        json!({"metadata": properties(&saved)}),
    ))
}

async fn meta_update_all(
    api: Api,
    Path(id): Path<String>,
    JsonBody(b): JsonBody<MetadataBody>,
) -> ComputeResult {
    supported(&api, MAX_META_PROXY)?;
    let md = check_metadata("metadata", b.metadata)?;
    let img = get_image(&api, &id).await?;
    check_quota(&api, &md).await?;
    save(&api, &img, md.clone()).await?;
    Ok(crate::common::json(StatusCode::OK, json!({"metadata": md})))
}

async fn meta_update(
    api: Api,
    Path((id, key)): Path<(String, String)>,
    JsonBody(b): JsonBody<MetaBody>,
) -> ComputeResult {
    supported(&api, MAX_META_PROXY)?;
    if b.meta.len() != 1 {
        return Err(Error::invalid(format!(
            "Invalid input for field/attribute meta. Value: {}. {} properties given; exactly 1 expected",
            json!(b.meta),
            b.meta.len()
        ))
        .into());
    }
    let meta = check_metadata("meta", b.meta)?;
    let Some(value) = meta.get(&key).cloned() else {
        return Err(Error::invalid("Request body and URI mismatch").into());
    };
    let img = get_image(&api, &id).await?;
    let mut md = string_properties(&img);
    md.insert(key.clone(), value);
    check_quota(&api, &md).await?;
    save(&api, &img, md).await?;
    Ok(crate::common::json(StatusCode::OK, json!({"meta": meta})))
}

async fn meta_delete(api: Api, Path((id, key)): Path<(String, String)>) -> ComputeResult {
    supported(&api, MAX_META_PROXY)?;
    let img = get_image(&api, &id).await?;
    let mut md = string_properties(&img);
    if md.remove(&key).is_none() {
        return Err(Error::not_found("Invalid metadata key").into());
    }
    save(&api, &img, md).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_mapping() {
        assert_eq!(status(ImageStatus::Queued), "SAVING");
        assert_eq!(status(ImageStatus::Active), "ACTIVE");
        assert_eq!(status(ImageStatus::Killed), "ERROR");
        assert_eq!(status(ImageStatus::Deactivated), "UNKNOWN");
        assert_eq!(progress(ImageStatus::Saving), 50);
        assert!(truthy("Yes") && !truthy("no"));
    }

    #[test]
    fn metadata_validation() {
        let ok: BTreeMap<String, Value> = [("a b:c".to_owned(), json!("v"))].into();
        assert!(check_metadata("metadata", ok).is_ok());
        for bad in [
            BTreeMap::from([("bad/key".to_owned(), json!("v"))]),
            BTreeMap::from([("k".to_owned(), json!(5))]),
            BTreeMap::from([("k".to_owned(), json!("x".repeat(256)))]),
            BTreeMap::from([(String::new(), json!("v"))]),
        ] {
            assert!(check_metadata("metadata", bad).is_err());
        }
    }
}
