//! `/disks`: data disks (core volumes) that instances attach at create (`disks`). Not in the
//! seed, which only lists an instance's disks as `{uuid, name}`; Nimbus adds create, list,
//! show and delete in the seed's vocabulary (docs/dialects/vpe.md). A disk outlives the
//! instance it was attached to: deleting the instance makes it `available` again.

use super::fault::VpeResult;
use super::{Vpe, VpeState, path_id, vpe_time};
use crate::common::body::JsonBody;
use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::get;
use nimbus_model::volume::Volume;
use nimbus_model::{Error, VolumeId};
use serde::Deserialize;
use serde_json::{Value, json};

pub fn routes() -> Router<VpeState> {
    Router::new()
        .route("/disks", get(list).post(create))
        .route("/disks/{uuid}", get(show).delete(delete))
}

pub fn view(d: &Volume) -> Value {
    json!({
        "uuid": d.id.to_string(),
        "name": d.name,
        "size_gb": d.size_gb,
        "disk_pool": d.pool_name,
        "disk_pool_uuid": d.pool_id.to_string(),
        "status": d.status.as_str(),
        "instance_uuid": d.attached_to.map(|s| s.to_string()),
        "device": d.device,
        "created_at": vpe_time(&d.created_at),
    })
}

fn ok(body: Value) -> axum::response::Response {
    crate::common::json(StatusCode::OK, body)
}

fn disk_id(id: &str) -> Result<VolumeId, super::fault::VpeError> {
    path_id("Disk", id)
}

/// The core calls disks volumes; VPE says disk.
fn as_disk(id: VolumeId) -> impl Fn(Error) -> Error {
    move |e| match e {
        Error::NotFound(_) => Error::not_found(format!("Disk {id} could not be found.")),
        Error::InUse(_) => Error::InUse(format!(
            "Disk {id} is attached to an instance; delete the instance first."
        )),
        e => e,
    }
}

async fn list(v: Vpe) -> VpeResult {
    let needle = v.param("name").map(str::to_lowercase);
    let disks = v.control().volumes_list(&v.ctx).await?;
    let items: Vec<Value> = disks
        .iter()
        .filter(|d| {
            needle
                .as_deref()
                .is_none_or(|n| d.name.to_lowercase().contains(n))
        })
        .map(view)
        .collect();
    Ok(ok(json!({"disks": items})))
}

async fn show(v: Vpe, Path(id): Path<String>) -> VpeResult {
    let id = disk_id(&id)?;
    let d = v
        .control()
        .volume_get(&v.ctx, id)
        .await
        .map_err(as_disk(id))?;
    Ok(ok(json!({"disk": view(&d)})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    disk: CreateDisk,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateDisk {
    name: String,
    size_gb: u64,
    /// Pool uuid (or name); the `default` pool when absent.
    #[serde(default)]
    disk_pool: Option<String>,
}

async fn create(v: Vpe, JsonBody(body): JsonBody<CreateBody>) -> VpeResult {
    let d = body.disk;
    let disk = v
        .control()
        .volume_create(&v.ctx, &d.name, d.size_gb, d.disk_pool.as_deref())
        .await?;
    Ok(ok(json!({"disk": view(&disk)})))
}

async fn delete(v: Vpe, Path(id): Path<String>) -> VpeResult {
    let id = disk_id(&id)?;
    v.control()
        .volume_delete(&v.ctx, id)
        .await
        .map_err(as_disk(id))?;
    Ok(ok(json!({"disk": {"uuid": id.to_string()}})))
}
