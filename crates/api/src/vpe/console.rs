//! The VPE VNC console: `GET /instances/{uuid}/vnc` hands out a `vnc_url` that opens a
//! working console in a browser.
//!
//! Design (docs/dialects/vpe.md):
//! 1. `GET /instances/{uuid}/vnc` (authenticated) answers
//!    `<public>/vnc?instance-uuid=<uuid>&token=<page token>`. The page token is signed
//!    (HMAC-SHA256 with a per-process key) and carries the instance, the caller's identity
//!    and an expiry ([`PAGE_TTL`]), because a browser opening the URL sends no
//!    `X-Auth-Token`.
//! 2. `GET /vnc` checks the token, asks the core for a console (the instance's host agent
//!    answers host, port and a temporary password) and serves an HTML page running noVNC
//!    (vendored, see [`super::novnc`]) with the password and a second, socket token that
//!    names the VNC endpoint ([`SOCKET_TTL`]). The endpoint is only ever taken from a token
//!    Nimbus signed, so the proxy cannot be pointed anywhere else.
//! 3. `GET /vnc/websockify?token=...` upgrades to a WebSocket and relays bytes both ways
//!    between the browser and a TCP connection to that VNC server. The RFB protocol
//!    (including VNC authentication with the temporary password) runs end to end between
//!    noVNC and the VNC server; the proxy does not interpret it.

use super::fault::{VpeError, VpeResult, classify};
use super::instances::instance_id;
use super::{EmptyBody, Vpe, VpeState, novnc};
use axum::Router;
use axum::extract::ws::{
    Message, WebSocket, WebSocketUpgrade, rejection::WebSocketUpgradeRejection,
};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use nimbus_model::identity::Context;
use nimbus_model::{Error, ProjectId, ServerId, UserId};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::Sha256;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a `vnc_url` opens the console page.
pub const PAGE_TTL: Duration = Duration::from_secs(600);
/// How long the page's WebSocket URL stays valid (the page connects at once).
pub const SOCKET_TTL: Duration = Duration::from_secs(120);
/// How long connecting to the VNC server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The authenticated route (`X-Auth-Token`).
pub fn api_routes() -> Router<VpeState> {
    Router::new().route("/instances/{uuid}/vnc", get(vnc_url))
}

/// The browser routes: the page, its WebSocket and its static files (signed tokens, no
/// `X-Auth-Token`).
pub fn browser_routes() -> Router<VpeState> {
    Router::new()
        .route("/vnc", get(page))
        .route("/vnc/websockify", get(websocket))
        .route("/vnc/console.js", get(console_js))
        .route("/vnc/novnc/{*path}", get(asset))
}

/// What a console token vouches for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "k")]
enum Claims {
    /// Open the console page of `server` as this caller.
    #[serde(rename = "page")]
    Page {
        server: ServerId,
        project: ProjectId,
        user: UserId,
        roles: Vec<String>,
        exp: i64,
    },
    /// Relay a WebSocket to this VNC endpoint.
    #[serde(rename = "socket")]
    Socket {
        server: ServerId,
        host: String,
        port: u16,
        exp: i64,
    },
}

impl Claims {
    fn exp(&self) -> i64 {
        match self {
            Claims::Page { exp, .. } | Claims::Socket { exp, .. } => *exp,
        }
    }
}

fn mac(key: &[u8; 32]) -> Hmac<Sha256> {
    <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length")
}

/// `base64url(json).base64url(hmac)`.
fn sign(key: &[u8; 32], claims: &Claims) -> String {
    let payload = B64.encode(serde_json::to_vec(claims).expect("claims serialize"));
    let mut m = mac(key);
    m.update(payload.as_bytes());
    format!("{payload}.{}", B64.encode(m.finalize().into_bytes()))
}

/// Check a token's signature (in constant time) and expiry.
fn verify(key: &[u8; 32], token: &str, now: i64) -> Result<Claims, Error> {
    let bad = || Error::Unauthenticated("The console token is invalid.".into());
    let (payload, sig) = token.split_once('.').ok_or_else(bad)?;
    let sig = B64.decode(sig).map_err(|_| bad())?;
    let mut m = mac(key);
    m.update(payload.as_bytes());
    m.verify_slice(&sig).map_err(|_| bad())?;
    let claims: Claims =
        serde_json::from_slice(&B64.decode(payload).map_err(|_| bad())?).map_err(|_| bad())?;
    if claims.exp() < now {
        return Err(Error::Unauthenticated(
            "The console token has expired: ask for a new vnc_url.".into(),
        ));
    }
    Ok(claims)
}

