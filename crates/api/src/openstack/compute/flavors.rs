//! `/flavors`: list (index/detail with `is_public`, `minRam`, `minDisk`, sorting, paging),
//! show, admin create/update/delete, extra specs and private-flavor access.

use super::Api;
use super::fault::ComputeResult;
use super::servers::{Flag, StrOrInt};
use crate::AppState;
use crate::common::body::JsonBody;
use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use nimbus_control::flavors::{FlavorListQuery, PublicFilter};
use nimbus_model::flavor::{Flavor, FlavorCreate};
use nimbus_model::{Error, FlavorId, ProjectId};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/compute/v2.1/flavors", get(index).post(create))
        .route("/compute/v2.1/flavors/detail", get(detail))
        .route(
            "/compute/v2.1/flavors/{id}",
            get(show).put(update).delete(delete),
        )
        .route(
            "/compute/v2.1/flavors/{id}/os-extra_specs",
            get(specs_index).post(specs_create),
        )
        .route(
            "/compute/v2.1/flavors/{id}/os-extra_specs/{key}",
            get(spec_show).put(spec_update).delete(spec_delete),
        )
        .route(
            "/compute/v2.1/flavors/{id}/os-flavor-access",
            get(access_index),
        )
        .route("/compute/v2.1/flavors/{id}/action", post(access_action))
}

pub fn view(api: &Api, f: &Flavor) -> Value {
    let v = api.v;
    let mut m = Map::new();
    m.insert("id".into(), json!(f.id));
    m.insert("name".into(), json!(f.name));
    m.insert("ram".into(), json!(f.ram_mb));
    m.insert("disk".into(), json!(f.disk_gb));
    m.insert("vcpus".into(), json!(f.vcpus));
    m.insert("OS-FLV-EXT-DATA:ephemeral".into(), json!(f.ephemeral_gb));
    m.insert("OS-FLV-DISABLED:disabled".into(), json!(f.disabled));
    m.insert("os-flavor-access:is_public".into(), json!(f.is_public));
    m.insert(
        "swap".into(),
        if f.swap_mb == 0 && !v.at_least(75) {
            json!("")
        } else {
            json!(f.swap_mb)
        },
    );
    m.insert("rxtx_factor".into(), json!(f.rxtx_factor));
    m.insert("links".into(), api.links.pair("flavors", f.id.as_str()));
    if v.at_least(55) {
        m.insert("description".into(), json!(f.description));
    }
    if v.at_least(61) {
        m.insert("extra_specs".into(), json!(f.extra_specs));
    }
    Value::Object(m)
}

fn list_query(api: &Api) -> Result<FlavorListQuery, Error> {
    let is_public = match api.param("is_public") {
        None => PublicFilter::Default,
        Some(v) if v.eq_ignore_ascii_case("none") => PublicFilter::All,
        Some(v) => match v.to_ascii_lowercase().as_str() {
            "1" | "t" | "true" | "on" | "y" | "yes" => PublicFilter::Only(true),
            "0" | "f" | "false" | "off" | "n" | "no" => PublicFilter::Only(false),
            _ => return Err(Error::invalid(format!("Invalid is_public filter [{v}]"))),
        },
    };
    let num = |k: &str| -> Result<Option<u64>, Error> {
        api.param(k)
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| Error::invalid(format!("Invalid {k} filter [{v}]")))
            })
            .transpose()
    };
    let sort_desc = match api.param("sort_dir") {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(other) => {
            return Err(Error::invalid(format!(
                "Invalid input for query parameters sort_dir. Value: {other}."
            )));
        }
    };
    Ok(FlavorListQuery {
        is_public,
        min_ram: num("minRam")?,
        min_disk: num("minDisk")?,
        name: None,
        sort_key: api.param("sort_key").map(str::to_owned),
        sort_desc,
        marker: api.param("marker").map(FlavorId::from),
        limit: api.limit()?,
    })
}

async fn list(api: &Api, detailed: bool) -> ComputeResult {
    let flavors = api
        .control()
        .flavors_list(&api.ctx, list_query(api)?)
        .await?;
    let items: Vec<Value> = flavors
        .iter()
        .map(|f| {
            if detailed {
                view(api, f)
            } else {
                let mut b = json!({"id": f.id, "name": f.name, "links": api.links.pair("flavors", f.id.as_str())});
                if api.v.at_least(55) {
                    b["description"] = json!(f.description);
                }
                b
            }
        })
        .collect();
    let mut body = json!({"flavors": items});
    let coll = if detailed {
        "flavors/detail"
    } else {
        "flavors"
    };
    if let Some(links) =
        api.collection_links(coll, flavors.len(), flavors.last().map(|f| f.id.as_str()))
    {
        body["flavors_links"] = links;
    }
    Ok(crate::common::json(StatusCode::OK, body))
}

async fn index(api: Api) -> ComputeResult {
    list(&api, false).await
}

async fn detail(api: Api) -> ComputeResult {
    list(&api, true).await
}

