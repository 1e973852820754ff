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
