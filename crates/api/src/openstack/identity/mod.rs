//! Keystone v3 subset under `/identity`: version discovery, tokens (password and token
//! methods, validation, revocation), the service catalog, and the admin resources
//! (projects, users, roles, assignments, domains) clients need.

mod admin;
mod auth;
pub mod catalog;

use crate::AppState;
use crate::common::RequestId;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post};
use nimbus_model::Error;

/// Keystone's error body: `{"error": {"code", "message", "title"}}`.
pub fn fault(e: &Error) -> Response {
    let (status, title) = match e {
        Error::NotFound(_) => (StatusCode::NOT_FOUND, "Not Found"),
        Error::AlreadyExists(_) | Error::Conflict(_) | Error::Exhausted(_) | Error::InUse(_) => {
            (StatusCode::CONFLICT, "Conflict")
        }
        Error::InvalidRequest(_) | Error::NoValidHost(_) => {
            (StatusCode::BAD_REQUEST, "Bad Request")
        }
        Error::Unauthenticated(_) => (StatusCode::UNAUTHORIZED, "Unauthorized"),
        Error::Forbidden(_) | Error::OverQuota(_) => (StatusCode::FORBIDDEN, "Forbidden"),
        Error::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large"),
        Error::NotImplemented(_) => (StatusCode::NOT_IMPLEMENTED, "Not Implemented"),
        Error::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable"),
        Error::Internal(ctx) => {
            tracing::error!(error = %ctx, "internal error");
            (StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
        }
    };
    let mut resp = crate::common::json(
        status,
        serde_json::json!({"error": {"code": status.as_u16(), "message": e.public_message(), "title": title}}),
    );
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(
            "www-authenticate",
            axum::http::HeaderValue::from_static("Keystone uri=\"/identity\""),
        );
    }
    resp
}

/// Token middleware shared by every OpenStack dialect: resolve `X-Auth-Token` into the
/// caller's [`TokenInfo`] and, for project-scoped tokens, a [`nimbus_model::identity::Context`].
/// Unscoped tokens reach identity routes only; other services answer 401 for them.
pub async fn require_token(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let path = req.uri().path().to_owned();
    let token = req
        .headers()
        .get("x-auth-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let Some(token) = token else {
        return crate::common::render_error(
            &path,
            &Error::Unauthenticated("The request you have made requires authentication.".into()),
        );
    };
    let info = match state.control.validate_token(&token).await {
        Ok(i) => i,
        Err(e) => return crate::common::render_error(&path, &e),
    };
    let request_id = req
        .extensions()
        .get::<RequestId>()
        .map(|r| r.0.clone())
        .unwrap_or_else(nimbus_model::request_id);
    match info.context(request_id) {
        Some(ctx) => {
            req.extensions_mut().insert(ctx);
        }
        None if path.starts_with("/identity") => {}
        None => {
            return crate::common::render_error(
                &path,
                &Error::Unauthenticated("The request you have made requires authentication: the token is not scoped to a project.".into()),
            );
        }
    }
    req.extensions_mut().insert(AuthToken(token));
    req.extensions_mut().insert(info);
    next.run(req).await
}

/// The raw token of the request (for `GET /v3/auth/tokens` self-validation).
#[derive(Clone, Debug)]
pub struct AuthToken(pub String);

/// Keystone timestamps: microseconds and `Z`.
pub fn keystone_time(t: &nimbus_model::time::Timestamp) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

pub fn router(state: AppState) -> Router {
    let open = Router::new()
        .route("/identity", get(auth::versions))
        .route("/identity/v3", get(auth::version_v3))
        .route("/identity/v3/auth/tokens", post(auth::issue))
        .with_state(state.clone());
    let protected = Router::new()
        .route(
            "/identity/v3/auth/tokens",
            get(auth::validate).head(auth::check).delete(auth::revoke),
        )
        .route("/identity/v3/auth/projects", get(auth::auth_projects))
        .route("/identity/v3/auth/catalog", get(auth::auth_catalog))
        .merge(admin::routes())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_token,
        ))
        .with_state(state);
    open.merge(protected)
}

pub(crate) type IdentityResult<T = Response> = Result<T, IdentityError>;

/// The error type identity handlers return.
#[derive(Debug)]
pub struct IdentityError(pub Error);

impl From<Error> for IdentityError {
    fn from(e: Error) -> Self {
        IdentityError(e)
    }
}

impl axum::response::IntoResponse for IdentityError {
    fn into_response(self) -> Response {
        fault(&self.0)
    }
}
