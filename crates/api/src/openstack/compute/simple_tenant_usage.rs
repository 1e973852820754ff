//! `/os-simple-tenant-usage` (admin: every project) and `/{tenant_id}` (the project or an
//! admin): vCPU-, RAM- and disk-hours of the servers active in `[start, end]`, from the
//! servers' launch and termination times and flavor sizes (OpenStackClient's `usage list`
//! and `usage show`). Paging (`limit`/`marker` over servers) from 2.40.

use super::Api;
use super::fault::ComputeResult;
use crate::AppState;
use crate::common::time::perfect;
use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::get;
use chrono::NaiveDateTime;
use nimbus_control::usage::ServerUsage;
use nimbus_model::time::{Timestamp, now};
use nimbus_model::{Error, ProjectId};
use serde_json::{Map, Value, json};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/compute/v2.1/os-simple-tenant-usage", get(index))
        .route(
            "/compute/v2.1/os-simple-tenant-usage/{tenant_id}",
            get(show),
        )
}

/// Nova `_parse_datetime`: the three naive formats it tries (UTC), `now` when absent.
fn parse_time(v: Option<&str>) -> Result<Timestamp, Error> {
    let Some(s) = v.filter(|s| !s.is_empty()) else {
        return Ok(now());
    };
    // chrono's `%.f` also takes a missing fraction, so the strict no-fraction form is
    // tried on its own first.
    for fmt in [
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
            if fmt == "%Y-%m-%d %H:%M:%S%.f" && !s.contains('.') {
                continue;
            }
            return Ok(t.and_utc());
        }
    }
    Err(Error::invalid(
        "Invalid datetime string: Datetime is in invalid format",
    ))
}

/// The window from `start`/`end`, with `end` clipped to now as Nova does.
fn window(api: &Api) -> Result<(Timestamp, Timestamp), Error> {
    let start = parse_time(api.param("start"))?;
    let stop = parse_time(api.param("end"))?;
    if start >= stop {
        return Err(Error::invalid(
            "Invalid start time. The start time cannot occur after the end time.",
        ));
    }
    Ok((start, stop.min(now())))
}

fn server_view(u: &ServerUsage) -> Value {
    let s = &u.server;
    let started = s.launched_at.unwrap_or(s.created_at);
    let (state, uptime) = match s.terminated_at {
        Some(end) => ("terminated".to_owned(), end - started),
        None => (s.vm_state.as_str().to_owned(), now() - started),
    };
    json!({
        "hours": u.hours,
        "flavor": s.flavor.name,
        "instance_id": s.id,
        "name": s.name,
        "tenant_id": s.project_id,
        "memory_mb": s.flavor.ram_mb,
        "local_gb": s.flavor.disk_gb + s.flavor.ephemeral_gb,
        "vcpus": s.flavor.vcpus,
        "started_at": perfect(&started),
        "ended_at": s.terminated_at.as_ref().map(perfect),
        "state": state,
        "uptime": uptime.num_seconds().max(0),
    })
}

/// Per-project summaries in first-seen order (Nova's `_tenant_usages_for_period`).
fn summaries(
    usages: &[ServerUsage],
    start: Timestamp,
    stop: Timestamp,
    detailed: bool,
) -> Vec<Value> {
    let mut out: Vec<(ProjectId, Map<String, Value>)> = Vec::new();
    for u in usages {
        let s = &u.server;
        let idx = match out.iter().position(|(p, _)| *p == s.project_id) {
            Some(i) => i,
            None => {
                let mut m = Map::new();
                m.insert("tenant_id".into(), json!(s.project_id));
                if detailed {
                    m.insert("server_usages".into(), json!([]));
                }
                for k in [
                    "total_local_gb_usage",
                    "total_vcpus_usage",
                    "total_memory_mb_usage",
                    "total_hours",
                ] {
                    m.insert(k.into(), json!(0.0));
                }
                m.insert("start".into(), json!(perfect(&start)));
                m.insert("stop".into(), json!(perfect(&stop)));
                out.push((s.project_id.clone(), m));
                out.len() - 1
            }
        };
        let m = &mut out[idx].1;
        let add = |m: &mut Map<String, Value>, k: &str, v: f64| {
            let cur = m.get(k).and_then(Value::as_f64).unwrap_or(0.0);
            m.insert(k.into(), json!(cur + v));
        };
        let local_gb = (s.flavor.disk_gb + s.flavor.ephemeral_gb) as f64;
        add(m, "total_local_gb_usage", local_gb * u.hours);
        add(m, "total_vcpus_usage", s.flavor.vcpus as f64 * u.hours);
        add(m, "total_memory_mb_usage", s.flavor.ram_mb as f64 * u.hours);
        add(m, "total_hours", u.hours);
        if detailed && let Some(Value::Array(list)) = m.get_mut("server_usages") {
            list.push(server_view(u));
        }
    }
    out.into_iter().map(|(_, m)| Value::Object(m)).collect()
}

