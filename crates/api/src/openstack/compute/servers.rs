//! `/servers`: list (index and detail, with Nova's filters, sorting and paging), create,
//! show, update, delete; and the server view for every microversion.

use super::fault::ComputeResult;
use super::{Api, server_id};
use crate::AppState;
use crate::common::body::{JsonBody, from_value};
use crate::common::time::{isotime, parse_iso, perfect};
use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use nimbus_control::servers::{
    NetworkRequest, RequestedNic, ServerCreate, ServerListQuery, ServerUpdate,
};
use nimbus_model::host::Host;
use nimbus_model::server::{
    Personality, RegexField, Server, ServerFilter, ServerPage, ServerSortKey, SortDir,
};
use nimbus_model::state::{TaskState, VmState, openstack_status, states_for_openstack_status};
use nimbus_model::{Error, FlavorId, ImageId, ServerGroupId};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha224};
use std::collections::BTreeMap;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/compute/v2.1/servers", get(index).post(create))
        .route("/compute/v2.1/servers/detail", get(detail))
        .route(
            "/compute/v2.1/servers/{id}",
            get(show).put(update).delete(delete),
        )
}

/// Which optional groups of fields a server view carries (Nova's `show(...)` flags).
#[derive(Clone, Copy, Debug)]
pub struct ShowOpts {
    pub full: bool,
    pub server_groups: bool,
}

impl ShowOpts {
    pub const DETAIL: ShowOpts = ShowOpts {
        full: true,
        server_groups: false,
    };
    pub const SHOW: ShowOpts = ShowOpts {
        full: true,
        server_groups: true,
    };
    /// PUT and rebuild before 2.75: the short form.
    pub const SHORT: ShowOpts = ShowOpts {
        full: false,
        server_groups: true,
    };
}

/// Nova `generate_hostid`.
pub fn host_id(host: Option<&str>, project: &str) -> String {
    match host {
        Some(h) if !h.is_empty() => hex::encode(Sha224::digest(format!("{project}{h}").as_bytes())),
        _ => String::new(),
    }
}

fn host_status(hosts: &[Host], s: &Server) -> &'static str {
    let Some(id) = s.host_id else { return "" };
    match hosts.iter().find(|h| h.id == id) {
        None => "UNKNOWN",
        Some(h) if !h.up => "DOWN",
        Some(h) if !h.enabled => "MAINTENANCE",
        Some(_) => "UP",
    }
}

/// The detailed server view for the negotiated microversion, written against [`FieldSink`]
/// so that it streams straight into a serializer ([`ServerView`]): a detail page of 1,000
/// servers never builds 1,000 maps of 45 allocated keys. (A `Value` sink would be a
/// four-line impl, should a caller ever need to edit a view before sending it.)
fn emit_view(api: &Api, s: &Server, opts: ShowOpts, hosts: &[Host], m: &mut impl FieldSink) {
    let v = api.v;
    let admin = api.ctx.is_admin();
    let status = if s.deleted {
        "DELETED"
    } else {
        openstack_status(s.vm_state, s.task_state, s.power_state)
    };
    let id = s.id.to_string();
    m.put("id", &id);
    m.put("name", &s.name);
    m.put("status", &status);
    m.put("tenant_id", &s.project_id);
    m.put("user_id", &s.user_id);
    m.put("metadata", &s.metadata);
    m.put("hostId", &host_id(s.host.as_deref(), s.project_id.as_str()));
    m.put("created", &isotime(&s.created_at));
    m.put("updated", &isotime(&s.updated_at));
    m.put("accessIPv4", &s.access_ipv4.as_deref().unwrap_or(""));
    m.put("accessIPv6", &s.access_ipv6.as_deref().unwrap_or(""));
    m.put("addresses", &addresses(s, true));
    m.put("links", &api.links.pair("servers", &id));
    m.put("OS-DCF:diskConfig", &"MANUAL");
    m.put("image", &match s.image_id {
            Some(img) => json!({"id": img.to_string(), "links": [{"rel": "bookmark", "href": api.links.bookmark("images", &img.to_string())}]}),
            None => json!(""),
        });
    let f = &s.flavor;
    m.put("flavor", &if v.at_least(47) {
            json!({
                "vcpus": f.vcpus, "ram": f.ram_mb, "disk": f.disk_gb, "ephemeral": f.ephemeral_gb,
                "swap": f.swap_mb, "original_name": f.name, "extra_specs": f.extra_specs,
            })
        } else {
            json!({"id": f.id, "links": [{"rel": "bookmark", "href": api.links.bookmark("flavors", f.id.as_str())}]})
        });
    if matches!(status, "ERROR" | "DELETED")
        && let Some(fault) = &s.fault
    {
        let mut fd = json!({"code": fault.code, "created": isotime(&fault.created), "message": fault.message});
        if !fault.details.is_empty() && (admin || fault.code != 500) {
            fd["details"] = json!(fault.details);
        }
        m.put("fault", &fd);
    }
    if matches!(
        status,
        "ACTIVE" | "BUILD" | "REBUILD" | "RESIZE" | "VERIFY_RESIZE" | "MIGRATING"
    ) {
        m.put("progress", &s.progress);
    }
    if opts.full {
        m.put(
            "OS-EXT-AZ:availability_zone",
            &s.availability_zone.as_deref().unwrap_or(""),
        );
        m.put("config_drive", &if s.config_drive { "True" } else { "" });
        m.put("key_name", &s.key_name);
        m.put(
            "OS-SRV-USG:launched_at",
            &s.launched_at.as_ref().map(perfect),
        );
        m.put(
            "OS-SRV-USG:terminated_at",
            &s.terminated_at.as_ref().map(perfect),
        );
        m.put(
            "security_groups",
            &s.security_groups
                .iter()
                .map(|g| json!({"name": g}))
                .collect::<Vec<_>>(),
        );
        if admin {
            m.put("OS-EXT-SRV-ATTR:host", &s.host);
            m.put(
                "OS-EXT-SRV-ATTR:instance_name",
                &format!("instance-{:08x}", s.serial),
            );
            m.put("OS-EXT-SRV-ATTR:hypervisor_hostname", &s.host);
            if v.at_least(3) {
                m.put("OS-EXT-SRV-ATTR:hostname", &s.hostname);
                m.put("OS-EXT-SRV-ATTR:kernel_id", &"");
                m.put("OS-EXT-SRV-ATTR:launch_index", &s.launch_index);
                m.put("OS-EXT-SRV-ATTR:ramdisk_id", &"");
                m.put("OS-EXT-SRV-ATTR:reservation_id", &s.reservation_id);
                m.put("OS-EXT-SRV-ATTR:root_device_name", &"/dev/vda");
                m.put("OS-EXT-SRV-ATTR:user_data", &s.user_data);
            }
        }
        m.put(
            "OS-EXT-STS:task_state",
            &s.task_state.map(TaskState::as_str),
        );
        m.put("OS-EXT-STS:vm_state", &s.vm_state.as_str());
        m.put("OS-EXT-STS:power_state", &s.power_state.code());
        let volumes: Vec<Value> = s
            .volumes
            .iter()
            .map(|vol| {
                if v.at_least(3) {
                    json!({"id": vol.id.to_string(), "delete_on_termination": false})
                } else {
                    json!({"id": vol.id.to_string()})
                }
            })
            .collect();
        m.put("os-extended-volumes:volumes_attached", &volumes);
        if v.at_least(16) && admin {
            m.put("host_status", &host_status(hosts, s));
        }
    }
    if v.at_least(9) {
        m.put("locked", &s.locked);
    }
    if v.at_least(19) {
        m.put("description", &s.description);
    }
    if v.at_least(26) {
        m.put("tags", &s.tags);
    }
    if v.at_least(63) {
        m.put("trusted_image_certificates", &Value::Null);
    }
    if opts.server_groups && v.at_least(71) {
        m.put(
            "server_groups",
            &s.server_group
                .map(|g| vec![g.to_string()])
                .unwrap_or_default(),
        );
    }
    if v.at_least(73) {
        m.put("locked_reason", &s.locked_reason);
    }
    if v.at_least(90) && !admin {
        m.put("OS-EXT-SRV-ATTR:hostname", &s.hostname);
    }
    if opts.full && v.at_least(96) {
        m.put("pinned_availability_zone", &s.pinned_availability_zone);
    }
}

