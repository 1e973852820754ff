//! Compute hosts: registration of agents, heartbeats, up/down, enable/disable, and the views
//! behind os-hypervisors, os-services and os-availability-zone.

use crate::Control;
use crate::agents::{AgentTransport, HttpAgent};
use nimbus_model::agent::{AgentReply, AgentRequest, HostInfo};
use nimbus_model::host::{Host, HostUsage};
use nimbus_model::identity::Context;
use nimbus_model::state::{PowerState, VmState};
use nimbus_model::time::{Timestamp, now};
use nimbus_model::{Error, HostId, Result};
use std::sync::Arc;

/// Operator settings for a host that are not the agent's to report.
#[derive(Clone, Debug)]
pub struct HostOptions {
    pub cpu_allocation_ratio: f64,
    pub ram_allocation_ratio: f64,
    pub disk_allocation_ratio: f64,
    pub availability_zone: String,
}

impl Default for HostOptions {
    /// Nova's initial allocation ratios.
    fn default() -> Self {
        HostOptions {
            cpu_allocation_ratio: 4.0,
            ram_allocation_ratio: 1.0,
            disk_allocation_ratio: 1.0,
            availability_zone: "nova".into(),
        }
    }
}

fn require_admin(ctx: &Context, policy: &str) -> Result<()> {
    if ctx.is_admin() {
        Ok(())
    } else {
        Err(Error::Forbidden(format!(
            "Policy doesn't allow {policy} to be performed."
        )))
    }
}

impl Control {
    /// Register (or re-register) a host from its agent's self-description and make it
    /// reachable. Servers the database places on the host but the agent does not know are
    /// handed back to it (`Adopt`), so a restarted in-process fake host keeps its servers.
    /// A server recorded running that the host reports powered off (after a host restart)
    /// is treated as an unexpected stop: SHUTOFF with a fault, and restarted if it is HA.
    pub async fn register_agent(
        &self,
        address: &str,
        transport: Arc<dyn AgentTransport>,
        options: HostOptions,
    ) -> Result<Host> {
        let info = match transport.call(AgentRequest::Describe).await? {
            AgentReply::Host { info } => info,
            other => return Err(Error::internal(format!("unexpected agent reply {other:?}"))),
        };
        let host = self.upsert_host(&info, address, &options).await?;
        self.attach_agent(host.id, transport);
        self.adopt_instances(&host).await?;
        tracing::info!(host = %host.name, id = %host.id, hypervisor = %host.hypervisor_type,
            vcpus = host.vcpus, ram_mb = host.ram_mb, "compute host registered");
        Ok(host)
    }

    async fn upsert_host(&self, info: &HostInfo, address: &str, o: &HostOptions) -> Result<Host> {
        let existing = self
            .inner
            .store
            .hosts_list()
            .await?
            .into_iter()
            .find(|h| h.name == info.name);
        let t = now();
        let host = Host {
            id: existing.as_ref().map(|h| h.id).unwrap_or_default(),
            serial: 0,
            name: info.name.clone(),
            address: address.to_owned(),
            hypervisor_type: info.hypervisor_type.clone(),
            hypervisor_version: info.hypervisor_version,
            vcpus: info.vcpus,
            ram_mb: info.ram_mb,
            disk_gb: info.disk_gb,
            cpu_allocation_ratio: o.cpu_allocation_ratio,
            ram_allocation_ratio: o.ram_allocation_ratio,
            disk_allocation_ratio: o.disk_allocation_ratio,
            availability_zone: o.availability_zone.clone(),
            // An operator's disable survives re-registration.
            enabled: existing.as_ref().map(|h| h.enabled).unwrap_or(true),
            disabled_reason: existing.as_ref().and_then(|h| h.disabled_reason.clone()),
            // A forced-down host stays down (and unschedulable) until an operator lifts it.
            up: !existing.as_ref().is_some_and(|h| h.forced_down),
            forced_down: existing.as_ref().is_some_and(|h| h.forced_down),
            last_heartbeat: Some(t),
            capabilities: info.capabilities.clone(),
            created_at: t,
            updated_at: t,
        };
        self.inner.store.host_upsert(host).await
    }

