//! The SQLite backend: one file in WAL mode, one writer connection (so every write
//! transaction is serialized and `BEGIN IMMEDIATE` never waits on another writer in this
//! process) and a small pool of reader connections. All database work runs on tokio's
//! blocking pool.

mod flavors;
mod hosts;
mod identity;
mod images;
mod keypairs;
mod migrations;
mod networks;
mod operations;
mod quotas;
mod server_groups;
mod servers;
mod stats;
mod volumes;

use nimbus_model::time::Timestamp;
use nimbus_model::{Error, Result};
use rusqlite::{Connection, OpenFlags, OptionalExtension, Transaction};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

const READERS: usize = 4;

/// A SQLite-backed [`crate::Store`].
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    /// Bounds concurrent readers to the pool size.
    reader_permits: tokio::sync::Semaphore,
    /// One permit: writers queue here, asynchronously, before they take a blocking thread.
    /// Without it every pending write parks a blocking-pool thread on the writer mutex, and
    /// a burst of concurrent creates grows the pool to its 512-thread cap (and glibc to a
    /// malloc arena per busy thread), which shows up as controller RSS.
    writer_permits: tokio::sync::Semaphore,
    /// For in-memory databases readers share the writer (a second connection would see a
    /// different database).
    memory: bool,
}

pub(crate) fn db_err(e: rusqlite::Error) -> Error {
    Error::internal(format!("sqlite: {e}"))
}

pub(crate) fn json_err(e: serde_json::Error) -> Error {
    Error::internal(format!("stored document: {e}"))
}

/// Whether an error is a UNIQUE/PRIMARY KEY violation.
pub(crate) fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
    )
}

/// Timestamps are stored as fixed-width RFC 3339 text with microseconds, so text order is
/// time order.
pub(crate) fn ts(t: &Timestamp) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

pub(crate) fn ts_opt(t: &Option<Timestamp>) -> Option<String> {
    t.as_ref().map(ts)
}

pub(crate) fn to_doc<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(json_err)
}

pub(crate) fn from_doc<T: serde::de::DeserializeOwned>(s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(json_err)
}

/// `regexp(pattern, text)`: search semantics (like Python's `re.search`, which Nova uses).
/// The compiled pattern is cached per statement. Patterns are validated by `control` before
/// they get here; a bad one still only fails the query.
fn register_regexp(conn: &Connection) -> rusqlite::Result<()> {
    use rusqlite::functions::FunctionFlags;
    conn.create_scalar_function(
        "regexp",
        2,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| {
            let re: Arc<regex::Regex> = ctx.get_or_create_aux(0, |v| {
                let pattern = v
                    .as_str()
                    .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)?;
                regex::RegexBuilder::new(pattern)
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
            })?;
            let text = ctx
                .get_raw(1)
                .as_str_or_null()
                .map_err(|e| rusqlite::Error::UserFunctionError(Box::new(e)))?;
            Ok(text.is_some_and(|t| re.is_match(t)))
        },
    )
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    register_regexp(conn)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.set_prepared_statement_cache_capacity(128);
    Ok(())
}

impl SqliteStore {
    /// Open (creating if needed) the database file at `path` and bring its schema up to date.
    pub async fn open(path: &str) -> Result<Self> {
        let path = PathBuf::from(path);
        tokio::task::spawn_blocking(move || {
            if let Some(dir) = path.parent()
                && !dir.as_os_str().is_empty()
            {
                std::fs::create_dir_all(dir)
                    .map_err(|e| Error::internal(format!("create {}: {e}", dir.display())))?;
            }
            let mut writer = Connection::open(&path).map_err(db_err)?;
            let mode: String = writer
                .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
                .map_err(db_err)?;
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(Error::internal(format!(
                    "journal_mode is {mode}, wanted wal"
                )));
            }
            configure(&writer).map_err(db_err)?;
            migrations::migrate(&mut writer)?;
            let mut readers = Vec::with_capacity(READERS);
            for _ in 0..READERS {
                let r = Connection::open_with_flags(
                    &path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .map_err(db_err)?;
                configure(&r).map_err(db_err)?;
                readers.push(r);
            }
            Ok(Self::from_parts(writer, readers, false))
        })
        .await
        .map_err(|e| Error::internal(format!("open task: {e}")))?
    }

    /// A private in-memory database (tests, benchmarks).
    pub async fn memory() -> Result<Self> {
        let mut writer = Connection::open_in_memory().map_err(db_err)?;
        configure(&writer).map_err(db_err)?;
        migrations::migrate(&mut writer)?;
        Ok(Self::from_parts(writer, Vec::new(), true))
    }

    fn from_parts(writer: Connection, readers: Vec<Connection>, memory: bool) -> Self {
        let permits = readers.len().max(1);
        SqliteStore {
            inner: Arc::new(Inner {
                writer: Mutex::new(writer),
                readers: Mutex::new(readers),
                reader_permits: tokio::sync::Semaphore::new(permits),
                writer_permits: tokio::sync::Semaphore::new(1),
                memory,
            }),
        }
    }