/// Where [`emit_view`] puts each field.
trait FieldSink {
    fn put<T: serde::Serialize + ?Sized>(&mut self, key: &'static str, value: &T);
}

/// Streams fields into a serializer's map; keeps the first error for `end`.
struct MapSink<M: serde::ser::SerializeMap> {
    map: M,
    err: Option<M::Error>,
}

impl<M: serde::ser::SerializeMap> FieldSink for MapSink<M> {
    fn put<T: serde::Serialize + ?Sized>(&mut self, key: &'static str, value: &T) {
        if self.err.is_none()
            && let Err(e) = self.map.serialize_entry(key, value)
        {
            self.err = Some(e);
        }
    }
}

/// A server view that serializes itself field by field (the same fields as [`view`]).
pub struct ServerView<'a> {
    pub api: &'a Api,
    pub server: &'a Server,
    pub opts: ShowOpts,
    pub hosts: &'a [Host],
}

impl serde::Serialize for ServerView<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut sink = MapSink {
            map: serializer.serialize_map(None)?,
            err: None,
        };
        emit_view(self.api, self.server, self.opts, self.hosts, &mut sink);
        match sink.err {
            Some(e) => Err(e),
            None => serde::ser::SerializeMap::end(sink.map),
        }
    }
}

/// Nova's `addresses`: per network name, one entry per address. `extended` adds the
/// `OS-EXT-IPS:*` keys (server views); `/ips` shows the plain form. Empty while building,
/// as Nova shows it.
pub fn addresses(s: &Server, extended: bool) -> Value {
    let mut m: Map<String, Value> = Map::new();
    if s.vm_state == VmState::Building {
        return Value::Object(m);
    }
    for nic in &s.nics {
        let list = m
            .entry(nic.network_name.clone())
            .or_insert_with(|| json!([]));
        let entries = list.as_array_mut().expect("list");
        for (version, addr) in [(4, &nic.ipv4), (6, &nic.ipv6)] {
            let Some(addr) = addr else { continue };
            let mut e = json!({"version": version, "addr": addr});
            if extended {
                e["OS-EXT-IPS:type"] = json!("fixed");
                e["OS-EXT-IPS-MAC:mac_addr"] = json!(nic.mac);
            }
            entries.push(e);
        }
    }
    Value::Object(m)
}

/// Hosts for `host_status` (admins only see it, so only they pay for the lookup).
pub async fn hosts_for(api: &Api) -> Vec<Host> {
    if api.v.at_least(16) && api.ctx.is_admin() {
        api.control()
            .hosts_states(&api.ctx)
            .await
            .unwrap_or_default()
    } else {
        Vec::new()
    }
}

