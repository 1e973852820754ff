//! The server service: create, read, update, delete, actions, metadata and tags, plus the
//! step plans the operations engine runs for each action.
//!
//! Every state change goes through [`nimbus_model::state::decide`] (the allowed-action
//! table) and is written together with its operation in one guarded transaction, so two
//! concurrent requests on one server cannot both start conflicting work: the second one
//! re-reads, sees the task the first set, and gets a 409.

use crate::Control;
use crate::engine::{Flow, OnFailure, Step};
use nimbus_model::agent::{AgentReply, AgentRequest, ImageSpec, InstanceSpec};
use nimbus_model::identity::Context;
use nimbus_model::image::ImageStatus;
use nimbus_model::operation::{Operation, OperationEvent, OperationState};
use nimbus_model::server::{Fault, LockedBy, Personality, Server, ServerFilter, ServerPage};
use nimbus_model::state::{
    Action, ActionInput, Decision, PowerState, TaskState, VmState, decide, deny_message,
};
use nimbus_model::time::now;
use nimbus_model::*;
use nimbus_store::ServerCreateOutcome;
use rand::Rng;
use std::collections::BTreeMap;

/// Nova's limits on user-settable strings.
pub const MAX_NAME_LEN: usize = 255;
pub const MAX_METADATA_KEY_LEN: usize = 255;
pub const MAX_METADATA_VALUE_LEN: usize = 255;
pub const MAX_TAG_LEN: usize = 60;
pub const MAX_TAGS: usize = 50;
/// Nova: user_data up to 65535 bytes once decoded.
pub const MAX_USER_DATA: usize = 65535;

/// What networks a new server asks for (Nova `networks`, microversion 2.37 forms).
#[derive(Clone, Debug, Default, PartialEq)]
pub enum NetworkRequest {
    /// Nova `auto`: allocate whatever the deployment offers.
    #[default]
    Auto,
    /// Nova `none`: no network at all.
    None,
    /// Specific networks or ports.
    List(Vec<RequestedNic>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct RequestedNic {
    pub network_id: Option<String>,
    pub port_id: Option<String>,
    pub fixed_ip: Option<String>,
    pub tag: Option<String>,
}

/// A request to create one or more servers.
#[derive(Clone, Debug, Default)]
pub struct ServerCreate {
    pub name: String,
    pub image_id: Option<ImageId>,
    pub flavor_id: FlavorId,
    pub key_name: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub tags: Vec<String>,
    pub description: Option<String>,
    /// `zone`, or `zone:host` (admins only) to force a host.
    pub availability_zone: Option<String>,
    /// Base64, as sent.
    pub user_data: Option<String>,
    pub personality: Vec<Personality>,
    pub min_count: u32,
    pub max_count: u32,
    pub networks: NetworkRequest,
    pub security_groups: Vec<String>,
    pub admin_pass: Option<String>,
    pub config_drive: bool,
    pub access_ipv4: Option<String>,
    pub access_ipv6: Option<String>,
    pub hostname: Option<String>,
    pub server_group: Option<ServerGroupId>,
    pub ha: bool,
    /// Storage pool of the root disk, by id or name (VPE `disk_pool`).
    pub disk_pool: Option<String>,
    /// Existing data volumes to attach at create (VPE `disks`).
    pub volumes: Vec<VolumeId>,
}

/// What a create returns.
#[derive(Clone, Debug)]
pub struct ServerCreated {
    pub servers: Vec<Server>,
    /// Shown once, never stored.
    pub admin_pass: Option<String>,
    pub reservation_id: String,
}

/// Fields a user may change in place (Nova PUT).
#[derive(Clone, Debug, Default)]
pub struct ServerUpdate {
    pub name: Option<String>,
    /// `Some(None)` clears it.
    pub description: Option<Option<String>>,
    pub hostname: Option<String>,
    pub access_ipv4: Option<Option<String>>,
    pub access_ipv6: Option<Option<String>>,
    pub ha: Option<bool>,
    pub tags: Option<Vec<String>>,
    /// Replace all metadata (checked like the metadata API: state table, limits).
    pub metadata: Option<BTreeMap<String, String>>,
}

/// A rebuild request.
#[derive(Clone, Debug, Default)]
pub struct Rebuild {
    pub image_id: ImageId,
    pub name: Option<String>,
    pub metadata: Option<BTreeMap<String, String>>,
    pub personality: Option<Vec<Personality>>,
    pub admin_pass: Option<String>,
    pub description: Option<Option<String>>,
    pub key_name: Option<Option<String>>,
    pub user_data: Option<Option<String>>,
    pub hostname: Option<String>,
}

/// Every action a dialect can ask for.
#[derive(Clone, Debug)]
pub enum ServerAction {
    Reboot {
        hard: bool,
    },
    Start,
    Stop,
    Pause,
    Unpause,
    Suspend,
    Resume,
    Resize {
        flavor_id: FlavorId,
    },
    ConfirmResize,
    RevertResize,
    Rebuild(Box<Rebuild>),
    CreateImage {
        name: String,
        metadata: BTreeMap<String, String>,
    },
    ChangePassword {
        admin_pass: String,
    },
    Lock {
        reason: Option<String>,
    },
    Unlock,
    ForceDelete,
    Restore,
    /// Admin: force the vm_state (`active` or `error`), clearing the task.
    ResetState {
        state: VmState,
    },
}

/// What an accepted action produced.
#[derive(Clone, Debug)]
pub enum ActionOutcome {
    /// Work started (or nothing to do, for `Ignore`d actions).
    Accepted {
        server: Server,
        admin_pass: Option<String>,
    },
    /// createImage: the new image's id.
    Image { image_id: ImageId },
}

fn validate_name(field: &str, name: &str) -> Result<()> {
    if name.trim().is_empty() {
        return Err(Error::invalid(format!(
            "Invalid input for field/attribute {field}. Value: {name}. '{name}' must not be empty"
        )));
    }
    if name.chars().count() > MAX_NAME_LEN {
        return Err(Error::invalid(format!(
            "Invalid input for field/attribute {field}. Value: {name}. '{name}' is too long"
        )));
    }
    if name.trim() != name {
        return Err(Error::invalid(format!(
            "Invalid input for field/attribute {field}. Value: {name}. '{name}' has leading or trailing whitespace"
        )));
    }
    Ok(())
}

/// A list filter's regular expression compiles within the size the store's `regexp` allows;
/// otherwise a 400 naming the filter (the store would only fail the query).
fn check_filter_regex(what: &str, re: &str) -> Result<()> {
    regex::RegexBuilder::new(re)
        .size_limit(1 << 20)
        .build()
        .map(drop)
        .map_err(|e| Error::invalid(format!("Invalid regular expression in {what} filter: {e}")))
}

/// Metadata keys and values as Nova checks them.
pub fn validate_metadata(md: &BTreeMap<String, String>) -> Result<()> {
    for (k, v) in md {
        if k.is_empty() || k.chars().count() > MAX_METADATA_KEY_LEN {
            return Err(Error::invalid(format!(
                "Invalid input for field/attribute metadata. Value: {k}. metadata key must be 1-{MAX_METADATA_KEY_LEN} characters"
            )));
        }
        if v.chars().count() > MAX_METADATA_VALUE_LEN {
            return Err(Error::invalid(format!(
                "Invalid input for field/attribute metadata. Value: {v}. metadata value of '{k}' is longer than {MAX_METADATA_VALUE_LEN} characters"
            )));
        }
    }
    if let Some(v) = md.get(nimbus_fault_key()) {
        parse_fault_value(v)?;
    }
    Ok(())
}

fn nimbus_fault_key() -> &'static str {
    "nimbus:fault"
}

/// The fake driver's fault syntax, checked at the API so a typo is a 400 and not a failed
/// build.
fn parse_fault_value(v: &str) -> Result<()> {
    for w in v.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        let ok = matches!(w, "spawn" | "reboot" | "stop" | "stall")
            || w.strip_prefix("crash-after:").is_some_and(|d| {
                let (n, u) = d.split_at(
                    d.find(|c: char| !c.is_ascii_digit() && c != '.')
                        .unwrap_or(d.len()),
                );
                n.parse::<f64>().is_ok() && matches!(u, "" | "ms" | "s" | "m")
            });
        if !ok {
            return Err(Error::invalid(format!(
                "Invalid value for metadata key nimbus:fault: unknown fault '{w}' \
                 (expected spawn, reboot, stop, stall or crash-after:<duration>)"
            )));
        }
    }
    Ok(())
}

/// Nova's tag rules: 1-60 characters, no '/' or ','.
pub fn validate_tag(tag: &str) -> Result<()> {
    if tag.is_empty() || tag.chars().count() > MAX_TAG_LEN || tag.contains('/') || tag.contains(',')
    {
        return Err(Error::invalid(format!(
            "Tag '{tag}' is invalid. It must be a non empty string without characters '/' and ','"
        )));
    }
    Ok(())
}

pub fn validate_tags(tags: &[String]) -> Result<()> {
    if tags.len() > MAX_TAGS {
        return Err(Error::invalid(format!(
            "The number of tags exceeded the per-server limit {MAX_TAGS}"
        )));
    }
    tags.iter().try_for_each(|t| validate_tag(t))
}

/// nova `utils.sanitize_hostname`.
pub fn sanitize_hostname(name: &str) -> String {
    let latin1: String = name.chars().filter(|c| (*c as u32) <= 0xff).collect();
    let truncated: String = latin1.chars().take(63).collect();
    let replaced: String = truncated
        .chars()
        .map(|c| if matches!(c, ' ' | '_' | '.') { '-' } else { c })
        .collect();
    let kept: String = replaced
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == '-' || *c == '.')
        .collect();
    kept.to_lowercase()
        .trim_matches(|c| c == '.' || c == '-')
        .to_owned()
}

/// A random admin password (Nova generates 12 characters from an unambiguous alphabet).
pub fn generate_password() -> String {
    const ALPHABET: &[u8] = b"23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
    let mut rng = rand::thread_rng();
    (0..12)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

fn reservation_id() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    let s: String = (0..8)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect();
    format!("r-{s}")
}

/// Whether a server has a console to open (it runs, or is paused): the rule behind
/// [`Control::server_vnc_console`], for dialects that hand out console URLs up front.
pub fn console_available(server: &Server) -> Result<()> {
    if matches!(server.vm_state, VmState::Active | VmState::Paused) {
        Ok(())
    } else {
        Err(Error::Conflict(format!(
            "Instance {} is not ready",
            server.id
        )))
    }
}

