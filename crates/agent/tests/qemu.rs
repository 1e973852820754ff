//! The qemu driver against real guests under TCG: the test image built by
//! `scripts/build-test-image.sh` (or `$NIMBUS_TEST_IMAGE`) is booted for real and every
//! action is checked from the outside (serial console, QMP-backed diagnostics, files,
//! processes, events).
//!
//! Requires QEMU (`scripts/install-qemu.sh`); without it these tests FAIL with a message
//! saying so. Every test kills the QEMU processes it started, even when it fails (a guard
//! kills by pid file and removes the state directory on drop).

use async_trait::async_trait;
use nimbus_agent::Hypervisor;
use nimbus_agent::qemu::{LocalBlobSource, QemuConfig, QemuDriver, probe_accel};
use nimbus_model::agent::{AgentEvent, EventSink, ImageSpec, InstanceSpec};
use nimbus_model::state::PowerState;
use nimbus_model::{Error, ImageId, ServerId};
use sha2::{Digest, Sha512};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const INSTALL_HINT: &str = "run `sudo scripts/install-qemu.sh` (installs QEMU 10 from bookworm-backports and the image tools)";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The test image: `$NIMBUS_TEST_IMAGE`, or built (cached) into `target/test-image`.
fn test_image() -> &'static Path {
    static IMAGE: OnceLock<PathBuf> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let qemu = std::process::Command::new("qemu-system-x86_64")
            .arg("--version")
            .output();
        assert!(
            qemu.as_ref().is_ok_and(|o| o.status.success()),
            "qemu-system-x86_64 is not installed: {INSTALL_HINT}"
        );
        if let Ok(p) = std::env::var("NIMBUS_TEST_IMAGE") {
            let p = PathBuf::from(p);
            assert!(
                p.is_file(),
                "NIMBUS_TEST_IMAGE={} does not exist",
                p.display()
            );
            return p;
        }
        let out = workspace().join("target/test-image");
        let status = std::process::Command::new("bash")
            .arg(workspace().join("scripts/build-test-image.sh"))
            .arg(&out)
            .status()
            .expect("run scripts/build-test-image.sh");
        assert!(
            status.success(),
            "scripts/build-test-image.sh failed; {INSTALL_HINT}"
        );
        let image = out.join("nimbus-test.qcow2");
        assert!(image.is_file(), "the build left no {}", image.display());
        image
    })
}

