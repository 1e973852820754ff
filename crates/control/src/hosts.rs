//! Compute hosts: registration of agents, heartbeats, up/down, enable/disable, and the views
//! behind os-hypervisors, os-services and os-availability-zone.

use crate::Control;
use nimbus_model::agent::{AgentReply, AgentRequest, AgentTransport, HostInfo};
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
            up: true,
            last_heartbeat: Some(t),
            capabilities: info.capabilities.clone(),
            created_at: t,
            updated_at: t,
        };
        self.inner.store.host_upsert(host).await
    }

    async fn adopt_instances(&self, host: &Host) -> Result<()> {
        let known = match self
            .agent_call(host.id, AgentRequest::ListInstances)
            .await?
        {
            AgentReply::Instances { instances } => instances,
            other => return Err(Error::internal(format!("unexpected agent reply {other:?}"))),
        };
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
            // The records say the guest runs but the host, now back, reports it off: the
            // host restarted (or lost the guest) and nobody asked for a stop. Record it as
            // the power-state sync does, which also restarts HA servers.
            if let Some(power) = observed
                && s.power_state == PowerState::Running
                && matches!(power, PowerState::Shutdown | PowerState::Crashed)
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
