//! Cyclades faults (Synnefo `snf_django.lib.api.faults`): `{"<name>": {"code", "message",
//! "details"}}`, named as the seed's status tables name them. The one place Cyclades
//! statuses are chosen for errors.
//!
//! Where the seed and Nova differ: state conflicts are 409 `buildInProgress` (the seed's only
//! 409), an exhausted address pool is Synnefo's 409 `conflict` (`logic/ips.py`), quota and
//! size limits are 413 `overLimit`, a network that still has NICs is 421 `networkInUse`, and
//! an action this deployment cannot perform is 503 `serviceUnavailable` ("Action not
//! supported", as the seed words it).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use nimbus_model::Error;
use nimbus_model::network::Network;
use nimbus_model::server::Server;

/// The error type Cyclades handlers return.
#[derive(Debug)]
pub enum CycladesError {
    /// A core error, mapped by [`classify`].
    Core(Error),
    /// 415: a request in a media type Cyclades does not take (XML bodies, bad network type).
    BadMediaType(String),
}

impl From<Error> for CycladesError {
    fn from(e: Error) -> Self {
        CycladesError::Core(e)
    }
}

impl IntoResponse for CycladesError {
    fn into_response(self) -> Response {
        match self {
            CycladesError::Core(e) => render(&e),
            CycladesError::BadMediaType(msg) => fault(415, "badMediaType", &msg, ""),
        }
    }
}

pub type CyResult<T = Response> = Result<T, CycladesError>;

/// Core messages name servers and networks by UUID; a Cyclades client knows them only by
/// their numeric ids. Rewrites each `(core wording, Cyclades wording)` pair a handler knows
/// into the message, so no fault names an id the client never saw.
pub fn in_cyclades_terms(e: Error, terms: &[(String, String)]) -> Error {
    e.map_message(|m| text_in_cyclades_terms(m, terms))
}

/// [`in_cyclades_terms`] for any text shown to the client (log entries, fault records).
pub fn text_in_cyclades_terms(text: String, terms: &[(String, String)]) -> String {
    terms
        .iter()
        .fold(text, |t, (from, to)| t.replace(from.as_str(), to))
}

/// How core messages name a server (Nova's "Instance <uuid>"), and how Cyclades does.
pub fn server_terms(s: &Server) -> Vec<(String, String)> {
    vec![
        (format!("Instance {}", s.id), format!("Server {}", s.serial)),
        (format!("instance {}", s.id), format!("server {}", s.serial)),
        (s.id.to_string(), s.serial.to_string()),
    ]
}

/// A network's UUID and its Cyclades id (`public` or its serial).
pub fn network_terms(n: &Network, cyclades_id: &str) -> Vec<(String, String)> {
    vec![(n.id.to_string(), cyclades_id.to_owned())]
}

/// Status code and fault name of each core error kind.
pub fn classify(e: &Error) -> (u16, &'static str) {
    match e {
        Error::InvalidRequest(_) => (400, "badRequest"),
        Error::Unauthenticated(_) => (401, "unauthorized"),
        Error::Forbidden(_) => (403, "forbidden"),
        Error::NotFound(_) => (404, "itemNotFound"),
        Error::Conflict(_) => (409, "buildInProgress"),
        Error::AlreadyExists(_) | Error::Exhausted(_) => (409, "conflict"),
        Error::OverQuota(_) | Error::PayloadTooLarge(_) => (413, "overLimit"),
        Error::InUse(_) => (421, "networkInUse"),
        Error::NoValidHost(_) | Error::Unavailable(_) | Error::NotImplemented(_) => {
            (503, "serviceUnavailable")
        }
        Error::Internal(_) => (500, "internalServerError"),
    }
}

/// Render a core error.
pub fn render(e: &Error) -> Response {
    if let Error::Internal(ctx) = e {
        tracing::error!(error = %ctx, "internal error");
    }
    let (code, name) = classify(e);
    fault(code, name, &e.public_message(), "")
}

fn fault(code: u16, name: &str, message: &str, details: &str) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    crate::common::json(
        status,
        serde_json::json!({name: {"code": code, "message": message, "details": details}}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_status_per_kind() {
        let table = [
            (Error::invalid("x"), 400, "badRequest"),
            (Error::Unauthenticated("x".into()), 401, "unauthorized"),
            (Error::Forbidden("x".into()), 403, "forbidden"),
            (Error::not_found("x"), 404, "itemNotFound"),
            (Error::conflict("x"), 409, "buildInProgress"),
            (Error::AlreadyExists("x".into()), 409, "conflict"),
            (Error::Exhausted("x".into()), 409, "conflict"),
            (Error::OverQuota("x".into()), 413, "overLimit"),
            (Error::PayloadTooLarge("x".into()), 413, "overLimit"),
            (Error::InUse("x".into()), 421, "networkInUse"),
            (Error::NoValidHost("x".into()), 503, "serviceUnavailable"),
            (Error::Unavailable("x".into()), 503, "serviceUnavailable"),
            (Error::NotImplemented("x".into()), 503, "serviceUnavailable"),
            (Error::internal("secret"), 500, "internalServerError"),
        ];
        for (e, code, name) in table {
            assert_eq!(classify(&e), (code, name), "{e:?}");
        }
    }
}
