//! `nimbus agent`: a compute agent as its own process. It serves the agent's internal API,
//! registers with the controller (which calls back to describe the host), heart-beats, and
//! posts what its driver observes. It never holds database credentials.

use anyhow::Context as _;
use nimbus_agent::Agent;
use nimbus_agent::fake::FakeConfig;
use nimbus_agent::remote::{ControllerLink, HttpEvents, Registration};
use nimbus_control::hosts::HostOptions;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Everything `nimbus agent` can be told.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    pub driver: crate::Driver,
    pub qemu: crate::QemuSettings,
    /// The controller's base URL.
    pub controller: String,
    pub listen: SocketAddr,
    /// The URL the controller should use to reach this agent (default: from the bound
    /// address).
    pub advertise: Option<String>,
    pub secret: String,
    pub data_dir: PathBuf,
    pub fake: FakeConfig,
    pub host: HostOptions,
    pub heartbeat_interval: Duration,
}

/// A running agent.
pub struct RunningAgent {
    pub addr: SocketAddr,
    pub url: String,
    stop: tokio::sync::watch::Sender<bool>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    heartbeats: tokio::task::JoinHandle<()>,
    qemu: Option<Arc<nimbus_agent::qemu::QemuDriver>>,
}

impl RunningAgent {
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(5), self.heartbeats).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), self.server).await;
    }

    pub fn stop_handle(&self) -> tokio::sync::watch::Sender<bool> {
        self.stop.clone()
    }

    pub async fn wait(self) -> std::io::Result<()> {
        let _ = self.heartbeats.await;
        // Guests keep running; a restarted agent re-attaches to them.
        if let Some(q) = &self.qemu {
            q.detach_all().await;
        }
        match self.server.await {
            Ok(r) => r,
            Err(e) => Err(std::io::Error::other(e)),
        }
    }
}

pub async fn start(cfg: AgentConfig) -> anyhow::Result<RunningAgent> {
    crate::check_agent_secret(&cfg.secret, "--secret")?;
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("creating {}", cfg.data_dir.display()))?;
    let link = ControllerLink::new(&cfg.controller, &cfg.secret);
    let events = HttpEvents::new(link.clone());
    // The agent has no local image store: images come from the controller.
    let (kind, why) = crate::drivers::resolve(&cfg.driver, &cfg.qemu);
    let kind = if kind == crate::Driver::None {
        crate::Driver::Fake
    } else {
        kind
    };
    let images = Arc::new(nimbus_agent::remote::HttpBlobSource { link: link.clone() });
    let built = crate::drivers::build(
        &kind,
        &cfg.data_dir,
        &cfg.fake,
        &cfg.qemu,
        &cfg.fake.host_name,
        images,
        Arc::new(events.clone()),
    )
    .await?;
    tracing::info!(driver = if kind == crate::Driver::Qemu { "qemu" } else { "fake" }, reason = %why, "agent driver");
    let qemu = built.qemu.clone();
    let agent = Agent::new(built.driver, Arc::new(events.clone()));
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("binding {}", cfg.listen))?;
    let addr = listener.local_addr()?;
    let url = cfg
        .advertise
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"));
    let (stop, rx) = tokio::sync::watch::channel(false);
    let app = nimbus_agent::server::router(agent, &cfg.secret);
    let mut server_stop = rx.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = server_stop.wait_for(|v| *v).await;
            })
            .await
    });
    let reg = Registration {
        address: url.clone(),
        cpu_allocation_ratio: cfg.host.cpu_allocation_ratio,
        ram_allocation_ratio: cfg.host.ram_allocation_ratio,
        disk_allocation_ratio: cfg.host.disk_allocation_ratio,
        availability_zone: cfg.host.availability_zone.clone(),
    };
    let heartbeats = tokio::spawn(nimbus_agent::remote::run(
        link,
        reg,
        events,
        cfg.heartbeat_interval,
        rx,
    ));
    Ok(RunningAgent {
        addr,
        url,
        stop,
        server,
        heartbeats,
        qemu,
    })
}
