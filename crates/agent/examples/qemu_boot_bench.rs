//! Boot-time benchmark of the qemu driver against the same QEMU command started by hand.
//!
//! `cargo run -p nimbus-agent --example qemu_boot_bench -- IMAGE.qcow2 [RUNS]`
//!
//! For each run, alternately: (a) `QemuDriver::spawn` of a new server, timed from the call
//! to the `GUEST-READY` line on its serial log; (b) the identical argv (taken from the
//! driver's `instance.json`) on a fresh overlay, started directly, timed from the spawn of
//! the process to the same line. Prints min/median/max of both, the spawn → Running time
//! and the idle RSS of the guests. Guests run one at a time.

use async_trait::async_trait;
use nimbus_agent::Hypervisor;
use nimbus_agent::qemu::{LocalBlobSource, QemuConfig, QemuDriver};
use nimbus_model::ServerId;
use nimbus_model::agent::{AgentEvent, EventSink, ImageSpec, InstanceSpec};
use sha2::{Digest, Sha512};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Quiet;

#[async_trait]
impl EventSink for Quiet {
    async fn report(&self, _event: AgentEvent) {}
}

async fn wait_ready(log: &Path, deadline: Duration) -> Result<Duration, String> {
    let t = Instant::now();
    loop {
        let text = tokio::fs::read(log).await.unwrap_or_default();
        if String::from_utf8_lossy(&text).contains("GUEST-READY") {
            return Ok(t.elapsed());
        }
        if t.elapsed() > deadline {
            return Err(format!(
                "no GUEST-READY in {} within {deadline:?}",
                log.display()
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn stats(name: &str, mut v: Vec<Duration>) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{name:>32}: min {:7.0} ms  median {:7.0} ms  max {:7.0} ms  (n={})",
        ms(v[0]),
        ms(v[v.len() / 2]),
        ms(v[v.len() - 1]),
        v.len()
    );
}

/// Host uptime in seconds (the clock of /proc/<pid>/stat start times).
fn uptime_secs() -> f64 {
    std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

/// (start time in seconds since host boot, CPU time used) of a process; 10 ms resolution.
fn proc_times(pid: u32) -> Option<(f64, Duration)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let f: Vec<&str> = text[text.rfind(')')? + 1..].split_whitespace().collect();
    let ticks = |i: usize| f.get(i)?.parse::<u64>().ok();
    let cpu = ticks(11)? + ticks(12)?;
    Some((ticks(19)? as f64 / 100.0, Duration::from_millis(cpu * 10)))
}

fn rss_mib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .unwrap_or(0)
        / 1024
}

/// Kills the guests left under the state directory and removes it, also on an early error.
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for e in std::fs::read_dir(self.0.join("instances"))
            .into_iter()
            .flatten()
            .flatten()
        {
            if let Ok(pid) = std::fs::read_to_string(e.path().join("qemu.pid")) {
                let _ = std::process::Command::new("kill")
                    .args(["-KILL", pid.trim()])
                    .status();
            }
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let image = PathBuf::from(
        args.get(1)
            .ok_or("usage: qemu_boot_bench IMAGE.qcow2 [RUNS]")?,
    );
    let runs: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(5);
    let state = std::env::temp_dir().join(format!("nq-bench-{}", std::process::id()));
    let _cleanup = Cleanup(state.clone());
    let blobs = state.join("blobs");
    std::fs::create_dir_all(&blobs).map_err(|e| e.to_string())?;
    let bytes = std::fs::read(&image).map_err(|e| e.to_string())?;
    let hash: String = Sha512::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    std::fs::write(blobs.join(&hash), &bytes).map_err(|e| e.to_string())?;
    let cfg = QemuConfig::new(state.clone(), Arc::new(LocalBlobSource { blob_dir: blobs }));
    let driver = QemuDriver::start(cfg, Arc::new(Quiet))
        .await
        .map_err(|e| e.to_string())?;
    let spec = |id| InstanceSpec {
        server_id: id,
        name: "bench".into(),
        hostname: "bench".into(),
        vcpus: 1,
        ram_mb: 256,
        disk_gb: 1,
        ephemeral_gb: 0,
        swap_mb: 0,
        image: Some(ImageSpec {
            id: Default::default(),
            hash: hash.clone(),
            size: bytes.len() as u64,
            disk_format: "qcow2".into(),
            properties: Default::default(),
        }),
        user_data: None,
        metadata: Default::default(),
        nics: vec![],
        volumes: vec![],
    };
    // Warm the base-image cache so runs measure boots, not the one-time import, and take
    // the driver's argv for the hand runs (they reuse the warm-up server's directory).
    let warm = ServerId::new();
    driver
        .spawn(&spec(warm), Arc::new(Quiet))
        .await
        .map_err(|e| e.to_string())?;
    let warm_dir = driver.instance_dir(warm);
    let record: serde_json::Value = serde_json::from_slice(
        &std::fs::read(warm_dir.join("instance.json")).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    let argv: Vec<String> =
        serde_json::from_value(record["argv"].clone()).map_err(|e| e.to_string())?;
    let base = record["base"].as_str().unwrap_or_default().to_owned();
    driver.destroy(warm).await.map_err(|e| e.to_string())?;

    let mut r = Results::default();
    for i in 0..runs {
        // Alternate the order so neither variant always follows the other.
        if i % 2 == 0 {
            driver_run(&driver, &spec(ServerId::new()), &mut r).await?;
            hand_run(&warm_dir, &argv, &base, &mut r).await?;
        } else {
            hand_run(&warm_dir, &argv, &base, &mut r).await?;
            driver_run(&driver, &spec(ServerId::new()), &mut r).await?;
        }
    }
    println!(
        "QEMU {} / accel {} / load average {}",
        driver.describe().hypervisor_version,
        driver.accelerator(),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    stats("driver spawn() -> Running", r.to_running);
    stats("driver spawn() -> GUEST-READY", r.via_driver);
    stats("same argv by hand -> GUEST-READY", r.by_hand);
    stats("driver spawn() -> QEMU exec", r.until_exec);
    stats("QEMU CPU to READY, driver", r.cpu_driver);
    stats("QEMU CPU to READY, by hand", r.cpu_hand);
    r.rss.sort();
    println!(
        "{:>32}: {:?} MiB",
        "idle guest RSS (2 s after READY)", r.rss
    );
    if let Some((_, own)) = proc_times(std::process::id()) {
        println!(
            "{:>32}: {} ms",
            "CPU of this process (driver)",
            own.as_millis()
        );
    }
    Ok(())
}

#[derive(Default)]
struct Results {
    to_running: Vec<Duration>,
    via_driver: Vec<Duration>,
    by_hand: Vec<Duration>,
    rss: Vec<u64>,
    // Load-independent figures: the driver's latency until the QEMU process exists, and
    // QEMU's own CPU time until the marker (the guest's boot work), both ways.
    until_exec: Vec<Duration>,
    cpu_driver: Vec<Duration>,
    cpu_hand: Vec<Duration>,
}

const READY_WITHIN: Duration = Duration::from_secs(90);

async fn driver_run(
    driver: &QemuDriver,
    spec: &InstanceSpec,
    r: &mut Results,
) -> Result<(), String> {
    let id = spec.server_id;
    let dir = driver.instance_dir(id);
    let t = Instant::now();
    let called_at = uptime_secs();
    driver
        .spawn(spec, Arc::new(Quiet))
        .await
        .map_err(|e| e.to_string())?;
    r.to_running.push(t.elapsed());
    wait_ready(&dir.join("console.log"), READY_WITHIN).await?;
    r.via_driver.push(t.elapsed());
    let pid: u32 = std::fs::read_to_string(dir.join("qemu.pid"))
        .map_err(|e| e.to_string())?
        .trim()
        .parse()
        .map_err(|e| format!("{e}"))?;
    let (started, cpu) = proc_times(pid).ok_or("no /proc stat for QEMU")?;
    r.cpu_driver.push(cpu);
    r.until_exec
        .push(Duration::from_secs_f64((started - called_at).max(0.0)));
    tokio::time::sleep(Duration::from_secs(2)).await;
    r.rss.push(rss_mib(pid));
    driver.destroy(id).await.map_err(|e| e.to_string())
}

/// The driver's argv started directly, on a fresh overlay, in the directory it names.
async fn hand_run(dir: &Path, argv: &[String], base: &str, r: &mut Results) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let st = std::process::Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", base])
        .arg(dir.join("disk.qcow2"))
        .arg("1G")
        .status()
        .map_err(|e| e.to_string())?;
    if !st.success() {
        return Err("qemu-img create failed".into());
    }
    let t = Instant::now();
    // BENCH_HAND_SETSID=1 starts the hand runs in their own session too, as the driver does
    // (with sched_autogroup, a session is its own CPU-scheduling group).
    let mut cmd = if std::env::var_os("BENCH_HAND_SETSID").is_some() {
        let mut c = tokio::process::Command::new("setsid");
        c.arg("qemu-system-x86_64");
        c
    } else {
        tokio::process::Command::new("qemu-system-x86_64")
    };
    let mut child = cmd
        .args(argv)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| e.to_string())?;
    let ready = wait_ready(&dir.join("console.log"), READY_WITHIN)
        .await
        .map(|_| t.elapsed());
    if let Some((_, cpu)) = child.id().and_then(proc_times) {
        r.cpu_hand.push(cpu);
    }
    let _ = child.start_kill();
    let _ = child.wait().await;
    let _ = std::fs::remove_dir_all(dir);
    r.by_hand.push(ready?);
    Ok(())
}