fn now_secs() -> i64 {
    nimbus_model::time::now().timestamp()
}

fn expiry(ttl: Duration) -> i64 {
    now_secs() + ttl.as_secs() as i64
}

/// The browser console URL of server `id` for the caller `ctx`: a page token signed with
/// the process's console key. Also what the OpenStack compute API hands out for
/// `remote-consoles` and `os-getVNCConsole`, so Nova clients get a console that opens.
pub fn page_url(app: &crate::AppState, ctx: &Context, id: ServerId) -> String {
    let token = sign(
        &app.console_key,
        &Claims::Page {
            server: id,
            project: ctx.project_id.clone(),
            user: ctx.user_id.clone(),
            roles: ctx.roles.clone(),
            exp: expiry(PAGE_TTL),
        },
    );
    format!("{}/vnc?instance-uuid={id}&token={token}", app.public_url())
}

/// `GET /instances/{uuid}/vnc`: the console URL. The instance must be running (checked
/// now, so the caller learns at once rather than from the page).
async fn vnc_url(v: Vpe, Path(id): Path<String>, _: EmptyBody) -> VpeResult {
    let id = instance_id(&id)?;
    let server = v.control().server_get(&v.ctx, id).await?;
    nimbus_control::servers::console_available(&server)?;
    let url = page_url(&v.state.app, &v.ctx, id);
    Ok(crate::common::json(
        StatusCode::OK,
        json!({"instance": {"uuid": id.to_string(), "vnc_url": url}}),
    ))
}

/// An error page for a person (the console page is opened in a browser, not by a client).
fn html_error(e: &Error) -> Response {
    let (status, _) = classify(e);
    let msg = html_escape(&e.public_message());
    let body = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Console unavailable</title></head>\
         <body style=\"font:15px system-ui,sans-serif;margin:3em\"><h1>Console unavailable</h1><p>{msg}</p></body></html>"
    );
    let mut resp = (status, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    resp
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// JSON that is safe inside a `<script>` element (no `</script>`, no `<!--`).
fn script_json(v: &serde_json::Value) -> String {
    v.to_string()
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

/// `GET /vnc?instance-uuid=...&token=...`: the console page.
async fn page(State(state): State<VpeState>, RawQuery(q): RawQuery) -> Response {
    match page_inner(&state, q.as_deref()).await {
        Ok(r) => r,
        Err(e) => html_error(&e),
    }
}

async fn page_inner(state: &VpeState, query: Option<&str>) -> Result<Response, Error> {
    let q = crate::common::query_pairs(query);
    let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let token = get("token").ok_or_else(|| {
        Error::Unauthenticated("The console URL has no token: ask for a new vnc_url.".into())
    })?;
    let Claims::Page {
        server,
        project,
        user,
        roles,
        ..
    } = verify(&state.app.console_key, token, now_secs())?
    else {
        return Err(Error::Unauthenticated(
            "The console token is invalid.".into(),
        ));
    };
    if get("instance-uuid").is_some_and(|u| u != server.to_string()) {
        return Err(Error::Forbidden(
            "The console token was issued for another instance.".into(),
        ));
    }
    let ctx = Context {
        user_id: user,
        user_name: String::new(),
        project_id: project,
        project_name: String::new(),
        roles,
        request_id: nimbus_model::request_id(),
    };
    let control = &state.app.control;
    let s = control.server_get(&ctx, server).await?;
    let console = control.server_vnc_console(&ctx, server).await?;
    let socket = sign(
        &state.app.console_key,
        &Claims::Socket {
            server,
            host: console.host,
            port: console.port,
            exp: expiry(SOCKET_TTL),
        },
    );
    let config = json!({
        "uuid": server.to_string(),
        "name": s.name,
        "websocket": format!("vnc/websockify?token={socket}"),
        "password": console.password,
    });
    let title = html_escape(&format!("Console of {}", s.name));
    let html = novnc::CONSOLE_HTML
        .replace("{{TITLE}}", &title)
        .replace("{{CONFIG}}", &script_json(&config));
    let mut resp = (StatusCode::OK, html).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    // The page holds a temporary password: never cache it, never leak its URL.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
             img-src 'self' data: blob:; connect-src 'self' ws: wss:; frame-ancestors 'self'",
        ),
    );
    Ok(resp)
}

