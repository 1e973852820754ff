//! Server sub-resources: metadata, tags (2.26), ips, os-instance-actions, diagnostics,
//! remote consoles (2.6), and the interface (the server's NICs) and volume-attachment (its
//! data volumes) lists.

use super::fault::ComputeResult;
use super::{Api, server_id};
use crate::AppState;
use crate::common::body::JsonBody;
use crate::common::time::{parse_iso, perfect};
use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use nimbus_model::Error;
use nimbus_model::ServerId;
use nimbus_model::server::Server;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/compute/v2.1/servers/{id}/metadata",
            get(metadata_index)
                .post(metadata_merge)
                .put(metadata_replace),
        )
        .route(
            "/compute/v2.1/servers/{id}/metadata/{key}",
            get(metadata_show).put(metadata_put).delete(metadata_delete),
        )
        .route(
            "/compute/v2.1/servers/{id}/tags",
            get(tags_index).put(tags_replace).delete(tags_clear),
        )
        .route(
            "/compute/v2.1/servers/{id}/tags/{tag}",
            get(tag_check).put(tag_add).delete(tag_delete),
        )
        .route("/compute/v2.1/servers/{id}/ips", get(ips_index))
        .route("/compute/v2.1/servers/{id}/ips/{network}", get(ips_show))
        .route(
            "/compute/v2.1/servers/{id}/os-instance-actions",
            get(actions_index),
        )
        .route(
            "/compute/v2.1/servers/{id}/os-instance-actions/{request_id}",
            get(action_show),
        )
        .route("/compute/v2.1/servers/{id}/diagnostics", get(diagnostics))
        .route(
            "/compute/v2.1/servers/{id}/remote-consoles",
            post(remote_console),
        )
        .route("/compute/v2.1/servers/{id}/os-interface", get(interfaces))
        .route(
            "/compute/v2.1/servers/{id}/os-interface/{port_id}",
            get(interface_show),
        )
        .route("/compute/v2.1/servers/{id}/topology", get(topology))
        .route(
            "/compute/v2.1/servers/{id}/os-volume_attachments",
            get(volume_attachments),
        )
        .route(
            "/compute/v2.1/servers/{id}/os-volume_attachments/{volume_id}",
            get(volume_attachment_show),
        )
}

// ---- metadata ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MetadataBody {
    metadata: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MetaBody {
    meta: BTreeMap<String, String>,
}

async fn metadata_index(api: Api, Path(id): Path<String>) -> ComputeResult {
    let s = api.control().server_get(&api.ctx, server_id(&id)?).await?;
    Ok(crate::common::json(
        StatusCode::OK,
        json!({"metadata": s.metadata}),
    ))
}

async fn metadata_merge(
    api: Api,
    Path(id): Path<String>,
    JsonBody(b): JsonBody<MetadataBody>,
) -> ComputeResult {
    let md = api
        .control()
        .server_metadata_set(&api.ctx, server_id(&id)?, b.metadata, false)
        .await?;
    Ok(crate::common::json(StatusCode::OK, json!({"metadata": md})))
}

async fn metadata_replace(
    api: Api,
    Path(id): Path<String>,
    JsonBody(b): JsonBody<MetadataBody>,
) -> ComputeResult {
    let md = api
        .control()
        .server_metadata_set(&api.ctx, server_id(&id)?, b.metadata, true)
        .await?;
    Ok(crate::common::json(StatusCode::OK, json!({"metadata": md})))
}

async fn metadata_show(api: Api, Path((id, key)): Path<(String, String)>) -> ComputeResult {
    let s = api.control().server_get(&api.ctx, server_id(&id)?).await?;
    let v = s
        .metadata
        .get(&key)
        .ok_or_else(|| Error::not_found("Metadata item was not found"))?;
    Ok(crate::common::json(
        StatusCode::OK,
        json!({"meta": {key: v}}),
    ))
}

