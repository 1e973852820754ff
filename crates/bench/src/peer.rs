//! The side-by-side comparison with OpenStack Nova: run the peer's own client (`bench.py`,
//! from `../shared/peers/nova/`, passed by path and never copied into this repository)
//! against a Nimbus started here, and compare its JSON with the one the peer's
//! `run_bench.sh` wrote for Nova.

use crate::report::{Report, Target};
use crate::service::{Service, Setup};
use anyhow::{Context as _, bail};
use serde_json::{Value, json};
use std::path::Path;

/// Start Nimbus (fake driver, default settings), prepare an image and quotas, and run
/// `python3 SCRIPT --base … --token … --project … --image … --flavor 1 --pid … --json OUT
/// ARGS…`, its output passed through.
pub async fn run_bench_py(
    setup: &Setup,
    script: &Path,
    out: &Path,
    args: &[String],
    r: &mut Report,
) -> anyhow::Result<()> {
    r.begin("peer-bench-py");
    if !script.is_file() {
        bail!("no bench.py at {}", script.display());
    }
    let svc = Service::start(setup, "peer", &[]).await?;
    let api = svc.admin().await?;
    let image = api
        .upload_image("bench-image", "raw", vec![0u8; 64 * 1024])
        .await?;
    api.unlimited_quotas().await?;
    let mut cmd = tokio::process::Command::new("python3");
    cmd.arg(script)
        .args(["--base", &format!("{}/compute/v2.1", svc.url)])
        .args(["--token", &api.token])
        .args(["--project", &api.project_id])
        .args(["--image", &image])
        .args(["--flavor", "1"])
        .args(["--pid", &svc.pid().to_string()])
        .arg("--json")
        .arg(out)
        .args(args)
        .kill_on_drop(true);
    r.note(&format!(
        "python3 {} --base {}/compute/v2.1 --token … --project {} --image {image} --flavor 1 --pid {} --json {} {}",
        script.display(),
        svc.url,
        api.project_id,
        svc.pid(),
        out.display(),
        args.join(" ")
    ));
    let st = cmd.status().await.context("running python3")?;
    if !st.success() {
        bail!("bench.py failed ({st})");
    }
    let v = read(out)?;
    r.detail("bench_py", v);
    svc.stop().await;
    Ok(())
}

fn read(p: &Path) -> anyhow::Result<Value> {
    serde_json::from_slice(&std::fs::read(p).with_context(|| format!("reading {}", p.display()))?)
        .with_context(|| format!("parsing {}", p.display()))
}

fn num(v: &Value, path: &[&str]) -> Option<f64> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_f64()
}

/// Ratios between two bench.py results: Nimbus's and Nova's.
pub fn compare(nimbus: &Path, nova: &Path, r: &mut Report) -> anyhow::Result<()> {
    r.begin("compare");
    let (a, b) = (read(nimbus)?, read(nova)?);
    let mut rows = Vec::new();
    let mut row =
        |key: &str, label: &str, path: &[&str], higher_is_better: bool, target: Option<f64>| {
            let (Some(x), Some(y)) = (num(&a, path), num(&b, path)) else {
                println!("  {label}: missing in one of the files");
                return;
            };
            let ratio = if higher_is_better { x / y } else { y / x };
            println!("  {label:<44} Nimbus {x:>10.2}   Nova {y:>10.2}");
            r.figure(
                key,
                &format!(
                    "  ratio ({})",
                    if higher_is_better {
                        "Nimbus/Nova"
                    } else {
                        "Nova/Nimbus"
                    }
                ),
                ratio,
                "x",
                target.map(Target::AtLeast),
            );
            rows.push(json!({"figure": label, "nimbus": x, "nova": y, "ratio": ratio}));
        };
    row(
        "flavors_seq",
        "GET /flavors sequential median (ms)",
        &["flavors_seq", "median_ms"],
        false,
        None,
    );
    for c in ["1", "4", "16"] {
        let k = format!("flavors_tput_c{c}");
        row(
            &format!("{k}_ratio"),
            &format!("GET /flavors req/s at c={c}"),
            &[&k, "rps"],
            true,
            (c == "16").then_some(200.0),
        );
    }
    let creates = a
        .as_object()
        .and_then(|m| {
            m.keys()
                .find(|k| k.starts_with("create_") && !k.starts_with("create_to"))
        })
        .cloned();
    if let Some(k) = creates {
        row(
            "create_ratio",
            &format!("{k}: all ACTIVE after (s)"),
            &[&k, "all_active_s"],
            false,
            Some(50.0),
        );
        let n = k.trim_start_matches("create_");
        let d = format!("servers_detail_{n}");
        row(
            "detail_ratio",
            &format!("GET /servers/detail with {n} servers median (ms)"),
            &[&d, "median_ms"],
            false,
            None,
        );
    }
    row(
        "rss_ratio",
        "RSS at the end (KiB)",
        &["rss_kb", "end"],
        false,
        None,
    );
    r.detail("rows", json!(rows));
    Ok(())
}
