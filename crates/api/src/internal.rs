//! The controller's internal API for compute agents (`/internal/v1`), authenticated with
//! the shared agent secret (`Authorization: Bearer <secret>`); absent when no secret is
//! configured.
//!
//! - `POST /internal/v1/hosts/register` — an agent announces its address; the controller
//!   calls it back to describe the host and answers `{"host_id"}`.
//! - `POST /internal/v1/hosts/{id}/heartbeat` — 204; 404 if the host is unknown (the agent
//!   then registers again).
//! - `POST /internal/v1/hosts/{id}/events` — a JSON list of agent events; 403 (nothing
//!   applied) if one names a server on another host.
//! - `GET /internal/v1/blobs/{sha512}` — an image's bytes, for remote agents' image caches.

use crate::AppState;
use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use nimbus_control::hosts::HostOptions;
use nimbus_model::agent::{AgentError, AgentEvent};
use nimbus_model::{Error, HostId};
use serde::Deserialize;

fn fault(e: &Error) -> Response {
    let status = match e {
        Error::NotFound(_) => StatusCode::NOT_FOUND,
        Error::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
        Error::Forbidden(_) => StatusCode::FORBIDDEN,
        Error::InvalidRequest(_) => StatusCode::BAD_REQUEST,
        Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (status, axum::Json(AgentError::from(e))).into_response()
}

async fn authenticate(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(secret) = state.control.agent_secret() else {
        return fault(&Error::not_found(
            "The internal API is disabled: no agent secret is configured.",
        ));
    };
    let wanted = format!("Bearer {secret}");
    let given = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let same = given.len() == wanted.len()
        && given
            .bytes()
            .zip(wanted.bytes())
            .fold(0u8, |a, (x, y)| a | (x ^ y))
            == 0;
    if !same {
        return fault(&Error::Unauthenticated(
            "missing or wrong agent secret".into(),
        ));
    }
    next.run(req).await
}

#[derive(Deserialize)]
struct Registration {
    address: String,
    #[serde(default = "ratio_cpu")]
    cpu_allocation_ratio: f64,
    #[serde(default = "one")]
    ram_allocation_ratio: f64,
    #[serde(default = "one")]
    disk_allocation_ratio: f64,
    #[serde(default = "zone")]
    availability_zone: String,
}

fn ratio_cpu() -> f64 {
    HostOptions::default().cpu_allocation_ratio
}

fn one() -> f64 {
    1.0
}

fn zone() -> String {
    HostOptions::default().availability_zone
}

async fn register(State(state): State<AppState>, body: axum::body::Bytes) -> Response {
    let reg: Registration = match crate::common::body::parse(&body) {
        Ok(r) => r,
        Err(e) => return fault(&e),
    };
    let options = HostOptions {
        cpu_allocation_ratio: reg.cpu_allocation_ratio,
        ram_allocation_ratio: reg.ram_allocation_ratio,
        disk_allocation_ratio: reg.disk_allocation_ratio,
        availability_zone: reg.availability_zone,
    };
    match state
        .control
        .register_remote_agent(&reg.address, options)
        .await
    {
        Ok(host) => axum::Json(serde_json::json!({"host_id": host.id})).into_response(),
        Err(e) => fault(&e),
    }
}

fn host_id(id: &str) -> Result<HostId, Error> {
    id.parse()
        .map_err(|_| Error::not_found(format!("Unknown host {id}.")))
}

async fn heartbeat(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    match host_id(&id) {
        Ok(h) => match state.control.host_heartbeat(h).await {
            Ok(()) => StatusCode::NO_CONTENT.into_response(),
            Err(e) => fault(&e),
        },
        Err(e) => fault(&e),
    }
}

async fn events(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let evs: Vec<AgentEvent> = match crate::common::body::parse(&body) {
        Ok(v) => v,
        Err(e) => return fault(&e),
    };
    match host_id(&id) {
        Ok(h) => match state.control.agent_events(h, evs).await {
            Ok(()) => StatusCode::NO_CONTENT.into_response(),
            Err(e) => fault(&e),
        },
        Err(e) => fault(&e),
    }
}

async fn blob(State(state): State<AppState>, Path(hash): Path<String>) -> Response {
    if hash.len() != 128 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return fault(&Error::invalid("A blob is named by its SHA-512 in hex."));
    }
    match tokio::fs::File::open(state.control.image_blob_path(&hash)).await {
        Ok(f) => {
            let body = axum::body::Body::from_stream(tokio_util::io::ReaderStream::new(f));
            ([("content-type", "application/octet-stream")], body).into_response()
        }
        Err(_) => fault(&Error::not_found(format!("No blob {hash}."))),
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/internal/v1/hosts/register", post(register))
        .route("/internal/v1/hosts/{id}/heartbeat", post(heartbeat))
        .route("/internal/v1/hosts/{id}/events", post(events))
        .route("/internal/v1/blobs/{hash}", get(blob))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            authenticate,
        ))
        .with_state(state)
}
