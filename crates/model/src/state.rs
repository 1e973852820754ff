//! Nova's three state axes, kept exactly (`vm_state`, `task_state`, `power_state`), the
//! OpenStack `status` as a pure function of them, and the table that decides which action is
//! allowed when.
//!
//! Source of truth: nova 34.0.0 `compute/vm_states.py`, `compute/task_states.py`,
//! `compute/power_state.py`, `api/openstack/common.py` (`_STATE_MAP`) and the
//! `@check_instance_state` / `@check_instance_lock` decorators in `compute/api.py`.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! wire_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident => $wire:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $(#[serde(rename = $wire)] $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The spelling Nova uses on the wire and in its database.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $wire),+
                }
            }

            pub fn parse(s: &str) -> Option<Self> {
                match s {
                    $($wire => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

wire_enum!(
    /// The stable state of a server as the user expects it.
    VmState {
        Active => "active",
        Building => "building",
        Paused => "paused",
        Suspended => "suspended",
        Stopped => "stopped",
        Rescued => "rescued",
        Resized => "resized",
        SoftDeleted => "soft-delete",
        Deleted => "deleted",
        Error => "error",
        Shelved => "shelved",
        ShelvedOffloaded => "shelved_offloaded",
    }
);

wire_enum!(
    /// What is happening to a server right now (`None` when nothing is).
    TaskState {
        Scheduling => "scheduling",
        BlockDeviceMapping => "block_device_mapping",
        Networking => "networking",
        Spawning => "spawning",
        ImageSnapshot => "image_snapshot",
        ImageSnapshotPending => "image_snapshot_pending",
        ImagePendingUpload => "image_pending_upload",
        ImageUploading => "image_uploading",
        ImageBackup => "image_backup",
        UpdatingPassword => "updating_password",
        ResizePrep => "resize_prep",
        ResizeMigrating => "resize_migrating",
        ResizeMigrated => "resize_migrated",
        ResizeFinish => "resize_finish",
        ResizeReverting => "resize_reverting",
        ResizeConfirming => "resize_confirming",
        Rebooting => "rebooting",
        RebootPending => "reboot_pending",
        RebootStarted => "reboot_started",
        RebootingHard => "rebooting_hard",
        RebootPendingHard => "reboot_pending_hard",
        RebootStartedHard => "reboot_started_hard",
        Pausing => "pausing",
        Unpausing => "unpausing",
        Suspending => "suspending",
        Resuming => "resuming",
        PoweringOff => "powering-off",
        PoweringOn => "powering-on",
        Rescuing => "rescuing",
        Unrescuing => "unrescuing",
        Rebuilding => "rebuilding",
        RebuildBlockDeviceMapping => "rebuild_block_device_mapping",
        RebuildSpawning => "rebuild_spawning",
        Migrating => "migrating",
        Deleting => "deleting",
        SoftDeleting => "soft-deleting",
        Restoring => "restoring",
        Shelving => "shelving",
        ShelvingImagePendingUpload => "shelving_image_pending_upload",
        ShelvingImageUploading => "shelving_image_uploading",
        ShelvingOffloading => "shelving_offloading",
        Unshelving => "unshelving",
    }
);

wire_enum!(
    /// What the hypervisor last reported. Nova exposes it as an integer
    /// (`OS-EXT-STS:power_state`), see [`PowerState::code`].
    PowerState {
        NoState => "pending",
        Running => "running",
        Paused => "paused",
        Shutdown => "shutdown",
        Crashed => "crashed",
        Suspended => "suspended",
    }
);

impl PowerState {
    /// Nova's integer encoding (nova/compute/power_state.py).
    pub fn code(self) -> u8 {
        match self {
            PowerState::NoState => 0,
            PowerState::Running => 1,
            PowerState::Paused => 3,
            PowerState::Shutdown => 4,
            PowerState::Crashed => 6,
            PowerState::Suspended => 7,
        }
    }

    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.iter().copied().find(|p| p.code() == code)
    }
}

/// The three axes together.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerState {
    pub vm_state: VmState,
    pub task_state: Option<TaskState>,
    pub power_state: PowerState,
}

/// The OpenStack Compute `status` (nova `_STATE_MAP`). Power state does not enter Nova's
/// mapping; it is a parameter so every dialect's status function has the same shape.
pub fn openstack_status(vm: VmState, task: Option<TaskState>, _power: PowerState) -> &'static str {
    use TaskState as T;
    use VmState as V;
    match (vm, task) {
        (V::Active, Some(T::Rebooting | T::RebootPending | T::RebootStarted)) => "REBOOT",
        (V::Active, Some(T::RebootingHard | T::RebootPendingHard | T::RebootStartedHard)) => {
            "HARD_REBOOT"
        }
        (V::Active, Some(T::UpdatingPassword)) => "PASSWORD",
        (
            V::Active | V::Stopped | V::Error,
            Some(T::Rebuilding | T::RebuildBlockDeviceMapping | T::RebuildSpawning),
        ) => "REBUILD",
        (V::Active | V::Paused, Some(T::Migrating)) => "MIGRATING",
        (
            V::Active | V::Stopped,
            Some(T::ResizePrep | T::ResizeMigrating | T::ResizeMigrated | T::ResizeFinish),
        ) => "RESIZE",
        (V::Active, _) => "ACTIVE",
        (V::Building, _) => "BUILD",
        (V::Stopped, _) => "SHUTOFF",
        (V::Resized, Some(T::ResizeReverting)) => "REVERT_RESIZE",
        (V::Resized, _) => "VERIFY_RESIZE",
        (V::Paused, _) => "PAUSED",
        (V::Suspended, _) => "SUSPENDED",
        (V::Rescued, _) => "RESCUE",
        (V::Error, _) => "ERROR",
        (V::Deleted, _) => "DELETED",
        (V::SoftDeleted, _) => "SOFT_DELETED",
        (V::Shelved, _) => "SHELVED",
        (V::ShelvedOffloaded, _) => "SHELVED_OFFLOADED",
    }
}

