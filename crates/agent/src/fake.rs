//! The `fake` driver: no guest, but the lifecycle of a real one. Every action takes a
//! configurable, non-zero time; boot reports rising progress; console output, diagnostics and
//! snapshots are synthetic but deterministic; and faults can be injected per server through
//! its metadata (`nimbus:fault`) or for the whole host through configuration.
//!
//! Fault syntax (comma-separated): `spawn` (boot fails), `reboot` (reboots fail), `stop`
//! (power-off fails), `stall` (boot never finishes: the server stays in BUILD until deleted),
//! `crash-after:<duration>` (the guest dies that long after each boot; durations like `500ms`,
//! `5s`, `2m`).

use crate::hypervisor::{Hypervisor, SnapshotFile};
use async_trait::async_trait;
use nimbus_model::agent::{
    AgentEvent, CpuDetail, Diagnostics, DiskDetail, EventSink, HostInfo, InstanceSpec,
    MemoryDetails, NicDetail, NicSpec, VncConsole,
};
use nimbus_model::state::PowerState;
use nimbus_model::{Error, ImageId, Result, ServerId};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The metadata key that injects faults.
pub const FAULT_KEY: &str = "nimbus:fault";

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    Spawn,
    Reboot,
    Stop,
    Stall,
    CrashAfter(Duration),
}

/// Parse a duration like `500ms`, `5s`, `2m`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: f64 = num.parse().ok()?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return None,
    };
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

/// Parse a fault list. Unknown words are an error naming them, so a typo is not silently
/// ignored.
pub fn parse_faults(s: &str) -> std::result::Result<Vec<Fault>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|w| !w.is_empty())
        .map(|w| match w {
            "spawn" => Ok(Fault::Spawn),
            "reboot" => Ok(Fault::Reboot),
            "stop" => Ok(Fault::Stop),
            "stall" => Ok(Fault::Stall),
            _ => w
                .strip_prefix("crash-after:")
                .and_then(parse_duration)
                .map(Fault::CrashAfter)
                .ok_or_else(|| format!("unknown fault '{w}'")),
        })
        .collect()
}

/// Timing and capacity of the fake host.
#[derive(Clone, Debug)]
pub struct FakeConfig {
    pub host_name: String,
    pub vcpus: u32,
    pub ram_mb: u64,
    pub disk_gb: u64,
    /// Time from spawn to running.
    pub spawn_delay: Duration,
    /// Time for every other action.
    pub action_delay: Duration,
    /// Faults applied to every server of this host.
    pub faults: Vec<Fault>,
    /// Where snapshot files are written.
    pub work_dir: PathBuf,
}

impl Default for FakeConfig {
    fn default() -> Self {
        FakeConfig {
            host_name: "nimbus-fake".into(),
            vcpus: 64,
            ram_mb: 256 * 1024,
            disk_gb: 10_000,
            spawn_delay: Duration::from_millis(500),
            action_delay: Duration::from_millis(200),
            faults: Vec::new(),
            work_dir: std::env::temp_dir().join("nimbus-fake"),
        }
    }
}

struct Vm {
    power: PowerState,
    vcpus: u32,
    ram_mb: u64,
    macs: Vec<String>,
    hostname: String,
    faults: Vec<Fault>,
    console: Vec<String>,
    boots: u32,
    booted_at: Instant,
    /// Bumped by every boot and by destroy, so a pending crash timer or an in-flight boot
    /// knows it is stale.
    epoch: u64,
    destroyed: bool,
    /// The shape before a resize, until confirmed or reverted.
    old_shape: Option<(u32, u64)>,
    /// Consoles opened for this VM end when this is dropped (the VM is destroyed).
    console_stop: tokio::sync::watch::Sender<bool>,
}

/// A synthetic but plausible workload: per-server phase, slowly varying rates. Counters
/// are closed-form integrals of the rates, so they are deterministic in uptime and never
/// go backwards.
struct Workload {
    phase: f64,
}

