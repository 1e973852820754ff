//! One core, five views: servers created, acted on, renamed and deleted through one dialect
//! are seen, consistently and at once, through every other (OpenStack `/compute/v2.1`,
//! Cyclades `/compute/v2.0`, Mogan `/v1/instances`, VPE `/instances`, Alliance `/servers`);
//! and concurrent Cyclades NIC allocations on one network never hand out an address or a
//! MAC twice, refusing what does not fit with the Cyclades fault.
//!
//! Each check waits for the acting operation to settle in one view only (no task running),
//! then reads every other view without waiting: they are views of one record, so any
//! disagreement is a bug, not a race.

use crate::alliance::alliance_fault;
use crate::common::{Cloud, Session};
use crate::cyclades::{create_active, fault_name, wait_cy};
use crate::mogan::expect_fault as mogan_fault_is;
use crate::vpe::{assert_fault as vpe_fault_is, vpe_create, vpe_settle};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::time::Duration;

const CY: &str = "/compute/v2.0";
const OS: &str = "/compute/v2.1";

// ---- helpers ----

/// A settled server state, as each dialect names it (docs/dialects/*.md).
#[derive(Clone, Copy, Debug)]
enum State {
    Active,
    Stopped,
}

impl State {
    /// OpenStack `status` (Alliance shows the same words).
    fn openstack(self) -> &'static str {
        match self {
            State::Active => "ACTIVE",
            State::Stopped => "SHUTOFF",
        }
    }

    fn cyclades(self) -> &'static str {
        match self {
            State::Active => "ACTIVE",
            State::Stopped => "STOPPED",
        }
    }

    /// Mogan `status` and `power_state`.
    fn mogan(self) -> (&'static str, &'static str) {
        match self {
            State::Active => ("active", "power on"),
            State::Stopped => ("stopped", "power off"),
        }
    }

    fn vpe(self) -> &'static str {
        match self {
            State::Active => "active",
            State::Stopped => "shutoff",
        }
    }
}

/// GET that must answer 200; returns the body.
async fn get_ok(c: &Cloud, s: &Session, path: &str) -> Value {
    let (st, v) = c.get(s, path).await;
    assert_eq!(st, StatusCode::OK, "GET {path}: {v}");
    v
}

/// The item of the list at `path` (under `key`) whose `field` is `id`, if listed.
async fn listed(c: &Cloud, s: &Session, path: &str, key: &str, field: &str, id: &Value) -> Value {
    let v = get_ok(c, s, path).await;
    let items = v[key]
        .as_array()
        .unwrap_or_else(|| panic!("GET {path}: no '{key}' list: {v}"));
    items
        .iter()
        .find(|i| &i[field] == id)
        .cloned()
        .unwrap_or(Value::Null)
}

