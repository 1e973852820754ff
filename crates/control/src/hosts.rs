//! Compute hosts: registration of agents, heartbeats, up/down, enable/disable, and the views
//! behind os-hypervisors, os-services and os-availability-zone.

use crate::Control;
use crate::agents::{AgentTransport, HttpAgent};
use nimbus_model::agent::{AgentReply, AgentRequest, HostInfo};
use nimbus_model::host::{Host, HostUsage};
use nimbus_model::identity::Context;
use nimbus_model::state::{PowerState, VmState};
use nimbus_model::time::now;
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
            up: true,
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
            if s.deleted
                || s.vm_state == VmState::Building
                || known.iter().any(|(id, _)| *id == s.id)
            {
                continue;
            }
            let spec = self.instance_spec(&s).await?;
            let power = if s.power_state == PowerState::NoState {
                PowerState::Shutdown
            } else {
                s.power_state
            };
            if let Err(e) = self
                .agent_call(
                    host.id,
                    AgentRequest::Adopt {
                        spec,
                        power_state: power,
                    },
                )
                .await
            {
                tracing::warn!(server = %s.id, error = %e, "could not hand server back to its host");
            }
        }
        Ok(())
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
        let transport = Arc::new(HttpAgent::new(address, &secret));
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
                self.attach_agent(h.id, Arc::new(HttpAgent::new(&h.address, &secret)));
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
        if !host.up {
            tracing::info!(host = %host.name, "compute host is up again");
        }
        host.up = true;
        host.updated_at = now();
        self.inner.store.host_update(host).await?;
        Ok(())
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
