//! Resource statistics of servers: raw cumulative samples (as hypervisors report them) and
//! the rate series derived from them for graphs and metrics.

use crate::ids::ServerId;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

/// One sample of a server's counters. Counters are cumulative since the guest booted; a
/// counter that goes down means the guest restarted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub server_id: ServerId,
    pub at: Timestamp,
    pub vcpus: u32,
    /// Total CPU time of all vCPUs, nanoseconds.
    pub cpu_time_ns: u64,
    pub mem_used_mb: u64,
    pub mem_max_mb: u64,
    pub disk_read_bytes: u64,
    pub disk_write_bytes: u64,
    pub net_rx_bytes: u64,
    pub net_tx_bytes: u64,
    pub net_rx_packets: u64,
    pub net_tx_packets: u64,
}

/// One point of the derived series: rates over the interval ending at `at`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub at: Timestamp,
    /// CPU use, percent of the server's vCPUs (0–100).
    pub cpu_percent: f64,
    pub mem_used_mb: u64,
    pub mem_percent: f64,
    pub disk_read_bps: f64,
    pub disk_write_bps: f64,
    pub net_rx_bps: f64,
    pub net_tx_bps: f64,
}

fn rate(now: u64, before: u64, secs: f64) -> f64 {
    // A reset counter (guest reboot) restarts from zero: count what accrued since.
    let delta = if now >= before { now - before } else { now };
    delta as f64 / secs
}

/// Rates between consecutive samples (sorted by time). Pairs less than 1 ms apart are
/// skipped.
pub fn derive(samples: &[Sample]) -> Vec<Point> {
    samples
        .windows(2)
        .filter_map(|w| {
            let (a, b) = (&w[0], &w[1]);
            let secs = (b.at - a.at).num_microseconds()? as f64 / 1e6;
            if secs < 0.001 {
                return None;
            }
            let cpu_ns = rate(b.cpu_time_ns, a.cpu_time_ns, secs);
            let cpu_percent = (cpu_ns / 1e9 / b.vcpus.max(1) as f64 * 100.0).clamp(0.0, 100.0);
            Some(Point {
                at: b.at,
                cpu_percent,
                mem_used_mb: b.mem_used_mb,
                mem_percent: if b.mem_max_mb == 0 {
                    0.0
                } else {
                    b.mem_used_mb as f64 * 100.0 / b.mem_max_mb as f64
                },
                disk_read_bps: rate(b.disk_read_bytes, a.disk_read_bytes, secs),
                disk_write_bps: rate(b.disk_write_bytes, a.disk_write_bytes, secs),
                net_rx_bps: rate(b.net_rx_bytes, a.net_rx_bytes, secs),
                net_tx_bps: rate(b.net_tx_bytes, a.net_tx_bytes, secs),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn s(t: i64, cpu_s: u64, rx: u64) -> Sample {
        Sample {
            server_id: ServerId(uuid::Uuid::nil()),
            at: chrono::DateTime::from_timestamp(1_700_000_000 + t, 0).unwrap(),
            vcpus: 2,
            cpu_time_ns: cpu_s * 1_000_000_000,
            mem_used_mb: 256,
            mem_max_mb: 1024,
            disk_read_bytes: 0,
            disk_write_bytes: t as u64 * 1000,
            net_rx_bytes: rx,
            net_tx_bytes: 0,
            net_rx_packets: 0,
            net_tx_packets: 0,
        }
    }

    #[test]
    fn rates_table() {
        // 10 s apart: 5 CPU-seconds on 2 vCPUs is 25 %; 1000 B/s written; 100 B/s received.
        let pts = derive(&[s(0, 0, 0), s(10, 5, 1000), s(20, 25, 3000)]);
        assert_eq!(pts.len(), 2);
        assert!((pts[0].cpu_percent - 25.0).abs() < 1e-9);
        assert!((pts[0].disk_write_bps - 1000.0).abs() < 1e-9);
        assert!((pts[0].net_rx_bps - 100.0).abs() < 1e-9);
        assert!((pts[0].mem_percent - 25.0).abs() < 1e-9);
        // 20 CPU-seconds in 10 s on 2 vCPUs: 100 % (clamped, never above).
        assert!((pts[1].cpu_percent - 100.0).abs() < 1e-9);
        // A counter reset (reboot) counts from zero instead of going negative.
        let pts = derive(&[s(0, 50, 5000), s(10, 5, 1000)]);
        assert!((pts[0].cpu_percent - 25.0).abs() < 1e-9);
        assert!((pts[0].net_rx_bps - 100.0).abs() < 1e-9);
        // Too-close samples are skipped; a single sample yields nothing.
        let mut close = s(0, 0, 0);
        close.at += Duration::microseconds(10);
        assert!(derive(&[s(0, 0, 0), close]).is_empty());
        assert!(derive(&[s(0, 0, 0)]).is_empty());
    }
}
