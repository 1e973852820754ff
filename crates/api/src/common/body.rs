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
///
/// Messages follow Nova's JSON-schema faults (`Invalid input for field/attribute <leaf>.
/// Value: <v>. <v> is not of type 'string'`, `'<f>' is a required property`, `Additional
/// properties are not allowed ('<f>' was unexpected)`), which every dialect shares; serde's own
/// wording (`invalid type: integer `5`, expected a string`) is kept only for shapes these
/// rules do not cover.
pub fn from_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, Error> {
    // Deserialize from a borrow so the offending value can be quoted as Nova quotes it.
    serde_path_to_error::deserialize(&value).map_err(|e| {
        let path = e.path().to_string();
        let found = lookup(&value, e.path()).map(py_repr);
        let inner = e.into_inner().to_string();
        schema_message(&path, &inner, found)
    })
}

/// The value at a deserializer path, if it is there.
fn lookup<'a>(
    value: &'a serde_json::Value,
    path: &serde_path_to_error::Path,
) -> Option<&'a serde_json::Value> {
    use serde_path_to_error::Segment;
    path.iter().try_fold(value, |v, seg| match seg {
        Segment::Seq { index } => v.get(*index),
        Segment::Map { key } => v.get(key.as_str()),
        // An enum variant names no deeper value; an unknown segment might, so nothing is
        // quoted rather than the wrong (parent) value.
        Segment::Enum { .. } => Some(v),
        Segment::Unknown => None,
    })
}