/// One server as a response.
pub async fn server_response(
    api: &Api,
    s: &Server,
    opts: ShowOpts,
    status: StatusCode,
) -> Response {
    let hosts = hosts_for(api).await;
    #[derive(serde::Serialize)]
    struct One<'a> {
        server: ServerView<'a>,
    }
    let one = One {
        server: ServerView {
            api,
            server: s,
            opts,
            hosts: &hosts,
        },
    };
    json_bytes(status, &one, 2048)
}

/// A JSON response serialized straight from `body` into one buffer of about `size_hint`
/// bytes (no intermediate `Value`).
fn json_bytes(status: StatusCode, body: &impl serde::Serialize, size_hint: usize) -> Response {
    let mut buf = Vec::with_capacity(size_hint);
    if let Err(e) = serde_json::to_writer(&mut buf, body) {
        // Only a failing `Serialize` impl could get here: the views hold plain data.
        return super::fault::ComputeError(Error::internal(format!("render: {e}"))).into_response();
    }
    (
        status,
        [(
            axum::http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        buf,
    )
        .into_response()
}

// ---- listing ----

/// Query keys Nova's schema knows (2.75 makes anything else a 400).
const KNOWN_QUERY: &[&str] = &[
    "user_id",
    "project_id",
    "tenant_id",
    "launch_index",
    "image_ref",
    "image",
    "kernel_id",
    "ramdisk_id",
    "hostname",
    "key_name",
    "power_state",
    "vm_state",
    "task_state",
    "host",
    "node",
    "flavor",
    "reservation_id",
    "launched_at",
    "terminated_at",
    "availability_zone",
    "name",
    "display_name",
    "description",
    "display_description",
    "locked_by",
    "uuid",
    "root_device_name",
    "config_drive",
    "access_ip_v4",
    "access_ip_v6",
    "auto_disk_config",
    "progress",
    "sort_key",
    "sort_dir",
    "all_tenants",
    "soft_deleted",
    "deleted",
    "status",
    "changes-since",
    "ip",
    "ip6",
    "created_at",
    "tags",
    "tags-any",
    "not-tags",
    "not-tags-any",
    "changes-before",
    "locked",
    "limit",
    "marker",
];

/// Nova's `VALID_SORT_KEYS` for server lists (schemas/servers.py), less the ignored ones.
/// Keys we cannot order by (kernel_id, ramdisk_id, ...) are accepted and have no effect, as
/// sorting by a column that is empty on every row would have in Nova.
const NOVA_SORT_KEYS: &[&str] = &[
    "access_ip_v4",
    "access_ip_v6",
    "auto_disk_config",
    "availability_zone",
    "config_drive",
    "created_at",
    "display_description",
    "display_name",
    "host",
    "hostname",
    "image_ref",
    "instance_type_id",
    "kernel_id",
    "key_name",
    "launch_index",
    "launched_at",
    "locked_by",
    "node",
    "power_state",
    "progress",
    "project_id",
    "ramdisk_id",
    "root_device_name",
    "task_state",
    "terminated_at",
    "updated_at",
    "user_id",
    "uuid",
    "vm_state",
];

/// Nova's `SERVER_LIST_IGNORE_SORT_KEY`: valid in the schema but dropped (`locked` becomes
/// a real key at 2.73).
const NOVA_IGNORED_SORT_KEYS: &[&str] = &[
    "architecture",
    "cell_name",
    "cleaned",
    "default_ephemeral_device",
    "default_swap_device",
    "deleted",
    "deleted_at",
    "disable_terminate",
    "ephemeral_gb",
    "ephemeral_key_uuid",
    "id",
    "key_data",
    "launched_on",
    "locked",
    "memory_mb",
    "os_type",
    "reservation_id",
    "root_gb",
    "shutdown_terminate",
    "user_data",
    "vcpus",
    "vm_mode",
];

fn truthy(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "t" | "true" | "on" | "y" | "yes" | "" => Some(true),
        "0" | "f" | "false" | "off" | "n" | "no" => Some(false),
        _ => None,
    }
}

/// Build the store filter from Nova's query parameters. Non-admins get only the options
/// Nova lets them use (others are dropped silently before 2.75, as Nova does).
fn list_query(api: &Api, detailed: bool) -> Result<Option<ServerListQuery>, Error> {
    api.check_query(KNOWN_QUERY)?;
    for (k, _) in &api.query {
        if k.starts_with('_')
            || matches!(
                k.as_str(),
                "block_device_mapping"
                    | "services"
                    | "metadata"
                    | "system_metadata"
                    | "info_cache"
                    | "security_groups"
                    | "pci_devices"
            )
        {
            return Err(Error::invalid(format!("Invalid filter field: {k}.")));
        }
    }
    let v = api.v;
    let admin = api.ctx.is_admin();
    let mut allowed: Vec<&str> = vec![
        "reservation_id",
        "name",
        "status",
        "image",
        "flavor",
        "ip",
        "changes-since",
        "all_tenants",
    ];
    if v.at_least(5) {
        allowed.push("ip6");
    }
    if v.at_least(26) {
        allowed.extend(["tags", "tags-any", "not-tags", "not-tags-any"]);
    }
    if v.at_least(66) {
        allowed.push("changes-before");
    }
    if v.at_least(73) {
        allowed.push("locked");
    }
    if v.at_least(83) {
        allowed.extend([
            "availability_zone",
            "config_drive",
            "key_name",
            "created_at",
            "launched_at",
            "terminated_at",
            "power_state",
            "task_state",
            "vm_state",
            "progress",
            "user_id",
        ]);
    }
    if v.at_least(90) {
        allowed.push("hostname");
    }
    let may = |k: &str| {
        admin || allowed.contains(&k) || matches!(k, "limit" | "marker" | "sort_key" | "sort_dir")
    };
    let get = |k: &str| if may(k) { api.param(k) } else { None };
    let mut f = ServerFilter::default();
    let statuses = if may("status") {
        api.params("status")
    } else {
        Vec::new()
    };
    if !statuses.is_empty() {
        let mut vms = Vec::new();
        let mut tasks: Option<Vec<TaskState>> = Some(Vec::new());
        let mut any_valid = false;
        for st in statuses {
            if st.eq_ignore_ascii_case("deleted") {
                if !admin {
                    return Err(Error::Forbidden(
                        "Only administrators may list deleted instances".into(),
                    ));
                }
                f.only_deleted = true;
                any_valid = true;
                continue;
            }
            if let Some((vs, ts)) = states_for_openstack_status(st) {
                any_valid = true;
                vms.extend(vs);
                match (ts, tasks.as_mut()) {
                    (Some(t), Some(acc)) => acc.extend(t),
                    (None, _) => tasks = None,
                    _ => {}
                }
            }
        }
        if !any_valid {
            if v.at_least(38) {
                return Err(Error::invalid("Invalid status value"));
            }
            return Ok(None);
        }
        if !vms.is_empty() {
            f.vm_states = Some(vms);
        }
        f.task_states = tasks.filter(|t| !t.is_empty());
    }
    if let Some(n) = get("name").or_else(|| {
        if admin {
            api.param("display_name")
        } else {
            None
        }
    }) {
        f.name_regex = Some(n.to_owned());
    }
    if let Some(i) = get("image").or_else(|| if admin { api.param("image_ref") } else { None }) {
        let id = i.rsplit('/').next().unwrap_or(i);
        match id.parse::<ImageId>() {
            Ok(id) => f.image_id = Some(id),
            Err(_) => return Ok(None),
        }
    }
    if let Some(fl) = get("flavor") {
        f.flavor_id = Some(FlavorId::from(fl.rsplit('/').next().unwrap_or(fl)));
    }
    if let Some(r) = get("reservation_id") {
        f.reservation_id = Some(r.to_owned());
    }
    let since = match get("changes-since") {
        Some(s) => Some(parse_iso(s).ok_or_else(|| Error::invalid(format!("Invalid input for query parameters changes-since. Value: {s}. '{s}' is not a 'date-time'")))?),
        None => None,
    };
    let before = match get("changes-before") {
        Some(s) => Some(parse_iso(s).ok_or_else(|| Error::invalid(format!("Invalid input for query parameters changes-before. Value: {s}. '{s}' is not a 'date-time'")))?),
        None => None,
    };
    if let (Some(a), Some(b)) = (since, before)
        && b < a
    {
        return Err(Error::invalid(
            "The value of changes-since must be less than or equal to changes-before.",
        ));
    }
    f.changes_since = since;
    f.changes_before = before;
    // changes-since/before include deleted servers; otherwise deleted ones are hidden
    // unless an admin asks for them.
    match (admin, api.param("deleted").and_then(truthy)) {
        (true, Some(true)) => f.only_deleted = true,
        _ if since.is_some() || before.is_some() => f.include_deleted = true,
        _ => {}
    }
    let split = |k: &str| -> Vec<String> {
        get(k)
            .map(|t| {
                t.split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    if v.at_least(26) {
        f.tags = split("tags");
        f.tags_any = split("tags-any");
        f.not_tags = split("not-tags");
        f.not_tags_any = split("not-tags-any");
    }
    if let Some(l) = get("locked") {
        f.locked = Some(truthy(l).ok_or_else(|| Error::invalid(format!("Unrecognized value '{l}', acceptable values are: '0', '1', 'f', 'false', 'n', 'no', 'off', 'on', 't', 'true', 'y', 'yes'")))?);
    }
    if let Some(az) = get("availability_zone") {
        f.availability_zone = Some(az.to_owned());
    }
    if let Some(k) = get("key_name") {
        f.key_name = Some(k.to_owned());
    }
    if let Some(vm) = get("vm_state") {
        let s = VmState::parse(vm)
            .ok_or_else(|| Error::invalid(format!("Invalid vm_state filter: {vm}")))?;
        f.vm_states = Some(vec![s]);
    }
    if let Some(t) = get("task_state") {
        let s = TaskState::parse(t)
            .ok_or_else(|| Error::invalid(format!("Invalid task_state filter: {t}")))?;
        f.task_states = Some(vec![s]);
    }
    if admin {
        if let Some(h) = api.param("host") {
            f.host = Some(h.to_owned());
        }
        if let Some(u) = api.param("uuid") {
            f.ids = Some(u.parse().map(|id| vec![id]).unwrap_or_default());
        }
    }
    if let Some(u) = get("user_id") {
        f.user_id = Some(u.into());
    }
    // Fields Nova matches by regex over their text.
    for key in [
        "power_state",
        "progress",
        "config_drive",
        "created_at",
        "launched_at",
        "terminated_at",
        "hostname",
        "description",
        "display_description",
    ] {
        if let (Some(value), Some(field)) = (get(key), RegexField::parse(key)) {
            f.regex.push((field, value.to_owned()));
        }
    }
    f.ip_regex = get("ip").map(str::to_owned);
    f.ip6_regex = get("ip6").map(str::to_owned);
    // Nova: all_tenants goes through oslo's strict bool_from_string (400 on anything else),
    // and a true value is a policy check (admin only: 403), not a silent downgrade.
    let all_tenants = match api.param("all_tenants") {
        None => false,
        // The empty string enables it (`?all_tenants`), as in Nova's is_all_tenants.
        Some(raw) => match truthy(raw) {
            Some(b) => b,
            None => {
                return Err(Error::invalid(format!(
                    "Invalid input received: Unrecognized value '{raw}', acceptable values are: '0', '1', 'f', 'false', 'n', 'no', 'off', 'on', 't', 'true', 'y', 'yes'"
                )));
            }
        },
    };
    if all_tenants && !admin {
        let rule = if detailed { "detail" } else { "index" };
        return Err(Error::Forbidden(format!(
            "Policy doesn't allow os_compute_api:servers:{rule}:get_all_tenants to be performed."
        )));
    }
    if admin
        && let Some(p) = api.param("project_id").or_else(|| api.param("tenant_id"))
        && all_tenants
    {
        f.project_id = Some(p.into());
    }
    // Sorting: repeated sort_key/sort_dir pairs. Nova's query schema holds every key to its
    // enum (400 otherwise, at every microversion); keys it lists as "ignored" for backward
    // compatibility are dropped, as are host/node for non-admins.
    let keys = api.params("sort_key");
    let dirs = api.params("sort_dir");
    for d in &dirs {
        if !matches!(*d, "asc" | "desc") {
            return Err(Error::invalid(format!(
                "Invalid input for query parameters sort_dir. Value: {d}. '{d}' is not one of ['asc', 'desc']"
            )));
        }
    }
    let mut sort = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        if !NOVA_SORT_KEYS.contains(k) && !NOVA_IGNORED_SORT_KEYS.contains(k) {
            let all: Vec<String> = NOVA_SORT_KEYS
                .iter()
                .chain(NOVA_IGNORED_SORT_KEYS)
                .map(|k| format!("'{k}'"))
                .collect();
            return Err(Error::invalid(format!(
                "Invalid input for query parameters sort_key. Value: {k}. '{k}' is not one of [{}]",
                all.join(", ")
            )));
        }
        let dir = match dirs.get(i).or(dirs.last()).copied().unwrap_or("desc") {
            "asc" => SortDir::Asc,
            _ => SortDir::Desc,
        };
        let ignored = NOVA_IGNORED_SORT_KEYS.contains(k) && !(*k == "locked" && v.at_least(73));
        if ignored || (matches!(*k, "host" | "node") && !admin) {
            continue;
        }
        if let Some(key) = ServerSortKey::parse(k) {
            sort.push((key, dir));
        }
    }
    if sort.is_empty() {
        sort = ServerPage::default().sort;
    }
    let marker = match api.param("marker") {
        Some(m) => Some(
            m.parse()
                .map_err(|_| Error::invalid(format!("marker [{m}] not found")))?,
        ),
        None => None,
    };
    Ok(Some(ServerListQuery {
        filter: f,
        page: ServerPage {
            sort,
            marker,
            limit: api.limit()?,
        },
        all_tenants,
    }))
}

async fn list(api: &Api, detailed: bool) -> ComputeResult {
    let Some(q) = list_query(api, detailed)? else {
        return Ok(crate::common::json(StatusCode::OK, json!({"servers": []})));
    };
    let servers = api.control().servers_list(&api.ctx, q).await?;
    let coll = if detailed {
        "servers/detail"
    } else {
        "servers"
    };
    let last = servers.last().map(|s| s.id.to_string());
    let links = api.collection_links(coll, servers.len(), last.as_deref());
    if !detailed {
        let items: Vec<Value> = servers
            .iter()
            .map(|s| json!({"id": s.id.to_string(), "name": s.name, "links": api.links.pair("servers", &s.id.to_string())}))
            .collect();
        let mut body = json!({"servers": items});
        if let Some(links) = links {
            body["servers_links"] = links;
        }
        return Ok(crate::common::json(StatusCode::OK, body));
    }
    // The detail page is serialized straight from the servers (see `ServerView`): no
    // intermediate `Value` per server, and one buffer sized for the whole page.
    #[derive(serde::Serialize)]
    struct Page<'a> {
        servers: Vec<ServerView<'a>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        servers_links: Option<Value>,
    }
    let hosts = hosts_for(api).await;
    let page = Page {
        servers: servers
            .iter()
            .map(|s| ServerView {
                api,
                server: s,
                opts: ShowOpts::DETAIL,
                hosts: &hosts,
            })
            .collect(),
        servers_links: links,
    };
    Ok(json_bytes(StatusCode::OK, &page, 64 + servers.len() * 1700))
}

async fn index(api: Api) -> ComputeResult {
    list(&api, false).await
}

async fn detail(api: Api) -> ComputeResult {
    list(&api, true).await
}

async fn show(api: Api, Path(id): Path<String>) -> ComputeResult {
    let s = api.control().server_get(&api.ctx, server_id(&id)?).await?;
    Ok(server_response(&api, &s, ShowOpts::SHOW, StatusCode::OK).await)
}

// ---- create ----

/// Nova booleans accept JSON booleans and the usual strings.
#[derive(Clone, Copy, Debug)]
pub struct Flag(pub bool);

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        match &v {
            Value::Bool(b) => Ok(Flag(*b)),
            Value::String(s) => truthy(s)
                .filter(|_| !s.is_empty())
                .map(Flag)
                .ok_or_else(|| serde::de::Error::custom(format!("{s} is not of type 'boolean'"))),
            _ => Err(serde::de::Error::custom(format!(
                "{v} is not of type 'boolean'"
            ))),
        }
    }
}

