//! `/flavors`: list (id and name), detail and details, with numeric ids (flavor serials).

use super::fault::CyResult;
use super::{Cy, parse_serial};
use crate::AppState;
use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::get;
use nimbus_model::Error;
use nimbus_model::flavor::Flavor;
use serde_json::{Value, json};

/// The extra spec that sets `SNF:disk_template`; without it Nimbus says `file` (a server's
/// disk is a copy-on-write file over its image).
pub const DISK_TEMPLATE_SPEC: &str = "SNF:disk_template";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/compute/v2.0/flavors", get(index))
        .route("/compute/v2.0/flavors/detail", get(detail))
        .route("/compute/v2.0/flavors/{id}", get(show))
}

/// The full flavor. The seed's examples say `cpu`, its attribute index says `vcpus`: both
/// are sent.
fn view(f: &Flavor) -> Value {
    json!({
        "id": f.serial,
        "name": f.name,
        "ram": f.ram_mb,
        "SNF:disk_template": f
            .extra_specs
            .get(DISK_TEMPLATE_SPEC)
            .map(String::as_str)
            .unwrap_or("file"),
        "disk": f.disk_gb,
        "cpu": f.vcpus,
        "vcpus": f.vcpus,
    })
}

async fn list(cy: Cy, detailed: bool) -> CyResult {
    let mut flavors = cy
        .control()
        .flavors_list(&cy.ctx, Default::default())
        .await?;
    flavors.sort_by_key(|f| f.serial);
    let items: Vec<Value> = flavors
        .iter()
        .map(|f| {
            if detailed {
                view(f)
            } else {
                json!({"id": f.serial, "name": f.name})
            }
        })
        .collect();
    Ok(crate::common::json(
        StatusCode::OK,
        json!({"flavors": items}),
    ))
}

async fn index(cy: Cy) -> CyResult {
    list(cy, false).await
}

async fn detail(cy: Cy) -> CyResult {
    list(cy, true).await
}

async fn show(cy: Cy, Path(id): Path<String>) -> CyResult {
    let serial = parse_serial("flavor", &id)?;
    let f = cy
        .control()
        .flavor_get_by_serial(&cy.ctx, serial)
        .await
        .map_err(|e| match e {
            Error::NotFound(_) => Error::not_found(format!("Flavor {serial} not found.")),
            e => e,
        })?;
    Ok(crate::common::json(
        StatusCode::OK,
        json!({"flavor": view(&f)}),
    ))
}
