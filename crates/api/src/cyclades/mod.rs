//! The Synnefo **Cyclades** compute dialect at `/compute/v2.0` (seed 001), a view over the
//! same core as the OpenStack API: a server created in either is visible and actionable in
//! both.
//!
//! What differs from OpenStack (DESIGN §2): numeric ids (every object's `serial`), NICs as
//! `attachments`, status `STOPPED`, rename/delete 204, metadata writes 201 with merge
//! semantics, the `start`/`shutdown`/`console`/`firewallProfile` actions, `/stats` (PNG
//! graphs served by Nimbus) and `/diagnostics`, `changes-since` answering 304, XML responses
//! on request, Synnefo-shaped faults, and a 400 `badRequest` for an unknown URL or a wrong
//! method. `docs/dialects/cyclades.md` lists every endpoint and each deliberate deviation.

pub mod fault;
mod flavors;
mod images;
mod networks;
mod servers;
mod stats;
pub mod xml;

use crate::AppState;
use axum::Router;
use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use fault::CycladesError;
use nimbus_model::Error;
use nimbus_model::identity::Context;
use nimbus_model::time::Timestamp;
use std::collections::BTreeMap;

/// Where the dialect lives.
pub const PREFIX: &str = "/compute/v2.0";

/// Everything a Cyclades handler needs about the request.
pub struct Cy {
    pub state: AppState,
    pub ctx: Context,
    pub query: Vec<(String, String)>,
}

impl Cy {
    pub fn control(&self) -> &nimbus_control::Control {
        &self.state.control
    }

    pub fn param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// `changes-since`: an ISO 8601 time not in the future (Synnefo `isoparse`).
    pub fn changes_since(&self) -> Result<Option<Timestamp>, Error> {
        let Some(raw) = self.param("changes-since") else {
            return Ok(None);
        };
        let t = crate::common::time::parse_iso(raw).ok_or_else(|| {
            Error::invalid(format!(
                "Invalid changes-since parameter: '{raw}' is not an ISO 8601 date."
            ))
        })?;
        if t > nimbus_model::time::now() {
            return Err(Error::invalid("changes-since value set in the future."));
        }
        Ok(Some(t))
    }
}

impl FromRequestParts<AppState> for Cy {
    type Rejection = CycladesError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let ctx = parts.extensions.get::<Context>().cloned().ok_or_else(|| {
            CycladesError::Core(Error::Unauthenticated(
                "Missing or expired user token.".into(),
            ))
        })?;
        Ok(Cy {
            state: state.clone(),
            ctx,
            query: crate::common::query_pairs(parts.uri.query()),
        })
    }
}

/// Cyclades times: microseconds and an explicit `+00:00`.
pub fn time(t: &Timestamp) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string()
}

/// A numeric id from the path (servers, flavors, networks): a positive integer, else the
/// seed's 400 for a malformed id.
pub fn parse_serial(what: &str, raw: &str) -> Result<i64, Error> {
    raw.parse::<i64>()
        .ok()
        .filter(|n| *n > 0 && raw.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| Error::invalid(format!("Invalid {what} ID '{raw}'.")))
}

/// A response with no body.
pub fn empty(status: StatusCode) -> Response {
    status.into_response()
}

/// The body of a metadata item PUT: the seed's `{"metadata": {k: v}}`, or the
/// `{"meta": {k: v}}` that OpenStack and kamaki (0.12 and later) send. Either way it must hold
/// exactly the key the URL names.
#[derive(serde::Deserialize, Debug)]
pub struct ItemBody {
    #[serde(default)]
    metadata: Option<BTreeMap<String, String>>,
    #[serde(default)]
    meta: Option<BTreeMap<String, String>>,
}

impl ItemBody {
    /// The wrapper word the client used and the one item.
    pub fn item(self, key: &str) -> Result<(&'static str, BTreeMap<String, String>), Error> {
        let (word, md) = match (self.metadata, self.meta) {
            (Some(md), None) => ("metadata", md),
            (None, Some(md)) => ("meta", md),
            _ => {
                return Err(Error::invalid(
                    "The request body must be {\"metadata\": {key: value}}.",
                ));
            }
        };
        if md.len() != 1 || !md.contains_key(key) {
            return Err(Error::invalid(format!(
                "The request body must hold exactly the metadata key of the URL ({key})."
            )));
        }
        Ok((word, md))
    }
}

/// The reply to a metadata item GET: the seed's `metadata` and, for OpenStack-style clients
/// such as kamaki that read `meta`, the same item under `meta`.
pub fn item_reply(key: &str, value: &serde_json::Value) -> serde_json::Value {
    serde_json::json!({"metadata": {key: value}, "meta": {key: value}})
}

pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .merge(servers::routes())
        .merge(stats::routes())
        .merge(flavors::routes())
        .merge(images::routes())
        .merge(networks::routes())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::openstack::identity::require_token,
        ))
        .with_state(state.clone());
    // Graph URLs are loaded by browsers without a token: they carry a signature instead.
    let open = Router::new()
        .merge(stats::graph_routes())
        .route(PREFIX, any(unknown_url))
        .route(&format!("{PREFIX}/{{*rest}}"), any(unknown_url))
        .with_state(state);
    api.merge(open).layer(axum::middleware::from_fn(negotiate))
}

