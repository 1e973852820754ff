//! OpenStack compute: `/os-keypairs` shapes per microversion, fingerprints, validation,
//! quota, paging and admin access to other users' key pairs.

use crate::common::*;
use base64::Engine as _;
use md5::{Digest, Md5};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Real keys made with `ssh-keygen`; the fingerprints are what `ssh-keygen -l -E md5` says.
const ED25519: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFU/ccJNElnRmbpy6HbUTsjlsdO3/rUH/TJPyKxpFbgS alice@example";
const ED25519_FP: &str = "ed:bf:87:cb:9a:1b:5d:7c:17:eb:e9:b3:fa:63:9e:6f";
const RSA: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQCUYsHZOQn2wkokrrf+4KV0inNKL2wPe7z2Ma6bgiT58QtPgpB2H1s06hImaoavuwz2rjGT82R2tO0mvc6P7K+3gxyddAQYrKAkzNKwFWZgb0/TVZw7vrHg/aIC46dvvjpxBGzWIXxTsDNT8nv5DE0dlXOObVtcv7PSp8CclXnFtoSNlaGYMzf1wShjJxXcjekts7wmWIeXah0UPFm2rJHnbGAaKpcZzno6rpqj3460/kHmnP+yRg5EhbbaEmrjtSIbV6afOFkrvqPsSUDXtHwvz9zP5BJmGTT8rUIVhxhw11tDMEDnPda4h2wnW7UPRhnjpPORF9w+oGE70Xi5cQq9 bob@example";
const RSA_FP: &str = "ed:c7:61:3e:f6:9c:21:dd:3a:2c:5c:c4:d1:df:d6:0e";

