//! `/os-hypervisors` (admin): one hypervisor per compute host. Integer ids (the host serial)
//! before 2.53, the host's UUID from 2.53; paging from 2.33; `hypervisor_hostname_pattern`
//! and `with_servers` from 2.53 (replacing `/{pattern}/search` and `/{pattern}/servers`);
//! `cpu_info` as a JSON string before 2.28 and an object after; the usage fields and
//! `/statistics` and `/{id}/uptime` gone at 2.88, where `uptime` joins the detail view.

use super::Api;
use super::fault::ComputeResult;
use super::quota_sets::nova_bool;
use crate::AppState;
use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::get;
use nimbus_model::Error;
use nimbus_model::host::HostUsage;
use nimbus_model::server::Server;
use nimbus_model::state::VmState;
use serde_json::{Map, Value, json};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/compute/v2.1/os-hypervisors", get(index))
        .route("/compute/v2.1/os-hypervisors/detail", get(detail))
        .route("/compute/v2.1/os-hypervisors/statistics", get(statistics))
        .route("/compute/v2.1/os-hypervisors/{id}", get(show))
        .route("/compute/v2.1/os-hypervisors/{id}/uptime", get(uptime))
        .route("/compute/v2.1/os-hypervisors/{id}/search", get(search))
        .route("/compute/v2.1/os-hypervisors/{id}/servers", get(servers))
}

/// A route this microversion does not have (Nova: version not found → 404).
fn gone() -> Error {
    Error::not_found("The resource could not be found.")
}

fn not_found(id: &str) -> Error {
    Error::not_found(format!("Hypervisor with ID '{id}' could not be found."))
}

fn hyp_id(api: &Api, h: &HostUsage) -> Value {
    if api.v.at_least(53) {
        json!(h.host.id)
    } else {
        json!(h.host.serial)
    }
}

/// The id as it appears in a marker or a link.
fn id_str(api: &Api, h: &HostUsage) -> String {
    if api.v.at_least(53) {
        h.host.id.to_string()
    } else {
        h.host.serial.to_string()
    }
}

/// The host's IP as the controller reaches it (Nova `host_ip`), or null for a DNS name.
fn host_ip(address: &str) -> Value {
    if address == "local" {
        return json!("127.0.0.1");
    }
    let rest = address.split_once("://").map_or(address, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or(rest);
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or(v6)
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    };
    // Only an address literal is an IP; a DNS name is not resolved here.
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => json!(ip.to_string()),
        Err(_) => Value::Null,
    }
}

/// Servers doing something (building, resizing, rebuilding...): Nova's `current_workload`.
fn workload(servers: &[Server]) -> usize {
    servers
        .iter()
        .filter(|s| s.task_state.is_some() || s.vm_state == VmState::Building)
        .count()
}

/// Nova's `_view_hypervisor`. `servers`: `Some` when they were asked for; the list is shown
/// when non-empty, or always from 2.75.
fn view(
    api: &Api,
    h: &HostUsage,
    detail: bool,
    servers: Option<&[Server]>,
    on_host: Option<&[Server]>,
) -> Value {
    let svc = api.control().compute_service(&h.host);
    let mut m = Map::new();
    m.insert("id".into(), hyp_id(api, h));
    m.insert("hypervisor_hostname".into(), json!(h.host.name));
    m.insert("state".into(), json!(if svc.up { "up" } else { "down" }));
    m.insert(
        "status".into(),
        json!(if svc.enabled { "enabled" } else { "disabled" }),
    );
    if detail {
        m.insert("hypervisor_type".into(), json!(h.host.hypervisor_type));
        m.insert(
            "hypervisor_version".into(),
            json!(h.host.hypervisor_version),
        );
        m.insert("host_ip".into(), host_ip(&h.host.address));
        let service_id = if api.v.at_least(53) {
            json!(svc.uuid)
        } else {
            json!(svc.id)
        };
        m.insert(
            "service".into(),
            json!({"id": service_id, "host": h.host.name, "disabled_reason": h.host.disabled_reason}),
        );
        if !api.v.at_least(88) {
            let (vcpus, ram, disk) = (
                h.host.vcpus as i64,
                h.host.ram_mb as i64,
                h.host.disk_gb as i64,
            );
            let (vu, ru, du) = (
                h.used.vcpus as i64,
                h.used.ram_mb as i64,
                h.used.disk_gb as i64,
            );
            m.insert("vcpus".into(), json!(vcpus));
            m.insert("memory_mb".into(), json!(ram));
            m.insert("local_gb".into(), json!(disk));
            m.insert("vcpus_used".into(), json!(vu));
            m.insert("memory_mb_used".into(), json!(ru));
            m.insert("local_gb_used".into(), json!(du));
            m.insert("free_ram_mb".into(), json!(ram - ru));
            m.insert("free_disk_gb".into(), json!(disk - du));
            m.insert(
                "current_workload".into(),
                json!(on_host.map(workload).unwrap_or(0)),
            );
            m.insert("running_vms".into(), json!(h.servers));
            m.insert("disk_available_least".into(), json!(disk - du));
            let cpu_info = h
                .host
                .capabilities
                .get("cpu_info")
                .filter(|v| v.is_object())
                .cloned()
                .unwrap_or_else(|| json!({}));
            m.insert(
                "cpu_info".into(),
                if api.v.at_least(28) {
                    cpu_info
                } else {
                    json!(cpu_info.to_string())
                },
            );
        } else {
            m.insert("uptime".into(), json!(api.control().host_uptime(&h.host)));
        }
    }
    match servers {
        Some(list) if !list.is_empty() => {
            m.insert(
                "servers".into(),
                json!(
                    list.iter()
                        .map(|s| json!({"name": s.name, "uuid": s.id}))
                        .collect::<Vec<_>>()
                ),
            );
        }
        Some(_) if api.v.at_least(75) => {
            m.insert("servers".into(), json!([]));
        }
        _ => {}
    }
    Value::Object(m)
}