/// The Synnefo Cyclades `status` (seed 001, "Server Status"): BUILD, ACTIVE, STOPPED, REBOOT,
/// DELETED, ERROR, UNKNOWN. Cyclades has no word for Nova's paused, suspended, shelved or
/// resized states, so each maps to the nearest state a Cyclades user can act on: a guest
/// that is not running is STOPPED (the `start` action applies), a resized guest running on
/// its new flavor is ACTIVE, and a rescued guest (no Cyclades meaning) is UNKNOWN. A rebuild
/// shows as BUILD. Unlike Nova, the power state counts: Cyclades reports what the backend
/// observes, so a guest found shut down or crashed while no action runs is STOPPED even
/// before the power-state sync moves its vm_state.
pub fn cyclades_status(vm: VmState, task: Option<TaskState>, power: PowerState) -> &'static str {
    use PowerState as P;
    use TaskState as T;
    use VmState as V;
    let rebuilding = matches!(
        task,
        Some(T::Rebuilding | T::RebuildBlockDeviceMapping | T::RebuildSpawning)
    );
    match (vm, task) {
        (V::Building, _) => "BUILD",
        (V::Deleted | V::SoftDeleted, _) => "DELETED",
        _ if rebuilding => "BUILD",
        (V::Error, _) => "ERROR",
        (
            V::Active,
            Some(
                T::Rebooting
                | T::RebootPending
                | T::RebootStarted
                | T::RebootingHard
                | T::RebootPendingHard
                | T::RebootStartedHard,
            ),
        ) => "REBOOT",
        (V::Active, None) if matches!(power, P::Shutdown | P::Crashed) => "STOPPED",
        (V::Active | V::Resized, _) => "ACTIVE",
        (V::Stopped | V::Paused | V::Suspended | V::Shelved | V::ShelvedOffloaded, _) => "STOPPED",
        (V::Rescued, _) => "UNKNOWN",
    }
}

/// The inverse used by `GET /servers?status=X`: which vm_states (and, for transitional
/// statuses, task_states) a status filter selects. Returns `None` for an unknown status.
/// Mirrors nova `common.task_and_vm_state_from_status`.
pub fn states_for_openstack_status(status: &str) -> Option<(Vec<VmState>, Option<Vec<TaskState>>)> {
    let wanted = status.to_ascii_uppercase();
    let mut vms = Vec::new();
    let mut tasks: Vec<TaskState> = Vec::new();
    let mut task_specific = false;
    for &vm in VmState::ALL {
        let default = openstack_status(vm, None, PowerState::NoState);
        if default == wanted && !vms.contains(&vm) {
            vms.push(vm);
        }
        for &t in TaskState::ALL {
            let s = openstack_status(vm, Some(t), PowerState::NoState);
            if s == wanted && s != default {
                task_specific = true;
                if !vms.contains(&vm) {
                    vms.push(vm);
                }
                if !tasks.contains(&t) {
                    tasks.push(t);
                }
            }
        }
    }
    if vms.is_empty() {
        return None;
    }
    // A status that only some task states produce (REBOOT, RESIZE, ...) filters on the task;
    // a default status (ACTIVE, SHUTOFF, ...) matches the vm_state whatever the task.
    let default_hit = VmState::ALL
        .iter()
        .any(|&vm| openstack_status(vm, None, PowerState::NoState) == wanted);
    Some((vms, (task_specific && !default_hit).then_some(tasks)))
}

/// Every action whose admissibility depends on state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    RebootSoft,
    RebootHard,
    Start,
    Stop,
    Pause,
    Unpause,
    Suspend,
    Resume,
    Resize,
    ConfirmResize,
    RevertResize,
    Rebuild,
    CreateImage,
    ChangePassword,
    Delete,
    ForceDelete,
    Restore,
    Lock,
    Unlock,
    UpdateMetadata,
    UpdateTags,
    ConsoleOutput,
    ResetState,
}

impl Action {
    pub const ALL: &'static [Action] = &[
        Action::RebootSoft,
        Action::RebootHard,
        Action::Start,
        Action::Stop,
        Action::Pause,
        Action::Unpause,
        Action::Suspend,
        Action::Resume,
        Action::Resize,
        Action::ConfirmResize,
        Action::RevertResize,
        Action::Rebuild,
        Action::CreateImage,
        Action::ChangePassword,
        Action::Delete,
        Action::ForceDelete,
        Action::Restore,
        Action::Lock,
        Action::Unlock,
        Action::UpdateMetadata,
        Action::UpdateTags,
        Action::ConsoleOutput,
        Action::ResetState,
    ];

    /// The name Nova puts in its 409 message ("Cannot 'stop' instance ...").
    pub fn api_name(self) -> &'static str {
        match self {
            Action::RebootSoft | Action::RebootHard => "reboot",
            Action::Start => "start",
            Action::Stop => "stop",
            Action::Pause => "pause",
            Action::Unpause => "unpause",
            Action::Suspend => "suspend",
            Action::Resume => "resume",
            Action::Resize => "resize",
            Action::ConfirmResize => "confirmResize",
            Action::RevertResize => "revertResize",
            Action::Rebuild => "rebuild",
            Action::CreateImage => "createImage",
            Action::ChangePassword => "changePassword",
            Action::Delete => "delete",
            Action::ForceDelete => "forceDelete",
            Action::Restore => "restore",
            Action::Lock => "lock",
            Action::Unlock => "unlock",
            Action::UpdateMetadata => "update metadata",
            Action::UpdateTags => "update tags",
            Action::ConsoleOutput => "get_console_output",
            Action::ResetState => "os-resetState",
        }
    }
}

/// Why an action was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DenyReason {
    VmState(VmState),
    TaskState(Option<TaskState>),
    NotLaunched,
    Locked,
}

/// The answer of [`decide`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Do it.
    Accept,
    /// Answer success but change nothing (e.g. lock an already locked server).
    Ignore,
    /// Refuse with a 409 carrying [`deny_message`].
    Deny(DenyReason),
}

