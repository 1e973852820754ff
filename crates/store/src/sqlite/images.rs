//! SQLite implementation of [`crate::ImageStore`].

use super::{SqliteStore, db_err, is_unique_violation, query_doc, to_doc, ts};
use crate::images::ImageStore;
use async_trait::async_trait;
use nimbus_model::image::{Image, ImageFilter};
use nimbus_model::{Error, ImageId, ProjectId, Result};
use rusqlite::types::Value;
use rusqlite::{Transaction, params_from_iter};

fn columns(i: &Image) -> Result<Vec<Value>> {
    let opt = |v: Option<String>| v.map(Value::Text).unwrap_or(Value::Null);
    Ok(vec![
        Value::Text(i.id.to_string()),
        opt(i.name.clone()),
        Value::Text(i.status.as_str().to_owned()),
        Value::Text(i.visibility.as_str().to_owned()),
        opt(i.owner.as_ref().map(|o| o.0.clone())),
        opt(i.os_hash_value.clone()),
        Value::Text(ts(&i.created_at)),
        Value::Text(ts(&i.updated_at)),
        Value::Integer(i.deleted as i64),
        Value::Integer(i.generation),
        Value::Text(to_doc(i)?),
    ])
}

fn update(tx: &Transaction<'_>, mut image: Image) -> Result<Option<Image>> {
    let expected = image.generation;
    image.generation += 1;
    let mut vals = columns(&image)?;
    vals.push(Value::Integer(expected));
    let n = tx
        .prepare_cached(
            "UPDATE images SET id = ?1, name = ?2, status = ?3, visibility = ?4, owner = ?5, \
             os_hash = ?6, created_at = ?7, updated_at = ?8, deleted = ?9, generation = ?10, \
             doc = ?11 WHERE id = ?1 AND generation = ?12",
        )
        .map_err(db_err)?
        .execute(params_from_iter(vals))
        .map_err(db_err)?;
    Ok((n == 1).then_some(image))
}

#[async_trait]
impl ImageStore for SqliteStore {
    async fn image_create(&self, mut image: Image) -> Result<Image> {
        self.write(move |tx| {
            tx.prepare_cached(
                "INSERT INTO images (id, name, status, visibility, owner, os_hash, created_at, \
                 updated_at, deleted, generation, doc) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )
            .map_err(db_err)?
            .execute(params_from_iter(columns(&image)?))
            .map_err(|e| {
                if is_unique_violation(&e) {
                    Error::AlreadyExists(format!(
                        "Image with identifier {} already exists!",
                        image.id
                    ))
                } else {
                    db_err(e)
                }
            })?;
            image.serial = tx.last_insert_rowid();
            tx.execute(
                "UPDATE images SET doc = ?1 WHERE serial = ?2",
                rusqlite::params![to_doc(&image)?, image.serial],
            )
            .map_err(db_err)?;
            Ok(image)
        })
        .await
    }

    async fn image_get(&self, id: ImageId) -> Result<Option<Image>> {
        self.read_point(move |c| {
            query_doc(c, "SELECT doc FROM images WHERE id = ?1", [id.to_string()])
        })
        .await
    }

    async fn images_list(&self, f: ImageFilter, viewer: Option<ProjectId>) -> Result<Vec<Image>> {
        self.read(move |c| {
            let mut conds = vec!["deleted = 0".to_owned()];
            let mut params: Vec<Value> = Vec::new();
            let bind = |v: Value, params: &mut Vec<Value>| {
                params.push(v);
                format!("?{}", params.len())
            };
            if let Some(v) = &viewer {
                let p = bind(Value::Text(v.0.clone()), &mut params);
                conds.push(format!(
                    "(visibility IN ('public', 'community') OR owner = {p})"
                ));
            }
            if let Some(n) = &f.name {
                let p = bind(Value::Text(n.clone()), &mut params);
                conds.push(format!("name = {p}"));
            }
            if let Some(ids) = &f.ids {
                let ps: Vec<String> = ids
                    .iter()
                    .map(|i| bind(Value::Text(i.to_string()), &mut params))
                    .collect();
                conds.push(if ps.is_empty() {
                    "0 = 1".into()
                } else {
                    format!("id IN ({})", ps.join(", "))
                });
            }
            if let Some(s) = f.status {
                let p = bind(Value::Text(s.as_str().to_owned()), &mut params);
                conds.push(format!("status = {p}"));
            }
            if let Some(v) = f.visibility {
                let p = bind(Value::Text(v.as_str().to_owned()), &mut params);
                conds.push(format!("visibility = {p}"));
            }
            if let Some(o) = &f.owner {
                let p = bind(Value::Text(o.0.clone()), &mut params);
                conds.push(format!("owner = {p}"));
            }
            let sql = format!(
                "SELECT doc FROM images WHERE {} ORDER BY created_at DESC, serial DESC",
                conds.join(" AND ")
            );
            let mut stmt = c.prepare_cached(&sql).map_err(db_err)?;
            let rows = stmt
                .query_map(params_from_iter(params), |r| r.get::<_, String>(0))
                .map_err(db_err)?;
            let mut out: Vec<Image> = Vec::new();
            for row in rows {
                out.push(super::from_doc(&row.map_err(db_err)?)?);
            }
            // Filters on document fields.
            out.retain(|i| {
                f.tags.iter().all(|t| i.tags.contains(t))
                    && f.disk_format
                        .as_ref()
                        .is_none_or(|d| i.disk_format.as_ref() == Some(d))
                    && f.container_format
                        .as_ref()
                        .is_none_or(|d| i.container_format.as_ref() == Some(d))
                    && f.min_ram.is_none_or(|m| i.min_ram >= m)
                    && f.min_disk.is_none_or(|m| i.min_disk >= m)
                    && f.protected.is_none_or(|p| i.protected == p)
            });
            Ok(out)
        })
        .await
    }

    async fn image_update(&self, image: Image) -> Result<Option<Image>> {
        self.write(move |tx| update(tx, image)).await
    }

    async fn image_blob_refs(&self, hash: String) -> Result<u64> {
        self.read(move |c| {
            c.query_row(
                "SELECT COUNT(*) FROM images WHERE os_hash = ?1 AND deleted = 0",
                [hash],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
            .map_err(db_err)
        })
        .await
    }
}
