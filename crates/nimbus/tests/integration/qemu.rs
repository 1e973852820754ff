//! The whole stack on real guests: OpenStack API → control → in-process agent → QEMU (TCG).
//! Needs QEMU (`scripts/install-qemu.sh`) and builds the guest test image if missing; fails
//! (never skips) without them.

use crate::common::*;
use reqwest::StatusCode;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

const HINT: &str = "run `sudo scripts/install-qemu.sh` (QEMU and the image tools)";

fn test_image() -> &'static Path {
    static IMAGE: OnceLock<PathBuf> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let ok = std::process::Command::new("qemu-system-x86_64")
            .arg("--version")
            .output();
        assert!(
            ok.is_ok_and(|o| o.status.success()),
            "qemu-system-x86_64 is not installed: {HINT}"
        );
        if let Ok(p) = std::env::var("NIMBUS_TEST_IMAGE") {
            return PathBuf::from(p);
        }
        let ws = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let out = ws.join("target/test-image");
        let status = std::process::Command::new("bash")
            .arg(ws.join("scripts/build-test-image.sh"))
            .arg(&out)
            .status()
            .expect("run scripts/build-test-image.sh");
        assert!(
            status.success(),
            "scripts/build-test-image.sh failed; {HINT}"
        );
        out.join("nimbus-test.qcow2")
    })
}

async fn console(c: &Cloud, id: &str) -> String {
    let (_, v) = c
        .action(&c.admin, id, json!({"os-getConsoleOutput": {}}))
        .await;
    v["output"].as_str().unwrap_or_default().to_owned()
}

/// Wait until the console shows `n` readiness markers (boots under TCG take seconds, and
/// longer on a loaded machine).
async fn wait_marker(c: &Cloud, id: &str, n: usize) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    loop {
        let out = console(c, id).await;
        if out.matches("GUEST-READY").count() >= n {
            return out;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never saw {n} GUEST-READY markers:\n{out}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_guest_through_the_openstack_api() {
    let image = test_image().to_path_buf();
    let c = Cloud::start_with(move |cfg| {
        cfg.driver = nimbus::Driver::Qemu;
        cfg.qemu.test_image = Some(image);
        cfg.host.ram_allocation_ratio = 1.0;
    })
    .await;
    let a = &c.admin;
    // The guest image was imported as the public `nimbus-test` image.
    let (_, imgs) = c.get(a, "/image/v2/images?name=nimbus-test").await;
    let img = imgs["images"][0]["id"]
        .as_str()
        .expect("nimbus-test image")
        .to_owned();
    assert_eq!(imgs["images"][0]["disk_format"], "qcow2");
    let (_, hv) = c.get(a, "/compute/v2.1/os-hypervisors/detail").await;
    assert_eq!(hv["hypervisors"][0]["hypervisor_type"], "QEMU", "{hv}");

    let id = c.server(a, "guest", &img, json!({})).await;
    let s = c
        .wait_for(a, &id, "ACTIVE", |v| v["status"] == "ACTIVE")
        .await;
    assert_eq!(s["OS-EXT-STS:power_state"], 1);
    let out = wait_marker(&c, &id, 1).await;
    assert!(out.contains("GUEST-READY"), "{out}");

    // A snapshot of the running guest becomes an active qcow2 image.
    let (st, body) = c
        .action(&a.mv("2.45"), &id, json!({"createImage": {"name": "snap"}}))
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{body}");
    let snap = body["image_id"].as_str().unwrap().to_owned();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let (_, v) = c.get(a, &format!("/image/v2/images/{snap}")).await;
        if v["status"] == "active" {
            assert_eq!(v["disk_format"], "qcow2");
            assert!(v["size"].as_u64().unwrap() > 1024 * 1024);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "snapshot never became active: {v}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    c.wait_status(a, &id, "ACTIVE").await;

    // Stop really stops QEMU; start boots it again (a second marker).
    assert_eq!(
        c.action(a, &id, json!({"os-stop": null})).await.0,
        StatusCode::ACCEPTED
    );
    let s = c
        .wait_for(a, &id, "SHUTOFF", |v| {
            v["status"] == "SHUTOFF" && v["OS-EXT-STS:task_state"].is_null()
        })
        .await;
    assert_eq!(s["OS-EXT-STS:power_state"], 4);
    assert_eq!(
        c.action(a, &id, json!({"os-start": null})).await.0,
        StatusCode::ACCEPTED
    );
    c.wait_for(a, &id, "ACTIVE", |v| {
        v["status"] == "ACTIVE" && v["OS-EXT-STS:task_state"].is_null()
    })
    .await;
    wait_marker(&c, &id, 2).await;

    // Delete removes the guest and its files.
    let dir = c.dir.path().join("qemu").join("instances").join(&id);
    assert!(dir.exists(), "{}", dir.display());
    assert_eq!(
        c.delete(a, &format!("/compute/v2.1/servers/{id}")).await.0,
        StatusCode::NO_CONTENT
    );
    c.wait_gone(a, &id).await;
    assert!(
        !dir.exists(),
        "instance files left behind in {}",
        dir.display()
    );
}