/// A string that clients may also send as a number (flavorRef, min_count, ...).
#[derive(Clone, Debug)]
pub struct StrOrInt(pub String);

impl<'de> Deserialize<'de> for StrOrInt {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::String(s) => Ok(StrOrInt(s)),
            Value::Number(n) => Ok(StrOrInt(n.to_string())),
            other => Err(serde::de::Error::custom(format!(
                "{other} is not of type 'string', 'integer'"
            ))),
        }
    }
}

fn positive(field: &str, v: &Option<StrOrInt>) -> Result<Option<u32>, Error> {
    match v {
        None => Ok(None),
        Some(s) => match s.0.parse::<u32>() {
            Ok(n) if n >= 1 => Ok(Some(n)),
            _ => Err(Error::invalid(format!(
                "Invalid input for field/attribute {field}. Value: {}. '{}' is not a positive integer",
                s.0, s.0
            ))),
        },
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    server: CreateServer,
    #[serde(rename = "os:scheduler_hints", default)]
    hints: Option<Value>,
    #[serde(rename = "OS-SCH-HNT:scheduler_hints", default)]
    hints_alt: Option<Value>,
}

#[derive(Deserialize, Clone)]
pub struct PersonalityFile {
    pub path: String,
    pub contents: String,
}

/// One block-device mapping. Every field Nova accepts is parsed (so unknown keys are
/// rejected) even where Nimbus only needs a few.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Bdm {
    source_type: Option<String>,
    destination_type: Option<String>,
    uuid: Option<String>,
    boot_index: Option<Value>,
    #[serde(default)]
    delete_on_termination: Option<Flag>,
    #[serde(default)]
    volume_size: Option<Value>,
    #[serde(default)]
    device_name: Option<String>,
    #[serde(default)]
    guest_format: Option<String>,
    #[serde(default)]
    device_type: Option<String>,
    #[serde(default)]
    disk_bus: Option<String>,
    #[serde(default)]
    image_id: Option<String>,
    #[serde(default)]
    volume_id: Option<String>,
    #[serde(default)]
    snapshot_id: Option<String>,
    #[serde(default)]
    tag: Option<String>,
    #[serde(default)]
    volume_type: Option<String>,
    #[serde(default)]
    no_device: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateServer {
    name: String,
    #[serde(rename = "imageRef", default)]
    image_ref: Option<String>,
    #[serde(rename = "flavorRef")]
    flavor_ref: StrOrInt,
    #[serde(rename = "adminPass", default)]
    admin_pass: Option<String>,
    #[serde(default)]
    metadata: Option<BTreeMap<String, String>>,
    #[serde(default)]
    networks: Option<Value>,
    #[serde(rename = "OS-DCF:diskConfig", default)]
    disk_config: Option<String>,
    #[serde(rename = "accessIPv4", default)]
    access_ipv4: Option<String>,
    #[serde(rename = "accessIPv6", default)]
    access_ipv6: Option<String>,
    #[serde(default)]
    personality: Option<Vec<PersonalityFile>>,
    #[serde(default)]
    availability_zone: Option<String>,
    #[serde(default)]
    block_device_mapping: Option<Vec<Value>>,
    #[serde(default)]
    block_device_mapping_v2: Option<Vec<Bdm>>,
    #[serde(default)]
    config_drive: Option<Flag>,
    #[serde(default)]
    key_name: Option<String>,
    #[serde(default)]
    min_count: Option<StrOrInt>,
    #[serde(default)]
    max_count: Option<StrOrInt>,
    #[serde(default)]
    return_reservation_id: Option<Flag>,
    #[serde(default)]
    security_groups: Option<Vec<SecGroup>>,
    #[serde(default)]
    user_data: Option<String>,
    #[serde(default)]
    description: Option<Option<String>>,
    #[serde(default)]
    tags: Option<Vec<String>>,
    #[serde(default)]
    trusted_image_certificates: Option<Value>,
    #[serde(default)]
    host: Option<String>,
    #[serde(default)]
    hypervisor_hostname: Option<String>,
    #[serde(default)]
    hostname: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecGroup {
    name: String,
}

fn unexpected(field: &str) -> Error {
    Error::invalid(format!(
        "Invalid input for field/attribute server. Additional properties are not allowed ('{field}' was unexpected)"
    ))
}

/// Nova's `hostname` parameter: a single label from 2.90, an FQDN from 2.94.
pub fn validate_hostname(v: super::microversion::Version, h: &str) -> Result<(), Error> {
    let ok = if v.at_least(94) {
        !h.is_empty()
            && h.len() <= 255
            && h.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
    } else {
        (2..=63).contains(&h.len())
            && h.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !h.starts_with('-')
            && !h.ends_with('-')
    };
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "Invalid input for field/attribute hostname. Value: {h}. '{h}' is not a valid hostname"
        )))
    }
}