/// The seed: "requests for invalid URLs ... We return a BadRequest Fault."
async fn unknown_url() -> Response {
    fault::render(&Error::invalid("Invalid URL: no such Cyclades resource."))
}

/// Which representation the client asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Xml,
}

/// `?json` / `?xml` (mutually exclusive: both is a 400), `?format=json|xml`, else the first
/// of `application/json` / `application/xml` in `Accept`, else JSON.
pub fn format_of(query: &[(String, String)], accept: Option<&str>) -> Result<Format, Error> {
    let has = |k: &str| query.iter().any(|(key, _)| key == k);
    match (has("json"), has("xml")) {
        (true, true) => {
            return Err(Error::invalid(
                "The json and xml parameters are mutually exclusive.",
            ));
        }
        (true, false) => return Ok(Format::Json),
        (false, true) => return Ok(Format::Xml),
        (false, false) => {}
    }
    if let Some((_, f)) = query.iter().find(|(k, _)| k == "format") {
        return match f.as_str() {
            "json" => Ok(Format::Json),
            "xml" => Ok(Format::Xml),
            other => Err(Error::invalid(format!(
                "Unsupported format '{other}': use json or xml."
            ))),
        };
    }
    for item in accept.unwrap_or("").split(',') {
        match item.split(';').next().unwrap_or("").trim() {
            "application/json" => return Ok(Format::Json),
            "application/xml" | "text/xml" => return Ok(Format::Xml),
            _ => {}
        }
    }
    Ok(Format::Json)
}

/// The dialect's outer layer: picks the response format, refuses XML request bodies (415:
/// "Cyclades only supports JSON Requests"), turns axum's bare 405 into the seed's 400
/// `badRequest`, and renders JSON bodies as XML when XML was asked for.
async fn negotiate(req: Request, next: Next) -> Response {
    let query = crate::common::query_pairs(req.uri().query());
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let format = match format_of(&query, accept.as_deref()) {
        Ok(f) => f,
        Err(e) => return fault::render(&e),
    };
    let xml_body = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            let ct = ct.trim().to_ascii_lowercase();
            ct.starts_with("application/xml") || ct.starts_with("text/xml")
        });
    let resp = if xml_body {
        CycladesError::BadMediaType("XML requests are not supported: send JSON.".into())
            .into_response()
    } else {
        next.run(req).await
    };
    let resp = if resp.status() == StatusCode::METHOD_NOT_ALLOWED {
        fault::render(&Error::invalid(
            "Method not allowed for this Cyclades resource.",
        ))
    } else {
        resp
    };
    if format == Format::Xml {
        return into_xml(resp).await;
    }
    resp
}

async fn into_xml(resp: Response) -> Response {
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    if !is_json {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let bytes = match axum::body::to_bytes(body, 16 * 1024 * 1024).await {
        Ok(b) => b,
        Err(e) => return fault::render(&Error::internal(format!("buffering a response: {e}"))),
    };
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return Response::from_parts(parts, axum::body::Body::from(bytes));
    };
    let text = xml::to_xml(&value, parts.status.as_u16() >= 400);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml; charset=UTF-8"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Vec<(String, String)> {
        crate::common::query_pairs(Some(s))
    }

    #[test]
    fn format_negotiation() {
        assert_eq!(format_of(&q(""), None).unwrap(), Format::Json);
        assert_eq!(format_of(&q("xml"), None).unwrap(), Format::Xml);
        assert_eq!(
            format_of(&q("json=1"), Some("application/xml")).unwrap(),
            Format::Json
        );
        assert!(format_of(&q("json&xml"), None).is_err());
        assert_eq!(format_of(&q("format=xml"), None).unwrap(), Format::Xml);
        assert!(format_of(&q("format=yaml"), None).is_err());
        assert_eq!(
            format_of(&q(""), Some("text/html, application/xml;q=0.9")).unwrap(),
            Format::Xml
        );
        assert_eq!(format_of(&q(""), Some("*/*")).unwrap(), Format::Json);
    }

    #[test]
    fn metadata_item_bodies() {
        let body = |v: serde_json::Value| serde_json::from_value::<ItemBody>(v).unwrap();
        let (word, md) = body(serde_json::json!({"metadata": {"role": "x"}}))
            .item("role")
            .unwrap();
        assert_eq!((word, md.len()), ("metadata", 1));
        let (word, _) = body(serde_json::json!({"meta": {"role": "x"}}))
            .item("role")
            .unwrap();
        assert_eq!(word, "meta");
        assert!(
            body(serde_json::json!({"meta": {"role": "x"}}))
                .item("other")
                .is_err()
        );
        assert!(
            body(serde_json::json!({"metadata": {}}))
                .item("role")
                .is_err()
        );
        assert!(body(serde_json::json!({})).item("role").is_err());
        assert!(
            body(serde_json::json!({"meta": {"role": "x"}, "metadata": {"role": "x"}}))
                .item("role")
                .is_err()
        );
    }

    #[test]
    fn ids_and_times() {
        assert_eq!(parse_serial("server", "42").unwrap(), 42);
        for bad in ["", "0", "-1", "4x", "+4", "abc", "99999999999999999999"] {
            assert!(parse_serial("server", bad).is_err(), "{bad}");
        }
        let t = chrono::DateTime::from_timestamp(1_303_208_332, 85_737_000).unwrap();
        assert_eq!(time(&t), "2011-04-19T10:18:52.085737+00:00");
    }
}
