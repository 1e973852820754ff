//! `/v1/instances`: list (with `fields=` and `all_tenants`), detail list, create, show,
//! JSON-Patch update, delete, and the `states` sub-resource (summary and power changes).

use super::fault::{MoganError, MoganResult};
use super::{Mogan, instance_id, mogan_time, patch};
use crate::AppState;
use crate::common::body::{JsonBody, from_value};
use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use nimbus_control::servers::{
    NetworkRequest, RequestedNic, ServerAction, ServerCreate, ServerListQuery, ServerUpdate,
};
use nimbus_model::server::{Personality, Server};
use nimbus_model::state::{mogan_power_state, mogan_status, mogan_target_power_state};
use nimbus_model::{Error, FlavorId, ImageId};
use serde::Deserialize;
use serde_json::{Map, Value, json};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/instances", get(index).post(create))
        .route("/v1/instances/detail", get(detail))
        .route("/v1/instances/{id}", get(show).patch(update).delete(delete))
        .route("/v1/instances/{id}/states", get(states))
        .route("/v1/instances/{id}/states/power", put(power))
}

/// What `GET /v1/instances` shows without `fields=` (the seed: name, uuid, status and
/// description; `links` is always added).
const DEFAULT_FIELDS: &[&str] = &["uuid", "name", "description", "status"];

/// The full Mogan representation of an instance.
pub fn view(m: &Mogan, s: &Server) -> Map<String, Value> {
    let id = s.id.to_string();
    let status = if s.deleted {
        "deleted"
    } else {
        mogan_status(s.vm_state, s.task_state, s.power_state)
    };
    let mut o = Map::new();
    o.insert("uuid".into(), json!(id));
    o.insert("name".into(), json!(s.name));
    o.insert("description".into(), json!(s.description));
    o.insert("project_id".into(), json!(s.project_id));
    o.insert("user_id".into(), json!(s.user_id));
    o.insert("status".into(), json!(status));
    o.insert(
        "power_state".into(),
        json!(mogan_power_state(s.power_state)),
    );
    o.insert("availability_zone".into(), json!(s.availability_zone));
    o.insert("instance_type_uuid".into(), json!(s.flavor.id));
    o.insert(
        "image_uuid".into(),
        json!(s.image_id.map(|i| i.to_string())),
    );
    o.insert("network_info".into(), network_info(s));
    o.insert("links".into(), m.links(&id));
    o.insert(
        "launched_at".into(),
        json!(s.launched_at.as_ref().map(mogan_time)),
    );
    o.insert("created_at".into(), json!(mogan_time(&s.created_at)));
    // Mogan's `updated_at` stays null until the record is first changed.
    o.insert(
        "updated_at".into(),
        json!((s.updated_at != s.created_at).then(|| mogan_time(&s.updated_at))),
    );
    o.insert("extra".into(), json!(s.metadata));
    o
}

/// Mogan's legacy `network_info`: one entry per port (NIC) keyed by its id, with the network
/// id, MAC and fixed IPs. Nimbus networks have no separate subnet objects, so `subnet_id`
/// is null.
fn network_info(s: &Server) -> Value {
    let mut m = Map::new();
    for nic in &s.nics {
        let fixed_ips: Vec<Value> = [&nic.ipv4, &nic.ipv6]
            .into_iter()
            .flatten()
            .map(|ip| json!({"ip_address": ip, "subnet_id": null}))
            .collect();
        m.insert(
            nic.id.to_string(),
            json!({"network": nic.network_id.to_string(), "mac_address": nic.mac, "fixed_ips": fixed_ips}),
        );
    }
    Value::Object(m)
}

/// Mogan's `fields=` (a comma-separated list, case-insensitive; unknown names are ignored,
/// `links` is always kept).
fn parse_fields(raw: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for f in raw.split(',').map(|f| f.trim().to_ascii_lowercase()) {
        if !f.is_empty() && !out.contains(&f) {
            out.push(f);
        }
    }
    out
}

fn select<S: AsRef<str>>(mut full: Map<String, Value>, fields: &[S]) -> Value {
    full.retain(|k, _| k == "links" || fields.iter().any(|f| f.as_ref() == k));
    Value::Object(full)
}