/// A reference that may be a URL (`http://.../flavors/1`): take the last segment.
pub fn id_from_href(r: &str) -> &str {
    r.trim_end_matches('/').rsplit('/').next().unwrap_or(r)
}

fn networks_request(api: &Api, v: Option<Value>) -> Result<NetworkRequest, Error> {
    let Some(v) = v else {
        if api.v.at_least(37) {
            return Err(Error::invalid(
                "Invalid input for field/attribute server. 'networks' is a required property",
            ));
        }
        return Ok(NetworkRequest::Auto);
    };
    match v {
        Value::String(s) if api.v.at_least(37) && s == "auto" => Ok(NetworkRequest::Auto),
        Value::String(s) if api.v.at_least(37) && s == "none" => Ok(NetworkRequest::None),
        Value::Array(items) => {
            let mut nics = Vec::new();
            for item in items {
                let o = item.as_object().ok_or_else(|| {
                    Error::invalid(
                        "Invalid input for field/attribute networks. Value must be an object",
                    )
                })?;
                for k in o.keys() {
                    let ok = matches!(k.as_str(), "uuid" | "port" | "fixed_ip")
                        || (k == "tag" && api.v.at_least(32));
                    if !ok {
                        return Err(Error::invalid(format!(
                            "Invalid input for field/attribute networks. Additional properties are not allowed ('{k}' was unexpected)"
                        )));
                    }
                }
                let s = |k: &str| o.get(k).and_then(Value::as_str).map(str::to_owned);
                if let Some(u) = s("uuid")
                    && api.v.at_least(37)
                    && uuid::Uuid::parse_str(&u).is_err()
                {
                    return Err(Error::invalid(format!(
                        "Invalid input for field/attribute uuid. Value: {u}. '{u}' is not a 'uuid'"
                    )));
                }
                nics.push(RequestedNic {
                    network_id: s("uuid"),
                    port_id: s("port"),
                    fixed_ip: s("fixed_ip"),
                    tag: s("tag"),
                });
            }
            Ok(NetworkRequest::List(nics))
        }
        other => Err(Error::invalid(format!(
            "Invalid input for field/attribute networks. Value: {other}. {other} is not valid under any of the given schemas"
        ))),
    }
}

