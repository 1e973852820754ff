//! Servers (instances): the core resource every dialect shows.

use crate::ids::*;
use crate::state::{PowerState, ServerState, TaskState, VmState};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A copy of the flavor taken at boot (and at resize), so later flavor edits or deletion
/// never rewrite a server's history. Nova embeds this from microversion 2.47.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FlavorSnapshot {
    pub id: FlavorId,
    pub name: String,
    pub vcpus: u32,
    pub ram_mb: u64,
    pub disk_gb: u64,
    pub ephemeral_gb: u64,
    pub swap_mb: u64,
    #[serde(default)]
    pub extra_specs: BTreeMap<String, String>,
}

/// The last failure recorded on a server (Nova's `fault`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Fault {
    pub code: u16,
    pub message: String,
    /// Internal detail; Nova shows it only to admins (or for non-500 codes).
    pub details: String,
    pub created: Timestamp,
}

/// A file injected at boot (Nova personality, up to microversion 2.56; Cyclades).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Personality {
    pub path: String,
    /// Base64 as the client sent it.
    pub contents: String,
}

/// Who holds the lock, as Nova records `locked_by`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LockedBy {
    Owner,
    Admin,
}

/// A persisted server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Server {
    pub id: ServerId,
    /// Numeric serial, unique and increasing; the id Cyclades shows.
    pub serial: i64,
    pub name: String,
    pub description: Option<String>,
    pub hostname: String,
    pub project_id: ProjectId,
    pub user_id: UserId,
    pub flavor: FlavorSnapshot,
    /// The flavor before a resize, kept until confirm/revert.
    pub old_flavor: Option<FlavorSnapshot>,
    /// `None` for a server booted from a volume.
    pub image_id: Option<ImageId>,
    pub key_name: Option<String>,
    pub key_data: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub tags: Vec<String>,
    pub security_groups: Vec<String>,
    /// Where the server runs (the requested zone, or the chosen host's).
    pub availability_zone: Option<String>,
    /// The zone the user asked for at create, if any (Nova `pinned_availability_zone`).
    #[serde(default)]
    pub pinned_availability_zone: Option<String>,
    pub host_id: Option<HostId>,
    /// Host name as the scheduler chose it (Nova `OS-EXT-SRV-ATTR:host`).
    pub host: Option<String>,
    pub vm_state: VmState,
    pub task_state: Option<TaskState>,
    pub power_state: PowerState,
    pub progress: u8,
    pub locked: bool,
    pub locked_by: Option<LockedBy>,
    pub locked_reason: Option<String>,
    /// Restart automatically when the server stops unexpectedly (VPE `ha`).
    pub ha: bool,
    pub disk_pool: Option<String>,
    pub user_data: Option<String>,
    pub personality: Vec<Personality>,
    pub config_drive: bool,
    pub access_ipv4: Option<String>,
    pub access_ipv6: Option<String>,
    pub reservation_id: String,
    pub launch_index: u32,
    pub server_group: Option<ServerGroupId>,
    pub fault: Option<Fault>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub launched_at: Option<Timestamp>,
    pub terminated_at: Option<Timestamp>,
    pub deleted_at: Option<Timestamp>,
    pub deleted: bool,
    /// Bumped by every write; guards conditional updates.
    pub generation: i64,
    /// Network interfaces, ordered by ordinal. Owned by the NIC table: filled on read,
    /// never written with the server.
    #[serde(default, skip_serializing)]
    pub nics: Vec<crate::network::Nic>,
    /// Attached data volumes, by device. Owned by the volume table: filled on read.
    #[serde(default, skip_serializing)]
    pub volumes: Vec<crate::volume::Volume>,
}

impl Server {
    pub fn state(&self) -> ServerState {
        ServerState {
            vm_state: self.vm_state,
            task_state: self.task_state,
            power_state: self.power_state,
        }
    }

    /// Deleted servers keep their row (soft delete) so changes-since can report them.
    pub fn is_visible(&self) -> bool {
        !self.deleted
    }
}

