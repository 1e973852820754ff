//! The scenarios on the fake driver (DESIGN §8): startup, GET throughput, 1,000 concurrent
//! creates with `/servers/detail` latency at 1,000 servers, and controller RSS idle and at
//! 10,000 servers.

use crate::load::{self, Latency, Target as LoadTarget, r3};
use crate::procs::{self, Scratch};
use crate::report::{Report, Target};
use crate::service::{Api, Service, Setup};
use anyhow::{Context as _, bail};
use reqwest::Method;
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Knobs shared by the fake-driver scenarios.
#[derive(Clone, Debug)]
pub struct Opts {
    pub starts: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub concurrency: usize,
    pub wrk: Option<PathBuf>,
    pub wrk_threads: usize,
    pub creates: usize,
    pub create_concurrency: usize,
    pub rss_servers: usize,
    pub detail_samples: usize,
}

/// A tiny raw image: the fake driver never reads it, it only has to exist and be active.
fn fake_image() -> Vec<u8> {
    vec![0u8; 64 * 1024]
}

/// Log in, upload an image, lift quotas: what every scenario needs before creating servers.
async fn prepare(svc: &Service) -> anyhow::Result<(Api, String)> {
    let api = svc.admin().await?;
    let image = api.upload_image("bench-image", "raw", fake_image()).await?;
    api.unlimited_quotas().await?;
    Ok((api, image))
}

