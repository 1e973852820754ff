//! `GET /instances/{uuid}/metrics?window=<seconds>`: the instance's resource use as time
//! series. The seed leaves this call "to be continued"; Nimbus defines it (docs/dialects/
//! vpe.md): one series per measure, each a list of `{"time", "value"}` points, derived from
//! the samples the core takes of every running server every `stats_period`
//! ([`nimbus_control::Control::server_metrics`]).

use super::fault::VpeResult;
use super::instances::instance_id;
use super::{Vpe, VpeState, vpe_time};
use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::get;
use nimbus_model::Error;
use nimbus_model::stats::Point;
use serde_json::{Value, json};
use std::time::Duration;

/// The window when `window` is not given: the last hour.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(3600);

pub fn routes() -> Router<VpeState> {
    Router::new().route("/instances/{uuid}/metrics", get(metrics))
}

/// One series: its key, its unit, and how to read it from a point.
type Series = (&'static str, &'static str, fn(&Point) -> f64);

const SERIES: &[Series] = &[
    ("cpu", "percent", |p| p.cpu_percent),
    ("memory", "percent", |p| p.mem_percent),
    ("memory_used", "MiB", |p| p.mem_used_mb as f64),
    ("disk_read", "bytes/s", |p| p.disk_read_bps),
    ("disk_write", "bytes/s", |p| p.disk_write_bps),
    ("network_rx", "bytes/s", |p| p.net_rx_bps),
    ("network_tx", "bytes/s", |p| p.net_tx_bps),
];

/// A number as JSON: whole numbers as integers, others rounded to two decimals.
fn num(x: f64) -> Value {
    let r = (x * 100.0).round() / 100.0;
    if r.fract() == 0.0 && r.abs() < 9.0e15 {
        json!(r as i64)
    } else {
        json!(r)
    }
}

/// Parse `window` (whole seconds, at least one sampling period, at most the retention).
fn window(v: &Vpe) -> Result<Duration, Error> {
    let Some(w) = v.param("window") else {
        return Ok(DEFAULT_WINDOW);
    };
    let cfg = v.control().config();
    let max = cfg.stats_retention.as_secs();
    match w.parse::<u64>() {
        Ok(s) if s >= 1 && s <= max => Ok(Duration::from_secs(s)),
        _ => Err(Error::invalid(format!(
            "Invalid query parameter window: '{w}'. It must be a whole number of seconds from 1 to {max}."
        ))),
    }
}

/// Render the metrics document of `points`.
pub fn document(uuid: &str, interval: Duration, window: Duration, points: &[Point]) -> Value {
    let mut m = serde_json::Map::new();
    m.insert("uuid".into(), json!(uuid));
    m.insert("interval".into(), num(interval.as_secs_f64()));
    m.insert("window".into(), json!(window.as_secs()));
    let mut units = serde_json::Map::new();
    for (key, unit, read) in SERIES {
        units.insert((*key).into(), json!(unit));
        m.insert(
            (*key).into(),
            json!(
                points
                    .iter()
                    .map(|p| json!({"time": vpe_time(&p.at), "value": num(read(p))}))
                    .collect::<Vec<_>>()
            ),
        );
    }
    m.insert("units".into(), Value::Object(units));
    json!({"metrics": m})
}

async fn metrics(v: Vpe, Path(id): Path<String>) -> VpeResult {
    let id = instance_id(&id)?;
    let window = window(&v)?;
    let points = v.control().server_metrics(&v.ctx, id, window).await?;
    let body = document(&id.to_string(), v.control().stats_period(), window, &points);
    Ok(crate::common::json(StatusCode::OK, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_shape() {
        let p = Point {
            at: chrono::DateTime::from_timestamp(1_479_810_152, 0).unwrap(),
            cpu_percent: 12.3456,
            mem_used_mb: 256,
            mem_percent: 25.0,
            disk_read_bps: 0.0,
            disk_write_bps: 1000.5,
            net_rx_bps: 100.0,
            net_tx_bps: 3.333,
        };
        let d = document("u", Duration::from_secs(10), DEFAULT_WINDOW, &[p]);
        let m = &d["metrics"];
        assert_eq!(m["uuid"], "u");
        assert_eq!(m["interval"], 10);
        assert_eq!(m["window"], 3600);
        assert_eq!(m["cpu"][0]["time"], "2016-11-22 10:22:32");
        assert_eq!(m["cpu"][0]["value"], 12.35);
        assert_eq!(m["memory"][0]["value"], 25);
        assert_eq!(m["memory_used"][0]["value"], 256);
        assert_eq!(m["disk_write"][0]["value"], 1000.5);
        assert_eq!(m["network_tx"][0]["value"], 3.33);
        assert_eq!(m["units"]["network_rx"], "bytes/s");
        assert_eq!(
            num(Duration::from_millis(100).as_secs_f64()),
            json!(0.1),
            "sub-second periods stay fractional"
        );
    }
}
