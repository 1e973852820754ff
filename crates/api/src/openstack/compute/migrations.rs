//! `GET /os-migrations` (admin). Nimbus resizes in place and never migrates, so there are
//! no migration records: the list is always empty, but the query is validated as nova 34
//! does (strict from 2.59, with paging, `changes-since`; `changes-before` from 2.66;
//! `user_id`/`project_id` from 2.80), so a marker is always "not found".

use super::Api;
use super::fault::ComputeResult;
use crate::AppState;
use crate::common::time::parse_iso;
use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use nimbus_model::Error;
use serde_json::json;

pub fn routes() -> Router<AppState> {
    Router::new().route("/compute/v2.1/os-migrations", get(index))
}

async fn index(api: Api) -> ComputeResult {
    if !api.ctx.is_admin() {
        return Err(Error::Forbidden(
            "Policy doesn't allow os_compute_api:os-migrations:index to be performed.".into(),
        )
        .into());
    }
    if api.v.at_least(59) {
        let mut known = vec![
            "hidden",
            "host",
            "instance_uuid",
            "source_compute",
            "status",
            "migration_type",
            "limit",
            "marker",
            "changes-since",
        ];
        if api.v.at_least(66) {
            known.push("changes-before");
        }
        if api.v.at_least(80) {
            known.extend(["user_id", "project_id"]);
        }
        for (k, _) in &api.query {
            if !known.contains(&k.as_str()) {
                return Err(Error::invalid(format!(
                    "Invalid input for query parameters {k}. Additional properties are not allowed ('{k}' was unexpected)"
                ))
                .into());
            }
        }
        api.limit()?;
        let time = |key: &str| {
            api.param(key)
                .map(|v| {
                    parse_iso(v).ok_or_else(|| {
                        Error::invalid(format!(
                            "Invalid input for query parameters {key}. Value: {v}. '{v}' is not a 'date-time'"
                        ))
                    })
                })
                .transpose()
        };
        let since = time("changes-since")?;
        let before = if api.v.at_least(66) {
            time("changes-before")?
        } else {
            None
        };
        if let (Some(s), Some(b)) = (since, before)
            && b < s
        {
            return Err(Error::invalid(
                "The value of changes-since must be less than or equal to changes-before.",
            )
            .into());
        }
        if let Some(m) = api.param("marker") {
            return Err(Error::invalid(format!("Marker {m} could not be found.")).into());
        }
    }
    Ok(crate::common::json(
        StatusCode::OK,
        json!({"migrations": []}),
    ))
}
