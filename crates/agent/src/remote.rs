//! The agent's side of talking to a controller (`nimbus agent`): registration, heartbeats,
//! and event reporting, all over the controller's internal API with the shared secret.
//!
//! Events are queued and posted in batches by one task; a failed post is retried, so an
//! event raised while the controller restarts is delivered when it is back.

use crate::server::bearer;
use async_trait::async_trait;
use nimbus_model::agent::{AgentEvent, EventSink};
use nimbus_model::{Error, HostId, Result};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, mpsc};

/// Where a controller is and how to authenticate.
#[derive(Clone, Debug)]
pub struct ControllerLink {
    /// e.g. `http://127.0.0.1:8774`
    pub url: String,
    pub secret: String,
    pub http: reqwest::Client,
}

/// What the agent tells the controller when it registers.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Registration {
    /// Where the controller reaches this agent, e.g. `http://127.0.0.2:9100`.
    pub address: String,
    pub cpu_allocation_ratio: f64,
    pub ram_allocation_ratio: f64,
    pub disk_allocation_ratio: f64,
    pub availability_zone: String,
}

#[derive(serde::Deserialize)]
struct Registered {
    host_id: HostId,
}

impl ControllerLink {
    pub fn new(url: &str, secret: &str) -> Self {
        ControllerLink {
            url: url.trim_end_matches('/').to_owned(),
            secret: secret.to_owned(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap_or_default(),
        }
    }

    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}/internal/v1{path}", self.url))
            .header("authorization", bearer(&self.secret))
    }

    /// Register (the controller calls back to describe the host). Returns the host id.
    pub async fn register(&self, reg: &Registration) -> Result<HostId> {
        let resp = self
            .post("/hosts/register")
            .json(reg)
            .send()
            .await
            .map_err(|e| Error::Unavailable(format!("controller unreachable: {e}")))?;
        if !resp.status().is_success() {
            let status = resp.status();
            let body = resp.text().await.unwrap_or_default();
            return Err(Error::Unavailable(format!(
                "registration refused ({status}): {body}"
            )));
        }
        let r: Registered = resp
            .json()
            .await
            .map_err(|e| Error::internal(format!("registration reply: {e}")))?;
        Ok(r.host_id)
    }

    /// One heartbeat. `Ok(false)` when the controller does not know the host any more (it
    /// lost its database or was reset): register again.
    pub async fn heartbeat(&self, host: HostId) -> Result<bool> {
        let resp = self
            .post(&format!("/hosts/{host}/heartbeat"))
            .send()
            .await
            .map_err(|e| Error::Unavailable(format!("controller unreachable: {e}")))?;
        match resp.status().as_u16() {
            200..=299 => Ok(true),
            404 | 409 => Ok(false),
            s => Err(Error::Unavailable(format!("heartbeat refused ({s})"))),
        }
    }

    async fn post_events(&self, host: HostId, events: &[AgentEvent]) -> Result<()> {
        let resp = self
            .post(&format!("/hosts/{host}/events"))
            .json(events)
            .send()
            .await
            .map_err(|e| Error::Unavailable(format!("controller unreachable: {e}")))?;
        let status = resp.status();
        if status.is_success() {
            Ok(())
        } else if status.is_client_error() && status != reqwest::StatusCode::NOT_FOUND {
            // Refused for what the batch says (e.g. 403: a server not on this host): a
            // retry would be refused again and hold back every later event.
            let body = resp.text().await.unwrap_or_default();
            Err(Error::invalid(format!("events refused ({status}): {body}")))
        } else {
            Err(Error::Unavailable(format!("events refused ({status})")))
        }
    }
}

/// An [`EventSink`] that posts to the controller. Events raised before the agent knows its
/// host id wait in the queue.
#[derive(Clone)]
pub struct HttpEvents {
    tx: mpsc::UnboundedSender<AgentEvent>,
    host: Arc<Mutex<Option<HostId>>>,
}