/// Filters for listing servers that the store can apply. Filters it cannot express in SQL
/// (name regex, tag sets) are applied by `control` on the rows it returns.
#[derive(Clone, Debug, Default)]
pub struct ServerFilter {
    /// `None` = every project (admin `all_tenants`).
    pub project_id: Option<ProjectId>,
    pub user_id: Option<UserId>,
    /// Include soft-deleted rows (changes-since, admin `deleted=true`).
    pub include_deleted: bool,
    /// Only deleted rows.
    pub only_deleted: bool,
    pub vm_states: Option<Vec<VmState>>,
    pub task_states: Option<Vec<TaskState>>,
    pub image_id: Option<ImageId>,
    pub flavor_id: Option<FlavorId>,
    pub host: Option<String>,
    pub changes_since: Option<Timestamp>,
    pub changes_before: Option<Timestamp>,
    pub ids: Option<Vec<ServerId>>,
    pub reservation_id: Option<String>,
    pub locked: Option<bool>,
    pub availability_zone: Option<String>,
    pub key_name: Option<String>,
    pub server_group: Option<ServerGroupId>,
    /// Regular expression matched anywhere in the name (Nova `name=`).
    pub name_regex: Option<String>,
    /// Servers with an IPv4 address the regular expression matches from its start (Nova's
    /// `ip=`, `re.match` over the fixed IPs); with `ip6_regex`, a match of either counts.
    pub ip_regex: Option<String>,
    /// The same over IPv6 addresses (`ip6=`).
    pub ip6_regex: Option<String>,
    /// Servers carrying every one of these tags.
    pub tags: Vec<String>,
    /// Servers carrying at least one of these tags.
    pub tags_any: Vec<String>,
    /// Servers not carrying all of these tags together.
    pub not_tags: Vec<String>,
    /// Servers carrying none of these tags.
    pub not_tags_any: Vec<String>,
    /// Regular expressions searched in a field's text (Nova's `_regex_instance_filter`, used
    /// for `power_state`, `progress`, `created_at`, ... from microversion 2.83).
    pub regex: Vec<(RegexField, String)>,
}

/// Fields Nova filters by regex over their text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegexField {
    PowerState,
    Progress,
    ConfigDrive,
    CreatedAt,
    LaunchedAt,
    TerminatedAt,
    Hostname,
    Description,
}

impl RegexField {
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "power_state" => Self::PowerState,
            "progress" => Self::Progress,
            "config_drive" => Self::ConfigDrive,
            "created_at" => Self::CreatedAt,
            "launched_at" => Self::LaunchedAt,
            "terminated_at" => Self::TerminatedAt,
            "hostname" => Self::Hostname,
            "description" | "display_description" => Self::Description,
            _ => return None,
        })
    }
}

/// Sort keys the store accepts (Nova's allowed `sort_key` values that map onto our columns).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerSortKey {
    CreatedAt,
    UpdatedAt,
    LaunchedAt,
    TerminatedAt,
    Name,
    DisplayName,
    Hostname,
    Id,
    Uuid,
    VmState,
    TaskState,
    PowerState,
    Progress,
    Host,
    AvailabilityZone,
    KeyName,
    ProjectId,
    UserId,
    Locked,
}

impl ServerSortKey {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "created_at" => Self::CreatedAt,
            "updated_at" => Self::UpdatedAt,
            "launched_at" => Self::LaunchedAt,
            "terminated_at" => Self::TerminatedAt,
            "display_name" => Self::DisplayName,
            "name" => Self::Name,
            "hostname" => Self::Hostname,
            "id" => Self::Id,
            "uuid" => Self::Uuid,
            "vm_state" => Self::VmState,
            "task_state" => Self::TaskState,
            "power_state" => Self::PowerState,
            "progress" => Self::Progress,
            "host" => Self::Host,
            "availability_zone" => Self::AvailabilityZone,
            "key_name" => Self::KeyName,
            "project_id" => Self::ProjectId,
            "user_id" => Self::UserId,
            "locked" => Self::Locked,
            _ => return None,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortDir {
    Asc,
    Desc,
}

/// Ordering and paging for a server listing. The marker is the id of the last server of the
/// previous page; the store resumes strictly after it in the requested order.
#[derive(Clone, Debug)]
pub struct ServerPage {
    pub sort: Vec<(ServerSortKey, SortDir)>,
    pub marker: Option<ServerId>,
    pub limit: Option<usize>,
}

impl Default for ServerPage {
    /// Nova's default: newest first, id as the tie breaker.
    fn default() -> Self {
        ServerPage {
            sort: vec![
                (ServerSortKey::CreatedAt, SortDir::Desc),
                (ServerSortKey::Id, SortDir::Desc),
            ],
            marker: None,
            limit: None,
        }
    }
}