fn get_target(svc: &Service, api: &Api, path: &str) -> LoadTarget {
    LoadTarget {
        port: svc.port,
        path: path.to_owned(),
        headers: vec![
            ("X-Auth-Token".into(), api.token.clone()),
            ("Accept".into(), "application/json".into()),
        ],
    }
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Spawn → first answered `GET /compute/v2.1`, on a new data directory every time (first
/// start: migrations, admin bootstrap with its argon2 hash, default flavors) and restarting
/// on an existing one.
pub async fn startup(setup: &Setup, o: &Opts, r: &mut Report) -> anyhow::Result<()> {
    r.begin("startup");
    let scratch = Scratch::new(&setup.work_dir, "startup", setup.keep)?;
    let (mut cold, mut warm, mut rss) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..o.starts {
        let svc = Service::start_in(setup, &scratch.path.join(format!("d{i}")), &[]).await?;
        cold.push(svc.startup);
        rss.push(svc.rss_mib());
        svc.stop().await;
    }
    let dir = scratch.path.join("d0");
    for _ in 0..o.starts {
        let svc = Service::start_in(setup, &dir, &[]).await?;
        warm.push(svc.startup);
        svc.stop().await;
    }
    r.detail(
        "cold_ms",
        json!(cold.iter().map(|d| r3(ms(*d))).collect::<Vec<_>>()),
    );
    r.detail(
        "warm_ms",
        json!(warm.iter().map(|d| r3(ms(*d))).collect::<Vec<_>>()),
    );
    let (cmin, wmin) = (
        cold.iter().min().copied().unwrap_or_default(),
        warm.iter().min().copied().unwrap_or_default(),
    );
    r.figure(
        "restart_median_ms",
        &format!("startup, existing data dir (median of {})", o.starts),
        ms(median(&mut warm)),
        "ms",
        Some(Target::Below(200.0)),
    );
    r.figure(
        "first_start_median_ms",
        &format!("startup, new data dir (median of {})", o.starts),
        ms(median(&mut cold)),
        "ms",
        Some(Target::Below(200.0)),
    );
    r.figure(
        "restart_min_ms",
        "startup, existing data dir (min)",
        ms(wmin),
        "ms",
        None,
    );
    r.figure(
        "first_start_min_ms",
        "startup, new data dir (min)",
        ms(cmin),
        "ms",
        None,
    );
    rss.sort_by(f64::total_cmp);
    r.figure(
        "rss_at_first_answer_mib",
        "RSS at the first answer (median)",
        rss[rss.len() / 2],
        "MiB",
        None,
    );
    Ok(())
}

/// `GET /flavors` and `GET /servers/{id}`: throughput and latency at `concurrency`, plus
/// sequential latency; with `wrk` too when it is installed.
pub async fn get(setup: &Setup, o: &Opts, r: &mut Report) -> anyhow::Result<()> {
    r.begin("get");
    let svc = Service::start(setup, "get", &[]).await?;
    let (api, image) = prepare(&svc).await?;
    let id = api.create_server("get-0", &image, "1").await?;
    api.wait_active(&id, Duration::from_secs(30)).await?;
    r.note(&format!(
        "client: {} keep-alive connections on the same 2 cores as the service, {:?} warm-up, {:?} measured",
        o.concurrency, o.warmup, o.duration
    ));
    let server_path = format!("/compute/v2.1/servers/{id}");
    for (key, label, path) in [
        ("flavors", "GET /flavors", "/compute/v2.1/flavors"),
        ("server", "GET /servers/{id}", server_path.as_str()),
    ] {
        let t = get_target(&svc, &api, path);
        let seq = load::sequential(&t, 2000).await?;
        r.figure(
            &format!("{key}_seq_p50_ms"),
            &format!("{label}: sequential p50"),
            seq.p50,
            "ms",
            None,
        );
        let cpu0 = procs::proc_times(svc.pid()).map(|t| t.1);
        let res = load::closed_loop(&t, o.concurrency, o.warmup, o.duration).await?;
        let cpu1 = procs::proc_times(svc.pid()).map(|t| t.1);
        r.figure(
            &format!("{key}_rps"),
            &format!("{label}: req/s at c={} (our client)", o.concurrency),
            res.rps,
            "req/s",
            Some(Target::AtLeast(20_000.0)),
        );
        r.figure(
            &format!("{key}_p50_ms"),
            &format!("{label}: p50 at c={} (our client)", o.concurrency),
            res.latency.p50,
            "ms",
            None,
        );
        r.figure(
            &format!("{key}_p99_ms"),
            &format!("{label}: p99 at c={} (our client)", o.concurrency),
            res.latency.p99,
            "ms",
            Some(Target::Below(5.0)),
        );
        if res.errors > 0 {
            r.note(&format!("{label}: {} errors", res.errors));
        }
        let mut detail = json!({"sequential": seq.json(), "load": res.json()});
        if let (Some(a), Some(b)) = (cpu0, cpu1) {
            // Warm-up included: the service's CPU seconds over the whole run.
            let cpu = b - a;
            let wall = (o.warmup + o.duration).as_secs_f64();
            r.note(&format!(
                "{label}: service used {cpu:.1} CPU-s in {wall:.0} s ({:.0}% of the 2 cores)",
                cpu / wall / 2.0 * 100.0
            ));
            detail["service_cpu_s"] = json!(r3(cpu));
            detail["service_cpu_us_per_req"] = json!(r3(
                cpu * 1e6 / (res.ok as f64 * wall / o.duration.as_secs_f64())
            ));
        }
        if let Some(w) = &o.wrk {
            let cpu0 = procs::proc_times(svc.pid()).map(|t| t.1);
            let wr = load::wrk(w, &t, o.wrk_threads, o.concurrency, o.duration).await?;
            let cpu1 = procs::proc_times(svc.pid()).map(|t| t.1);
            r.figure(
                &format!("{key}_wrk_rps"),
                &format!(
                    "{label}: req/s at c={} (wrk -t{})",
                    o.concurrency, o.wrk_threads
                ),
                wr.rps,
                "req/s",
                Some(Target::AtLeast(20_000.0)),
            );
            r.figure(
                &format!("{key}_wrk_p50_ms"),
                &format!("{label}: p50 at c={} (wrk)", o.concurrency),
                wr.p50,
                "ms",
                None,
            );
            r.figure(
                &format!("{key}_wrk_p99_ms"),
                &format!("{label}: p99 at c={} (wrk)", o.concurrency),
                wr.p99,
                "ms",
                Some(Target::Below(5.0)),
            );
            if wr.non_2xx > 0 || !wr.socket_errors.is_empty() {
                r.note(&format!(
                    "wrk: {} non-2xx, socket errors: {}",
                    wr.non_2xx, wr.socket_errors
                ));
            }
            detail["wrk"] = wr.json();
            if let (Some(a), Some(b)) = (cpu0, cpu1) {
                detail["wrk"]["service_cpu_s"] = json!(r3(b - a));
            }
        }
        r.detail(key, detail);
    }
    r.figure(
        "rss_mib",
        "service RSS after the runs",
        svc.rss_mib(),
        "MiB",
        None,
    );
    svc.stop().await;
    Ok(())
}

/// POST `n` servers with at most `concurrency` requests in flight; the ids (in order of
/// answer) and each POST's latency.
async fn create_many(
    api: &Api,
    image: &str,
    prefix: &str,
    n: usize,
    concurrency: usize,
) -> anyhow::Result<(Vec<String>, Vec<Duration>)> {
    let sem = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let (api, image, sem) = (api.clone(), image.to_owned(), sem.clone());
        let name = format!("{prefix}-{i:05}");
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire().await?;
            let t = Instant::now();
            let id = api.create_server(&name, &image, "1").await?;
            anyhow::Ok((id, t.elapsed()))
        }));
    }
    let (mut ids, mut lat) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for t in tasks {
        let (id, d) = t.await??;
        ids.push(id);
        lat.push(d);
    }
    Ok((ids, lat))
}

