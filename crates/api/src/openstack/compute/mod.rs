//! OpenStack Compute v2.1 at `/compute/v2.1` (aliases normalized in `common::paths`).
//! Responses follow nova 34's view builders and schemas for the negotiated microversion.

mod aggregates;
mod availability_zone;
mod extensions;
pub mod fault;
mod flavors;
mod hypervisors;
mod images;
mod keypairs;
mod limits;
pub mod microversion;
mod migrations;
mod quota_sets;
mod server_actions;
mod server_extras;
mod server_groups;
mod servers;
mod services;
mod simple_tenant_usage;
pub mod versions;

use crate::AppState;
use crate::common::paths::ComputeBase;
use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::routing::get;
use fault::ComputeError;
use microversion::Version;
use nimbus_model::Error;
use nimbus_model::identity::Context;
use serde_json::{Value, json};

/// Everything a compute handler needs about the request.
pub struct Api {
    pub state: AppState,
    pub ctx: Context,
    pub v: Version,
    pub links: Links,
    pub query: Vec<(String, String)>,
}

/// Link builder echoing how the client addressed the API.
#[derive(Clone, Debug)]
pub struct Links {
    pub versioned: String,
    pub bookmark: String,
}

impl Links {
    pub fn href(&self, collection: &str, id: &str) -> String {
        format!("{}/{collection}/{id}", self.versioned)
    }

    pub fn bookmark(&self, collection: &str, id: &str) -> String {
        format!("{}/{collection}/{id}", self.bookmark)
    }

    /// Nova's `[{"rel": "self"}, {"rel": "bookmark"}]`.
    pub fn pair(&self, collection: &str, id: &str) -> Value {
        json!([
            {"rel": "self", "href": self.href(collection, id)},
            {"rel": "bookmark", "href": self.bookmark(collection, id)},
        ])
    }

    /// `<coll>_links` next link: the current query with `marker` replaced.
    pub fn next(&self, collection: &str, query: &[(String, String)], marker: &str) -> Value {
        let mut params: Vec<(String, String)> = query
            .iter()
            .filter(|(k, _)| k != "marker")
            .cloned()
            .collect();
        params.sort();
        params.push(("marker".into(), marker.to_owned()));
        let qs = params
            .iter()
            .map(|(k, v)| {
                format!(
                    "{}={}",
                    crate::common::percent_encode(k),
                    crate::common::percent_encode(v)
                )
            })
            .collect::<Vec<_>>()
            .join("&");
        json!([{"rel": "next", "href": format!("{}/{collection}?{qs}", self.versioned)}])
    }
}

impl Api {
    pub fn control(&self) -> &nimbus_control::Control {
        &self.state.control
    }

    /// First value of a query parameter.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// All values of a repeated query parameter.
    pub fn params(&self, key: &str) -> Vec<&str> {
        self.query
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Nova `get_limit_and_marker`: limit must be a non-negative integer.
    pub fn limit(&self) -> Result<Option<usize>, Error> {
        match self.param("limit") {
            None => Ok(None),
            Some(l) => l
                .parse::<usize>()
                .map(Some)
                .map_err(|_| Error::invalid(format!("Invalid input for query parameters limit. Value: {l}. '{l}' does not match '^[0-9]*$'"))),
        }
    }

    /// Collection `_links` when the page is full (nova `_get_collection_links`).
    pub fn collection_links(
        &self,
        collection: &str,
        count: usize,
        last_id: Option<&str>,
    ) -> Option<Value> {
        let max = self.state.control.config().max_limit;
        let wanted = self.limit().ok().flatten().unwrap_or(max).min(max);
        match last_id {
            Some(id) if wanted > 0 && count == wanted => {
                Some(self.links.next(collection, &self.query, id))
            }
            _ => None,
        }
    }

    /// From 2.75 unknown query parameters are a 400.
    pub fn check_query(&self, known: &[&str]) -> Result<(), Error> {
        if !self.v.at_least(75) {
            return Ok(());
        }
        for (k, _) in &self.query {
            if !known.contains(&k.as_str()) {
                return Err(Error::invalid(format!(
                    "Invalid input for query parameters {k}. Additional properties are not allowed ('{k}' was unexpected)"
                )));
            }
        }
        Ok(())
    }
}

impl FromRequestParts<AppState> for Api {
    type Rejection = ComputeError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let ctx = parts.extensions.get::<Context>().cloned().ok_or_else(|| {
            ComputeError(Error::Unauthenticated(
                "The request you have made requires authentication.".into(),
            ))
        })?;
        let v = parts
            .extensions
            .get::<Version>()
            .copied()
            .unwrap_or(microversion::MIN);
        let base = parts
            .extensions
            .get::<ComputeBase>()
            .cloned()
            .unwrap_or_default();
        // Nova's wsgi layer: a project id in the URL must be the token's, even for admins.
        if let Some(p) = &base.project
            && *p != ctx.project_id.to_string()
        {
            return Err(ComputeError(Error::invalid(format!(
                "Malformed request URL: URL's project_id '{p}' doesn't match Context's project_id '{}'",
                ctx.project_id
            ))));
        }
        let public = state.public_url();
        Ok(Api {
            state: state.clone(),
            ctx,
            v,
            links: Links {
                versioned: format!("{public}{}", base.versioned),
                bookmark: format!("{public}{}", base.bookmark),
            },
            query: crate::common::query_pairs(parts.uri.query()),
        })
    }
}

pub fn router(state: AppState) -> Router {
    let open = Router::new()
        .route("/compute", get(versions::compute_root))
        .route("/compute/v2.1", get(versions::v21))
        .route("/compute/legacy-v2", get(versions::v20))
        .with_state(state.clone());
    let api = Router::new()
        .merge(servers::routes())
        .merge(server_actions::routes())
        .merge(server_extras::routes())
        .merge(flavors::routes())
        .merge(images::routes())
        .merge(keypairs::routes())
        .merge(limits::routes())
        .merge(quota_sets::routes())
        .merge(availability_zone::routes())
        .merge(hypervisors::routes())
        .merge(services::routes())
        .merge(server_groups::routes())
        .merge(extensions::routes())
        .merge(migrations::routes())
        .merge(simple_tenant_usage::routes())
        .merge(aggregates::routes())
        .layer(axum::middleware::from_fn(microversion::layer))
        .layer(axum::middleware::from_fn(method_not_allowed))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::openstack::identity::require_token,
        ))
        .with_state(state);
    open.merge(api)
}

/// axum answers an unroutable method with an empty 405; Nova sends a fault body.
async fn method_not_allowed(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let resp = next.run(req).await;
    if resp.status() == axum::http::StatusCode::METHOD_NOT_ALLOWED {
        let body = json!({"badMethod": {"code": 405, "message": "The method specified is not allowed for this resource."}});
        let mut out = crate::common::json(axum::http::StatusCode::METHOD_NOT_ALLOWED, body);
        if let Some(allow) = resp.headers().get("allow") {
            out.headers_mut().insert("allow", allow.clone());
        }
        return out;
    }
    resp
}

/// Parse a server id from the path, or Nova's 404.
pub fn server_id(id: &str) -> Result<nimbus_model::ServerId, ComputeError> {
    id.parse()
        .map_err(|_| ComputeError(Error::server_not_found(id)))
}
