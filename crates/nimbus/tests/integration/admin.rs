//! OpenStack compute admin APIs: availability zones, hypervisors, services (and their
//! effect on scheduling), extensions, migrations and simple tenant usage.

use crate::common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test]
async fn availability_zones() {
    let c = Cloud::start().await;
    let a = &c.admin;
    let bob = c.new_member("bob").await;
    let (st, body) = c.get(&bob, "/compute/v2.1/os-availability-zone").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        body,
        json!({"availabilityZoneInfo": [{"zoneName": "nova", "zoneState": {"available": true}, "hosts": null}]})
    );
    let (st, _) = c
        .get(&bob, "/compute/v2.1/os-availability-zone/detail")
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);

    let (st, body) = c.get(a, "/compute/v2.1/os-availability-zone/detail").await;
    assert_eq!(st, StatusCode::OK);
    let zones = body["availabilityZoneInfo"].as_array().unwrap();
    let names: Vec<&str> = zones
        .iter()
        .map(|z| z["zoneName"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["internal", "nova"]);
    let nova = &zones[1];
    let hosts = nova["hosts"].as_object().unwrap();
    assert_eq!(hosts.len(), 1);
    let compute = &hosts["nimbus-fake"]["nova-compute"];
    assert_eq!(
        keys(compute),
        sorted(&["active", "available", "updated_at"])
    );
    assert_eq!(compute["available"], true);
    assert_eq!(compute["active"], true);
    let internal = zones[0]["hosts"].as_object().unwrap();
    let services = internal.values().next().unwrap().as_object().unwrap();
    assert!(services.contains_key("nova-scheduler") && services.contains_key("nova-conductor"));

    // Disabling the only compute service makes its zone unavailable.
    let sid = compute_service_id(&c).await;
    let (st, _) = c
        .put(
            &a.mv("2.53"),
            &format!("/compute/v2.1/os-services/{sid}"),
            json!({"status": "disabled"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (_, body) = c.get(&bob, "/compute/v2.1/os-availability-zone").await;
    assert_eq!(
        body["availabilityZoneInfo"],
        json!([{"zoneName": "nova", "zoneState": {"available": false}, "hosts": null}])
    );
}

/// The UUID of the fake host's nova-compute service (2.53).
async fn compute_service_id(c: &Cloud) -> String {
    let (st, body) = c
        .get(
            &c.admin.mv("2.53"),
            "/compute/v2.1/os-services?binary=nova-compute",
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    body["services"][0]["id"].as_str().unwrap().to_owned()
}

const HYP_DETAIL_21: &[&str] = &[
    "cpu_info",
    "current_workload",
    "disk_available_least",
    "free_disk_gb",
    "free_ram_mb",
    "host_ip",
    "hypervisor_hostname",
    "hypervisor_type",
    "hypervisor_version",
    "id",
    "local_gb",
    "local_gb_used",
    "memory_mb",
    "memory_mb_used",
    "running_vms",
    "service",
    "state",
    "status",
    "vcpus",
    "vcpus_used",
];

#[tokio::test]
async fn hypervisors_shapes_and_usage() {
    let c = Cloud::start().await;
    let a = &c.admin;
    let bob = c.new_member("bob").await;
    for path in [
        "/compute/v2.1/os-hypervisors",
        "/compute/v2.1/os-hypervisors/detail",
        "/compute/v2.1/os-hypervisors/statistics",
        "/compute/v2.1/os-hypervisors/1",
    ] {
        let (st, body) = c.get(&bob, path).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{path}: {body}");
    }
    // 2.1: integer ids, cpu_info a string.
    let (st, body) = c.get(a, "/compute/v2.1/os-hypervisors").await;
    assert_eq!(st, StatusCode::OK);
    let h = &body["hypervisors"][0];
    assert_eq!(
        keys(h),
        sorted(&["id", "hypervisor_hostname", "state", "status"])
    );
    assert!(h["id"].is_i64());
    assert_eq!(h["hypervisor_hostname"], "nimbus-fake");
    assert_eq!(
        (h["state"].as_str(), h["status"].as_str()),
        (Some("up"), Some("enabled"))
    );
    let id = h["id"].as_i64().unwrap();

    let img = c.image(a, "cirros", b"bytes").await;
    let s1 = c.server(a, "h1", &img, json!({})).await;
    c.wait_status(a, &s1, "ACTIVE").await;

    let (_, body) = c.get(a, "/compute/v2.1/os-hypervisors/detail").await;
    let d = &body["hypervisors"][0];
    assert_eq!(keys(d), sorted(HYP_DETAIL_21));
    assert!(d["cpu_info"].is_string());
    assert_eq!(d["vcpus_used"], 1);
    assert_eq!(d["memory_mb_used"], 512);
    assert_eq!(d["local_gb_used"], 1);
    assert_eq!(d["running_vms"], 1);
    assert_eq!(d["vcpus"], 64);
    assert_eq!(d["free_ram_mb"], d["memory_mb"].as_i64().unwrap() - 512);
    assert_eq!(
        keys(&d["service"]),
        sorted(&["id", "host", "disabled_reason"])
    );
    assert!(d["service"]["id"].is_i64());
    assert_eq!(d["service"]["host"], "nimbus-fake");
    let (st, body) = c
        .get(a, &format!("/compute/v2.1/os-hypervisors/{id}"))
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(keys(&body["hypervisor"]), sorted(HYP_DETAIL_21));
    // 2.28: cpu_info an object.
    let (_, body) = c
        .get(&a.mv("2.28"), &format!("/compute/v2.1/os-hypervisors/{id}"))
        .await;
    assert!(body["hypervisor"]["cpu_info"].is_object());

    // Statistics and uptime up to 2.87.
    let (st, body) = c.get(a, "/compute/v2.1/os-hypervisors/statistics").await;
    assert_eq!(st, StatusCode::OK);
    let stats = &body["hypervisor_statistics"];
    assert_eq!(stats["count"], 1);
    assert_eq!(stats["vcpus_used"], 1);
    assert_eq!(stats["running_vms"], 1);
    assert_eq!(keys(stats).len(), 12);
    let (st, body) = c
        .get(a, &format!("/compute/v2.1/os-hypervisors/{id}/uptime"))
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        keys(&body["hypervisor"]),
        sorted(&["id", "hypervisor_hostname", "state", "status", "uptime"])
    );

    // Pattern routes up to 2.52.
    let (st, body) = c.get(a, "/compute/v2.1/os-hypervisors/fake/search").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(body["hypervisors"].as_array().unwrap().len(), 1);
    assert!(body["hypervisors"][0].get("servers").is_none());
    let (_, body) = c.get(a, "/compute/v2.1/os-hypervisors/fake/servers").await;
    assert_eq!(
        body["hypervisors"][0]["servers"],
        json!([{"name": "h1", "uuid": s1}])
    );
    let (st, body) = c
        .get(a, "/compute/v2.1/os-hypervisors/nomatch/search")
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_eq!(
        fault_message(&body),
        "No hypervisor matching 'nomatch' could be found."
    );
    let (st, _) = c
        .get(&a.mv("2.53"), "/compute/v2.1/os-hypervisors/fake/search")
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // 2.53: UUID ids, query parameters replace the pattern routes.
    let v = a.mv("2.53");
    let (_, body) = c.get(&v, "/compute/v2.1/os-hypervisors/detail").await;
    let d = &body["hypervisors"][0];
    let uuid = d["id"].as_str().unwrap().to_owned();
    assert_eq!(uuid.len(), 36);
    assert!(d["service"]["id"].is_string());
    assert_ne!(d["service"]["id"], d["id"]);
    let (_, body) = c
        .get(
            &v,
            "/compute/v2.1/os-hypervisors?hypervisor_hostname_pattern=fake&with_servers=true",
        )
        .await;
    assert_eq!(body["hypervisors"][0]["servers"][0]["uuid"], s1);
    let (st, _) = c
        .get(
            &v,
            "/compute/v2.1/os-hypervisors?hypervisor_hostname_pattern=fake&limit=1",
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = c
        .get(&v, "/compute/v2.1/os-hypervisors?with_servers=perhaps")
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = c.get(&v, "/compute/v2.1/os-hypervisors?bogus=1").await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, body) = c
        .get(
            &v,
            &format!("/compute/v2.1/os-hypervisors/{uuid}?with_servers=1"),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(body["hypervisor"]["servers"][0]["name"], "h1");
    let (st, body) = c
        .get(&v, &format!("/compute/v2.1/os-hypervisors/{id}"))
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(fault_message(&body), format!("Invalid uuid {id}"));
    let (st, _) = c.get(a, "/compute/v2.1/os-hypervisors/abc").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = c.get(a, "/compute/v2.1/os-hypervisors/9999").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let other = "00000000-0000-0000-0000-000000000000";
    let (st, body) = c
        .get(&v, &format!("/compute/v2.1/os-hypervisors/{other}"))
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_eq!(
        fault_message(&body),
        format!("Hypervisor with ID '{other}' could not be found.")
    );

    // Paging (2.33): a full page links to the next one.
    let (_, body) = c
        .get(&a.mv("2.33"), "/compute/v2.1/os-hypervisors?limit=1")
        .await;
    let next = body["hypervisors_links"][0]["href"].as_str().unwrap();
    assert!(next.contains(&format!("marker={id}")), "{next}");
    let (_, body) = c
        .get(
            &a.mv("2.33"),
            &format!("/compute/v2.1/os-hypervisors?marker={id}"),
        )
        .await;
    assert_eq!(body["hypervisors"], json!([]));
    let (st, _) = c
        .get(&a.mv("2.33"), "/compute/v2.1/os-hypervisors?marker=77")
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    // Servers list only when non-empty before 2.75, always (maybe empty) from 2.75.
    let (_, body) = c
        .get(
            &a.mv("2.75"),
            "/compute/v2.1/os-hypervisors?with_servers=false",
        )
        .await;
    assert!(body["hypervisors"][0].get("servers").is_none());

    // 2.88: usage fields gone, uptime in the detail view, statistics and uptime routes gone.
    let v88 = a.mv("2.88");
    let (_, body) = c
        .get(&v88, &format!("/compute/v2.1/os-hypervisors/{uuid}"))
        .await;
    let h = &body["hypervisor"];
    assert_eq!(
        keys(h),
        sorted(&[
            "host_ip",
            "hypervisor_hostname",
            "hypervisor_type",
            "hypervisor_version",
            "id",
            "service",
            "state",
            "status",
            "uptime"
        ])
    );
    let (st, _) = c.get(&v88, "/compute/v2.1/os-hypervisors/statistics").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = c
        .get(&v88, &format!("/compute/v2.1/os-hypervisors/{uuid}/uptime"))
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}

const SERVICE_KEYS: &[&str] = &[
    "binary",
    "disabled_reason",
    "host",
    "id",
    "state",
    "status",
    "updated_at",
    "zone",
];

#[tokio::test]
async fn services_list_filters_and_shapes() {
    let c = Cloud::start().await;
    let a = &c.admin;
    let bob = c.new_member("bob").await;
    let (st, _) = c.get(&bob, "/compute/v2.1/os-services").await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, body) = c.get(a, "/compute/v2.1/os-services").await;
    assert_eq!(st, StatusCode::OK);
    let list = body["services"].as_array().unwrap();
    let binaries: Vec<&str> = list.iter().map(|s| s["binary"].as_str().unwrap()).collect();
    assert_eq!(
        binaries,
        ["nova-scheduler", "nova-conductor", "nova-compute"]
    );
    for s in list {
        assert_eq!(keys(s), sorted(SERVICE_KEYS));
        assert!(s["id"].is_i64());
        assert_eq!(s["state"], "up");
        assert_eq!(s["status"], "enabled");
    }
    assert_eq!(list[0]["zone"], "internal");
    assert_eq!(list[2]["zone"], "nova");
    assert_eq!(list[2]["host"], "nimbus-fake");
    let (_, body) = c.get(&a.mv("2.11"), "/compute/v2.1/os-services").await;
    let mut k211 = SERVICE_KEYS.to_vec();
    k211.push("forced_down");
    assert_eq!(keys(&body["services"][0]), sorted(&k211));
    let (_, body) = c.get(&a.mv("2.53"), "/compute/v2.1/os-services").await;
    assert!(body["services"][0]["id"].is_string());
    let (_, body) = c
        .get(
            a,
            "/compute/v2.1/os-services?host=nimbus-fake&binary=nova-compute",
        )
        .await;
    assert_eq!(body["services"].as_array().unwrap().len(), 1);
    let (_, body) = c.get(a, "/compute/v2.1/os-services?binary=nova-api").await;
    assert_eq!(body["services"], json!([]));
    let (st, _) = c
        .get(&a.mv("2.75"), "/compute/v2.1/os-services?zone=x")
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
}

/// Create a server and wait until it settles (ACTIVE or ERROR).
async fn settle(c: &Cloud, s: &Session, name: &str, img: &str, extra: Value) -> Value {
    let id = c.server(s, name, img, extra).await;
    c.wait_for(s, &id, "ACTIVE or ERROR", |v| {
        (v["status"] == "ACTIVE" || v["status"] == "ERROR") && v["OS-EXT-STS:task_state"].is_null()
    })
    .await
}

fn assert_no_valid_host(server: &Value) {
    assert_eq!(server["status"], "ERROR", "{server}");
    let msg = server["fault"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("No valid host was found"), "{server}");
}

#[tokio::test]
async fn disabling_the_only_host_stops_scheduling() {
    let c = Cloud::start().await;
    let a = &c.admin;
    let img = c.image(a, "cirros", b"bytes").await;
    let sid = compute_service_id(&c).await;
    let v = a.mv("2.53");
    let path = format!("/compute/v2.1/os-services/{sid}");
    let (st, body) = c
        .put(
            &v,
            &path,
            json!({"status": "disabled", "disabled_reason": "maintenance"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let svc = &body["service"];
    let mut k = SERVICE_KEYS.to_vec();
    k.push("forced_down");
    assert_eq!(keys(svc), sorted(&k));
    assert_eq!(svc["status"], "disabled");
    assert_eq!(svc["disabled_reason"], "maintenance");
    assert_eq!(svc["id"], sid);
    let s = settle(&c, a, "nope", &img, json!({})).await;
    assert_no_valid_host(&s);
    // The hypervisor view shows it too.
    let (_, body) = c.get(&v, "/compute/v2.1/os-hypervisors/detail").await;
    assert_eq!(body["hypervisors"][0]["status"], "disabled");
    assert_eq!(
        body["hypervisors"][0]["service"]["disabled_reason"],
        "maintenance"
    );

    // Enable again: servers land.
    let (st, body) = c.put(&v, &path, json!({"status": "enabled"})).await;
    assert_eq!(st, StatusCode::OK);
    assert!(body["service"]["disabled_reason"].is_null());
    let s = settle(&c, a, "yes", &img, json!({})).await;
    assert_eq!(s["status"], "ACTIVE");

    // Forced down: state down, and no scheduling either.
    let (st, body) = c.put(&v, &path, json!({"forced_down": true})).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(body["service"]["forced_down"], true);
    assert_eq!(body["service"]["state"], "down");
    let s = settle(&c, a, "down", &img, json!({})).await;
    assert_no_valid_host(&s);
    let (_, body) = c.get(&v, "/compute/v2.1/os-hypervisors").await;
    assert_eq!(body["hypervisors"][0]["state"], "down");
    let (st, body) = c.put(&v, &path, json!({"forced_down": "false"})).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(body["service"]["state"], "up");

    // Bad updates.
    for bad in [
        json!({}),
        json!({"status": "enabled", "disabled_reason": "why"}),
        json!({"status": "sleeping"}),
        json!({"forced_down": "perhaps"}),
        json!({"host": "x"}),
        json!({"disabled_reason": ""}),
    ] {
        let (st, body) = c.put(&v, &path, bad.clone()).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
    let (st, _) = c
        .put(
            &v,
            "/compute/v2.1/os-services/not-a-uuid",
            json!({"status": "enabled"}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let missing = "00000000-0000-0000-0000-000000000000";
    let (st, body) = c
        .put(
            &v,
            &format!("/compute/v2.1/os-services/{missing}"),
            json!({"status": "enabled"}),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_eq!(
        fault_message(&body),
        format!("Service {missing} could not be found.")
    );
    // Only compute services can be updated.
    let (_, body) = c
        .get(&v, "/compute/v2.1/os-services?binary=nova-scheduler")
        .await;
    let sched = body["services"][0]["id"].as_str().unwrap().to_owned();
    let (st, body) = c
        .put(
            &v,
            &format!("/compute/v2.1/os-services/{sched}"),
            json!({"status": "disabled"}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(
        fault_message(&body),
        "Updating a nova-scheduler service is not supported. Only nova-compute services can be updated."
    );
    let bob = c.new_member("bob").await;
    let (st, _) = c
        .put(&bob.mv("2.53"), &path, json!({"status": "disabled"}))
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn legacy_service_actions() {
    let c = Cloud::start().await;
    let a = &c.admin;
    let img = c.image(a, "cirros", b"bytes").await;
    let target = json!({"host": "nimbus-fake", "binary": "nova-compute"});
    let (st, body) = c
        .put(a, "/compute/v2.1/os-services/disable", target.clone())
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({"service": {"host": "nimbus-fake", "binary": "nova-compute", "status": "disabled"}})
    );
    let s = settle(&c, a, "nope", &img, json!({})).await;
    assert_no_valid_host(&s);
    let (st, body) = c
        .put(
            a,
            "/compute/v2.1/os-services/disable-log-reason",
            json!({"host": "nimbus-fake", "binary": "nova-compute", "disabled_reason": "disk"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(body["service"]["disabled_reason"], "disk");
    let (st, body) = c
        .put(
            a,
            "/compute/v2.1/os-services/disable-log-reason",
            target.clone(),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(fault_message(&body), "Missing disabled reason field");
    let (st, body) = c
        .put(a, "/compute/v2.1/os-services/enable", target.clone())
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(body["service"]["status"], "enabled");
    let (_, body) = c
        .get(a, "/compute/v2.1/os-services?binary=nova-compute")
        .await;
    assert!(body["services"][0]["disabled_reason"].is_null());

    // force-down from 2.11.
    let (st, _) = c
        .put(
            a,
            "/compute/v2.1/os-services/force-down",
            json!({"host": "nimbus-fake", "binary": "nova-compute", "forced_down": true}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, body) = c
        .put(
            &a.mv("2.11"),
            "/compute/v2.1/os-services/force-down",
            json!({"host": "nimbus-fake", "binary": "nova-compute", "forced_down": true}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({"service": {"host": "nimbus-fake", "binary": "nova-compute", "forced_down": true}})
    );
    let (_, body) = c
        .get(
            &a.mv("2.11"),
            "/compute/v2.1/os-services?binary=nova-compute",
        )
        .await;
    assert_eq!(body["services"][0]["state"], "down");
    assert_eq!(body["services"][0]["forced_down"], true);
    let (st, _) = c
        .put(
            &a.mv("2.11"),
            "/compute/v2.1/os-services/force-down",
            json!({"host": "nimbus-fake", "binary": "nova-compute", "forced_down": false}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);

    // Errors: unknown action, unknown host, non-compute binary, the 2.53 form before 2.53.
    let (st, body) = c
        .put(a, "/compute/v2.1/os-services/reboot", target.clone())
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_eq!(fault_message(&body), "Unknown action");
    let (st, body) = c
        .put(
            a,
            "/compute/v2.1/os-services/disable",
            json!({"host": "elsewhere", "binary": "nova-compute"}),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_eq!(
        fault_message(&body),
        "Could not find binary nova-compute on host elsewhere."
    );
    let (st, _) = c
        .put(
            a,
            "/compute/v2.1/os-services/disable",
            json!({"host": "nimbus-fake", "binary": "nova-scheduler"}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = c
        .put(
            a,
            "/compute/v2.1/os-services/disable",
            json!({"host": "nimbus-fake"}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = c
        .put(
            a,
            "/compute/v2.1/os-services/enable",
            json!({"status": "enabled"}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn deleting_a_busy_compute_service_is_refused() {
    let c = Cloud::start().await;
    let a = &c.admin;
    let img = c.image(a, "cirros", b"bytes").await;
    let id = c.server(a, "busy", &img, json!({})).await;
    c.wait_status(a, &id, "ACTIVE").await;
    let (_, body) = c
        .get(a, "/compute/v2.1/os-services?binary=nova-compute")
        .await;
    let int_id = body["services"][0]["id"].as_i64().unwrap();
    let (st, body) = c
        .delete(a, &format!("/compute/v2.1/os-services/{int_id}"))
        .await;
    assert_eq!(st, StatusCode::CONFLICT);
    assert_eq!(
        fault_message(&body),
        "Unable to delete compute service that is hosting instances. Migrate or delete the instances first."
    );
    // Still enabled after the refusal.
    let (_, body) = c
        .get(a, "/compute/v2.1/os-services?binary=nova-compute")
        .await;
    assert_eq!(body["services"][0]["status"], "enabled");
    let (st, _) = c.delete(a, "/compute/v2.1/os-services/abc").await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = c
        .delete(
            &a.mv("2.53"),
            &format!("/compute/v2.1/os-services/{int_id}"),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = c.delete(a, "/compute/v2.1/os-services/999").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = c.delete(a, "/compute/v2.1/os-services/1").await;
    assert_eq!(st, StatusCode::CONFLICT);
    let bob = c.new_member("bob").await;
    let (st, _) = c
        .delete(&bob, &format!("/compute/v2.1/os-services/{int_id}"))
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);

    // Once empty, the service (and its hypervisor) can go.
    let (st, _) = c.delete(a, &format!("/compute/v2.1/servers/{id}")).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    c.wait_gone(a, &id).await;
    let (st, body) = c
        .delete(a, &format!("/compute/v2.1/os-services/{int_id}"))
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{body}");
    let (_, body) = c.get(a, "/compute/v2.1/os-hypervisors").await;
    assert_eq!(body["hypervisors"], json!([]));
    let (_, body) = c.get(a, "/compute/v2.1/os-services").await;
    assert_eq!(body["services"].as_array().unwrap().len(), 2);
    let s = settle(&c, a, "homeless", &img, json!({})).await;
    assert_no_valid_host(&s);
}

#[tokio::test]
async fn extensions_and_migrations() {
    let c = Cloud::start().await;
    let a = &c.admin;
    let bob = c.new_member("bob").await;
    let (st, body) = c.get(&bob, "/compute/v2.1/extensions").await;
    assert_eq!(st, StatusCode::OK);
    let exts = body["extensions"].as_array().unwrap();
    assert!(exts.len() > 20);
    for e in exts {
        assert_eq!(
            keys(e),
            sorted(&[
                "alias",
                "description",
                "links",
                "name",
                "namespace",
                "updated"
            ])
        );
    }
    assert!(!exts.iter().any(|e| e["alias"] == "os-deferred-delete"));
    let (st, body) = c.get(&bob, "/compute/v2.1/extensions/os-keypairs").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        body["extension"],
        json!({"alias": "os-keypairs", "description": "Keypair Support.", "links": [],
               "name": "Keypairs", "namespace": "http://docs.openstack.org/compute/ext/fake_xml",
               "updated": "2014-12-03T00:00:00Z"})
    );
    let (st, _) = c.get(&bob, "/compute/v2.1/extensions/os-cells").await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    let (st, body) = c.get(a, "/compute/v2.1/os-migrations").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(body, json!({"migrations": []}));
    let (st, _) = c.get(&bob, "/compute/v2.1/os-migrations").await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let v = a.mv("2.59");
    let (st, body) = c
        .get(
            &v,
            "/compute/v2.1/os-migrations?limit=5&changes-since=2024-01-01T00:00:00Z",
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"migrations": []}));
    for bad in [
        "limit=-1",
        "marker=abc",
        "changes-since=yesterday",
        "bogus=1",
        "changes-before=2024-01-01",
    ] {
        let (st, _) = c
            .get(&v, &format!("/compute/v2.1/os-migrations?{bad}"))
            .await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{bad}");
    }
    let (st, _) = c.get(a, "/compute/v2.1/os-migrations?bogus=1").await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = c
        .get(
            &a.mv("2.66"),
            "/compute/v2.1/os-migrations?changes-since=2024-02-01T00:00:00Z&changes-before=2024-01-01T00:00:00Z",
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = c
        .get(
            &a.mv("2.80"),
            &format!("/compute/v2.1/os-migrations?project_id={}", a.project_id),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
}

#[tokio::test]
async fn simple_tenant_usage() {
    let c = Cloud::start().await;
    let a = &c.admin;
    let bob = c.new_member("bob").await;
    let img = c.image(&bob, "cirros", b"bytes").await;
    let live = c.server(&bob, "live", &img, json!({})).await;
    let gone = c.server(&bob, "gone", &img, json!({})).await;
    c.wait_status(&bob, &live, "ACTIVE").await;
    c.wait_status(&bob, &gone, "ACTIVE").await;
    let (st, _) = c
        .delete(&bob, &format!("/compute/v2.1/servers/{gone}"))
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    c.wait_gone(&bob, &gone).await;
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;

    let window = "start=2020-01-01T00:00:00&end=2999-01-01T00:00:00";
    let (st, body) = c
        .get(
            a,
            &format!("/compute/v2.1/os-simple-tenant-usage?{window}&detailed=1"),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let usages = body["tenant_usages"].as_array().unwrap();
    assert_eq!(usages.len(), 1);
    let u = &usages[0];
    assert_eq!(u["tenant_id"], bob.project_id);
    assert_eq!(
        keys(u),
        sorted(&[
            "server_usages",
            "start",
            "stop",
            "tenant_id",
            "total_hours",
            "total_local_gb_usage",
            "total_memory_mb_usage",
            "total_vcpus_usage"
        ])
    );
    assert_eq!(u["start"], "2020-01-01T00:00:00.000000");
    assert!(u["total_hours"].as_f64().unwrap() > 0.0);
    let servers = u["server_usages"].as_array().unwrap();
    assert_eq!(servers.len(), 2);
    for s in servers {
        assert_eq!(
            keys(s),
            sorted(&[
                "ended_at",
                "flavor",
                "hours",
                "instance_id",
                "local_gb",
                "memory_mb",
                "name",
                "started_at",
                "state",
                "tenant_id",
                "uptime",
                "vcpus"
            ])
        );
        assert_eq!(s["flavor"], "m1.tiny");
        assert_eq!(s["memory_mb"], 512);
    }
    let g = servers
        .iter()
        .find(|s| s["instance_id"] == gone.as_str())
        .unwrap();
    assert_eq!(g["state"], "terminated");
    assert!(g["ended_at"].is_string());
    let l = servers
        .iter()
        .find(|s| s["instance_id"] == live.as_str())
        .unwrap();
    assert_eq!(l["state"], "active");
    assert!(l["ended_at"].is_null());
    let total = u["total_memory_mb_usage"].as_f64().unwrap();
    let hours: f64 = servers.iter().map(|s| s["hours"].as_f64().unwrap()).sum();
    assert!((total - 512.0 * hours).abs() < 1e-6);

    // Not detailed: no server_usages.
    let (_, body) = c
        .get(a, &format!("/compute/v2.1/os-simple-tenant-usage?{window}"))
        .await;
    assert!(body["tenant_usages"][0].get("server_usages").is_none());
    // A window before anything ran is empty.
    let (_, body) = c
        .get(a, "/compute/v2.1/os-simple-tenant-usage?start=2020-01-01T00:00:00&end=2020-02-01T00:00:00")
        .await;
    assert_eq!(body["tenant_usages"], json!([]));

    // Show: the project itself may look; others may not.
    let path = format!(
        "/compute/v2.1/os-simple-tenant-usage/{}?{window}",
        bob.project_id
    );
    let (st, body) = c.get(&bob, &path).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        body["tenant_usage"]["server_usages"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let (st, _) = c
        .get(
            &bob,
            &format!("/compute/v2.1/os-simple-tenant-usage/{}", a.project_id),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, body) = c
        .get(
            a,
            &format!(
                "/compute/v2.1/os-simple-tenant-usage/{}?{window}",
                a.project_id
            ),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(body["tenant_usage"], json!({}));
    let (st, _) = c.get(&bob, "/compute/v2.1/os-simple-tenant-usage").await;
    assert_eq!(st, StatusCode::FORBIDDEN);

    // Paging (2.40): one server per page, links to the next.
    let v = a.mv("2.40");
    let (_, body) = c
        .get(
            &v,
            &format!("/compute/v2.1/os-simple-tenant-usage?{window}&detailed=1&limit=1"),
        )
        .await;
    assert_eq!(
        body["tenant_usages"][0]["server_usages"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let next = body["tenant_usages_links"][0]["href"].as_str().unwrap();
    assert!(next.contains("marker="), "{next}");
    let (st, body) = c
        .get(
            &v,
            &format!("/compute/v2.1/os-simple-tenant-usage?{window}&marker=nope"),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");

    // Bad windows.
    for bad in [
        "start=yesterday",
        "start=2024-01-01T00:00:00Z",
        "start=2024-02-01T00:00:00&end=2024-01-01T00:00:00",
    ] {
        let (st, body) = c
            .get(a, &format!("/compute/v2.1/os-simple-tenant-usage?{bad}"))
            .await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
}

#[tokio::test]
async fn aggregates_are_an_empty_admin_list() {
    let c = Cloud::start().await;
    let (st, v) = c.get(&c.admin, "/compute/v2.1/os-aggregates").await;
    assert_eq!((st, v), (StatusCode::OK, json!({"aggregates": []})));
    let (st, _) = c
        .post(
            &c.admin,
            "/compute/v2.1/os-aggregates",
            json!({"aggregate": {"name": "a"}}),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_IMPLEMENTED);
    assert_eq!(
        c.get(&c.admin, "/compute/v2.1/os-aggregates/1").await.0,
        StatusCode::NOT_FOUND
    );
    let bob = c.new_member("bob").await;
    assert_eq!(
        c.get(&bob, "/compute/v2.1/os-aggregates").await.0,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn extra_specs_are_validated_from_2_86() {
    let c = Cloud::start().await;
    let path = "/compute/v2.1/flavors/1/os-extra_specs";
    let bad = json!({"extra_specs": {"hw:cpu_policy": "fast"}});
    // Before 2.86 anything goes.
    assert_eq!(
        c.post(&c.admin.mv("2.85"), path, bad.clone()).await.0,
        StatusCode::OK
    );
    let (st, v) = c.post(&c.admin.mv("2.86"), path, bad).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["badRequest"]["message"]
            .as_str()
            .unwrap()
            .contains("is not one of")
    );
    let unknown = json!({"extra_specs": {"hw:made_up": "1"}});
    assert_eq!(
        c.post(&c.admin.mv("2.86"), path, unknown).await.0,
        StatusCode::BAD_REQUEST
    );
    let good = json!({"extra_specs": {"hw:cpu_policy": "dedicated", "trait:HW_CPU_X86_AVX2": "required", "my:own": "x"}});
    let (st, v) = c.post(&c.admin.mv("2.86"), path, good).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, _) = c
        .put(
            &c.admin.mv("2.86"),
            &format!("{path}/hw:numa_nodes"),
            json!({"hw:numa_nodes": "zero"}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
}
