//! `GET /flavors`. The seed names the call but gives no example; Nimbus answers Nova's
//! flavor index shape (`id`, `name`, `links`) plus the sizes (`vcpus`, `ram`, `disk`) a
//! user choosing a flavor by name needs. Links point at the OpenStack compute flavor,
//! the only per-flavor URL Nimbus serves.

use super::Alliance;
use super::fault::AllianceResult;
use crate::AppState;
use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use nimbus_control::flavors::FlavorListQuery;
use serde_json::{Value, json};

pub fn routes() -> Router<AppState> {
    Router::new().route("/flavors", get(index))
}

async fn index(a: Alliance) -> AllianceResult {
    let flavors = a
        .control()
        .flavors_list(&a.ctx, FlavorListQuery::default())
        .await?;
    let items: Vec<Value> = flavors
        .iter()
        .map(|f| {
            let href = format!("{}/compute/v2.1/flavors/{}", a.public(), f.id);
            json!({
                "id": f.id,
                "name": f.name,
                "vcpus": f.vcpus,
                "ram": f.ram_mb,
                "disk": f.disk_gb,
                "links": [{"href": href, "rel": "self"}, {"href": href, "rel": "bookmark"}],
            })
        })
        .collect();
    Ok(crate::common::json(
        StatusCode::OK,
        json!({ "flavors": items }),
    ))
}
