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

/// Run a shell command on the guest's serial console (the socket in its instance
/// directory) and answer its output. The output is read from the socket itself: it keeps
/// the socket drained (QEMU stalls the guest's serial output when a connected client does
/// not read) and is exact (QEMU's logfile can double a byte written while the client's
/// socket was full).
async fn guest_sh(instance: &Path, cmd: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let n = 1000 + (uuid::Uuid::new_v4().as_u128() % 9000) as u32;
    let (begin, end) = (format!("Q{}B\n", n + 1), format!("Q{}E", n + 1));
    let mut s = tokio::net::UnixStream::connect(instance.join("serial.sock"))
        .await
        .expect("serial console");
    let line = format!(
        "{{ {cmd}; }} >/tmp/o 2>&1; echo Q$(({n} + 1))B; cat /tmp/o; echo Q$(({n} + 1))E\n"
    );
    s.write_all(line.as_bytes()).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut got = Vec::new();
    loop {
        let text = String::from_utf8_lossy(&got)
            .replace("\r\n", "\n")
            .replace('\r', "");
        if let Some(e) = text.find(&end)
            && let Some(b) = text[..e].rfind(&begin)
        {
            return text[b + begin.len()..e].to_owned();
        }
        let mut chunk = [0u8; 4096];
        match tokio::time::timeout_at(deadline, s.read(&mut chunk)).await {
            Ok(Ok(k)) if k > 0 => got.extend_from_slice(&chunk[..k]),
            r => panic!("{cmd:?} did not finish ({r:?}):\n{text}"),
        }
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
    // The guest's NIC is on the public network's switch and got the address the API shows
    // by DHCP from it; the switch's counters reach the diagnostics.
    let public = &s["addresses"]["public"][0];
    let ip = public["addr"].as_str().expect("a public IPv4 address");
    assert!(
        out.contains(&format!("GUEST-READY ip={ip}/")),
        "{ip}: {out}"
    );
    let (st, d) = c
        .get(
            &a.mv("2.48"),
            &format!("/compute/v2.1/servers/{id}/diagnostics"),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{d}");
    let nic = &d["nic_details"][0];
    assert_eq!(nic["mac_address"], public["OS-EXT-IPS-MAC:mac_addr"], "{d}");
    assert!(
        nic["rx_packets"].as_u64() >= Some(2) && nic["tx_packets"].as_u64() >= Some(2),
        "DHCP went through the switch: {d}"
    );

    // Cyclades: a private network with DHCP, connected while the guest runs (hot-plug),
    // a firewall profile on the new NIC, then disconnected; all through the controller.
    let instance = c.dir.path().join("qemu").join("instances").join(&id);
    let cy = |path: &str| format!("/compute/v2.0{path}");
    let (_, list) = c.get(a, &cy("/servers")).await;
    let serial = list["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "guest")
        .map(|v| v["id"].to_string())
        .expect("the guest in the Cyclades list");
    let (st, v) = c
        .post(
            a,
            &cy("/networks"),
            json!({"network": {"name": "back", "type": "MAC_FILTERED", "cidr": "10.9.0.0/24"}}),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    let net = v["network"]["id"].as_str().unwrap().to_owned();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while c.get(a, &cy(&format!("/networks/{net}"))).await.1["network"]["status"] != "ACTIVE" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "network never ACTIVE"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (st, v) = c
        .post(
            a,
            &cy(&format!("/networks/{net}/action")),
            json!({"add": {"serverRef": serial}}),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    let (_, v) = c.get(a, &cy(&format!("/servers/{serial}/ips/{net}"))).await;
    let ip = v["network"]["ipv4"]
        .as_str()
        .expect("an address on back")
        .to_owned();
    let out = guest_sh(
        &instance,
        "for i in $(seq 100); do [ -e /sys/class/net/eth1 ] && break; sleep 0.2; done; \
         ip link set eth1 up; udhcpc -i eth1 -q -n -t 5 -T 1 -s /etc/udhcpc.script; \
         ip -o addr show dev eth1",
    )
    .await;
    assert!(out.contains(&format!("inet {ip}/24 ")), "{ip}: {out}");
    let (st, v) = c
        .post(
            a,
            &cy(&format!("/servers/{serial}/action")),
            json!({"firewallProfile": {"profile": "PROTECTED", "nic": format!("nic-{serial}-1")}}),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    let rec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(instance.join("instance.json")).unwrap()).unwrap();
    assert_eq!(rec["spec"]["nics"][1]["firewall"], "PROTECTED", "{rec}");
    let (st, v) = c
        .post(
            a,
            &cy(&format!("/networks/{net}/action")),
            json!({"remove": {"serverRef": serial}}),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    let rec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(instance.join("instance.json")).unwrap()).unwrap();
    assert_eq!(rec["spec"]["nics"].as_array().unwrap().len(), 1, "{rec}");
    let out = guest_sh(
        &instance,
        "for i in $(seq 50); do [ -e /sys/class/net/eth1 ] || break; sleep 0.2; done; ls /sys/class/net",
    )
    .await;
    assert!(!out.contains("eth1"), "hot-unplugged: {out}");

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

/// Power actions, resize and guest-initiated changes of a real guest through the OpenStack
/// API: pause/unpause and suspend/resume keep the guest (no new boot), soft and hard reboots
/// boot it again, a resize boots it with the new flavor's memory, a guest that powers
/// itself off and a QEMU killed with SIGKILL both end SHUTOFF (plain servers: nothing
/// restarts them; the HA restart is tested on the fake driver).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_guest_power_actions_resize_and_guest_initiated_changes() {
    let image = test_image().to_path_buf();
    let c = Cloud::start_with(move |cfg| {
        cfg.driver = nimbus::Driver::Qemu;
        cfg.qemu.test_image = Some(image);
    })
    .await;
    let a = &c.admin;
    let (_, imgs) = c.get(a, "/image/v2/images?name=nimbus-test").await;
    let img = imgs["images"][0]["id"].as_str().unwrap().to_owned();
    let id = c.server(a, "power", &img, json!({})).await;
    let settled = |status: &'static str| {
        move |v: &serde_json::Value| v["status"] == status && v["OS-EXT-STS:task_state"].is_null()
    };
    c.wait_for(a, &id, "ACTIVE", settled("ACTIVE")).await;
    wait_marker(&c, &id, 1).await;
    let instance = c.dir.path().join("qemu").join("instances").join(&id);

    // Pause and suspend keep the same boot: the guest still answers, no second marker.
    for (act, undo, status, power) in [
        ("pause", "unpause", "PAUSED", 3),
        ("suspend", "resume", "SUSPENDED", 7),
    ] {
        assert_eq!(
            c.action(a, &id, json!({act: null})).await.0,
            StatusCode::ACCEPTED
        );
        let s = c.wait_for(a, &id, status, settled(status)).await;
        assert_eq!(s["OS-EXT-STS:power_state"], power, "{act}: {s}");
        assert_eq!(
            c.action(a, &id, json!({undo: null})).await.0,
            StatusCode::ACCEPTED
        );
        c.wait_for(a, &id, "ACTIVE", settled("ACTIVE")).await;
        assert_eq!(
            guest_sh(&instance, "echo alive").await.trim(),
            "alive",
            "{undo}"
        );
    }
    assert_eq!(console(&c, &id).await.matches("GUEST-READY").count(), 1);

    // Soft and hard reboots boot the guest again.
    for (n, kind) in [(2, "SOFT"), (3, "HARD")] {
        assert_eq!(
            c.action(a, &id, json!({"reboot": {"type": kind}})).await.0,
            StatusCode::ACCEPTED
        );
        c.wait_for(a, &id, "ACTIVE", settled("ACTIVE")).await;
        wait_marker(&c, &id, n).await;
    }

    // Resize to m1.small (2 GiB): the guest boots with the new memory; confirm keeps it.
    assert_eq!(
        c.action(a, &id, json!({"resize": {"flavorRef": "2"}}))
            .await
            .0,
        StatusCode::ACCEPTED
    );
    c.wait_for(a, &id, "VERIFY_RESIZE", settled("VERIFY_RESIZE"))
        .await;
    wait_marker(&c, &id, 4).await;
    let mem = guest_sh(&instance, "grep MemTotal /proc/meminfo").await;
    let kib: u64 = mem
        .split_whitespace()
        .nth(1)
        .and_then(|k| k.parse().ok())
        .unwrap_or_else(|| panic!("{mem}"));
    assert!(kib > 1536 * 1024, "resized guest sees {kib} KiB");
    assert_eq!(
        c.action(a, &id, json!({"confirmResize": null})).await.0,
        StatusCode::NO_CONTENT
    );
    let s = c.wait_for(a, &id, "ACTIVE", settled("ACTIVE")).await;
    assert_eq!(s["flavor"]["id"], "2", "{s}");

    // The guest powers itself off: SHUTOFF, with the cause in the fault.
    let mut serial = tokio::net::UnixStream::connect(instance.join("serial.sock"))
        .await
        .unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut serial, b"poweroff -f\n")
        .await
        .unwrap();
    let s = c.wait_for(a, &id, "SHUTOFF", settled("SHUTOFF")).await;
    drop(serial);
    assert_eq!(s["OS-EXT-STS:power_state"], 4, "{s}");

    // Start it again, then kill QEMU outright: SHUTOFF with a fault naming the crash.
    assert_eq!(
        c.action(a, &id, json!({"os-start": null})).await.0,
        StatusCode::ACCEPTED
    );
    c.wait_for(a, &id, "ACTIVE", settled("ACTIVE")).await;
    wait_marker(&c, &id, 5).await;
    let pid = std::fs::read_to_string(instance.join("qemu.pid")).unwrap();
    let killed = std::process::Command::new("kill")
        .args(["-KILL", pid.trim()])
        .status()
        .unwrap();
    assert!(killed.success());
    let s = c.wait_for(a, &id, "SHUTOFF", settled("SHUTOFF")).await;
    assert_eq!(s["OS-EXT-STS:power_state"], 6, "crashed: {s}");
    let (_, v) = c
        .get(
            a,
            &format!("/compute/v2.1/servers/{id}/os-instance-actions"),
        )
        .await;
    assert!(v.to_string().contains("stop"), "{v}");
    assert_eq!(
        c.delete(a, &format!("/compute/v2.1/servers/{id}")).await.0,
        StatusCode::NO_CONTENT
    );
    c.wait_gone(a, &id).await;
}
