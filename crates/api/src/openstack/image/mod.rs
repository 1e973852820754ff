//! Glance v2 subset under `/image` (filled in by the image module).

use crate::AppState;
use axum::Router;
use axum::http::StatusCode;
use axum::response::Response;
use nimbus_model::Error;

/// Glance's error body (webob's JSON error page shape).
pub fn fault(e: &Error) -> Response {
    let status = crate::openstack::compute::fault::status(e);
    let title = status.canonical_reason().unwrap_or("Error");
    if let Error::Internal(ctx) = e {
        tracing::error!(error = %ctx, "internal error");
    }
    if status == StatusCode::UNAUTHORIZED {
        return crate::openstack::identity::fault(e);
    }
    crate::common::json(
        status,
        serde_json::json!({"code": status.as_u16(), "title": title, "message": e.public_message()}),
    )
}

pub fn router(_state: AppState) -> Router {
    Router::new()
}
