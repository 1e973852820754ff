//! What the driver reads about a QEMU process from `/proc` (liveness, identity, RSS, CPU
//! time, age) and how it kills one it did not spawn. Linux only, like the driver.

use std::path::Path;

/// Kernel clock ticks per second for `/proc/<pid>/stat` times (USER_HZ, 100 on Linux/x86).
const TICKS_PER_SEC: u64 = 100;

/// The fields of `/proc/<pid>/stat` after the `(comm)` field, split on spaces.
fn stat_fields(pid: u32, tid: Option<u32>) -> Option<Vec<String>> {
    let path = match tid {
        Some(t) => format!("/proc/{pid}/task/{t}/stat"),
        None => format!("/proc/{pid}/stat"),
    };
    let text = std::fs::read_to_string(path).ok()?;
    // comm may contain spaces and parentheses; it ends at the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// True if `pid` exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    match stat_fields(pid, None) {
        // fields[0] is the state (field 3 of stat).
        Some(f) => f.first().is_some_and(|s| s != "Z" && s != "X"),
        None => false,
    }
}

/// True if `pid` is alive and its command line mentions `marker` (the instance directory),
/// which guards against a recycled pid.
pub fn is_our_qemu(pid: u32, marker: &Path) -> bool {
    if !alive(pid) {
        return false;
    }
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let marker = marker.to_string_lossy();
    String::from_utf8_lossy(&cmdline).contains(marker.as_ref())
}

/// Resident set size in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// CPU time (user + system) of a process or one of its threads, in nanoseconds.
pub fn cpu_time_ns(pid: u32, tid: Option<u32>) -> Option<u64> {
    let f = stat_fields(pid, tid)?;
    // utime and stime are stat fields 14 and 15; f[0] is field 3.
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) * (1_000_000_000 / TICKS_PER_SEC))
}

/// Seconds since the process started.
pub fn age_secs(pid: u32) -> Option<u64> {
    let f = stat_fields(pid, None)?;
    // starttime is stat field 22, in ticks since boot.
    let start: u64 = f.get(19)?.parse().ok()?;
    let uptime: f64 = std::fs::read_to_string("/proc/uptime")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some((uptime as u64).saturating_sub(start / TICKS_PER_SEC))
}

/// Read a pid file written by QEMU's `-pidfile`.
pub fn read_pid_file(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// SIGKILL a process that is not our child (no `Child` handle to kill it with). The
/// workspace forbids `unsafe`, so this runs the standard `kill` utility.
pub async fn kill_hard(pid: u32) {
    let _ = tokio::process::Command::new("kill")
        .arg("-KILL")
        .arg(pid.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_our_own_process() {
        let me = std::process::id();
        assert!(alive(me));
        assert!(rss_kib(me).unwrap() > 0);
        assert!(cpu_time_ns(me, None).is_some());
        assert!(age_secs(me).is_some());
        assert!(!alive(u32::MAX - 1));
        assert!(!is_our_qemu(
            me,
            Path::new("/definitely/not/in/the/cmdline")
        ));
    }
}
