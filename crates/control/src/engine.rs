//! The operations engine. An [`Operation`] is persisted (in the same transaction as the
//! server state change that starts it) and then executed here as a list of named steps.
//!
//! Invariants:
//! - `op.step` is the index of the next step; it is persisted after each step completes, so
//!   a restarted controller resumes an operation at the first unfinished step.
//! - Every step is idempotent: re-running a step that completed (but whose checkpoint was
//!   lost in a crash) leaves the same end state. Agent requests are idempotent by contract.
//! - When a step fails, the `undo` of that step and of every completed step before it runs
//!   (newest first), then the plan's failure policy sets the server's state and fault.
//! - An operation is claimed (pending → running) before it runs, so it runs once at a time.
//!   On start, operations a previous process left `running` are returned to `pending`: this
//!   controller is the only one on its database (see docs/architecture.md).

use crate::Control;
use nimbus_model::operation::{Operation, OperationEvent, OperationState};
use nimbus_model::server::Fault;
use nimbus_model::state::VmState;
use nimbus_model::time::now;
use nimbus_model::{Error, OperationId, Result};
use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc};

/// What a step tells the engine.
#[derive(Debug)]
pub(crate) enum Flow {
    /// Go on with the next step.
    Continue,
    /// Stop quietly: the work no longer makes sense (the server was deleted meanwhile).
    /// Undo runs; the server's state is left to whoever changed it.
    Abort(String),
}

pub(crate) type StepFuture<'a> = Pin<Box<dyn Future<Output = Result<Flow>> + Send + 'a>>;
pub(crate) type StepFn = for<'a> fn(&'a Control, &'a Operation) -> StepFuture<'a>;

/// What a failure does to the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OnFailure {
    /// vm_state ERROR, task cleared, fault recorded (Nova: failed build, reboot, rebuild).
    SetError,
    /// Task cleared, vm_state kept, fault recorded (Nova `reverts_task_state`).
    RevertTask,
}

pub(crate) struct Step {
    pub name: &'static str,
    /// The instance-action event this step records (Nova's names), if any.
    pub event: Option<&'static str>,
    pub run: StepFn,
    pub undo: Option<StepFn>,
    pub on_failure: OnFailure,
}

pub(crate) struct Engine {
    tx: Mutex<Option<mpsc::UnboundedSender<OperationId>>>,
    in_flight: Arc<Mutex<HashSet<OperationId>>>,
    permits: Arc<Semaphore>,
}

impl Engine {
    pub(crate) fn new(concurrency: usize) -> Self {
        Engine {
            tx: Mutex::new(None),
            in_flight: Arc::new(Mutex::new(HashSet::new())),
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
        }
    }
}

/// How often the engine rescans the store for runnable operations (delayed ones, and any a
/// lost wake-up would otherwise strand).
const RESCAN: Duration = Duration::from_secs(2);

impl Control {
    /// Resume unfinished operations and start dispatching.
    pub(crate) async fn engine_start(&self) -> Result<()> {
        // Operations a previous process was running go back to pending.
        for mut op in self.inner.store.operations_open().await? {
            if op.state == OperationState::Running {
                tracing::info!(op = %op.id, action = %op.action, step = op.step, "resuming operation");
                op.state = OperationState::Pending;
                self.inner.store.operation_update(op).await?;
            }
        }
        let (tx, mut rx) = mpsc::unbounded_channel::<OperationId>();
        *self
            .inner
            .engine
            .tx
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(tx);
        let control = self.clone();
        let mut shutdown = self.shutdown_signal();
        tokio::spawn(async move {
            control.rescan().await;
            let mut tick = tokio::time::interval(RESCAN);
            loop {
                tokio::select! {
                    Some(id) = rx.recv() => control.dispatch(id),
                    _ = tick.tick() => control.rescan().await,
                    _ = shutdown.changed() => break,
                }
            }
        });
        Ok(())
    }

