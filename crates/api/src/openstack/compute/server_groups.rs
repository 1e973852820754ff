//! `/os-server-groups`: create, list (`all_projects` for admins, `limit`/`offset`), show,
//! delete. Before 2.64 a group has `policies: [p]` and an empty `metadata`; from 2.64 it
//! has `policy` and `rules` (`max_server_per_host` for anti-affinity). Soft policies from
//! 2.15, `project_id`/`user_id` from 2.13. The scheduler honours the policies for servers
//! created with `os:scheduler_hints: {"group": id}`.

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
use nimbus_model::server_group::{GroupPolicy, ServerGroup};
use nimbus_model::{Error, ServerGroupId};
use serde_json::{Map, Value, json};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/compute/v2.1/os-server-groups", get(index).post(create))
        .route(
            "/compute/v2.1/os-server-groups/{id}",
            get(show).delete(delete),
        )
}

fn view(api: &Api, g: &ServerGroup) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), json!(g.id));
    m.insert("name".into(), json!(g.name));
    if api.v.at_least(64) {
        m.insert("policy".into(), json!(g.policy.as_str()));
        let mut rules = Map::new();
        if let Some(n) = g.max_server_per_host {
            rules.insert("max_server_per_host".into(), json!(n));
        }
        m.insert("rules".into(), Value::Object(rules));
    } else {
        m.insert("policies".into(), json!([g.policy.as_str()]));
        m.insert("metadata".into(), json!({}));
    }
    m.insert("members".into(), json!(g.members));
    if api.v.at_least(13) {
        m.insert("project_id".into(), json!(g.project_id));
        m.insert("user_id".into(), json!(g.user_id));
    }
    Value::Object(m)
}

/// Nova's `non_negative_integer` query parameter.
fn non_negative(api: &Api, key: &str) -> Result<Option<usize>, Error> {
    match api.param(key) {
        None => Ok(None),
        Some(v) => v.parse::<usize>().map(Some).map_err(|_| {
            Error::invalid(format!(
                "Invalid input for query parameters {key}. Value: {v}. '{v}' does not match '^[0-9]*$'"
            ))
        }),
    }
}

async fn index(api: Api) -> ComputeResult {
    api.check_query(&["all_projects", "limit", "offset"])?;
    let limit = non_negative(&api, "limit")?;
    let offset = non_negative(&api, "offset")?.unwrap_or(0);
    // Any value of `all_projects` counts, as in Nova; non-admins get their own groups.
    let all = api.param("all_projects").is_some();
    let groups = api.control().server_groups_list(&api.ctx, all).await?;
    // Nova `common.limited`: a missing or zero limit means `max_limit`.
    let max = api.control().config().max_limit;
    let limit = limit.filter(|l| *l > 0).unwrap_or(max).min(max);
    let items: Vec<Value> = groups
        .iter()
        .skip(offset)
        .take(limit)
        .map(|g| view(&api, g))
        .collect();
    Ok(crate::common::json(
        StatusCode::OK,
        json!({"server_groups": items}),
    ))
}

/// Nova's `parameter_types.name`: 1–255 characters, no leading or trailing whitespace.
fn validate_name(v: Option<&Value>) -> Result<String, Error> {
    match v {
        None => Err(Error::invalid(
            "Invalid input for field/attribute server_group. 'name' is a required property",
        )),
        Some(Value::String(s)) if s.is_empty() => Err(Error::invalid(
            "Invalid input for field/attribute name. Value: . '' is too short",
        )),
        Some(Value::String(s)) if s.chars().count() > 255 => Err(Error::invalid(format!(
            "Invalid input for field/attribute name. Value: {s}. '{s}' is too long"
        ))),
        Some(Value::String(s)) if s.trim() != s || s.chars().any(|c| c.is_control()) => {
            Err(Error::invalid(format!(
                "Invalid input for field/attribute name. Value: {s}. '{s}' is not a 'name'"
            )))
        }
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(Error::invalid(format!(
            "Invalid input for field/attribute name. Value: {other}. {other} is not of type 'string'"
        ))),
    }
}