/// MD5 of the base64-decoded key blob, colon separated: Nova's fingerprint.
fn md5_fingerprint(line: &str) -> String {
    let blob = base64::engine::general_purpose::STANDARD
        .decode(line.split_whitespace().nth(1).unwrap())
        .unwrap();
    Md5::digest(&blob)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[tokio::test]
async fn import_shapes_and_fingerprints_per_microversion() {
    let c = Cloud::start().await;
    let a = &c.admin;
    assert_eq!(md5_fingerprint(ED25519), ED25519_FP);
    assert_eq!(md5_fingerprint(RSA), RSA_FP);

    // 2.1: 200, no `type`.
    let (st, body) = c
        .post(
            a,
            "/compute/v2.1/os-keypairs",
            json!({"keypair": {"name": "ed", "public_key": ED25519}}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let kp = &body["keypair"];
    assert_eq!(
        keys(kp),
        sorted(&["name", "public_key", "fingerprint", "user_id"])
    );
    assert_eq!(kp["fingerprint"], ED25519_FP);
    assert_eq!(kp["user_id"], a.user_id);
    assert_eq!(kp["public_key"], ED25519);

    // 2.2: 201 with `type`.
    let (st, body) = c
        .post(
            &a.mv("2.2"),
            "/compute/v2.1/os-keypairs",
            json!({"keypair": {"name": "rsa", "public_key": RSA, "type": "ssh"}}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{body}");
    assert_eq!(
        keys(&body["keypair"]),
        sorted(&["name", "public_key", "fingerprint", "user_id", "type"])
    );
    assert_eq!(body["keypair"]["fingerprint"], md5_fingerprint(RSA));

    // List: `{"keypair": {...}}` items; `type` from 2.2.
    let (st, body) = c.get(a, "/compute/v2.1/os-keypairs").await;
    assert_eq!(st, StatusCode::OK);
    let items = body["keypairs"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(
        keys(&items[0]["keypair"]),
        sorted(&["name", "public_key", "fingerprint"])
    );
    assert!(body.get("keypairs_links").is_none());
    let (_, body) = c.get(&a.mv("2.2"), "/compute/v2.1/os-keypairs").await;
    assert_eq!(
        keys(&body["keypairs"][0]["keypair"]),
        sorted(&["name", "public_key", "fingerprint", "type"])
    );

    // Show: the soft-delete fields and the integer id.
    let (st, body) = c.get(a, "/compute/v2.1/os-keypairs/ed").await;
    assert_eq!(st, StatusCode::OK);
    let kp = &body["keypair"];
    assert_eq!(
        keys(kp),
        sorted(&[
            "created_at",
            "deleted",
            "deleted_at",
            "fingerprint",
            "id",
            "name",
            "public_key",
            "updated_at",
            "user_id"
        ])
    );
    assert!(kp["id"].is_i64());
    assert_eq!(kp["deleted"], false);
    assert!(kp["deleted_at"].is_null() && kp["updated_at"].is_null());
    let (_, body) = c.get(&a.mv("2.2"), "/compute/v2.1/os-keypairs/ed").await;
    assert_eq!(body["keypair"]["type"], "ssh");

    // Delete: 202 at 2.1, 204 from 2.2; then 404.
    let (st, _) = c.delete(a, "/compute/v2.1/os-keypairs/ed").await;
    assert_eq!(st, StatusCode::ACCEPTED);
    let (st, _) = c
        .delete(&a.mv("2.2"), "/compute/v2.1/os-keypairs/rsa")
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, body) = c.get(a, "/compute/v2.1/os-keypairs/ed").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_eq!(
        body["itemNotFound"]["message"],
        format!("Keypair ed not found for user {}", a.user_id)
    );
    let (st, _) = c.delete(a, "/compute/v2.1/os-keypairs/ed").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bad_input_is_a_400_naming_the_field() {
    let c = Cloud::start().await;
    let a = &c.admin;
    let post = |s: Session, body: Value| {
        let c = &c;
        async move { c.post(&s, "/compute/v2.1/os-keypairs", body).await }
    };
    // Name alphabet: '@' and '.' only from 2.92.
    let (st, body) = post(
        a.mv("2.91"),
        json!({"keypair": {"name": "me@host.x", "public_key": ED25519}}),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(
        body["badRequest"]["message"]
            .as_str()
            .unwrap()
            .contains("name")
    );
    let (st, body) = post(
        a.mv("2.92"),
        json!({"keypair": {"name": "me@host.x", "public_key": ED25519}}),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{body}");
    for bad in ["bad/name", " lead", ""] {
        let (st, body) = post(
            a.mv("2.92"),
            json!({"keypair": {"name": bad, "public_key": ED25519}}),
        )
        .await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{bad:?}: {body}");
    }
    // `type` is not allowed at 2.1, and must be ssh or x509 later.
    let (st, body) = post(
        a.clone(),
        json!({"keypair": {"name": "k", "public_key": ED25519, "type": "ssh"}}),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(
        body["badRequest"]["message"]
            .as_str()
            .unwrap()
            .contains("'type'")
    );
    let (st, body) = post(
        a.mv("2.2"),
        json!({"keypair": {"name": "k", "public_key": ED25519, "type": "pgp"}}),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(
        body["badRequest"]["message"]
            .as_str()
            .unwrap()
            .contains("type")
    );
    // `user_id` only from 2.10.
    let (st, _) = post(
        a.mv("2.9"),
        json!({"keypair": {"name": "k", "public_key": ED25519, "user_id": a.user_id}}),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    // Garbage key material.
    let (st, body) = post(
        a.clone(),
        json!({"keypair": {"name": "k", "public_key": "ssh-ed25519 !!!"}}),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(
        body["badRequest"]["message"]
            .as_str()
            .unwrap()
            .contains("Keypair data is invalid")
    );
    // No public key: Nimbus does not generate (before 2.92), and 2.92 requires one.
    let (st, body) = post(a.clone(), json!({"keypair": {"name": "gen"}})).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(
        body["badRequest"]["message"]
            .as_str()
            .unwrap()
            .contains("public_key")
    );
    let (st, body) = post(a.mv("2.92"), json!({"keypair": {"name": "gen"}})).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(
        body["badRequest"]["message"]
            .as_str()
            .unwrap()
            .contains("public_key")
    );
    // Duplicate name: 409.
    let (st, _) = post(
        a.clone(),
        json!({"keypair": {"name": "dup", "public_key": ED25519}}),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let (st, body) = post(
        a.clone(),
        json!({"keypair": {"name": "dup", "public_key": RSA}}),
    )
    .await;
    assert_eq!(st, StatusCode::CONFLICT, "{body}");
    assert_eq!(
        body["conflictingRequest"]["message"],
        "Key pair 'dup' already exists."
    );
    // Unknown top-level and nested keys.
    let (st, _) = post(
        a.clone(),
        json!({"keypair": {"name": "x", "public_key": ED25519, "bogus": 1}}),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = post(a.clone(), json!({"kp": {}})).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    // Strict query parameters from 2.75.
    let (st, _) = c
        .get(&a.mv("2.74"), "/compute/v2.1/os-keypairs?foo=1")
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, body) = c
        .get(&a.mv("2.75"), "/compute/v2.1/os-keypairs?foo=1")
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(
        body["badRequest"]["message"]
            .as_str()
            .unwrap()
            .contains("foo")
    );
}

#[tokio::test]
async fn quota_exceeded_is_403() {
    let c = Cloud::start().await;
    let a = &c.admin;
    let (st, body) = c
        .put(
            a,
            &format!("/compute/v2.1/os-quota-sets/{}", a.project_id),
            json!({"quota_set": {"key_pairs": 1}}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let (st, _) = c
        .post(
            a,
            "/compute/v2.1/os-keypairs",
            json!({"keypair": {"name": "one", "public_key": ED25519}}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, body) = c
        .post(
            a,
            "/compute/v2.1/os-keypairs",
            json!({"keypair": {"name": "two", "public_key": RSA}}),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert_eq!(
        body["forbidden"]["message"],
        "Quota exceeded, too many key pairs."
    );
}

#[tokio::test]
async fn paging_from_2_35() {
    let c = Cloud::start().await;
    let a = &c.admin;
    for name in ["a", "b", "c"] {
        let (st, _) = c
            .post(
                a,
                "/compute/v2.1/os-keypairs",
                json!({"keypair": {"name": name, "public_key": ED25519}}),
            )
            .await;
        assert_eq!(st, StatusCode::OK);
    }
    let s = a.mv("2.35");
    let (st, body) = c.get(&s, "/compute/v2.1/os-keypairs?limit=2").await;
    assert_eq!(st, StatusCode::OK);
    let names: Vec<&str> = body["keypairs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["keypair"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a", "b"]);
    let next = body["keypairs_links"][0]["href"].as_str().unwrap();
    assert_eq!(body["keypairs_links"][0]["rel"], "next");
    assert!(
        next.contains("/os-keypairs?") && next.contains("marker=b"),
        "{next}"
    );
    let (_, body) = c.get(&s, "/compute/v2.1/os-keypairs?marker=b").await;
    assert_eq!(body["keypairs"].as_array().unwrap().len(), 1);
    assert_eq!(body["keypairs"][0]["keypair"]["name"], "c");
    assert!(body.get("keypairs_links").is_none());
    let (st, body) = c.get(&s, "/compute/v2.1/os-keypairs?marker=zzz").await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["badRequest"]["message"],
        "Marker zzz could not be found."
    );
    let (st, _) = c.get(&s, "/compute/v2.1/os-keypairs?limit=-1").await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    // Before 2.35 paging parameters are ignored.
    let (st, body) = c
        .get(
            &a.mv("2.34"),
            "/compute/v2.1/os-keypairs?limit=1&marker=zzz",
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(body["keypairs"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn admins_reach_other_users_from_2_10() {
    let c = Cloud::start().await;
    let a = &c.admin;
    let bob = c.new_member("bob").await;
    let (st, _) = c
        .post(
            &bob,
            "/compute/v2.1/os-keypairs",
            json!({"keypair": {"name": "bk", "public_key": ED25519}}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    // Admin creates one for bob (2.10 body user_id).
    let (st, body) = c
        .post(
            &a.mv("2.10"),
            "/compute/v2.1/os-keypairs",
            json!({"keypair": {"name": "for-bob", "public_key": RSA, "user_id": bob.user_id}}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{body}");
    assert_eq!(body["keypair"]["user_id"], bob.user_id);
    let q = format!("/compute/v2.1/os-keypairs?user_id={}", bob.user_id);
    let (_, body) = c.get(&a.mv("2.10"), &q).await;
    assert_eq!(body["keypairs"].as_array().unwrap().len(), 2);
    // Before 2.10 `user_id` is ignored: the admin sees their own (none).
    let (_, body) = c.get(&a.mv("2.9"), &q).await;
    assert_eq!(body["keypairs"].as_array().unwrap().len(), 0);
    let (st, _) = c
        .get(
            &a.mv("2.10"),
            &format!("/compute/v2.1/os-keypairs/bk?user_id={}", bob.user_id),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    // A member cannot reach someone else's.
    let (st, body) = c
        .get(
            &bob.mv("2.10"),
            &format!("/compute/v2.1/os-keypairs?user_id={}", a.user_id),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{body}");
    let (st, _) = c
        .delete(
            &a.mv("2.10"),
            &format!("/compute/v2.1/os-keypairs/bk?user_id={}", bob.user_id),
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (_, body) = c.get(&bob, "/compute/v2.1/os-keypairs").await;
    assert_eq!(body["keypairs"].as_array().unwrap().len(), 1);
}