/// The OpenStack id of the (uniquely named) server `name`.
async fn os_id(c: &Cloud, s: &Session, name: &str) -> String {
    let v = get_ok(c, s, &format!("{OS}/servers/detail")).await;
    v["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == name)
        .and_then(|i| i["id"].as_str())
        .unwrap_or_else(|| panic!("'{name}' not listed by OpenStack: {v}"))
        .to_owned()
}

/// The Cyclades id (serial) of the (uniquely named) server `name`.
async fn cy_serial(c: &Cloud, s: &Session, name: &str) -> i64 {
    let v = get_ok(c, s, &format!("{CY}/servers/detail")).await;
    v["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == name)
        .and_then(|i| i["id"].as_i64())
        .unwrap_or_else(|| panic!("'{name}' not listed by Cyclades: {v}"))
}

/// Every dialect shows the server (by its own id, in its show and its list) with this name
/// and this state, and no task in flight.
async fn seen_everywhere(c: &Cloud, s: &Session, uuid: &str, serial: i64, name: &str, st: State) {
    let ctx = format!("{name} ({uuid}, serial {serial}) {st:?}");

    // OpenStack.
    let v = get_ok(c, s, &format!("{OS}/servers/{uuid}")).await;
    let os = &v["server"];
    assert_eq!(os["name"], name, "OpenStack show, {ctx}: {v}");
    assert_eq!(os["status"], st.openstack(), "OpenStack show, {ctx}: {v}");
    assert!(os["OS-EXT-STS:task_state"].is_null(), "{ctx}: {v}");
    let item = listed(
        c,
        s,
        &format!("{OS}/servers/detail"),
        "servers",
        "id",
        &json!(uuid),
    )
    .await;
    assert_eq!(item["name"], name, "OpenStack list, {ctx}: {item}");
    assert_eq!(
        item["status"],
        st.openstack(),
        "OpenStack list, {ctx}: {item}"
    );

    // Cyclades.
    let v = get_ok(c, s, &format!("{CY}/servers/{serial}")).await;
    assert_eq!(v["server"]["name"], name, "Cyclades show, {ctx}: {v}");
    assert_eq!(
        v["server"]["status"],
        st.cyclades(),
        "Cyclades show, {ctx}: {v}"
    );
    let item = listed(
        c,
        s,
        &format!("{CY}/servers/detail"),
        "servers",
        "id",
        &json!(serial),
    )
    .await;
    assert_eq!(item["name"], name, "Cyclades list, {ctx}: {item}");
    assert_eq!(
        item["status"],
        st.cyclades(),
        "Cyclades list, {ctx}: {item}"
    );

    // Mogan.
    let (status, power) = st.mogan();
    let v = get_ok(c, s, &format!("/v1/instances/{uuid}")).await;
    assert_eq!(v["name"], name, "Mogan show, {ctx}: {v}");
    assert_eq!(v["status"], status, "Mogan show, {ctx}: {v}");
    assert_eq!(v["power_state"], power, "Mogan show, {ctx}: {v}");
    let v = get_ok(c, s, &format!("/v1/instances/{uuid}/states")).await;
    assert_eq!(
        (&v["status"], &v["power_state"], &v["target_power_state"]),
        (&json!(status), &json!(power), &Value::Null),
        "Mogan states, {ctx}: {v}"
    );
    let item = listed(
        c,
        s,
        "/v1/instances/detail",
        "instances",
        "uuid",
        &json!(uuid),
    )
    .await;
    assert_eq!(item["name"], name, "Mogan list, {ctx}: {item}");
    assert_eq!(item["status"], status, "Mogan list, {ctx}: {item}");
    assert_eq!(item["power_state"], power, "Mogan list, {ctx}: {item}");

    // VPE.
    let v = get_ok(c, s, &format!("/instances/{uuid}")).await;
    let vpe = &v["instance"];
    assert_eq!(vpe["name"], name, "VPE show, {ctx}: {v}");
    assert_eq!(vpe["status"], st.vpe(), "VPE show, {ctx}: {v}");
    assert!(vpe["task"].is_null(), "VPE show, {ctx}: {v}");
    let item = listed(c, s, "/instances", "instances", "uuid", &json!(uuid)).await;
    assert_eq!(item["name"], name, "VPE list, {ctx}: {item}");
    assert_eq!(item["status"], st.vpe(), "VPE list, {ctx}: {item}");

    // Alliance, by name (its own way of addressing servers).
    let v = get_ok(c, s, &format!("/servers/{name}")).await;
    assert_eq!(v["server"]["id"], uuid, "Alliance show, {ctx}: {v}");
    assert_eq!(v["server"]["name"], name, "Alliance show, {ctx}: {v}");
    assert_eq!(
        v["server"]["status"],
        st.openstack(),
        "Alliance show, {ctx}: {v}"
    );
    let item = listed(c, s, "/servers", "servers", "id", &json!(uuid)).await;
    assert_eq!(item["name"], name, "Alliance list, {ctx}: {item}");

    // The same NICs (MAC and addresses) in every dialect that shows them.
    let cy = nic_pairs_cyclades(&get_ok(c, s, &format!("{CY}/servers/{serial}")).await);
    assert!(!cy.is_empty(), "{ctx}: no NICs");
    let os = nic_pairs_openstack(&get_ok(c, s, &format!("{OS}/servers/{uuid}")).await["server"]);
    assert_eq!(os, cy, "OpenStack addresses vs Cyclades attachments, {ctx}");
    let al = nic_pairs_openstack(&get_ok(c, s, &format!("/servers/{uuid}")).await["server"]);
    assert_eq!(al, cy, "Alliance addresses vs Cyclades attachments, {ctx}");
    let mg = nic_pairs_mogan(&get_ok(c, s, &format!("/v1/instances/{uuid}")).await);
    assert_eq!(mg, cy, "Mogan network_info vs Cyclades attachments, {ctx}");
}

/// (MAC, address) of every address of every NIC, from Cyclades `attachments`.
fn nic_pairs_cyclades(v: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for n in v["server"]["attachments"].as_array().unwrap() {
        let mac = n["mac_address"].as_str().unwrap().to_owned();
        for ip in [&n["ipv4"], &n["ipv6"]] {
            if let Some(ip) = ip.as_str() {
                out.insert((mac.clone(), ip.to_owned()));
            }
        }
    }
    out
}

/// The same from OpenStack-style `addresses` (OpenStack and Alliance).
fn nic_pairs_openstack(server: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for list in server["addresses"].as_object().unwrap().values() {
        for a in list.as_array().unwrap() {
            out.insert((
                a["OS-EXT-IPS-MAC:mac_addr"].as_str().unwrap().to_owned(),
                a["addr"].as_str().unwrap().to_owned(),
            ));
        }
    }
    out
}

/// The same from Mogan's `network_info`.
fn nic_pairs_mogan(instance: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for n in instance["network_info"].as_object().unwrap().values() {
        let mac = n["mac_address"].as_str().unwrap().to_owned();
        for ip in n["fixed_ips"].as_array().unwrap() {
            out.insert((mac.clone(), ip["ip_address"].as_str().unwrap().to_owned()));
        }
    }
    out
}

/// Once OpenStack answers 404 for a deleted server, every dialect agrees: Cyclades keeps it
/// visible by serial as DELETED, the others answer 404 in their own fault format, and no
/// list shows it.
async fn gone_everywhere(c: &Cloud, s: &Session, uuid: &str, serial: i64, name: &str) {
    let ctx = format!("deleted {name} ({uuid}, serial {serial})");
    c.wait_gone(s, uuid).await;

    // Cyclades: DELETED by serial (docs/dialects/cyclades.md, "a deleted server (until
    // purged) shows DELETED"), out of the lists.
    let v = get_ok(c, s, &format!("{CY}/servers/{serial}")).await;
    assert_eq!(
        v["server"]["status"], "DELETED",
        "Cyclades show, {ctx}: {v}"
    );
    assert_eq!(v["server"]["name"], name, "Cyclades show, {ctx}: {v}");
    // Mogan: 404, for the instance and its states.
    mogan_fault_is(
        c.get(s, &format!("/v1/instances/{uuid}")).await,
        StatusCode::NOT_FOUND,
        "could not be found",
    );
    mogan_fault_is(
        c.get(s, &format!("/v1/instances/{uuid}/states")).await,
        StatusCode::NOT_FOUND,
        "could not be found",
    );
    // VPE: 404.
    let (st, v) = c.get(s, &format!("/instances/{uuid}")).await;
    vpe_fault_is(st, &v, 404);
    // Alliance: 404 by id and by name.
    alliance_fault(
        &c.get(s, &format!("/servers/{uuid}")).await,
        StatusCode::NOT_FOUND,
        "No server",
    );
    alliance_fault(
        &c.get(s, &format!("/servers/{name}")).await,
        StatusCode::NOT_FOUND,
        name,
    );

    // Absent from every list.
    for (path, key, field, id) in [
        (format!("{OS}/servers"), "servers", "id", json!(uuid)),
        (format!("{OS}/servers/detail"), "servers", "id", json!(uuid)),
        (format!("{CY}/servers"), "servers", "id", json!(serial)),
        (
            format!("{CY}/servers/detail"),
            "servers",
            "id",
            json!(serial),
        ),
        ("/v1/instances".into(), "instances", "uuid", json!(uuid)),
        (
            "/v1/instances/detail".into(),
            "instances",
            "uuid",
            json!(uuid),
        ),
        ("/instances".into(), "instances", "uuid", json!(uuid)),
        ("/servers".into(), "servers", "id", json!(uuid)),
    ] {
        let item = listed(c, s, &path, key, field, &id).await;
        assert!(item.is_null(), "{ctx}: still listed by GET {path}: {item}");
    }
}

/// POST a Cyclades server action that answers 202 with no body.
async fn cy_action(c: &Cloud, s: &Session, serial: i64, body: Value) {
    let (st, v) = c
        .post(s, &format!("{CY}/servers/{serial}/action"), body.clone())
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{body}: {v}");
    assert!(v.is_null(), "{body}: no body expected, got {v}");
}

/// PUT a Mogan power target: 202, no body.
async fn mogan_power(c: &Cloud, s: &Session, uuid: &str, target: &str) {
    let (st, v) = c
        .put(
            s,
            &format!("/v1/instances/{uuid}/states/power"),
            json!({ "target": target }),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "power {target}: {v}");
    assert!(v.is_null(), "power {target}: no body expected, got {v}");
}

/// POST a VPE instance action (`start`, `stop`): 200 `{"instance": {"uuid"}}`.
async fn vpe_action(c: &Cloud, s: &Session, uuid: &str, action: &str) {
    let (st, v) = c
        .post(s, &format!("/instances/{uuid}/{action}"), json!({}))
        .await;
    assert_eq!(st, StatusCode::OK, "{action}: {v}");
    assert_eq!(v, json!({"instance": {"uuid": uuid}}), "{action}");
}

#[tokio::test]
async fn one_server_through_every_dialect() {
    let c = Cloud::start().await;
    let s = c.new_member("cross-all").await;
    let image = c.image(&s, "cross-img", b"x").await;

    // ---- alpha: created through Cyclades, listed consistently by every dialect ----
    let alpha = create_active(&c, &s, "alpha", &image).await;
    let alpha_id = os_id(&c, &s, "alpha").await;
    c.wait_status(&s, &alpha_id, "ACTIVE").await;
    seen_everywhere(&c, &s, &alpha_id, alpha, "alpha", State::Active).await;

    // ---- alpha: powered off through Mogan, stopped everywhere ----
    mogan_power(&c, &s, &alpha_id, "off").await;
    c.wait_status(&s, &alpha_id, "SHUTOFF").await;
    seen_everywhere(&c, &s, &alpha_id, alpha, "alpha", State::Stopped).await;

    // ---- alpha: started through VPE, active everywhere ----
    vpe_action(&c, &s, &alpha_id, "start").await;
    wait_cy(&c, &s, alpha, "ACTIVE").await;
    c.wait_status(&s, &alpha_id, "ACTIVE").await;
    seen_everywhere(&c, &s, &alpha_id, alpha, "alpha", State::Active).await;

    // ---- alpha: renamed through Alliance (by name), the new name everywhere ----
    let (st, v) = c
        .call(
            &s,
            Method::PATCH,
            "/servers/alpha",
            Some(json!({"server": {"new_name": "alpha-renamed"}})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["server"]["name"], "alpha-renamed", "{v}");
    assert_eq!(v["server"]["id"], alpha_id, "{v}");
    seen_everywhere(&c, &s, &alpha_id, alpha, "alpha-renamed", State::Active).await;
    alliance_fault(
        &c.get(&s, "/servers/alpha").await,
        StatusCode::NOT_FOUND,
        "alpha",
    );

    // ---- alpha: metadata set through Cyclades is the OpenStack (and Mogan) metadata ----
    let (st, v) = c
        .post(
            &s,
            &format!("{CY}/servers/{alpha}/metadata"),
            json!({"metadata": {"role": "db", "tier": "gold"}}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(v["metadata"]["role"], "db", "{v}");
    assert_eq!(v["metadata"]["tier"], "gold", "{v}");
    let cy_meta = get_ok(&c, &s, &format!("{CY}/servers/{alpha}/metadata")).await;
    let os_meta = get_ok(&c, &s, &format!("{OS}/servers/{alpha_id}/metadata")).await;
    assert_eq!(os_meta["metadata"]["role"], "db", "{os_meta}");
    assert_eq!(os_meta["metadata"]["tier"], "gold", "{os_meta}");
    assert_eq!(os_meta["metadata"], cy_meta["metadata"], "the same set");
    let os = get_ok(&c, &s, &format!("{OS}/servers/{alpha_id}")).await;
    assert_eq!(os["server"]["metadata"], cy_meta["metadata"], "{os}");
    let mg = get_ok(&c, &s, &format!("/v1/instances/{alpha_id}")).await;
    assert_eq!(mg["extra"], cy_meta["metadata"], "Mogan extra: {mg}");

    // ---- bravo: created through VPE, seen everywhere ----
    let bravo_id = vpe_create(&c, &s, "bravo", &image, json!({})).await;
    vpe_settle(&c, &s, &bravo_id, "active").await;
    c.wait_status(&s, &bravo_id, "ACTIVE").await;
    let bravo = cy_serial(&c, &s, "bravo").await;
    seen_everywhere(&c, &s, &bravo_id, bravo, "bravo", State::Active).await;

    // ---- bravo: shut down through Cyclades, stopped everywhere ----
    cy_action(&c, &s, bravo, json!({"shutdown": {}})).await;
    vpe_settle(&c, &s, &bravo_id, "shutoff").await;
    seen_everywhere(&c, &s, &bravo_id, bravo, "bravo", State::Stopped).await;

    // ---- bravo: powered on through Mogan, active everywhere ----
    mogan_power(&c, &s, &bravo_id, "on").await;
    wait_cy(&c, &s, bravo, "ACTIVE").await;
    c.wait_status(&s, &bravo_id, "ACTIVE").await;
    seen_everywhere(&c, &s, &bravo_id, bravo, "bravo", State::Active).await;

    // ---- charlie: created through Alliance (by names), seen everywhere ----
    let (st, v) = c
        .post(
            &s,
            "/servers",
            json!({"server": {"name": "charlie", "flavor": "m1.tiny", "image": "cross-img"}}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let charlie_id = v["server"]["id"].as_str().unwrap().to_owned();
    c.wait_status(&s, &charlie_id, "ACTIVE").await;
    let charlie = cy_serial(&c, &s, "charlie").await;
    seen_everywhere(&c, &s, &charlie_id, charlie, "charlie", State::Active).await;

    // ---- charlie: stopped through VPE, stopped everywhere ----
    vpe_action(&c, &s, &charlie_id, "stop").await;
    wait_cy(&c, &s, charlie, "STOPPED").await;
    c.wait_status(&s, &charlie_id, "SHUTOFF").await;
    seen_everywhere(&c, &s, &charlie_id, charlie, "charlie", State::Stopped).await;

    // ---- charlie: renamed through Mogan (JSON Patch), the new name everywhere ----
    let (st, v) = c
        .call(
            &s,
            Method::PATCH,
            &format!("/v1/instances/{charlie_id}"),
            Some(json!([{"op": "replace", "path": "/name", "value": "charlie-2"}])),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["name"], "charlie-2", "{v}");
    seen_everywhere(&c, &s, &charlie_id, charlie, "charlie-2", State::Stopped).await;

    // ---- charlie: started through Cyclades, active everywhere ----
    cy_action(&c, &s, charlie, json!({"start": {}})).await;
    c.wait_status(&s, &charlie_id, "ACTIVE").await;
    seen_everywhere(&c, &s, &charlie_id, charlie, "charlie-2", State::Active).await;

    // ---- delta: created through OpenStack (to be deleted through Cyclades) ----
    let delta_id = c.server(&s, "delta", &image, json!({})).await;
    c.wait_status(&s, &delta_id, "ACTIVE").await;
    let delta = cy_serial(&c, &s, "delta").await;
    seen_everywhere(&c, &s, &delta_id, delta, "delta", State::Active).await;

    // ---- deleted through Alliance, by name: 200 with an empty body; gone everywhere ----
    let resp = c
        .req(&s, Method::DELETE, "/servers/charlie-2")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.text().await.unwrap(),
        "",
        "Alliance delete: empty body"
    );
    gone_everywhere(&c, &s, &charlie_id, charlie, "charlie-2").await;

    // ---- deleted through Mogan: 204, no body; gone everywhere ----
    let (st, v) = c.delete(&s, &format!("/v1/instances/{bravo_id}")).await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{v}");
    assert!(v.is_null(), "{v}");
    gone_everywhere(&c, &s, &bravo_id, bravo, "bravo").await;

    // ---- deleted through VPE: 200 {"instance": {"uuid"}}; gone everywhere ----
    let (st, v) = c.delete(&s, &format!("/instances/{alpha_id}")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v, json!({"instance": {"uuid": alpha_id}}));
    gone_everywhere(&c, &s, &alpha_id, alpha, "alpha-renamed").await;

    // ---- deleted through Cyclades: 204, no body; gone everywhere ----
    let (st, v) = c.delete(&s, &format!("{CY}/servers/{delta}")).await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{v}");
    assert!(v.is_null(), "{v}");
    gone_everywhere(&c, &s, &delta_id, delta, "delta").await;

    // ---- nothing left in any list ----
    for (path, key) in [
        (format!("{OS}/servers/detail"), "servers"),
        (format!("{CY}/servers/detail"), "servers"),
        ("/v1/instances/detail".into(), "instances"),
        ("/instances".into(), "instances"),
        ("/servers".into(), "servers"),
    ] {
        let v = get_ok(&c, &s, &path).await;
        assert_eq!(v[key], json!([]), "GET {path}");
    }
}

// ---- concurrent NIC allocations ----

/// Servers racing for the small network's addresses.
const SERVERS: usize = 110;

/// The host addresses of an IPv4 CIDR (network and broadcast addresses excluded) minus the
/// gateway: the addresses a network can hand out.
fn pool(cidr: &str, gateway: Option<&str>) -> BTreeSet<Ipv4Addr> {
    let (base, prefix) = cidr.split_once('/').expect("a cidr");
    let base = u32::from(base.parse::<Ipv4Addr>().expect("an IPv4 address"));
    let prefix: u32 = prefix.parse().expect("a prefix length");
    assert!(prefix <= 30, "{cidr}");
    let size = 1u32 << (32 - prefix);
    let gateway: Option<Ipv4Addr> = gateway.map(|g| g.parse().expect("an IPv4 gateway"));
    (base + 1..base + size - 1)
        .map(Ipv4Addr::from)
        .filter(|ip| Some(*ip) != gateway)
        .collect()
}

/// Create a Cyclades network and wait until it is ACTIVE; returns its details.
async fn cy_network(c: &Cloud, s: &Session, body: Value) -> Value {
    let (st, v) = c.post(s, &format!("{CY}/networks"), body).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    let id = v["network"]["id"].as_str().expect("string id").to_owned();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let v = get_ok(c, s, &format!("{CY}/networks/{id}")).await;
        if v["network"]["status"] == "ACTIVE" {
            return v["network"].clone();
        }
        assert!(tokio::time::Instant::now() < deadline, "never ACTIVE: {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Fire one `add` per server at network `net`, all at once; (serial, status, body) each.
async fn concurrent_adds(
    c: &Cloud,
    s: &Session,
    net: &str,
    serials: &[i64],
) -> Vec<(i64, StatusCode, Value)> {
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(serials.len()));
    let tasks: Vec<_> = serials
        .iter()
        .map(|&serial| {
            let req = c
                .req(s, Method::POST, &format!("{CY}/networks/{net}/action"))
                .json(&json!({"add": {"serverRef": serial}}));
            let start = start.clone();
            tokio::spawn(async move {
                start.wait().await;
                let resp = req.send().await.expect("request sent");
                let status = resp.status();
                let text = resp.text().await.unwrap_or_default();
                let body = if text.is_empty() {
                    Value::Null
                } else {
                    serde_json::from_str(&text).unwrap_or(Value::String(text))
                };
                (serial, status, body)
            })
        })
        .collect();
    let mut out = Vec::with_capacity(tasks.len());
    for t in futures::future::join_all(tasks).await {
        out.push(t.expect("task"));
    }
    out
}

/// What every server's Cyclades attachments say: NIC id → (network id, MAC, IPv4).
async fn all_nics(c: &Cloud, s: &Session, serials: &[i64]) -> BTreeMap<String, Value> {
    let mut nics = BTreeMap::new();
    for serial in serials {
        let v = get_ok(c, s, &format!("{CY}/servers/{serial}")).await;
        for n in v["server"]["attachments"].as_array().unwrap() {
            let id = n["id"].as_str().unwrap().to_owned();
            assert!(nics.insert(id.clone(), n.clone()).is_none(), "{id} twice");
        }
    }
    nics
}

/// Every MAC across all NICs is distinct.
fn assert_macs_distinct(nics: &BTreeMap<String, Value>) {
    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    for (id, n) in nics {
        let mac = n["mac_address"].as_str().unwrap_or_else(|| panic!("{n}"));
        if let Some(other) = seen.insert(mac, id) {
            panic!("MAC {mac} on both {other} and {id}");
        }
    }
}

/// The NICs on `net`: distinct IPv4 addresses, each in `pool` (so inside the cidr and not
/// the gateway), exactly the network's `attachments`. Returns them (NIC id → address).
async fn assert_addresses(
    c: &Cloud,
    s: &Session,
    net: &Value,
    nics: &BTreeMap<String, Value>,
    pool: &BTreeSet<Ipv4Addr>,
) -> BTreeMap<String, Ipv4Addr> {
    let id = net["id"].as_str().unwrap();
    let mut on_net = BTreeMap::new();
    let mut by_ip: BTreeMap<Ipv4Addr, &str> = BTreeMap::new();
    for (nic, n) in nics.iter().filter(|(_, n)| n["network_id"] == id) {
        let ip: Ipv4Addr = n["ipv4"]
            .as_str()
            .unwrap_or_else(|| panic!("{nic} has no IPv4: {n}"))
            .parse()
            .unwrap();
        assert!(
            pool.contains(&ip),
            "{nic}: {ip} is not a free host address of {} (gateway {})",
            net["cidr"],
            net["gateway"]
        );
        if let Some(other) = by_ip.insert(ip, nic) {
            panic!("{ip} given to both {other} and {nic}");
        }
        on_net.insert(nic.clone(), ip);
    }
    let v = get_ok(c, s, &format!("{CY}/networks/{id}")).await;
    let attached: BTreeSet<String> = v["network"]["attachments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect();
    let want: BTreeSet<String> = on_net.keys().cloned().collect();
    assert_eq!(attached, want, "network {id}'s attachments");
    on_net
}

/// The issue's acceptance criterion "100 concurrent NIC allocations on one network →
/// distinct IPs and MACs", through the Cyclades API: more concurrent `add`s than free
/// addresses on a small network (exactly the pool's size succeed, the rest are refused with
/// Synnefo's 409 `conflict`), then 100 concurrent `add`s that all fit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_nic_allocations_on_one_network() {
    let c = Cloud::start_with(|cfg| {
        cfg.fake.spawn_delay = Duration::from_millis(10);
        cfg.fake.action_delay = Duration::from_millis(5);
        for r in ["instances", "cores", "ram"] {
            cfg.control.default_quota.limits.insert(r.into(), -1);
        }
    })
    .await;
    let s = c.new_member("nic-race").await;
    let image = c.image(&s, "img", b"x").await;

    // ---- 110 servers, created through Cyclades, all ACTIVE ----
    let creates = (0..SERVERS).map(|i| {
        let body = json!({"server": {"name": format!("n{i}"), "imageRef": image, "flavorRef": 1}});
        let c = &c;
        let s = &s;
        async move {
            let (st, v) = c.post(s, &format!("{CY}/servers"), body).await;
            assert_eq!(st, StatusCode::ACCEPTED, "{v}");
            v["server"]["id"].as_i64().expect("numeric id")
        }
    });
    let serials: Vec<i64> = futures::future::join_all(creates).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let v = get_ok(&c, &s, &format!("{CY}/servers/detail")).await;
        let statuses: Vec<&str> = v["servers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["status"].as_str().unwrap())
            .collect();
        assert_eq!(statuses.len(), SERVERS);
        assert!(!statuses.contains(&"ERROR"), "{v}");
        if statuses.iter().all(|st| *st == "ACTIVE") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not all ACTIVE: {statuses:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // ---- a network with fewer free addresses than servers ----
    let tight = cy_network(
        &c,
        &s,
        json!({"network": {"name": "tight", "type": "MAC_FILTERED",
            "cidr": "10.77.0.0/26", "gateway": "10.77.0.1"}}),
    )
    .await;
    let tight_id = tight["id"].as_str().unwrap().to_owned();
    let tight_pool = pool(tight["cidr"].as_str().unwrap(), tight["gateway"].as_str());
    assert!(
        tight_pool.len() < SERVERS,
        "the race needs more requests ({SERVERS}) than addresses ({})",
        tight_pool.len()
    );

    // ---- 110 concurrent adds: exactly pool-size 202s, every other one a 409 ----
    let results = concurrent_adds(&c, &s, &tight_id, &serials).await;
    let server_errors: Vec<_> = results.iter().filter(|r| r.1.is_server_error()).collect();
    assert!(server_errors.is_empty(), "5xx answers: {server_errors:?}");
    let accepted: Vec<i64> = results
        .iter()
        .filter(|r| r.1 == StatusCode::ACCEPTED)
        .map(|r| r.0)
        .collect();
    let refused: Vec<&(i64, StatusCode, Value)> = results
        .iter()
        .filter(|r| r.1 != StatusCode::ACCEPTED)
        .collect();
    for (serial, _, body) in results.iter().filter(|r| r.1 == StatusCode::ACCEPTED) {
        assert!(body.is_null(), "server {serial}: 202 with a body: {body}");
    }
    assert_eq!(
        accepted.len(),
        tight_pool.len(),
        "one 202 per free address; the others: {refused:?}"
    );
    for (serial, st, body) in &refused {
        assert_eq!(*st, StatusCode::CONFLICT, "server {serial}: {body}");
    }

    // ---- read back: distinct addresses from the pool, one per 202; distinct MACs ----
    let nics = all_nics(&c, &s, &serials).await;
    assert_macs_distinct(&nics);
    let on_tight = assert_addresses(&c, &s, &tight, &nics, &tight_pool).await;
    assert_eq!(on_tight.len(), accepted.len(), "one NIC per 202");
    let with_nic: BTreeSet<i64> = on_tight
        .keys()
        .map(|id| id.split('-').nth(1).unwrap().parse().unwrap())
        .collect();
    assert_eq!(
        with_nic,
        accepted.iter().copied().collect(),
        "exactly the accepted servers are attached"
    );

    // ---- 100 concurrent adds on a network with room for all ----
    let roomy = cy_network(
        &c,
        &s,
        json!({"network": {"name": "roomy", "type": "MAC_FILTERED", "cidr": "10.78.0.0/24"}}),
    )
    .await;
    let roomy_id = roomy["id"].as_str().unwrap().to_owned();
    let roomy_pool = pool(roomy["cidr"].as_str().unwrap(), roomy["gateway"].as_str());
    let hundred = &serials[..100];
    assert!(roomy_pool.len() >= hundred.len());
    let results = concurrent_adds(&c, &s, &roomy_id, hundred).await;
    for (serial, st, body) in &results {
        assert_eq!(*st, StatusCode::ACCEPTED, "server {serial}: {body}");
        assert!(body.is_null(), "server {serial}: {body}");
    }
    let nics = all_nics(&c, &s, &serials).await;
    assert_macs_distinct(&nics);
    let on_roomy = assert_addresses(&c, &s, &roomy, &nics, &roomy_pool).await;
    assert_eq!(on_roomy.len(), 100, "100 distinct addresses");
    // The first race's NICs are untouched.
    assert_eq!(
        assert_addresses(&c, &s, &tight, &nics, &tight_pool).await,
        on_tight
    );

    // ---- the refusals are Cyclades' `conflict`, naming the network by its Cyclades id ----
    // (Checked last so that the allocation invariants above are reported on their own.)
    let want = format!("No more IP addresses available on network {tight_id}.");
    for (serial, _, body) in &refused {
        assert_eq!(
            (fault_name(body, 409).as_str(), &body["conflict"]["message"]),
            ("conflict", &json!(want)),
            "server {serial}: {body}"
        );
    }
}
