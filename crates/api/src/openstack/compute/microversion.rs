//! Compute microversion negotiation (nova `api_version_request`): the
//! `OpenStack-API-Version: compute X.Y` header (2.27+) or the legacy
//! `X-OpenStack-Nova-API-Version: X.Y`, `latest`, 406 out of range, and the echo + `Vary`
//! on every response.

use crate::common::paths::ComputeBase;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use nimbus_model::Error;
use std::fmt;

/// A compute API version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    pub major: u16,
    pub minor: u16,
}

impl Version {
    pub const fn new(major: u16, minor: u16) -> Self {
        Version { major, minor }
    }

    /// Whether the negotiated version is at least `2.minor`.
    pub fn at_least(self, minor: u16) -> bool {
        self >= Version::new(2, minor)
    }

    pub fn parse(s: &str) -> Option<Version> {
        let (a, b) = s.trim().split_once('.')?;
        let ok = |x: &str| {
            !x.is_empty()
                && x.bytes().all(|c| c.is_ascii_digit())
                && (x == "0" || !x.starts_with('0'))
        };
        if !ok(a) || !ok(b) {
            return None;
        }
        Some(Version {
            major: a.parse().ok()?,
            minor: b.parse().ok()?,
        })
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

pub const MIN: Version = Version::new(2, 1);
/// The highest microversion whose every change Nimbus honours.
pub const MAX: Version = Version::new(2, 96);

pub const HEADER: &str = "openstack-api-version";
pub const LEGACY_HEADER: &str = "x-openstack-nova-api-version";

/// Pick the requested version from the headers. `Ok(None)` = no header (2.1 behaviour).
pub fn requested(headers: &HeaderMap) -> Result<Option<String>, Error> {
    for v in headers.get_all(HEADER) {
        let s = v
            .to_str()
            .map_err(|_| Error::invalid("Invalid OpenStack-API-Version header"))?;
        // "compute 2.60" possibly among other services: "compute 2.60, volume 3.0".
        for part in s.split(',') {
            let mut words = part.split_whitespace();
            if words
                .next()
                .is_some_and(|svc| svc.eq_ignore_ascii_case("compute"))
            {
                return Ok(words.next().map(str::to_owned));
            }
        }
    }
    if let Some(v) = headers.get(LEGACY_HEADER) {
        let s = v
            .to_str()
            .map_err(|_| Error::invalid("Invalid X-OpenStack-Nova-API-Version header"))?;
        return Ok(Some(s.trim().to_owned()));
    }
    Ok(None)
}

/// Resolve a requested string against the supported range.
pub fn negotiate(requested: Option<&str>) -> Result<Version, (StatusCode, Error)> {
    let Some(req) = requested else { return Ok(MIN) };
    if req.eq_ignore_ascii_case("latest") {
        return Ok(MAX);
    }
    let v = Version::parse(req).ok_or_else(|| {
        (
            StatusCode::BAD_REQUEST,
            Error::invalid(format!(
                "API Version String {req} is of invalid format. Must be of format MajorNum.MinorNum."
            )),
        )
    })?;
    if v < MIN || v > MAX {
        return Err((
            StatusCode::NOT_ACCEPTABLE,
            Error::invalid(format!(
                "Version {v} is not supported by the API. Minimum is {MIN} and maximum is {MAX}."
            )),
        ));
    }
    Ok(v)
}

fn echo(resp: &mut Response, v: Version) {
    let h = resp.headers_mut();
    if let Ok(val) = HeaderValue::from_str(&format!("compute {v}")) {
        h.insert(HEADER, val);
    }
    if let Ok(val) = HeaderValue::from_str(&v.to_string()) {
        h.insert(LEGACY_HEADER, val);
    }
    h.append("vary", HeaderValue::from_static("OpenStack-API-Version"));
    h.append(
        "vary",
        HeaderValue::from_static("X-OpenStack-Nova-API-Version"),
    );
}

/// Middleware for the versioned compute routes.
pub async fn layer(mut req: Request, next: Next) -> Response {
    let legacy = req
        .extensions()
        .get::<ComputeBase>()
        .is_some_and(|b| b.legacy_v2);
    let wanted = if legacy {
        Ok(None)
    } else {
        requested(req.headers())
    };
    let version = match wanted
        .map_err(|e| (StatusCode::BAD_REQUEST, e))
        .and_then(|r| negotiate(r.as_deref()))
    {
        Ok(v) => v,
        Err((status, e)) => {
            let mut resp = super::fault::render(&e);
            *resp.status_mut() = status;
            if status == StatusCode::NOT_ACCEPTABLE {
                // Nova's fault name for 406 is the default one.
                let body =
                    serde_json::json!({"computeFault": {"code": 406, "message": e.to_string()}});
                resp = crate::common::json(status, body);
            }
            return resp;
        }
    };
    req.extensions_mut().insert(version);
    let mut resp = next.run(req).await;
    if !legacy {
        echo(&mut resp, version);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsing_and_negotiation() {
        assert_eq!(Version::parse("2.60"), Some(Version::new(2, 60)));
        assert_eq!(Version::parse("2.06"), None);
        assert_eq!(Version::parse("2"), None);
        assert_eq!(Version::parse("a.b"), None);
        assert_eq!(negotiate(None).unwrap(), MIN);
        assert_eq!(negotiate(Some("latest")).unwrap(), MAX);
        assert_eq!(negotiate(Some("2.37")).unwrap(), Version::new(2, 37));
        assert_eq!(
            negotiate(Some("2.0")).unwrap_err().0,
            StatusCode::NOT_ACCEPTABLE
        );
        assert_eq!(
            negotiate(Some("3.0")).unwrap_err().0,
            StatusCode::NOT_ACCEPTABLE
        );
        assert_eq!(
            negotiate(Some("2.1000")).unwrap_err().0,
            StatusCode::NOT_ACCEPTABLE
        );
        assert_eq!(
            negotiate(Some("two")).unwrap_err().0,
            StatusCode::BAD_REQUEST
        );
        assert!(Version::new(2, 47).at_least(47));
        assert!(!Version::new(2, 46).at_least(47));
    }

    #[test]
    fn header_selection() {
        let mut h = HeaderMap::new();
        h.insert(HEADER, HeaderValue::from_static("volume 3.0, compute 2.53"));
        h.insert(LEGACY_HEADER, HeaderValue::from_static("2.10"));
        assert_eq!(requested(&h).unwrap().as_deref(), Some("2.53"));
        let mut h = HeaderMap::new();
        h.insert(LEGACY_HEADER, HeaderValue::from_static("2.10"));
        assert_eq!(requested(&h).unwrap().as_deref(), Some("2.10"));
        assert_eq!(requested(&HeaderMap::new()).unwrap(), None);
    }
}
