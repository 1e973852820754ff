//! SQLite implementation of [`crate::ServerGroupStore`].

use super::{SqliteStore, db_err, query_doc, query_docs, to_doc};
use crate::server_groups::ServerGroupStore;
use async_trait::async_trait;
use nimbus_model::server_group::ServerGroup;
use nimbus_model::{Error, ProjectId, Result, ServerGroupId, ServerId};
use rusqlite::Connection;

fn with_members(c: &Connection, mut g: ServerGroup) -> Result<ServerGroup> {
    let mut stmt = c
        .prepare_cached(
            "SELECT id FROM servers WHERE server_group = ?1 AND deleted = 0 ORDER BY serial",
        )
        .map_err(db_err)?;
    let ids: Vec<String> = stmt
        .query_map([g.id.to_string()], |r| r.get(0))
        .map_err(db_err)?
        .collect::<rusqlite::Result<_>>()
        .map_err(db_err)?;
    g.members = ids
        .into_iter()
        .map(|s| {
            s.parse::<ServerId>()
                .map_err(|e| Error::internal(format!("member id: {e}")))
        })
        .collect::<Result<_>>()?;
    Ok(g)
}

#[async_trait]
impl ServerGroupStore for SqliteStore {
    async fn server_group_create(&self, group: ServerGroup) -> Result<ServerGroup> {
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO server_groups (id, project_id, doc) VALUES (?1, ?2, ?3)",
                rusqlite::params![
                    group.id.to_string(),
                    group.project_id.as_str(),
                    to_doc(&group)?
                ],
            )
            .map_err(db_err)?;
            Ok(group)
        })
        .await
    }

    async fn server_group_get(&self, id: ServerGroupId) -> Result<Option<ServerGroup>> {
        self.read_point(move |c| {
            let g: Option<ServerGroup> = query_doc(
                c,
                "SELECT doc FROM server_groups WHERE id = ?1",
                [id.to_string()],
            )?;
            g.map(|g| with_members(c, g)).transpose()
        })
        .await
    }

    async fn server_groups_list(&self, project: Option<ProjectId>) -> Result<Vec<ServerGroup>> {
        self.read(move |c| {
            let groups: Vec<ServerGroup> = match project {
                Some(p) => query_docs(
                    c,
                    "SELECT doc FROM server_groups WHERE project_id = ?1 ORDER BY serial",
                    [p.0],
                )?,
                None => query_docs(c, "SELECT doc FROM server_groups ORDER BY serial", [])?,
            };
            groups.into_iter().map(|g| with_members(c, g)).collect()
        })
        .await
    }

    async fn server_group_delete(&self, id: ServerGroupId) -> Result<bool> {
        self.write(move |tx| {
            Ok(tx
                .execute("DELETE FROM server_groups WHERE id = ?1", [id.to_string()])
                .map_err(db_err)?
                == 1)
        })
        .await
    }
}
