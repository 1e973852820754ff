//! SQLite implementation of [`crate::HostStore`].

use super::{SqliteStore, db_err, query_doc, query_docs, to_doc};
use crate::hosts::{Claim, ClaimOutcome, GroupConstraint, HostStore};
use async_trait::async_trait;
use nimbus_model::host::{Host, HostUsage, Resources};
use nimbus_model::{HostId, Result, ServerId};
use rusqlite::{Connection, OptionalExtension};

fn used_on(c: &Connection, host: &str, excluding: Option<&str>) -> Result<(Resources, u64)> {
    c.prepare_cached(
        "SELECT COALESCE(SUM(vcpus), 0), COALESCE(SUM(ram_mb), 0), COALESCE(SUM(disk_gb), 0), \
         COUNT(*) FROM allocations WHERE host_id = ?1 AND server_id IS NOT ?2",
    )
    .map_err(db_err)?
    .query_row(rusqlite::params![host, excluding], |r| {
        Ok((
            Resources {
                vcpus: r.get::<_, i64>(0)? as u64,
                ram_mb: r.get::<_, i64>(1)? as u64,
                disk_gb: r.get::<_, i64>(2)? as u64,
            },
            r.get::<_, i64>(3)? as u64,
        ))
    })
    .map_err(db_err)
}

#[async_trait]
impl HostStore for SqliteStore {
    async fn host_upsert(&self, mut host: Host) -> Result<Host> {
        self.write(move |tx| {
            let existing: Option<String> = tx
                .query_row("SELECT doc FROM hosts WHERE name = ?1", [&host.name], |r| {
                    r.get(0)
                })
                .optional()
                .map_err(db_err)?;
            if let Some(doc) = existing {
                let old: Host = super::from_doc(&doc)?;
                host.id = old.id;
                host.serial = old.serial;
                host.created_at = old.created_at;
                tx.execute(
                    "UPDATE hosts SET doc = ?1 WHERE id = ?2",
                    rusqlite::params![to_doc(&host)?, host.id.to_string()],
                )
                .map_err(db_err)?;
            } else {
                tx.execute(
                    "INSERT INTO hosts (id, name, doc) VALUES (?1, ?2, '{}')",
                    rusqlite::params![host.id.to_string(), host.name],
                )
                .map_err(db_err)?;
                host.serial = tx.last_insert_rowid();
                tx.execute(
                    "UPDATE hosts SET doc = ?1 WHERE serial = ?2",
                    rusqlite::params![to_doc(&host)?, host.serial],
                )
                .map_err(db_err)?;
            }
            Ok(host)
        })
        .await
    }

    async fn host_get(&self, id: HostId) -> Result<Option<Host>> {
        self.read_point(move |c| {
            query_doc(c, "SELECT doc FROM hosts WHERE id = ?1", [id.to_string()])
        })
        .await
    }

    async fn host_get_by_serial(&self, serial: i64) -> Result<Option<Host>> {
        self.read_point(move |c| query_doc(c, "SELECT doc FROM hosts WHERE serial = ?1", [serial]))
            .await
    }

    async fn hosts_list(&self) -> Result<Vec<Host>> {
        self.read_point(|c| query_docs(c, "SELECT doc FROM hosts ORDER BY serial", []))
            .await
    }

    async fn host_update(&self, host: Host) -> Result<bool> {
        self.write(move |tx| {
            let n = tx
                .execute(
                    "UPDATE hosts SET doc = ?1 WHERE id = ?2",
                    rusqlite::params![to_doc(&host)?, host.id.to_string()],
                )
                .map_err(db_err)?;
            Ok(n == 1)
        })
        .await
    }

    async fn host_delete(&self, id: HostId) -> Result<bool> {
        self.write(move |tx| {
            let n = tx
                .execute("DELETE FROM hosts WHERE id = ?1", [id.to_string()])
                .map_err(db_err)?;
            Ok(n == 1)
        })
        .await
    }