/// `GET /vnc/websockify?token=...`: the WebSocket ↔ VNC relay.
async fn websocket(
    State(state): State<VpeState>,
    RawQuery(q): RawQuery,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> VpeResult {
    let q = crate::common::query_pairs(q.as_deref());
    let token = q
        .iter()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.as_str())
        .ok_or_else(|| Error::Unauthenticated("The console socket needs a token.".into()))?;
    let Claims::Socket {
        server, host, port, ..
    } = verify(&state.app.console_key, token, now_secs())?
    else {
        return Err(Error::Unauthenticated("The console token is invalid.".into()).into());
    };
    let ws = ws.map_err(|e| {
        VpeError(Error::invalid(format!(
            "This URL is a WebSocket endpoint: {e}"
        )))
    })?;
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((host.as_str(), port)))
        .await
        .map_err(|_| Error::Unavailable("The instance's console did not answer in time.".into()))?
        .map_err(|e| {
            tracing::warn!(%server, %host, port, error = %e, "console connection failed");
            Error::Unavailable("The instance's console is not reachable.".into())
        })?;
    let _ = tcp.set_nodelay(true);
    tracing::info!(%server, "console session opened");
    Ok(ws
        .protocols(["binary"])
        .on_upgrade(move |socket| async move {
            relay(socket, tcp).await;
            tracing::info!(%server, "console session closed");
        }))
}

/// Copy bytes both ways until either side closes.
async fn relay(mut socket: WebSocket, tcp: TcpStream) {
    let (mut rd, mut wr) = tcp.into_split();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        tokio::select! {
            msg = socket.recv() => match msg {
                Some(Ok(Message::Binary(b))) => {
                    if wr.write_all(&b).await.is_err() {
                        break;
                    }
                }
                // noVNC speaks binary frames only; anything else ends the session.
                Some(Ok(Message::Text(_))) => break,
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
            },
            n = rd.read(&mut buf) => match n {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let chunk = axum::body::Bytes::copy_from_slice(&buf[..n]);
                    if socket.send(Message::Binary(chunk)).await.is_err() {
                        break;
                    }
                }
            },
        }
    }
    let _ = wr.shutdown().await;
    let _ = socket.send(Message::Close(None)).await;
}

fn static_file(content_type: &'static str, bytes: &'static [u8]) -> Response {
    let mut resp = (StatusCode::OK, bytes).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    resp
}

async fn console_js() -> Response {
    static_file(
        "text/javascript; charset=utf-8",
        novnc::CONSOLE_JS.as_bytes(),
    )
}

async fn asset(Path(path): Path<String>) -> VpeResult {
    let bytes =
        novnc::file(&path).ok_or_else(|| Error::not_found(format!("No console file {path}.")))?;
    Ok(static_file(novnc::content_type(&path), bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page_claims(exp: i64) -> Claims {
        Claims::Page {
            server: ServerId::new(),
            project: "p".into(),
            user: "u".into(),
            roles: vec!["member".into()],
            exp,
        }
    }

    #[test]
    fn tokens_round_trip_and_reject_tampering() {
        let key = [7u8; 32];
        let c = page_claims(1000);
        let t = sign(&key, &c);
        assert_eq!(verify(&key, &t, 999).unwrap(), c);
        // Expired.
        assert!(verify(&key, &t, 1001).is_err());
        // Another key.
        assert!(verify(&[8u8; 32], &t, 999).is_err());
        // A changed payload with the old signature.
        let (_, sig) = t.split_once('.').unwrap();
        let other = sign(&key, &page_claims(5000));
        let (payload2, _) = other.split_once('.').unwrap();
        assert!(verify(&key, &format!("{payload2}.{sig}"), 999).is_err());
        // Garbage.
        for bad in ["", ".", "abc", "a.b", "%%%.%%%"] {
            assert!(verify(&key, bad, 0).is_err(), "{bad}");
        }
    }

    #[test]
    fn page_config_cannot_break_out_of_its_script() {
        let v = json!({"name": "</script><script>alert(1)</script>"});
        let s = script_json(&v);
        assert!(!s.contains('<') && !s.contains('>'));
        let back: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(back, v);
        assert_eq!(
            html_escape("<a href=\"x\">"),
            "&lt;a href=&quot;x&quot;&gt;"
        );
    }
}