    /// Run `f` in one IMMEDIATE transaction on the writer; commit if it returns `Ok`.
    pub(crate) async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        let permit = inner
            .writer_permits
            .acquire()
            .await
            .map_err(|e| Error::internal(format!("writer closed: {e}")))?;
        permit.forget();
        let guard = WriterPermitGuard(inner.clone());
        tokio::task::spawn_blocking(move || {
            let _guard = guard;
            let mut conn = inner.writer.lock().unwrap_or_else(|p| p.into_inner());
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(db_err)?;
            let out = f(&tx)?;
            tx.commit().map_err(db_err)?;
            Ok(out)
        })
        .await
        .map_err(|e| Error::internal(format!("store write task: {e}")))?
    }

    /// Run `f` on a reader connection.
    pub(crate) async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        if inner.memory {
            return tokio::task::spawn_blocking(move || {
                let conn = inner.writer.lock().unwrap_or_else(|p| p.into_inner());
                f(&conn)
            })
            .await
            .map_err(|e| Error::internal(format!("store read task: {e}")))?;
        }
        let permit = inner
            .reader_permits
            .acquire()
            .await
            .map_err(|e| Error::internal(format!("reader pool closed: {e}")))?;
        permit.forget();
        let guard = PermitGuard(inner.clone());
        tokio::task::spawn_blocking(move || {
            let _guard = guard;
            inner.on_reader(f)
        })
        .await
        .map_err(|e| Error::internal(format!("store read task: {e}")))?
    }

    /// Run `f` on a reader connection right here, on the calling (async) thread, when one is
    /// free at once; otherwise exactly like [`SqliteStore::read`].
    ///
    /// Only for queries bounded by an index lookup (a row by key, a handful of rows from a
    /// small table): they take microseconds, less than the two thread wake-ups a trip
    /// through the blocking pool costs, and in WAL mode a reader never waits for a lock.
    /// Scans and listings of unbounded size stay on [`SqliteStore::read`]: they would hold
    /// an async worker for milliseconds.
    pub(crate) async fn read_point<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        if self.inner.memory {
            // In-memory databases: the "reader" is the writer connection.
            if let Ok(conn) = self.inner.writer.try_lock() {
                return f(&conn);
            }
            return self.read(f).await;
        }
        let Ok(permit) = self.inner.reader_permits.try_acquire() else {
            return self.read(f).await;
        };
        permit.forget();
        let _guard = PermitGuard(self.inner.clone());
        self.inner.on_reader(f)
    }
}

impl Inner {
    /// Run `f` in one snapshot on a pooled reader connection (the caller holds a reader
    /// permit, so one is free), and put the connection back afterwards, also when `f` panics.
    fn on_reader<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        struct Back<'a>(&'a Inner, Option<Connection>);
        impl Drop for Back<'_> {
            fn drop(&mut self) {
                if let Some(c) = self.1.take() {
                    self.0
                        .readers
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(c);
                }
            }
        }
        let conn = self
            .readers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop()
            .ok_or_else(|| Error::internal("reader pool empty"))?;
        let back = Back(self, Some(conn));
        in_snapshot(back.1.as_ref().expect("connection present until drop"), f)
    }
}

/// Run a read closure inside one read transaction: all its queries (a server, then its NICs
/// and volumes) see one snapshot, and SQLite takes its WAL read lock once rather than per
/// statement (each lock is a few `fcntl` calls).
fn in_snapshot<T>(conn: &Connection, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    let tx = conn.unchecked_transaction().map_err(db_err)?;
    let out = f(&tx);
    // Nothing to commit: dropping the transaction rolls the (read-only) snapshot back.
    drop(tx);
    out
}

/// Returns a reader permit when the read finishes (even if its task panics).
struct PermitGuard(Arc<Inner>);

impl Drop for PermitGuard {
    fn drop(&mut self) {
        self.0.reader_permits.add_permits(1);
    }
}

/// Returns the writer permit when the write finishes (even if its task panics, and also if
/// the caller stopped waiting: the permit follows the blocking task, not the future).
struct WriterPermitGuard(Arc<Inner>);

impl Drop for WriterPermitGuard {
    fn drop(&mut self) {
        self.0.writer_permits.add_permits(1);
    }
}

/// Read one JSON document column.
pub(crate) fn query_doc<T: serde::de::DeserializeOwned>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Option<T>> {
    let doc: Option<String> = conn
        .prepare_cached(sql)
        .map_err(db_err)?
        .query_row(params, |r| r.get(0))
        .optional()
        .map_err(db_err)?;
    doc.map(|d| from_doc(&d)).transpose()
}

/// Documents whose key is one of `ids`, in chunks that stay under SQLite's parameter
/// limit. `sql` contains `{ids}` where the `IN (...)` list goes.
pub(crate) fn docs_in<T: serde::de::DeserializeOwned>(
    c: &Connection,
    sql: &str,
    ids: &[String],
) -> Result<Vec<T>> {
    let mut out = Vec::new();
    for chunk in ids.chunks(500) {
        let placeholders = (1..=chunk.len())
            .map(|i| format!("?{i}"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = sql.replace("{ids}", &placeholders);
        let mut stmt = c.prepare_cached(&sql).map_err(db_err)?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(chunk), |r| r.get::<_, String>(0))
            .map_err(db_err)?;
        for row in rows {
            out.push(from_doc(&row.map_err(db_err)?)?);
        }
    }
    Ok(out)
}

/// Read many JSON document columns.
pub(crate) fn query_docs<T: serde::de::DeserializeOwned>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<T>> {
    let mut stmt = conn.prepare_cached(sql).map_err(db_err)?;
    let rows = stmt
        .query_map(params, |r| r.get::<_, String>(0))
        .map_err(db_err)?;
    let mut out = Vec::new();
    for row in rows {
        out.push(from_doc(&row.map_err(db_err)?)?);
    }
    Ok(out)
}