/// What the table needs to know about a server.
#[derive(Clone, Copy, Debug)]
pub struct ActionInput {
    pub vm_state: VmState,
    pub task_state: Option<TaskState>,
    /// Locked *and* the caller may not override the lock (non-admins cannot).
    pub locked: bool,
    /// The server was launched at least once (`launched_at` set).
    pub launched: bool,
}

const ALLOW_REBOOT_TASKS: &[Option<TaskState>] = &[
    None,
    Some(TaskState::Rebooting),
    Some(TaskState::RebootPending),
    Some(TaskState::RebootStarted),
    Some(TaskState::Resuming),
    Some(TaskState::RebootingHard),
    Some(TaskState::Unpausing),
    Some(TaskState::Pausing),
    Some(TaskState::Suspending),
];

/// One row of the table: the vm_states and task_states the action accepts (`None` = any),
/// whether the lock applies, and whether the server must have been launched.
struct Rule {
    vm: Option<&'static [VmState]>,
    task: Option<&'static [Option<TaskState>]>,
    lock_checked: bool,
    must_have_launched: bool,
}

const IDLE: Option<&[Option<TaskState>]> = Some(&[None]);

fn rule(action: Action) -> Rule {
    use VmState as V;
    let r = |vm: Option<&'static [VmState]>, task, lock_checked, must_have_launched| Rule {
        vm,
        task,
        lock_checked,
        must_have_launched,
    };
    match action {
        Action::RebootSoft => r(Some(&[V::Active]), IDLE, true, true),
        Action::RebootHard => r(
            Some(&[V::Active, V::Stopped, V::Paused, V::Suspended, V::Error]),
            Some(ALLOW_REBOOT_TASKS),
            true,
            true,
        ),
        Action::Start => r(Some(&[V::Stopped]), IDLE, true, true),
        Action::Stop => r(Some(&[V::Active, V::Error]), IDLE, true, true),
        Action::Pause | Action::Suspend | Action::ChangePassword => {
            r(Some(&[V::Active]), IDLE, true, true)
        }
        Action::Unpause => r(Some(&[V::Paused]), IDLE, true, true),
        Action::Resume => r(Some(&[V::Suspended]), IDLE, true, true),
        Action::Resize => r(Some(&[V::Active, V::Stopped]), IDLE, true, true),
        Action::ConfirmResize | Action::RevertResize => r(Some(&[V::Resized]), IDLE, true, true),
        Action::Rebuild => r(Some(&[V::Active, V::Stopped, V::Error]), IDLE, true, true),
        // Nova: snapshots ignore the lock ("lock is intended to prevent accidental change").
        Action::CreateImage => r(
            Some(&[V::Active, V::Stopped, V::Paused, V::Suspended]),
            IDLE,
            false,
            true,
        ),
        Action::Delete => r(None, None, true, false),
        Action::ForceDelete => r(None, IDLE, true, false),
        Action::Restore => r(Some(&[V::SoftDeleted]), IDLE, true, true),
        Action::UpdateMetadata => r(
            Some(&[V::Active, V::Paused, V::Suspended, V::Stopped]),
            IDLE,
            true,
            false,
        ),
        Action::UpdateTags => r(
            Some(&[V::Active, V::Paused, V::Suspended, V::Stopped]),
            None,
            false,
            false,
        ),
        Action::ConsoleOutput => r(
            Some(&[
                V::Active,
                V::Paused,
                V::Suspended,
                V::Stopped,
                V::Resized,
                V::Rescued,
                V::Error,
            ]),
            None,
            false,
            true,
        ),
        Action::Lock | Action::Unlock | Action::ResetState => r(None, None, false, false),
    }
}

/// The allowed-action table: `(vm_state, task_state, locked, action) → Accept | Ignore | Deny`.
///
/// Order of checks follows Nova: the lock first (`@check_instance_lock` wraps
/// `@check_instance_state`), then vm_state, task_state, launched.
pub fn decide(action: Action, input: ActionInput) -> Decision {
    let rule = rule(action);
    if rule.lock_checked && input.locked {
        return Decision::Deny(DenyReason::Locked);
    }
    if let Some(vms) = rule.vm
        && !vms.contains(&input.vm_state)
    {
        return Decision::Deny(DenyReason::VmState(input.vm_state));
    }
    if let Some(tasks) = rule.task
        && !tasks.contains(&input.task_state)
    {
        return Decision::Deny(DenyReason::TaskState(input.task_state));
    }
    if rule.must_have_launched && !input.launched {
        return Decision::Deny(DenyReason::NotLaunched);
    }
    match action {
        // Deleting twice: the first delete is already under way.
        Action::Delete if input.task_state == Some(TaskState::Deleting) => Decision::Ignore,
        // `locked` here is "locked and not overridable"; the lock/unlock services pass the
        // raw lock flag, so an already locked server is ignored, as Nova's `lock()` returns.
        Action::Lock if input.locked => Decision::Ignore,
        Action::Unlock if !input.locked => Decision::Ignore,
        _ => Decision::Accept,
    }
}

/// Nova's 409 text for a denial.
pub fn deny_message(action: Action, server_id: &str, reason: &DenyReason) -> String {
    let (attr, state) = match reason {
        DenyReason::Locked => return format!("Instance {server_id} is locked"),
        DenyReason::VmState(vm) => ("vm_state", vm.as_str().to_owned()),
        DenyReason::TaskState(t) => (
            "task_state",
            t.map(|t| t.as_str().to_owned())
                .unwrap_or_else(|| "None".to_owned()),
        ),
        DenyReason::NotLaunched => ("launched_at", "None".to_owned()),
    };
    format!(
        "Cannot '{}' instance {server_id} while it is in {attr} {state}",
        action.api_name()
    )
}

// ---- Mogan (seed 002) ----
//
// Mogan (the bare-metal compute service) names its states after its own engine state machine
// (`mogan/common/states.py`) and its power states after Ironic's (`power on`, `power off`,
// ...). These functions are the Mogan view of the three core axes.