/// Options for a server listing, as the API parsed them.
#[derive(Clone, Debug, Default)]
pub struct ServerListQuery {
    pub filter: ServerFilter,
    pub page: ServerPage,
    /// Admin asked for every project.
    pub all_tenants: bool,
}

impl Control {
    fn new_operation(
        &self,
        ctx: &Context,
        server: &Server,
        action: &str,
        params: serde_json::Value,
    ) -> Operation {
        let t = now();
        Operation {
            id: OperationId::new(),
            request_id: ctx.request_id.clone(),
            server_id: server.id,
            action: action.to_owned(),
            project_id: ctx.project_id.clone(),
            user_id: ctx.user_id.clone(),
            state: OperationState::Pending,
            step: 0,
            params,
            message: None,
            start_time: t,
            finish_time: None,
            updated_at: t,
            not_before: None,
        }
    }

    /// A server the caller may see: their project's, or any for admins. Deleted servers are
    /// gone (404) unless `include_deleted`.
    pub async fn server_get(&self, ctx: &Context, id: ServerId) -> Result<Server> {
        let s = self.load_server(id).await?;
        if s.deleted || (s.project_id != ctx.project_id && !ctx.is_admin()) {
            return Err(Error::server_not_found(id));
        }
        Ok(s)
    }

    /// By numeric serial (Cyclades ids), same visibility as [`Self::server_get`].
    pub async fn server_get_by_serial(&self, ctx: &Context, serial: i64) -> Result<Server> {
        let s = self
            .inner
            .store
            .server_get_by_serial(serial)
            .await?
            .ok_or_else(|| Error::server_not_found(serial))?;
        if s.deleted || (s.project_id != ctx.project_id && !ctx.is_admin()) {
            return Err(Error::server_not_found(serial));
        }
        Ok(s)
    }

    /// By numeric serial, deleted servers included until they are purged: Cyclades shows a
    /// deleted server as `DELETED` and answers "server deleted" (400) rather than 404 when
    /// one is acted on. Same project visibility as [`Self::server_get`].
    pub async fn server_get_by_serial_with_deleted(
        &self,
        ctx: &Context,
        serial: i64,
    ) -> Result<Server> {
        self.inner
            .store
            .server_get_by_serial(serial)
            .await?
            .filter(|s| s.project_id == ctx.project_id || ctx.is_admin())
            .ok_or_else(|| Error::server_not_found(serial))
    }

    /// List servers. Non-admins always see only their project; `all_tenants` is honoured for
    /// admins only (Nova silently ignores it otherwise).
    pub async fn servers_list(&self, ctx: &Context, mut q: ServerListQuery) -> Result<Vec<Server>> {
        if !(q.all_tenants && ctx.is_admin()) {
            q.filter.project_id = Some(ctx.project_id.clone());
        }
        for (field, re) in &q.filter.regex {
            check_filter_regex(&format!("{field:?}"), re)?;
        }
        for (what, re) in [
            ("ip", &q.filter.ip_regex),
            ("ip6", &q.filter.ip6_regex),
            ("name", &q.filter.name_regex),
        ] {
            if let Some(re) = re {
                check_filter_regex(what, re)?;
            }
        }
        let limit = q
            .page
            .limit
            .unwrap_or(self.inner.config.max_limit)
            .min(self.inner.config.max_limit);
        q.page.limit = Some(limit);
        self.inner.store.servers_list(q.filter, q.page).await
    }

    pub(crate) fn require_writer(ctx: &Context) -> Result<()> {
        if ctx.can_write() {
            Ok(())
        } else {
            Err(Error::Forbidden("Policy doesn't allow this operation to be performed: the reader role cannot change resources.".into()))
        }
    }

    /// Create `min_count..=max_count` servers. Quota is checked atomically with the insert;
    /// the build continues asynchronously (scheduling, spawning).
    pub async fn server_create(&self, ctx: &Context, req: ServerCreate) -> Result<ServerCreated> {
        Self::require_writer(ctx)?;
        validate_name("name", &req.name)?;
        validate_metadata(&req.metadata)?;
        validate_tags(&req.tags)?;
        if let Some(d) = &req.description
            && d.chars().count() > MAX_NAME_LEN
        {
            return Err(Error::invalid(
                "Invalid input for field/attribute description. Value is too long",
            ));
        }
        let min = req.min_count.max(1);
        let max = req.max_count.max(min);
        if req.min_count > req.max_count && req.max_count != 0 {
            return Err(Error::invalid("min_count must be <= max_count"));
        }
        if let Some(ud) = &req.user_data {
            use base64::Engine as _;
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(ud.trim())
                .map_err(|_| Error::invalid("User data needs to be valid base 64."))?;
            if decoded.len() > MAX_USER_DATA {
                return Err(Error::invalid(format!(
                    "User data too large. User data must be no larger than {MAX_USER_DATA} bytes once base64 decoded."
                )));
            }
        }
        let quota = self.effective_quota(&ctx.project_id).await?;
        let md_limit = quota.get("metadata_items");
        if md_limit >= 0 && req.metadata.len() as i64 > md_limit {
            return Err(Error::OverQuota(format!(
                "Quota exceeded for metadata_items: Requested {}, but already used 0 of {md_limit} metadata_items",
                req.metadata.len()
            )));
        }
        let files_limit = quota.get("injected_files");
        if files_limit >= 0 && req.personality.len() as i64 > files_limit {
            return Err(Error::OverQuota(format!(
                "Quota exceeded for injected_files: Requested {}, but already used 0 of {files_limit} injected_files",
                req.personality.len()
            )));
        }
        let flavor = self.flavor_for_boot(ctx, &req.flavor_id).await?;
        let image = match req.image_id {
            Some(id) => {
                let image = self.image_get(ctx, id).await.map_err(|e| match e {
                    Error::NotFound(_) => Error::invalid("Can not find requested image"),
                    e => e,
                })?;
                if image.status != ImageStatus::Active {
                    return Err(Error::invalid(format!("Image {id} is not active.")));
                }
                if (flavor.ram_mb as u64) < image.min_ram {
                    return Err(Error::invalid(
                        "Flavor's memory is too small for requested image.",
                    ));
                }
                if flavor.disk_gb > 0 && flavor.disk_gb < image.min_disk {
                    return Err(Error::invalid(
                        "Flavor's disk is too small for requested image.",
                    ));
                }
                Some(image)
            }
            None => return Err(Error::invalid("Missing imageRef attribute")),
        };
        let key = match &req.key_name {
            Some(name) => Some(
                self.inner
                    .store
                    .keypair_get(ctx.user_id.clone(), name.clone())
                    .await?
                    .ok_or_else(|| Error::invalid("Invalid key_name provided."))?,
            ),
            None => None,
        };
        // What the create plan's network step will allocate, stored with the operation.
        let network_request = match &req.networks {
            NetworkRequest::Auto => serde_json::json!("auto"),
            NetworkRequest::None => serde_json::json!("none"),
            NetworkRequest::List(nics) => {
                let mut items = Vec::new();
                for nic in nics {
                    if let Some(port) = &nic.port_id {
                        // Deviation: Nimbus has no ports API yet, only networks.
                        return Err(Error::invalid(format!("Port {port} could not be found.")));
                    }
                    let Some(net) = &nic.network_id else {
                        return Err(Error::invalid("A network request needs a network uuid."));
                    };
                    let found = match net.parse::<NetworkId>() {
                        Ok(id) => self.network_get(ctx, id).await.ok(),
                        Err(_) => None,
                    };
                    let Some(found) = found else {
                        return Err(Error::invalid(format!("Network {net} could not be found.")));
                    };
                    if let Some(ip) = &nic.fixed_ip {
                        ip.parse::<std::net::Ipv4Addr>().map_err(|_| {
                            Error::invalid(format!("Invalid fixed IP address {ip}."))
                        })?;
                    }
                    items.push(
                        serde_json::json!({"network_id": found.id, "fixed_ip": nic.fixed_ip}),
                    );
                }
                serde_json::Value::Array(items)
            }
        };
        let (az, forced_host) = match &req.availability_zone {
            Some(az) if az.contains(':') => {
                if !ctx.is_admin() {
                    return Err(Error::Forbidden("Policy doesn't allow os_compute_api:servers:create:forced_host to be performed.".into()));
                }
                let (z, h) = az.split_once(':').unwrap_or((az, ""));
                (
                    Some(z.to_owned()).filter(|z| !z.is_empty()),
                    Some(h.split(':').next().unwrap_or("").to_owned()).filter(|h| !h.is_empty()),
                )
            }
            Some(az) => (Some(az.clone()), None),
            None => (None, None),
        };
        if let Some(zone) = &az {
            let known = self.availability_zones().await?;
            if !known.iter().any(|(z, _)| z == zone) {
                return Err(Error::invalid(
                    "The requested availability zone is not available".to_string(),
                ));
            }
        }
        let disk_pool = match &req.disk_pool {
            Some(r) => Some(
                self.pool_find(ctx, r)
                    .await
                    .map_err(|_| Error::invalid(format!("Storage pool {r} could not be found.")))?
                    .id
                    .to_string(),
            ),
            None => None,
        };
        if !req.volumes.is_empty() && max > 1 {
            return Err(Error::invalid(
                "Data volumes can be attached to one server only: max_count must be 1.",
            ));
        }
        let mut requested_volumes = Vec::new();
        for vid in &req.volumes {
            let v = self
                .volume_get(ctx, *vid)
                .await
                .map_err(|_| Error::invalid(format!("Volume {vid} could not be found.")))?;
            if v.attached_to.is_some() || v.status != nimbus_model::volume::VolumeStatus::Available
            {
                return Err(Error::InUse(format!(
                    "Volume {vid} is {} and cannot be attached.",
                    v.status.as_str()
                )));
            }
            requested_volumes.push(v);
        }
        let group = match req.server_group {
            Some(g) => {
                let group = self
                    .inner
                    .store
                    .server_group_get(g)
                    .await?
                    .filter(|grp| grp.project_id == ctx.project_id || ctx.is_admin())
                    .ok_or_else(|| Error::invalid(format!("Invalid server group {g}")))?;
                // Nova's server_group_members quota: members after this create.
                let limit = self
                    .effective_quota(&ctx.project_id)
                    .await?
                    .get("server_group_members");
                if limit >= 0 && (group.members.len() as i64 + max as i64) > limit {
                    return Err(Error::OverQuota(
                        "Quota exceeded, too many servers in group".into(),
                    ));
                }
                Some(group)
            }
            None => None,
        };
        let admin_pass = match (&req.admin_pass, self.inner.config.enable_instance_password) {
            (Some(p), _) => Some(p.clone()),
            (None, true) => Some(generate_password()),
            (None, false) => None,
        };
        let reservation = reservation_id();
        let t = now();
        let mut servers = Vec::new();
        let mut ops = Vec::new();
        let count = max;
        for i in 0..count {
            let id = ServerId::new();
            let name = if count > 1 {
                format!("{}-{}", req.name, i + 1)
            } else {
                req.name.clone()
            };
            let hostname = match &req.hostname {
                Some(h) => h.clone(),
                None => {
                    let h = sanitize_hostname(&req.name);
                    if h.is_empty() {
                        format!("Server-{id}")
                    } else if count > 1 {
                        format!("{h}-{}", i + 1)
                    } else {
                        h
                    }
                }
            };
            let server = Server {
                id,
                serial: 0,
                name,
                description: req.description.clone(),
                hostname,
                project_id: ctx.project_id.clone(),
                user_id: ctx.user_id.clone(),
                flavor: flavor.snapshot(),
                old_flavor: None,
                image_id: image.as_ref().map(|i| i.id),
                key_name: key.as_ref().map(|k| k.name.clone()),
                key_data: key.as_ref().map(|k| k.public_key.clone()),
                metadata: req.metadata.clone(),
                tags: req.tags.clone(),
                security_groups: if req.security_groups.is_empty() {
                    vec!["default".into()]
                } else {
                    req.security_groups.clone()
                },
                availability_zone: az.clone(),
                pinned_availability_zone: az.clone(),
                host_id: None,
                host: None,
                vm_state: VmState::Building,
                task_state: Some(TaskState::Scheduling),
                power_state: PowerState::NoState,
                progress: 0,
                locked: false,
                locked_by: None,
                locked_reason: None,
                ha: req.ha,
                disk_pool: disk_pool.clone(),
                user_data: req.user_data.clone(),
                personality: req.personality.clone(),
                config_drive: req.config_drive,
                access_ipv4: req.access_ipv4.clone(),
                access_ipv6: req.access_ipv6.clone(),
                reservation_id: reservation.clone(),
                launch_index: i,
                server_group: group.as_ref().map(|g| g.id),
                fault: None,
                created_at: t,
                updated_at: t,
                launched_at: None,
                terminated_at: None,
                deleted_at: None,
                deleted: false,
                generation: 1,
                nics: Vec::new(),
                // Attached by the store in the insert transaction.
                volumes: requested_volumes.clone(),
            };
            let params = serde_json::json!({
                "forced_host": forced_host,
                "networks": network_request,
                "volumes": req.volumes,
            });
            ops.push(self.new_operation(ctx, &server, "create", params));
            servers.push(server);
        }
        // Quota for the minimum first: Nova builds max_count if it fits, else min_count.
        let mut outcome = self
            .inner
            .store
            .servers_create(servers.clone(), ops.clone(), quota.clone())
            .await?;
        if matches!(outcome, ServerCreateOutcome::OverQuota { .. }) && min < count {
            servers.truncate(min as usize);
            ops.truncate(min as usize);
            outcome = self
                .inner
                .store
                .servers_create(servers, ops.clone(), quota)
                .await?;
        }
        match outcome {
            ServerCreateOutcome::Created(stored) => {
                for op in &ops {
                    self.submit(op.id);
                }
                Ok(ServerCreated {
                    servers: stored,
                    admin_pass,
                    reservation_id: reservation,
                })
            }
            ServerCreateOutcome::OverQuota {
                resource,
                limit,
                used,
                requested,
            } => Err(Error::OverQuota(format!(
                "Quota exceeded for {resource}: Requested {requested}, but already used {used} of {limit} {resource}"
            ))),
        }
    }

