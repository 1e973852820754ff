//! The Nimbus service assembled: store + control + in-process agent + HTTP API.
//!
//! [`start`] is what `nimbus serve` runs and what every integration test runs (on port 0
//! with its own database), so the tests exercise the real wiring.

pub mod agent;
pub mod cloudsyaml;
pub mod drivers;
pub mod local_agent;

use anyhow::Context as _;
use nimbus_agent::Agent;
use nimbus_agent::fake::FakeConfig;
use nimbus_api::ApiConfig;
use nimbus_control::hosts::HostOptions;
use nimbus_control::{Config as ControlConfig, Control};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

pub use drivers::{Driver, QemuSettings};

/// Everything `nimbus serve` can be told.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    /// `None`: derived from the bound address.
    pub public_url: Option<String>,
    pub data_dir: PathBuf,
    /// `None`: `<data_dir>/nimbus.db`. `sqlite::memory:` for a throwaway database.
    pub database: Option<String>,
    pub admin_password: Option<String>,
    pub reset_admin_password: bool,
    pub driver: Driver,
    /// The in-process host's name (os-hypervisors, os-services).
    pub host_name: String,
    pub fake: FakeConfig,
    pub qemu: QemuSettings,
    pub host: HostOptions,
    pub control: ControlConfig,
    pub max_body_bytes: usize,
    /// Write `<data_dir>/clouds.yaml` (and `./clouds.yaml`) for OpenStack clients.
    pub write_clouds_yaml: bool,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            listen: "127.0.0.1:8774".parse().expect("static address"),
            public_url: None,
            data_dir: PathBuf::from("nimbus-data"),
            database: None,
            admin_password: None,
            reset_admin_password: false,
            driver: Driver::Fake,
            host_name: FakeConfig::default().host_name,
            fake: FakeConfig::default(),
            qemu: QemuSettings::default(),
            host: HostOptions::default(),
            control: ControlConfig::default(),
            max_body_bytes: 1024 * 1024,
            write_clouds_yaml: true,
        }
    }
}

/// A running service.
pub struct Running {
    pub addr: SocketAddr,
    pub public_url: String,
    pub control: Control,
    /// Set when this start created the admin user with a generated password.
    pub admin_password: Option<String>,
    pub admin_project: String,
    shutdown: tokio::sync::watch::Sender<bool>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    qemu: Option<Arc<nimbus_agent::qemu::QemuDriver>>,
}

impl Running {
    /// Stop accepting requests, let in-flight ones finish, stop background work.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        self.control.shutdown();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.server).await;
        // Guests keep running; the next start re-attaches to them.
        if let Some(q) = &self.qemu {
            q.detach_all().await;
        }
    }

    /// Detach from QEMU guests (they keep running) — for a signal-driven shutdown.
    pub fn qemu(&self) -> Option<Arc<nimbus_agent::qemu::QemuDriver>> {
        self.qemu.clone()
    }

    /// Wait until the server stops (a signal, or [`Running::stop`] from elsewhere).
    pub async fn wait(self) -> std::io::Result<()> {
        match self.server.await {
            Ok(r) => r,
            Err(e) => Err(std::io::Error::other(e)),
        }
    }

    /// A handle that stops the server when sent `true`.
    pub fn shutdown_handle(&self) -> tokio::sync::watch::Sender<bool> {
        self.shutdown.clone()
    }
}

/// Refuse an empty (or blank) shared agent secret: with it, `Authorization: Bearer ` would
/// authenticate anyone, on the controller's internal API and on the agent's.
pub(crate) fn check_agent_secret(secret: &str, flag: &str) -> anyhow::Result<()> {
    if secret.trim().is_empty() {
        anyhow::bail!(
            "{flag} is empty: the shared agent secret must be a non-blank string (the same on the \
             controller's --agent-secret and every agent's --secret)"
        );
    }
    Ok(())
}

