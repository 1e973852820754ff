//! `/servers`: list, get (by id or name), create by flavor/image/network names, rename by
//! name (PATCH with `new_name`), delete by name (200, empty body).

use super::fault::{AllianceError, AllianceResult};
use super::{Alliance, one};
use crate::AppState;
use crate::common::body::JsonBody;
use crate::common::time::isotime;
use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use nimbus_control::servers::{NetworkRequest, RequestedNic, ServerCreate, ServerUpdate};
use nimbus_model::server::Server;
use nimbus_model::state::openstack_status;
use nimbus_model::{Error, FlavorId, ImageId, NetworkId, ServerId};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha224};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/servers", get(index).post(create))
        .route("/servers/{name}", get(show).patch(rename).delete(delete))
}

// ---- links and views ----

/// `self` and `bookmark` both point at the Alliance URL of the server: Alliance is
/// unversioned, so its own URL is already the permanent one.
fn server_links(a: &Alliance, id: &str) -> Value {
    let href = format!("{}/servers/{id}", a.public());
    json!([{"href": href, "rel": "self"}, {"href": href, "rel": "bookmark"}])
}

fn image_ref(a: &Alliance, s: &Server) -> Value {
    match s.image_id {
        Some(img) => json!({
            "id": img.to_string(),
            "links": [{"href": format!("{}/image/v2/images/{img}", a.public()), "rel": "bookmark"}],
        }),
        // Booted from a volume: Nova shows an empty string.
        None => json!(""),
    }
}

fn flavor_ref(a: &Alliance, s: &Server) -> Value {
    let id = &s.flavor.id;
    json!({
        "id": id,
        "links": [{"href": format!("{}/compute/v2.1/flavors/{id}", a.public()), "rel": "bookmark"}],
    })
}

/// Nova `generate_hostid`: sha224 of project id + host, empty when unscheduled.
fn host_id(s: &Server) -> String {
    match s.host.as_deref() {
        Some(h) if !h.is_empty() => hex::encode(Sha224::digest(
            format!("{}{h}", s.project_id.as_str()).as_bytes(),
        )),
        _ => String::new(),
    }
}

/// `addresses` grouped by network name; `extended` adds the `OS-EXT-IPS*` keys (GET shows
/// them, the PATCH example does not).
fn addresses(s: &Server, extended: bool) -> Value {
    let mut m: Map<String, Value> = Map::new();
    for nic in &s.nics {
        let entry = m
            .entry(nic.network_name.clone())
            .or_insert_with(|| json!([]));
        let Value::Array(list) = entry else { continue };
        for (version, addr) in [(4, &nic.ipv4), (6, &nic.ipv6)] {
            let Some(addr) = addr else { continue };
            let mut e = json!({"version": version, "addr": addr});
            if extended {
                e["OS-EXT-IPS-MAC:mac_addr"] = json!(nic.mac);
                e["OS-EXT-IPS:type"] = json!("fixed");
            }
            list.push(e);
        }
    }
    Value::Object(m)
}

/// `networks`: the plain addresses per network name.
fn networks(s: &Server) -> Value {
    let mut m: Map<String, Value> = Map::new();
    for nic in &s.nics {
        let entry = m
            .entry(nic.network_name.clone())
            .or_insert_with(|| json!([]));
        if let Value::Array(list) = entry {
            list.extend(
                [&nic.ipv4, &nic.ipv6]
                    .into_iter()
                    .flatten()
                    .map(|ip| json!(ip)),
            );
        }
    }
    Value::Object(m)
}

/// The seed's server representation (GET, and PATCH with plain addresses).
fn view(a: &Alliance, s: &Server, extended_addresses: bool) -> Value {
    let id = s.id.to_string();
    json!({
        "status": openstack_status(s.vm_state, s.task_state, s.power_state),
        "hostId": host_id(s),
        "addresses": addresses(s, extended_addresses),
        "links": server_links(a, &id),
        "image": image_ref(a, s),
        "flavor": flavor_ref(a, s),
        "networks": networks(s),
        "name": s.name,
        "created": isotime(&s.created_at),
        "tenant_id": s.project_id,
        "id": id,
        "progress": s.progress,
    })
}

// ---- resolving names ----