    /// Rename / describe / re-host-name a server.
    pub async fn server_update(
        &self,
        ctx: &Context,
        id: ServerId,
        upd: ServerUpdate,
    ) -> Result<Server> {
        Self::require_writer(ctx)?;
        self.server_get(ctx, id).await?;
        if let Some(n) = &upd.name {
            validate_name("name", n)?;
        }
        if let Some(Some(d)) = &upd.description
            && d.chars().count() > MAX_NAME_LEN
        {
            return Err(Error::invalid(
                "Invalid input for field/attribute description. Value is too long",
            ));
        }
        if let Some(tags) = &upd.tags {
            validate_tags(tags)?;
        }
        if let Some(md) = &upd.metadata {
            validate_metadata(md)?;
            let limit = self
                .effective_quota(&ctx.project_id)
                .await?
                .get("metadata_items");
            if limit >= 0 && md.len() as i64 > limit {
                return Err(Error::OverQuota(format!(
                    "Quota exceeded for metadata_items: Requested {}, but already used 0 of {limit} metadata_items",
                    md.len()
                )));
            }
        }
        // One guarded write: every field changes together or none does.
        self.mutate_server(id, |s| {
            if let Some(md) = &upd.metadata {
                Self::check(ctx, s, Action::UpdateMetadata)?;
                s.metadata = md.clone();
            }
            if let Some(n) = &upd.name {
                s.name = n.clone();
            }
            if let Some(d) = &upd.description {
                s.description = d.clone();
            }
            if let Some(h) = &upd.hostname {
                s.hostname = h.clone();
            }
            if let Some(a) = &upd.access_ipv4 {
                s.access_ipv4 = a.clone();
            }
            if let Some(a) = &upd.access_ipv6 {
                s.access_ipv6 = a.clone();
            }
            if let Some(ha) = upd.ha {
                s.ha = ha;
            }
            if let Some(tags) = &upd.tags {
                s.tags = tags.clone();
            }
            Ok(true)
        })
        .await
    }

    fn check(ctx: &Context, server: &Server, action: Action) -> Result<Decision> {
        let locked = match action {
            // lock/unlock see the raw flag (the table ignores repeated calls).
            Action::Lock | Action::Unlock => server.locked,
            _ => server.locked && !ctx.is_admin(),
        };
        let input = ActionInput {
            vm_state: server.vm_state,
            task_state: server.task_state,
            locked,
            launched: server.launched_at.is_some(),
        };
        match decide(action, input) {
            Decision::Deny(reason) => Err(Error::Conflict(deny_message(
                action,
                &server.id.to_string(),
                &reason,
            ))),
            d => Ok(d),
        }
    }

    /// Apply `change` to the server if the action table allows it, and persist `action` as an
    /// operation in the same write. Returns the stored server and whether an operation was
    /// queued (`None` when the table said Ignore).
    async fn start_action<F>(
        &self,
        ctx: &Context,
        id: ServerId,
        action: Action,
        op_name: &str,
        params: serde_json::Value,
        mut change: F,
    ) -> Result<(Server, Option<OperationId>)>
    where
        F: FnMut(&mut Server) -> Result<()>,
    {
        for _ in 0..100 {
            let mut server = self.server_get(ctx, id).await?;
            if Self::check(ctx, &server, action)? == Decision::Ignore {
                return Ok((server, None));
            }
            // Work for a host that is down would only wait for it; refuse now. Deletes go
            // ahead (locally, like Nova's local delete).
            if !matches!(action, Action::Delete | Action::ForceDelete) {
                self.require_host_up(&server).await?;
            }
            change(&mut server)?;
            server.updated_at = now();
            let op = self.new_operation(ctx, &server, op_name, params.clone());
            if let Some(stored) = self
                .inner
                .store
                .server_update_with_operation(server, op.clone())
                .await?
            {
                self.submit(op.id);
                return Ok((stored, Some(op.id)));
            }
        }
        Err(Error::internal(format!(
            "server {id}: too many concurrent writers"
        )))
    }

    /// Delete (soft when soft-delete is configured). 204 semantics: returns once the delete
    /// is accepted.
    pub async fn server_delete(&self, ctx: &Context, id: ServerId) -> Result<()> {
        Self::require_writer(ctx)?;
        let soft = self.inner.config.reclaim_interval.is_some();
        let server = self.server_get(ctx, id).await?;
        // A server never scheduled or already in ERROR without a host is deleted the same
        // way: the plan skips the host steps when there is no host.
        let (action, task, op_name) =
            if soft && server.vm_state != VmState::SoftDeleted && server.launched_at.is_some() {
                (Action::Delete, TaskState::SoftDeleting, "delete")
            } else {
                (Action::Delete, TaskState::Deleting, "delete")
            };
        let params = serde_json::json!({ "soft": task == TaskState::SoftDeleting });
        self.start_action(ctx, id, action, op_name, params, |s| {
            s.task_state = Some(task);
            Ok(())
        })
        .await?;
        Ok(())
    }