/// oslo `bool_from_string(strict=True)`, as Mogan's `types.boolean` parses query values.
fn strict_bool(name: &str, v: &str) -> Result<bool, Error> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "t" | "true" | "on" | "y" | "yes" => Ok(true),
        "0" | "f" | "false" | "off" | "n" | "no" => Ok(false),
        _ => Err(Error::invalid(format!(
            "Invalid input for field/attribute {name}. Value: '{v}'. Unrecognized value '{v}', acceptable values are: '0', '1', 'f', 'false', 'n', 'no', 'off', 'on', 't', 'true', 'y', 'yes'"
        ))),
    }
}

async fn list_servers(m: &Mogan) -> Result<Vec<Server>, Error> {
    let all_tenants = match m.param("all_tenants") {
        Some(v) => strict_bool("all_tenants", v)?,
        None => false,
    };
    // Non-admins asking for every tenant get their own, as Mogan does (project_only stays).
    let q = ServerListQuery {
        all_tenants: all_tenants && m.ctx.is_admin(),
        ..ServerListQuery::default()
    };
    m.control().servers_list(&m.ctx, q).await
}

async fn index(m: Mogan) -> MoganResult {
    m.check_query(&["fields", "all_tenants"])?;
    let fields = match m.param("fields") {
        Some(f) => parse_fields(f),
        None => DEFAULT_FIELDS.iter().map(|f| f.to_string()).collect(),
    };
    let servers = list_servers(&m).await?;
    let items: Vec<Value> = servers
        .iter()
        .map(|s| select(view(&m, s), &fields))
        .collect();
    Ok(crate::common::json(
        StatusCode::OK,
        json!({"instances": items}),
    ))
}

async fn detail(m: Mogan) -> MoganResult {
    m.check_query(&["all_tenants"])?;
    let servers = list_servers(&m).await?;
    let items: Vec<Value> = servers.iter().map(|s| Value::Object(view(&m, s))).collect();
    Ok(crate::common::json(
        StatusCode::OK,
        json!({"instances": items}),
    ))
}

async fn show(m: Mogan, Path(id): Path<String>) -> MoganResult {
    m.check_query(&["fields"])?;
    let id = instance_id(&id)?;
    let s = m.control().server_get(&m.ctx, id).await?;
    let full = view(&m, &s);
    let body = match m.param("fields") {
        Some(f) => select(full, &parse_fields(f)),
        None => Value::Object(full),
    };
    Ok(crate::common::json(StatusCode::OK, body))
}

// ---- create ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateInstance {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    availability_zone: Option<String>,
    image_uuid: String,
    instance_type_uuid: String,
    networks: Vec<NetworkReq>,
    #[serde(default)]
    extra: Option<Map<String, Value>>,
    // Accepted from later Mogan releases (the core supports them); not in the seed.
    #[serde(default)]
    key_name: Option<String>,
    #[serde(default)]
    user_data: Option<String>,
    #[serde(default)]
    personality: Option<Vec<PersonalityReq>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NetworkReq {
    net_id: String,
    #[serde(default)]
    port_type: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PersonalityReq {
    path: String,
    contents: String,
}

fn invalid_field(field: &str, value: &str, why: &str) -> Error {
    Error::invalid(format!(
        "Invalid input for field/attribute {field}. Value: {value}. {why}"
    ))
}

fn check_len(field: &str, v: &str, min: usize, max: usize) -> Result<(), Error> {
    let n = v.chars().count();
    if n < min {
        return Err(invalid_field(field, v, &format!("'{v}' is too short")));
    }
    if n > max {
        return Err(invalid_field(field, v, &format!("'{v}' is too long")));
    }
    Ok(())
}

fn check_uuid(field: &str, v: &str) -> Result<(), Error> {
    uuid::Uuid::parse_str(v)
        .map(|_| ())
        .map_err(|_| invalid_field(field, v, &format!("'{v}' is not a 'uuid'")))
}

/// Mogan's `extra` schema: keys `^[a-zA-Z0-9-_:. ]{1,255}$`, string values up to 255.
fn check_extra(extra: &Map<String, Value>) -> Result<(), Error> {
    for (k, v) in extra {
        let key_ok = !k.is_empty()
            && k.chars().count() <= 255
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ':' | '.' | ' '));
        if !key_ok {
            return Err(Error::invalid(format!(
                "Invalid input for field/attribute extra. Value: {}. Additional properties are not allowed ('{k}' was unexpected)",
                Value::Object(extra.clone())
            )));
        }
        match v {
            Value::String(s) => check_len(&format!("extra/{k}"), s, 0, 255)?,
            other => {
                return Err(invalid_field(
                    &format!("extra/{k}"),
                    &other.to_string(),
                    &format!("{other} is not of type 'string'"),
                ));
            }
        }
    }
    Ok(())
}