    /// Reconcile a (re)registered host with the records: servers the records place there
    /// but the agent does not know are handed back (`Adopt`); guests the agent runs that
    /// the records say are deleted (or never existed) are destroyed.
    async fn adopt_instances(&self, host: &Host) -> Result<()> {
        let known = match self
            .agent_call(host.id, AgentRequest::ListInstances)
            .await?
        {
            AgentReply::Instances { instances } => instances,
            other => return Err(Error::internal(format!("unexpected agent reply {other:?}"))),
        };
        for (id, _) in &known {
            let live = self
                .inner
                .store
                .server_get(*id)
                .await?
                .is_some_and(|s| !s.deleted && s.host_id == Some(host.id));
            if !live {
                tracing::info!(server = %id, host = %host.name, "destroying a guest the records no longer have");
                if let Err(e) = self
                    .agent_call(host.id, AgentRequest::Destroy { server_id: *id })
                    .await
                {
                    tracing::warn!(server = %id, error = %e, "could not destroy an orphan guest");
                }
            }
        }
        let filter = nimbus_model::server::ServerFilter {
            host: Some(host.name.clone()),
            ..Default::default()
        };
        let page = nimbus_model::server::ServerPage {
            limit: None,
            ..Default::default()
        };
        for s in self.inner.store.servers_list(filter, page).await? {
            if s.deleted || s.vm_state == VmState::Building {
                continue;
            }
            let observed = match known.iter().find(|(id, _)| *id == s.id) {
                Some((_, power)) => Some(*power),
                None => self.adopt_one(host, &s).await?,
            };
            // The host reports another power state than the records: most often it
            // restarted and lost its guests, so a server recorded running is off and
            // nobody asked for it. Record it as the power-state sync does, which also
            // restarts HA servers.
            if let Some(power) = observed
                && power != s.power_state
                && let Err(e) = self
                    .power_state_changed(
                        s.id,
                        power,
                        &format!(
                            "compute host {} came back and reported the guest {}",
                            host.name,
                            power.as_str()
                        ),
                    )
                    .await
            {
                tracing::warn!(server = %s.id, error = %e, "power state after host restart not applied");
            }
        }
        Ok(())
    }

    /// Hand one server back to its host; returns the power state the host then reports.
    async fn adopt_one(
        &self,
        host: &Host,
        s: &nimbus_model::server::Server,
    ) -> Result<Option<PowerState>> {
        let spec = self.instance_spec(s).await?;
        let power = if s.power_state == PowerState::NoState {
            PowerState::Shutdown
        } else {
            s.power_state
        };
        match self
            .agent_call(
                host.id,
                AgentRequest::Adopt {
                    spec,
                    power_state: power,
                },
            )
            .await
        {
            Ok(AgentReply::Power { power_state }) => Ok(Some(power_state)),
            Ok(_) => Ok(None),
            Err(e) => {
                tracing::warn!(server = %s.id, error = %e, "could not hand server back to its host");
                Ok(None)
            }
        }
    }

    /// Register an agent running as its own process (`nimbus agent`): the controller calls
    /// it back at `address` over the internal API to describe the host.
    pub async fn register_remote_agent(&self, address: &str, options: HostOptions) -> Result<Host> {
        let secret = self
            .agent_secret()
            .ok_or_else(|| {
                Error::Forbidden(
                    "Remote agents are disabled: no agent secret is configured.".into(),
                )
            })?
            .to_owned();
        if !(address.starts_with("http://") || address.starts_with("https://")) {
            return Err(Error::invalid(format!(
                "Invalid agent address {address}: expected an http(s) URL."
            )));
        }
        let transport = Arc::new(HttpAgent::new(
            address,
            &secret,
            self.inner.config.agent_timeouts,
        ));
        self.register_agent(address, transport, options).await
    }

