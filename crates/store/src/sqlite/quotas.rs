//! SQLite implementation of [`crate::QuotaStore`].

use super::{SqliteStore, db_err};
use crate::quotas::QuotaStore;
use async_trait::async_trait;
use nimbus_model::{ProjectId, Result};
use std::collections::BTreeMap;

#[async_trait]
impl QuotaStore for SqliteStore {
    async fn quota_overrides(&self, project: ProjectId) -> Result<BTreeMap<String, i64>> {
        self.read_point(move |c| {
            let mut stmt = c
                .prepare_cached("SELECT resource, hard_limit FROM quotas WHERE project_id = ?1")
                .map_err(db_err)?;
            let rows = stmt
                .query_map([project.as_str()], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
                })
                .map_err(db_err)?;
            rows.map(|r| r.map_err(db_err)).collect()
        })
        .await
    }

    async fn quota_set(&self, project: ProjectId, limits: BTreeMap<String, i64>) -> Result<()> {
        self.write(move |tx| {
            for (resource, limit) in limits {
                tx.execute(
                    "INSERT INTO quotas (project_id, resource, hard_limit) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (project_id, resource) DO UPDATE SET hard_limit = excluded.hard_limit",
                    rusqlite::params![project.as_str(), resource, limit],
                )
                .map_err(db_err)?;
            }
            Ok(())
        })
        .await
    }

    async fn quota_clear(&self, project: ProjectId) -> Result<()> {
        self.write(move |tx| {
            tx.execute(
                "DELETE FROM quotas WHERE project_id = ?1",
                [project.as_str()],
            )
            .map_err(db_err)?;
            Ok(())
        })
        .await
    }
}
