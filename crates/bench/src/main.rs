//! `nimbus-bench`: the benchmark program of DESIGN §8.
//!
//! It starts the release `nimbus` binary as a child process on a free loopback port with a
//! scratch data directory (killed at the end, also on error), drives it over HTTP like any
//! OpenStack client, and prints every figure next to its target; `--json OUT` keeps them.
//!
//! ```text
//! cargo build --release -p nimbus -p nimbus-bench
//! cargo run --release -p nimbus-bench -- startup get create rss
//! cargo run --release -p nimbus-bench -- qemu --test-image target/test-image/nimbus-test.qcow2
//! cargo run --release -p nimbus-bench -- peer --peer-script ../shared/peers/nova/bench.py \
//!     --peer-json /tmp/nimbus-py.json -- --large 0
//! cargo run --release -p nimbus-bench -- compare --peer-json /tmp/nimbus-py.json --nova-json /tmp/nova.json
//! ```
//!
//! Speed targets are checked here, not in timed tests: the exit status is 2 when a figure
//! misses its target.

mod fake;
mod load;
mod peer;
mod procs;
mod qemu;
mod report;
mod service;

use anyhow::{Context as _, bail};
use clap::{Parser, ValueEnum};
use serde_json::json;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// Spawn → first answered request, new and existing data directory.
    Startup,
    /// GET /flavors and GET /servers/{id}: throughput and latency at --concurrency.
    Get,
    /// 1,000 concurrent creates to ACTIVE, then /servers/detail latency with 1,000.
    Create,
    /// Controller RSS idle and with 10,000 servers.
    Rss,
    /// Real guests: boot through Nimbus vs the same QEMU by hand, RSS, agent RSS.
    Qemu,
    /// startup, get, create and rss.
    All,
    /// Run the Nova peer's bench.py against Nimbus (--peer-script, --peer-json).
    Peer,
    /// Ratios between two bench.py JSON files (--peer-json for Nimbus, --nova-json).
    Compare,
}

#[derive(Parser)]
#[command(
    name = "nimbus-bench",
    about = "Benchmark nimbus serve against DESIGN §8's targets"
)]
struct Cli {
    /// What to measure (default: all = startup get create rss).
    #[arg(value_enum)]
    scenarios: Vec<Scenario>,
    /// The nimbus binary (default: `nimbus` next to this program).
    #[arg(long)]
    nimbus: Option<PathBuf>,
    /// Write every figure to this JSON file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Where scratch data directories go.
    #[arg(long, default_value_os_t = std::env::temp_dir())]
    work_dir: PathBuf,
    /// Keep the scratch directories (and the services' logs) for inspection.
    #[arg(long)]
    keep: bool,
    /// startup: starts of each kind.
    #[arg(long, default_value_t = 11)]
    starts: usize,
    /// get: measured seconds per load run.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// get: keep-alive connections.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// get: also run wrk (default: `wrk` from PATH if installed).
    #[arg(long)]
    wrk: Option<PathBuf>,
    /// get: do not run wrk.
    #[arg(long)]
    no_wrk: bool,
    /// get: wrk threads.
    #[arg(long, default_value_t = 1)]
    wrk_threads: usize,
    /// create: servers to create at once.
    #[arg(long, default_value_t = 1000)]
    creates: usize,
    /// create: POSTs in flight (default: all of them).
    #[arg(long)]
    create_concurrency: Option<usize>,
    /// rss: servers in the database.
    #[arg(long, default_value_t = 10_000)]
    rss_servers: usize,
    /// create: /servers/detail samples.
    #[arg(long, default_value_t = 50)]
    detail_samples: usize,
    /// qemu: the guest image.
    #[arg(long, default_value = "target/test-image/nimbus-test.qcow2")]
    test_image: PathBuf,
    /// qemu: boots of each kind (via Nimbus, by hand), alternated.
    #[arg(long, default_value_t = 5)]
    qemu_runs: usize,
    /// qemu: guests booted at once (0: skip).
    #[arg(long, default_value_t = 10)]
    qemu_concurrent: usize,
    /// peer: the Nova peer's bench.py.
    #[arg(long)]
    peer_script: Option<PathBuf>,
    /// peer: where bench.py writes its JSON; compare: Nimbus's bench.py JSON.
    #[arg(long)]
    peer_json: Option<PathBuf>,
    /// compare: Nova's bench.py JSON (from run_bench.sh).
    #[arg(long)]
    nova_json: Option<PathBuf>,
    /// peer: arguments passed on to bench.py (after `--`).
    #[arg(last = true)]
    peer_args: Vec<String>,
}

