//! `/networks`: list and detail, create (202, PENDING then ACTIVE), details, rename (204),
//! delete (204, or 421 while servers are connected), and the `add` / `remove` actions that
//! connect and disconnect servers (202). The public network (`/networks/public`) every
//! server joins can be read but not changed (403).

use super::fault::{CyResult, CycladesError};
use super::fault::{in_cyclades_terms, network_terms, server_terms};
use super::servers::{any_network, live_network, live_server, network_ref, public_network};
use super::{Cy, empty, time};
use crate::AppState;
use crate::common::body::{JsonBody, from_value};
use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::{get, post};
use nimbus_control::servers::ServerListQuery;
use nimbus_model::network::{Network, NetworkCreate, NetworkType};
use nimbus_model::{Error, NetworkId};
use serde::Deserialize;
use serde_json::{Value, json};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/compute/v2.0/networks", get(index).post(create))
        .route("/compute/v2.0/networks/detail", get(detail))
        .route(
            "/compute/v2.0/networks/{id}",
            get(show).put(rename).delete(delete),
        )
        .route("/compute/v2.0/networks/{id}/action", post(action))
}

/// NIC ids on `n`. On the public network, which every project shares, a caller sees only
/// the NICs of its own servers.
async fn attachments(cy: &Cy, n: &Network) -> Result<Vec<String>, Error> {
    // A network is deleted only once no NIC is left on it.
    if n.deleted {
        return Ok(Vec::new());
    }
    if n.public {
        let servers = cy
            .control()
            .servers_list(&cy.ctx, ServerListQuery::default())
            .await?;
        let mut ids: Vec<(i64, u32)> = servers
            .iter()
            .flat_map(|s| s.nics.iter())
            .filter(|nic| nic.network_id == n.id)
            .map(|nic| (nic.server_serial, nic.ordinal))
            .collect();
        ids.sort();
        return Ok(ids
            .into_iter()
            .map(|(s, o)| format!("nic-{s}-{o}"))
            .collect());
    }
    Ok(cy
        .control()
        .network_nics(&cy.ctx, n.id)
        .await?
        .iter()
        .map(|nic| nic.cyclades_id())
        .collect())
}

async fn view(cy: &Cy, n: &Network, public: NetworkId) -> Result<Value, Error> {
    Ok(json!({
        "id": network_ref(n.id, n.serial, public),
        "name": n.name,
        "created": time(&n.created_at),
        "updated": time(&n.updated_at),
        "cidr": n.cidr,
        "cidr6": n.cidr6,
        "dhcp": n.dhcp,
        "gateway": n.gateway,
        "gateway6": n.gateway6,
        "public": n.public,
        "status": n.status.as_str(),
        "type": n.kind.as_str(),
        "attachments": attachments(cy, n).await?,
    }))
}

async fn list(cy: Cy, detailed: bool) -> CyResult {
    let networks = cy.control().networks_list(&cy.ctx).await?;
    let public = public_network(&cy).await?.id;
    let mut items = Vec::with_capacity(networks.len());
    for n in &networks {
        items.push(if detailed {
            view(&cy, n, public).await?
        } else {
            json!({"id": network_ref(n.id, n.serial, public), "name": n.name})
        });
    }
    Ok(crate::common::json(
        StatusCode::OK,
        json!({"networks": items}),
    ))
}

async fn index(cy: Cy) -> CyResult {
    list(cy, false).await
}

async fn detail(cy: Cy) -> CyResult {
    list(cy, true).await
}

async fn show(cy: Cy, Path(id): Path<String>) -> CyResult {
    let n = any_network(&cy, &id).await?;
    let public = public_network(&cy).await?.id;
    Ok(crate::common::json(
        StatusCode::OK,
        json!({"network": view(&cy, &n, public).await?}),
    ))
}

#[derive(Deserialize)]
struct CreateNetwork {
    name: String,
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    dhcp: Option<bool>,
    #[serde(default)]
    cidr: Option<String>,
    #[serde(default)]
    cidr6: Option<String>,
    #[serde(default)]
    gateway: Option<String>,
    #[serde(default)]
    gateway6: Option<String>,
    #[serde(default)]
    public: Option<bool>,
}