    /// Run one action.
    pub async fn server_action(
        &self,
        ctx: &Context,
        id: ServerId,
        action: ServerAction,
    ) -> Result<ActionOutcome> {
        Self::require_writer(ctx)?;
        let accepted = |(server, _): (Server, Option<OperationId>)| ActionOutcome::Accepted {
            server,
            admin_pass: None,
        };
        let no = serde_json::Value::Null;
        Ok(match action {
            ServerAction::Reboot { hard } => {
                let (a, task) = if hard {
                    (Action::RebootHard, TaskState::RebootingHard)
                } else {
                    (Action::RebootSoft, TaskState::Rebooting)
                };
                accepted(
                    self.start_action(
                        ctx,
                        id,
                        a,
                        "reboot",
                        serde_json::json!({ "hard": hard }),
                        |s| {
                            s.task_state = Some(task);
                            Ok(())
                        },
                    )
                    .await?,
                )
            }
            ServerAction::Start => accepted(
                self.start_action(ctx, id, Action::Start, "start", no, |s| {
                    s.task_state = Some(TaskState::PoweringOn);
                    Ok(())
                })
                .await?,
            ),
            ServerAction::Stop => accepted(
                self.start_action(ctx, id, Action::Stop, "stop", no, |s| {
                    s.task_state = Some(TaskState::PoweringOff);
                    s.progress = 0;
                    Ok(())
                })
                .await?,
            ),
            ServerAction::Pause => accepted(
                self.start_action(ctx, id, Action::Pause, "pause", no, |s| {
                    s.task_state = Some(TaskState::Pausing);
                    Ok(())
                })
                .await?,
            ),
            ServerAction::Unpause => accepted(
                self.start_action(ctx, id, Action::Unpause, "unpause", no, |s| {
                    s.task_state = Some(TaskState::Unpausing);
                    Ok(())
                })
                .await?,
            ),
            ServerAction::Suspend => accepted(
                self.start_action(ctx, id, Action::Suspend, "suspend", no, |s| {
                    s.task_state = Some(TaskState::Suspending);
                    Ok(())
                })
                .await?,
            ),
            ServerAction::Resume => accepted(
                self.start_action(ctx, id, Action::Resume, "resume", no, |s| {
                    s.task_state = Some(TaskState::Resuming);
                    Ok(())
                })
                .await?,
            ),
            ServerAction::Resize { flavor_id } => {
                let current = self.server_get(ctx, id).await?;
                let flavor = self
                    .flavor_for_boot(ctx, &flavor_id)
                    .await
                    .map_err(|e| match e {
                        Error::NotFound(_) => {
                            Error::invalid(format!("Unable to find flavor {flavor_id}"))
                        }
                        e => e,
                    })?;
                if flavor.id == current.flavor.id {
                    return Err(Error::invalid(
                        "When resizing, instances must change flavor!",
                    ));
                }
                if flavor.disk_gb < current.flavor.disk_gb && flavor.disk_gb != 0 {
                    return Err(Error::invalid("Resize error: Unable to resize disk down."));
                }
                let snapshot = flavor.snapshot();
                let params = serde_json::json!({
                    "flavor": snapshot,
                    "was_stopped": current.vm_state == VmState::Stopped,
                });
                accepted(
                    self.start_action(ctx, id, Action::Resize, "resize", params, |s| {
                        s.task_state = Some(TaskState::ResizePrep);
                        s.progress = 0;
                        Ok(())
                    })
                    .await?,
                )
            }
            ServerAction::ConfirmResize => accepted(
                self.start_action(ctx, id, Action::ConfirmResize, "confirmResize", no, |s| {
                    s.task_state = Some(TaskState::ResizeConfirming);
                    Ok(())
                })
                .await?,
            ),
            ServerAction::RevertResize => accepted(
                self.start_action(ctx, id, Action::RevertResize, "revertResize", no, |s| {
                    s.task_state = Some(TaskState::ResizeReverting);
                    Ok(())
                })
                .await?,
            ),
            ServerAction::Rebuild(rb) => {
                let image = self
                    .image_get(ctx, rb.image_id)
                    .await
                    .map_err(|e| match e {
                        Error::NotFound(_) => Error::invalid("Cannot find requested image"),
                        e => e,
                    })?;
                if image.status != ImageStatus::Active {
                    return Err(Error::invalid(format!("Image {} is not active.", image.id)));
                }
                if let Some(n) = &rb.name {
                    validate_name("name", n)?;
                }
                if let Some(md) = &rb.metadata {
                    validate_metadata(md)?;
                }
                let key = match &rb.key_name {
                    Some(Some(name)) => Some(Some(
                        self.inner
                            .store
                            .keypair_get(ctx.user_id.clone(), name.clone())
                            .await?
                            .ok_or_else(|| Error::invalid("Invalid key_name provided."))?,
                    )),
                    Some(None) => Some(None),
                    None => None,
                };
                let admin_pass = rb.admin_pass.clone().or_else(|| {
                    self.inner
                        .config
                        .enable_instance_password
                        .then(generate_password)
                });
                let params = serde_json::json!({ "image_id": rb.image_id });
                let (server, _) = self
                    .start_action(ctx, id, Action::Rebuild, "rebuild", params, |s| {
                        s.task_state = Some(TaskState::Rebuilding);
                        s.progress = 0;
                        s.image_id = Some(rb.image_id);
                        if let Some(n) = &rb.name {
                            s.name = n.clone();
                        }
                        if let Some(md) = &rb.metadata {
                            s.metadata = md.clone();
                        }
                        if let Some(p) = &rb.personality {
                            s.personality = p.clone();
                        }
                        if let Some(d) = &rb.description {
                            s.description = d.clone();
                        }
                        if let Some(k) = &key {
                            s.key_name = k.as_ref().map(|k| k.name.clone());
                            s.key_data = k.as_ref().map(|k| k.public_key.clone());
                        }
                        if let Some(u) = &rb.user_data {
                            s.user_data = u.clone();
                        }
                        if let Some(h) = &rb.hostname {
                            s.hostname = h.clone();
                        }
                        Ok(())
                    })
                    .await?;
                ActionOutcome::Accepted { server, admin_pass }
            }
            ServerAction::CreateImage { name, metadata } => {
                validate_name("name", &name)?;
                validate_metadata(&metadata)?;
                let server = self.server_get(ctx, id).await?;
                Self::check(ctx, &server, Action::CreateImage)?;
                let image = self
                    .image_create_snapshot_record(ctx, &server, &name, metadata)
                    .await?;
                let params = serde_json::json!({ "image_id": image.id });
                let started = self
                    .start_action(ctx, id, Action::CreateImage, "createImage", params, |s| {
                        s.task_state = Some(TaskState::ImageSnapshot);
                        Ok(())
                    })
                    .await;
                if let Err(e) = started {
                    // The record is useless without the snapshot.
                    let _ = self.image_mark_killed(image.id).await;
                    return Err(e);
                }
                ActionOutcome::Image { image_id: image.id }
            }
            ServerAction::ChangePassword { admin_pass } => {
                if admin_pass.is_empty() {
                    return Err(Error::invalid(
                        "Invalid input for field/attribute adminPass.",
                    ));
                }
                let params = serde_json::json!({ "password": admin_pass });
                accepted(
                    self.start_action(
                        ctx,
                        id,
                        Action::ChangePassword,
                        "changePassword",
                        params,
                        |s| {
                            s.task_state = Some(TaskState::UpdatingPassword);
                            Ok(())
                        },
                    )
                    .await?,
                )
            }
            ServerAction::Lock { reason } => {
                let by = if ctx.is_admin() {
                    LockedBy::Admin
                } else {
                    LockedBy::Owner
                };
                let server = self.server_get(ctx, id).await?;
                if Self::check(ctx, &server, Action::Lock)? == Decision::Ignore {
                    return Ok(ActionOutcome::Accepted {
                        server,
                        admin_pass: None,
                    });
                }
                let server = self
                    .mutate_server(id, |s| {
                        s.locked = true;
                        s.locked_by = Some(by);
                        s.locked_reason = reason.clone();
                        Ok(true)
                    })
                    .await?;
                self.record_api_action(ctx, &server, "lock", "api_lock")
                    .await?;
                ActionOutcome::Accepted {
                    server,
                    admin_pass: None,
                }
            }
            ServerAction::Unlock => {
                let server = self.server_get(ctx, id).await?;
                if Self::check(ctx, &server, Action::Unlock)? == Decision::Ignore {
                    return Ok(ActionOutcome::Accepted {
                        server,
                        admin_pass: None,
                    });
                }
                if server.locked_by == Some(LockedBy::Admin) && !ctx.is_admin() {
                    return Err(Error::Forbidden(
                        "Policy doesn't allow os_compute_api:os-lock-server:unlock:unlock_override to be performed."
                            .into(),
                    ));
                }
                let server = self
                    .mutate_server(id, |s| {
                        s.locked = false;
                        s.locked_by = None;
                        s.locked_reason = None;
                        Ok(true)
                    })
                    .await?;
                self.record_api_action(ctx, &server, "unlock", "api_unlock")
                    .await?;
                ActionOutcome::Accepted {
                    server,
                    admin_pass: None,
                }
            }
            ServerAction::ForceDelete => {
                let server = self.server_get(ctx, id).await?;
                if server.vm_state != VmState::SoftDeleted {
                    return Err(Error::Conflict(format!(
                        "Cannot 'forceDelete' instance {id} while it is in vm_state {}",
                        server.vm_state
                    )));
                }
                accepted(
                    self.start_action(
                        ctx,
                        id,
                        Action::ForceDelete,
                        "forceDelete",
                        serde_json::json!({"soft": false}),
                        |s| {
                            s.task_state = Some(TaskState::Deleting);
                            Ok(())
                        },
                    )
                    .await?,
                )
            }
            ServerAction::Restore => accepted(
                self.start_action(ctx, id, Action::Restore, "restore", no, |s| {
                    s.task_state = Some(TaskState::Restoring);
                    Ok(())
                })
                .await?,
            ),
            ServerAction::ResetState { state } => {
                self.server_get(ctx, id).await?;
                if !ctx.is_admin() {
                    return Err(Error::Forbidden("Policy doesn't allow os_compute_api:os-admin-actions:reset_state to be performed.".into()));
                }
                if !matches!(state, VmState::Active | VmState::Error) {
                    return Err(Error::invalid("Invalid input for field/attribute state."));
                }
                let server = self.server_get(ctx, id).await?;
                let server = self
                    .mutate_server(server.id, |s| {
                        s.vm_state = state;
                        s.task_state = None;
                        Ok(true)
                    })
                    .await?;
                self.record_api_action(ctx, &server, "resetState", "api_reset_state")
                    .await?;
                ActionOutcome::Accepted {
                    server,
                    admin_pass: None,
                }
            }
        })
    }

    async fn require_host_up(&self, s: &Server) -> Result<()> {
        let Some(h) = s.host_id else { return Ok(()) };
        match self.inner.store.host_get(h).await? {
            Some(host) if !host.up => Err(Error::Conflict(format!(
                "Compute host {} of instance {} is down; the action cannot be performed now.",
                host.name, s.id
            ))),
            _ => Ok(()),
        }
    }

    /// Record an action that completes in the API (lock, unlock, ...) in the action log.
    async fn record_api_action(
        &self,
        ctx: &Context,
        server: &Server,
        action: &str,
        event: &str,
    ) -> Result<()> {
        let t = now();
        let op = Operation {
            state: OperationState::Succeeded,
            finish_time: Some(t),
            ..self.new_operation(ctx, server, action, serde_json::Value::Null)
        };
        let store = &self.inner.store;
        store.operation_create(op.clone()).await?;
        store
            .event_finish(OperationEvent {
                operation_id: op.id,
                event: event.to_owned(),
                start_time: t,
                finish_time: Some(t),
                result: Some("Success".into()),
                traceback: None,
                host: None,
                details: None,
            })
            .await
    }

