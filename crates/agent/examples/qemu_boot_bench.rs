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
    // Warm the base-image cache so runs measure boots, not the one-time import.
    let warm = ServerId::new();
    driver
        .spawn(&spec(warm), Arc::new(Quiet))
        .await
        .map_err(|e| e.to_string())?;
    driver.destroy(warm).await.map_err(|e| e.to_string())?;

    let (mut via_driver, mut to_running, mut by_hand, mut rss) = (vec![], vec![], vec![], vec![]);
    for _ in 0..runs {
        // (a) through the driver.
        let id = ServerId::new();
        let dir = driver.instance_dir(id);
        let t = Instant::now();
        driver
            .spawn(&spec(id), Arc::new(Quiet))
            .await
            .map_err(|e| e.to_string())?;
        to_running.push(t.elapsed());
        let left = Duration::from_secs(60);
        wait_ready(&dir.join("console.log"), left).await?;
        via_driver.push(t.elapsed());
        let record: serde_json::Value = serde_json::from_slice(
            &std::fs::read(dir.join("instance.json")).map_err(|e| e.to_string())?,
        )
        .map_err(|e| e.to_string())?;
        let argv: Vec<String> =
            serde_json::from_value(record["argv"].clone()).map_err(|e| e.to_string())?;
        let base = record["base"].as_str().unwrap_or_default().to_owned();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let pid: u32 = std::fs::read_to_string(dir.join("qemu.pid"))
            .map_err(|e| e.to_string())?
            .trim()
            .parse()
            .map_err(|e| format!("{e}"))?;
        rss.push(rss_mib(pid));
        driver.destroy(id).await.map_err(|e| e.to_string())?;

        // (b) the same argv by hand, in a directory of the same name, on a fresh overlay.
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let overlay = dir.join("disk.qcow2");
        let st = std::process::Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", &base])
            .arg(&overlay)
            .arg("1G")
            .status()
            .map_err(|e| e.to_string())?;
        if !st.success() {
            return Err("qemu-img create failed".into());
        }
        let t = Instant::now();
        let mut child = tokio::process::Command::new("qemu-system-x86_64")
            .args(&argv)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| e.to_string())?;
        let r = wait_ready(&dir.join("console.log"), left)
            .await
            .map(|_| t.elapsed());
        let _ = child.start_kill();
        let _ = child.wait().await;
        by_hand.push(r?);
        let _ = std::fs::remove_dir_all(&dir);
    }
    println!(
        "QEMU {} / accel {}",
        driver.describe().hypervisor_version,
        driver.accelerator()
    );
    stats("driver spawn() -> Running", to_running);
    stats("driver spawn() -> GUEST-READY", via_driver);
    stats("same argv by hand -> GUEST-READY", by_hand);
    rss.sort();
    println!("{:>32}: {:?} MiB", "idle guest RSS (2 s after READY)", rss);
    Ok(())
}
