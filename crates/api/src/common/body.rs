//! JSON request bodies. Malformed JSON, wrong types and unknown fields become the dialect's
//! 400 fault naming the field (via `serde_path_to_error`); an oversized body becomes its 413.

use super::Rejection;
use axum::extract::{FromRequest, Request};
use bytes::Bytes;
use nimbus_model::Error;
use serde::de::DeserializeOwned;

/// A JSON body deserialized into `T`.
pub struct JsonBody<T>(pub T);

/// Deserialize `bytes` into `T`, naming the failing field.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| Error::invalid(format!("Malformed request body: {e}")))?;
    from_value(value)
}

/// Deserialize a JSON value into `T`, naming the failing field.
pub fn from_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, Error> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        if path == "." || path.is_empty() {
            Error::invalid(format!("Invalid input for the request body: {inner}"))
        } else {
            Error::invalid(format!("Invalid input for field/attribute {path}. {inner}"))
        }
    })
}

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = Rejection;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let path = req.uri().path().to_owned();
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            let error = if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                Error::PayloadTooLarge("Request is too large.".into())
            } else {
                Error::invalid(format!("Could not read the request body: {e}"))
            };
            Rejection {
                path: path.clone(),
                error,
            }
        })?;
        parse(&bytes)
            .map(JsonBody)
            .map_err(|error| Rejection { path, error })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        server: Inner,
    }

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        name: String,
    }

    #[test]
    fn errors_name_the_field() {
        let e = parse::<Outer>(b"{\"server\": {\"name\": 5}}").unwrap_err();
        assert!(e.to_string().contains("server.name"), "{e}");
        let e = parse::<Outer>(b"{\"server\": {\"name\": \"a\", \"bogus\": 1}}").unwrap_err();
        assert!(e.to_string().contains("bogus"), "{e}");
        let e = parse::<Outer>(b"{not json").unwrap_err();
        assert!(e.to_string().contains("Malformed request body"), "{e}");
        let e = parse::<Outer>(b"{}").unwrap_err();
        assert!(e.to_string().contains("server"), "{e}");
    }
}