async fn metadata_put(
    api: Api,
    Path((id, key)): Path<(String, String)>,
    JsonBody(b): JsonBody<MetaBody>,
) -> ComputeResult {
    if b.meta.len() > 1 {
        return Err(Error::invalid("Request body contains too many items").into());
    }
    if !b.meta.contains_key(&key) {
        return Err(Error::invalid("Request body and URI mismatch").into());
    }
    let md = api
        .control()
        .server_metadata_set(&api.ctx, server_id(&id)?, b.meta, false)
        .await?;
    Ok(crate::common::json(
        StatusCode::OK,
        json!({"meta": {key.clone(): md.get(&key)}}),
    ))
}

async fn metadata_delete(api: Api, Path((id, key)): Path<(String, String)>) -> ComputeResult {
    api.control()
        .server_metadata_delete(&api.ctx, server_id(&id)?, &key)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---- tags (2.26) ----

fn tags_supported(api: &Api) -> Result<(), Error> {
    if api.v.at_least(26) {
        Ok(())
    } else {
        Err(Error::not_found("The resource could not be found."))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TagsBody {
    tags: Vec<String>,
}

async fn tags_index(api: Api, Path(id): Path<String>) -> ComputeResult {
    tags_supported(&api)?;
    let s = api.control().server_get(&api.ctx, server_id(&id)?).await?;
    Ok(crate::common::json(StatusCode::OK, json!({"tags": s.tags})))
}

async fn tags_replace(
    api: Api,
    Path(id): Path<String>,
    JsonBody(b): JsonBody<TagsBody>,
) -> ComputeResult {
    tags_supported(&api)?;
    let tags = api
        .control()
        .server_tags_set(&api.ctx, server_id(&id)?, b.tags)
        .await?;
    Ok(crate::common::json(StatusCode::OK, json!({"tags": tags})))
}

async fn tags_clear(api: Api, Path(id): Path<String>) -> ComputeResult {
    tags_supported(&api)?;
    api.control()
        .server_tags_set(&api.ctx, server_id(&id)?, Vec::new())
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn tag_check(api: Api, Path((id, tag)): Path<(String, String)>) -> ComputeResult {
    tags_supported(&api)?;
    let s = api.control().server_get(&api.ctx, server_id(&id)?).await?;
    if !s.tags.contains(&tag) {
        return Err(Error::not_found(format!("Tag {tag} could not be found.")).into());
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn tag_add(api: Api, Path((id, tag)): Path<(String, String)>) -> ComputeResult {
    tags_supported(&api)?;
    let sid = server_id(&id)?;
    let added = api.control().server_tag_add(&api.ctx, sid, &tag).await?;
    if !added {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let mut resp = StatusCode::CREATED.into_response();
    let loc = format!(
        "{}/servers/{sid}/tags/{}",
        api.links.versioned,
        crate::common::percent_encode(&tag)
    );
    if let Ok(h) = HeaderValue::from_str(&loc) {
        resp.headers_mut().insert("location", h);
    }
    Ok(resp)
}

async fn tag_delete(api: Api, Path((id, tag)): Path<(String, String)>) -> ComputeResult {
    tags_supported(&api)?;
    api.control()
        .server_tag_delete(&api.ctx, server_id(&id)?, &tag)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---- ips ----

async fn ips_index(api: Api, Path(id): Path<String>) -> ComputeResult {
    let s = api.control().server_get(&api.ctx, server_id(&id)?).await?;
    let addrs = super::servers::addresses(&s, false);
    Ok(crate::common::json(
        StatusCode::OK,
        json!({"addresses": addrs}),
    ))
}

async fn ips_show(api: Api, Path((id, network)): Path<(String, String)>) -> ComputeResult {
    let s = api.control().server_get(&api.ctx, server_id(&id)?).await?;
    let addrs = super::servers::addresses(&s, false);
    let entry = addrs
        .get(&network)
        .cloned()
        .ok_or_else(|| Error::not_found("Instance is not a member of specified network"))?;
    Ok(crate::common::json(
        StatusCode::OK,
        json!({ network: entry }),
    ))
}

// ---- instance actions ----

fn action_json(api: &Api, op: &nimbus_model::operation::Operation) -> Value {
    let mut a = json!({
        "action": op.action,
        "instance_uuid": op.server_id.to_string(),
        "message": op.message,
        "project_id": op.project_id,
        "request_id": op.request_id,
        "start_time": perfect(&op.start_time),
        "user_id": op.user_id,
    });
    if api.v.at_least(58) {
        a["updated_at"] = json!(perfect(&op.finish_time.unwrap_or(op.updated_at)));
    }
    a
}

async fn actions_index(api: Api, Path(id): Path<String>) -> ComputeResult {
    let sid = server_id(&id)?;
    let mut ops = api
        .control()
        .server_actions(&api.ctx, sid, api.v.at_least(21))
        .await?;
    if api.v.at_least(58) {
        api.check_query(&["limit", "marker", "changes-since", "changes-before"])?;
        if let Some(s) = api.param("changes-since") {
            let t = parse_iso(s).ok_or_else(|| {
                Error::invalid(format!(
                    "Invalid input for query parameters changes-since. Value: {s}."
                ))
            })?;
            ops.retain(|o| o.finish_time.unwrap_or(o.updated_at) >= t);
        }
        if api.v.at_least(66)
            && let Some(s) = api.param("changes-before")
        {
            let t = parse_iso(s).ok_or_else(|| {
                Error::invalid(format!(
                    "Invalid input for query parameters changes-before. Value: {s}."
                ))
            })?;
            ops.retain(|o| o.finish_time.unwrap_or(o.updated_at) <= t);
        }
        if let Some(m) = api.param("marker") {
            let pos = ops
                .iter()
                .position(|o| o.request_id == m)
                .ok_or_else(|| Error::invalid(format!("Marker {m} could not be found.")))?;
            ops.drain(..=pos);
        }
        if let Some(l) = api.limit()? {
            ops.truncate(l.min(api.control().config().max_limit));
        }
    }
    let list: Vec<Value> = ops.iter().map(|o| action_json(&api, o)).collect();
    let mut body = json!({"instanceActions": list});
    if api.v.at_least(58) {
        let last = ops.last().map(|o| o.request_id.clone());
        if let Some(links) = api.collection_links(
            &format!("servers/{sid}/os-instance-actions"),
            ops.len(),
            last.as_deref(),
        ) {
            body["links"] = links;
        }
    }
    Ok(crate::common::json(StatusCode::OK, body))
}

async fn action_show(api: Api, Path((id, request_id)): Path<(String, String)>) -> ComputeResult {
    let sid = server_id(&id)?;
    let (op, events) = api
        .control()
        .server_action_get(&api.ctx, sid, &request_id, api.v.at_least(21))
        .await?;
    let admin = api.ctx.is_admin();
    let mut a = action_json(&api, &op);
    let evs: Vec<Value> = events
        .iter()
        .map(|e| {
            let mut ev = json!({
                "event": e.event,
                "start_time": perfect(&e.start_time),
                "finish_time": e.finish_time.as_ref().map(perfect),
                "result": e.result,
            });
            if admin {
                ev["traceback"] = json!(e.traceback);
            }
            if api.v.at_least(62) {
                ev["hostId"] = json!(super::servers::host_id(
                    e.host.as_deref(),
                    op.project_id.as_str()
                ));
                if admin {
                    ev["host"] = json!(e.host.clone().unwrap_or_default());
                }
            }
            if api.v.at_least(84) {
                ev["details"] = json!(e.details);
            }
            ev
        })
        .collect();
    a["events"] = json!(evs);
    Ok(crate::common::json(
        StatusCode::OK,
        json!({"instanceAction": a}),
    ))
}

// ---- diagnostics ----

async fn diagnostics(api: Api, Path(id): Path<String>) -> ComputeResult {
    let (server, d) = api
        .control()
        .server_diagnostics(&api.ctx, server_id(&id)?)
        .await?;
    if api.v.at_least(48) {
        return Ok(crate::common::json(
            StatusCode::OK,
            json!({
                "state": d.state,
                "driver": d.driver,
                "hypervisor": d.hypervisor,
                "hypervisor_os": d.hypervisor_os,
                "uptime": d.uptime,
                "config_drive": d.config_drive,
                "num_cpus": d.num_cpus,
                "num_disks": d.num_disks,
                "num_nics": d.num_nics,
                "memory_details": {"maximum": d.memory_details.maximum, "used": d.memory_details.used},
                "cpu_details": d.cpu_details.iter().map(|c| json!({"id": c.id, "time": c.time, "utilisation": c.utilisation})).collect::<Vec<_>>(),
                "disk_details": d.disk_details.iter().map(|x| json!({"read_bytes": x.read_bytes, "read_requests": x.read_requests, "write_bytes": x.write_bytes, "write_requests": x.write_requests, "errors_count": x.errors_count})).collect::<Vec<_>>(),
                "nic_details": d.nic_details.iter().map(|n| json!({"mac_address": n.mac_address, "rx_octets": n.rx_octets, "rx_errors": n.rx_errors, "rx_drop": n.rx_drop, "rx_packets": n.rx_packets, "rx_rate": n.rx_rate, "tx_octets": n.tx_octets, "tx_errors": n.tx_errors, "tx_drop": n.tx_drop, "tx_packets": n.tx_packets, "tx_rate": n.tx_rate})).collect::<Vec<_>>(),
            }),
        ));
    }
    // Before 2.48 the body was driver-specific; this is the libvirt driver's shape.
    let mut m = serde_json::Map::new();
    for c in &d.cpu_details {
        m.insert(format!("cpu{}_time", c.id), json!(c.time));
    }
    m.insert("memory".into(), json!(server.flavor.ram_mb * 1024));
    for (i, x) in d.disk_details.iter().enumerate() {
        let dev = format!("vd{}", (b'a' + i as u8) as char);
        m.insert(format!("{dev}_read"), json!(x.read_bytes));
        m.insert(format!("{dev}_read_req"), json!(x.read_requests));
        m.insert(format!("{dev}_write"), json!(x.write_bytes));
        m.insert(format!("{dev}_write_req"), json!(x.write_requests));
        m.insert(format!("{dev}_errors"), json!(x.errors_count));
    }
    Ok(crate::common::json(StatusCode::OK, Value::Object(m)))
}

// ---- consoles ----

/// The URL a client opens for a VNC console: Nimbus's browser console (noVNC page and
/// WebSocket proxy, shared with VPE: `api/vpe/console.rs`), as Nova's is its novncproxy.
/// The caller has just obtained the console (`server_vnc_console`), so the server is
/// running and its agent serves VNC; the page fetches a fresh password when opened.
pub fn console_url(api: &Api, id: ServerId) -> String {
    crate::vpe::console::page_url(&api.state, &api.ctx, id)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RemoteConsoleBody {
    remote_console: RemoteConsole,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RemoteConsole {
    protocol: String,
    #[serde(rename = "type")]
    kind: String,
}

async fn remote_console(
    api: Api,
    Path(id): Path<String>,
    JsonBody(b): JsonBody<RemoteConsoleBody>,
) -> ComputeResult {
    if !api.v.at_least(6) {
        return Err(Error::not_found("The resource could not be found.").into());
    }
    let rc = b.remote_console;
    if rc.protocol != "vnc" {
        return Err(Error::NotImplemented(format!(
            "Unable to get {} console, functionality not implemented",
            rc.protocol
        ))
        .into());
    }
    if !matches!(rc.kind.as_str(), "novnc" | "xvpvnc") {
        return Err(Error::invalid(format!(
            "Invalid input for field/attribute type. Value: {}.",
            rc.kind
        ))
        .into());
    }
    let sid = server_id(&id)?;
    api.control().server_vnc_console(&api.ctx, sid).await?;
    let url = console_url(&api, sid);
    Ok(crate::common::json(
        StatusCode::OK,
        json!({"remote_console": {"protocol": "vnc", "type": rc.kind, "url": url}}),
    ))
}

// ---- topology (2.78) ----

/// Nimbus places no server on NUMA nodes, so every server has Nova's answer for a server
/// without a NUMA topology.
async fn topology(api: Api, Path(id): Path<String>) -> ComputeResult {
    if !api.v.at_least(78) {
        return Err(Error::not_found("The resource could not be found.").into());
    }
    api.control().server_get(&api.ctx, server_id(&id)?).await?;
    Ok(crate::common::json(
        StatusCode::OK,
        json!({"nodes": [], "pagesize_kb": null}),
    ))
}

// ---- interfaces and volumes (none yet) ----

/// One NIC as Nova's `interfaceAttachment`. Deviation: Nimbus networks carry one address
/// range per IP version rather than separately addressable subnets, so `subnet_id` is the
/// network's id; the port id is the NIC's id.
fn interface_view(api: &Api, nic: &nimbus_model::network::Nic) -> Value {
    let fixed: Vec<Value> = [&nic.ipv4, &nic.ipv6]
        .into_iter()
        .flatten()
        .map(|ip| json!({"ip_address": ip, "subnet_id": nic.network_id.to_string()}))
        .collect();
    let mut v = json!({
        "port_state": "ACTIVE",
        "fixed_ips": fixed,
        "port_id": nic.id.to_string(),
        "net_id": nic.network_id.to_string(),
        "mac_addr": nic.mac,
    });
    if api.v.at_least(70) {
        v["tag"] = Value::Null;
    }
    v
}

async fn interfaces(api: Api, Path(id): Path<String>) -> ComputeResult {
    let s = api.control().server_get(&api.ctx, server_id(&id)?).await?;
    let list: Vec<Value> = s.nics.iter().map(|n| interface_view(&api, n)).collect();
    Ok(crate::common::json(
        StatusCode::OK,
        json!({"interfaceAttachments": list}),
    ))
}

async fn interface_show(api: Api, Path((id, port)): Path<(String, String)>) -> ComputeResult {
    let s = api.control().server_get(&api.ctx, server_id(&id)?).await?;
    let nic = s
        .nics
        .iter()
        .find(|n| n.id.to_string() == port)
        .ok_or_else(|| Error::not_found(format!("Port {port} could not be found.")))?;
    Ok(crate::common::json(
        StatusCode::OK,
        json!({"interfaceAttachment": interface_view(&api, nic)}),
    ))
}

/// One attached data volume as Nova's `volumeAttachment`. Deviation: Nimbus has no separate
/// attachment or block-device-mapping records, so from 2.89 `attachment_id` and `bdm_uuid`
/// are the volume's id too.
fn attachment_view(api: &Api, server: &Server, vol: &nimbus_model::volume::Volume) -> Value {
    let vid = vol.id.to_string();
    let mut v = json!({
        "device": vol.device.as_ref().map(|d| format!("/dev/{d}")),
        "serverId": server.id.to_string(),
        "volumeId": vid,
    });
    if api.v.at_least(89) {
        v["attachment_id"] = json!(vid);
        v["bdm_uuid"] = json!(vid);
    } else {
        v["id"] = json!(vid);
    }
    if api.v.at_least(70) {
        v["tag"] = Value::Null;
    }
    if api.v.at_least(79) {
        v["delete_on_termination"] = json!(false);
    }
    v
}

async fn volume_attachment_show(
    api: Api,
    Path((id, volume)): Path<(String, String)>,
) -> ComputeResult {
    let s = api.control().server_get(&api.ctx, server_id(&id)?).await?;
    let vol = s
        .volumes
        .iter()
        .find(|v| v.id.to_string() == volume)
        .ok_or_else(|| {
            Error::not_found(format!("Instance {id} is not attached to volume {volume}."))
        })?;
    Ok(crate::common::json(
        StatusCode::OK,
        json!({"volumeAttachment": attachment_view(&api, &s, vol)}),
    ))
}

async fn volume_attachments(api: Api, Path(id): Path<String>) -> ComputeResult {
    let s = api.control().server_get(&api.ctx, server_id(&id)?).await?;
    let list: Vec<Value> = s
        .volumes
        .iter()
        .map(|v| attachment_view(&api, &s, v))
        .collect();
    Ok(crate::common::json(
        StatusCode::OK,
        json!({"volumeAttachments": list}),
    ))
}
