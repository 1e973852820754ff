//! Child processes under test (`nimbus serve`, `nimbus agent`, hand-started QEMU) and what
//! the benchmark reads about processes from `/proc`.
//!
//! Every child is owned by a guard that kills it when dropped, so an error half-way through a
//! scenario never leaves a service (or a guest) behind. QEMU guests are started by the driver
//! in their own session and outlive the service, so the guard of a service with the qemu
//! driver also kills the guests recorded under its data directory.

use anyhow::{Context as _, bail};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// A scratch directory removed on drop (unless `--keep`).
pub struct Scratch {
    pub path: PathBuf,
    keep: bool,
}

impl Scratch {
    pub fn new(base: &Path, name: &str, keep: bool) -> anyhow::Result<Scratch> {
        let path = base.join(format!(
            "nimbus-bench-{}-{name}-{}",
            std::process::id(),
            next_serial()
        ));
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Scratch { path, keep })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.keep {
            eprintln!("kept {}", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

fn next_serial() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// A free loopback port: bind port 0, read it, release it. The service binds it again a
/// moment later; nothing else on this machine is expected to grab it in between.
pub fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(l.local_addr()?.port())
}

/// A child process killed (SIGKILL) and reaped on drop unless it was stopped before.
pub struct Guard {
    pub name: String,
    child: Option<Child>,
    pub log: PathBuf,
    /// Directories whose `*/qemu.pid` guests die with this process's guard.
    guest_dirs: Vec<PathBuf>,
}

impl Guard {
    /// Start `program args…` with stdout and stderr appended to `log`.
    pub fn spawn(
        name: &str,
        program: &Path,
        args: &[String],
        envs: &[(&str, &str)],
        log: PathBuf,
    ) -> anyhow::Result<Guard> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("opening {}", log.display()))?;
        let err = out.try_clone()?;
        let mut cmd = Command::new(program);
        cmd.args(args).stdin(Stdio::null()).stdout(out).stderr(err);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        Ok(Guard {
            name: name.to_owned(),
            child: Some(child),
            log,
            guest_dirs: Vec::new(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// Kill the QEMU guests under `dir/instances/*/qemu.pid` when this guard is dropped.
    pub fn owns_guests_in(&mut self, dir: PathBuf) {
        self.guest_dirs.push(dir);
    }

    /// Has the process exited? (Then the error names its status and log.)
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(c) = self.child.as_mut()
            && let Some(st) = c.try_wait()?
        {
            bail!(
                "{} exited early ({st}); last lines of {}:\n{}",
                self.name,
                self.log.display(),
                tail(&self.log, 15)
            );
        }
        Ok(())
    }

    /// SIGTERM, wait up to `grace`, then SIGKILL. Returns how long the exit took.
    pub async fn stop(&mut self, grace: Duration) -> Duration {
        let t = Instant::now();
        if let Some(mut c) = self.child.take() {
            signal(c.id(), "TERM");
            while t.elapsed() < grace {
                if let Ok(Some(_)) = c.try_wait() {
                    return t.elapsed();
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        t.elapsed()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for dir in &self.guest_dirs {
            kill_guests(dir);
        }
    }
}

/// Send a signal with kill(1): the workspace forbids `unsafe`, so no libc call.
pub fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Kill every QEMU recorded in `<dir>/instances/*/qemu.pid` whose command line names its own
/// instance directory (so a reused pid is never hit). Returns how many were still alive.
pub fn kill_guests(dir: &Path) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(dir.join("instances"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let Ok(pid) = std::fs::read_to_string(e.path().join("qemu.pid")) else {
            continue;
        };
        let pid = pid.trim();
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let inst = e.path().to_string_lossy().into_owned();
        if String::from_utf8_lossy(&cmdline).contains(&inst) {
            signal(pid.parse().unwrap_or(0), "KILL");
            n += 1;
        }
    }
    n
}

/// The last `n` lines of a log file.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A field of `/proc/<pid>/status` in KiB (`VmRSS`, `VmHWM`).
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// Resident set size in MiB (0 if the process is gone).
pub fn rss_mib(pid: u32) -> f64 {
    status_kib(pid, "VmRSS").unwrap_or(0) as f64 / 1024.0
}

/// Peak resident set size in MiB.
pub fn hwm_mib(pid: u32) -> f64 {
    status_kib(pid, "VmHWM").unwrap_or(0) as f64 / 1024.0
}

const TICKS_PER_SEC: f64 = 100.0;

/// (start time in seconds since host boot, CPU seconds used) of a process, from
/// `/proc/<pid>/stat` (clock ticks: 10 ms resolution).
pub fn proc_times(pid: u32) -> Option<(f64, f64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let f: Vec<&str> = text[text.rfind(')')? + 1..].split_whitespace().collect();
    let ticks = |i: usize| f.get(i)?.parse::<u64>().ok();
    let cpu = (ticks(11)? + ticks(12)?) as f64 / TICKS_PER_SEC;
    Some((ticks(19)? as f64 / TICKS_PER_SEC, cpu))
}

/// Seconds since host boot: the clock of `/proc/<pid>/stat` start times.
pub fn uptime_secs() -> f64 {
    std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

/// `/proc/loadavg`'s three load averages.
pub fn loadavg() -> [f64; 3] {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut v = text
        .split_whitespace()
        .map(|x| x.parse::<f64>().unwrap_or(f64::NAN));
    [
        v.next().unwrap_or(f64::NAN),
        v.next().unwrap_or(f64::NAN),
        v.next().unwrap_or(f64::NAN),
    ]
}

/// One `GET path` on a fresh connection; `Ok(true)` on a 200. Used to detect the first
/// answered request at startup, so it avoids any client set-up cost.
pub async fn probe_200(port: u16, path: &str) -> std::io::Result<bool> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    s.set_nodelay(true)?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).await?;
    Ok(&head[..] == b"HTTP/1.1 200")
}
