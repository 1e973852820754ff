//! SQLite implementation of [`crate::FlavorStore`].

use super::{SqliteStore, db_err, is_unique_violation, query_doc, query_docs, to_doc};
use crate::flavors::FlavorStore;
use async_trait::async_trait;
use nimbus_model::flavor::Flavor;
use nimbus_model::{Error, FlavorId, ProjectId, Result};

#[async_trait]
impl FlavorStore for SqliteStore {
    async fn flavor_create(&self, mut flavor: Flavor) -> Result<Flavor> {
        self.write(move |tx| {
            let taken: Option<(String, String)> = tx
                .query_row(
                    "SELECT id, name FROM flavors WHERE id = ?1 OR name = ?2",
                    [flavor.id.as_str(), &flavor.name],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .ok();
            if let Some((id, _)) = taken {
                return Err(Error::AlreadyExists(if id == flavor.id.as_str() {
                    format!("Flavor with ID {} already exists.", flavor.id)
                } else {
                    format!("Flavor with name {} already exists.", flavor.name)
                }));
            }
            tx.execute(
                "INSERT INTO flavors (id, name, is_public, disabled, vcpus, ram_mb, disk_gb, doc) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, '{}')",
                rusqlite::params![
                    flavor.id.as_str(),
                    flavor.name,
                    flavor.is_public,
                    flavor.disabled,
                    flavor.vcpus,
                    flavor.ram_mb as i64,
                    flavor.disk_gb as i64
                ],
            )
            .map_err(|e| {
                if is_unique_violation(&e) {
                    Error::AlreadyExists(format!("Flavor with ID {} already exists.", flavor.id))
                } else {
                    db_err(e)
                }
            })?;
            flavor.serial = tx.last_insert_rowid();
            tx.execute(
                "UPDATE flavors SET doc = ?1 WHERE serial = ?2",
                rusqlite::params![to_doc(&flavor)?, flavor.serial],
            )
            .map_err(db_err)?;
            Ok(flavor)
        })
        .await
    }

    async fn flavor_get(&self, id: FlavorId) -> Result<Option<Flavor>> {
        self.read_point(move |c| query_doc(c, "SELECT doc FROM flavors WHERE id = ?1", [id.0]))
            .await
    }

    async fn flavor_get_by_serial(&self, serial: i64) -> Result<Option<Flavor>> {
        self.read_point(move |c| {
            query_doc(c, "SELECT doc FROM flavors WHERE serial = ?1", [serial])
        })
        .await
    }

    async fn flavors_list(&self) -> Result<Vec<Flavor>> {
        self.read_point(|c| query_docs(c, "SELECT doc FROM flavors ORDER BY id ASC", []))
            .await
    }

    async fn flavor_update(&self, flavor: Flavor) -> Result<bool> {
        self.write(move |tx| {
            let n = tx
                .execute(
                    "UPDATE flavors SET name = ?1, is_public = ?2, disabled = ?3, doc = ?4 \
                     WHERE id = ?5",
                    rusqlite::params![
                        flavor.name,
                        flavor.is_public,
                        flavor.disabled,
                        to_doc(&flavor)?,
                        flavor.id.as_str()
                    ],
                )
                .map_err(db_err)?;
            Ok(n == 1)
        })
        .await
    }

    async fn flavor_delete(&self, id: FlavorId) -> Result<bool> {
        self.write(move |tx| {
            tx.execute(
                "DELETE FROM flavor_access WHERE flavor_id = ?1",
                [id.as_str()],
            )
            .map_err(db_err)?;
            let n = tx
                .execute("DELETE FROM flavors WHERE id = ?1", [id.as_str()])
                .map_err(db_err)?;
            Ok(n == 1)
        })
        .await
    }

    async fn flavor_access_list(&self, id: FlavorId) -> Result<Vec<ProjectId>> {
        self.read_point(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT project_id FROM flavor_access WHERE flavor_id = ?1 ORDER BY project_id",
                )
                .map_err(db_err)?;
            let rows = stmt
                .query_map([id.as_str()], |r| r.get::<_, String>(0))
                .map_err(db_err)?;
            rows.map(|r| r.map(ProjectId).map_err(db_err)).collect()
        })
        .await
    }

    async fn flavor_access_add(&self, id: FlavorId, project: ProjectId) -> Result<()> {
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO flavor_access (flavor_id, project_id) VALUES (?1, ?2)",
                [id.as_str(), project.as_str()],
            )
            .map_err(|e| {
                if is_unique_violation(&e) {
                    Error::AlreadyExists(format!(
                        "Flavor access already exists for flavor {id} and project {project} combination."
                    ))
                } else {
                    db_err(e)
                }
            })?;
            Ok(())
        })
        .await
    }

    async fn flavor_access_remove(&self, id: FlavorId, project: ProjectId) -> Result<bool> {
        self.write(move |tx| {
            let n = tx
                .execute(
                    "DELETE FROM flavor_access WHERE flavor_id = ?1 AND project_id = ?2",
                    [id.as_str(), project.as_str()],
                )
                .map_err(db_err)?;
            Ok(n == 1)
        })
        .await
    }
}
