//! The compute agent: drives one host's hypervisor on the controller's behalf.
//!
//! [`Agent`] turns each [`AgentRequest`] into a call on a [`Hypervisor`] driver (`fake` or
//! `qemu`) and reports what the driver observes on its own through an [`EventSink`]. The same
//! `Agent` serves in-process (`nimbus serve`) and behind the internal HTTP API
//! (`nimbus agent`).

pub mod fake;
pub mod fake_console;
pub mod hypervisor;
pub mod qemu;
pub mod remote;
pub mod server;

pub use hypervisor::Hypervisor;
use nimbus_model::Error;
use nimbus_model::agent::{AgentReply, AgentRequest, EventSink};
use std::sync::Arc;

/// An agent: a driver plus where its events go.
#[derive(Clone)]
pub struct Agent {
    driver: Arc<dyn Hypervisor>,
    events: Arc<dyn EventSink>,
}

impl Agent {
    pub fn new(driver: Arc<dyn Hypervisor>, events: Arc<dyn EventSink>) -> Self {
        Agent { driver, events }
    }

    pub fn driver(&self) -> &Arc<dyn Hypervisor> {
        &self.driver
    }

    /// Execute one request.
    pub async fn handle(&self, request: AgentRequest) -> Result<AgentReply, Error> {
        let d = &self.driver;
        let power = |p| AgentReply::Power { power_state: p };
        Ok(match request {
            AgentRequest::Describe => AgentReply::Host { info: d.describe() },
            AgentRequest::Spawn { spec } => power(d.spawn(&spec, self.events.clone()).await?),
            AgentRequest::Destroy { server_id } => {
                d.destroy(server_id).await?;
                AgentReply::Done
            }
            AgentRequest::Reboot { spec, hard } => power(d.reboot(&spec, hard).await?),
            AgentRequest::PowerOff { spec, timeout_secs } => {
                power(d.power_off(&spec, timeout_secs).await?)
            }
            AgentRequest::PowerOn { spec } => power(d.power_on(&spec).await?),
            AgentRequest::Pause { server_id } => power(d.pause(server_id).await?),
            AgentRequest::Unpause { server_id } => power(d.unpause(server_id).await?),
            AgentRequest::Suspend { server_id } => power(d.suspend(server_id).await?),
            AgentRequest::Resume { spec } => power(d.resume(&spec).await?),
            AgentRequest::Rebuild { spec } => power(d.rebuild(&spec, self.events.clone()).await?),
            AgentRequest::Resize { spec } => power(d.resize(&spec).await?),
            AgentRequest::ConfirmResize { server_id } => {
                d.confirm_resize(server_id).await?;
                AgentReply::Done
            }
            AgentRequest::RevertResize { spec } => power(d.revert_resize(&spec).await?),
            AgentRequest::Snapshot {
                server_id,
                image_id,
            } => {
                let s = d.snapshot(server_id, image_id).await?;
                AgentReply::Snapshot {
                    location: s.location,
                    size: s.size,
                    disk_format: s.disk_format,
                }
            }
            AgentRequest::ConsoleOutput { server_id, length } => AgentReply::Console {
                output: d.console_output(server_id, length).await?,
            },
            AgentRequest::VncConsole { server_id } => AgentReply::Vnc {
                console: d.vnc_console(server_id).await?,
            },
            AgentRequest::Diagnostics { server_id } => AgentReply::Diagnostics {
                diagnostics: d.diagnostics(server_id).await?,
            },
            AgentRequest::SetPassword {
                server_id,
                password,
            } => {
                d.set_password(server_id, &password).await?;
                AgentReply::Done
            }
            AgentRequest::Adopt { spec, power_state } => power(d.adopt(&spec, power_state).await?),
            AgentRequest::AttachNic { server_id, nic } => {
                d.attach_nic(server_id, &nic).await?;
                AgentReply::Done
            }
            AgentRequest::DetachNic { server_id, mac } => {
                d.detach_nic(server_id, &mac).await?;
                AgentReply::Done
            }
            AgentRequest::SetFirewall {
                server_id,
                mac,
                profile,
            } => {
                d.set_firewall(server_id, &mac, &profile).await?;
                AgentReply::Done
            }
            AgentRequest::RemoveFile { location } => {
                let path = self.confine(&location)?;
                match tokio::fs::remove_file(&path).await {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(Error::internal(format!("remove {}: {e}", path.display())));
                    }
                }
                AgentReply::Done
            }
            AgentRequest::ListInstances => AgentReply::Instances {
                instances: d.list_instances().await?,
            },
        })
    }

    /// Resolve a file location the driver produced, refusing anything outside its work dir.
    pub fn confine(&self, location: &str) -> Result<std::path::PathBuf, Error> {
        let root = self
            .driver
            .work_dir()
            .ok_or_else(|| Error::NotFound(format!("No file {location} on this host.")))?;
        let root = std::fs::canonicalize(&root)
            .map_err(|_| Error::NotFound(format!("No file {location} on this host.")))?;
        match std::fs::canonicalize(location) {
            Ok(p) if p.starts_with(&root) => Ok(p),
            Ok(_) => Err(Error::Forbidden(format!(
                "{location} is outside the agent's work directory."
            ))),
            Err(_) => Err(Error::NotFound(format!("No file {location} on this host."))),
        }
    }

    /// Open a file the driver produced (a snapshot), confined to its work dir.
    pub async fn open_file(&self, location: &str) -> Result<tokio::fs::File, Error> {
        let path = self.confine(location)?;
        tokio::fs::File::open(&path)
            .await
            .map_err(|e| Error::internal(format!("open {}: {e}", path.display())))
    }
}
