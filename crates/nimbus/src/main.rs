//! `nimbus`: the service binary.
//!
//! - `nimbus serve`: API + control + in-process agent on an embedded SQLite database.

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use nimbus::{Driver, ServeConfig};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "nimbus",
    version,
    about = "A cloud compute service that speaks OpenStack"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service (API, control, in-process agent).
    Serve(ServeArgs),
    /// Run a compute agent for a remote controller.
    Agent(AgentArgs),
}

#[derive(clap::Args)]
struct AgentArgs {
    /// The controller's base URL.
    #[arg(long, env = "NIMBUS_CONTROLLER")]
    controller: String,
    /// Address to listen on for the controller.
    #[arg(long, env = "NIMBUS_AGENT_LISTEN", default_value = "127.0.0.1:8775")]
    listen: std::net::SocketAddr,
    /// URL the controller uses to reach this agent (default: from --listen).
    #[arg(long, env = "NIMBUS_AGENT_ADVERTISE")]
    advertise: Option<String>,
    /// Shared secret with the controller (same as its --agent-secret).
    #[arg(long, env = "NIMBUS_AGENT_SECRET")]
    secret: String,
    /// Host name reported to the controller (unique per agent).
    #[arg(long, env = "NIMBUS_AGENT_NAME")]
    name: Option<String>,
    /// Where the agent keeps its files.
    #[arg(
        long,
        env = "NIMBUS_AGENT_DATA_DIR",
        default_value = "nimbus-agent-data"
    )]
    data_dir: PathBuf,
    /// Hypervisor driver.
    #[arg(long, env = "NIMBUS_DRIVER", default_value = "fake")]
    driver: String,
    #[arg(long, default_value = "500ms", value_parser = parse_duration)]
    fake_spawn_delay: Duration,
    #[arg(long, default_value = "200ms", value_parser = parse_duration)]
    fake_action_delay: Duration,
    #[arg(long, default_value_t = 64)]
    host_vcpus: u32,
    #[arg(long, default_value_t = 256 * 1024)]
    host_ram_mb: u64,
    #[arg(long, default_value_t = 10_000)]
    host_disk_gb: u64,
    #[arg(long, default_value_t = 16.0)]
    cpu_allocation_ratio: f64,
    #[arg(long, default_value_t = 1.5)]
    ram_allocation_ratio: f64,
    #[arg(long, default_value_t = 1.0)]
    disk_allocation_ratio: f64,
    #[arg(long, default_value = "nova")]
    availability_zone: String,
    /// How often to heart-beat.
    #[arg(long, default_value = "10s", value_parser = parse_period)]
    heartbeat_interval: Duration,
    /// QEMU accelerator: tcg, or kvm (used only if a probe boot proves it works).
    #[arg(long, env = "NIMBUS_QEMU_ACCEL", default_value = "tcg")]
    qemu_accel: String,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    nimbus_agent::fake::parse_duration(s)
        .ok_or_else(|| format!("invalid duration '{s}' (use e.g. 500ms, 2s)"))
}

