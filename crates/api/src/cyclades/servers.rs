//! `/servers`: list and detail (with `changes-since`, deletions and 304), create, details,
//! rename, delete, addresses (`/ips`), metadata, actions and the diagnostics log; and the
//! Cyclades server and NIC views.

use super::fault::{
    CyResult, in_cyclades_terms, network_terms, server_terms, text_in_cyclades_terms,
};
use super::{Cy, empty, parse_serial, time};
use crate::AppState;
use crate::common::body::{JsonBody, from_value};
use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use base64::Engine as _;
use nimbus_control::servers::{
    NetworkRequest, RequestedNic, ServerAction, ServerCreate, ServerListQuery, ServerUpdate,
    generate_password,
};
use nimbus_model::image::Image;
use nimbus_model::network::{FirewallProfile, Network, Nic};
use nimbus_model::server::{LockedBy, Personality, Server, ServerFilter};
use nimbus_model::state::{VmState, cyclades_status};
use nimbus_model::{Error, FlavorId, ImageId, NetworkId};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};

/// The seed: "The injected data (contents) should not exceed 10240 bytes".
pub const MAX_PERSONALITY_SIZE: usize = 10240;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/compute/v2.0/servers", get(index).post(create))
        .route("/compute/v2.0/servers/detail", get(detail))
        .route(
            "/compute/v2.0/servers/{id}",
            get(show).put(rename).delete(delete),
        )
        .route("/compute/v2.0/servers/{id}/action", post(action))
        .route("/compute/v2.0/servers/{id}/ips", get(ips))
        .route(
            "/compute/v2.0/servers/{id}/ips/{network}",
            get(ips_by_network),
        )
        .route(
            "/compute/v2.0/servers/{id}/metadata",
            get(metadata_list).post(metadata_merge),
        )
        .route(
            "/compute/v2.0/servers/{id}/metadata/{key}",
            get(metadatum_get)
                .put(metadatum_put)
                .delete(metadatum_delete),
        )
        .route("/compute/v2.0/servers/{id}/diagnostics", get(diagnostics))
}

// ---- lookups ----

/// A server by its Cyclades id, deleted ones included (details show them as DELETED).
pub async fn any_server(cy: &Cy, id: &str) -> Result<Server, Error> {
    let serial = parse_serial("server", id)?;
    cy.control()
        .server_get_by_serial_with_deleted(&cy.ctx, serial)
        .await
        .map_err(|e| match e {
            Error::NotFound(_) => Error::not_found(format!("Server {serial} not found.")),
            e => e,
        })
}

/// A server that may be acted on: the seed's 400 for a deleted server.
pub async fn live_server(cy: &Cy, id: &str) -> Result<Server, Error> {
    let s = any_server(cy, id).await?;
    if s.deleted || s.vm_state == VmState::Deleted {
        return Err(Error::invalid(format!(
            "Server {} has been deleted.",
            s.serial
        )));
    }
    Ok(s)
}

/// A live server the caller may change: an administratively suspended server is the seed's
/// 403 for everyone but admins.
async fn writable_server(cy: &Cy, id: &str) -> Result<Server, Error> {
    let s = live_server(cy, id).await?;
    if suspended(&s) && !cy.ctx.is_admin() {
        return Err(Error::Forbidden(format!(
            "Server {} is administratively suspended.",
            s.serial
        )));
    }
    Ok(s)
}

/// Cyclades `suspended`: suspended "by the cloud administrations or policy", which in Nimbus
/// is a lock set by an admin.
fn suspended(s: &Server) -> bool {
    s.locked && s.locked_by == Some(LockedBy::Admin)
}

/// The public network (its Cyclades id is `public`).
pub async fn public_network(cy: &Cy) -> Result<Network, Error> {
    cy.control()
        .networks_list(&cy.ctx)
        .await?
        .into_iter()
        .find(|n| n.public)
        .ok_or_else(|| Error::internal("the public network is missing"))
}

/// A network's Cyclades id: `public` for the public network, else its serial.
pub fn network_ref(n_id: NetworkId, serial: i64, public: NetworkId) -> String {
    if n_id == public {
        "public".into()
    } else {
        serial.to_string()
    }
}