/// Python's `repr` of a JSON value, as Nova's jsonschema messages print it.
fn py_repr(v: &serde_json::Value) -> String {
    use serde_json::Value;
    match v {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("'{s}'"),
        Value::Array(a) => format!("[{}]", a.iter().map(py_repr).collect::<Vec<_>>().join(", ")),
        Value::Object(o) => format!(
            "{{{}}}",
            o.iter()
                .map(|(k, v)| format!("'{k}': {}", py_repr(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Nova names only the innermost attribute (`ex.path.pop()`); `server.networks[0].uuid`
/// becomes `uuid`, `server.networks[0]` becomes `0`.
fn leaf(path: &str) -> &str {
    let last = path.rsplit('.').next().unwrap_or(path);
    match last.rfind('[') {
        Some(i) if last.ends_with(']') => &last[i + 1..last.len() - 1],
        _ => last,
    }
}

fn parent(path: &str) -> &str {
    match path.rfind(['.', '[']) {
        Some(i) => &path[..i],
        None => "",
    }
}

/// JSON-schema type name for serde's "expected ..." text.
fn schema_type(expected: &str) -> &'static str {
    let e = expected.to_ascii_lowercase();
    if e.contains("string") || e.contains("char") {
        "string"
    } else if e.contains("bool") {
        "boolean"
    } else if e.contains("sequence") || e.contains("tuple") || e.contains("array") {
        "array"
    } else if e.contains("f32") || e.contains("f64") || e.contains("float") {
        "number"
    } else if e.starts_with('u') || e.starts_with('i') || e.contains("integer") {
        "integer"
    } else {
        "object"
    }
}

/// Python's rendering of serde's "unexpected" value (`integer `5``, `string "x"`, ...).
fn python_value(unexpected: &str) -> String {
    let quoted = |s: &str| s.trim_matches('`').to_owned();
    if let Some(v) = unexpected.strip_prefix("string ") {
        return format!("'{}'", v.trim_matches('"'));
    }
    if let Some(v) = unexpected.strip_prefix("boolean ") {
        return if quoted(v) == "true" {
            "True".into()
        } else {
            "False".into()
        };
    }
    for p in ["integer ", "floating point "] {
        if let Some(v) = unexpected.strip_prefix(p) {
            return quoted(v);
        }
    }
    match unexpected {
        "unit value" | "null" => "None".into(),
        "map" => "{...}".into(),
        "sequence" => "[...]".into(),
        other => other.to_owned(),
    }
}

fn schema_message(path: &str, inner: &str, found: Option<String>) -> Error {
    let at = |p: &str, msg: String| {
        if p.is_empty() || p == "." {
            Error::invalid(format!("Invalid input for the request body: {msg}"))
        } else {
            Error::invalid(format!(
                "Invalid input for field/attribute {}. {msg}",
                leaf(p)
            ))
        }
    };
    if let Some(rest) = inner.strip_prefix("invalid type: ")
        && let Some((unexpected, expected)) = rest.split_once(", expected ")
    {
        let v = found.unwrap_or_else(|| python_value(unexpected));
        let bare = v.trim_matches('\'');
        return at(
            path,
            format!(
                "Value: {bare}. {v} is not of type '{}'",
                schema_type(expected)
            ),
        );
    }
    if let Some(rest) = inner.strip_prefix("missing field `")
        && let Some(field) = rest.strip_suffix('`')
    {
        return at(path, format!("'{field}' is a required property"));
    }
    if let Some(rest) = inner.strip_prefix("unknown field `")
        && let Some((field, _)) = rest.split_once('`')
    {
        // serde_path_to_error's path ends at the unknown key; Nova names its parent.
        let p = if leaf(path) == field {
            parent(path)
        } else {
            path
        };
        return at(
            p,
            format!("Additional properties are not allowed ('{field}' was unexpected)"),
        );
    }
    at(path, inner.to_owned())
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

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Typed {
        n: u32,
        b: bool,
        l: Vec<String>,
    }

    #[test]
    fn errors_read_like_novas_schema_faults() {
        let msg = |body: &str| {
            parse::<Outer>(body.as_bytes())
                .unwrap_err()
                .public_message()
        };
        let table = [
            (
                r#"{"server": {"name": 5}}"#,
                "Invalid input for field/attribute name. Value: 5. 5 is not of type 'string'",
            ),
            (
                r#"{"server": {"name": null}}"#,
                "Invalid input for field/attribute name. Value: None. None is not of type 'string'",
            ),
            (
                r#"{"server": {"name": "a", "bogus": 1}}"#,
                "Invalid input for field/attribute server. Additional properties are not allowed ('bogus' was unexpected)",
            ),
            (
                r#"{"server": {}}"#,
                "Invalid input for field/attribute server. 'name' is a required property",
            ),
            (
                r#"{}"#,
                "Invalid input for the request body: 'server' is a required property",
            ),
        ];
        for (body, want) in table {
            assert_eq!(msg(body), want, "{body}");
        }
        let e = parse::<Outer>(b"{not json").unwrap_err();
        assert!(e.to_string().contains("Malformed request body"), "{e}");
        let typed = |body: &str| {
            parse::<Typed>(body.as_bytes())
                .unwrap_err()
                .public_message()
        };
        let table = [
            (
                r#"{"n": "x", "b": true, "l": []}"#,
                "Invalid input for field/attribute n. Value: x. 'x' is not of type 'integer'",
            ),
            (
                r#"{"n": 1, "b": 1, "l": []}"#,
                "Invalid input for field/attribute b. Value: 1. 1 is not of type 'boolean'",
            ),
            (
                r#"{"n": 1, "b": true, "l": [true]}"#,
                "Invalid input for field/attribute 0. Value: True. True is not of type 'string'",
            ),
            (
                r#"{"n": 1, "b": true, "l": {"k": [null, 1.5]}}"#,
                "Invalid input for field/attribute l. Value: {'k': [None, 1.5]}. {'k': [None, 1.5]} is not of type 'array'",
            ),
            (
                r#"{"n": 1, "b": true, "l": 3}"#,
                "Invalid input for field/attribute l. Value: 3. 3 is not of type 'array'",
            ),
        ];
        for (body, want) in table {
            assert_eq!(typed(body), want, "{body}");
        }
    }
}
