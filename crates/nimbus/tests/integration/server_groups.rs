//! OpenStack compute: `/os-server-groups` shapes per microversion, validation, quota,
//! visibility, and the scheduler honouring affinity and anti-affinity end to end.

use crate::common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn create(c: &Cloud, s: &Session, body: Value) -> (StatusCode, Value) {
    c.post(s, "/compute/v2.1/os-server-groups", body).await
}

#[tokio::test]
async fn shapes_per_microversion() {
    let c = Cloud::start().await;
    let a = &c.admin;
    // 2.1: policies list and empty metadata; no project/user.
    let (st, body) = create(
        &c,
        a,
        json!({"server_group": {"name": "g1", "policies": ["anti-affinity"]}}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let g = &body["server_group"];
    assert_eq!(
        keys(g),
        sorted(&["id", "name", "policies", "metadata", "members"])
    );
    assert_eq!(g["policies"], json!(["anti-affinity"]));
    assert_eq!(g["metadata"], json!({}));
    assert_eq!(g["members"], json!([]));
    let id = g["id"].as_str().unwrap().to_owned();

    // 2.13: project_id and user_id.
    let (_, body) = c
        .get(
            &a.mv("2.13"),
            &format!("/compute/v2.1/os-server-groups/{id}"),
        )
        .await;
    assert_eq!(
        keys(&body["server_group"]),
        sorted(&[
            "id",
            "name",
            "policies",
            "metadata",
            "members",
            "project_id",
            "user_id"
        ])
    );
    assert_eq!(body["server_group"]["project_id"], a.project_id);
    assert_eq!(body["server_group"]["user_id"], a.user_id);

    // Soft policies from 2.15 only.
    let soft = json!({"server_group": {"name": "s", "policies": ["soft-affinity"]}});
    let (st, _) = create(&c, &a.mv("2.14"), soft.clone()).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, body) = create(&c, &a.mv("2.15"), soft).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(body["server_group"]["policies"], json!(["soft-affinity"]));

    // 2.64: policy + rules; no policies/metadata.
    let v = a.mv("2.64");
    let (st, body) = create(
        &c,
        &v,
        json!({"server_group": {"name": "r", "policy": "anti-affinity", "rules": {"max_server_per_host": 3}}}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let g = &body["server_group"];
    assert_eq!(
        keys(g),
        sorted(&[
            "id",
            "name",
            "policy",
            "rules",
            "members",
            "project_id",
            "user_id"
        ])
    );
    assert_eq!(g["policy"], "anti-affinity");
    assert_eq!(g["rules"], json!({"max_server_per_host": 3}));
    let (_, body) = c
        .get(&v, &format!("/compute/v2.1/os-server-groups/{id}"))
        .await;
    assert_eq!(body["server_group"]["rules"], json!({}));
    assert_eq!(body["server_group"]["policy"], "anti-affinity");

    // List, paging with limit/offset.
    let (st, body) = c.get(a, "/compute/v2.1/os-server-groups").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(body["server_groups"].as_array().unwrap().len(), 3);
    let (_, body) = c
        .get(a, "/compute/v2.1/os-server-groups?limit=1&offset=1")
        .await;
    let page = body["server_groups"].as_array().unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0]["name"], "s");
    let (st, _) = c.get(a, "/compute/v2.1/os-server-groups?limit=x").await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = c
        .get(&a.mv("2.75"), "/compute/v2.1/os-server-groups?bogus=1")
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);

    // Delete: 204, then 404.
    let path = format!("/compute/v2.1/os-server-groups/{id}");
    let (st, _) = c.delete(a, &path).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, body) = c.get(a, &path).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_eq!(
        fault_message(&body),
        format!("Instance group {id} could not be found.")
    );
    let (st, _) = c.delete(a, &path).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = c.get(a, "/compute/v2.1/os-server-groups/not-a-uuid").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bad_input_quota_and_visibility() {
    let c = Cloud::start().await;
    let a = &c.admin;
    let v = a.mv("2.64");
    for (s, bad) in [
        (a.clone(), json!({"server_group": {"name": "x"}})),
        (
            a.clone(),
            json!({"server_group": {"name": "x", "policies": []}}),
        ),
        (
            a.clone(),
            json!({"server_group": {"name": "x", "policies": ["affinity", "anti-affinity"]}}),
        ),
        (
            a.clone(),
            json!({"server_group": {"name": "x", "policies": ["best-effort"]}}),
        ),
        (
            a.clone(),
            json!({"server_group": {"name": "", "policies": ["affinity"]}}),
        ),
        (
            a.clone(),
            json!({"server_group": {"name": " x", "policies": ["affinity"]}}),
        ),
        (
            a.clone(),
            json!({"server_group": {"name": "x", "policy": "affinity"}}),
        ),
        (
            a.clone(),
            json!({"server_group": {"name": "x", "policies": ["affinity"], "extra": 1}}),
        ),
        (
            v.clone(),
            json!({"server_group": {"name": "x", "policies": ["affinity"]}}),
        ),
        (
            v.clone(),
            json!({"server_group": {"name": "x", "policy": "affinity", "rules": {"max_server_per_host": 2}}}),
        ),
        (
            v.clone(),
            json!({"server_group": {"name": "x", "policy": "anti-affinity", "rules": {"max_server_per_host": 0}}}),
        ),
        (
            v.clone(),
            json!({"server_group": {"name": "x", "policy": "anti-affinity", "rules": {"other": 1}}}),
        ),
        (a.clone(), json!({"group": {}})),
    ] {
        let (st, body) = create(&c, &s, bad.clone()).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert!(!fault_message(&body).is_empty());
    }
    let (_, body) = create(
        &c,
        &v,
        json!({"server_group": {"name": "x", "policy": "affinity", "rules": {"max_server_per_host": 2}}}),
    )
    .await;
    assert_eq!(
        fault_message(&body),
        "Only anti-affinity policy supports rules."
    );

    // Quota: 403 with Nova's message.
    let bob = c.new_member("bob").await;
    let (st, _) = c
        .put(
            a,
            &format!("/compute/v2.1/os-quota-sets/{}", bob.project_id),
            json!({"quota_set": {"server_groups": 1}}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let g = json!({"server_group": {"name": "b", "policies": ["affinity"]}});
    let (st, body) = create(&c, &bob, g.clone()).await;
    assert_eq!(st, StatusCode::OK);
    let bob_group = body["server_group"]["id"].as_str().unwrap().to_owned();
    let (st, body) = create(&c, &bob, g).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert_eq!(
        fault_message(&body),
        "Quota exceeded, too many server groups."
    );

    // Visibility: own project only; admins see all with all_projects.
    let carol = c.new_member("carol").await;
    let path = format!("/compute/v2.1/os-server-groups/{bob_group}");
    let (st, _) = c.get(&carol, &path).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = c.delete(&carol, &path).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (_, body) = c
        .get(&carol, "/compute/v2.1/os-server-groups?all_projects=True")
        .await;
    assert_eq!(body["server_groups"], json!([]));
    let (_, body) = c.get(a, "/compute/v2.1/os-server-groups").await;
    assert_eq!(body["server_groups"], json!([]));
    let (_, body) = c
        .get(a, "/compute/v2.1/os-server-groups?all_projects=1")
        .await;
    assert_eq!(body["server_groups"].as_array().unwrap().len(), 1);
    let (st, _) = c.get(a, &path).await;
    assert_eq!(st, StatusCode::OK);
}

/// Create a server with `os:scheduler_hints: {group}` (a sibling of `server` in the body).
async fn in_group(c: &Cloud, s: &Session, name: &str, img: &str, group: &str) -> String {
    let (st, body) = c
        .post(
            s,
            "/compute/v2.1/servers",
            json!({"server": {"name": name, "imageRef": img, "flavorRef": "1"},
                   "os:scheduler_hints": {"group": group}}),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "create: {body}");
    body["server"]["id"].as_str().unwrap().to_owned()
}

async fn settle(c: &Cloud, s: &Session, id: &str) -> Value {
    c.wait_for(s, id, "ACTIVE or ERROR", |v| {
        (v["status"] == "ACTIVE" || v["status"] == "ERROR") && v["OS-EXT-STS:task_state"].is_null()
    })
    .await
}

#[tokio::test]
async fn scheduler_honours_group_policies() {
    let c = Cloud::start().await;
    let a = &c.admin;
    let img = c.image(a, "cirros", b"bytes").await;

    // Anti-affinity on a single host: the second member has nowhere to go.
    let (_, body) = create(
        &c,
        a,
        json!({"server_group": {"name": "spread", "policies": ["anti-affinity"]}}),
    )
    .await;
    let anti = body["server_group"]["id"].as_str().unwrap().to_owned();
    let first = in_group(&c, a, "anti-1", &img, &anti).await;
    let s1 = settle(&c, a, &first).await;
    assert_eq!(s1["status"], "ACTIVE");
    let second = in_group(&c, a, "anti-2", &img, &anti).await;
    let s2 = settle(&c, a, &second).await;
    assert_eq!(s2["status"], "ERROR", "{s2}");
    assert!(
        s2["fault"]["message"]
            .as_str()
            .unwrap()
            .contains("No valid host was found"),
        "{s2}"
    );
    let (_, body) = c
        .get(a, &format!("/compute/v2.1/os-server-groups/{anti}"))
        .await;
    let members = body["server_group"]["members"].as_array().unwrap();
    assert!(members.contains(&json!(first)));

    // Affinity: members stay together.
    let (_, body) = create(
        &c,
        a,
        json!({"server_group": {"name": "together", "policies": ["affinity"]}}),
    )
    .await;
    let aff = body["server_group"]["id"].as_str().unwrap().to_owned();
    let mut hosts = Vec::new();
    for name in ["aff-1", "aff-2"] {
        let id = in_group(&c, a, name, &img, &aff).await;
        let s = settle(&c, a, &id).await;
        assert_eq!(s["status"], "ACTIVE", "{s}");
        hosts.push(s["OS-EXT-SRV-ATTR:host"].clone());
    }
    assert_eq!(hosts[0], hosts[1]);
    let (_, body) = c
        .get(a, &format!("/compute/v2.1/os-server-groups/{aff}"))
        .await;
    assert_eq!(body["server_group"]["members"].as_array().unwrap().len(), 2);

    // Anti-affinity with max_server_per_host 2 (2.64) fits two on one host, not three.
    let (_, body) = create(
        &c,
        &a.mv("2.64"),
        json!({"server_group": {"name": "two", "policy": "anti-affinity", "rules": {"max_server_per_host": 2}}}),
    )
    .await;
    let two = body["server_group"]["id"].as_str().unwrap().to_owned();
    let mut states = Vec::new();
    for name in ["two-1", "two-2", "two-3"] {
        let id = in_group(&c, a, name, &img, &two).await;
        states.push(settle(&c, a, &id).await["status"].clone());
    }
    assert_eq!(states, [json!("ACTIVE"), json!("ACTIVE"), json!("ERROR")]);

    // A bad or foreign group in the hint is a 400.
    let (st, _) = c
        .post(
            a,
            "/compute/v2.1/servers",
            json!({"server": {"name": "x", "imageRef": img, "flavorRef": "1"},
                   "os:scheduler_hints": {"group": "not-a-uuid"}}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let bob = c.new_member("bob").await;
    let bimg = c.image(&bob, "cirros", b"bytes").await;
    let (st, _) = c
        .post(
            &bob,
            "/compute/v2.1/servers",
            json!({"server": {"name": "x", "imageRef": bimg, "flavorRef": "1"},
                   "os:scheduler_hints": {"group": aff}}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn group_member_quota_is_enforced_at_create() {
    let c = Cloud::start().await;
    let a = &c.admin.mv("2.64");
    let (st, v) = c
        .put(
            a,
            &format!("/compute/v2.1/os-quota-sets/{}", a.project_id),
            json!({"quota_set": {"server_group_members": 1}}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (_, g) = c
        .post(
            a,
            "/compute/v2.1/os-server-groups",
            json!({"server_group": {"name": "g", "policy": "soft-affinity"}}),
        )
        .await;
    let gid = g["server_group"]["id"].as_str().unwrap().to_owned();
    let img = c.image(a, "img", b"x").await;
    let body = |name: &str| json!({"server": {"name": name, "imageRef": img, "flavorRef": "1", "networks": "none"}, "os:scheduler_hints": {"group": gid}});
    assert_eq!(
        c.post(a, "/compute/v2.1/servers", body("one")).await.0,
        StatusCode::ACCEPTED
    );
    let (st, v) = c.post(a, "/compute/v2.1/servers", body("two")).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(
        v["forbidden"]["message"],
        "Quota exceeded, too many servers in group"
    );
}
