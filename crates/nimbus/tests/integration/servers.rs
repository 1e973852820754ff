//! OpenStack compute: the server lifecycle on the fake driver.

use crate::common::*;
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn create_reaches_active_and_delete_removes() {
    let c = Cloud::start().await;
    let img = c.image(&c.admin, "cirros", b"fake image bytes").await;
    let id = c.server(&c.admin, "vm1", &img, json!({})).await;
    let s = c.wait_status(&c.admin, &id, "ACTIVE").await;
    assert_eq!(s["OS-EXT-STS:vm_state"], "active");
    assert_eq!(s["OS-EXT-STS:power_state"], 1);
    assert_eq!(s["progress"], 100);
    assert_eq!(s["image"]["id"], img);
    assert_eq!(s["flavor"]["id"], "1");
    assert!(!s["hostId"].as_str().unwrap().is_empty());
    let (st, _) = c
        .delete(&c.admin, &format!("/compute/v2.1/servers/{id}"))
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    c.wait_gone(&c.admin, &id).await;
}

async fn active_server(c: &Cloud, s: &Session, name: &str) -> (String, String) {
    let img = c.image(s, &format!("{name}-img"), b"bytes").await;
    let id = c.server(s, name, &img, json!({})).await;
    c.wait_status(s, &id, "ACTIVE").await;
    (id, img)
}

