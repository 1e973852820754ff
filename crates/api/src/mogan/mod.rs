//! The Mogan dialect (seed 002) at `/v1/instances`: Mogan's bare-metal instances API as a
//! view over the core servers. Instances are core servers; `instance_type_uuid` is the
//! flavor, `image_uuid` the image, `extra` the metadata, `network_info` the NICs; status and
//! power-state names come from `nimbus_model::state::mogan_*`. Faults are Mogan-shaped
//! (see [`fault`]). Deliberate deviations from the seed are listed in
//! `docs/dialects/mogan.md`.

pub mod fault;
mod instances;
mod patch;

use crate::AppState;
use axum::Router;
use axum::extract::{FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use fault::MoganError;
use nimbus_model::identity::Context;
use nimbus_model::time::Timestamp;
use nimbus_model::{Error, ServerId};

/// Everything a Mogan handler needs about the request.
pub struct Mogan {
    pub state: AppState,
    pub ctx: Context,
    pub query: Vec<(String, String)>,
}

impl Mogan {
    pub fn control(&self) -> &nimbus_control::Control {
        &self.state.control
    }

    /// `{public}/v1/instances/{id}`.
    pub fn instance_url(&self, id: &str) -> String {
        format!("{}/v1/instances/{id}", self.state.public_url())
    }

    /// Mogan's `links`. Mogan's bookmark is the unversioned `/instances/{id}`, which on
    /// Nimbus's shared listener is the VPE dialect's URL; the bookmark points at the
    /// versioned Mogan URL instead, so following it answers in Mogan's format.
    pub fn links(&self, id: &str) -> serde_json::Value {
        let href = self.instance_url(id);
        serde_json::json!([
            {"href": href, "rel": "self"},
            {"href": href, "rel": "bookmark"},
        ])
    }

    /// Refuse query parameters the endpoint does not take (WSME's "Unknown argument").
    pub fn check_query(&self, known: &[&str]) -> Result<(), Error> {
        match self
            .query
            .iter()
            .find(|(k, _)| !known.contains(&k.as_str()))
        {
            Some((k, _)) => Err(Error::invalid(format!("Unknown argument: \"{k}\""))),
            None => Ok(()),
        }
    }

    pub fn param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

impl FromRequestParts<AppState> for Mogan {
    type Rejection = MoganError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let ctx = parts.extensions.get::<Context>().cloned().ok_or_else(|| {
            MoganError::Core(Error::Unauthenticated(
                "The request you have made requires authentication.".into(),
            ))
        })?;
        Ok(Mogan {
            state: state.clone(),
            ctx,
            query: crate::common::query_pairs(parts.uri.query()),
        })
    }
}

/// An instance UUID from the path. Mogan's `types.uuid` refuses anything else with a 400.
pub fn instance_id(id: &str) -> Result<ServerId, MoganError> {
    id.parse().map_err(|_| {
        MoganError::Core(Error::invalid(format!(
            "Expected a uuid but received {id}."
        )))
    })
}

/// Mogan timestamps: Python's `datetime.isoformat()` of an aware UTC time, microseconds
/// only when non-zero (`2016-10-17T04:12:41+00:00`, `2016-09-27T02:37:21.966342+00:00`).
pub fn mogan_time(t: &Timestamp) -> String {
    use chrono::Timelike;
    if t.nanosecond() / 1000 == 0 {
        t.format("%Y-%m-%dT%H:%M:%S+00:00").to_string()
    } else {
        t.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string()
    }
}

/// Mogan serves JSON only: pecan answers 406 when the `Accept` header rules JSON out.
async fn accept_json(req: Request, next: Next) -> Response {
    if let Some(accept) = req
        .headers()
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        && !accepts_json(accept)
    {
        return MoganError::NotAcceptable(format!(
            "Requested content type '{accept}' is not acceptable: this API serves application/json only."
        ))
        .into_response();
    }
    next.run(req).await
}

fn accepts_json(accept: &str) -> bool {
    accept.trim().is_empty()
        || accept.split(',').any(|range| {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
            let refused = parts.any(|p| {
                let p = p.trim().replace(' ', "");
                p == "q=0" || p == "q=0.0" || p == "q=0.00" || p == "q=0.000"
            });
            !refused && matches!(media.as_str(), "*/*" | "application/*" | "application/json")
        })
}

/// axum answers an unroutable method with an empty 405; Mogan sends its fault body.
async fn method_not_allowed(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    if resp.status() == StatusCode::METHOD_NOT_ALLOWED {
        let mut out = MoganError::MethodNotAllowed.into_response();
        if let Some(allow) = resp.headers().get("allow") {
            out.headers_mut().insert("allow", allow.clone());
        }
        return out;
    }
    resp
}

pub fn router(state: AppState) -> Router {
    instances::routes()
        .layer(axum::middleware::from_fn(accept_json))
        .layer(axum::middleware::from_fn(method_not_allowed))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::openstack::identity::require_token,
        ))
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn times_as_python_prints_them() {
        let t = chrono::Utc
            .with_ymd_and_hms(2016, 10, 17, 4, 12, 41)
            .unwrap();
        assert_eq!(mogan_time(&t), "2016-10-17T04:12:41+00:00");
        let t = t + chrono::Duration::microseconds(966342);
        assert_eq!(mogan_time(&t), "2016-10-17T04:12:41.966342+00:00");
    }

    #[test]
    fn accept_header() {
        for ok in [
            "",
            "*/*",
            "application/json",
            "application/json; charset=UTF-8",
            "text/html, application/*;q=0.5",
        ] {
            assert!(accepts_json(ok), "{ok}");
        }
        for no in ["application/xml", "text/html", "application/json;q=0"] {
            assert!(!accepts_json(no), "{no}");
        }
    }
}
