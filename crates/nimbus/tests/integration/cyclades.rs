//! The Cyclades dialect (`/compute/v2.0`, seed 001): the seed's examples as golden fixtures,
//! cross-dialect behaviour with the OpenStack API, bad input, XML, changes-since, networks,
//! firewall profiles, stats graphs, diagnostics and the fake driver's VNC console.

use crate::common::{Cloud, Session};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const P: &str = "/compute/v2.0";

async fn cy(
    c: &Cloud,
    s: &Session,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    c.call(s, method, &format!("{P}{path}"), body).await
}

async fn get(c: &Cloud, s: &Session, path: &str) -> (StatusCode, Value) {
    cy(c, s, Method::GET, path, None).await
}

async fn post(c: &Cloud, s: &Session, path: &str, body: Value) -> (StatusCode, Value) {
    cy(c, s, Method::POST, path, Some(body)).await
}

/// A request with any headers and a raw body: (status, content type, body text).
async fn raw(
    c: &Cloud,
    s: Option<&Session>,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<String>,
) -> (StatusCode, String, String) {
    let mut r = c.http.request(method, format!("{}{P}{path}", c.url));
    if let Some(s) = s {
        r = r.header("X-Auth-Token", &s.token);
    }
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    if let Some(b) = body {
        r = r.body(b);
    }
    let resp = r.send().await.expect("request sent");
    let status = resp.status();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    (status, ct, resp.text().await.unwrap_or_default())
}

/// Stats sampled fast enough for a test to see graphs with data.
async fn start() -> Cloud {
    Cloud::start_with(|cfg| cfg.control.stats_period = Duration::from_millis(100)).await
}

