//! SQLite implementation of [`crate::OperationStore`].

use super::{SqliteStore, db_err, query_doc, query_docs, to_doc, ts, ts_opt};
use crate::operations::OperationStore;
use async_trait::async_trait;
use nimbus_model::operation::{Operation, OperationEvent};
use nimbus_model::{OperationId, Result, ServerId};
use rusqlite::{OptionalExtension, Transaction};

pub(super) fn insert_operation(tx: &Transaction<'_>, op: &Operation) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO operations (id, request_id, server_id, state, not_before, start_time, doc) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .map_err(db_err)?
    .execute(rusqlite::params![
        op.id.to_string(),
        op.request_id,
        op.server_id.to_string(),
        op.state.as_str(),
        ts_opt(&op.not_before),
        ts(&op.start_time),
        to_doc(op)?
    ])
    .map_err(db_err)?;
    Ok(())
}

#[async_trait]
impl OperationStore for SqliteStore {
    async fn operation_create(&self, op: Operation) -> Result<()> {
        self.write(move |tx| insert_operation(tx, &op)).await
    }

    async fn operation_get(&self, id: OperationId) -> Result<Option<Operation>> {
        self.read_point(move |c| {
            query_doc(
                c,
                "SELECT doc FROM operations WHERE id = ?1",
                [id.to_string()],
            )
        })
        .await
    }

    async fn operations_for_server(&self, server: ServerId) -> Result<Vec<Operation>> {
        self.read(move |c| {
            query_docs(
                c,
                "SELECT doc FROM operations WHERE server_id = ?1 ORDER BY serial DESC",
                [server.to_string()],
            )
        })
        .await
    }

    async fn operation_by_request(
        &self,
        server: ServerId,
        request_id: String,
    ) -> Result<Option<Operation>> {
        self.read(move |c| {
            query_doc(
                c,
                "SELECT doc FROM operations WHERE server_id = ?1 AND request_id = ?2 \
                 ORDER BY serial DESC LIMIT 1",
                [server.to_string(), request_id],
            )
        })
        .await
    }

    async fn operations_open(&self) -> Result<Vec<Operation>> {
        self.read(|c| {
            query_docs(
                c,
                "SELECT doc FROM operations WHERE state IN ('pending', 'running') ORDER BY serial",
                [],
            )
        })
        .await
    }

    async fn operation_claim(&self, id: OperationId) -> Result<bool> {
        self.write(move |tx| {
            let doc: Option<String> = tx
                .query_row(
                    "SELECT doc FROM operations WHERE id = ?1 AND state = 'pending'",
                    [id.to_string()],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db_err)?;
            let Some(doc) = doc else { return Ok(false) };
            let mut op: Operation = super::from_doc(&doc)?;
            op.state = nimbus_model::operation::OperationState::Running;
            tx.execute(
                "UPDATE operations SET state = 'running', doc = ?1 WHERE id = ?2",
                rusqlite::params![to_doc(&op)?, id.to_string()],
            )
            .map_err(db_err)?;
            Ok(true)
        })
        .await
    }

    async fn operation_update(&self, op: Operation) -> Result<()> {
        self.write(move |tx| {
            tx.prepare_cached(
                "UPDATE operations SET state = ?1, not_before = ?2, doc = ?3 WHERE id = ?4",
            )
            .map_err(db_err)?
            .execute(rusqlite::params![
                op.state.as_str(),
                ts_opt(&op.not_before),
                to_doc(&op)?,
                op.id.to_string()
            ])
            .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn event_start(&self, ev: OperationEvent) -> Result<()> {
        self.write(move |tx| {
            let open: Option<i64> = tx
                .query_row(
                    "SELECT serial FROM operation_events WHERE operation_id = ?1 AND event = ?2 \
                     AND json_extract(doc, '$.finish_time') IS NULL ORDER BY serial DESC LIMIT 1",
                    [ev.operation_id.to_string(), ev.event.clone()],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db_err)?;
            if open.is_none() {
                tx.execute(
                    "INSERT INTO operation_events (operation_id, event, doc) VALUES (?1, ?2, ?3)",
                    rusqlite::params![ev.operation_id.to_string(), ev.event, to_doc(&ev)?],
                )
                .map_err(db_err)?;
            }
            Ok(())
        })
        .await
    }

    async fn event_finish(&self, ev: OperationEvent) -> Result<()> {
        self.write(move |tx| {
            let open: Option<i64> = tx
                .query_row(
                    "SELECT serial FROM operation_events WHERE operation_id = ?1 AND event = ?2 \
                     AND json_extract(doc, '$.finish_time') IS NULL ORDER BY serial DESC LIMIT 1",
                    [ev.operation_id.to_string(), ev.event.clone()],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db_err)?;
            match open {
                Some(serial) => tx
                    .execute(
                        "UPDATE operation_events SET doc = ?1 WHERE serial = ?2",
                        rusqlite::params![to_doc(&ev)?, serial],
                    )
                    .map_err(db_err)?,
                None => tx
                    .execute(
                        "INSERT INTO operation_events (operation_id, event, doc) VALUES (?1, ?2, ?3)",
                        rusqlite::params![ev.operation_id.to_string(), ev.event, to_doc(&ev)?],
                    )
                    .map_err(db_err)?,
            };
            Ok(())
        })
        .await
    }

    async fn events_for(&self, op: OperationId) -> Result<Vec<OperationEvent>> {
        self.read(move |c| {
            query_docs(
                c,
                "SELECT doc FROM operation_events WHERE operation_id = ?1 ORDER BY serial",
                [op.to_string()],
            )
        })
        .await
    }
}
