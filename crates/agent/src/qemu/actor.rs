//! The actor of one QEMU process: the only owner of its QMP connection (a QMP socket serves
//! one client at a time) and the only observer of its events and its exit.
//!
//! Requests arrive on a channel, each with a oneshot reply; the actor runs them one at a time.
//! Between requests it watches QMP events and the process, keeps the shared observed power
//! state current, and reports power changes nobody asked for (the guest powered itself off,
//! paused on an error, panicked, or QEMU died) to the [`EventSink`]. A guest that reboots
//! itself stays `Running` and is not reported. What a request causes is not reported (the
//! request's own answer carries it), but a QEMU that dies without being told to is reported
//! `Crashed` even in the middle of a request.
//!
//! Invariants:
//! - the actor lives exactly as long as the QEMU process it owns, or until the driver drops
//!   its handle (detach: the process keeps running and a later driver re-attaches);
//! - a guest that powers off on its own is reported once as `Shutdown`, then the actor quits
//!   the process (QEMU runs with `-no-shutdown`), so "Shutdown" always means "no process";
//! - a process that ends without a SHUTDOWN event or our own `quit` (killed, crashed) is
//!   reported `Crashed`.

use super::procfs;
use super::qmp::{Event, ExecError, Qmp};
use nimbus_model::ServerId;
use nimbus_model::agent::{
    AgentEvent, CpuDetail, Diagnostics, DiskDetail, EventSink, MemoryDetails, NicDetail, VncConsole,
};
use nimbus_model::state::PowerState;
use nimbus_model::{Error, Result};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::process::Child;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Where a driver's unsolicited events go; shared by all actors of a driver and replaceable
/// (the most recent caller's sink wins).
pub type SharedSink = Arc<RwLock<Arc<dyn EventSink>>>;

/// The observed power state, shared between the driver and the actor.
pub type SharedPower = Arc<Mutex<PowerState>>;

pub fn get_power(p: &SharedPower) -> PowerState {
    *p.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn set_power(p: &SharedPower, s: PowerState) {
    *p.lock().unwrap_or_else(|e| e.into_inner()) = s;
}

type Reply<T> = oneshot::Sender<Result<T>>;

/// Longest wait for one QMP reply (long operations poll with short commands).
const QMP_TIMEOUT: Duration = Duration::from_secs(30);

/// Static facts the diagnostics need besides QMP.
#[derive(Clone, Debug)]
pub struct DiagInput {
    pub ram_mb: u64,
    pub macs: Vec<String>,
    pub accel: String,
}

pub enum Request {
    /// The QEMU run state (`query-status`).
    Status(Reply<String>),
    /// ACPI power button, then wait up to `timeout` for the guest to shut down. Answers
    /// whether it did.
    Powerdown {
        timeout: Duration,
        reply: Reply<bool>,
    },
    /// End the process (`quit`, SIGKILL if it lingers) and wait for it to be gone.
    Quit(Reply<()>),
    /// Graceful reboot: power button, wait for the guest's shutdown, `system_reset` +
    /// `cont`. After `timeout` without a shutdown, a hard reset. Answers "was graceful".
    SoftReboot {
        timeout: Duration,
        reply: Reply<bool>,
    },
    /// Hard reset (`system_reset`, then `cont` if the VM is not running).
    Reset(Reply<()>),
    Pause(Reply<()>),
    Unpause(Reply<()>),
    /// Pause the vCPUs (if running), flatten the disk with `qemu-img convert -U`, continue.
    Snapshot {
        disk: PathBuf,
        dest: PathBuf,
        reply: Reply<u64>,
    },
    /// Save RAM and device state to `path` (`migrate` to `file:`) and quit.
    SaveState {
        path: PathBuf,
        reply: Reply<()>,
    },
    /// Load state saved by `SaveState` into this process (launched with `-incoming defer`)
    /// and wait until it runs.
    LoadState {
        path: PathBuf,
        reply: Reply<()>,
    },
    /// Set a temporary VNC password valid for `ttl` and answer where VNC listens.
    Vnc {
        password: String,
        ttl: Duration,
        reply: Reply<VncConsole>,
    },
    Diagnostics {
        input: DiagInput,
        reply: Reply<Diagnostics>,
    },
}

/// Why a call to the actor did not produce an answer.
#[derive(Debug)]
pub enum CallError {
    /// The process is gone (the actor ended before answering).
    Gone,
    Failed(Error),
}

impl From<Error> for CallError {
    fn from(e: Error) -> Self {
        CallError::Failed(e)
    }
}

/// The driver's handle on an actor.
pub struct ActorHandle {
    tx: mpsc::Sender<Request>,
    pub pid: u32,
    task: JoinHandle<()>,
}

impl ActorHandle {
    /// Start an actor for a process the driver spawned (`child`) or re-attached to (`None`).
    pub fn start(
        server_id: ServerId,
        pid: u32,
        qmp: Qmp,
        child: Option<Child>,
        power: SharedPower,
        sink: SharedSink,
        qemu_log: PathBuf,
    ) -> ActorHandle {
        let (tx, rx) = mpsc::channel(16);
        let actor = Actor {
            server_id,
            pid,
            qmp: Some(qmp),
            child,
            power,
            sink,
            qemu_log,
            shutdown_seen: false,
            exited: None,
            busy: false,
            quit_pending: false,
            reset_seen: false,
            quitting: false,
        };
        let task = tokio::spawn(actor.run(rx));
        ActorHandle { tx, pid, task }
    }

    /// False once the process is gone (the actor has ended).
    pub fn alive(&self) -> bool {
        !self.tx.is_closed() && !self.task.is_finished()
    }

    pub async fn call<T>(
        &self,
        make: impl FnOnce(Reply<T>) -> Request,
    ) -> std::result::Result<T, CallError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| CallError::Gone)?;
        match rx.await {
            Ok(r) => r.map_err(CallError::Failed),
            Err(_) => Err(CallError::Gone),
        }
    }

    /// Stop the actor without touching the process (the QMP connection is closed so
    /// another client can attach) and wait until it has let go.
    pub async fn detach(self) {
        drop(self.tx);
        let _ = self.task.await;
    }

    /// Wait until the actor has ended (its process exited).
    pub async fn finished(&mut self, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, &mut self.task).await.is_ok()
    }
}

