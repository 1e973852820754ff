//! VPE faults. The seed defines none, so Nimbus uses one plain shape for every VPE error:
//! `{"error": {"code": <HTTP status>, "type": "<Kind>", "message": "..."}}` (see
//! `docs/dialects/vpe.md`). This is the one place VPE statuses are chosen for errors.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use nimbus_model::Error;

/// The error type VPE handlers return.
#[derive(Debug)]
pub struct VpeError(pub Error);

impl From<Error> for VpeError {
    fn from(e: Error) -> Self {
        VpeError(e)
    }
}

impl IntoResponse for VpeError {
    fn into_response(self) -> Response {
        render(&self.0)
    }
}

pub type VpeResult<T = Response> = Result<T, VpeError>;

/// Status and `type` for each error kind.
pub fn classify(e: &Error) -> (StatusCode, &'static str) {
    match e {
        Error::NotFound(_) => (StatusCode::NOT_FOUND, "NotFound"),
        Error::AlreadyExists(_) | Error::Conflict(_) | Error::Exhausted(_) | Error::InUse(_) => {
            (StatusCode::CONFLICT, "Conflict")
        }
        Error::InvalidRequest(_) => (StatusCode::BAD_REQUEST, "BadRequest"),
        // No host can take the server: the request was valid but cannot be met now.
        Error::NoValidHost(_) => (StatusCode::SERVICE_UNAVAILABLE, "NoValidHost"),
        Error::OverQuota(_) => (StatusCode::FORBIDDEN, "OverQuota"),
        Error::Forbidden(_) => (StatusCode::FORBIDDEN, "Forbidden"),
        Error::Unauthenticated(_) => (StatusCode::UNAUTHORIZED, "Unauthorized"),
        Error::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "PayloadTooLarge"),
        Error::NotImplemented(_) => (StatusCode::NOT_IMPLEMENTED, "NotImplemented"),
        Error::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "Unavailable"),
        Error::Internal(ctx) => {
            tracing::error!(error = %ctx, "internal error");
            (StatusCode::INTERNAL_SERVER_ERROR, "InternalError")
        }
    }
}

pub fn render(e: &Error) -> Response {
    let (status, kind) = classify(e);
    crate::common::json(
        status,
        serde_json::json!({"error": {"code": status.as_u16(), "type": kind, "message": e.public_message()}}),
    )
}

/// A 405 in VPE's shape (axum answers an unroutable method with an empty body).
pub async fn method_not_allowed(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let resp = next.run(req).await;
    if resp.status() != StatusCode::METHOD_NOT_ALLOWED {
        return resp;
    }
    let mut out = crate::common::json(
        StatusCode::METHOD_NOT_ALLOWED,
        serde_json::json!({"error": {"code": 405, "type": "MethodNotAllowed", "message": "The method is not allowed for this resource."}}),
    );
    if let Some(allow) = resp.headers().get("allow") {
        out.headers_mut().insert("allow", allow.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_status_per_kind() {
        let table = [
            (Error::not_found("x"), 404, "NotFound"),
            (Error::conflict("x"), 409, "Conflict"),
            (Error::InUse("x".into()), 409, "Conflict"),
            (Error::Exhausted("x".into()), 409, "Conflict"),
            (Error::AlreadyExists("x".into()), 409, "Conflict"),
            (Error::invalid("x"), 400, "BadRequest"),
            (Error::NoValidHost("x".into()), 503, "NoValidHost"),
            (Error::OverQuota("x".into()), 403, "OverQuota"),
            (Error::Forbidden("x".into()), 403, "Forbidden"),
            (Error::Unauthenticated("x".into()), 401, "Unauthorized"),
            (Error::PayloadTooLarge("x".into()), 413, "PayloadTooLarge"),
            (Error::NotImplemented("x".into()), 501, "NotImplemented"),
            (Error::Unavailable("x".into()), 503, "Unavailable"),
            (Error::internal("secret"), 500, "InternalError"),
        ];
        for (e, code, kind) in table {
            let (s, k) = classify(&e);
            assert_eq!((s.as_u16(), k), (code, kind), "{e:?}");
        }
    }
}
