//! Real guests (issue 3): boots through Nimbus's qemu driver against the driver's own QEMU
//! command line started by hand, idle guest RSS, a batch of guests booted at once, and the
//! RSS of `nimbus agent` as its own process.
//!
//! Every boot is timed to the `GUEST-READY` line the test image prints on its serial
//! console, read from the console log file the driver makes QEMU write (the same bytes
//! `os-getConsoleOutput` serves, without the API round trip in the measurement).

use crate::load::{Latency, r3};
use crate::procs::{self, Guard, Scratch};
use crate::report::{Report, Target};
use crate::service::{Api, Service, Setup};
use anyhow::{Context as _, anyhow, bail};
use nimbus_agent::net::{Fabric, parse_mac, port_config};
use nimbus_model::ServerId;
use nimbus_model::agent::NicSpec;
use reqwest::Method;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const MARKER: &str = "GUEST-READY";
const READY_WITHIN: Duration = Duration::from_secs(240);
const AGENT_SECRET: &str = "bench-agent-secret";
/// DHCP lease of the hand runs' switches (the guest asks once per boot).
const DHCP_LEASE_SECS: u32 = 3600;

#[derive(Clone, Debug)]
pub struct Opts {
    pub test_image: PathBuf,
    pub runs: usize,
    pub concurrent: usize,
}

