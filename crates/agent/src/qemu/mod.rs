//! The `qemu` driver: real guests, one QEMU process per server, launched directly (no
//! libvirt) and controlled over QMP. See `docs/drivers/qemu.md` for the files, the command
//! line and how each action maps to QMP.
//!
//! Structure: a [`Slot`] per server holds its files ([`layout::Layout`]), its record, the
//! observed power state and, while QEMU runs, the handle of the [`actor`] that owns the QMP
//! connection. Lifecycle operations on one server are serialized by the slot's async mutex;
//! the power state is readable without it.
//!
//! Invariants:
//! - `Shutdown` (or `Crashed`) means no QEMU process; `Suspended` means no process and a
//!   complete `vm.state`;
//! - a QEMU process that runs on an instance directory but that no actor owns (its QMP
//!   did not answer a re-attach) makes the server `NoState`; until it answers or ends,
//!   nothing starts another QEMU on those disks, changes them, or calls the server
//!   stopped; only a destroy kills it;
//! - every action is idempotent with respect to the end state it names (the trait contract);
//! - a driver that is dropped or detached leaves its guests running; [`QemuDriver::start`]
//!   re-attaches to them from their pid file and QMP socket;
//! - every NIC in a server's record is plugged into its network's switch (see
//!   [`crate::net`]) whether or not the server runs, from the driver's start until the NIC
//!   is detached or the server destroyed; the record's NICs, `argv` and `nic_ports` always
//!   describe the same devices, so a resume starts exactly the hardware the saved state has.

pub mod actor;
mod cmdline;
pub mod image;
mod layout;
mod procfs;
mod qmp;
mod resize;

use crate::hypervisor::{Hypervisor, SnapshotFile};
use crate::net::{self, Fabric};
use actor::{
    ActorHandle, CallError, DiagInput, Request, SharedPower, SharedSink, get_power, set_power,
};
use async_trait::async_trait;
pub use cmdline::parse_version;
pub use image::{ImageSource, LocalBlobSource};
use layout::{Layout, Record};
use nimbus_model::agent::{
    AgentEvent, Diagnostics, EventSink, HostInfo, InstanceSpec, MemoryDetails, NicDetail, NicSpec,
    VncConsole,
};
use nimbus_model::state::PowerState;
use nimbus_model::{Error, ImageId, Result, ServerId};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::process::Command;

const GIB: u64 = 1024 * 1024 * 1024;
/// At most this much of the serial log is returned (Nova's libvirt driver uses 100 KiB).
const MAX_CONSOLE_BYTES: u64 = 100 * 1024;
/// How long a hot-unplug waits for the guest to release the NIC.
const NIC_UNPLUG_TIMEOUT: Duration = Duration::from_secs(30);
/// The first delay between re-attach attempts to a QEMU that does not answer QMP; it
/// doubles up to `QemuConfig::qmp_retry_max`.
const QMP_RETRY_FIRST: Duration = Duration::from_secs(1);

/// Settings of the qemu driver.
#[derive(Clone)]
pub struct QemuConfig {
    pub host_name: String,
    /// Instances, cached base images and snapshot files live here.
    pub state_dir: PathBuf,
    /// Where image bytes come from.
    pub images: Arc<dyn ImageSource>,
    pub qemu_binary: PathBuf,
    /// `tcg` (default) or `kvm`. `kvm` is used only if a probe boot proves it works.
    pub accel: String,
    pub machine: String,
    /// How long a soft reboot waits for the guest to shut down before a hard reset (Nova's
    /// `wait_soft_reboot_seconds`).
    pub soft_reboot_timeout: Duration,
    /// How long a resize waits for a graceful guest shutdown before quitting QEMU.
    pub resize_shutdown_timeout: Duration,
    /// Inclusive VNC display range; port 5900 + display, WebSocket 5700 + display. The
    /// default 0..=199 keeps the two port ranges apart.
    pub vnc_displays: (u16, u16),
    pub vnc_websocket: bool,
    /// Lifetime of a VNC console password.
    pub vnc_password_ttl: Duration,
    /// How fast a probe boot must get through the firmware for `kvm` to be used. TCG needs
    /// ~0.4 s; the broken KVM of these machines needs ~7.5 s for the firmware and never runs
    /// a Linux kernel, so "slower than this" counts as not working.
    pub accel_probe_timeout: Duration,
    /// Capacity to advertise; probed from the host when `None`.
    pub vcpus: Option<u32>,
    pub ram_mb: Option<u64>,
    pub disk_gb: Option<u64>,
    /// Lease time the network switches' DHCP servers hand out. Addresses are fixed per
    /// NIC, so a long lease costs nothing.
    pub dhcp_lease_secs: u32,
    /// How long a re-attach waits for a running QEMU's QMP greeting.
    pub qmp_attach_timeout: Duration,
    /// The longest delay between re-attach attempts to a QEMU that is alive but does not
    /// answer QMP.
    pub qmp_retry_max: Duration,
}

impl QemuConfig {
    pub fn new(state_dir: PathBuf, images: Arc<dyn ImageSource>) -> Self {
        QemuConfig {
            host_name: std::fs::read_to_string("/etc/hostname")
                .map(|s| s.trim().to_owned())
                .ok()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "nimbus-qemu".into()),
            state_dir,
            images,
            qemu_binary: "qemu-system-x86_64".into(),
            accel: "tcg".into(),
            machine: "q35".into(),
            soft_reboot_timeout: Duration::from_secs(120),
            resize_shutdown_timeout: Duration::from_secs(60),
            vnc_displays: (0, 199),
            vnc_websocket: true,
            vnc_password_ttl: Duration::from_secs(300),
            accel_probe_timeout: Duration::from_secs(3),
            vcpus: None,
            ram_mb: None,
            disk_gb: None,
            dhcp_lease_secs: 86_400,
            qmp_attach_timeout: Duration::from_secs(3),
            qmp_retry_max: Duration::from_secs(30),
        }
    }
}

/// One server on this host.
struct Slot {
    id: ServerId,
    layout: Layout,
    power: SharedPower,
    inner: Arc<tokio::sync::Mutex<Inner>>,
}

#[derive(Default)]
struct Inner {
    /// `None` for a directory without a readable record (a build that died early).
    record: Option<Record>,
    actor: Option<ActorHandle>,
    destroyed: bool,
    /// The background re-attach to a QEMU that did not answer QMP, while one runs.
    retry: Option<tokio::task::AbortHandle>,
}

impl Inner {
    /// The actor, if its process still runs.
    fn live(&mut self) -> Option<&ActorHandle> {
        if self.actor.as_ref().is_some_and(|a| !a.alive()) {
            self.actor = None;
        }
        self.actor.as_ref()
    }

    fn record(&mut self, id: ServerId) -> Result<&mut Record> {
        self.record
            .as_mut()
            .ok_or_else(|| Error::conflict(format!("Instance {id} has no disk on this host yet.")))
    }
}

/// What [`QemuDriver::stop_process`] does with a live QEMU that no actor owns.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Stray {
    /// Refuse (`Conflict`): it may be a guest that is fine but unreachable.
    Keep,
    /// Kill it: the server is being destroyed.
    Kill,
}

/// The qemu hypervisor driver.
pub struct QemuDriver {
    cfg: QemuConfig,
    settings: cmdline::LaunchSettings,
    host: HostInfo,
    cache: image::ImageCache,
    sink: SharedSink,
    slots: Mutex<HashMap<ServerId, Arc<Slot>>>,
    /// The network switches every NIC is plugged into.
    net: Fabric,
}

fn missing(id: ServerId) -> Error {
    Error::NotFound(format!("Instance {id} could not be found on this host."))
}

fn not_running(id: ServerId) -> Error {
    Error::conflict(format!("Instance {id} is not running."))
}

fn call_err(e: CallError, id: ServerId) -> Error {
    match e {
        CallError::Gone => not_running(id),
        CallError::Failed(e) => e,
    }
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::internal(format!("{what} {}: {e}", path.display()))
}

/// A temporary VNC password: 8 characters (VNC authentication uses at most 8).
fn vnc_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    uuid::Uuid::new_v4().as_bytes()[..8]
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

fn same_shape(a: &InstanceSpec, b: &InstanceSpec) -> bool {
    (a.vcpus, a.ram_mb, a.disk_gb, a.ephemeral_gb, a.swap_mb)
        == (b.vcpus, b.ram_mb, b.disk_gb, b.ephemeral_gb, b.swap_mb)
}

