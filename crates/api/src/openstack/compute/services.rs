//! `/os-services` (admin): a `nova-compute` service per compute host plus the controller's
//! `nova-scheduler` and `nova-conductor` (zone `internal`). Integer ids before 2.53, UUIDs
//! from 2.53; `forced_down` from 2.11. Updates: the legacy `PUT /os-services/{action}`
//! (enable, disable, disable-log-reason, force-down) up to 2.52, `PUT /os-services/{id}`
//! with `status`/`disabled_reason`/`forced_down` from 2.53. Delete refuses (409) while the
//! host has servers, as Nova does.

use super::Api;
use super::fault::ComputeResult;
use super::keypairs::check_keys;
use super::quota_sets::boolean;
use crate::AppState;
use crate::common::body::JsonBody;
use crate::common::time::perfect;
use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, put};
use nimbus_control::hosts::{ServiceChange, ServiceInfo, ServiceRef};
use nimbus_model::Error;
use serde_json::{Map, Value, json};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/compute/v2.1/os-services", get(index))
        .route("/compute/v2.1/os-services/{id}", put(update).delete(delete))
}

fn view(api: &Api, s: &ServiceInfo) -> Value {
    let mut m = Map::new();
    m.insert(
        "id".into(),
        if api.v.at_least(53) {
            json!(s.uuid)
        } else {
            json!(s.id)
        },
    );
    m.insert("binary".into(), json!(s.binary));
    m.insert("host".into(), json!(s.host));
    m.insert("zone".into(), json!(s.zone));
    m.insert(
        "status".into(),
        json!(if s.enabled { "enabled" } else { "disabled" }),
    );
    m.insert("state".into(), json!(if s.up { "up" } else { "down" }));
    m.insert("updated_at".into(), json!(perfect(&s.updated_at)));
    m.insert("disabled_reason".into(), json!(s.disabled_reason));
    if api.v.at_least(11) {
        m.insert("forced_down".into(), json!(s.forced_down));
    }
    Value::Object(m)
}

async fn index(api: Api) -> ComputeResult {
    api.check_query(&["host", "binary"])?;
    let host = api.param("host").filter(|h| !h.is_empty());
    let binary = api.param("binary").filter(|b| !b.is_empty());
    let services: Vec<Value> = api
        .control()
        .services_list(&api.ctx)
        .await?
        .iter()
        .filter(|s| host.is_none_or(|h| s.host == h))
        .filter(|s| binary.is_none_or(|b| s.binary == b))
        .map(|s| view(&api, s))
        .collect();
    Ok(crate::common::json(
        StatusCode::OK,
        json!({"services": services}),
    ))
}

fn body_object(body: Value) -> Result<Map<String, Value>, Error> {
    match body {
        Value::Object(m) => Ok(m),
        other => Err(Error::invalid(format!(
            "Invalid input for the request body: {other} is not of type 'object'"
        ))),
    }
}

/// A string field of 1..=255 characters.
fn short_string(body: &Map<String, Value>, key: &str) -> Result<Option<String>, Error> {
    match body.get(key) {
        None => Ok(None),
        Some(Value::String(s)) if !s.is_empty() && s.chars().count() <= 255 => Ok(Some(s.clone())),
        Some(Value::String(s)) if s.is_empty() => Err(Error::invalid(format!(
            "Invalid input for field/attribute {key}. Value: . '' is too short"
        ))),
        Some(Value::String(s)) => Err(Error::invalid(format!(
            "Invalid input for field/attribute {key}. Value: {s}. '{s}' is too long"
        ))),
        Some(other) => Err(Error::invalid(format!(
            "Invalid input for field/attribute {key}. Value: {other}. {other} is not of type 'string'"
        ))),
    }
}

/// Nova checks the admin-only policy before looking at the path.
fn require_admin(api: &Api, action: &str) -> Result<(), Error> {
    if api.ctx.is_admin() {
        Ok(())
    } else {
        Err(Error::Forbidden(format!(
            "Policy doesn't allow os_compute_api:os-services:{action} to be performed."
        )))
    }
}