    /// After a controller restart, reach the remote hosts it already knows (their heartbeats
    /// decide whether they are up).
    pub(crate) async fn attach_known_remote_hosts(&self) -> Result<()> {
        let Some(secret) = self.agent_secret().map(str::to_owned) else {
            return Ok(());
        };
        for h in self.inner.store.hosts_list().await? {
            if h.address != "local" {
                let timeouts = self.inner.config.agent_timeouts;
                self.attach_agent(
                    h.id,
                    Arc::new(HttpAgent::new(&h.address, &secret, timeouts)),
                );
            }
        }
        Ok(())
    }

    /// Record a heartbeat from a host's agent.
    pub async fn host_heartbeat(&self, id: HostId) -> Result<()> {
        let mut host = self
            .inner
            .store
            .host_get(id)
            .await?
            .ok_or_else(|| Error::not_found(format!("host {id}")))?;
        host.last_heartbeat = Some(now());
        if host.forced_down {
            // The operator's override wins over liveness until it is lifted.
            host.updated_at = now();
            self.inner.store.host_update(host).await?;
            return Ok(());
        }
        if !host.up {
            tracing::info!(host = %host.name, "compute host is up again");
        }
        host.up = true;
        host.updated_at = now();
        self.inner.store.host_update(host).await?;
        Ok(())
    }

    /// Hosts without their usage: what a server view needs for `host_status` (admins only).
    /// Cheap (one small table), unlike [`Self::hosts_list`], which sums every allocation.
    pub async fn hosts_states(&self, ctx: &Context) -> Result<Vec<Host>> {
        require_admin(ctx, "os_compute_api:servers:show:host_status")?;
        self.inner.store.hosts_list().await
    }

    /// Hosts with usage (os-hypervisors).
    pub async fn hosts_list(&self, ctx: &Context) -> Result<Vec<HostUsage>> {
        require_admin(ctx, "os_compute_api:os-hypervisors:list")?;
        self.inner.store.host_usages().await
    }

    /// Enable or disable scheduling to a host (os-services PUT).
    pub async fn host_set_enabled(
        &self,
        ctx: &Context,
        id: HostId,
        enabled: bool,
        reason: Option<String>,
    ) -> Result<Host> {
        require_admin(ctx, "os_compute_api:os-services:update")?;
        let mut host = self
            .inner
            .store
            .host_get(id)
            .await?
            .ok_or_else(|| Error::not_found(format!("Service {id} could not be found.")))?;
        host.enabled = enabled;
        host.disabled_reason = if enabled { None } else { reason };
        host.updated_at = now();
        self.inner.store.host_update(host.clone()).await?;
        Ok(host)
    }

    /// Zones and whether any enabled, live host serves them.
    pub async fn availability_zones(&self) -> Result<Vec<(String, bool)>> {
        let mut zones: Vec<(String, bool)> = Vec::new();
        for h in self.inner.store.hosts_list().await? {
            let ok = h.enabled && h.up;
            match zones.iter_mut().find(|(z, _)| *z == h.availability_zone) {
                Some((_, avail)) => *avail |= ok,
                None => zones.push((h.availability_zone.clone(), ok)),
            }
        }
        if zones.is_empty() {
            zones.push((self.inner.config.default_availability_zone.clone(), false));
        }
        Ok(zones)
    }

