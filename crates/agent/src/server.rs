//! The agent's internal HTTP API, which a controller drives (`nimbus agent`):
//!
//! - `POST /v1/call`: one [`AgentRequest`] as JSON → its [`AgentReply`], or an
//!   [`AgentError`] with a 4xx/5xx status;
//! - `GET /v1/files?location=...`: stream a file the driver produced (snapshots),
//!   confined to the driver's work directory;
//! - `GET /v1/health`: liveness.
//!
//! Every request must carry the shared secret (`Authorization: Bearer <secret>`); there is
//! no unauthenticated access.

use crate::Agent;
use axum::Router;
use axum::extract::{Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use nimbus_model::Error;
use nimbus_model::agent::{AgentError, AgentRequest};
use std::sync::Arc;

/// Header value every request must carry.
pub fn bearer(secret: &str) -> String {
    format!("Bearer {secret}")
}

#[derive(Clone)]
struct AgentState {
    agent: Agent,
    secret: Arc<str>,
}

/// Status for an agent error crossing HTTP.
pub fn status_of(e: &Error) -> StatusCode {
    match e {
        Error::NotFound(_) => StatusCode::NOT_FOUND,
        Error::InvalidRequest(_) => StatusCode::BAD_REQUEST,
        Error::Conflict(_) | Error::Exhausted(_) | Error::InUse(_) | Error::AlreadyExists(_) => {
            StatusCode::CONFLICT
        }
        Error::Forbidden(_) => StatusCode::FORBIDDEN,
        Error::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
        Error::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
        Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn error_response(e: &Error) -> Response {
    (status_of(e), axum::Json(AgentError::from(e))).into_response()
}

async fn authenticate(State(st): State<AgentState>, req: Request, next: Next) -> Response {
    let ok = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| constant_time_eq(v.as_bytes(), bearer(&st.secret).as_bytes()));
    if !ok {
        return error_response(&Error::Unauthenticated(
            "missing or wrong agent secret".into(),
        ));
    }
    next.run(req).await
}

/// Compare secrets without leaking where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn call(State(st): State<AgentState>, body: axum::body::Bytes) -> Response {
    let req: AgentRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error_response(&Error::invalid(format!("bad agent request: {e}"))),
    };
    match st.agent.handle(req).await {
        Ok(reply) => axum::Json(reply).into_response(),
        Err(e) => error_response(&e),
    }
}

#[derive(serde::Deserialize)]
struct FileQuery {
    location: String,
}

async fn file(State(st): State<AgentState>, Query(q): Query<FileQuery>) -> Response {
    match st.agent.open_file(&q.location).await {
        Ok(f) => {
            let body = axum::body::Body::from_stream(tokio_util::io::ReaderStream::new(f));
            ([("content-type", "application/octet-stream")], body).into_response()
        }
        Err(e) => error_response(&e),
    }
}

/// The agent's router.
pub fn router(agent: Agent, secret: &str) -> Router {
    let st = AgentState {
        agent,
        secret: Arc::from(secret),
    };
    Router::new()
        .route("/v1/call", post(call))
        .route("/v1/files", get(file))
        .route("/v1/health", get(|| async { "ok" }))
        .layer(axum::middleware::from_fn_with_state(
            st.clone(),
            authenticate,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(16 * 1024 * 1024))
        .with_state(st)
}
