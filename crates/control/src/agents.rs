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

/// An agent behind its internal HTTP API (`nimbus agent`).
pub struct HttpAgent {
    base: String,
    secret: String,
    http: reqwest::Client,
}

impl HttpAgent {
    pub fn new(base: &str, secret: &str) -> Self {
        HttpAgent {
            base: base.trim_end_matches('/').to_owned(),
            secret: secret.to_owned(),
            // Long enough for a slow boot or a graceful power-off; connection failures are
            // fast regardless.
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(5))
                .timeout(Duration::from_secs(600))
                .build()
                .unwrap_or_default(),
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