async fn update(
    api: Api,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> ComputeResult {
    let body = body_object(body)?;
    require_admin(&api, "update")?;
    if api.v.at_least(53) {
        update_v253(&api, &id, body).await
    } else {
        update_legacy(&api, &id, body).await
    }
}

/// `PUT /os-services/{enable|disable|disable-log-reason|force-down}` with `host` and
/// `binary` in the body.
async fn update_legacy(api: &Api, action: &str, body: Map<String, Value>) -> ComputeResult {
    let mut allowed = vec!["host", "binary", "disabled_reason"];
    if api.v.at_least(11) {
        allowed.push("forced_down");
    }
    check_keys(&body, &allowed, "the request body")?;
    let required = |k: &str| {
        short_string(&body, k)?.ok_or_else(|| {
            Error::invalid(format!(
                "Invalid input for the request body: '{k}' is a required property"
            ))
        })
    };
    let host = required("host")?;
    let binary = required("binary")?;
    let reason = short_string(&body, "disabled_reason")?;
    let forced = body
        .get("forced_down")
        .map(|v| boolean("forced_down", v))
        .transpose()?;
    let target = ServiceRef::HostBinary {
        host: host.clone(),
        binary: binary.clone(),
    };
    let (change, mut shown) = match action {
        "enable" => (
            ServiceChange {
                status: Some((true, None)),
                forced_down: None,
            },
            json!({"host": host, "binary": binary, "status": "enabled"}),
        ),
        "disable" | "disable-log-reason" => {
            if action == "disable-log-reason" && reason.is_none() {
                return Err(Error::invalid("Missing disabled reason field").into());
            }
            // Plain `disable` ignores a reason, as Nova does.
            let reason = if action == "disable" { None } else { reason };
            let mut shown = json!({"host": host, "binary": binary, "status": "disabled"});
            if let Some(r) = &reason {
                shown["disabled_reason"] = json!(r);
            }
            (
                ServiceChange {
                    status: Some((false, reason)),
                    forced_down: None,
                },
                shown,
            )
        }
        "force-down" if api.v.at_least(11) => {
            let forced = forced.ok_or_else(|| Error::invalid("Missing forced_down field"))?;
            (
                ServiceChange {
                    status: None,
                    forced_down: Some(forced),
                },
                json!({"host": host, "binary": binary, "forced_down": forced}),
            )
        }
        _ => return Err(Error::not_found("Unknown action").into()),
    };
    api.control()
        .service_update(&api.ctx, &target, change)
        .await?;
    shown = json!({"service": shown});
    Ok(crate::common::json(StatusCode::OK, shown))
}

/// `PUT /os-services/{uuid}` (2.53).
async fn update_v253(api: &Api, id: &str, body: Map<String, Value>) -> ComputeResult {
    check_keys(
        &body,
        &["status", "disabled_reason", "forced_down"],
        "the request body",
    )?;
    let status = match body.get("status") {
        None => None,
        Some(Value::String(s)) if s == "enabled" || s == "disabled" => Some(s.clone()),
        Some(other) => {
            return Err(Error::invalid(format!(
                "Invalid input for field/attribute status. Value: {other}. {other} is not one of ['enabled', 'disabled']"
            ))
            .into());
        }
    };
    let reason = short_string(&body, "disabled_reason")?;
    let forced = body
        .get("forced_down")
        .map(|v| boolean("forced_down", v))
        .transpose()?;
    let uuid: uuid::Uuid = id
        .parse()
        .map_err(|_| Error::invalid(format!("Invalid uuid {id}")))?;
    let status = match status.as_deref() {
        Some("enabled") if reason.is_some() => {
            return Err(Error::invalid(
                "Specifying 'disabled_reason' with status 'enabled' is invalid.",
            )
            .into());
        }
        Some("enabled") => Some((true, None)),
        Some(_) => Some((false, reason)),
        None => None,
    };
    if status.is_none() && forced.is_none() {
        return Err(Error::invalid(
            "No updates were requested. Fields 'status' or 'forced_down' should be specified.",
        )
        .into());
    }
    let svc = api
        .control()
        .service_update(
            &api.ctx,
            &ServiceRef::Uuid(uuid),
            ServiceChange {
                status,
                forced_down: forced,
            },
        )
        .await?;
    Ok(crate::common::json(
        StatusCode::OK,
        json!({"service": view(api, &svc)}),
    ))
}

async fn delete(api: Api, Path(id): Path<String>) -> ComputeResult {
    require_admin(&api, "delete")?;
    let target = if api.v.at_least(53) {
        ServiceRef::Uuid(
            id.parse()
                .map_err(|_| Error::invalid(format!("Invalid uuid {id}")))?,
        )
    } else {
        ServiceRef::Id(
            id.parse()
                .map_err(|_| Error::invalid("Invalid input received: id must be an integer"))?,
        )
    };
    api.control().service_delete(&api.ctx, &target).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