/// Poll until no server of the project is in BUILD (cheap: one filtered row); the time.
async fn wait_no_build(api: &Api, poll: Duration, within: Duration) -> anyhow::Result<()> {
    let t = Instant::now();
    loop {
        let v = api
            .expect(
                Method::GET,
                "/compute/v2.1/servers?status=BUILD&limit=1",
                None,
                200,
            )
            .await?;
        if v["servers"].as_array().is_some_and(|a| a.is_empty()) {
            return Ok(());
        }
        if t.elapsed() > within {
            bail!("servers still in BUILD after {within:?}");
        }
        tokio::time::sleep(poll).await;
    }
}

/// Count statuses among `ids` in a full listing; errors if any server is missing.
async fn statuses(
    api: &Api,
    ids: &[String],
) -> anyhow::Result<std::collections::BTreeMap<String, usize>> {
    let all = api.all_servers().await?;
    let by_id: std::collections::HashMap<&str, &str> = all
        .iter()
        .filter_map(|s| Some((s["id"].as_str()?, s["status"].as_str()?)))
        .collect();
    let mut count = std::collections::BTreeMap::new();
    for id in ids {
        let st = by_id.get(id.as_str()).copied().unwrap_or("MISSING");
        *count.entry(st.to_owned()).or_insert(0) += 1;
    }
    Ok(count)
}

/// The host usage os-hypervisors reports, and whether any host exceeds its capacity.
async fn hypervisor_usage(
    api: &Api,
    cpu_ratio: f64,
    ram_ratio: f64,
) -> anyhow::Result<(serde_json::Value, bool)> {
    let v = api
        .expect(
            Method::GET,
            "/compute/v2.1/os-hypervisors/detail",
            None,
            200,
        )
        .await?;
    let mut over = false;
    let mut hosts = Vec::new();
    for h in v["hypervisors"].as_array().into_iter().flatten() {
        let g = |k: &str| h[k].as_i64().unwrap_or(0);
        // os-hypervisors reports physical capacity, as Nova does; the allocation ratios
        // the service was started with give what may be claimed.
        over |= g("vcpus_used") as f64 > g("vcpus") as f64 * cpu_ratio;
        over |= g("memory_mb_used") as f64 > g("memory_mb") as f64 * ram_ratio;
        over |= g("local_gb_used") > g("local_gb");
        hosts.push(json!({
            "host": h["hypervisor_hostname"], "vcpus": g("vcpus"), "vcpus_used": g("vcpus_used"),
            "memory_mb": g("memory_mb"), "memory_mb_used": g("memory_mb_used"),
            "local_gb": g("local_gb"), "local_gb_used": g("local_gb_used"),
            "running_vms": g("running_vms"),
        }));
    }
    Ok((json!(hosts), over))
}

