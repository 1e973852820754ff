//! Nova's fault format: `{"<name>": {"code": N, "message": "..."}}`, with the name from
//! nova `wsgi.Fault._fault_names`. The one place compute statuses are chosen for errors.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use nimbus_model::Error;

/// The error type compute handlers return.
#[derive(Debug)]
pub struct ComputeError(pub Error);

impl From<Error> for ComputeError {
    fn from(e: Error) -> Self {
        ComputeError(e)
    }
}

impl IntoResponse for ComputeError {
    fn into_response(self) -> Response {
        render(&self.0)
    }
}

pub type ComputeResult<T = Response> = Result<T, ComputeError>;

fn fault_name(code: u16) -> &'static str {
    match code {
        400 => "badRequest",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "itemNotFound",
        405 => "badMethod",
        409 => "conflictingRequest",
        413 => "overLimit",
        415 => "badMediaType",
        429 => "overLimit",
        501 => "notImplemented",
        503 => "serviceUnavailable",
        _ => "computeFault",
    }
}

/// Status for each error kind.
pub fn status(e: &Error) -> StatusCode {
    match e {
        Error::NotFound(_) => StatusCode::NOT_FOUND,
        Error::AlreadyExists(_) | Error::Conflict(_) | Error::Exhausted(_) | Error::InUse(_) => {
            StatusCode::CONFLICT
        }
        Error::InvalidRequest(_) | Error::NoValidHost(_) => StatusCode::BAD_REQUEST,
        // Nova answers quota exhaustion on create/update with 403.
        Error::OverQuota(_) | Error::Forbidden(_) => StatusCode::FORBIDDEN,
        Error::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
        Error::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        Error::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
        Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

pub fn render(e: &Error) -> Response {
    let status = status(e);
    if let Error::Internal(ctx) = e {
        tracing::error!(error = %ctx, "internal error");
    }
    if status == StatusCode::UNAUTHORIZED {
        // Keystone middleware answers 401s in front of Nova, in its own format.
        return crate::openstack::identity::fault(e);
    }
    let body = serde_json::json!({
        fault_name(status.as_u16()): {"code": status.as_u16(), "message": e.public_message()}
    });
    crate::common::json(status, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_status_per_kind() {
        let table = [
            (Error::not_found("x"), 404, "itemNotFound"),
            (Error::conflict("x"), 409, "conflictingRequest"),
            (Error::InUse("x".into()), 409, "conflictingRequest"),
            (Error::Exhausted("x".into()), 409, "conflictingRequest"),
            (Error::AlreadyExists("x".into()), 409, "conflictingRequest"),
            (Error::invalid("x"), 400, "badRequest"),
            (Error::OverQuota("x".into()), 403, "forbidden"),
            (Error::Forbidden("x".into()), 403, "forbidden"),
            (Error::PayloadTooLarge("x".into()), 413, "overLimit"),
            (Error::NotImplemented("x".into()), 501, "notImplemented"),
            (Error::Unavailable("x".into()), 503, "serviceUnavailable"),
            (Error::internal("secret"), 500, "computeFault"),
        ];
        for (e, code, name) in table {
            assert_eq!(status(&e).as_u16(), code, "{e:?}");
            assert_eq!(fault_name(code), name);
        }
        assert!(
            !Error::internal("secret")
                .public_message()
                .contains("secret")
        );
    }
}