/// A query parameter that Nova's 2.53 schema allows only once.
fn single<'a>(api: &'a Api, key: &str) -> Result<Option<&'a str>, Error> {
    let all = api.params(key);
    if all.len() > 1 {
        return Err(Error::invalid(format!(
            "Invalid input for query parameters {key}. Value: {all:?}. {all:?} is not of type 'string'"
        )));
    }
    Ok(all.first().copied())
}

fn with_servers(api: &Api) -> Result<bool, Error> {
    if !api.v.at_least(53) {
        return Ok(false);
    }
    match single(api, "with_servers")? {
        None => Ok(false),
        Some(v) => nova_bool(v).ok_or_else(|| {
            Error::invalid(format!(
                "Invalid input for query parameters with_servers. Value: {v}. '{v}' is not a valid boolean value"
            ))
        }),
    }
}

async fn list(api: &Api, detail: bool) -> ComputeResult {
    let mut hosts = api.control().hosts_list(&api.ctx).await?;
    let paged = api.v.at_least(33);
    let mut pattern = None;
    if api.v.at_least(53) {
        for (k, _) in &api.query {
            if ![
                "limit",
                "marker",
                "hypervisor_hostname_pattern",
                "with_servers",
            ]
            .contains(&k.as_str())
            {
                return Err(Error::invalid(format!(
                    "Invalid input for query parameters {k}. Additional properties are not allowed ('{k}' was unexpected)"
                ))
                .into());
            }
        }
        single(api, "limit")?;
        single(api, "marker")?;
        pattern = single(api, "hypervisor_hostname_pattern")?;
    }
    let with_servers = with_servers(api)?;
    let mut links = paged;
    if let Some(p) = pattern {
        if api.param("limit").is_some() || api.param("marker").is_some() {
            return Err(Error::invalid(
                "Paging over hypervisors with the hypervisor_hostname_pattern query parameter is not supported.",
            )
            .into());
        }
        links = false;
        hosts.retain(|h| h.host.name.contains(p));
        if hosts.is_empty() {
            return Err(
                Error::not_found(format!("No hypervisor matching '{p}' could be found.")).into(),
            );
        }
    } else if paged {
        let limit = api
            .limit()?
            .unwrap_or(api.control().config().max_limit)
            .min(api.control().config().max_limit);
        if let Some(marker) = api.param("marker") {
            let pos = hosts
                .iter()
                .position(|h| id_str(api, h) == marker)
                .ok_or_else(|| Error::invalid(format!("marker [{marker}] not found")))?;
            hosts.drain(..=pos);
        }
        hosts.truncate(limit);
    }
    let mut items = Vec::with_capacity(hosts.len());
    for h in &hosts {
        let on_host = if with_servers || (detail && !api.v.at_least(88)) {
            Some(api.control().host_servers(&api.ctx, &h.host.name).await?)
        } else {
            None
        };
        let shown = if with_servers {
            on_host.as_deref()
        } else {
            None
        };
        items.push(view(api, h, detail, shown, on_host.as_deref()));
    }
    let mut body = json!({"hypervisors": items});
    if links {
        let coll = if detail {
            "os-hypervisors/detail"
        } else {
            "os-hypervisors"
        };
        let last = hosts.last().map(|h| id_str(api, h));
        if let Some(l) = api.collection_links(coll, hosts.len(), last.as_deref()) {
            body["hypervisors_links"] = l;
        }
    }
    Ok(crate::common::json(StatusCode::OK, body))
}

async fn index(api: Api) -> ComputeResult {
    list(&api, false).await
}

async fn detail(api: Api) -> ComputeResult {
    list(&api, true).await
}