/// Mogan's instance `status`: lower-case, with the transitional states Mogan's state machine
/// has (`building`, `powering-on`, `powering-off`, `rebooting`, `rebuilding`, `deleting`)
/// taking precedence over the stable ones (`active`, `stopped`, `error`, `deleted`).
///
/// Core states Mogan has no name for (paused, suspended, rescued, resized, shelved, ...) are
/// shown with the core's vm_state name, so a Mogan client still sees something truthful.
/// Power state does not enter the mapping; it is a parameter so every dialect's status
/// function has the same shape.
pub fn mogan_status(vm: VmState, task: Option<TaskState>, _power: PowerState) -> &'static str {
    use TaskState as T;
    use VmState as V;
    match (vm, task) {
        (V::Deleted, _) => "deleted",
        (_, Some(T::Deleting | T::SoftDeleting)) => "deleting",
        (V::Building, _) => "building",
        (_, Some(T::PoweringOn)) => "powering-on",
        (_, Some(T::PoweringOff)) => "powering-off",
        (
            _,
            Some(
                T::Rebooting
                | T::RebootPending
                | T::RebootStarted
                | T::RebootingHard
                | T::RebootPendingHard
                | T::RebootStartedHard,
            ),
        ) => "rebooting",
        (_, Some(T::Rebuilding | T::RebuildBlockDeviceMapping | T::RebuildSpawning)) => {
            "rebuilding"
        }
        (V::Active, _) => "active",
        (V::Stopped, _) => "stopped",
        (V::Error, _) => "error",
        (V::Paused, _) => "paused",
        (V::Suspended, _) => "suspended",
        (V::Rescued, _) => "rescued",
        (V::Resized, _) => "resized",
        (V::SoftDeleted, _) => "soft-delete",
        (V::Shelved, _) => "shelved",
        (V::ShelvedOffloaded, _) => "shelved_offloaded",
    }
}

/// Mogan's `power_state` (Ironic's names): `None` (JSON null) when the hypervisor has not
/// reported one yet, as Mogan's `NOSTATE`.
///
/// A paused guest still has power (`power on`); a suspended one was saved to disk and
/// stopped (`power off`); a crashed one is Ironic's `error`.
pub fn mogan_power_state(power: PowerState) -> Option<&'static str> {
    match power {
        PowerState::NoState => None,
        PowerState::Running | PowerState::Paused => Some("power on"),
        PowerState::Shutdown | PowerState::Suspended => Some("power off"),
        PowerState::Crashed => Some("error"),
    }
}