/// Boot firmware only and watch SeaBIOS's debug port: reaching "No bootable device" within
/// `timeout` shows the accelerator executes guest code at a useful speed. Answers how long
/// it took. (On these machines `/dev/kvm` exists, but KVM runs SeaBIOS ~20x slower than TCG
/// and never gets a Linux kernel to print anything.)
pub async fn probe_accel(
    qemu_binary: &Path,
    accel: &str,
    scratch_dir: &Path,
    timeout: Duration,
) -> Result<Duration> {
    let log = scratch_dir.join(format!(
        "probe-{accel}-{}.log",
        uuid::Uuid::new_v4().simple()
    ));
    let started = tokio::time::Instant::now();
    let mut child = Command::new(qemu_binary)
        .args([
            "-machine",
            &format!("q35,accel={accel}"),
            "-m",
            "64",
            "-nodefaults",
            "-no-user-config",
        ])
        .args(["-display", "none", "-chardev"])
        .arg(format!(
            "file,id=dbg,path={}",
            cmdline::esc(&log.to_string_lossy())
        ))
        .args(["-device", "isa-debugcon,iobase=0x402,chardev=dbg"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Error::internal(format!("run {}: {e}", qemu_binary.display())))?;
    let deadline = started + timeout;
    let result = loop {
        let text = tokio::fs::read(&log).await.unwrap_or_default();
        if String::from_utf8_lossy(&text).contains("No bootable device") {
            break Ok(started.elapsed());
        }
        if let Ok(Some(status)) = child.try_wait() {
            break Err(Error::internal(format!(
                "probe QEMU ({accel}) exited early: {status}"
            )));
        }
        if tokio::time::Instant::now() > deadline {
            break Err(Error::internal(format!(
                "probe boot with accel={accel} did not get through the firmware within {timeout:?}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let _ = child.start_kill();
    let _ = child.wait().await;
    let _ = tokio::fs::remove_file(&log).await;
    result
}

async fn host_capacity(state_dir: &Path) -> (u32, u64, u64) {
    let vcpus = std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1);
    let ram_mb = tokio::fs::read_to_string("/proc/meminfo")
        .await
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|n| n.parse::<u64>().ok())
        })
        .map(|kib| kib / 1024)
        .unwrap_or(0);
    let disk_gb = Command::new("df")
        .arg("-Pk")
        .arg(state_dir)
        .output()
        .await
        .ok()
        .and_then(|o| {
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            text.lines()
                .nth(1)?
                .split_whitespace()
                .nth(1)?
                .parse::<u64>()
                .ok()
        })
        .map(|kib| kib / 1024 / 1024)
        .unwrap_or(0);
    (vcpus, ram_mb, disk_gb)
}

impl QemuDriver {
    /// Check QEMU, choose the accelerator, and re-attach to the servers of `state_dir`
    /// (running QEMU processes get a new actor; the others are `Shutdown` or `Suspended`).
    /// `events` receives what guests do on their own.
    pub async fn start(mut cfg: QemuConfig, events: Arc<dyn EventSink>) -> Result<QemuDriver> {
        // Every path the driver derives from `state_dir` ends up where the working directory
        // no longer applies: as a qcow2 overlay's backing file (which qemu-img resolves
        // against the overlay's own directory), in QEMU's argv, in instance records read
        // after a restart. So the driver only ever holds an absolute `state_dir`, and a
        // canonical one: `std::path::absolute` keeps `..` components, which would eat into
        // the 107 bytes a unix socket path may have.
        tokio::fs::create_dir_all(&cfg.state_dir)
            .await
            .map_err(|e| io_err("create", &cfg.state_dir, e))?;
        cfg.state_dir = tokio::fs::canonicalize(&cfg.state_dir)
            .await
            .map_err(|e| io_err("resolve", &cfg.state_dir, e))?;
        let probe_path = cfg
            .state_dir
            .join("instances")
            .join(ServerId::new().to_string())
            .join("serial.sock");
        if probe_path.as_os_str().len() > layout::MAX_SOCKET_PATH {
            return Err(Error::invalid(format!(
                "state_dir {} is too long for QEMU's unix sockets (paths must stay under {} bytes)",
                cfg.state_dir.display(),
                layout::MAX_SOCKET_PATH
            )));
        }
        for sub in ["instances", "images", "snapshots"] {
            let d = cfg.state_dir.join(sub);
            tokio::fs::create_dir_all(&d)
                .await
                .map_err(|e| io_err("create", &d, e))?;
        }
        let out = Command::new(&cfg.qemu_binary)
            .arg("--version")
            .output()
            .await
            .map_err(|e| {
                Error::Unavailable(format!(
                    "QEMU ({}) cannot be run: {e}; install it with scripts/install-qemu.sh",
                    cfg.qemu_binary.display()
                ))
            })?;
        let version_text = String::from_utf8_lossy(&out.stdout).into_owned();
        let version = parse_version(&version_text).ok_or_else(|| {
            Error::internal(format!("unrecognized QEMU version output: {version_text}"))
        })?;
        let (accel, probe) = match cfg.accel.as_str() {
            "tcg" => ("tcg".to_owned(), serde_json::Value::Null),
            "kvm" => match probe_accel(
                &cfg.qemu_binary,
                "kvm",
                &cfg.state_dir,
                cfg.accel_probe_timeout,
            )
            .await
            {
                Ok(t) => (
                    "kvm".to_owned(),
                    serde_json::json!({"kvm": format!("ok in {} ms", t.as_millis())}),
                ),
                Err(e) => {
                    tracing::warn!(error = %e, "KVM was configured but a probe boot failed; using TCG");
                    (
                        "tcg".to_owned(),
                        serde_json::json!({"kvm": format!("failed: {e}")}),
                    )
                }
            },
            other => {
                return Err(Error::invalid(format!(
                    "accelerator '{other}' is not supported (tcg or kvm)"
                )));
            }
        };
        tracing::info!(qemu = %version_text.lines().next().unwrap_or(""), %accel, "qemu driver");
        let (vcpus, ram_mb, disk_gb) = host_capacity(&cfg.state_dir).await;
        let host = HostInfo {
            name: cfg.host_name.clone(),
            hypervisor_type: "QEMU".into(),
            hypervisor_version: cmdline::version_code(version),
            vcpus: cfg.vcpus.unwrap_or(vcpus),
            ram_mb: cfg.ram_mb.unwrap_or(ram_mb),
            disk_gb: cfg.disk_gb.unwrap_or(disk_gb),
            capabilities: serde_json::json!({
                "driver": "qemu",
                "accelerator": accel,
                "accelerator_probe": probe,
                "qemu_version": format!("{}.{}.{}", version.0, version.1, version.2),
                "machine": cfg.machine,
                "vnc": true,
                "vnc_websocket": cfg.vnc_websocket,
                "image_formats": ["qcow2", "raw"],
            }),
        };
        let settings = cmdline::LaunchSettings {
            accel,
            machine: cfg.machine.clone(),
            vnc_displays: cfg.vnc_displays,
            vnc_websocket: cfg.vnc_websocket,
        };
        let driver = QemuDriver {
            cache: image::ImageCache::new(cfg.state_dir.join("images")),
            settings,
            host,
            sink: Arc::new(RwLock::new(events)),
            slots: Mutex::new(HashMap::new()),
            net: Fabric::new(cfg.state_dir.join("net"), cfg.dhcp_lease_secs)?,
            cfg,
        };
        driver.scan().await?;
        Ok(driver)
    }

    /// The accelerator in use.
    pub fn accelerator(&self) -> &str {
        &self.settings.accel
    }

    /// The network switches (counters and port settings, for tests and tools).
    pub fn fabric(&self) -> &Fabric {
        &self.net
    }

    /// The directory holding a server's files (its serial socket is `serial.sock` there).
    pub fn instance_dir(&self, id: ServerId) -> PathBuf {
        self.cfg.state_dir.join("instances").join(id.to_string())
    }

    /// Let go of every QEMU process without stopping it (agent shutdown): actors end and
    /// close their QMP connections so a later driver can attach.
    pub async fn detach_all(&self) {
        let slots: Vec<Arc<Slot>> = self.lock_slots().values().cloned().collect();
        for slot in slots {
            let actor = {
                let mut g = slot.inner.lock().await;
                if let Some(t) = g.retry.take() {
                    t.abort();
                }
                g.actor.take()
            };
            if let Some(a) = actor {
                a.detach().await;
            }
        }
    }

    fn lock_slots(&self) -> std::sync::MutexGuard<'_, HashMap<ServerId, Arc<Slot>>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn slot(&self, id: ServerId) -> Result<Arc<Slot>> {
        self.lock_slots()
            .get(&id)
            .cloned()
            .ok_or_else(|| missing(id))
    }

    fn slot_or_new(&self, id: ServerId) -> Arc<Slot> {
        self.lock_slots()
            .entry(id)
            .or_insert_with(|| {
                Arc::new(Slot {
                    id,
                    layout: Layout::new(self.instance_dir(id)),
                    power: Arc::new(Mutex::new(PowerState::NoState)),
                    inner: Arc::new(tokio::sync::Mutex::new(Inner::default())),
                })
            })
            .clone()
    }

    fn set_sink(&self, events: &Arc<dyn EventSink>) {
        *self.sink.write().unwrap_or_else(|p| p.into_inner()) = events.clone();
    }

    async fn report_progress(events: &Arc<dyn EventSink>, id: ServerId, progress: u8) {
        events
            .report(AgentEvent::Progress {
                server_id: id,
                progress,
            })
            .await;
    }

    async fn scan(&self) -> Result<()> {
        let dir = self.cfg.state_dir.join("instances");
        let mut entries = tokio::fs::read_dir(&dir)
            .await
            .map_err(|e| io_err("list", &dir, e))?;
        while let Some(entry) = entries
            .next_entry()
            .await
            .map_err(|e| io_err("list", &dir, e))?
        {
            let Some(id) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<ServerId>().ok())
            else {
                continue;
            };
            let slot = self.slot_or_new(id);
            let mut g = slot.inner.lock().await;
            g.record = match Record::load(&slot.layout.record()).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(server = %id, error = %e, "unreadable instance record");
                    None
                }
            };
            // Plug the NICs before re-attaching, so a running guest's traffic flows again.
            if let Some(rec) = g.record.as_ref()
                && let Err(e) = self.sync_ports(&slot, rec)
            {
                tracing::warn!(server = %id, error = %e, "plugging NICs into their switches");
            }
            let power = self.attach(&slot, &mut g).await;
            tracing::info!(server = %id, ?power, "found instance");
        }
        Ok(())
    }

    /// Re-attach to a server's QEMU if it still runs; otherwise settle its power state from
    /// its files, and report a server that should run but has no process. A QEMU that is
    /// alive but does not answer QMP leaves the server `NoState` and starts a retry (see
    /// [`attach`]).
    async fn attach(&self, slot: &Arc<Slot>, g: &mut Inner) -> PowerState {
        let power = attach(slot, g, &self.sink, self.cfg.qmp_attach_timeout).await;
        if power == PowerState::NoState {
            self.retry_attach(slot, g).await;
        }
        power
    }

    /// Report a live QEMU that does not answer QMP as `NoState` (Nova's NOSTATE: the
    /// controller must neither think it stopped nor restart it) and keep trying to reach
    /// it in the background, with a growing delay, until it answers or its process is gone.
    /// At most one retry runs per server; it ends with the driver, a destroy or
    /// [`QemuDriver::detach_all`].
    async fn retry_attach(&self, slot: &Arc<Slot>, g: &mut Inner) {
        if g.retry.as_ref().is_some_and(|t| !t.is_finished()) {
            return;
        }
        let pid = unowned_qemu(&slot.layout).unwrap_or_default();
        report(
            &self.sink,
            slot.id,
            PowerState::NoState,
            format!(
                "QEMU process {pid} is alive but its QMP socket does not answer; the agent \
                 keeps retrying and leaves the process and its disks alone"
            ),
        )
        .await;
        let weak = Arc::downgrade(slot);
        let sink = self.sink.clone();
        let (timeout, max) = (self.cfg.qmp_attach_timeout, self.cfg.qmp_retry_max);
        let task = tokio::spawn(async move {
            let mut delay = QMP_RETRY_FIRST.min(max);
            loop {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(max);
                // The driver dropped the slot (destroyed, or the driver itself is gone).
                let Some(slot) = weak.upgrade() else { return };
                let mut g = slot.inner.lock().await;
                if g.destroyed || g.live().is_some() {
                    return;
                }
                let power = attach(&slot, &mut g, &sink, timeout).await;
                if power != PowerState::NoState {
                    drop(g);
                    tracing::info!(server = %slot.id, ?power, "unresponsive QEMU settled");
                    report(
                        &sink,
                        slot.id,
                        power,
                        "the agent reached the server's QEMU again".into(),
                    )
                    .await;
                    return;
                }
            }
        });
        g.retry = Some(task.abort_handle());
    }

    /// Before an action that may start QEMU, change the disks or treat the server as
    /// stopped: refuse while a QEMU nobody owns still runs on the instance directory (two
    /// QEMUs on one disk destroy it). One immediate re-attach attempt comes first, so an
    /// action right after QEMU recovers works.
    async fn claim(&self, slot: &Arc<Slot>, g: &mut Inner) -> Result<()> {
        if g.live().is_some() || unowned_qemu(&slot.layout).is_none() {
            return Ok(());
        }
        if self.attach(slot, g).await != PowerState::NoState {
            return Ok(());
        }
        Err(unresponsive(slot))
    }

    /// The cached base image of `spec`.
    async fn base_of(&self, spec: &InstanceSpec) -> Result<(PathBuf, &'static str)> {
        let img = spec.image.as_ref().ok_or_else(|| {
            Error::invalid(format!(
                "Instance {} has no image; the qemu driver boots from images only.",
                spec.server_id
            ))
        })?;
        self.cache.base(self.cfg.images.as_ref(), img).await
    }

    /// Create whatever disk of the record is missing. `base` is needed only for a missing
    /// root disk and is fetched lazily.
    async fn ensure_disks(&self, slot: &Slot, g: &mut Inner) -> Result<()> {
        let l = slot.layout.clone();
        tokio::fs::create_dir_all(&l.dir)
            .await
            .map_err(|e| io_err("create", &l.dir, e))?;
        let rec = g.record(slot.id)?;
        if !layout::exists(&l.root_disk()).await {
            let (base, fmt) = match (&rec.base, layout::exists_opt(rec.base.as_deref()).await) {
                (Some(b), true) => (b.clone(), rec.base_format.clone()),
                _ => {
                    let (b, f) = self.base_of(&rec.spec).await?;
                    (b, f.to_owned())
                }
            };
            image::create_overlay(&base, &fmt, &l.root_disk(), rec.spec.disk_gb * GIB).await?;
            rec.base = Some(base);
            rec.base_format = fmt;
        }
        if rec.spec.ephemeral_gb > 0 && !layout::exists(&l.ephemeral_disk()).await {
            image::create_blank(&l.ephemeral_disk(), rec.spec.ephemeral_gb * GIB).await?;
        }
        if rec.spec.swap_mb > 0 && !layout::exists(&l.swap_disk()).await {
            image::create_blank(&l.swap_disk(), rec.spec.swap_mb * 1024 * 1024).await?;
        }
        rec.save(&l.record()).await
    }

    /// Start QEMU for the record (with `-incoming defer` and the saved command line when
    /// `incoming` names a state file), hand it to a new actor, and wait until it runs.
    async fn launch(
        &self,
        slot: &Slot,
        g: &mut Inner,
        incoming: Option<&Path>,
    ) -> Result<PowerState> {
        let l = slot.layout.clone();
        // Never a second QEMU on these disks: callers have ended their own process, so a
        // live one here is a QEMU no actor owns. (Removing its pid file below would hide it.)
        if unowned_qemu(&l).is_some() {
            return Err(unresponsive(slot));
        }
        let rec = g.record(slot.id)?;
        let argv = match incoming {
            Some(_) if !rec.argv.is_empty() => rec.argv.clone(),
            _ => {
                self.plan_nics(rec);
                let wiring = self.wiring(rec)?;
                cmdline::build(&self.settings, &l, &rec.spec, &wiring)
            }
        };
        // Plugged before QEMU starts, so the guest's first DHCP request is answered.
        self.sync_ports(slot, rec)?;
        let mut stale = vec![l.qmp_socket(), l.serial_socket(), l.pid_file()];
        // QEMU binds each NIC's socket and fails if the file is left from a previous run.
        for nic in &rec.spec.nics {
            stale.push(self.net.nic_socket(&net::parse_mac(&nic.mac)?));
        }
        for stale in stale {
            layout::remove_file(&stale).await?;
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(l.qemu_log())
            .map_err(|e| io_err("open", &l.qemu_log(), e))?;
        let log2 = log
            .try_clone()
            .map_err(|e| io_err("dup", &l.qemu_log(), e))?;
        // setsid: QEMU gets its own session, so the agent's terminal and process group
        // signals do not reach it and it outlives an agent restart. Not -daemonize: the
        // agent keeps the child to reap it and learn how it ended.
        let mut cmd = Command::new("setsid");
        cmd.arg(&self.cfg.qemu_binary).args(&argv);
        if incoming.is_some() {
            cmd.args(["-incoming", "defer"]);
        }
        cmd.stdin(std::process::Stdio::null())
            .stdout(log)
            .stderr(log2)
            .kill_on_drop(false);
        let mut child = cmd
            .spawn()
            .map_err(|e| Error::internal(format!("spawn QEMU: {e}")))?;
        let pid = child
            .id()
            .ok_or_else(|| Error::internal("QEMU exited at once"))?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let qmp = loop {
            if let Ok(Some(status)) = child.try_wait() {
                let tail = layout::tail_lines(&l.qemu_log(), Some(5), 4096)
                    .await
                    .unwrap_or_default();
                return Err(Error::internal(format!(
                    "QEMU failed to start ({status}): {}",
                    tail.trim()
                )));
            }
            if layout::exists(&l.qmp_socket()).await
                && let Ok(q) = qmp::Qmp::connect(&l.qmp_socket(), Duration::from_secs(2)).await
            {
                break q;
            }
            if tokio::time::Instant::now() > deadline {
                let _ = child.start_kill();
                let _ = child.wait().await;
                return Err(Error::internal(
                    "QEMU's QMP socket did not come up within 20 s",
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        rec.argv = argv;
        rec.running = true;
        rec.save(&l.record()).await?;
        set_power(&slot.power, PowerState::NoState);
        let actor = ActorHandle::start(
            slot.id,
            pid,
            qmp,
            Some(child),
            slot.power.clone(),
            self.sink.clone(),
            l.qemu_log(),
        );
        let result = match incoming {
            Some(state) => actor
                .call(|reply| Request::LoadState {
                    path: state.to_owned(),
                    reply,
                })
                .await
                .map(|()| "running".to_owned()),
            None => actor.call(Request::Status).await,
        };
        g.actor = Some(actor);
        let status = match result {
            Ok(s) => s,
            Err(e) => {
                let e = call_err(e, slot.id);
                // The process is the one just launched: ours, so it is killed.
                if let Err(e2) = self.stop_process(slot, g, Stray::Keep).await {
                    tracing::warn!(server = %slot.id, error = %e2, "ending a QEMU that failed to start");
                }
                return Err(e);
            }
        };
        let power = actor::power_of_status(&status);
        set_power(&slot.power, power);
        Ok(power)
    }

    /// End the QEMU process if there is one (hard). A process of ours that lingers is
    /// killed through the pid file; a live QEMU that no actor owned is killed only with
    /// [`Stray::Kill`] (a destroy), and otherwise answers `Conflict`, leaving it and the
    /// power state as they are.
    async fn stop_process(&self, slot: &Slot, g: &mut Inner, stray: Stray) -> Result<()> {
        let mut owned = None;
        if let Some(mut a) = g.actor.take() {
            owned = Some(a.pid);
            if a.alive() {
                match a.call(Request::Quit).await {
                    Ok(()) | Err(CallError::Gone) => {}
                    Err(CallError::Failed(e)) => {
                        tracing::warn!(server = %slot.id, error = %e, "quit")
                    }
                }
            }
            a.finished(Duration::from_secs(10)).await;
        }
        if let Some(pid) = unowned_qemu(&slot.layout) {
            if owned != Some(pid) && stray == Stray::Keep {
                return Err(unresponsive(slot));
            }
            tracing::warn!(server = %slot.id, pid, "killing a QEMU process no actor owned");
            procfs::kill_hard(pid).await;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            while procfs::alive(pid) && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        set_power(&slot.power, PowerState::Shutdown);
        Ok(())
    }

    /// Graceful stop: ACPI power button, wait up to `timeout`, then quit.
    async fn graceful_stop(&self, slot: &Slot, g: &mut Inner, timeout: Duration) -> Result<()> {
        if !timeout.is_zero()
            && let Some(a) = g.live()
        {
            match a.call(Request::Status).await {
                Ok(s) if s == "running" => {
                    match a.call(|reply| Request::Powerdown { timeout, reply }).await {
                        Ok(true) | Err(CallError::Gone) => {}
                        Ok(false) => {
                            tracing::info!(server = %slot.id, "guest did not shut down in time; quitting QEMU")
                        }
                        Err(CallError::Failed(e)) => {
                            tracing::warn!(server = %slot.id, error = %e, "powerdown")
                        }
                    }
                }
                _ => {}
            }
        }
        self.stop_process(slot, g, Stray::Keep).await
    }

    /// Place the record's NICs for a fresh launch: on q35 each on its own root port, in
    /// `spec.nics` order, plus [`cmdline::HOTPLUG_SLOTS`] spare ports for hot-plug.
    fn plan_nics(&self, rec: &mut Record) {
        rec.nic_ports.clear();
        if cmdline::has_pcie_root_ports(&self.settings.machine) {
            for (i, nic) in rec.spec.nics.iter().enumerate() {
                rec.nic_ports.insert(nic.mac.to_ascii_lowercase(), i as u32);
            }
            rec.root_ports = rec.spec.nics.len() as u32 + cmdline::HOTPLUG_SLOTS;
        } else {
            rec.root_ports = 0;
        }
    }

    fn nic_wiring(&self, rec: &Record, nic: &NicSpec) -> Result<cmdline::NicWiring> {
        let mac = net::parse_mac(&nic.mac)?;
        let hex = net::mac_hex(&mac);
        let lower = nic.mac.to_ascii_lowercase();
        Ok(cmdline::NicWiring {
            local: self.net.nic_socket(&mac),
            remote: self.net.switch_socket(&nic.network_id)?,
            port: rec.nic_ports.get(&lower).copied(),
            mac: lower,
            hex,
        })
    }

    fn wiring(&self, rec: &Record) -> Result<cmdline::Wiring> {
        Ok(cmdline::Wiring {
            root_ports: rec.root_ports,
            nics: rec
                .spec
                .nics
                .iter()
                .map(|n| self.nic_wiring(rec, n))
                .collect::<Result<_>>()?,
        })
    }

    /// Make the switches hold exactly the record's NICs of this server, with their current
    /// settings (firewall profile, DHCP lease).
    fn sync_ports(&self, slot: &Slot, rec: &Record) -> Result<()> {
        let lease = self.net.lease_secs();
        let ports = rec
            .spec
            .nics
            .iter()
            .map(|nic| {
                let socket = self.net.nic_socket(&net::parse_mac(&nic.mac)?);
                let cfg = net::port_config(nic, socket, lease)?;
                Ok((nic.network_id.clone(), cfg))
            })
            .collect::<Result<Vec<_>>>()?;
        self.net.sync_server(slot.id, ports)
    }

    /// A NIC's counters from its switch (zeros while it is not plugged).
    fn nic_detail(&self, nic: &NicSpec) -> NicDetail {
        let c = net::parse_mac(&nic.mac)
            .ok()
            .and_then(|m| self.net.counters(&nic.network_id, &m))
            .unwrap_or_default();
        NicDetail {
            mac_address: nic.mac.clone(),
            rx_octets: c.rx_bytes,
            rx_packets: c.rx_packets,
            rx_drop: c.rx_drop,
            tx_octets: c.tx_bytes,
            tx_packets: c.tx_packets,
            tx_drop: c.tx_drop,
            ..Default::default()
        }
    }

    /// Mark the record as not meant to run.
    async fn mark_stopped(&self, slot: &Slot, g: &mut Inner) -> Result<()> {
        if let Some(rec) = g.record.as_mut() {
            rec.running = false;
            rec.save(&slot.layout.record()).await?;
        }
        Ok(())
    }

    /// Finish or roll back whatever resize step a crash interrupted (see `resize.rs`);
    /// answers true when a finished resize waits for confirm or revert.
    async fn settle_resize(&self, slot: &Slot, g: &mut Inner) -> Result<bool> {
        match resize::recover(&slot.layout).await? {
            resize::Settled::Idle => Ok(false),
            resize::Settled::Resized => Ok(true),
            settled @ (resize::Settled::RollBack | resize::Settled::FinishRevert) => {
                tracing::warn!(server = %slot.id, ?settled, "recovering an interrupted resize");
                self.stop_process(slot, g, Stray::Keep).await?;
                resize::revert_files(&slot.layout, g).await?;
                Ok(false)
            }
        }
    }

    /// Boot the server from its disks unless it already runs; a saved state is restored.
    async fn ensure_running(
        &self,
        slot: &Arc<Slot>,
        g: &mut Inner,
        spec: Option<&InstanceSpec>,
    ) -> Result<PowerState> {
        if let Some(a) = g.live() {
            match a.call(Request::Status).await {
                Ok(s) if s != "shutdown" => return Ok(actor::power_of_status(&s)),
                _ => self.stop_process(slot, g, Stray::Keep).await?,
            }
        }
        self.claim(slot, g).await?;
        // Never boot half-changed disks of an interrupted resize or revert.
        self.settle_resize(slot, g).await?;
        if g.record.is_none() {
            let spec = spec.ok_or_else(|| missing(slot.id))?;
            g.record = Some(Record::new(spec.clone()));
        }
        let state = slot.layout.state_file();
        if let (Some(spec), Some(rec)) = (spec, g.record.as_mut())
            && !layout::exists(&state).await
        {
            // A fresh boot takes the controller's current NICs (a resume cannot: its
            // devices are fixed by the saved state).
            rec.spec.nics = spec.nics.clone();
        }
        if layout::exists(&state).await {
            let p = self.launch(slot, g, Some(&state)).await?;
            layout::remove_file(&state).await?;
            return Ok(p);
        }
        self.ensure_disks(slot, g).await?;
        self.launch(slot, g, None).await
    }
}

/// Lock a known, not destroyed server's slot: `let (slot, mut g) = lock!(self, id);`.
macro_rules! lock {
    ($self:ident, $id:expr) => {{
        let id = $id;
        let slot = $self.slot(id)?;
        let g = slot.inner.clone().lock_owned().await;
        if g.destroyed {
            return Err(missing(id));
        }
        (slot, g)
    }};
}

#[async_trait]
impl Hypervisor for QemuDriver {
    fn describe(&self) -> HostInfo {
        self.host.clone()
    }

    async fn spawn(&self, spec: &InstanceSpec, events: Arc<dyn EventSink>) -> Result<PowerState> {
        self.set_sink(&events);
        let id = spec.server_id;
        let slot = self.slot_or_new(id);
        let mut g = slot.inner.clone().lock_owned().await;
        if g.destroyed {
            return Err(Error::conflict(format!(
                "Instance {id} was deleted while it was being built."
            )));
        }
        self.claim(&slot, &mut g).await?;
        if let Some(a) = g.live()
            && let Ok(s) = a.call(Request::Status).await
            && s != "shutdown"
        {
            return Ok(actor::power_of_status(&s));
        }
        if layout::exists(&slot.layout.state_file()).await {
            return Ok(PowerState::Suspended);
        }
        tokio::fs::create_dir_all(&slot.layout.dir)
            .await
            .map_err(|e| io_err("create", &slot.layout.dir, e))?;
        match g.record.as_mut() {
            None => g.record = Some(Record::new(spec.clone())),
            Some(rec) => rec.spec.nics = spec.nics.clone(),
        }
        if !layout::exists(&slot.layout.root_disk()).await {
            let (base, fmt) = self.base_of(spec).await?;
            let rec = g.record(id)?;
            rec.base = Some(base);
            rec.base_format = fmt.to_owned();
        }
        Self::report_progress(&events, id, 25).await;
        self.ensure_disks(&slot, &mut g).await?;
        Self::report_progress(&events, id, 50).await;
        self.stop_process(&slot, &mut g, Stray::Keep).await?;
        let power = self.launch(&slot, &mut g, None).await?;
        Self::report_progress(&events, id, 75).await;
        Ok(power)
    }

    async fn destroy(&self, id: ServerId) -> Result<()> {
        let slot = self.lock_slots().get(&id).cloned();
        match slot {
            Some(slot) => {
                let mut g = slot.inner.clone().lock_owned().await;
                if let Some(t) = g.retry.take() {
                    t.abort();
                }
                // A delete is the one action that may kill a QEMU nobody can reach.
                self.stop_process(&slot, &mut g, Stray::Kill).await?;
                self.net.sync_server(id, Vec::new())?;
                for nic in g.record.iter().flat_map(|r| r.spec.nics.iter()) {
                    if let Ok(mac) = net::parse_mac(&nic.mac) {
                        layout::remove_file(&self.net.nic_socket(&mac)).await?;
                    }
                }
                layout::remove_dir_all(&slot.layout.dir).await?;
                g.destroyed = true;
                g.record = None;
                self.lock_slots().remove(&id);
            }
            // Files of a server this driver never knew (e.g. a build that failed before
            // the agent restarted) go too.
            None => layout::remove_dir_all(&self.instance_dir(id)).await?,
        }
        Ok(())
    }

    async fn reboot(&self, spec: &InstanceSpec, hard: bool) -> Result<PowerState> {
        let (slot, mut g) = lock!(self, spec.server_id);
        self.claim(&slot, &mut g).await?;
        if let Some(a) = g.live() {
            let r = if hard {
                a.call(Request::Reset).await.map(|()| true)
            } else {
                let timeout = self.cfg.soft_reboot_timeout;
                a.call(|reply| Request::SoftReboot { timeout, reply }).await
            };
            match r {
                Ok(graceful) => {
                    if !graceful {
                        tracing::info!(server = %slot.id, "soft reboot fell back to a hard reset");
                    }
                    return Ok(get_power(&slot.power));
                }
                // The process went away meanwhile: boot it below.
                Err(CallError::Gone) => {}
                Err(CallError::Failed(e)) => return Err(e),
            }
        }
        // Nova reboots a stopped or suspended server by booting it afresh.
        layout::remove_file(&slot.layout.state_file()).await?;
        self.ensure_running(&slot, &mut g, Some(spec)).await
    }

    async fn power_off(&self, spec: &InstanceSpec, timeout_secs: u32) -> Result<PowerState> {
        let (slot, mut g) = lock!(self, spec.server_id);
        self.claim(&slot, &mut g).await?;
        self.graceful_stop(&slot, &mut g, Duration::from_secs(timeout_secs.into()))
            .await?;
        // A suspended server that is powered off forgets its saved state.
        layout::remove_file(&slot.layout.state_file()).await?;
        self.mark_stopped(&slot, &mut g).await?;
        Ok(PowerState::Shutdown)
    }

    async fn power_on(&self, spec: &InstanceSpec) -> Result<PowerState> {
        let (slot, mut g) = lock!(self, spec.server_id);
        self.ensure_running(&slot, &mut g, Some(spec)).await
    }

    async fn pause(&self, id: ServerId) -> Result<PowerState> {
        let (slot, mut g) = lock!(self, id);
        let a = g.live().ok_or_else(|| not_running(id))?;
        a.call(Request::Pause).await.map_err(|e| call_err(e, id))?;
        Ok(get_power(&slot.power))
    }

    async fn unpause(&self, id: ServerId) -> Result<PowerState> {
        let (slot, mut g) = lock!(self, id);
        let a = g.live().ok_or_else(|| not_running(id))?;
        a.call(Request::Unpause)
            .await
            .map_err(|e| call_err(e, id))?;
        Ok(get_power(&slot.power))
    }

    async fn suspend(&self, id: ServerId) -> Result<PowerState> {
        let (slot, mut g) = lock!(self, id);
        let state = slot.layout.state_file();
        match g.live() {
            Some(a) => {
                a.call(|reply| Request::SaveState {
                    path: state.clone(),
                    reply,
                })
                .await
                .map_err(|e| call_err(e, id))?;
                g.actor = None;
                self.mark_stopped(&slot, &mut g).await?;
                set_power(&slot.power, PowerState::Suspended);
                Ok(PowerState::Suspended)
            }
            None if layout::exists(&state).await => Ok(PowerState::Suspended),
            None => Err(not_running(id)),
        }
    }

    async fn resume(&self, spec: &InstanceSpec) -> Result<PowerState> {
        let id = spec.server_id;
        let (slot, mut g) = lock!(self, id);
        if let Some(a) = g.live()
            && let Ok(s) = a.call(Request::Status).await
        {
            return Ok(actor::power_of_status(&s));
        }
        if !layout::exists(&slot.layout.state_file()).await {
            return Err(Error::conflict(format!("Instance {id} is not suspended.")));
        }
        self.ensure_running(&slot, &mut g, Some(spec)).await
    }

    async fn rebuild(&self, spec: &InstanceSpec, events: Arc<dyn EventSink>) -> Result<PowerState> {
        self.set_sink(&events);
        let id = spec.server_id;
        let (slot, mut g) = lock!(self, id);
        self.claim(&slot, &mut g).await?;
        // The old root disk is discarded, so there is nothing to shut down cleanly for.
        self.stop_process(&slot, &mut g, Stray::Keep).await?;
        let (base, fmt) = self.base_of(spec).await?;
        Self::report_progress(&events, id, 25).await;
        let l = &slot.layout;
        for f in [
            l.state_file(),
            l.root_disk(),
            l.ephemeral_disk(),
            l.swap_disk(),
        ] {
            layout::remove_file(&f).await?;
        }
        let mut rec = g.record.take().unwrap_or_else(|| Record::new(spec.clone()));
        rec.spec = spec.clone();
        rec.base = Some(base);
        rec.base_format = fmt.to_owned();
        g.record = Some(rec);
        self.ensure_disks(&slot, &mut g).await?;
        Self::report_progress(&events, id, 50).await;
        let power = self.launch(&slot, &mut g, None).await?;
        Self::report_progress(&events, id, 75).await;
        Ok(power)
    }

    async fn resize(&self, spec: &InstanceSpec) -> Result<PowerState> {
        let id = spec.server_id;
        let (slot, mut g) = lock!(self, id);
        self.claim(&slot, &mut g).await?;
        let l = slot.layout.clone();
        if self.settle_resize(&slot, &mut g).await? {
            if g.record(id).is_ok_and(|r| same_shape(&r.spec, spec)) {
                // Already resized (a re-run after a crash): just make sure it runs.
                return self.ensure_running(&slot, &mut g, Some(spec)).await;
            }
            // An unconfirmed earlier resize: its disks are the server's now (it may have
            // run for days on them), so a new resize confirms it rather than going back.
            tracing::info!(server = %id, "a new resize confirms the previous one");
            resize::discard_old(&l).await?;
        }
        g.record(id)?;
        self.graceful_stop(&slot, &mut g, self.cfg.resize_shutdown_timeout)
            .await?;
        layout::remove_file(&l.state_file()).await?;
        // Keep everything a revert needs (see resize.rs for the crash-safe order).
        resize::save_old(&l).await?;
        // Grow (never shrink) the disks to the new flavor.
        image::grow(&l.root_disk(), spec.disk_gb * GIB).await?;
        if spec.ephemeral_gb == 0 {
            layout::remove_file(&l.ephemeral_disk()).await?;
        } else if layout::exists(&l.ephemeral_disk()).await {
            image::grow(&l.ephemeral_disk(), spec.ephemeral_gb * GIB).await?;
        }
        // Swap holds nothing worth keeping: it is made anew at the new size.
        layout::remove_file(&l.swap_disk()).await?;
        let rec = g.record(id)?;
        let image = rec.spec.image.clone();
        rec.spec = spec.clone();
        if rec.spec.image.is_none() {
            rec.spec.image = image;
        }
        self.ensure_disks(&slot, &mut g).await?;
        // Only now may the guest run on the new disks.
        resize::mark_resized(&l).await?;
        self.launch(&slot, &mut g, None).await
    }

    async fn confirm_resize(&self, id: ServerId) -> Result<()> {
        let (slot, mut g) = lock!(self, id);
        self.claim(&slot, &mut g).await?;
        if !self.settle_resize(&slot, &mut g).await? {
            tracing::warn!(server = %id, "confirm without a finished resize on this host");
        }
        resize::discard_old(&slot.layout).await
    }

    async fn revert_resize(&self, spec: &InstanceSpec) -> Result<PowerState> {
        let id = spec.server_id;
        let (slot, mut g) = lock!(self, id);
        self.claim(&slot, &mut g).await?;
        let l = slot.layout.clone();
        if self.settle_resize(&slot, &mut g).await? {
            // The resized disks are discarded: no clean shutdown needed.
            self.stop_process(&slot, &mut g, Stray::Keep).await?;
            resize::revert_files(&l, &mut g).await?;
        }
        if let Some(rec) = g.record.as_mut()
            && !same_shape(&rec.spec, spec)
        {
            self.stop_process(&slot, &mut g, Stray::Keep).await?;
            if let Some(rec) = g.record.as_mut() {
                let image = rec.spec.image.clone();
                rec.spec = spec.clone();
                if rec.spec.image.is_none() {
                    rec.spec.image = image;
                }
            }
        }
        self.ensure_running(&slot, &mut g, Some(spec)).await
    }

    async fn snapshot(&self, id: ServerId, image_id: ImageId) -> Result<SnapshotFile> {
        let (slot, mut g) = lock!(self, id);
        self.claim(&slot, &mut g).await?;
        let disk = slot.layout.root_disk();
        if !layout::exists(&disk).await {
            return Err(Error::conflict(format!(
                "Instance {id} has no disk to snapshot."
            )));
        }
        let dest = self
            .cfg
            .state_dir
            .join("snapshots")
            .join(format!("{image_id}.qcow2"));
        let size = match g.live() {
            Some(a) => {
                let (d, t) = (disk.clone(), dest.clone());
                match a
                    .call(|reply| Request::Snapshot {
                        disk: d,
                        dest: t,
                        reply,
                    })
                    .await
                {
                    Ok(size) => size,
                    Err(CallError::Gone) => image::flatten(&disk, &dest, false).await?,
                    Err(CallError::Failed(e)) => return Err(e),
                }
            }
            None => image::flatten(&disk, &dest, false).await?,
        };
        Ok(SnapshotFile {
            location: dest.to_string_lossy().into_owned(),
            size,
            disk_format: "qcow2".into(),
        })
    }

    async fn console_output(&self, id: ServerId, length: Option<u32>) -> Result<String> {
        // No slot lock: the log is readable while an action runs.
        let slot = self.slot(id)?;
        layout::tail_lines(&slot.layout.console_log(), length, MAX_CONSOLE_BYTES).await
    }

    async fn vnc_console(&self, id: ServerId) -> Result<VncConsole> {
        let (_slot, mut g) = lock!(self, id);
        let a = g.live().ok_or_else(|| not_running(id))?;
        let (password, ttl) = (vnc_password(), self.cfg.vnc_password_ttl);
        a.call(|reply| Request::Vnc {
            password,
            ttl,
            reply,
        })
        .await
        .map_err(|e| call_err(e, id))
    }

    async fn diagnostics(&self, id: ServerId) -> Result<Diagnostics> {
        let (slot, mut g) = lock!(self, id);
        let (ram_mb, vcpus, nics) = match g.record.as_ref() {
            Some(r) => (
                r.spec.ram_mb,
                r.spec.vcpus,
                r.spec.nics.iter().map(|n| self.nic_detail(n)).collect(),
            ),
            None => (0, 0, Vec::new()),
        };
        let input = DiagInput {
            ram_mb,
            nics,
            accel: self.settings.accel.clone(),
        };
        if let Some(a) = g.live() {
            match a
                .call(|reply| Request::Diagnostics {
                    input: input.clone(),
                    reply,
                })
                .await
            {
                Ok(d) => return Ok(d),
                Err(CallError::Gone) => {}
                Err(CallError::Failed(e)) => return Err(e),
            }
        }
        Ok(Diagnostics {
            state: get_power(&slot.power).as_str().to_owned(),
            driver: "qemu".into(),
            hypervisor: input.accel,
            hypervisor_os: "linux".into(),
            num_cpus: vcpus,
            num_nics: input.nics.len() as u32,
            memory_details: MemoryDetails {
                maximum: ram_mb,
                used: 0,
            },
            nic_details: input.nics,
            ..Default::default()
        })
    }

    async fn set_password(&self, id: ServerId, _password: &str) -> Result<()> {
        // Without a guest agent the password cannot reach the guest. The request is
        // recorded (when, not what) so the operation completes truthfully on the host side.
        let (slot, mut g) = lock!(self, id);
        let rec = g.record(id)?;
        rec.password_set_at = Some(chrono::Utc::now().to_rfc3339());
        rec.save(&slot.layout.record()).await?;
        tracing::info!(server = %id, "admin password change recorded; no guest agent applies it");
        Ok(())
    }

    /// Snapshots are written under the state dir; the controller streams them from there.
    fn work_dir(&self) -> Option<PathBuf> {
        Some(self.cfg.state_dir.clone())
    }

    async fn list_instances(&self) -> Result<Vec<(ServerId, PowerState)>> {
        let slots: Vec<Arc<Slot>> = self.lock_slots().values().cloned().collect();
        Ok(slots.iter().map(|s| (s.id, get_power(&s.power))).collect())
    }

    async fn adopt(&self, spec: &InstanceSpec, _power_state: PowerState) -> Result<PowerState> {
        let id = spec.server_id;
        let slot = self.slot_or_new(id);
        let mut g = slot.inner.clone().lock_owned().await;
        if g.destroyed {
            return Err(missing(id));
        }
        if g.live().is_some() {
            return Ok(get_power(&slot.power));
        }
        if g.record.is_none() {
            g.record = Record::load(&slot.layout.record()).await.ok().flatten();
        }
        if g.record.is_none() {
            // No files at all: remember the server so a start can rebuild its disk.
            tokio::fs::create_dir_all(&slot.layout.dir)
                .await
                .map_err(|e| io_err("create", &slot.layout.dir, e))?;
            let rec = Record::new(spec.clone());
            rec.save(&slot.layout.record()).await?;
            g.record = Some(rec);
        }
        if let Some(rec) = g.record.as_ref() {
            self.sync_ports(&slot, rec)?;
        }
        Ok(self.attach(&slot, &mut g).await)
    }

    /// Plug a NIC in: into its network's switch at once, and into the guest by hot-plug if
    /// QEMU runs (else at the next boot). Idempotent: a NIC the server already has is fine.
    async fn attach_nic(&self, id: ServerId, nic: &NicSpec) -> Result<()> {
        let (slot, mut g) = lock!(self, id);
        self.claim(&slot, &mut g).await?;
        let mac = net::parse_mac(&nic.mac)?;
        // Validate everything the switch needs before touching anything.
        net::port_config(nic, PathBuf::new(), self.net.lease_secs())?;
        self.net.switch_socket(&nic.network_id)?;
        let mut nic = nic.clone();
        nic.mac = nic.mac.to_ascii_lowercase();
        let known = |r: &Record| {
            r.spec
                .nics
                .iter()
                .any(|n| net::parse_mac(&n.mac).ok() == Some(mac))
        };
        if known(g.record(id)?) {
            return Ok(());
        }
        if layout::exists(&slot.layout.state_file()).await {
            return Err(Error::conflict(format!(
                "Instance {id} is suspended; resume it before changing its NICs."
            )));
        }
        let running = g.live().is_some();
        let Inner { record, actor, .. } = &mut *g;
        let rec = record.as_mut().ok_or_else(|| missing(id))?;
        if !running {
            rec.spec.nics.push(nic);
            self.sync_ports(&slot, rec)?;
            return rec.save(&slot.layout.record()).await;
        }
        let port = if cmdline::has_pcie_root_ports(&self.settings.machine) {
            let used: std::collections::BTreeSet<u32> = rec.nic_ports.values().copied().collect();
            let free = (0..rec.root_ports).find(|k| !used.contains(k));
            Some(free.ok_or_else(|| {
                Error::conflict(format!(
                    "Instance {id} has no free hot-plug slot ({} root ports in use); stop and \
                     start it to plug more NICs.",
                    rec.root_ports
                ))
            })?)
        } else {
            None
        };
        if let Some(k) = port {
            rec.nic_ports.insert(nic.mac.clone(), k);
        }
        rec.spec.nics.push(nic.clone());
        let wiring = self.nic_wiring(rec, &nic)?;
        // The switch port first, so the guest's DHCP on the new interface is answered.
        let mut plugged = self.sync_ports(&slot, rec);
        if plugged.is_ok() {
            // QEMU binds the NIC's socket: a file left from an earlier run would stop it.
            plugged = layout::remove_file(&wiring.local).await;
        }
        let plugged = match plugged {
            Ok(()) => match actor.as_ref() {
                Some(a) => a
                    .call(|reply| Request::AddNic {
                        netdev: wiring.netdev_add(),
                        device: wiring.device_add(),
                        reply,
                    })
                    .await
                    .map_err(|e| call_err(e, id)),
                None => Err(not_running(id)),
            },
            Err(e) => Err(e),
        };
        if let Err(e) = plugged {
            rec.spec.nics.pop();
            rec.nic_ports.remove(&nic.mac);
            if let Err(e2) = self.sync_ports(&slot, rec) {
                tracing::warn!(server = %id, error = %e2, "unplugging a NIC that failed to attach");
            }
            return Err(e);
        }
        rec.argv.extend(wiring.args());
        tracing::info!(server = %id, mac = %nic.mac, network = %nic.network_id, "NIC hot-plugged");
        rec.save(&slot.layout.record()).await
    }

    /// Unplug a NIC: from the guest (hot-unplug, waiting for the guest to release it) if
    /// QEMU runs, then from its switch and the record. A NIC the server does not have is
    /// already detached.
    async fn detach_nic(&self, id: ServerId, mac: &str) -> Result<()> {
        let (slot, mut g) = lock!(self, id);
        self.claim(&slot, &mut g).await?;
        let mac = net::parse_mac(mac)?;
        let hex = net::mac_hex(&mac);
        let Some(idx) = g.record.as_ref().and_then(|r| {
            r.spec
                .nics
                .iter()
                .position(|n| net::parse_mac(&n.mac).ok() == Some(mac))
        }) else {
            return Ok(());
        };
        if layout::exists(&slot.layout.state_file()).await {
            return Err(Error::conflict(format!(
                "Instance {id} is suspended; resume it before changing its NICs."
            )));
        }
        if let Some(a) = g.live() {
            match a
                .call(|reply| Request::RemoveNic {
                    device_id: format!("nic-{hex}"),
                    netdev_id: format!("net-{hex}"),
                    timeout: NIC_UNPLUG_TIMEOUT,
                    reply,
                })
                .await
            {
                Ok(()) | Err(CallError::Gone) => {}
                Err(CallError::Failed(e)) => return Err(e),
            }
        }
        let rec = g.record(id)?;
        let nic = rec.spec.nics.remove(idx);
        rec.nic_ports.remove(&nic.mac.to_ascii_lowercase());
        rec.argv = cmdline::without_nic(&rec.argv, &hex);
        rec.save(&slot.layout.record()).await?;
        self.sync_ports(&slot, rec)?;
        layout::remove_file(&self.net.nic_socket(&mac)).await?;
        tracing::info!(server = %id, mac = %nic.mac, "NIC detached");
        Ok(())
    }

    /// Change a NIC's firewall profile: the switch applies it to the next frame.
    async fn set_firewall(&self, id: ServerId, mac: &str, profile: &str) -> Result<()> {
        let profile = net::firewall::Profile::parse(profile)
            .filter(|_| !profile.is_empty())
            .ok_or_else(|| {
                Error::invalid(format!(
                    "Invalid firewall profile '{profile}' (ENABLED, DISABLED or PROTECTED)."
                ))
            })?;
        let (slot, mut g) = lock!(self, id);
        let mac_bytes = net::parse_mac(mac)?;
        let rec = g.record(id)?;
        let nic = rec
            .spec
            .nics
            .iter_mut()
            .find(|n| net::parse_mac(&n.mac).ok() == Some(mac_bytes))
            .ok_or_else(|| Error::not_found(format!("Instance {id} has no NIC with MAC {mac}.")))?;
        nic.firewall = profile.as_str().to_owned();
        rec.save(&slot.layout.record()).await?;
        self.sync_ports(&slot, rec)
    }
}

/// The pid of a live QEMU whose command line names this instance's directory (the pid
/// file alone could name a recycled pid).
fn unowned_qemu(l: &Layout) -> Option<u32> {
    procfs::read_pid_file(&l.pid_file()).filter(|&pid| procfs::is_our_qemu(pid, &l.dir))
}

/// Why an action is refused while a QEMU nobody owns runs on the instance.
fn unresponsive(slot: &Slot) -> Error {
    let pid = unowned_qemu(&slot.layout).unwrap_or_default();
    Error::conflict(format!(
        "Instance {} has a running QEMU process ({pid}) that does not answer QMP; the agent \
         keeps trying to reach it and will not start or stop the server meanwhile (deleting \
         the server kills it).",
        slot.id
    ))
}

async fn report(sink: &SharedSink, id: ServerId, power: PowerState, reason: String) {
    let sink = sink.read().unwrap_or_else(|p| p.into_inner()).clone();
    sink.report(AgentEvent::PowerState {
        server_id: id,
        power_state: power,
        reason,
    })
    .await;
}

/// Re-attach to a server's QEMU if it still runs (a new actor; the state from
/// `query-status`); otherwise settle its power state from its files, and report a server
/// that should run but has no process.
///
/// Invariant: a QEMU process that is alive but does not answer QMP (stopped, wedged, or
/// another client holds its socket) answers `NoState` and nothing about it is touched: it
/// is never called `Shutdown`, since the controller would then start (or HA-restart) a
/// second QEMU on the same disks.
async fn attach(slot: &Slot, g: &mut Inner, sink: &SharedSink, timeout: Duration) -> PowerState {
    let l = &slot.layout;
    if let Some(pid) = unowned_qemu(l) {
        match qmp::Qmp::connect(&l.qmp_socket(), timeout).await {
            Ok(q) => {
                let actor = ActorHandle::start(
                    slot.id,
                    pid,
                    q,
                    None,
                    slot.power.clone(),
                    sink.clone(),
                    l.qemu_log(),
                );
                match actor.call(Request::Status).await {
                    Ok(s) => {
                        let p = actor::power_of_status(&s);
                        set_power(&slot.power, p);
                        g.actor = Some(actor);
                        if p != PowerState::Shutdown {
                            return p;
                        }
                        // The guest powered off while nobody watched (-no-shutdown kept
                        // QEMU): finish the stop.
                        if let Some(a) = g.actor.as_ref() {
                            let _ = a.call(Request::Quit).await;
                        }
                        if let Some(mut a) = g.actor.take() {
                            a.finished(Duration::from_secs(10)).await;
                        }
                        if unowned_qemu(l).is_none() {
                            report_stale(
                                slot,
                                g,
                                sink,
                                "guest powered off while the agent was down",
                            )
                            .await;
                            return PowerState::Shutdown;
                        }
                        tracing::warn!(server = %slot.id, pid, "QEMU did not quit after its guest powered off");
                    }
                    Err(e) => {
                        tracing::warn!(server = %slot.id, pid, error = ?e, "re-attached QEMU does not answer");
                        actor.detach().await;
                    }
                }
            }
            Err(e) => {
                tracing::warn!(server = %slot.id, pid, error = %e, "QEMU runs but its QMP socket does not answer; leaving it alone");
            }
        }
        if unowned_qemu(l).is_some() {
            set_power(&slot.power, PowerState::NoState);
            return PowerState::NoState;
        }
        // It ended while we tried: settle from the files below.
    }
    if layout::exists(&l.state_file()).await {
        set_power(&slot.power, PowerState::Suspended);
        return PowerState::Suspended;
    }
    set_power(&slot.power, PowerState::Shutdown);
    report_stale(
        slot,
        g,
        sink,
        "QEMU process not running after an agent restart",
    )
    .await;
    PowerState::Shutdown
}

/// Report, once, a server whose record says it should run as `Shutdown`.
async fn report_stale(slot: &Slot, g: &mut Inner, sink: &SharedSink, reason: &str) {
    let Some(rec) = g.record.as_mut().filter(|r| r.running) else {
        return;
    };
    rec.running = false;
    if let Err(e) = rec.save(&slot.layout.record()).await {
        tracing::warn!(server = %slot.id, error = %e, "saving record");
    }
    report(sink, slot.id, PowerState::Shutdown, reason.to_owned()).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::UnixListener;

    /// Collects what the driver reports.
    #[derive(Default)]
    struct Events(Mutex<Vec<AgentEvent>>);

    #[async_trait]
    impl EventSink for Events {
        async fn report(&self, event: AgentEvent) {
            self.0.lock().unwrap().push(event);
        }
    }

    impl Events {
        fn powers(&self, id: ServerId) -> Vec<PowerState> {
            self.0
                .lock()
                .unwrap()
                .iter()
                .filter_map(|e| match e {
                    AgentEvent::PowerState {
                        server_id,
                        power_state,
                        ..
                    } if *server_id == id => Some(*power_state),
                    _ => None,
                })
                .collect()
        }
    }

    pub(super) fn spec(id: ServerId) -> InstanceSpec {
        InstanceSpec {
            server_id: id,
            name: "t".into(),
            hostname: "t".into(),
            vcpus: 1,
            ram_mb: 256,
            disk_gb: 1,
            ephemeral_gb: 0,
            swap_mb: 0,
            image: None,
            user_data: None,
            metadata: Default::default(),
            nics: vec![],
            volumes: vec![],
        }
    }

    /// An agent restarts and finds a live QEMU (here a `tail` whose command line names
    /// the instance directory, as QEMU's does) whose QMP socket accepts but never greets.
    /// The server must be NoState, never Shutdown; starting it must be refused without
    /// touching the pid file or the disk; once QMP answers, the retry re-attaches.
    #[tokio::test]
    async fn a_live_qemu_that_does_not_answer_qmp_is_left_alone() {
        let root = std::env::temp_dir().join(format!("nq-{}", uuid::Uuid::new_v4().simple()));
        let state = root.join("s");
        std::fs::create_dir_all(&state).unwrap();
        // No real QEMU is started: the binary only has to answer --version.
        let qemu = root.join("fake-qemu");
        std::fs::write(&qemu, "#!/bin/sh\necho 'QEMU emulator version 10.0.2'\n").unwrap();
        std::fs::set_permissions(&qemu, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let state = std::fs::canonicalize(&state).unwrap();
        let id = ServerId::new();
        let dir = state.join("instances").join(id.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        let mut rec = Record::new(spec(id));
        rec.running = true;
        let l = Layout::new(dir.clone());
        rec.save(&l.record()).await.unwrap();
        std::fs::write(l.root_disk(), b"the live guest's disk").unwrap();
        std::fs::write(l.console_log(), b"").unwrap();
        let mut guest = Command::new("tail")
            .arg("-f")
            .arg(l.console_log())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let pid = guest.id().unwrap();
        std::fs::write(l.pid_file(), format!("{pid}\n")).unwrap();
        // Accepts and holds connections without a greeting: a wedged QEMU, or one whose
        // QMP socket another client holds.
        let listener = UnixListener::bind(l.qmp_socket()).unwrap();
        let deaf = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });

        let events = Arc::new(Events::default());
        let mut cfg = QemuConfig::new(
            state.clone(),
            Arc::new(LocalBlobSource {
                blob_dir: root.join("blobs"),
            }),
        );
        cfg.qemu_binary = qemu;
        cfg.qmp_attach_timeout = Duration::from_millis(300);
        cfg.qmp_retry_max = Duration::from_millis(200);
        let d = QemuDriver::start(cfg, events.clone()).await.unwrap();
        assert_eq!(
            d.list_instances().await.unwrap(),
            vec![(id, PowerState::NoState)]
        );
        assert_eq!(events.powers(id), vec![PowerState::NoState]);

        let err = d.power_on(&spec(id)).await.unwrap_err();
        assert!(matches!(err, Error::Conflict(_)), "{err:?}");
        assert!(err.to_string().contains(&pid.to_string()), "{err}");
        for e in [
            d.reboot(&spec(id), true).await.unwrap_err(),
            d.power_off(&spec(id), 0).await.unwrap_err(),
            d.rebuild(&spec(id), events.clone()).await.unwrap_err(),
        ] {
            assert!(matches!(e, Error::Conflict(_)), "{e:?}");
        }
        assert!(procfs::alive(pid), "the live QEMU was not killed");
        assert_eq!(procfs::read_pid_file(&l.pid_file()), Some(pid));
        assert_eq!(
            std::fs::read(l.root_disk()).unwrap(),
            b"the live guest's disk"
        );
        assert!(!events.powers(id).contains(&PowerState::Shutdown));
        assert_eq!(
            d.list_instances().await.unwrap(),
            vec![(id, PowerState::NoState)]
        );

        // QMP answers again: the background retry re-attaches and reports the real state.
        deaf.abort();
        let _ = deaf.await;
        std::fs::remove_file(l.qmp_socket()).unwrap();
        let server = tokio::spawn(qmp::tests::fake_server(
            UnixListener::bind(l.qmp_socket()).unwrap(),
        ));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while !events.powers(id).contains(&PowerState::Running) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "never re-attached: {:?}",
                events.powers(id)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(
            d.list_instances().await.unwrap(),
            vec![(id, PowerState::Running)]
        );

        d.detach_all().await;
        server.abort();
        guest.kill().await.unwrap();
        std::fs::remove_dir_all(&root).unwrap();
    }
}
