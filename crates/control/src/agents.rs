//! How `control` reaches compute agents: the [`AgentTransport`] trait (implemented here
//! over HTTP by [`HttpAgent`], and in-process by the binary's adapter), the registry of
//! host → transport, and the event channel in-process agents report into.

use crate::Control;
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use nimbus_model::agent::{AgentError, AgentEvent, AgentReply, AgentRequest, EventSink};
use nimbus_model::{Error, HostId, Result};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::mpsc;

/// A stream of file bytes from an agent.
pub type FileStream = BoxStream<'static, std::io::Result<Bytes>>;

/// How the controller reaches one agent.
#[async_trait]
pub trait AgentTransport: Send + Sync {
    async fn call(&self, request: AgentRequest) -> Result<AgentReply>;
    /// Stream a file the agent produced (a snapshot at `location`).
    async fn open_file(&self, location: &str) -> Result<FileStream>;
}

/// How long the controller waits for an agent's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AgentTimeouts {
    /// Requests that only read or flip a flag (describe, list, console, VNC, diagnostics,
    /// pause, firewall, ...): an agent that takes longer is stuck, and the operation
    /// should fail rather than hold its server's task for ten minutes.
    pub quick: Duration,
    /// Requests that build, boot, copy or wait for a guest (spawn, rebuild, resize,
    /// snapshot, reboot, start, suspend, destroy, NIC hot-plug, ...), and the stream of a
    /// snapshot file.
    pub long: Duration,
}

impl Default for AgentTimeouts {
    fn default() -> Self {
        AgentTimeouts {
            quick: Duration::from_secs(30),
            long: Duration::from_secs(600),
        }
    }
}

/// How long to wait for `request`. A stop waits for the guest's own grace period
/// (`timeout_secs`) before QEMU is quit, so it gets that on top of a quick call. Every
/// request kind is named, so a new one has to choose.
pub fn call_timeout(request: &AgentRequest, t: AgentTimeouts) -> Duration {
    use AgentRequest as R;
    match request {
        R::Describe
        | R::ListInstances
        | R::Pause { .. }
        | R::Unpause { .. }
        | R::ConfirmResize { .. }
        | R::ConsoleOutput { .. }
        | R::VncConsole { .. }
        | R::Diagnostics { .. }
        | R::SetPassword { .. }
        | R::SetFirewall { .. }
        | R::RemoveFile { .. } => t.quick,
        R::PowerOff { timeout_secs, .. } => t.quick + Duration::from_secs(u64::from(*timeout_secs)),
        R::Spawn { .. }
        | R::Destroy { .. }
        | R::Reboot { .. }
        | R::PowerOn { .. }
        | R::Suspend { .. }
        | R::Resume { .. }
        | R::Rebuild { .. }
        | R::Resize { .. }
        | R::RevertResize { .. }
        | R::Snapshot { .. }
        | R::AttachNic { .. }
        | R::DetachNic { .. }
        | R::Adopt { .. } => t.long,
    }
}

/// An agent behind its internal HTTP API (`nimbus agent`).
pub struct HttpAgent {
    base: String,
    secret: String,
    http: reqwest::Client,
    timeouts: AgentTimeouts,
}

impl HttpAgent {
    pub fn new(base: &str, secret: &str, timeouts: AgentTimeouts) -> Self {
        HttpAgent {
            base: base.trim_end_matches('/').to_owned(),
            secret: secret.to_owned(),
            // Each request sets its own timeout (`call_timeout`); connection failures are
            // fast regardless.
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(5))
                .build()
                .unwrap_or_default(),
            timeouts,
        }
    }

    fn unreachable(&self, e: reqwest::Error) -> Error {
        Error::Unavailable(format!(
            "Compute host agent at {} is unreachable: {e}",
            self.base
        ))
    }
}

#[async_trait]
impl AgentTransport for HttpAgent {
    async fn call(&self, request: AgentRequest) -> Result<AgentReply> {
        let resp = self
            .http
            .post(format!("{}/v1/call", self.base))
            .header("authorization", format!("Bearer {}", self.secret))
            .timeout(call_timeout(&request, self.timeouts))
            .json(&request)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        if resp.status().is_success() {
            return resp
                .json()
                .await
                .map_err(|e| Error::internal(format!("agent reply: {e}")));
        }
        let status = resp.status();
        match resp.json::<AgentError>().await {
            Ok(err) => Err(err.into()),
            Err(_) => Err(Error::internal(format!("agent answered {status}"))),
        }
    }