impl HttpEvents {
    pub fn new(link: ControllerLink) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<AgentEvent>();
        let host: Arc<Mutex<Option<HostId>>> = Arc::new(Mutex::new(None));
        let h = host.clone();
        tokio::spawn(async move {
            let mut pending: Vec<AgentEvent> = Vec::new();
            loop {
                if pending.is_empty() {
                    match rx.recv().await {
                        Some(e) => pending.push(e),
                        None => return,
                    }
                }
                while let Ok(e) = rx.try_recv() {
                    pending.push(e);
                }
                let Some(id) = *h.lock().await else {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                };
                match link.post_events(id, &pending).await {
                    Ok(()) => pending.clear(),
                    Err(e @ Error::InvalidRequest(_)) => {
                        tracing::warn!(error = %e, dropped = pending.len(), "the controller refused these events; dropping them");
                        pending.clear();
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, queued = pending.len(), "event delivery failed; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
        HttpEvents { tx, host }
    }

    pub async fn set_host(&self, id: HostId) {
        *self.host.lock().await = Some(id);
    }
}

#[async_trait]
impl EventSink for HttpEvents {
    async fn report(&self, event: AgentEvent) {
        let _ = self.tx.send(event);
    }
}

/// Register, then heartbeat forever (re-registering when the controller forgot the host).
/// Returns only if `stop` fires.
pub async fn run(
    link: ControllerLink,
    reg: Registration,
    events: HttpEvents,
    interval: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut host: Option<HostId> = None;
    loop {
        if *stop.borrow() {
            return;
        }
        match host {
            None => match link.register(&reg).await {
                Ok(id) => {
                    tracing::info!(host = %id, controller = %link.url, "registered with the controller");
                    events.set_host(id).await;
                    host = Some(id);
                    continue;
                }
                Err(e) => tracing::warn!(error = %e, "registration failed; retrying"),
            },
            Some(id) => match link.heartbeat(id).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!("the controller does not know this host; registering again");
                    host = None;
                    continue;
                }
                Err(e) => tracing::warn!(error = %e, "heartbeat failed"),
            },
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Image bytes from the controller's blob store over the internal API, verified against
/// their SHA-512 (for agents that do not share the controller's disk).
#[derive(Clone, Debug)]
pub struct HttpBlobSource {
    pub link: ControllerLink,
}

#[async_trait]
impl crate::qemu::ImageSource for HttpBlobSource {
    async fn fetch(
        &self,
        image: &nimbus_model::agent::ImageSpec,
        dest: &std::path::Path,
    ) -> Result<()> {
        use futures::StreamExt;
        use sha2::Digest;
        use tokio::io::AsyncWriteExt;
        if image.hash.len() != 128 || !image.hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::invalid(format!(
                "Image {} has no valid SHA-512 hash.",
                image.id
            )));
        }
        let resp = self
            .link
            .http
            .get(format!(
                "{}/internal/v1/blobs/{}",
                self.link.url, image.hash
            ))
            .header("authorization", bearer(&self.link.secret))
            .timeout(Duration::from_secs(3600))
            .send()
            .await
            .map_err(|e| Error::Unavailable(format!("controller unreachable: {e}")))?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Err(Error::not_found(format!(
                "Image {} has no data on the controller.",
                image.id
            )));
        }
        if !resp.status().is_success() {
            return Err(Error::Unavailable(format!(
                "image download refused ({})",
                resp.status()
            )));
        }
        let mut file = tokio::fs::File::create(dest)
            .await
            .map_err(|e| Error::internal(format!("create {}: {e}", dest.display())))?;
        let mut sha = sha2::Sha512::new();
        let mut body = resp.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk
                .map_err(|e| Error::Unavailable(format!("image download interrupted: {e}")))?;
            sha.update(&chunk);
            file.write_all(&chunk)
                .await
                .map_err(|e| Error::internal(format!("write {}: {e}", dest.display())))?;
        }
        file.flush()
            .await
            .map_err(|e| Error::internal(format!("flush {}: {e}", dest.display())))?;
        let got = hex_lower(&sha.finalize());
        if got != image.hash {
            let _ = tokio::fs::remove_file(dest).await;
            return Err(Error::internal(format!(
                "image {} arrived corrupted (SHA-512 mismatch)",
                image.id
            )));
        }
        Ok(())
    }
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
