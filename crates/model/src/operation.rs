//! Operations: persisted long-running actions on a server, made of named idempotent steps.
//! They double as Nova's instance actions (`os-instance-actions`): the operation is the
//! action, its step records are the events.

use crate::ids::*;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperationState {
    /// Waiting for a worker.
    Pending,
    /// A worker is executing its steps.
    Running,
    /// Finished; every step succeeded.
    Succeeded,
    /// Finished; a step failed and undo ran.
    Failed,
}

impl OperationState {
    pub fn as_str(self) -> &'static str {
        match self {
            OperationState::Pending => "pending",
            OperationState::Running => "running",
            OperationState::Succeeded => "succeeded",
            OperationState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(Self::Pending),
            "running" => Some(Self::Running),
            "succeeded" => Some(Self::Succeeded),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }

    pub fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed)
    }
}

/// A persisted operation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Operation {
    pub id: OperationId,
    /// Nova's `request_id` (`req-<uuid>`): the key clients use in os-instance-actions.
    pub request_id: String,
    pub server_id: ServerId,
    /// Nova's action name: create, delete, reboot, stop, start, pause, ...
    pub action: String,
    pub project_id: ProjectId,
    pub user_id: UserId,
    pub state: OperationState,
    /// Index of the next step to run; steps before it are done.
    pub step: u32,
    /// Action parameters (reboot type, target flavor, image name, ...).
    pub params: serde_json::Value,
    /// Set when the operation failed ("Error" in Nova's `message`).
    pub message: Option<String>,
    pub start_time: Timestamp,
    pub finish_time: Option<Timestamp>,
    pub updated_at: Timestamp,
    /// Wake-up time for pending operations that wait (e.g. a fault injected with a delay).
    pub not_before: Option<Timestamp>,
}

/// One event of an operation (Nova's instance action event).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OperationEvent {
    pub operation_id: OperationId,
    /// e.g. `compute_reboot_instance`.
    pub event: String,
    pub start_time: Timestamp,
    pub finish_time: Option<Timestamp>,
    /// "Success" or "Error" once finished.
    pub result: Option<String>,
    pub traceback: Option<String>,
    pub host: Option<String>,
    pub details: Option<String>,
}