fn nimbus_binary(cli: &Cli) -> anyhow::Result<PathBuf> {
    let p = match &cli.nimbus {
        Some(p) => p.clone(),
        None => std::env::current_exe()
            .context("locating this program")?
            .with_file_name("nimbus"),
    };
    if !p.is_file() {
        bail!(
            "no nimbus binary at {} (build it: cargo build --release -p nimbus, or pass --nimbus PATH)",
            p.display()
        );
    }
    Ok(p)
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut scenarios = cli.scenarios.clone();
    if scenarios.is_empty() {
        scenarios.push(Scenario::All);
    }
    if let Some(i) = scenarios.iter().position(|s| *s == Scenario::All) {
        scenarios.splice(
            i..=i,
            [
                Scenario::Startup,
                Scenario::Get,
                Scenario::Create,
                Scenario::Rss,
            ],
        );
    }
    let needs_nimbus = scenarios.iter().any(|s| *s != Scenario::Compare);
    let setup = service::Setup {
        nimbus: if needs_nimbus {
            nimbus_binary(&cli)?
        } else {
            PathBuf::new()
        },
        work_dir: cli.work_dir.clone(),
        keep: cli.keep,
    };
    let wrk = if cli.no_wrk {
        None
    } else {
        cli.wrk.clone().or_else(|| which("wrk"))
    };
    let opts = fake::Opts {
        starts: cli.starts.max(1),
        duration: Duration::from_secs(cli.duration.max(1)),
        warmup: Duration::from_secs(1),
        concurrency: cli.concurrency.max(1),
        wrk: wrk.clone(),
        wrk_threads: cli.wrk_threads.max(1),
        creates: cli.creates.max(1),
        create_concurrency: cli.create_concurrency.unwrap_or(cli.creates).max(1),
        rss_servers: cli.rss_servers.max(1),
        detail_samples: cli.detail_samples.max(1),
    };
    let load = procs::loadavg();
    let meta = json!({
        "date": chrono::Utc::now().to_rfc3339(),
        "args": std::env::args().skip(1).collect::<Vec<_>>(),
        "nimbus": setup.nimbus,
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "load_at_start": load,
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        "wrk": wrk,
    });
    println!(
        "nimbus-bench: {} CPUs, load average {:.2} {:.2} {:.2}, nimbus = {}",
        meta["cpus"],
        load[0],
        load[1],
        load[2],
        setup.nimbus.display()
    );
    if load[0] > 1.5 {
        println!(
            "  note: the machine is busy (1-minute load {:.2}); figures will be noisy",
            load[0]
        );
    }

    let mut report = report::Report::new();
    let mut result = Ok(());
    for s in &scenarios {
        result = match s {
            Scenario::Startup => fake::startup(&setup, &opts, &mut report).await,
            Scenario::Get => fake::get(&setup, &opts, &mut report).await,
            Scenario::Create => fake::create(&setup, &opts, &mut report).await,
            Scenario::Rss => fake::rss(&setup, &opts, &mut report).await,
            Scenario::Qemu => {
                let q = qemu::Opts {
                    test_image: cli.test_image.clone(),
                    runs: cli.qemu_runs.max(1),
                    concurrent: cli.qemu_concurrent,
                };
                qemu::qemu(&setup, &q, &mut report).await
            }
            Scenario::Peer => match (&cli.peer_script, &cli.peer_json) {
                (Some(script), Some(out)) => {
                    peer::run_bench_py(&setup, script, out, &cli.peer_args, &mut report).await
                }
                _ => Err(anyhow::anyhow!("peer needs --peer-script and --peer-json")),
            },
            Scenario::Compare => match (&cli.peer_json, &cli.nova_json) {
                (Some(a), Some(b)) => peer::compare(a, b, &mut report),
                _ => Err(anyhow::anyhow!("compare needs --peer-json and --nova-json")),
            },
            Scenario::All => Ok(()),
        };
        if result.is_err() {
            break;
        }
    }
    let (all, failed) = report.finish(meta);
    if let Some(p) = &cli.json {
        std::fs::write(p, serde_json::to_vec_pretty(&all)?)
            .with_context(|| format!("writing {}", p.display()))?;
        println!("\nwrote {}", p.display());
    }
    result?;
    if !failed.is_empty() {
        println!("\ntargets missed: {}", failed.join("; "));
        std::process::exit(2);
    }
    println!("\nall targets met");
    Ok(())
}
