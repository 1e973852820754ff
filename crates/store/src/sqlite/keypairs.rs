//! SQLite implementation of [`crate::KeypairStore`].

use super::{SqliteStore, db_err, is_unique_violation, query_doc, query_docs, to_doc};
use crate::keypairs::KeypairStore;
use async_trait::async_trait;
use nimbus_model::keypair::KeyPair;
use nimbus_model::{Error, Result, UserId};

#[async_trait]
impl KeypairStore for SqliteStore {
    async fn keypair_create(&self, mut k: KeyPair) -> Result<KeyPair> {
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO keypairs (user_id, name, doc) VALUES (?1, ?2, '{}')",
                [k.user_id.as_str(), &k.name],
            )
            .map_err(|e| {
                if is_unique_violation(&e) {
                    Error::AlreadyExists(format!("Key pair '{}' already exists.", k.name))
                } else {
                    db_err(e)
                }
            })?;
            k.serial = tx.last_insert_rowid();
            tx.execute(
                "UPDATE keypairs SET doc = ?1 WHERE serial = ?2",
                rusqlite::params![to_doc(&k)?, k.serial],
            )
            .map_err(db_err)?;
            Ok(k)
        })
        .await
    }

    async fn keypair_get(&self, user: UserId, name: String) -> Result<Option<KeyPair>> {
        self.read_point(move |c| {
            query_doc(
                c,
                "SELECT doc FROM keypairs WHERE user_id = ?1 AND name = ?2",
                [user.0, name],
            )
        })
        .await
    }

    async fn keypairs_list(&self, user: UserId) -> Result<Vec<KeyPair>> {
        self.read(move |c| {
            query_docs(
                c,
                "SELECT doc FROM keypairs WHERE user_id = ?1 ORDER BY name",
                [user.0],
            )
        })
        .await
    }

    async fn keypair_delete(&self, user: UserId, name: String) -> Result<bool> {
        self.write(move |tx| {
            let n = tx
                .execute(
                    "DELETE FROM keypairs WHERE user_id = ?1 AND name = ?2",
                    [user.0, name],
                )
                .map_err(db_err)?;
            Ok(n == 1)
        })
        .await
    }
}