    /// Nova's `_sync_power_states`: ask every up host which guests it runs and in which
    /// power state, and record a guest that stopped or crashed without being asked. Power
    /// events normally do this at once; this pass catches those an agent could not deliver
    /// or that arrived while an action was in flight (an action's own result wins, so those
    /// events are dropped). A server is only touched if it did not change between the
    /// snapshot of the records and the agent's answer (its generation), so a stale
    /// observation never overrides an action that finished meanwhile.
    pub(crate) async fn sync_power_states(&self) -> Result<()> {
        for h in self.inner.store.hosts_list().await? {
            if !h.up {
                continue;
            }
            let filter = nimbus_model::server::ServerFilter {
                host: Some(h.name.clone()),
                ..Default::default()
            };
            let page = nimbus_model::server::ServerPage {
                limit: None,
                ..Default::default()
            };
            let recorded = self.inner.store.servers_list(filter, page).await?;
            if recorded.is_empty() {
                continue;
            }
            let known = match self.agent_call(h.id, AgentRequest::ListInstances).await {
                Ok(AgentReply::Instances { instances }) => instances,
                Ok(other) => {
                    return Err(Error::internal(format!("unexpected agent reply {other:?}")));
                }
                Err(e) => {
                    tracing::debug!(host = %h.name, error = %e, "power sync: host did not answer");
                    continue;
                }
            };
            for s in recorded {
                if s.deleted || s.task_state.is_some() || s.vm_state == VmState::Building {
                    continue;
                }
                let Some((_, power)) = known.iter().find(|(id, _)| *id == s.id) else {
                    continue;
                };
                if *power == s.power_state || *power == PowerState::NoState {
                    continue;
                }
                let reason = format!(
                    "the power-state sync found the guest {} on host {}",
                    power.as_str(),
                    h.name
                );
                if let Err(e) = self
                    .power_state_changed_at(s.id, *power, &reason, Some(s.generation))
                    .await
                {
                    tracing::warn!(server = %s.id, error = %e, "power sync not applied");
                }
            }
        }
        Ok(())
    }

    /// Mark remote hosts whose heartbeats stopped as down. The in-process host has no
    /// heartbeat to miss.
    pub(crate) async fn expire_hosts(&self) -> Result<()> {
        let limit =
            chrono::Duration::from_std(self.inner.config.service_down_time).unwrap_or_default();
        for mut h in self.inner.store.hosts_list().await? {
            if h.address == "local" || !h.up {
                continue;
            }
            if h.last_heartbeat.is_none_or(|t| now() - t > limit) {
                tracing::warn!(host = %h.name, "compute host missed its heartbeats: marking it down");
                h.up = false;
                h.updated_at = now();
                self.inner.store.host_update(h).await?;
            }
        }
        Ok(())
    }
}

/// The binaries os-services reports: one `nova-compute` per host, plus the controller's own
/// scheduler and conductor (Nimbus runs both inside the controller process, so they are up
/// whenever it answers).
pub const BINARY_COMPUTE: &str = "nova-compute";
pub const BINARY_SCHEDULER: &str = "nova-scheduler";
pub const BINARY_CONDUCTOR: &str = "nova-conductor";
/// Nova's `internal_service_availability_zone`: where non-compute services live.
pub const INTERNAL_ZONE: &str = "internal";

/// One row of os-services (and the per-host entries of os-availability-zone detail).
#[derive(Clone, Debug)]
pub struct ServiceInfo {
    pub binary: &'static str,
    pub host: String,
    pub zone: String,
    /// Integer id (os-services before microversion 2.53): 1 and 2 for the controller's
    /// scheduler and conductor, `2 + host serial` for a compute service.
    pub id: i64,
    /// UUID (2.53 on), derived from the host id or name so it is stable across restarts and
    /// distinct from the hypervisor (host) id.
    pub uuid: uuid::Uuid,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub up: bool,
    pub forced_down: bool,
    pub updated_at: Timestamp,
    /// The compute host behind a `nova-compute` service.
    pub host_id: Option<HostId>,
}

/// How a request names a service.
#[derive(Clone, Debug)]
pub enum ServiceRef {
    Id(i64),
    Uuid(uuid::Uuid),
    /// The legacy (≤ 2.52) `PUT /os-services/{action}` body.
    HostBinary {
        host: String,
        binary: String,
    },
}

impl std::fmt::Display for ServiceRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServiceRef::Id(i) => write!(f, "{i}"),
            ServiceRef::Uuid(u) => write!(f, "{u}"),
            ServiceRef::HostBinary { host, binary } => write!(f, "{binary}@{host}"),
        }
    }
}

/// An os-services update: `status` (enabled, disabled reason) and/or `forced_down`.
#[derive(Clone, Debug, Default)]
pub struct ServiceChange {
    pub status: Option<(bool, Option<String>)>,
    pub forced_down: Option<bool>,
}