/// A server by id or, failing that, by exact name within the caller's project.
async fn resolve_server(a: &Alliance, key: &str) -> Result<Server, AllianceError> {
    if let Ok(id) = key.parse::<ServerId>() {
        match a.control().server_get(&a.ctx, id).await {
            Ok(s) => return Ok(s),
            Err(Error::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let found = a.control().servers_named(&a.ctx, key).await?;
    one(
        "server",
        key,
        found,
        |s| s.id.to_string(),
        || {
            Error::not_found(format!(
                "No server named '{key}' (nor with that id) was found."
            ))
        },
    )
}

fn unknown(field: &str, what: &str, key: &str) -> Error {
    Error::invalid(format!(
        "Invalid input for field/attribute {field}. No {what} named '{key}' (nor with that id) was found."
    ))
}

async fn resolve_flavor(a: &Alliance, key: &str) -> Result<FlavorId, AllianceError> {
    let by_id = FlavorId::from(key);
    match a.control().flavor_get(&a.ctx, &by_id).await {
        Ok(f) => return Ok(f.id),
        Err(Error::NotFound(_)) => {}
        Err(e) => return Err(e.into()),
    }
    let found = a.control().flavors_named(&a.ctx, key).await?;
    one(
        "flavor",
        key,
        found,
        |f| f.id.to_string(),
        || unknown("flavor", "flavor", key),
    )
    .map(|f| f.id)
}

async fn resolve_image(a: &Alliance, key: &str) -> Result<ImageId, AllianceError> {
    if let Ok(id) = key.parse::<ImageId>() {
        match a.control().image_get(&a.ctx, id).await {
            Ok(i) => return Ok(i.id),
            Err(Error::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let found = a.control().images_named(&a.ctx, key).await?;
    one(
        "image",
        key,
        found,
        |i| i.id.to_string(),
        || unknown("image", "image", key),
    )
    .map(|i| i.id)
}

async fn resolve_network(a: &Alliance, key: &str) -> Result<NetworkId, AllianceError> {
    if let Ok(id) = key.parse::<NetworkId>() {
        match a.control().network_get(&a.ctx, id).await {
            Ok(n) => return Ok(n.id),
            Err(Error::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let found = a.control().networks_named(&a.ctx, key).await?;
    one(
        "network",
        key,
        found,
        |n| n.id.to_string(),
        || unknown("network", "network", key),
    )
    .map(|n| n.id)
}

// ---- handlers ----

async fn index(a: Alliance) -> AllianceResult {
    let servers = a.control().servers_list(&a.ctx, Default::default()).await?;
    let items: Vec<Value> = servers
        .iter()
        .map(|s| {
            let id = s.id.to_string();
            json!({"id": id, "links": server_links(&a, &id), "name": s.name})
        })
        .collect();
    Ok(crate::common::json(
        StatusCode::OK,
        json!({ "servers": items }),
    ))
}

async fn show(a: Alliance, Path(key): Path<String>) -> AllianceResult {
    let s = resolve_server(&a, &key).await?;
    Ok(crate::common::json(
        StatusCode::OK,
        json!({"server": view(&a, &s, true)}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    server: CreateServer,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateServer {
    name: String,
    flavor: String,
    image: String,
    #[serde(default)]
    keyname: Option<String>,
    /// Absent: the public network only; present: the public network and this one.
    #[serde(default)]
    network: Option<String>,
}

async fn create(a: Alliance, JsonBody(body): JsonBody<CreateBody>) -> AllianceResult {
    let req = body.server;
    let flavor_id = resolve_flavor(&a, &req.flavor).await?;
    let image_id = resolve_image(&a, &req.image).await?;
    // Checked here so the fault names the seed's field (`keyname`), not the core's.
    if let Some(k) = &req.keyname {
        match a.control().keypair_get(&a.ctx, k, None).await {
            Ok(_) => {}
            Err(Error::NotFound(_)) => {
                return Err(Error::invalid(format!(
                    "Invalid input for field/attribute keyname. No key pair named '{k}' was found."
                ))
                .into());
            }
            Err(e) => return Err(e.into()),
        }
    }
    // Deviation from Nova (whose explicit networks replace the default one), following the
    // seed: a server created with `"network": "private"` is on `public` *and* `private`
    // (Examples 2 and 6 show both), public first so its NIC is ordinal 0 as in Cyclades.
    let network_request = match &req.network {
        Some(n) => {
            let named = resolve_network(&a, n).await?;
            let public = a.control().public_network().await?.id;
            let nic = |id: NetworkId| RequestedNic {
                network_id: Some(id.to_string()),
                port_id: None,
                fixed_ip: None,
                tag: None,
            };
            let mut nics = vec![nic(public)];
            if named != public {
                nics.push(nic(named));
            }
            NetworkRequest::List(nics)
        }
        None => NetworkRequest::Auto,
    };
    let created = a
        .control()
        .server_create(
            &a.ctx,
            ServerCreate {
                name: req.name,
                image_id: Some(image_id),
                flavor_id,
                key_name: req.keyname,
                min_count: 1,
                max_count: 1,
                networks: network_request,
                ..ServerCreate::default()
            },
        )
        .await?;
    let s = created
        .servers
        .first()
        .ok_or_else(|| Error::internal("create returned no server"))?;
    let id = s.id.to_string();
    // The seed's create response, key for key: `name` carries the links (sic), the image
    // and flavor are `imageRef`/`flavorRef`, `networks` the addresses so far.
    let body = json!({"server": {
        "name": server_links(&a, &id),
        "imageRef": image_ref(&a, s),
        "flavorRef": flavor_ref(&a, s),
        "id": id,
        "networks": networks(s),
        "security_groups": s.security_groups.iter().map(|g| json!({"name": g})).collect::<Vec<_>>(),
        "metadata": s.metadata,
    }});
    Ok(crate::common::json(StatusCode::OK, body))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RenameBody {
    server: Rename,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Rename {
    new_name: String,
}

async fn rename(
    a: Alliance,
    Path(key): Path<String>,
    JsonBody(body): JsonBody<RenameBody>,
) -> AllianceResult {
    let s = resolve_server(&a, &key).await?;
    let upd = ServerUpdate {
        name: Some(body.server.new_name),
        ..ServerUpdate::default()
    };
    let s = a.control().server_update(&a.ctx, s.id, upd).await?;
    Ok(crate::common::json(
        StatusCode::OK,
        json!({"server": view(&a, &s, false)}),
    ))
}

async fn delete(a: Alliance, Path(key): Path<String>) -> AllianceResult {
    let s = resolve_server(&a, &key).await?;
    a.control().server_delete(&a.ctx, s.id).await?;
    Ok::<Response, AllianceError>(StatusCode::OK.into_response())
}
