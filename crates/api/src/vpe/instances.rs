//! `/instances`: list (`name=` substring search), show, create, update (PUT), delete, and
//! the `start` / `stop` actions, exactly as seed 004 shows them.
//!
//! An instance is a core server: its `status` and `task` are
//! [`nimbus_model::state::vpe_status`] and [`nimbus_model::state::vpe_task`] of the server's
//! three state axes, `disk_pool` is the pool chosen for its root disk, `disks` its attached
//! data volumes.

use super::fault::VpeResult;
use super::{EmptyBody, Vpe, VpeState, path_id, vpe_time};
use crate::common::body::JsonBody;
use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use nimbus_control::servers::{
    NetworkRequest, ServerAction, ServerCreate, ServerListQuery, ServerUpdate,
};
use nimbus_model::server::{Server, ServerFilter, ServerPage};
use nimbus_model::state::{vpe_status, vpe_task};
use nimbus_model::volume::{StoragePool, Volume};
use nimbus_model::{Error, FlavorId, ImageId, ServerId, VolumeId};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;

pub fn routes() -> Router<VpeState> {
    Router::new()
        .route("/instances", get(list).post(create))
        .route("/instances/{uuid}", get(show).put(update).delete(delete))
        .route("/instances/{uuid}/start", post(start))
        .route("/instances/{uuid}/stop", post(stop))
}

/// Names the instance view shows next to ids (image, pool), looked up once per request.
pub struct Names {
    pools: Vec<StoragePool>,
    images: HashMap<ImageId, Option<String>>,
}

impl Names {
    pub async fn load(v: &Vpe) -> Result<Names, Error> {
        Ok(Names {
            pools: v.control().pools_list(&v.ctx).await?,
            images: HashMap::new(),
        })
    }

    /// The image's name (deleted images keep theirs); `None` when it has none or its
    /// record is gone.
    async fn image(&mut self, v: &Vpe, id: ImageId) -> Option<String> {
        if let Some(n) = self.images.get(&id) {
            return n.clone();
        }
        // The server was booted from it, so its name is shown even if the image has since
        // been deleted or become private to another project.
        let name = v
            .control()
            .image_get_any(id)
            .await
            .ok()
            .flatten()
            .and_then(|i| i.name);
        self.images.insert(id, name.clone());
        name
    }

    fn pool(&self, id: &str) -> Option<&StoragePool> {
        self.pools.iter().find(|p| p.id.to_string() == id)
    }
}

fn disk_refs(vols: &[Volume]) -> Value {
    json!(
        vols.iter()
            .map(|d| json!({"uuid": d.id.to_string(), "name": d.name}))
            .collect::<Vec<_>>()
    )
}

/// The instance view (the list item of the seed, the fullest of its examples). `disks`
/// overrides the attached volumes (a create shows the disks it is attaching).
pub async fn view(v: &Vpe, names: &mut Names, s: &Server, disks: Option<&[Volume]>) -> Value {
    let image = match s.image_id {
        Some(id) => names.image(v, id).await,
        None => None,
    };
    let pool = s.disk_pool.as_deref().map(|p| (p, names.pool(p)));
    json!({
        "uuid": s.id.to_string(),
        "name": s.name,
        "image": image,
        "image_uuid": s.image_id.map(|i| i.to_string()),
        "disk_pool": pool.and_then(|(_, p)| p.map(|p| p.name.clone())),
        "disk_pool_uuid": pool.map(|(id, _)| id.to_owned()),
        "status": vpe_status(s.vm_state, s.task_state, s.power_state),
        "task": vpe_task(s.task_state),
        "flavor_uuid": s.flavor.id.as_str(),
        "flavor": s.flavor.name,
        "ha": s.ha,
        "tags": s.tags,
        "created_at": vpe_time(&s.created_at),
        "disks": disk_refs(disks.unwrap_or(&s.volumes)),
    })
}

fn ok(body: Value) -> Response {
    crate::common::json(StatusCode::OK, body)
}

/// `{"instance": {"uuid": ...}}`: what delete, start and stop answer.
pub fn uuid_only(id: ServerId) -> Response {
    ok(json!({"instance": {"uuid": id.to_string()}}))
}

pub fn instance_id(id: &str) -> Result<ServerId, super::fault::VpeError> {
    path_id("Instance", id)
}

async fn list(v: Vpe) -> VpeResult {
    let mut filter = ServerFilter::default();
    if let Some(n) = v.param("name").filter(|n| !n.is_empty()) {
        // The seed's `name` is a substring search; the core filters by regular expression,
        // so the text is escaped (and matched case-insensitively).
        filter.name_regex = Some(format!("(?i){}", regex::escape(n)));
    }
    // VPE has no paging: walk the core's pages to the end.
    let page_size = v.control().config().max_limit;
    let mut servers: Vec<Server> = Vec::new();
    loop {
        let q = ServerListQuery {
            filter: filter.clone(),
            page: ServerPage {
                marker: servers.last().map(|s| s.id),
                limit: Some(page_size),
                ..ServerPage::default()
            },
            all_tenants: false,
        };
        let page = v.control().servers_list(&v.ctx, q).await?;
        let full = page.len() >= page_size;
        servers.extend(page);
        if !full {
            break;
        }
    }
    let mut names = Names::load(&v).await?;
    let mut items = Vec::with_capacity(servers.len());
    for s in &servers {
        items.push(view(&v, &mut names, s, None).await);
    }
    Ok(ok(json!({"instances": items})))
}