/// Poll a server's Cyclades status (details) until it is `status`.
pub(crate) async fn wait_cy(c: &Cloud, s: &Session, serial: i64, status: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut last = Value::Null;
    while tokio::time::Instant::now() < deadline {
        let (st, v) = get(c, s, &format!("/servers/{serial}")).await;
        if st == StatusCode::OK && v["server"]["status"] == status {
            return v["server"].clone();
        }
        last = v;
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("server {serial} never reached {status}; last: {last}");
}

/// Create a server through Cyclades; returns its serial once ACTIVE.
pub(crate) async fn create_active(c: &Cloud, s: &Session, name: &str, image: &str) -> i64 {
    let (st, v) = post(
        c,
        s,
        "/servers",
        json!({"server": {"name": name, "imageRef": image, "flavorRef": 1}}),
    )
    .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    let serial = v["server"]["id"].as_i64().expect("numeric id");
    wait_cy(c, s, serial, "ACTIVE").await;
    serial
}

/// The Cyclades fault name of a reply, checking the fault's shape.
pub(crate) fn fault_name(v: &Value, code: u16) -> String {
    let obj = v.as_object().unwrap_or_else(|| panic!("not a fault: {v}"));
    assert_eq!(obj.len(), 1, "{v}");
    let (name, body) = obj.iter().next().unwrap();
    assert_eq!(body["code"], code, "{v}");
    assert!(body["message"].is_string(), "{v}");
    assert!(body["details"].is_string(), "{v}");
    name.clone()
}

// ---- shape comparison ----

/// `d` digit, anything else literal.
fn matches_template(s: &str, template: &str) -> bool {
    s.len() == template.len()
        && s.chars().zip(template.chars()).all(|(c, t)| match t {
            'd' => c.is_ascii_digit(),
            t => c == t,
        })
}

fn timestamp_like(doc: &str, got: &str) -> bool {
    let template = if doc.contains('.') {
        "dddd-dd-ddTdd:dd:dd.dddddd+00:00"
    } else {
        "dddd-dd-ddTdd:dd:dd+00:00"
    };
    matches_template(doc, template) && matches_template(got, template)
}

fn nic_id_like(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 3
        && parts[0] == "nic"
        && parts[1..]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn shape(doc: &Value, got: &Value, at: &str, errs: &mut Vec<String>) {
    let key = at.rsplit('.').next().unwrap_or("");
    match (doc, got) {
        (Value::Null, Value::Null | Value::String(_)) => {}
        (Value::Object(_), Value::Object(g)) if key == "metadata" => {
            for (k, v) in g {
                if !v.is_string() {
                    errs.push(format!("{at}.{k}: metadata value {v} is not a string"));
                }
            }
        }
        (Value::Object(d), Value::Object(g)) => {
            let dk: BTreeSet<&String> = d.keys().collect();
            let gk: BTreeSet<&String> = g.keys().collect();
            if dk != gk {
                errs.push(format!(
                    "{at}: keys differ: missing {:?}, unexpected {:?}",
                    dk.difference(&gk).collect::<Vec<_>>(),
                    gk.difference(&dk).collect::<Vec<_>>()
                ));
            }
            for (k, dv) in d {
                if let Some(gv) = g.get(k) {
                    shape(dv, gv, &format!("{at}.{k}"), errs);
                }
            }
        }
        (Value::Array(d), Value::Array(g)) => {
            if let Some(first) = d.first() {
                if g.is_empty() {
                    errs.push(format!("{at}: documented non-empty, got an empty list"));
                }
                for (i, gv) in g.iter().enumerate() {
                    shape(first, gv, &format!("{at}[{i}]"), errs);
                }
            }
        }
        (Value::String(d), Value::String(g)) => {
            if matches!(key, "created" | "updated" | "source_date") && !timestamp_like(d, g) {
                errs.push(format!("{at}: timestamp {g:?} is not like {d:?}"));
            }
            if d.starts_with("nic-") && !nic_id_like(g) {
                errs.push(format!("{at}: {g:?} is not a NIC id"));
            }
        }
        (d, g) if type_name(d) == type_name(g) => {}
        (d, g) => errs.push(format!(
            "{at}: documented {} ({d}), got {} ({g})",
            type_name(d),
            type_name(g)
        )),
    }
}

/// Element name → attribute names (union over every occurrence), and the root's name.
fn xml_summary(x: &str) -> (String, BTreeMap<String, BTreeSet<String>>) {
    let mut root = String::new();
    let mut elements: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut rest = x;
    while let Some(i) = rest.find('<') {
        rest = &rest[i + 1..];
        if rest.starts_with('?') || rest.starts_with('/') {
            continue;
        }
        let end = rest.find('>').expect("unclosed tag");
        let tag = &rest[..end];
        let name_end = tag
            .find(|c: char| c.is_whitespace() || c == '/')
            .unwrap_or(tag.len());
        let name = tag[..name_end].to_owned();
        if root.is_empty() {
            root = name.clone();
        }
        let attrs = elements.entry(name).or_default();
        let mut a = &tag[name_end..];
        while let Some(eq) = a.find("=\"") {
            let attr = a[..eq].trim().trim_start_matches('/').trim().to_owned();
            attrs.insert(attr);
            let after = &a[eq + 2..];
            let close = after.find('"').expect("unclosed attribute");
            a = &after[close + 1..];
        }
        rest = &rest[end..];
    }
    (root, elements)
}

fn fill(template: &str, ids: &HashMap<String, String>) -> String {
    let mut out = template.to_owned();
    for (k, v) in ids {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    out
}

#[tokio::test]
async fn golden_fixtures() {
    let c = start().await;
    let s = c.new_member("cyc-golden").await;
    let image = c.image(&s, "debian", b"golden image").await;
    let spare = c.image(&s, "spare", b"spare image").await;
    // The image metadata the seed's image examples show (OS and users are copied into new
    // servers' metadata).
    let (st, v) = post(
        &c,
        &s,
        &format!("/images/{image}/metadata"),
        json!({"metadata": {"partition_table": "msdos", "kernel": "3.2.0", "osfamily": "linux",
            "users": "root", "gui": "Unity 5", "sortorder": "3", "os": "Linux",
            "root_partition": "1", "description": "Ubuntu 12 LTS"}}),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let (_, flavors) = get(&c, &s, "/flavors").await;
    let flavor = flavors["flavors"][0]["id"]
        .as_i64()
        .expect("numeric flavor id");

    let mut ids: HashMap<String, String> = HashMap::new();
    ids.insert("image".into(), image.clone());
    ids.insert("spare_image".into(), spare);
    ids.insert("flavor".into(), flavor.to_string());
    let mut numbers: HashMap<String, i64> = HashMap::new();
    numbers.insert("flavor_number".into(), flavor);

    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/cyclades/examples.json"
    );
    let cases: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(path).expect("fixtures")).expect("json");
    assert!(cases.len() >= 40, "every example is transcribed");
    let mut failures = Vec::new();
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let method = Method::from_bytes(case["method"].as_str().unwrap().as_bytes()).unwrap();
        let url = fill(case["path"].as_str().unwrap(), &ids);
        let mut body = case.get("request").cloned();
        if let (Some(b), Some(adapt)) = (body.as_mut(), case.get("adapt")) {
            for (ptr, what) in adapt.as_object().unwrap() {
                let what = what.as_str().unwrap();
                let value = match numbers.get(what) {
                    Some(n) => json!(n),
                    None => json!(ids[what]),
                };
                *b.pointer_mut(ptr)
                    .unwrap_or_else(|| panic!("{name}: no {ptr} in the request")) = value;
            }
        }
        let want = case["status"].as_u64().unwrap() as u16;
        let reply: Value;
        if let Some(doc_xml) = case.get("response_xml").and_then(|x| x.as_str()) {
            let (st, ct, text) = raw(
                &c,
                Some(&s),
                method,
                &url,
                &[("content-type", "application/json")],
                body.map(|b| b.to_string()),
            )
            .await;
            assert_eq!(st.as_u16(), want, "{name}: {text}");
            assert!(ct.starts_with("application/xml"), "{name}: {ct}");
            let (doc_root, doc_elems) = xml_summary(doc_xml);
            let (got_root, got_elems) = xml_summary(&text);
            assert_eq!(doc_root, got_root, "{name}: {text}");
            for (elem, attrs) in &doc_elems {
                let got = got_elems
                    .get(elem)
                    .unwrap_or_else(|| panic!("{name}: no <{elem}> in {text}"));
                let missing: Vec<_> = attrs.difference(got).collect();
                assert!(
                    missing.is_empty(),
                    "{name}: <{elem}> lacks {missing:?}: {text}"
                );
            }
            reply = Value::Null;
        } else {
            let (st, v) = cy(&c, &s, method, &url, body.clone()).await;
            assert_eq!(st.as_u16(), want, "{name}: {v}");
            if let Some(doc) = case.get("response") {
                let mut errs = Vec::new();
                shape(doc, &v, name, &mut errs);
                if !errs.is_empty() {
                    failures.push(format!("{name}: {errs:#?}\n{v}"));
                }
                // Metadata the request set comes back.
                if let Some(sent) = body.as_ref().and_then(|b| b.get("metadata")) {
                    for (k, val) in sent.as_object().unwrap() {
                        assert_eq!(&v["metadata"][k], val, "{name}: {v}");
                    }
                }
            } else {
                assert!(v.is_null(), "{name}: no body expected, got {v}");
            }
            reply = v;
        }
        if let Some(capture) = case.get("capture") {
            for (key, ptr) in capture.as_object().unwrap() {
                let got = reply.pointer(ptr.as_str().unwrap()).cloned().unwrap();
                let text = match &got {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                if let Some(n) = got.as_i64() {
                    numbers.insert(format!("{key}_number"), n);
                }
                ids.insert(key.clone(), text);
            }
        }
        if let Some(status) = case.get("wait_for").and_then(|w| w.as_str()) {
            let serial: i64 = ids["server"].parse().unwrap();
            wait_cy(&c, &s, serial, status).await;
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[tokio::test]
async fn cross_dialect_openstack_and_cyclades() {
    let c = start().await;
    let s = c.new_member("cyc-cross").await;
    let image = c.image(&s, "img", b"x").await;

    // Created by OpenStack, stopped by Cyclades, seen stopped by both.
    let uuid = c.server(&s, "from-openstack", &image, json!({})).await;
    c.wait_status(&s, &uuid, "ACTIVE").await;
    let (_, list) = get(&c, &s, "/servers").await;
    let serial = list["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "from-openstack")
        .and_then(|v| v["id"].as_i64())
        .expect("OpenStack server listed by Cyclades");
    let (st, v) = post(
        &c,
        &s,
        &format!("/servers/{serial}/action"),
        json!({"shutdown": {}}),
    )
    .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    assert!(v.is_null());
    wait_cy(&c, &s, serial, "STOPPED").await;
    let os = c.wait_status(&s, &uuid, "SHUTOFF").await;
    assert_eq!(os["name"], "from-openstack");

    // Created by Cyclades, acted on by OpenStack, seen by Cyclades.
    let serial2 = create_active(&c, &s, "from-cyclades", &image).await;
    let (_, os_list) = c.get(&s, "/compute/v2.1/servers").await;
    let uuid2 = os_list["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "from-cyclades")
        .and_then(|v| v["id"].as_str())
        .expect("Cyclades server listed by OpenStack")
        .to_owned();
    let (st, _) = c.action(&s, &uuid2, json!({"os-stop": null})).await;
    assert_eq!(st, StatusCode::ACCEPTED);
    wait_cy(&c, &s, serial2, "STOPPED").await;
    // Renamed in Cyclades (204), the name shows in OpenStack.
    let (st, v) = cy(
        &c,
        &s,
        Method::PUT,
        &format!("/servers/{serial2}"),
        Some(json!({"server": {"name": "renamed"}})),
    )
    .await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{v}");
    let (_, os) = c.get(&s, &format!("/compute/v2.1/servers/{uuid2}")).await;
    assert_eq!(os["server"]["name"], "renamed");
    // The NICs OpenStack shows as addresses are Cyclades' attachments.
    let (_, d) = get(&c, &s, &format!("/servers/{serial2}")).await;
    let ipv4 = d["server"]["attachments"][0]["ipv4"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        os["server"]["addresses"].to_string().contains(&ipv4),
        "{os}"
    );
    // Deleted in Cyclades (204): gone from OpenStack, DELETED in Cyclades.
    let (st, _) = cy(&c, &s, Method::DELETE, &format!("/servers/{serial2}"), None).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    c.wait_gone(&s, &uuid2).await;
    let v = wait_cy(&c, &s, serial2, "DELETED").await;
    assert_eq!(v["attachments"], json!([]));
    // A deleted server cannot be acted on: 400, as the seed says.
    let (st, v) = post(
        &c,
        &s,
        &format!("/servers/{serial2}/action"),
        json!({"start": {}}),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(fault_name(&v, 400), "badRequest");
}

#[tokio::test]
async fn bad_input_answers_cyclades_faults() {
    let c = start().await;
    let s = c.new_member("cyc-bad").await;
    let image = c.image(&s, "img", b"x").await;
    let serial = create_active(&c, &s, "target", &image).await;
    let action = format!("/servers/{serial}/action");

    // Malformed JSON.
    let (st, _, text) = raw(
        &c,
        Some(&s),
        Method::POST,
        "/servers",
        &[("content-type", "application/json")],
        Some("{not json".into()),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(fault_name(&v, 400), "badRequest");
    // Wrong types name the field.
    let (st, v) = post(
        &c,
        &s,
        "/servers",
        json!({"server": {"name": 5, "imageRef": image, "flavorRef": 1}}),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(
        v["badRequest"]["message"]
            .as_str()
            .unwrap()
            .contains("field/attribute name. Value: 5. 5 is not of type 'string'"),
        "{v}"
    );
    let (st, v) = post(
        &c,
        &s,
        "/servers",
        json!({"server": {"name": "m", "imageRef": image, "flavorRef": 1,
            "personality": [{"path": "/a", "contents": "aGk=", "mode": "0600"}]}}),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "mode must be a number: {v}");
    // Unknown action, OpenStack-only action, several actions at once.
    let (st, v) = post(&c, &s, &action, json!({"fly": {}})).await;
    assert_eq!(
        (st, fault_name(&v, 400).as_str()),
        (StatusCode::BAD_REQUEST, "badRequest")
    );
    let (st, v) = post(&c, &s, &action, json!({"resize": {"flavorRef": 2}})).await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(fault_name(&v, 503), "serviceUnavailable");
    let (st, _) = post(&c, &s, &action, json!({"start": {}, "shutdown": {}})).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = post(&c, &s, &action, json!({"reboot": {"type": "gentle"}})).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = post(&c, &s, &action, json!({"reboot": {}})).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = post(&c, &s, &action, json!({"console": {"type": "spice"}})).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = post(
        &c,
        &s,
        &action,
        json!({"firewallProfile": {"profile": "OPEN"}}),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    // Starting a running server is a state conflict: 409 buildInProgress, naming the server
    // by the id the client used (never the core's UUID).
    let (st, v) = post(&c, &s, &action, json!({"start": {}})).await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    assert_eq!(
        v["buildInProgress"]["message"],
        format!("Cannot 'start' server {serial} while it is in vm_state active")
    );

    // Personality: over 10240 bytes is 413 overLimit; not base64 is 400.
    // base64 of 10241 and of 10240 bytes of 'x' ("xxx" is "eHh4").
    let big = format!("{}eHg=", "eHh4".repeat(3413));
    let (st, v) = post(
        &c,
        &s,
        "/servers",
        json!({"server": {"name": "big", "imageRef": image, "flavorRef": 1,
            "personality": [{"path": "/big", "contents": big}]}}),
    )
    .await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    assert_eq!(fault_name(&v, 413), "overLimit");
    let exact = format!("{}eA==", "eHh4".repeat(3413));
    let (st, v) = post(
        &c,
        &s,
        "/servers",
        json!({"server": {"name": "exact", "imageRef": image, "flavorRef": 1,
            "personality": [{"path": "/ok", "contents": exact}]}}),
    )
    .await;
    assert_eq!(st, StatusCode::ACCEPTED, "10240 bytes are allowed: {v}");
    let (st, v) = post(
        &c,
        &s,
        "/servers",
        json!({"server": {"name": "b64", "imageRef": image, "flavorRef": 1,
            "personality": [{"path": "/x", "contents": "not base64!"}]}}),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    // Unknown image / flavor: 404.
    let (st, v) = post(
        &c,
        &s,
        "/servers",
        json!({"server": {"name": "n", "imageRef": "00000000-0000-0000-0000-000000000000", "flavorRef": 1}}),
    )
    .await;
    assert_eq!(
        (st, fault_name(&v, 404).as_str()),
        (StatusCode::NOT_FOUND, "itemNotFound")
    );
    let (st, _) = post(
        &c,
        &s,
        "/servers",
        json!({"server": {"name": "n", "imageRef": image, "flavorRef": 999999}}),
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // Wrong method and unknown URL: 400 badRequest (the seed's rule), token or not.
    for (m, path) in [
        (Method::PATCH, "/servers".to_owned()),
        (Method::DELETE, "/flavors".to_owned()),
        (Method::PUT, format!("/servers/{serial}/metadata")),
        (Method::GET, "/no/such/thing".to_owned()),
        (Method::GET, "".to_owned()),
        (Method::POST, format!("/servers/{serial}/bogus")),
    ] {
        let (st, v) = cy(&c, &s, m.clone(), &path, None).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{m} {path}: {v}");
        assert_eq!(fault_name(&v, 400), "badRequest", "{m} {path}");
    }
    let (st, _, text) = raw(&c, None, Method::GET, "/nowhere", &[], None).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{text}");
    // No or a bad token: 401 unauthorized in Cyclades' shape.
    let (st, _, text) = raw(&c, None, Method::GET, "/servers", &[], None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert_eq!(
        fault_name(&serde_json::from_str(&text).unwrap(), 401),
        "unauthorized"
    );
    let (st, _, text) = raw(
        &c,
        None,
        Method::GET,
        "/servers",
        &[("x-auth-token", "bogus")],
        None,
    )
    .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{text}");
    assert!(text.contains("\"unauthorized\""), "{text}");
    // Malformed and unknown ids.
    let (st, v) = get(&c, &s, "/servers/abc").await;
    assert_eq!(
        (st, fault_name(&v, 400).as_str()),
        (StatusCode::BAD_REQUEST, "badRequest")
    );
    let (st, v) = get(&c, &s, "/servers/999999").await;
    assert_eq!(
        (st, fault_name(&v, 404).as_str()),
        (StatusCode::NOT_FOUND, "itemNotFound")
    );
    let (st, _) = get(&c, &s, "/flavors/one").await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = get(&c, &s, "/images/not-a-uuid").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    // Another project's server is not found.
    let other = c.new_member("cyc-bad-other").await;
    let (st, _) = get(&c, &other, &format!("/servers/{serial}")).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    // json and xml together; an XML request body; bad changes-since.
    let (st, _) = get(&c, &s, "/servers?json&xml").await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _, text) = raw(
        &c,
        Some(&s),
        Method::POST,
        "/servers",
        &[("content-type", "application/xml")],
        Some("<server name=\"x\"/>".into()),
    )
    .await;
    assert_eq!(st, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{text}");
    assert!(text.contains("badMediaType"), "{text}");
    let (st, _) = get(&c, &s, "/servers?changes-since=yesterday").await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = get(&c, &s, "/servers?changes-since=2999-01-01T00:00:00Z").await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    // Metadata: item PUT must name the URL's key; over the limit is 413.
    let (st, _) = cy(
        &c,
        &s,
        Method::PUT,
        &format!("/servers/{serial}/metadata/a"),
        Some(json!({"metadata": {"b": "1"}})),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let many: serde_json::Map<String, Value> =
        (0..200).map(|i| (format!("k{i}"), json!("v"))).collect();
    let (st, v) = post(
        &c,
        &s,
        &format!("/servers/{serial}/metadata"),
        json!({"metadata": many}),
    )
    .await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    assert_eq!(fault_name(&v, 413), "overLimit");
    let (st, _) = get(&c, &s, &format!("/servers/{serial}/metadata/missing")).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    // Networks: bad type 415, public 403, missing type 400.
    let (st, v) = post(
        &c,
        &s,
        "/networks",
        json!({"network": {"name": "n", "type": "WIFI"}}),
    )
    .await;
    assert_eq!(st, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{v}");
    assert_eq!(fault_name(&v, 415), "badMediaType");
    let (st, v) = post(
        &c,
        &s,
        "/networks",
        json!({"network": {"name": "n", "type": "CUSTOM", "public": true}}),
    )
    .await;
    assert_eq!(
        (st, fault_name(&v, 403).as_str()),
        (StatusCode::FORBIDDEN, "forbidden")
    );
    let (st, _) = post(&c, &s, "/networks", json!({"network": {"name": "n"}})).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = post(
        &c,
        &s,
        "/networks",
        json!({"network": {"name": "n", "type": "CUSTOM", "cidr": "10.0.0.1/8"}}),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn xml_responses_and_changes_since() {
    let c = start().await;
    let s = c.new_member("cyc-xml").await;
    let image = c.image(&s, "img", b"x").await;
    let serial = create_active(&c, &s, "xml<&>server", &image).await;

    let (st, ct, text) = raw(&c, Some(&s), Method::GET, "/servers?xml", &[], None).await;
    assert_eq!(st, StatusCode::OK);
    assert!(ct.starts_with("application/xml"), "{ct}");
    assert!(
        text.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>"),
        "{text}"
    );
    assert!(
        text.contains("<servers xmlns=\"http://docs.openstack.org/compute/api/v1.1\""),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "<server id=\"{serial}\" name=\"xml&lt;&amp;&gt;server\"/>"
        )),
        "{text}"
    );
    let (st, ct, text) = raw(
        &c,
        Some(&s),
        Method::GET,
        &format!("/servers/{serial}"),
        &[("accept", "application/xml")],
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert!(ct.starts_with("application/xml"));
    let (root, elems) = xml_summary(&text);
    assert_eq!(root, "server");
    for a in [
        "id",
        "name",
        "status",
        "hostId",
        "imageRef",
        "flavorRef",
        "created",
        "updated",
        "suspended",
        "progress",
    ] {
        assert!(elems["server"].contains(a), "{a}: {text}");
    }
    assert!(elems["nic"].contains("mac_address"), "{text}");
    assert!(elems.contains_key("diagnostic"), "{text}");
    // ?json wins over Accept; faults come in XML too.
    let (_, ct, _) = raw(
        &c,
        Some(&s),
        Method::GET,
        "/flavors?json",
        &[("accept", "application/xml")],
        None,
    )
    .await;
    assert!(ct.starts_with("application/json"), "{ct}");
    let (st, _, text) = raw(&c, Some(&s), Method::GET, "/servers/999999?xml", &[], None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert!(
        text.contains("<itemNotFound") && text.contains("code=\"404\""),
        "{text}"
    );
    assert!(text.contains("<message>"), "{text}");

    // changes-since: nothing new is 304 with no body.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let since = chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let (st, _, text) = raw(
        &c,
        Some(&s),
        Method::GET,
        &format!("/servers/detail?changes-since={since}"),
        &[],
        None,
    )
    .await;
    assert_eq!(st, StatusCode::NOT_MODIFIED);
    assert!(text.is_empty());
    let (st, _, _) = raw(
        &c,
        Some(&s),
        Method::GET,
        &format!("/images?changes-since={since}"),
        &[],
        None,
    )
    .await;
    assert_eq!(st, StatusCode::NOT_MODIFIED);
    let (st, _) = get(&c, &s, "/images?changes-since=2001-01-01T00:00:00Z").await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "older than POLL_LIMIT");
    // A deletion after that shows up as DELETED.
    let (st, _) = cy(&c, &s, Method::DELETE, &format!("/servers/{serial}"), None).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    wait_cy(&c, &s, serial, "DELETED").await;
    let (st, v) = get(&c, &s, &format!("/servers/detail?changes-since={since}")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["servers"][0]["id"], serial);
    assert_eq!(v["servers"][0]["status"], "DELETED");
    let (_, v) = get(&c, &s, "/servers").await;
    assert_eq!(
        v["servers"],
        json!([]),
        "deleted servers leave the plain list"
    );
}

#[tokio::test]
async fn networks_nics_and_firewall_profiles() {
    let c = start().await;
    let s = c.new_member("cyc-net").await;
    let image = c.image(&s, "img", b"x").await;
    let serial = create_active(&c, &s, "netted", &image).await;

    let (st, v) = post(
        &c,
        &s,
        "/networks",
        json!({"network": {"name": "backend", "type": "MAC_FILTERED", "cidr": "10.9.0.0/24", "cidr6": "fd00:9::/64"}}),
    )
    .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["network"]["status"], "PENDING");
    let net = v["network"]["id"].as_str().unwrap().to_owned();
    // It becomes ACTIVE.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (_, v) = get(&c, &s, &format!("/networks/{net}")).await;
        if v["network"]["status"] == "ACTIVE" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never ACTIVE: {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Connect: a second NIC, on the new network, visible everywhere.
    let (st, v) = post(
        &c,
        &s,
        &format!("/networks/{net}/action"),
        json!({"add": {"serverRef": serial.to_string()}}),
    )
    .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    let (_, v) = get(&c, &s, &format!("/networks/{net}")).await;
    assert_eq!(
        v["network"]["attachments"],
        json!([format!("nic-{serial}-1")])
    );
    let (_, v) = get(&c, &s, &format!("/servers/{serial}/ips/{net}")).await;
    let nic = &v["network"];
    assert_eq!(nic["id"], format!("nic-{serial}-1"));
    assert_eq!(nic["network_id"], net);
    assert!(nic["ipv4"].as_str().unwrap().starts_with("10.9.0."), "{v}");
    assert!(nic["ipv6"].as_str().unwrap().starts_with("fd00:9::"), "{v}");
    let (_, v) = get(&c, &s, "/networks/public").await;
    assert_eq!(v["network"]["id"], "public");
    assert_eq!(v["network"]["public"], true);
    assert_eq!(
        v["network"]["attachments"],
        json!([format!("nic-{serial}-0")])
    );

    // In use: 421 networkInUse, naming the network by its Cyclades id.
    let (st, v) = cy(&c, &s, Method::DELETE, &format!("/networks/{net}"), None).await;
    assert_eq!(st.as_u16(), 421, "{v}");
    assert_eq!(fault_name(&v, 421), "networkInUse");
    assert_eq!(
        v["networkInUse"]["message"],
        format!("Network {net} is in use: 1 interface(s) are attached.")
    );
    // The public network cannot be touched: 403.
    let (st, v) = cy(&c, &s, Method::DELETE, "/networks/public", None).await;
    assert_eq!(
        (st, fault_name(&v, 403).as_str()),
        (StatusCode::FORBIDDEN, "forbidden")
    );
    let (st, _) = cy(
        &c,
        &s,
        Method::PUT,
        "/networks/public",
        Some(json!({"network": {"name": "mine"}})),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = post(
        &c,
        &s,
        "/networks/public/action",
        json!({"remove": {"serverRef": serial}}),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);

    // Firewall profiles: the public NIC by default, a named NIC otherwise.
    let action = format!("/servers/{serial}/action");
    let (st, v) = post(
        &c,
        &s,
        &action,
        json!({"firewallProfile": {"profile": "PROTECTED"}}),
    )
    .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    let (st, _) = post(
        &c,
        &s,
        &action,
        json!({"firewallProfile": {"profile": "ENABLED", "nic": format!("nic-{serial}-1")}}),
    )
    .await;
    assert_eq!(st, StatusCode::ACCEPTED);
    let (_, v) = get(&c, &s, &format!("/servers/{serial}")).await;
    let profiles: BTreeMap<String, String> = v["server"]["attachments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["id"].as_str().unwrap().to_owned(),
                n["firewallProfile"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(profiles[&format!("nic-{serial}-0")], "PROTECTED");
    assert_eq!(profiles[&format!("nic-{serial}-1")], "ENABLED");
    let (st, _) = post(
        &c,
        &s,
        &action,
        json!({"firewallProfile": {"profile": "ENABLED", "nic": "nic-1-99"}}),
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // Disconnect; removing it again names the server and network as the client knows them.
    let remove = json!({"remove": {"serverRef": serial}});
    let (st, _) = post(&c, &s, &format!("/networks/{net}/action"), remove.clone()).await;
    assert_eq!(st, StatusCode::ACCEPTED);
    let (st, v) = post(&c, &s, &format!("/networks/{net}/action"), remove.clone()).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");
    assert_eq!(
        v["itemNotFound"]["message"],
        format!("Server {serial} is not connected to network {net}.")
    );
    // Reconnected, the server gets a new NIC id: nic-<serial>-1 named the removed NIC.
    let add = json!({"add": {"serverRef": serial}});
    let (st, _) = post(&c, &s, &format!("/networks/{net}/action"), add.clone()).await;
    assert_eq!(st, StatusCode::ACCEPTED);
    let (_, v) = get(&c, &s, &format!("/networks/{net}")).await;
    assert_eq!(
        v["network"]["attachments"],
        json!([format!("nic-{serial}-2")])
    );
    let (st, _) = post(&c, &s, &format!("/networks/{net}/action"), remove.clone()).await;
    assert_eq!(st, StatusCode::ACCEPTED);
    // Then the network can go. Synnefo keeps it visible as DELETED; changing, joining or
    // deleting it again is the seed's 400 "network already deleted".
    let (st, _) = cy(&c, &s, Method::DELETE, &format!("/networks/{net}"), None).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, v) = get(&c, &s, &format!("/networks/{net}")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["network"]["status"], "DELETED");
    assert_eq!(v["network"]["attachments"], json!([]));
    let gone = format!("Network {net} has been deleted.");
    let (st, v) = cy(&c, &s, Method::DELETE, &format!("/networks/{net}"), None).await;
    assert_eq!(
        (st, fault_name(&v, 400).as_str()),
        (StatusCode::BAD_REQUEST, "badRequest")
    );
    assert_eq!(v["badRequest"]["message"], gone);
    let (st, v) = cy(
        &c,
        &s,
        Method::PUT,
        &format!("/networks/{net}"),
        Some(json!({"network": {"name": "again"}})),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["badRequest"]["message"], gone);
    let (st, v) = post(&c, &s, &format!("/networks/{net}/action"), add).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["badRequest"]["message"], gone);
    // A network that never existed is still a 404.
    let (st, _) = cy(&c, &s, Method::DELETE, "/networks/9999", None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (_, v) = get(&c, &s, "/networks").await;
    assert_eq!(v["networks"], json!([{"id": "public", "name": "public"}]));
}

#[tokio::test]
async fn stats_graphs_are_pngs_and_diagnostics_log_actions() {
    let c = start().await;
    let s = c.new_member("cyc-stats").await;
    let image = c.image(&s, "img", b"x").await;
    let serial = create_active(&c, &s, "graphed", &image).await;
    // Let the sampler record a few points.
    tokio::time::sleep(Duration::from_millis(600)).await;

    let (st, v) = get(&c, &s, &format!("/servers/{serial}/stats")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let stats = &v["stats"];
    assert_eq!(stats["serverRef"], serial);
    assert!(stats["refresh"].as_u64().unwrap() >= 1);
    for key in ["cpuBar", "cpuTimeSeries", "netBar", "netTimeSeries"] {
        let url = stats[key].as_str().unwrap();
        assert!(url.starts_with(&c.url), "{url}");
        // No token: the URL is signed.
        let resp = c.http.get(url).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{key}");
        assert_eq!(resp.headers()["content-type"], "image/png");
        let bytes = resp.bytes().await.unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{key}");
        assert!(bytes.len() > 500, "{key}: a real picture");
    }
    // A tampered URL is refused.
    let url = stats["cpuBar"].as_str().unwrap();
    let tampered = url.replacen("/cpu-bar.png", "0/cpu-bar.png", 1);
    let resp = c.http.get(&tampered).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let resp = c
        .http
        .get(url.replace("cpu-bar.png", "secrets.png"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);

    // Diagnostics: the build, then each action, newest first.
    let action = format!("/servers/{serial}/action");
    let (st, _) = post(&c, &s, &action, json!({"reboot": {"type": "HARD"}})).await;
    assert_eq!(st, StatusCode::ACCEPTED);
    wait_cy(&c, &s, serial, "ACTIVE").await;
    let (st, v) = get(&c, &s, &format!("/servers/{serial}/diagnostics")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let entries = v.as_array().unwrap();
    let sources: Vec<&str> = entries
        .iter()
        .map(|e| e["source"].as_str().unwrap())
        .collect();
    assert!(sources.contains(&"nimbus-create"), "{sources:?}");
    assert!(sources.contains(&"nimbus-reboot"), "{sources:?}");
    let created: Vec<&str> = entries
        .iter()
        .map(|e| e["created"].as_str().unwrap())
        .collect();
    let mut sorted = created.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(created, sorted, "newest first");
    for e in entries {
        assert!(["DEBUG", "INFO", "WARNING", "ERROR"].contains(&e["level"].as_str().unwrap()));
    }
    // Details carry the same log.
    let (_, d) = get(&c, &s, &format!("/servers/{serial}")).await;
    assert_eq!(
        d["server"]["diagnostics"].as_array().unwrap().len(),
        entries.len()
    );
    // A crash the hypervisor reports (here an injected one) shows as an ERROR entry.
    let (st, v) = post(
        &c,
        &s,
        "/servers",
        json!({"server": {"name": "crashy", "imageRef": image, "flavorRef": 1,
            "metadata": {"nimbus:fault": "crash-after:200ms"}}}),
    )
    .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    let crashy = v["server"]["id"].as_i64().unwrap();
    wait_cy(&c, &s, crashy, "STOPPED").await;
    let (_, v) = get(&c, &s, &format!("/servers/{crashy}/diagnostics")).await;
    let errors: Vec<&Value> = v
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["level"] == "ERROR")
        .collect();
    assert!(!errors.is_empty(), "{v}");
    assert!(
        errors
            .iter()
            .any(|e| e["details"].as_str().unwrap_or("").contains("crash")),
        "{v}"
    );
    // The log names the server as the client knows it, never by the core's UUID.
    let (_, os) = c.get(&s, "/compute/v2.1/servers?name=crashy").await;
    let uuid = os["servers"][0]["id"].as_str().unwrap().to_owned();
    assert!(!v.to_string().contains(&uuid), "{v}");
}

#[tokio::test]
async fn console_speaks_rfb_with_vnc_authentication() {
    let c = start().await;
    let s = c.new_member("cyc-vnc").await;
    let image = c.image(&s, "img", b"x").await;
    let serial = create_active(&c, &s, "console-me", &image).await;
    let (st, v) = post(
        &c,
        &s,
        &format!("/servers/{serial}/action"),
        json!({"console": {"type": "vnc"}}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let console = &v["console"];
    assert_eq!(console["type"], "vnc");
    let host = console["host"].as_str().unwrap();
    let port = console["port"].as_u64().unwrap() as u16;
    let password = console["password"].as_str().unwrap();
    assert_eq!(password.len(), 8);

    let mut conn = tokio::net::TcpStream::connect((host, port)).await.unwrap();
    let mut version = [0u8; 12];
    conn.read_exact(&mut version).await.unwrap();
    assert_eq!(&version, b"RFB 003.008\n");
    conn.write_all(b"RFB 003.008\n").await.unwrap();
    let mut n = [0u8; 1];
    conn.read_exact(&mut n).await.unwrap();
    let mut types = vec![0u8; n[0] as usize];
    conn.read_exact(&mut types).await.unwrap();
    assert!(types.contains(&2), "VNC authentication offered: {types:?}");
    conn.write_all(&[2]).await.unwrap();
    let mut challenge = [0u8; 16];
    conn.read_exact(&mut challenge).await.unwrap();
    let response = nimbus_agent::fake_console::vnc_auth_response(password, &challenge);
    conn.write_all(&response).await.unwrap();
    let mut result = [0u8; 4];
    conn.read_exact(&mut result).await.unwrap();
    assert_eq!(u32::from_be_bytes(result), 0, "authenticated");
    conn.write_all(&[1]).await.unwrap(); // ClientInit: shared
    let mut init = [0u8; 24];
    conn.read_exact(&mut init).await.unwrap();
    let width = u16::from_be_bytes([init[0], init[1]]);
    let height = u16::from_be_bytes([init[2], init[3]]);
    assert!((320..=4096).contains(&width) && (200..=4096).contains(&height));
    let bpp = init[4];
    assert_eq!(bpp, 32);
    let name_len = u32::from_be_bytes([init[20], init[21], init[22], init[23]]) as usize;
    let mut name = vec![0u8; name_len];
    conn.read_exact(&mut name).await.unwrap();
    assert_eq!(String::from_utf8(name).unwrap(), "console-me");
    // A full framebuffer update in raw encoding.
    let mut req = vec![3u8, 0, 0, 0, 0, 0];
    req.extend_from_slice(&width.to_be_bytes());
    req.extend_from_slice(&height.to_be_bytes());
    conn.write_all(&req).await.unwrap();
    let mut head = [0u8; 16];
    conn.read_exact(&mut head).await.unwrap();
    assert_eq!(head[0], 0, "FramebufferUpdate");
    assert_eq!(u16::from_be_bytes([head[2], head[3]]), 1);
    assert_eq!(u16::from_be_bytes([head[8], head[9]]), width);
    assert_eq!(u16::from_be_bytes([head[10], head[11]]), height);
    assert_eq!(
        i32::from_be_bytes([head[12], head[13], head[14], head[15]]),
        0,
        "raw"
    );
    let mut pixels = vec![0u8; width as usize * height as usize * 4];
    tokio::time::timeout(Duration::from_secs(5), conn.read_exact(&mut pixels))
        .await
        .unwrap()
        .unwrap();
    let distinct: BTreeSet<&[u8]> = pixels.chunks(4).collect();
    assert!(distinct.len() >= 3, "a drawn screen, not a blank one");

    // A wrong password is refused.
    let mut conn = tokio::net::TcpStream::connect((host, port)).await.unwrap();
    conn.read_exact(&mut version).await.unwrap();
    conn.write_all(b"RFB 003.008\n").await.unwrap();
    conn.read_exact(&mut n).await.unwrap();
    let mut types = vec![0u8; n[0] as usize];
    conn.read_exact(&mut types).await.unwrap();
    conn.write_all(&[2]).await.unwrap();
    conn.read_exact(&mut challenge).await.unwrap();
    let wrong = nimbus_agent::fake_console::vnc_auth_response("nope", &challenge);
    conn.write_all(&wrong).await.unwrap();
    conn.read_exact(&mut result).await.unwrap();
    assert_eq!(u32::from_be_bytes(result), 1, "refused");

    // A stopped server has no console: 409.
    let (st, _) = post(
        &c,
        &s,
        &format!("/servers/{serial}/action"),
        json!({"shutdown": {}}),
    )
    .await;
    assert_eq!(st, StatusCode::ACCEPTED);
    wait_cy(&c, &s, serial, "STOPPED").await;
    let (st, v) = post(
        &c,
        &s,
        &format!("/servers/{serial}/action"),
        json!({"console": {"type": "vnc"}}),
    )
    .await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    assert_eq!(fault_name(&v, 409), "buildInProgress");
}

#[test]
fn shape_comparison_rules() {
    let mut errs = Vec::new();
    shape(
        &json!({"a": 1, "b": [{"c": "x"}], "created": "2013-04-10T13:52:18.140686+00:00", "n": null}),
        &json!({"a": 2, "b": [{"c": "y"}, {"c": "z"}], "created": "2020-01-01T00:00:00.000001+00:00", "n": "s"}),
        "t",
        &mut errs,
    );
    assert!(errs.is_empty(), "{errs:?}");
    shape(
        &json!({"a": 1, "b": [{"c": "x"}], "created": "2013-04-10T13:52:18.140686+00:00"}),
        &json!({"a": "1", "b": [], "created": "2020-01-01T00:00:00Z", "extra": 1}),
        "t",
        &mut errs,
    );
    assert_eq!(errs.len(), 4, "{errs:?}");
    let (root, elems) = xml_summary(
        "<?xml version=\"1.0\"?>\n<flavors xmlns=\"a\"><flavor id=\"1\" name=\"x\"/></flavors>",
    );
    assert_eq!(root, "flavors");
    assert!(elems["flavor"].contains("name") && elems["flavors"].contains("xmlns"));
}