/// A network that may be changed or joined: the seed's 400 for a deleted one.
pub async fn live_network(cy: &Cy, raw: &str) -> Result<Network, Error> {
    let n = any_network(cy, raw).await?;
    if n.deleted {
        return Err(Error::invalid(format!("Network {raw} has been deleted.")));
    }
    Ok(n)
}

/// A network named in a path or body: `public` or a serial, deleted ones included (details
/// show them as DELETED, as Synnefo's `get_network` does).
pub async fn any_network(cy: &Cy, raw: &str) -> Result<Network, Error> {
    if raw == "public" {
        return public_network(cy).await;
    }
    let serial = parse_serial("network", raw)?;
    cy.control()
        .network_get_by_serial(&cy.ctx, serial)
        .await
        .map_err(|e| match e {
            Error::NotFound(_) => Error::not_found(format!("Network {raw} not found.")),
            e => e,
        })
}

/// Flavor serials by flavor id, loaded once per request.
struct FlavorSerials(HashMap<FlavorId, Option<i64>>);

impl FlavorSerials {
    async fn load(cy: &Cy) -> Result<Self, Error> {
        let all = cy
            .control()
            .flavors_list(&cy.ctx, Default::default())
            .await?;
        Ok(FlavorSerials(
            all.into_iter().map(|f| (f.id, Some(f.serial))).collect(),
        ))
    }

    /// `flavorRef`: the serial of the server's flavor. A flavor deleted or hidden since the
    /// server booted has no serial to show; numeric flavor ids are shown as they are then.
    async fn get(&mut self, cy: &Cy, id: &FlavorId) -> Value {
        if !self.0.contains_key(id) {
            let serial = cy
                .control()
                .flavor_get(&cy.ctx, id)
                .await
                .ok()
                .map(|f| f.serial);
            self.0.insert(id.clone(), serial);
        }
        match self.0.get(id).copied().flatten() {
            Some(s) => json!(s),
            None => id
                .as_str()
                .parse::<i64>()
                .map(|n| json!(n))
                .unwrap_or(Value::Null),
        }
    }
}

// ---- views ----

pub fn nic_view(n: &Nic, public: NetworkId) -> Value {
    json!({
        "id": n.cyclades_id(),
        "network_id": network_ref(n.network_id, n.network_serial, public),
        "mac_address": n.mac,
        "firewallProfile": n.firewall.as_str(),
        "ipv4": n.ipv4,
        "ipv6": n.ipv6,
    })
}

fn status(s: &Server) -> &'static str {
    if s.deleted {
        return "DELETED";
    }
    cyclades_status(s.vm_state, s.task_state, s.power_state)
}

/// "progress ... When it reaches 100 the server is built."
fn progress(s: &Server) -> u8 {
    if s.vm_state == VmState::Building {
        s.progress.min(99)
    } else {
        100
    }
}

/// The detailed view shared by list/detail and details; `extra` adds `suspended` and
/// `diagnostics` (details only, as the seed's attribute tables say).
fn view(
    s: &Server,
    flavor_ref: Value,
    public: NetworkId,
    diagnostics: Option<Vec<Value>>,
) -> Value {
    let mut v = json!({
        "id": s.serial,
        "name": s.name,
        "status": status(s),
        "updated": time(&s.updated_at),
        "created": time(&s.created_at),
        "hostId": "",
        "imageRef": s.image_id.map(|i| i.to_string()).unwrap_or_default(),
        "flavorRef": flavor_ref,
        "progress": progress(s),
        "metadata": s.metadata,
        "attachments": s.nics.iter().map(|n| nic_view(n, public)).collect::<Vec<_>>(),
    });
    if let Some(d) = diagnostics {
        v["suspended"] = json!(suspended(s));
        v["diagnostics"] = Value::Array(d);
    }
    v
}

// ---- list ----

async fn list(cy: Cy, detailed: bool) -> CyResult {
    let since = cy.changes_since()?;
    let filter = ServerFilter {
        changes_since: since,
        // Polling clients learn about deletions from changes-since.
        include_deleted: since.is_some(),
        ..Default::default()
    };
    let servers = cy
        .control()
        .servers_list(
            &cy.ctx,
            ServerListQuery {
                filter,
                ..Default::default()
            },
        )
        .await?;
    if since.is_some() && servers.is_empty() {
        return Ok(empty(StatusCode::NOT_MODIFIED));
    }
    let items = if detailed {
        let public = public_network(&cy).await?.id;
        let mut flavors = FlavorSerials::load(&cy).await?;
        let mut out = Vec::with_capacity(servers.len());
        for s in &servers {
            let f = flavors.get(&cy, &s.flavor.id).await;
            out.push(view(s, f, public, None));
        }
        out
    } else {
        servers
            .iter()
            .map(|s| json!({"id": s.serial, "name": s.name}))
            .collect()
    };
    Ok(crate::common::json(
        StatusCode::OK,
        json!({"servers": items}),
    ))
}