/// Wait until `log` contains the marker; the elapsed time since `t0`.
async fn wait_marker(log: &Path, t0: Instant, within: Duration) -> anyhow::Result<Duration> {
    loop {
        if let Ok(text) = tokio::fs::read(log).await
            && String::from_utf8_lossy(&text).contains(MARKER)
        {
            return Ok(t0.elapsed());
        }
        if t0.elapsed() > within {
            bail!("no {MARKER} in {} within {within:?}", log.display());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn read_pid(dir: &Path) -> anyhow::Result<u32> {
    let p = dir.join("qemu.pid");
    std::fs::read_to_string(&p)
        .with_context(|| format!("reading {}", p.display()))?
        .trim()
        .parse()
        .with_context(|| format!("parsing {}", p.display()))
}

/// One boot through the API.
struct ApiBoot {
    id: String,
    dir: PathBuf,
    to_active: Duration,
    to_ready: Duration,
    /// POST → the QEMU process exists (from its start time; 10 ms resolution).
    to_exec: f64,
    /// QEMU's CPU seconds when the marker appeared.
    cpu: f64,
    pid: u32,
}

async fn boot_api(api: &Api, instances: &Path, image: &str, name: &str) -> anyhow::Result<ApiBoot> {
    let up0 = procs::uptime_secs();
    let t0 = Instant::now();
    let id = api.create_server(name, image, "1").await?;
    let dir = instances.join(&id);
    let active = async {
        api.wait_active(&id, READY_WITHIN).await?;
        anyhow::Ok(t0.elapsed())
    };
    let ready = async {
        let d = wait_marker(&dir.join("console.log"), t0, READY_WITHIN).await?;
        let pid = read_pid(&dir)?;
        let (start, cpu) = procs::proc_times(pid).ok_or_else(|| anyhow!("QEMU {pid} gone"))?;
        anyhow::Ok((d, pid, start, cpu))
    };
    let (to_active, (to_ready, pid, start, cpu)) = tokio::try_join!(active, ready)?;
    Ok(ApiBoot {
        id,
        dir,
        to_active,
        to_ready,
        to_exec: (start - up0).max(0.0),
        cpu,
        pid,
    })
}

/// The driver's command line, read from a server's `instance.json`.
struct Argv {
    args: Vec<String>,
    /// The instance directory the arguments name (replaced for hand runs).
    dir: String,
    base: String,
    base_format: String,
    disk_gb: u64,
    /// The server's NICs (MAC, network, DHCP lease), to wire the hand run the same way.
    nics: Vec<NicSpec>,
}

fn read_argv(dir: &Path) -> anyhow::Result<Argv> {
    let p = dir.join("instance.json");
    let rec: Value = serde_json::from_slice(
        &std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?,
    )
    .with_context(|| format!("parsing {}", p.display()))?;
    let args: Vec<String> = serde_json::from_value(rec["argv"].clone())
        .with_context(|| format!("no argv in {}", p.display()))?;
    let extra_disks: Vec<&String> = args
        .iter()
        .filter(|a| a.starts_with("file=") && !a.contains("/disk.qcow2,"))
        .collect();
    if !extra_disks.is_empty() {
        bail!("the hand run only recreates the root disk, but the argv also uses {extra_disks:?}");
    }
    Ok(Argv {
        args,
        dir: dir.to_string_lossy().into_owned(),
        base: rec["base"]
            .as_str()
            .ok_or_else(|| anyhow!("no base image in {}", p.display()))?
            .to_owned(),
        base_format: rec["base_format"].as_str().unwrap_or("qcow2").to_owned(),
        disk_gb: rec["spec"]["disk_gb"].as_u64().unwrap_or(1).max(1),
        nics: serde_json::from_value(rec["spec"]["nics"].clone())
            .with_context(|| format!("no NICs in {}", p.display()))?,
    })
}

/// A hand run's arguments, and each NIC with the socket QEMU binds for it.
struct HandArgs {
    args: Vec<String>,
    ports: Vec<(NicSpec, PathBuf)>,
}

/// The driver's arguments for a hand run, with both ends of every NIC's link moved to the
/// hand run's own network switch: `wire(nic)` answers QEMU's end (`local.path`) and the
/// switch's (`remote.path`) for the NIC. The guest then does what it does under Nimbus
/// (probes its NIC, gets its lease by DHCP) before it prints the readiness line, so both
/// boots do the same work. (Without a DHCP server behind the NIC it would wait out its
/// ~5 s DHCP timeout; without the NIC it would do less.)
fn hand_args(
    args: &[String],
    nics: &[NicSpec],
    wire: impl Fn(&NicSpec) -> anyhow::Result<(PathBuf, PathBuf)>,
) -> anyhow::Result<HandArgs> {
    let mut out = HandArgs {
        args: Vec::with_capacity(args.len()),
        ports: Vec::new(),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        out.args.push(a.clone());
        if a != "-netdev" {
            continue;
        }
        let Some(netdev) = it.next() else { break };
        let hex = netdev
            .split(',')
            .find_map(|kv| kv.strip_prefix("id=net-"))
            .ok_or_else(|| anyhow!("netdev without an id: {netdev}"))?;
        let nic = nics
            .iter()
            .find(|n| n.mac.replace(':', "") == hex)
            .ok_or_else(|| anyhow!("no NIC in the record for netdev net-{hex}"))?;
        let (local, remote) = wire(nic)?;
        let rewired: Vec<String> = netdev
            .split(',')
            .map(|kv| {
                if kv.starts_with("local.path=") {
                    format!("local.path={}", local.display())
                } else if kv.starts_with("remote.path=") {
                    format!("remote.path={}", remote.display())
                } else {
                    kv.to_owned()
                }
            })
            .collect();
        out.args.push(rewired.join(","));
        out.ports.push((nic.clone(), local));
    }
    Ok(out)
}

/// A QEMU started by hand with the driver's argv in `dir` (killed on drop), and the
/// network switch its NICs talk to (the agent's own switch code, run by this program).
struct HandGuest {
    _guard: Guard,
    _fabric: Fabric,
    pid: u32,
}

/// Create a fresh overlay in `dir` and start the driver's argv there by hand, in its own
/// session like the driver does (with `sched_autogroup` a session is its own CPU-scheduling
/// group, which changes boot times under contention). Returns when QEMU is spawned.
fn hand_spawn(qemu: &Path, argv: &Argv, dir: &Path) -> anyhow::Result<(HandGuest, Instant)> {
    std::fs::create_dir_all(dir)?;
    let disk = dir.join("disk.qcow2");
    let st = std::process::Command::new("qemu-img")
        .args([
            "create",
            "-q",
            "-f",
            "qcow2",
            "-F",
            &argv.base_format,
            "-b",
            &argv.base,
        ])
        .arg(&disk)
        .arg(format!("{}G", argv.disk_gb))
        .status()
        .context("running qemu-img")?;
    if !st.success() {
        bail!("qemu-img create {} failed", disk.display());
    }
    let d = dir.to_string_lossy();
    let moved: Vec<String> = argv.args.iter().map(|a| a.replace(&argv.dir, &d)).collect();
    let fabric = Fabric::new(dir.join("net"), DHCP_LEASE_SECS).map_err(|e| anyhow!("{e}"))?;
    let hand = hand_args(&moved, &argv.nics, |nic| {
        let mac = parse_mac(&nic.mac).map_err(|e| anyhow!("{e}"))?;
        let remote = fabric
            .switch_socket(&nic.network_id)
            .map_err(|e| anyhow!("{e}"))?;
        Ok((fabric.nic_socket(&mac), remote))
    })?;
    let ports = hand
        .ports
        .iter()
        .map(|(nic, local)| {
            let cfg = port_config(nic, local.clone(), DHCP_LEASE_SECS);
            Ok((nic.network_id.clone(), cfg.map_err(|e| anyhow!("{e}"))?))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    fabric
        .sync_server(ServerId::new(), ports)
        .map_err(|e| anyhow!("{e}"))?;
    let mut args = vec![qemu.to_string_lossy().into_owned()];
    args.extend(hand.args);
    let t = Instant::now();
    let guard = Guard::spawn(
        "hand-started QEMU",
        Path::new("setsid"),
        &args,
        &[],
        dir.join("qemu.log"),
    )?;
    let pid = guard.pid();
    Ok((
        HandGuest {
            _guard: guard,
            _fabric: fabric,
            pid,
        },
        t,
    ))
}

fn secs(v: &[Duration]) -> Vec<f64> {
    v.iter().map(|d| r3(d.as_secs_f64())).collect()
}

fn median_f(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn qemu_binary() -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("qemu-system-x86_64"))
        .find(|p| p.is_file())
        .ok_or_else(|| anyhow!("qemu-system-x86_64 is not installed (scripts/install-qemu.sh)"))
}

async fn image_id(api: &Api, name: &str) -> anyhow::Result<String> {
    let v = api
        .expect(
            Method::GET,
            &format!("/image/v2/images?name={name}"),
            None,
            200,
        )
        .await?;
    v["images"][0]["id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("no image named {name}: {v}"))
}

/// Ask for the console through the API once, to check the marker the file showed is what
/// `os-getConsoleOutput` serves.
async fn console_has_marker(api: &Api, id: &str) -> anyhow::Result<bool> {
    let v = api
        .expect(
            Method::POST,
            &format!("/compute/v2.1/servers/{id}/action"),
            Some(json!({"os-getConsoleOutput": {"length": 50}})),
            200,
        )
        .await?;
    Ok(v["output"].as_str().unwrap_or("").contains(MARKER))
}

pub async fn qemu(setup: &Setup, o: &Opts, r: &mut Report) -> anyhow::Result<()> {
    r.begin("qemu");
    let qemu = qemu_binary()?;
    if !o.test_image.is_file() {
        bail!(
            "no guest image at {} (build it: bash scripts/build-test-image.sh target/test-image)",
            o.test_image.display()
        );
    }
    let image_path = o.test_image.canonicalize()?;
    let scratch = Scratch::new(&setup.work_dir, "qemu-hand", setup.keep)?;
    let svc = Service::start(
        setup,
        "qemu",
        &[
            "--driver",
            "qemu",
            "--test-image",
            &image_path.to_string_lossy(),
        ],
    )
    .await?;
    let api = svc.admin().await?;
    let image = image_id(&api, "nimbus-test").await?;
    let instances = svc.data_dir.join("qemu").join("instances");
    let controller_idle = svc.rss_mib();

    // The first boot also fetches, verifies and caches the base image; keep it apart.
    let first = boot_api(&api, &instances, &image, "warm").await?;
    r.figure(
        "first_boot_ready_s",
        "first boot (caches the base image): POST -> GUEST-READY",
        first.to_ready.as_secs_f64(),
        "s",
        None,
    );
    if !console_has_marker(&api, &first.id).await? {
        bail!("os-getConsoleOutput of {} does not show {MARKER}", first.id);
    }
    let argv = read_argv(&first.dir)?;
    api.delete_and_wait(&first.id, Duration::from_secs(60))
        .await?;

    let (mut d_ready, mut d_active, mut d_exec, mut d_cpu, mut d_rss) =
        (vec![], vec![], vec![], vec![], vec![]);
    let (mut h_ready, mut h_cpu, mut h_rss) = (vec![], vec![], vec![]);
    for i in 0..o.runs {
        // Alternate the order so neither variant always runs after the other.
        for variant in if i % 2 == 0 { [0, 1] } else { [1, 0] } {
            if variant == 0 {
                let b = boot_api(&api, &instances, &image, &format!("b{i}")).await?;
                tokio::time::sleep(Duration::from_secs(2)).await;
                d_rss.push(procs::rss_mib(b.pid));
                d_ready.push(b.to_ready);
                d_active.push(b.to_active);
                d_exec.push(b.to_exec * 1000.0);
                d_cpu.push(b.cpu);
                api.delete_and_wait(&b.id, Duration::from_secs(60)).await?;
            } else {
                let dir = scratch.path.join(format!("h{i}"));
                let (g, t) = hand_spawn(&qemu, &argv, &dir)?;
                h_ready.push(wait_marker(&dir.join("console.log"), t, READY_WITHIN).await?);
                h_cpu.push(procs::proc_times(g.pid).map_or(f64::NAN, |t| t.1));
                tokio::time::sleep(Duration::from_secs(2)).await;
                h_rss.push(procs::rss_mib(g.pid));
                drop(g);
                let _ = std::fs::remove_dir_all(&dir);
            }
        }
    }
    let dr = Latency::from_durations(&d_ready);
    let hr = Latency::from_durations(&h_ready);
    let da = Latency::from_durations(&d_active);
    let paired: Vec<f64> = d_ready
        .iter()
        .zip(&h_ready)
        .map(|(d, h)| (d.as_secs_f64() - h.as_secs_f64()) * 1000.0)
        .collect();
    r.figure(
        "api_ready_median_s",
        &format!("POST /servers -> GUEST-READY (median of {})", o.runs),
        dr.p50 / 1000.0,
        "s",
        None,
    );
    r.figure(
        "hand_ready_median_s",
        &format!(
            "same QEMU argv by hand -> GUEST-READY (median of {})",
            o.runs
        ),
        hr.p50 / 1000.0,
        "s",
        None,
    );
    r.figure(
        "overhead_ms",
        "Nimbus adds (difference of the medians)",
        dr.p50 - hr.p50,
        "ms",
        Some(Target::Below(100.0)),
    );
    r.figure(
        "overhead_paired_median_ms",
        "Nimbus adds (median of run-pair differences)",
        median_f(&paired),
        "ms",
        None,
    );
    r.figure(
        "post_to_exec_median_ms",
        "POST -> QEMU process exists (median, 10 ms ticks)",
        median_f(&d_exec),
        "ms",
        None,
    );
    r.figure(
        "api_active_median_s",
        "POST /servers -> ACTIVE (median)",
        da.p50 / 1000.0,
        "s",
        None,
    );
    r.figure(
        "cpu_driver_s",
        "QEMU CPU time until READY, via Nimbus (median)",
        median_f(&d_cpu),
        "CPU-s",
        None,
    );
    r.figure(
        "cpu_hand_s",
        "QEMU CPU time until READY, by hand (median)",
        median_f(&h_cpu),
        "CPU-s",
        None,
    );
    r.figure(
        "guest_rss_mib",
        "idle guest QEMU RSS, 2 s after READY (median)",
        median_f(&d_rss),
        "MiB",
        None,
    );
    r.detail(
        "runs",
        json!({
            "api_ready_s": secs(&d_ready), "hand_ready_s": secs(&h_ready),
            "api_active_s": secs(&d_active), "post_to_exec_ms": d_exec,
            "cpu_driver_s": d_cpu, "cpu_hand_s": h_cpu,
            "guest_rss_mib_api": d_rss, "guest_rss_mib_hand": h_rss,
            "paired_diff_ms": paired.iter().map(|x| r3(*x)).collect::<Vec<_>>(),
        }),
    );
    r.detail("argv", json!(argv.args));

    // A batch of guests at once, through the API, then the same argv by hand.
    let n = o.concurrent;
    if n > 0 {
        let t0 = Instant::now();
        let mut ids = Vec::new();
        for i in 0..n {
            ids.push(api.create_server(&format!("p{i}"), &image, "1").await?);
        }
        let posted = t0.elapsed();
        let logs = ids
            .iter()
            .map(|id| instances.join(id).join("console.log"))
            .collect();
        let ready = wait_all(logs, t0).await?;
        let all_ready = ready.iter().max().copied().unwrap_or_default();
        for id in &ids {
            api.wait_active(id, Duration::from_secs(30)).await?;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut rss = Vec::new();
        for id in &ids {
            rss.push(procs::rss_mib(read_pid(&instances.join(id))?));
        }
        let controller_with = svc.rss_mib();
        r.figure(
            "concurrent_all_ready_s",
            &format!("{n} guests POSTed at once: all GUEST-READY after"),
            all_ready.as_secs_f64(),
            "s",
            None,
        );
        r.figure(
            "concurrent_guest_rss_mib",
            &format!("idle guest RSS with {n} running (median)"),
            median_f(&rss),
            "MiB",
            None,
        );
        r.figure(
            "controller_rss_guests_mib",
            &format!("nimbus serve RSS with {n} guests (idle: {controller_idle:.1})"),
            controller_with,
            "MiB",
            None,
        );
        for id in &ids {
            api.delete_and_wait(id, Duration::from_secs(120)).await?;
        }
        r.detail(
            "concurrent",
            json!({"n": n, "posts_s": r3(posted.as_secs_f64()), "ready_s": secs(&ready),
                   "guest_rss_mib": rss}),
        );

        let t0 = Instant::now();
        let mut guests = Vec::new();
        let mut logs = Vec::new();
        for i in 0..n {
            let dir = scratch.path.join(format!("c{i}"));
            guests.push(hand_spawn(&qemu, &argv, &dir)?.0);
            logs.push(dir.join("console.log"));
        }
        let ready = wait_all(logs, t0).await?;
        let all_ready = ready.iter().max().copied().unwrap_or_default();
        drop(guests);
        r.figure(
            "concurrent_hand_all_ready_s",
            &format!("{n} hand-started guests at once: all GUEST-READY after"),
            all_ready.as_secs_f64(),
            "s",
            None,
        );
        r.detail("concurrent_hand_ready_s", json!(secs(&ready)));
    }
    let left = procs::kill_guests(&svc.data_dir.join("qemu"));
    if left > 0 {
        r.note(&format!(
            "{left} guests were still running after the deletes (killed)"
        ));
    }
    svc.stop().await;
    drop(scratch);
    agent(setup, &image_path, r).await
}

/// Wait for the marker in every log at once (each wait on its own task).
async fn wait_all(logs: Vec<PathBuf>, t0: Instant) -> anyhow::Result<Vec<Duration>> {
    let tasks: Vec<_> = logs
        .into_iter()
        .map(|l| tokio::spawn(async move { wait_marker(&l, t0, READY_WITHIN).await }))
        .collect();
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await??);
    }
    Ok(out)
}

/// `nimbus agent --driver qemu` as its own process under a `nimbus serve --no-agent`: its
/// RSS idle and with one guest, and a boot through it.
async fn agent(setup: &Setup, image_path: &Path, r: &mut Report) -> anyhow::Result<()> {
    r.begin("qemu-agent");
    let ctl = Service::start(
        setup,
        "qemu-ctl",
        &["--no-agent", "--agent-secret", AGENT_SECRET],
    )
    .await?;
    let scratch = Scratch::new(&setup.work_dir, "qemu-agent", setup.keep)?;
    let data = scratch.path.join("agent");
    let port = procs::free_port()?;
    let args: Vec<String> = [
        "agent",
        "--controller",
        &ctl.url,
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--secret",
        AGENT_SECRET,
        "--data-dir",
        &data.to_string_lossy(),
        "--driver",
        "qemu",
        "--name",
        "bench-agent",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut agent = Guard::spawn(
        "nimbus agent",
        &setup.nimbus,
        &args,
        &[],
        scratch.path.join("agent.log"),
    )?;
    agent.owns_guests_in(data.join("qemu"));
    let api = ctl.admin().await?;
    let t = Instant::now();
    loop {
        agent.check_alive()?;
        let v = api
            .expect(
                Method::GET,
                "/compute/v2.1/os-hypervisors/detail",
                None,
                200,
            )
            .await?;
        if v["hypervisors"]
            .as_array()
            .is_some_and(|h| h.iter().any(|h| h["state"] == "up"))
        {
            break;
        }
        if t.elapsed() > Duration::from_secs(60) {
            bail!(
                "the agent did not register within 60 s:\n{}",
                procs::tail(&agent.log, 15)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let bytes =
        std::fs::read(image_path).with_context(|| format!("reading {}", image_path.display()))?;
    let image = api.upload_image("nimbus-test", "qcow2", bytes).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = procs::rss_mib(agent.pid());
    let instances = data.join("qemu").join("instances");
    // The first boot fetches the image from the controller over HTTP; time the second.
    let warm = boot_api(&api, &instances, &image, "agent-warm").await?;
    api.delete_and_wait(&warm.id, Duration::from_secs(60))
        .await?;
    let b = boot_api(&api, &instances, &image, "agent-1").await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let with_one = procs::rss_mib(agent.pid());
    let guest = procs::rss_mib(b.pid);
    api.delete_and_wait(&b.id, Duration::from_secs(60)).await?;
    r.figure(
        "agent_rss_idle_mib",
        "nimbus agent RSS, registered, no guests",
        idle,
        "MiB",
        None,
    );
    r.figure(
        "agent_rss_one_guest_mib",
        "nimbus agent RSS with 1 guest",
        with_one,
        "MiB",
        None,
    );
    r.figure(
        "agent_guest_rss_mib",
        "that guest's QEMU RSS",
        guest,
        "MiB",
        None,
    );
    r.figure(
        "agent_ready_s",
        "POST -> GUEST-READY through the remote agent",
        b.to_ready.as_secs_f64(),
        "s",
        None,
    );
    r.figure(
        "agent_first_ready_s",
        "  first boot (image fetched over HTTP)",
        warm.to_ready.as_secs_f64(),
        "s",
        None,
    );
    r.figure(
        "agent_ctl_rss_mib",
        "nimbus serve --no-agent RSS",
        ctl.rss_mib(),
        "MiB",
        None,
    );
    agent.stop(Duration::from_secs(15)).await;
    let left = procs::kill_guests(&data.join("qemu"));
    if left > 0 {
        r.note(&format!(
            "{left} guests were still running after the deletes (killed)"
        ));
    }
    ctl.stop().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::hand_args;
    use nimbus_model::agent::NicSpec;
    use std::path::PathBuf;

    #[test]
    fn hand_runs_wire_each_nic_to_their_own_switch() {
        let v = |xs: &[&str]| xs.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let nic = NicSpec {
            id: "nic-1-0".into(),
            network_id: "n1".into(),
            mac: "fa:16:3e:00:00:01".into(),
            ipv4: Some("10.0.0.5".into()),
            ipv4_prefix: Some(24),
            gateway: None,
            ipv6: None,
            dhcp: true,
            firewall: "DISABLED".into(),
        };
        let argv = v(&[
            "-machine",
            "q35",
            "-netdev",
            "dgram,id=net-fa163e000001,local.type=unix,local.path=/svc/net/nic-fa163e000001.sock,remote.type=unix,remote.path=/svc/net/n1.sock",
            "-device",
            "virtio-net-pci,netdev=net-fa163e000001,mac=fa:16:3e:00:00:01",
            "-smbios",
            "type=11,value=nimbus-nic fa:16:3e:00:00:01 dhcp",
        ]);
        let wire = |n: &NicSpec| {
            Ok((
                PathBuf::from(format!("/h/net/nic-{}.sock", n.mac)),
                PathBuf::from(format!("/h/net/{}.sock", n.network_id)),
            ))
        };
        let hand = hand_args(&argv, std::slice::from_ref(&nic), wire).unwrap();
        let mut want = argv.clone();
        want[3] = "dgram,id=net-fa163e000001,local.type=unix,local.path=/h/net/nic-fa:16:3e:00:00:01.sock,remote.type=unix,remote.path=/h/net/n1.sock".into();
        assert_eq!(hand.args, want);
        assert_eq!(
            hand.ports,
            vec![(nic, PathBuf::from("/h/net/nic-fa:16:3e:00:00:01.sock"))]
        );

        // A netdev the record knows nothing about is an error, not a guess.
        assert!(hand_args(&argv, &[], |_| Ok((PathBuf::new(), PathBuf::new()))).is_err());
    }
}
