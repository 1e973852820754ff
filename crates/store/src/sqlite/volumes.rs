//! SQLite implementation of [`crate::VolumeStore`].

use super::{SqliteStore, db_err, is_unique_violation, query_doc, query_docs, to_doc};
use crate::volumes::VolumeStore;
use async_trait::async_trait;
use nimbus_model::time::now;
use nimbus_model::volume::{StoragePool, Volume, VolumeStatus, data_device};
use nimbus_model::{Error, PoolId, ProjectId, Result, ServerId, VolumeId};
use rusqlite::{Connection, Transaction};

fn pool_used(c: &Connection, pool: &str) -> Result<u64> {
    c.query_row(
        "SELECT COALESCE(SUM(size_gb), 0) FROM volumes WHERE pool_id = ?1 AND deleted = 0",
        [pool],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n as u64)
    .map_err(db_err)
}

fn with_pool_names(c: &Connection, mut vols: Vec<Volume>) -> Result<Vec<Volume>> {
    let mut stmt = c
        .prepare_cached("SELECT name FROM pools WHERE id = ?1")
        .map_err(db_err)?;
    for v in &mut vols {
        v.pool_name = stmt
            .query_row([v.pool_id.to_string()], |r| r.get(0))
            .unwrap_or_default();
    }
    Ok(vols)
}

/// Volumes attached to `servers`, ordered by device.
pub(super) fn volumes_for(c: &Connection, servers: &[ServerId]) -> Result<Vec<Volume>> {
    let ids: Vec<String> = servers.iter().map(|s| s.to_string()).collect();
    let mut out: Vec<Volume> = super::docs_in(
        c,
        "SELECT doc FROM volumes WHERE deleted = 0 AND attached_to IN ({ids}) ORDER BY serial",
        &ids,
    )?;
    out.sort_by(|a, b| a.device.cmp(&b.device));
    with_pool_names(c, out)
}

/// Attach each server's volumes.
pub(super) fn attach_volumes(
    c: &Connection,
    servers: &mut [nimbus_model::server::Server],
) -> Result<()> {
    if servers.is_empty() {
        return Ok(());
    }
    let ids: Vec<ServerId> = servers.iter().map(|s| s.id).collect();
    let mut by_server: std::collections::HashMap<ServerId, Vec<Volume>> =
        std::collections::HashMap::new();
    for v in volumes_for(c, &ids)? {
        if let Some(s) = v.attached_to {
            by_server.entry(s).or_default().push(v);
        }
    }
    for s in servers.iter_mut() {
        s.volumes = by_server.remove(&s.id).unwrap_or_default();
    }
    Ok(())
}

fn write_volume(tx: &Transaction<'_>, v: &Volume) -> Result<()> {
    tx.execute(
        "UPDATE volumes SET attached_to = ?1, doc = ?2 WHERE id = ?3",
        rusqlite::params![
            v.attached_to.map(|s| s.to_string()),
            to_doc(v)?,
            v.id.to_string()
        ],
    )
    .map_err(db_err)?;
    Ok(())
}

/// Attach volumes to a server inside a transaction, all or nothing (see
/// [`crate::VolumeStore::volumes_attach`]).
pub(super) fn attach_in(
    tx: &Transaction<'_>,
    server: ServerId,
    project: &ProjectId,
    ids: &[VolumeId],
) -> Result<Vec<Volume>> {
    let existing: i64 = tx
        .query_row(
            "SELECT COUNT(*) FROM volumes WHERE attached_to = ?1 AND deleted = 0",
            [server.to_string()],
            |r| r.get(0),
        )
        .map_err(db_err)?;
    let mut next = existing as usize;
    let mut out = Vec::new();
    for &id in ids {
        let mut v: Volume = query_doc(
            tx,
            "SELECT doc FROM volumes WHERE id = ?1 AND deleted = 0",
            [id.to_string()],
        )?
        .ok_or_else(|| Error::not_found(format!("Volume {id} could not be found.")))?;
        if &v.project_id != project {
            return Err(Error::not_found(format!("Volume {id} could not be found.")));
        }
        match v.attached_to {
            Some(s) if s == server => {
                out.push(v);
                continue;
            }
            Some(_) => {
                return Err(Error::InUse(format!(
                    "Volume {id} is attached to another server."
                )));
            }
            None => {}
        }
        if v.status != VolumeStatus::Available {
            return Err(Error::conflict(format!(
                "Volume {id} is {} and cannot be attached.",
                v.status.as_str()
            )));
        }
        v.attached_to = Some(server);
        v.status = VolumeStatus::InUse;
        v.device = Some(data_device(next));
        v.updated_at = now();
        next += 1;
        write_volume(tx, &v)?;
        out.push(v);
    }
    with_pool_names(tx, out)
}

