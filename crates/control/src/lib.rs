//! The application layer. Every API dialect calls into [`Control`]; `Control` decides (policy,
//! state rules, quotas, scheduling), persists through the store, and drives compute agents
//! through the operations engine.
//!
//! One module per resource (`servers`, `flavors`, `images`, ...) adds its methods to
//! [`Control`]. Long-running work is an [`nimbus_model::operation::Operation`] executed by
//! [`engine`]; agents report what they observe through [`agents::EventChannel`].

pub mod agents;
pub mod engine;
pub mod extra_specs;
pub mod flavors;
pub mod hosts;
pub mod identity;
pub mod images;
pub mod keypairs;
pub mod lookup;
pub mod networks;
pub mod quotas;
pub mod reconcile;
pub mod scheduler;
pub mod server_groups;
pub mod servers;
pub mod stats;
pub mod usage;
pub mod volumes;

use nimbus_model::quota::QuotaSet;
use nimbus_model::server::Server;
use nimbus_model::{Error, Result, ServerId};
use nimbus_store::Store;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Everything `control` can be configured with.
#[derive(Clone, Debug)]
pub struct Config {
    /// Keystone region name in the catalog.
    pub region: String,
    pub token_ttl: Duration,
    /// Quota defaults for projects without overrides.
    pub default_quota: QuotaSet,
    /// Nova's `[api]max_limit`.
    pub max_limit: usize,
    /// Soft delete: keep deleted servers restorable this long (Nova
    /// `reclaim_instance_interval`); `None` deletes at once.
    pub reclaim_interval: Option<Duration>,
    /// Keep deleted server rows this long for changes-since before purging them.
    pub deleted_retention: Duration,
    /// Where image blobs live.
    pub image_dir: PathBuf,
    /// argon2 memory cost (KiB) and iterations for password hashes.
    pub argon2_m_kib: u32,
    pub argon2_t: u32,
    /// How long a graceful power-off waits before forcing (Nova `shutdown_timeout`).
    pub shutdown_timeout_secs: u32,
    /// Operations running at once.
    pub engine_concurrency: usize,
    /// Missed-heartbeat window after which a remote host is down (Nova `service_down_time`).
    pub service_down_time: Duration,
    /// Default availability zone (Nova `default_availability_zone`).
    pub default_availability_zone: String,
    /// Generate an admin password for new servers (Nova `enable_instance_password`).
    pub enable_instance_password: bool,
    /// IPv4 pool of the public network every server joins.
    pub public_cidr: String,
    /// IPv6 prefix of the public network (EUI-64 addresses), if any.
    pub public_cidr6: Option<String>,
    /// How often running servers' counters are sampled.
    pub stats_period: Duration,
    /// How often every host is asked for its guests' power states (Nova
    /// `sync_power_state_interval`, 600 s there; events make this a safety net).
    pub power_sync_interval: Duration,
    /// How long samples are kept.
    pub stats_retention: Duration,
    /// Capacity of the `default` storage pool created on first start.
    pub default_pool_gb: u64,
    /// Shared secret of the internal API between controller and agents. `None` disables
    /// remote agents.
    pub agent_secret: Option<String>,
    /// How long the controller waits for a remote agent to answer a request, by kind (see
    /// [`agents::call_timeout`]).
    pub agent_timeouts: agents::AgentTimeouts,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            region: "RegionOne".into(),
            token_ttl: Duration::from_secs(3600),
            default_quota: QuotaSet::nova_defaults(),
            max_limit: 1000,
            reclaim_interval: None,
            deleted_retention: Duration::from_secs(7 * 24 * 3600),
            image_dir: std::env::temp_dir().join("nimbus-images"),
            argon2_m_kib: 19 * 1024,
            argon2_t: 2,
            shutdown_timeout_secs: 60,
            engine_concurrency: 1024,
            service_down_time: Duration::from_secs(60),
            power_sync_interval: Duration::from_secs(60),
            default_availability_zone: "nova".into(),
            enable_instance_password: true,
            public_cidr: "10.0.0.0/16".into(),
            public_cidr6: Some("fd00:6e69:6d62::/64".into()),
            stats_period: Duration::from_secs(10),
            stats_retention: Duration::from_secs(6 * 3600),
            default_pool_gb: 1000,
            agent_secret: None,
            agent_timeouts: agents::AgentTimeouts::default(),
        }
    }
}

/// The application. Cheap to clone.
#[derive(Clone)]
pub struct Control {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    config: Config,
    agents: agents::Registry,
    engine: engine::Engine,
    tokens: identity::TokenCache,
    blobs: images::BlobStore,
    shutdown: tokio::sync::watch::Sender<bool>,
    /// Held from reading host usage to claiming: see `Control::schedule`.
    scheduling: tokio::sync::Mutex<()>,
}

impl Control {
    /// Build the application over a store. Call [`Control::start`] to run the background
    /// tasks (operations engine, reconcilers).
    pub fn new(store: Arc<dyn Store>, config: Config) -> Result<Self> {
        let blobs = images::BlobStore::new(config.image_dir.clone())?;
        let (shutdown, _) = tokio::sync::watch::channel(false);
        Ok(Control {
            inner: Arc::new(Inner {
                store,
                agents: agents::Registry::default(),
                engine: engine::Engine::new(config.engine_concurrency),
                tokens: identity::TokenCache::default(),
                blobs,
                shutdown,
                scheduling: tokio::sync::Mutex::new(()),
                config,
            }),
        })
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Start the engine (resuming operations a previous process left unfinished) and the
    /// reconcilers.
    pub async fn start(&self) -> Result<()> {
        self.ensure_public_network().await?;
        self.ensure_default_pool().await?;
        self.attach_known_remote_hosts().await?;
        self.activate_pending_networks().await?;
        self.engine_start().await?;
        reconcile::spawn_all(self.clone());
        Ok(())
    }

    /// Stop background work: no new operation starts; running ones finish their current step
    /// (their progress is persisted, so a restart resumes them).
    pub fn shutdown(&self) {
        let _ = self.inner.shutdown.send(true);
    }

    pub(crate) fn shutdown_signal(&self) -> tokio::sync::watch::Receiver<bool> {
        self.inner.shutdown.subscribe()
    }

    /// Read a server, or Nova's 404.
    pub(crate) async fn load_server(&self, id: ServerId) -> Result<Server> {
        self.inner
            .store
            .server_get(id)
            .await?
            .ok_or_else(|| Error::server_not_found(id))
    }

    /// The one way to change a server: read it, let `f` change it (or refuse, or decide
    /// there is nothing to do by returning `Ok(false)`), write it back guarded by its
    /// generation, and retry from a fresh read if another writer came first. Returns the
    /// stored server (unchanged if `f` returned `false`).
    pub(crate) async fn mutate_server<F>(&self, id: ServerId, mut f: F) -> Result<Server>
    where
        F: FnMut(&mut Server) -> Result<bool>,
    {
        for _ in 0..100 {
            let mut server = self.load_server(id).await?;
            if !f(&mut server)? {
                return Ok(server);
            }
            server.updated_at = nimbus_model::time::now();
            if let Some(stored) = self.inner.store.server_update(server).await? {
                return Ok(stored);
            }
            tokio::task::yield_now().await;
        }
        Err(Error::internal(format!(
            "server {id}: too many concurrent writers"
        )))
    }
}
