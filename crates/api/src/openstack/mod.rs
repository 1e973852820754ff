//! The OpenStack dialects: identity (Keystone v3 subset), compute (Nova v2.1 with
//! microversions) and image (Glance v2 subset).

pub mod compute;
pub mod identity;
pub mod image;

use crate::AppState;
use axum::extract::State;
use axum::response::Response;

/// `GET /` on the listener: Nova's version list (Nova owns port 8774 in a real cloud).
pub async fn root_versions(State(state): State<AppState>) -> Response {
    compute::versions::versions_list(&state, "/")
}