fn create_request(body: CreateInstance) -> Result<ServerCreate, Error> {
    check_len("name", &body.name, 1, 255)?;
    if let Some(d) = &body.description {
        check_len("description", d, 0, 255)?;
    }
    if let Some(az) = &body.availability_zone {
        check_len("availability_zone", az, 1, 255)?;
    }
    check_uuid("image_uuid", &body.image_uuid)?;
    let image_id: ImageId = body
        .image_uuid
        .parse()
        .map_err(|_| invalid_field("image_uuid", &body.image_uuid, "not a uuid"))?;
    // Mogan checks `instance_type_uuid` is a UUID; Nimbus flavor ids are Nova's arbitrary
    // strings ("1", "42"), so any non-empty id is taken and the flavor lookup decides.
    check_len("instance_type_uuid", &body.instance_type_uuid, 1, 255)?;
    if body.networks.is_empty() {
        return Err(Error::invalid(
            "Invalid input for field/attribute networks. Value: []. [] is too short",
        ));
    }
    let mut nics = Vec::new();
    for n in &body.networks {
        check_uuid("net_id", &n.net_id)?;
        if let Some(pt) = &n.port_type {
            check_len("port_type", pt, 1, 255)?;
        }
        nics.push(RequestedNic {
            network_id: Some(n.net_id.clone()),
            port_id: None,
            fixed_ip: None,
            tag: None,
        });
    }
    let extra = body.extra.unwrap_or_default();
    check_extra(&extra)?;
    let mut personality = Vec::new();
    for p in body.personality.unwrap_or_default() {
        use base64::Engine as _;
        // The samples wrap base64 with spaces; whitespace is not part of the data.
        let compact: String = p.contents.split_whitespace().collect();
        base64::engine::general_purpose::STANDARD
            .decode(&compact)
            .map_err(|_| invalid_field("personality/contents", &p.path, "is not valid base64"))?;
        personality.push(Personality {
            path: p.path,
            contents: compact,
        });
    }
    Ok(ServerCreate {
        name: body.name,
        image_id: Some(image_id),
        flavor_id: FlavorId::from(body.instance_type_uuid.as_str()),
        key_name: body.key_name,
        metadata: patch::extra_map(&Value::Object(extra))?,
        description: body.description,
        availability_zone: body.availability_zone,
        user_data: body.user_data,
        personality,
        min_count: 1,
        max_count: 1,
        networks: NetworkRequest::List(nics),
        ..ServerCreate::default()
    })
}

async fn create(m: Mogan, JsonBody(body): JsonBody<Value>) -> MoganResult {
    if !body.is_object() {
        return Err(Error::invalid(
            "Invalid input for the request body: an instance object is required",
        )
        .into());
    }
    let req = create_request(from_value::<CreateInstance>(body)?)?;
    let created = m.control().server_create(&m.ctx, req).await?;
    let s = created
        .servers
        .first()
        .ok_or_else(|| Error::internal("create returned no server"))?;
    let mut resp = crate::common::json(StatusCode::CREATED, Value::Object(view(&m, s)));
    if let Ok(loc) = HeaderValue::from_str(&m.instance_url(&s.id.to_string())) {
        resp.headers_mut().insert("location", loc);
    }
    Ok(resp)
}

// ---- update and delete ----

async fn update(m: Mogan, Path(id): Path<String>, JsonBody(body): JsonBody<Value>) -> MoganResult {
    let id = instance_id(&id)?;
    let current = m.control().server_get(&m.ctx, id).await?;
    let changes = patch::apply(&Value::Object(view(&m, &current)), &body)?;
    // One update: name, description and extra change together or not at all.
    let upd = ServerUpdate {
        name: changes.name,
        description: changes.description,
        metadata: changes.extra,
        ..ServerUpdate::default()
    };
    m.control().server_update(&m.ctx, id, upd).await?;
    let s = m.control().server_get(&m.ctx, id).await?;
    Ok(crate::common::json(
        StatusCode::OK,
        Value::Object(view(&m, &s)),
    ))
}