impl Workload {
    fn of(id: ServerId) -> Self {
        Workload {
            phase: id.0.as_bytes()[0] as f64 / 255.0 * std::f64::consts::TAU,
        }
    }

    /// Busy fraction of each vCPU at time `t` (between 4 % and 20 %).
    fn cpu_fraction(&self, t: f64) -> f64 {
        0.12 + 0.08 * (t / 60.0 + self.phase).sin()
    }

    /// CPU seconds per vCPU since boot: ∫ cpu_fraction.
    fn cpu_seconds(&self, t: f64) -> f64 {
        0.12 * t - 0.08 * 60.0 * ((t / 60.0 + self.phase).cos() - self.phase.cos())
    }

    /// Bytes received since boot at 5–35 kB/s.
    fn rx_bytes(&self, t: f64) -> f64 {
        20_000.0 * t - 15_000.0 * 45.0 * ((t / 45.0 + self.phase).cos() - self.phase.cos())
    }

    /// Bytes written since boot at 2–14 kB/s.
    fn disk_write_bytes(&self, t: f64) -> f64 {
        131_072.0 + 8_000.0 * t
            - 6_000.0 * 90.0 * ((t / 90.0 + self.phase).cos() - self.phase.cos())
    }
}

/// The fake hypervisor.
pub struct FakeDriver {
    config: FakeConfig,
    vms: Arc<Mutex<HashMap<ServerId, Vm>>>,
    /// Where unrequested power changes (injected crashes) are reported; the sink of the
    /// latest spawn, so crash timers armed by later boots (reboot, start) report too.
    events: Mutex<Option<Arc<dyn EventSink>>>,
}

fn missing(id: ServerId) -> Error {
    Error::NotFound(format!("Instance {id} could not be found on this host."))
}

impl FakeDriver {
    pub fn new(config: FakeConfig) -> Self {
        FakeDriver {
            config,
            vms: Arc::new(Mutex::new(HashMap::new())),
            events: Mutex::new(None),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ServerId, Vm>> {
        self.vms.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn faults_for(&self, spec: &InstanceSpec) -> Result<Vec<Fault>> {
        let mut faults = self.config.faults.clone();
        if let Some(v) = spec.metadata.get(FAULT_KEY) {
            faults
                .extend(parse_faults(v).map_err(|e| Error::invalid(format!("{FAULT_KEY}: {e}")))?);
        }
        Ok(faults)
    }

    /// Apply `f` to a VM, failing if it does not exist.
    fn with_vm<T>(&self, id: ServerId, f: impl FnOnce(&mut Vm) -> Result<T>) -> Result<T> {
        let mut vms = self.lock();
        let vm = vms
            .get_mut(&id)
            .filter(|v| !v.destroyed)
            .ok_or_else(|| missing(id))?;
        f(vm)
    }

    fn boot_lines(vm: &Vm, id: ServerId) -> Vec<String> {
        vec![
            "[    0.000000] Linux version 6.1.0-nimbus-fake (nimbus@fake) #1 SMP".to_owned(),
            format!(
                "[    0.000000] Command line: console=ttyS0 root=/dev/vda1 boot={}",
                vm.boots
            ),
            format!("[    0.010000] Memory: {}K available", vm.ram_mb * 1024),
            format!("[    0.020000] smpboot: Allowing {} CPUs", vm.vcpus),
            "[    1.000000] virtio_net virtio0 eth0: registered".to_owned(),
            format!("[    1.500000] cloud-init: instance-id {id}"),
            format!("GUEST-READY hostname={} boot={}", vm.hostname, vm.boots),
            format!("{} login: ", vm.hostname),
        ]
    }

    /// Mark the VM running after a (re)boot and arm a crash timer if asked to.
    fn booted(&self, id: ServerId, events: Option<Arc<dyn EventSink>>) {
        let events = match events {
            Some(e) => {
                *self.events.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.clone());
                Some(e)
            }
            None => self
                .events
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        };
        let crash = {
            let mut vms = self.lock();
            let Some(vm) = vms.get_mut(&id) else { return };
            vm.power = PowerState::Running;
            vm.boots += 1;
            vm.epoch += 1;
            vm.booted_at = Instant::now();
            let lines = Self::boot_lines(vm, id);
            vm.console.extend(lines);
            vm.faults.iter().find_map(|f| match f {
                Fault::CrashAfter(d) => Some((*d, vm.epoch)),
                _ => None,
            })
        };
        if let (Some((after, epoch)), Some(events)) = (crash, events) {
            let vms = self.vms.clone();
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                let crashed = {
                    let mut vms = vms.lock().unwrap_or_else(|p| p.into_inner());
                    match vms.get_mut(&id) {
                        Some(vm)
                            if vm.epoch == epoch
                                && !vm.destroyed
                                && vm.power == PowerState::Running =>
                        {
                            vm.power = PowerState::Crashed;
                            vm.console
                                .push("Kernel panic - not syncing: nimbus fake crash".into());
                            true
                        }
                        _ => false,
                    }
                };
                if crashed {
                    events
                        .report(AgentEvent::PowerState {
                            server_id: id,
                            power_state: PowerState::Crashed,
                            reason: format!("injected fault crash-after:{}ms", after.as_millis()),
                        })
                        .await;
                }
            });
        }
    }

