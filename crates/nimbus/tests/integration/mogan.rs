//! The Mogan dialect (`/v1/instances`): the seed's examples (golden fixtures), power
//! changes with `target_power_state` in flight, `fields=`/`all_tenants`, bad input in
//! Mogan's fault format, and a cross-dialect rename.

use crate::common::{Cloud, Session};
use crate::dialect_shape::{Rules, assert_shape, fixture};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;

/// A valid OpenSSH ed25519 public key line (the blob is well formed; the key is junk).
pub const TEST_PUBLIC_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f nimbus-test";

/// The public network's id and a new private network's id (owned by `s`'s project).
pub async fn networks(c: &Cloud, s: &Session, private_name: &str) -> (String, String) {
    let ctx = c.ctx(s).await;
    let nets = c.control().networks_list(&ctx).await.unwrap();
    let public = nets.iter().find(|n| n.public).unwrap().id.to_string();
    let private = c
        .control()
        .network_create(
            &ctx,
            nimbus_model::network::NetworkCreate {
                name: private_name.into(),
                kind: nimbus_model::network::NetworkType::Custom,
                cidr: Some("192.168.15.0/24".into()),
                gateway: None,
                cidr6: None,
                gateway6: None,
                dhcp: true,
            },
        )
        .await
        .unwrap();
    (public, private.id.to_string())
}

pub async fn keypair(c: &Cloud, s: &Session, name: &str) {
    let ctx = c.ctx(s).await;
    c.control()
        .keypair_import(&ctx, name, Some(TEST_PUBLIC_KEY), "ssh", None)
        .await
        .unwrap();
}

/// Mogan's fault: `{"error_message": "<json of {faultcode, faultstring, debuginfo}>"}`.
/// Returns the inner fault.
pub fn mogan_fault(body: &Value) -> Value {
    let outer = body
        .as_object()
        .unwrap_or_else(|| panic!("fault is not an object: {body}"));
    assert_eq!(outer.len(), 1, "{body}");
    let inner: Value = serde_json::from_str(outer["error_message"].as_str().expect("string"))
        .expect("error_message holds JSON");
    let keys: Vec<&String> = inner.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 3, "{inner}");
    assert!(inner["faultstring"].is_string(), "{inner}");
    assert!(inner["debuginfo"].is_null(), "{inner}");
    assert!(
        inner["faultcode"] == "Client" || inner["faultcode"] == "Server",
        "{inner}"
    );
    inner
}

/// Assert a Mogan fault with `status` whose text contains `needle`.
pub(crate) fn expect_fault(got: (StatusCode, Value), status: StatusCode, needle: &str) {
    assert_eq!(got.0, status, "{}", got.1);
    let f = mogan_fault(&got.1);
    let text = f["faultstring"].as_str().unwrap();
    assert!(text.contains(needle), "'{text}' lacks '{needle}'");
    let code = if status.is_client_error() {
        "Client"
    } else {
        "Server"
    };
    assert_eq!(f["faultcode"], code);
}

/// A minimal valid create body on the public network.
fn create_body(name: &str, image: &str, public: &str) -> Value {
    json!({"name": name, "instance_type_uuid": "1", "image_uuid": image,
           "networks": [{"net_id": public}]})
}

async fn create(c: &Cloud, s: &Session, body: Value) -> String {
    let (st, v) = c.post(s, "/v1/instances", body).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    v["uuid"].as_str().unwrap().to_owned()
}

