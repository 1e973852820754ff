//! The Alliance dialect (`/servers`, `/flavors` at the root): the seed's examples (golden
//! fixtures), names vs ids and ambiguous names, bad input in Alliance's fault format, and a
//! cross-dialect power-off.

use crate::common::{Cloud, Session};
use crate::dialect_shape::{Rules, assert_shape, fixture};
use crate::mogan::{keypair, networks};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Alliance's fault: `{"error": {"code", "title", "message"[, "candidates"]}}`.
pub(crate) fn alliance_fault(got: &(StatusCode, Value), status: StatusCode, needle: &str) -> Value {
    assert_eq!(got.0, status, "{}", got.1);
    let e = &got.1["error"];
    assert_eq!(got.1.as_object().map(|o| o.len()), Some(1), "{}", got.1);
    assert_eq!(e["code"], json!(status.as_u16()), "{}", got.1);
    assert_eq!(
        e["title"],
        json!(status.canonical_reason().unwrap()),
        "{}",
        got.1
    );
    let msg = e["message"].as_str().expect("message");
    assert!(msg.contains(needle), "'{msg}' lacks '{needle}'");
    e.clone()
}

async fn create(c: &Cloud, s: &Session, body: Value) -> String {
    let (st, v) = c.post(s, "/servers", body).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v["server"]["id"].as_str().unwrap().to_owned()
}

