//! A `nimbus serve` (or `nimbus agent`) child on a free loopback port with its own data
//! directory, and the OpenStack calls the scenarios need to set it up (log in, upload an
//! image, lift quotas, create servers, list them).

use crate::procs::{self, Guard, Scratch};
use anyhow::{Context as _, anyhow, bail};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub const ADMIN_PASSWORD: &str = "bench-admin-secret";

/// How to find and where to run the `nimbus` binary.
#[derive(Clone, Debug)]
pub struct Setup {
    pub nimbus: PathBuf,
    pub work_dir: PathBuf,
    pub keep: bool,
}

/// A running `nimbus serve`.
pub struct Service {
    pub guard: Guard,
    pub port: u16,
    pub url: String,
    pub data_dir: PathBuf,
    /// Spawn → first answered `GET /compute/v2.1`.
    pub startup: Duration,
    // Dropped after the guard (fields drop in declaration order), so the data dir outlives
    // the process that writes into it.
    _scratch: Option<Scratch>,
}

impl Service {
    /// Start `nimbus serve` with the bench's defaults plus `extra` flags, in a new scratch
    /// data directory.
    pub async fn start(setup: &Setup, name: &str, extra: &[&str]) -> anyhow::Result<Service> {
        let scratch = Scratch::new(&setup.work_dir, name, setup.keep)?;
        let data = scratch.path.join("data");
        let mut s = Self::start_in(setup, &data, extra).await?;
        s._scratch = Some(scratch);
        Ok(s)
    }

