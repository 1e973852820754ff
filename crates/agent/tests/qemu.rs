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
use nimbus_model::agent::{AgentEvent, EventSink, ImageSpec, InstanceSpec, NicSpec};
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
        // The driver gets the state directory as a path relative to the working directory,
        // as `nimbus serve` with its default `--data-dir nimbus-data` gives it: every boot
        // below then also checks that no relative path leaks into overlays or QEMU's argv.
        // (A relative path must not climb through `/`, where surplus `..` are dropped and a
        // wrongly resolved path comes out right by accident, so the tests work from the
        // temp directory itself. Every test sets the same directory, and nothing else here
        // uses a relative path, so tests running on other threads are not affected.)
        std::env::set_current_dir(std::env::temp_dir()).expect("cd to the temp directory");
        let mut cfg = QemuConfig::new(
            PathBuf::from(state.file_name().expect("a directory name")),
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
            // Only complete lines count: the guest writes a line byte by byte, and a caller
            // reading fields of the line must see all of it.
            let complete = &c[..c.rfind('\n').map_or(0, |i| i + 1)];
            if complete.matches(needle).count() >= count {
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

    /// Run a shell command on the serial console and answer its output (stdout and
    /// stderr), waiting up to `timeout`. Markers built with `$((..))` keep the shell's echo
    /// of the command from matching.
    ///
    /// The output is read from the serial socket, not from console.log: QEMU writes guest
    /// output to a connected client one byte per write, and when such a write meets a full
    /// socket (EAGAIN) the byte can land in the logfile twice. Reading also keeps the
    /// socket from filling up, which would stall the guest's serial output.
    async fn sh_wait(&self, id: ServerId, cmd: &str, timeout: Duration) -> String {
        let n = 1000 + (uuid::Uuid::new_v4().as_u128() % 9000) as u32;
        let (begin, end) = (format!("Q{}B\n", n + 1), format!("Q{}E", n + 1));
        let line = format!(
            "{{ {cmd}; }} >/tmp/o 2>&1; echo Q$(({n} + 1))B; cat /tmp/o; echo Q$(({n} + 1))E\n"
        );
        let mut s = tokio::net::UnixStream::connect(self.dir(id).join("serial.sock"))
            .await
            .unwrap();
        s.write_all(line.as_bytes()).await.unwrap();
        let deadline = tokio::time::Instant::now() + timeout;
        let mut got = Vec::new();
        loop {
            let text = String::from_utf8_lossy(&got)
                .replace("\r\n", "\n")
                .replace('\r', "");
            if let Some(e) = text.find(&end)
                && let Some(b) = text[..e].rfind(&begin)
            {
                return text[b + begin.len()..e].to_owned();
            }
            let mut chunk = [0u8; 4096];
            match tokio::time::timeout_at(deadline, s.read(&mut chunk)).await {
                Ok(Ok(k)) if k > 0 => got.extend_from_slice(&chunk[..k]),
                Ok(r) => panic!("serial console closed ({r:?}) while running {cmd:?}: {text}"),
                Err(_) => panic!("{cmd:?} did not finish within {timeout:?}:\n{text}"),
            }
        }
    }

    async fn sh(&self, id: ServerId, cmd: &str) -> String {
        self.sh_wait(id, cmd, Duration::from_secs(60)).await
    }

    /// How many of 3 pings from `id` to `ip` were answered ("Network is unreachable"
    /// counts as none; anything else without busybox's summary line fails the test).
    async fn pings(&self, id: ServerId, ip: &str) -> u32 {
        let out = self.sh(id, &format!("ping -c 3 -W 1 {ip}")).await;
        match out.find(" packets received") {
            Some(i) => out[..i]
                .rsplit(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("bad ping summary: {out}")),
            None if out.contains("unreachable") => 0,
            None => panic!("no ping summary: {out}"),
        }
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

fn nic(network: &str, mac: &str, ip: &str, gateway: Option<&str>, dhcp: bool) -> NicSpec {
    NicSpec {
        id: format!("nic-{mac}"),
        network_id: network.to_owned(),
        mac: mac.to_owned(),
        ipv4: Some(ip.to_owned()),
        ipv4_prefix: Some(24),
        gateway: gateway.map(str::to_owned),
        ipv6: None,
        dhcp,
        firewall: "DISABLED".into(),
    }
}

fn record_nics(env: &Env, id: ServerId) -> Vec<String> {
    let rec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(env.dir(id).join("instance.json")).unwrap()).unwrap();
    rec["spec"]["nics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["mac"].as_str().unwrap().to_owned())
        .collect()
}

/// Three real guests: A1 and A2 on network A (DHCP served by the switch, gateway 10.1.0.1),
/// B1 on network B (static address from the SMBIOS OEM string). Reachability, isolation,
/// addresses, firewall profiles, counters, hot-plug and detach, and an agent restart, all
/// checked from the guests' serial consoles.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guests_on_two_networks() {
    let mut env = Env::new(|_| {}).await;
    let (net_a, net_b) = (
        uuid::Uuid::new_v4().to_string(),
        uuid::Uuid::new_v4().to_string(),
    );
    let (mac_a1, mac_a2, mac_b1) = (
        "fa:16:3e:0a:00:01",
        "fa:16:3e:0a:00:02",
        "fa:16:3e:0b:00:01",
    );
    let mut a1 = env.spec();
    a1.nics = vec![nic(&net_a, mac_a1, "10.1.0.11", Some("10.1.0.1"), true)];
    let mut a2 = env.spec();
    a2.nics = vec![nic(&net_a, mac_a2, "10.1.0.12", Some("10.1.0.1"), true)];
    let mut b1 = env.spec();
    b1.nics = vec![nic(&net_b, mac_b1, "10.2.0.21", None, false)];
    let t0 = Instant::now();
    for s in [&a1, &a2, &b1] {
        assert_eq!(
            env.driver.spawn(s, env.events.clone()).await.unwrap(),
            PowerState::Running
        );
    }
    let mut b1_spec = b1.clone();
    let (a1, a2, b1) = (a1.server_id, a2.server_id, b1.server_id);
    for (id, ip) in [
        (a1, "10.1.0.11/24"),
        (a2, "10.1.0.12/24"),
        (b1, "10.2.0.21/24"),
    ] {
        let c = env.wait_console(id, "GUEST-READY", 1, BOOT * 2).await;
        assert_eq!(marker_field(&ready_lines(&c)[0], "ip"), ip, "{c}");
    }
    eprintln!("three guests ready after {:?}", t0.elapsed());

    // Exactly the allocated MACs and addresses; A's default route came from DHCP (the
    // OEM string of a DHCP NIC carries no gateway), B has none.
    for (id, mac, ip) in [
        (a1, mac_a1, "10.1.0.11/24"),
        (a2, mac_a2, "10.1.0.12/24"),
        (b1, mac_b1, "10.2.0.21/24"),
    ] {
        let out = env
            .sh(
                id,
                "ip -o addr show dev eth0; cat /sys/class/net/eth0/address; ip route",
            )
            .await;
        assert!(out.contains(&format!("inet {ip} ")), "{out}");
        assert!(out.contains(mac), "{out}");
        assert_eq!(
            out.contains("default via 10.1.0.1"),
            id != b1,
            "routes: {out}"
        );
    }

    // One segment per network: A1 reaches A2; B1 is unreachable even from an address in
    // B's subnet, and B1's switch port never sees A's traffic.
    assert_eq!(env.pings(a1, "10.1.0.12").await, 3);
    let b1_rx = env.driver.diagnostics(b1).await.unwrap().nic_details[0].rx_packets;
    env.sh(a1, "ip addr add 10.2.0.99/24 dev eth0").await;
    assert_eq!(env.pings(a1, "10.2.0.21").await, 0);
    env.sh(a1, "ip addr del 10.2.0.99/24 dev eth0").await;
    assert_eq!(
        env.driver.diagnostics(b1).await.unwrap().nic_details[0].rx_packets,
        b1_rx
    );

    // Firewall. PROTECTED: A2 is unreachable, but its own pings get their replies.
    let d = &env.driver;
    d.set_firewall(a2, mac_a2, "PROTECTED").await.unwrap();
    assert_eq!(env.pings(a1, "10.1.0.12").await, 0);
    assert_eq!(env.pings(a2, "10.1.0.11").await, 3);
    assert!(d.diagnostics(a2).await.unwrap().nic_details[0].rx_drop >= 3);
    // DISABLED restores it; ENABLED lets pings and TCP 80 in, but not TCP 8080.
    d.set_firewall(a2, mac_a2, "DISABLED").await.unwrap();
    assert_eq!(env.pings(a1, "10.1.0.12").await, 3);
    d.set_firewall(a2, mac_a2, "ENABLED").await.unwrap();
    assert_eq!(env.pings(a1, "10.1.0.12").await, 3);
    env.sh(a2, "httpd -p 80 -h /tmp; httpd -p 8080 -h /tmp")
        .await;
    let wget = |port: u16| format!("timeout 5 wget -O /dev/null http://10.1.0.12:{port}/");
    let out = env.sh(a1, &wget(80)).await;
    assert!(out.contains("404"), "port 80 is open under ENABLED: {out}");
    let out = env.sh(a1, &wget(8080)).await;
    assert!(
        !out.contains("404"),
        "port 8080 is filtered under ENABLED: {out}"
    );
    d.set_firewall(a2, mac_a2, "DISABLED").await.unwrap();
    let out = env.sh(a1, &wget(8080)).await;
    assert!(out.contains("404"), "DISABLED opens everything: {out}");
    // A bulk TCP transfer through the switch (8 MiB over HTTP), for the record.
    env.sh(a2, "dd if=/dev/zero of=/tmp/big bs=1M count=8")
        .await;
    let out = env
        .sh(
            a1,
            "read t0 _ </proc/uptime; wget -O /tmp/got http://10.1.0.12/big; read t1 _ </proc/uptime; \
             echo size=$(stat -c %s /tmp/got) secs=$t0,$t1; rm /tmp/got",
        )
        .await;
    assert!(out.contains("size=8388608 "), "{out}");
    eprintln!(
        "8 MiB A2 -> A1 over HTTP: {}; A1's NIC: {:?}",
        out.trim().lines().last().unwrap_or(""),
        d.diagnostics(a1).await.unwrap().nic_details[0]
    );
    assert!(matches!(
        d.set_firewall(a2, mac_a2, "OPEN").await,
        Err(Error::InvalidRequest(_))
    ));
    assert!(matches!(
        d.set_firewall(a2, "fa:16:3e:ff:ff:ff", "ENABLED").await,
        Err(Error::NotFound(_))
    ));
    let rec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(env.dir(a2).join("instance.json")).unwrap()).unwrap();
    assert_eq!(rec["spec"]["nics"][0]["firewall"], "DISABLED", "persisted");

    // Counters come from the switch.
    let diag = d.diagnostics(a1).await.unwrap();
    let n = &diag.nic_details[0];
    assert_eq!((diag.num_nics, n.mac_address.as_str()), (1, mac_a1));
    assert!(
        n.rx_octets > 0 && n.tx_octets > 0 && n.rx_packets >= 6 && n.tx_packets >= 6,
        "{n:?}"
    );

    // Hot-plug: a NIC on B into A1 (static: configured by hand), one on A into B1 (DHCP).
    let mac_a1b = "fa:16:3e:0b:00:02";
    d.attach_nic(a1, &nic(&net_b, mac_a1b, "10.2.0.22", None, false))
        .await
        .unwrap();
    d.attach_nic(a1, &nic(&net_b, mac_a1b, "10.2.0.22", None, false))
        .await
        .unwrap();
    let mac_b1a = "fa:16:3e:0a:00:03";
    d.attach_nic(
        b1,
        &nic(&net_a, mac_b1a, "10.1.0.13", Some("10.1.0.1"), true),
    )
    .await
    .unwrap();
    assert_eq!(record_nics(&env, a1), vec![mac_a1, mac_a1b], "persisted");
    let wait_eth1 = "for i in $(seq 100); do [ -e /sys/class/net/eth1 ] && break; sleep 0.2; done; cat /sys/class/net/eth1/address";
    assert!(env.sh(a1, wait_eth1).await.contains(mac_a1b));
    assert!(env.sh(b1, wait_eth1).await.contains(mac_b1a));
    env.sh(a1, "ip link set eth1 up; ip addr add 10.2.0.22/24 dev eth1")
        .await;
    assert_eq!(env.pings(a1, "10.2.0.21").await, 3);
    let out = env
        .sh(
            b1,
            "ip link set eth1 up; udhcpc -i eth1 -q -n -t 5 -T 1 -s /etc/udhcpc.script; ip -o addr show dev eth1",
        )
        .await;
    assert!(
        out.contains("inet 10.1.0.13/24 "),
        "DHCP on a hot-plugged NIC: {out}"
    );
    assert_eq!(env.pings(b1, "10.1.0.12").await, 3);
    assert_eq!(d.diagnostics(a1).await.unwrap().num_nics, 2);

    // Agent restart: the switches come back on the same sockets; running guests keep
    // their segments (and their hot-plugged NICs).
    env.driver.detach_all().await;
    let fresh = QemuDriver::start(env.cfg.clone(), env.events.clone())
        .await
        .unwrap();
    drop(std::mem::replace(&mut env.driver, fresh));
    assert_eq!(env.pings(a1, "10.2.0.21").await, 3, "B after a restart");
    assert_eq!(env.pings(a1, "10.1.0.12").await, 3, "A after a restart");
    let d = &env.driver;
    assert_eq!(d.diagnostics(a1).await.unwrap().num_nics, 2);

    // Detach: the guest loses eth1, the record and the command line forget it.
    d.detach_nic(a1, mac_a1b).await.unwrap();
    let out = env
        .sh(
            a1,
            "for i in $(seq 50); do [ -e /sys/class/net/eth1 ] || break; sleep 0.2; done; ls /sys/class/net",
        )
        .await;
    assert!(!out.contains("eth1"), "{out}");
    assert_eq!(env.pings(a1, "10.2.0.21").await, 0);
    assert_eq!(record_nics(&env, a1), vec![mac_a1]);
    let rec = std::fs::read_to_string(env.dir(a1).join("instance.json")).unwrap();
    assert!(!rec.contains("fa163e0b0002"), "argv forgot the NIC: {rec}");
    d.detach_nic(a1, mac_a1b).await.unwrap();
    assert_eq!(d.diagnostics(a1).await.unwrap().num_nics, 1);

    // A restart of B1 boots both its NICs in order: eth0 static on B, eth1 (the one
    // plugged at runtime) by DHCP on A.
    b1_spec
        .nics
        .push(nic(&net_a, mac_b1a, "10.1.0.13", Some("10.1.0.1"), true));
    assert_eq!(record_nics(&env, b1), vec![mac_b1, mac_b1a]);
    assert_eq!(
        d.power_off(&b1_spec, 0).await.unwrap(),
        PowerState::Shutdown
    );
    assert_eq!(d.power_on(&b1_spec).await.unwrap(), PowerState::Running);
    env.wait_console(b1, "GUEST-READY", 2, BOOT * 2).await;
    let out = env
        .sh(
            b1,
            "ip -o -4 addr show; cat /sys/class/net/eth0/address /sys/class/net/eth1/address",
        )
        .await;
    for want in [
        "eth0    inet 10.2.0.21/24 ",
        "eth1    inet 10.1.0.13/24 ",
        &format!("{mac_b1}\n{mac_b1a}"),
    ] {
        assert!(out.contains(want), "{want:?} in {out}");
    }
    assert_eq!(env.pings(b1, "10.1.0.12").await, 3);

    // Destroying the servers unplugs every port; idle switches go away.
    for id in [a1, a2, b1] {
        d.destroy(id).await.unwrap();
    }
    assert!(
        d.fabric().networks().is_empty(),
        "{:?}",
        d.fabric().networks()
    );
    eprintln!("network test took {:?}", t0.elapsed());
}
