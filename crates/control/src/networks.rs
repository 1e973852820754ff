//! The network service: the special `public` network every server joins, private
//! networks (Cyclades), connecting and disconnecting servers (NICs), firewall profiles.
//!
//! Addresses are allocated by the store in one transaction per NIC (no duplicate IP or
//! MAC under concurrency). Networks are created PENDING and become ACTIVE once set up, as
//! Cyclades reports.

use crate::Control;
use nimbus_model::agent::{AgentRequest, NicSpec};
use nimbus_model::identity::Context;
use nimbus_model::network::{
    FirewallProfile, Ipv4Cidr, Network, NetworkCreate, NetworkStatus, NetworkType, Nic,
    parse_ipv6_cidr,
};
use nimbus_model::server::Server;
use nimbus_model::time::now;
use nimbus_model::{Error, NetworkId, Result, ServerId};
use nimbus_store::NicAllocation;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Cyclades' default IPv4 pool for a new network.
pub const DEFAULT_CIDR: &str = "192.168.1.0/24";

fn forbid_public(n: &Network) -> Result<()> {
    if n.public {
        return Err(Error::Forbidden(
            "The public network cannot be modified.".into(),
        ));
    }
    Ok(())
}

impl Control {
    /// Create the public network on first start (it gets serial 1 on a fresh database).
    pub async fn ensure_public_network(&self) -> Result<Network> {
        if let Some(n) = self
            .inner
            .store
            .networks_list(None)
            .await?
            .into_iter()
            .find(|n| n.public)
        {
            return Ok(n);
        }
        let cfg = &self.inner.config;
        let cidr = Ipv4Cidr::parse(&cfg.public_cidr)
            .map_err(|e| Error::invalid(format!("public network cidr: {e}")))?;
        if let Some(c6) = &cfg.public_cidr6 {
            parse_ipv6_cidr(c6)
                .map_err(|e| Error::invalid(format!("public network cidr6: {e}")))?;
        }
        let t = now();
        self.inner
            .store
            .network_create(Network {
                id: NetworkId::new(),
                serial: 0,
                name: "public".into(),
                kind: NetworkType::Custom,
                cidr: Some(cidr.to_string_cidr()),
                gateway: cidr.default_gateway().map(|g| g.to_string()),
                cidr6: cfg.public_cidr6.clone(),
                gateway6: None,
                dhcp: true,
                public: true,
                shared: true,
                project_id: None,
                status: NetworkStatus::Active,
                created_at: t,
                updated_at: t,
                deleted: false,
                generation: 1,
            })
            .await
    }

    /// The shared `public` network every server joins (created at first start).
    pub async fn public_network(&self) -> Result<Network> {
        self.inner
            .store
            .networks_list(None)
            .await?
            .into_iter()
            .find(|n| n.public)
            .ok_or_else(|| Error::internal("the public network is missing"))
    }

    fn network_visible(ctx: &Context, n: &Network) -> bool {
        n.shared || ctx.is_admin() || n.project_id.as_ref() == Some(&ctx.project_id)
    }

    pub async fn networks_list(&self, ctx: &Context) -> Result<Vec<Network>> {
        self.inner
            .store
            .networks_list(Some(ctx.project_id.clone()))
            .await
    }

    pub async fn network_get(&self, ctx: &Context, id: NetworkId) -> Result<Network> {
        self.inner
            .store
            .network_get(id)
            .await?
            .filter(|n| Self::network_visible(ctx, n))
            .ok_or_else(|| Error::not_found(format!("Network {id} could not be found.")))
    }

    /// By serial, deleted ones included (`deleted` set); every change below refuses them.
    pub async fn network_get_by_serial(&self, ctx: &Context, serial: i64) -> Result<Network> {
        self.inner
            .store
            .network_get_by_serial(serial)
            .await?
            .filter(|n| Self::network_visible(ctx, n))
            .ok_or_else(|| Error::not_found(format!("Network {serial} could not be found.")))
    }