    async fn pause_for(&self, d: Duration) {
        if !d.is_zero() {
            tokio::time::sleep(d).await;
        }
    }

    async fn do_boot(
        &self,
        spec: &InstanceSpec,
        events: Arc<dyn EventSink>,
        fresh: bool,
    ) -> Result<PowerState> {
        let id = spec.server_id;
        let faults = self.faults_for(spec)?;
        let epoch = {
            let mut vms = self.lock();
            if let Some(vm) = vms.get_mut(&id).filter(|v| !v.destroyed) {
                if !fresh && vm.power == PowerState::Running {
                    return Ok(PowerState::Running);
                }
                vm.faults = faults.clone();
                vm.vcpus = spec.vcpus;
                vm.ram_mb = spec.ram_mb;
                vm.power = PowerState::NoState;
                vm.epoch += 1;
                vm.epoch
            } else {
                vms.insert(
                    id,
                    Vm {
                        power: PowerState::NoState,
                        vcpus: spec.vcpus,
                        ram_mb: spec.ram_mb,
                        macs: spec.nics.iter().map(|n| n.mac.clone()).collect(),
                        hostname: spec.hostname.clone(),
                        faults: faults.clone(),
                        console: Vec::new(),
                        boots: 0,
                        booted_at: Instant::now(),
                        epoch: 1,
                        destroyed: false,
                        old_shape: None,
                        console_stop: tokio::sync::watch::channel(false).0,
                    },
                );
                1
            }
        };
        const STEPS: u32 = 4;
        let step = self.config.spawn_delay / STEPS;
        for i in 1..=STEPS {
            self.pause_for(step).await;
            let alive = self
                .lock()
                .get(&id)
                .is_some_and(|v| !v.destroyed && v.epoch == epoch);
            if !alive {
                return Err(Error::conflict(format!(
                    "Instance {id} was deleted while it was being built."
                )));
            }
            if i < STEPS {
                events
                    .report(AgentEvent::Progress {
                        server_id: id,
                        progress: (i * 100 / STEPS) as u8,
                    })
                    .await;
            }
        }
        if faults.contains(&Fault::Stall) {
            // Stay in BUILD until destroyed.
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let alive = self
                    .lock()
                    .get(&id)
                    .is_some_and(|v| !v.destroyed && v.epoch == epoch);
                if !alive {
                    return Err(Error::conflict(format!(
                        "Instance {id} was deleted while it was being built."
                    )));
                }
            }
        }
        if faults.contains(&Fault::Spawn) {
            if let Some(vm) = self.lock().get_mut(&id) {
                vm.power = PowerState::Shutdown;
                vm.console
                    .push("[    0.500000] Kernel panic: injected spawn fault".into());
            }
            return Err(Error::internal(
                "injected fault: spawn failed (nimbus:fault=spawn)",
            ));
        }
        self.booted(id, Some(events));
        Ok(PowerState::Running)
    }
}

