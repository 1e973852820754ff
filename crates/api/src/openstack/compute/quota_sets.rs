//! `/os-quota-sets/{project}` (show, `/detail`, `/defaults`, admin update with `force`,
//! admin delete) and `/os-quota-class-sets/{class}` (admin show/update), with the keys each
//! microversion reports: the deprecated network quotas go at 2.36 (2.50 for classes), the
//! injected-file ones at 2.57; classes gain the server-group keys at 2.50.

use super::Api;
use super::fault::ComputeResult;
use super::keypairs::{check_keys, top_object};
use crate::AppState;
use crate::common::body::JsonBody;
use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use nimbus_control::quotas::QuotaUsage;
use nimbus_model::quota::QuotaSet;
use nimbus_model::{Error, ProjectId, UserId};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/compute/v2.1/os-quota-sets/{id}",
            get(show).put(update).delete(delete),
        )
        .route("/compute/v2.1/os-quota-sets/{id}/detail", get(detail))
        .route("/compute/v2.1/os-quota-sets/{id}/defaults", get(defaults))
        .route(
            "/compute/v2.1/os-quota-class-sets/{id}",
            get(class_show).put(class_update),
        )
}

/// Every resource Nova's quota engine knows, in its order.
const RESOURCES: &[&str] = &[
    "cores",
    "injected_files",
    "injected_file_content_bytes",
    "injected_file_path_bytes",
    "instances",
    "key_pairs",
    "metadata_items",
    "ram",
    "server_groups",
    "server_group_members",
    "fixed_ips",
    "floating_ips",
    "security_groups",
    "security_group_rules",
];

const NETWORK: &[&str] = &[
    "fixed_ips",
    "floating_ips",
    "security_groups",
    "security_group_rules",
];
const INJECTED: &[&str] = &[
    "injected_files",
    "injected_file_content_bytes",
    "injected_file_path_bytes",
];
const GROUPS: &[&str] = &["server_groups", "server_group_members"];

/// Resources shown (and settable) in os-quota-sets at this microversion.
fn project_resources(api: &Api) -> Vec<&'static str> {
    RESOURCES
        .iter()
        .copied()
        .filter(|r| !(api.v.at_least(36) && NETWORK.contains(r)))
        .filter(|r| !(api.v.at_least(57) && INJECTED.contains(r)))
        .collect()
}

/// Resources shown in os-quota-class-sets at this microversion.
fn class_resources(api: &Api) -> Vec<&'static str> {
    RESOURCES
        .iter()
        .copied()
        .filter(|r| api.v.at_least(50) || !GROUPS.contains(r))
        .filter(|r| !(api.v.at_least(50) && NETWORK.contains(r)))
        .filter(|r| !(api.v.at_least(57) && INJECTED.contains(r)))
        .collect()
}

fn quota_body(resources: &[&str], id: Option<&str>, q: &QuotaSet) -> Value {
    let mut m = Map::new();
    if let Some(id) = id {
        m.insert("id".into(), json!(id));
    }
    for r in resources {
        m.insert((*r).into(), json!(q.get(r)));
    }
    Value::Object(m)
}

/// A quota value: an integer, or a string of digits, in [-1, 2^31-1].
fn quota_value(key: &str, v: &Value) -> Result<i64, Error> {
    let n = match v {
        Value::Number(n) => n.as_i64().ok_or_else(|| {
            Error::invalid(format!(
                "Invalid input for field/attribute {key}. Value: {n}. {n} is not of type 'integer', 'string'"
            ))
        })?,
        Value::String(s) => {
            let digits = s.strip_prefix('-').unwrap_or(s);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(Error::invalid(format!(
                    "Invalid input for field/attribute {key}. Value: {s}. '{s}' does not match '^-?[0-9]+$'"
                )));
            }
            s.parse::<i64>().map_err(|_| {
                Error::invalid(format!(
                    "Invalid input for field/attribute {key}. Value: {s}. '{s}' is greater than the maximum of 2147483647"
                ))
            })?
        }
        other => {
            return Err(Error::invalid(format!(
                "Invalid input for field/attribute {key}. Value: {other}. {other} is not of type 'integer', 'string'"
            )));
        }
    };
    if n < -1 {
        return Err(Error::invalid(format!(
            "Invalid input for field/attribute {key}. Value: {n}. {n} is less than the minimum of -1"
        )));
    }
    if n > i32::MAX as i64 {
        return Err(Error::invalid(format!(
            "Invalid input for field/attribute {key}. Value: {n}. {n} is greater than the maximum of 2147483647"
        )));
    }
    Ok(n)
}

/// The strings Nova's `parameter_types.boolean` accepts.
pub(super) fn nova_bool(s: &str) -> Option<bool> {
    match s {
        "True" | "TRUE" | "true" | "1" | "ON" | "On" | "on" | "YES" | "Yes" | "yes" => Some(true),
        "False" | "FALSE" | "false" | "0" | "OFF" | "Off" | "off" | "NO" | "No" | "no" => {
            Some(false)
        }
        _ => None,
    }
}

/// Nova's `parameter_types.boolean` for a body field.
pub(super) fn boolean(key: &str, v: &Value) -> Result<bool, Error> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) => nova_bool(s).ok_or_else(|| {
            Error::invalid(format!(
                "Invalid input for field/attribute {key}. Value: {s}. '{s}' is not a valid boolean value"
            ))
        }),
        other => Err(Error::invalid(format!(
            "Invalid input for field/attribute {key}. Value: {other}. {other} is not of type 'boolean', 'string'"
        ))),
    }
}