    /// Create a private network (PENDING, ACTIVE once set up).
    pub async fn network_create(&self, ctx: &Context, req: NetworkCreate) -> Result<Network> {
        if !ctx.can_write() {
            return Err(Error::Forbidden(
                "The reader role cannot create networks.".into(),
            ));
        }
        let name = req.name.trim();
        if name.is_empty() || req.name.chars().count() > 255 {
            return Err(Error::invalid(
                "Invalid network name: it must be 1-255 characters.",
            ));
        }
        let cidr = match (&req.cidr, req.kind) {
            (Some(c), _) => {
                Some(Ipv4Cidr::parse(c).map_err(|e| Error::invalid(format!("Invalid cidr: {e}")))?)
            }
            (None, NetworkType::IpLessRouted) => None,
            (None, _) => Some(Ipv4Cidr::parse(DEFAULT_CIDR).map_err(Error::internal)?),
        };
        if let Some(c) = &cidr
            && c.prefix > 29
        {
            return Err(Error::invalid(format!(
                "Invalid cidr: /{} is too small for a network (at most /29).",
                c.prefix
            )));
        }
        let gateway = match &req.gateway {
            Some(g) => {
                let ip: Ipv4Addr = g.parse().map_err(|_| {
                    Error::invalid(format!("Invalid gateway: '{g}' is not an IPv4 address."))
                })?;
                let c = cidr.ok_or_else(|| Error::invalid("A gateway needs a cidr."))?;
                if !c.hosts().any(|h| h == ip) {
                    return Err(Error::invalid(format!(
                        "Invalid gateway: {g} is not a host address of {}.",
                        c.to_string_cidr()
                    )));
                }
                Some(g.clone())
            }
            None => None,
        };
        if let Some(c6) = &req.cidr6 {
            parse_ipv6_cidr(c6).map_err(|e| Error::invalid(format!("Invalid cidr6: {e}")))?;
        }
        if let Some(g6) = &req.gateway6 {
            g6.parse::<Ipv6Addr>().map_err(|_| {
                Error::invalid(format!("Invalid gateway6: '{g6}' is not an IPv6 address."))
            })?;
            if req.cidr6.is_none() {
                return Err(Error::invalid("A gateway6 needs a cidr6."));
            }
        }
        let t = now();
        let net = self
            .inner
            .store
            .network_create(Network {
                id: NetworkId::new(),
                serial: 0,
                name: req.name,
                kind: req.kind,
                cidr: cidr.map(|c| c.to_string_cidr()),
                gateway,
                cidr6: req.cidr6,
                gateway6: req.gateway6,
                dhcp: req.dhcp,
                public: false,
                shared: false,
                project_id: Some(ctx.project_id.clone()),
                status: NetworkStatus::Pending,
                created_at: t,
                updated_at: t,
                deleted: false,
                generation: 1,
            })
            .await?;
        let control = self.clone();
        tokio::spawn(async move {
            // Setting a network up is asynchronous (the datapath comes up on the hosts).
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            if let Err(e) = control.activate_pending_networks().await {
                tracing::warn!(error = %e, "activating networks");
            }
        });
        Ok(net)
    }

    /// PENDING networks become ACTIVE (also run at start, for networks created just before
    /// a restart).
    pub(crate) async fn activate_pending_networks(&self) -> Result<()> {
        for mut n in self.inner.store.networks_list(None).await? {
            if n.status == NetworkStatus::Pending {
                n.status = NetworkStatus::Active;
                n.updated_at = now();
                self.inner.store.network_update(n).await?;
            }
        }
        Ok(())
    }

    pub async fn network_rename(
        &self,
        ctx: &Context,
        id: NetworkId,
        name: &str,
    ) -> Result<Network> {
        if name.trim().is_empty() || name.chars().count() > 255 {
            return Err(Error::invalid(
                "Invalid network name: it must be 1-255 characters.",
            ));
        }
        for _ in 0..100 {
            let mut n = self.network_get(ctx, id).await?;
            forbid_public(&n)?;
            n.name = name.to_owned();
            n.updated_at = now();
            if let Some(stored) = self.inner.store.network_update(n).await? {
                return Ok(stored);
            }
        }
        Err(Error::internal(
            "network rename: too many concurrent writers",
        ))
    }

    /// Delete a network; refused (`InUse`) while servers are connected.
    pub async fn network_delete(&self, ctx: &Context, id: NetworkId) -> Result<()> {
        let n = self.network_get(ctx, id).await?;
        forbid_public(&n)?;
        self.inner.store.network_delete(id).await
    }

    pub async fn network_nics(&self, ctx: &Context, id: NetworkId) -> Result<Vec<Nic>> {
        self.network_get(ctx, id).await?;
        self.inner.store.nics_for_network(id).await
    }

    /// What the agent needs to know about a NIC.
    pub(crate) async fn nic_spec(&self, nic: &Nic) -> Result<NicSpec> {
        let net = self.inner.store.network_get(nic.network_id).await?;
        let prefix = net
            .as_ref()
            .and_then(|n| n.cidr.as_deref())
            .and_then(|c| Ipv4Cidr::parse(c).ok())
            .map(|c| c.prefix);
        Ok(NicSpec {
            id: nic.id.to_string(),
            network_id: nic.network_id.to_string(),
            mac: nic.mac.clone(),
            ipv4: nic.ipv4.clone(),
            ipv4_prefix: prefix,
            gateway: net.as_ref().and_then(|n| n.gateway.clone()),
            ipv6: nic.ipv6.clone(),
            dhcp: net.as_ref().is_some_and(|n| n.dhcp),
            firewall: nic.firewall.as_str().to_owned(),
        })
    }

    /// Connect a server to a network: a new NIC, hot-plugged if the server runs somewhere.
    pub async fn network_connect(
        &self,
        ctx: &Context,
        id: NetworkId,
        server: ServerId,
    ) -> Result<Nic> {
        let n = self.network_get(ctx, id).await?;
        forbid_public(&n)?;
        let s = self.server_get(ctx, server).await?;
        Self::require_writer(ctx)?;
        let nic = self
            .inner
            .store
            .nic_allocate(NicAllocation {
                server_id: s.id,
                server_serial: s.serial,
                network_id: id,
                firewall: FirewallProfile::Disabled,
                fixed_ip: None,
            })
            .await?;
        self.touch_server(s.id).await?;
        if let Some(host) = s.host_id {
            let spec = self.nic_spec(&nic).await?;
            if let Err(e) = self
                .agent_call(
                    host,
                    AgentRequest::AttachNic {
                        server_id: s.id,
                        nic: spec,
                    },
                )
                .await
            {
                // Keep the records consistent with the host: no NIC if it could not be plugged.
                self.inner.store.nic_delete(nic.id).await?;
                self.touch_server(s.id).await?;
                return Err(e);
            }
        }
        Ok(nic)
    }

