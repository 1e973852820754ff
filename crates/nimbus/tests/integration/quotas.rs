//! OpenStack compute: `/limits`, `/os-quota-sets` and `/os-quota-class-sets` — the keys
//! each microversion shows, usage counts, updates and enforcement.

use crate::common::*;
use reqwest::StatusCode;
use serde_json::json;

const LIMITS_21: &[&str] = &[
    "maxServerMeta",
    "maxImageMeta",
    "maxPersonality",
    "maxPersonalitySize",
    "maxSecurityGroups",
    "maxSecurityGroupRules",
    "maxServerGroups",
    "maxServerGroupMembers",
    "maxTotalCores",
    "maxTotalFloatingIps",
    "maxTotalInstances",
    "maxTotalKeypairs",
    "maxTotalRAMSize",
    "totalCoresUsed",
    "totalFloatingIpsUsed",
    "totalInstancesUsed",
    "totalRAMUsed",
    "totalSecurityGroupsUsed",
    "totalServerGroupsUsed",
];

fn without(list: &[&str], drop: &[&str]) -> Vec<String> {
    let kept: Vec<&str> = list.iter().copied().filter(|k| !drop.contains(k)).collect();
    sorted(&kept)
}

#[tokio::test]
async fn limits_keys_per_microversion_and_usage() {
    let c = Cloud::start().await;
    let a = &c.admin;
    let (st, body) = c.get(a, "/compute/v2.1/limits").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(body["limits"]["rate"], json!([]));
    let abs = &body["limits"]["absolute"];
    assert_eq!(keys(abs), sorted(LIMITS_21));
    assert_eq!(abs["maxTotalInstances"], 10);
    assert_eq!(abs["maxTotalCores"], 20);
    assert_eq!(abs["maxTotalRAMSize"], 51200);
    assert_eq!(abs["maxTotalFloatingIps"], -1);
    assert_eq!(abs["totalInstancesUsed"], 0);

    let net = [
        "maxSecurityGroups",
        "maxSecurityGroupRules",
        "maxTotalFloatingIps",
        "totalFloatingIpsUsed",
        "totalSecurityGroupsUsed",
    ];
    let (_, body) = c.get(&a.mv("2.36"), "/compute/v2.1/limits").await;
    assert_eq!(keys(&body["limits"]["absolute"]), without(LIMITS_21, &net));
    let (_, body) = c.get(&a.mv("2.38"), "/compute/v2.1/limits").await;
    assert!(body["limits"]["absolute"].get("maxImageMeta").is_some());
    let mut drop39 = net.to_vec();
    drop39.push("maxImageMeta");
    let (_, body) = c.get(&a.mv("2.39"), "/compute/v2.1/limits").await;
    assert_eq!(
        keys(&body["limits"]["absolute"]),
        without(LIMITS_21, &drop39)
    );
    let mut drop57 = drop39.clone();
    drop57.extend(["maxPersonality", "maxPersonalitySize"]);
    let (_, body) = c.get(&a.mv("2.57"), "/compute/v2.1/limits").await;
    assert_eq!(
        keys(&body["limits"]["absolute"]),
        without(LIMITS_21, &drop57)
    );
    let (_, body) = c.get(&a.mv("2.96"), "/compute/v2.1/limits").await;
    assert_eq!(
        keys(&body["limits"]["absolute"]),
        without(LIMITS_21, &drop57)
    );

    // Usage follows servers and groups.
    let img = c.image(a, "cirros", b"bytes").await;
    let s1 = c.server(a, "u1", &img, json!({})).await;
    let s2 = c.server(a, "u2", &img, json!({})).await;
    c.wait_status(a, &s1, "ACTIVE").await;
    c.wait_status(a, &s2, "ACTIVE").await;
    let (st, _) = c
        .post(
            a,
            "/compute/v2.1/os-server-groups",
            json!({"server_group": {"name": "g", "policies": ["affinity"]}}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (_, body) = c.get(a, "/compute/v2.1/limits").await;
    let abs = &body["limits"]["absolute"];
    assert_eq!(abs["totalInstancesUsed"], 2);
    assert_eq!(abs["totalCoresUsed"], 2);
    assert_eq!(abs["totalRAMUsed"], 1024);
    assert_eq!(abs["totalServerGroupsUsed"], 1);

    // tenant_id: admins only (even naming one's own project), and counts that project.
    let bob = c.new_member("bob").await;
    let (st, body) = c
        .get(
            a,
            &format!("/compute/v2.1/limits?tenant_id={}", bob.project_id),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(body["limits"]["absolute"]["totalInstancesUsed"], 0);
    let (st, _) = c
        .get(
            &bob,
            &format!("/compute/v2.1/limits?tenant_id={}", a.project_id),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, body) = c.get(&bob, "/compute/v2.1/limits").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(body["limits"]["absolute"]["totalInstancesUsed"], 0);
    let (st, _) = c.get(&bob.mv("2.75"), "/compute/v2.1/limits?x=1").await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
}

const QUOTAS_21: &[&str] = &[
    "cores",
    "fixed_ips",
    "floating_ips",
    "injected_file_content_bytes",
    "injected_file_path_bytes",
    "injected_files",
    "instances",
    "key_pairs",
    "metadata_items",
    "ram",
    "security_groups",
    "security_group_rules",
    "server_groups",
    "server_group_members",
];
const NET: &[&str] = &[
    "fixed_ips",
    "floating_ips",
    "security_groups",
    "security_group_rules",
];
const INJ: &[&str] = &[
    "injected_files",
    "injected_file_content_bytes",
    "injected_file_path_bytes",
];

#[tokio::test]
async fn quota_set_shapes_per_microversion() {
    let c = Cloud::start().await;
    let a = &c.admin;
    let p = format!("/compute/v2.1/os-quota-sets/{}", a.project_id);
    let mut with_id = QUOTAS_21.to_vec();
    with_id.push("id");
    for (v, drop) in [
        ("2.1", vec![]),
        ("2.35", vec![]),
        ("2.36", NET.to_vec()),
        ("2.56", NET.to_vec()),
        ("2.57", [NET, INJ].concat()),
    ] {
        let s = a.mv(v);
        let (st, body) = c.get(&s, &p).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        assert_eq!(keys(&body["quota_set"]), without(&with_id, &drop), "{v}");
        assert_eq!(body["quota_set"]["id"], a.project_id);
        let (_, body) = c.get(&s, &format!("{p}/defaults")).await;
        assert_eq!(keys(&body["quota_set"]), without(&with_id, &drop), "{v}");
        let (_, body) = c.get(&s, &format!("{p}/detail")).await;
        assert_eq!(keys(&body["quota_set"]), without(&with_id, &drop), "{v}");
        assert_eq!(
            body["quota_set"]["cores"],
            json!({"in_use": 0, "limit": 20, "reserved": 0})
        );
    }
    let (_, body) = c.get(a, &p).await;
    assert_eq!(body["quota_set"]["instances"], 10);
    assert_eq!(body["quota_set"]["floating_ips"], -1);
    assert_eq!(body["quota_set"]["injected_file_path_bytes"], 255);
    // user_id is accepted on reads.
    let (st, _) = c.get(a, &format!("{p}?user_id={}", a.user_id)).await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = c.get(&a.mv("2.75"), &format!("{p}?bogus=1")).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    // A project the identity service does not know.
    let (st, body) = c.get(a, "/compute/v2.1/os-quota-sets/nope").await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(
        fault_message(&body),
        "Project ID nope is not a valid project."
    );
}

#[tokio::test]
async fn quota_update_enforce_and_reset() {
    let c = Cloud::start().await;
    let a = &c.admin;
    let bob = c.new_member("bob").await;
    let p = format!("/compute/v2.1/os-quota-sets/{}", bob.project_id);
    // Members may read their own, not others', and may not write.
    let (st, _) = c.get(&bob, &p).await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = c
        .get(
            &bob,
            &format!("/compute/v2.1/os-quota-sets/{}", a.project_id),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = c
        .put(&bob, &p, json!({"quota_set": {"instances": 50}}))
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = c.delete(&bob, &p).await;
    assert_eq!(st, StatusCode::FORBIDDEN);

    // Update (string values allowed); the response has no id.
    let (st, body) = c
        .put(a, &p, json!({"quota_set": {"instances": "1", "cores": 4}}))
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert!(body["quota_set"].get("id").is_none());
    assert_eq!(body["quota_set"]["instances"], 1);
    assert_eq!(keys(&body["quota_set"]), sorted(QUOTAS_21));

    // Bad input: unknown key, below -1, non-numeric, keys removed by the microversion.
    for (v, bad) in [
        ("2.1", json!({"quota_set": {"networks": 1}})),
        ("2.1", json!({"quota_set": {"instances": -2}})),
        ("2.1", json!({"quota_set": {"instances": "ten"}})),
        ("2.1", json!({"quota_set": {"instances": true}})),
        ("2.36", json!({"quota_set": {"floating_ips": 1}})),
        ("2.57", json!({"quota_set": {"injected_files": 1}})),
        ("2.1", json!({"quota_set": {"force": "maybe"}})),
        ("2.1", json!({"quotas": {}})),
    ] {
        let (st, body) = c.put(&a.mv(v), &p, bad.clone()).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{v} {bad}: {body}");
    }
    let (st, body) = c
        .put(a, &p, json!({"quota_set": {"floating_ips": 7}}))
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body["quota_set"]["floating_ips"], 7);

    // Over quota: bob's second server is refused with Nova's message.
    let img = c.image(&bob, "cirros", b"bytes").await;
    let first = c.server(&bob, "one", &img, json!({})).await;
    c.wait_status(&bob, &first, "ACTIVE").await;
    let (st, body) = c
        .post(
            &bob,
            "/compute/v2.1/servers",
            json!({"server": {"name": "two", "imageRef": img, "flavorRef": "1"}}),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(
        body["forbidden"]["message"],
        "Quota exceeded for instances: Requested 1, but already used 1 of 1 instances"
    );
    let (_, body) = c.get(a, &format!("{p}/detail")).await;
    assert_eq!(
        body["quota_set"]["instances"],
        json!({"in_use": 1, "limit": 1, "reserved": 0})
    );
    assert_eq!(body["quota_set"]["ram"]["in_use"], 512);

    // Below usage needs `force`.
    let (st, body) = c.put(a, &p, json!({"quota_set": {"instances": 0}})).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(
        fault_message(&body),
        "Quota limit 0 for instances must be greater than or equal to already used and reserved 1."
    );
    let (st, body) = c
        .put(
            a,
            &p,
            json!({"quota_set": {"instances": 0, "force": "True"}}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body["quota_set"]["instances"], 0);

    // Delete: 202, back to defaults.
    let (st, body) = c.delete(a, &p).await;
    assert_eq!(st, StatusCode::ACCEPTED);
    assert!(body.is_null());
    let (_, body) = c.get(a, &p).await;
    assert_eq!(body["quota_set"]["instances"], 10);
    assert_eq!(body["quota_set"]["floating_ips"], -1);
}

#[tokio::test]
async fn quota_classes() {
    let c = Cloud::start().await;
    let a = &c.admin;
    let bob = c.new_member("bob").await;
    let path = "/compute/v2.1/os-quota-class-sets/default";
    let (st, body) = c.get(a, path).await;
    assert_eq!(st, StatusCode::OK);
    let qc = &body["quota_class_set"];
    assert_eq!(qc["id"], "default");
    // Before 2.50: network keys, no server-group keys.
    let mut v21 = without(QUOTAS_21, &["server_groups", "server_group_members"]);
    v21.push("id".into());
    v21.sort();
    assert_eq!(keys(qc), v21);
    let (_, body) = c.get(&a.mv("2.50"), path).await;
    let mut with_id = QUOTAS_21.to_vec();
    with_id.push("id");
    assert_eq!(keys(&body["quota_class_set"]), without(&with_id, NET));
    let (_, body) = c.get(&a.mv("2.57"), path).await;
    assert_eq!(
        keys(&body["quota_class_set"]),
        without(&with_id, &[NET, INJ].concat())
    );
    let (st, _) = c.get(&bob, path).await;
    assert_eq!(st, StatusCode::FORBIDDEN);

    // Updating the default class changes every project's defaults.
    let (st, body) = c
        .put(a, path, json!({"quota_class_set": {"instances": 3}}))
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert!(body["quota_class_set"].get("id").is_none());
    assert_eq!(body["quota_class_set"]["instances"], 3);
    let (_, body) = c
        .get(
            &bob,
            &format!("/compute/v2.1/os-quota-sets/{}", bob.project_id),
        )
        .await;
    assert_eq!(body["quota_set"]["instances"], 3);
    let (_, body) = c
        .get(
            &bob,
            &format!("/compute/v2.1/os-quota-sets/{}/defaults", bob.project_id),
        )
        .await;
    assert_eq!(body["quota_set"]["instances"], 3);
    let (st, _) = c
        .put(
            &a.mv("2.50"),
            path,
            json!({"quota_class_set": {"floating_ips": 3}}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = c
        .put(&bob, path, json!({"quota_class_set": {"instances": 30}}))
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
}
