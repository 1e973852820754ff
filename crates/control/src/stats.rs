//! Statistics: a reconciler samples every running server's counters from its agent at a
//! fixed period (`Config::stats_period`) into the store; readers get raw samples or the
//! derived rate series (`nimbus_model::stats::derive`) that Cyclades graphs and VPE metrics
//! draw.

use crate::Control;
use futures::StreamExt;
use nimbus_model::agent::{AgentReply, AgentRequest, Diagnostics};
use nimbus_model::identity::Context;
use nimbus_model::server::{Server, ServerFilter, ServerPage};
use nimbus_model::state::VmState;
use nimbus_model::stats::{Point, Sample, derive};
use nimbus_model::time::now;
use nimbus_model::{Result, ServerId};
use std::time::Duration;

/// Build a sample from diagnostics.
pub fn sample_of(s: &Server, d: &Diagnostics) -> Sample {
    Sample {
        server_id: s.id,
        at: now(),
        vcpus: d.num_cpus.max(s.flavor.vcpus),
        cpu_time_ns: d.cpu_details.iter().map(|c| c.time).sum(),
        mem_used_mb: d.memory_details.used,
        mem_max_mb: d.memory_details.maximum.max(s.flavor.ram_mb),
        disk_read_bytes: d.disk_details.iter().map(|x| x.read_bytes).sum(),
        disk_write_bytes: d.disk_details.iter().map(|x| x.write_bytes).sum(),
        net_rx_bytes: d.nic_details.iter().map(|n| n.rx_octets).sum(),
        net_tx_bytes: d.nic_details.iter().map(|n| n.tx_octets).sum(),
        net_rx_packets: d.nic_details.iter().map(|n| n.rx_packets).sum(),
        net_tx_packets: d.nic_details.iter().map(|n| n.tx_packets).sum(),
    }
}

impl Control {
    /// One sampling pass over every running server.
    pub(crate) async fn sample_all(&self) -> Result<()> {
        let filter = ServerFilter {
            vm_states: Some(vec![VmState::Active, VmState::Paused, VmState::Resized]),
            ..Default::default()
        };
        let page = ServerPage {
            limit: None,
            ..Default::default()
        };
        let servers = self.inner.store.servers_list(filter, page).await?;
        let samples: Vec<Sample> = futures::stream::iter(servers)
            .filter_map(|s| async move {
                let host = s.host_id?;
                match self
                    .agent_call(host, AgentRequest::Diagnostics { server_id: s.id })
                    .await
                {
                    Ok(AgentReply::Diagnostics { diagnostics }) => {
                        Some(sample_of(&s, &diagnostics))
                    }
                    _ => None,
                }
            })
            .collect()
            .await;
        self.inner.store.samples_insert(samples).await
    }

    /// A server's raw samples over the last `window`.
    pub async fn server_samples(
        &self,
        ctx: &Context,
        id: ServerId,
        window: Duration,
    ) -> Result<Vec<Sample>> {
        self.server_get(ctx, id).await?;
        let since = now() - chrono::Duration::from_std(window).unwrap_or_default();
        self.inner.store.samples_for(id, since).await
    }

    /// A server's rate series over the last `window`.
    pub async fn server_metrics(
        &self,
        ctx: &Context,
        id: ServerId,
        window: Duration,
    ) -> Result<Vec<Point>> {
        Ok(derive(&self.server_samples(ctx, id, window).await?))
    }

    /// Sampling period (Cyclades shows it as `refresh`).
    pub fn stats_period(&self) -> Duration {
        self.inner.config.stats_period
    }

    pub(crate) async fn purge_samples(&self) -> Result<u64> {
        let keep =
            chrono::Duration::from_std(self.inner.config.stats_retention).unwrap_or_default();
        self.inner.store.samples_purge(now() - keep).await
    }
}
