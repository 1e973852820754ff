//! Path normalization, applied before routing: every alias of the compute API
//! (`/v2.1`, `/v2.1/{project_id}`, `/v2/{project_id}`, `/compute/v2.1/{project_id}`) is
//! rewritten to the canonical `/compute/v2.1/...`, and the form the client used is kept in a
//! [`ComputeBase`] extension so links echo it (Nova builds links from the request URL).
//! A trailing slash is dropped.

use axum::extract::Request;
use axum::http::Uri;

/// How the client addressed the compute API, as path prefixes relative to the public URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ComputeBase {
    /// e.g. `/compute/v2.1` or `/v2.1/<project>`: prefix of `self` links.
    pub versioned: String,
    /// e.g. `/compute` or `/<project>`: prefix of `bookmark` links.
    pub bookmark: String,
    /// The legacy `/v2` endpoint: no microversions, always 2.1 behaviour.
    pub legacy_v2: bool,
    /// The project id in the URL, if the client put one there; it must be the token's.
    pub project: Option<String>,
}

impl Default for ComputeBase {
    fn default() -> Self {
        ComputeBase {
            versioned: "/compute/v2.1".into(),
            bookmark: "/compute".into(),
            legacy_v2: false,
            project: None,
        }
    }
}

fn looks_like_project(seg: &str) -> bool {
    let hex32 = seg.len() == 32 && seg.bytes().all(|b| b.is_ascii_hexdigit());
    hex32 || uuid::Uuid::parse_str(seg).is_ok_and(|_| seg.len() == 36)
}

/// Rewrite a path; returns the new path and the compute base when it is a compute path.
pub fn rewrite(path: &str) -> (String, Option<ComputeBase>) {
    let trimmed = if path.len() > 1 {
        path.trim_end_matches('/')
    } else {
        path
    };
    let trimmed = if trimmed.is_empty() { "/" } else { trimmed };
    // (external prefix, bookmark prefix, legacy)
    let candidates: [(&str, &str, bool); 4] = [
        ("/compute/v2.1", "/compute", false),
        ("/compute/v2", "/compute", true),
        ("/v2.1", "", false),
        ("/v2", "", true),
    ];
    for (prefix, bookmark, legacy) in candidates {
        let Some(rest) = trimmed.strip_prefix(prefix) else {
            continue;
        };
        if !(rest.is_empty() || rest.starts_with('/')) {
            continue;
        }
        let mut segs = rest.trim_start_matches('/').splitn(2, '/');
        let first = segs.next().unwrap_or("");
        let after = segs.next();
        if !first.is_empty() && looks_like_project(first) {
            let tail = after.map(|a| format!("/{a}")).unwrap_or_default();
            let base = ComputeBase {
                versioned: format!("{prefix}/{first}"),
                bookmark: format!("{bookmark}/{first}"),
                legacy_v2: legacy,
                project: Some(first.to_owned()),
            };
            return (format!("/compute/v2.1{tail}"), Some(base));
        }
        if legacy && rest.is_empty() {
            // `/v2` itself: the v2.0 version document.
            // Internal route of the v2.0 document: `/compute/v2.0` is the Cyclades API.
            return ("/compute/legacy-v2".into(), None);
        }
        if legacy {
            // `/v2/servers` without a project: not a valid v2 URL.
            return (trimmed.to_owned(), None);
        }
        let base = ComputeBase {
            versioned: prefix.to_owned(),
            bookmark: bookmark.to_owned(),
            legacy_v2: false,
            project: None,
        };
        return (format!("/compute/v2.1{rest}"), Some(base));
    }
    (trimmed.to_owned(), None)
}

/// The request mapper: rewrite the URI and record the compute base.
pub fn normalize(mut req: Request) -> Request {
    let (path, base) = rewrite(req.uri().path());
    if path != req.uri().path() {
        let pq = match req.uri().query() {
            Some(q) => format!("{path}?{q}"),
            None => path,
        };
        if let Ok(uri) = pq.parse::<Uri>() {
            *req.uri_mut() = uri;
        }
    }
    if let Some(base) = base {
        req.extensions_mut().insert(base);
    }
    req
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn aliases() {
        let (p, b) = rewrite("/compute/v2.1/servers/detail");
        assert_eq!(p, "/compute/v2.1/servers/detail");
        assert_eq!(b.unwrap(), ComputeBase::default());
        let (p, b) = rewrite("/v2.1/servers");
        assert_eq!(p, "/compute/v2.1/servers");
        assert_eq!(b.unwrap().bookmark, "");
        let (p, b) = rewrite(&format!("/v2.1/{P}/servers/x"));
        assert_eq!(p, "/compute/v2.1/servers/x");
        let b = b.unwrap();
        assert_eq!(b.versioned, format!("/v2.1/{P}"));
        assert_eq!(b.bookmark, format!("/{P}"));
        assert_eq!(b.project.as_deref(), Some(P));
        let (p, b) = rewrite(&format!("/v2/{P}/flavors"));
        assert_eq!(p, "/compute/v2.1/flavors");
        assert!(b.unwrap().legacy_v2);
        let (p, b) = rewrite(&format!("/compute/v2.1/{P}"));
        assert_eq!(p, "/compute/v2.1");
        assert_eq!(b.unwrap().versioned, format!("/compute/v2.1/{P}"));
        assert_eq!(rewrite("/compute/v2.1/").0, "/compute/v2.1");
        assert_eq!(rewrite("/v2").0, "/compute/legacy-v2");
        assert_eq!(rewrite("/identity/v3/").0, "/identity/v3");
        assert_eq!(rewrite("/").0, "/");
        // Not a compute path.
        assert_eq!(rewrite("/v2.10/x").0, "/v2.10/x");
        assert!(rewrite("/image/v2/images").1.is_none());
    }
}
