//! Compute version documents (`GET /`, `GET /compute`, `GET /compute/v2.1`), served without
//! a token.

use super::microversion::{MAX, MIN};
use crate::AppState;
use crate::common::paths::ComputeBase;
use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;

fn version_entry(id: &str, prefix: &str) -> serde_json::Value {
    let (status, version, min, updated, media) = if id == "v2.0" {
        (
            "DEPRECATED",
            String::new(),
            String::new(),
            "2025-07-04T12:00:00Z",
            "application/vnd.openstack.compute+json;version=2",
        )
    } else {
        (
            "CURRENT",
            MAX.to_string(),
            MIN.to_string(),
            "2013-07-23T11:33:21Z",
            "application/vnd.openstack.compute+json;version=2.1",
        )
    };
    json!({
        "id": id,
        "status": status,
        "version": version,
        "min_version": min,
        "updated": updated,
        "links": [{"rel": "self", "href": format!("{prefix}/{}/", if id == "v2.0" { "v2" } else { "v2.1" })}],
        "media-types": [{"base": "application/json", "type": media}],
    })
}

/// `{"versions": [v2.0, v2.1]}` with links under `root` (`/` or `/compute`).
pub fn versions_list(state: &AppState, root: &str) -> Response {
    let prefix = format!("{}{}", state.public_url(), root.trim_end_matches('/'));
    let mut v20 = version_entry("v2.0", &prefix);
    let mut v21 = version_entry("v2.1", &prefix);
    for v in [&mut v20, &mut v21] {
        v.as_object_mut().map(|o| o.remove("media-types"));
    }
    crate::common::json(StatusCode::OK, json!({"versions": [v20, v21]}))
}

pub async fn compute_root(State(state): State<AppState>) -> Response {
    versions_list(&state, "/compute")
}

fn one(state: &AppState, id: &str, self_href: String) -> Response {
    let mut v = version_entry(id, "");
    let links = json!([
        {"rel": "self", "href": self_href},
        {"rel": "describedby", "type": "text/html", "href": "http://docs.openstack.org/"},
    ]);
    v["links"] = links;
    let _ = state;
    crate::common::json(StatusCode::OK, json!({"version": v}))
}

pub async fn v21(State(state): State<AppState>, base: Option<Extension<ComputeBase>>) -> Response {
    let base = base.map(|b| b.0).unwrap_or_default();
    let href = format!("{}{}/", state.public_url(), base.versioned);
    // `/v2/{project_id}` is the legacy endpoint: it documents v2.0.
    one(&state, if base.legacy_v2 { "v2.0" } else { "v2.1" }, href)
}

pub async fn v20(State(state): State<AppState>) -> Response {
    let href = format!("{}/v2/", state.public_url());
    one(&state, "v2.0", href)
}
