//! The scheduler: filter hosts, weigh the survivors, and claim capacity atomically on the
//! best one (falling through to the next if a concurrent claim won the race).
//!
//! Filters: enabled, up and not forced down, availability zone, forced host, capacity with allocation
//! ratios, hard server-group policies (re-checked inside the claim transaction).
//! Weigher: most free RAM first (spread), with soft group policies as preferences.

use crate::Control;
use nimbus_model::host::{Host, HostUsage, Resources};
use nimbus_model::server::{FlavorSnapshot, Server};
use nimbus_model::server_group::GroupPolicy;
use nimbus_model::{Error, HostId, Result};
use nimbus_store::{Claim, ClaimOutcome, GroupConstraint};

/// What a flavor occupies on a host.
pub fn resources_of(f: &FlavorSnapshot) -> Resources {
    Resources {
        vcpus: f.vcpus as u64,
        ram_mb: f.ram_mb,
        disk_gb: f.disk_gb + f.ephemeral_gb + f.swap_mb.div_ceil(1024),
    }
}

/// Order candidate hosts: hosts that pass the filters, best first. Pure, so it is tested
/// as a table.
pub fn rank_hosts(
    hosts: &[HostUsage],
    want: Resources,
    zone: Option<&str>,
    forced: Option<&str>,
    group_hosts: &[HostId],
    policy: Option<GroupPolicy>,
    max_per_host: u32,
) -> Vec<Host> {
    let mut ok: Vec<&HostUsage> = hosts
        .iter()
        .filter(|h| h.host.enabled && h.host.up && !h.host.forced_down)
        .filter(|h| zone.is_none_or(|z| h.host.availability_zone == z))
        .filter(|h| forced.is_none_or(|f| h.host.name == f))
        .filter(|h| h.host.fits(h.used, want))
        .filter(|h| match policy {
            Some(GroupPolicy::Affinity) => {
                group_hosts.is_empty() || group_hosts.contains(&h.host.id)
            }
            // `max_server_per_host` (2.64 rules; 1 by default) members may share a host.
            Some(GroupPolicy::AntiAffinity) => {
                group_hosts.iter().filter(|g| **g == h.host.id).count() < max_per_host as usize
            }
            _ => true,
        })
        .collect();
    let free_ram = |h: &HostUsage| h.host.capacity().ram_mb.saturating_sub(h.used.ram_mb);
    let members_on = |h: &HostUsage| group_hosts.iter().filter(|g| **g == h.host.id).count();
    ok.sort_by(|a, b| {
        let soft = match policy {
            Some(GroupPolicy::SoftAffinity) => members_on(b).cmp(&members_on(a)),
            Some(GroupPolicy::SoftAntiAffinity) => members_on(a).cmp(&members_on(b)),
            _ => std::cmp::Ordering::Equal,
        };
        soft.then_with(|| free_ram(b).cmp(&free_ram(a)))
            .then_with(|| a.host.serial.cmp(&b.host.serial))
    });
    ok.into_iter().map(|h| h.host.clone()).collect()
}

const NO_VALID_HOST: &str = "No valid host was found. There are not enough hosts available.";

impl Control {
    /// Choose a host for a new server and claim its resources there.
    pub(crate) async fn schedule(&self, s: &Server, forced: Option<&str>) -> Result<Host> {
        let want = resources_of(&s.flavor);
        let (group, group_hosts) = match s.server_group {
            Some(g) => {
                let group = self.inner.store.server_group_get(g).await?;
                let mut hosts = Vec::new();
                if let Some(grp) = &group {
                    for m in &grp.members {
                        if *m == s.id {
                            continue;
                        }
                        if let Some((h, _)) = self.inner.store.allocation_get(*m).await? {
                            hosts.push(h);
                        }
                    }
                }
                (group, hosts)
            }
            None => (None, Vec::new()),
        };
        let policy = group.as_ref().map(|g| g.policy);
        // One decision at a time, from reading usage to the claim. The claim alone keeps
        // capacity exact (it re-checks in its transaction), but two builds that read the same
        // usage both pick the same "emptiest" host: servers created together would pile up
        // instead of spreading. Claims are serialized on the store's one writer anyway.
        let _deciding = self.inner.scheduling.lock().await;
        let usages = self.inner.store.host_usages().await?;
        let ranked = rank_hosts(
            &usages,
            want,
            s.availability_zone.as_deref(),
            forced,
            &group_hosts,
            policy,
            group
                .as_ref()
                .and_then(|g| g.max_server_per_host)
                .unwrap_or(1),
        );
        let constraint = group.as_ref().and_then(|g| match g.policy {
            GroupPolicy::Affinity => Some(GroupConstraint::Affinity(g.id)),
            GroupPolicy::AntiAffinity => Some(GroupConstraint::AntiAffinity {
                group: g.id,
                max_per_host: g.max_server_per_host.unwrap_or(1),
            }),
            _ => None,
        });
        for host in ranked {
            let claim = Claim {
                host_id: host.id,
                server_id: s.id,
                resources: want,
                group: constraint.clone(),
            };
            match self.inner.store.claim(claim).await? {
                ClaimOutcome::Claimed => return Ok(host),
                ClaimOutcome::NoCapacity | ClaimOutcome::GroupConflict => continue,
            }
        }
        Err(Error::NoValidHost(NO_VALID_HOST.into()))
    }