fn sha512_hex(path: &Path) -> String {
    let bytes = std::fs::read(path).expect("read image");
    Sha512::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Events the driver reported.
#[derive(Default)]
struct Collect(Mutex<Vec<AgentEvent>>);

#[async_trait]
impl EventSink for Collect {
    async fn report(&self, event: AgentEvent) {
        self.0.lock().unwrap().push(event);
    }
}

impl Collect {
    fn power_events(&self, id: ServerId) -> Vec<(PowerState, String)> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e {
                AgentEvent::PowerState {
                    server_id,
                    power_state,
                    reason,
                } if *server_id == id => Some((*power_state, reason.clone())),
                _ => None,
            })
            .collect()
    }

    fn progress(&self, id: ServerId) -> Vec<u8> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e {
                AgentEvent::Progress {
                    server_id,
                    progress,
                } if *server_id == id => Some(*progress),
                _ => None,
            })
            .collect()
    }

    async fn wait_power(&self, id: ServerId, want: PowerState, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some((_, reason)) = self.power_events(id).into_iter().find(|(p, _)| *p == want) {
                return reason;
            }
            assert!(
                Instant::now() < deadline,
                "no {want:?} event within {timeout:?}: {:?}",
                self.power_events(id)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Kills every QEMU a test started and removes its state directory, on success or panic.
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Ok(entries) = std::fs::read_dir(self.0.join("instances")) {
            for e in entries.flatten() {
                let pid = std::fs::read_to_string(e.path().join("qemu.pid"))
                    .ok()
                    .and_then(|s| s.trim().parse::<u32>().ok());
                let ours = pid
                    .and_then(|p| std::fs::read(format!("/proc/{p}/cmdline")).ok())
                    .is_some_and(|c| {
                        String::from_utf8_lossy(&c).contains(e.path().to_string_lossy().as_ref())
                    });
                if let (Some(pid), true) = (pid, ours) {
                    let _ = std::process::Command::new("kill")
                        .arg("-KILL")
                        .arg(pid.to_string())
                        .status();
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Env {
    driver: QemuDriver,
    events: Arc<Collect>,
    cfg: QemuConfig,
    blobs: PathBuf,
    image: ImageSpec,
    _cleanup: Cleanup,
}

impl Env {
    async fn new(tweak: impl FnOnce(&mut QemuConfig)) -> Env {
        let image_path = test_image();
        // Short paths: unix socket paths are limited to 107 bytes.
        let state = std::env::temp_dir().join(format!(
            "nq-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..10]
        ));
        let cleanup = Cleanup(state.clone());
        let blobs = state.join("blobs");
        std::fs::create_dir_all(&blobs).unwrap();
        let image = import(&blobs, image_path);
        let mut cfg = QemuConfig::new(
            state.clone(),
            Arc::new(LocalBlobSource {
                blob_dir: blobs.clone(),
            }),
        );
        cfg.soft_reboot_timeout = Duration::from_secs(30);
        cfg.resize_shutdown_timeout = Duration::from_secs(30);
        tweak(&mut cfg);
        let events = Arc::new(Collect::default());
        let driver = QemuDriver::start(cfg.clone(), events.clone())
            .await
            .expect("start the qemu driver");
        Env {
            driver,
            events,
            cfg,
            blobs,
            image,
            _cleanup: cleanup,
        }
    }

    fn spec(&self) -> InstanceSpec {
        InstanceSpec {
            server_id: ServerId::new(),
            name: "t".into(),
            hostname: "t".into(),
            vcpus: 1,
            ram_mb: 256,
            disk_gb: 1,
            ephemeral_gb: 0,
            swap_mb: 0,
            image: Some(self.image.clone()),
            user_data: None,
            metadata: Default::default(),
            nics: vec![],
            volumes: vec![],
        }
    }

    fn dir(&self, id: ServerId) -> PathBuf {
        self.driver.instance_dir(id)
    }

    fn pid(&self, id: ServerId) -> u32 {
        std::fs::read_to_string(self.dir(id).join("qemu.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    async fn console(&self, id: ServerId) -> String {
        self.driver.console_output(id, None).await.unwrap()
    }

    /// Wait until the console shows `needle` at least `count` times.
    async fn wait_console(
        &self,
        id: ServerId,
        needle: &str,
        count: usize,
        timeout: Duration,
    ) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let c = self.console(id).await;
            if c.matches(needle).count() >= count {
                return c;
            }
            assert!(
                Instant::now() < deadline,
                "{needle:?} x{count} not on the console within {timeout:?}:\n{c}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Type `cmd` on the serial console and wait for `expect` to appear on it once more than
    /// before. The connection stays open until then so QEMU reads all the input.
    async fn serial(&self, id: ServerId, cmd: &str, expect: &str) -> String {
        let before = self.console(id).await.matches(expect).count();
        let mut s = tokio::net::UnixStream::connect(self.dir(id).join("serial.sock"))
            .await
            .unwrap();
        s.write_all(format!("{cmd}\n").as_bytes()).await.unwrap();
        let out = self
            .wait_console(id, expect, before + 1, Duration::from_secs(20))
            .await;
        drop(s);
        out
    }

    /// The guest's own uptime in seconds, read from /proc/uptime over the serial console.
    async fn guest_uptime(&self, id: ServerId) -> f64 {
        // The shell echoes the command; `$((..))` keeps the echo from matching the answer.
        let tag = format!(
            "UPT{}",
            1000 + (uuid::Uuid::new_v4().as_u128() % 9000) as u32
        );
        let n: u32 = tag[3..].parse().unwrap();
        let out = self
            .serial(
                id,
                &format!("echo UPT$(({} + 1)) $(cut -d' ' -f1 /proc/uptime)", n - 1),
                &tag,
            )
            .await;
        let line = out.lines().rev().find(|l| l.starts_with(&tag)).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// The readiness lines, in boot order. A reset can land after a prompt, so the marker
    /// may start mid-line.
    async fn ready_lines(&self, id: ServerId) -> Vec<String> {
        ready_lines(&self.console(id).await)
    }
}

/// Put a file into the blob store the way the controller does and describe it as an image.
fn import(blobs: &Path, file: &Path) -> ImageSpec {
    let hash = sha512_hex(file);
    std::fs::copy(file, blobs.join(&hash)).unwrap();
    ImageSpec {
        id: ImageId::new(),
        hash,
        size: std::fs::metadata(file).unwrap().len(),
        disk_format: "qcow2".into(),
        properties: Default::default(),
    }
}

fn ready_lines(console: &str) -> Vec<String> {
    console
        .lines()
        .filter_map(|l| l.find("GUEST-READY").map(|i| l[i..].to_owned()))
        .collect()
}

fn marker_field(line: &str, key: &str) -> String {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}= in {line}"))
        .to_owned()
}

fn pid_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit(')')
                .next()
                .map(|r| r.split_whitespace().next().unwrap_or("") != "Z")
        })
        .unwrap_or(false)
}

const BOOT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_of_a_real_guest() {
    let env = Env::new(|_| {}).await;
    let d = &env.driver;
    let spec = env.spec();
    let id = spec.server_id;

    // Spawn: Running once QEMU runs, progress across the steps, then the guest's marker.
    let t0 = Instant::now();
    assert_eq!(
        d.spawn(&spec, env.events.clone()).await.unwrap(),
        PowerState::Running
    );
    let to_running = t0.elapsed();
    env.wait_console(id, "GUEST-READY", 1, BOOT).await;
    let to_ready = t0.elapsed();
    eprintln!("spawn -> Running {to_running:?}, -> GUEST-READY {to_ready:?}");
    assert_eq!(env.events.progress(id), vec![25, 50, 75]);
    let pid = env.pid(id);
    let rss_kib: u64 = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap();
    eprintln!("QEMU RSS after boot: {} MiB", rss_kib / 1024);
    // Idempotent: a second spawn answers the state and starts nothing.
    assert_eq!(
        d.spawn(&spec, env.events.clone()).await.unwrap(),
        PowerState::Running
    );
    assert_eq!(env.pid(id), pid);
    assert_eq!(
        d.list_instances().await.unwrap(),
        vec![(id, PowerState::Running)]
    );
    assert_eq!(
        d.console_output(id, Some(1)).await.unwrap().lines().count(),
        1
    );

    // Diagnostics come from QMP and /proc.
    let diag = d.diagnostics(id).await.unwrap();
    assert_eq!(
        (diag.state.as_str(), diag.num_cpus, diag.num_disks),
        ("running", 1, 1)
    );
    assert_eq!(diag.memory_details.maximum, 256);
    assert!(diag.memory_details.used > 50, "{diag:?}");
    assert!(diag.cpu_details[0].time > 0, "{diag:?}");
    assert!(
        diag.disk_details[0].read_bytes > 1_000_000,
        "the boot read the kernel: {diag:?}"
    );

    // VNC: a listener on loopback that asks for VNC authentication, and a fresh password.
    let vnc = d.vnc_console(id).await.unwrap();
    assert_eq!(vnc.host, "127.0.0.1");
    assert_eq!(vnc.password.len(), 8);
    assert!(vnc.websocket_port.is_some());
    let mut s = tokio::net::TcpStream::connect((vnc.host.as_str(), vnc.port))
        .await
        .unwrap();
    let mut banner = [0u8; 12];
    s.read_exact(&mut banner).await.unwrap();
    assert_eq!(&banner, b"RFB 003.008\n");
    s.write_all(b"RFB 003.008\n").await.unwrap();
    let mut types = [0u8; 2];
    s.read_exact(&mut types).await.unwrap();
    assert_eq!(
        types,
        [1, 2],
        "exactly one security type: VNC authentication"
    );
    drop(s);
    assert_ne!(d.vnc_console(id).await.unwrap().password, vnc.password);

    // Soft reboot: ACPI power button, the guest shuts down, QEMU resets it: a second boot.
    let first = env.ready_lines(id).await[0].clone();
    assert_eq!(d.reboot(&spec, false).await.unwrap(), PowerState::Running);
    let console = env.wait_console(id, "GUEST-READY", 2, BOOT).await;
    assert!(
        console.contains("GUEST-POWERDOWN"),
        "the guest handled the power button:\n{console}"
    );
    let second = env.ready_lines(id).await[1].clone();
    assert_ne!(
        marker_field(&first, "boot"),
        marker_field(&second, "boot"),
        "a new boot id"
    );
    assert_eq!(env.pid(id), pid, "a reboot keeps the QEMU process");

    // Hard reboot: system_reset.
    assert_eq!(d.reboot(&spec, true).await.unwrap(), PowerState::Running);
    env.wait_console(id, "GUEST-READY", 3, BOOT).await;
    assert_eq!(
        env.console(id).await.matches("GUEST-POWERDOWN").count(),
        1,
        "no power button this time"
    );

    // Pause: the guest is frozen (typed input is not answered) until unpaused.
    assert_eq!(d.pause(id).await.unwrap(), PowerState::Paused);
    assert_eq!(d.diagnostics(id).await.unwrap().state, "paused");
    let mut s = tokio::net::UnixStream::connect(env.dir(id).join("serial.sock"))
        .await
        .unwrap();
    s.write_all(b"echo PZ$((40 + 2))\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !env.console(id).await.contains("PZ42"),
        "a paused guest ran a command"
    );
    assert_eq!(d.unpause(id).await.unwrap(), PowerState::Running);
    env.wait_console(id, "PZ42", 1, Duration::from_secs(20))
        .await;
    drop(s);

    // Suspend to a file and resume: the same boot continues (uptime goes on, no new boot).
    let up_before = env.guest_uptime(id).await;
    assert_eq!(d.suspend(id).await.unwrap(), PowerState::Suspended);
    assert!(env.dir(id).join("vm.state").is_file());
    assert!(!pid_alive(pid), "suspend ends the QEMU process");
    assert_eq!(
        d.list_instances().await.unwrap(),
        vec![(id, PowerState::Suspended)]
    );
    assert_eq!(
        d.suspend(id).await.unwrap(),
        PowerState::Suspended,
        "idempotent"
    );
    assert_eq!(d.resume(&spec).await.unwrap(), PowerState::Running);
    assert!(!env.dir(id).join("vm.state").exists());
    let up_after = env.guest_uptime(id).await;
    assert!(
        up_after > up_before,
        "uptime continues: {up_before} -> {up_after}"
    );
    assert_eq!(env.ready_lines(id).await.len(), 3, "resume is not a boot");
    let resumed_pid = env.pid(id);
    assert_ne!(resumed_pid, pid);

    // Stop: graceful, and the process is gone.
    assert_eq!(d.power_off(&spec, 30).await.unwrap(), PowerState::Shutdown);
    assert!(!pid_alive(resumed_pid), "stop ends the QEMU process");
    assert_eq!(env.console(id).await.matches("GUEST-POWERDOWN").count(), 2);
    assert_eq!(
        d.power_off(&spec, 30).await.unwrap(),
        PowerState::Shutdown,
        "idempotent"
    );
    assert!(matches!(d.pause(id).await, Err(Error::Conflict(_))));
    assert_eq!(d.diagnostics(id).await.unwrap().state, "shutdown");
    assert!(
        env.events.power_events(id).is_empty(),
        "driver-caused changes are not reported: {:?}",
        env.events.power_events(id)
    );

    // Start: boots again from the same disk.
    assert_eq!(d.power_on(&spec).await.unwrap(), PowerState::Running);
    env.wait_console(id, "GUEST-READY", 4, BOOT).await;
    assert_eq!(
        d.power_on(&spec).await.unwrap(),
        PowerState::Running,
        "idempotent"
    );

    // Destroy: process and every file gone; idempotent; the server is unknown afterwards.
    let last_pid = env.pid(id);
    d.destroy(id).await.unwrap();
    assert!(!pid_alive(last_pid));
    assert!(!env.dir(id).exists());
    d.destroy(id).await.unwrap();
    assert!(matches!(
        d.console_output(id, None).await,
        Err(Error::NotFound(_))
    ));
    assert!(d.list_instances().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_resize_revert_and_rebuild() {
    let env = Env::new(|_| {}).await;
    let d = &env.driver;
    let mut spec = env.spec();
    let id = spec.server_id;
    d.spawn(&spec, env.events.clone()).await.unwrap();
    env.wait_console(id, "GUEST-READY", 1, BOOT).await;
    // (The test guest keeps / in RAM; the snapshot is checked by booting it, below.)

    // Snapshot of a running server: a standalone qcow2, and the guest keeps running.
    let snap = d.snapshot(id, ImageId::new()).await.unwrap();
    assert_eq!(snap.disk_format, "qcow2");
    assert_eq!(std::fs::metadata(&snap.location).unwrap().len(), snap.size);
    let info = std::process::Command::new("qemu-img")
        .args(["info", "--output=json", "-f", "qcow2", &snap.location])
        .output()
        .unwrap();
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert!(
        info.get("backing-filename").is_none(),
        "snapshot must be standalone: {info}"
    );
    assert_eq!(d.diagnostics(id).await.unwrap().state, "running");
    env.guest_uptime(id).await;

    // Resize up: 2 vCPUs, 512 MiB, 2 GiB disk, plus an ephemeral disk. Confirm.
    spec.vcpus = 2;
    spec.ram_mb = 512;
    spec.disk_gb = 2;
    spec.ephemeral_gb = 1;
    assert_eq!(d.resize(&spec).await.unwrap(), PowerState::Running);
    let console = env.wait_console(id, "GUEST-READY", 2, BOOT).await;
    let line = ready_lines(&console)[1].clone();
    assert_eq!(marker_field(&line, "cpus"), "2");
    assert_eq!(marker_field(&line, "disks"), "vda,vdb");
    let diag = d.diagnostics(id).await.unwrap();
    assert_eq!(
        (diag.num_cpus, diag.num_disks, diag.memory_details.maximum),
        (2, 2, 512)
    );
    assert!(env.dir(id).join("resize-old").is_dir());
    assert_eq!(
        d.resize(&spec).await.unwrap(),
        PowerState::Running,
        "idempotent"
    );
    d.confirm_resize(id).await.unwrap();
    assert!(!env.dir(id).join("resize-old").exists());
    d.confirm_resize(id).await.unwrap();
    let size = |p: PathBuf| -> u64 {
        let o = std::process::Command::new("qemu-img")
            .args(["info", "-U", "--output=json"])
            .arg(p)
            .output()
            .unwrap();
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()["virtual-size"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(size(env.dir(id).join("disk.qcow2")), 2 << 30);

    // Resize again and revert: back to 2 vCPUs and the confirmed disk.
    let confirmed = spec.clone();
    spec.vcpus = 1;
    spec.disk_gb = 3;
    assert_eq!(d.resize(&spec).await.unwrap(), PowerState::Running);
    assert_eq!(d.diagnostics(id).await.unwrap().num_cpus, 1);
    assert_eq!(size(env.dir(id).join("disk.qcow2")), 3 << 30);
    let console = env.wait_console(id, "GUEST-READY", 3, BOOT).await;
    assert_eq!(
        marker_field(&ready_lines(&console)[2], "cpus"),
        "1",
        "the guest sees the new shape"
    );
    assert_eq!(
        d.revert_resize(&confirmed).await.unwrap(),
        PowerState::Running
    );
    assert_eq!(d.diagnostics(id).await.unwrap().num_cpus, 2);
    assert_eq!(size(env.dir(id).join("disk.qcow2")), 2 << 30);
    assert!(!env.dir(id).join("resize-old").exists());
    // Boots: spawn, resize, resize, revert.
    env.wait_console(id, "GUEST-READY", 4, BOOT).await;
    let last = env.ready_lines(id).await.last().cloned().unwrap();
    assert_eq!(marker_field(&last, "cpus"), "2");

    // Rebuild from the snapshot image: a new root disk from it, and it boots.
    let snap_image = import(&env.blobs, Path::new(&snap.location));
    std::fs::remove_file(&snap.location).unwrap();
    let mut rebuilt = confirmed.clone();
    rebuilt.image = Some(snap_image.clone());
    let before = env.ready_lines(id).await.len();
    assert_eq!(
        d.rebuild(&rebuilt, env.events.clone()).await.unwrap(),
        PowerState::Running
    );
    env.wait_console(id, "GUEST-READY", before + 1, BOOT).await;
    let rec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(env.dir(id).join("instance.json")).unwrap()).unwrap();
    assert!(
        rec["base"].as_str().unwrap().contains(&snap_image.hash),
        "the root disk is backed by the new image"
    );
    d.destroy(id).await.unwrap();
    assert!(!env.dir(id).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_initiated_changes_crashes_and_reattach() {
    let env = Env::new(|c| c.soft_reboot_timeout = Duration::from_secs(3)).await;
    let d = &env.driver;
    let spec = env.spec();
    let id = spec.server_id;
    d.spawn(&spec, env.events.clone()).await.unwrap();
    env.wait_console(id, "GUEST-READY", 1, BOOT).await;

    // A guest that ignores the power button: soft reboot falls back to a hard reset.
    env.serial(id, "killall acpid; echo KILLED$((1 + 1))", "KILLED2")
        .await;
    let t = Instant::now();
    assert_eq!(d.reboot(&spec, false).await.unwrap(), PowerState::Running);
    assert!(
        t.elapsed() >= Duration::from_secs(3),
        "it waited for the guest first"
    );
    env.wait_console(id, "GUEST-READY", 2, BOOT).await;
    assert!(!env.console(id).await.contains("GUEST-POWERDOWN"));
    assert!(
        env.events.power_events(id).is_empty(),
        "{:?}",
        env.events.power_events(id)
    );

    // The guest powers itself off: reported as Shutdown without being asked, process gone.
    let pid = env.pid(id);
    let mut s = tokio::net::UnixStream::connect(env.dir(id).join("serial.sock"))
        .await
        .unwrap();
    s.write_all(b"poweroff -f\n").await.unwrap();
    let reason = env
        .events
        .wait_power(id, PowerState::Shutdown, Duration::from_secs(20))
        .await;
    drop(s);
    assert!(reason.contains("guest"), "{reason}");
    let deadline = Instant::now() + Duration::from_secs(15);
    while pid_alive(pid) {
        assert!(
            Instant::now() < deadline,
            "QEMU of a powered-off guest must exit"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        d.list_instances().await.unwrap(),
        vec![(id, PowerState::Shutdown)]
    );

    // A hard reboot of a stopped server boots it (Nova semantics). Then drop the driver:
    // the guest keeps running, and a new driver re-attaches to it.
    assert_eq!(d.reboot(&spec, true).await.unwrap(), PowerState::Running);
    env.wait_console(id, "GUEST-READY", 3, BOOT).await;
    let pid = env.pid(id);
    let Env {
        driver,
        events,
        cfg,
        _cleanup,
        ..
    } = env;
    driver.detach_all().await;
    drop(driver);
    assert!(
        pid_alive(pid),
        "dropping the driver leaves the guest running"
    );
    let events2 = Arc::new(Collect::default());
    let d2 = QemuDriver::start(cfg.clone(), events2.clone())
        .await
        .unwrap();
    assert_eq!(
        d2.list_instances().await.unwrap(),
        vec![(id, PowerState::Running)]
    );
    let diag = d2.diagnostics(id).await.unwrap();
    assert_eq!(
        (diag.state.as_str(), diag.num_cpus),
        ("running", 1),
        "QMP works after re-attach"
    );
    assert_eq!(d2.pause(id).await.unwrap(), PowerState::Paused);
    assert_eq!(d2.unpause(id).await.unwrap(), PowerState::Running);
    assert!(events2.power_events(id).is_empty());

    // QEMU dies under the re-attached driver: reported as Crashed (seen as QMP EOF).
    let _ = std::process::Command::new("kill")
        .arg("-KILL")
        .arg(pid.to_string())
        .status();
    let reason = events2
        .wait_power(id, PowerState::Crashed, Duration::from_secs(20))
        .await;
    assert!(reason.contains("QEMU"), "{reason}");
    assert_eq!(
        d2.list_instances().await.unwrap(),
        vec![(id, PowerState::Crashed)]
    );
    assert!(
        events
            .power_events(id)
            .iter()
            .all(|(p, _)| *p == PowerState::Shutdown),
        "the old sink saw only the poweroff"
    );

    // After a restart with no process left, the server is Shutdown and is reported once.
    drop(d2);
    let events3 = Arc::new(Collect::default());
    let d3 = QemuDriver::start(cfg.clone(), events3.clone())
        .await
        .unwrap();
    assert_eq!(
        d3.list_instances().await.unwrap(),
        vec![(id, PowerState::Shutdown)]
    );
    assert_eq!(
        events3.power_events(id).len(),
        1,
        "{:?}",
        events3.power_events(id)
    );
    assert_eq!(d3.power_on(&spec).await.unwrap(), PowerState::Running);
    d3.destroy(id).await.unwrap();
}

#[tokio::test]
async fn accelerator_probe_and_missing_qemu() {
    let _ = test_image();
    let scratch = std::env::temp_dir().join(format!("nq-probe-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&scratch).unwrap();
    let _cleanup = Cleanup(scratch.clone());
    // TCG executes the firmware: the probe reaches SeaBIOS's "No bootable device".
    let t = probe_accel(
        Path::new("qemu-system-x86_64"),
        "tcg",
        &scratch,
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    eprintln!("tcg probe boot: {t:?}");
    // A QEMU binary that does not exist fails the driver's start with a clear message.
    let mut cfg = QemuConfig::new(
        scratch.clone(),
        Arc::new(LocalBlobSource {
            blob_dir: scratch.clone(),
        }),
    );
    cfg.qemu_binary = "/nonexistent/qemu-system-x86_64".into();
    let err = QemuDriver::start(cfg.clone(), Arc::new(Collect::default()))
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("install-qemu.sh"), "{err}");
    // An unknown accelerator is refused; kvm falls back to tcg unless a probe boot works.
    cfg.qemu_binary = "qemu-system-x86_64".into();
    cfg.accel = "hvf".into();
    assert!(matches!(
        QemuDriver::start(cfg.clone(), Arc::new(Collect::default())).await,
        Err(Error::InvalidRequest(_))
    ));
    cfg.accel = "kvm".into();
    let d = QemuDriver::start(cfg, Arc::new(Collect::default()))
        .await
        .unwrap();
    let caps = d.describe().capabilities;
    eprintln!("with accel=kvm configured: {caps}");
    assert_eq!(caps["accelerator"], d.accelerator());
    assert!(caps["accelerator_probe"]["kvm"].is_string());
    assert_eq!(d.describe().hypervisor_type, "QEMU");
    assert!(d.describe().hypervisor_version >= 8_000_000);
}

/// Bad input never reaches QEMU: images that refer to host files, corrupt blobs, formats
/// the driver does not take, servers without an image, unknown servers, and state
/// directories too long for unix sockets.
#[tokio::test]
async fn refuses_bad_images_and_unknown_servers() {
    let env = Env::new(|_| {}).await;
    let d = &env.driver;
    let scratch = env.cfg.state_dir.join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();

    // A qcow2 whose backing file is a host file would let the guest read it.
    let evil = scratch.join("evil.qcow2");
    let st = std::process::Command::new("qemu-img")
        .args([
            "create",
            "-q",
            "-f",
            "qcow2",
            "-F",
            "raw",
            "-b",
            "/etc/hostname",
        ])
        .arg(&evil)
        .arg("1M")
        .status()
        .unwrap();
    assert!(st.success());
    let mut spec = env.spec();
    spec.image = Some(import(&env.blobs, &evil));
    let err = d.spawn(&spec, env.events.clone()).await.unwrap_err();
    assert!(matches!(err, Error::InvalidRequest(_)), "{err:?}");
    assert!(
        !env.dir(spec.server_id).join("qemu.pid").exists(),
        "no QEMU was started"
    );
    d.destroy(spec.server_id).await.unwrap();
    assert!(!env.dir(spec.server_id).exists());

    // A blob whose bytes do not match the image's hash.
    let mut spec = env.spec();
    let mut img = env.image.clone();
    img.hash = "ab".repeat(64);
    std::fs::write(env.blobs.join(&img.hash), b"not the image").unwrap();
    spec.image = Some(img);
    assert!(matches!(
        d.spawn(&spec, env.events.clone()).await,
        Err(Error::Internal(_))
    ));
    d.destroy(spec.server_id).await.unwrap();

    // A format the driver does not boot, and no image at all.
    let mut spec = env.spec();
    spec.image.as_mut().unwrap().disk_format = "vmdk".into();
    assert!(matches!(
        d.spawn(&spec, env.events.clone()).await,
        Err(Error::InvalidRequest(_))
    ));
    d.destroy(spec.server_id).await.unwrap();
    let mut spec = env.spec();
    spec.image = None;
    assert!(matches!(
        d.spawn(&spec, env.events.clone()).await,
        Err(Error::InvalidRequest(_))
    ));
    d.destroy(spec.server_id).await.unwrap();
    assert!(d.list_instances().await.unwrap().is_empty());

    // Unknown servers.
    let ghost = ServerId::new();
    assert!(matches!(d.pause(ghost).await, Err(Error::NotFound(_))));
    assert!(matches!(
        d.console_output(ghost, None).await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        d.vnc_console(ghost).await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        d.snapshot(ghost, ImageId::new()).await,
        Err(Error::NotFound(_))
    ));
    d.destroy(ghost).await.unwrap();

    // Socket paths must fit in sun_path.
    let mut cfg = env.cfg.clone();
    cfg.state_dir = env.cfg.state_dir.join("x".repeat(80));
    let err = QemuDriver::start(cfg, env.events.clone())
        .await
        .err()
        .unwrap();
    assert!(matches!(err, Error::InvalidRequest(_)), "{err:?}");
}
