//! SQLite implementation of [`crate::ServerStore`].

use super::{SqliteStore, db_err, from_doc, query_doc, to_doc, ts, ts_opt};
use crate::servers::{ServerCreateOutcome, ServerStore};
use async_trait::async_trait;
use nimbus_model::operation::Operation;
use nimbus_model::quota::{ComputeUsage, QuotaSet, first_exceeded};
use nimbus_model::server::{RegexField, Server, ServerFilter, ServerPage, ServerSortKey, SortDir};
use nimbus_model::time::Timestamp;
use nimbus_model::{Error, ProjectId, Result, ServerId};
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, Transaction, params_from_iter};

fn sort_column(k: ServerSortKey) -> &'static str {
    match k {
        ServerSortKey::CreatedAt => "created_at",
        ServerSortKey::UpdatedAt => "updated_at",
        ServerSortKey::LaunchedAt => "launched_at",
        ServerSortKey::TerminatedAt => "terminated_at",
        ServerSortKey::Name | ServerSortKey::DisplayName => "name",
        ServerSortKey::Hostname => "hostname",
        ServerSortKey::Id => "serial",
        ServerSortKey::Uuid => "id",
        ServerSortKey::VmState => "vm_state",
        ServerSortKey::TaskState => "task_state",
        ServerSortKey::PowerState => "power_state",
        ServerSortKey::Progress => "progress",
        ServerSortKey::Host => "host",
        ServerSortKey::AvailabilityZone => "availability_zone",
        ServerSortKey::KeyName => "key_name",
        ServerSortKey::ProjectId => "project_id",
        ServerSortKey::UserId => "user_id",
        ServerSortKey::Locked => "locked",
    }
}

/// The column values of a server row, in `COLUMNS` order.
fn row_values(s: &Server) -> Result<Vec<Value>> {
    let text = |v: &str| Value::Text(v.to_owned());
    let opt = |v: Option<String>| v.map(Value::Text).unwrap_or(Value::Null);
    Ok(vec![
        text(&s.id.to_string()),
        text(s.project_id.as_str()),
        text(s.user_id.as_str()),
        text(&s.name),
        text(&s.hostname),
        text(s.vm_state.as_str()),
        opt(s.task_state.map(|t| t.as_str().to_owned())),
        Value::Integer(s.power_state.code() as i64),
        Value::Integer(s.progress as i64),
        opt(s.image_id.map(|i| i.to_string())),
        text(s.flavor.id.as_str()),
        Value::Integer(s.flavor.vcpus as i64),
        Value::Integer(s.flavor.ram_mb as i64),
        opt(s.host.clone()),
        opt(s.host_id.map(|h| h.to_string())),
        opt(s.availability_zone.clone()),
        opt(s.key_name.clone()),
        Value::Integer(s.locked as i64),
        text(&s.reservation_id),
        opt(s.server_group.map(|g| g.to_string())),
        text(&ts(&s.created_at)),
        text(&ts(&s.updated_at)),
        opt(ts_opt(&s.launched_at)),
        opt(ts_opt(&s.terminated_at)),
        opt(ts_opt(&s.deleted_at)),
        Value::Integer(s.deleted as i64),
        Value::Integer(s.generation),
        Value::Text(to_doc(s)?),
    ])
}

const COLUMNS: &str = "id, project_id, user_id, name, hostname, vm_state, task_state, \
    power_state, progress, image_id, flavor_id, vcpus, ram_mb, host, host_id, \
    availability_zone, key_name, locked, reservation_id, server_group, created_at, updated_at, \
    launched_at, terminated_at, deleted_at, deleted, generation, doc";

fn insert_server(tx: &Transaction<'_>, s: &mut Server) -> Result<()> {
    let values = row_values(s)?;
    let placeholders = (1..=values.len())
        .map(|i| format!("?{i}"))
        .collect::<Vec<_>>()
        .join(", ");
    tx.prepare_cached(&format!(
        "INSERT INTO servers ({COLUMNS}) VALUES ({placeholders})"
    ))
    .map_err(db_err)?
    .execute(params_from_iter(values))
    .map_err(|e| {
        if super::is_unique_violation(&e) {
            Error::AlreadyExists(format!("Server {} already exists.", s.id))
        } else {
            db_err(e)
        }
    })?;
    s.serial = tx.last_insert_rowid();
    // The serial is only known after the insert; store it in the document too.
    tx.prepare_cached("UPDATE servers SET doc = ?1 WHERE serial = ?2")
        .map_err(db_err)?
        .execute(rusqlite::params![to_doc(s)?, s.serial])
        .map_err(db_err)?;
    Ok(())
}