/// One zone of os-availability-zone. `hosts` is filled for available zones in the detailed
/// view only: host name → its enabled services.
#[derive(Clone, Debug)]
pub struct ZoneInfo {
    pub name: String,
    pub available: bool,
    pub hosts: Option<Vec<(String, Vec<ServiceInfo>)>>,
}

/// A UUID (version-5 layout) from a SHA-1 of `name`: stable ids for records Nimbus derives
/// rather than stores.
fn derived_uuid(name: &str) -> uuid::Uuid {
    use sha1::Digest as _;
    let digest = sha1::Sha1::digest(format!("nimbus-service:{name}").as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    b[6] = (b[6] & 0x0f) | 0x50;
    b[8] = (b[8] & 0x3f) | 0x80;
    uuid::Uuid::from_bytes(b)
}

/// The controller's host name, as the scheduler and conductor services report it.
pub fn controller_host() -> &'static str {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "nimbus".to_owned())
    })
}

/// `uptime(1)`-style line for the machine the controller runs on (Nova's hypervisor
/// `uptime` is the host's `uptime` output). `None` where /proc is not available.
fn local_uptime() -> Option<String> {
    let up: f64 = std::fs::read_to_string("/proc/uptime")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let load = std::fs::read_to_string("/proc/loadavg").ok()?;
    let l: Vec<&str> = load.split_whitespace().take(3).collect();
    if l.len() < 3 {
        return None;
    }
    let secs = up as u64;
    let (days, hours, mins) = (secs / 86400, (secs % 86400) / 3600, (secs % 3600) / 60);
    let clock = now().format("%H:%M:%S");
    Some(format!(
        " {clock} up {days} days, {hours:2}:{mins:02},  load average: {}, {}, {}",
        l[0], l[1], l[2]
    ))
}

impl Control {
    /// The `nova-compute` service record of a host.
    pub fn compute_service(&self, h: &Host) -> ServiceInfo {
        ServiceInfo {
            binary: BINARY_COMPUTE,
            host: h.name.clone(),
            zone: h.availability_zone.clone(),
            id: 2 + h.serial,
            uuid: derived_uuid(&format!("{BINARY_COMPUTE}:{}", h.id)),
            enabled: h.enabled,
            disabled_reason: h.disabled_reason.clone(),
            up: h.up && !h.forced_down,
            forced_down: h.forced_down,
            // The in-process host is alive exactly as long as the controller is.
            updated_at: if h.address == "local" && h.up {
                now()
            } else {
                h.last_heartbeat.unwrap_or(h.updated_at)
            },
            host_id: Some(h.id),
        }
    }

    fn controller_service(binary: &'static str, id: i64) -> ServiceInfo {
        let host = controller_host().to_owned();
        ServiceInfo {
            binary,
            uuid: derived_uuid(&format!("{binary}:{host}")),
            host,
            zone: INTERNAL_ZONE.to_owned(),
            id,
            enabled: true,
            disabled_reason: None,
            up: true,
            forced_down: false,
            updated_at: now(),
            host_id: None,
        }
    }

    /// Every service, controller ones first, computes by host serial.
    async fn all_services(&self) -> Result<Vec<ServiceInfo>> {
        let mut out = vec![
            Self::controller_service(BINARY_SCHEDULER, 1),
            Self::controller_service(BINARY_CONDUCTOR, 2),
        ];
        for h in self.inner.store.hosts_list().await? {
            out.push(self.compute_service(&h));
        }
        Ok(out)
    }

    /// os-services list (admin).
    pub async fn services_list(&self, ctx: &Context) -> Result<Vec<ServiceInfo>> {
        require_admin(ctx, "os_compute_api:os-services:list")?;
        self.all_services().await
    }