    // ---- metadata and tags ----

    /// Replace all metadata (Nova `PUT /metadata`) or merge (`POST /metadata`, and Cyclades).
    pub async fn server_metadata_set(
        &self,
        ctx: &Context,
        id: ServerId,
        md: BTreeMap<String, String>,
        replace: bool,
    ) -> Result<BTreeMap<String, String>> {
        Self::require_writer(ctx)?;
        validate_metadata(&md)?;
        let limit = self
            .effective_quota(&ctx.project_id)
            .await?
            .get("metadata_items");
        let server = self
            .mutate_server_checked(ctx, id, Action::UpdateMetadata, |s| {
                let mut next = if replace { BTreeMap::new() } else { s.metadata.clone() };
                next.extend(md.clone());
                if limit >= 0 && next.len() as i64 > limit {
                    return Err(Error::OverQuota(format!(
                        "Quota exceeded for metadata_items: Requested {}, but already used {} of {limit} metadata_items",
                        md.len(),
                        s.metadata.len()
                    )));
                }
                s.metadata = next;
                Ok(true)
            })
            .await?;
        Ok(server.metadata)
    }

    pub async fn server_metadata_delete(
        &self,
        ctx: &Context,
        id: ServerId,
        key: &str,
    ) -> Result<()> {
        Self::require_writer(ctx)?;
        self.mutate_server_checked(ctx, id, Action::UpdateMetadata, |s| {
            if s.metadata.remove(key).is_none() {
                return Err(Error::not_found("Metadata item was not found".to_string()));
            }
            Ok(true)
        })
        .await?;
        Ok(())
    }

    pub async fn server_tags_set(
        &self,
        ctx: &Context,
        id: ServerId,
        tags: Vec<String>,
    ) -> Result<Vec<String>> {
        Self::require_writer(ctx)?;
        validate_tags(&tags)?;
        let mut uniq: Vec<String> = Vec::new();
        for t in tags {
            if !uniq.contains(&t) {
                uniq.push(t);
            }
        }
        let s = self
            .mutate_server_checked(ctx, id, Action::UpdateTags, |s| {
                s.tags = uniq.clone();
                Ok(true)
            })
            .await?;
        Ok(s.tags)
    }

    /// Add one tag; returns whether it was new.
    pub async fn server_tag_add(&self, ctx: &Context, id: ServerId, tag: &str) -> Result<bool> {
        Self::require_writer(ctx)?;
        validate_tag(tag)?;
        let mut added = false;
        self.mutate_server_checked(ctx, id, Action::UpdateTags, |s| {
            if s.tags.iter().any(|t| t == tag) {
                added = false;
                return Ok(false);
            }
            if s.tags.len() >= MAX_TAGS {
                return Err(Error::invalid(format!(
                    "The number of tags exceeded the per-server limit {MAX_TAGS}"
                )));
            }
            s.tags.push(tag.to_owned());
            added = true;
            Ok(true)
        })
        .await?;
        Ok(added)
    }

    pub async fn server_tag_delete(&self, ctx: &Context, id: ServerId, tag: &str) -> Result<()> {
        Self::require_writer(ctx)?;
        self.mutate_server_checked(ctx, id, Action::UpdateTags, |s| {
            let before = s.tags.len();
            s.tags.retain(|t| t != tag);
            if s.tags.len() == before {
                return Err(Error::not_found(format!("Tag {tag} could not be found.")));
            }
            Ok(true)
        })
        .await?;
        Ok(())
    }

    /// [`Control::mutate_server`] for a server the caller may see, gated by the action table.
    async fn mutate_server_checked<F>(
        &self,
        ctx: &Context,
        id: ServerId,
        action: Action,
        mut f: F,
    ) -> Result<Server>
    where
        F: FnMut(&mut Server) -> Result<bool>,
    {
        self.server_get(ctx, id).await?;
        self.mutate_server(id, |s| {
            if s.deleted {
                return Err(Error::server_not_found(id));
            }
            Self::check(ctx, s, action)?;
            f(s)
        })
        .await
    }

    // ---- read-only views ----

    /// The action log (os-instance-actions), newest first.
    /// The server's operation log. `deleted_too`: whether a deleted server's log is still
    /// readable (Nova from 2.21; before it, a deleted server is 404 here as everywhere).
    pub async fn server_actions(
        &self,
        ctx: &Context,
        id: ServerId,
        deleted_too: bool,
    ) -> Result<Vec<Operation>> {
        let s = self.load_server(id).await?;
        if (s.project_id != ctx.project_id && !ctx.is_admin())
            || (!deleted_too && s.vm_state == VmState::Deleted)
        {
            return Err(Error::server_not_found(id));
        }
        self.inner.store.operations_for_server(id).await
    }

    pub async fn server_action_get(
        &self,
        ctx: &Context,
        id: ServerId,
        request_id: &str,
        deleted_too: bool,
    ) -> Result<(Operation, Vec<OperationEvent>)> {
        let s = self.load_server(id).await?;
        if (s.project_id != ctx.project_id && !ctx.is_admin())
            || (!deleted_too && s.vm_state == VmState::Deleted)
        {
            return Err(Error::server_not_found(id));
        }
        let op = self
            .inner
            .store
            .operation_by_request(id, request_id.to_owned())
            .await?
            .ok_or_else(|| Error::not_found(format!("Action {request_id} could not be found.")))?;
        let events = self.inner.store.events_for(op.id).await?;
        Ok((op, events))
    }

    /// Console log tail.
    pub async fn server_console_output(
        &self,
        ctx: &Context,
        id: ServerId,
        length: Option<u32>,
    ) -> Result<String> {
        let server = self.server_get(ctx, id).await?;
        Self::check(ctx, &server, Action::ConsoleOutput)?;
        let host = server
            .host_id
            .ok_or_else(|| Error::Conflict(format!("Instance {id} has not been created yet")))?;
        match self
            .agent_call(
                host,
                AgentRequest::ConsoleOutput {
                    server_id: id,
                    length,
                },
            )
            .await
        {
            Ok(AgentReply::Console { output }) => Ok(output),
            Ok(other) => Err(Error::internal(format!("unexpected agent reply {other:?}"))),
            Err(Error::NotFound(_)) => Err(Error::Conflict(format!("Instance {id} is not ready"))),
            Err(e) => Err(e),
        }
    }

    /// Admin diagnostics.
    pub async fn server_diagnostics(
        &self,
        ctx: &Context,
        id: ServerId,
    ) -> Result<(Server, nimbus_model::agent::Diagnostics)> {
        // Nova loads the server before checking the policy: a foreign id is a 404.
        let server = self.server_get(ctx, id).await?;
        if !ctx.is_admin() {
            return Err(Error::Forbidden(
                "Policy doesn't allow os_compute_api:os-server-diagnostics to be performed.".into(),
            ));
        }
        let host = server
            .host_id
            .ok_or_else(|| Error::Conflict(format!("Instance {id} has not been created yet")))?;
        match self
            .agent_call(host, AgentRequest::Diagnostics { server_id: id })
            .await
        {
            Ok(AgentReply::Diagnostics { diagnostics }) => Ok((server, diagnostics)),
            Ok(other) => Err(Error::internal(format!("unexpected agent reply {other:?}"))),
            Err(Error::NotFound(_)) => Err(Error::Conflict(format!("Instance {id} is not ready"))),
            Err(e) => Err(e),
        }
    }

    /// A VNC console for the server.
    pub async fn server_vnc_console(
        &self,
        ctx: &Context,
        id: ServerId,
    ) -> Result<nimbus_model::agent::VncConsole> {
        let server = self.server_get(ctx, id).await?;
        console_available(&server)?;
        let host = server
            .host_id
            .ok_or_else(|| Error::Conflict(format!("Instance {id} has not been created yet")))?;
        match self
            .agent_call(host, AgentRequest::VncConsole { server_id: id })
            .await?
        {
            AgentReply::Vnc { console } => Ok(console),
            other => Err(Error::internal(format!("unexpected agent reply {other:?}"))),
        }
    }

    // ---- engine side: specs and steps ----

    /// The agent's view of a server.
    pub(crate) async fn instance_spec(&self, s: &Server) -> Result<InstanceSpec> {
        let image = match s.image_id {
            Some(id) => match self.inner.store.image_get(id).await? {
                Some(img) => Some(ImageSpec {
                    id: img.id,
                    hash: img.os_hash_value.clone().unwrap_or_default(),
                    size: img.size.unwrap_or(0),
                    disk_format: img.disk_format.clone().unwrap_or_else(|| "raw".into()),
                    properties: img.properties.clone(),
                }),
                None => None,
            },
            None => None,
        };
        let mut nics = Vec::with_capacity(s.nics.len());
        for nic in &s.nics {
            nics.push(self.nic_spec(nic).await?);
        }
        Ok(InstanceSpec {
            server_id: s.id,
            name: s.name.clone(),
            hostname: s.hostname.clone(),
            vcpus: s.flavor.vcpus,
            ram_mb: s.flavor.ram_mb,
            disk_gb: s.flavor.disk_gb,
            ephemeral_gb: s.flavor.ephemeral_gb,
            swap_mb: s.flavor.swap_mb,
            image,
            user_data: s.user_data.clone(),
            metadata: s.metadata.clone(),
            nics,
            volumes: s.volumes.iter().map(|v| v.id.to_string()).collect(),
        })
    }

    /// Load the op's server; abort the op if it is being deleted (unless `deleting_ok`).
    async fn step_server(
        &self,
        op: &Operation,
        deleting_ok: bool,
    ) -> Result<std::result::Result<Server, Flow>> {
        let s = match self.inner.store.server_get(op.server_id).await? {
            Some(s) => s,
            None => return Ok(Err(Flow::Abort("server vanished".into()))),
        };
        if !deleting_ok
            && (s.deleted
                || matches!(
                    s.task_state,
                    Some(TaskState::Deleting | TaskState::SoftDeleting)
                ))
        {
            return Ok(Err(Flow::Abort("server is being deleted".into())));
        }
        Ok(Ok(s))
    }

    fn host_of(s: &Server) -> Result<HostId> {
        s.host_id
            .ok_or_else(|| Error::Conflict(format!("Instance {} has no host", s.id)))
    }

