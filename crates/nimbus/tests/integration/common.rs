//! Test harness: start a cloud, log in, make requests, wait for states.

#![allow(dead_code)]

use nimbus::{Running, ServeConfig};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;

/// A running Nimbus for one test.
pub struct Cloud {
    pub running: Option<Running>,
    pub url: String,
    pub http: reqwest::Client,
    pub admin: Session,
    pub config: ServeConfig,
    pub dir: tempfile::TempDir,
}

/// A logged-in user.
#[derive(Clone, Debug)]
pub struct Session {
    pub token: String,
    pub project_id: String,
    pub user_id: String,
    pub microversion: Option<String>,
}

impl Session {
    /// The same credentials speaking another compute microversion.
    pub fn mv(&self, v: &str) -> Session {
        Session {
            microversion: Some(v.to_owned()),
            ..self.clone()
        }
    }
}

pub const ADMIN_PASSWORD: &str = "admin-secret";

/// Test defaults: fast fake driver, cheap password hashing, private data dir.
pub fn test_config(dir: &std::path::Path) -> ServeConfig {
    let mut cfg = ServeConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.to_path_buf(),
        admin_password: Some(ADMIN_PASSWORD.into()),
        write_clouds_yaml: false,
        ..ServeConfig::default()
    };
    cfg.fake.spawn_delay = Duration::from_millis(60);
    cfg.fake.action_delay = Duration::from_millis(20);
    cfg.control.argon2_m_kib = 256;
    cfg.control.argon2_t = 1;
    cfg
}

impl Cloud {
    pub async fn start() -> Cloud {
        Self::start_with(|_| {}).await
    }

    /// Start with a tweaked configuration.
    pub async fn start_with(tweak: impl FnOnce(&mut ServeConfig)) -> Cloud {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cfg = test_config(dir.path());
        tweak(&mut cfg);
        Self::start_in(dir, cfg).await
    }

    async fn start_in(dir: tempfile::TempDir, cfg: ServeConfig) -> Cloud {
        let running = nimbus::start(cfg.clone()).await.expect("nimbus starts");
        let url = running.public_url.clone();
        let http = reqwest::Client::new();
        let admin = login(&http, &url, "admin", ADMIN_PASSWORD, "admin").await;
        Cloud {
            running: Some(running),
            url,
            http,
            admin,
            config: cfg,
            dir,
        }
    }

    /// Stop the service (as a crash or a SIGTERM would) and start it again on the same
    /// database and data directory.
    pub async fn restart(mut self) -> Cloud {
        if let Some(r) = self.running.take() {
            r.stop().await;
        }
        let Cloud { dir, config, .. } = self;
        Self::start_in(dir, config).await
    }

    pub fn control(&self) -> &nimbus_control::Control {
        &self.running.as_ref().expect("running").control
    }

    /// A request with the session's token and microversion.
    pub fn req(&self, s: &Session, method: Method, path: &str) -> reqwest::RequestBuilder {
        let mut r = self
            .http
            .request(method, format!("{}{path}", self.url))
            .header("X-Auth-Token", &s.token);
        if let Some(v) = &s.microversion {
            r = r.header("OpenStack-API-Version", format!("compute {v}"));
        }
        r
    }