/// The image a create boots from: `imageRef`, or the boot-index-0 image of the
/// block-device mapping (as OpenStackClient sends it).
fn boot_image(image_ref: Option<&str>, bdms: &[Bdm]) -> Result<Option<ImageId>, Error> {
    let mut from_bdm = None;
    for b in bdms {
        let boot0 = match &b.boot_index {
            Some(Value::Number(n)) => n.as_i64() == Some(0),
            Some(Value::String(s)) => s == "0",
            _ => false,
        };
        let source = b
            .source_type
            .as_deref()
            .unwrap_or(if b.volume_id.is_some() {
                "volume"
            } else {
                "image"
            });
        let dest = b.destination_type.as_deref().unwrap_or("local");
        if dest == "volume"
            || source == "volume"
            || source == "snapshot"
            || b.volume_id.is_some()
            || b.snapshot_id.is_some()
        {
            return Err(Error::invalid(
                "Block device mappings with volumes are not supported: Nimbus has no block storage service yet. Boot from an image with destination_type local.",
            ));
        }
        if boot0 && source == "image" {
            from_bdm = b.uuid.clone().or_else(|| b.image_id.clone());
        }
    }
    let chosen = match image_ref.filter(|s| !s.is_empty()) {
        Some(r) => Some(id_from_href(r).to_owned()),
        None => from_bdm,
    };
    match chosen {
        None => Ok(None),
        Some(s) => s.parse::<ImageId>().map(Some).map_err(|_| {
            Error::invalid(format!(
                "Invalid input for field/attribute imageRef. Value: {s}. '{s}' is not a 'uuid'"
            ))
        }),
    }
}