async fn index(cy: Cy) -> CyResult {
    list(cy, false).await
}

async fn detail(cy: Cy) -> CyResult {
    list(cy, true).await
}

// ---- details ----

async fn show(cy: Cy, Path(id): Path<String>) -> CyResult {
    let s = any_server(&cy, &id).await?;
    let public = public_network(&cy).await?.id;
    let f = FlavorSerials(HashMap::new()).get(&cy, &s.flavor.id).await;
    let log = server_log(&cy, &s).await?;
    Ok(crate::common::json(
        StatusCode::OK,
        json!({"server": view(&s, f, public, Some(log))}),
    ))
}

// ---- create ----

/// A reference that clients send as a number or a string (`flavorRef: 289` or `"289"`).
#[derive(Deserialize, Debug, Clone)]
#[serde(untagged)]
enum IdRef {
    Num(i64),
    Str(String),
}

impl IdRef {
    fn text(&self) -> String {
        match self {
            IdRef::Num(n) => n.to_string(),
            IdRef::Str(s) => s.clone(),
        }
    }
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct PersonalityFile {
    path: String,
    contents: String,
    #[serde(default)]
    group: Option<String>,
    /// "The file mode should be a number, not a string."
    #[serde(default)]
    mode: Option<u32>,
    #[serde(default)]
    owner: Option<String>,
}

#[derive(Deserialize, Debug)]
struct NetworkRef {
    uuid: IdRef,
}

#[derive(Deserialize, Debug)]
struct CreateServer {
    name: String,
    #[serde(rename = "imageRef")]
    image_ref: IdRef,
    #[serde(rename = "flavorRef")]
    flavor_ref: IdRef,
    #[serde(default)]
    personality: Option<Vec<PersonalityFile>>,
    #[serde(default)]
    metadata: Option<BTreeMap<String, String>>,
    /// Later Synnefo releases (and kamaki) name the networks to join; absent means the
    /// public network.
    #[serde(default)]
    networks: Option<Vec<NetworkRef>>,
}

#[derive(Deserialize, Debug)]
struct CreateBody {
    server: CreateServer,
}

/// Check one personality file: size before and after decoding (413 past the limit, as
/// Synnefo checks it) and base64 (400).
fn check_personality(p: &PersonalityFile) -> Result<(), Error> {
    let _ = (&p.group, &p.owner);
    if p.path.is_empty() {
        return Err(Error::invalid("Malformed personality: empty path."));
    }
    if p.mode.is_some_and(|m| m > 0o7777) {
        return Err(Error::invalid(format!(
            "Malformed personality: mode {} of {} is not a file mode.",
            p.mode.unwrap_or_default(),
            p.path
        )));
    }
    let too_big = || {
        Error::OverQuota(format!(
            "Maximum size of personality exceeded: {} is larger than {MAX_PERSONALITY_SIZE} bytes.",
            p.path
        ))
    };
    if p.contents.len() > MAX_PERSONALITY_SIZE * 4 / 3 + 4 {
        return Err(too_big());
    }
    // Line breaks (MIME-style wrapping) are tolerated; anything else outside the alphabet
    // is not base64.
    let compact: String = p
        .contents
        .chars()
        .filter(|c| !matches!(c, '\n' | '\r'))
        .collect();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(compact.as_bytes())
        .map_err(|_| {
            Error::invalid(format!(
                "Malformed personality: the contents of {} are not valid base64.",
                p.path
            ))
        })?;
    if decoded.len() > MAX_PERSONALITY_SIZE {
        return Err(too_big());
    }
    Ok(())
}

/// `OS` and `users` come from the image ("automatically retrieved from the servers image
/// during creation"); what the client sends wins.
fn image_metadata(image: &Image) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (from, to) in [("OS", "OS"), ("os", "OS"), ("users", "users")] {
        if out.contains_key(to) {
            continue;
        }
        if let Some(v) = image.properties.get(from) {
            let text = match v {
                Value::String(s) => s.clone(),
                Value::Null => continue,
                other => other.to_string(),
            };
            out.insert(to.to_owned(), text);
        }
    }
    out
}