#[async_trait]
impl Hypervisor for FakeDriver {
    fn describe(&self) -> HostInfo {
        HostInfo {
            name: self.config.host_name.clone(),
            hypervisor_type: "fake".into(),
            hypervisor_version: 1000,
            vcpus: self.config.vcpus,
            ram_mb: self.config.ram_mb,
            disk_gb: self.config.disk_gb,
            capabilities: serde_json::json!({
                "driver": "fake",
                "spawn_delay_ms": self.config.spawn_delay.as_millis() as u64,
                "action_delay_ms": self.config.action_delay.as_millis() as u64,
            }),
        }
    }

    async fn spawn(&self, spec: &InstanceSpec, events: Arc<dyn EventSink>) -> Result<PowerState> {
        self.do_boot(spec, events, false).await
    }

    async fn destroy(&self, id: ServerId) -> Result<()> {
        self.pause_for(self.config.action_delay).await;
        if let Some(vm) = self.lock().get_mut(&id) {
            vm.destroyed = true;
            vm.epoch += 1;
        }
        self.lock().remove(&id);
        Ok(())
    }

    async fn reboot(&self, spec: &InstanceSpec, hard: bool) -> Result<PowerState> {
        let id = spec.server_id;
        let faults = self.faults_for(spec)?;
        self.with_vm(id, |vm| {
            vm.faults = faults.clone();
            vm.console.push(if hard {
                "[ nimbus ] hard reset".into()
            } else {
                "reboot: Restarting system".into()
            });
            Ok(())
        })?;
        self.pause_for(self.config.action_delay).await;
        if faults.contains(&Fault::Reboot) {
            return Err(Error::internal(
                "injected fault: reboot failed (nimbus:fault=reboot)",
            ));
        }
        self.with_vm(id, |_| Ok(()))?;
        // The crash timer (if any) re-arms on every boot.
        self.booted(id, None);
        Ok(PowerState::Running)
    }

    async fn power_off(&self, spec: &InstanceSpec, _timeout_secs: u32) -> Result<PowerState> {
        let id = spec.server_id;
        let faults = self.faults_for(spec)?;
        self.with_vm(id, |_| Ok(()))?;
        self.pause_for(self.config.action_delay).await;
        if faults.contains(&Fault::Stop) {
            return Err(Error::internal(
                "injected fault: power off failed (nimbus:fault=stop)",
            ));
        }
        self.with_vm(id, |vm| {
            vm.power = PowerState::Shutdown;
            vm.epoch += 1;
            vm.console.push("reboot: Power down".into());
            Ok(PowerState::Shutdown)
        })
    }

    async fn power_on(&self, spec: &InstanceSpec) -> Result<PowerState> {
        let id = spec.server_id;
        self.with_vm(id, |_| Ok(()))?;
        self.pause_for(self.config.action_delay).await;
        self.with_vm(id, |_| Ok(()))?;
        self.booted(id, None);
        Ok(PowerState::Running)
    }

    async fn pause(&self, id: ServerId) -> Result<PowerState> {
        self.pause_for(self.config.action_delay).await;
        self.with_vm(id, |vm| {
            vm.power = PowerState::Paused;
            Ok(PowerState::Paused)
        })
    }

    async fn unpause(&self, id: ServerId) -> Result<PowerState> {
        self.pause_for(self.config.action_delay).await;
        self.with_vm(id, |vm| {
            vm.power = PowerState::Running;
            Ok(PowerState::Running)
        })
    }

