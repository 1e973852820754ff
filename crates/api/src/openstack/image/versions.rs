//! Glance's version documents and version negotiation (glance `api/versions.py` and
//! `api/middleware/version_negotiation.py`, default configuration: no image cache, no
//! multiple stores).
//!
//! - `/image` (and `/image/`) → 300 with the version list; no token needed.
//! - `/image/versions[/...]` → 200 with the same list.
//! - `/image/v2.N/...` for an advertised `v2.N` is the same as `/image/v2/...`.
//! - Any other first segment (`/image/v1/images`, `/image/v3`) → 300 with the list, as
//!   Glance answers requests for versions it does not serve.

use crate::AppState;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use axum::routing::any;
use serde_json::{Value, json};
use tower::ServiceExt;

/// The list Glance 33 prints with its default configuration, in its order.
const VERSIONS: &[(&str, &str)] = &[
    ("2.15", "SUPPORTED"),
    ("2.9", "SUPPORTED"),
    ("2.17", "CURRENT"),
    ("2.7", "SUPPORTED"),
    ("2.6", "SUPPORTED"),
    ("2.5", "SUPPORTED"),
    ("2.4", "SUPPORTED"),
    ("2.3", "SUPPORTED"),
    ("2.2", "SUPPORTED"),
    ("2.1", "SUPPORTED"),
    ("2.0", "SUPPORTED"),
];

/// URL prefixes Glance maps to its v2 API (besides `v2` itself).
fn is_v2_alias(seg: &str) -> bool {
    seg.strip_prefix('v')
        .is_some_and(|v| VERSIONS.iter().any(|(n, _)| *n == v))
}

pub fn versions_doc(public_url: &str) -> Value {
    let href = format!("{public_url}/image/v2/");
    let list: Vec<Value> = VERSIONS
        .iter()
        .map(|(v, status)| {
            json!({"id": format!("v{v}"), "status": status, "links": [{"rel": "self", "href": href}]})
        })
        .collect();
    json!({ "versions": list })
}

async fn choices(State(state): State<AppState>) -> Response {
    crate::common::json(
        StatusCode::MULTIPLE_CHOICES,
        versions_doc(state.public_url()),
    )
}

async fn explicit(State(state): State<AppState>) -> Response {
    crate::common::json(StatusCode::OK, versions_doc(state.public_url()))
}

/// Everything under `/image/` that the v2 routes do not claim.
async fn negotiate(State((state, v2)): State<(AppState, Router)>, mut req: Request) -> Response {
    let path = req.uri().path().to_owned();
    let rest = path.strip_prefix("/image/").unwrap_or("");
    let (first, tail) = match rest.split_once('/') {
        Some((f, t)) => (f, Some(t)),
        None => (rest, None),
    };
    if first == "versions" {
        return explicit(State(state)).await;
    }
    if is_v2_alias(first) {
        let new_path = match tail {
            Some(t) => format!("/image/v2/{t}"),
            None => "/image/v2".to_owned(),
        };
        let pq = match req.uri().query() {
            Some(q) => format!("{new_path}?{q}"),
            None => new_path,
        };
        if let Ok(uri) = pq.parse::<Uri>() {
            *req.uri_mut() = uri;
            return match v2.oneshot(req).await {
                Ok(resp) => resp,
                Err(never) => match never {},
            };
        }
    }
    choices(State(state)).await
}

pub fn routes(state: AppState, v2: Router) -> Router {
    Router::new()
        .route("/image", any(choices))
        .route("/image/versions", any(explicit))
        .with_state(state.clone())
        .merge(
            Router::new()
                .route("/image/{*rest}", any(negotiate))
                .with_state((state, v2)),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_and_aliases() {
        let d = versions_doc("http://h:1");
        let list = d["versions"].as_array().unwrap();
        assert_eq!(list.len(), VERSIONS.len());
        assert_eq!(list.iter().filter(|v| v["status"] == "CURRENT").count(), 1);
        assert_eq!(list[0]["links"][0]["href"], "http://h:1/image/v2/");
        assert!(is_v2_alias("v2.1"));
        assert!(is_v2_alias("v2.17"));
        assert!(!is_v2_alias("v2.8"));
        assert!(!is_v2_alias("v1"));
        assert!(!is_v2_alias("images"));
    }
}