/// Build everything and start serving.
pub async fn start(cfg: ServeConfig) -> anyhow::Result<Running> {
    if let Some(secret) = &cfg.control.agent_secret {
        check_agent_secret(secret, "--agent-secret")?;
    }
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("creating data directory {}", cfg.data_dir.display()))?;
    let db = cfg.database.clone().unwrap_or_else(|| {
        cfg.data_dir
            .join("nimbus.db")
            .to_string_lossy()
            .into_owned()
    });
    let store = nimbus_store::open(&db)
        .await
        .with_context(|| format!("opening database {db}"))?;
    let mut control_cfg = cfg.control.clone();
    control_cfg.image_dir = cfg.data_dir.join("images");
    let control = Control::new(store, control_cfg)?;
    let boot = control
        .bootstrap(cfg.admin_password.as_deref(), cfg.reset_admin_password)
        .await?;
    control.ensure_default_flavors().await?;

    let (driver, why) = drivers::resolve(&cfg.driver, &cfg.qemu);
    let mut qemu_driver = None;
    match driver {
        Driver::None => tracing::info!("no in-process agent (--no-agent)"),
        kind => {
            let images = Arc::new(nimbus_agent::qemu::LocalBlobSource {
                blob_dir: cfg.data_dir.join("images").join("blobs"),
            });
            let built = drivers::build(
                &kind,
                &cfg.data_dir,
                &cfg.fake,
                &cfg.qemu,
                &cfg.host_name,
                images,
                Arc::new(control.event_channel()),
            )
            .await?;
            qemu_driver = built.qemu.clone();
            let agent = Agent::new(built.driver, Arc::new(control.event_channel()));
            control
                .register_agent(
                    "local",
                    Arc::new(local_agent::LocalAgent(agent)),
                    cfg.host.clone(),
                )
                .await?;
            let name = if kind == Driver::Qemu { "qemu" } else { "fake" };
            tracing::info!(driver = name, reason = %why, "in-process agent driver");
            if kind == Driver::Qemu
                && let Some(img) = cfg.qemu.test_image.as_ref().filter(|p| p.exists())
            {
                import_test_image(&control, &boot, img).await?;
            }
        }
    }
    control.start().await?;

    let listener = TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("binding {}", cfg.listen))?;
    let addr = listener.local_addr()?;
    let public_url = cfg.public_url.clone().unwrap_or_else(|| {
        let host = if addr.ip().is_unspecified() {
            "127.0.0.1".to_owned()
        } else {
            addr.ip().to_string()
        };
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host
        };
        format!("http://{host}:{}", addr.port())
    });
    let app = nimbus_api::router(
        control.clone(),
        ApiConfig {
            public_url: public_url.clone(),
            max_body_bytes: cfg.max_body_bytes,
        },
    );
    let app = tower::Layer::layer(
        &tower::util::MapRequestLayer::new(nimbus_api::common::paths::normalize),
        app,
    );
    let (shutdown, mut rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(async move {
        use axum::ServiceExt as _;
        axum::serve(listener, app.into_make_service())
            .with_graceful_shutdown(async move {
                let _ = rx.wait_for(|v| *v).await;
            })
            .await
    });

    if cfg.write_clouds_yaml
        && let Some(pw) = &boot
            .generated_password
            .clone()
            .or(cfg.admin_password.clone())
    {
        cloudsyaml::write(&cfg.data_dir, &public_url, pw, &boot.admin_project.name)?;
    }
    Ok(Running {
        addr,
        public_url,
        control,
        admin_password: boot.generated_password,
        admin_project: boot.admin_project.name,
        shutdown,
        server,
        qemu: qemu_driver,
    })
}

/// Offer the guest test image as the public `nimbus-test` image (once), so a quick start
/// on the qemu driver has something to boot.
async fn import_test_image(
    control: &Control,
    boot: &nimbus_control::identity::Bootstrap,
    path: &std::path::Path,
) -> anyhow::Result<()> {
    let ctx = nimbus_model::identity::Context {
        user_id: boot.admin_user.id.clone(),
        user_name: boot.admin_user.name.clone(),
        project_id: boot.admin_project.id.clone(),
        project_name: boot.admin_project.name.clone(),
        roles: vec![nimbus_model::identity::ROLE_ADMIN.into()],
        request_id: nimbus_model::request_id(),
    };
    let q = nimbus_control::images::ImageListQuery {
        filter: nimbus_control::images::ImageListFilter {
            name: Some(vec!["nimbus-test".into()]),
            ..Default::default()
        },
        ..Default::default()
    };
    if !control.images_list(&ctx, q).await?.is_empty() {
        return Ok(());
    }
    let img = control
        .image_create(
            &ctx,
            nimbus_control::images::ImageCreate {
                name: Some("nimbus-test".into()),
                visibility: Some(nimbus_model::image::Visibility::Public),
                disk_format: Some("qcow2".into()),
                container_format: Some("bare".into()),
                ..Default::default()
            },
        )
        .await?;
    let file = tokio::fs::File::open(path)
        .await
        .with_context(|| format!("opening {}", path.display()))?;
    control
        .image_upload(&ctx, img.id, tokio_util::io::ReaderStream::new(file))
        .await?;
    tracing::info!(image = %img.id, path = %path.display(), "imported the guest test image as 'nimbus-test'");
    Ok(())
}