async fn resolve_flavor(cy: &Cy, r: &IdRef) -> Result<nimbus_model::flavor::Flavor, Error> {
    let raw = r.text();
    let found = match raw.parse::<i64>() {
        Ok(serial) if serial > 0 => cy.control().flavor_get_by_serial(&cy.ctx, serial).await,
        _ => {
            cy.control()
                .flavor_get(&cy.ctx, &FlavorId::from(raw.as_str()))
                .await
        }
    };
    found.map_err(|e| match e {
        Error::NotFound(_) => Error::not_found(format!("Flavor {raw} not found.")),
        e => e,
    })
}

async fn resolve_image(cy: &Cy, r: &IdRef) -> Result<Image, Error> {
    let raw = r.text();
    let not_found = || Error::not_found(format!("Image {raw} not found."));
    let id: ImageId = raw.parse().map_err(|_| not_found())?;
    cy.control()
        .image_get(&cy.ctx, id)
        .await
        .map_err(|e| match e {
            Error::NotFound(_) => not_found(),
            e => e,
        })
}

async fn create(cy: Cy, JsonBody(body): JsonBody<CreateBody>) -> CyResult {
    let req = body.server;
    let files = req.personality.unwrap_or_default();
    for p in &files {
        check_personality(p)?;
    }
    let flavor = resolve_flavor(&cy, &req.flavor_ref).await?;
    let image = resolve_image(&cy, &req.image_ref).await?;
    let mut metadata = image_metadata(&image);
    metadata.extend(req.metadata.unwrap_or_default());
    // How faults about the networks asked for name them (by their Cyclades ids).
    let mut terms = Vec::new();
    let networks = match req.networks {
        None => NetworkRequest::Auto,
        Some(list) if list.is_empty() => NetworkRequest::None,
        Some(list) => {
            let mut nics = Vec::with_capacity(list.len());
            for n in list {
                let raw = n.uuid.text();
                let net = live_network(&cy, &raw).await.map_err(|e| match e {
                    Error::NotFound(m) => Error::invalid(m),
                    e => e,
                })?;
                terms.extend(network_terms(&net, &raw));
                nics.push(RequestedNic {
                    network_id: Some(net.id.to_string()),
                    port_id: None,
                    fixed_ip: None,
                    tag: None,
                });
            }
            NetworkRequest::List(nics)
        }
    };
    let created = cy
        .control()
        .server_create(
            &cy.ctx,
            ServerCreate {
                name: req.name,
                image_id: Some(image.id),
                flavor_id: flavor.id.clone(),
                metadata,
                personality: files
                    .into_iter()
                    .map(|p| Personality {
                        path: p.path,
                        contents: p.contents,
                    })
                    .collect(),
                min_count: 1,
                max_count: 1,
                networks,
                // Cyclades always generates the password, shows it once, never stores it.
                admin_pass: Some(generate_password()),
                ..Default::default()
            },
        )
        .await;
    let created = match created {
        Ok(c) => c,
        Err(e) => {
            // Every server joins the public network: a fault may name it too.
            if let Ok(public) = public_network(&cy).await {
                terms.extend(network_terms(&public, "public"));
            }
            return Err(in_cyclades_terms(e, &terms).into());
        }
    };
    let s = created
        .servers
        .first()
        .ok_or_else(|| Error::internal("create returned no server"))?;
    Ok(crate::common::json(
        StatusCode::ACCEPTED,
        json!({"server": {
            "id": s.serial,
            "status": status(s),
            "updated": time(&s.updated_at),
            "hostId": "",
            "name": s.name,
            "imageRef": image.id.to_string(),
            "created": time(&s.created_at),
            "flavorRef": flavor.serial,
            "adminPass": created.admin_pass,
            "suspended": false,
            "progress": progress(s),
            "metadata": s.metadata,
        }}),
    ))
}

// ---- rename, delete ----

#[derive(Deserialize)]
struct RenameServer {
    name: String,
}

#[derive(Deserialize)]
struct RenameBody {
    server: RenameServer,
}

