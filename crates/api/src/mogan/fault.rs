//! Mogan's fault format, the one place Mogan statuses are chosen for errors.
//!
//! Mogan serves its API with pecan + WSME: WSME renders a fault as
//! `{"faultcode": "Client"|"Server", "faultstring": "...", "debuginfo": null}` and Mogan's
//! `ParsableErrorMiddleware` then wraps the whole error body, as a *string*, in
//! `{"error_message": "..."}`. Clients (python-moganclient) parse the inner string again, so
//! Nimbus reproduces both layers exactly.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use nimbus_model::Error;
use serde_json::json;

/// What a Mogan handler can fail with: a core error, or one of the two HTTP-level refusals
/// the core has no kind for.
#[derive(Debug)]
pub enum MoganError {
    Core(Error),
    /// The client's `Accept` header excludes JSON (pecan answers 406).
    NotAcceptable(String),
    /// The URL exists but not with this method.
    MethodNotAllowed,
}

impl From<Error> for MoganError {
    fn from(e: Error) -> Self {
        MoganError::Core(e)
    }
}

impl IntoResponse for MoganError {
    fn into_response(self) -> Response {
        render(&self)
    }
}

pub type MoganResult<T = Response> = Result<T, MoganError>;

/// Status and client-visible message for every error.
pub fn status_and_message(e: &MoganError) -> (StatusCode, String) {
    match e {
        MoganError::Core(core) => {
            let status = match core {
                Error::NotFound(_) => StatusCode::NOT_FOUND,
                Error::AlreadyExists(_)
                | Error::Conflict(_)
                | Error::Exhausted(_)
                | Error::InUse(_) => StatusCode::CONFLICT,
                Error::InvalidRequest(_) | Error::NoValidHost(_) => StatusCode::BAD_REQUEST,
                // Mogan's quota and policy failures are both 403s.
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
            (status, core.public_message())
        }
        MoganError::NotAcceptable(m) => (StatusCode::NOT_ACCEPTABLE, m.clone()),
        MoganError::MethodNotAllowed => (
            StatusCode::METHOD_NOT_ALLOWED,
            "The method specified is not allowed for this resource.".into(),
        ),
    }
}

pub fn render(e: &MoganError) -> Response {
    let (status, message) = status_and_message(e);
    // WSME: "Client" for 4xx, "Server" for everything else.
    let faultcode = if status.is_client_error() {
        "Client"
    } else {
        "Server"
    };
    // Written as Python's `json.dumps` prints WSME's fault dict (key order, `": "` and
    // `", "` separators), so the string is byte-for-byte what Mogan sends.
    let inner = format!(
        "{{\"faultcode\": {}, \"faultstring\": {}, \"debuginfo\": null}}",
        json!(faultcode),
        json!(message)
    );
    crate::common::json(status, json!({ "error_message": inner }))
}

/// For `common::render_error` (extractor rejections, 401s, unknown URLs, panics).
pub fn render_core(e: &Error) -> Response {
    render(&MoganError::Core(e.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_status_per_kind() {
        let table = [
            (MoganError::Core(Error::not_found("x")), 404),
            (MoganError::Core(Error::conflict("x")), 409),
            (MoganError::Core(Error::InUse("x".into())), 409),
            (MoganError::Core(Error::Exhausted("x".into())), 409),
            (MoganError::Core(Error::invalid("x")), 400),
            (MoganError::Core(Error::OverQuota("x".into())), 403),
            (MoganError::Core(Error::Forbidden("x".into())), 403),
            (MoganError::Core(Error::Unauthenticated("x".into())), 401),
            (MoganError::Core(Error::PayloadTooLarge("x".into())), 413),
            (MoganError::Core(Error::internal("secret")), 500),
            (MoganError::NotAcceptable("x".into()), 406),
            (MoganError::MethodNotAllowed, 405),
        ];
        for (e, code) in table {
            assert_eq!(status_and_message(&e).0.as_u16(), code, "{e:?}");
        }
        let (_, m) = status_and_message(&MoganError::Core(Error::internal("secret")));
        assert!(!m.contains("secret"));
    }

    #[tokio::test]
    async fn two_layer_body() {
        let resp = render(&MoganError::Core(Error::not_found(
            "Instance \"x\" could not be found.",
        )));
        let body = axum::body::to_bytes(resp.into_body(), 1 << 16)
            .await
            .unwrap();
        let outer: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let text = outer["error_message"].as_str().unwrap();
        assert_eq!(
            text,
            r#"{"faultcode": "Client", "faultstring": "Instance \"x\" could not be found.", "debuginfo": null}"#
        );
        let inner: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(inner["faultstring"], "Instance \"x\" could not be found.");
    }
}