async fn delete(m: Mogan, Path(id): Path<String>) -> MoganResult {
    m.control().server_delete(&m.ctx, instance_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---- states ----

async fn states(m: Mogan, Path(id): Path<String>) -> MoganResult {
    let s = m.control().server_get(&m.ctx, instance_id(&id)?).await?;
    let status = if s.deleted {
        "deleted"
    } else {
        mogan_status(s.vm_state, s.task_state, s.power_state)
    };
    Ok(crate::common::json(
        StatusCode::OK,
        json!({
            "power_state": mogan_power_state(s.power_state),
            "target_power_state": mogan_target_power_state(s.task_state),
            "locked": s.locked,
            "status": status,
        }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PowerBody {
    target: String,
}

/// Mogan's power targets onto the core's actions. The core's stop is graceful with a forced
/// fallback after `shutdown_timeout`, so `off` and `soft_off` are the same action; Ironic's
/// `reboot` is a hard power cycle, `soft_reboot` an ACPI one.
fn power_action(target: &str) -> Option<ServerAction> {
    Some(match target {
        "on" => ServerAction::Start,
        "off" | "soft_off" => ServerAction::Stop,
        "reboot" => ServerAction::Reboot { hard: true },
        "soft_reboot" => ServerAction::Reboot { hard: false },
        _ => return None,
    })
}

async fn power(
    m: Mogan,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<PowerBody>,
) -> MoganResult {
    let sid = instance_id(&id)?;
    let action = power_action(&body.target).ok_or_else(|| {
        MoganError::Core(Error::invalid(format!(
            "The target '{}' is not a valid value for the power action of instance {id}: expected one of on, off, reboot, soft_off, soft_reboot.",
            body.target
        )))
    })?;
    m.control().server_action(&m.ctx, sid, action).await?;
    let mut resp = StatusCode::ACCEPTED.into_response();
    if let Ok(loc) = HeaderValue::from_str(&format!("{}/states", m.instance_url(&sid.to_string())))
    {
        resp.headers_mut().insert("location", loc);
    }
    Ok::<Response, MoganError>(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn power_targets() {
        assert!(matches!(power_action("on"), Some(ServerAction::Start)));
        assert!(matches!(power_action("off"), Some(ServerAction::Stop)));
        assert!(matches!(power_action("soft_off"), Some(ServerAction::Stop)));
        assert!(matches!(
            power_action("reboot"),
            Some(ServerAction::Reboot { hard: true })
        ));
        assert!(matches!(
            power_action("soft_reboot"),
            Some(ServerAction::Reboot { hard: false })
        ));
        assert!(power_action("ON").is_none());
        assert!(power_action("rebuild").is_none());
    }

    #[test]
    fn fields_selection() {
        assert_eq!(parse_fields("Name, uuid,,name"), vec!["name", "uuid"]);
        let full: Map<String, Value> =
            serde_json::from_value(json!({"name": "a", "uuid": "u", "links": [], "extra": {}}))
                .unwrap();
        assert_eq!(
            select(full, &["name", "bogus"]),
            json!({"name": "a", "links": []})
        );
    }

    #[test]
    fn create_validation() {
        let base = || {
            json!({
                "name": "n", "instance_type_uuid": "1",
                "image_uuid": "efe0a06f-ca95-4808-b41e-9f55b9c5eb98",
                "networks": [{"net_id": "c1940655-8b8e-4370-b8f9-03ba1daeca31", "port_type": "10GE"}],
                "extra": {"My Server Name": "Apache1"},
            })
        };
        let parse = |v: Value| from_value::<CreateInstance>(v).and_then(create_request);
        let ok = parse(base()).unwrap();
        assert_eq!(ok.metadata["My Server Name"], "Apache1");
        let bad = |f: &dyn Fn(&mut Value), want: &str| {
            let mut v = base();
            f(&mut v);
            let e = parse(v).expect_err("refused").to_string();
            assert!(e.contains(want), "{e} lacks {want}");
        };
        bad(&|v| v["networks"] = json!([]), "too short");
        bad(&|v| v["networks"][0]["net_id"] = json!("nope"), "net_id");
        bad(&|v| v["networks"][0]["uuid"] = json!("x"), "uuid");
        bad(&|v| v["image_uuid"] = json!("nope"), "image_uuid");
        bad(&|v| v["name"] = json!(""), "too short");
        bad(&|v| v["name"] = json!(5), "name");
        bad(&|v| v["extra"] = json!({"k/x": "v"}), "k/x");
        bad(&|v| v["extra"] = json!({"k": 1}), "extra/k");
        bad(&|v| v["bogus"] = json!(1), "bogus");
        bad(
            &|v| {
                v.as_object_mut().unwrap().remove("networks");
            },
            "networks",
        );
        bad(
            &|v| v["personality"] = json!([{"path": "/x", "contents": "!!"}]),
            "base64",
        );
    }
}