fn scheduler_group(hints: Option<&Value>) -> Result<Option<ServerGroupId>, Error> {
    let Some(g) = hints.and_then(|h| h.get("group")) else {
        return Ok(None);
    };
    let s = match g {
        Value::String(s) => s.clone(),
        Value::Array(a) if a.len() == 1 => a[0].as_str().unwrap_or_default().to_owned(),
        _ => return Err(Error::invalid("Invalid input for field/attribute group.")),
    };
    s.parse().map(Some).map_err(|_| {
        Error::invalid(format!(
            "Invalid input for field/attribute group. Value: {s}. '{s}' is not a 'uuid'"
        ))
    })
}

async fn create(api: Api, JsonBody(body): JsonBody<CreateBody>) -> ComputeResult {
    let v = api.v;
    let s = body.server;
    if s.description.is_some() && !v.at_least(19) {
        return Err(unexpected("description").into());
    }
    if s.tags.is_some() && !v.at_least(52) {
        return Err(unexpected("tags").into());
    }
    if s.personality.is_some() && v.at_least(57) {
        return Err(unexpected("personality").into());
    }
    if s.trusted_image_certificates.is_some() && !v.at_least(63) {
        return Err(unexpected("trusted_image_certificates").into());
    }
    if (s.host.is_some() || s.hypervisor_hostname.is_some()) && !v.at_least(74) {
        return Err(unexpected(if s.host.is_some() {
            "host"
        } else {
            "hypervisor_hostname"
        })
        .into());
    }
    if s.hostname.is_some() && !v.at_least(90) {
        return Err(unexpected("hostname").into());
    }
    if let Some(h) = &s.hostname {
        validate_hostname(v, h)?;
    }
    if s.block_device_mapping
        .as_ref()
        .is_some_and(|b| !b.is_empty())
    {
        return Err(Error::invalid(
            "Legacy block_device_mapping is not supported by Nimbus; use block_device_mapping_v2.",
        )
        .into());
    }
    if let Some(d) = &s.disk_config
        && !matches!(d.as_str(), "AUTO" | "MANUAL")
    {
        return Err(Error::invalid(format!("Invalid input for field/attribute OS-DCF:diskConfig. Value: {d}. '{d}' is not one of ['AUTO', 'MANUAL']")).into());
    }
    if let Some(Value::Array(c)) = &s.trusted_image_certificates
        && !c.is_empty()
    {
        return Err(
            Error::invalid("Image certificate validation is not supported by Nimbus.").into(),
        );
    }
    let networks = networks_request(&api, s.networks)?;
    let image_id = boot_image(
        s.image_ref.as_deref(),
        s.block_device_mapping_v2.as_deref().unwrap_or(&[]),
    )?;
    let min = positive("min_count", &s.min_count)?;
    let max = positive("max_count", &s.max_count)?;
    if let (Some(a), Some(b)) = (min, max)
        && a > b
    {
        return Err(Error::invalid("min_count must be <= max_count").into());
    }
    let hints = body.hints.or(body.hints_alt);
    let group = scheduler_group(hints.as_ref())?;
    let mut az = s.availability_zone.clone();
    if s.host.is_some() || s.hypervisor_hostname.is_some() {
        if !api.ctx.is_admin() {
            return Err(Error::Forbidden("Policy doesn't allow compute:servers:create:requested_destination to be performed.".into()).into());
        }
        let host = s
            .host
            .clone()
            .or(s.hypervisor_hostname.clone())
            .unwrap_or_default();
        az = Some(format!("{}:{host}", az.unwrap_or_default()));
    }
    let req = ServerCreate {
        name: s.name,
        image_id,
        flavor_id: FlavorId::from(id_from_href(&s.flavor_ref.0)),
        key_name: s.key_name,
        metadata: s.metadata.unwrap_or_default(),
        tags: s.tags.unwrap_or_default(),
        description: s.description.flatten(),
        availability_zone: az,
        user_data: s.user_data,
        personality: s
            .personality
            .unwrap_or_default()
            .into_iter()
            .map(|p| Personality {
                path: p.path,
                contents: p.contents,
            })
            .collect(),
        min_count: min.unwrap_or(1),
        max_count: max.or(min).unwrap_or(1),
        networks,
        security_groups: s
            .security_groups
            .unwrap_or_default()
            .into_iter()
            .map(|g| g.name)
            .collect(),
        admin_pass: s.admin_pass,
        config_drive: s.config_drive.is_some_and(|f| f.0),
        access_ipv4: s.access_ipv4,
        access_ipv6: s.access_ipv6,
        hostname: s.hostname,
        server_group: group,
        ha: false,
        disk_pool: None,
        volumes: Vec::new(),
    };
    let created = api.control().server_create(&api.ctx, req).await?;
    if s.return_reservation_id.is_some_and(|f| f.0) {
        return Ok(crate::common::json(
            StatusCode::ACCEPTED,
            json!({"reservation_id": created.reservation_id}),
        ));
    }
    let first = created
        .servers
        .first()
        .ok_or_else(|| Error::internal("create returned no server"))?;
    let id = first.id.to_string();
    let mut server = json!({
        "id": id,
        "links": api.links.pair("servers", &id),
        "OS-DCF:diskConfig": s.disk_config.unwrap_or_else(|| "MANUAL".into()),
        "security_groups": first.security_groups.iter().map(|g| json!({"name": g})).collect::<Vec<_>>(),
    });
    if let Some(p) = created.admin_pass {
        server["adminPass"] = json!(p);
    }
    let mut resp = crate::common::json(StatusCode::ACCEPTED, json!({"server": server}));
    if let Ok(loc) = HeaderValue::from_str(&api.links.href("servers", &id)) {
        resp.headers_mut().insert("location", loc);
    }
    Ok(resp)
}