/// Every example of seed 000 (request accepted, answer in the documented shape), plus
/// `GET /flavors` against Nimbus's own example.
#[tokio::test]
async fn golden_fixtures() {
    let c = Cloud::start().await;
    let a = &c.admin;
    c.image(a, "cirros-0.3.4-x86_64-uec", b"cirros").await;
    networks(&c, a, "private").await;
    keypair(&c, a, "admin-key").await;

    // Create by names (Example 3), answered as Example 4.
    let (st, created) = c
        .post(a, "/servers", fixture("alliance", "server-create-req.json"))
        .await;
    assert_eq!(st, StatusCode::OK, "{created}");
    let rules = Rules {
        maps: &["server.networks", "server.metadata"],
        ..Rules::default()
    };
    assert_shape(
        &fixture("alliance", "server-create-resp.json"),
        &created,
        &rules,
    );
    let id = created["server"]["id"].as_str().unwrap().to_owned();
    let s = &created["server"];
    assert_eq!(
        s["name"][0]["href"],
        json!(format!("{}/servers/{id}", c.url))
    );
    assert_eq!(s["flavorRef"]["id"], "2", "m1.small is flavor 2");
    assert_eq!(s["security_groups"], json!([{"name": "default"}]));
    let os = c.wait_status(a, &id, "ACTIVE").await;
    assert_eq!(os["name"], "demo_instance");
    assert_eq!(os["key_name"], "admin-key");
    // Named network plus `public`, as the seed's Examples 2 and 6 show.
    let mut joined: Vec<&String> = os["addresses"].as_object().unwrap().keys().collect();
    joined.sort();
    assert_eq!(joined, ["private", "public"], "{os}");

    // List (Example 1) and get (Example 2).
    let (st, list) = c.get(a, "/servers").await;
    assert_eq!(st, StatusCode::OK);
    assert_shape(
        &fixture("alliance", "servers-list-resp.json"),
        &list,
        &Rules::default(),
    );
    assert_eq!(list["servers"][0]["name"], "demo_instance");
    let get_rules = Rules {
        maps: &["server.addresses", "server.networks"],
        ..Rules::default()
    };
    let (st, got) = c.get(a, &format!("/servers/{id}")).await;
    assert_eq!(st, StatusCode::OK, "{got}");
    assert_shape(
        &fixture("alliance", "server-get-resp.json"),
        &got,
        &get_rules,
    );
    let g = &got["server"];
    assert_eq!(g["status"], "ACTIVE");
    assert_eq!(g["tenant_id"], json!(a.project_id));
    assert_eq!(g["hostId"], os["hostId"]);
    assert_eq!(g["addresses"], os["addresses"]);
    assert_eq!(
        g["networks"]["public"][0],
        os["addresses"]["public"][0]["addr"]
    );
    assert_eq!(
        g["networks"]["private"][0],
        os["addresses"]["private"][0]["addr"]
    );
    // The links Alliance shows work.
    let href = g["links"][0]["href"]
        .as_str()
        .unwrap()
        .trim_start_matches(&c.url)
        .to_owned();
    assert_eq!(c.get(a, &href).await.0, StatusCode::OK);
    let href = g["flavor"]["links"][0]["href"]
        .as_str()
        .unwrap()
        .trim_start_matches(&c.url)
        .to_owned();
    assert_eq!(c.get(a, &href).await.0, StatusCode::OK, "{href}");

    // Rename by name (Examples 5 and 6).
    let (st, updated) = c
        .call(
            a,
            Method::PATCH,
            "/servers/demo_instance",
            Some(fixture("alliance", "server-update-req.json")),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{updated}");
    assert_shape(
        &fixture("alliance", "server-update-resp.json"),
        &updated,
        &get_rules,
    );
    assert_eq!(updated["server"]["name"], "demo_instance_update");

    // Flavors (no example in the seed: Nimbus's documented shape).
    let (st, flavors) = c.get(a, "/flavors").await;
    assert_eq!(st, StatusCode::OK);
    assert_shape(
        &fixture("alliance", "flavors-list-resp.json"),
        &flavors,
        &Rules::default(),
    );
    assert!(
        flavors["flavors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["name"] == "m1.small")
    );

    // Delete by name: 200 with no body.
    let resp = c
        .req(a, Method::DELETE, "/servers/demo_instance_update")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.text().await.unwrap(), "");
    c.wait_gone(a, &id).await;
    let got = c.get(a, &format!("/servers/{id}")).await;
    alliance_fault(&got, StatusCode::NOT_FOUND, "No server");
}

/// Names address servers; ids work wherever names do; ambiguity is a 409 with the ids.
#[tokio::test]
async fn names_ids_and_ambiguity() {
    let c = Cloud::start().await;
    let m = c.new_member("al").await;
    c.image(&m, "img", b"x").await;
    let body = |name: &str| json!({"server": {"name": name, "flavor": "m1.tiny", "image": "img"}});
    let one = create(&c, &m, body("twin")).await;
    let two = create(&c, &m, body("twin")).await;
    let solo = create(&c, &m, body("solo")).await;

    for (method, path, body) in [
        (Method::GET, "/servers/twin", None),
        (
            Method::PATCH,
            "/servers/twin",
            Some(json!({"server": {"new_name": "x"}})),
        ),
        (Method::DELETE, "/servers/twin", None),
    ] {
        let got = c.call(&m, method.clone(), path, body).await;
        let e = alliance_fault(&got, StatusCode::CONFLICT, "More than one server");
        let mut ids: Vec<&str> = e["candidates"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        ids.sort();
        let mut want = vec![one.as_str(), two.as_str()];
        want.sort();
        assert_eq!(ids, want, "{method}");
    }
    // Ids disambiguate; names work for GET too.
    let (st, v) = c
        .call(
            &m,
            Method::PATCH,
            &format!("/servers/{one}"),
            Some(json!({"server": {"new_name": "first"}})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["server"]["name"], "first");
    let (st, v) = c.get(&m, "/servers/twin").await;
    assert_eq!(st, StatusCode::OK, "now unique: {v}");
    assert_eq!(v["server"]["id"], json!(two));
    let (st, v) = c.get(&m, "/servers/solo").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["server"]["id"], json!(solo));
    // Another project's server is not found by name or id.
    let other = c.new_member("other").await;
    alliance_fault(
        &c.get(&other, "/servers/solo").await,
        StatusCode::NOT_FOUND,
        "solo",
    );
    alliance_fault(
        &c.get(&other, &format!("/servers/{solo}")).await,
        StatusCode::NOT_FOUND,
        "No server",
    );
    let (_, v) = c.get(&other, "/servers").await;
    assert_eq!(v, json!({"servers": []}));

    // Create: ids work for flavor/image/network; ambiguous images are a 409; unknown names 400.
    let img2 = c.image(&m, "img", b"y").await;
    let got = c.post(&m, "/servers", body("z")).await;
    let e = alliance_fault(&got, StatusCode::CONFLICT, "More than one image");
    assert!(
        e["candidates"].as_array().unwrap().contains(&json!(img2)),
        "{e}"
    );
    let (_, private) = networks(&c, &m, "lan").await;
    let (st, v) = c
        .post(
            &m,
            "/servers",
            json!({"server": {"name": "by-ids", "flavor": "1", "image": img2, "network": private}}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let by_ids = v["server"]["id"].as_str().unwrap().to_owned();
    let os = c.wait_status(&m, &by_ids, "ACTIVE").await;
    let mut joined: Vec<&String> = os["addresses"].as_object().unwrap().keys().collect();
    joined.sort();
    assert_eq!(joined, ["lan", "public"], "{os}");
    // Naming `public` itself joins it once.
    let (st, v) = c
        .post(&m, "/servers", json!({"server": {"name": "on-public", "flavor": "1", "image": img2, "network": "public"}}))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let on_public = v["server"]["id"].as_str().unwrap().to_owned();
    let os = c.wait_status(&m, &on_public, "ACTIVE").await;
    assert_eq!(
        os["addresses"]["public"].as_array().map(|a| a.len()),
        Some(2),
        "one NIC (v4 + v6): {os}"
    );
    assert_eq!(os["addresses"].as_object().unwrap().len(), 1, "{os}");
    let (st, _) = c
        .post(&m, "/servers", json!({"server": {"name": "by-net-name", "flavor": "m1.tiny", "image": img2, "network": "lan"}}))
        .await;
    assert_eq!(st, StatusCode::OK);
    for (field, value, needle) in [
        ("flavor", "m9.huge", "No flavor named 'm9.huge'"),
        ("image", "nothing", "No image named 'nothing'"),
        ("network", "nowhere", "No network named 'nowhere'"),
        (
            "keyname",
            "no-key",
            "attribute keyname. No key pair named 'no-key'",
        ),
    ] {
        let mut b = json!({"server": {"name": "x", "flavor": "m1.tiny", "image": img2}});
        b["server"][field] = json!(value);
        alliance_fault(
            &c.post(&m, "/servers", b).await,
            StatusCode::BAD_REQUEST,
            needle,
        );
    }
    alliance_fault(
        &c.delete(&m, "/servers/ghost").await,
        StatusCode::NOT_FOUND,
        "ghost",
    );
}

#[tokio::test]
async fn bad_input_answers_alliance_faults() {
    let c = Cloud::start().await;
    let a = &c.admin;
    c.image(a, "img", b"x").await;
    let bad = StatusCode::BAD_REQUEST;
    let resp = c
        .req(a, Method::POST, "/servers")
        .header("content-type", "application/json")
        .body("{\"server\": {")
        .send()
        .await
        .unwrap();
    let got = (resp.status(), resp.json::<Value>().await.unwrap());
    alliance_fault(&got, bad, "Malformed");
    for (body, needle) in [
        (
            json!({"server": {"name": 5, "flavor": "m1.tiny", "image": "img"}}),
            "field/attribute name. Value: 5. 5 is not of type 'string'",
        ),
        (json!({"server": {"name": "x", "image": "img"}}), "flavor"),
        (
            json!({"server": {"name": "x", "flavor": "m1.tiny", "image": "img", "imageRef": "y"}}),
            "imageRef",
        ),
        (
            json!({"server": {"name": "x", "flavor": ["m1.tiny"], "image": "img"}}),
            "attribute flavor. Value: ['m1.tiny']. ['m1.tiny'] is not of type 'string'",
        ),
        (json!({"name": "x"}), "name"),
        (
            json!({"server": {"name": "", "flavor": "m1.tiny", "image": "img"}}),
            "name",
        ),
    ] {
        alliance_fault(&c.post(a, "/servers", body.clone()).await, bad, needle);
    }
    let id = create(
        &c,
        a,
        json!({"server": {"name": "keep", "flavor": "m1.tiny", "image": "img"}}),
    )
    .await;
    for (body, needle) in [
        (json!({"server": {"name": "x"}}), "name"),
        (
            json!({"server": {"new_name": 3}}),
            "attribute new_name. Value: 3",
        ),
        (json!({"new_name": "x"}), "new_name"),
        (json!({"server": {"new_name": "  padded "}}), "whitespace"),
    ] {
        alliance_fault(
            &c.call(a, Method::PATCH, "/servers/keep", Some(body.clone()))
                .await,
            bad,
            needle,
        );
    }
    let (_, v) = c.get(a, &format!("/servers/{id}")).await;
    assert_eq!(v["server"]["name"], "keep");
    alliance_fault(
        &c.put(a, "/servers/keep", json!({})).await,
        StatusCode::METHOD_NOT_ALLOWED,
        "not allowed",
    );
    alliance_fault(
        &c.post(a, "/flavors", json!({})).await,
        StatusCode::METHOD_NOT_ALLOWED,
        "not allowed",
    );
    alliance_fault(
        &c.get(a, "/servers/keep/extra").await,
        StatusCode::NOT_FOUND,
        "could not be found",
    );
    let anon = Session {
        token: "nope".into(),
        ..a.clone()
    };
    let got = c.get(&anon, "/servers").await;
    alliance_fault(&got, StatusCode::UNAUTHORIZED, "");
}

/// Created through Alliance, powered off through Mogan, SHUTOFF in OpenStack.
#[tokio::test]
async fn cross_dialect_power_off() {
    let c = Cloud::start().await;
    let a = &c.admin;
    c.image(a, "img", b"x").await;
    let id = create(
        &c,
        a,
        json!({"server": {"name": "crossing", "flavor": "m1.tiny", "image": "img"}}),
    )
    .await;
    c.wait_status(a, &id, "ACTIVE").await;
    let (st, v) = c
        .put(
            a,
            &format!("/v1/instances/{id}/states/power"),
            json!({"target": "off"}),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    let os = c.wait_status(a, &id, "SHUTOFF").await;
    assert_eq!(os["OS-EXT-STS:vm_state"], "stopped");
    let (_, al) = c.get(a, "/servers/crossing").await;
    assert_eq!(al["server"]["status"], "SHUTOFF");
    let (_, mg) = c.get(a, &format!("/v1/instances/{id}")).await;
    assert_eq!(mg["status"], "stopped");
    assert_eq!(mg["power_state"], "power off");
}
