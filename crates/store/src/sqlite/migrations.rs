//! Versioned schema migrations. `schema_version` holds the number of applied scripts; each
//! script runs in its own transaction together with the version bump.

use super::db_err;
use nimbus_model::{Error, Result};
use rusqlite::Connection;

/// One migration script by name (its file under `migrations/sqlite/`).
macro_rules! migration {
    ($name:literal) => {
        (
            $name,
            include_str!(concat!("../../migrations/sqlite/", $name, ".sql")),
        )
    };
}

/// Applied in order; never edit a released script, append a new one.
const MIGRATIONS: &[(&str, &str)] = &[
    migration!("0001_init"),
    migration!("0002_networks"),
    migration!("0003_stats"),
    migration!("0004_volumes"),
    migration!("0005_server_order"),
    migration!("0006_nic_ordinals"),
];

pub(super) fn migrate(conn: &mut Connection) -> Result<()> {
    conn.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        .map_err(db_err)?;
    let current: i64 = conn
        .query_row(
            "SELECT COALESCE(MAX(version), 0) FROM schema_version",
            [],
            |r| r.get(0),
        )
        .map_err(db_err)?;
    if current as usize > MIGRATIONS.len() {
        return Err(Error::internal(format!(
            "database schema version {current} is newer than this binary ({})",
            MIGRATIONS.len()
        )));
    }
    for (i, (name, sql)) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let tx = conn.transaction().map_err(db_err)?;
        tx.execute_batch(sql)
            .map_err(|e| Error::internal(format!("migration {name}: {e}")))?;
        tx.execute(
            "INSERT INTO schema_version (version) VALUES (?1)",
            [i as i64 + 1],
        )
        .map_err(db_err)?;
        tx.commit().map_err(db_err)?;
        tracing::info!(migration = name, "applied schema migration");
    }
    Ok(())
}