fn actions_of(v: &serde_json::Value) -> Vec<String> {
    v["instanceActions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn power_actions_walk_the_state_machine() {
    // Slow actions so the transitional statuses are observable.
    let c = Cloud::start_with(|cfg| cfg.fake.action_delay = std::time::Duration::from_millis(300))
        .await;
    let a = &c.admin;
    let (id, _) = active_server(&c, a, "vm").await;
    let (st, _) = c.action(a, &id, json!({"reboot": {"type": "SOFT"}})).await;
    assert_eq!(st, StatusCode::ACCEPTED);
    let s = c
        .wait_for(a, &id, "REBOOT", |v| v["status"] == "REBOOT")
        .await;
    assert_eq!(s["OS-EXT-STS:task_state"], "rebooting");
    // A second soft reboot while one runs: Nova's 409 naming the task state.
    let (st, body) = c.action(a, &id, json!({"reboot": {"type": "SOFT"}})).await;
    assert_eq!(st, StatusCode::CONFLICT, "{body}");
    assert_eq!(
        body["conflictingRequest"]["message"],
        format!("Cannot 'reboot' instance {id} while it is in task_state rebooting")
    );
    c.wait_status(a, &id, "ACTIVE").await;
    let (st, _) = c.action(a, &id, json!({"reboot": {"type": "HARD"}})).await;
    assert_eq!(st, StatusCode::ACCEPTED);
    c.wait_for(a, &id, "HARD_REBOOT", |v| v["status"] == "HARD_REBOOT")
        .await;
    c.wait_status(a, &id, "ACTIVE").await;

    assert_eq!(
        c.action(a, &id, json!({"os-stop": null})).await.0,
        StatusCode::ACCEPTED
    );
    let s = c.wait_status(a, &id, "SHUTOFF").await;
    assert_eq!(s["OS-EXT-STS:power_state"], 4);
    let (st, body) = c.action(a, &id, json!({"os-stop": null})).await;
    assert_eq!(st, StatusCode::CONFLICT);
    assert_eq!(
        body["conflictingRequest"]["message"],
        format!("Cannot 'stop' instance {id} while it is in vm_state stopped")
    );
    assert_eq!(
        c.action(a, &id, json!({"os-start": null})).await.0,
        StatusCode::ACCEPTED
    );
    c.wait_status(a, &id, "ACTIVE").await;

    assert_eq!(
        c.action(a, &id, json!({"pause": null})).await.0,
        StatusCode::ACCEPTED
    );
    let s = c.wait_status(a, &id, "PAUSED").await;
    assert_eq!(s["OS-EXT-STS:power_state"], 3);
    assert_eq!(
        c.action(a, &id, json!({"unpause": null})).await.0,
        StatusCode::ACCEPTED
    );
    c.wait_status(a, &id, "ACTIVE").await;
    assert_eq!(
        c.action(a, &id, json!({"suspend": null})).await.0,
        StatusCode::ACCEPTED
    );
    let s = c.wait_status(a, &id, "SUSPENDED").await;
    assert_eq!(s["OS-EXT-STS:power_state"], 7);
    assert_eq!(
        c.action(a, &id, json!({"resume": null})).await.0,
        StatusCode::ACCEPTED
    );
    c.wait_status(a, &id, "ACTIVE").await;

    // The action log has every action, newest first, with events.
    let (st, v) = c
        .get(
            a,
            &format!("/compute/v2.1/servers/{id}/os-instance-actions"),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        actions_of(&v),
        [
            "resume", "suspend", "unpause", "pause", "start", "stop", "reboot", "reboot", "create"
        ]
    );
    let req = v["instanceActions"][0]["request_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (st, v) = c
        .get(
            a,
            &format!("/compute/v2.1/servers/{id}/os-instance-actions/{req}"),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let ev = &v["instanceAction"]["events"][0];
    assert_eq!(ev["event"], "compute_resume_instance");
    assert_eq!(ev["result"], "Success");
    assert!(ev["finish_time"].is_string());

    // From 2.62 events name their host (admins) and hostId: the server's host for actions
    // on a placed server, not only for the create.
    let (_, v) = c
        .get(
            &a.mv("2.62"),
            &format!("/compute/v2.1/servers/{id}/os-instance-actions/{req}"),
        )
        .await;
    let ev = &v["instanceAction"]["events"][0];
    assert!(!ev["host"].as_str().unwrap().is_empty(), "{v}");
    assert_eq!(ev["hostId"].as_str().unwrap().len(), 56, "{v}");
    // A deleted server's log: 404 before 2.21, readable (delete on top) from 2.21.
    c.delete(a, &format!("/compute/v2.1/servers/{id}")).await;
    c.wait_gone(a, &id).await;
    let log = format!("/compute/v2.1/servers/{id}/os-instance-actions");
    assert_eq!(c.get(a, &log).await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        c.get(a, &format!("{log}/{req}")).await.0,
        StatusCode::NOT_FOUND
    );
    let (st, v) = c.get(&a.mv("2.21"), &log).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(actions_of(&v)[0], "delete");
    assert_eq!(
        c.get(&a.mv("2.21"), &format!("{log}/{req}")).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn resize_rebuild_snapshot_console_password() {
    let c = Cloud::start().await;
    let a = &c.admin.mv("2.60");
    let (id, img) = active_server(&c, a, "vm").await;
    // Resize then confirm: the new flavor sticks.
    assert_eq!(
        c.action(a, &id, json!({"resize": {"flavorRef": "2"}}))
            .await
            .0,
        StatusCode::ACCEPTED
    );
    let s = c.wait_status(a, &id, "VERIFY_RESIZE").await;
    assert_eq!(s["flavor"]["original_name"], "m1.small");
    assert_eq!(
        c.action(a, &id, json!({"confirmResize": null})).await.0,
        StatusCode::NO_CONTENT
    );
    let s = c.wait_status(a, &id, "ACTIVE").await;
    assert_eq!(s["flavor"]["original_name"], "m1.small");
    // Resize then revert: back to the old flavor.
    assert_eq!(
        c.action(a, &id, json!({"resize": {"flavorRef": "3"}}))
            .await
            .0,
        StatusCode::ACCEPTED
    );
    c.wait_status(a, &id, "VERIFY_RESIZE").await;
    assert_eq!(
        c.action(a, &id, json!({"revertResize": null})).await.0,
        StatusCode::ACCEPTED
    );
    let s = c.wait_status(a, &id, "ACTIVE").await;
    assert_eq!(s["flavor"]["original_name"], "m1.small");
    // Same flavor: 400.
    let (st, body) = c
        .action(a, &id, json!({"resize": {"flavorRef": "2"}}))
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
    // Rebuild with another image; answers the server and a new admin password.
    let img2 = c.image(a, "other", b"other bytes").await;
    let (st, body) = c
        .action(
            a,
            &id,
            json!({"rebuild": {"imageRef": img2, "name": "rebuilt"}}),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["server"]["name"], "rebuilt");
    assert!(body["server"]["adminPass"].is_string());
    let s = c.wait_status(a, &id, "ACTIVE").await;
    assert_eq!(s["image"]["id"], img2);
    assert_ne!(img, img2);
    // Snapshot: a real image record that becomes active.
    let (st, body) = c
        .action(
            a,
            &id,
            json!({"createImage": {"name": "snap", "metadata": {"k": "v"}}}),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{body}");
    let snap = body["image_id"].as_str().unwrap().to_owned();
    let ctx = c.ctx(a).await;
    let snap_id: nimbus_model::ImageId = snap.parse().unwrap();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let img = c.control().image_get(&ctx, snap_id).await.unwrap();
        if img.status == nimbus_model::image::ImageStatus::Active {
            assert_eq!(img.properties["image_type"], "snapshot");
            assert_eq!(img.properties["instance_uuid"], id.as_str());
            assert_eq!(img.properties["k"], "v");
            assert!(img.size.unwrap() > 0);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "snapshot never became active"
        );
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    c.wait_status(a, &id, "ACTIVE").await;
    // Console output: the fake guest's boot log, tail by lines.
    let (st, body) = c
        .action(a, &id, json!({"os-getConsoleOutput": {"length": 50}}))
        .await;
    assert_eq!(st, StatusCode::OK);
    let out = body["output"].as_str().unwrap();
    assert!(out.contains("GUEST-READY"), "{out}");
    let (_, body) = c
        .action(a, &id, json!({"os-getConsoleOutput": {"length": 1}}))
        .await;
    assert_eq!(body["output"].as_str().unwrap().lines().count(), 1);
    assert_eq!(
        c.action(a, &id, json!({"changePassword": {"adminPass": "n3w"}}))
            .await
            .0,
        StatusCode::ACCEPTED
    );
    c.wait_status(a, &id, "ACTIVE").await;
    let (_, v) = c
        .get(
            a,
            &format!("/compute/v2.1/servers/{id}/os-instance-actions"),
        )
        .await;
    assert_eq!(
        actions_of(&v),
        [
            "changePassword",
            "createImage",
            "rebuild",
            "revertResize",
            "resize",
            "confirmResize",
            "resize",
            "create"
        ]
    );
}

#[tokio::test]
async fn locks_bind_members_not_admins() {
    let c = Cloud::start().await;
    let bob = c.new_member("bob").await.mv("2.73");
    let (id, _) = active_server(&c, &bob, "vm").await;
    assert_eq!(
        c.action(&bob, &id, json!({"lock": {"locked_reason": "maintenance"}}))
            .await
            .0,
        StatusCode::ACCEPTED
    );
    let (_, v) = c.get(&bob, &format!("/compute/v2.1/servers/{id}")).await;
    assert_eq!(v["server"]["locked"], true);
    assert_eq!(v["server"]["locked_reason"], "maintenance");
    let (st, body) = c.action(&bob, &id, json!({"os-stop": null})).await;
    assert_eq!(st, StatusCode::CONFLICT);
    assert_eq!(
        body["conflictingRequest"]["message"],
        format!("Instance {id} is locked")
    );
    assert_eq!(
        c.delete(&bob, &format!("/compute/v2.1/servers/{id}"))
            .await
            .0,
        StatusCode::CONFLICT
    );
    // locked_reason is a 2.73 field.
    let (st, _) = c
        .action(
            &bob.mv("2.72"),
            &id,
            json!({"lock": {"locked_reason": "x"}}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    // An admin is not bound by the lock.
    assert_eq!(
        c.action(&c.admin, &id, json!({"os-stop": null})).await.0,
        StatusCode::ACCEPTED
    );
    c.wait_status(&bob, &id, "SHUTOFF").await;
    assert_eq!(
        c.action(&bob, &id, json!({"unlock": null})).await.0,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        c.action(&bob, &id, json!({"os-start": null})).await.0,
        StatusCode::ACCEPTED
    );
    c.wait_status(&bob, &id, "ACTIVE").await;
}

#[tokio::test]
async fn injected_faults_reach_clients() {
    let c = Cloud::start().await;
    let a = &c.admin;
    let img = c.image(a, "img", b"x").await;
    // spawn: the build fails; the server is ERROR with a fault.
    let id = c
        .server(
            a,
            "bad",
            &img,
            json!({"metadata": {"nimbus:fault": "spawn"}}),
        )
        .await;
    let s = c.wait_status(a, &id, "ERROR").await;
    assert_eq!(s["fault"]["code"], 500);
    assert!(
        s["fault"]["message"].as_str().unwrap().contains("spawn"),
        "{s}"
    );
    // As in Nova, a failed build leaves the server on no host.
    assert!(s["OS-EXT-SRV-ATTR:host"].is_null(), "{s}");
    // A typo in the fault is a 400 at create, not a broken build.
    let (st, body) = c
        .post(a, "/compute/v2.1/servers", json!({"server": {"name": "x", "imageRef": img, "flavorRef": "1", "metadata": {"nimbus:fault": "spwan"}}}))
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(
        body["badRequest"]["message"]
            .as_str()
            .unwrap()
            .contains("spwan")
    );
    // crash-after: the guest dies on its own; the server becomes SHUTOFF with a record.
    let id = c
        .server(
            a,
            "crashy",
            &img,
            json!({"metadata": {"nimbus:fault": "crash-after:300ms"}}),
        )
        .await;
    c.wait_status(a, &id, "ACTIVE").await;
    let s = c.wait_status(a, &id, "SHUTOFF").await;
    assert_eq!(s["OS-EXT-STS:power_state"], 6, "crashed");
    let (_, v) = c
        .get(
            a,
            &format!("/compute/v2.1/servers/{id}/os-instance-actions"),
        )
        .await;
    assert_eq!(actions_of(&v)[0], "stop");
    // stall: stays in BUILD; delete still works.
    let id = c
        .server(
            a,
            "stuck",
            &img,
            json!({"metadata": {"nimbus:fault": "stall"}}),
        )
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let (_, v) = c.get(a, &format!("/compute/v2.1/servers/{id}")).await;
    assert_eq!(v["server"]["status"], "BUILD");
    assert_eq!(
        c.delete(a, &format!("/compute/v2.1/servers/{id}")).await.0,
        StatusCode::NO_CONTENT
    );
    c.wait_gone(a, &id).await;
    // reboot fault: the reboot fails and the server goes to ERROR (as Nova does).
    let id = c
        .server(
            a,
            "flaky",
            &img,
            json!({"metadata": {"nimbus:fault": "reboot"}}),
        )
        .await;
    c.wait_status(a, &id, "ACTIVE").await;
    assert_eq!(
        c.action(a, &id, json!({"reboot": {"type": "HARD"}}))
            .await
            .0,
        StatusCode::ACCEPTED
    );
    c.wait_status(a, &id, "ERROR").await;
}

/// A guest that crashes while an action is in flight loses its power event (the action's
/// own result wins); the periodic power-state sync still finds it and records SHUTOFF.
#[tokio::test]
async fn power_sync_catches_a_crash_during_an_action() {
    let c = Cloud::start_with(|cfg| {
        cfg.fake.action_delay = std::time::Duration::from_millis(1500);
        cfg.control.power_sync_interval = std::time::Duration::from_millis(200);
    })
    .await;
    let a = &c.admin;
    let img = c.image(a, "img", b"x").await;
    let id = c
        .server(
            a,
            "crashy",
            &img,
            json!({"metadata": {"nimbus:fault": "crash-after:500ms"}}),
        )
        .await;
    c.wait_status(a, &id, "ACTIVE").await;
    // A snapshot (1.5 s on this fake) is in flight when the guest dies at 0.5 s.
    let (st, v) = c
        .action(a, &id, json!({"createImage": {"name": "during"}}))
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    let (_, v) = c.get(a, &format!("/compute/v2.1/servers/{id}")).await;
    assert_eq!(
        v["server"]["OS-EXT-STS:task_state"], "image_snapshot",
        "{v}"
    );
    let s = c
        .wait_for(a, &id, "SHUTOFF after the snapshot", |v| {
            v["status"] == "SHUTOFF" && v["OS-EXT-STS:task_state"].is_null()
        })
        .await;
    assert_eq!(s["OS-EXT-STS:power_state"], 6, "{s}");
}

#[tokio::test]
async fn ha_server_is_restarted_after_a_crash() {
    let c = Cloud::start().await;
    let a = &c.admin;
    let img = c.image(a, "img", b"x").await;
    let id = c
        .server(
            a,
            "ha",
            &img,
            json!({"metadata": {"nimbus:fault": "crash-after:200ms"}}),
        )
        .await;
    c.wait_status(a, &id, "ACTIVE").await;
    let ctx = c.ctx(a).await;
    let sid: nimbus_model::ServerId = id.parse().unwrap();
    c.control()
        .server_update(
            &ctx,
            sid,
            nimbus_control::servers::ServerUpdate {
                ha: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    // It crashes, is stopped, and the HA reconciler starts it again.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (_, v) = c
            .get(
                a,
                &format!("/compute/v2.1/servers/{id}/os-instance-actions"),
            )
            .await;
        let acts = actions_of(&v);
        if acts.first().map(String::as_str) == Some("start") && acts.contains(&"stop".to_owned()) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "HA restart never happened: {acts:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn views_follow_the_microversion() {
    let c = Cloud::start().await;
    let a = &c.admin;
    let (id, _) = active_server(&c, a, "vm").await;
    let show = |v: &'static str| {
        let c = &c;
        let id = id.clone();
        async move {
            c.get(&c.admin.mv(v), &format!("/compute/v2.1/servers/{id}"))
                .await
                .1["server"]
                .clone()
        }
    };
    let s = c.get(a, &format!("/compute/v2.1/servers/{id}")).await.1["server"].clone();
    assert_eq!(s["flavor"]["id"], "1");
    assert!(s.get("locked").is_none() && s.get("description").is_none() && s.get("tags").is_none());
    assert!(
        s.get("OS-EXT-SRV-ATTR:hostname").is_none(),
        "hostname is a 2.3 field"
    );
    let s = show("2.3").await;
    assert_eq!(s["OS-EXT-SRV-ATTR:hostname"], "vm");
    let s = show("2.26").await;
    assert_eq!(s["locked"], false);
    assert!(s["description"].is_null());
    assert_eq!(s["tags"], json!([]));
    let s = show("2.47").await;
    assert_eq!(s["flavor"]["original_name"], "m1.tiny");
    assert_eq!(s["flavor"]["vcpus"], 1);
    assert!(s["flavor"].get("id").is_none());
    let s = show("2.96").await;
    assert!(s.get("trusted_image_certificates").is_some());
    assert_eq!(s["server_groups"], json!([]));
    assert!(s["locked_reason"].is_null());
    assert!(s.get("pinned_availability_zone").is_some());
    // Headers: echo and Vary, both spellings; legacy header alone works.
    let r = c
        .req(
            &c.admin.mv("2.53"),
            reqwest::Method::GET,
            "/compute/v2.1/servers",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["openstack-api-version"], "compute 2.53");
    assert_eq!(r.headers()["x-openstack-nova-api-version"], "2.53");
    let vary: Vec<_> = r
        .headers()
        .get_all("vary")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert!(vary.iter().any(|v| v.contains("OpenStack-API-Version")));
    let r = c
        .req(a, reqwest::Method::GET, "/compute/v2.1/servers")
        .header("X-OpenStack-Nova-API-Version", "2.10")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-openstack-nova-api-version"], "2.10");
    let r = c
        .req(a, reqwest::Method::GET, "/compute/v2.1/servers")
        .header("OpenStack-API-Version", "compute latest")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["openstack-api-version"], "compute 2.96");
    let (st, body) = c.get(&c.admin.mv("2.97"), "/compute/v2.1/servers").await;
    assert_eq!(st, StatusCode::NOT_ACCEPTABLE, "{body}");
    assert!(
        body["computeFault"]["message"]
            .as_str()
            .unwrap()
            .contains("2.97")
    );
    // Project-id URLs and /v2.1 aliases reach the same server, with links echoing the form.
    let (st, v) = c
        .get(a, &format!("/v2.1/{}/servers/{id}", a.project_id))
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        v["server"]["links"][0]["href"],
        format!("{}/v2.1/{}/servers/{id}", c.url, a.project_id)
    );
    assert_eq!(
        c.get(a, &format!("/v2.1/servers/{id}")).await.0,
        StatusCode::OK
    );
    // Another project's id in the URL is Nova's 400, whoever asks.
    let bob = c.new_member("bob").await;
    let (st, v) = c
        .get(a, &format!("/compute/v2.1/{}/servers", bob.project_id))
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["badRequest"]["message"]
            .as_str()
            .unwrap()
            .starts_with(&format!(
                "Malformed request URL: URL's project_id '{}'",
                bob.project_id
            )),
        "{v}"
    );
    assert_eq!(
        c.get(&bob, &format!("/v2/{}/servers", bob.project_id))
            .await
            .0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn listing_filters_sorting_and_paging() {
    let c = Cloud::start().await;
    let a = &c.admin.mv("2.26");
    let img = c.image(a, "img", b"x").await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let id = c
            .server(
                a,
                &format!("web-{i}"),
                &img,
                json!({"metadata": {"role": "web"}}),
            )
            .await;
        ids.push(id);
    }
    let db = c.server(a, "db-0", &img, json!({})).await;
    for id in ids.iter().chain([&db]) {
        c.wait_status(a, id, "ACTIVE").await;
    }
    let (st, v) = c
        .put(
            a,
            &format!("/compute/v2.1/servers/{db}/tags"),
            json!({"tags": ["prod", "db"]}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let names = |v: &serde_json::Value| -> Vec<String> {
        v["servers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let (_, v) = c
        .get(
            a,
            "/compute/v2.1/servers?name=^web-[0-2]$&sort_key=display_name&sort_dir=asc",
        )
        .await;
    assert_eq!(names(&v), ["web-0", "web-1", "web-2"]);
    let (_, v) = c.get(a, "/compute/v2.1/servers?tags=prod").await;
    assert_eq!(names(&v), ["db-0"]);
    let (_, v) = c
        .get(a, "/compute/v2.1/servers/detail?status=ACTIVE&limit=100")
        .await;
    assert_eq!(names(&v).len(), 6);
    // An unknown status: an empty list before 2.38, a 400 from 2.38.
    let (st, v) = c.get(a, "/compute/v2.1/servers?status=NOPE").await;
    assert_eq!((st, names(&v).len()), (StatusCode::OK, 0));
    let (st, _) = c
        .get(&a.mv("2.38"), "/compute/v2.1/servers?status=NOPE")
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    // Paging: follow servers_links to the end, no duplicates, nothing missing.
    let mut seen = Vec::new();
    let mut next = Some(format!(
        "{}/compute/v2.1/servers/detail?limit=2&sort_key=display_name&sort_dir=asc",
        c.url
    ));
    while let Some(url) = next {
        let v: serde_json::Value = c
            .http
            .get(&url)
            .header("X-Auth-Token", &a.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        seen.extend(names(&v));
        next = v["servers_links"][0]["href"].as_str().map(str::to_owned);
    }
    assert_eq!(seen, ["db-0", "web-0", "web-1", "web-2", "web-3", "web-4"]);
    // changes-since includes deleted servers (>=), normal listing hides them.
    // changes-since has second precision: let a second pass so only what follows counts.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let t0 = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    c.delete(a, &format!("/compute/v2.1/servers/{}", ids[0]))
        .await;
    c.wait_gone(a, &ids[0]).await;
    let (_, v) = c
        .get(
            a,
            &format!("/compute/v2.1/servers/detail?changes-since={t0}"),
        )
        .await;
    let changed: Vec<(String, String)> = v["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_owned(),
                s["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(changed, [("web-0".to_owned(), "DELETED".to_owned())]);
    let (_, v) = c.get(a, "/compute/v2.1/servers").await;
    assert!(!names(&v).contains(&"web-0".to_owned()));
    // A second project sees none of these; all_tenants is for admins only: a member asking
    // for it is refused by policy (Nova's 403), asking for it off is fine, and a value that
    // is not a boolean is a 400.
    let bob = c.new_member("bob").await;
    let (st, v) = c.get(&bob, "/compute/v2.1/servers?all_tenants=1").await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    assert!(
        v["forbidden"]["message"]
            .as_str()
            .unwrap()
            .contains("os_compute_api:servers:index:get_all_tenants"),
        "{v}"
    );
    let (st, v) = c
        .get(&bob, "/compute/v2.1/servers/detail?all_tenants")
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    let (st, v) = c.get(&bob, "/compute/v2.1/servers?all_tenants=0").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(names(&v).len(), 0);
    let (st, v) = c
        .get(&c.admin, "/compute/v2.1/servers?all_tenants=maybe")
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["badRequest"]["message"]
            .as_str()
            .unwrap()
            .contains("'maybe'"),
        "{v}"
    );
    // sort_key and sort_dir are held to Nova's enums; Nova's ignored keys are accepted.
    for (q, bad) in [
        ("sort_key=bogus", "'bogus' is not one of"),
        ("sort_key=name", "'name' is not one of"),
        (
            "sort_key=display_name&sort_dir=up",
            "'up' is not one of ['asc', 'desc']",
        ),
    ] {
        let (st, v) = c.get(a, &format!("/compute/v2.1/servers?{q}")).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{q}: {v}");
        assert!(
            v["badRequest"]["message"].as_str().unwrap().contains(bad),
            "{q}: {v}"
        );
    }
    let (st, v) = c
        .get(a, "/compute/v2.1/servers?sort_key=vcpus&sort_key=kernel_id")
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (_, v) = c.get(&c.admin, "/compute/v2.1/servers?all_tenants=1").await;
    assert_eq!(names(&v).len(), 5);
    assert_eq!(
        c.get(&bob, &format!("/compute/v2.1/servers/{db}")).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        c.delete(&bob, &format!("/compute/v2.1/servers/{db}"))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    let (st, _) = c
        .get(
            a,
            "/compute/v2.1/servers?marker=00000000-0000-0000-0000-000000000000",
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn metadata_and_tags_calls() {
    let c = Cloud::start().await;
    let a = &c.admin.mv("2.26");
    let (id, _) = active_server(&c, a, "vm").await;
    let p = format!("/compute/v2.1/servers/{id}/metadata");
    let (st, v) = c
        .put(a, &p, json!({"metadata": {"a": "1", "b": "2"}}))
        .await;
    assert_eq!(
        (st, v["metadata"].clone()),
        (StatusCode::OK, json!({"a": "1", "b": "2"}))
    );
    let (_, v) = c.post(a, &p, json!({"metadata": {"c": "3"}})).await;
    assert_eq!(v["metadata"], json!({"a": "1", "b": "2", "c": "3"}));
    let (_, v) = c.get(a, &format!("{p}/b")).await;
    assert_eq!(v, json!({"meta": {"b": "2"}}));
    let (st, v) = c
        .put(a, &format!("{p}/b"), json!({"meta": {"b": "20"}}))
        .await;
    assert_eq!((st, v), (StatusCode::OK, json!({"meta": {"b": "20"}})));
    let (st, _) = c
        .put(a, &format!("{p}/b"), json!({"meta": {"x": "1"}}))
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "body and URI mismatch");
    assert_eq!(
        c.delete(a, &format!("{p}/a")).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        c.delete(a, &format!("{p}/a")).await.0,
        StatusCode::NOT_FOUND
    );
    let (_, v) = c.get(a, &p).await;
    assert_eq!(v["metadata"], json!({"b": "20", "c": "3"}));
    let (_, v) = c.put(a, &p, json!({"metadata": {}})).await;
    assert_eq!(v["metadata"], json!({}));
    // Over the metadata_items quota (128): 403.
    let many: serde_json::Map<String, serde_json::Value> =
        (0..129).map(|i| (format!("k{i}"), json!("v"))).collect();
    assert_eq!(
        c.put(a, &p, json!({"metadata": many})).await.0,
        StatusCode::FORBIDDEN
    );
    // Tags.
    let t = format!("/compute/v2.1/servers/{id}/tags");
    assert_eq!(
        c.put(a, &format!("{t}/blue"), json!(null)).await.0,
        StatusCode::CREATED
    );
    assert_eq!(
        c.put(a, &format!("{t}/blue"), json!(null)).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        c.get(a, &format!("{t}/blue")).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(c.get(a, &format!("{t}/red")).await.0, StatusCode::NOT_FOUND);
    let (_, v) = c.put(a, &t, json!({"tags": ["x", "y", "x"]})).await;
    assert_eq!(v["tags"], json!(["x", "y"]));
    assert_eq!(
        c.put(a, &t, json!({"tags": ["a/b"]})).await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(c.delete(a, &t).await.0, StatusCode::NO_CONTENT);
    assert_eq!(c.get(a, &t).await.1["tags"], json!([]));
    // Before 2.26 the tags API does not exist.
    assert_eq!(c.get(&c.admin, &t).await.0, StatusCode::NOT_FOUND);
    // Update (PUT) the name and description.
    let (st, v) = c
        .put(
            &c.admin.mv("2.19"),
            &format!("/compute/v2.1/servers/{id}"),
            json!({"server": {"name": "renamed", "description": "d"}}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(
        (
            v["server"]["name"].clone(),
            v["server"]["description"].clone()
        ),
        (json!("renamed"), json!("d"))
    );
    let (st, _) = c
        .put(
            &c.admin,
            &format!("/compute/v2.1/servers/{id}"),
            json!({"server": {"description": "d"}}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "description is a 2.19 field");
}

#[tokio::test]
async fn bad_input_gets_nova_faults() {
    let c = Cloud::start().await;
    let a = &c.admin;
    let img = c.image(a, "img", b"x").await;
    let send_raw = |body: &'static str| {
        c.req(a, reqwest::Method::POST, "/compute/v2.1/servers")
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let r = send_raw("{\"server\": ").await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["badRequest"]["code"], 400);
    let cases = [
        (
            json!({"server": {"name": "x", "imageRef": img, "flavorRef": "1", "bogus": 1}}),
            "bogus",
        ),
        (
            json!({"server": {"name": 5, "imageRef": img, "flavorRef": "1"}}),
            "field/attribute name. Value: 5. 5 is not of type 'string'",
        ),
        (
            json!({"server": {"name": "x", "imageRef": img}}),
            "flavorRef",
        ),
        (
            json!({"server": {"name": "", "imageRef": img, "flavorRef": "1"}}),
            "name",
        ),
        (
            json!({"server": {"name": "x", "imageRef": "not-a-uuid", "flavorRef": "1"}}),
            "imageRef",
        ),
        (
            json!({"server": {"name": "x", "imageRef": img, "flavorRef": "999"}}),
            "999",
        ),
        (
            json!({"server": {"name": "x", "imageRef": img, "flavorRef": "1", "min_count": 0}}),
            "min_count",
        ),
        (
            json!({"server": {"name": "x", "imageRef": img, "flavorRef": "1", "user_data": "%%%"}}),
            "base 64",
        ),
        (json!({"nope": {}}), "('nope' was unexpected)"),
    ];
    for (body, needle) in cases {
        let (st, v) = c.post(a, "/compute/v2.1/servers", body.clone()).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{body} -> {v}");
        let msg = v["badRequest"]["message"].as_str().unwrap_or_default();
        assert!(
            msg.contains(needle),
            "{body}: '{msg}' should mention {needle}"
        );
    }
    // networks is required from 2.37.
    let (st, v) = c
        .post(
            &a.mv("2.37"),
            "/compute/v2.1/servers",
            json!({"server": {"name": "x", "imageRef": img, "flavorRef": "1"}}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(
        v["badRequest"]["message"]
            .as_str()
            .unwrap()
            .contains("networks")
    );
    let (st, _) = c
        .post(
            &a.mv("2.37"),
            "/compute/v2.1/servers",
            json!({"server": {"name": "x", "imageRef": img, "flavorRef": "1", "networks": "none"}}),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED);
    // Oversized body: 413 overLimit.
    let big = json!({"server": {"name": "x", "imageRef": img, "flavorRef": "1", "metadata": {"k": "v".repeat(2 * 1024 * 1024)}}});
    let (st, v) = c.post(a, "/compute/v2.1/servers", big).await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    assert_eq!(v["overLimit"]["code"], 413);
    // A path segment that is not UTF-8: a 400 in Nova's shape, not axum's plain text.
    let (st, v) = c.get(a, "/compute/v2.1/servers/%ff").await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(v["badRequest"]["code"], 400, "{v}");
    let (st, v) = c.get(a, "/image/v2/images/%ff").await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(v["code"], "400 Bad Request", "{v}");
    // Flavor sizes past Nova's maximum say so.
    let (st, v) = c
        .post(
            a,
            "/compute/v2.1/flavors",
            json!({"flavor": {"name": "huge", "ram": 99999999999_i64, "vcpus": 1, "disk": 1}}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(
        v["badRequest"]["message"],
        "Invalid input for field/attribute ram. Value: 99999999999. 99999999999 is greater than the maximum of 2147483647"
    );
    // Unknown server ids: 404 itemNotFound, also for garbage.
    for id in ["00000000-0000-0000-0000-000000000000", "garbage"] {
        let (st, v) = c.get(a, &format!("/compute/v2.1/servers/{id}")).await;
        assert_eq!(st, StatusCode::NOT_FOUND);
        assert_eq!(v["itemNotFound"]["code"], 404);
    }
    let (id, _) = active_server(&c, a, "vm").await;
    let (st, v) = c.action(a, &id, json!({"explode": null})).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(
        v["badRequest"]["message"]
            .as_str()
            .unwrap()
            .contains("explode")
    );
    let (st, _) = c
        .action(a, &id, json!({"reboot": {"type": "GENTLE"}}))
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = c.action(a, &id, json!({"shelve": null})).await;
    assert_eq!(st, StatusCode::NOT_IMPLEMENTED);
    // Wrong method: 405 with Nova's fault.
    let (st, v) = c
        .call(
            a,
            reqwest::Method::PATCH,
            &format!("/compute/v2.1/servers/{id}"),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(v["badMethod"]["code"], 405);
    // Unknown URL: 404.
    assert_eq!(
        c.get(a, "/compute/v2.1/no-such-thing").await.0,
        StatusCode::NOT_FOUND
    );
    // Admin-only calls by a member: 403.
    let bob = c.new_member("bob").await;
    let (st, v) = c
        .get(&bob, &format!("/compute/v2.1/servers/{id}/diagnostics"))
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "foreign server first: {v}");
    let (bid, _) = active_server(&c, &bob, "bobs").await;
    let (st, v) = c
        .get(&bob, &format!("/compute/v2.1/servers/{bid}/diagnostics"))
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(
        c.action(&bob, &bid, json!({"os-resetState": {"state": "error"}}))
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        c.post(
            &bob,
            "/compute/v2.1/flavors",
            json!({"flavor": {"name": "f", "ram": 1, "vcpus": 1, "disk": 0}})
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );
    // Admin diagnostics work (2.48 standardized shape).
    let (st, v) = c
        .get(
            &c.admin.mv("2.48"),
            &format!("/compute/v2.1/servers/{bid}/diagnostics"),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["driver"], "fake");
    assert_eq!(v["num_cpus"], 1);
}

#[tokio::test]
async fn concurrent_creates_never_overcommit() {
    // One host that fits exactly 50 m1.tiny servers (1 vCPU each, no overcommit).
    let c = Cloud::start_with(|cfg| {
        cfg.fake.vcpus = 50;
        cfg.fake.ram_mb = 1_000_000;
        cfg.host.cpu_allocation_ratio = 1.0;
        cfg.host.ram_allocation_ratio = 1.0;
        cfg.control
            .default_quota
            .limits
            .insert("instances".into(), -1);
        cfg.control.default_quota.limits.insert("cores".into(), -1);
        cfg.control.default_quota.limits.insert("ram".into(), -1);
    })
    .await;
    let a = &c.admin;
    let img = c.image(a, "img", b"x").await;
    let mut tasks = Vec::new();
    for i in 0..200 {
        let http = c.http.clone();
        let url = c.url.clone();
        let token = a.token.clone();
        let img = img.clone();
        tasks.push(tokio::spawn(async move {
            let body =
                json!({"server": {"name": format!("s{i}"), "imageRef": img, "flavorRef": "1"}});
            let r = http
                .post(format!("{url}/compute/v2.1/servers"))
                .header("X-Auth-Token", token)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::ACCEPTED);
            let v: serde_json::Value = r.json().await.unwrap();
            v["server"]["id"].as_str().unwrap().to_owned()
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap());
    }
    assert_eq!(ids.len(), 200);
    let (mut active, mut error) = (0, 0);
    for id in &ids {
        let s = c
            .wait_for(a, id, "a final state", |v| {
                matches!(v["status"].as_str(), Some("ACTIVE" | "ERROR"))
                    && v["OS-EXT-STS:task_state"].is_null()
            })
            .await;
        if s["status"] == "ACTIVE" {
            active += 1;
        } else {
            assert!(
                s["fault"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("No valid host"),
                "{s}"
            );
            error += 1;
        }
    }
    assert_eq!((active, error), (50, 150));
    let (_, v) = c.get(a, "/compute/v2.1/servers/detail?limit=1000").await;
    assert_eq!(v["servers"].as_array().unwrap().len(), 200, "nothing lost");
}

#[tokio::test]
async fn restart_resumes_operations_in_flight() {
    let c = Cloud::start_with(|cfg| {
        cfg.fake.spawn_delay = std::time::Duration::from_millis(1500);
        cfg.fake.action_delay = std::time::Duration::from_millis(800);
        cfg.control
            .default_quota
            .limits
            .insert("instances".into(), 50);
    })
    .await;
    let a = c.admin.clone();
    let img = c.image(&a, "img", b"x").await;
    let mut building = Vec::new();
    for i in 0..5 {
        building.push(c.server(&a, &format!("b{i}"), &img, json!({})).await);
    }
    // One server to reboot and one to delete while the service goes down.
    let settled = c.server(&a, "settled", &img, json!({})).await;
    let doomed = c.server(&a, "doomed", &img, json!({})).await;
    c.wait_status(&a, &settled, "ACTIVE").await;
    c.wait_status(&a, &doomed, "ACTIVE").await;
    let mut more = Vec::new();
    for i in 0..5 {
        more.push(c.server(&a, &format!("late{i}"), &img, json!({})).await);
    }
    assert_eq!(
        c.action(&a, &settled, json!({"reboot": {"type": "HARD"}}))
            .await
            .0,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        c.delete(&a, &format!("/compute/v2.1/servers/{doomed}"))
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    // Down mid-flight.
    let c = c.restart().await;
    let a = c.admin.clone();
    for id in more.iter() {
        c.wait_status(&a, id, "ACTIVE").await;
    }
    for id in &building {
        c.wait_status(&a, id, "ACTIVE").await;
    }
    c.wait_status(&a, &settled, "ACTIVE").await;
    c.wait_gone(&a, &doomed).await;
    // Nothing is left pending or running (the engine records an operation's end just after
    // the server state it wrote, so give it a moment).
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let ops = c.control().store().operations_open().await.unwrap();
        if ops.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "operations left open: {ops:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // The adopted servers still answer actions after the restart.
    assert_eq!(
        c.action(&a, &settled, json!({"os-stop": null})).await.0,
        StatusCode::ACCEPTED
    );
    c.wait_status(&a, &settled, "SHUTOFF").await;
}

#[tokio::test]
async fn servers_join_networks_and_show_addresses() {
    let c = Cloud::start().await;
    let a = &c.admin.mv("2.37");
    let img = c.image(a, "img", b"x").await;
    let id = c.server(a, "vm", &img, json!({})).await;
    let s = c.wait_status(a, &id, "ACTIVE").await;
    let public = s["addresses"]["public"].as_array().unwrap();
    assert_eq!(public.len(), 2, "an IPv4 and an EUI-64 IPv6 address: {s}");
    assert_eq!(public[0]["version"], 4);
    assert!(public[0]["addr"].as_str().unwrap().starts_with("10.0."));
    assert_eq!(public[0]["OS-EXT-IPS:type"], "fixed");
    let mac = public[0]["OS-EXT-IPS-MAC:mac_addr"].as_str().unwrap();
    assert!(mac.starts_with("fa:16:3e:"));
    assert_eq!(public[1]["version"], 6);
    let (_, ips) = c.get(a, &format!("/compute/v2.1/servers/{id}/ips")).await;
    assert_eq!(
        ips["addresses"]["public"][0],
        json!({"version": 4, "addr": public[0]["addr"]})
    );
    let (st, one) = c
        .get(a, &format!("/compute/v2.1/servers/{id}/ips/public"))
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(one["public"].as_array().unwrap().len(), 2);
    assert_eq!(
        c.get(a, &format!("/compute/v2.1/servers/{id}/ips/nowhere"))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    // networks: none → no addresses.
    let (_, body) = c.post(a, "/compute/v2.1/servers", json!({"server": {"name": "lone", "imageRef": img, "flavorRef": "1", "networks": "none"}})).await;
    let lone = body["server"]["id"].as_str().unwrap().to_owned();
    let s = c.wait_status(a, &lone, "ACTIVE").await;
    assert_eq!(s["addresses"], json!({}));
    // ip / ip6 filters: a regex over the fixed addresses, matched from the start.
    let listed = |q: String| {
        let c = &c;
        async move {
            let (st, body) = c.get(a, &format!("/compute/v2.1/servers?{q}")).await;
            assert_eq!(st, StatusCode::OK, "{q}: {body}");
            let mut ids: Vec<String> = body["servers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["id"].as_str().unwrap().to_owned())
                .collect();
            ids.sort();
            ids
        }
    };
    let v4 = public[0]["addr"].as_str().unwrap();
    let v6 = public[1]["addr"].as_str().unwrap();
    assert_eq!(listed(format!("ip={v4}")).await, vec![id.as_str()]);
    assert_eq!(listed("ip=10%5C.0%5C.".into()).await, vec![id.as_str()]);
    assert!(
        listed("ip=0%5C.0".into()).await.is_empty(),
        "anchored at the start"
    );
    assert!(
        listed(format!("ip6={v4}")).await.is_empty(),
        "ip6 looks at IPv6 only"
    );
    assert_eq!(listed(format!("ip6={v6}")).await, vec![id.as_str()]);
    assert_eq!(
        listed("ip=192.168.&ip6=fd00:".into()).await,
        vec![id.as_str()]
    );
    let (st, body) = c.get(a, "/compute/v2.1/servers?ip=(").await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
    // os-interface: the NICs as Nova's interface attachments.
    let (st, ifs) = c
        .get(a, &format!("/compute/v2.1/servers/{id}/os-interface"))
        .await;
    assert_eq!(st, StatusCode::OK, "{ifs}");
    let att = &ifs["interfaceAttachments"][0];
    assert_eq!(ifs["interfaceAttachments"].as_array().unwrap().len(), 1);
    assert_eq!(att["mac_addr"], mac);
    assert_eq!(att["port_state"], "ACTIVE");
    assert_eq!(att["fixed_ips"][0]["ip_address"], v4);
    assert_eq!(att["fixed_ips"][1]["ip_address"], v6);
    let port = att["port_id"].as_str().unwrap();
    let (st, one) = c
        .get(
            a,
            &format!("/compute/v2.1/servers/{id}/os-interface/{port}"),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(&one["interfaceAttachment"], att);
    let (st, _) = c
        .get(a, &format!("/compute/v2.1/servers/{id}/os-interface/nope"))
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (_, none) = c
        .get(a, &format!("/compute/v2.1/servers/{lone}/os-interface"))
        .await;
    assert_eq!(none["interfaceAttachments"], json!([]));
    // A private network with a tiny pool: fixed IP honoured, exhaustion fails the build.
    let ctx = c.ctx(a).await;
    let net = c
        .control()
        .network_create(
            &ctx,
            nimbus_model::network::NetworkCreate {
                name: "tiny".into(),
                kind: nimbus_model::network::NetworkType::MacFiltered,
                cidr: Some("192.168.9.0/29".into()),
                gateway: None,
                cidr6: None,
                gateway6: None,
                dhcp: true,
            },
        )
        .await
        .unwrap();
    let nets = |ip: Option<&str>| {
        let mut n = json!({"uuid": net.id.to_string()});
        if let Some(ip) = ip {
            n["fixed_ip"] = json!(ip);
        }
        json!([n])
    };
    let (st, body) = c.post(a, "/compute/v2.1/servers", json!({"server": {"name": "fixed", "imageRef": img, "flavorRef": "1", "networks": nets(Some("192.168.9.6"))}})).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{body}");
    let fixed = body["server"]["id"].as_str().unwrap().to_owned();
    let s = c.wait_status(a, &fixed, "ACTIVE").await;
    assert_eq!(s["addresses"]["tiny"][0]["addr"], "192.168.9.6");
    assert!(
        s["addresses"].get("public").is_none(),
        "an explicit list replaces auto"
    );
    let mut ids = Vec::new();
    for i in 0..6 {
        let (st, body) = c.post(a, "/compute/v2.1/servers", json!({"server": {"name": format!("n{i}"), "imageRef": img, "flavorRef": "1", "networks": nets(None)}})).await;
        assert_eq!(st, StatusCode::ACCEPTED);
        ids.push(body["server"]["id"].as_str().unwrap().to_owned());
    }
    let mut errors = 0;
    for id in &ids {
        let s = c
            .wait_for(a, id, "final", |v| {
                matches!(v["status"].as_str(), Some("ACTIVE" | "ERROR"))
                    && v["OS-EXT-STS:task_state"].is_null()
            })
            .await;
        if s["status"] == "ERROR" {
            assert!(
                s["fault"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("No more IP addresses"),
                "{s}"
            );
            errors += 1;
        }
    }
    assert_eq!(
        errors, 1,
        "a /29 without a gateway has 6 host addresses; one was fixed"
    );
    // Unknown networks and ports are 400s at create.
    let bogus = json!([{"uuid": "00000000-0000-0000-0000-000000000000"}]);
    let (st, v) = c
        .post(
            a,
            "/compute/v2.1/servers",
            json!({"server": {"name": "x", "imageRef": img, "flavorRef": "1", "networks": bogus}}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(
        v["badRequest"]["message"]
            .as_str()
            .unwrap()
            .contains("could not be found")
    );
    // Deleting servers gives their addresses back.
    for id in ids.iter().chain([&fixed]) {
        c.delete(a, &format!("/compute/v2.1/servers/{id}")).await;
    }
    for id in ids.iter().chain([&fixed]) {
        c.wait_gone(a, id).await;
    }
    assert!(
        c.control()
            .network_nics(&ctx, net.id)
            .await
            .unwrap()
            .is_empty()
    );
    c.control().network_delete(&ctx, net.id).await.unwrap();
}

#[tokio::test]
async fn running_servers_are_sampled_into_metrics() {
    let c =
        Cloud::start_with(|cfg| cfg.control.stats_period = std::time::Duration::from_millis(100))
            .await;
    let a = &c.admin;
    let (id, _) = active_server(&c, a, "vm").await;
    let ctx = c.ctx(a).await;
    let sid: nimbus_model::ServerId = id.parse().unwrap();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let points = loop {
        let p = c
            .control()
            .server_metrics(&ctx, sid, std::time::Duration::from_secs(60))
            .await
            .unwrap();
        if p.len() >= 4 {
            break p;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "too few samples: {p:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    for p in &points {
        assert!((3.0..=21.0).contains(&p.cpu_percent), "{p:?}");
        assert!(p.net_rx_bps > 1000.0 && p.disk_write_bps > 1000.0, "{p:?}");
        assert!(p.mem_percent > 0.0 && p.mem_percent <= 100.0);
    }
    // A stopped server is no longer sampled.
    c.action(a, &id, json!({"os-stop": null})).await;
    c.wait_status(a, &id, "SHUTOFF").await;
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    let before = c
        .control()
        .server_samples(&ctx, sid, std::time::Duration::from_secs(60))
        .await
        .unwrap()
        .len();
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let after = c
        .control()
        .server_samples(&ctx, sid, std::time::Duration::from_secs(60))
        .await
        .unwrap()
        .len();
    assert_eq!(before, after);
}

#[tokio::test]
async fn data_volumes_attach_at_create_and_outlive_the_server() {
    let c = Cloud::start().await;
    let a = &c.admin;
    let ctx = c.ctx(a).await;
    let ctl = c.control();
    let img: nimbus_model::ImageId = c.image(a, "img", b"x").await.parse().unwrap();
    let pool = ctl.pool_create(&ctx, "fast", 50).await.unwrap();
    let v1 = ctl
        .volume_create(&ctx, "data1", 10, Some("fast"))
        .await
        .unwrap();
    let v2 = ctl
        .volume_create(&ctx, "data2", 20, Some(&pool.id.to_string()))
        .await
        .unwrap();
    // Pool capacity is enforced.
    assert!(matches!(
        ctl.volume_create(&ctx, "big", 21, Some("fast")).await,
        Err(nimbus_model::Error::Conflict(_))
    ));
    let req =
        |name: &str, volumes: Vec<nimbus_model::VolumeId>| nimbus_control::servers::ServerCreate {
            name: name.into(),
            image_id: Some(img),
            flavor_id: "1".into(),
            min_count: 1,
            max_count: 1,
            disk_pool: Some("fast".into()),
            volumes,
            ..Default::default()
        };
    let created = ctl
        .server_create(&ctx, req("vm", vec![v1.id, v2.id]))
        .await
        .unwrap();
    let id = created.servers[0].id;
    c.wait_status(a, &id.to_string(), "ACTIVE").await;
    let s = ctl.server_get(&ctx, id).await.unwrap();
    assert_eq!(s.disk_pool, Some(pool.id.to_string()));
    let devices: Vec<(String, String)> = s
        .volumes
        .iter()
        .map(|v| (v.name.clone(), v.device.clone().unwrap()))
        .collect();
    assert_eq!(
        devices,
        [
            ("data1".to_owned(), "vdb".to_owned()),
            ("data2".to_owned(), "vdc".to_owned())
        ]
    );
    // Attached volumes cannot go to another server, nor be deleted.
    let err = ctl
        .server_create(&ctx, req("other", vec![v1.id]))
        .await
        .unwrap_err();
    assert!(matches!(err, nimbus_model::Error::InUse(_)), "{err:?}");
    assert!(matches!(
        ctl.volume_delete(&ctx, v1.id).await,
        Err(nimbus_model::Error::InUse(_))
    ));
    // Unknown pools and volumes are 400s.
    let mut bad = req("x", vec![]);
    bad.disk_pool = Some("nope".into());
    assert!(matches!(
        ctl.server_create(&ctx, bad).await,
        Err(nimbus_model::Error::InvalidRequest(_))
    ));
    let bad = req("x", vec![nimbus_model::VolumeId::new()]);
    assert!(matches!(
        ctl.server_create(&ctx, bad).await,
        Err(nimbus_model::Error::InvalidRequest(_))
    ));
    // Deleting the server detaches its volumes; they survive.
    c.delete(a, &format!("/compute/v2.1/servers/{id}")).await;
    c.wait_gone(a, &id.to_string()).await;
    let v = ctl.volume_get(&ctx, v1.id).await.unwrap();
    assert_eq!(
        (v.status, v.attached_to),
        (nimbus_model::volume::VolumeStatus::Available, None)
    );
    ctl.volume_delete(&ctx, v1.id).await.unwrap();
}

#[tokio::test]
async fn hostnames_and_topology_follow_their_microversions() {
    let c = Cloud::start().await;
    let img = c.image(&c.admin, "img", b"x").await;
    let create = |v: &'static str, hostname: &'static str| {
        let c = &c;
        let img = img.clone();
        async move {
            c.post(
                &c.admin.mv(v),
                "/compute/v2.1/servers",
                json!({"server": {"name": "h", "imageRef": img, "flavorRef": "1", "networks": "none", "hostname": hostname}}),
            )
            .await
        }
    };
    assert_eq!(
        create("2.89", "web1").await.0,
        StatusCode::BAD_REQUEST,
        "hostname is a 2.90 field"
    );
    assert_eq!(
        create("2.90", "web1.example.com").await.0,
        StatusCode::BAD_REQUEST,
        "a label until 2.94"
    );
    assert_eq!(create("2.90", "-bad").await.0, StatusCode::BAD_REQUEST);
    let (st, v) = create("2.94", "web1.example.com").await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    let id = v["server"]["id"].as_str().unwrap().to_owned();
    let s = c.wait_status(&c.admin.mv("2.94"), &id, "ACTIVE").await;
    assert_eq!(s["OS-EXT-SRV-ATTR:hostname"], "web1.example.com");
    let (st, v) = c
        .get(
            &c.admin.mv("2.78"),
            &format!("/compute/v2.1/servers/{id}/topology"),
        )
        .await;
    assert_eq!(
        (st, v),
        (StatusCode::OK, json!({"nodes": [], "pagesize_kb": null}))
    );
    assert_eq!(
        c.get(
            &c.admin.mv("2.77"),
            &format!("/compute/v2.1/servers/{id}/topology")
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn members_filter_by_state_fields_from_2_83() {
    let c = Cloud::start().await;
    let bob = c.new_member("bob").await;
    let img = c.image(&bob, "img", b"x").await;
    let up = c.server(&bob, "up", &img, json!({})).await;
    let down = c
        .server(&bob, "down", &img, json!({"config_drive": true}))
        .await;
    c.wait_status(&bob, &up, "ACTIVE").await;
    c.wait_status(&bob, &down, "ACTIVE").await;
    c.action(&bob, &down, json!({"os-stop": null})).await;
    c.wait_status(&bob, &down, "SHUTOFF").await;
    let names = |v: &serde_json::Value| -> Vec<String> {
        let mut n: Vec<String> = v["servers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_owned())
            .collect();
        n.sort();
        n
    };
    let b83 = bob.mv("2.83");
    let (_, v) = c.get(&b83, "/compute/v2.1/servers?power_state=4").await;
    assert_eq!(names(&v), ["down"]);
    let (_, v) = c.get(&b83, "/compute/v2.1/servers?config_drive=True").await;
    assert_eq!(names(&v), ["down"]);
    let (_, v) = c
        .get(&b83, "/compute/v2.1/servers?progress=100&vm_state=active")
        .await;
    assert_eq!(names(&v), ["up"]);
    let year = chrono::Utc::now().format("%Y").to_string();
    let (_, v) = c
        .get(&b83, &format!("/compute/v2.1/servers?created_at={year}"))
        .await;
    assert_eq!(names(&v), ["down", "up"]);
    // Before 2.83 these filters are silently ignored for members, as Nova does.
    let (_, v) = c
        .get(&bob.mv("2.82"), "/compute/v2.1/servers?power_state=4")
        .await;
    assert_eq!(names(&v), ["down", "up"]);
    let (st, _) = c.get(&b83, "/compute/v2.1/servers?power_state=(").await;
    assert_eq!(
        st,
        StatusCode::BAD_REQUEST,
        "a bad regex is the client's mistake"
    );
}

/// Soft delete (Nova's reclaim_instance_interval): a delete parks the server in
/// SOFT_DELETED, `restore` brings it back, `forceDelete` removes it at once, and the
/// reconciler reclaims what nobody restored once the window has passed.
#[tokio::test]
async fn soft_deleted_servers_restore_force_delete_or_get_reclaimed() {
    let c = Cloud::start_with(|cfg| {
        cfg.control.reclaim_interval = Some(std::time::Duration::from_millis(1500));
    })
    .await;
    let bob = c.new_member("bob").await;
    let (keep, _) = active_server(&c, &bob, "keep").await;
    let (gone, _) = active_server(&c, &bob, "gone").await;
    let path = |id: &str| format!("/compute/v2.1/servers/{id}");
    // Restore before the window ends: back to ACTIVE, with the action logged.
    assert_eq!(c.delete(&bob, &path(&keep)).await.0, StatusCode::NO_CONTENT);
    let s = c.wait_status(&bob, &keep, "SOFT_DELETED").await;
    assert_eq!(s["OS-EXT-STS:vm_state"], "soft-delete");
    assert_eq!(
        c.action(&bob, &keep, json!({"restore": null})).await.0,
        StatusCode::ACCEPTED
    );
    c.wait_status(&bob, &keep, "ACTIVE").await;
    // restore of a server that is not soft-deleted is a 409.
    let (st, v) = c.action(&bob, &keep, json!({"restore": null})).await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    // forceDelete skips the window.
    assert_eq!(c.delete(&bob, &path(&keep)).await.0, StatusCode::NO_CONTENT);
    c.wait_status(&bob, &keep, "SOFT_DELETED").await;
    assert_eq!(
        c.action(&bob, &keep, json!({"forceDelete": null})).await.0,
        StatusCode::ACCEPTED
    );
    c.wait_gone(&bob, &keep).await;
    // Left alone, a soft-deleted server is reclaimed after the window.
    assert_eq!(c.delete(&bob, &path(&gone)).await.0, StatusCode::NO_CONTENT);
    c.wait_status(&bob, &gone, "SOFT_DELETED").await;
    c.wait_gone(&bob, &gone).await;
    let (_, v) = c.get(&bob, "/compute/v2.1/servers").await;
    assert_eq!(v["servers"].as_array().unwrap().len(), 0, "{v}");
}

/// Private flavors: invisible to projects without access, granted and revoked with
/// add/removeTenantAccess, listed by os-flavor-access; public flavors have no access list.
#[tokio::test]
async fn private_flavors_follow_their_access_list() {
    let c = Cloud::start().await;
    let a = &c.admin;
    let bob = c.new_member("bob").await;
    let (st, v) = c
        .post(
            a,
            "/compute/v2.1/flavors",
            json!({"flavor": {"name": "secret", "id": "priv-1", "ram": 128, "vcpus": 1, "disk": 1,
                              "os-flavor-access:is_public": false}}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["flavor"]["os-flavor-access:is_public"], false);
    let visible = |v: &serde_json::Value| -> bool {
        v["flavors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["id"] == "priv-1")
    };
    let (_, v) = c.get(&bob, "/compute/v2.1/flavors").await;
    assert!(!visible(&v), "{v}");
    assert_eq!(
        c.get(&bob, "/compute/v2.1/flavors/priv-1").await.0,
        StatusCode::NOT_FOUND
    );
    // Admins see private flavors with is_public=None (all) and can list access.
    let (_, v) = c.get(a, "/compute/v2.1/flavors?is_public=None").await;
    assert!(visible(&v), "{v}");
    let access = "/compute/v2.1/flavors/priv-1/os-flavor-access";
    let (st, v) = c.get(a, access).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["flavor_access"], json!([]));
    let act = "/compute/v2.1/flavors/priv-1/action";
    let (st, v) = c
        .post(
            a,
            act,
            json!({"addTenantAccess": {"tenant": bob.project_id}}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(
        v["flavor_access"],
        json!([{"flavor_id": "priv-1", "tenant_id": bob.project_id}])
    );
    // Granting twice is Nova's 409.
    let (st, _) = c
        .post(
            a,
            act,
            json!({"addTenantAccess": {"tenant": bob.project_id}}),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT);
    let (_, v) = c.get(&bob, "/compute/v2.1/flavors").await;
    assert!(visible(&v), "{v}");
    assert_eq!(
        c.get(&bob, "/compute/v2.1/flavors/priv-1").await.0,
        StatusCode::OK
    );
    // Members may not change access.
    let (st, _) = c
        .post(
            &bob,
            act,
            json!({"removeTenantAccess": {"tenant": bob.project_id}}),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, v) = c
        .post(
            a,
            act,
            json!({"removeTenantAccess": {"tenant": bob.project_id}}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["flavor_access"], json!([]));
    let (_, v) = c.get(&bob, "/compute/v2.1/flavors").await;
    assert!(!visible(&v), "{v}");
    // A public flavor has no access list (Nova: 404 "Access list not available for public
    // flavors.").
    let (st, v) = c.get(a, "/compute/v2.1/flavors/1/os-flavor-access").await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");
}
