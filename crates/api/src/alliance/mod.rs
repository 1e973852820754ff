//! The Alliance dialect (seed 000): `/servers` and `/flavors` at the root. Servers are
//! addressed by **name** (an id works wherever a name does); create takes flavor, image and
//! network names. An ambiguous name is a 409 listing the candidate ids (see [`fault`]).
//! Deliberate deviations from the seed are listed in `docs/dialects/alliance.md`.

pub mod fault;
mod flavors;
mod servers;

use crate::AppState;
use axum::Router;
use axum::extract::{FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use fault::AllianceError;
use nimbus_model::Error;
use nimbus_model::identity::Context;

/// Everything an Alliance handler needs about the request.
pub struct Alliance {
    pub state: AppState,
    pub ctx: Context,
}

impl Alliance {
    pub fn control(&self) -> &nimbus_control::Control {
        &self.state.control
    }

    pub fn public(&self) -> &str {
        self.state.public_url()
    }
}

impl FromRequestParts<AppState> for Alliance {
    type Rejection = AllianceError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let ctx = parts.extensions.get::<Context>().cloned().ok_or_else(|| {
            AllianceError::Core(Error::Unauthenticated(
                "The request you have made requires authentication.".into(),
            ))
        })?;
        Ok(Alliance {
            state: state.clone(),
            ctx,
        })
    }
}

/// Pick the one match of a name lookup: none is `missing`, several is the ambiguity fault.
pub fn one<T>(
    kind: &'static str,
    name: &str,
    mut found: Vec<T>,
    id_of: impl Fn(&T) -> String,
    missing: impl FnOnce() -> Error,
) -> Result<T, AllianceError> {
    match found.len() {
        0 => Err(AllianceError::Core(missing())),
        1 => Ok(found.remove(0)),
        _ => Err(AllianceError::Ambiguous {
            kind,
            name: name.to_owned(),
            ids: found.iter().map(id_of).collect(),
        }),
    }
}

/// axum answers an unroutable method with an empty 405; Alliance sends its fault body.
async fn method_not_allowed(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    if resp.status() == StatusCode::METHOD_NOT_ALLOWED {
        let mut out = AllianceError::MethodNotAllowed.into_response();
        if let Some(allow) = resp.headers().get("allow") {
            out.headers_mut().insert("allow", allow.clone());
        }
        return out;
    }
    resp
}

pub fn router(state: AppState) -> Router {
    servers::routes()
        .merge(flavors::routes())
        .layer(axum::middleware::from_fn(method_not_allowed))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::openstack::identity::require_token,
        ))
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_of_several() {
        let missing = || Error::not_found("none");
        assert!(matches!(
            one("server", "a", Vec::<u8>::new(), |x| x.to_string(), missing),
            Err(AllianceError::Core(Error::NotFound(_)))
        ));
        assert_eq!(
            one("server", "a", vec![7u8], |x| x.to_string(), missing).unwrap(),
            7
        );
        match one("server", "a", vec![1u8, 2], |x| x.to_string(), missing) {
            Err(AllianceError::Ambiguous { ids, kind, .. }) => {
                assert_eq!(ids, vec!["1", "2"]);
                assert_eq!(kind, "server");
            }
            other => panic!("{other:?}"),
        }
    }
}