    /// Disconnect a server from a network: every NIC it has there goes away.
    pub async fn network_disconnect(
        &self,
        ctx: &Context,
        id: NetworkId,
        server: ServerId,
    ) -> Result<()> {
        let n = self.network_get(ctx, id).await?;
        forbid_public(&n)?;
        let s = self.server_get(ctx, server).await?;
        Self::require_writer(ctx)?;
        let nics: Vec<Nic> = s
            .nics
            .iter()
            .filter(|nic| nic.network_id == id)
            .cloned()
            .collect();
        if nics.is_empty() {
            return Err(Error::not_found(format!(
                "Server {} is not connected to network {id}.",
                s.serial
            )));
        }
        for nic in nics {
            if let Some(host) = s.host_id {
                match self
                    .agent_call(
                        host,
                        AgentRequest::DetachNic {
                            server_id: s.id,
                            mac: nic.mac.clone(),
                        },
                    )
                    .await
                {
                    Ok(_) | Err(Error::NotFound(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            self.inner.store.nic_delete(nic.id).await?;
        }
        self.touch_server(s.id).await?;
        Ok(())
    }

    /// Set a NIC's firewall profile (`nic` names it by Cyclades id `nic-<serial>-<n>`, UUID
    /// or MAC; `None` = the server's public NIC).
    pub async fn nic_set_firewall(
        &self,
        ctx: &Context,
        server: ServerId,
        nic: Option<&str>,
        profile: FirewallProfile,
    ) -> Result<Nic> {
        Self::require_writer(ctx)?;
        let s = self.server_get(ctx, server).await?;
        let target = match nic {
            Some(r) => s
                .nics
                .iter()
                .find(|n| n.cyclades_id() == r || n.id.to_string() == r || n.mac == r),
            None => {
                let public = self.public_network().await?;
                s.nics.iter().find(|n| n.network_id == public.id)
            }
        }
        .cloned()
        .ok_or_else(|| {
            Error::not_found(format!(
                "NIC {} of server {} could not be found.",
                nic.unwrap_or("(public)"),
                s.serial
            ))
        })?;
        let updated = self
            .inner
            .store
            .nic_set_firewall(target.id, profile)
            .await?
            .ok_or_else(|| Error::not_found("NIC vanished"))?;
        if let Some(host) = s.host_id {
            match self
                .agent_call(
                    host,
                    AgentRequest::SetFirewall {
                        server_id: s.id,
                        mac: target.mac.clone(),
                        profile: profile.as_str().to_owned(),
                    },
                )
                .await
            {
                Ok(_) | Err(Error::NotFound(_)) => {}
                Err(e) => {
                    // The record was written first so a concurrent reboot plugs the NIC in
                    // with the new profile; the host refused it, so put the old one back
                    // rather than let the database and the host disagree.
                    self.inner
                        .store
                        .nic_set_firewall(target.id, target.firewall)
                        .await?;
                    return Err(e);
                }
            }
        }
        self.touch_server(s.id).await?;
        Ok(updated)
    }

    /// Bump a server's `updated` so changes-since pollers see NIC changes.
    async fn touch_server(&self, id: ServerId) -> Result<Server> {
        self.mutate_server(id, |_| Ok(true)).await
    }

    /// Allocate a new server's NICs from its create request (`auto`: the public network).
    pub(crate) async fn allocate_server_nics(
        &self,
        s: &Server,
        request: &serde_json::Value,
    ) -> Result<()> {
        if !s.nics.is_empty() {
            // Resumed after the allocation was recorded.
            return Ok(());
        }
        let mut wanted: Vec<(NetworkId, Option<String>)> = Vec::new();
        match request {
            serde_json::Value::String(s) if s == "none" => {}
            serde_json::Value::Array(items) => {
                for item in items {
                    let id = item
                        .get("network_id")
                        .and_then(|v| v.as_str())
                        .and_then(|v| v.parse::<NetworkId>().ok())
                        .ok_or_else(|| Error::internal("bad stored network request"))?;
                    wanted.push((
                        id,
                        item.get("fixed_ip")
                            .and_then(|v| v.as_str())
                            .map(str::to_owned),
                    ));
                }
            }
            _ => wanted.push((self.public_network().await?.id, None)),
        }
        for (network_id, fixed_ip) in wanted {
            self.inner
                .store
                .nic_allocate(NicAllocation {
                    server_id: s.id,
                    server_serial: s.serial,
                    network_id,
                    firewall: FirewallProfile::Disabled,
                    fixed_ip,
                })
                .await?;
        }
        Ok(())
    }
}
