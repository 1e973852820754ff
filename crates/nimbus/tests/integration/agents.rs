//! Compute agents as separate processes (`nimbus agent`) under one controller: registration,
//! spreading, actions and snapshots over the internal API, host-down detection.

use crate::common::*;
use reqwest::StatusCode;
use serde_json::json;
use std::time::Duration;

const SECRET: &str = "test-agent-secret";

/// A `nimbus agent` child process, killed when dropped.
struct AgentProcess {
    child: tokio::process::Child,
}

fn spawn_agent(
    controller: &str,
    ip: &str,
    name: &str,
    dir: &std::path::Path,
    vcpus: u32,
) -> AgentProcess {
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_nimbus"))
        .args([
            "agent",
            "--controller",
            controller,
            "--listen",
            &format!("{ip}:0"),
            "--secret",
            SECRET,
            "--name",
            name,
            "--data-dir",
            dir.join(name).to_str().unwrap(),
            "--fake-spawn-delay",
            "50ms",
            "--fake-action-delay",
            "20ms",
            "--host-vcpus",
            &vcpus.to_string(),
            "--cpu-allocation-ratio",
            "1.0",
            "--driver",
            "fake",
            "--heartbeat-interval",
            "200ms",
        ])
        .env("NIMBUS_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .expect("nimbus agent starts");
    AgentProcess { child }
}

async fn wait_hosts(c: &Cloud, up: &[&str], down: &[&str]) {
    let ctx = c.ctx(&c.admin).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let hosts = c.control().hosts_list(&ctx).await.unwrap();
        let state = |n: &str| hosts.iter().find(|h| h.host.name == n).map(|h| h.host.up);
        if up.iter().all(|n| state(n) == Some(true)) && down.iter().all(|n| state(n) == Some(false))
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "hosts never reached up={up:?} down={down:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn host_of(s: &serde_json::Value) -> String {
    s["OS-EXT-SRV-ATTR:host"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn two_agent_processes_share_the_load_and_a_dead_one_is_avoided() {
    let c = Cloud::start_with(|cfg| {
        cfg.driver = nimbus::Driver::None;
        cfg.control.agent_secret = Some(SECRET.into());
        cfg.control.service_down_time = Duration::from_secs(2);
    })
    .await;
    let a = &c.admin;
    let dir = tempfile::tempdir().unwrap();
    let mut alpha = spawn_agent(&c.url, "127.0.0.2", "alpha", dir.path(), 8);
    let _beta = spawn_agent(&c.url, "127.0.0.3", "beta", dir.path(), 8);
    wait_hosts(&c, &["alpha", "beta"], &[]).await;

    // The scheduler spreads servers over both hosts.
    let img = c.image(a, "img", b"bytes").await;
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(c.server(a, &format!("s{i}"), &img, json!({})).await);
    }
    let mut hosts = Vec::new();
    for id in &ids {
        hosts.push(host_of(&c.wait_status(a, id, "ACTIVE").await));
    }
    hosts.sort();
    assert_eq!(hosts, ["alpha", "alpha", "beta", "beta"]);

    // Actions, console and snapshots work through the remote agents.
    let on_alpha = {
        let mut found = None;
        for id in &ids {
            let (_, v) = c.get(a, &format!("/compute/v2.1/servers/{id}")).await;
            if host_of(&v["server"]) == "alpha" {
                found = Some(id.clone());
            }
        }
        found.unwrap()
    };
    assert_eq!(
        c.action(a, &on_alpha, json!({"reboot": {"type": "HARD"}}))
            .await
            .0,
        StatusCode::ACCEPTED
    );
    c.wait_status(a, &on_alpha, "ACTIVE").await;
    let (st, out) = c
        .action(a, &on_alpha, json!({"os-getConsoleOutput": {}}))
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        out["output"]
            .as_str()
            .unwrap()
            .matches("GUEST-READY")
            .count(),
        2
    );
    let (st, body) = c
        .action(
            &a.mv("2.45"),
            &on_alpha,
            json!({"createImage": {"name": "snap"}}),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{body}");
    let snap = body["image_id"].as_str().unwrap().to_owned();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, img) = c.get(a, &format!("/image/v2/images/{snap}")).await;
        if img["status"] == "active" {
            assert!(img["size"].as_u64().unwrap() > 0);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "snapshot never became active: {img}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Kill alpha: it is marked down, new servers go to beta, actions on its servers are
    // refused, and deleting one still works (locally).
    alpha.child.kill().await.unwrap();
    wait_hosts(&c, &["beta"], &["alpha"]).await;
    let (_, v) = c
        .get(
            &a.mv("2.53"),
            "/compute/v2.1/os-services?binary=nova-compute",
        )
        .await;
    let alpha_svc = v["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["host"] == "alpha")
        .cloned()
        .unwrap();
    assert_eq!(alpha_svc["state"], "down", "{alpha_svc}");
    for i in 0..2 {
        let id = c.server(a, &format!("after{i}"), &img, json!({})).await;
        assert_eq!(host_of(&c.wait_status(a, &id, "ACTIVE").await), "beta");
    }
    let (st, body) = c.action(a, &on_alpha, json!({"os-stop": null})).await;
    assert_eq!(st, StatusCode::CONFLICT, "{body}");
    assert!(
        body["conflictingRequest"]["message"]
            .as_str()
            .unwrap()
            .contains("down")
    );
    assert_eq!(
        c.delete(a, &format!("/compute/v2.1/servers/{on_alpha}"))
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    c.wait_gone(a, &on_alpha).await;

    // Alpha comes back: it registers again (same host), is up, and no longer runs the
    // guest that was deleted while it was away.
    let _alpha = spawn_agent(&c.url, "127.0.0.2", "alpha", dir.path(), 8);
    wait_hosts(&c, &["alpha", "beta"], &[]).await;
}

#[tokio::test]
async fn the_internal_api_needs_the_secret() {
    let c = Cloud::start_with(|cfg| cfg.control.agent_secret = Some(SECRET.into())).await;
    let r = c
        .http
        .post(format!("{}/internal/v1/hosts/register", c.url))
        .json(&json!({"address": "http://127.0.0.9:1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = c
        .http
        .post(format!("{}/internal/v1/hosts/register", c.url))
        .header("authorization", "Bearer wrong")
        .json(&json!({"address": "http://127.0.0.9:1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // With the secret, an unreachable agent address is refused cleanly.
    let r = c
        .http
        .post(format!("{}/internal/v1/hosts/register", c.url))
        .header("authorization", format!("Bearer {SECRET}"))
        .json(&json!({"address": "http://127.0.0.9:1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    // Without a configured secret the internal API does not exist.
    let plain = Cloud::start().await;
    let r = plain
        .http
        .post(format!("{}/internal/v1/hosts/register", plain.url))
        .header("authorization", format!("Bearer {SECRET}"))
        .json(&json!({"address": "http://x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn zero_periods_are_refused_at_start() {
    // A zero period would stop the reconciler loop using it (tokio's interval panics) or
    // spin a heartbeat loop; a zero timeout would fail every agent call.
    for args in [
        &["serve", "--power-sync-interval", "0s"][..],
        &["serve", "--agent-call-timeout", "0ms"],
        &["serve", "--agent-long-call-timeout", "0s"],
        &["agent", "--heartbeat-interval", "0s"],
    ] {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_nimbus"))
            .args(args)
            .env("NIMBUS_LOG", "warn")
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(Duration::from_secs(20), out)
            .await
            .expect("a zero period is refused at once")
            .unwrap();
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("for '{}", args[1])) && err.contains("is zero"),
            "{args:?}: {err}"
        );
    }
}

#[tokio::test]
async fn an_empty_secret_is_refused_at_start() {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_nimbus"))
        .args([
            "agent",
            "--controller",
            "http://127.0.0.1:9",
            "--listen",
            "127.0.0.1:0",
            "--secret",
            "",
            "--driver",
            "fake",
        ])
        .env("NIMBUS_LOG", "warn")
        .env_remove("NIMBUS_AGENT_SECRET")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(20), out)
        .await
        .expect("an agent with an empty secret exits at once")
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--secret is empty"), "{err}");
    // The controller refuses one too: "Bearer " would let anybody in.
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(dir.path());
    cfg.control.agent_secret = Some(" ".into());
    let err = nimbus::start(cfg).await.err().expect("refused").to_string();
    assert!(err.contains("--agent-secret is empty"), "{err}");
}

/// An agent speaks only for the servers on its own host: events naming another host's
/// server are refused (403) and change nothing; the same event from the server's own host
/// is applied.
#[tokio::test]
async fn an_agent_cannot_post_events_for_another_hosts_server() {
    let c = Cloud::start_with(|cfg| cfg.control.agent_secret = Some(SECRET.into())).await;
    let a = &c.admin;
    let img = c.image(a, "img", b"bytes").await;
    // Created while the in-process agent is the only host, so it lands there.
    let id = c.server(a, "s", &img, json!({})).await;
    let local = host_of(&c.wait_status(a, &id, "ACTIVE").await);
    let dir = tempfile::tempdir().unwrap();
    let _beta = spawn_agent(&c.url, "127.0.0.3", "beta", dir.path(), 8);
    wait_hosts(&c, &["beta"], &[]).await;
    let hosts = c.control().hosts_list(&c.ctx(a).await).await.unwrap();
    let host_id = |name: &str| {
        hosts
            .iter()
            .find(|h| h.host.name == name)
            .map(|h| h.host.id.to_string())
            .unwrap()
    };
    let post = |host: String| {
        c.http
            .post(format!("{}/internal/v1/hosts/{host}/events", c.url))
            .header("authorization", format!("Bearer {SECRET}"))
            .json(
                &json!([{"kind": "power_state", "server_id": id, "power_state": "shutdown",
                           "reason": "spoofed"}]),
            )
            .send()
    };
    let r = post(host_id("beta")).await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(
        body["message"].as_str().unwrap_or_default().contains(&id),
        "{body}"
    );
    let (_, s) = c.get(a, &format!("/compute/v2.1/servers/{id}")).await;
    assert_eq!(s["server"]["status"], "ACTIVE", "nothing was applied");
    assert_eq!(s["server"]["OS-EXT-STS:power_state"], 1);

    let r = post(host_id(&local)).await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    c.wait_status(a, &id, "SHUTOFF").await;
}