/// The `user_id` query parameter. Nimbus keeps no per-user limits, so reads show the
/// project's (what Nova shows for a user without overrides) and writes are refused.
fn query_user(api: &Api) -> Option<UserId> {
    api.param("user_id").map(UserId::from)
}

fn no_user_quotas(api: &Api) -> Result<(), Error> {
    if query_user(api).is_some() {
        return Err(Error::invalid(
            "Nimbus does not keep per-user quotas: set the project's quota instead (omit user_id).",
        ));
    }
    Ok(())
}

async fn show(api: Api, Path(id): Path<String>) -> ComputeResult {
    api.check_query(&["user_id"])?;
    let project = ProjectId::from(id.clone());
    let q = api.control().quota_get(&api.ctx, &project).await?;
    api.control().quota_verify_project(&project).await?;
    Ok(crate::common::json(
        StatusCode::OK,
        json!({"quota_set": quota_body(&project_resources(&api), Some(&id), &q)}),
    ))
}

async fn detail(api: Api, Path(id): Path<String>) -> ComputeResult {
    api.check_query(&["user_id"])?;
    let project = ProjectId::from(id.clone());
    let q = api.control().quota_get(&api.ctx, &project).await?;
    api.control().quota_verify_project(&project).await?;
    let user = query_user(&api);
    let usage: QuotaUsage = api
        .control()
        .quota_usage_for(&api.ctx, &project, user.as_ref())
        .await?;
    let mut m = Map::new();
    m.insert("id".into(), json!(id));
    for r in project_resources(&api) {
        m.insert(
            r.into(),
            json!({"in_use": usage.get(r), "limit": q.get(r), "reserved": 0}),
        );
    }
    Ok(crate::common::json(
        StatusCode::OK,
        json!({"quota_set": Value::Object(m)}),
    ))
}

async fn defaults(api: Api, Path(id): Path<String>) -> ComputeResult {
    let project = ProjectId::from(id.clone());
    api.control().quota_verify_project(&project).await?;
    let q = api.control().quota_default_set().await?;
    Ok(crate::common::json(
        StatusCode::OK,
        json!({"quota_set": quota_body(&project_resources(&api), Some(&id), &q)}),
    ))
}

/// Parse `{"<top>": {resource: value, ...}}` against the resources the microversion
/// allows (plus `force` for project quotas).
fn parse_limits(
    body: Value,
    top: &str,
    allowed: &[&str],
    with_force: bool,
) -> Result<(BTreeMap<String, i64>, bool), Error> {
    let obj = top_object(body, top)?;
    let mut keys: Vec<&str> = allowed.to_vec();
    if with_force {
        keys.push("force");
    }
    check_keys(&obj, &keys, top)?;
    let mut limits = BTreeMap::new();
    let mut force = false;
    for (k, v) in &obj {
        if k == "force" {
            force = boolean(k, v)?;
        } else {
            limits.insert(k.clone(), quota_value(k, v)?);
        }
    }
    Ok((limits, force))
}

async fn update(
    api: Api,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> ComputeResult {
    api.check_query(&["user_id"])?;
    let resources = project_resources(&api);
    let (limits, force) = parse_limits(body, "quota_set", &resources, true)?;
    no_user_quotas(&api)?;
    let project = ProjectId::from(id);
    if !api.ctx.is_admin() {
        return Err(Error::Forbidden(
            "Policy doesn't allow os_compute_api:os-quota-sets:update to be performed.".into(),
        )
        .into());
    }
    api.control().quota_verify_project(&project).await?;
    let q = api
        .control()
        .quota_set_limits(&api.ctx, &project, limits, force)
        .await?;
    // Nova leaves `id` out of the update response.
    Ok(crate::common::json(
        StatusCode::OK,
        json!({"quota_set": quota_body(&resources, None, &q)}),
    ))
}

async fn delete(api: Api, Path(id): Path<String>) -> ComputeResult {
    api.check_query(&["user_id"])?;
    no_user_quotas(&api)?;
    api.control()
        .quota_reset(&api.ctx, &ProjectId::from(id))
        .await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

async fn class_show(api: Api, Path(id): Path<String>) -> ComputeResult {
    let q = api.control().quota_class_get(&api.ctx, &id).await?;
    Ok(crate::common::json(
        StatusCode::OK,
        json!({"quota_class_set": quota_body(&class_resources(&api), Some(&id), &q)}),
    ))
}

async fn class_update(
    api: Api,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> ComputeResult {
    // The update schema accepts every resource the class API ever showed at this version
    // (server-group keys included before 2.50, where the response leaves them out).
    let settable: Vec<&str> = RESOURCES
        .iter()
        .copied()
        .filter(|r| !(api.v.at_least(50) && NETWORK.contains(r)))
        .filter(|r| !(api.v.at_least(57) && INJECTED.contains(r)))
        .collect();
    let (limits, _) = parse_limits(body, "quota_class_set", &settable, false)?;
    let q = api
        .control()
        .quota_class_update(&api.ctx, &id, limits)
        .await?;
    Ok(crate::common::json(
        StatusCode::OK,
        json!({"quota_class_set": quota_body(&class_resources(&api), None, &q)}),
    ))
}
