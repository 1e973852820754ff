//! `/disk_pools`: the storage pools instances' root disks (`disk_pool`) and data disks are
//! placed in. Not in the seed, which only names pools by uuid; Nimbus adds list, show and an
//! admin-only create in the seed's vocabulary (docs/dialects/vpe.md).

use super::fault::VpeResult;
use super::{Vpe, VpeState, path_id, vpe_time};
use crate::common::body::JsonBody;
use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::get;
use nimbus_model::volume::StoragePool;
use nimbus_model::{Error, PoolId};
use serde::Deserialize;
use serde_json::{Value, json};

pub fn routes() -> Router<VpeState> {
    Router::new()
        .route("/disk_pools", get(list).post(create))
        .route("/disk_pools/{uuid}", get(show))
}

pub fn view(p: &StoragePool) -> Value {
    json!({
        "uuid": p.id.to_string(),
        "name": p.name,
        "capacity_gb": p.capacity_gb,
        "used_gb": p.used_gb,
        "free_gb": p.capacity_gb.saturating_sub(p.used_gb),
        "created_at": vpe_time(&p.created_at),
    })
}

fn ok(body: Value) -> axum::response::Response {
    crate::common::json(StatusCode::OK, body)
}

async fn list(v: Vpe) -> VpeResult {
    let pools = v.control().pools_list(&v.ctx).await?;
    Ok(ok(
        json!({"disk_pools": pools.iter().map(view).collect::<Vec<_>>()}),
    ))
}

async fn show(v: Vpe, Path(id): Path<String>) -> VpeResult {
    let id: PoolId = path_id("Disk pool", &id)?;
    let p = v
        .control()
        .pool_find(&v.ctx, &id.to_string())
        .await
        .map_err(|e| match e {
            Error::NotFound(_) => Error::not_found(format!("Disk pool {id} could not be found.")),
            e => e,
        })?;
    Ok(ok(json!({"disk_pool": view(&p)})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    disk_pool: CreatePool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreatePool {
    name: String,
    capacity_gb: u64,
}

async fn create(v: Vpe, JsonBody(body): JsonBody<CreateBody>) -> VpeResult {
    let p = body.disk_pool;
    if p.capacity_gb == 0 {
        return Err(Error::invalid(
            "Invalid input for field/attribute disk_pool.capacity_gb: it must be at least 1.",
        )
        .into());
    }
    let pool = v
        .control()
        .pool_create(&v.ctx, &p.name, p.capacity_gb)
        .await?;
    Ok(ok(json!({"disk_pool": view(&pool)})))
}
