//! The agent registry (how `control` reaches each host's agent) and the event channel agents
//! report into.

use crate::Control;
use async_trait::async_trait;
use nimbus_model::agent::{AgentEvent, AgentReply, AgentRequest, AgentTransport, EventSink};
use nimbus_model::{Error, HostId, Result};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use tokio::sync::mpsc;

/// Host id → transport.
#[derive(Default)]
pub(crate) struct Registry {
    agents: RwLock<HashMap<HostId, Arc<dyn AgentTransport>>>,
}

/// An [`EventSink`] that forwards into `control`'s event loop. Give one to each in-process
/// agent; remote agents post their events to the internal API, which feeds the same loop.
#[derive(Clone)]
pub struct EventChannel {
    tx: mpsc::UnboundedSender<AgentEvent>,
}

#[async_trait]
impl EventSink for EventChannel {
    async fn report(&self, event: AgentEvent) {
        // The receiver lives as long as `control`; a send after shutdown is dropped.
        let _ = self.tx.send(event);
    }
}

impl Control {
    /// A sink for an agent's events, and start the loop that applies them.
    pub fn event_channel(&self) -> EventChannel {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let control = self.clone();
        tokio::spawn(async move {
            while let Some(event) = rx.recv().await {
                control.apply_agent_event(event).await;
            }
        });
        EventChannel { tx }
    }

    /// Make `host` reachable through `transport`.
    pub fn attach_agent(&self, host: HostId, transport: Arc<dyn AgentTransport>) {
        self.inner
            .agents
            .agents
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(host, transport);
    }

    pub fn detach_agent(&self, host: HostId) {
        self.inner
            .agents
            .agents
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&host);
    }

    /// Send one request to a host's agent.
    pub(crate) async fn agent_call(
        &self,
        host: HostId,
        request: AgentRequest,
    ) -> Result<AgentReply> {
        let transport = self
            .inner
            .agents
            .agents
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&host)
            .cloned()
            .ok_or_else(|| Error::Unavailable(format!("Compute host {host} is not reachable.")))?;
        transport.call(request).await
    }
}