/// Find a hypervisor by the id form of the microversion (Nova `_validate_id`).
async fn find(api: &Api, id: &str) -> Result<HostUsage, Error> {
    let hosts = api.control().hosts_list(&api.ctx).await?;
    if api.v.at_least(53) {
        let uuid: uuid::Uuid = id
            .parse()
            .map_err(|_| Error::invalid(format!("Invalid uuid {id}")))?;
        hosts
            .into_iter()
            .find(|h| *h.host.id.as_uuid() == uuid)
            .ok_or_else(|| not_found(id))
    } else {
        let serial: i64 = id.parse().map_err(|_| not_found(id))?;
        hosts
            .into_iter()
            .find(|h| h.host.serial == serial)
            .ok_or_else(|| not_found(id))
    }
}

async fn show(api: Api, Path(id): Path<String>) -> ComputeResult {
    if api.v.at_least(53) {
        for (k, _) in &api.query {
            if k != "with_servers" {
                return Err(Error::invalid(format!(
                    "Invalid input for query parameters {k}. Additional properties are not allowed ('{k}' was unexpected)"
                ))
                .into());
            }
        }
    }
    let with_servers = with_servers(&api)?;
    let h = find(&api, &id).await?;
    let on_host = if with_servers || !api.v.at_least(88) {
        Some(api.control().host_servers(&api.ctx, &h.host.name).await?)
    } else {
        None
    };
    let shown = if with_servers {
        on_host.as_deref()
    } else {
        None
    };
    Ok(crate::common::json(
        StatusCode::OK,
        json!({"hypervisor": view(&api, &h, true, shown, on_host.as_deref())}),
    ))
}

async fn uptime(api: Api, Path(id): Path<String>) -> ComputeResult {
    if api.v.at_least(88) {
        return Err(gone().into());
    }
    let h = find(&api, &id).await?;
    let mut v = view(&api, &h, false, None, None);
    v["uptime"] = json!(api.control().host_uptime(&h.host));
    Ok(crate::common::json(
        StatusCode::OK,
        json!({"hypervisor": v}),
    ))
}

/// The pre-2.53 pattern routes: substring match on the hypervisor hostname.
async fn by_pattern(api: &Api, pattern: &str, with_servers: bool) -> ComputeResult {
    if api.v.at_least(53) {
        return Err(gone().into());
    }
    let hosts: Vec<HostUsage> = api
        .control()
        .hosts_list(&api.ctx)
        .await?
        .into_iter()
        .filter(|h| h.host.name.contains(pattern))
        .collect();
    if hosts.is_empty() {
        return Err(Error::not_found(format!(
            "No hypervisor matching '{pattern}' could be found."
        ))
        .into());
    }
    let mut items = Vec::new();
    for h in &hosts {
        let servers = if with_servers {
            Some(api.control().host_servers(&api.ctx, &h.host.name).await?)
        } else {
            None
        };
        items.push(view(api, h, false, servers.as_deref(), None));
    }
    Ok(crate::common::json(
        StatusCode::OK,
        json!({"hypervisors": items}),
    ))
}

async fn search(api: Api, Path(pattern): Path<String>) -> ComputeResult {
    by_pattern(&api, &pattern, false).await
}

async fn servers(api: Api, Path(pattern): Path<String>) -> ComputeResult {
    by_pattern(&api, &pattern, true).await
}

/// Sums over enabled hosts (Nova joins on non-disabled compute services).
async fn statistics(api: Api) -> ComputeResult {
    if api.v.at_least(88) {
        return Err(gone().into());
    }
    let hosts = api.control().hosts_list(&api.ctx).await?;
    let mut t = [0i64; 11];
    let mut count = 0;
    for h in hosts.iter().filter(|h| h.host.enabled) {
        count += 1;
        let on_host = api.control().host_servers(&api.ctx, &h.host.name).await?;
        let (disk, du) = (h.host.disk_gb as i64, h.used.disk_gb as i64);
        let (ram, ru) = (h.host.ram_mb as i64, h.used.ram_mb as i64);
        let row = [
            h.host.vcpus as i64,
            ram,
            disk,
            h.used.vcpus as i64,
            ru,
            du,
            ram - ru,
            disk - du,
            workload(&on_host) as i64,
            h.servers as i64,
            disk - du,
        ];
        for (acc, v) in t.iter_mut().zip(row) {
            *acc += v;
        }
    }
    Ok(crate::common::json(
        StatusCode::OK,
        json!({"hypervisor_statistics": {
            "count": count,
            "vcpus": t[0],
            "memory_mb": t[1],
            "local_gb": t[2],
            "vcpus_used": t[3],
            "memory_mb_used": t[4],
            "local_gb_used": t[5],
            "free_ram_mb": t[6],
            "free_disk_gb": t[7],
            "current_workload": t[8],
            "running_vms": t[9],
            "disk_available_least": t[10],
        }}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_ip_from_agent_address() {
        assert_eq!(host_ip("local"), json!("127.0.0.1"));
        assert_eq!(host_ip("http://10.0.0.5:8775/agent"), json!("10.0.0.5"));
        assert_eq!(host_ip("https://[fd00::1]:8775"), json!("fd00::1"));
        assert_eq!(host_ip("http://compute-1.example:8775"), Value::Null);
    }
}
