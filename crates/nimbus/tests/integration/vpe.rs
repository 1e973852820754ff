//! The VPE dialect (seed 004) at `/instances`, `/disk_pools`, `/disks` and `/vnc`: the
//! seed's examples as golden fixtures, cross-dialect behaviour with the OpenStack API, HA,
//! data disks and pools, metrics, the browser console and its WebSocket proxy, bad input.

use crate::common::*;
use async_trait::async_trait;
use futures::{SinkExt, StreamExt};
use nimbus_control::agents::{AgentTransport, FileStream};
use nimbus_model::agent::{AgentReply, AgentRequest, VncConsole};
use nimbus_model::state::PowerState;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

// ---- helpers ----

fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/../../tests/fixtures/vpe/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36 && uuid::Uuid::parse_str(s).is_ok()
}

fn is_vpe_time(s: &str) -> bool {
    s.len() == 19 && chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").is_ok()
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// `actual` has the documented shape of `expected`: every key with the same JSON type
/// (recursively; array items against the example's first item), no keys beyond `extra`,
/// ids and timestamps matching their patterns.
fn assert_shape(expected: &Value, actual: &Value, path: &str, extra: &[&str]) {
    assert_eq!(
        json_type(expected),
        json_type(actual),
        "{path}: expected {expected}, got {actual}"
    );
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (k, ev) in e {
                let av = a
                    .get(k)
                    .unwrap_or_else(|| panic!("{path}.{k} missing in {actual}"));
                assert_shape(ev, av, &format!("{path}.{k}"), extra);
            }
            for k in a.keys() {
                assert!(
                    e.contains_key(k) || extra.contains(&k.as_str()),
                    "{path}.{k}: not in the seed's example and not a documented addition"
                );
            }
        }
        (Value::Array(e), Value::Array(a)) => {
            if let Some(first) = e.first() {
                for (i, item) in a.iter().enumerate() {
                    assert_shape(first, item, &format!("{path}[{i}]"), extra);
                }
            }
        }
        (Value::String(_), Value::String(s)) => {
            let key = path.rsplit('.').next().unwrap_or("");
            if key == "uuid" || key.ends_with("_uuid") {
                assert!(is_uuid(s), "{path}: {s} is not a uuid");
            }
            if key == "created_at" {
                assert!(is_vpe_time(s), "{path}: {s} is not YYYY-MM-DD HH:MM:SS");
            }
        }
        _ => {}
    }
}

