//! `/os-keypairs`: import (Nimbus never generates private keys: see the control layer),
//! list with paging (2.35), show, delete. Shapes per nova 34 `keypairs.py` and its schemas:
//! `type` from 2.2, `user_id` for admins from 2.10, the wider name alphabet from 2.92.

use super::Api;
use super::fault::ComputeResult;
use crate::AppState;
use crate::common::body::JsonBody;
use crate::common::time::perfect;
use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use nimbus_model::keypair::KeyPair;
use nimbus_model::{Error, UserId};
use serde_json::{Map, Value, json};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/compute/v2.1/os-keypairs", get(index).post(create))
        .route("/compute/v2.1/os-keypairs/{name}", get(show).delete(delete))
}

/// The JSON-schema style 400 for a body object with a key the microversion does not allow.
pub(super) fn check_keys(
    obj: &Map<String, Value>,
    allowed: &[&str],
    field: &str,
) -> Result<(), Error> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(Error::invalid(format!(
            "Invalid input for field/attribute {field}. Additional properties are not allowed ('{k}' was unexpected)"
        ))),
        None => Ok(()),
    }
}

/// The body's single top-level object, e.g. `{"keypair": {...}}`.
pub(super) fn top_object(body: Value, key: &str) -> Result<Map<String, Value>, Error> {
    let Value::Object(mut top) = body else {
        return Err(Error::invalid(format!(
            "Invalid input for the request body: '{key}' is a required property"
        )));
    };
    check_keys(&top, &[key], "the request body")?;
    match top.remove(key) {
        Some(Value::Object(m)) => Ok(m),
        Some(other) => Err(Error::invalid(format!(
            "Invalid input for field/attribute {key}. Value: {other}. {other} is not of type 'object'"
        ))),
        None => Err(Error::invalid(format!(
            "Invalid input for the request body: '{key}' is a required property"
        ))),
    }
}

/// Nova's `keypair_name_special_chars` (before 2.92) and `_v292` name rules, with the
/// `name` format (no leading or trailing whitespace).
fn validate_name(api: &Api, name: &str) -> Result<(), Error> {
    let v292 = api.v.at_least(92);
    let pattern = if v292 {
        r"^[_\\-\\@\\. a-zA-Z0-9]+$"
    } else {
        r"^[_\\- a-zA-Z0-9]+$"
    };
    let bad = |why: String| {
        Error::invalid(format!(
            "Invalid input for field/attribute name. Value: {name}. {why}"
        ))
    };
    if name.is_empty() {
        return Err(bad(format!("'{name}' is too short")));
    }
    if name.chars().count() > 255 {
        return Err(bad(format!("'{name}' is too long")));
    }
    if name.trim() != name {
        return Err(bad(format!("'{name}' is not a 'name'")));
    }
    let ok = name.chars().all(|c| {
        c.is_ascii_alphanumeric()
            || matches!(c, '_' | '-' | ' ')
            || (v292 && matches!(c, '@' | '.'))
    });
    if !ok {
        return Err(bad(format!("'{name}' does not match '{pattern}'")));
    }
    Ok(())
}

fn string_field(obj: &Map<String, Value>, key: &str) -> Result<Option<String>, Error> {
    match obj.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(Error::invalid(format!(
            "Invalid input for field/attribute {key}. Value: {other}. {other} is not of type 'string'"
        ))),
    }
}

/// `user_id` query parameter: honoured from 2.10 (admins may name another user).
fn query_user(api: &Api) -> Option<UserId> {
    if api.v.at_least(10) {
        api.param("user_id").map(UserId::from)
    } else {
        None
    }
}

fn item(api: &Api, k: &KeyPair) -> Value {
    let mut m = Map::new();
    m.insert("name".into(), json!(k.name));
    m.insert("public_key".into(), json!(k.public_key));
    m.insert("fingerprint".into(), json!(k.fingerprint));
    if api.v.at_least(2) {
        m.insert("type".into(), json!(k.key_type));
    }
    Value::Object(m)
}

async fn index(api: Api) -> ComputeResult {
    api.check_query(&["user_id", "limit", "marker"])?;
    let user = query_user(&api);
    let paged = api.v.at_least(35);
    let keys = if paged {
        api.control()
            .keypairs_page(&api.ctx, user, api.limit()?, api.param("marker"))
            .await?
    } else {
        api.control().keypairs_list(&api.ctx, user).await?
    };
    let items: Vec<Value> = keys
        .iter()
        .map(|k| json!({"keypair": item(&api, k)}))
        .collect();
    let mut body = json!({"keypairs": items});
    if paged
        && let Some(links) = api.collection_links(
            "os-keypairs",
            keys.len(),
            keys.last().map(|k| k.name.as_str()),
        )
    {
        body["keypairs_links"] = links;
    }
    Ok(crate::common::json(StatusCode::OK, body))
}

async fn create(api: Api, JsonBody(body): JsonBody<Value>) -> ComputeResult {
    let kp = top_object(body, "keypair")?;
    let mut allowed = vec!["name", "public_key"];
    if api.v.at_least(2) {
        allowed.push("type");
    }
    if api.v.at_least(10) {
        allowed.push("user_id");
    }
    check_keys(&kp, &allowed, "keypair")?;
    let name = string_field(&kp, "name")?.ok_or_else(|| {
        Error::invalid("Invalid input for field/attribute keypair. 'name' is a required property")
    })?;
    validate_name(&api, &name)?;
    let public_key = string_field(&kp, "public_key")?;
    if public_key.is_none() && api.v.at_least(92) {
        return Err(Error::invalid(
            "Invalid input for field/attribute keypair. 'public_key' is a required property",
        )
        .into());
    }
    let key_type = string_field(&kp, "type")?.unwrap_or_else(|| "ssh".into());
    if key_type != "ssh" && key_type != "x509" {
        return Err(Error::invalid(format!(
            "Invalid input for field/attribute type. Value: {key_type}. '{key_type}' is not one of ['ssh', 'x509']"
        ))
        .into());
    }
    let user = string_field(&kp, "user_id")?.map(UserId::from);
    let k = api
        .control()
        .keypair_import(&api.ctx, &name, public_key.as_deref(), &key_type, user)
        .await?;
    let mut view = item(&api, &k);
    view["user_id"] = json!(k.user_id);
    let status = if api.v.at_least(2) {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(crate::common::json(status, json!({"keypair": view})))
}

async fn show(api: Api, Path(name): Path<String>) -> ComputeResult {
    api.check_query(&["user_id"])?;
    let k = api
        .control()
        .keypair_get(&api.ctx, &name, query_user(&api))
        .await?;
    let mut view = item(&api, &k);
    view["user_id"] = json!(k.user_id);
    view["id"] = json!(k.serial);
    view["created_at"] = json!(perfect(&k.created_at));
    // Key pairs are never updated and soft-deleted ones are never shown (as in Nova).
    view["updated_at"] = Value::Null;
    view["deleted"] = json!(false);
    view["deleted_at"] = Value::Null;
    Ok(crate::common::json(
        StatusCode::OK,
        json!({"keypair": view}),
    ))
}

async fn delete(api: Api, Path(name): Path<String>) -> ComputeResult {
    api.check_query(&["user_id"])?;
    api.control()
        .keypair_delete(&api.ctx, &name, query_user(&api))
        .await?;
    Ok(if api.v.at_least(2) {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::ACCEPTED
    }
    .into_response())
}
