//! A closed-loop HTTP/1.1 load generator: `concurrency` keep-alive connections, each sending
//! the next `GET` as soon as the previous answer is read, for a fixed duration, recording
//! every request's latency. Also the sequential (one connection, one request at a time)
//! latency sampler, and the optional `wrk` run for a client that is not ours.
//!
//! The generator runs on the same two cores as the service, so every request the client
//! makes costs the server CPU time; `wrk` (C, epoll) is the cheaper client to compare with.

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// Latency summary of a set of samples (milliseconds).
#[derive(Clone, Debug, Default)]
pub struct Latency {
    pub n: usize,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    pub min: f64,
}

impl Latency {
    /// From samples in microseconds.
    pub fn from_us(mut us: Vec<u32>) -> Latency {
        us.sort_unstable();
        let ms = |x: u32| f64::from(x) / 1000.0;
        Latency {
            n: us.len(),
            p50: ms(pct(&us, 50.0)),
            p90: ms(pct(&us, 90.0)),
            p99: ms(pct(&us, 99.0)),
            max: ms(us.last().copied().unwrap_or(0)),
            min: ms(us.first().copied().unwrap_or(0)),
        }
    }

    pub fn from_durations(d: &[Duration]) -> Latency {
        Self::from_us(
            d.iter()
                .map(|d| u32::try_from(d.as_micros()).unwrap_or(u32::MAX))
                .collect(),
        )
    }

    pub fn json(&self) -> Value {
        json!({"n": self.n, "p50_ms": r3(self.p50), "p90_ms": r3(self.p90),
               "p99_ms": r3(self.p99), "min_ms": r3(self.min), "max_ms": r3(self.max)})
    }
}

/// Nearest-rank percentile of sorted samples.
fn pct(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn r3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// What one load run measured.
#[derive(Debug)]
pub struct LoadResult {
    pub concurrency: usize,
    pub secs: f64,
    pub ok: u64,
    pub errors: u64,
    pub rps: f64,
    pub latency: Latency,
}

impl LoadResult {
    pub fn json(&self) -> Value {
        json!({"client": "nimbus-bench (hyper http1)", "concurrency": self.concurrency,
               "seconds": r3(self.secs), "ok": self.ok, "errors": self.errors,
               "rps": self.rps.round(), "latency": self.latency.json()})
    }
}

/// One keep-alive connection as a request sender.
struct Conn {
    sender: hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
}

impl Conn {
    async fn open(port: u16) -> anyhow::Result<Conn> {
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .with_context(|| format!("connecting to 127.0.0.1:{port}"))?;
        stream.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        Ok(Conn { sender })
    }

    /// GET and read the whole body; the status code.
    async fn get(&mut self, req: Request<Empty<Bytes>>) -> anyhow::Result<u16> {
        self.sender.ready().await?;
        let resp = self.sender.send_request(req).await?;
        let status = resp.status().as_u16();
        resp.into_body().collect().await?;
        Ok(status)
    }
}

/// The request every worker sends: `GET path` with the given headers.
#[derive(Clone)]
pub struct Target {
    pub port: u16,
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl Target {
    fn request(&self) -> anyhow::Result<Request<Empty<Bytes>>> {
        let mut b =
            Request::get(self.path.as_str()).header("host", format!("127.0.0.1:{}", self.port));
        for (k, v) in &self.headers {
            b = b.header(k.as_str(), v.as_str());
        }
        Ok(b.body(Empty::new())?)
    }
}

/// `concurrency` connections hammering `target` for `duration` after a `warmup` whose
/// requests are not counted.
pub async fn closed_loop(
    target: &Target,
    concurrency: usize,
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<LoadResult> {
    // Check once that the request is answered 200, so a wrong token or path fails loudly
    // instead of measuring error pages.
    let mut probe = Conn::open(target.port).await?;
    let st = probe.get(target.request()?).await?;
    if st != 200 {
        bail!("GET {} answered {st}, not 200", target.path);
    }
    let start = Instant::now() + warmup;
    let stop = start + duration;
    let mut tasks = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let target = target.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::open(target.port).await?;
            let mut lat: Vec<u32> = Vec::with_capacity(1 << 16);
            let (mut ok, mut errors) = (0u64, 0u64);
            loop {
                let req = target.request()?;
                let t = Instant::now();
                if t >= stop {
                    break;
                }
                let res = conn.get(req).await;
                let done = Instant::now();
                if t < start {
                    if res.is_err() {
                        conn = Conn::open(target.port).await?;
                    }
                    continue;
                }
                match res {
                    Ok(200) => {
                        ok += 1;
                        lat.push(u32::try_from((done - t).as_micros()).unwrap_or(u32::MAX));
                    }
                    Ok(_) => errors += 1,
                    Err(_) => {
                        errors += 1;
                        conn = Conn::open(target.port).await?;
                    }
                }
            }
            anyhow::Ok((lat, ok, errors))
        }));
    }
    let (mut lat, mut ok, mut errors) = (Vec::new(), 0, 0);
    for t in tasks {
        let (l, o, e) = t.await??;
        lat.extend(l);
        ok += o;
        errors += e;
    }
    let secs = duration.as_secs_f64();
    Ok(LoadResult {
        concurrency,
        secs,
        ok,
        errors,
        rps: ok as f64 / secs,
        latency: Latency::from_us(lat),
    })
}

