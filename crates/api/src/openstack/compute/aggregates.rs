//! `/os-aggregates` (admin). Nimbus has no host aggregates: the list is honestly empty
//! (OpenStackClient's `hypervisor show` reads it), and every call that would create or
//! change one answers 501 (documented in docs/dialects/openstack-compute.md).

use super::Api;
use super::fault::ComputeResult;
use crate::AppState;
use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::{get, post};
use nimbus_model::Error;
use serde_json::json;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/compute/v2.1/os-aggregates", get(index).post(unsupported))
        .route(
            "/compute/v2.1/os-aggregates/{id}",
            get(show).put(unsupported_id).delete(unsupported_id),
        )
        .route(
            "/compute/v2.1/os-aggregates/{id}/action",
            post(unsupported_id),
        )
}

fn admin(api: &Api) -> Result<(), Error> {
    if api.ctx.is_admin() {
        Ok(())
    } else {
        Err(Error::Forbidden(
            "Policy doesn't allow os_compute_api:os-aggregates:index to be performed.".into(),
        ))
    }
}

async fn index(api: Api) -> ComputeResult {
    admin(&api)?;
    Ok(crate::common::json(
        StatusCode::OK,
        json!({"aggregates": []}),
    ))
}

async fn show(api: Api, Path(id): Path<String>) -> ComputeResult {
    admin(&api)?;
    Err(Error::not_found(format!("Aggregate {id} could not be found.")).into())
}

async fn unsupported(api: Api) -> ComputeResult {
    admin(&api)?;
    Err(Error::NotImplemented(
        "Nimbus has no host aggregates; availability zones come from each host's configuration."
            .into(),
    )
    .into())
}

async fn unsupported_id(api: Api, Path(_id): Path<String>) -> ComputeResult {
    unsupported(api).await
}