#[derive(Deserialize)]
struct CreateBody {
    network: CreateNetwork,
}

async fn create(cy: Cy, JsonBody(b): JsonBody<CreateBody>) -> CyResult {
    let req = b.network;
    if req.public == Some(true) {
        return Err(Error::Forbidden("Creating a public network is forbidden.".into()).into());
    }
    let kind = req
        .kind
        .ok_or_else(|| Error::invalid("Missing network type."))?;
    let kind = NetworkType::parse(&kind).ok_or_else(|| {
        CycladesError::BadMediaType(format!(
            "Bad network type '{kind}': must be CUSTOM, IP_LESS_ROUTED, MAC_FILTERED or PHYSICAL_VLAN."
        ))
    })?;
    let n = cy
        .control()
        .network_create(
            &cy.ctx,
            NetworkCreate {
                name: req.name,
                kind,
                cidr: req.cidr,
                gateway: req.gateway,
                cidr6: req.cidr6,
                gateway6: req.gateway6,
                dhcp: req.dhcp.unwrap_or(true),
            },
        )
        .await?;
    let public = public_network(&cy).await?.id;
    Ok(crate::common::json(
        StatusCode::ACCEPTED,
        json!({"network": view(&cy, &n, public).await?}),
    ))
}

#[derive(Deserialize)]
struct RenameNetwork {
    name: String,
}

#[derive(Deserialize)]
struct RenameBody {
    network: RenameNetwork,
}

async fn rename(cy: Cy, Path(id): Path<String>, JsonBody(b): JsonBody<RenameBody>) -> CyResult {
    let n = live_network(&cy, &id).await?;
    cy.control()
        .network_rename(&cy.ctx, n.id, &b.network.name)
        .await
        .map_err(|e| in_cyclades_terms(e, &network_terms(&n, &id)))?;
    Ok(empty(StatusCode::NO_CONTENT))
}

async fn delete(cy: Cy, Path(id): Path<String>) -> CyResult {
    let n = live_network(&cy, &id).await?;
    cy.control()
        .network_delete(&cy.ctx, n.id)
        .await
        .map_err(|e| in_cyclades_terms(e, &network_terms(&n, &id)))?;
    Ok(empty(StatusCode::NO_CONTENT))
}

#[derive(Deserialize)]
struct ServerRefArgs {
    #[serde(rename = "serverRef")]
    server_ref: ServerRef,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ServerRef {
    Num(i64),
    Str(String),
}

async fn action(cy: Cy, Path(id): Path<String>, JsonBody(body): JsonBody<Value>) -> CyResult {
    let Value::Object(map) = body else {
        return Err(Error::invalid("The action body must be a JSON object.").into());
    };
    if map.len() != 1 {
        return Err(Error::invalid("The action body must name exactly one action.").into());
    }
    let Some((name, arg)) = map.into_iter().next() else {
        return Err(Error::invalid("The action body must name exactly one action.").into());
    };
    if name != "add" && name != "remove" {
        return Err(Error::invalid(format!("Unknown network action '{name}'.")).into());
    }
    let args: std::collections::BTreeMap<String, ServerRefArgs> =
        from_value(json!({ name.clone(): arg }))?;
    let server_ref = match args.into_values().next().map(|a| a.server_ref) {
        Some(ServerRef::Num(n)) => n.to_string(),
        Some(ServerRef::Str(s)) => s,
        None => return Err(Error::invalid("Missing serverRef.").into()),
    };
    let n = live_network(&cy, &id).await?;
    let s = live_server(&cy, &server_ref).await?;
    let done = if name == "add" {
        cy.control()
            .network_connect(&cy.ctx, n.id, s.id)
            .await
            .map(drop)
    } else {
        cy.control().network_disconnect(&cy.ctx, n.id, s.id).await
    };
    done.map_err(|e| {
        let mut terms = network_terms(&n, &id);
        terms.extend(server_terms(&s));
        in_cyclades_terms(e, &terms)
    })?;
    Ok(empty(StatusCode::ACCEPTED))
}