async fn show(api: Api, Path(id): Path<String>) -> ComputeResult {
    let f = api
        .control()
        .flavor_get(&api.ctx, &FlavorId::from(id))
        .await?;
    Ok(crate::common::json(
        StatusCode::OK,
        json!({"flavor": view(&api, &f)}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    flavor: CreateFlavor,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateFlavor {
    name: String,
    ram: StrOrInt,
    vcpus: StrOrInt,
    disk: StrOrInt,
    #[serde(default)]
    id: Option<StrOrInt>,
    #[serde(rename = "OS-FLV-EXT-DATA:ephemeral", default)]
    ephemeral: Option<StrOrInt>,
    #[serde(default)]
    swap: Option<StrOrInt>,
    #[serde(default)]
    rxtx_factor: Option<Value>,
    #[serde(rename = "os-flavor-access:is_public", default)]
    is_public: Option<Flag>,
    #[serde(default)]
    description: Option<Option<String>>,
}

fn int(field: &str, v: &StrOrInt, min: u64) -> Result<u64, Error> {
    match v.0.trim().parse::<i64>() {
        Ok(n) if n >= min as i64 && n <= i32::MAX as i64 => Ok(n as u64),
        Ok(n) if n < min as i64 => Err(Error::invalid(format!(
            "Invalid input for field/attribute {field}. Value: {n}. {n} is less than the minimum of {min}"
        ))),
        Ok(n) => Err(Error::invalid(format!(
            "Invalid input for field/attribute {field}. Value: {n}. {n} is greater than the maximum of {}",
            i32::MAX
        ))),
        Err(_) => Err(Error::invalid(format!(
            "Invalid input for field/attribute {field}. Value: {0}. '{0}' is not of type 'integer', 'string'",
            v.0
        ))),
    }
}

async fn create(api: Api, JsonBody(b): JsonBody<CreateBody>) -> ComputeResult {
    let f = b.flavor;
    if f.description.is_some() && !api.v.at_least(55) {
        return Err(Error::invalid("Invalid input for field/attribute flavor. Additional properties are not allowed ('description' was unexpected)").into());
    }
    let rxtx = match &f.rxtx_factor {
        None => 1.0,
        Some(Value::Number(n)) => n.as_f64().unwrap_or(0.0),
        Some(Value::String(s)) => s.parse::<f64>().map_err(|_| {
            Error::invalid(format!(
                "Invalid input for field/attribute rxtx_factor. Value: {s}."
            ))
        })?,
        Some(other) => {
            return Err(Error::invalid(format!(
                "Invalid input for field/attribute rxtx_factor. Value: {other}."
            ))
            .into());
        }
    };
    let req = FlavorCreate {
        id: f.id.map(|i| FlavorId(i.0)),
        name: f.name,
        vcpus: int("vcpus", &f.vcpus, 1)? as u32,
        ram_mb: int("ram", &f.ram, 1)?,
        disk_gb: int("disk", &f.disk, 0)?,
        ephemeral_gb: f
            .ephemeral
            .as_ref()
            .map(|e| int("OS-FLV-EXT-DATA:ephemeral", e, 0))
            .transpose()?
            .unwrap_or(0),
        swap_mb: f
            .swap
            .as_ref()
            .map(|s| int("swap", s, 0))
            .transpose()?
            .unwrap_or(0),
        rxtx_factor: rxtx,
        is_public: f.is_public.is_none_or(|p| p.0),
        description: f.description.flatten(),
    };
    let flavor = api.control().flavor_create(&api.ctx, req).await?;
    Ok(crate::common::json(
        StatusCode::OK,
        json!({"flavor": view(&api, &flavor)}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    flavor: UpdateFlavor,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateFlavor {
    description: Option<String>,
}

async fn update(
    api: Api,
    Path(id): Path<String>,
    JsonBody(b): JsonBody<UpdateBody>,
) -> ComputeResult {
    if !api.v.at_least(55) {
        return Err(Error::not_found("The resource could not be found.").into());
    }
    if b.flavor
        .description
        .as_ref()
        .is_some_and(|d| d.chars().count() > 65535)
    {
        return Err(Error::invalid(
            "Invalid input for field/attribute description. Value is too long",
        )
        .into());
    }
    let f = api
        .control()
        .flavor_set_description(&api.ctx, &FlavorId::from(id), b.flavor.description)
        .await?;
    Ok(crate::common::json(
        StatusCode::OK,
        json!({"flavor": view(&api, &f)}),
    ))
}

async fn delete(api: Api, Path(id): Path<String>) -> ComputeResult {
    api.control()
        .flavor_delete(&api.ctx, &FlavorId::from(id))
        .await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

// ---- extra specs ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SpecsBody {
    extra_specs: BTreeMap<String, Value>,
}

/// From 2.86 Nova validates extra specs it knows (values) and refuses unknown keys in
/// the namespaces it knows.
fn validate_known(api: &Api, specs: &BTreeMap<String, String>) -> Result<(), Error> {
    if !api.v.at_least(86) {
        return Ok(());
    }
    for (k, v) in specs {
        nimbus_control::extra_specs::validate(k, v).map_err(Error::invalid)?;
    }
    Ok(())
}

/// Nova accepts string, number and boolean spec values and stores them as strings.
fn spec_values(m: BTreeMap<String, Value>) -> Result<BTreeMap<String, String>, Error> {
    m.into_iter()
        .map(|(k, v)| match v {
            Value::String(s) => Ok((k, s)),
            Value::Number(n) => Ok((k, n.to_string())),
            Value::Bool(b) => Ok((k, if b { "True" } else { "False" }.to_owned())),
            other => Err(Error::invalid(format!("Invalid input for field/attribute {k}. Value: {other}. {other} is not of type 'string', 'integer', 'number', 'boolean'"))),
        })
        .collect()
}

async fn specs_index(api: Api, Path(id): Path<String>) -> ComputeResult {
    let specs = api
        .control()
        .flavor_extra_specs(&api.ctx, &FlavorId::from(id))
        .await?;
    Ok(crate::common::json(
        StatusCode::OK,
        json!({"extra_specs": specs}),
    ))
}

async fn specs_create(
    api: Api,
    Path(id): Path<String>,
    JsonBody(b): JsonBody<SpecsBody>,
) -> ComputeResult {
    let specs = spec_values(b.extra_specs)?;
    validate_known(&api, &specs)?;
    let shown = specs.clone();
    api.control()
        .flavor_extra_specs_set(&api.ctx, &FlavorId::from(id), specs)
        .await?;
    Ok(crate::common::json(
        StatusCode::OK,
        json!({"extra_specs": shown}),
    ))
}

async fn spec_show(api: Api, Path((id, key)): Path<(String, String)>) -> ComputeResult {
    let specs = api
        .control()
        .flavor_extra_specs(&api.ctx, &FlavorId::from(id.clone()))
        .await?;
    let v = specs.get(&key).ok_or_else(|| {
        Error::not_found(format!("Flavor {id} has no extra specs with key {key}."))
    })?;
    Ok(crate::common::json(StatusCode::OK, json!({key: v})))
}

async fn spec_update(
    api: Api,
    Path((id, key)): Path<(String, String)>,
    JsonBody(b): JsonBody<BTreeMap<String, Value>>,
) -> ComputeResult {
    if b.len() > 1 {
        return Err(Error::invalid("Request body contains too many items").into());
    }
    if !b.contains_key(&key) {
        return Err(Error::invalid("Request body and URI mismatch").into());
    }
    let specs = spec_values(b)?;
    validate_known(&api, &specs)?;
    let shown = specs.clone();
    api.control()
        .flavor_extra_specs_set(&api.ctx, &FlavorId::from(id), specs)
        .await?;
    Ok(crate::common::json(StatusCode::OK, json!(shown)))
}

async fn spec_delete(api: Api, Path((id, key)): Path<(String, String)>) -> ComputeResult {
    api.control()
        .flavor_extra_spec_delete(&api.ctx, &FlavorId::from(id), &key)
        .await?;
    // Nova answers 200 with no body here (flavors_extraspecs.py `delete` has no
    // `@wsgi.response`); tempest's `unset_flavor_extra_specs` schema expects 200.
    Ok(StatusCode::OK.into_response())
}

// ---- access ----

fn access_body(flavor: &str, projects: &[ProjectId]) -> Value {
    json!({"flavor_access": projects.iter().map(|p| json!({"flavor_id": flavor, "tenant_id": p})).collect::<Vec<_>>()})
}

async fn access_index(api: Api, Path(id): Path<String>) -> ComputeResult {
    let projects = api
        .control()
        .flavor_access_list(&api.ctx, &FlavorId::from(id.clone()))
        .await?;
    Ok(crate::common::json(
        StatusCode::OK,
        access_body(&id, &projects),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantBody {
    tenant: String,
}

async fn access_action(
    api: Api,
    Path(id): Path<String>,
    JsonBody(b): JsonBody<Map<String, Value>>,
) -> ComputeResult {
    let Some((name, arg)) = b.into_iter().next() else {
        return Err(Error::invalid("Malformed request body").into());
    };
    let t: TenantBody = crate::common::body::from_value(arg)?;
    let fid = FlavorId::from(id.clone());
    let projects = match name.as_str() {
        "addTenantAccess" => {
            api.control()
                .flavor_access_add(&api.ctx, &fid, ProjectId::from(t.tenant))
                .await?
        }
        "removeTenantAccess" => {
            api.control()
                .flavor_access_remove(&api.ctx, &fid, ProjectId::from(t.tenant))
                .await?
        }
        other => return Err(Error::invalid(format!("There is no such action: {other}")).into()),
    };
    Ok(crate::common::json(
        StatusCode::OK,
        access_body(&id, &projects),
    ))
}