/// 1,000 servers created concurrently on a host that fits exactly 1,000 (vCPU-bound), then
/// `/servers/detail` latency with those 1,000, then one more create that must fail with
/// NoValidHost.
pub async fn create(setup: &Setup, o: &Opts, r: &mut Report) -> anyhow::Result<()> {
    r.begin("create");
    let n = o.creates;
    let vcpus = n.to_string();
    let ram = (n * 512).to_string();
    let disk = (n * 2).to_string();
    let svc = Service::start(
        setup,
        "create",
        &[
            "--host-vcpus",
            &vcpus,
            "--cpu-allocation-ratio",
            "1",
            "--host-ram-mb",
            &ram,
            "--ram-allocation-ratio",
            "1",
            "--host-disk-gb",
            &disk,
        ],
    )
    .await?;
    let (api, image) = prepare(&svc).await?;
    r.note(&format!(
        "host capacity: {n} vCPUs (ratio 1.0), {ram} MB RAM (ratio 1.0) = exactly {n} m1.tiny; fake spawn delay 500 ms (default); {} POSTs in flight",
        o.create_concurrency.min(n)
    ));
    let rss0 = svc.rss_mib();
    let cpu0 = procs::proc_times(svc.pid()).map(|t| t.1);
    let t0 = Instant::now();
    let (ids, mut post_lat) = create_many(&api, &image, "c", n, o.create_concurrency).await?;
    let posted = t0.elapsed();
    wait_no_build(&api, Duration::from_millis(50), Duration::from_secs(300)).await?;
    let all_done = t0.elapsed();
    let cpu1 = procs::proc_times(svc.pid()).map(|t| t.1);
    let count = statuses(&api, &ids).await?;
    let active = count.get("ACTIVE").copied().unwrap_or(0);
    let (hosts, over) = hypervisor_usage(&api, 1.0, 1.0).await?;
    post_lat.sort();
    let post = Latency::from_durations(&post_lat);
    r.figure(
        "all_active_s",
        &format!("{n} concurrent creates: all ACTIVE after"),
        all_done.as_secs_f64(),
        "s",
        Some(Target::Below(10.0)),
    );
    r.figure(
        "active",
        &format!("{n} concurrent creates: ACTIVE (none lost)"),
        active as f64,
        "servers",
        Some(Target::AtLeast(n as f64)),
    );
    r.figure(
        "overcommitted_hosts",
        "hosts over capacity (os-hypervisors)",
        if over { 1.0 } else { 0.0 },
        "hosts",
        Some(Target::Below(1.0)),
    );
    r.figure(
        "post_phase_s",
        "  of which all POSTs answered after",
        posted.as_secs_f64(),
        "s",
        None,
    );
    r.figure("post_p50_ms", "  POST /servers p50", post.p50, "ms", None);
    r.figure("post_p99_ms", "  POST /servers p99", post.p99, "ms", None);
    if let (Some(a), Some(b)) = (cpu0, cpu1) {
        r.figure(
            "service_cpu_s",
            "  service CPU time for the creates",
            b - a,
            "CPU-s",
            None,
        );
    }
    r.detail("statuses", json!(count));
    r.detail("hypervisors", hosts);
    r.detail("post_latency", post.json());

    // /servers/detail with the 1,000 servers (one page: the default limit is 1,000).
    let v = api
        .expect(Method::GET, "/compute/v2.1/servers/detail", None, 200)
        .await?;
    let listed = v["servers"].as_array().map_or(0, Vec::len);
    if listed != n {
        bail!("/servers/detail listed {listed} servers, expected {n}");
    }
    let t = get_target(&svc, &api, "/compute/v2.1/servers/detail");
    let detail = load::sequential(&t, o.detail_samples).await?;
    r.figure(
        "detail_p50_ms",
        &format!("GET /servers/detail ({n} servers) p50"),
        detail.p50,
        "ms",
        Some(Target::Below(15.0)),
    );
    r.figure(
        "detail_p99_ms",
        &format!("GET /servers/detail ({n} servers) p99"),
        detail.p99,
        "ms",
        None,
    );
    let list = load::sequential(
        &get_target(&svc, &api, "/compute/v2.1/servers"),
        o.detail_samples,
    )
    .await?;
    r.figure(
        "list_p50_ms",
        &format!("GET /servers ({n} servers) p50"),
        list.p50,
        "ms",
        None,
    );
    r.detail("detail_latency", detail.json());
    r.detail("list_latency", list.json());
    r.detail("body_bytes_detail", json!(serde_json::to_vec(&v)?.len()));
    r.figure(
        "rss_mib",
        &format!("service RSS with {n} servers"),
        svc.rss_mib(),
        "MiB",
        None,
    );
    r.detail("rss_before_mib", json!(r3(rss0)));

    // The host is full: one more server must end in ERROR with NoValidHost, not squeeze in.
    let extra = api.create_server("c-extra", &image, "1").await?;
    let t = Instant::now();
    let status = loop {
        match api.server_status(&extra).await?.as_deref() {
            Some("BUILD") if t.elapsed() < Duration::from_secs(30) => {}
            other => break other.unwrap_or("GONE").to_owned(),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let (_, v) = api
        .call(Method::GET, &format!("/compute/v2.1/servers/{extra}"), None)
        .await?;
    let fault = v["server"]["fault"]["message"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    r.note(&format!(
        "server #{} on the full host: {status} ({fault})",
        n + 1
    ));
    r.detail("extra_server", json!({"status": status, "fault": fault}));
    if status != "ERROR" {
        r.figure(
            "overcommitted_hosts",
            "hosts over capacity (one more server fit)",
            1.0,
            "hosts",
            Some(Target::Below(1.0)),
        );
    }
    svc.stop().await;
    Ok(())
}

/// Controller RSS idle and with `rss_servers` servers in the database.
pub async fn rss(setup: &Setup, o: &Opts, r: &mut Report) -> anyhow::Result<()> {
    r.begin("rss");
    let n = o.rss_servers;
    let svc = Service::start(
        setup,
        "rss",
        &[
            "--host-vcpus",
            &(n + 64).to_string(),
            "--cpu-allocation-ratio",
            "1",
            "--host-ram-mb",
            &((n + 64) * 512).to_string(),
            "--host-disk-gb",
            &((n + 64) * 2).to_string(),
        ],
    )
    .await?;
    let at_start = svc.rss_mib();
    let (api, image) = prepare(&svc).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = svc.rss_mib();
    r.figure(
        "rss_at_start_mib",
        "RSS at the first answer",
        at_start,
        "MiB",
        None,
    );
    r.figure(
        "rss_idle_mib",
        "RSS idle (logged in, image uploaded, 0 servers)",
        idle,
        "MiB",
        Some(Target::Below(100.0)),
    );
    let t0 = Instant::now();
    let mut ids = Vec::with_capacity(n);
    // In batches, so the database grows steadily and the run stays bounded in memory on
    // the client side too.
    let batch = 1000;
    while ids.len() < n {
        let k = batch.min(n - ids.len());
        let (mut got, _) = create_many(&api, &image, &format!("r{}", ids.len()), k, 200).await?;
        ids.append(&mut got);
        wait_no_build(&api, Duration::from_millis(200), Duration::from_secs(600)).await?;
    }
    let created = t0.elapsed();
    let after_create = svc.rss_mib();
    let count = statuses(&api, &ids).await?;
    let after_list = svc.rss_mib();
    let active = count.get("ACTIVE").copied().unwrap_or(0);
    if active != n {
        bail!("expected {n} ACTIVE servers, found {count:?}");
    }
    let page = load::sequential(
        &get_target(&svc, &api, "/compute/v2.1/servers/detail"),
        o.detail_samples.min(20),
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let settled = svc.rss_mib();
    let steady = after_create.max(after_list).max(settled);
    r.figure(
        "rss_servers_mib",
        &format!("RSS with {n} ACTIVE servers (max of 3 readings)"),
        steady,
        "MiB",
        Some(Target::Below(100.0)),
    );
    r.figure(
        "rss_peak_mib",
        "peak RSS over the run (VmHWM)",
        procs::hwm_mib(svc.pid()),
        "MiB",
        None,
    );
    r.figure(
        "create_s",
        &format!("time to create {n} servers (batches of 1000, 200 in flight)"),
        created.as_secs_f64(),
        "s",
        None,
    );
    r.figure(
        "detail_page_p50_ms",
        &format!("GET /servers/detail (first 1000 of {n}) p50"),
        page.p50,
        "ms",
        None,
    );
    r.detail(
        "rss_readings_mib",
        json!({"after_create": r3(after_create), "after_full_listing": r3(after_list),
               "after_detail_samples": r3(settled)}),
    );
    let db = svc.data_dir.join("nimbus.db");
    let db_size = std::fs::metadata(&db)
        .with_context(|| format!("stat {}", db.display()))
        .map(|m| m.len())
        .unwrap_or(0);
    r.detail("db_bytes", json!(db_size));
    svc.stop().await;
    Ok(())
}