    /// (Re)claim a flavor's resources for a server on a given host (resize).
    pub(crate) async fn claim_on(
        &self,
        host: HostId,
        s: &Server,
        flavor: &FlavorSnapshot,
    ) -> Result<()> {
        let claim = Claim {
            host_id: host,
            server_id: s.id,
            resources: resources_of(flavor),
            group: None,
        };
        match self.inner.store.claim(claim).await? {
            ClaimOutcome::Claimed => Ok(()),
            _ => Err(Error::NoValidHost(NO_VALID_HOST.into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nimbus_model::time::now;

    fn host(name: &str, serial: i64, ram_mb: u64, used_ram: u64) -> HostUsage {
        HostUsage {
            host: Host {
                id: HostId::new(),
                serial,
                name: name.into(),
                address: "local".into(),
                hypervisor_type: "fake".into(),
                hypervisor_version: 1,
                vcpus: 8,
                ram_mb,
                disk_gb: 100,
                cpu_allocation_ratio: 1.0,
                ram_allocation_ratio: 1.0,
                disk_allocation_ratio: 1.0,
                availability_zone: "nova".into(),
                enabled: true,
                disabled_reason: None,
                up: true,
                forced_down: false,
                last_heartbeat: None,
                capabilities: serde_json::Value::Null,
                created_at: now(),
                updated_at: now(),
            },
            used: Resources {
                vcpus: 0,
                ram_mb: used_ram,
                disk_gb: 0,
            },
            servers: 0,
        }
    }

    fn names(v: Vec<Host>) -> Vec<String> {
        v.into_iter().map(|h| h.name).collect()
    }

    #[test]
    fn spread_by_free_ram() {
        let hosts = vec![
            host("a", 1, 4096, 3000),
            host("b", 2, 4096, 0),
            host("c", 3, 8192, 6000),
        ];
        let want = Resources {
            vcpus: 1,
            ram_mb: 512,
            disk_gb: 1,
        };
        assert_eq!(
            names(rank_hosts(&hosts, want, None, None, &[], None, 1)),
            ["b", "c", "a"]
        );
        // a lacks room for 2 GiB.
        let big = Resources {
            vcpus: 1,
            ram_mb: 2048,
            disk_gb: 1,
        };
        assert_eq!(
            names(rank_hosts(&hosts, big, None, None, &[], None, 1)),
            ["b", "c"]
        );
    }

    #[test]
    fn filters_table() {
        let mut hosts = vec![
            host("a", 1, 4096, 0),
            host("b", 2, 4096, 0),
            host("c", 3, 4096, 0),
        ];
        hosts[0].host.enabled = false;
        hosts[1].host.availability_zone = "edge".into();
        hosts[2].host.up = false;
        let want = Resources {
            vcpus: 1,
            ram_mb: 1,
            disk_gb: 0,
        };
        assert_eq!(
            names(rank_hosts(&hosts, want, None, None, &[], None, 1)),
            ["b"]
        );
        assert_eq!(
            names(rank_hosts(&hosts, want, Some("nova"), None, &[], None, 1)),
            Vec::<String>::new()
        );
        assert_eq!(
            names(rank_hosts(
                &hosts,
                want,
                Some("edge"),
                Some("b"),
                &[],
                None,
                1
            )),
            ["b"]
        );
        assert_eq!(
            names(rank_hosts(&hosts, want, None, Some("zzz"), &[], None, 1)),
            Vec::<String>::new()
        );
        // A forced-down host is skipped even if its record still says up.
        hosts[1].host.forced_down = true;
        assert_eq!(
            names(rank_hosts(&hosts, want, None, None, &[], None, 1)),
            Vec::<String>::new()
        );
    }

    #[test]
    fn group_policies() {
        let hosts = vec![
            host("a", 1, 4096, 0),
            host("b", 2, 4096, 1000),
            host("c", 3, 4096, 2000),
        ];
        let want = Resources {
            vcpus: 1,
            ram_mb: 1,
            disk_gb: 0,
        };
        let b = hosts[1].host.id;
        assert_eq!(
            names(rank_hosts(
                &hosts,
                want,
                None,
                None,
                &[b],
                Some(GroupPolicy::Affinity),
                1
            )),
            ["b"]
        );
        assert_eq!(
            names(rank_hosts(
                &hosts,
                want,
                None,
                None,
                &[b],
                Some(GroupPolicy::AntiAffinity),
                1
            )),
            ["a", "c"]
        );
        assert_eq!(
            names(rank_hosts(
                &hosts,
                want,
                None,
                None,
                &[b],
                Some(GroupPolicy::SoftAffinity),
                1
            )),
            ["b", "a", "c"]
        );
        assert_eq!(
            names(rank_hosts(
                &hosts,
                want,
                None,
                None,
                &[b],
                Some(GroupPolicy::SoftAntiAffinity),
                1
            )),
            ["a", "c", "b"]
        );
        assert_eq!(
            names(rank_hosts(
                &hosts,
                want,
                None,
                None,
                &[],
                Some(GroupPolicy::Affinity),
                1
            )),
            ["a", "b", "c"]
        );
        // max_server_per_host 2: b (one member) still takes another, not a third.
        assert_eq!(
            names(rank_hosts(
                &hosts,
                want,
                None,
                None,
                &[b],
                Some(GroupPolicy::AntiAffinity),
                2
            )),
            ["a", "b", "c"]
        );
        assert_eq!(
            names(rank_hosts(
                &hosts,
                want,
                None,
                None,
                &[b, b],
                Some(GroupPolicy::AntiAffinity),
                2
            )),
            ["a", "c"]
        );
    }

    #[test]
    fn disk_counts_ephemeral_and_swap() {
        let f = FlavorSnapshot {
            id: "x".into(),
            name: "x".into(),
            vcpus: 2,
            ram_mb: 512,
            disk_gb: 10,
            ephemeral_gb: 5,
            swap_mb: 1500,
            extra_specs: Default::default(),
        };
        assert_eq!(
            resources_of(&f),
            Resources {
                vcpus: 2,
                ram_mb: 512,
                disk_gb: 17
            }
        );
    }
}
