//! The driver interface every hypervisor backend implements.
//!
//! Contract: every method is idempotent with respect to the end state it names (spawning a
//! running server answers `Running`, destroying a missing one succeeds), because the
//! controller re-runs a step after a crash without knowing whether it completed. Methods
//! return the power state observed when the action finished.

use async_trait::async_trait;
use nimbus_model::agent::{Diagnostics, EventSink, HostInfo, InstanceSpec, NicSpec, VncConsole};
use nimbus_model::state::PowerState;
use nimbus_model::{Error, ImageId, Result, ServerId};
use std::sync::Arc;

/// A finished disk snapshot, ready for the controller to import as an image.
#[derive(Clone, Debug)]
pub struct SnapshotFile {
    /// A path on the agent's host.
    pub location: String,
    pub size: u64,
    pub disk_format: String,
}

#[async_trait]
pub trait Hypervisor: Send + Sync {
    fn describe(&self) -> HostInfo;
    async fn spawn(&self, spec: &InstanceSpec, events: Arc<dyn EventSink>) -> Result<PowerState>;
    async fn destroy(&self, id: ServerId) -> Result<()>;
    async fn reboot(&self, spec: &InstanceSpec, hard: bool) -> Result<PowerState>;
    async fn power_off(&self, spec: &InstanceSpec, timeout_secs: u32) -> Result<PowerState>;
    async fn power_on(&self, spec: &InstanceSpec) -> Result<PowerState>;
    async fn pause(&self, id: ServerId) -> Result<PowerState>;
    async fn unpause(&self, id: ServerId) -> Result<PowerState>;
    async fn suspend(&self, id: ServerId) -> Result<PowerState>;
    async fn resume(&self, spec: &InstanceSpec) -> Result<PowerState>;
    async fn rebuild(&self, spec: &InstanceSpec, events: Arc<dyn EventSink>) -> Result<PowerState>;
    async fn resize(&self, spec: &InstanceSpec) -> Result<PowerState>;
    async fn confirm_resize(&self, id: ServerId) -> Result<()>;
    async fn revert_resize(&self, spec: &InstanceSpec) -> Result<PowerState>;
    async fn snapshot(&self, id: ServerId, image_id: ImageId) -> Result<SnapshotFile>;
    async fn console_output(&self, id: ServerId, length: Option<u32>) -> Result<String>;
    async fn vnc_console(&self, id: ServerId) -> Result<VncConsole>;
    async fn diagnostics(&self, id: ServerId) -> Result<Diagnostics>;
    async fn set_password(&self, id: ServerId, password: &str) -> Result<()>;
    async fn list_instances(&self) -> Result<Vec<(ServerId, PowerState)>>;

    /// The directory the driver writes files into (snapshots). Files outside it are never
    /// served or removed on the controller's behalf. `None`: the driver produces no files.
    fn work_dir(&self) -> Option<std::path::PathBuf> {
        None
    }
    /// Take back a server this host should have but does not know (see
    /// `AgentRequest::Adopt`); returns the power state it now has.
    async fn adopt(&self, spec: &InstanceSpec, power_state: PowerState) -> Result<PowerState>;

    /// Plug a NIC into a server (hot-plug when it runs). Drivers without network support
    /// say so instead of pretending.
    async fn attach_nic(&self, _id: ServerId, _nic: &NicSpec) -> Result<()> {
        Err(Error::NotImplemented(
            "This hypervisor driver cannot attach network interfaces.".into(),
        ))
    }

    async fn detach_nic(&self, _id: ServerId, _mac: &str) -> Result<()> {
        Err(Error::NotImplemented(
            "This hypervisor driver cannot detach network interfaces.".into(),
        ))
    }

    /// Apply a firewall profile (ENABLED, DISABLED, PROTECTED) to a NIC's traffic.
    async fn set_firewall(&self, _id: ServerId, _mac: &str, _profile: &str) -> Result<()> {
        Err(Error::NotImplemented(
            "This hypervisor driver cannot enforce firewall profiles.".into(),
        ))
    }
}