/// A VPE fault: `{"error": {"code", "type", "message"}}` with the given status.
pub(crate) fn assert_fault(status: StatusCode, body: &Value, want: u16) {
    assert_eq!(status.as_u16(), want, "{body}");
    let e = &body["error"];
    assert_eq!(e["code"], want, "{body}");
    assert!(e["type"].is_string(), "{body}");
    assert!(
        e["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

/// Send raw bytes (for malformed bodies).
async fn raw(
    c: &Cloud,
    s: &Session,
    method: Method,
    path: &str,
    body: &str,
) -> (StatusCode, Value) {
    let resp = c
        .req(s, method, path)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let st = resp.status();
    let text = resp.text().await.unwrap();
    (
        st,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// An active image with a chosen id.
async fn image_with_id(c: &Cloud, s: &Session, id: &str, name: &str) -> String {
    let ctx = c.ctx(s).await;
    let ctl = c.control();
    let img = ctl
        .image_create(
            &ctx,
            nimbus_control::images::ImageCreate {
                id: Some(id.parse().unwrap()),
                name: Some(name.into()),
                disk_format: Some("raw".into()),
                container_format: Some("bare".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    ctl.image_upload(
        &ctx,
        img.id,
        futures::stream::iter(vec![Ok(bytes::Bytes::from_static(b"disk"))]),
    )
    .await
    .unwrap();
    img.id.to_string()
}

pub(crate) async fn vpe_create(
    c: &Cloud,
    s: &Session,
    name: &str,
    image: &str,
    extra: Value,
) -> String {
    let mut inst = json!({"name": name, "flavor_uuid": "1", "image_uuid": image});
    if let Value::Object(m) = extra {
        for (k, v) in m {
            inst[k] = v;
        }
    }
    let (st, body) = c.post(s, "/instances", json!({"instance": inst})).await;
    assert_eq!(st, StatusCode::OK, "create: {body}");
    body["instance"]["uuid"].as_str().unwrap().to_owned()
}

async fn vpe_show(c: &Cloud, s: &Session, id: &str) -> (StatusCode, Value) {
    c.get(s, &format!("/instances/{id}")).await
}

/// Poll `GET /instances/{id}` until `pred` holds on the instance (or on
/// `{"status_code": N}` when the show fails).
async fn vpe_wait(
    c: &Cloud,
    s: &Session,
    id: &str,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut last = Value::Null;
    while tokio::time::Instant::now() < deadline {
        let (st, body) = vpe_show(c, s, id).await;
        let v = if st == StatusCode::OK {
            body["instance"].clone()
        } else {
            json!({"status_code": st.as_u16(), "body": body})
        };
        if pred(&v) {
            return v;
        }
        last = v;
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("instance {id} never reached {what}; last: {last}");
}

/// Wait for `status` with no task running.
pub(crate) async fn vpe_settle(c: &Cloud, s: &Session, id: &str, status: &str) -> Value {
    vpe_wait(c, s, id, status, |v| {
        v["status"] == status && v["task"].is_null()
    })
    .await
}

async fn vpe_pool(c: &Cloud, name: &str, gb: u64) -> String {
    let (st, p) = c
        .post(
            &c.admin,
            "/disk_pools",
            json!({"disk_pool": {"name": name, "capacity_gb": gb}}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{p}");
    p["disk_pool"]["uuid"].as_str().unwrap().to_owned()
}

async fn vpe_disk(c: &Cloud, s: &Session, name: &str, gb: u64, pool: Option<&str>) -> String {
    let mut d = json!({"name": name, "size_gb": gb});
    if let Some(p) = pool {
        d["disk_pool"] = json!(p);
    }
    let (st, b) = c.post(s, "/disks", json!({"disk": d})).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    b["disk"]["uuid"].as_str().unwrap().to_owned()
}

fn actions_of(v: &Value) -> Vec<String> {
    v["instanceActions"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|x| x["action"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// An agent transport in front of a fresh fake agent that re-registers the in-process host
/// (as a restarted host would), optionally rewriting some answers.
struct Intercept {
    inner: Arc<dyn AgentTransport>,
    /// Answer console requests with this endpoint (a stub VNC server in the test).
    vnc: Option<VncConsole>,
    /// Hand servers back powered off (the host rebooted and its guests are gone).
    adopt_powered_off: bool,
}

#[async_trait]
impl AgentTransport for Intercept {
    async fn call(&self, request: AgentRequest) -> Result<AgentReply, nimbus_model::Error> {
        match request {
            AgentRequest::VncConsole { .. } if self.vnc.is_some() => Ok(AgentReply::Vnc {
                console: self.vnc.clone().unwrap(),
            }),
            AgentRequest::Adopt { spec, .. } if self.adopt_powered_off => {
                self.inner
                    .call(AgentRequest::Adopt {
                        spec,
                        power_state: PowerState::Shutdown,
                    })
                    .await
            }
            other => self.inner.call(other).await,
        }
    }

    async fn open_file(&self, location: &str) -> Result<FileStream, nimbus_model::Error> {
        self.inner.open_file(location).await
    }
}

/// Replace the in-process host's agent with a fresh fake one behind [`Intercept`].
async fn reregister_host(c: &Cloud, vnc: Option<VncConsole>, adopt_powered_off: bool) {
    let mut fake = c.config.fake.clone();
    fake.work_dir = c.config.data_dir.join("fake");
    let agent = nimbus::local_agent::LocalAgent(nimbus_agent::Agent::new(
        Arc::new(nimbus_agent::fake::FakeDriver::new(fake)),
        Arc::new(c.control().event_channel()),
    ));
    c.control()
        .register_agent(
            "local",
            Arc::new(Intercept {
                inner: Arc::new(agent),
                vnc,
                adopt_powered_off,
            }),
            c.config.host.clone(),
        )
        .await
        .expect("host re-registers");
}

// ---- golden fixtures ----

/// Every example of seed 004, sent in a sensible order against one cloud.
#[tokio::test]
async fn golden_fixtures() {
    // A slow boot keeps the new instance in `task: creating`, as every seed example shows it.
    let c = Cloud::start_with(|cfg| cfg.fake.spawn_delay = Duration::from_millis(1500)).await;
    let a = &c.admin;
    let create_fx = fixture("03-create-instance");
    let seed_req = &create_fx["request"]["body"]["instance"];
    let flavor = seed_req["flavor_uuid"].as_str().unwrap();
    let image = seed_req["image_uuid"].as_str().unwrap();
    // The seed's flavor and image ids exist here (flavor ids are free-form, images take one).
    let (st, f) = c
        .post(
            a,
            "/compute/v2.1/flavors",
            json!({"flavor": {"name": "m1.vpe", "id": flavor, "ram": 512, "vcpus": 1, "disk": 1}}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{f}");
    image_with_id(&c, a, image, "centos6.7").await;
    let pool = vpe_pool(&c, "pool2", 100).await;
    let vol1 = vpe_disk(&c, a, "vol1", 1, Some(&pool)).await;
    let vol2 = vpe_disk(&c, a, "vol2", 2, Some(&pool)).await;

    // Extra keys Nimbus returns beyond an example (docs/dialects/vpe.md, deviations).
    const FULL_VIEW_EXTRAS: &[&str] = &["image", "flavor", "disk_pool", "disk_pool_uuid"];

    // Create.
    let mut body = create_fx["request"]["body"].clone();
    body["instance"]["disk_pool"] = json!(pool);
    body["instance"]["disks"] = json!([vol1, vol2]);
    let (st, created) = c
        .call(
            a,
            Method::from_bytes(create_fx["request"]["method"].as_str().unwrap().as_bytes())
                .unwrap(),
            create_fx["request"]["path"].as_str().unwrap(),
            Some(body),
        )
        .await;
    assert_eq!(st.as_u16(), create_fx["response"]["status"], "{created}");
    assert_shape(
        &create_fx["response"]["body"],
        &created,
        "create",
        FULL_VIEW_EXTRAS,
    );
    let inst = &created["instance"];
    let id = inst["uuid"].as_str().unwrap().to_owned();
    assert_eq!(inst["name"], "vm2");
    assert_eq!(inst["status"], "active");
    assert_eq!(inst["task"], "creating");
    assert_eq!(inst["ha"], true);
    assert_eq!(inst["tags"], json!(["tag1", "tag2", "tag3"]));
    assert_eq!(inst["flavor_uuid"], flavor);
    assert_eq!(inst["flavor"], "m1.vpe");
    assert_eq!(inst["image_uuid"], image);
    assert_eq!(inst["image"], "centos6.7");
    assert_eq!(inst["disk_pool"], "pool2");
    assert_eq!(inst["disk_pool_uuid"], pool);
    assert_eq!(
        inst["disks"],
        json!([{"uuid": vol1, "name": "vol1"}, {"uuid": vol2, "name": "vol2"}])
    );
    // A second instance without disks, as the list example shows one.
    let other = vpe_create(
        &c,
        a,
        "vm3",
        image,
        json!({"disk_pool": pool, "flavor_uuid": flavor}),
    )
    .await;

    // List (the seed's `name=en` matches nothing here: search a substring of ours).
    let fx = fixture("01-list-instances");
    let path = fx["request"]["path"]
        .as_str()
        .unwrap()
        .replace("name=en", "name=vm");
    let (st, list) = c.get(a, &path).await;
    assert_eq!(st.as_u16(), fx["response"]["status"], "{list}");
    assert_shape(&fx["response"]["body"], &list, "list", &[]);
    let ids: Vec<&str> = list["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["uuid"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&id.as_str()) && ids.contains(&other.as_str()),
        "{list}"
    );

    // Show.
    let fx = fixture("02-show-instance");
    let path = fx["request"]["path"]
        .as_str()
        .unwrap()
        .replace("22c91117-08de-4894-9aa9-6ef382400985", &id);
    let (st, shown) = c.get(a, &path).await;
    assert_eq!(st.as_u16(), fx["response"]["status"], "{shown}");
    assert_shape(
        &fx["response"]["body"],
        &shown,
        "show",
        &["disk_pool", "disk_pool_uuid"],
    );
    assert_eq!(shown["instance"]["task"], "creating");

    // Update.
    let fx = fixture("04-update-instance");
    let seed_id = "8d0bd581-7df2-4cd5-aa64-db23c3ac25b0";
    let path = fx["request"]["path"]
        .as_str()
        .unwrap()
        .replace(seed_id, &id);
    let (st, updated) = c.put(a, &path, fx["request"]["body"].clone()).await;
    assert_eq!(st.as_u16(), fx["response"]["status"], "{updated}");
    assert_shape(
        &fx["response"]["body"],
        &updated,
        "update",
        FULL_VIEW_EXTRAS,
    );

    // Stop and start once it has booted.
    vpe_settle(&c, a, &id, "active").await;
    for (name, after) in [
        ("06-stop-instance", "shutoff"),
        ("07-start-instance", "active"),
    ] {
        let fx = fixture(name);
        let path = fx["request"]["path"]
            .as_str()
            .unwrap()
            .replace(seed_id, &id);
        let (st, b) = c.post(a, &path, fx["request"]["body"].clone()).await;
        assert_eq!(st.as_u16(), fx["response"]["status"], "{name}: {b}");
        assert_shape(&fx["response"]["body"], &b, name, &[]);
        assert_eq!(b["instance"]["uuid"], id.as_str());
        vpe_settle(&c, a, &id, after).await;
    }

    // VNC.
    let fx = fixture("08-get-vnc");
    let path = fx["request"]["path"]
        .as_str()
        .unwrap()
        .replace(seed_id, &id);
    let (st, b) = c
        .call(a, Method::GET, &path, Some(fx["request"]["body"].clone()))
        .await;
    assert_eq!(st.as_u16(), fx["response"]["status"], "{b}");
    assert_shape(&fx["response"]["body"], &b, "vnc", &[]);
    let url = b["instance"]["vnc_url"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("{}/vnc?instance-uuid={id}&token=", c.url)),
        "{url}"
    );

    // Delete: 200 with the uuid, then `task: deleting` until it is gone.
    let fx = fixture("05-delete-instance");
    let path = fx["request"]["path"]
        .as_str()
        .unwrap()
        .replace(seed_id, &id);
    let (st, b) = c.delete(a, &path).await;
    assert_eq!(st.as_u16(), fx["response"]["status"], "{b}");
    assert_shape(&fx["response"]["body"], &b, "delete", &[]);
    assert_eq!(b["instance"]["uuid"], id.as_str());
    let (st, gone) = vpe_show(&c, a, &id).await;
    assert!(
        st == StatusCode::NOT_FOUND || gone["instance"]["task"] == "deleting",
        "{st} {gone}"
    );
    vpe_wait(&c, a, &id, "404", |v| v["status_code"] == 404).await;
}

/// While a delete runs, show answers `task: deleting`.
#[tokio::test]
async fn delete_shows_deleting_while_it_runs() {
    let c = Cloud::start_with(|cfg| cfg.fake.action_delay = Duration::from_millis(800)).await;
    let a = &c.admin;
    let img = c.image(a, "img", b"x").await;
    let id = vpe_create(&c, a, "doomed", &img, json!({})).await;
    vpe_settle(&c, a, &id, "active").await;
    let (st, b) = c.delete(a, &format!("/instances/{id}")).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(b, json!({"instance": {"uuid": id}}));
    let (st, shown) = vpe_show(&c, a, &id).await;
    assert_eq!(st, StatusCode::OK, "{shown}");
    assert_eq!(shown["instance"]["task"], "deleting");
    let (st, b) = c.get(a, &format!("/instances/{id}")).await;
    assert!(st == StatusCode::OK || st == StatusCode::NOT_FOUND, "{b}");
    let v = vpe_wait(&c, a, &id, "404", |v| v["status_code"] == 404).await;
    assert_fault(StatusCode::NOT_FOUND, &v["body"], 404);
}

// ---- listing ----

#[tokio::test]
async fn name_search_is_a_substring_not_a_regex() {
    let c = Cloud::start().await;
    let a = &c.admin;
    let img = c.image(a, "img", b"x").await;
    let web = vpe_create(&c, a, "web-1", &img, json!({})).await;
    let dot = vpe_create(&c, a, "db.main", &img, json!({})).await;
    let other = vpe_create(&c, a, "dbxmain", &img, json!({})).await;
    let names = |v: &Value| -> Vec<String> {
        v["instances"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["uuid"].as_str().unwrap().to_owned())
            .collect()
    };
    let (_, all) = c.get(a, "/instances").await;
    assert_eq!(names(&all).len(), 3);
    // `.` is a literal dot, not "any character".
    let (st, b) = c.get(a, "/instances?name=b.m").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(names(&b), vec![dot.clone()]);
    // Case-insensitive substring.
    let (_, b) = c.get(a, "/instances?name=WEB").await;
    assert_eq!(names(&b), vec![web]);
    // Regex metacharacters are harmless.
    let (st, b) = c.get(a, "/instances?name=%5B(*").await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert!(names(&b).is_empty());
    let (_, b) = c.get(a, "/instances?name=main").await;
    let mut got = names(&b);
    got.sort();
    let mut want = vec![dot, other];
    want.sort();
    assert_eq!(got, want);
    // Another project sees none of them.
    let m = c.new_member("vpe-other").await;
    let (_, b) = c.get(&m, "/instances").await;
    assert!(names(&b).is_empty(), "{b}");
}

// ---- cross-dialect ----

#[tokio::test]
async fn created_in_vpe_stopped_in_openstack() {
    let c = Cloud::start().await;
    let a = &c.admin;
    let img = c.image(a, "img", b"x").await;
    let id = vpe_create(&c, a, "cross", &img, json!({"tags": ["x"]})).await;
    vpe_settle(&c, a, &id, "active").await;
    // The same server in OpenStack.
    let s = c.wait_status(a, &id, "ACTIVE").await;
    assert_eq!(s["name"], "cross");
    let (st, _) = c.action(a, &id, json!({"os-stop": null})).await;
    assert_eq!(st, StatusCode::ACCEPTED);
    let v = vpe_settle(&c, a, &id, "shutoff").await;
    assert_eq!(v["task"], Value::Null);
    // Tags set in VPE are the server's tags (microversion 2.26+).
    let (_, s) = c
        .get(&a.mv("2.26"), &format!("/compute/v2.1/servers/{id}"))
        .await;
    assert_eq!(s["server"]["tags"], json!(["x"]));
    // Deleted in OpenStack: gone from VPE.
    let (st, _) = c.delete(a, &format!("/compute/v2.1/servers/{id}")).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    vpe_wait(&c, a, &id, "404", |v| v["status_code"] == 404).await;
}

#[tokio::test]
async fn created_in_openstack_acted_on_in_vpe() {
    let c = Cloud::start().await;
    let a = &c.admin;
    let img = c.image(a, "os-img", b"x").await;
    let id = c.server(a, "from-nova", &img, json!({})).await;
    c.wait_status(a, &id, "ACTIVE").await;
    let v = vpe_settle(&c, a, &id, "active").await;
    assert_eq!(v["name"], "from-nova");
    assert_eq!(v["image"], "os-img");
    assert_eq!(v["ha"], false);
    // Created without a pool: none shown.
    assert_eq!(v["disk_pool"], Value::Null);
    assert_eq!(v["disks"], json!([]));
    let (st, b) = c.post(a, &format!("/instances/{id}/stop"), json!({})).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    c.wait_status(a, &id, "SHUTOFF").await;
    // Stopping again is a conflict.
    let (st, b) = c.post(a, &format!("/instances/{id}/stop"), json!({})).await;
    assert_fault(st, &b, 409);
    let (st, _) = raw(&c, a, Method::POST, &format!("/instances/{id}/start"), "").await;
    assert_eq!(st, StatusCode::OK);
    c.wait_status(a, &id, "ACTIVE").await;
    // PUT renames, sets HA and tags; OpenStack sees the name.
    let (st, b) = c
        .put(
            a,
            &format!("/instances/{id}"),
            json!({"instance": {"name": "renamed", "ha": true, "tags": ["a", "b"]}}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(b["instance"]["ha"], true);
    assert_eq!(b["instance"]["tags"], json!(["a", "b"]));
    let (_, s) = c.get(a, &format!("/compute/v2.1/servers/{id}")).await;
    assert_eq!(s["server"]["name"], "renamed");
    // A partial PUT changes only what it names.
    let (_, b) = c
        .put(
            a,
            &format!("/instances/{id}"),
            json!({"instance": {"ha": false}}),
        )
        .await;
    assert_eq!(b["instance"]["name"], "renamed");
    assert_eq!(b["instance"]["ha"], false);
    assert_eq!(b["instance"]["tags"], json!(["a", "b"]));
}

// ---- HA ----

#[tokio::test]
async fn ha_instance_restarts_after_a_crash() {
    let c = Cloud::start().await;
    let a = &c.admin;
    let img = c.image(a, "img", b"x").await;
    // The fake driver arms `crash-after` when the guest is spawned, from the server's
    // metadata, which only the OpenStack API sets: create there, make one HA through VPE.
    let crashing = json!({"metadata": {"nimbus:fault": "crash-after:1s"}});
    let ha = c.server(a, "ha", &img, crashing.clone()).await;
    let plain = c.server(a, "plain", &img, crashing).await;
    let (st, b) = c
        .put(
            a,
            &format!("/instances/{ha}"),
            json!({"instance": {"ha": true}}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(b["instance"]["ha"], true);
    // The plain one crashes and stays off.
    vpe_wait(&c, a, &plain, "shutoff after the crash", |v| {
        v["status"] == "shutoff" && v["task"].is_null()
    })
    .await;
    // The HA one crashes and the core starts it again, unasked.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, v) = c
            .get(
                a,
                &format!("/compute/v2.1/servers/{ha}/os-instance-actions"),
            )
            .await;
        let acts = actions_of(&v);
        // Newest first: start (HA), stop (the crash), create.
        if acts == ["start", "stop", "create"] {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "HA restart never happened: {acts:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    vpe_settle(&c, a, &ha, "active").await;
    let (_, v) = vpe_show(&c, a, &plain).await;
    assert_eq!(v["instance"]["status"], "shutoff");
    let (_, v) = c
        .get(
            a,
            &format!("/compute/v2.1/servers/{plain}/os-instance-actions"),
        )
        .await;
    assert_eq!(actions_of(&v), ["stop", "create"]);
}

#[tokio::test]
async fn ha_instance_restarts_after_its_host_restarts() {
    let c = Cloud::start().await;
    let a = &c.admin;
    let img = c.image(a, "img", b"x").await;
    let ha = vpe_create(&c, a, "ha", &img, json!({"ha": true})).await;
    let plain = vpe_create(&c, a, "plain", &img, json!({})).await;
    vpe_settle(&c, a, &ha, "active").await;
    vpe_settle(&c, a, &plain, "active").await;
    // The host comes back with its guests powered off.
    reregister_host(&c, None, true).await;
    vpe_wait(&c, a, &plain, "shutoff after the host restart", |v| {
        v["status"] == "shutoff" && v["task"].is_null()
    })
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, v) = c
            .get(
                a,
                &format!("/compute/v2.1/servers/{ha}/os-instance-actions"),
            )
            .await;
        let acts = actions_of(&v);
        if acts.len() >= 3 && acts[0] == "start" && acts[1] == "stop" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "HA restart never happened: {acts:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    vpe_settle(&c, a, &ha, "active").await;
    // The unexpected stop is recorded as the server's fault (OpenStack shows it on SHUTOFF).
    let (_, s) = c.get(a, &format!("/compute/v2.1/servers/{plain}")).await;
    assert_eq!(s["server"]["status"], "SHUTOFF");
}

// ---- disks and pools ----

#[tokio::test]
async fn disks_attach_at_create_and_survive_delete() {
    let c = Cloud::start().await;
    let a = &c.admin;
    let img = c.image(a, "img", b"x").await;
    let d1 = vpe_disk(&c, a, "data-1", 5, None).await;
    let (st, d) = c.get(a, &format!("/disks/{d1}")).await;
    assert_eq!(st, StatusCode::OK, "{d}");
    assert_eq!(d["disk"]["status"], "available");
    assert_eq!(d["disk"]["disk_pool"], "default");
    assert_eq!(d["disk"]["instance_uuid"], Value::Null);
    let id = vpe_create(&c, a, "with-disk", &img, json!({"disks": [d1]})).await;
    let v = vpe_settle(&c, a, &id, "active").await;
    assert_eq!(v["disks"], json!([{"uuid": d1, "name": "data-1"}]));
    assert_eq!(v["disk_pool"], "default");
    let (_, d) = c.get(a, &format!("/disks/{d1}")).await;
    assert_eq!(d["disk"]["status"], "in-use");
    assert_eq!(d["disk"]["instance_uuid"], id.as_str());
    assert_eq!(d["disk"]["device"], "vdb");
    // The OpenStack view of the same server shows the volume, in each microversion's shape.
    let (_, os) = c
        .get(&a.mv("2.79"), &format!("/compute/v2.1/servers/{id}"))
        .await;
    assert_eq!(
        os["server"]["os-extended-volumes:volumes_attached"],
        json!([{"id": d1, "delete_on_termination": false}])
    );
    let (st, att) = c
        .get(
            &a.mv("2.79"),
            &format!("/compute/v2.1/servers/{id}/os-volume_attachments"),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{att}");
    assert_eq!(
        att["volumeAttachments"],
        json!([{"id": d1, "volumeId": d1, "serverId": id, "device": "/dev/vdb", "tag": null, "delete_on_termination": false}])
    );
    let (st, one) = c
        .get(
            &a.mv("2.89"),
            &format!("/compute/v2.1/servers/{id}/os-volume_attachments/{d1}"),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{one}");
    assert_eq!(one["volumeAttachment"]["attachment_id"], d1.as_str());
    assert!(
        one["volumeAttachment"].get("id").is_none(),
        "2.89 drops id: {one}"
    );
    let (st, _) = c
        .get(
            a,
            &format!(
                "/compute/v2.1/servers/{id}/os-volume_attachments/{}",
                uuid::Uuid::new_v4()
            ),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    // In use: another instance cannot take it, and it cannot be deleted.
    let (st, b) = c
        .post(
            a,
            "/instances",
            json!({"instance": {"name": "thief", "flavor_uuid": "1", "image_uuid": img, "disks": [d1]}}),
        )
        .await;
    assert_fault(st, &b, 409);
    let (st, b) = c.delete(a, &format!("/disks/{d1}")).await;
    assert_fault(st, &b, 409);
    assert!(
        b["error"]["message"].as_str().unwrap().contains("Disk"),
        "{b}"
    );
    // Deleting the instance frees the disk; it is kept.
    c.delete(a, &format!("/instances/{id}")).await;
    vpe_wait(&c, a, &id, "404", |v| v["status_code"] == 404).await;
    let (st, d) = c.get(a, &format!("/disks/{d1}")).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(d["disk"]["status"], "available");
    assert_eq!(d["disk"]["instance_uuid"], Value::Null);
    // And can be attached to a new instance.
    let id2 = vpe_create(&c, a, "again", &img, json!({"disks": [d1]})).await;
    let v = vpe_settle(&c, a, &id2, "active").await;
    assert_eq!(v["disks"][0]["uuid"], d1.as_str());
    // Listing, with the name search.
    let d2 = vpe_disk(&c, a, "scratch", 1, None).await;
    let (_, l) = c.get(a, "/disks").await;
    assert_eq!(l["disks"].as_array().unwrap().len(), 2);
    let (_, l) = c.get(a, "/disks?name=SCR").await;
    assert_eq!(l["disks"].as_array().unwrap().len(), 1);
    assert_eq!(l["disks"][0]["uuid"], d2.as_str());
    let (st, b) = c.delete(a, &format!("/disks/{d2}")).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(b, json!({"disk": {"uuid": d2}}));
    let (st, b) = c.get(a, &format!("/disks/{d2}")).await;
    assert_fault(st, &b, 404);
    // Another project cannot see or use the first disk.
    let m = c.new_member("vpe-disk-other").await;
    let (st, b) = c.get(&m, &format!("/disks/{d1}")).await;
    assert_fault(st, &b, 404);
}

#[tokio::test]
async fn unknown_disks_and_pools_are_named() {
    let c = Cloud::start().await;
    let a = &c.admin;
    let img = c.image(a, "img", b"x").await;
    let ghost1 = "c588c4d5-9b67-426b-a8d2-e8b0d9be9917";
    let ghost2 = "a588c4d5-9b67-426b-a8d2-e8b0d9be9917";
    let real = vpe_disk(&c, a, "real", 1, None).await;
    let create = |extra: Value| {
        let mut inst = json!({"name": "x", "flavor_uuid": "1", "image_uuid": img});
        if let Value::Object(m) = extra {
            for (k, v) in m {
                inst[k] = v;
            }
        }
        json!({"instance": inst})
    };
    let (st, b) = c
        .post(
            a,
            "/instances",
            create(json!({"disks": [ghost1, real, ghost2]})),
        )
        .await;
    assert_fault(st, &b, 400);
    let msg = b["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains(ghost1) && msg.contains(ghost2) && !msg.contains(&real),
        "{msg}"
    );
    let (st, b) = c
        .post(a, "/instances", create(json!({"disks": ["not-a-uuid"]})))
        .await;
    assert_fault(st, &b, 400);
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not-a-uuid")
    );
    let (st, b) = c
        .post(a, "/instances", create(json!({"disks": [real, real]})))
        .await;
    assert_fault(st, &b, 400);
    let (st, b) = c
        .post(a, "/instances", create(json!({"disk_pool": ghost1})))
        .await;
    assert_fault(st, &b, 400);
    assert!(
        b["error"]["message"].as_str().unwrap().contains(ghost1),
        "{b}"
    );
    let (st, b) = c
        .post(
            a,
            "/instances",
            create(json!({"image_uuid": "51c03ae4-1c39-4bc6-81c1-07e3600faa65"})),
        )
        .await;
    assert_fault(st, &b, 400);
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("51c03ae4-1c39-4bc6-81c1-07e3600faa65")
    );
    let (st, b) = c
        .post(
            a,
            "/instances",
            create(json!({"flavor_uuid": "no-such-flavor"})),
        )
        .await;
    assert_fault(st, &b, 400);
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no-such-flavor")
    );
    // Nothing was created by any of these.
    let (_, l) = c.get(a, "/instances").await;
    assert_eq!(l["instances"], json!([]));
    let (st, b) = c
        .post(
            a,
            "/disks",
            json!({"disk": {"name": "x", "size_gb": 1, "disk_pool": ghost2}}),
        )
        .await;
    assert_fault(st, &b, 400);
    assert!(b["error"]["message"].as_str().unwrap().contains(ghost2));
}

#[tokio::test]
async fn pools_capacity_and_quota() {
    let c = Cloud::start().await;
    let a = &c.admin;
    // A fresh cloud has the default pool.
    let (st, l) = c.get(a, "/disk_pools").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(l["disk_pools"].as_array().unwrap().len(), 1);
    assert_eq!(l["disk_pools"][0]["name"], "default");
    let small = vpe_pool(&c, "small", 10).await;
    let (st, p) = c.get(a, &format!("/disk_pools/{small}")).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        (
            p["disk_pool"]["capacity_gb"].clone(),
            p["disk_pool"]["free_gb"].clone()
        ),
        (json!(10), json!(10))
    );
    assert!(is_vpe_time(p["disk_pool"]["created_at"].as_str().unwrap()));
    // Same name twice: conflict. Members may not create pools.
    let (st, b) = c
        .post(
            a,
            "/disk_pools",
            json!({"disk_pool": {"name": "small", "capacity_gb": 5}}),
        )
        .await;
    assert_fault(st, &b, 409);
    let m = c.new_member("vpe-pools").await;
    let (st, b) = c
        .post(
            &m,
            "/disk_pools",
            json!({"disk_pool": {"name": "mine", "capacity_gb": 5}}),
        )
        .await;
    assert_fault(st, &b, 403);
    let (st, l) = c.get(&m, "/disk_pools").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(l["disk_pools"].as_array().unwrap().len(), 2);
    // Capacity: 8 GB fits, 5 more do not.
    vpe_disk(&c, &m, "big", 8, Some(&small)).await;
    let (st, b) = c
        .post(
            &m,
            "/disks",
            json!({"disk": {"name": "more", "size_gb": 5, "disk_pool": "small"}}),
        )
        .await;
    assert_fault(st, &b, 409);
    assert!(
        b["error"]["message"].as_str().unwrap().contains("small"),
        "{b}"
    );
    let (_, p) = c.get(a, &format!("/disk_pools/{small}")).await;
    assert_eq!(p["disk_pool"]["used_gb"], 8);
    assert_eq!(p["disk_pool"]["free_gb"], 2);
    // Quota: two disks at most for this project.
    let admin_ctx = c.ctx(a).await;
    c.control()
        .quota_update(
            &admin_ctx,
            &m.project_id.as_str().into(),
            [("volumes".to_owned(), 2)].into_iter().collect(),
        )
        .await
        .unwrap();
    vpe_disk(&c, &m, "second", 1, None).await;
    let (st, b) = c
        .post(
            &m,
            "/disks",
            json!({"disk": {"name": "third", "size_gb": 1}}),
        )
        .await;
    assert_fault(st, &b, 403);
    assert_eq!(b["error"]["type"], "OverQuota");
    // Bad pool bodies.
    let (st, b) = c
        .post(
            a,
            "/disk_pools",
            json!({"disk_pool": {"name": "z", "capacity_gb": 0}}),
        )
        .await;
    assert_fault(st, &b, 400);
    let (st, b) = c
        .post(
            a,
            "/disk_pools",
            json!({"disk_pool": {"name": "z", "capacity_gb": -1}}),
        )
        .await;
    assert_fault(st, &b, 400);
    let (st, b) = c.get(a, "/disk_pools/nope").await;
    assert_fault(st, &b, 404);
}

// ---- metrics ----

#[tokio::test]
async fn metrics_are_plausible_series() {
    let c = Cloud::start_with(|cfg| cfg.control.stats_period = Duration::from_millis(100)).await;
    let a = &c.admin;
    let img = c.image(a, "img", b"x").await;
    let id = vpe_create(&c, a, "busy", &img, json!({})).await;
    vpe_settle(&c, a, &id, "active").await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (st, b) = c.get(a, &format!("/instances/{id}/metrics")).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let m = &b["metrics"];
    assert_eq!(m["uuid"], id.as_str());
    assert_eq!(m["interval"], 0.1);
    assert_eq!(m["window"], 3600);
    let series = [
        "cpu",
        "memory",
        "memory_used",
        "disk_read",
        "disk_write",
        "network_rx",
        "network_tx",
    ];
    let n = m["cpu"].as_array().unwrap().len();
    assert!(n >= 3, "{m}");
    for key in series {
        let pts = m[key].as_array().unwrap_or_else(|| panic!("{key} in {m}"));
        assert_eq!(pts.len(), n, "{key}");
        assert!(m["units"][key].is_string(), "{key}");
        for p in pts {
            assert!(is_vpe_time(p["time"].as_str().unwrap()), "{p}");
            let v = p["value"].as_f64().unwrap();
            assert!(v >= 0.0, "{key}: {p}");
            if key == "cpu" || key == "memory" {
                assert!(v <= 100.0, "{key}: {p}");
            }
        }
    }
    // A synthetic workload: some CPU, some memory, traffic.
    assert!(
        m["cpu"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["value"].as_f64().unwrap() > 0.0),
        "{m}"
    );
    assert!(m["memory_used"][0]["value"].as_f64().unwrap() > 0.0, "{m}");
    // A shorter window has no more points; bad windows are refused.
    let (st, b) = c.get(a, &format!("/instances/{id}/metrics?window=1")).await;
    assert_eq!(st, StatusCode::OK);
    assert!(b["metrics"]["cpu"].as_array().unwrap().len() <= n);
    assert_eq!(b["metrics"]["window"], 1);
    for bad in ["abc", "0", "-5", "99999999"] {
        let (st, b) = c
            .get(a, &format!("/instances/{id}/metrics?window={bad}"))
            .await;
        assert_fault(st, &b, 400);
    }
    let (st, b) = c
        .get(a, "/instances/8d0bd581-7df2-4cd5-aa64-db23c3ac25b0/metrics")
        .await;
    assert_fault(st, &b, 404);
}

// ---- console ----

/// A tiny VNC stand-in: sends the RFB greeting, then echoes what it receives.
async fn rfb_stub() -> (u16, tokio::task::JoinHandle<Vec<u8>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        sock.write_all(b"RFB 003.008\n").await.unwrap();
        let mut seen = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            match tokio::time::timeout(Duration::from_secs(5), sock.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
                Ok(Ok(n)) => {
                    seen.extend_from_slice(&buf[..n]);
                    sock.write_all(&buf[..n]).await.unwrap();
                }
            }
        }
        seen
    });
    (port, task)
}

/// The JSON config the console page embeds.
fn page_config(html: &str) -> Value {
    let start = html.find("id=\"nimbus-console\">").expect("config block") + 20;
    let end = start + html[start..].find("</script>").unwrap();
    serde_json::from_str(&html[start..end]).unwrap()
}

#[tokio::test]
async fn vnc_url_opens_a_console_page_whose_websocket_proxies_bytes() {
    let c = Cloud::start().await;
    let a = &c.admin;
    let img = c.image(a, "img", b"x").await;
    let id = vpe_create(&c, a, "console", &img, json!({})).await;
    // Not running yet: no console.
    let (st, b) = c.get(a, &format!("/instances/{id}/vnc")).await;
    assert!(st == StatusCode::CONFLICT || st == StatusCode::OK, "{b}");
    vpe_settle(&c, a, &id, "active").await;
    let (port, stub) = rfb_stub().await;
    reregister_host(
        &c,
        Some(VncConsole {
            host: "127.0.0.1".into(),
            port,
            password: "s3cret".into(),
            websocket_port: None,
        }),
        false,
    )
    .await;
    let (st, b) = c.get(a, &format!("/instances/{id}/vnc")).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let url = b["instance"]["vnc_url"].as_str().unwrap().to_owned();
    // The page opens without X-Auth-Token (a browser has none).
    let resp = c.http.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let html = resp.text().await.unwrap();
    assert!(html.contains("vnc/console.js"), "{html}");
    assert!(html.contains("Console of console"));
    let cfg = page_config(&html);
    assert_eq!(cfg["uuid"], id.as_str());
    assert_eq!(cfg["password"], "s3cret");
    // The page's scripts are served by Nimbus.
    for (path, needle) in [
        ("/vnc/console.js", "novnc/core/rfb.js"),
        ("/vnc/novnc/core/rfb.js", "export default class RFB"),
        ("/vnc/novnc/vendor/pako/lib/zlib/inflate.js", "inflate"),
    ] {
        let r = c.http.get(format!("{}{path}", c.url)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .contains("javascript"),
            "{path}"
        );
        assert!(r.text().await.unwrap().contains(needle), "{path}");
    }
    let r = c
        .http
        .get(format!("{}/vnc/novnc/core/nope.js", c.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // The WebSocket relays bytes both ways.
    let ws_url = format!(
        "{}/{}",
        c.url.replacen("http://", "ws://", 1),
        cfg["websocket"].as_str().unwrap()
    );
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        ws_url.as_str(),
    )
    .unwrap();
    req.headers_mut()
        .insert("sec-websocket-protocol", "binary".parse().unwrap());
    let (mut ws, resp) = tokio_tungstenite::connect_async(req)
        .await
        .expect("ws connects");
    assert_eq!(resp.headers()["sec-websocket-protocol"], "binary");
    use tokio_tungstenite::tungstenite::Message as M;
    let greeting = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(greeting, M::Binary(b"RFB 003.008\n".to_vec().into()));
    ws.send(M::Binary(b"RFB 003.008\n".to_vec().into()))
        .await
        .unwrap();
    let echo = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(echo, M::Binary(b"RFB 003.008\n".to_vec().into()));
    ws.close(None).await.unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(5), stub)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seen, b"RFB 003.008\n");

    // Tokens: a tampered or missing one opens nothing; one for another instance neither.
    let tampered = url.replace("token=", "token=x");
    let r = c.http.get(&tampered).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.text().await.unwrap().contains("Console unavailable"));
    let r = c
        .http
        .get(format!("{}/vnc?instance-uuid={id}", c.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let other = url.replace(
        &format!("instance-uuid={id}"),
        "instance-uuid=8d0bd581-7df2-4cd5-aa64-db23c3ac25b0",
    );
    let r = c.http.get(&other).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // The page token does not open the socket, and a bad socket token is a VPE fault.
    let page_token = url.split("token=").nth(1).unwrap();
    for t in [page_token, "garbage"] {
        let r = c
            .http
            .get(format!("{}/vnc/websockify?token={t}", c.url))
            .send()
            .await
            .unwrap();
        let st = r.status();
        let body: Value = r.json().await.unwrap();
        assert_fault(st, &body, 401);
    }
    // The socket token works only as a WebSocket.
    let r = c
        .http
        .get(format!("{}/{}", c.url, cfg["websocket"].as_str().unwrap()))
        .send()
        .await
        .unwrap();
    let st = r.status();
    let body: Value = r.json().await.unwrap();
    assert_fault(st, &body, 400);
}

/// Nova's console calls hand out the same browser console as VPE: `remote-consoles` (2.6)
/// and the legacy `os-getVNCConsole` action answer a URL whose page opens without a token
/// and names the VNC endpoint the host agent serves (was an unusable `vnc://` URL).
#[tokio::test]
async fn nova_console_urls_open_the_browser_console() {
    let c = Cloud::start().await;
    let a = &c.admin;
    let img = c.image(a, "img", b"x").await;
    let id = vpe_create(&c, a, "novacon", &img, json!({})).await;
    vpe_settle(&c, a, &id, "active").await;
    let (port, _stub) = rfb_stub().await;
    reregister_host(
        &c,
        Some(VncConsole {
            host: "127.0.0.1".into(),
            port,
            password: "pw-nova".into(),
            websocket_port: None,
        }),
        false,
    )
    .await;
    let (st, b) = c
        .post(
            &a.mv("2.6"),
            &format!("/compute/v2.1/servers/{id}/remote-consoles"),
            json!({"remote_console": {"protocol": "vnc", "type": "novnc"}}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(b["remote_console"]["protocol"], "vnc");
    assert_eq!(b["remote_console"]["type"], "novnc");
    let remote = b["remote_console"]["url"].as_str().unwrap().to_owned();
    let (st, b) = c
        .action(a, &id, json!({"os-getVNCConsole": {"type": "novnc"}}))
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let legacy = b["console"]["url"].as_str().unwrap().to_owned();
    for url in [remote, legacy] {
        assert!(
            url.starts_with(&format!("{}/vnc?instance-uuid={id}&token=", c.url)),
            "{url}"
        );
        let resp = c.http.get(&url).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{url}");
        let html = resp.text().await.unwrap();
        assert!(html.contains("Console of novacon"), "{html}");
        let cfg = page_config(&html);
        assert_eq!(cfg["password"], "pw-nova");
        assert!(
            cfg["websocket"]
                .as_str()
                .unwrap()
                .starts_with("vnc/websockify?token=")
        );
    }
}

/// A stopped instance has no console; the fault is VPE's.
#[tokio::test]
async fn no_console_for_a_stopped_instance() {
    let c = Cloud::start().await;
    let a = &c.admin;
    let img = c.image(a, "img", b"x").await;
    let id = vpe_create(&c, a, "off", &img, json!({})).await;
    vpe_settle(&c, a, &id, "active").await;
    c.post(a, &format!("/instances/{id}/stop"), json!({})).await;
    vpe_settle(&c, a, &id, "shutoff").await;
    let (st, b) = c.get(a, &format!("/instances/{id}/vnc")).await;
    assert_fault(st, &b, 409);
}

// ---- bad input ----

#[tokio::test]
async fn bad_input_gets_vpe_faults_never_500() {
    let c = Cloud::start().await;
    let a = &c.admin;
    let img = c.image(a, "img", b"x").await;
    let id = vpe_create(&c, a, "target", &img, json!({})).await;
    let inst = |extra: Value| {
        let mut i = json!({"name": "x", "flavor_uuid": "1", "image_uuid": img});
        if let Value::Object(m) = extra {
            for (k, v) in m {
                i[k] = v;
            }
        }
        json!({"instance": i}).to_string()
    };
    let cases: Vec<(Method, String, String, u16, Option<&str>)> = vec![
        (
            Method::POST,
            "/instances".into(),
            "{\"instance\": ".into(),
            400,
            Some("Malformed"),
        ),
        (Method::POST, "/instances".into(), "[]".into(), 400, None),
        (
            Method::POST,
            "/instances".into(),
            "{}".into(),
            400,
            Some("instance"),
        ),
        (
            Method::POST,
            "/instances".into(),
            inst(json!({"ha": "yes"})),
            400,
            Some("attribute ha. Value: yes"),
        ),
        (
            Method::POST,
            "/instances".into(),
            inst(json!({"tags": "a"})),
            400,
            Some("attribute tags. Value: a"),
        ),
        (
            Method::POST,
            "/instances".into(),
            inst(json!({"disks": [1]})),
            400,
            Some("Value: 1. 1 is not of type 'string'"),
        ),
        (
            Method::POST,
            "/instances".into(),
            inst(json!({"name": 5})),
            400,
            Some("attribute name"),
        ),
        (
            Method::POST,
            "/instances".into(),
            inst(json!({"bogus": 1})),
            400,
            Some("bogus"),
        ),
        (
            Method::POST,
            "/instances".into(),
            inst(json!({"name": ""})),
            400,
            Some("name"),
        ),
        (
            Method::POST,
            "/instances".into(),
            inst(json!({"image_uuid": "nope"})),
            400,
            Some("image_uuid"),
        ),
        (
            Method::POST,
            "/instances".into(),
            inst(json!({"tags": ["a/b"]})),
            400,
            None,
        ),
        (
            Method::POST,
            "/instances".into(),
            "{\"instance\": {\"name\": \"x\"}}".into(),
            400,
            Some("flavor_uuid"),
        ),
        (
            Method::PUT,
            format!("/instances/{id}"),
            "{\"instance\": {\"flavor_uuid\": \"2\"}}".into(),
            400,
            Some("flavor_uuid"),
        ),
        (
            Method::PUT,
            format!("/instances/{id}"),
            "{\"instance\": {\"ha\": 1}}".into(),
            400,
            Some("attribute ha"),
        ),
        (
            Method::PUT,
            format!("/instances/{id}"),
            "not json".into(),
            400,
            None,
        ),
        (
            Method::PUT,
            "/instances/not-a-uuid".into(),
            "{\"instance\": {}}".into(),
            404,
            None,
        ),
        (
            Method::GET,
            "/instances/not-a-uuid".into(),
            String::new(),
            404,
            Some("not-a-uuid"),
        ),
        (
            Method::DELETE,
            "/instances/not-a-uuid".into(),
            String::new(),
            404,
            None,
        ),
        (
            Method::DELETE,
            "/instances/8d0bd581-7df2-4cd5-aa64-db23c3ac25b0".into(),
            String::new(),
            404,
            None,
        ),
        (
            Method::POST,
            format!("/instances/{id}/stop"),
            "{\"force\": true}".into(),
            400,
            Some("force"),
        ),
        (
            Method::POST,
            format!("/instances/{id}/start"),
            "[1]".into(),
            400,
            None,
        ),
        (
            Method::POST,
            format!("/instances/{id}/reboot"),
            "{}".into(),
            404,
            None,
        ),
        (
            Method::GET,
            format!("/instances/{id}/bogus"),
            String::new(),
            404,
            None,
        ),
        (
            Method::PATCH,
            format!("/instances/{id}"),
            "{}".into(),
            405,
            None,
        ),
        (
            Method::DELETE,
            "/instances".into(),
            String::new(),
            405,
            None,
        ),
        (
            Method::POST,
            "/disks".into(),
            "{\"disk\": {\"name\": \"d\", \"size_gb\": \"big\"}}".into(),
            400,
            Some("attribute size_gb. Value: big"),
        ),
        (
            Method::POST,
            "/disks".into(),
            "{\"disk\": {\"name\": \"d\", \"size_gb\": 0}}".into(),
            400,
            None,
        ),
        (
            Method::POST,
            "/disks".into(),
            "{\"disk\": {\"name\": \"d\", \"size_gb\": 1, \"x\": 1}}".into(),
            400,
            Some("x"),
        ),
        (Method::GET, "/disks/nope".into(), String::new(), 404, None),
        (
            Method::POST,
            "/disk_pools".into(),
            "{\"disk_pool\": {\"name\": \"p\"}}".into(),
            400,
            Some("capacity_gb"),
        ),
    ];
    for (method, path, body, want, needle) in cases {
        let (st, b) = raw(&c, a, method.clone(), &path, &body).await;
        assert_fault(st, &b, want);
        if let Some(n) = needle {
            assert!(
                b["error"]["message"].as_str().unwrap().contains(n),
                "{method} {path} {body}: {b}"
            );
        }
    }
    // No token: VPE's 401.
    let r = c
        .http
        .get(format!("{}/instances", c.url))
        .send()
        .await
        .unwrap();
    let st = r.status();
    assert_fault(st, &r.json().await.unwrap(), 401);
    // Oversized body: VPE's 413.
    let big = format!(
        "{{\"instance\": {{\"name\": \"{}\"}}}}",
        "x".repeat(2 * 1024 * 1024)
    );
    let (st, b) = raw(&c, a, Method::POST, "/instances", &big).await;
    assert_fault(st, &b, 413);
    // The instance is untouched by all of it.
    let v = vpe_settle(&c, a, &id, "active").await;
    assert_eq!(v["name"], "target");
}

/// Against the fake driver's own VNC server (a real RFB server with VNC authentication and
/// a placeholder screen): the page's WebSocket carries the whole handshake, including the
/// authentication with the page's temporary password.
#[tokio::test]
async fn console_of_the_fake_driver_authenticates_through_the_proxy() {
    let c = Cloud::start().await;
    let a = &c.admin;
    let img = c.image(a, "img", b"x").await;
    let id = vpe_create(&c, a, "fake-console", &img, json!({})).await;
    vpe_settle(&c, a, &id, "active").await;
    let (st, b) = c.get(a, &format!("/instances/{id}/vnc")).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let url = b["instance"]["vnc_url"].as_str().unwrap();
    let resp = c.http.get(url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let cfg = page_config(&resp.text().await.unwrap());
    let password = cfg["password"].as_str().unwrap().to_owned();
    let ws_url = format!(
        "{}/{}",
        c.url.replacen("http://", "ws://", 1),
        cfg["websocket"].as_str().unwrap()
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url.as_str())
        .await
        .expect("ws connects");
    use tokio_tungstenite::tungstenite::Message as M;
    // Reassemble the server's byte stream from binary frames.
    let mut pending: Vec<u8> = Vec::new();
    async fn take(
        ws: &mut tokio_tungstenite::WebSocketStream<
            tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
        >,
        pending: &mut Vec<u8>,
        n: usize,
    ) -> Vec<u8> {
        while pending.len() < n {
            match tokio::time::timeout(Duration::from_secs(5), ws.next())
                .await
                .expect("server answers")
                .expect("stream open")
                .expect("frame")
            {
                M::Binary(b) => pending.extend_from_slice(&b),
                other => panic!("unexpected frame {other:?}"),
            }
        }
        pending.drain(..n).collect()
    }
    assert_eq!(take(&mut ws, &mut pending, 12).await, b"RFB 003.008\n");
    ws.send(M::Binary(b"RFB 003.008\n".to_vec().into()))
        .await
        .unwrap();
    let n = take(&mut ws, &mut pending, 1).await[0] as usize;
    let types = take(&mut ws, &mut pending, n).await;
    assert!(types.contains(&2), "VNC authentication offered: {types:?}");
    ws.send(M::Binary(vec![2].into())).await.unwrap();
    let challenge: [u8; 16] = take(&mut ws, &mut pending, 16).await.try_into().unwrap();
    let answer = nimbus_agent::fake_console::vnc_auth_response(&password, &challenge);
    ws.send(M::Binary(answer.to_vec().into())).await.unwrap();
    assert_eq!(
        take(&mut ws, &mut pending, 4).await,
        [0, 0, 0, 0],
        "authenticated"
    );
    ws.send(M::Binary(vec![1].into())).await.unwrap(); // ClientInit: shared
    let init = take(&mut ws, &mut pending, 24).await;
    let (w, h) = (
        u16::from_be_bytes([init[0], init[1]]),
        u16::from_be_bytes([init[2], init[3]]),
    );
    assert_eq!(
        (w, h),
        (
            nimbus_agent::fake_console::WIDTH,
            nimbus_agent::fake_console::HEIGHT
        )
    );
    ws.close(None).await.unwrap();
}

// ---- the console in a real browser ----

/// Send one DevTools command to the first page of a Chromium; its `result` (`null` while
/// there is no page yet).
async fn devtools(base: &str, method: &str, params: Value) -> Value {
    use tokio_tungstenite::tungstenite::Message as M;
    let Ok(resp) = reqwest::get(format!("{base}/json/list")).await else {
        return Value::Null;
    };
    let list: Value = resp.json().await.unwrap_or(Value::Null);
    let Some(ws_url) = list
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| t["type"] == "page")
        .and_then(|t| t["webSocketDebuggerUrl"].as_str())
    else {
        return Value::Null;
    };
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url).await.unwrap();
    let call = json!({"id": 1, "method": method, "params": params});
    ws.send(M::Text(call.to_string().into())).await.unwrap();
    while let Some(Ok(msg)) = ws.next().await {
        if let M::Text(t) = msg {
            let v: Value = serde_json::from_str(&t).unwrap();
            if v["id"] == 1 {
                return v["result"].clone();
            }
        }
    }
    Value::Null
}

/// Opens `vnc_url` in headless Chromium: noVNC (served by Nimbus) connects through the
/// WebSocket proxy to the fake driver's VNC server, authenticates with the page's
/// temporary password and gets the 640×400 screen. Needs Debian's `chromium`
/// (`scripts/test.sh` installs it); fails — never skips — without it.
#[tokio::test]
async fn console_page_connects_in_a_browser() {
    let Some(chromium) = ["chromium", "chromium-browser"].into_iter().find(|b| {
        std::process::Command::new(b)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    }) else {
        panic!(
            "console_page_connects_in_a_browser needs chromium: `apt-get install --no-install-recommends chromium` (scripts/test.sh does)"
        );
    };
    let c = Cloud::start().await;
    let a = &c.admin;
    let img = c.image(a, "img", b"x").await;
    let id = vpe_create(&c, a, "browser", &img, json!({})).await;
    vpe_settle(&c, a, &id, "active").await;
    let (_, b) = c.get(a, &format!("/instances/{id}/vnc")).await;
    let url = b["instance"]["vnc_url"].as_str().unwrap().to_owned();
    let profile = tempfile::tempdir().unwrap();
    let mut browser = tokio::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--window-size=800,600",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(&url)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("chromium starts");
    // Chromium writes the DevTools port it chose into the profile.
    let port_file = profile.path().join("DevToolsActivePort");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let port = loop {
        if let Some(p) = std::fs::read_to_string(&port_file)
            .ok()
            .and_then(|t| t.lines().next().and_then(|l| l.trim().parse::<u16>().ok()))
        {
            break p;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "chromium never opened DevTools"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let base = format!("http://127.0.0.1:{port}");
    let probe = "JSON.stringify({state: document.body && document.body.dataset.console, \
                 width: (document.querySelector('#screen canvas') || {}).width})";
    let mut last = Value::Null;
    loop {
        let v = devtools(
            &base,
            "Runtime.evaluate",
            json!({"expression": probe, "returnByValue": true}),
        )
        .await;
        if let Some(text) = v["result"]["value"].as_str() {
            last = serde_json::from_str(text).unwrap_or(Value::Null);
            if last["state"] == "connected" && last["width"] == nimbus_agent::fake_console::WIDTH {
                break;
            }
            assert_ne!(last["state"], "failed", "the console failed: {last}");
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "noVNC never connected; last page state: {last}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // `NIMBUS_CONSOLE_SCREENSHOT=/tmp/console.png` saves what the page shows.
    if let Ok(shot) = std::env::var("NIMBUS_CONSOLE_SCREENSHOT") {
        let v = devtools(&base, "Page.captureScreenshot", json!({"format": "png"})).await;
        use base64::Engine as _;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v["data"].as_str().unwrap_or_default())
            .unwrap();
        std::fs::write(shot, png).unwrap();
    }
    let _ = browser.kill().await;
}