    async fn find_service(&self, r: &ServiceRef) -> Result<Option<ServiceInfo>> {
        Ok(self.all_services().await?.into_iter().find(|s| match r {
            ServiceRef::Id(i) => s.id == *i,
            ServiceRef::Uuid(u) => s.uuid == *u,
            ServiceRef::HostBinary { host, binary } => s.host == *host && s.binary == binary,
        }))
    }

    /// os-services update (admin): enable/disable with a reason, and/or force down. Only
    /// compute services can be updated, as in Nova.
    pub async fn service_update(
        &self,
        ctx: &Context,
        r: &ServiceRef,
        change: ServiceChange,
    ) -> Result<ServiceInfo> {
        require_admin(ctx, "os_compute_api:os-services:update")?;
        let not_compute = |binary: &str| {
            Error::invalid(format!(
                "Updating a {binary} service is not supported. Only nova-compute services can be updated."
            ))
        };
        // The legacy actions name the binary in the body and Nova checks it before looking.
        if let ServiceRef::HostBinary { binary, .. } = r
            && binary != BINARY_COMPUTE
        {
            return Err(not_compute(binary));
        }
        let svc = self.find_service(r).await?.ok_or_else(|| match r {
            ServiceRef::HostBinary { host, binary } => {
                Error::not_found(format!("Could not find binary {binary} on host {host}."))
            }
            other => Error::not_found(format!("Service {other} could not be found.")),
        })?;
        let Some(host_id) = svc.host_id else {
            return Err(not_compute(svc.binary));
        };
        let mut host = self
            .inner
            .store
            .host_get(host_id)
            .await?
            .ok_or_else(|| Error::not_found(format!("Service {r} could not be found.")))?;
        if let Some((enabled, reason)) = change.status {
            host.enabled = enabled;
            host.disabled_reason = if enabled { None } else { reason };
        }
        if let Some(forced) = change.forced_down {
            host.forced_down = forced;
            host.up = !forced && self.heartbeat_alive(&host);
            tracing::info!(host = %host.name, forced_down = forced, "compute service forced_down changed");
        }
        host.updated_at = now();
        self.inner.store.host_update(host.clone()).await?;
        Ok(self.compute_service(&host))
    }

    /// Whether a host's agent counts as alive by its heartbeats alone.
    fn heartbeat_alive(&self, h: &Host) -> bool {
        if h.address == "local" {
            return true;
        }
        let limit =
            chrono::Duration::from_std(self.inner.config.service_down_time).unwrap_or_default();
        h.last_heartbeat.is_some_and(|t| now() - t <= limit)
    }

    /// os-services delete (admin). A compute service hosting servers is refused (409) as in
    /// Nova; the controller's own services cannot be deleted.
    pub async fn service_delete(&self, ctx: &Context, r: &ServiceRef) -> Result<()> {
        require_admin(ctx, "os_compute_api:os-services:delete")?;
        let svc = self
            .find_service(r)
            .await?
            .ok_or_else(|| Error::not_found(format!("Service {r} not found.")))?;
        let Some(host_id) = svc.host_id else {
            return Err(Error::Conflict(format!(
                "The {} service runs inside the Nimbus controller and cannot be deleted.",
                svc.binary
            )));
        };
        let Some(mut host) = self.inner.store.host_get(host_id).await? else {
            return Err(Error::not_found(format!("Service {r} not found.")));
        };
        // Disable first: claims check `enabled` in their own transaction, so no server can
        // land on the host between the emptiness check and the delete.
        let was_enabled = host.enabled;
        if was_enabled {
            host.enabled = false;
            self.inner.store.host_update(host.clone()).await?;
        }
        let busy = !self.servers_on_host(&host.name).await?.is_empty()
            || self
                .inner
                .store
                .host_usages()
                .await?
                .iter()
                .any(|u| u.host.id == host_id && u.servers > 0);
        if busy {
            if was_enabled {
                host.enabled = true;
                self.inner.store.host_update(host).await?;
            }
            return Err(Error::Conflict(
                "Unable to delete compute service that is hosting instances. Migrate or delete the instances first."
                    .into(),
            ));
        }
        self.inner.store.host_delete(host_id).await?;
        self.detach_agent(host_id);
        tracing::info!(host = %host.name, "compute service deleted");
        Ok(())
    }

