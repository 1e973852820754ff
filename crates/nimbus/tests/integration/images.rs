//! The Glance v2 subset under `/image` and Nova's `/images` proxy, through HTTP.

use crate::common::{Cloud, Session};
use md5::Md5;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha512};
use std::collections::BTreeSet;

const PATCH: &str = "application/openstack-images-v2.1-json-patch";

/// Deterministic pseudo-random bytes (xorshift), so digests are not of trivial data.
fn payload(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn md5_hex(b: &[u8]) -> String {
    format!("{:x}", Md5::digest(b))
}

fn sha512_hex(b: &[u8]) -> String {
    format!("{:x}", Sha512::digest(b))
}

async fn create(c: &Cloud, s: &Session, body: Value) -> Value {
    let (st, img) = c.post(s, "/image/v2/images", body).await;
    assert_eq!(st, StatusCode::CREATED, "{img}");
    img
}

async fn patch(c: &Cloud, s: &Session, id: &str, ops: Value) -> (StatusCode, Value) {
    let resp = c
        .req(s, Method::PATCH, &format!("/image/v2/images/{id}"))
        .header("content-type", PATCH)
        .body(ops.to_string())
        .send()
        .await
        .unwrap();
    let st = resp.status();
    (st, resp.json().await.unwrap_or(Value::Null))
}

async fn upload(c: &Cloud, s: &Session, id: &str, data: Vec<u8>) -> (StatusCode, Value) {
    let resp = c
        .req(s, Method::PUT, &format!("/image/v2/images/{id}/file"))
        .header("content-type", "application/octet-stream")
        .body(data)
        .send()
        .await
        .unwrap();
    let st = resp.status();
    (st, resp.json().await.unwrap_or(Value::Null))
}

fn ids(list: &Value) -> Vec<String> {
    list["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn version_documents_need_no_token() {
    let c = Cloud::start().await;
    for path in ["/image", "/image/", "/image/v1/images", "/image/v3"] {
        let resp = c.http.get(format!("{}{path}", c.url)).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::MULTIPLE_CHOICES, "{path}");
        let v: Value = resp.json().await.unwrap();
        let list = v["versions"].as_array().unwrap();
        let current: Vec<&Value> = list.iter().filter(|v| v["status"] == "CURRENT").collect();
        assert_eq!(current.len(), 1, "{v}");
        assert!(current[0]["id"].as_str().unwrap().starts_with("v2."));
        assert_eq!(
            current[0]["links"][0]["href"],
            format!("{}/image/v2/", c.url)
        );
    }
    let resp = c
        .http
        .get(format!("{}/image/versions", c.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    // The v2 API itself needs a token; `/v2` alone is not a resource.
    let resp = c
        .http
        .get(format!("{}/image/v2/images", c.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], 401, "Keystone's 401: {v}");
    let (st, _) = c.get(&c.admin, "/image/v2").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    // A version alias Glance accepts routes to v2.
    let (st, v) = c.get(&c.admin, "/image/v2.1/images").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(v["images"].is_array());
}

#[tokio::test]
async fn create_upload_download_roundtrip() {
    let c = Cloud::start().await;
    let s = &c.admin;
    let (st, img) = c
        .post(
            s,
            "/image/v2/images",
            json!({"name": "big", "disk_format": "raw", "container_format": "bare",
                   "min_ram": 64, "tags": ["x", "x", "y"], "os_distro": "cirros"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{img}");
    let id = img["id"].as_str().unwrap().to_owned();
    assert_eq!(img["status"], "queued");
    assert_eq!(img["visibility"], "shared");
    assert_eq!(img["protected"], false);
    assert_eq!(img["os_hidden"], false);
    assert_eq!(img["owner"], s.project_id.as_str());
    assert_eq!(img["min_ram"], 64);
    assert_eq!(img["min_disk"], 0);
    assert_eq!(img["tags"], json!(["x", "y"]));
    assert_eq!(img["os_distro"], "cirros");
    for null in [
        "size",
        "virtual_size",
        "checksum",
        "os_hash_algo",
        "os_hash_value",
    ] {
        assert!(img[null].is_null(), "{null} in {img}");
    }
    assert_eq!(img["self"], format!("/v2/images/{id}"));
    assert_eq!(img["file"], format!("/v2/images/{id}/file"));
    assert_eq!(img["schema"], "/v2/schemas/image");
    assert!(img.get("locations").is_none() && img.get("stores").is_none());
    let created = img["created_at"].as_str().unwrap();
    assert_eq!(created.len(), 20, "%Y-%m-%dT%H:%M:%SZ: {created}");
    assert!(created.ends_with('Z'));

    // Nothing to download yet.
    let resp = c
        .req(s, Method::GET, &format!("/image/v2/images/{id}/file"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);

    // A several-MiB upload, sent as a chunked stream.
    let data = payload(5 * 1024 * 1024 + 123, 7);
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        data.chunks(64 * 1024).map(|c| Ok(c.to_vec())).collect();
    let resp = c
        .req(s, Method::PUT, &format!("/image/v2/images/{id}/file"))
        .header("content-type", "application/octet-stream")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);

    let (st, img) = c.get(s, &format!("/image/v2/images/{id}")).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(img["status"], "active");
    assert_eq!(img["size"], data.len() as u64);
    assert_eq!(img["virtual_size"], data.len() as u64);
    assert_eq!(img["checksum"], md5_hex(&data));
    assert_eq!(img["os_hash_algo"], "sha512");
    assert_eq!(img["os_hash_value"], sha512_hex(&data));

    let resp = c
        .req(s, Method::GET, &format!("/image/v2/images/{id}/file"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let h = resp.headers();
    assert_eq!(h["content-type"], "application/octet-stream");
    assert_eq!(h["content-md5"], md5_hex(&data).as_str());
    assert_eq!(h["content-length"], data.len().to_string().as_str());
    let got = resp.bytes().await.unwrap();
    assert_eq!(got.len(), data.len());
    assert!(got[..] == data[..], "downloaded bytes differ");

    // A single range.
    let resp = c
        .req(s, Method::GET, &format!("/image/v2/images/{id}/file"))
        .header("range", "bytes=1000-1999")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        resp.headers()["content-range"],
        format!("bytes 1000-1999/{}", data.len()).as_str()
    );
    assert_eq!(resp.bytes().await.unwrap()[..], data[1000..2000]);

    // Active images take no more data.
    let (st, body) = upload(&c, s, &id, b"more".to_vec()).await;
    assert_eq!(st, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["code"], "409 Conflict");
    assert_eq!(body["title"], "Conflict");
    assert!(
        body["message"].as_str().unwrap().contains("active"),
        "{body}"
    );

    // The harness helper goes through the same API.
    let small = c.image(s, "small", b"tiny").await;
    let (_, img) = c.get(s, &format!("/image/v2/images/{small}")).await;
    assert_eq!(img["checksum"], md5_hex(b"tiny"));
}

#[tokio::test]
async fn upload_rules() {
    let c = Cloud::start().await;
    let s = &c.admin;
    let img = create(
        &c,
        s,
        json!({"name": "q", "disk_format": "qcow2", "container_format": "bare"}),
    )
    .await;
    let id = img["id"].as_str().unwrap();
    // Wrong media type.
    let resp = c
        .req(s, Method::PUT, &format!("/image/v2/images/{id}/file"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // qcow2 claimed, raw bytes given: Glance's format check refuses, the image stays queued.
    let (st, body) = upload(&c, s, id, payload(4096, 3)).await;
    assert_eq!(st, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("does not match"),
        "{body}"
    );
    let (_, img) = c.get(s, &format!("/image/v2/images/{id}")).await;
    assert_eq!(img["status"], "queued");
    // A real qcow2 header goes through, and its virtual size is read from it.
    let mut qcow = b"QFI\xfb\0\0\0\x03".to_vec();
    qcow.extend_from_slice(&[0u8; 16]);
    qcow.extend_from_slice(&(1u64 << 30).to_be_bytes());
    qcow.extend_from_slice(&[0u8; 480]);
    let (st, body) = upload(&c, s, id, qcow).await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{body}");
    let (_, img) = c.get(s, &format!("/image/v2/images/{id}")).await;
    assert_eq!(img["virtual_size"], 1u64 << 30);
    // Formats must be set before data.
    let bare = create(&c, s, json!({"name": "noformat"})).await;
    let (st, body) = upload(&c, s, bare["id"].as_str().unwrap(), b"abc".to_vec()).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("disk_format, container_format must be set"),
        "{body}"
    );
    // Unknown image.
    let (st, body) = upload(&c, s, "00000000-0000-0000-0000-000000000000", b"x".to_vec()).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{body}");
}

#[tokio::test]
async fn list_filters_and_paging() {
    let c = Cloud::start().await;
    let s = &c.admin;
    let mut all = Vec::new();
    for n in 0..7 {
        let img = create(
            &c,
            s,
            json!({"name": format!("img-{n}"), "disk_format": "raw", "container_format": "bare",
                   "visibility": if n % 2 == 0 { "private" } else { "public" },
                   "tags": if n < 3 { json!(["low"]) } else { json!([]) }}),
        )
        .await;
        all.push(img["id"].as_str().unwrap().to_owned());
    }
    c.image(s, "img-active", b"data").await;
    let (st, v) = c.get(s, "/image/v2/images").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["first"], "/v2/images");
    assert_eq!(v["schema"], "/v2/schemas/images");
    assert!(v.get("next").is_none(), "fewer than 25 images: {v}");
    assert_eq!(ids(&v).len(), 8);
    // Newest first by default.
    assert_eq!(v["images"][0]["name"], "img-active");

    let (_, v) = c.get(s, "/image/v2/images?name=img-3").await;
    assert_eq!(ids(&v), vec![all[3].clone()]);
    assert_eq!(v["first"], "/v2/images?name=img-3");
    let (_, v) = c
        .get(s, &format!("/image/v2/images?id=in:{},{}", all[1], all[5]))
        .await;
    let got: BTreeSet<String> = ids(&v).into_iter().collect();
    assert_eq!(got, BTreeSet::from([all[1].clone(), all[5].clone()]));
    let (_, v) = c.get(s, &format!("/image/v2/images?id={}", all[2])).await;
    assert_eq!(ids(&v), vec![all[2].clone()]);
    let (_, v) = c.get(s, "/image/v2/images?status=active").await;
    assert_eq!(ids(&v).len(), 1);
    let (_, v) = c.get(s, "/image/v2/images?status=queued").await;
    assert_eq!(ids(&v).len(), 7);
    let (_, v) = c.get(s, "/image/v2/images?visibility=public").await;
    assert_eq!(ids(&v).len(), 3);
    let (_, v) = c.get(s, "/image/v2/images?visibility=private").await;
    assert_eq!(ids(&v).len(), 4);
    let (_, v) = c.get(s, "/image/v2/images?tag=low").await;
    assert_eq!(ids(&v).len(), 3);
    let (_, v) = c.get(s, "/image/v2/images?sort=name:asc&limit=2").await;
    let names: Vec<&str> = v["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["img-0", "img-1"]);

    // Follow `next` to the end: every image once.
    let mut seen = Vec::new();
    let mut url = "/image/v2/images?limit=3".to_owned();
    let mut pages = 0;
    loop {
        let (st, v) = c.get(s, &url).await;
        assert_eq!(st, StatusCode::OK, "{url}: {v}");
        seen.extend(ids(&v));
        pages += 1;
        assert!(pages < 10, "paging does not end");
        match v.get("next").and_then(Value::as_str) {
            Some(next) => {
                assert!(next.starts_with("/v2/images?limit=3&marker="), "{next}");
                url = format!("/image{next}");
            }
            None => break,
        }
    }
    let unique: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(seen.len(), 8, "{seen:?}");
    assert_eq!(unique.len(), 8);

    for bad in [
        "limit=x",
        "limit=-1",
        "visibility=bogus",
        "sort_key=bogus",
        "sort_dir=sideways",
        "os_hidden=maybe",
        "protected=1",
        "member_status=bogus",
        "marker=00000000-0000-0000-0000-000000000000",
        "marker=not-a-uuid",
        "name=foo:bar",
        "size_min=big",
        "changes-since=2020-01-01T00:00:00Z",
    ] {
        let (st, body) = c.get(s, &format!("/image/v2/images?{bad}")).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_eq!(body["code"], "400 Bad Request", "{bad}: {body}");
    }
}

#[tokio::test]
async fn patch_rules() {
    let c = Cloud::start().await;
    let s = &c.admin;
    let img = create(
        &c,
        s,
        json!({"name": "p", "disk_format": "raw", "container_format": "bare", "os_distro": "a"}),
    )
    .await;
    let id = img["id"].as_str().unwrap();
    let (st, v) = patch(
        &c,
        s,
        id,
        json!([
            {"op": "replace", "path": "/name", "value": "renamed"},
            {"op": "add", "path": "/hw_disk_bus", "value": "virtio"},
            {"op": "replace", "path": "/os_distro", "value": "b"},
            {"op": "add", "path": "/tags", "value": ["t1", "t2"]},
            {"op": "replace", "path": "/min_ram", "value": 128},
            {"op": "replace", "path": "/visibility", "value": "community"},
        ]),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["name"], "renamed");
    assert_eq!(v["hw_disk_bus"], "virtio");
    assert_eq!(v["os_distro"], "b");
    assert_eq!(v["tags"], json!(["t1", "t2"]));
    assert_eq!(v["min_ram"], 128);
    assert_eq!(v["visibility"], "community");
    let (st, v) = patch(&c, s, id, json!([{"op": "remove", "path": "/hw_disk_bus"}])).await;
    assert_eq!(st, StatusCode::OK);
    assert!(v.get("hw_disk_bus").is_none());

    for (ops, want) in [
        (
            json!([{"op": "replace", "path": "/status", "value": "active"}]),
            403,
        ),
        (
            json!([{"op": "replace", "path": "/checksum", "value": "x"}]),
            403,
        ),
        (json!([{"op": "replace", "path": "/id", "value": "x"}]), 403),
        (
            json!([{"op": "add", "path": "/os_glance_x", "value": "x"}]),
            403,
        ),
        (json!([{"op": "remove", "path": "/name"}]), 403),
        (json!([{"op": "test", "path": "/name", "value": "x"}]), 400),
        (json!([{"op": "copy", "from": "/name", "path": "/x"}]), 400),
        (json!([{"op": "move", "from": "/name", "path": "/x"}]), 400),
        (json!([{"op": "add", "path": "/n", "value": 5}]), 400),
        (
            json!([{"op": "replace", "path": "/visibility", "value": "everyone"}]),
            400,
        ),
        (
            json!([{"op": "replace", "path": "/min_ram", "value": "lots"}]),
            400,
        ),
        (
            json!([{"op": "replace", "path": "/a/b", "value": "x"}]),
            400,
        ),
        (
            json!([{"op": "replace", "path": "name", "value": "x"}]),
            400,
        ),
        (
            json!([{"op": "replace", "path": "/nope", "value": "x"}]),
            409,
        ),
        (json!([{"op": "remove", "path": "/nope"}]), 409),
        (json!({"op": "replace"}), 400),
    ] {
        let (st, body) = patch(&c, s, id, ops.clone()).await;
        assert_eq!(st.as_u16(), want, "{ops}: {body}");
    }
    // A failed batch changes nothing.
    let (_, v) = c.get(s, &format!("/image/v2/images/{id}")).await;
    assert_eq!(v["name"], "renamed");
    // Only Glance's patch media types.
    let resp = c
        .req(s, Method::PATCH, &format!("/image/v2/images/{id}"))
        .header("content-type", "application/json")
        .body(json!([{"op": "replace", "path": "/name", "value": "x"}]).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(
        resp.headers()["accept-patch"]
            .to_str()
            .unwrap()
            .contains(PATCH)
    );
    // Draft-4 style is accepted too.
    let resp = c
        .req(s, Method::PATCH, &format!("/image/v2/images/{id}"))
        .header(
            "content-type",
            "application/openstack-images-v2.0-json-patch",
        )
        .body(json!([{"replace": "/name", "value": "old-style"}]).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    // Formats are fixed once there is data.
    let active = c.image(s, "active", b"abc").await;
    let (st, _) = patch(
        &c,
        s,
        &active,
        json!([{"op": "replace", "path": "/disk_format", "value": "qcow2"}]),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn tags_delete_and_protection() {
    let c = Cloud::start().await;
    let s = &c.admin;
    let img = create(&c, s, json!({"name": "t", "protected": true})).await;
    let id = img["id"].as_str().unwrap();
    let (st, _) = c
        .call(
            s,
            Method::PUT,
            &format!("/image/v2/images/{id}/tags/blue"),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (_, v) = c.get(s, &format!("/image/v2/images/{id}")).await;
    assert_eq!(v["tags"], json!(["blue"]));
    let (st, _) = c
        .delete(s, &format!("/image/v2/images/{id}/tags/blue"))
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _) = c
        .delete(s, &format!("/image/v2/images/{id}/tags/blue"))
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    let (st, body) = c.delete(s, &format!("/image/v2/images/{id}")).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{body}");
    assert!(body["message"].as_str().unwrap().contains("protected"));
    let (st, _) = patch(
        &c,
        s,
        id,
        json!([{"op": "replace", "path": "/protected", "value": false}]),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = c.delete(s, &format!("/image/v2/images/{id}")).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, body) = c.get(s, &format!("/image/v2/images/{id}")).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_eq!(body["code"], "404 Not Found");
    assert_eq!(body["title"], "Not Found");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with(&format!("No image found with ID {id}")),
        "{body}"
    );
    let (st, _) = c.delete(s, &format!("/image/v2/images/{id}")).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = c.get(s, "/image/v2/images/not-a-uuid").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn visibility_between_projects() {
    let c = Cloud::start().await;
    let a = c.new_member("alpha").await;
    let b = c.new_member("beta").await;
    let private = c.image(&a, "a-private", b"secret").await;
    let shared = create(&c, &a, json!({"name": "a-shared"})).await;
    let shared = shared["id"].as_str().unwrap().to_owned();
    let community = create(
        &c,
        &a,
        json!({"name": "a-community", "visibility": "community"}),
    )
    .await;
    let community = community["id"].as_str().unwrap().to_owned();
    let public = c.image(&c.admin, "public", b"pub").await;
    let (st, _) = patch(
        &c,
        &c.admin,
        &public,
        json!([{"op": "replace", "path": "/visibility", "value": "public"}]),
    )
    .await;
    assert_eq!(st, StatusCode::OK);

    // Members may not publish.
    let (st, _) = c
        .post(
            &a,
            "/image/v2/images",
            json!({"name": "x", "visibility": "public"}),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);

    for id in [&private, &shared] {
        for path in [
            format!("/image/v2/images/{id}"),
            format!("/image/v2/images/{id}/file"),
        ] {
            let (st, _) = c.get(&b, &path).await;
            assert_eq!(st, StatusCode::NOT_FOUND, "{path}");
        }
        let (st, _) = c.delete(&b, &format!("/image/v2/images/{id}")).await;
        assert_eq!(st, StatusCode::NOT_FOUND);
        let (st, _) = patch(
            &c,
            &b,
            id,
            json!([{"op": "replace", "path": "/name", "value": "x"}]),
        )
        .await;
        assert_eq!(st, StatusCode::NOT_FOUND);
    }
    let (st, _) = c.get(&b, &format!("/image/v2/images/{public}")).await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = c.get(&b, &format!("/image/v2/images/{community}")).await;
    assert_eq!(st, StatusCode::OK);
    // Visible but not theirs.
    let (st, _) = c.delete(&b, &format!("/image/v2/images/{public}")).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = patch(
        &c,
        &b,
        &public,
        json!([{"op": "replace", "path": "/name", "value": "x"}]),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);

    let (_, v) = c.get(&b, "/image/v2/images").await;
    assert_eq!(
        ids(&v),
        vec![public.clone()],
        "community images only on request"
    );
    let (_, v) = c.get(&b, "/image/v2/images?visibility=community").await;
    assert_eq!(ids(&v), vec![community.clone()]);
    let (_, v) = c.get(&b, "/image/v2/images?visibility=all").await;
    assert_eq!(ids(&v).len(), 2);
    let (_, v) = c.get(&a, "/image/v2/images").await;
    assert_eq!(ids(&v).len(), 4, "the owner sees all its images: {v}");
    let (_, v) = c
        .get(&b, &format!("/image/v2/images?id=in:{private},{public}"))
        .await;
    assert_eq!(ids(&v), vec![public.clone()]);
    // Paging past an invisible marker is refused.
    let (st, _) = c
        .get(&b, &format!("/image/v2/images?marker={private}"))
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    // Hidden images leave the default list.
    let (st, _) = patch(
        &c,
        &a,
        &private,
        json!([{"op": "replace", "path": "/os_hidden", "value": true}]),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let (_, v) = c.get(&a, "/image/v2/images").await;
    assert!(!ids(&v).contains(&private));
    let (_, v) = c.get(&a, "/image/v2/images?os_hidden=true").await;
    assert_eq!(ids(&v), vec![private.clone()]);
}

#[tokio::test]
async fn schemas_are_served() {
    let c = Cloud::start().await;
    let (st, v) = c.get(&c.admin, "/image/v2/schemas/image").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["name"], "image");
    assert_eq!(v["additionalProperties"]["type"], "string");
    assert_eq!(
        v["properties"]["visibility"]["enum"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
    let (st, v) = c.get(&c.admin, "/image/v2/schemas/images").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["properties"]["images"]["items"]["name"], "image");
    let (st, v) = c
        .call(
            &c.admin,
            Method::POST,
            "/image/v2/schemas/image",
            Some(json!({})),
        )
        .await;
    assert_eq!(st, StatusCode::METHOD_NOT_ALLOWED, "{v}");
    assert_eq!(v["code"], "405 Method Not Allowed");
}

#[tokio::test]
async fn snapshot_becomes_an_active_image() {
    let c = Cloud::start().await;
    let s = c.new_member("snapper").await;
    let base = c.image(&s, "base", b"base image bytes").await;
    let (st, _) = patch(
        &c,
        &s,
        &base,
        json!([{"op": "add", "path": "/os_distro", "value": "cirros"}]),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let server = c.server(&s, "vm", &base, json!({})).await;
    c.wait_status(&s, &server, "ACTIVE").await;
    let (st, body) = c
        .action(
            &s.mv("2.45"),
            &server,
            json!({"createImage": {"name": "snap", "metadata": {"purpose": "test"}}}),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{body}");
    let snap = body["image_id"].as_str().unwrap().to_owned();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let img = loop {
        let (st, img) = c.get(&s, &format!("/image/v2/images/{snap}")).await;
        assert_eq!(st, StatusCode::OK, "{img}");
        if img["status"] == "active" {
            break img;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "snapshot never active: {img}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    };
    assert_eq!(img["name"], "snap");
    assert_eq!(img["visibility"], "private");
    assert_eq!(img["owner"], s.project_id.as_str());
    assert_eq!(img["image_type"], "snapshot");
    assert_eq!(img["instance_uuid"], server.as_str());
    assert_eq!(img["base_image_ref"], base.as_str());
    assert_eq!(img["os_distro"], "cirros");
    assert_eq!(img["purpose"], "test");
    assert!(img["size"].as_u64().unwrap() > 0);
    // The bytes the driver wrote are downloadable and match the checksum.
    let resp = c
        .req(&s, Method::GET, &format!("/image/v2/images/{snap}/file"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let bytes = resp.bytes().await.unwrap();
    assert_eq!(img["checksum"], md5_hex(&bytes));
    // Nova's proxy shows the server it came from.
    let (st, v) = c.get(&s, &format!("/compute/v2.1/images/{snap}")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["image"]["server"]["id"], server.as_str());
    assert_eq!(v["image"]["metadata"]["image_type"], "snapshot");
    let (_, v) = c
        .get(&s, &format!("/compute/v2.1/images/detail?server={server}"))
        .await;
    assert_eq!(v["images"].as_array().unwrap().len(), 1, "{v}");
    let (_, v) = c.get(&s, "/compute/v2.1/images/detail?type=snapshot").await;
    assert_eq!(v["images"][0]["id"], snap.as_str());
}

#[tokio::test]
async fn compute_image_proxy() {
    let c = Cloud::start().await;
    let s = c.new_member("novaimg").await;
    let id = c.image(&s, "cirros", b"0123456789").await;
    let queued = create(
        &c,
        &s,
        json!({"name": "pending", "min_ram": 512, "min_disk": 2}),
    )
    .await;
    let queued = queued["id"].as_str().unwrap().to_owned();

    let (st, v) = c.get(&s, "/compute/v2.1/images").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let first = &v["images"][0];
    assert_eq!(v["images"].as_array().unwrap().len(), 2);
    assert_eq!(
        first.as_object().unwrap().len(),
        3,
        "id, name, links: {first}"
    );

    let (st, v) = c.get(&s, &format!("/compute/v2.1/images/{id}")).await;
    assert_eq!(st, StatusCode::OK);
    let img = &v["image"];
    assert_eq!(img["status"], "ACTIVE");
    assert_eq!(img["progress"], 100);
    assert_eq!(img["OS-EXT-IMG-SIZE:size"], 10);
    assert_eq!(img["minRam"], 0);
    assert_eq!(img["metadata"], json!({}));
    assert!(img["created"].as_str().unwrap().ends_with('Z'));
    let links = img["links"].as_array().unwrap();
    assert_eq!(
        links[0]["href"],
        format!("{}/compute/v2.1/images/{id}", c.url)
    );
    assert_eq!(links[1]["href"], format!("{}/compute/images/{id}", c.url));
    assert_eq!(links[2]["rel"], "alternate");
    assert_eq!(links[2]["type"], "application/vnd.openstack.image");
    assert!(img.get("server").is_none());

    let (_, v) = c.get(&s, &format!("/compute/v2.1/images/{queued}")).await;
    assert_eq!(v["image"]["status"], "SAVING");
    assert_eq!(v["image"]["progress"], 25);
    assert_eq!(v["image"]["OS-EXT-IMG-SIZE:size"], 0);

    let (_, v) = c.get(&s, "/compute/v2.1/images/detail?name=cirros").await;
    assert_eq!(v["images"].as_array().unwrap().len(), 1);
    let (_, v) = c.get(&s, "/compute/v2.1/images/detail?status=ACTIVE").await;
    assert_eq!(v["images"][0]["id"], id.as_str());
    let (_, v) = c.get(&s, "/compute/v2.1/images/detail?minRam=512").await;
    assert_eq!(v["images"][0]["id"], queued.as_str());
    let (_, v) = c.get(&s, "/compute/v2.1/images?limit=1").await;
    assert_eq!(v["images"].as_array().unwrap().len(), 1);
    let next = v["images_links"][0]["href"].as_str().unwrap();
    assert!(next.contains("marker="), "{next}");
    let next_path = next.strip_prefix(&c.url).unwrap();
    let (st, v2) = c.get(&s, next_path).await;
    assert_eq!(st, StatusCode::OK);
    assert_ne!(v2["images"][0]["id"], v["images"][0]["id"]);

    // Metadata (≤ 2.38).
    let md = format!("/compute/v2.1/images/{id}/metadata");
    let (st, v) = c
        .post(&s, &md, json!({"metadata": {"a": "1", "b": "2"}}))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["metadata"], json!({"a": "1", "b": "2"}));
    let (st, v) = c
        .put(&s, &format!("{md}/a"), json!({"meta": {"a": "9"}}))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["meta"], json!({"a": "9"}));
    let (_, v) = c.get(&s, &format!("{md}/a")).await;
    assert_eq!(v["meta"], json!({"a": "9"}));
    let (st, _) = c
        .put(&s, &format!("{md}/a"), json!({"meta": {"b": "9"}}))
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = c.post(&s, &md, json!({"metadata": {"bad/key": "1"}})).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, v) = c.put(&s, &md, json!({"metadata": {"only": "this"}})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (_, v) = c.get(&s, &format!("/image/v2/images/{id}")).await;
    assert_eq!(v["only"], "this");
    assert!(v.get("a").is_none());
    let (st, _) = c.delete(&s, &format!("{md}/only")).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, v) = c.delete(&s, &format!("{md}/only")).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");
    assert_eq!(v["itemNotFound"]["message"], "Invalid metadata key");
    let (st, _) = c.get(&s.mv("2.38"), &md).await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = c.get(&s.mv("2.39"), &md).await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // Gone from 2.36.
    for path in ["/compute/v2.1/images", "/compute/v2.1/images/detail"] {
        let (st, v) = c.get(&s.mv("2.36"), path).await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{path}: {v}");
    }
    let (st, _) = c.get(&s.mv("2.35"), "/compute/v2.1/images").await;
    assert_eq!(st, StatusCode::OK);

    // Another project's private image is not there; unknown ids neither.
    let other = c.new_member("other").await;
    let (st, v) = c.get(&other, &format!("/compute/v2.1/images/{id}")).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_eq!(v["itemNotFound"]["message"], "Image not found.");
    let (st, _) = c
        .delete(&other, &format!("/compute/v2.1/images/{id}"))
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = c.get(&s, "/compute/v2.1/images/not-an-id").await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    let (st, _) = c.delete(&s, &format!("/compute/v2.1/images/{id}")).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _) = c.get(&s, &format!("/image/v2/images/{id}")).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bad_input_is_never_a_server_error() {
    let c = Cloud::start().await;
    let s = &c.admin;
    let img = create(&c, s, json!({"name": "target"})).await;
    let id = img["id"].as_str().unwrap().to_owned();
    let raw = |method: Method, path: String, ct: &'static str, body: &'static str| {
        c.req(s, method, &path)
            .header("content-type", ct)
            .body(body)
    };
    let cases = vec![
        raw(
            Method::POST,
            "/image/v2/images".into(),
            "application/json",
            "{not json",
        ),
        raw(
            Method::POST,
            "/image/v2/images".into(),
            "application/json",
            "[]",
        ),
        raw(
            Method::POST,
            "/image/v2/images".into(),
            "application/json",
            "42",
        ),
        raw(
            Method::POST,
            "/image/v2/images".into(),
            "application/json",
            "",
        ),
        raw(
            Method::POST,
            "/image/v2/images".into(),
            "application/json",
            r#"{"name": 1}"#,
        ),
        raw(
            Method::POST,
            "/image/v2/images".into(),
            "application/json",
            r#"{"id": "x"}"#,
        ),
        raw(
            Method::POST,
            "/image/v2/images".into(),
            "application/json",
            r#"{"disk_format": "floppy"}"#,
        ),
        raw(
            Method::POST,
            "/image/v2/images".into(),
            "application/json",
            r#"{"status": "active"}"#,
        ),
        raw(
            Method::POST,
            "/image/v2/images".into(),
            "application/json",
            r#"{"size": 5}"#,
        ),
        raw(
            Method::POST,
            "/image/v2/images".into(),
            "application/json",
            r#"{"self": "x"}"#,
        ),
        raw(
            Method::POST,
            "/image/v2/images".into(),
            "application/json",
            r#"{"tags": [1]}"#,
        ),
        raw(
            Method::POST,
            "/image/v2/images".into(),
            "application/json",
            r#"{"custom": {"a": 1}}"#,
        ),
        raw(
            Method::POST,
            "/image/v2/images".into(),
            "application/json",
            r#"{"min_disk": 1.5}"#,
        ),
        raw(Method::PATCH, format!("/image/v2/images/{id}"), PATCH, "{"),
        raw(
            Method::PATCH,
            format!("/image/v2/images/{id}"),
            PATCH,
            "[1, 2]",
        ),
        raw(
            Method::PATCH,
            format!("/image/v2/images/{id}"),
            PATCH,
            r#"[{"op": "add", "path": 7, "value": 1}]"#,
        ),
        raw(Method::PATCH, "/image/v2/images/nope".into(), PATCH, "[]"),
        raw(
            Method::PUT,
            format!("/image/v2/images/{id}/tags/{}", "x".repeat(300)),
            "text/plain",
            "",
        ),
        raw(
            Method::DELETE,
            "/image/v2/images/nope/tags/x".into(),
            "text/plain",
            "",
        ),
        raw(
            Method::GET,
            "/image/v2/images?created_at=lt:soon".into(),
            "text/plain",
            "",
        ),
        raw(
            Method::GET,
            "/image/v2/images?id=in:%22open".into(),
            "text/plain",
            "",
        ),
        raw(
            Method::GET,
            "/image/v2/images/nope/file".into(),
            "text/plain",
            "",
        ),
        raw(
            Method::PUT,
            "/image/v2/images".into(),
            "application/json",
            "{}",
        ),
        raw(
            Method::GET,
            "/image/v2/nothing/here".into(),
            "text/plain",
            "",
        ),
        raw(
            Method::GET,
            "/compute/v2.1/images?minRam=lots".into(),
            "text/plain",
            "",
        ),
        raw(
            Method::GET,
            "/compute/v2.1/images?limit=-1".into(),
            "text/plain",
            "",
        ),
        raw(
            Method::GET,
            "/compute/v2.1/images?marker=nope".into(),
            "text/plain",
            "",
        ),
        raw(
            Method::POST,
            format!("/compute/v2.1/images/{id}/metadata"),
            "application/json",
            r#"{"metadata": {"k": 1}}"#,
        ),
        raw(
            Method::PUT,
            format!("/compute/v2.1/images/{id}/metadata/k"),
            "application/json",
            r#"{"meta": {"k": "v", "j": "w"}}"#,
        ),
    ];
    for req in cases {
        let built = req.build().unwrap();
        let what = format!("{} {}", built.method(), built.url().path());
        let resp = c.http.execute(built).await.unwrap();
        let st = resp.status();
        let body = resp.text().await.unwrap_or_default();
        assert!(st.is_client_error(), "{what}: {st} {body}");
    }
    // Range on data that is not there yet, and a bad range on data that is.
    let active = c.image(s, "ranged", b"0123456789").await;
    let resp = c
        .req(s, Method::GET, &format!("/image/v2/images/{active}/file"))
        .header("range", "bytes=50-60")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::RANGE_NOT_SATISFIABLE);
}
