//! Compute hosts (one per agent), their capacity, and the resource claims servers hold.

use crate::ids::*;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Host {
    pub id: HostId,
    /// Numeric id (os-hypervisors / os-services ids before microversion 2.53).
    pub serial: i64,
    pub name: String,
    /// Where the controller reaches the agent: `local` for the in-process agent, else a URL.
    pub address: String,
    pub hypervisor_type: String,
    pub hypervisor_version: u64,
    pub vcpus: u32,
    pub ram_mb: u64,
    pub disk_gb: u64,
    pub cpu_allocation_ratio: f64,
    pub ram_allocation_ratio: f64,
    pub disk_allocation_ratio: f64,
    pub availability_zone: String,
    /// Admin switch (os-services `status`: enabled/disabled).
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    /// Liveness, from heartbeats (os-services `state`: up/down). False while forced down.
    pub up: bool,
    /// Operator override (os-services `forced_down`): the host counts as down whatever its
    /// heartbeats say, so the scheduler skips it.
    #[serde(default)]
    pub forced_down: bool,
    pub last_heartbeat: Option<Timestamp>,
    /// Free-form capabilities the agent reported (accelerator, QEMU version, ...).
    pub capabilities: serde_json::Value,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// What a server occupies on a host.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    pub vcpus: u64,
    pub ram_mb: u64,
    pub disk_gb: u64,
}

impl std::ops::Add for Resources {
    type Output = Resources;

    fn add(self, o: Resources) -> Resources {
        Resources {
            vcpus: self.vcpus + o.vcpus,
            ram_mb: self.ram_mb + o.ram_mb,
            disk_gb: self.disk_gb + o.disk_gb,
        }
    }
}

impl Host {
    /// Usable capacity after allocation ratios.
    pub fn capacity(&self) -> Resources {
        Resources {
            vcpus: (self.vcpus as f64 * self.cpu_allocation_ratio).floor() as u64,
            ram_mb: (self.ram_mb as f64 * self.ram_allocation_ratio).floor() as u64,
            disk_gb: (self.disk_gb as f64 * self.disk_allocation_ratio).floor() as u64,
        }
    }

    /// Whether `want` fits beside `used`.
    pub fn fits(&self, used: Resources, want: Resources) -> bool {
        let cap = self.capacity();
        let total = used + want;
        total.vcpus <= cap.vcpus && total.ram_mb <= cap.ram_mb && total.disk_gb <= cap.disk_gb
    }
}

/// A host with its current usage, as the scheduler sees it.
#[derive(Clone, Debug)]
pub struct HostUsage {
    pub host: Host,
    pub used: Resources,
    pub servers: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> Host {
        Host {
            id: HostId::new(),
            serial: 1,
            name: "h".into(),
            address: "local".into(),
            hypervisor_type: "fake".into(),
            hypervisor_version: 1,
            vcpus: 4,
            ram_mb: 8192,
            disk_gb: 100,
            cpu_allocation_ratio: 4.0,
            ram_allocation_ratio: 1.5,
            disk_allocation_ratio: 1.0,
            availability_zone: "nova".into(),
            enabled: true,
            disabled_reason: None,
            up: true,
            forced_down: false,
            last_heartbeat: None,
            capabilities: serde_json::Value::Null,
            created_at: crate::time::now(),
            updated_at: crate::time::now(),
        }
    }

    #[test]
    fn capacity_applies_ratios_and_fits_is_inclusive() {
        let h = host();
        assert_eq!(
            h.capacity(),
            Resources {
                vcpus: 16,
                ram_mb: 12288,
                disk_gb: 100
            }
        );
        let used = Resources {
            vcpus: 15,
            ram_mb: 12000,
            disk_gb: 99,
        };
        assert!(h.fits(
            used,
            Resources {
                vcpus: 1,
                ram_mb: 288,
                disk_gb: 1
            }
        ));
        assert!(!h.fits(
            used,
            Resources {
                vcpus: 2,
                ram_mb: 1,
                disk_gb: 0
            }
        ));
        assert!(!h.fits(
            used,
            Resources {
                vcpus: 0,
                ram_mb: 289,
                disk_gb: 0
            }
        ));
        assert!(!h.fits(
            used,
            Resources {
                vcpus: 0,
                ram_mb: 0,
                disk_gb: 2
            }
        ));
    }
}