    async fn servers_on_host(&self, host: &str) -> Result<Vec<nimbus_model::server::Server>> {
        let filter = nimbus_model::server::ServerFilter {
            host: Some(host.to_owned()),
            ..Default::default()
        };
        let page = nimbus_model::server::ServerPage {
            sort: vec![
                (
                    nimbus_model::server::ServerSortKey::CreatedAt,
                    nimbus_model::server::SortDir::Asc,
                ),
                (
                    nimbus_model::server::ServerSortKey::Id,
                    nimbus_model::server::SortDir::Asc,
                ),
            ],
            marker: None,
            limit: None,
        };
        Ok(self
            .inner
            .store
            .servers_list(filter, page)
            .await?
            .into_iter()
            .filter(|s| !s.deleted)
            .collect())
    }

    /// Live servers on a host, every project (os-hypervisors `with_servers`; admin).
    pub async fn host_servers(
        &self,
        ctx: &Context,
        host: &str,
    ) -> Result<Vec<nimbus_model::server::Server>> {
        require_admin(ctx, "os_compute_api:os-hypervisors:servers")?;
        self.servers_on_host(host).await
    }

    /// The host's `uptime` line, where known: the controller's machine for the in-process
    /// host, what a remote agent reported (`capabilities.uptime`) otherwise.
    pub fn host_uptime(&self, h: &Host) -> Option<String> {
        if h.address == "local" {
            return local_uptime();
        }
        h.capabilities
            .get("uptime")
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    }

    /// os-availability-zone. Zones with an enabled service are available (Nova does not
    /// look at liveness here); the controller's `internal` zone appears in the detailed
    /// (admin) view only.
    pub async fn availability_zone_info(
        &self,
        ctx: &Context,
        detail: bool,
    ) -> Result<Vec<ZoneInfo>> {
        if detail {
            require_admin(ctx, "os_compute_api:os-availability-zone:detail")?;
        }
        let services = self.all_services().await?;
        let mut available: Vec<String> = services
            .iter()
            .filter(|s| s.enabled)
            .map(|s| s.zone.clone())
            .collect();
        available.sort();
        available.dedup();
        let mut unavailable: Vec<String> = services
            .iter()
            .filter(|s| !s.enabled && !available.contains(&s.zone))
            .map(|s| s.zone.clone())
            .collect();
        unavailable.sort();
        unavailable.dedup();
        let mut out = Vec::new();
        for zone in available {
            if !detail {
                if zone != INTERNAL_ZONE {
                    out.push(ZoneInfo {
                        name: zone,
                        available: true,
                        hosts: None,
                    });
                }
                continue;
            }
            let mut hosts: Vec<(String, Vec<ServiceInfo>)> = Vec::new();
            for s in services.iter().filter(|s| s.enabled && s.zone == zone) {
                match hosts.iter_mut().find(|(h, _)| *h == s.host) {
                    Some((_, list)) => list.push(s.clone()),
                    None => hosts.push((s.host.clone(), vec![s.clone()])),
                }
            }
            out.push(ZoneInfo {
                name: zone,
                available: true,
                hosts: Some(hosts),
            });
        }
        for zone in unavailable {
            if zone == INTERNAL_ZONE && !detail {
                continue;
            }
            out.push(ZoneInfo {
                name: zone,
                available: false,
                hosts: None,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_uuids_are_stable_distinct_and_well_formed() {
        let a = derived_uuid("nova-compute:x");
        assert_eq!(a, derived_uuid("nova-compute:x"));
        assert_ne!(a, derived_uuid("nova-compute:y"));
        assert_eq!(a.get_version_num(), 5);
        assert_eq!(a.get_variant(), uuid::Variant::RFC4122);
    }

    #[test]
    fn uptime_line_looks_like_uptime() {
        if let Some(u) = local_uptime() {
            assert!(u.contains(" up ") && u.contains("load average:"), "{u}");
        }
    }
}