    async fn suspend(&self, id: ServerId) -> Result<PowerState> {
        self.pause_for(self.config.action_delay).await;
        self.with_vm(id, |vm| {
            vm.power = PowerState::Suspended;
            Ok(PowerState::Suspended)
        })
    }

    async fn resume(&self, spec: &InstanceSpec) -> Result<PowerState> {
        self.pause_for(self.config.action_delay).await;
        self.with_vm(spec.server_id, |vm| {
            vm.power = PowerState::Running;
            Ok(PowerState::Running)
        })
    }

    async fn rebuild(&self, spec: &InstanceSpec, events: Arc<dyn EventSink>) -> Result<PowerState> {
        self.with_vm(spec.server_id, |vm| {
            vm.console.push("[ nimbus ] rebuilding root disk".into());
            Ok(())
        })?;
        self.do_boot(spec, events, true).await
    }

    async fn resize(&self, spec: &InstanceSpec) -> Result<PowerState> {
        self.pause_for(self.config.action_delay).await;
        self.with_vm(spec.server_id, |vm| {
            vm.old_shape = Some((vm.vcpus, vm.ram_mb));
            vm.vcpus = spec.vcpus;
            vm.ram_mb = spec.ram_mb;
            Ok(())
        })?;
        self.booted(spec.server_id, None);
        Ok(PowerState::Running)
    }

    async fn confirm_resize(&self, id: ServerId) -> Result<()> {
        self.pause_for(self.config.action_delay).await;
        self.with_vm(id, |vm| {
            vm.old_shape = None;
            Ok(())
        })
    }

    async fn revert_resize(&self, spec: &InstanceSpec) -> Result<PowerState> {
        self.pause_for(self.config.action_delay).await;
        self.with_vm(spec.server_id, |vm| {
            let (vcpus, ram) = vm.old_shape.take().unwrap_or((spec.vcpus, spec.ram_mb));
            vm.vcpus = vcpus;
            vm.ram_mb = ram;
            Ok(())
        })?;
        self.booted(spec.server_id, None);
        Ok(PowerState::Running)
    }