    async fn open_file(&self, location: &str) -> Result<FileStream> {
        let resp = self
            .http
            .get(format!("{}/v1/files", self.base))
            .header("authorization", format!("Bearer {}", self.secret))
            .timeout(self.timeouts.long)
            .query(&[("location", location)])
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        if !resp.status().is_success() {
            let status = resp.status();
            return Err(match resp.json::<AgentError>().await {
                Ok(err) => err.into(),
                Err(_) => Error::internal(format!("agent answered {status}")),
            });
        }
        Ok(resp
            .bytes_stream()
            .map(|r| r.map_err(std::io::Error::other))
            .boxed())
    }
}

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

    /// Apply events a remote agent posted.
    ///
    /// An agent speaks only for the servers on its own host: a batch naming a live server
    /// placed elsewhere (or nowhere) is refused whole (`Forbidden`) and nothing of it is
    /// applied, since the shared secret alone would otherwise let any agent stop (or
    /// HA-restart) any server. Servers that are gone or deleted are let through: a late
    /// event for them is a race, and applying it changes nothing.
    pub async fn agent_events(&self, host: HostId, events: Vec<AgentEvent>) -> Result<()> {
        self.inner
            .store
            .host_get(host)
            .await?
            .ok_or_else(|| Error::not_found(format!("Unknown host {host}.")))?;
        for e in &events {
            let id = match e {
                AgentEvent::Progress { server_id, .. }
                | AgentEvent::PowerState { server_id, .. } => *server_id,
            };
            if let Some(s) = self.inner.store.server_get(id).await?
                && !s.deleted
                && s.host_id != Some(host)
            {
                return Err(Error::Forbidden(format!(
                    "Server {id} is not on host {host}; an agent reports only its own servers."
                )));
            }
        }
        for e in events {
            self.apply_agent_event(e).await;
        }
        Ok(())
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

    fn transport(&self, host: HostId) -> Result<Arc<dyn AgentTransport>> {
        self.inner
            .agents
            .agents
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&host)
            .cloned()
            .ok_or_else(|| Error::Unavailable(format!("Compute host {host} is not reachable.")))
    }

    /// Send one request to a host's agent.
    pub(crate) async fn agent_call(
        &self,
        host: HostId,
        request: AgentRequest,
    ) -> Result<AgentReply> {
        self.transport(host)?.call(request).await
    }

    /// Stream a file from a host's agent.
    pub(crate) async fn agent_file(&self, host: HostId, location: &str) -> Result<FileStream> {
        self.transport(host)?.open_file(location).await
    }

    /// The shared secret agents and the controller authenticate each other with.
    pub fn agent_secret(&self) -> Option<&str> {
        self.inner.config.agent_secret.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nimbus_model::ServerId;

    #[test]
    fn call_timeouts_by_request_kind() {
        let t = AgentTimeouts {
            quick: Duration::from_secs(7),
            long: Duration::from_secs(100),
        };
        let id = ServerId::new();
        let spec = nimbus_model::agent::InstanceSpec {
            server_id: id,
            name: "s".into(),
            hostname: "s".into(),
            vcpus: 1,
            ram_mb: 64,
            disk_gb: 1,
            ephemeral_gb: 0,
            swap_mb: 0,
            image: None,
            user_data: None,
            metadata: Default::default(),
            nics: vec![],
            volumes: vec![],
        };
        let table = [
            (AgentRequest::Spawn { spec: spec.clone() }, 100),
            // The guest's grace period comes on top of a quick call.
            (
                AgentRequest::PowerOff {
                    spec: spec.clone(),
                    timeout_secs: 60,
                },
                67,
            ),
            (AgentRequest::Describe, 7),
            (AgentRequest::ListInstances, 7),
            (AgentRequest::Pause { server_id: id }, 7),
            (AgentRequest::ConfirmResize { server_id: id }, 7),
            (
                AgentRequest::ConsoleOutput {
                    server_id: id,
                    length: None,
                },
                7,
            ),
            (AgentRequest::Destroy { server_id: id }, 100),
            (AgentRequest::Suspend { server_id: id }, 100),
        ];
        for (req, secs) in table {
            assert_eq!(call_timeout(&req, t), Duration::from_secs(secs), "{req:?}");
        }
    }
}