    /// Write the end state of an action unless a delete overtook it.
    async fn finish_state<F>(&self, op: &Operation, mut f: F) -> Result<Flow>
    where
        F: FnMut(&mut Server),
    {
        let mut aborted = false;
        self.mutate_server(op.server_id, |s| {
            if s.deleted
                || matches!(
                    s.task_state,
                    Some(TaskState::Deleting | TaskState::SoftDeleting)
                )
            {
                aborted = true;
                return Ok(false);
            }
            f(s);
            Ok(true)
        })
        .await?;
        Ok(if aborted {
            Flow::Abort("server is being deleted".into())
        } else {
            Flow::Continue
        })
    }
}

fn power_of(reply: AgentReply) -> Result<PowerState> {
    match reply {
        AgentReply::Power { power_state } => Ok(power_state),
        other => Err(Error::internal(format!("unexpected agent reply {other:?}"))),
    }
}

macro_rules! step {
    ($name:literal, $event:expr, $run:path, $undo:expr, $fail:expr) => {
        Step {
            name: $name,
            event: $event,
            run: |c, op| Box::pin($run(c, op)),
            undo: $undo,
            on_failure: $fail,
        }
    };
}

const CREATE: &[Step] = &[
    step!(
        "schedule",
        Some("conductor_schedule_and_build_instances"),
        schedule,
        Some(|c, op| Box::pin(unschedule(c, op))),
        OnFailure::SetError
    ),
    step!(
        "allocate_networks",
        None,
        allocate_networks,
        Some(|c, op| Box::pin(release_nics(c, op))),
        OnFailure::SetError
    ),
    step!(
        "attach_volumes",
        None,
        attach_volumes,
        Some(|c, op| Box::pin(detach_volumes(c, op))),
        OnFailure::SetError
    ),
    step!(
        "spawn",
        Some("compute__do_build_and_run_instance"),
        spawn,
        Some(|c, op| Box::pin(destroy_quietly(c, op))),
        OnFailure::SetError
    ),
    step!("activate", None, activate, None, OnFailure::SetError),
];
const DELETE: &[Step] = &[
    step!(
        "destroy",
        Some("compute_terminate_instance"),
        destroy,
        None,
        OnFailure::SetError
    ),
    step!("release", None, delete_release, None, OnFailure::SetError),
    step!(
        "mark_deleted",
        None,
        mark_deleted,
        None,
        OnFailure::SetError
    ),
];
const REBOOT: &[Step] = &[step!(
    "reboot",
    Some("compute_reboot_instance"),
    reboot,
    None,
    OnFailure::SetError
)];
const STOP: &[Step] = &[step!(
    "power_off",
    Some("compute_stop_instance"),
    power_off,
    None,
    OnFailure::RevertTask
)];
const START: &[Step] = &[step!(
    "power_on",
    Some("compute_start_instance"),
    power_on,
    None,
    OnFailure::RevertTask
)];
const PAUSE: &[Step] = &[step!(
    "pause",
    Some("compute_pause_instance"),
    pause,
    None,
    OnFailure::RevertTask
)];
const UNPAUSE: &[Step] = &[step!(
    "unpause",
    Some("compute_unpause_instance"),
    unpause,
    None,
    OnFailure::RevertTask
)];
const SUSPEND: &[Step] = &[step!(
    "suspend",
    Some("compute_suspend_instance"),
    suspend,
    None,
    OnFailure::RevertTask
)];
const RESUME: &[Step] = &[step!(
    "resume",
    Some("compute_resume_instance"),
    resume,
    None,
    OnFailure::RevertTask
)];
const RESIZE: &[Step] = &[
    step!(
        "claim",
        Some("compute_prep_resize"),
        resize_claim,
        None,
        OnFailure::RevertTask
    ),
    step!(
        "resize",
        Some("compute_resize_instance"),
        resize_on_host,
        Some(|c, op| Box::pin(resize_unclaim(c, op))),
        OnFailure::SetError
    ),
    step!(
        "finish",
        Some("compute_finish_resize"),
        resize_finish,
        None,
        OnFailure::SetError
    ),
];
const CONFIRM_RESIZE: &[Step] = &[step!(
    "confirm",
    Some("compute_confirm_resize"),
    confirm_resize,
    None,
    OnFailure::SetError
)];
const REVERT_RESIZE: &[Step] = &[
    step!(
        "revert",
        Some("compute_revert_resize"),
        revert_resize,
        None,
        OnFailure::SetError
    ),
    step!(
        "finish",
        Some("compute_finish_revert_resize"),
        revert_finish,
        None,
        OnFailure::SetError
    ),
];
const REBUILD: &[Step] = &[step!(
    "rebuild",
    Some("compute_rebuild_instance"),
    rebuild,
    None,
    OnFailure::SetError
)];
const CREATE_IMAGE: &[Step] = &[step!(
    "snapshot",
    Some("compute_snapshot_instance"),
    snapshot,
    Some(|c, op| Box::pin(snapshot_undo(c, op))),
    OnFailure::RevertTask
)];
const CHANGE_PASSWORD: &[Step] = &[step!(
    "set_password",
    Some("compute_set_admin_password"),
    set_password,
    None,
    OnFailure::RevertTask
)];
const RESTORE: &[Step] = &[step!(
    "restore",
    Some("compute_restore_instance"),
    restore,
    None,
    OnFailure::SetError
)];

/// The step plan of an action, by its operation name.
pub(crate) fn plan(action: &str) -> Option<&'static [Step]> {
    Some(match action {
        "create" => CREATE,
        "delete" | "forceDelete" => DELETE,
        "reboot" => REBOOT,
        "stop" => STOP,
        "start" => START,
        "pause" => PAUSE,
        "unpause" => UNPAUSE,
        "suspend" => SUSPEND,
        "resume" => RESUME,
        "resize" => RESIZE,
        "confirmResize" => CONFIRM_RESIZE,
        "revertResize" => REVERT_RESIZE,
        "rebuild" => REBUILD,
        "createImage" => CREATE_IMAGE,
        "changePassword" => CHANGE_PASSWORD,
        "restore" => RESTORE,
        _ => return None,
    })
}

async fn schedule(c: &Control, op: &Operation) -> Result<Flow> {
    let s = match c.step_server(op, false).await? {
        Ok(s) => s,
        Err(flow) => return Ok(flow),
    };
    if s.host_id.is_some() {
        // Resumed after the claim was recorded.
        return Ok(Flow::Continue);
    }
    let forced = op
        .params
        .get("forced_host")
        .and_then(|h| h.as_str())
        .map(str::to_owned);
    let host = c.schedule(&s, forced.as_deref()).await?;
    let mut aborted = false;
    c.mutate_server(s.id, |srv| {
        if srv.deleted
            || matches!(
                srv.task_state,
                Some(TaskState::Deleting | TaskState::SoftDeleting)
            )
        {
            aborted = true;
            return Ok(false);
        }
        srv.host_id = Some(host.id);
        srv.host = Some(host.name.clone());
        srv.availability_zone = Some(
            srv.availability_zone
                .clone()
                .unwrap_or_else(|| host.availability_zone.clone()),
        );
        srv.task_state = Some(TaskState::Spawning);
        Ok(true)
    })
    .await?;
    if aborted {
        c.inner.store.release(s.id).await?;
        return Ok(Flow::Abort("server is being deleted".into()));
    }
    Ok(Flow::Continue)
}

/// Undo of `schedule`: give the claim back and take the server off the host, as Nova's
/// `_nil_out_instance_obj_host_and_node` does for a failed build: a server in ERROR after
/// a failed build is on no host, so the host neither lists nor counts it. (The `spawn`
/// undo, which runs first, already destroyed whatever the host had built; should that
/// have failed, the host's re-registration destroys the orphan.)
async fn unschedule(c: &Control, op: &Operation) -> Result<Flow> {
    release_claim(c, op).await?;
    c.mutate_server(op.server_id, |srv| {
        if srv.deleted || srv.host_id.is_none() {
            return Ok(false);
        }
        srv.host_id = None;
        srv.host = None;
        Ok(true)
    })
    .await?;
    Ok(Flow::Continue)
}

async fn release_claim(c: &Control, op: &Operation) -> Result<Flow> {
    c.inner.store.release(op.server_id).await?;
    Ok(Flow::Continue)
}

async fn spawn(c: &Control, op: &Operation) -> Result<Flow> {
    let s = match c.step_server(op, false).await? {
        Ok(s) => s,
        Err(flow) => return Ok(flow),
    };
    let host = Control::host_of(&s)?;
    let spec = c.instance_spec(&s).await?;
    let power = match c.agent_call(host, AgentRequest::Spawn { spec }).await {
        Ok(r) => power_of(r)?,
        Err(e) => {
            // A delete that destroyed the guest mid-build is not a build failure.
            if let Ok(Err(flow)) = c.step_server(op, false).await {
                return Ok(flow);
            }
            return Err(e);
        }
    };
    c.finish_state(op, |srv| {
        srv.power_state = power;
    })
    .await
}

async fn destroy_quietly(c: &Control, op: &Operation) -> Result<Flow> {
    if let Some(s) = c.inner.store.server_get(op.server_id).await?
        && let Some(host) = s.host_id
        && let Err(e) = c
            .agent_call(host, AgentRequest::Destroy { server_id: s.id })
            .await
    {
        tracing::warn!(server = %s.id, error = %e, "cleanup of failed build");
    }
    Ok(Flow::Continue)
}

async fn activate(c: &Control, op: &Operation) -> Result<Flow> {
    c.finish_state(op, |srv| {
        srv.vm_state = VmState::Active;
        srv.task_state = None;
        srv.progress = 100;
        srv.power_state = PowerState::Running;
        srv.launched_at = Some(now());
        srv.fault = None;
    })
    .await
}