    async fn snapshot(&self, id: ServerId, image_id: ImageId) -> Result<SnapshotFile> {
        let (boots, vcpus) = self.with_vm(id, |vm| Ok((vm.boots, vm.vcpus)))?;
        self.pause_for(self.config.action_delay).await;
        let dir = self.config.work_dir.join("snapshots");
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| Error::internal(format!("create {}: {e}", dir.display())))?;
        let path = dir.join(format!("{image_id}.raw"));
        // Deterministic content: the same server state gives the same bytes.
        let body = format!("NIMBUS-FAKE-DISK server={id} boots={boots} vcpus={vcpus}\n").repeat(64);
        tokio::fs::write(&path, body.as_bytes())
            .await
            .map_err(|e| Error::internal(format!("write {}: {e}", path.display())))?;
        Ok(SnapshotFile {
            location: path.to_string_lossy().into_owned(),
            size: body.len() as u64,
            disk_format: "raw".into(),
        })
    }

    async fn console_output(&self, id: ServerId, length: Option<u32>) -> Result<String> {
        self.with_vm(id, |vm| {
            let lines = &vm.console;
            let start = match length {
                Some(n) => lines.len().saturating_sub(n as usize),
                None => 0,
            };
            let mut out = lines[start..].join("\n");
            out.push('\n');
            Ok(out)
        })
    }

    /// A real RFB server showing a placeholder screen (see [`crate::fake_console`]), so
    /// console clients can be tested against the fake driver too.
    async fn vnc_console(&self, id: ServerId) -> Result<VncConsole> {
        let (name, stop) = self.with_vm(id, |vm| {
            Ok((vm.hostname.clone(), vm.console_stop.subscribe()))
        })?;
        let opened = crate::fake_console::open(&name, stop)
            .await
            .map_err(|e| Error::Unavailable(format!("Could not open a console: {e}")))?;
        self.with_vm(id, |vm| {
            vm.console.push(format!(
                "[ nimbus ] VNC console opened on port {}",
                opened.port
            ));
            Ok(())
        })?;
        Ok(VncConsole {
            host: opened.host,
            port: opened.port,
            password: opened.password,
            websocket_port: None,
        })
    }

    async fn diagnostics(&self, id: ServerId) -> Result<Diagnostics> {
        self.with_vm(id, |vm| {
            let running = vm.power == PowerState::Running;
            let t = if running {
                vm.booted_at.elapsed().as_secs_f64()
            } else {
                0.0
            };
            let w = Workload::of(id);
            let cpu_ns = (w.cpu_seconds(t) * 1e9) as u64;
            let rx = w.rx_bytes(t) as u64;
            let written = w.disk_write_bytes(t) as u64;
            let used = vm.ram_mb / 4
                + (vm.ram_mb as f64 / 8.0 * (1.0 + (t / 300.0 + w.phase).sin()) / 2.0) as u64;
            Ok(Diagnostics {
                state: if running { "running" } else { "shutdown" }.into(),
                driver: "fake".into(),
                hypervisor: "fake".into(),
                hypervisor_os: "linux".into(),
                uptime: t as u64,
                num_cpus: vm.vcpus,
                num_disks: 1,
                num_nics: vm.macs.len() as u32,
                memory_details: MemoryDetails {
                    maximum: vm.ram_mb,
                    used: if running { used } else { 0 },
                },
                cpu_details: (0..vm.vcpus)
                    .map(|i| CpuDetail {
                        id: i,
                        time: cpu_ns,
                        utilisation: Some((w.cpu_fraction(t) * 100.0).round() as u32),
                    })
                    .collect(),
                disk_details: vec![DiskDetail {
                    read_bytes: 262_144 + written / 3,
                    read_requests: 64 + written / 3 / 4096,
                    write_bytes: written,
                    write_requests: written / 4096,
                    errors_count: 0,
                }],
                nic_details: vm
                    .macs
                    .iter()
                    .map(|mac| NicDetail {
                        mac_address: mac.clone(),
                        rx_octets: rx,
                        rx_packets: rx / 600,
                        tx_octets: rx / 2,
                        tx_packets: rx / 1200,
                        rx_rate: None,
                        tx_rate: None,
                        ..Default::default()
                    })
                    .collect(),
                config_drive: false,
            })
        })
    }

    async fn set_password(&self, id: ServerId, _password: &str) -> Result<()> {
        self.pause_for(self.config.action_delay).await;
        self.with_vm(id, |vm| {
            vm.console.push("[ nimbus ] admin password changed".into());
            Ok(())
        })
    }

    async fn adopt(&self, spec: &InstanceSpec, power_state: PowerState) -> Result<PowerState> {
        let faults = self.faults_for(spec).unwrap_or_default();
        let mut vms = self.lock();
        let vm = vms.entry(spec.server_id).or_insert_with(|| Vm {
            power: power_state,
            vcpus: spec.vcpus,
            ram_mb: spec.ram_mb,
            macs: spec.nics.iter().map(|n| n.mac.clone()).collect(),
            hostname: spec.hostname.clone(),
            faults,
            console: vec!["[ nimbus ] host restarted; guest state restored".to_owned()],
            boots: 1,
            booted_at: Instant::now(),
            epoch: 1,
            destroyed: false,
            old_shape: None,
            console_stop: tokio::sync::watch::channel(false).0,
        });
        Ok(vm.power)
    }

    fn work_dir(&self) -> Option<PathBuf> {
        Some(self.config.work_dir.clone())
    }

    async fn attach_nic(&self, id: ServerId, nic: &NicSpec) -> Result<()> {
        self.pause_for(self.config.action_delay).await;
        self.with_vm(id, |vm| {
            if !vm.macs.contains(&nic.mac) {
                vm.macs.push(nic.mac.clone());
                vm.console.push(format!(
                    "[ nimbus ] eth{}: link up ({})",
                    vm.macs.len() - 1,
                    nic.mac
                ));
            }
            Ok(())
        })
    }

    async fn detach_nic(&self, id: ServerId, mac: &str) -> Result<()> {
        self.pause_for(self.config.action_delay).await;
        self.with_vm(id, |vm| {
            vm.macs.retain(|m| m != mac);
            Ok(())
        })
    }

    async fn set_firewall(&self, id: ServerId, mac: &str, profile: &str) -> Result<()> {
        self.with_vm(id, |vm| {
            vm.console
                .push(format!("[ nimbus ] firewall {profile} on {mac}"));
            Ok(())
        })
    }

    async fn list_instances(&self) -> Result<Vec<(ServerId, PowerState)>> {
        Ok(self
            .lock()
            .iter()
            .filter(|(_, v)| !v.destroyed)
            .map(|(k, v)| (*k, v.power))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn fault_parsing() {
        assert_eq!(parse_faults("spawn").unwrap(), vec![Fault::Spawn]);
        assert_eq!(
            parse_faults("reboot, crash-after:5s").unwrap(),
            vec![Fault::Reboot, Fault::CrashAfter(Duration::from_secs(5))]
        );
        assert_eq!(
            parse_faults("crash-after:250ms").unwrap(),
            vec![Fault::CrashAfter(Duration::from_millis(250))]
        );
        assert_eq!(
            parse_faults("crash-after:2m").unwrap(),
            vec![Fault::CrashAfter(Duration::from_secs(120))]
        );
        assert_eq!(parse_faults("").unwrap(), vec![]);
        assert!(parse_faults("explode").unwrap_err().contains("explode"));
        assert!(parse_faults("crash-after:soon").is_err());
        assert_eq!(parse_duration("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("-1s"), None);
    }

    struct Collect(Mutex<Vec<AgentEvent>>);

    #[async_trait]
    impl EventSink for Collect {
        async fn report(&self, event: AgentEvent) {
            self.0.lock().unwrap().push(event);
        }
    }

    fn spec(fault: Option<&str>) -> InstanceSpec {
        let mut metadata = BTreeMap::new();
        if let Some(f) = fault {
            metadata.insert(FAULT_KEY.to_owned(), f.to_owned());
        }
        InstanceSpec {
            server_id: ServerId::new(),
            name: "vm".into(),
            hostname: "vm".into(),
            vcpus: 2,
            ram_mb: 512,
            disk_gb: 1,
            ephemeral_gb: 0,
            swap_mb: 0,
            image: None,
            user_data: None,
            metadata,
            nics: vec![],
            volumes: vec![],
        }
    }

    fn driver() -> FakeDriver {
        FakeDriver::new(FakeConfig {
            spawn_delay: Duration::from_millis(40),
            action_delay: Duration::from_millis(5),
            work_dir: std::env::temp_dir()
                .join(format!("nimbus-fake-test-{}", uuid::Uuid::new_v4())),
            ..Default::default()
        })
    }

    #[test]
    fn workload_counters_are_monotonic_and_rates_bounded() {
        let w = Workload::of(ServerId::new());
        let mut last = (0.0, 0.0, 0.0);
        for i in 1..2000 {
            let t = i as f64 * 0.5;
            let now = (w.cpu_seconds(t), w.rx_bytes(t), w.disk_write_bytes(t));
            assert!(
                now.0 >= last.0 && now.1 >= last.1 && now.2 >= last.2,
                "t={t}"
            );
            let cpu_rate = (now.0 - last.0) / 0.5;
            assert!(
                (0.03..=0.21).contains(&cpu_rate),
                "cpu rate {cpu_rate} at {t}"
            );
            last = now;
        }
    }

    #[tokio::test]
    async fn lifecycle_reports_progress_and_is_idempotent() {
        let d = driver();
        let sink = Arc::new(Collect(Mutex::new(Vec::new())));
        let s = spec(None);
        assert_eq!(
            d.spawn(&s, sink.clone()).await.unwrap(),
            PowerState::Running
        );
        let progress: Vec<u8> = sink
            .0
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e {
                AgentEvent::Progress { progress, .. } => Some(*progress),
                _ => None,
            })
            .collect();
        assert_eq!(progress, vec![25, 50, 75]);
        // Spawning again is a no-op answering the state.
        assert_eq!(
            d.spawn(&s, sink.clone()).await.unwrap(),
            PowerState::Running
        );
        assert_eq!(d.power_off(&s, 1).await.unwrap(), PowerState::Shutdown);
        assert_eq!(d.power_on(&s).await.unwrap(), PowerState::Running);
        assert_eq!(d.reboot(&s, false).await.unwrap(), PowerState::Running);
        let console = d.console_output(s.server_id, None).await.unwrap();
        assert_eq!(console.matches("GUEST-READY").count(), 3, "{console}");
        assert_eq!(
            d.console_output(s.server_id, Some(1)).await.unwrap(),
            "vm login: \n"
        );
        assert_eq!(d.pause(s.server_id).await.unwrap(), PowerState::Paused);
        assert_eq!(d.unpause(s.server_id).await.unwrap(), PowerState::Running);
        let snap = d.snapshot(s.server_id, ImageId::new()).await.unwrap();
        assert_eq!(std::fs::metadata(&snap.location).unwrap().len(), snap.size);
        d.destroy(s.server_id).await.unwrap();
        d.destroy(s.server_id).await.unwrap();
        assert!(matches!(
            d.console_output(s.server_id, None).await,
            Err(Error::NotFound(_))
        ));
        assert!(d.list_instances().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn injected_faults() {
        let d = driver();
        let sink = Arc::new(Collect(Mutex::new(Vec::new())));
        let bad = spec(Some("spawn"));
        assert!(matches!(
            d.spawn(&bad, sink.clone()).await,
            Err(Error::Internal(_))
        ));
        let flaky = spec(Some("reboot"));
        d.spawn(&flaky, sink.clone()).await.unwrap();
        assert!(d.reboot(&flaky, true).await.is_err());
        let typo = spec(Some("sapwn"));
        assert!(matches!(
            d.spawn(&typo, sink.clone()).await,
            Err(Error::InvalidRequest(_))
        ));

        let crashy = spec(Some("crash-after:30ms"));
        d.spawn(&crashy, sink.clone()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
        let crashed = sink.0.lock().unwrap().iter().any(|e| {
            matches!(e, AgentEvent::PowerState { server_id, power_state: PowerState::Crashed, .. }
                if *server_id == crashy.server_id)
        });
        assert!(crashed);
        // The timer re-arms on the next boot (a start after the crash).
        sink.0.lock().unwrap().clear();
        d.power_on(&crashy).await.unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
        let again = sink.0.lock().unwrap().iter().any(|e| {
            matches!(
                e,
                AgentEvent::PowerState {
                    power_state: PowerState::Crashed,
                    ..
                }
            )
        });
        assert!(again, "crash-after re-arms on every boot");

        // A stalled build ends when the server is destroyed.
        let stuck = spec(Some("stall"));
        let d = Arc::new(d);
        let d2 = d.clone();
        let id = stuck.server_id;
        let build = tokio::spawn(async move { d2.spawn(&stuck, sink).await });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!build.is_finished());
        d.destroy(id).await.unwrap();
        assert!(matches!(build.await.unwrap(), Err(Error::Conflict(_))));
    }
}
