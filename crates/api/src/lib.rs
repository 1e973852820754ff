//! The HTTP surface: one listener, every dialect under its own prefix (DESIGN §2).
//!
//! Handlers parse and render; they call [`nimbus_control::Control`] and never the store.
//! Each dialect maps [`nimbus_model::Error`] to its own status and fault body in a single
//! `match` (see `openstack::compute::fault`, `openstack::identity::fault`, ...).

mod alliance;
pub mod common;
pub mod cyclades;
pub mod internal;
mod mogan;
pub mod openstack;
pub mod vpe;

use axum::Router;
use nimbus_control::Control;
use std::sync::Arc;

/// API settings.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    /// The base URL clients reach this service at, without a trailing slash
    /// (e.g. `http://127.0.0.1:8774`). Links and the catalog are built from it.
    pub public_url: String,
    /// Largest accepted request body (image uploads excepted).
    pub max_body_bytes: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            public_url: "http://127.0.0.1:8774".into(),
            max_body_bytes: 1024 * 1024,
        }
    }
}

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    pub control: Control,
    pub config: Arc<ApiConfig>,
    /// Signs browser console URLs (`/vnc?token=`); per process, so a restart invalidates
    /// outstanding console URLs. Shared by every dialect that hands out a console.
    pub console_key: Arc<[u8; 32]>,
}

impl AppState {
    pub fn public_url(&self) -> &str {
        &self.config.public_url
    }
}

/// The routes of every dialect, with the cross-cutting layers (request ids, panic capture,
/// body limit). Wrap it with [`common::paths::normalize`] before serving (see
/// [`common::paths::NormalizedApp`]) so aliases like `/v2.1/{project_id}/...` route.
pub fn router(control: Control, config: ApiConfig) -> Router {
    let mut console_key = [0u8; 32];
    rand::Rng::fill(&mut rand::thread_rng(), &mut console_key[..]);
    let state = AppState {
        control,
        config: Arc::new(config),
        console_key: Arc::new(console_key),
    };
    let limit = state.config.max_body_bytes;
    Router::new()
        .merge(openstack::identity::router(state.clone()))
        .merge(openstack::compute::router(state.clone()))
        .merge(openstack::image::router(state.clone()))
        .merge(vpe::router(state.clone()))
        .merge(cyclades::router(state.clone()))
        .merge(internal::router(state.clone()))
        .merge(mogan::router(state.clone()))
        .merge(alliance::router(state.clone()))
        .route(
            "/",
            axum::routing::get(openstack::root_versions).with_state(state.clone()),
        )
        .fallback(common::not_found_fallback)
        .layer(axum::middleware::from_fn(common::catch_panic))
        .layer(axum::middleware::from_fn(common::dialect_rejections))
        .layer(axum::extract::DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn(common::request_id))
}
