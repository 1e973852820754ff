//! Glance v2 subset under `/image` (glance 33 with its default configuration).
//!
//! - `versions`: the version documents (no token), and Glance's version negotiation for
//!   unknown path prefixes.
//! - `images`: list, show, create, PATCH (JSON Patch), delete, tags, the image view.
//! - `data`: `PUT`/`GET /file`, streamed in both directions.
//! - `schemas`: `/v2/schemas/image` and `/v2/schemas/images`.
//!
//! Errors use webob's JSON error page, which is what Glance sends to clients that accept
//! JSON: `{"message": "<explanation><br /><br />\n<detail>\n\n", "code": "404 Not Found",
//! "title": "Not Found"}`. 401s come from keystonemiddleware in front of Glance, so they are
//! Keystone's.

mod data;
mod images;
mod schemas;
mod versions;

pub use images::view;

use crate::AppState;
use axum::Router;
use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use nimbus_model::Error;
use nimbus_model::identity::Context;

/// The webob reason phrase Glance puts in `title` and `code`.
fn title(status: StatusCode) -> &'static str {
    match status.as_u16() {
        413 => "Request Entity Too Large",
        416 => "Request Range Not Satisfiable",
        _ => status.canonical_reason().unwrap_or("Error"),
    }
}

/// Status for each error kind in the image dialect.
pub fn status(e: &Error) -> StatusCode {
    match e {
        Error::NotFound(_) => StatusCode::NOT_FOUND,
        Error::AlreadyExists(_) | Error::Conflict(_) | Error::Exhausted(_) | Error::InUse(_) => {
            StatusCode::CONFLICT
        }
        Error::InvalidRequest(_) | Error::NoValidHost(_) => StatusCode::BAD_REQUEST,
        // Glance's quotas (tags, properties, size) are 413s.
        Error::OverQuota(_) | Error::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        Error::Forbidden(_) => StatusCode::FORBIDDEN,
        Error::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
        Error::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
        Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A webob error page with an explicit status, explanation and detail.
pub fn page(status: StatusCode, explanation: &str, detail: &str) -> Response {
    let t = title(status);
    crate::common::json(
        status,
        serde_json::json!({
            "message": format!("{explanation}<br /><br />\n{detail}\n\n"),
            "code": format!("{} {t}", status.as_u16()),
            "title": t,
        }),
    )
}

/// Glance's error body for an error.
pub fn fault(e: &Error) -> Response {
    let status = status(e);
    if let Error::Internal(ctx) = e {
        tracing::error!(error = %ctx, "internal error");
    }
    if status == StatusCode::UNAUTHORIZED {
        return crate::openstack::identity::fault(e);
    }
    page(status, &e.public_message(), "")
}

/// The error type image handlers return.
#[derive(Debug)]
pub struct GlanceError(pub Error);

impl From<Error> for GlanceError {
    fn from(e: Error) -> Self {
        GlanceError(e)
    }
}

impl IntoResponse for GlanceError {
    fn into_response(self) -> Response {
        fault(&self.0)
    }
}

pub type GlanceResult<T = Response> = Result<T, GlanceError>;

/// The caller of a protected image route (set by the token middleware).
pub struct Caller(pub Context);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = GlanceError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Context>()
            .cloned()
            .map(Caller)
            .ok_or_else(|| {
                GlanceError(Error::Unauthenticated(
                    "The request you have made requires authentication.".into(),
                ))
            })
    }
}

/// axum answers an unroutable method with an empty 405; Glance sends webob's page with
/// the `Allow` header.
async fn method_not_allowed(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let resp = next.run(req).await;
    if resp.status() != StatusCode::METHOD_NOT_ALLOWED {
        return resp;
    }
    let mut out = page(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!("The method {method} is not allowed for this resource. "),
        "",
    );
    if let Some(allow) = resp.headers().get("allow") {
        out.headers_mut().insert("allow", allow.clone());
    }
    out
}

/// Glance's 404 for paths under `/v2` that match no route.
async fn v2_not_found() -> Response {
    fault(&Error::not_found("The resource could not be found."))
}

/// The routes behind the token check, as Glance serves them under `/v2`.
fn v2_routes(state: AppState) -> Router {
    Router::new()
        .merge(images::routes())
        .merge(data::routes())
        .merge(schemas::routes())
        .route("/image/v2", axum::routing::any(v2_not_found))
        .route("/image/v2/{*rest}", axum::routing::any(v2_not_found))
        .layer(axum::middleware::from_fn(method_not_allowed))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::openstack::identity::require_token,
        ))
        .with_state(state)
}

pub fn router(state: AppState) -> Router {
    let v2 = v2_routes(state.clone());
    Router::new()
        .merge(versions::routes(state.clone(), v2.clone()))
        .merge(v2)
}

/// `Content-Type` of a request without parameters, lower-cased.
fn media_type(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
}

/// webob's 415 page: `The request media type X is not supported by this server.`
fn unsupported_media(content_type: Option<&str>, detail: &str) -> Response {
    let t = title(StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let ct = content_type.unwrap_or("");
    crate::common::json(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        serde_json::json!({
            "message": format!("The request media type {ct} is not supported by this server.\n<br /><br />\n{detail}"),
            "code": format!("415 {t}"),
            "title": t,
        }),
    )
}

fn header(value: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        let table = [
            (Error::not_found("x"), 404),
            (Error::conflict("x"), 409),
            (Error::invalid("x"), 400),
            (Error::Forbidden("x".into()), 403),
            (Error::PayloadTooLarge("x".into()), 413),
            (Error::internal("secret"), 500),
        ];
        for (e, code) in table {
            assert_eq!(status(&e).as_u16(), code, "{e:?}");
        }
        assert_eq!(
            title(StatusCode::PAYLOAD_TOO_LARGE),
            "Request Entity Too Large"
        );
    }
}