#[async_trait]
impl VolumeStore for SqliteStore {
    async fn pool_create(&self, mut pool: StoragePool) -> Result<StoragePool> {
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO pools (id, name, doc) VALUES (?1, ?2, '{}')",
                [pool.id.to_string(), pool.name.clone()],
            )
            .map_err(|e| {
                if is_unique_violation(&e) {
                    Error::AlreadyExists(format!("Storage pool {} already exists.", pool.name))
                } else {
                    db_err(e)
                }
            })?;
            pool.serial = tx.last_insert_rowid();
            pool.used_gb = 0;
            tx.execute(
                "UPDATE pools SET doc = ?1 WHERE serial = ?2",
                rusqlite::params![to_doc(&pool)?, pool.serial],
            )
            .map_err(db_err)?;
            Ok(pool)
        })
        .await
    }

    async fn pools_list(&self) -> Result<Vec<StoragePool>> {
        self.read(|c| {
            let mut pools: Vec<StoragePool> =
                query_docs(c, "SELECT doc FROM pools ORDER BY serial", [])?;
            for p in &mut pools {
                p.used_gb = pool_used(c, &p.id.to_string())?;
            }
            Ok(pools)
        })
        .await
    }

    async fn pool_get(&self, id: PoolId) -> Result<Option<StoragePool>> {
        self.read_point(move |c| {
            let p: Option<StoragePool> =
                query_doc(c, "SELECT doc FROM pools WHERE id = ?1", [id.to_string()])?;
            p.map(|mut p| {
                p.used_gb = pool_used(c, &id.to_string())?;
                Ok(p)
            })
            .transpose()
        })
        .await
    }

    async fn volume_create(
        &self,
        mut v: Volume,
        max_volumes: i64,
        max_gigabytes: i64,
    ) -> Result<Volume> {
        self.write(move |tx| {
            let pool: StoragePool = query_doc(tx, "SELECT doc FROM pools WHERE id = ?1", [v.pool_id.to_string()])?
                .ok_or_else(|| Error::not_found(format!("Storage pool {} could not be found.", v.pool_id)))?;
            let used = pool_used(tx, &pool.id.to_string())?;
            if used + v.size_gb > pool.capacity_gb {
                return Err(Error::conflict(format!(
                    "Storage pool {} has {} GB free; {} GB requested.",
                    pool.name,
                    pool.capacity_gb.saturating_sub(used),
                    v.size_gb
                )));
            }
            let (count, gigs): (i64, i64) = tx
                .query_row(
                    "SELECT COUNT(*), COALESCE(SUM(size_gb), 0) FROM volumes WHERE project_id = ?1 AND deleted = 0",
                    [v.project_id.as_str()],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .map_err(db_err)?;
            if max_volumes >= 0 && count + 1 > max_volumes {
                return Err(Error::OverQuota(format!(
                    "Quota exceeded for volumes: Requested 1, but already used {count} of {max_volumes} volumes"
                )));
            }
            if max_gigabytes >= 0 && gigs + v.size_gb as i64 > max_gigabytes {
                return Err(Error::OverQuota(format!(
                    "Quota exceeded for gigabytes: Requested {}, but already used {gigs} of {max_gigabytes} gigabytes",
                    v.size_gb
                )));
            }
            tx.execute(
                "INSERT INTO volumes (id, pool_id, project_id, size_gb, attached_to, deleted, doc) VALUES (?1, ?2, ?3, ?4, NULL, 0, '{}')",
                rusqlite::params![v.id.to_string(), v.pool_id.to_string(), v.project_id.as_str(), v.size_gb as i64],
            )
            .map_err(db_err)?;
            v.serial = tx.last_insert_rowid();
            v.pool_name = pool.name;
            tx.execute("UPDATE volumes SET doc = ?1 WHERE serial = ?2", rusqlite::params![to_doc(&v)?, v.serial]).map_err(db_err)?;
            Ok(v)
        })
        .await
    }

    async fn volume_get(&self, id: VolumeId) -> Result<Option<Volume>> {
        self.read_point(move |c| {
            let v: Option<Volume> = query_doc(
                c,
                "SELECT doc FROM volumes WHERE id = ?1 AND deleted = 0",
                [id.to_string()],
            )?;
            Ok(with_pool_names(c, v.into_iter().collect())?.pop())
        })
        .await
    }

    async fn volumes_list(&self, project: Option<ProjectId>) -> Result<Vec<Volume>> {
        self.read(move |c| {
            let vols = match project {
                Some(p) => query_docs(
                    c,
                    "SELECT doc FROM volumes WHERE deleted = 0 AND project_id = ?1 ORDER BY serial",
                    [p.0],
                )?,
                None => query_docs(
                    c,
                    "SELECT doc FROM volumes WHERE deleted = 0 ORDER BY serial",
                    [],
                )?,
            };
            with_pool_names(c, vols)
        })
        .await
    }

    async fn volume_delete(&self, id: VolumeId) -> Result<()> {
        self.write(move |tx| {
            let v: Volume = query_doc(
                tx,
                "SELECT doc FROM volumes WHERE id = ?1 AND deleted = 0",
                [id.to_string()],
            )?
            .ok_or_else(|| Error::not_found(format!("Volume {id} could not be found.")))?;
            if v.attached_to.is_some() {
                return Err(Error::InUse(format!(
                    "Volume {id} is attached to a server."
                )));
            }
            tx.execute(
                "UPDATE volumes SET deleted = 1 WHERE id = ?1",
                [id.to_string()],
            )
            .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn volumes_attach(
        &self,
        server: ServerId,
        project: ProjectId,
        ids: Vec<VolumeId>,
    ) -> Result<Vec<Volume>> {
        self.write(move |tx| attach_in(tx, server, &project, &ids))
            .await
    }

    async fn volumes_detach_server(&self, server: ServerId) -> Result<u64> {
        self.write(move |tx| {
            let vols: Vec<Volume> = query_docs(
                tx,
                "SELECT doc FROM volumes WHERE attached_to = ?1 AND deleted = 0",
                [server.to_string()],
            )?;
            for mut v in vols.clone() {
                v.attached_to = None;
                v.device = None;
                v.status = VolumeStatus::Available;
                v.updated_at = now();
                write_volume(tx, &v)?;
            }
            Ok(vols.len() as u64)
        })
        .await
    }

    async fn volumes_for_servers(&self, servers: Vec<ServerId>) -> Result<Vec<Volume>> {
        self.read(move |c| volumes_for(c, &servers)).await
    }
}