/// A period or timeout: a duration greater than zero (a zero period would stop the loop that
/// uses it; a zero timeout would fail every call).
fn parse_period(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d.is_zero() {
        return Err(format!("'{s}' is zero: give a duration greater than zero"));
    }
    Ok(d)
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "NIMBUS_LISTEN", default_value = "127.0.0.1:8774")]
    listen: std::net::SocketAddr,
    /// Base URL clients use to reach this service (default: from --listen).
    #[arg(long, env = "NIMBUS_PUBLIC_URL")]
    public_url: Option<String>,
    /// Where the database, images and clouds.yaml live.
    #[arg(long, env = "NIMBUS_DATA_DIR", default_value = "nimbus-data")]
    data_dir: PathBuf,
    /// Database URL (default: sqlite file in the data directory).
    #[arg(long, env = "NIMBUS_DATABASE")]
    database: Option<String>,
    /// Admin password to set on first start (default: generated and written to clouds.yaml).
    #[arg(long, env = "NIMBUS_ADMIN_PASSWORD")]
    admin_password: Option<String>,
    /// Set a new admin password (the given one, or a generated one) even if the admin exists.
    #[arg(long)]
    reset_admin_password: bool,
    /// Run without an in-process agent.
    #[arg(long)]
    no_agent: bool,
    /// Hypervisor driver of the in-process agent: auto (qemu when QEMU and a guest image
    /// are available, else fake), fake or qemu.
    #[arg(long, env = "NIMBUS_DRIVER", default_value = "auto")]
    driver: String,
    /// QEMU accelerator: tcg, or kvm (used only if a probe boot proves it works).
    #[arg(long, env = "NIMBUS_QEMU_ACCEL", default_value = "tcg")]
    qemu_accel: String,
    /// Guest image offered as `nimbus-test` when the qemu driver runs (default:
    /// $NIMBUS_TEST_IMAGE or target/test-image/nimbus-test.qcow2).
    #[arg(long)]
    test_image: Option<PathBuf>,
    /// Fake driver: time from spawn to running.
    #[arg(long, env = "NIMBUS_FAKE_SPAWN_DELAY", default_value = "500ms", value_parser = parse_duration)]
    fake_spawn_delay: Duration,
    /// Fake driver: time for every other action.
    #[arg(long, env = "NIMBUS_FAKE_ACTION_DELAY", default_value = "200ms", value_parser = parse_duration)]
    fake_action_delay: Duration,
    /// Fake driver: faults for every server (same syntax as the nimbus:fault metadata).
    #[arg(long, env = "NIMBUS_FAKE_FAULTS", default_value = "")]
    fake_faults: String,
    /// Capacity of the in-process host.
    #[arg(long, env = "NIMBUS_HOST_VCPUS", default_value_t = 64)]
    host_vcpus: u32,
    #[arg(long, env = "NIMBUS_HOST_RAM_MB", default_value_t = 256 * 1024)]
    host_ram_mb: u64,
    #[arg(long, env = "NIMBUS_HOST_DISK_GB", default_value_t = 10_000)]
    host_disk_gb: u64,
    #[arg(long, default_value_t = 16.0)]
    cpu_allocation_ratio: f64,
    #[arg(long, default_value_t = 1.5)]
    ram_allocation_ratio: f64,
    #[arg(long, default_value_t = 1.0)]
    disk_allocation_ratio: f64,
    /// Keep deleted servers restorable this long (enables soft delete, forceDelete/restore).
    #[arg(long, value_parser = parse_duration)]
    reclaim_interval: Option<Duration>,
    /// How often every host is asked for its guests' power states, to record guests that
    /// stopped or crashed when no event said so (Nova's sync_power_state_interval).
    #[arg(long, value_parser = parse_period, default_value = "60s")]
    power_sync_interval: Duration,
    /// Token lifetime.
    #[arg(long, default_value = "3600s", value_parser = parse_duration)]
    token_ttl: Duration,
    /// Don't write clouds.yaml.
    #[arg(long)]
    no_clouds_yaml: bool,
    /// Shared secret for remote agents (`nimbus agent --secret`); without it only the
    /// in-process agent runs.
    #[arg(long, env = "NIMBUS_AGENT_SECRET")]
    agent_secret: Option<String>,
    /// A remote host is down after this long without a heartbeat.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    service_down_time: Duration,
    /// How long to wait for a remote agent's answer to a quick request (console, VNC,
    /// diagnostics, pause, ...); a stop also gets the guest's shutdown grace period.
    #[arg(long, default_value = "30s", value_parser = parse_period)]
    agent_call_timeout: Duration,
    /// How long to wait for a remote agent to build, boot, resize, snapshot, reboot, ...
    #[arg(long, default_value = "600s", value_parser = parse_period)]
    agent_long_call_timeout: Duration,
}