fn paging(api: &Api) -> Result<(Option<usize>, Option<&str>), Error> {
    if api.v.at_least(40) {
        Ok((api.limit()?, api.param("marker")))
    } else {
        Ok((None, None))
    }
}

async fn index(api: Api) -> ComputeResult {
    api.check_query(&["start", "end", "detailed", "limit", "marker"])?;
    if !api.ctx.is_admin() {
        return Err(Error::Forbidden(
            "Policy doesn't allow os_compute_api:os-simple-tenant-usage:list to be performed."
                .into(),
        )
        .into());
    }
    let (start, stop) = window(&api)?;
    let detailed = api.param("detailed") == Some("1");
    let (limit, marker) = paging(&api)?;
    let usages = api
        .control()
        .usage(&api.ctx, None, start, stop, limit, marker)
        .await?;
    let mut body = json!({"tenant_usages": summaries(&usages, start, stop, detailed)});
    if api.v.at_least(40) {
        let last = usages.last().map(|u| u.server.id.to_string());
        if let Some(l) =
            api.collection_links("os-simple-tenant-usage", usages.len(), last.as_deref())
        {
            body["tenant_usages_links"] = l;
        }
    }
    Ok(crate::common::json(StatusCode::OK, body))
}

async fn show(api: Api, Path(tenant_id): Path<String>) -> ComputeResult {
    api.check_query(&["start", "end", "limit", "marker"])?;
    let project = ProjectId::from(tenant_id.clone());
    if project != api.ctx.project_id && !api.ctx.is_admin() {
        return Err(Error::Forbidden(
            "Policy doesn't allow os_compute_api:os-simple-tenant-usage:show to be performed."
                .into(),
        )
        .into());
    }
    let (start, stop) = window(&api)?;
    let (limit, marker) = paging(&api)?;
    let usages = api
        .control()
        .usage(&api.ctx, Some(&project), start, stop, limit, marker)
        .await?;
    let usage = summaries(&usages, start, stop, true)
        .into_iter()
        .next()
        .unwrap_or_else(|| json!({}));
    let mut body = json!({"tenant_usage": usage});
    if api.v.at_least(40) {
        let last = usages.last().map(|u| u.server.id.to_string());
        let coll = format!("os-simple-tenant-usage/{tenant_id}");
        if let Some(l) = api.collection_links(&coll, usages.len(), last.as_deref()) {
            body["tenant_usage_links"] = l;
        }
    }
    Ok(crate::common::json(StatusCode::OK, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nova_time_formats() {
        assert!(parse_time(Some("2024-01-02T03:04:05")).is_ok());
        assert!(parse_time(Some("2024-01-02T03:04:05.123456")).is_ok());
        assert!(parse_time(Some("2024-01-02 03:04:05.5")).is_ok());
        assert!(parse_time(Some("2024-01-02 03:04:05")).is_err());
        assert!(parse_time(Some("2024-01-02T03:04:05Z")).is_err());
        assert!(parse_time(Some("yesterday")).is_err());
        assert!(parse_time(None).is_ok());
    }
}