async fn states(c: &Cloud, s: &Session, id: &str) -> Value {
    let (st, v) = c.get(s, &format!("/v1/instances/{id}/states")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v
}

/// Poll the states summary until `pred` holds.
async fn wait_states(c: &Cloud, s: &Session, id: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let v = states(c, s, id).await;
        if pred(&v) {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "states never matched: {v}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

const NULLABLE: &[&str] = &[
    "power_state",
    "launched_at",
    "updated_at",
    "availability_zone",
    "description",
    "image_uuid",
    // Nimbus networks have no separate subnet objects.
    "network_info.*.fixed_ips[].subnet_id",
];

fn instance_rules() -> Rules<'static> {
    Rules {
        nullable: NULLABLE,
        maps: &["network_info", "extra"],
        // Nimbus flavor ids are Nova's strings ("1"), not UUIDs.
        loose: &["instance_type_uuid"],
        extra_keys: &[],
    }
}

/// Every example of seed 002 (request accepted, answer in the documented shape).
#[tokio::test]
async fn golden_fixtures() {
    let c = Cloud::start().await;
    let a = &c.admin;
    let image = c.image(a, "mogan-image", b"bare metal bits").await;
    let (public, private) = networks(&c, a, "private").await;
    keypair(&c, a, "test_key").await;

    // Create (instance-create-req.json with this cloud's ids).
    let mut req = fixture("mogan", "instance-create-req.json");
    req["instance_type_uuid"] = json!("1");
    req["image_uuid"] = json!(image);
    req["availability_zone"] = json!("nova");
    req["networks"][0]["net_id"] = json!(public);
    req["networks"][1]["net_id"] = json!(private);
    let resp = c
        .req(a, Method::POST, "/v1/instances")
        .json(&req)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    let created: Value = resp.json().await.unwrap();
    assert_shape(
        &fixture("mogan", "instance-create-resp.json"),
        &created,
        &instance_rules(),
    );
    let id = created["uuid"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("{}/v1/instances/{id}", c.url));
    assert_eq!(created["links"][0]["href"], json!(location));
    assert_eq!(created["status"], "building");
    assert_eq!(created["extra"]["My Server Name"], "Apache1");
    assert_eq!(created["name"], "test_instance");
    assert_eq!(created["instance_type_uuid"], "1");
    c.wait_status(a, &id, "ACTIVE").await;

    // List, detail list, show.
    let (st, list) = c.get(a, "/v1/instances").await;
    assert_eq!(st, StatusCode::OK);
    assert_shape(
        &fixture("mogan", "instance-list-resp.json"),
        &list,
        &Rules::default(),
    );
    let (st, detail) = c.get(a, "/v1/instances/detail").await;
    assert_eq!(st, StatusCode::OK);
    let list_rules = Rules {
        nullable: &[
            "instances[].power_state",
            "instances[].updated_at",
            "instances[].description",
            "instances[].image_uuid",
            "instances[].network_info.*.fixed_ips[].subnet_id",
        ],
        maps: &["instances[].network_info", "instances[].extra"],
        loose: &["instances[].instance_type_uuid"],
        extra_keys: &[],
    };
    assert_shape(
        &fixture("mogan", "instance-list-detail-resp.json"),
        &detail,
        &list_rules,
    );
    let shown = detail["instances"][0].clone();
    assert_eq!(shown["status"], "active");
    assert_eq!(shown["power_state"], "power on");
    assert_eq!(
        shown["network_info"].as_object().unwrap().len(),
        2,
        "{shown}"
    );
    let (st, one) = c.get(a, &format!("/v1/instances/{id}")).await;
    assert_eq!(st, StatusCode::OK);
    assert_shape(
        &fixture("mogan", "instance-detail-resp.json"),
        &one,
        &instance_rules(),
    );
    // Each NIC: the network's id, the MAC, the fixed IPs.
    let nics: Vec<&Value> = one["network_info"].as_object().unwrap().values().collect();
    let nets: Vec<&str> = nics
        .iter()
        .map(|n| n["network"].as_str().unwrap())
        .collect();
    assert!(
        nets.contains(&public.as_str()) && nets.contains(&private.as_str()),
        "{one}"
    );
    assert!(
        nics.iter()
            .all(|n| !n["fixed_ips"].as_array().unwrap().is_empty())
    );

    // Update (the example replaces /extra/k1, which must exist first).
    let (st, v) = c
        .call(
            a,
            Method::PATCH,
            &format!("/v1/instances/{id}"),
            Some(json!([{"op": "add", "path": "/extra/k1", "value": "v0"}])),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, updated) = c
        .call(
            a,
            Method::PATCH,
            &format!("/v1/instances/{id}"),
            Some(fixture("mogan", "instance-update-req.json")),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{updated}");
    assert_shape(
        &fixture("mogan", "instance-update-resp.json"),
        &updated,
        &instance_rules(),
    );
    assert_eq!(updated["extra"]["k1"], "v1");
    assert_eq!(updated["extra"]["k2"], "v2");
    assert_eq!(updated["extra"]["My Server Name"], "Apache1");
    assert!(updated["updated_at"].is_string());
    // The core sees the same metadata (OpenStack view).
    let (_, os) = c
        .get(a, &format!("/compute/v2.1/servers/{id}/metadata"))
        .await;
    assert_eq!(os["metadata"]["k2"], "v2", "{os}");

    // States summary (Nimbus adds `locked` and `status`, as later Mogan releases do).
    let st_rules = Rules {
        nullable: &["target_power_state"],
        extra_keys: &[("", "locked"), ("", "status")],
        ..Rules::default()
    };
    let s = states(&c, a, &id).await;
    assert_shape(
        &fixture("mogan", "instance-get-state-response.json"),
        &s,
        &st_rules,
    );
    assert_eq!(
        s,
        json!({"power_state": "power on", "target_power_state": null, "locked": false, "status": "active"})
    );

    // Power off (instance-set-power-off.json).
    let resp = c
        .req(a, Method::PUT, &format!("/v1/instances/{id}/states/power"))
        .json(&fixture("mogan", "instance-set-power-off.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_eq!(
        resp.headers()["location"].to_str().unwrap(),
        format!("{}/v1/instances/{id}/states", c.url)
    );
    assert_eq!(resp.text().await.unwrap(), "");
    let s = wait_states(&c, a, &id, |v| v["status"] == "stopped").await;
    assert_shape(
        &fixture("mogan", "instance-get-state-response.json"),
        &s,
        &st_rules,
    );
    assert_eq!(s["power_state"], "power off");
    assert_eq!(s["target_power_state"], Value::Null);

    // Delete: 204, then gone.
    let (st, body) = c.delete(a, &format!("/v1/instances/{id}")).await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(body, Value::Null);
    c.wait_gone(a, &id).await;
    expect_fault(
        c.get(a, &format!("/v1/instances/{id}")).await,
        StatusCode::NOT_FOUND,
        "could not be found",
    );
}

/// `target_power_state` is visible while a change is in flight, then cleared.
#[tokio::test]
async fn power_changes_track_the_target() {
    // Slow power actions, so the in-flight reads land before the change completes even on
    // a loaded machine.
    let c = Cloud::start_with(|cfg| cfg.fake.action_delay = Duration::from_millis(1000)).await;
    let m = c.new_member("bm").await;
    let image = c.image(&m, "img", b"x").await;
    let (public, _) = networks(&c, &m, "p").await;
    let id = create(&c, &m, create_body("bm1", &image, &public)).await;
    wait_states(&c, &m, &id, |v| v["status"] == "active").await;
    let power = |target: &str| {
        let path = format!("/v1/instances/{id}/states/power");
        let body = json!({ "target": target });
        let c = &c;
        let m = &m;
        async move { c.put(m, &path, body).await }
    };

    for (target, in_flight, status, target_state, done_status, done_power) in [
        (
            "off",
            "powering-off",
            "power on",
            "power off",
            "stopped",
            "power off",
        ),
        (
            "on",
            "powering-on",
            "power off",
            "power on",
            "active",
            "power on",
        ),
        (
            "reboot",
            "rebooting",
            "power on",
            "rebooting",
            "active",
            "power on",
        ),
        (
            "soft_reboot",
            "rebooting",
            "power on",
            "soft rebooting",
            "active",
            "power on",
        ),
        (
            "soft_off",
            "powering-off",
            "power on",
            "power off",
            "stopped",
            "power off",
        ),
    ] {
        let (st, body) = power(target).await;
        assert_eq!(st, StatusCode::ACCEPTED, "{target}: {body}");
        let s = states(&c, &m, &id).await;
        assert_eq!(s["status"], in_flight, "{target}: {s}");
        assert_eq!(s["power_state"], status, "{target}: {s}");
        assert_eq!(s["target_power_state"], target_state, "{target}: {s}");
        // Another change while one is in flight is refused (a hard reboot may interrupt
        // a reboot, as in Nova, so try powering on).
        let (st, body) = power("on").await;
        assert_eq!(st, StatusCode::CONFLICT, "{target}: {body}");
        mogan_fault(&body);
        let s = wait_states(&c, &m, &id, |v| v["target_power_state"].is_null()).await;
        assert_eq!(s["status"], done_status, "{target}: {s}");
        assert_eq!(s["power_state"], done_power, "{target}: {s}");
    }
    // Stopped: powering off again is a state conflict.
    expect_fault(power("off").await, StatusCode::CONFLICT, "stopped");
    // Locked (by its owner through the OpenStack API): power changes are refused.
    let (st, body) = c.action(&m, &id, json!({"lock": null})).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{body}");
    assert_eq!(states(&c, &m, &id).await["locked"], true);
    expect_fault(power("on").await, StatusCode::CONFLICT, "locked");
    // The OpenStack view agrees on the state.
    let (_, os) = c.get(&m, &format!("/compute/v2.1/servers/{id}")).await;
    assert_eq!(os["server"]["status"], "SHUTOFF");
}

#[tokio::test]
async fn fields_and_tenants() {
    let c = Cloud::start().await;
    let a = &c.admin;
    let m = c.new_member("tenant").await;
    let image = c.image(&m, "img", b"x").await;
    let (public, _) = networks(&c, &m, "p").await;
    let mine = create(&c, &m, create_body("mine", &image, &public)).await;
    let image_a = c.image(a, "img-a", b"x").await;
    let theirs = create(&c, a, create_body("admins", &image_a, &public)).await;

    // Default list fields: uuid, name, description, status (+ links).
    let (_, v) = c.get(&m, "/v1/instances").await;
    let items = v["instances"].as_array().unwrap();
    assert_eq!(items.len(), 1, "a member sees only their project: {v}");
    let mut keys: Vec<&String> = items[0].as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["description", "links", "name", "status", "uuid"]);
    assert_eq!(items[0]["uuid"], json!(mine));

    // fields= (case-insensitive, unknown names ignored, links kept).
    let (st, v) = c
        .get(&m, "/v1/instances?fields=NAME,power_state,bogus")
        .await;
    assert_eq!(st, StatusCode::OK);
    let mut keys: Vec<&String> = v["instances"][0].as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["links", "name", "power_state"]);
    let (_, v) = c
        .get(&m, &format!("/v1/instances/{mine}?fields=uuid,extra"))
        .await;
    let mut keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["extra", "links", "uuid"]);

    // all_tenants: admins see every project; members asking get their own.
    let (_, v) = c.get(a, "/v1/instances?all_tenants=true").await;
    let ids: Vec<&str> = v["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["uuid"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&mine.as_str()) && ids.contains(&theirs.as_str()),
        "{v}"
    );
    let (_, v) = c.get(a, "/v1/instances/detail").await;
    assert_eq!(v["instances"].as_array().unwrap().len(), 1);
    let (_, v) = c.get(&m, "/v1/instances/detail?all_tenants=1").await;
    assert_eq!(v["instances"].as_array().unwrap().len(), 1);
    // Another project's instance is invisible.
    expect_fault(
        c.get(&m, &format!("/v1/instances/{theirs}")).await,
        StatusCode::NOT_FOUND,
        "could not be found",
    );
    expect_fault(
        c.get(a, "/v1/instances?all_tenants=maybe").await,
        StatusCode::BAD_REQUEST,
        "Unrecognized value",
    );
    expect_fault(
        c.get(a, "/v1/instances?limit=1").await,
        StatusCode::BAD_REQUEST,
        "Unknown argument",
    );
    expect_fault(
        c.get(a, "/v1/instances/detail?fields=name").await,
        StatusCode::BAD_REQUEST,
        "Unknown argument",
    );
}

#[tokio::test]
async fn bad_input_answers_mogan_faults() {
    let c = Cloud::start().await;
    let a = &c.admin;
    let image = c.image(a, "img", b"x").await;
    let (public, _) = networks(&c, a, "p").await;
    let id = create(&c, a, create_body("victim", &image, &public)).await;
    c.wait_status(a, &id, "ACTIVE").await;
    let inst = format!("/v1/instances/{id}");
    let bad = StatusCode::BAD_REQUEST;

    // Malformed JSON.
    let resp = c
        .req(a, Method::POST, "/v1/instances")
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), bad);
    mogan_fault(&resp.json().await.unwrap());
    // Wrong types, missing and unknown fields, bad references.
    let mk = |f: &dyn Fn(&mut Value)| {
        let mut b = create_body("x", &image, &public);
        f(&mut b);
        b
    };
    for (body, needle) in [
        (json!([1, 2]), "instance object"),
        (mk(&|b| b["name"] = json!(5)), "name"),
        (mk(&|b| b["networks"] = json!("public")), "networks"),
        (mk(&|b| b["networks"] = json!([])), "too short"),
        (
            mk(&|b| {
                b.as_object_mut().unwrap().remove("networks");
            }),
            "networks",
        ),
        (
            mk(&|b| b["networks"][0]["net_id"] = json!("not-a-uuid")),
            "net_id",
        ),
        (
            mk(&|b| b["networks"][0]["net_id"] = json!("8e8ceb07-4641-4188-9b22-840755e92ee2")),
            "could not be found",
        ),
        (
            mk(&|b| b["image_uuid"] = json!("efe0a06f-ca95-4808-b41e-9f55b9c5eb98")),
            "image",
        ),
        (
            mk(&|b| b["instance_type_uuid"] = json!("no-such-type")),
            "no-such-type",
        ),
        (mk(&|b| b["extra"] = json!({"k": 1})), "extra/k"),
        (mk(&|b| b["flavorRef"] = json!("1")), "flavorRef"),
        (
            mk(&|b| b["availability_zone"] = json!("atlantis")),
            "availability zone",
        ),
    ] {
        let got = c.post(a, "/v1/instances", body.clone()).await;
        expect_fault(got, bad, needle);
    }

    // JSON Patch: not a patch, bad op, read-only path, bad pointer, missing target.
    for (patch, needle) in [
        (json!({"name": "x"}), "array of operations"),
        (
            json!([{"op": "move", "from": "/name", "path": "/description"}]),
            "should be one of",
        ),
        (
            json!([{"op": "test", "path": "/name", "value": "victim"}]),
            "should be one of",
        ),
        (
            json!([{"op": "replace", "path": "/status", "value": "active"}]),
            "internal attribute",
        ),
        (
            json!([{"op": "replace", "path": "/uuid", "value": "x"}]),
            "internal attribute",
        ),
        (json!([{"op": "remove", "path": "/name"}]), "mandatory"),
        (
            json!([{"op": "replace", "path": "name", "value": "x"}]),
            "pattern",
        ),
        (
            json!([{"op": "replace", "path": "/extra/a~1b", "value": "x"}]),
            "pattern",
        ),
        (
            json!([{"op": "replace", "path": "/extra/missing", "value": "x"}]),
            "Couldn't apply patch",
        ),
        (
            json!([{"op": "add", "path": "/color", "value": "red"}]),
            "root of the resource",
        ),
        (
            json!([{"op": "replace", "path": "/name", "value": 7}]),
            "name",
        ),
        (json!([{"op": "replace", "path": "/name"}]), "need a value"),
    ] {
        let got = c.call(a, Method::PATCH, &inst, Some(patch.clone())).await;
        expect_fault(got, bad, needle);
    }
    // Nothing was changed by the refused patches.
    let (_, v) = c.get(a, &inst).await;
    assert_eq!(v["name"], "victim");
    assert_eq!(v["status"], "active");

    // Power: unknown target, wrong type, missing target, unknown field.
    let power = format!("{inst}/states/power");
    expect_fault(
        c.put(a, &power, json!({"target": "explode"})).await,
        bad,
        "explode",
    );
    expect_fault(c.put(a, &power, json!({"target": 1})).await, bad, "target");
    expect_fault(c.put(a, &power, json!({})).await, bad, "target");
    expect_fault(
        c.put(a, &power, json!({"target": "on", "force": true}))
            .await,
        bad,
        "force",
    );
    // A running instance cannot be powered on: 409.
    expect_fault(
        c.put(a, &power, json!({"target": "on"})).await,
        StatusCode::CONFLICT,
        "active",
    );
    // 406 when the client will not take JSON.
    let resp = c
        .req(a, Method::PUT, &power)
        .header("accept", "application/xml")
        .json(&json!({"target": "off"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_ACCEPTABLE);
    mogan_fault(&resp.json().await.unwrap());

    // Ids, URLs, methods, tokens.
    expect_fault(c.get(a, "/v1/instances/not-a-uuid").await, bad, "uuid");
    expect_fault(
        c.get(
            a,
            "/v1/instances/8e8ceb07-4641-4188-9b22-840755e92ee2/states",
        )
        .await,
        StatusCode::NOT_FOUND,
        "could not be found",
    );
    expect_fault(
        c.get(a, "/v1/bogus").await,
        StatusCode::NOT_FOUND,
        "could not be found",
    );
    expect_fault(
        c.put(a, "/v1/instances", json!({})).await,
        StatusCode::METHOD_NOT_ALLOWED,
        "not allowed",
    );
    let anon = Session {
        token: "nope".into(),
        ..a.clone()
    };
    let got = c.get(&anon, "/v1/instances").await;
    assert_eq!(got.0, StatusCode::UNAUTHORIZED);
    mogan_fault(&got.1);
    let resp = c
        .http
        .get(format!("{}/v1/instances", c.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    mogan_fault(&resp.json().await.unwrap());
}

/// Created through Mogan, renamed through Alliance, seen in OpenStack.
#[tokio::test]
async fn cross_dialect_rename() {
    let c = Cloud::start().await;
    let a = &c.admin;
    let image = c.image(a, "img", b"x").await;
    let (public, _) = networks(&c, a, "p").await;
    let id = create(&c, a, create_body("from-mogan", &image, &public)).await;
    c.wait_status(a, &id, "ACTIVE").await;
    let (st, v) = c
        .call(
            a,
            Method::PATCH,
            "/servers/from-mogan",
            Some(json!({"server": {"new_name": "via-alliance"}})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (_, os) = c.get(a, &format!("/compute/v2.1/servers/{id}")).await;
    assert_eq!(os["server"]["name"], "via-alliance");
    let (_, mg) = c.get(a, &format!("/v1/instances/{id}")).await;
    assert_eq!(mg["name"], "via-alliance");
    // And a Mogan rename shows in Alliance.
    let (st, v) = c
        .call(
            a,
            Method::PATCH,
            &format!("/v1/instances/{id}"),
            Some(
                json!([{"op": "replace", "path": "/name", "value": "back-in-mogan"},
                           {"op": "replace", "path": "/description", "value": "renamed twice"}]),
            ),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["description"], "renamed twice");
    let (st, al) = c.get(a, "/servers/back-in-mogan").await;
    assert_eq!(st, StatusCode::OK, "{al}");
    assert_eq!(al["server"]["id"], json!(id));
}