/// `n` requests one after the other on one keep-alive connection (after `n / 10` warm-up
/// requests); every answer must be 200.
pub async fn sequential(target: &Target, n: usize) -> anyhow::Result<Latency> {
    let mut conn = Conn::open(target.port).await?;
    let mut lat = Vec::with_capacity(n);
    for i in 0..n + n / 10 {
        let req = target.request()?;
        let t = Instant::now();
        let st = conn.get(req).await?;
        let d = t.elapsed();
        if st != 200 {
            bail!("GET {} answered {st}", target.path);
        }
        if i >= n / 10 {
            lat.push(d);
        }
    }
    Ok(Latency::from_durations(&lat))
}

/// What `wrk --latency` reported.
#[derive(Debug)]
pub struct WrkResult {
    pub threads: usize,
    pub connections: usize,
    pub rps: f64,
    pub p50: f64,
    pub p99: f64,
    pub non_2xx: u64,
    pub socket_errors: String,
}

impl WrkResult {
    pub fn json(&self) -> Value {
        json!({"client": "wrk", "threads": self.threads, "connections": self.connections,
               "rps": self.rps.round(), "p50_ms": r3(self.p50), "p99_ms": r3(self.p99),
               "non_2xx": self.non_2xx, "socket_errors": self.socket_errors})
    }
}

/// Run `wrk -t threads -c connections -d secs --latency` against `target`.
pub async fn wrk(
    wrk: &std::path::Path,
    target: &Target,
    threads: usize,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<WrkResult> {
    let mut cmd = tokio::process::Command::new(wrk);
    cmd.arg(format!("-t{threads}"))
        .arg(format!("-c{connections}"))
        .arg(format!("-d{}s", duration.as_secs().max(1)))
        .arg("--latency");
    for (k, v) in &target.headers {
        cmd.arg("-H").arg(format!("{k}: {v}"));
    }
    cmd.arg(format!("http://127.0.0.1:{}{}", target.port, target.path));
    let out = cmd
        .output()
        .await
        .with_context(|| format!("running {}", wrk.display()))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "wrk failed ({}): {text}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    parse_wrk(&text, threads, connections)
        .with_context(|| format!("could not read wrk's output:\n{text}"))
}

fn parse_wrk(text: &str, threads: usize, connections: usize) -> anyhow::Result<WrkResult> {
    let field = |prefix: &str| {
        text.lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(prefix))
            .map(|v| v.trim().to_owned())
    };
    let rps: f64 = field("Requests/sec:").context("no Requests/sec")?.parse()?;
    let p50 = wrk_ms(&field("50%").context("no 50% line")?)?;
    let p99 = wrk_ms(&field("99%").context("no 99% line")?)?;
    let non_2xx = field("Non-2xx or 3xx responses:")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Ok(WrkResult {
        threads,
        connections,
        rps,
        p50,
        p99,
        non_2xx,
        socket_errors: field("Socket errors:").unwrap_or_default(),
    })
}

/// wrk's durations: `812.00us`, `1.23ms`, `2.01s`.
fn wrk_ms(v: &str) -> anyhow::Result<f64> {
    let v = v.trim();
    let (num, mul) = if let Some(n) = v.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = v.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1000.0)
    } else {
        bail!("unknown wrk duration {v:?}")
    };
    Ok(num.parse::<f64>()? * mul)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(pct(&v, 50.0), 50);
        assert_eq!(pct(&v, 99.0), 99);
        assert_eq!(pct(&v, 100.0), 100);
        assert_eq!(pct(&[7], 99.0), 7);
        assert_eq!(pct(&[], 50.0), 0);
    }

    #[test]
    fn reads_wrk_output() {
        let out = "Running 10s test @ http://127.0.0.1:1/compute/v2.1/flavors
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.10ms  300.00us   9.00ms   90.00%
    Req/Sec    29.00k     1.00k   31.00k    70.00%
  Latency Distribution
     50%  812.00us
     75%    1.20ms
     90%    1.50ms
     99%    2.01s
  290000 requests in 10.00s, 100.00MB read
  Non-2xx or 3xx responses: 3
Requests/sec:  28999.50
Transfer/sec:     10.00MB
";
        let r = parse_wrk(out, 1, 32).expect("parses");
        assert_eq!(r.rps, 28999.5);
        assert!((r.p50 - 0.812).abs() < 1e-9);
        assert!((r.p99 - 2010.0).abs() < 1e-9);
        assert_eq!(r.non_2xx, 3);
    }
}