    /// Queue a persisted operation for execution.
    pub(crate) fn submit(&self, id: OperationId) {
        if let Some(tx) = self
            .inner
            .engine
            .tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            let _ = tx.send(id);
        }
    }

    async fn rescan(&self) {
        match self.inner.store.operations_open().await {
            Ok(ops) => {
                let t = now();
                for op in ops {
                    if op.state == OperationState::Pending && op.not_before.is_none_or(|nb| nb <= t)
                    {
                        self.dispatch(op.id);
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "engine rescan failed"),
        }
    }

    fn dispatch(&self, id: OperationId) {
        if *self.shutdown_signal().borrow() {
            return;
        }
        let engine = &self.inner.engine;
        if !engine
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id)
        {
            return;
        }
        let control = self.clone();
        let permits = engine.permits.clone();
        let in_flight = engine.in_flight.clone();
        tokio::spawn(async move {
            let _permit = permits.acquire_owned().await;
            if let Err(e) = control.run_operation(id).await {
                tracing::error!(op = %id, error = %e, "operation bookkeeping failed");
            }
            in_flight
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
        });
    }

    async fn run_operation(&self, id: OperationId) -> Result<()> {
        let store = &self.inner.store;
        let Some(op) = store.operation_get(id).await? else {
            return Ok(());
        };
        if op.not_before.is_some_and(|nb| nb > now()) {
            return Ok(());
        }
        if !store.operation_claim(id).await? {
            return Ok(());
        }
        let mut op = store
            .operation_get(id)
            .await?
            .ok_or_else(|| Error::internal("claimed op vanished"))?;
        let Some(plan) = crate::servers::plan(&op.action) else {
            op.state = OperationState::Failed;
            op.message = Some("Error".into());
            op.finish_time = Some(now());
            store.operation_update(op).await?;
            return Err(Error::internal(format!("no plan for action {id}")));
        };
        let mut shutdown = self.shutdown_signal();
        while (op.step as usize) < plan.len() {
            if *shutdown.borrow_and_update() {
                // Leave it pending; the next start resumes here.
                op.state = OperationState::Pending;
                store.operation_update(op).await?;
                return Ok(());
            }
            let step = &plan[op.step as usize];
            if let Some(ev) = step.event {
                store
                    .event_start(self.event(&op, ev, None, None).await)
                    .await?;
            }
            tracing::debug!(op = %op.id, action = %op.action, step = step.name, "running step");
            let outcome = (step.run)(self, &op).await;
            match outcome {
                Ok(Flow::Continue) => {
                    if let Some(ev) = step.event {
                        store
                            .event_finish(self.event(&op, ev, Some("Success"), None).await)
                            .await?;
                    }
                    op.step += 1;
                    op.updated_at = now();
                    store.operation_update(op.clone()).await?;
                }
                Ok(Flow::Abort(reason)) => {
                    tracing::info!(op = %op.id, action = %op.action, step = step.name, %reason, "operation aborted");
                    if let Some(ev) = step.event {
                        store
                            .event_finish(self.event(&op, ev, Some("Error"), Some(&reason)).await)
                            .await?;
                    }
                    self.undo(plan, &op).await;
                    return self.finish(op, OperationState::Failed, Some("Error")).await;
                }
                Err(err) => {
                    tracing::warn!(op = %op.id, action = %op.action, step = step.name, error = %err, "step failed");
                    if let Some(ev) = step.event {
                        store
                            .event_finish(
                                self.event(&op, ev, Some("Error"), Some(&err.to_string()))
                                    .await,
                            )
                            .await?;
                    }
                    self.undo(plan, &op).await;
                    self.apply_failure(&op, step.on_failure, &err).await;
                    return self.finish(op, OperationState::Failed, Some("Error")).await;
                }
            }
        }
        self.finish(op, OperationState::Succeeded, None).await
    }

    async fn finish(
        &self,
        mut op: Operation,
        state: OperationState,
        message: Option<&str>,
    ) -> Result<()> {
        op.state = state;
        op.message = message.map(str::to_owned);
        op.finish_time = Some(now());
        op.updated_at = now();
        self.inner.store.operation_update(op).await
    }

    /// Undo the failing step and every completed one, newest first. Undo steps are
    /// idempotent and their failures are logged, not fatal: the failure policy still runs.
    async fn undo(&self, plan: &[Step], op: &Operation) {
        for step in plan[..=(op.step as usize).min(plan.len() - 1)].iter().rev() {
            if let Some(undo) = step.undo
                && let Err(e) = undo(self, op).await
            {
                tracing::error!(op = %op.id, step = step.name, error = %e, "undo failed");
            }
        }
    }

    async fn apply_failure(&self, op: &Operation, policy: OnFailure, err: &Error) {
        let fault = Fault {
            code: match err {
                Error::NoValidHost(_) | Error::Internal(_) | Error::Unavailable(_) => 500,
                Error::InvalidRequest(_) => 400,
                Error::NotFound(_) => 404,
                Error::Conflict(_) => 409,
                _ => 500,
            },
            message: match err {
                Error::Internal(m) => m.clone(),
                other => other.to_string(),
            },
            details: format!("{} failed: {err}", op.action),
            created: now(),
        };
        let res = self
            .mutate_server(op.server_id, |s| {
                if s.deleted || s.task_state == Some(nimbus_model::state::TaskState::Deleting) {
                    return Ok(false);
                }
                if policy == OnFailure::SetError {
                    s.vm_state = VmState::Error;
                }
                s.task_state = None;
                s.fault = Some(fault.clone());
                Ok(true)
            })
            .await;
        if let Err(e) = res {
            tracing::error!(op = %op.id, error = %e, "recording failure on server failed");
        }
    }

    /// An event of `op`. Its host (Nova shows it to admins from 2.62) is the one the
    /// operation names (a create's scheduled host), else the server's host at this moment:
    /// actions on a placed server run on its host.
    async fn event(
        &self,
        op: &Operation,
        name: &str,
        result: Option<&str>,
        traceback: Option<&str>,
    ) -> OperationEvent {
        let t = now();
        let host = match op.params.get("host").and_then(|h| h.as_str()) {
            Some(h) => Some(h.to_owned()),
            None => self
                .inner
                .store
                .server_get(op.server_id)
                .await
                .ok()
                .flatten()
                .and_then(|s| s.host),
        };
        OperationEvent {
            operation_id: op.id,
            event: name.to_owned(),
            start_time: t,
            finish_time: result.map(|_| t),
            result: result.map(str::to_owned),
            traceback: traceback.map(str::to_owned),
            host,
            details: None,
        }
    }

    /// Wait until the operation finishes (tests, benchmarks, `--wait`-style callers).
    pub async fn wait_operation(&self, id: OperationId, timeout: Duration) -> Result<Operation> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let op = self
                .inner
                .store
                .operation_get(id)
                .await?
                .ok_or_else(|| Error::not_found(format!("operation {id}")))?;
            if op.state.is_final() {
                return Ok(op);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Unavailable(format!(
                    "operation {id} still {}",
                    op.state.as_str()
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
