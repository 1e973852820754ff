//! `/os-availability-zone` (anyone: zone names and availability) and `/detail` (admin: the
//! hosts of each available zone with their services' liveness), as nova 34 shapes them.

use super::Api;
use super::fault::ComputeResult;
use crate::AppState;
use crate::common::time::perfect;
use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use nimbus_control::hosts::ZoneInfo;
use serde_json::{Map, Value, json};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/compute/v2.1/os-availability-zone", get(index))
        .route("/compute/v2.1/os-availability-zone/detail", get(detail))
}

fn zone_view(z: &ZoneInfo) -> Value {
    let hosts = match &z.hosts {
        None => Value::Null,
        Some(hosts) => {
            let mut hm = Map::new();
            for (host, services) in hosts {
                let mut sm = Map::new();
                for s in services {
                    sm.insert(
                        s.binary.into(),
                        json!({
                            "available": s.up,
                            "active": s.enabled,
                            "updated_at": perfect(&s.updated_at),
                        }),
                    );
                }
                hm.insert(host.clone(), Value::Object(sm));
            }
            Value::Object(hm)
        }
    };
    json!({"zoneName": z.name, "zoneState": {"available": z.available}, "hosts": hosts})
}

async fn list(api: &Api, detail: bool) -> ComputeResult {
    let zones = api
        .control()
        .availability_zone_info(&api.ctx, detail)
        .await?;
    Ok(crate::common::json(
        StatusCode::OK,
        json!({"availabilityZoneInfo": zones.iter().map(zone_view).collect::<Vec<_>>()}),
    ))
}

async fn index(api: Api) -> ComputeResult {
    list(&api, false).await
}

async fn detail(api: Api) -> ComputeResult {
    list(&api, true).await
}