/// The policies a microversion accepts at create.
fn parse_policy(api: &Api, field: &str, v: &Value) -> Result<GroupPolicy, Error> {
    let allowed: &[&str] = if api.v.at_least(15) {
        &[
            "anti-affinity",
            "affinity",
            "soft-anti-affinity",
            "soft-affinity",
        ]
    } else {
        &["anti-affinity", "affinity"]
    };
    match v {
        Value::String(s) if allowed.contains(&s.as_str()) => {
            GroupPolicy::parse(s).ok_or_else(|| Error::invalid("unreachable policy"))
        }
        other => Err(Error::invalid(format!(
            "Invalid input for field/attribute {field}. Value: {other}. {other} is not one of {allowed:?}"
        ))),
    }
}

async fn create(api: Api, JsonBody(body): JsonBody<Value>) -> ComputeResult {
    let sg = top_object(body, "server_group")?;
    let (policy, max_per_host) = if api.v.at_least(64) {
        check_keys(&sg, &["name", "policy", "rules"], "server_group")?;
        let policy = match sg.get("policy") {
            None => {
                return Err(Error::invalid(
                    "Invalid input for field/attribute server_group. 'policy' is a required property",
                )
                .into());
            }
            Some(p) => parse_policy(&api, "policy", p)?,
        };
        let max = match sg.get("rules") {
            None => None,
            Some(Value::Object(rules)) => {
                check_keys(rules, &["max_server_per_host"], "rules")?;
                match rules.get("max_server_per_host") {
                    None => None,
                    Some(v) => Some(positive("max_server_per_host", v)?),
                }
            }
            Some(other) => {
                return Err(Error::invalid(format!(
                    "Invalid input for field/attribute rules. Value: {other}. {other} is not of type 'object'"
                ))
                .into());
            }
        };
        let has_rules = matches!(sg.get("rules"), Some(Value::Object(r)) if !r.is_empty());
        if policy != GroupPolicy::AntiAffinity && has_rules {
            return Err(Error::invalid("Only anti-affinity policy supports rules.").into());
        }
        (policy, max)
    } else {
        check_keys(&sg, &["name", "policies"], "server_group")?;
        let policy = match sg.get("policies") {
            None => {
                return Err(Error::invalid(
                    "Invalid input for field/attribute server_group. 'policies' is a required property",
                )
                .into());
            }
            Some(Value::Array(list)) if list.len() == 1 => {
                parse_policy(&api, "policies", &list[0])?
            }
            Some(Value::Array(list)) if list.is_empty() => {
                return Err(Error::invalid(
                    "Invalid input for field/attribute policies. Value: []. [] is too short",
                )
                .into());
            }
            Some(other) => {
                return Err(Error::invalid(format!(
                    "Invalid input for field/attribute policies. Value: {other}. {other} is not a list of exactly one policy"
                ))
                .into());
            }
        };
        (policy, None)
    };
    let name = validate_name(sg.get("name"))?;
    let g = api
        .control()
        .server_group_create(&api.ctx, &name, policy, max_per_host)
        .await?;
    Ok(crate::common::json(
        StatusCode::OK,
        json!({"server_group": view(&api, &g)}),
    ))
}

/// Nova's `positive_integer`: an integer (or digit string) ≥ 1.
fn positive(key: &str, v: &Value) -> Result<u32, Error> {
    let parsed = match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse().ok()
        }
        _ => None,
    };
    match parsed {
        Some(n) if n >= 1 && n <= u32::MAX as u64 => Ok(n as u32),
        _ => Err(Error::invalid(format!(
            "Invalid input for field/attribute {key}. Value: {v}. {v} is not a positive integer"
        ))),
    }
}

fn group_id(id: &str) -> Result<ServerGroupId, Error> {
    id.parse()
        .map_err(|_| Error::not_found(format!("Instance group {id} could not be found.")))
}

async fn show(api: Api, Path(id): Path<String>) -> ComputeResult {
    let g = api
        .control()
        .server_group_get(&api.ctx, group_id(&id)?)
        .await?;
    Ok(crate::common::json(
        StatusCode::OK,
        json!({"server_group": view(&api, &g)}),
    ))
}

async fn delete(api: Api, Path(id): Path<String>) -> ComputeResult {
    api.control()
        .server_group_delete(&api.ctx, group_id(&id)?)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
