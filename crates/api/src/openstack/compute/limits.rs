//! `GET /limits`: absolute limits with used counts, as nova 34's limits view builder builds
//! them: network-ish limits dropped from 2.36, `maxImageMeta` from 2.39, personality limits
//! from 2.57; `tenant_id` lets an admin look at another project. `rate` is always empty.

use super::Api;
use super::fault::ComputeResult;
use crate::AppState;
use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use nimbus_model::{Error, ProjectId};
use serde_json::{Map, Value, json};

pub fn routes() -> Router<AppState> {
    Router::new().route("/compute/v2.1/limits", get(index))
}

/// Quota resource → the absolute limit names it feeds (nova `limit_names`).
const LIMIT_NAMES: &[(&str, &[&str])] = &[
    ("ram", &["maxTotalRAMSize"]),
    ("instances", &["maxTotalInstances"]),
    ("cores", &["maxTotalCores"]),
    ("key_pairs", &["maxTotalKeypairs"]),
    ("floating_ips", &["maxTotalFloatingIps"]),
    ("metadata_items", &["maxServerMeta", "maxImageMeta"]),
    ("injected_files", &["maxPersonality"]),
    ("injected_file_content_bytes", &["maxPersonalitySize"]),
    ("security_groups", &["maxSecurityGroups"]),
    ("security_group_rules", &["maxSecurityGroupRules"]),
    ("server_groups", &["maxServerGroups"]),
    ("server_group_members", &["maxServerGroupMembers"]),
];

/// Used-count name → quota resource (nova `_build_used_limits`).
const USED_NAMES: &[(&str, &str)] = &[
    ("totalRAMUsed", "ram"),
    ("totalCoresUsed", "cores"),
    ("totalInstancesUsed", "instances"),
    ("totalFloatingIpsUsed", "floating_ips"),
    ("totalSecurityGroupsUsed", "security_groups"),
    ("totalServerGroupsUsed", "server_groups"),
];

/// Resources a microversion leaves out (nova `FILTERED_LIMITS_v236` / `_v257`).
fn filtered(api: &Api, resource: &str) -> bool {
    let network = ["floating_ips", "security_groups", "security_group_rules"];
    let personality = ["injected_files", "injected_file_content_bytes"];
    (api.v.at_least(36) && network.contains(&resource))
        || (api.v.at_least(57) && personality.contains(&resource))
}

async fn index(api: Api) -> ComputeResult {
    api.check_query(&["tenant_id"])?;
    // Nova checks the admin-only policy whenever `tenant_id` is given, even one's own.
    let project = match api.param("tenant_id") {
        Some(_) if !api.ctx.is_admin() => {
            return Err(Error::Forbidden(
                "Policy doesn't allow os_compute_api:limits:other_project to be performed.".into(),
            )
            .into());
        }
        Some(t) => ProjectId::from(t),
        None => api.ctx.project_id.clone(),
    };
    let quota = api.control().effective_quota(&project).await?;
    let usage = api
        .control()
        .quota_usage_for(&api.ctx, &project, None)
        .await?;
    let mut absolute = Map::new();
    for (resource, names) in LIMIT_NAMES {
        if filtered(&api, resource) {
            continue;
        }
        // The deprecated network quotas are unlimited (-1) unless an admin set them.
        let limit = quota.get(resource);
        for name in *names {
            if *name == "maxImageMeta" && api.v.at_least(39) {
                continue;
            }
            absolute.insert((*name).into(), json!(limit));
        }
    }
    for (name, resource) in USED_NAMES {
        if !filtered(&api, resource) {
            absolute.insert((*name).into(), json!(usage.get(resource)));
        }
    }
    Ok(crate::common::json(
        StatusCode::OK,
        json!({"limits": {"rate": [], "absolute": Value::Object(absolute)}}),
    ))
}