// ---- update and delete ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    server: Map<String, Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateFields {
    #[serde(default)]
    name: Option<String>,
    #[serde(rename = "OS-DCF:diskConfig", default)]
    disk_config: Option<String>,
    #[serde(rename = "accessIPv4", default)]
    access_ipv4: Option<Option<String>>,
    #[serde(rename = "accessIPv6", default)]
    access_ipv6: Option<Option<String>>,
    #[serde(default)]
    description: Option<Option<String>>,
    #[serde(default)]
    hostname: Option<String>,
}

async fn update(
    api: Api,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<UpdateBody>,
) -> ComputeResult {
    let id = server_id(&id)?;
    if body.server.contains_key("description") && !api.v.at_least(19) {
        return Err(unexpected("description").into());
    }
    if body.server.contains_key("hostname") && !api.v.at_least(90) {
        return Err(unexpected("hostname").into());
    }
    let f: UpdateFields = from_value(Value::Object(body.server))?;
    if let Some(h) = &f.hostname {
        validate_hostname(api.v, h)?;
    }
    if let Some(d) = &f.disk_config
        && !matches!(d.as_str(), "AUTO" | "MANUAL")
    {
        return Err(Error::invalid(format!(
            "Invalid input for field/attribute OS-DCF:diskConfig. Value: {d}."
        ))
        .into());
    }
    let upd = ServerUpdate {
        name: f.name,
        description: f.description,
        hostname: f.hostname,
        access_ipv4: f.access_ipv4,
        access_ipv6: f.access_ipv6,
        ha: None,
        tags: None,
        metadata: None,
    };
    let s = api.control().server_update(&api.ctx, id, upd).await?;
    let opts = if api.v.at_least(75) {
        ShowOpts::SHOW
    } else {
        ShowOpts::SHORT
    };
    Ok(server_response(&api, &s, opts, StatusCode::OK).await)
}

async fn delete(api: Api, Path(id): Path<String>) -> ComputeResult {
    api.control()
        .server_delete(&api.ctx, server_id(&id)?)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
