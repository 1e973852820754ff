//! Keystone subset: discovery, tokens, admin CRUD, policy.

use crate::common::*;
use reqwest::{Method, StatusCode};
use serde_json::json;

/// A call on `/identity/v3/auth/tokens`-style paths naming a subject token.
async fn subject_call(
    c: &Cloud,
    who: &Session,
    method: Method,
    path: &str,
    subject: &str,
) -> reqwest::Response {
    c.req(who, method, path)
        .header("X-Subject-Token", subject)
        .send()
        .await
        .unwrap()
}

/// `POST /identity/v3/auth/tokens` with no token of its own.
async fn authenticate(c: &Cloud, body: &serde_json::Value) -> reqwest::Response {
    c.http
        .post(format!("{}/identity/v3/auth/tokens", c.url))
        .json(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn discovery_needs_no_token() {
    let c = Cloud::start().await;
    let r = c
        .http
        .get(format!("{}/identity", c.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::MULTIPLE_CHOICES);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["versions"]["values"][0]["id"], "v3.14");
    let r = c
        .http
        .get(format!("{}/identity/v3", c.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        v["version"]["links"][0]["href"],
        format!("{}/identity/v3/", c.url)
    );
}

#[tokio::test]
async fn password_token_carries_catalog_and_validates() {
    let c = Cloud::start().await;
    let (st, v) = c.get(&c.admin, "/identity/v3/auth/catalog").await;
    assert_eq!(st, StatusCode::OK);
    let types: Vec<&str> = v["catalog"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert!(types.contains(&"compute") && types.contains(&"image") && types.contains(&"identity"));
    // Validate our own token.
    let r = subject_call(
        &c,
        &c.admin,
        Method::GET,
        "/identity/v3/auth/tokens",
        &c.admin.token,
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["token"]["project"]["name"], "admin");
    assert_eq!(v["token"]["roles"][0]["name"], "admin");
    let compute = v["token"]["catalog"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "compute")
        .unwrap();
    assert_eq!(
        compute["endpoints"][0]["url"],
        format!("{}/compute/v2.1", c.url)
    );
    // Keystone's implied roles: admin brings member and reader.
    let roles: Vec<&str> = v["token"]["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["admin", "member", "reader"]);
    // ?nocatalog leaves the catalog out.
    let r = subject_call(
        &c,
        &c.admin,
        Method::GET,
        "/identity/v3/auth/tokens?nocatalog",
        &c.admin.token,
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: serde_json::Value = r.json().await.unwrap();
    assert!(v["token"].get("catalog").is_none(), "{v}");
    assert_eq!(v["token"]["project"]["name"], "admin");
    // A member may validate their own token but not another user's (identity:validate_token
    // is admin-or-subject); the admin may validate theirs.
    let alice = c.new_member("alice").await;
    for (who, subject, want) in [
        (&alice, &alice.token, StatusCode::OK),
        (&alice, &c.admin.token, StatusCode::FORBIDDEN),
        (&c.admin, &alice.token, StatusCode::OK),
    ] {
        for method in [Method::GET, Method::HEAD] {
            let r =
                subject_call(&c, who, method.clone(), "/identity/v3/auth/tokens", subject).await;
            assert_eq!(r.status(), want, "{method}");
        }
    }
    let r = subject_call(
        &c,
        &alice,
        Method::DELETE,
        "/identity/v3/auth/tokens",
        &c.admin.token,
    )
    .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], 403);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("identity:revoke_token"),
        "{v}"
    );
    assert_eq!(
        c.get(&c.admin, "/compute/v2.1/servers").await.0,
        StatusCode::OK
    );
    // Member tokens carry member and reader.
    let r = subject_call(
        &c,
        &alice,
        Method::GET,
        "/identity/v3/auth/tokens",
        &alice.token,
    )
    .await;
    let v: serde_json::Value = r.json().await.unwrap();
    let roles: Vec<&str> = v["token"]["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["member", "reader"]);
}

#[tokio::test]
async fn bad_credentials_and_tokens_are_401() {
    let c = Cloud::start().await;
    let body = json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {"name": "admin", "domain": {"id": "default"}, "password": "wrong"}}}}});
    let r = authenticate(&c, &body).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], 401);
    assert_eq!(v["error"]["title"], "Unauthorized");
    // No token, bad token, revoked token.
    let r = c
        .http
        .get(format!("{}/compute/v2.1/servers", c.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let bogus = Session {
        token: "nope".into(),
        ..c.admin.clone()
    };
    assert_eq!(
        c.get(&bogus, "/compute/v2.1/servers").await.0,
        StatusCode::UNAUTHORIZED
    );
    let extra = login(&c.http, &c.url, "admin", ADMIN_PASSWORD, "admin").await;
    let r = subject_call(
        &c,
        &c.admin,
        Method::DELETE,
        "/identity/v3/auth/tokens",
        &extra.token,
    )
    .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        c.get(&extra, "/compute/v2.1/servers").await.0,
        StatusCode::UNAUTHORIZED
    );
    // Malformed auth body: 400 in Keystone's format.
    let r = c
        .http
        .post(format!("{}/identity/v3/auth/tokens", c.url))
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn token_method_rescopes_and_members_cannot_administer() {
    let c = Cloud::start().await;
    let alice = c.new_member("alice").await;
    // Token method: a new token from alice's.
    let body = json!({"auth": {"identity": {"methods": ["token"], "token": {"id": alice.token}}}});
    let r = authenticate(&c, &body).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["token"]["project"]["id"], alice.project_id);
    assert!(
        v["token"]["methods"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m == "token")
    );
    // Alice is a member: admin APIs answer 403.
    let (st, v) = c
        .post(
            &alice,
            "/identity/v3/projects",
            json!({"project": {"name": "evil"}}),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    let (st, _) = c.get(&alice, "/identity/v3/users").await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    // Duplicate project names conflict.
    let (st, _) = c
        .post(
            &c.admin,
            "/identity/v3/projects",
            json!({"project": {"name": "alice"}}),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT);
    // Alice sees only her project.
    let (_, v) = c.get(&alice, "/identity/v3/auth/projects").await;
    let names: Vec<&str> = v["projects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alice"]);
}

/// Tokens expire: once past `expires_at` a token is a 401 on every service and cannot be
/// exchanged for a new one.
#[tokio::test]
async fn expired_tokens_are_401() {
    let c =
        Cloud::start_with(|cfg| cfg.control.token_ttl = std::time::Duration::from_secs(2)).await;
    let s = login(&c.http, &c.url, "admin", ADMIN_PASSWORD, "admin").await;
    assert_eq!(c.get(&s, "/compute/v2.1/servers").await.0, StatusCode::OK);
    tokio::time::sleep(std::time::Duration::from_millis(2200)).await;
    for path in [
        "/compute/v2.1/servers",
        "/image/v2/images",
        "/identity/v3/auth/projects",
    ] {
        let (st, v) = c.get(&s, path).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{path}: {v}");
    }
    let body = json!({"auth": {"identity": {"methods": ["token"], "token": {"id": s.token}}}});
    let r = authenticate(&c, &body).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}
