//! SQLite implementation of [`crate::StatsStore`].

use super::{SqliteStore, db_err, query_docs, to_doc, ts};
use crate::stats::StatsStore;
use async_trait::async_trait;
use nimbus_model::stats::Sample;
use nimbus_model::time::Timestamp;
use nimbus_model::{Result, ServerId};

#[async_trait]
impl StatsStore for SqliteStore {
    async fn samples_insert(&self, samples: Vec<Sample>) -> Result<()> {
        if samples.is_empty() {
            return Ok(());
        }
        self.write(move |tx| {
            let mut stmt = tx
                .prepare_cached("INSERT INTO samples (server_id, at, doc) VALUES (?1, ?2, ?3)")
                .map_err(db_err)?;
            for s in &samples {
                stmt.execute(rusqlite::params![
                    s.server_id.to_string(),
                    ts(&s.at),
                    to_doc(s)?
                ])
                .map_err(db_err)?;
            }
            Ok(())
        })
        .await
    }

    async fn samples_for(&self, server: ServerId, since: Timestamp) -> Result<Vec<Sample>> {
        self.read(move |c| {
            query_docs(
                c,
                "SELECT doc FROM samples WHERE server_id = ?1 AND at >= ?2 ORDER BY at",
                [server.to_string(), ts(&since)],
            )
        })
        .await
    }

    async fn samples_purge(&self, before: Timestamp) -> Result<u64> {
        self.write(move |tx| {
            Ok(tx
                .execute("DELETE FROM samples WHERE at < ?1", [ts(&before)])
                .map_err(db_err)? as u64)
        })
        .await
    }
}