/// How the process ended.
#[derive(Clone, Debug)]
struct Exit(String);

/// What the actor observed.
enum Observation {
    Event(Event),
    QmpClosed,
    Exited(Exit),
}

struct Actor {
    server_id: ServerId,
    pid: u32,
    /// `None` once QEMU closed the connection.
    qmp: Option<Qmp>,
    /// Our own child: its `wait` reaps it and tells how it ended. `None` for a process a
    /// previous agent spawned; its end is seen as QMP EOF plus the pid disappearing.
    child: Option<Child>,
    power: SharedPower,
    sink: SharedSink,
    qemu_log: PathBuf,
    /// A SHUTDOWN event arrived since the last (re)boot.
    shutdown_seen: bool,
    exited: Option<Exit>,
    /// A request is running: what happens now is its doing and is not reported.
    busy: bool,
    /// The guest powered off on its own: end the process next.
    quit_pending: bool,
    /// A RESET event arrived since the last `system_reset` the actor sent.
    reset_seen: bool,
    /// The actor is ending the process itself.
    quitting: bool,
}

fn exec_err(cmd: &str, e: ExecError) -> Error {
    Error::internal(format!("QMP {cmd}: {e}"))
}

/// Map QEMU's run state to a power state.
pub fn power_of_status(status: &str) -> PowerState {
    match status {
        "running" => PowerState::Running,
        "shutdown" => PowerState::Shutdown,
        "guest-panicked" | "internal-error" => PowerState::Crashed,
        "inmigrate" | "prelaunch" => PowerState::NoState,
        _ => PowerState::Paused,
    }
}

impl Actor {
    async fn run(mut self, mut rx: mpsc::Receiver<Request>) {
        loop {
            if self.exited.is_some() {
                break;
            }
            tokio::select! {
                req = rx.recv() => match req {
                    Some(req) => {
                        self.busy = true;
                        self.handle(req).await;
                        // Events the request caused that are already queued are its own.
                        while let Some(ev) = self.qmp.as_mut().and_then(Qmp::try_next_event) {
                            self.observe(Observation::Event(ev)).await;
                        }
                        self.busy = false;
                    }
                    // Detached: leave the process running.
                    None => return,
                },
                obs = self.observe_next() => self.observe(obs).await,
            }
            if std::mem::take(&mut self.quit_pending) {
                self.busy = true;
                if let Err(e) = self.quit().await {
                    tracing::warn!(server = %self.server_id, error = %e, "quitting a powered-off guest");
                }
                self.busy = false;
            }
        }
        // The process is gone: fail whatever is still queued.
        rx.close();
        while let Some(req) = rx.recv().await {
            drop(req);
        }
    }

