//! The controller ↔ compute-agent contract: requests the controller sends, replies, and the
//! events an agent reports on its own (a guest powered itself off, boot progress).
//!
//! One request enum keeps the transport trivial: the in-process agent handles it by a direct
//! call, a remote agent by one JSON endpoint. Every request is idempotent on the agent side
//! (spawning a server that already runs answers its state), which is what lets the operations
//! engine re-run a step after a controller restart.

use crate::error::Error;
use crate::ids::*;
use crate::state::PowerState;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The image a server boots from, as the agent needs it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImageSpec {
    pub id: ImageId,
    /// SHA-512 of the bytes: the blob's address in the image store.
    pub hash: String,
    pub size: u64,
    pub disk_format: String,
    pub properties: BTreeMap<String, serde_json::Value>,
}

/// One network interface of a server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NicSpec {
    pub id: String,
    pub network_id: String,
    pub mac: String,
    pub ipv4: Option<String>,
    pub ipv4_prefix: Option<u8>,
    pub gateway: Option<String>,
    pub ipv6: Option<String>,
    pub dhcp: bool,
    pub firewall: String,
}

/// Everything an agent needs to build (or rebuild) a server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InstanceSpec {
    pub server_id: ServerId,
    pub name: String,
    pub hostname: String,
    pub vcpus: u32,
    pub ram_mb: u64,
    pub disk_gb: u64,
    pub ephemeral_gb: u64,
    pub swap_mb: u64,
    pub image: Option<ImageSpec>,
    pub user_data: Option<String>,
    /// Server metadata; the fake driver reads `nimbus:fault` from it.
    pub metadata: BTreeMap<String, String>,
    pub nics: Vec<NicSpec>,
    /// Data volumes to attach (paths or ids, driver-specific).
    pub volumes: Vec<String>,
}

/// A request from the controller.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum AgentRequest {
    /// Describe the host (capacity, hypervisor); used at registration.
    Describe,
    /// Create and start the server. Idempotent: an existing server answers its state.
    Spawn {
        spec: InstanceSpec,
    },
    /// Stop and remove everything the server owns on the host. Idempotent.
    Destroy {
        server_id: ServerId,
    },
    /// Reboot; carries the spec so the driver sees current metadata (fault injection) and
    /// can re-create a guest that vanished.
    Reboot {
        spec: InstanceSpec,
        hard: bool,
    },
    /// Power off: graceful (ACPI) first, forced after `timeout_secs`.
    PowerOff {
        spec: InstanceSpec,
        timeout_secs: u32,
    },
    PowerOn {
        spec: InstanceSpec,
    },
    Pause {
        server_id: ServerId,
    },
    Unpause {
        server_id: ServerId,
    },
    Suspend {
        server_id: ServerId,
    },
    Resume {
        spec: InstanceSpec,
    },
    /// Replace the root disk with a fresh one from `spec.image` and boot it.
    Rebuild {
        spec: InstanceSpec,
    },
    /// Restart with the new shape in `spec`, keeping the old disk for a revert.
    Resize {
        spec: InstanceSpec,
    },
    ConfirmResize {
        server_id: ServerId,
    },
    /// Go back to the old disk and shape in `spec`.
    RevertResize {
        spec: InstanceSpec,
    },
    /// Copy the server's disk into a file the controller imports as image `image_id`.
    Snapshot {
        server_id: ServerId,
        image_id: ImageId,
    },
    ConsoleOutput {
        server_id: ServerId,
        length: Option<u32>,
    },
    VncConsole {
        server_id: ServerId,
    },
    Diagnostics {
        server_id: ServerId,
    },
    SetPassword {
        server_id: ServerId,
        password: String,
    },
    /// Hot-plug a network interface into a server (or record it for the next boot).
    AttachNic {
        server_id: ServerId,
        nic: NicSpec,
    },
    /// Remove a network interface.
    DetachNic {
        server_id: ServerId,
        mac: String,
    },
    /// Change a NIC's firewall profile.
    SetFirewall {
        server_id: ServerId,
        mac: String,
        profile: String,
    },
    /// Remove a file the agent produced (a snapshot) once the controller has imported it.
    /// Idempotent.
    RemoveFile {
        location: String,
    },
    /// Every server the host runs, with its observed power state.
    ListInstances,
    /// The controller's records place this server on the host but the agent does not know
    /// it (the agent restarted and cannot re-attach): take it back in `power_state`.
    Adopt {
        spec: InstanceSpec,
        power_state: PowerState,
    },
}

