//! `PATCH /v1/instances/{id}`: an RFC 6902 JSON Patch applied to the instance's Mogan
//! representation, with Mogan's rules on top (its `JsonPatchType` and `apply_jsonpatch`):
//!
//! - only `add`, `replace` and `remove` are accepted (no `test`, `move`, `copy`);
//! - a path is `/segment[/segment...]` of word characters and `-` (Mogan's pattern
//!   `^(/[\w-]+)+$`: JSON Pointer escapes and empty segments are refused);
//! - read-only ("internal") attributes may not be touched at all, `/name` may not be
//!   removed, `add`/`replace` need a value, and `add` may not create a new root attribute.
//!
//! Only `name`, `description` and `extra` are writable. The patch is applied to a copy of
//! the view; what changed is returned for the control layer to apply.

use nimbus_model::Error;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Root attributes a patch may change.
const WRITABLE: &[&str] = &["name", "description", "extra"];

/// Mogan's internal attributes (read-only) of an instance.
const READ_ONLY: &[&str] = &[
    "created_at",
    "id",
    "links",
    "updated_at",
    "uuid",
    "project_id",
    "user_id",
    "status",
    "power_state",
    "availability_zone",
    "instance_type_uuid",
    "image_uuid",
    "network_info",
    "launched_at",
];

/// The fields a patch changed (`None` = unchanged).
#[derive(Debug, Default, PartialEq)]
pub struct InstanceChanges {
    pub name: Option<String>,
    /// `Some(None)` clears the description.
    pub description: Option<Option<String>>,
    pub extra: Option<BTreeMap<String, String>>,
}

/// Mogan's path pattern `^(/[\w-]+)+$` (`\w` is Unicode-aware in Python 3).
fn valid_path(path: &str) -> bool {
    let Some(rest) = path.strip_prefix('/') else {
        return false;
    };
    rest.split('/').all(|seg| {
        !seg.is_empty()
            && seg
                .chars()
                .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
    })
}

/// Check every operation as Mogan does, before anything is applied.
fn check_operations(doc: &Value, body: &Value) -> Result<Vec<Value>, Error> {
    let ops = body.as_array().ok_or_else(|| {
        Error::invalid(
            "Invalid input for the request body: a JSON Patch document (an array of operations) is required",
        )
    })?;
    let mut out = Vec::with_capacity(ops.len());
    for op in ops {
        let o = op.as_object().ok_or_else(|| {
            Error::invalid(format!(
                "Invalid input for field/attribute patch. Value: {op}. Each operation must be an object"
            ))
        })?;
        let kind = match o.get("op") {
            Some(Value::String(s)) if matches!(s.as_str(), "add" | "replace" | "remove") => {
                s.as_str()
            }
            Some(v) => {
                return Err(Error::invalid(format!(
                    "Invalid input for field/attribute op. Value: {v}. Value should be one of: add, replace, remove"
                )));
            }
            None => return Err(Error::invalid("Mandatory field missing: op")),
        };
        // After the op: `move`/`copy` carry `from`, and the op is the clearer refusal.
        for k in o.keys() {
            if !matches!(k.as_str(), "op" | "path" | "value") {
                return Err(Error::invalid(format!(
                    "Unknown attribute for argument patch: {k}"
                )));
            }
        }
        let path = match o.get("path") {
            Some(Value::String(p)) if valid_path(p) => p.as_str(),
            Some(v) => {
                return Err(Error::invalid(format!(
                    "Invalid input for field/attribute path. Value: {v}. Value should match the pattern ^(/[\\w-]+)+$"
                )));
            }
            None => return Err(Error::invalid("Mandatory field missing: path")),
        };
        let root = path[1..].split('/').next().unwrap_or_default();
        if READ_ONLY.contains(&root) {
            return Err(Error::invalid(format!(
                "'{path}' is an internal attribute and can not be updated"
            )));
        }
        if path == "/name" && kind == "remove" {
            return Err(Error::invalid(
                "'/name' is a mandatory attribute and can not be removed",
            ));
        }
        if kind != "remove" && !o.contains_key("value") {
            return Err(Error::invalid(
                "'add' and 'replace' operations need a value",
            ));
        }
        let top_level = path.matches('/').count() == 1;
        if kind == "add" && top_level && doc.get(root).is_none() {
            return Err(Error::invalid(format!(
                "Adding a new attribute ({path}) to the root of the resource is not allowed."
            )));
        }
        if !WRITABLE.contains(&root) && doc.get(root).is_none() {
            // `replace`/`remove` of something that does not exist: json-patch says so below,
            // but name the attribute plainly.
            return Err(Error::invalid(format!(
                "Couldn't apply patch '{body}'. Reason: can't {kind} non-existent object '{root}'"
            )));
        }
        out.push(op.clone());
    }
    Ok(out)
}

fn field_error(field: &str, value: &Value, why: &str) -> Error {
    Error::invalid(format!(
        "Invalid input for field/attribute {field}. Value: {value}. {why}"
    ))
}