async fn destroy(c: &Control, op: &Operation) -> Result<Flow> {
    let s = match c.step_server(op, true).await? {
        Ok(s) => s,
        Err(flow) => return Ok(flow),
    };
    let soft = op
        .params
        .get("soft")
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    if let Some(host) = s.host_id {
        let request = if soft {
            AgentRequest::PowerOff {
                spec: c.instance_spec(&s).await?,
                timeout_secs: 0,
            }
        } else {
            AgentRequest::Destroy { server_id: s.id }
        };
        match c.agent_call(host, request).await {
            Ok(_) | Err(Error::NotFound(_)) => {}
            // The host is down: delete locally. When its agent registers again, the
            // controller destroys guests it no longer has records of (hosts.rs).
            Err(Error::Unavailable(m)) if !host_is_up(c, host).await => {
                tracing::warn!(server = %s.id, error = %m, "host down: deleting locally");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(Flow::Continue)
}

/// A soft-deleted server keeps its claim: it may be restored.
async fn allocate_networks(c: &Control, op: &Operation) -> Result<Flow> {
    let s = match c.step_server(op, false).await? {
        Ok(s) => s,
        Err(flow) => return Ok(flow),
    };
    let request = op
        .params
        .get("networks")
        .cloned()
        .unwrap_or(serde_json::Value::Null);
    c.allocate_server_nics(&s, &request).await?;
    Ok(Flow::Continue)
}

async fn attach_volumes(c: &Control, op: &Operation) -> Result<Flow> {
    let s = match c.step_server(op, false).await? {
        Ok(s) => s,
        Err(flow) => return Ok(flow),
    };
    let ids: Vec<VolumeId> = op
        .params
        .get("volumes")
        .cloned()
        .map(serde_json::from_value)
        .transpose()
        .map_err(|e| Error::internal(format!("stored volume request: {e}")))?
        .unwrap_or_default();
    if !ids.is_empty() {
        c.inner
            .store
            .volumes_attach(s.id, s.project_id.clone(), ids)
            .await?;
    }
    Ok(Flow::Continue)
}

async fn detach_volumes(c: &Control, op: &Operation) -> Result<Flow> {
    c.inner.store.volumes_detach_server(op.server_id).await?;
    Ok(Flow::Continue)
}

async fn release_nics(c: &Control, op: &Operation) -> Result<Flow> {
    c.inner.store.nics_release(op.server_id).await?;
    Ok(Flow::Continue)
}

async fn delete_release(c: &Control, op: &Operation) -> Result<Flow> {
    if op
        .params
        .get("soft")
        .and_then(|v| v.as_bool())
        .unwrap_or(false)
    {
        return Ok(Flow::Continue);
    }
    c.inner.store.nics_release(op.server_id).await?;
    c.inner.store.volumes_detach_server(op.server_id).await?;
    release_claim(c, op).await
}

async fn host_is_up(c: &Control, host: HostId) -> bool {
    matches!(c.inner.store.host_get(host).await, Ok(Some(h)) if h.up)
}

async fn mark_deleted(c: &Control, op: &Operation) -> Result<Flow> {
    let soft = op
        .params
        .get("soft")
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    c.mutate_server(op.server_id, |s| {
        if s.deleted {
            return Ok(false);
        }
        let t = now();
        s.task_state = None;
        if soft {
            s.vm_state = VmState::SoftDeleted;
            s.power_state = PowerState::Shutdown;
            s.deleted_at = Some(t);
        } else {
            s.vm_state = VmState::Deleted;
            s.power_state = PowerState::NoState;
            s.deleted = true;
            s.deleted_at = Some(t);
            s.terminated_at = Some(t);
        }
        Ok(true)
    })
    .await?;
    Ok(Flow::Continue)
}

async fn host_call(
    c: &Control,
    op: &Operation,
    make: impl FnOnce(InstanceSpec) -> AgentRequest,
) -> Result<std::result::Result<(Server, PowerState), Flow>> {
    let s = match c.step_server(op, false).await? {
        Ok(s) => s,
        Err(flow) => return Ok(Err(flow)),
    };
    let host = Control::host_of(&s)?;
    let spec = c.instance_spec(&s).await?;
    let power = power_of(c.agent_call(host, make(spec)).await?)?;
    Ok(Ok((s, power)))
}

async fn simple_power_step(
    c: &Control,
    op: &Operation,
    make: impl FnOnce(InstanceSpec) -> AgentRequest,
    vm: VmState,
) -> Result<Flow> {
    let power = match host_call(c, op, make).await? {
        Ok((_, p)) => p,
        Err(flow) => return Ok(flow),
    };
    c.finish_state(op, |s| {
        s.vm_state = vm;
        s.task_state = None;
        s.power_state = power;
    })
    .await
}

async fn reboot(c: &Control, op: &Operation) -> Result<Flow> {
    let hard = op
        .params
        .get("hard")
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    simple_power_step(
        c,
        op,
        |spec| AgentRequest::Reboot { spec, hard },
        VmState::Active,
    )
    .await
}

async fn power_off(c: &Control, op: &Operation) -> Result<Flow> {
    let timeout = c.inner.config.shutdown_timeout_secs;
    simple_power_step(
        c,
        op,
        |spec| AgentRequest::PowerOff {
            spec,
            timeout_secs: timeout,
        },
        VmState::Stopped,
    )
    .await
}

async fn power_on(c: &Control, op: &Operation) -> Result<Flow> {
    simple_power_step(
        c,
        op,
        |spec| AgentRequest::PowerOn { spec },
        VmState::Active,
    )
    .await
}

async fn pause(c: &Control, op: &Operation) -> Result<Flow> {
    simple_power_step(
        c,
        op,
        |spec| AgentRequest::Pause {
            server_id: spec.server_id,
        },
        VmState::Paused,
    )
    .await
}

async fn unpause(c: &Control, op: &Operation) -> Result<Flow> {
    simple_power_step(
        c,
        op,
        |spec| AgentRequest::Unpause {
            server_id: spec.server_id,
        },
        VmState::Active,
    )
    .await
}

async fn suspend(c: &Control, op: &Operation) -> Result<Flow> {
    simple_power_step(
        c,
        op,
        |spec| AgentRequest::Suspend {
            server_id: spec.server_id,
        },
        VmState::Suspended,
    )
    .await
}

async fn resume(c: &Control, op: &Operation) -> Result<Flow> {
    simple_power_step(c, op, |spec| AgentRequest::Resume { spec }, VmState::Active).await
}

async fn restore(c: &Control, op: &Operation) -> Result<Flow> {
    simple_power_step(
        c,
        op,
        |spec| AgentRequest::PowerOn { spec },
        VmState::Active,
    )
    .await
}

fn target_flavor(op: &Operation) -> Result<nimbus_model::server::FlavorSnapshot> {
    serde_json::from_value(op.params.get("flavor").cloned().unwrap_or_default())
        .map_err(|e| Error::internal(format!("resize params: {e}")))
}

async fn resize_claim(c: &Control, op: &Operation) -> Result<Flow> {
    let s = match c.step_server(op, false).await? {
        Ok(s) => s,
        Err(flow) => return Ok(flow),
    };
    let flavor = target_flavor(op)?;
    let host = Control::host_of(&s)?;
    // Resize in place: the claim grows on the same host (Nova's allow_resize_to_same_host).
    c.claim_on(host, &s, &flavor).await?;
    c.finish_state(op, |srv| srv.task_state = Some(TaskState::ResizeMigrating))
        .await
}

async fn resize_unclaim(c: &Control, op: &Operation) -> Result<Flow> {
    // Back to the old flavor's claim.
    if let Some(s) = c.inner.store.server_get(op.server_id).await?
        && let Some(host) = s.host_id
    {
        let _ = c.claim_on(host, &s, &s.flavor).await;
    }
    Ok(Flow::Continue)
}

async fn resize_on_host(c: &Control, op: &Operation) -> Result<Flow> {
    let flavor = target_flavor(op)?;
    let was_stopped = op
        .params
        .get("was_stopped")
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    let s = match c.step_server(op, false).await? {
        Ok(s) => s,
        Err(flow) => return Ok(flow),
    };
    let host = Control::host_of(&s)?;
    let mut spec = c.instance_spec(&s).await?;
    spec.vcpus = flavor.vcpus;
    spec.ram_mb = flavor.ram_mb;
    spec.disk_gb = flavor.disk_gb;
    spec.ephemeral_gb = flavor.ephemeral_gb;
    spec.swap_mb = flavor.swap_mb;
    let mut power = power_of(
        c.agent_call(host, AgentRequest::Resize { spec: spec.clone() })
            .await?,
    )?;
    if was_stopped && power != PowerState::Shutdown {
        // Nova keeps a stopped server stopped through a resize.
        power = power_of(
            c.agent_call(
                host,
                AgentRequest::PowerOff {
                    spec,
                    timeout_secs: 0,
                },
            )
            .await?,
        )?;
    }
    c.finish_state(op, |srv| {
        srv.task_state = Some(TaskState::ResizeFinish);
        srv.power_state = power;
    })
    .await
}

async fn resize_finish(c: &Control, op: &Operation) -> Result<Flow> {
    let flavor = target_flavor(op)?;
    c.finish_state(op, |s| {
        if s.old_flavor.is_none() {
            s.old_flavor = Some(s.flavor.clone());
            s.flavor = flavor.clone();
        }
        s.vm_state = VmState::Resized;
        s.task_state = None;
        s.progress = 100;
    })
    .await
}

async fn confirm_resize(c: &Control, op: &Operation) -> Result<Flow> {
    let s = match c.step_server(op, false).await? {
        Ok(s) => s,
        Err(flow) => return Ok(flow),
    };
    let host = Control::host_of(&s)?;
    c.agent_call(host, AgentRequest::ConfirmResize { server_id: s.id })
        .await?;
    c.finish_state(op, |srv| {
        srv.old_flavor = None;
        srv.vm_state = if srv.power_state == PowerState::Shutdown {
            VmState::Stopped
        } else {
            VmState::Active
        };
        srv.task_state = None;
    })
    .await
}

async fn revert_resize(c: &Control, op: &Operation) -> Result<Flow> {
    let s = match c.step_server(op, false).await? {
        Ok(s) => s,
        Err(flow) => return Ok(flow),
    };
    let Some(old) = s.old_flavor.clone() else {
        return Ok(Flow::Continue);
    };
    let host = Control::host_of(&s)?;
    let mut spec = c.instance_spec(&s).await?;
    spec.vcpus = old.vcpus;
    spec.ram_mb = old.ram_mb;
    spec.disk_gb = old.disk_gb;
    spec.ephemeral_gb = old.ephemeral_gb;
    spec.swap_mb = old.swap_mb;
    let was_stopped = s.power_state == PowerState::Shutdown;
    let mut power = power_of(
        c.agent_call(host, AgentRequest::RevertResize { spec: spec.clone() })
            .await?,
    )?;
    if was_stopped && power != PowerState::Shutdown {
        power = power_of(
            c.agent_call(
                host,
                AgentRequest::PowerOff {
                    spec,
                    timeout_secs: 0,
                },
            )
            .await?,
        )?;
    }
    // Shrink the claim back to the old flavor (always fits: it is smaller or equal to what
    // the server held).
    let mut reverted = s.clone();
    reverted.flavor = old.clone();
    c.claim_on(host, &reverted, &old).await?;
    c.finish_state(op, |srv| {
        if let Some(old) = srv.old_flavor.take() {
            srv.flavor = old;
        }
        srv.power_state = power;
    })
    .await
}

async fn revert_finish(c: &Control, op: &Operation) -> Result<Flow> {
    c.finish_state(op, |s| {
        s.vm_state = if s.power_state == PowerState::Shutdown {
            VmState::Stopped
        } else {
            VmState::Active
        };
        s.task_state = None;
    })
    .await
}

async fn rebuild(c: &Control, op: &Operation) -> Result<Flow> {
    let s = match c.step_server(op, false).await? {
        Ok(s) => s,
        Err(flow) => return Ok(flow),
    };
    let host = Control::host_of(&s)?;
    let was_stopped = s.vm_state == VmState::Stopped;
    let spec = c.instance_spec(&s).await?;
    let mut power = power_of(
        c.agent_call(host, AgentRequest::Rebuild { spec: spec.clone() })
            .await?,
    )?;
    if was_stopped && power != PowerState::Shutdown {
        power = power_of(
            c.agent_call(
                host,
                AgentRequest::PowerOff {
                    spec,
                    timeout_secs: 0,
                },
            )
            .await?,
        )?;
    }
    c.finish_state(op, |srv| {
        srv.vm_state = if was_stopped {
            VmState::Stopped
        } else {
            VmState::Active
        };
        srv.task_state = None;
        srv.power_state = power;
        srv.progress = 100;
        srv.launched_at = Some(now());
    })
    .await
}

fn op_image(op: &Operation) -> Result<ImageId> {
    op.params
        .get("image_id")
        .and_then(|v| v.as_str())
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Error::internal("createImage without image_id"))
}

async fn snapshot(c: &Control, op: &Operation) -> Result<Flow> {
    let s = match c.step_server(op, false).await? {
        Ok(s) => s,
        Err(flow) => return Ok(flow),
    };
    let image_id = op_image(op)?;
    let host = Control::host_of(&s)?;
    let (location, disk_format) = match c
        .agent_call(
            host,
            AgentRequest::Snapshot {
                server_id: s.id,
                image_id,
            },
        )
        .await?
    {
        AgentReply::Snapshot {
            location,
            disk_format,
            ..
        } => (location, disk_format),
        other => return Err(Error::internal(format!("unexpected agent reply {other:?}"))),
    };
    // Stream the file from the agent (local or remote) into the image store, then let the
    // agent drop it.
    let bytes = c.agent_file(host, &location).await?;
    c.image_import_stream(image_id, bytes, &disk_format).await?;
    if let Err(e) = c
        .agent_call(
            host,
            AgentRequest::RemoveFile {
                location: location.clone(),
            },
        )
        .await
    {
        tracing::warn!(%location, error = %e, "agent kept a snapshot file");
    }
    c.finish_state(op, |srv| srv.task_state = None).await
}

async fn snapshot_undo(c: &Control, op: &Operation) -> Result<Flow> {
    if let Ok(id) = op_image(op) {
        c.image_mark_killed(id).await?;
    }
    Ok(Flow::Continue)
}

async fn set_password(c: &Control, op: &Operation) -> Result<Flow> {
    let s = match c.step_server(op, false).await? {
        Ok(s) => s,
        Err(flow) => return Ok(flow),
    };
    let host = Control::host_of(&s)?;
    let password = op
        .params
        .get("password")
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_owned();
    c.agent_call(
        host,
        AgentRequest::SetPassword {
            server_id: s.id,
            password,
        },
    )
    .await?;
    c.finish_state(op, |srv| srv.task_state = None).await
}

impl Control {
    /// Apply something an agent observed.
    pub(crate) async fn apply_agent_event(&self, event: nimbus_model::agent::AgentEvent) {
        use nimbus_model::agent::AgentEvent;
        match event {
            AgentEvent::Progress {
                server_id,
                progress,
            } => {
                let r = self
                    .mutate_server(server_id, |s| {
                        if s.vm_state != VmState::Building
                            && s.task_state != Some(TaskState::Rebuilding)
                        {
                            return Ok(false);
                        }
                        if s.progress >= progress {
                            return Ok(false);
                        }
                        s.progress = progress;
                        Ok(true)
                    })
                    .await;
                if let Err(e) = r {
                    tracing::debug!(server = %server_id, error = %e, "progress not recorded");
                }
            }
            AgentEvent::PowerState {
                server_id,
                power_state,
                reason,
            } => {
                if let Err(e) = self
                    .power_state_changed(server_id, power_state, &reason)
                    .await
                {
                    tracing::warn!(server = %server_id, error = %e, "power state event not applied");
                }
            }
        }
    }

    /// A guest changed power state on its own. A running server whose guest stopped or
    /// crashed becomes SHUTOFF (Nova's power-state sync), with the cause in its action log
    /// and fault; an HA server is then started again.
    pub(crate) async fn power_state_changed(
        &self,
        id: ServerId,
        power: PowerState,
        reason: &str,
    ) -> Result<()> {
        self.power_state_changed_at(id, power, reason, None).await
    }

    /// [`Self::power_state_changed`], applied only if the server is still at `generation`
    /// (when given): the observation was made against that version of the record.
    pub(crate) async fn power_state_changed_at(
        &self,
        id: ServerId,
        power: PowerState,
        reason: &str,
        generation: Option<i64>,
    ) -> Result<()> {
        let mut changed = false;
        let server = self
            .mutate_server(id, |s| {
                changed = false;
                if s.deleted || s.task_state.is_some() {
                    // An action is in flight; its own result wins.
                    return Ok(false);
                }
                if generation.is_some_and(|g| g != s.generation) {
                    return Ok(false);
                }
                s.power_state = power;
                if matches!(power, PowerState::Shutdown | PowerState::Crashed)
                    && matches!(
                        s.vm_state,
                        VmState::Active | VmState::Paused | VmState::Rescued | VmState::Resized
                    )
                {
                    s.vm_state = VmState::Stopped;
                    s.fault = Some(Fault {
                        code: 500,
                        message: format!("Instance stopped unexpectedly: {reason}"),
                        details: reason.to_owned(),
                        created: now(),
                    });
                    changed = true;
                }
                Ok(true)
            })
            .await?;
        if !changed {
            return Ok(());
        }
        let t = now();
        let ctx = Context {
            user_id: server.user_id.clone(),
            user_name: String::new(),
            project_id: server.project_id.clone(),
            project_name: String::new(),
            roles: vec![nimbus_model::identity::ROLE_ADMIN.into()],
            request_id: request_id(),
        };
        let op = Operation {
            state: OperationState::Failed,
            message: Some("Error".into()),
            finish_time: Some(t),
            ..self.new_operation(&ctx, &server, "stop", serde_json::Value::Null)
        };
        self.inner.store.operation_create(op.clone()).await?;
        self.inner
            .store
            .event_finish(OperationEvent {
                operation_id: op.id,
                event: "compute_sync_power_state".into(),
                start_time: t,
                finish_time: Some(t),
                result: Some("Error".into()),
                traceback: Some(reason.to_owned()),
                host: server.host.clone(),
                details: Some(format!(
                    "power state {} reported by the hypervisor",
                    power.as_str()
                )),
            })
            .await?;
        if server.ha {
            tracing::info!(server = %id, "HA server stopped unexpectedly; starting it again");
            self.start_action(
                &ctx,
                id,
                Action::Start,
                "start",
                serde_json::Value::Null,
                |s| {
                    s.task_state = Some(TaskState::PoweringOn);
                    Ok(())
                },
            )
            .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames_are_sanitized_like_nova() {
        assert_eq!(
            sanitize_hostname("My Server_1.example"),
            "my-server-1-example"
        );
        assert_eq!(sanitize_hostname("--ab--"), "ab");
        assert_eq!(sanitize_hostname("ünïcode✓"), "ünïcode");
        assert_eq!(sanitize_hostname(&"x".repeat(80)).len(), 63);
        assert_eq!(sanitize_hostname("!!!"), "");
    }

    #[test]
    fn every_action_with_an_operation_has_a_plan() {
        for a in [
            "create",
            "delete",
            "forceDelete",
            "reboot",
            "stop",
            "start",
            "pause",
            "unpause",
            "suspend",
            "resume",
            "resize",
            "confirmResize",
            "revertResize",
            "rebuild",
            "createImage",
            "changePassword",
            "restore",
        ] {
            assert!(plan(a).is_some(), "{a}");
        }
        assert!(plan("lock").is_none(), "lock completes in the API");
    }

    #[test]
    fn metadata_and_tag_validation() {
        let mut md = BTreeMap::new();
        md.insert("k".to_owned(), "v".to_owned());
        assert!(validate_metadata(&md).is_ok());
        md.insert("".to_owned(), "v".to_owned());
        assert!(validate_metadata(&md).is_err());
        let mut md = BTreeMap::new();
        md.insert("k".to_owned(), "v".repeat(256));
        assert!(validate_metadata(&md).is_err());
        let mut md = BTreeMap::new();
        md.insert(
            "nimbus:fault".to_owned(),
            "crash-after:5s,reboot".to_owned(),
        );
        assert!(validate_metadata(&md).is_ok());
        md.insert("nimbus:fault".to_owned(), "boom".to_owned());
        assert!(
            matches!(validate_metadata(&md), Err(Error::InvalidRequest(m)) if m.contains("boom"))
        );
        assert!(validate_tag("ok-tag").is_ok());
        assert!(validate_tag("a/b").is_err());
        assert!(validate_tag("a,b").is_err());
        assert!(validate_tag("").is_err());
        assert!(validate_tag(&"t".repeat(61)).is_err());
        let many: Vec<String> = (0..51).map(|i| i.to_string()).collect();
        assert!(validate_tags(&many).is_err());
    }

    #[test]
    fn generated_passwords() {
        let p = generate_password();
        assert_eq!(p.len(), 12);
        assert_ne!(p, generate_password());
        assert!(reservation_id().starts_with("r-"));
    }
}