/// Guarded full-row update; returns the stored record or `None` if the generation moved.
pub(super) fn update_server(tx: &Transaction<'_>, mut s: Server) -> Result<Option<Server>> {
    let expected = s.generation;
    s.generation += 1;
    let values = row_values(&s)?;
    let sets = COLUMNS
        .split(", ")
        .enumerate()
        .map(|(i, c)| format!("{c} = ?{}", i + 1))
        .collect::<Vec<_>>()
        .join(", ");
    let n = values.len();
    let mut all = values;
    all.push(Value::Text(s.id.to_string()));
    all.push(Value::Integer(expected));
    let changed = tx
        .prepare_cached(&format!(
            "UPDATE servers SET {sets} WHERE id = ?{} AND generation = ?{}",
            n + 1,
            n + 2
        ))
        .map_err(db_err)?
        .execute(params_from_iter(all))
        .map_err(db_err)?;
    Ok((changed == 1).then_some(s))
}

pub(super) fn usage(conn: &Connection, project: &str) -> Result<ComputeUsage> {
    conn.prepare_cached(
        "SELECT COUNT(*), COALESCE(SUM(vcpus), 0), COALESCE(SUM(ram_mb), 0) FROM servers \
         WHERE project_id = ?1 AND deleted = 0",
    )
    .map_err(db_err)?
    .query_row([project], |r| {
        Ok(ComputeUsage {
            instances: r.get(0)?,
            cores: r.get(1)?,
            ram: r.get(2)?,
        })
    })
    .map_err(db_err)
}

/// WHERE clause and parameters for a filter.
fn where_clause(f: &ServerFilter) -> (String, Vec<Value>) {
    let mut conds: Vec<String> = Vec::new();
    let mut params: Vec<Value> = Vec::new();
    // Bind one value, returning its placeholder.
    let mut bind = |v: Value| {
        params.push(v);
        format!("?{}", params.len())
    };
    let t = |s: &str| Value::Text(s.to_owned());
    if let Some(p) = &f.project_id {
        conds.push(format!("project_id = {}", bind(t(p.as_str()))));
    }
    if let Some(u) = &f.user_id {
        conds.push(format!("user_id = {}", bind(t(u.as_str()))));
    }
    if f.only_deleted {
        conds.push("deleted = 1".into());
    } else if !f.include_deleted {
        conds.push("deleted = 0".into());
    }
    if let Some(vms) = &f.vm_states {
        let ps: Vec<String> = vms.iter().map(|v| bind(t(v.as_str()))).collect();
        conds.push(format!("vm_state IN ({})", ps.join(", ")));
    }
    if let Some(tasks) = &f.task_states {
        let ps: Vec<String> = tasks.iter().map(|v| bind(t(v.as_str()))).collect();
        conds.push(format!("task_state IN ({})", ps.join(", ")));
    }
    if let Some(i) = &f.image_id {
        conds.push(format!("image_id = {}", bind(t(&i.to_string()))));
    }
    if let Some(fl) = &f.flavor_id {
        conds.push(format!("flavor_id = {}", bind(t(fl.as_str()))));
    }
    if let Some(h) = &f.host {
        conds.push(format!("host = {}", bind(t(h))));
    }
    if let Some(c) = &f.changes_since {
        conds.push(format!("updated_at >= {}", bind(t(&ts(c)))));
    }
    if let Some(c) = &f.changes_before {
        conds.push(format!("updated_at <= {}", bind(t(&ts(c)))));
    }
    if let Some(ids) = &f.ids {
        if ids.is_empty() {
            conds.push("0 = 1".into());
        } else {
            let ps: Vec<String> = ids.iter().map(|i| bind(t(&i.to_string()))).collect();
            conds.push(format!("id IN ({})", ps.join(", ")));
        }
    }
    if let Some(r) = &f.reservation_id {
        conds.push(format!("reservation_id = {}", bind(t(r))));
    }
    if let Some(l) = f.locked {
        conds.push(format!("locked = {}", bind(Value::Integer(l as i64))));
    }
    if let Some(az) = &f.availability_zone {
        conds.push(format!("availability_zone = {}", bind(t(az))));
    }
    if let Some(k) = &f.key_name {
        conds.push(format!("key_name = {}", bind(t(k))));
    }
    if let Some(g) = &f.server_group {
        conds.push(format!("server_group = {}", bind(t(&g.to_string()))));
    }
    for (field, re) in &f.regex {
        // The text each field has in Nova's database: integers as digits, config_drive
        // as 'True' or '', times as `YYYY-MM-DD HH:MM:SS.ffffff`.
        let expr = match field {
            RegexField::PowerState => "CAST(power_state AS TEXT)",
            RegexField::Progress => "CAST(progress AS TEXT)",
            RegexField::ConfigDrive => {
                "CASE json_extract(doc, '$.config_drive') WHEN 1 THEN 'True' ELSE '' END"
            }
            RegexField::CreatedAt => "replace(replace(created_at, 'T', ' '), 'Z', '')",
            RegexField::LaunchedAt => "replace(replace(launched_at, 'T', ' '), 'Z', '')",
            RegexField::TerminatedAt => "replace(replace(terminated_at, 'T', ' '), 'Z', '')",
            RegexField::Hostname => "hostname",
            RegexField::Description => "json_extract(doc, '$.description')",
        };
        conds.push(format!("regexp({}, {expr})", bind(t(re))));
    }
    if let Some(re) = &f.name_regex {
        conds.push(format!("regexp({}, name)", bind(t(re))));
    }
    // `regexp` searches; Nova's `ip`/`ip6` filters match from the start (`re.match`).
    let mut ip_conds = Vec::new();
    if let Some(re) = &f.ip_regex {
        ip_conds.push(format!(
            "regexp({}, n.ipv4)",
            bind(t(&format!("^(?:{re})")))
        ));
    }
    if let Some(re) = &f.ip6_regex {
        ip_conds.push(format!(
            "regexp({}, json_extract(n.doc, '$.ipv6'))",
            bind(t(&format!("^(?:{re})")))
        ));
    }
    if !ip_conds.is_empty() {
        conds.push(format!(
            "EXISTS (SELECT 1 FROM nics n WHERE n.server_id = servers.id AND ({}))",
            ip_conds.join(" OR ")
        ));
    }
    let tag_in = |ps: Vec<String>| {
        format!(
            "EXISTS (SELECT 1 FROM json_each(servers.doc, '$.tags') WHERE value IN ({}))",
            ps.join(", ")
        )
    };
    for tag in &f.tags {
        conds.push(tag_in(vec![bind(t(tag))]));
    }
    if !f.tags_any.is_empty() {
        let ps = f.tags_any.iter().map(|x| bind(t(x))).collect();
        conds.push(tag_in(ps));
    }
    if !f.not_tags.is_empty() {
        let all: Vec<String> = f
            .not_tags
            .iter()
            .map(|x| tag_in(vec![bind(t(x))]))
            .collect();
        conds.push(format!("NOT ({})", all.join(" AND ")));
    }
    if !f.not_tags_any.is_empty() {
        let ps = f.not_tags_any.iter().map(|x| bind(t(x))).collect();
        conds.push(format!("NOT {}", tag_in(ps)));
    }
    let sql = if conds.is_empty() {
        "1 = 1".to_owned()
    } else {
        conds.join(" AND ")
    };
    (sql, params)
}

