//! What every dialect shares: request ids, panic capture, dialect detection by path, JSON
//! bodies that report the failing field, timestamps and query helpers.

pub mod body;
pub mod paths;
pub mod time;

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::FutureExt;
use nimbus_model::Error;

/// The request id of the current request (`req-<uuid>`), also sent back in
/// `X-OpenStack-Request-ID`.
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

/// Which dialect a (normalized) path belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Identity,
    Compute,
    Cyclades,
    Image,
    /// Mogan (seed 002) at `/v1/...`.
    Mogan,
    /// Alliance (seed 000): `/servers` and `/flavors` at the root.
    Alliance,
    Vpe,
    Other,
}

pub fn dialect_of(path: &str) -> Dialect {
    if path.starts_with("/identity") {
        Dialect::Identity
    } else if path == "/compute/v2.0" || path.starts_with("/compute/v2.0/") {
        // Before the generic compute prefix: Cyclades lives under it.
        Dialect::Cyclades
    } else if path.starts_with("/compute") {
        Dialect::Compute
    } else if path.starts_with("/image") {
        Dialect::Image
    } else if path == "/v1" || path.starts_with("/v1/") {
        Dialect::Mogan
    } else if ["/servers", "/flavors"]
        .iter()
        .any(|p| path == *p || path.strip_prefix(p).is_some_and(|r| r.starts_with('/')))
    {
        Dialect::Alliance
    } else if crate::vpe::owns(path) {
        Dialect::Vpe
    } else {
        Dialect::Other
    }
}

/// Render an error in the format of the dialect that owns `path`.
pub fn render_error(path: &str, err: &Error) -> Response {
    match dialect_of(path) {
        Dialect::Identity => crate::openstack::identity::fault(err),
        Dialect::Compute => crate::openstack::compute::fault::render(err),
        Dialect::Cyclades => crate::cyclades::fault::render(err),
        Dialect::Image => crate::openstack::image::fault(err),
        Dialect::Mogan => crate::mogan::fault::render_core(err),
        Dialect::Alliance => crate::alliance::fault::render_core(err),
        Dialect::Vpe => crate::vpe::fault::render(err),
        Dialect::Other => crate::openstack::compute::fault::render(err),
    }
}

/// An error bound to the path it happened on, so extractors (body, query) can reject in
/// the right dialect.
#[derive(Debug)]
pub struct Rejection {
    pub path: String,
    pub error: Error,
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        render_error(&self.path, &self.error)
    }
}

/// Assign a request id and echo it.
pub async fn request_id(mut req: Request, next: Next) -> Response {
    let id = nimbus_model::request_id();
    req.extensions_mut().insert(RequestId(id.clone()));
    let mut resp = next.run(req).await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut()
            .insert("x-openstack-request-id", v.clone());
        resp.headers_mut().insert("x-compute-request-id", v);
    }
    resp
}

/// A panicking handler is logged and answered with the dialect's internal fault; the
/// process and the other requests carry on.
pub async fn catch_panic(req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    match std::panic::AssertUnwindSafe(next.run(req))
        .catch_unwind()
        .await
    {
        Ok(resp) => resp,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            tracing::error!(%method, %path, panic = %what, "handler panicked");
            render_error(&path, &Error::internal(format!("handler panicked: {what}")))
        }
    }
}

/// Axum's own extractor rejections (a path segment that is not UTF-8, a query string it cannot
/// split) answer `400 text/plain`; handlers never do. Re-render those in the dialect of the
/// path, so every fault a client sees has the dialect's shape.
pub async fn dialect_rejections(req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    let resp = next.run(req).await;
    let plain = resp
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("text/plain"));
    if resp.status() != StatusCode::BAD_REQUEST || !plain {
        return resp;
    }
    let text = match axum::body::to_bytes(resp.into_body(), 64 * 1024).await {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(_) => "Invalid request.".into(),
    };
    render_error(&path, &Error::invalid(text))
}

/// Unknown URL: the dialect's 404.
pub async fn not_found_fallback(req: Request) -> Response {
    let path = req.uri().path().to_owned();
    render_error(&path, &Error::not_found("The resource could not be found."))
}

/// A 405 in the dialect of the path.
pub async fn method_not_allowed(req: Request) -> Response {
    let path = req.uri().path().to_owned();
    let mut resp = render_error(
        &path,
        &Error::invalid("The method is not allowed for the requested URL."),
    );
    *resp.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    resp
}

/// JSON response with a status.
pub fn json(status: StatusCode, body: serde_json::Value) -> Response {
    (status, axum::Json(body)).into_response()
}

/// Parse a query string into ordered (key, value) pairs (repeated keys kept).
pub fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    query
        .map(|q| {
            q.split('&')
                .filter(|s| !s.is_empty())
                .map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                    (percent_decode(k), percent_decode(v))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `application/x-www-form-urlencoded` decoding (`+` is a space).
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Encode a query value.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parsing() {
        let q = query_pairs(Some("name=a%20b&status=ACTIVE&status=BUILD&flag&x=1+2"));
        assert_eq!(
            q,
            vec![
                ("name".into(), "a b".into()),
                ("status".into(), "ACTIVE".into()),
                ("status".into(), "BUILD".into()),
                ("flag".into(), "".into()),
                ("x".into(), "1 2".into()),
            ]
        );
        assert_eq!(percent_decode("%zz%41%"), "%zzA%");
        assert_eq!(percent_encode("a b/c"), "a%20b%2Fc");
    }

    #[test]
    fn dialects_by_prefix() {
        assert_eq!(dialect_of("/compute/v2.1/servers"), Dialect::Compute);
        assert_eq!(dialect_of("/identity/v3/auth/tokens"), Dialect::Identity);
        assert_eq!(dialect_of("/image/v2/images"), Dialect::Image);
        assert_eq!(dialect_of("/compute/v2.0/servers"), Dialect::Cyclades);
        assert_eq!(dialect_of("/compute/v2.0"), Dialect::Cyclades);
        assert_eq!(dialect_of("/compute/v2.01"), Dialect::Compute);
        assert_eq!(dialect_of("/v1/instances/x"), Dialect::Mogan);
        assert_eq!(dialect_of("/servers"), Dialect::Alliance);
        assert_eq!(dialect_of("/servers/web"), Dialect::Alliance);
        assert_eq!(dialect_of("/flavors"), Dialect::Alliance);
        assert_eq!(dialect_of("/serversx"), Dialect::Other);
        assert_eq!(dialect_of("/instances/x/vnc"), Dialect::Vpe);
        assert_eq!(dialect_of("/disk_pools"), Dialect::Vpe);
        assert_eq!(dialect_of("/vnc"), Dialect::Vpe);
    }
}