/// Apply `body` (the patch document) to `doc` (the instance's current full view) and
/// return what changed, validated.
pub fn apply(doc: &Value, body: &Value) -> Result<InstanceChanges, Error> {
    let ops = check_operations(doc, body)?;
    let patch: json_patch::Patch = serde_json::from_value(Value::Array(ops))
        .map_err(|e| Error::invalid(format!("Couldn't apply patch '{body}'. Reason: {e}")))?;
    let mut next = doc.clone();
    json_patch::patch(&mut next, &patch)
        .map_err(|e| Error::invalid(format!("Couldn't apply patch '{body}'. Reason: {e}")))?;

    let mut changes = InstanceChanges::default();
    let name = next.get("name").cloned().unwrap_or(Value::Null);
    if Some(&name) != doc.get("name") {
        match &name {
            Value::String(s) if !s.is_empty() && s.chars().count() <= 255 => {
                changes.name = Some(s.clone())
            }
            Value::String(_) => {
                return Err(field_error(
                    "name",
                    &name,
                    "The name must be 1 to 255 characters long",
                ));
            }
            _ => return Err(field_error("name", &name, "Value must be a string")),
        }
    }
    let description = next.get("description").cloned().unwrap_or(Value::Null);
    if Some(&description) != doc.get("description") {
        match &description {
            Value::Null => changes.description = Some(None),
            Value::String(s) if s.chars().count() <= 255 => {
                changes.description = Some(Some(s.clone()))
            }
            Value::String(_) => {
                return Err(field_error(
                    "description",
                    &description,
                    "The description must be at most 255 characters long",
                ));
            }
            _ => {
                return Err(field_error(
                    "description",
                    &description,
                    "Value must be a string or null",
                ));
            }
        }
    }
    // Removing `extra` altogether empties it.
    let extra = next
        .get("extra")
        .cloned()
        .unwrap_or_else(|| Value::Object(Map::new()));
    if Some(&extra) != doc.get("extra") {
        changes.extra = Some(extra_map(&extra)?);
    }
    Ok(changes)
}

/// `extra` as the core's metadata: an object of string values (the core stores strings).
pub fn extra_map(extra: &Value) -> Result<BTreeMap<String, String>, Error> {
    let obj = match extra {
        Value::Object(o) => o,
        Value::Null => return Ok(BTreeMap::new()),
        other => return Err(field_error("extra", other, "Value must be an object")),
    };
    let mut out = BTreeMap::new();
    for (k, v) in obj {
        let Value::String(s) = v else {
            return Err(field_error(
                &format!("extra/{k}"),
                v,
                "Nimbus stores extra values as strings",
            ));
        };
        out.insert(k.clone(), s.clone());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc() -> Value {
        json!({
            "uuid": "u", "name": "a", "description": "d", "status": "active",
            "links": [], "extra": {"k1": "v0"}, "network_info": {}, "power_state": "power on",
        })
    }

    fn err(body: Value) -> String {
        apply(&doc(), &body).unwrap_err().to_string()
    }

    #[test]
    fn the_seed_example() {
        let c = apply(
            &doc(),
            &json!([
                {"op": "replace", "path": "/extra/k1", "value": "v1"},
                {"op": "add", "path": "/extra/k2", "value": "v2"}
            ]),
        )
        .unwrap();
        let want: BTreeMap<String, String> =
            [("k1".into(), "v1".into()), ("k2".into(), "v2".into())].into();
        assert_eq!(
            c,
            InstanceChanges {
                extra: Some(want),
                ..Default::default()
            }
        );
    }

    #[test]
    fn name_description_and_removals() {
        let c = apply(
            &doc(),
            &json!([
                {"op": "replace", "path": "/name", "value": "b"},
                {"op": "remove", "path": "/description"},
                {"op": "remove", "path": "/extra/k1"}
            ]),
        )
        .unwrap();
        assert_eq!(c.name.as_deref(), Some("b"));
        assert_eq!(c.description, Some(None));
        assert_eq!(c.extra, Some(BTreeMap::new()));
        // An empty patch changes nothing.
        assert_eq!(
            apply(&doc(), &json!([])).unwrap(),
            InstanceChanges::default()
        );
    }

    #[test]
    fn refusals() {
        assert!(err(json!({"op": "add"})).contains("array of operations"));
        assert!(
            err(json!([{"op": "move", "path": "/name", "from": "/description"}]))
                .contains("should be one of")
        );
        assert!(
            err(json!([{"op": "test", "path": "/name", "value": "a"}]))
                .contains("should be one of")
        );
        assert!(err(json!([{"op": "replace", "path": "name", "value": "x"}])).contains("pattern"));
        assert!(
            err(json!([{"op": "replace", "path": "/extra/a~1b", "value": "x"}]))
                .contains("pattern")
        );
        assert!(err(json!([{"op": "replace", "path": "/", "value": "x"}])).contains("pattern"));
        assert!(
            err(json!([{"op": "replace", "path": "/status", "value": "x"}]))
                .contains("internal attribute")
        );
        assert!(
            err(json!([{"op": "remove", "path": "/network_info/x"}]))
                .contains("internal attribute")
        );
        assert!(err(json!([{"op": "remove", "path": "/name"}])).contains("mandatory"));
        assert!(err(json!([{"op": "replace", "path": "/name"}])).contains("need a value"));
        assert!(
            err(json!([{"op": "add", "path": "/bogus", "value": 1}]))
                .contains("root of the resource")
        );
        assert!(
            err(json!([{"op": "replace", "path": "/bogus", "value": 1}])).contains("non-existent")
        );
        assert!(
            err(json!([{"op": "replace", "path": "/extra/nope", "value": "x"}]))
                .contains("Couldn't apply patch")
        );
        assert!(
            err(json!([{"op": "replace", "path": "/name", "value": 5}]))
                .contains("field/attribute name")
        );
        assert!(err(json!([{"op": "replace", "path": "/name", "value": ""}])).contains("1 to 255"));
        assert!(err(json!([{"op": "add", "path": "/extra/n", "value": 5}])).contains("extra/n"));
        assert!(err(json!([{"op": "replace", "path": "/extra", "value": [1]}])).contains("object"));
        assert!(
            err(json!([{"op": "replace", "path": "/name", "value": "x", "from": "/a"}]))
                .contains("Unknown attribute")
        );
        assert!(err(json!(["x"])).contains("object"));
    }
}