fn order_clause(page: &ServerPage) -> String {
    let mut keys: Vec<String> = page
        .sort
        .iter()
        .map(|(k, d)| {
            let dir = match d {
                SortDir::Asc => "ASC",
                SortDir::Desc => "DESC",
            };
            format!("{} {dir}", sort_column(*k))
        })
        .collect();
    // Always end with a unique key so the order (and thus the marker) is total.
    keys.push("serial DESC".into());
    keys.join(", ")
}

fn list(conn: &Connection, f: &ServerFilter, page: &ServerPage) -> Result<Vec<Server>> {
    let (cond, mut params) = where_clause(f);
    let order = order_clause(page);
    let limit = page.limit.map(|l| l as i64).unwrap_or(-1);
    let sql = if let Some(marker) = page.marker {
        params.push(Value::Text(marker.to_string()));
        let m = params.len();
        params.push(Value::Integer(limit));
        let l = params.len();
        let sql_marker = format!(
            "WITH ordered AS (SELECT id, doc, ROW_NUMBER() OVER (ORDER BY {order}) AS rn \
             FROM servers WHERE {cond}) \
             SELECT doc FROM ordered WHERE rn > (SELECT rn FROM ordered WHERE id = ?{m}) \
             ORDER BY rn LIMIT ?{l}"
        );
        // Check the marker separately so that "marker is the last row" (an empty page) is
        // told apart from "marker unknown".
        let exists_sql = format!("SELECT 1 FROM servers WHERE {cond} AND id = ?{m}");
        let found: Option<i64> = conn
            .prepare_cached(&exists_sql)
            .map_err(db_err)?
            .query_row(params_from_iter(params[..m].iter()), |r| r.get(0))
            .optional()
            .map_err(db_err)?;
        if found.is_none() {
            return Err(Error::invalid(format!("marker [{marker}] not found")));
        }
        sql_marker
    } else {
        params.push(Value::Integer(limit));
        format!(
            "SELECT doc FROM servers WHERE {cond} ORDER BY {order} LIMIT ?{}",
            params.len()
        )
    };
    let mut stmt = conn.prepare_cached(&sql).map_err(db_err)?;
    let rows = stmt
        .query_map(params_from_iter(params), |r| r.get::<_, String>(0))
        .map_err(db_err)?;
    let mut out = Vec::with_capacity(limit.clamp(0, 1000) as usize);
    for row in rows {
        out.push(from_doc(&row.map_err(db_err)?)?);
    }
    super::networks::attach_nics(conn, &mut out)?;
    super::volumes::attach_volumes(conn, &mut out)?;
    Ok(out)
}