/// The agent's answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum AgentReply {
    Host {
        info: HostInfo,
    },
    /// The server's observed power state after the request.
    Power {
        power_state: PowerState,
    },
    Done,
    Snapshot {
        location: String,
        size: u64,
        disk_format: String,
    },
    Console {
        output: String,
    },
    Vnc {
        console: VncConsole,
    },
    Diagnostics {
        diagnostics: Diagnostics,
    },
    Instances {
        instances: Vec<(ServerId, PowerState)>,
    },
}

/// A host as its agent describes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HostInfo {
    pub name: String,
    pub hypervisor_type: String,
    pub hypervisor_version: u64,
    pub vcpus: u32,
    pub ram_mb: u64,
    pub disk_gb: u64,
    pub capabilities: serde_json::Value,
}

/// Where a VNC console listens and the temporary password that opens it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VncConsole {
    pub host: String,
    pub port: u16,
    pub password: String,
    /// WebSocket port for browser consoles, when the driver offers one.
    pub websocket_port: Option<u16>,
}

/// Nova's standardized diagnostics (microversion 2.48 shape).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Diagnostics {
    pub state: String,
    pub driver: String,
    pub hypervisor: String,
    pub hypervisor_os: String,
    pub uptime: u64,
    pub num_cpus: u32,
    pub num_disks: u32,
    pub num_nics: u32,
    pub memory_details: MemoryDetails,
    pub cpu_details: Vec<CpuDetail>,
    pub disk_details: Vec<DiskDetail>,
    pub nic_details: Vec<NicDetail>,
    pub config_drive: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MemoryDetails {
    pub maximum: u64,
    pub used: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CpuDetail {
    pub id: u32,
    pub time: u64,
    pub utilisation: Option<u32>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DiskDetail {
    pub read_bytes: u64,
    pub read_requests: u64,
    pub write_bytes: u64,
    pub write_requests: u64,
    pub errors_count: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NicDetail {
    pub mac_address: String,
    pub rx_octets: u64,
    pub rx_errors: u64,
    pub rx_drop: u64,
    pub rx_packets: u64,
    pub rx_rate: Option<u64>,
    pub tx_octets: u64,
    pub tx_errors: u64,
    pub tx_drop: u64,
    pub tx_packets: u64,
    pub tx_rate: Option<u64>,
}

/// Something the agent observed without being asked.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AgentEvent {
    /// Boot progress, 0–100.
    Progress { server_id: ServerId, progress: u8 },
    /// The guest changed power state on its own (shut down, crashed, was reset).
    PowerState {
        server_id: ServerId,
        power_state: PowerState,
        reason: String,
    },
}

/// An error as it crosses the agent transport.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AgentError {
    pub kind: String,
    pub message: String,
}

impl From<&Error> for AgentError {
    fn from(e: &Error) -> Self {
        let kind = match e {
            Error::NotFound(_) => "not_found",
            Error::InvalidRequest(_) => "invalid",
            Error::Conflict(_) | Error::Exhausted(_) | Error::InUse(_) => "conflict",
            Error::Unavailable(_) => "unavailable",
            Error::NotImplemented(_) => "not_implemented",
            _ => "internal",
        };
        AgentError {
            kind: kind.to_owned(),
            message: e.to_string(),
        }
    }
}

impl From<AgentError> for Error {
    fn from(e: AgentError) -> Self {
        match e.kind.as_str() {
            "not_found" => Error::NotFound(e.message),
            "invalid" => Error::InvalidRequest(e.message),
            "conflict" => Error::Conflict(e.message),
            "unavailable" => Error::Unavailable(e.message),
            "not_implemented" => Error::NotImplemented(e.message),
            _ => Error::Internal(e.message),
        }
    }
}

/// Where an agent reports events (the controller implements it).
#[async_trait]
pub trait EventSink: Send + Sync {
    async fn report(&self, event: AgentEvent);
}