    /// The next thing that happens to the process. Cancel-safe.
    async fn observe_next(&mut self) -> Observation {
        let pid = self.pid;
        match (&mut self.qmp, &mut self.child) {
            (Some(qmp), Some(child)) => tokio::select! {
                ev = qmp.next_event() => ev.map_or(Observation::QmpClosed, Observation::Event),
                st = child.wait() => Observation::Exited(Exit(describe_status(st))),
            },
            (None, Some(child)) => Observation::Exited(Exit(describe_status(child.wait().await))),
            (Some(qmp), None) => qmp
                .next_event()
                .await
                .map_or(Observation::QmpClosed, Observation::Event),
            (None, None) => {
                // Not our child: QMP is closed, wait for the pid to disappear.
                while procfs::alive(pid) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Observation::Exited(Exit("exited".into()))
            }
        }
    }

    async fn report(&self, power_state: PowerState, reason: String) {
        let sink = self.sink.read().unwrap_or_else(|e| e.into_inner()).clone();
        tracing::info!(server = %self.server_id, power = ?power_state, %reason, "guest power change");
        sink.report(AgentEvent::PowerState {
            server_id: self.server_id,
            power_state,
            reason,
        })
        .await;
    }

    fn power(&self) -> PowerState {
        get_power(&self.power)
    }

    fn set(&self, s: PowerState) {
        set_power(&self.power, s);
    }