/// Mogan's `target_power_state`: the power state a change in flight will reach, derived
/// from the core's task (Ironic's names: `power on`, `power off`, `rebooting` for a hard
/// reboot, `soft rebooting` for a soft one); `None` when no power change is in flight.
pub fn mogan_target_power_state(task: Option<TaskState>) -> Option<&'static str> {
    use TaskState as T;
    match task? {
        T::PoweringOn => Some("power on"),
        T::PoweringOff => Some("power off"),
        T::RebootingHard | T::RebootPendingHard | T::RebootStartedHard => Some("rebooting"),
        T::Rebooting | T::RebootPending | T::RebootStarted => Some("soft rebooting"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use PowerState as P;
    use TaskState as T;
    use VmState as V;

    #[test]
    fn wire_names_round_trip() {
        for &v in VmState::ALL {
            assert_eq!(VmState::parse(v.as_str()), Some(v));
        }
        for &t in TaskState::ALL {
            assert_eq!(TaskState::parse(t.as_str()), Some(t));
        }
        for &p in PowerState::ALL {
            assert_eq!(PowerState::from_code(p.code()), Some(p));
        }
        assert_eq!(VmState::parse("soft-delete"), Some(V::SoftDeleted));
        assert_eq!(TaskState::parse("powering-off"), Some(T::PoweringOff));
        assert_eq!(VmState::parse("bogus"), None);
    }

    /// Every row of nova's `_STATE_MAP`, plus the defaults.
    #[test]
    fn openstack_status_table() {
        let rows: &[(V, Option<T>, &str)] = &[
            (V::Active, None, "ACTIVE"),
            (V::Active, Some(T::Rebooting), "REBOOT"),
            (V::Active, Some(T::RebootPending), "REBOOT"),
            (V::Active, Some(T::RebootStarted), "REBOOT"),
            (V::Active, Some(T::RebootingHard), "HARD_REBOOT"),
            (V::Active, Some(T::RebootPendingHard), "HARD_REBOOT"),
            (V::Active, Some(T::RebootStartedHard), "HARD_REBOOT"),
            (V::Active, Some(T::UpdatingPassword), "PASSWORD"),
            (V::Active, Some(T::Rebuilding), "REBUILD"),
            (V::Active, Some(T::RebuildBlockDeviceMapping), "REBUILD"),
            (V::Active, Some(T::RebuildSpawning), "REBUILD"),
            (V::Active, Some(T::Migrating), "MIGRATING"),
            (V::Active, Some(T::ResizePrep), "RESIZE"),
            (V::Active, Some(T::ResizeMigrating), "RESIZE"),
            (V::Active, Some(T::ResizeMigrated), "RESIZE"),
            (V::Active, Some(T::ResizeFinish), "RESIZE"),
            (V::Active, Some(T::Deleting), "ACTIVE"),
            (V::Active, Some(T::PoweringOff), "ACTIVE"),
            (V::Active, Some(T::Pausing), "ACTIVE"),
            (V::Building, None, "BUILD"),
            (V::Building, Some(T::Scheduling), "BUILD"),
            (V::Building, Some(T::Spawning), "BUILD"),
            (V::Stopped, None, "SHUTOFF"),
            (V::Stopped, Some(T::PoweringOn), "SHUTOFF"),
            (V::Stopped, Some(T::ResizePrep), "RESIZE"),
            (V::Stopped, Some(T::ResizeMigrating), "RESIZE"),
            (V::Stopped, Some(T::ResizeMigrated), "RESIZE"),
            (V::Stopped, Some(T::ResizeFinish), "RESIZE"),
            (V::Stopped, Some(T::Rebuilding), "REBUILD"),
            (V::Stopped, Some(T::RebuildBlockDeviceMapping), "REBUILD"),
            (V::Stopped, Some(T::RebuildSpawning), "REBUILD"),
            (V::Stopped, Some(T::Migrating), "SHUTOFF"),
            (V::Resized, None, "VERIFY_RESIZE"),
            (V::Resized, Some(T::ResizeConfirming), "VERIFY_RESIZE"),
            (V::Resized, Some(T::ResizeReverting), "REVERT_RESIZE"),
            (V::Paused, None, "PAUSED"),
            (V::Paused, Some(T::Migrating), "MIGRATING"),
            (V::Paused, Some(T::Unpausing), "PAUSED"),
            (V::Suspended, None, "SUSPENDED"),
            (V::Suspended, Some(T::Resuming), "SUSPENDED"),
            (V::Rescued, None, "RESCUE"),
            (V::Error, None, "ERROR"),
            (V::Error, Some(T::Rebuilding), "REBUILD"),
            (V::Error, Some(T::RebuildBlockDeviceMapping), "REBUILD"),
            (V::Error, Some(T::RebuildSpawning), "REBUILD"),
            (V::Error, Some(T::Deleting), "ERROR"),
            (V::Deleted, None, "DELETED"),
            (V::SoftDeleted, None, "SOFT_DELETED"),
            (V::Shelved, None, "SHELVED"),
            (V::ShelvedOffloaded, None, "SHELVED_OFFLOADED"),
        ];
        for (vm, task, want) in rows {
            assert_eq!(
                openstack_status(*vm, *task, P::Running),
                *want,
                "{vm:?} {task:?}"
            );
        }
    }

    /// Seed 001's status vocabulary for every vm_state, and the task and power cases.
    #[test]
    fn cyclades_status_table() {
        let rows: &[(V, Option<T>, P, &str)] = &[
            (V::Building, None, P::NoState, "BUILD"),
            (V::Building, Some(T::Scheduling), P::NoState, "BUILD"),
            (V::Building, Some(T::Spawning), P::NoState, "BUILD"),
            (V::Active, None, P::Running, "ACTIVE"),
            (V::Active, Some(T::PoweringOff), P::Running, "ACTIVE"),
            (V::Active, Some(T::Deleting), P::Running, "ACTIVE"),
            (V::Active, Some(T::Rebooting), P::Running, "REBOOT"),
            (V::Active, Some(T::RebootPending), P::Running, "REBOOT"),
            (V::Active, Some(T::RebootStarted), P::Running, "REBOOT"),
            (V::Active, Some(T::RebootingHard), P::Running, "REBOOT"),
            (V::Active, Some(T::RebootPendingHard), P::Running, "REBOOT"),
            (V::Active, Some(T::RebootStartedHard), P::Running, "REBOOT"),
            (V::Active, Some(T::Rebuilding), P::Running, "BUILD"),
            (V::Active, Some(T::RebuildSpawning), P::NoState, "BUILD"),
            (V::Active, None, P::Shutdown, "STOPPED"),
            (V::Active, None, P::Crashed, "STOPPED"),
            (V::Active, Some(T::PoweringOff), P::Shutdown, "ACTIVE"),
            (V::Active, Some(T::ResizePrep), P::Running, "ACTIVE"),
            (V::Stopped, None, P::Shutdown, "STOPPED"),
            (V::Stopped, Some(T::PoweringOn), P::Shutdown, "STOPPED"),
            (V::Stopped, Some(T::Rebuilding), P::Shutdown, "BUILD"),
            (V::Paused, None, P::Paused, "STOPPED"),
            (V::Suspended, None, P::Suspended, "STOPPED"),
            (V::Shelved, None, P::Shutdown, "STOPPED"),
            (V::ShelvedOffloaded, None, P::NoState, "STOPPED"),
            (V::Resized, None, P::Running, "ACTIVE"),
            (V::Resized, Some(T::ResizeReverting), P::Running, "ACTIVE"),
            (V::Rescued, None, P::Running, "UNKNOWN"),
            (V::Error, None, P::NoState, "ERROR"),
            (V::Error, Some(T::Deleting), P::NoState, "ERROR"),
            (V::Error, Some(T::Rebuilding), P::NoState, "BUILD"),
            (V::Deleted, None, P::NoState, "DELETED"),
            (V::SoftDeleted, None, P::Shutdown, "DELETED"),
        ];
        for (vm, task, power, want) in rows {
            assert_eq!(
                cyclades_status(*vm, *task, *power),
                *want,
                "{vm:?} {task:?} {power:?}"
            );
        }
        // Every combination lands in the seed's vocabulary.
        const SEED: &[&str] = &[
            "BUILD", "ACTIVE", "STOPPED", "REBOOT", "DELETED", "UNKNOWN", "ERROR",
        ];
        for &vm in VmState::ALL {
            for task in std::iter::once(None).chain(TaskState::ALL.iter().copied().map(Some)) {
                for &power in PowerState::ALL {
                    let s = cyclades_status(vm, task, power);
                    assert!(SEED.contains(&s), "{vm:?} {task:?} {power:?} -> {s}");
                }
            }
        }
    }

    #[test]
    fn status_filter_inverse() {
        let (vms, tasks) = states_for_openstack_status("active").unwrap();
        assert_eq!(vms, vec![V::Active]);
        assert_eq!(tasks, None);
        let (vms, tasks) = states_for_openstack_status("REBOOT").unwrap();
        assert_eq!(vms, vec![V::Active]);
        assert_eq!(
            tasks.unwrap(),
            vec![T::RebootStarted, T::RebootPending, T::Rebooting]
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
        );
        let (vms, _) = states_for_openstack_status("SHUTOFF").unwrap();
        assert_eq!(vms, vec![V::Stopped]);
        assert!(states_for_openstack_status("NOPE").is_none());
    }

    fn input(vm: V, task: Option<T>) -> ActionInput {
        ActionInput {
            vm_state: vm,
            task_state: task,
            locked: false,
            launched: true,
        }
    }

    /// The whole table: for every action and every vm_state with an idle task, the decision
    /// must match the allowed set transcribed from nova's decorators.
    #[test]
    fn action_table_vm_states() {
        let allowed: &[(Action, &[V])] = &[
            (Action::RebootSoft, &[V::Active]),
            (
                Action::RebootHard,
                &[V::Active, V::Stopped, V::Paused, V::Suspended, V::Error],
            ),
            (Action::Start, &[V::Stopped]),
            (Action::Stop, &[V::Active, V::Error]),
            (Action::Pause, &[V::Active]),
            (Action::Unpause, &[V::Paused]),
            (Action::Suspend, &[V::Active]),
            (Action::Resume, &[V::Suspended]),
            (Action::Resize, &[V::Active, V::Stopped]),
            (Action::ConfirmResize, &[V::Resized]),
            (Action::RevertResize, &[V::Resized]),
            (Action::Rebuild, &[V::Active, V::Stopped, V::Error]),
            (
                Action::CreateImage,
                &[V::Active, V::Stopped, V::Paused, V::Suspended],
            ),
            (Action::ChangePassword, &[V::Active]),
            (Action::Delete, VmState::ALL),
            (Action::ForceDelete, VmState::ALL),
            (Action::Restore, &[V::SoftDeleted]),
            (Action::Lock, VmState::ALL),
            (Action::Unlock, &[]),
            (
                Action::UpdateMetadata,
                &[V::Active, V::Paused, V::Suspended, V::Stopped],
            ),
            (
                Action::UpdateTags,
                &[V::Active, V::Paused, V::Suspended, V::Stopped],
            ),
            (
                Action::ConsoleOutput,
                &[
                    V::Active,
                    V::Paused,
                    V::Suspended,
                    V::Stopped,
                    V::Resized,
                    V::Rescued,
                    V::Error,
                ],
            ),
            (Action::ResetState, VmState::ALL),
        ];
        assert_eq!(allowed.len(), Action::ALL.len(), "every action has a row");
        for (action, vms) in allowed {
            for &vm in VmState::ALL {
                let got = decide(*action, input(vm, None));
                if vms.contains(&vm) {
                    assert_eq!(got, Decision::Accept, "{action:?} in {vm:?}");
                } else if *action == Action::Unlock {
                    // Unlocking an unlocked server is a no-op, in every state.
                    assert_eq!(got, Decision::Ignore, "{action:?} in {vm:?}");
                } else {
                    assert_eq!(
                        got,
                        Decision::Deny(DenyReason::VmState(vm)),
                        "{action:?} {vm:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn action_table_task_states() {
        // Busy servers refuse idle-only actions, naming the task state.
        assert_eq!(
            decide(Action::RebootSoft, input(V::Active, Some(T::Rebooting))),
            Decision::Deny(DenyReason::TaskState(Some(T::Rebooting)))
        );
        // A hard reboot may interrupt a soft one (nova ALLOW_REBOOT).
        for t in [
            None,
            Some(T::Rebooting),
            Some(T::Pausing),
            Some(T::RebootingHard),
        ] {
            assert_eq!(
                decide(Action::RebootHard, input(V::Active, t)),
                Decision::Accept
            );
        }
        assert!(matches!(
            decide(Action::RebootHard, input(V::Active, Some(T::Deleting))),
            Decision::Deny(DenyReason::TaskState(_))
        ));
        assert_eq!(
            decide(Action::Stop, input(V::Active, Some(T::PoweringOff))),
            Decision::Deny(DenyReason::TaskState(Some(T::PoweringOff)))
        );
        // Delete works whatever the task, and a second delete is a no-op.
        assert_eq!(
            decide(Action::Delete, input(V::Building, Some(T::Spawning))),
            Decision::Accept
        );
        assert_eq!(
            decide(Action::Delete, input(V::Active, Some(T::Deleting))),
            Decision::Ignore
        );
        assert!(matches!(
            decide(Action::ForceDelete, input(V::Active, Some(T::Deleting))),
            Decision::Deny(_)
        ));
        assert_eq!(
            decide(Action::UpdateTags, input(V::Active, Some(T::Rebooting))),
            Decision::Accept
        );
        assert!(matches!(
            decide(Action::UpdateMetadata, input(V::Active, Some(T::Rebooting))),
            Decision::Deny(_)
        ));
    }

    #[test]
    fn action_table_lock_and_launch() {
        let locked = |vm| ActionInput {
            vm_state: vm,
            task_state: None,
            locked: true,
            launched: true,
        };
        for &a in Action::ALL {
            let got = decide(a, locked(V::Active));
            let lock_exempt = matches!(
                a,
                Action::CreateImage
                    | Action::Lock
                    | Action::Unlock
                    | Action::UpdateTags
                    | Action::ConsoleOutput
                    | Action::ResetState
            );
            if lock_exempt {
                assert_ne!(got, Decision::Deny(DenyReason::Locked), "{a:?}");
            } else {
                assert_eq!(got, Decision::Deny(DenyReason::Locked), "{a:?}");
            }
        }
        assert_eq!(decide(Action::Lock, locked(V::Active)), Decision::Ignore);
        assert_eq!(decide(Action::Unlock, locked(V::Active)), Decision::Accept);
        let never_launched = ActionInput {
            vm_state: V::Error,
            task_state: None,
            locked: false,
            launched: false,
        };
        assert_eq!(
            decide(Action::Stop, never_launched),
            Decision::Deny(DenyReason::NotLaunched)
        );
        assert_eq!(decide(Action::Delete, never_launched), Decision::Accept);
        assert_eq!(
            decide(Action::RebootHard, never_launched),
            Decision::Deny(DenyReason::NotLaunched)
        );
    }

    #[test]
    fn deny_messages_match_nova() {
        assert_eq!(
            deny_message(Action::Stop, "abc", &DenyReason::VmState(V::Stopped)),
            "Cannot 'stop' instance abc while it is in vm_state stopped"
        );
        assert_eq!(
            deny_message(
                Action::RebootSoft,
                "abc",
                &DenyReason::TaskState(Some(T::Rebooting))
            ),
            "Cannot 'reboot' instance abc while it is in task_state rebooting"
        );
        assert_eq!(
            deny_message(Action::Pause, "abc", &DenyReason::Locked),
            "Instance abc is locked"
        );
    }
}

#[cfg(test)]
mod mogan_tests {
    use super::*;
    use PowerState as P;
    use TaskState as T;
    use VmState as V;

    /// Every vm_state at rest, and every task that has a Mogan name.
    #[test]
    fn mogan_status_table() {
        let rows: &[(V, Option<T>, &str)] = &[
            (V::Active, None, "active"),
            (V::Building, None, "building"),
            (V::Building, Some(T::Scheduling), "building"),
            (V::Building, Some(T::Spawning), "building"),
            (V::Building, Some(T::Deleting), "deleting"),
            (V::Stopped, None, "stopped"),
            (V::Error, None, "error"),
            (V::Deleted, None, "deleted"),
            (V::Stopped, Some(T::PoweringOn), "powering-on"),
            (V::Active, Some(T::PoweringOff), "powering-off"),
            (V::Error, Some(T::PoweringOff), "powering-off"),
            (V::Active, Some(T::Rebooting), "rebooting"),
            (V::Active, Some(T::RebootPending), "rebooting"),
            (V::Active, Some(T::RebootStarted), "rebooting"),
            (V::Active, Some(T::RebootingHard), "rebooting"),
            (V::Active, Some(T::RebootPendingHard), "rebooting"),
            (V::Active, Some(T::RebootStartedHard), "rebooting"),
            (V::Stopped, Some(T::RebootingHard), "rebooting"),
            (V::Active, Some(T::Rebuilding), "rebuilding"),
            (V::Stopped, Some(T::RebuildSpawning), "rebuilding"),
            (V::Error, Some(T::RebuildBlockDeviceMapping), "rebuilding"),
            (V::Active, Some(T::Deleting), "deleting"),
            (V::Error, Some(T::Deleting), "deleting"),
            (V::Stopped, Some(T::SoftDeleting), "deleting"),
            // Tasks Mogan has no name for leave the stable state visible.
            (V::Active, Some(T::Pausing), "active"),
            (V::Active, Some(T::ImageSnapshot), "active"),
            (V::Stopped, Some(T::ResizePrep), "stopped"),
            // Core states Mogan lacks keep the core's name.
            (V::Paused, None, "paused"),
            (V::Suspended, None, "suspended"),
            (V::Rescued, None, "rescued"),
            (V::Resized, None, "resized"),
            (V::SoftDeleted, None, "soft-delete"),
            (V::Shelved, None, "shelved"),
            (V::ShelvedOffloaded, None, "shelved_offloaded"),
        ];
        for (vm, task, want) in rows {
            assert_eq!(
                mogan_status(*vm, *task, P::Running),
                *want,
                "{vm:?} {task:?}"
            );
        }
        // Every vm_state has a name (no panics, no empty strings).
        for &vm in VmState::ALL {
            for &task in TaskState::ALL {
                assert!(!mogan_status(vm, Some(task), P::NoState).is_empty());
            }
        }
    }

    #[test]
    fn mogan_power_state_table() {
        let rows: &[(P, Option<&str>)] = &[
            (P::NoState, None),
            (P::Running, Some("power on")),
            (P::Paused, Some("power on")),
            (P::Shutdown, Some("power off")),
            (P::Suspended, Some("power off")),
            (P::Crashed, Some("error")),
        ];
        assert_eq!(
            rows.len(),
            PowerState::ALL.len(),
            "every power state has a row"
        );
        for (p, want) in rows {
            assert_eq!(mogan_power_state(*p), *want, "{p:?}");
        }
    }

    #[test]
    fn mogan_target_power_state_table() {
        let rows: &[(Option<T>, Option<&str>)] = &[
            (None, None),
            (Some(T::PoweringOn), Some("power on")),
            (Some(T::PoweringOff), Some("power off")),
            (Some(T::RebootingHard), Some("rebooting")),
            (Some(T::RebootPendingHard), Some("rebooting")),
            (Some(T::RebootStartedHard), Some("rebooting")),
            (Some(T::Rebooting), Some("soft rebooting")),
            (Some(T::RebootPending), Some("soft rebooting")),
            (Some(T::RebootStarted), Some("soft rebooting")),
            (Some(T::Spawning), None),
            (Some(T::Deleting), None),
            (Some(T::Pausing), None),
        ];
        for (task, want) in rows {
            assert_eq!(mogan_target_power_state(*task), *want, "{task:?}");
        }
    }
}

/// The VPE dialect's `status` (seed 004: `active`, `shutoff`, ...), a pure function of the
/// three axes.
///
/// The seed shows a brand-new instance as `status: active` with `task: creating`, so a
/// building server reads `active` (its `task` says it is still being created). The power
/// state matters in one case: a server recorded active whose guest is reported off or
/// crashed reads `shutoff` (the power-state sync, or an HA restart, is about to act on it).
/// The task does not change the status (VPE shows it separately as `task`); it is a
/// parameter so every dialect's status function has the same shape.
pub fn vpe_status(vm: VmState, _task: Option<TaskState>, power: PowerState) -> &'static str {
    use PowerState as P;
    use VmState as V;
    match vm {
        V::Building => "active",
        V::Active if matches!(power, P::Shutdown | P::Crashed) => "shutoff",
        V::Active => "active",
        V::Stopped => "shutoff",
        V::Paused => "paused",
        V::Suspended => "suspended",
        V::Rescued => "rescued",
        V::Resized => "resized",
        V::Error => "error",
        V::SoftDeleted => "soft_deleted",
        V::Deleted => "deleted",
        V::Shelved | V::ShelvedOffloaded => "shelved",
    }
}

/// The VPE dialect's `task` (seed 004: `creating`, `deleting`, ...): what is happening to
/// the server now, in VPE's plain verbs; `None` (JSON `null`) when nothing is.
pub fn vpe_task(task: Option<TaskState>) -> Option<&'static str> {
    use TaskState as T;
    Some(match task? {
        T::Scheduling | T::BlockDeviceMapping | T::Networking | T::Spawning => "creating",
        T::Deleting | T::SoftDeleting => "deleting",
        T::PoweringOn => "starting",
        T::PoweringOff => "stopping",
        T::Rebooting
        | T::RebootPending
        | T::RebootStarted
        | T::RebootingHard
        | T::RebootPendingHard
        | T::RebootStartedHard => "rebooting",
        T::Pausing => "pausing",
        T::Unpausing => "unpausing",
        T::Suspending => "suspending",
        T::Resuming => "resuming",
        T::ResizePrep
        | T::ResizeMigrating
        | T::ResizeMigrated
        | T::ResizeFinish
        | T::ResizeConfirming
        | T::ResizeReverting => "resizing",
        T::Rebuilding | T::RebuildBlockDeviceMapping | T::RebuildSpawning => "rebuilding",
        T::ImageSnapshot
        | T::ImageSnapshotPending
        | T::ImagePendingUpload
        | T::ImageUploading
        | T::ImageBackup => "snapshotting",
        T::UpdatingPassword => "updating_password",
        T::Rescuing => "rescuing",
        T::Unrescuing => "unrescuing",
        T::Migrating => "migrating",
        T::Restoring => "restoring",
        T::Shelving
        | T::ShelvingImagePendingUpload
        | T::ShelvingImageUploading
        | T::ShelvingOffloading => "shelving",
        T::Unshelving => "unshelving",
    })
}

#[cfg(test)]
mod vpe_tests {
    use super::*;
    use PowerState as P;
    use TaskState as T;
    use VmState as V;

    /// The VPE status table, including the seed's own example (a new instance is `active`
    /// while its task is `creating`).
    #[test]
    fn vpe_status_table() {
        let rows: &[(V, Option<T>, P, &str)] = &[
            (V::Building, Some(T::Scheduling), P::NoState, "active"),
            (V::Building, Some(T::Spawning), P::NoState, "active"),
            (V::Active, None, P::Running, "active"),
            (V::Active, Some(T::PoweringOff), P::Running, "active"),
            (V::Active, Some(T::Deleting), P::Running, "active"),
            (V::Active, None, P::Crashed, "shutoff"),
            (V::Active, None, P::Shutdown, "shutoff"),
            (V::Stopped, None, P::Shutdown, "shutoff"),
            (V::Stopped, Some(T::PoweringOn), P::Shutdown, "shutoff"),
            (V::Paused, None, P::Paused, "paused"),
            (V::Suspended, None, P::Suspended, "suspended"),
            (V::Rescued, None, P::Running, "rescued"),
            (V::Resized, None, P::Running, "resized"),
            (V::Error, None, P::NoState, "error"),
            (V::Error, Some(T::Deleting), P::NoState, "error"),
            (V::SoftDeleted, None, P::Shutdown, "soft_deleted"),
            (V::Deleted, None, P::NoState, "deleted"),
            (V::Shelved, None, P::Shutdown, "shelved"),
            (V::ShelvedOffloaded, None, P::NoState, "shelved"),
        ];
        for (vm, task, power, want) in rows {
            assert_eq!(
                vpe_status(*vm, *task, *power),
                *want,
                "{vm:?} {task:?} {power:?}"
            );
        }
        // Every combination maps to one of the documented words.
        let words = [
            "active",
            "shutoff",
            "paused",
            "suspended",
            "rescued",
            "resized",
            "error",
            "soft_deleted",
            "deleted",
            "shelved",
        ];
        for &vm in VmState::ALL {
            for &p in PowerState::ALL {
                assert!(words.contains(&vpe_status(vm, None, p)));
            }
        }
    }

    #[test]
    fn vpe_task_table() {
        let rows: &[(Option<T>, Option<&str>)] = &[
            (None, None),
            (Some(T::Scheduling), Some("creating")),
            (Some(T::BlockDeviceMapping), Some("creating")),
            (Some(T::Networking), Some("creating")),
            (Some(T::Spawning), Some("creating")),
            (Some(T::Deleting), Some("deleting")),
            (Some(T::SoftDeleting), Some("deleting")),
            (Some(T::PoweringOn), Some("starting")),
            (Some(T::PoweringOff), Some("stopping")),
            (Some(T::Rebooting), Some("rebooting")),
            (Some(T::RebootStartedHard), Some("rebooting")),
            (Some(T::Pausing), Some("pausing")),
            (Some(T::Unpausing), Some("unpausing")),
            (Some(T::Suspending), Some("suspending")),
            (Some(T::Resuming), Some("resuming")),
            (Some(T::ResizePrep), Some("resizing")),
            (Some(T::ResizeReverting), Some("resizing")),
            (Some(T::Rebuilding), Some("rebuilding")),
            (Some(T::ImageUploading), Some("snapshotting")),
            (Some(T::UpdatingPassword), Some("updating_password")),
            (Some(T::Rescuing), Some("rescuing")),
            (Some(T::Unrescuing), Some("unrescuing")),
            (Some(T::Migrating), Some("migrating")),
            (Some(T::Restoring), Some("restoring")),
            (Some(T::ShelvingOffloading), Some("shelving")),
            (Some(T::Unshelving), Some("unshelving")),
        ];
        for (task, want) in rows {
            assert_eq!(vpe_task(*task), *want, "{task:?}");
        }
        // Every task state has a VPE word.
        for &t in TaskState::ALL {
            assert!(vpe_task(Some(t)).is_some(), "{t:?}");
        }
    }
}