fn serve_config(a: ServeArgs) -> anyhow::Result<ServeConfig> {
    let mut cfg = ServeConfig {
        listen: a.listen,
        public_url: a.public_url.map(|u| u.trim_end_matches('/').to_owned()),
        data_dir: a.data_dir,
        database: a.database,
        admin_password: a.admin_password,
        reset_admin_password: a.reset_admin_password,
        write_clouds_yaml: !a.no_clouds_yaml,
        ..ServeConfig::default()
    };
    cfg.driver = if a.no_agent {
        Driver::None
    } else {
        Driver::parse(&a.driver).ok_or_else(|| {
            anyhow::anyhow!(
                "unknown driver '{}' (available: auto, fake, qemu)",
                a.driver
            )
        })?
    };
    cfg.qemu.accel = a.qemu_accel;
    if let Some(img) = a.test_image {
        cfg.qemu.test_image = Some(img);
    }
    cfg.host_name = hostname();
    cfg.fake.spawn_delay = a.fake_spawn_delay;
    cfg.fake.action_delay = a.fake_action_delay;
    cfg.fake.faults = nimbus_agent::fake::parse_faults(&a.fake_faults)
        .map_err(|e| anyhow::anyhow!("--fake-faults: {e}"))?;
    cfg.fake.vcpus = a.host_vcpus;
    cfg.fake.ram_mb = a.host_ram_mb;
    cfg.fake.disk_gb = a.host_disk_gb;
    cfg.host.cpu_allocation_ratio = a.cpu_allocation_ratio;
    cfg.host.ram_allocation_ratio = a.ram_allocation_ratio;
    cfg.host.disk_allocation_ratio = a.disk_allocation_ratio;
    cfg.control.reclaim_interval = a.reclaim_interval;
    cfg.control.power_sync_interval = a.power_sync_interval;
    cfg.control.agent_secret = a.agent_secret;
    cfg.control.service_down_time = a.service_down_time;
    cfg.control.agent_timeouts = nimbus_control::agents::AgentTimeouts {
        quick: a.agent_call_timeout,
        long: a.agent_long_call_timeout,
    };
    cfg.control.token_ttl = a.token_ttl;
    Ok(cfg)
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "nimbus".into())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return ctrl_c.await.unwrap_or(()),
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// jemalloc rather than glibc malloc, for Rust and (unprefixed, so it also replaces
/// `malloc`/`free`) for SQLite's C code. Rendering a large listing allocates many small
/// objects on whichever thread serves the request, and SQLite's page caches are allocated by
/// whichever thread runs a query: glibc kept a fragmented arena per thread (a controller
/// with 5,000 servers sat at ~190 MiB RSS for ~30 MiB of live heap) and spent a third of a
/// `/servers/detail` in `malloc`/`free`. See docs/benchmarks.md, "Memory".
///
/// Its options (a background thread returning idle pages after ~1 s) are compiled in from
/// `.cargo/config.toml` (JEMALLOC_SYS_WITH_MALLOC_CONF), keeping this crate free of `unsafe`.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("NIMBUS_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Agent(a) => {
            let driver = Driver::parse(&a.driver).ok_or_else(|| {
                anyhow::anyhow!(
                    "unknown driver '{}' (available: auto, fake, qemu)",
                    a.driver
                )
            })?;
            let mut fake = nimbus_agent::fake::FakeConfig {
                spawn_delay: a.fake_spawn_delay,
                action_delay: a.fake_action_delay,
                vcpus: a.host_vcpus,
                ram_mb: a.host_ram_mb,
                disk_gb: a.host_disk_gb,
                ..Default::default()
            };
            fake.host_name = a.name.clone().unwrap_or_else(hostname);
            let cfg = nimbus::agent::AgentConfig {
                driver,
                qemu: nimbus::QemuSettings {
                    accel: a.qemu_accel,
                    ..Default::default()
                },
                controller: a.controller,
                listen: a.listen,
                advertise: a.advertise,
                secret: a.secret,
                data_dir: a.data_dir,
                fake,
                host: nimbus_control::hosts::HostOptions {
                    cpu_allocation_ratio: a.cpu_allocation_ratio,
                    ram_allocation_ratio: a.ram_allocation_ratio,
                    disk_allocation_ratio: a.disk_allocation_ratio,
                    availability_zone: a.availability_zone,
                },
                heartbeat_interval: a.heartbeat_interval,
            };
            let running = nimbus::agent::start(cfg).await?;
            tracing::info!(url = %running.url, "nimbus agent is serving");
            let stop = running.stop_handle();
            tokio::spawn(async move {
                shutdown_signal().await;
                let _ = stop.send(true);
            });
            running.wait().await?;
            Ok(())
        }
        Command::Serve(args) => {
            let started = std::time::Instant::now();
            let cfg = serve_config(args)?;
            let data_dir = cfg.data_dir.clone();
            let clouds_yaml = cfg.write_clouds_yaml;
            let running = nimbus::start(cfg).await.context("starting nimbus")?;
            tracing::info!(url = %running.public_url, elapsed_ms = started.elapsed().as_millis() as u64, "nimbus is serving");
            if let Some(pw) = &running.admin_password {
                println!("\nNimbus is up at {}.", running.public_url);
                println!(
                    "Admin user 'admin' (project '{}') has the generated password: {pw}",
                    running.admin_project
                );
            } else {
                println!("\nNimbus is up at {}.", running.public_url);
            }
            let yaml = data_dir.join("clouds.yaml");
            if clouds_yaml && yaml.exists() {
                println!(
                    "Credentials are in {} (and ./clouds.yaml). Try:",
                    yaml.display()
                );
                println!("  openstack --os-cloud nimbus server list\n");
            } else {
                // --no-clouds-yaml (or no password known to write): say where to log in
                // instead of pointing at a file that is not there.
                println!(
                    "No clouds.yaml written; authenticate as 'admin' (project '{}') at {}/identity/v3.\n",
                    running.admin_project, running.public_url
                );
            }
            let stop = running.shutdown_handle();
            let control = running.control.clone();
            let qemu = running.qemu();
            tokio::spawn(async move {
                shutdown_signal().await;
                tracing::info!("shutting down");
                control.shutdown();
                let _ = stop.send(true);
            });
            running.wait().await?;
            // Guests keep running; the next start re-attaches to them.
            if let Some(q) = qemu {
                q.detach_all().await;
            }
            Ok(())
        }
    }
}