async fn rename(cy: Cy, Path(id): Path<String>, JsonBody(b): JsonBody<RenameBody>) -> CyResult {
    let s = writable_server(&cy, &id).await?;
    cy.control()
        .server_update(
            &cy.ctx,
            s.id,
            ServerUpdate {
                name: Some(b.server.name),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| in_cyclades_terms(e, &server_terms(&s)))?;
    Ok(empty(StatusCode::NO_CONTENT))
}

async fn delete(cy: Cy, Path(id): Path<String>) -> CyResult {
    let s = writable_server(&cy, &id).await?;
    cy.control()
        .server_delete(&cy.ctx, s.id)
        .await
        .map_err(|e| in_cyclades_terms(e, &server_terms(&s)))?;
    Ok(empty(StatusCode::NO_CONTENT))
}

// ---- addresses ----

async fn ips(cy: Cy, Path(id): Path<String>) -> CyResult {
    let s = live_server(&cy, &id).await?;
    let public = public_network(&cy).await?.id;
    let nics: Vec<Value> = s.nics.iter().map(|n| nic_view(n, public)).collect();
    Ok(crate::common::json(
        StatusCode::OK,
        json!({"addresses": nics}),
    ))
}

async fn ips_by_network(cy: Cy, Path((id, network)): Path<(String, String)>) -> CyResult {
    let s = live_server(&cy, &id).await?;
    let net = any_network(&cy, &network).await?;
    let public = public_network(&cy).await?.id;
    let nic = s
        .nics
        .iter()
        .find(|n| n.network_id == net.id)
        .ok_or_else(|| {
            Error::not_found(format!(
                "Server {} is not connected to network {network}.",
                s.serial
            ))
        })?;
    Ok(crate::common::json(
        StatusCode::OK,
        json!({"network": nic_view(nic, public)}),
    ))
}

// ---- metadata ----

#[derive(Deserialize)]
struct MetadataBody {
    metadata: BTreeMap<String, String>,
}

async fn metadata_list(cy: Cy, Path(id): Path<String>) -> CyResult {
    let s = live_server(&cy, &id).await?;
    Ok(crate::common::json(
        StatusCode::OK,
        json!({"metadata": s.metadata}),
    ))
}

/// POST: keys named are set, others stay (201 with the whole set).
async fn metadata_merge(
    cy: Cy,
    Path(id): Path<String>,
    JsonBody(b): JsonBody<MetadataBody>,
) -> CyResult {
    let s = writable_server(&cy, &id).await?;
    let all = cy
        .control()
        .server_metadata_set(&cy.ctx, s.id, b.metadata, false)
        .await
        .map_err(|e| in_cyclades_terms(e, &server_terms(&s)))?;
    Ok(crate::common::json(
        StatusCode::CREATED,
        json!({"metadata": all}),
    ))
}

async fn metadatum_get(cy: Cy, Path((id, key)): Path<(String, String)>) -> CyResult {
    let s = live_server(&cy, &id).await?;
    let v = s
        .metadata
        .get(&key)
        .ok_or_else(|| Error::not_found(format!("Metadata key {key} not found.")))?;
    Ok(crate::common::json(
        StatusCode::OK,
        super::item_reply(&key, &json!(v)),
    ))
}

async fn metadatum_put(
    cy: Cy,
    Path((id, key)): Path<(String, String)>,
    JsonBody(b): JsonBody<super::ItemBody>,
) -> CyResult {
    let (word, md) = b.item(&key)?;
    let s = writable_server(&cy, &id).await?;
    let all = cy
        .control()
        .server_metadata_set(&cy.ctx, s.id, md, false)
        .await
        .map_err(|e| in_cyclades_terms(e, &server_terms(&s)))?;
    Ok(crate::common::json(
        StatusCode::CREATED,
        json!({word: {key.clone(): all.get(&key)}}),
    ))
}

async fn metadatum_delete(cy: Cy, Path((id, key)): Path<(String, String)>) -> CyResult {
    let s = writable_server(&cy, &id).await?;
    cy.control()
        .server_metadata_delete(&cy.ctx, s.id, &key)
        .await
        .map_err(|e| match e {
            Error::NotFound(_) => Error::not_found(format!("Metadata key {key} not found.")),
            e => in_cyclades_terms(e, &server_terms(&s)),
        })?;
    Ok(empty(StatusCode::NO_CONTENT))
}

// ---- actions ----

#[derive(Deserialize)]
struct RebootArgs {
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct ConsoleArgs {
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct FirewallArgs {
    profile: String,
    /// Which NIC (`nic-<server>-<n>`); absent means the public one, as the seed describes.
    #[serde(default)]
    nic: Option<String>,
}

/// OpenStack actions the seed lists as not part of Cyclades.
const OS_COMPUTE_ONLY: &[&str] = &[
    "changePassword",
    "rebuild",
    "resize",
    "confirmResize",
    "revertResize",
    "createImage",
];

async fn action(cy: Cy, Path(id): Path<String>, JsonBody(body): JsonBody<Value>) -> CyResult {
    let Value::Object(map) = body else {
        return Err(Error::invalid("The action body must be a JSON object.").into());
    };
    if map.len() != 1 {
        return Err(Error::invalid("The action body must name exactly one action.").into());
    }
    let Some((name, raw)) = map.into_iter().next() else {
        return Err(Error::invalid("The action body must name exactly one action.").into());
    };
    let known = matches!(
        name.as_str(),
        "start" | "shutdown" | "reboot" | "console" | "firewallProfile"
    );
    if !known {
        if OS_COMPUTE_ONLY.contains(&name.as_str()) {
            return Err(Error::NotImplemented(format!(
                "Action {name} is not supported by Cyclades."
            ))
            .into());
        }
        return Err(Error::invalid(format!("Unknown action '{name}'.")).into());
    }
    let raw = arg_value(&name, raw)?;
    let s = writable_server(&cy, &id).await?;
    perform(&cy, &s, &name, raw)
        .await
        .map_err(|e| in_cyclades_terms(e, &server_terms(&s)).into())
}

/// Run a known action on a live, writable server.
async fn perform(cy: &Cy, s: &Server, name: &str, raw: Value) -> Result<Response, Error> {
    let c = cy.control();
    let run = |a: ServerAction| c.server_action(&cy.ctx, s.id, a);
    match name {
        "start" => {
            run(ServerAction::Start).await?;
        }
        "shutdown" => {
            run(ServerAction::Stop).await?;
        }
        "reboot" => {
            let a: RebootArgs = nested(name, raw)?;
            let hard = match a.kind.to_ascii_uppercase().as_str() {
                "SOFT" => false,
                "HARD" => true,
                other => {
                    return Err(Error::invalid(format!(
                        "Invalid reboot type '{other}': must be SOFT or HARD."
                    )));
                }
            };
            run(ServerAction::Reboot { hard }).await?;
        }
        "console" => {
            let a: ConsoleArgs = nested(name, raw)?;
            if a.kind != "vnc" {
                return Err(Error::invalid(format!(
                    "Console type '{}' is not supported: only vnc is.",
                    a.kind
                )));
            }
            let console = c.server_vnc_console(&cy.ctx, s.id).await?;
            return Ok(crate::common::json(
                StatusCode::OK,
                json!({"console": {
                    "type": "vnc",
                    "host": console.host,
                    "port": console.port,
                    "password": console.password,
                }}),
            ));
        }
        _ => {
            let a: FirewallArgs = nested(name, raw)?;
            let profile =
                FirewallProfile::parse(&a.profile.to_ascii_uppercase()).ok_or_else(|| {
                    Error::invalid(format!(
                        "Invalid firewall profile '{}': must be ENABLED, DISABLED or PROTECTED.",
                        a.profile
                    ))
                })?;
            c.nic_set_firewall(&cy.ctx, s.id, a.nic.as_deref(), profile)
                .await?;
        }
    }
    Ok(empty(StatusCode::ACCEPTED))
}

/// The argument of an action, which must be an object (`null` counts as `{}`).
fn arg_value(name: &str, v: Value) -> Result<Value, Error> {
    match v {
        Value::Null => Ok(json!({})),
        Value::Object(_) => Ok(v),
        _ => Err(Error::invalid(format!(
            "Invalid input for field/attribute {name}: must be an object."
        ))),
    }
}

/// Deserialize an action argument, naming fields as `<action>.<field>` in errors.
fn nested<T: serde::de::DeserializeOwned>(name: &str, v: Value) -> Result<T, Error> {
    let wrapped: BTreeMap<String, T> = from_value(json!({ name: v }))?;
    wrapped
        .into_values()
        .next()
        .ok_or_else(|| Error::invalid(format!("Missing {name} arguments.")))
}

// ---- diagnostics ----

async fn diagnostics(cy: Cy, Path(id): Path<String>) -> CyResult {
    let s = live_server(&cy, &id).await?;
    let log = server_log(&cy, &s).await?;
    Ok(crate::common::json(StatusCode::OK, Value::Array(log)))
}

/// How many of a server's most recent operations its log covers.
const LOG_OPERATIONS: usize = 50;

/// The server's log, newest first: one entry per operation (what was asked, how it ended),
/// one per step the operation recorded (with the step's traceback or details), and the
/// server's last fault. Power-state changes the hypervisor reported on its own are recorded
/// as operations too, so they appear here.
async fn server_log(cy: &Cy, s: &Server) -> Result<Vec<Value>, Error> {
    use nimbus_model::operation::OperationState as S;
    let c = cy.control();
    let mut entries: Vec<(nimbus_model::time::Timestamp, Value)> = Vec::new();
    // Recorded messages name the server by UUID; the log names it as the client does.
    let terms = server_terms(s);
    let say = |t: String| text_in_cyclades_terms(t, &terms);
    let ops = c.server_actions(&cy.ctx, s.id, true).await?;
    for op in ops.into_iter().take(LOG_OPERATIONS) {
        let (level, outcome) = match op.state {
            S::Succeeded => ("INFO", "succeeded".to_owned()),
            S::Failed => (
                "ERROR",
                match &op.message {
                    Some(m) => say(format!("failed: {m}")),
                    None => "failed".to_owned(),
                },
            ),
            _ => ("INFO", "in progress".to_owned()),
        };
        let created = op.finish_time.unwrap_or(op.updated_at);
        entries.push((
            created,
            json!({
                "level": level,
                "created": time(&created),
                "source": format!("nimbus-{}", op.action),
                "source_date": time(&op.start_time),
                "message": format!("Action {} {outcome}.", op.action),
                "details": format!("request {}", op.request_id),
            }),
        ));
        let events = match c
            .server_action_get(&cy.ctx, s.id, &op.request_id, true)
            .await
        {
            Ok((_, events)) => events,
            Err(Error::NotFound(_)) => Vec::new(),
            Err(e) => return Err(e),
        };
        for ev in events {
            let (level, result) = match ev.result.as_deref() {
                Some("Success") => ("DEBUG", "finished"),
                Some(_) => ("ERROR", "failed"),
                None => ("DEBUG", "started"),
            };
            let created = ev.finish_time.unwrap_or(ev.start_time);
            let details = ev.traceback.clone().or_else(|| ev.details.clone()).map(say);
            entries.push((
                created,
                json!({
                    "level": level,
                    "created": time(&created),
                    "source": ev.event,
                    "source_date": time(&ev.start_time),
                    "message": format!("{} {result}.", ev.event),
                    "details": details,
                }),
            ));
        }
    }
    if let Some(f) = &s.fault {
        entries.push((
            f.created,
            json!({
                "level": "ERROR",
                "created": time(&f.created),
                "source": "nimbus-fault",
                "source_date": time(&f.created),
                "message": say(f.message.clone()),
                "details": if f.details.is_empty() { Value::Null } else { json!(say(f.details.clone())) },
            }),
        ));
    }
    entries.sort_by_key(|e| std::cmp::Reverse(e.0));
    Ok(entries.into_iter().map(|(_, v)| v).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(contents: &str) -> PersonalityFile {
        PersonalityFile {
            path: "/etc/motd".into(),
            contents: contents.into(),
            group: None,
            mode: Some(0o600),
            owner: None,
        }
    }

    #[test]
    fn personality_limits() {
        let b64 = |n: usize| base64::engine::general_purpose::STANDARD.encode(vec![7u8; n]);
        assert!(check_personality(&file(&b64(MAX_PERSONALITY_SIZE))).is_ok());
        assert!(matches!(
            check_personality(&file(&b64(MAX_PERSONALITY_SIZE + 1))),
            Err(Error::OverQuota(_))
        ));
        assert!(matches!(
            check_personality(&file("some data to inject")),
            Err(Error::InvalidRequest(_))
        ));
        assert!(check_personality(&file("aGVs\nbG8=")).is_ok());
        let mut f = file("aGVsbG8=");
        f.mode = Some(70000);
        assert!(check_personality(&f).is_err());
    }
}