    /// Send and decode: (status, JSON body or Null).
    pub async fn call(
        &self,
        s: &Session,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut r = self.req(s, method, path);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.expect("request sent");
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let v = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, v)
    }

    pub async fn get(&self, s: &Session, path: &str) -> (StatusCode, Value) {
        self.call(s, Method::GET, path, None).await
    }

    pub async fn post(&self, s: &Session, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(s, Method::POST, path, Some(body)).await
    }

    pub async fn put(&self, s: &Session, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(s, Method::PUT, path, Some(body)).await
    }

    pub async fn delete(&self, s: &Session, path: &str) -> (StatusCode, Value) {
        self.call(s, Method::DELETE, path, None).await
    }

    /// Create a project and a member user in it; log in as them.
    pub async fn new_member(&self, name: &str) -> Session {
        let (st, p) = self
            .post(
                &self.admin,
                "/identity/v3/projects",
                json!({"project": {"name": name, "domain_id": "default"}}),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{p}");
        let pid = p["project"]["id"].as_str().unwrap().to_owned();
        let (st, u) = self
            .post(
                &self.admin,
                "/identity/v3/users",
                json!({"user": {"name": name, "password": "pw-".to_owned() + name, "default_project_id": pid}}),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{u}");
        let uid = u["user"]["id"].as_str().unwrap().to_owned();
        let (_, roles) = self
            .get(&self.admin, "/identity/v3/roles?name=member")
            .await;
        let rid = roles["roles"][0]["id"].as_str().unwrap().to_owned();
        let (st, _) = self
            .call(
                &self.admin,
                Method::PUT,
                &format!("/identity/v3/projects/{pid}/users/{uid}/roles/{rid}"),
                None,
            )
            .await;
        assert_eq!(st, StatusCode::NO_CONTENT);
        login(&self.http, &self.url, name, &format!("pw-{name}"), name).await
    }

    /// Register an active image owned by the session's project, with `bytes` as its data,
    /// through the Glance API (create, then upload).
    pub async fn image(&self, s: &Session, name: &str, bytes: &[u8]) -> String {
        let (st, img) = self
            .post(
                s,
                "/image/v2/images",
                json!({"name": name, "disk_format": "raw", "container_format": "bare"}),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "image create: {img}");
        let id = img["id"].as_str().expect("image id").to_owned();
        let resp = self
            .req(s, Method::PUT, &format!("/image/v2/images/{id}/file"))
            .header("content-type", "application/octet-stream")
            .body(bytes.to_vec())
            .send()
            .await
            .expect("upload sent");
        assert_eq!(resp.status(), StatusCode::NO_CONTENT, "image upload");
        id
    }

    /// The control-layer context of a session (for fixtures).
    pub async fn ctx(&self, s: &Session) -> nimbus_model::identity::Context {
        let info = self
            .control()
            .validate_token(&s.token)
            .await
            .expect("valid token");
        info.context(nimbus_model::request_id())
            .expect("scoped token")
    }

    /// Create one server (2.1 body: no networks) and return its id.
    pub async fn server(&self, s: &Session, name: &str, image: &str, extra: Value) -> String {
        let mut server = json!({"name": name, "imageRef": image, "flavorRef": "1"});
        let needs_networks = s
            .microversion
            .as_deref()
            .and_then(|v| v.strip_prefix("2."))
            .and_then(|m| m.parse::<u32>().ok())
            .is_some_and(|m| m >= 37);
        if needs_networks {
            server["networks"] = json!("auto");
        }
        if let Value::Object(m) = extra {
            for (k, v) in m {
                server[k] = v;
            }
        }
        let (st, body) = self
            .post(s, "/compute/v2.1/servers", json!({"server": server}))
            .await;
        assert_eq!(st, StatusCode::ACCEPTED, "create: {body}");
        body["server"]["id"].as_str().unwrap().to_owned()
    }

    /// Poll a server until `pred` holds (or panic after 10 s).
    pub async fn wait_for(
        &self,
        s: &Session,
        id: &str,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let mut last = Value::Null;
        while tokio::time::Instant::now() < deadline {
            let (st, body) = self.get(s, &format!("/compute/v2.1/servers/{id}")).await;
            if st == StatusCode::OK {
                if pred(&body["server"]) {
                    return body["server"].clone();
                }
                last = body;
            } else {
                last = json!({"status_code": st.as_u16(), "body": body});
                if pred(&last) {
                    return last;
                }
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("server {id} never reached {what}; last: {last}");
    }

    pub async fn wait_status(&self, s: &Session, id: &str, status: &str) -> Value {
        self.wait_for(s, id, status, |v| {
            v["status"] == status && v["OS-EXT-STS:task_state"].is_null()
        })
        .await
    }

    pub async fn wait_gone(&self, s: &Session, id: &str) {
        self.wait_for(s, id, "404", |v| v["status_code"] == 404)
            .await;
    }

    pub async fn action(&self, s: &Session, id: &str, body: Value) -> (StatusCode, Value) {
        self.post(s, &format!("/compute/v2.1/servers/{id}/action"), body)
            .await
    }
}

pub async fn login(
    http: &reqwest::Client,
    url: &str,
    user: &str,
    password: &str,
    project: &str,
) -> Session {
    let body = json!({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {"name": user, "domain": {"name": "Default"}, "password": password}}},
        "scope": {"project": {"name": project, "domain": {"name": "Default"}}}
    }});
    let resp = http
        .post(format!("{url}/identity/v3/auth/tokens"))
        .json(&body)
        .send()
        .await
        .expect("auth request");
    assert_eq!(resp.status(), StatusCode::CREATED, "login as {user}");
    let token = resp.headers()["x-subject-token"]
        .to_str()
        .unwrap()
        .to_owned();
    let v: Value = resp.json().await.unwrap();
    Session {
        token,
        project_id: v["token"]["project"]["id"].as_str().unwrap().to_owned(),
        user_id: v["token"]["user"]["id"].as_str().unwrap().to_owned(),
        microversion: None,
    }
}

/// The keys of a JSON object, sorted (for exact-shape assertions).
pub fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .cloned()
        .collect();
    k.sort();
    k
}

/// A key list, sorted, to compare with [`keys`].
pub fn sorted(list: &[&str]) -> Vec<String> {
    let mut k: Vec<String> = list.iter().map(|s| s.to_string()).collect();
    k.sort();
    k
}

/// The message of a Nova fault body (`{"<name>": {"code", "message"}}`).
pub fn fault_message(body: &Value) -> String {
    body.as_object()
        .and_then(|m| m.values().next())
        .and_then(|f| f["message"].as_str())
        .unwrap_or_default()
        .to_owned()
}
