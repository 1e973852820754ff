//! Alliance faults. The seed lists no error bodies, so Nimbus defines one shape for every
//! Alliance error (documented in `docs/dialects/alliance.md`):
//!
//! ```json
//! {"error": {"code": 409, "title": "Conflict", "message": "...", "candidates": ["<id>", "<id>"]}}
//! ```
//!
//! `candidates` appears only when a name matched more than one resource: it lists their ids
//! so the client can retry with one. This module is the one place Alliance statuses are
//! chosen for errors.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use nimbus_model::Error;
use serde_json::json;

#[derive(Debug)]
pub enum AllianceError {
    Core(Error),
    /// A name that matches several resources of `kind` ("server", "flavor", ...).
    Ambiguous {
        kind: &'static str,
        name: String,
        ids: Vec<String>,
    },
    /// The URL exists but not with this method.
    MethodNotAllowed,
}

impl From<Error> for AllianceError {
    fn from(e: Error) -> Self {
        AllianceError::Core(e)
    }
}

impl IntoResponse for AllianceError {
    fn into_response(self) -> Response {
        render(&self)
    }
}

pub type AllianceResult<T = Response> = Result<T, AllianceError>;

pub fn render(e: &AllianceError) -> Response {
    let (status, message, candidates) = match e {
        AllianceError::Core(core) => {
            let status = match core {
                Error::NotFound(_) => StatusCode::NOT_FOUND,
                Error::AlreadyExists(_)
                | Error::Conflict(_)
                | Error::Exhausted(_)
                | Error::InUse(_) => StatusCode::CONFLICT,
                Error::InvalidRequest(_) | Error::NoValidHost(_) => StatusCode::BAD_REQUEST,
                Error::OverQuota(_) | Error::Forbidden(_) => StatusCode::FORBIDDEN,
                Error::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
                Error::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
                Error::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
                Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
                Error::Internal(ctx) => {
                    tracing::error!(error = %ctx, "internal error");
                    StatusCode::INTERNAL_SERVER_ERROR
                }
            };
            (status, core.public_message(), None)
        }
        AllianceError::Ambiguous { kind, name, ids } => (
            StatusCode::CONFLICT,
            format!(
                "More than one {kind} is named '{name}'; use one of the ids listed in 'candidates'."
            ),
            Some(ids.clone()),
        ),
        AllianceError::MethodNotAllowed => (
            StatusCode::METHOD_NOT_ALLOWED,
            "The method specified is not allowed for this resource.".into(),
            None,
        ),
    };
    let mut body = json!({
        "code": status.as_u16(),
        "title": status.canonical_reason().unwrap_or("Error"),
        "message": message,
    });
    if let Some(ids) = candidates {
        body["candidates"] = json!(ids);
    }
    crate::common::json(status, json!({ "error": body }))
}

/// For `common::render_error` (extractor rejections, 401s, unknown URLs, panics).
pub fn render_core(e: &Error) -> Response {
    render(&AllianceError::Core(e.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        let table = [
            (AllianceError::Core(Error::not_found("x")), 404),
            (AllianceError::Core(Error::conflict("x")), 409),
            (AllianceError::Core(Error::invalid("x")), 400),
            (AllianceError::Core(Error::Forbidden("x".into())), 403),
            (AllianceError::Core(Error::Unauthenticated("x".into())), 401),
            (AllianceError::Core(Error::internal("x")), 500),
            (
                AllianceError::Ambiguous {
                    kind: "server",
                    name: "a".into(),
                    ids: vec!["1".into()],
                },
                409,
            ),
            (AllianceError::MethodNotAllowed, 405),
        ];
        for (e, code) in table {
            assert_eq!(render(&e).status().as_u16(), code, "{e:?}");
        }
    }
}