fn get_one(c: &Connection, sql: &str, param: rusqlite::types::Value) -> Result<Option<Server>> {
    let mut found: Vec<Server> = query_doc(c, sql, [param])?.into_iter().collect();
    super::networks::attach_nics(c, &mut found)?;
    super::volumes::attach_volumes(c, &mut found)?;
    Ok(found.pop())
}

#[async_trait]
impl ServerStore for SqliteStore {
    async fn servers_create(
        &self,
        servers: Vec<Server>,
        operations: Vec<Operation>,
        quota: QuotaSet,
    ) -> Result<ServerCreateOutcome> {
        self.write(move |tx| {
            let Some(first) = servers.first() else {
                return Ok(ServerCreateOutcome::Created(Vec::new()));
            };
            let used = usage(tx, first.project_id.as_str())?;
            let want = ComputeUsage {
                instances: servers.len() as i64,
                cores: servers.iter().map(|s| s.flavor.vcpus as i64).sum(),
                ram: servers.iter().map(|s| s.flavor.ram_mb as i64).sum(),
            };
            if let Some((resource, limit, used, requested)) = first_exceeded(&quota, &used, &want) {
                return Ok(ServerCreateOutcome::OverQuota {
                    resource: resource.to_owned(),
                    limit,
                    used,
                    requested,
                });
            }
            let mut stored = Vec::with_capacity(servers.len());
            for mut s in servers {
                insert_server(tx, &mut s)?;
                // Requested data volumes are attached in the same transaction: two creates
                // naming one volume cannot both succeed.
                if !s.volumes.is_empty() {
                    let ids: Vec<nimbus_model::VolumeId> = s.volumes.iter().map(|v| v.id).collect();
                    s.volumes = super::volumes::attach_in(tx, s.id, &s.project_id, &ids)?;
                }
                stored.push(s);
            }
            for op in &operations {
                super::operations::insert_operation(tx, op)?;
            }
            Ok(ServerCreateOutcome::Created(stored))
        })
        .await
    }

    async fn server_get(&self, id: ServerId) -> Result<Option<Server>> {
        self.read_point(move |c| {
            get_one(
                c,
                "SELECT doc FROM servers WHERE id = ?1",
                Value::Text(id.to_string()),
            )
        })
        .await
    }

    async fn server_get_by_serial(&self, serial: i64) -> Result<Option<Server>> {
        self.read_point(move |c| {
            get_one(
                c,
                "SELECT doc FROM servers WHERE serial = ?1",
                Value::Integer(serial),
            )
        })
        .await
    }

    async fn servers_list(&self, filter: ServerFilter, page: ServerPage) -> Result<Vec<Server>> {
        self.read(move |c| list(c, &filter, &page)).await
    }

    async fn server_update(&self, server: Server) -> Result<Option<Server>> {
        self.write(move |tx| update_server(tx, server)).await
    }

    async fn server_update_with_operation(
        &self,
        server: Server,
        operation: Operation,
    ) -> Result<Option<Server>> {
        self.write(move |tx| {
            let Some(s) = update_server(tx, server)? else {
                return Ok(None);
            };
            super::operations::insert_operation(tx, &operation)?;
            Ok(Some(s))
        })
        .await
    }

    async fn compute_usage(&self, project_id: ProjectId) -> Result<ComputeUsage> {
        self.read(move |c| usage(c, project_id.as_str())).await
    }

    async fn servers_purge(&self, before: Timestamp) -> Result<u64> {
        self.write(move |tx| {
            let cutoff = ts(&before);
            tx.execute(
                "DELETE FROM operations WHERE server_id IN \
                 (SELECT id FROM servers WHERE deleted = 1 AND deleted_at < ?1)",
                [&cutoff],
            )
            .map_err(db_err)?;
            let n = tx
                .execute(
                    "DELETE FROM servers WHERE deleted = 1 AND deleted_at < ?1",
                    [&cutoff],
                )
                .map_err(db_err)?;
            Ok(n as u64)
        })
        .await
    }
}
