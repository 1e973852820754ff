//! The VPE dialect (seed 004) at `/instances`, plus what VPE needs around it: storage pools
//! (`/disk_pools`), data disks (`/disks`), per-instance metrics and a browser VNC console
//! (`/vnc`). Every resource is a view over the same core the OpenStack API uses: an instance
//! created here is an OpenStack server, and the other way round.
//!
//! Conventions (docs/dialects/vpe.md): every success is `200` with a JSON body, timestamps
//! are `YYYY-MM-DD HH:MM:SS` (UTC), ids are UUIDs named `uuid`, errors are
//! `{"error": {"code", "type", "message"}}` ([`fault`]). Everything but the console page,
//! its WebSocket and its static files needs `X-Auth-Token` (those three are opened by a
//! browser and carry a short-lived signed token instead, see [`console`]).

pub(crate) mod console;
mod disks;
pub mod fault;
mod instances;
mod metrics;
mod novnc;
mod pools;

use crate::AppState;
use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use fault::VpeError;
use nimbus_model::Error;
use nimbus_model::identity::Context;
use nimbus_model::time::Timestamp;

/// Path prefixes the VPE dialect owns (for `common::dialect_of`).
pub const PREFIXES: &[&str] = &["/instances", "/disk_pools", "/disks", "/vnc"];

/// Whether `path` belongs to VPE: one of [`PREFIXES`] as a whole path segment.
pub fn owns(path: &str) -> bool {
    PREFIXES.iter().any(|p| {
        path.strip_prefix(p)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    })
}

/// State of the VPE routes: the shared application state (whose `console_key` signs console
/// tokens; the Nova console calls issue the same URLs).
#[derive(Clone)]
pub struct VpeState {
    pub app: AppState,
}

/// Everything a VPE handler needs about an authenticated request.
pub struct Vpe {
    pub state: VpeState,
    pub ctx: Context,
    pub query: Vec<(String, String)>,
}

impl Vpe {
    pub fn control(&self) -> &nimbus_control::Control {
        &self.state.app.control
    }

    /// First value of a query parameter.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

impl FromRequestParts<VpeState> for Vpe {
    type Rejection = VpeError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &VpeState,
    ) -> Result<Self, Self::Rejection> {
        let ctx = parts.extensions.get::<Context>().cloned().ok_or_else(|| {
            VpeError(Error::Unauthenticated(
                "The request you have made requires authentication.".into(),
            ))
        })?;
        Ok(Vpe {
            state: state.clone(),
            ctx,
            query: crate::common::query_pairs(parts.uri.query()),
        })
    }
}

/// The seed's timestamp format: `2016-11-22 10:22:32` (UTC).
pub fn vpe_time(t: &Timestamp) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// Parse a UUID from the path; anything else is the resource's 404 (`what` names it).
pub fn path_id<T: std::str::FromStr>(what: &str, id: &str) -> Result<T, VpeError> {
    id.parse()
        .map_err(|_| VpeError(Error::not_found(format!("{what} {id} could not be found."))))
}

/// A request body that must be empty or the empty object `{}` (the seed sends `{}` with
/// start, stop and even with `GET .../vnc`). Anything else is a 400 naming the field.
pub struct EmptyBody;

impl<S: Send + Sync> axum::extract::FromRequest<S> for EmptyBody {
    type Rejection = crate::common::Rejection;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Empty {}
        let path = req.uri().path().to_owned();
        let reject = |error| crate::common::Rejection {
            path: path.clone(),
            error,
        };
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| {
                reject(if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    Error::PayloadTooLarge("Request is too large.".into())
                } else {
                    Error::invalid(format!("Could not read the request body: {e}"))
                })
            })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(EmptyBody);
        }
        crate::common::body::parse::<Empty>(&bytes)
            .map(|_| EmptyBody)
            .map_err(reject)
    }
}

pub fn router(app: AppState) -> Router {
    let state = VpeState { app: app.clone() };
    let api = Router::new()
        .merge(instances::routes())
        .merge(metrics::routes())
        .merge(console::api_routes())
        .merge(pools::routes())
        .merge(disks::routes())
        .layer(axum::middleware::from_fn(fault::method_not_allowed))
        .layer(axum::middleware::from_fn_with_state(
            app,
            crate::openstack::identity::require_token,
        ))
        .with_state(state.clone());
    let browser = console::browser_routes()
        .layer(axum::middleware::from_fn(fault::method_not_allowed))
        .with_state(state);
    api.merge(browser)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_whole_segments() {
        for p in [
            "/instances",
            "/instances/x/vnc",
            "/disk_pools",
            "/disks/abc",
            "/vnc",
            "/vnc/websockify",
        ] {
            assert!(owns(p), "{p}");
        }
        for p in [
            "/instancesx",
            "/v1/instances",
            "/disksx",
            "/vncx",
            "/servers",
        ] {
            assert!(!owns(p), "{p}");
        }
    }

    #[test]
    fn time_format() {
        let t = chrono::DateTime::from_timestamp(1_479_810_152, 0).unwrap();
        assert_eq!(vpe_time(&t), "2016-11-22 10:22:32");
    }
}