    /// Start `nimbus serve` on an existing (or new) data directory the caller owns.
    pub async fn start_in(setup: &Setup, data: &Path, extra: &[&str]) -> anyhow::Result<Service> {
        let port = procs::free_port()?;
        let mut args: Vec<String> = [
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
            &data.to_string_lossy(),
            "--admin-password",
            ADMIN_PASSWORD,
            "--no-clouds-yaml",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if !extra.iter().any(|a| *a == "--driver" || *a == "--no-agent") {
            args.extend(["--driver".into(), "fake".into()]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        std::fs::create_dir_all(data)?;
        let log = data
            .parent()
            .unwrap_or(data)
            .join(format!("nimbus-serve-{port}.log"));
        let t0 = Instant::now();
        let mut guard = Guard::spawn("nimbus serve", &setup.nimbus, &args, &[], log)?;
        guard.owns_guests_in(data.join("qemu"));
        let startup = wait_answering(&mut guard, port, t0).await?;
        Ok(Service {
            guard,
            port,
            url: format!("http://127.0.0.1:{port}"),
            data_dir: data.to_owned(),
            startup,
            _scratch: None,
        })
    }

    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }

    pub fn rss_mib(&self) -> f64 {
        procs::rss_mib(self.pid())
    }

    /// Log in as the bootstrap admin (project `admin`).
    pub async fn admin(&self) -> anyhow::Result<Api> {
        Api::login(&self.url, "admin", ADMIN_PASSWORD, "admin").await
    }

    /// SIGTERM and wait for the exit.
    pub async fn stop(mut self) {
        self.guard.stop(Duration::from_secs(15)).await;
    }
}

/// Poll the version document until it answers 200; the elapsed time since `t0`.
pub async fn wait_answering(guard: &mut Guard, port: u16, t0: Instant) -> anyhow::Result<Duration> {
    let deadline = Duration::from_secs(60);
    loop {
        if let Ok(true) = procs::probe_200(port, "/compute/v2.1").await {
            return Ok(t0.elapsed());
        }
        guard.check_alive()?;
        if t0.elapsed() > deadline {
            bail!(
                "{} did not answer on port {port} within {deadline:?}; log {}:\n{}",
                guard.name,
                guard.log.display(),
                procs::tail(&guard.log, 15)
            );
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// An authenticated OpenStack client (reqwest; used for set-up and checks, not for the
/// throughput figures).
#[derive(Clone)]
pub struct Api {
    pub http: reqwest::Client,
    pub url: String,
    pub token: String,
    pub project_id: String,
}

impl Api {
    pub async fn login(
        url: &str,
        user: &str,
        password: &str,
        project: &str,
    ) -> anyhow::Result<Api> {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(2048)
            .build()?;
        let body = json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": user, "domain": {"name": "Default"}, "password": password}}},
            "scope": {"project": {"name": project, "domain": {"name": "Default"}}}
        }});
        let resp = http
            .post(format!("{url}/identity/v3/auth/tokens"))
            .json(&body)
            .send()
            .await
            .context("POST /identity/v3/auth/tokens")?;
        if resp.status() != StatusCode::CREATED {
            bail!(
                "login as {user} failed: {} {}",
                resp.status(),
                resp.text().await.unwrap_or_default()
            );
        }
        let token = resp
            .headers()
            .get("x-subject-token")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| anyhow!("login answer has no X-Subject-Token"))?
            .to_owned();
        let v: Value = resp.json().await?;
        let project_id = v["token"]["project"]["id"]
            .as_str()
            .ok_or_else(|| anyhow!("token has no project id: {v}"))?
            .to_owned();
        Ok(Api {
            http,
            url: url.to_owned(),
            token,
            project_id,
        })
    }

    pub fn req(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.url))
            .header("X-Auth-Token", &self.token)
    }

    /// Send and decode: (status, JSON body or Null).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(StatusCode, Value)> {
        let mut r = self.req(method.clone(), path);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.with_context(|| format!("{method} {path}"))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let v = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Ok((status, v))
    }

    /// [`Api::call`] that requires status `want`.
    pub async fn expect(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        want: u16,
    ) -> anyhow::Result<Value> {
        let (st, v) = self.call(method.clone(), path, body).await?;
        if st.as_u16() != want {
            bail!("{method} {path}: expected {want}, got {st}: {v}");
        }
        Ok(v)
    }

    /// Create an image through Glance and upload `bytes` as its data.
    pub async fn upload_image(
        &self,
        name: &str,
        disk_format: &str,
        bytes: Vec<u8>,
    ) -> anyhow::Result<String> {
        let img = self
            .expect(
                Method::POST,
                "/image/v2/images",
                Some(json!({"name": name, "disk_format": disk_format,
                            "container_format": "bare", "visibility": "public"})),
                201,
            )
            .await?;
        let id = img["id"]
            .as_str()
            .ok_or_else(|| anyhow!("image create answer has no id: {img}"))?
            .to_owned();
        let resp = self
            .req(Method::PUT, &format!("/image/v2/images/{id}/file"))
            .header("content-type", "application/octet-stream")
            .body(bytes)
            .send()
            .await?;
        if resp.status() != StatusCode::NO_CONTENT {
            bail!("image upload: {} {}", resp.status(), resp.text().await?);
        }
        Ok(id)
    }

    /// Lift the instance, core and RAM quotas of the session's project (-1 = unlimited).
    pub async fn unlimited_quotas(&self) -> anyhow::Result<()> {
        let path = format!("/compute/v2.1/os-quota-sets/{}", self.project_id);
        self.expect(
            Method::PUT,
            &path,
            Some(json!({"quota_set": {"instances": -1, "cores": -1, "ram": -1}})),
            200,
        )
        .await?;
        Ok(())
    }

    /// POST one server (microversion 2.1: no `networks` key); its id.
    pub async fn create_server(
        &self,
        name: &str,
        image: &str,
        flavor: &str,
    ) -> anyhow::Result<String> {
        let v = self
            .expect(
                Method::POST,
                "/compute/v2.1/servers",
                Some(json!({"server": {"name": name, "imageRef": image, "flavorRef": flavor}})),
                202,
            )
            .await?;
        v["server"]["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("create answer has no server id: {v}"))
    }

    /// Every server of the project, following `marker` pages of `/servers/detail`.
    pub async fn all_servers(&self) -> anyhow::Result<Vec<Value>> {
        let mut out: Vec<Value> = Vec::new();
        loop {
            let path = match out.last().and_then(|s| s["id"].as_str()) {
                Some(m) => format!("/compute/v2.1/servers/detail?limit=1000&marker={m}"),
                None => "/compute/v2.1/servers/detail?limit=1000".to_owned(),
            };
            let v = self.expect(Method::GET, &path, None, 200).await?;
            let page = v["servers"].as_array().cloned().unwrap_or_default();
            let done = page.len() < 1000;
            out.extend(page);
            if done {
                return Ok(out);
            }
        }
    }

    /// One server's status (None once it is gone).
    pub async fn server_status(&self, id: &str) -> anyhow::Result<Option<String>> {
        let (st, v) = self
            .call(Method::GET, &format!("/compute/v2.1/servers/{id}"), None)
            .await?;
        match st.as_u16() {
            200 => Ok(Some(
                v["server"]["status"].as_str().unwrap_or("").to_owned(),
            )),
            404 => Ok(None),
            _ => bail!("GET server {id}: {st} {v}"),
        }
    }

    /// Poll until the server is ACTIVE (error on ERROR or after `within`).
    pub async fn wait_active(&self, id: &str, within: Duration) -> anyhow::Result<()> {
        let t = Instant::now();
        loop {
            match self.server_status(id).await?.as_deref() {
                Some("ACTIVE") => return Ok(()),
                Some("ERROR") => {
                    let (_, v) = self
                        .call(Method::GET, &format!("/compute/v2.1/servers/{id}"), None)
                        .await?;
                    bail!("server {id} went to ERROR: {}", v["server"]["fault"]);
                }
                None => bail!("server {id} disappeared"),
                _ => {}
            }
            if t.elapsed() > within {
                bail!("server {id} not ACTIVE within {within:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// DELETE a server and wait until it answers 404.
    pub async fn delete_and_wait(&self, id: &str, within: Duration) -> anyhow::Result<()> {
        let path = format!("/compute/v2.1/servers/{id}");
        let (st, v) = self.call(Method::DELETE, &path, None).await?;
        if st != StatusCode::NO_CONTENT && st != StatusCode::NOT_FOUND {
            bail!("DELETE {path}: {st} {v}");
        }
        let t = Instant::now();
        while self.server_status(id).await?.is_some() {
            if t.elapsed() > within {
                bail!("server {id} still present {within:?} after DELETE");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }
}