    async fn host_usages(&self) -> Result<Vec<HostUsage>> {
        self.read(|c| {
            let hosts: Vec<Host> = query_docs(c, "SELECT doc FROM hosts ORDER BY serial", [])?;
            hosts
                .into_iter()
                .map(|host| {
                    let (used, servers) = used_on(c, &host.id.to_string(), None)?;
                    Ok(HostUsage {
                        host,
                        used,
                        servers,
                    })
                })
                .collect()
        })
        .await
    }

    async fn claim(&self, claim: Claim) -> Result<ClaimOutcome> {
        self.write(move |tx| {
            let host_id = claim.host_id.to_string();
            let server_id = claim.server_id.to_string();
            let host: Option<Host> =
                query_doc(tx, "SELECT doc FROM hosts WHERE id = ?1", [&host_id])?;
            let Some(host) = host else {
                return Ok(ClaimOutcome::NoCapacity);
            };
            if !host.enabled || !host.up {
                return Ok(ClaimOutcome::NoCapacity);
            }
            let (used, _) = used_on(tx, &host_id, Some(&server_id))?;
            if !host.fits(used, claim.resources) {
                return Ok(ClaimOutcome::NoCapacity);
            }
            if let Some(rule) = &claim.group {
                // Hosts of the group's other live, placed members.
                let group = match rule {
                    GroupConstraint::Affinity(g) => g,
                    GroupConstraint::AntiAffinity { group, .. } => group,
                };
                let mut stmt = tx
                    .prepare_cached(
                        "SELECT a.host_id FROM servers s JOIN allocations a ON a.server_id = s.id \
                         WHERE s.server_group = ?1 AND s.deleted = 0 AND s.id != ?2",
                    )
                    .map_err(db_err)?;
                let member_hosts: Vec<String> = stmt
                    .query_map([group.to_string(), server_id.clone()], |r| r.get(0))
                    .map_err(db_err)?
                    .collect::<rusqlite::Result<_>>()
                    .map_err(db_err)?;
                let ok = match rule {
                    GroupConstraint::Affinity(_) => member_hosts.iter().all(|h| *h == host_id),
                    GroupConstraint::AntiAffinity { max_per_host, .. } => {
                        (member_hosts.iter().filter(|h| **h == host_id).count() as u32)
                            < *max_per_host
                    }
                };
                if !ok {
                    return Ok(ClaimOutcome::GroupConflict);
                }
            }
            tx.prepare_cached(
                "INSERT INTO allocations (server_id, host_id, vcpus, ram_mb, disk_gb) \
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (server_id) DO UPDATE SET \
                 host_id = excluded.host_id, vcpus = excluded.vcpus, ram_mb = excluded.ram_mb, \
                 disk_gb = excluded.disk_gb",
            )
            .map_err(db_err)?
            .execute(rusqlite::params![
                server_id,
                host_id,
                claim.resources.vcpus as i64,
                claim.resources.ram_mb as i64,
                claim.resources.disk_gb as i64
            ])
            .map_err(db_err)?;
            Ok(ClaimOutcome::Claimed)
        })
        .await
    }

    async fn release(&self, server: ServerId) -> Result<()> {
        self.write(move |tx| {
            tx.execute(
                "DELETE FROM allocations WHERE server_id = ?1",
                [server.to_string()],
            )
            .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn allocation_get(&self, server: ServerId) -> Result<Option<(HostId, Resources)>> {
        self.read_point(move |c| {
            c.query_row(
                "SELECT host_id, vcpus, ram_mb, disk_gb FROM allocations WHERE server_id = ?1",
                [server.to_string()],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        Resources {
                            vcpus: r.get::<_, i64>(1)? as u64,
                            ram_mb: r.get::<_, i64>(2)? as u64,
                            disk_gb: r.get::<_, i64>(3)? as u64,
                        },
                    ))
                },
            )
            .optional()
            .map_err(db_err)?
            .map(|(h, r)| {
                h.parse::<HostId>()
                    .map(|h| (h, r))
                    .map_err(|e| nimbus_model::Error::internal(format!("allocation host id: {e}")))
            })
            .transpose()
        })
        .await
    }
}