    async fn observe(&mut self, obs: Observation) {
        let quiet = self.busy;
        match obs {
            Observation::QmpClosed => self.qmp = None,
            Observation::Exited(exit) => {
                let before = self.power();
                // Only our own `quit` or a SHUTDOWN (guest poweroff, SIGTERM) ends QEMU
                // legitimately; anything else is a crash, even in the middle of a request.
                let expected = self.quitting || self.shutdown_seen;
                if before != PowerState::Suspended {
                    self.set(if expected {
                        PowerState::Shutdown
                    } else {
                        PowerState::Crashed
                    });
                }
                if !expected {
                    let tail = last_log_line(&self.qemu_log).await;
                    self.report(
                        PowerState::Crashed,
                        format!("QEMU process {} {}{tail}", self.pid, exit.0),
                    )
                    .await;
                }
                self.exited = Some(exit);
            }
            Observation::Event(ev) => {
                let data = &ev.data;
                match ev.name.as_str() {
                    "SHUTDOWN" => {
                        self.shutdown_seen = true;
                        let was = self.power();
                        self.set(PowerState::Shutdown);
                        if !quiet && was != PowerState::Shutdown {
                            let reason = data["reason"].as_str().unwrap_or("unknown").to_owned();
                            let why = if data["guest"].as_bool() == Some(true) {
                                format!("guest powered off ({reason})")
                            } else {
                                format!("QEMU shut down ({reason})")
                            };
                            self.report(PowerState::Shutdown, why).await;
                            // -no-shutdown keeps the process; a stopped server has none.
                            self.quit_pending = true;
                        }
                    }
                    // A STOP after a guest shutdown (-no-shutdown) is not a pause.
                    "STOP" if self.power() == PowerState::Running => {
                        self.set(PowerState::Paused);
                        if !quiet {
                            let reason = "guest paused by QEMU (e.g. a disk I/O error)";
                            self.report(PowerState::Paused, reason.into()).await;
                        }
                    }
                    "RESUME" => {
                        let was = self.power();
                        self.set(PowerState::Running);
                        // Only a resume from a pause is news; QEMU also emits RESUME when a
                        // freshly launched VM starts.
                        if !quiet && was == PowerState::Paused {
                            self.report(PowerState::Running, "guest resumed".into())
                                .await;
                        }
                    }
                    "RESET" => {
                        // A reset keeps the guest running: no power state change, so nothing
                        // is reported. (SeaBIOS itself answers every system_reset with a
                        // guest-reset of its own, so "who asked" could not be told anyway.)
                        self.reset_seen = true;
                        tracing::debug!(server = %self.server_id, reason = %data["reason"], "guest reset");
                    }
                    "GUEST_PANICKED" => {
                        self.set(PowerState::Crashed);
                        if !quiet {
                            self.report(PowerState::Crashed, "guest kernel panicked".into())
                                .await;
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    /// Pump observations until `done` holds or `deadline` passes; answers whether it held.
    async fn wait_until(&mut self, deadline: Instant, done: impl Fn(&Actor) -> bool) -> bool {
        loop {
            if done(self) {
                return true;
            }
            if self.exited.is_some() {
                return false;
            }
            tokio::select! {
                obs = self.observe_next() => self.observe(obs).await,
                _ = tokio::time::sleep_until(deadline) => return done(self),
            }
        }
    }

    async fn exec(&mut self, cmd: &str, args: Option<Value>) -> Result<Value> {
        let Some(qmp) = self.qmp.as_mut() else {
            return Err(Error::conflict("The QEMU process is not running."));
        };
        // A hung QEMU must not hang the actor forever; a late reply is skipped by its id.
        match tokio::time::timeout(QMP_TIMEOUT, qmp.execute(cmd, args)).await {
            Ok(r) => r.map_err(|e| exec_err(cmd, e)),
            Err(_) => Err(Error::internal(format!(
                "QMP {cmd}: no reply within {QMP_TIMEOUT:?}"
            ))),
        }
    }

    async fn status(&mut self) -> Result<String> {
        let v = self.exec("query-status", None).await?;
        Ok(v["status"].as_str().unwrap_or("unknown").to_owned())
    }

    async fn quit(&mut self) -> Result<()> {
        if self.exited.is_some() {
            return Ok(());
        }
        self.quitting = true;
        // The reply may never come (QEMU closes the socket as it exits): that is fine.
        if let Some(qmp) = self.qmp.as_mut() {
            let _ = tokio::time::timeout(Duration::from_secs(2), qmp.execute("quit", None)).await;
        }
        if !self
            .wait_until(Instant::now() + Duration::from_secs(10), |a| {
                a.exited.is_some()
            })
            .await
        {
            tracing::warn!(server = %self.server_id, pid = self.pid, "QEMU ignored quit; killing it");
            match self.child.as_mut() {
                Some(child) => {
                    let _ = child.start_kill();
                }
                None => procfs::kill_hard(self.pid).await,
            }
            if !self
                .wait_until(Instant::now() + Duration::from_secs(10), |a| {
                    a.exited.is_some()
                })
                .await
            {
                return Err(Error::internal(format!(
                    "QEMU process {} did not exit",
                    self.pid
                )));
            }
        }
        self.set(PowerState::Shutdown);
        Ok(())
    }

    async fn powerdown(&mut self, timeout: Duration) -> Result<bool> {
        if self.exited.is_some() {
            return Ok(true);
        }
        self.shutdown_seen = false;
        self.exec("system_powerdown", None).await?;
        let deadline = Instant::now() + timeout;
        Ok(self
            .wait_until(deadline, |a| a.shutdown_seen || a.exited.is_some())
            .await)
    }

    /// `system_reset`, then `cont` unless the VM already runs (after a guest shutdown under
    /// -no-shutdown, or when paused, the VM stays stopped across a reset).
    async fn reset(&mut self) -> Result<()> {
        self.reset_seen = false;
        self.exec("system_reset", None).await?;
        // QEMU performs the reset in its main loop after replying; wait for it so the RESET
        // event is this request's and the status below is the post-reset one.
        let deadline = Instant::now() + Duration::from_secs(10);
        if !self
            .wait_until(deadline, |a| a.reset_seen || a.exited.is_some())
            .await
        {
            return Err(Error::internal("system_reset: no RESET event within 10 s"));
        }
        if self.status().await? != "running" {
            self.exec("cont", None).await?;
        }
        self.shutdown_seen = false;
        self.set(PowerState::Running);
        Ok(())
    }

    async fn soft_reboot(&mut self, timeout: Duration) -> Result<bool> {
        if self.status().await? != "running" {
            // A paused guest cannot see the power button: waiting would only burn the timeout.
            self.reset().await?;
            return Ok(false);
        }
        let graceful = self.powerdown(timeout).await?;
        if !graceful {
            tracing::info!(server = %self.server_id, "guest ignored the power button; hard reset");
        }
        self.reset().await?;
        Ok(graceful)
    }

    async fn snapshot(&mut self, disk: PathBuf, dest: PathBuf) -> Result<u64> {
        let was_running = self.status().await? == "running";
        if was_running {
            // `stop` drains and flushes the block layer, so the overlay is consistent.
            self.exec("stop", None).await?;
        }
        let result = super::image::flatten(&disk, &dest, true).await;
        if was_running {
            self.exec("cont", None).await?;
        }
        result
    }

    async fn save_state(&mut self, path: PathBuf) -> Result<()> {
        let tmp = path.with_extension("part");
        let uri = format!("file:{}", tmp.to_string_lossy());
        self.exec("migrate", Some(json!({ "uri": uri }))).await?;
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let v = self.exec("query-migrate", None).await?;
            match v["status"].as_str().unwrap_or("") {
                "completed" => break,
                "failed" | "cancelled" => {
                    let _ = tokio::fs::remove_file(&tmp).await;
                    return Err(Error::internal(format!(
                        "saving the VM state failed: {}",
                        v["error-desc"].as_str().unwrap_or("unknown")
                    )));
                }
                _ if Instant::now() > deadline => {
                    let _ = self.exec("migrate_cancel", None).await;
                    return Err(Error::internal("saving the VM state timed out"));
                }
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        tokio::fs::rename(&tmp, &path)
            .await
            .map_err(|e| Error::internal(format!("rename {}: {e}", tmp.display())))?;
        self.quit().await?;
        self.set(PowerState::Suspended);
        Ok(())
    }

    async fn load_state(&mut self, path: PathBuf) -> Result<()> {
        let uri = format!("file:{}", path.to_string_lossy());
        self.exec("migrate-incoming", Some(json!({ "uri": uri })))
            .await?;
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let status = self.status().await?;
            match status.as_str() {
                "running" => break,
                "inmigrate" | "prelaunch" | "paused" | "postmigrate" | "finish-migrate"
                | "restore-vm"
                    if Instant::now() < deadline =>
                {
                    // QEMU starts the guest by itself once the state is loaded.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                other => {
                    let m = self.exec("query-migrate", None).await.unwrap_or_default();
                    return Err(Error::internal(format!(
                        "restoring the VM state failed (status {other}): {}",
                        m["error-desc"].as_str().unwrap_or("unknown")
                    )));
                }
            }
        }
        self.shutdown_seen = false;
        self.set(PowerState::Running);
        Ok(())
    }

    async fn vnc(&mut self, password: String, ttl: Duration) -> Result<VncConsole> {
        self.exec(
            "set_password",
            Some(json!({ "protocol": "vnc", "password": password })),
        )
        .await?;
        let time = format!("+{}", ttl.as_secs().max(1));
        self.exec(
            "expire_password",
            Some(json!({ "protocol": "vnc", "time": time })),
        )
        .await?;
        let servers = self.exec("query-vnc-servers", None).await?;
        let mut host = None;
        let mut port = None;
        let mut websocket_port = None;
        for server in servers.as_array().into_iter().flatten() {
            for listener in server["server"].as_array().into_iter().flatten() {
                let service = listener["service"]
                    .as_str()
                    .and_then(|s| s.parse::<u16>().ok());
                if listener["websocket"].as_bool() == Some(true) {
                    websocket_port = websocket_port.or(service);
                } else if port.is_none() {
                    port = service;
                    host = listener["host"].as_str().map(str::to_owned);
                }
            }
        }
        let port = port.ok_or_else(|| Error::internal("QEMU reports no VNC listener"))?;
        Ok(VncConsole {
            host: host.unwrap_or_else(|| "127.0.0.1".into()),
            port,
            password,
            websocket_port,
        })
    }

    async fn diagnostics(&mut self, input: DiagInput) -> Result<Diagnostics> {
        let status = self.status().await?;
        let cpus = self.exec("query-cpus-fast", None).await?;
        let blocks = self.exec("query-blockstats", None).await?;
        let cpu_details: Vec<CpuDetail> = cpus
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| CpuDetail {
                id: c["cpu-index"].as_u64().unwrap_or(0) as u32,
                time: c["thread-id"]
                    .as_u64()
                    .and_then(|tid| procfs::cpu_time_ns(self.pid, Some(tid as u32)))
                    .unwrap_or(0),
                utilisation: None,
            })
            .collect();
        let disk_details: Vec<DiskDetail> = blocks
            .as_array()
            .into_iter()
            .flatten()
            .filter(|b| b.get("qdev").is_some() || b.get("device").is_some_and(|d| d != ""))
            .map(|b| {
                let s = &b["stats"];
                let n = |k: &str| s[k].as_u64().unwrap_or(0);
                DiskDetail {
                    read_bytes: n("rd_bytes"),
                    read_requests: n("rd_operations"),
                    write_bytes: n("wr_bytes"),
                    write_requests: n("wr_operations"),
                    errors_count: n("failed_rd_operations")
                        + n("failed_wr_operations")
                        + n("failed_flush_operations"),
                }
            })
            .collect();
        Ok(Diagnostics {
            state: power_of_status(&status).as_str().to_owned(),
            driver: "qemu".into(),
            hypervisor: input.accel,
            hypervisor_os: "linux".into(),
            uptime: procfs::age_secs(self.pid).unwrap_or(0),
            num_cpus: cpu_details.len() as u32,
            num_disks: disk_details.len() as u32,
            num_nics: input.macs.len() as u32,
            memory_details: MemoryDetails {
                maximum: input.ram_mb,
                used: procfs::rss_kib(self.pid).unwrap_or(0) / 1024,
            },
            cpu_details,
            disk_details,
            // No QMP command exposes per-NIC counters for user-mode networking; real counters
            // come with the per-network L2 segments.
            nic_details: input
                .macs
                .into_iter()
                .map(|mac_address| NicDetail {
                    mac_address,
                    ..Default::default()
                })
                .collect(),
            config_drive: false,
        })
    }

    async fn handle(&mut self, req: Request) {
        match req {
            Request::Status(r) => {
                let v = self.status().await;
                let _ = r.send(v);
            }
            Request::Powerdown { timeout, reply } => {
                let v = self.powerdown(timeout).await;
                let _ = reply.send(v);
            }
            Request::Quit(r) => {
                let v = self.quit().await;
                let _ = r.send(v);
            }
            Request::SoftReboot { timeout, reply } => {
                let v = self.soft_reboot(timeout).await;
                let _ = reply.send(v);
            }
            Request::Reset(r) => {
                let v = self.reset().await;
                let _ = r.send(v);
            }
            Request::Pause(r) => {
                let v = self
                    .exec("stop", None)
                    .await
                    .map(|_| self.set(PowerState::Paused));
                let _ = r.send(v);
            }
            Request::Unpause(r) => {
                let v = self
                    .exec("cont", None)
                    .await
                    .map(|_| self.set(PowerState::Running));
                let _ = r.send(v);
            }
            Request::Snapshot { disk, dest, reply } => {
                let v = self.snapshot(disk, dest).await;
                let _ = reply.send(v);
            }
            Request::SaveState { path, reply } => {
                let v = self.save_state(path).await;
                let _ = reply.send(v);
            }
            Request::LoadState { path, reply } => {
                let v = self.load_state(path).await;
                let _ = reply.send(v);
            }
            Request::Vnc {
                password,
                ttl,
                reply,
            } => {
                let v = self.vnc(password, ttl).await;
                let _ = reply.send(v);
            }
            Request::Diagnostics { input, reply } => {
                let v = self.diagnostics(input).await;
                let _ = reply.send(v);
            }
        }
    }
}

fn describe_status(st: std::io::Result<std::process::ExitStatus>) -> String {
    use std::os::unix::process::ExitStatusExt;
    match st {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(c), _) => format!("exited with status {c}"),
            (None, Some(sig)) => format!("was killed by signal {sig}"),
            _ => "exited".into(),
        },
        Err(e) => format!("could not be waited for ({e})"),
    }
}

/// The last non-empty line of QEMU's own log, as context for a crash report.
async fn last_log_line(path: &std::path::Path) -> String {
    let text = super::layout::tail_lines(path, Some(3), 4096)
        .await
        .unwrap_or_default();
    match text.lines().rev().find(|l| !l.trim().is_empty()) {
        Some(l) => format!(": {}", l.trim()),
        None => String::new(),
    }
}
