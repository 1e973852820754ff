//! Reconcilers: periodic loops that bring stored state back in line with reality.
//!
//! - host liveness: remote hosts that stop heart-beating are marked down;
//! - stuck tasks: a server whose task has no live operation behind it (a bug or a lost
//!   operation) is failed cleanly instead of staying busy forever;
//! - soft-delete reclaim: soft-deleted servers past the reclaim window are deleted;
//! - power sync: guests that stopped or crashed with no event saying so are recorded;
//! - stats: running servers' counters are sampled;
//! - purge: deleted server rows past the retention window, expired tokens.

use crate::Control;
use nimbus_model::identity::{Context, ROLE_ADMIN};
use nimbus_model::server::{Fault, ServerFilter, ServerPage};
use nimbus_model::state::{TaskState, VmState};
use nimbus_model::time::now;
use nimbus_model::{Result, request_id};
use std::time::Duration;

/// A task untouched this long with no open operation is stuck.
const STUCK_AFTER: Duration = Duration::from_secs(300);

pub(crate) fn spawn_all(control: Control) {
    spawn_every(control.clone(), "hosts", Duration::from_secs(5), |c| {
        Box::pin(async move { c.expire_hosts().await })
    });
    spawn_every(
        control.clone(),
        "stuck-tasks",
        Duration::from_secs(60),
        |c| Box::pin(async move { c.recover_stuck().await }),
    );
    // Soft-deleted servers are reclaimed within one window of their deadline at most (as
    // Nova's periodic task runs every reclaim_instance_interval), checked at least every 30 s.
    let reclaim_every = control
        .config()
        .reclaim_interval
        .map_or(Duration::from_secs(30), |w| {
            w.clamp(Duration::from_millis(100), Duration::from_secs(30))
        });
    spawn_every(control.clone(), "reclaim", reclaim_every, |c| {
        Box::pin(async move { c.reclaim_soft_deleted().await })
    });
    let sync = control.config().power_sync_interval;
    spawn_every(control.clone(), "power-sync", sync, |c| {
        Box::pin(async move { c.sync_power_states().await })
    });
    let period = control.stats_period();
    spawn_every(control.clone(), "stats", period, |c| {
        Box::pin(async move { c.sample_all().await })
    });
    spawn_every(control, "purge", Duration::from_secs(3600), |c| {
        Box::pin(async move {
            c.purge_tokens().await?;
            c.purge_samples().await?;
            let keep = chrono::Duration::from_std(c.config().deleted_retention).unwrap_or_default();
            c.store().servers_purge(now() - keep).await?;
            Ok(())
        })
    });
}

type LoopFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>> + Send>>;

fn spawn_every(
    control: Control,
    name: &'static str,
    period: Duration,
    f: fn(Control) -> LoopFuture,
) {
    let mut shutdown = control.shutdown_signal();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if let Err(e) = f(control.clone()).await {
                        tracing::warn!(reconciler = name, error = %e, "reconciler pass failed");
                    }
                }
                _ = shutdown.changed() => break,
            }
        }
    });
}

impl Control {
    fn system_context(&self) -> Context {
        Context {
            user_id: "nimbus".into(),
            user_name: "nimbus".into(),
            project_id: "nimbus".into(),
            project_name: "nimbus".into(),
            roles: vec![ROLE_ADMIN.into()],
            request_id: request_id(),
        }
    }

    async fn recover_stuck(&self) -> Result<()> {
        let filter = ServerFilter {
            task_states: Some(TaskState::ALL.to_vec()),
            ..Default::default()
        };
        let page = ServerPage {
            limit: None,
            ..Default::default()
        };
        let cutoff = now() - chrono::Duration::from_std(STUCK_AFTER).unwrap_or_default();
        for s in self.inner.store.servers_list(filter, page).await? {
            if s.updated_at > cutoff {
                continue;
            }
            let ops = self.inner.store.operations_for_server(s.id).await?;
            if ops.iter().any(|o| !o.state.is_final()) {
                continue;
            }
            tracing::warn!(server = %s.id, task = ?s.task_state, "task has no operation behind it: failing it");
            self.mutate_server(s.id, |srv| {
                if srv.task_state.is_none() || srv.updated_at > cutoff {
                    return Ok(false);
                }
                if srv.vm_state == VmState::Building || srv.task_state == Some(TaskState::Deleting)
                {
                    srv.vm_state = VmState::Error;
                }
                srv.task_state = None;
                srv.fault = Some(Fault {
                    code: 500,
                    message: "The operation behind this task was lost; the task was cleared."
                        .into(),
                    details: String::new(),
                    created: now(),
                });
                Ok(true)
            })
            .await?;
        }
        Ok(())
    }

    async fn reclaim_soft_deleted(&self) -> Result<()> {
        let Some(window) = self.inner.config.reclaim_interval else {
            return Ok(());
        };
        let cutoff = now() - chrono::Duration::from_std(window).unwrap_or_default();
        let filter = ServerFilter {
            vm_states: Some(vec![VmState::SoftDeleted]),
            ..Default::default()
        };
        let page = ServerPage {
            limit: None,
            ..Default::default()
        };
        let ctx = self.system_context();
        for s in self.inner.store.servers_list(filter, page).await? {
            if s.task_state.is_none() && s.deleted_at.is_some_and(|d| d < cutoff) {
                tracing::info!(server = %s.id, "reclaiming soft-deleted server");
                if let Err(e) = self
                    .server_action(&ctx, s.id, crate::servers::ServerAction::ForceDelete)
                    .await
                {
                    tracing::warn!(server = %s.id, error = %e, "reclaim failed");
                }
            }
        }
        Ok(())
    }
}