async fn show(v: Vpe, Path(id): Path<String>) -> VpeResult {
    let s = v.control().server_get(&v.ctx, instance_id(&id)?).await?;
    let mut names = Names::load(&v).await?;
    Ok(ok(
        json!({"instance": view(&v, &mut names, &s, None).await}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    instance: CreateInstance,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateInstance {
    name: String,
    flavor_uuid: String,
    image_uuid: String,
    /// Pool uuid (a pool name is accepted too); the `default` pool when absent.
    #[serde(default)]
    disk_pool: Option<String>,
    #[serde(default)]
    ha: Option<bool>,
    #[serde(default)]
    tags: Option<Vec<String>>,
    /// Uuids of existing data disks to attach.
    #[serde(default)]
    disks: Option<Vec<String>>,
}

/// Resolve the requested data disks, naming every unknown or malformed one at once.
async fn requested_disks(v: &Vpe, refs: &[String]) -> Result<Vec<Volume>, Error> {
    let mut malformed = Vec::new();
    let mut ids: Vec<VolumeId> = Vec::new();
    for r in refs {
        match r.parse::<VolumeId>() {
            Ok(id) => {
                if ids.contains(&id) {
                    return Err(Error::invalid(format!(
                        "Invalid input for field/attribute instance.disks: disk {r} is listed twice."
                    )));
                }
                ids.push(id);
            }
            Err(_) => malformed.push(r.as_str()),
        }
    }
    if !malformed.is_empty() {
        return Err(Error::invalid(format!(
            "Invalid input for field/attribute instance.disks: not a disk uuid: {}.",
            malformed.join(", ")
        )));
    }
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for id in ids {
        match v.control().volume_get(&v.ctx, id).await {
            Ok(vol) => found.push(vol),
            Err(Error::NotFound(_)) => missing.push(id.to_string()),
            Err(e) => return Err(e),
        }
    }
    if !missing.is_empty() {
        return Err(Error::invalid(format!(
            "Disk(s) could not be found: {}.",
            missing.join(", ")
        )));
    }
    Ok(found)
}

async fn create(v: Vpe, JsonBody(body): JsonBody<CreateBody>) -> VpeResult {
    let i = body.instance;
    let image_id: ImageId = i.image_uuid.parse().map_err(|_| {
        Error::invalid(format!(
            "Invalid input for field/attribute instance.image_uuid: '{}' is not a uuid.",
            i.image_uuid
        ))
    })?;
    // Checked here so the fault names the image (the core's message does not).
    match v.control().image_get(&v.ctx, image_id).await {
        Ok(_) => {}
        Err(Error::NotFound(_)) => {
            return Err(Error::invalid(format!("Image {image_id} could not be found.")).into());
        }
        Err(e) => return Err(e.into()),
    }
    let disks = requested_disks(&v, i.disks.as_deref().unwrap_or(&[])).await?;
    let pool = match i.disk_pool {
        Some(p) => p,
        None => v.control().ensure_default_pool().await?.id.to_string(),
    };
    let req = ServerCreate {
        name: i.name,
        image_id: Some(image_id),
        flavor_id: FlavorId::from(i.flavor_uuid.as_str()),
        tags: i.tags.unwrap_or_default(),
        min_count: 1,
        max_count: 1,
        networks: NetworkRequest::Auto,
        ha: i.ha.unwrap_or(false),
        disk_pool: Some(pool),
        volumes: disks.iter().map(|d| d.id).collect(),
        ..ServerCreate::default()
    };
    let created = v.control().server_create(&v.ctx, req).await?;
    let s = created
        .servers
        .first()
        .ok_or_else(|| Error::internal("create returned no server"))?;
    let mut names = Names::load(&v).await?;
    // The disks are attached by the create's first steps; show the ones being attached.
    let shown = if s.volumes.is_empty() {
        Some(disks.as_slice())
    } else {
        None
    };
    Ok(ok(
        json!({"instance": view(&v, &mut names, s, shown).await}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    instance: UpdateInstance,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateInstance {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    ha: Option<bool>,
    #[serde(default)]
    tags: Option<Vec<String>>,
}

async fn update(v: Vpe, Path(id): Path<String>, JsonBody(body): JsonBody<UpdateBody>) -> VpeResult {
    let id = instance_id(&id)?;
    let u = body.instance;
    let upd = ServerUpdate {
        name: u.name,
        ha: u.ha,
        tags: u.tags,
        ..ServerUpdate::default()
    };
    let s = v.control().server_update(&v.ctx, id, upd).await?;
    let mut names = Names::load(&v).await?;
    Ok(ok(
        json!({"instance": view(&v, &mut names, &s, None).await}),
    ))
}

async fn delete(v: Vpe, Path(id): Path<String>) -> VpeResult {
    let id = instance_id(&id)?;
    v.control().server_delete(&v.ctx, id).await?;
    Ok(uuid_only(id))
}

async fn power(v: Vpe, id: &str, action: ServerAction) -> VpeResult {
    let id = instance_id(id)?;
    v.control().server_action(&v.ctx, id, action).await?;
    Ok(uuid_only(id))
}

// The seed sends `{}` with start and stop; an empty body is accepted too.
async fn start(v: Vpe, Path(id): Path<String>, _: EmptyBody) -> VpeResult {
    power(v, &id, ServerAction::Start).await
}

async fn stop(v: Vpe, Path(id): Path<String>, _: EmptyBody) -> VpeResult {
    power(v, &id, ServerAction::Stop).await
}
