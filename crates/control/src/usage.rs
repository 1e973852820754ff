//! Usage accounting (Nova's os-simple-tenant-usage): which servers ran during a window, and
//! for how many hours, computed from the server records themselves (live and deleted).
//!
//! Deleted servers count only while their rows are kept (`Config::deleted_retention`):
//! windows older than that undercount, where Nova keeps deleted rows until archived.

use crate::Control;
use nimbus_model::identity::Context;
use nimbus_model::server::{Server, ServerFilter, ServerPage, ServerSortKey, SortDir};
use nimbus_model::time::Timestamp;
use nimbus_model::{Error, ProjectId, Result};

/// One server's share of a usage window.
#[derive(Clone, Debug)]
pub struct ServerUsage {
    pub server: Server,
    /// Hours the server ran inside the window.
    pub hours: f64,
}

/// Nova `_hours_for`: the overlap of [launched, terminated) with [start, stop], in hours;
/// 0 for a server that never launched.
pub fn hours_for(
    launched: Option<Timestamp>,
    terminated: Option<Timestamp>,
    start: Timestamp,
    stop: Timestamp,
) -> f64 {
    let Some(launched) = launched else {
        return 0.0;
    };
    if terminated.is_some_and(|t| t < start) || launched > stop {
        return 0.0;
    }
    let from = launched.max(start);
    let to = terminated.map_or(stop, |t| t.min(stop));
    (to - from).num_microseconds().unwrap_or(0) as f64 / 3_600_000_000.0
}

/// Nova's window query: not terminated before the window opened, launched before it closed.
fn active_in(s: &Server, start: Timestamp, stop: Timestamp) -> bool {
    s.launched_at.is_some_and(|l| l < stop) && s.terminated_at.is_none_or(|t| t > start)
}

impl Control {
    /// Servers active in `[start, stop]`, ordered by (project, id) as Nova pages them, with
    /// their hours. `project: None` is every project (admin only); one project needs to be
    /// the caller's or the caller an admin. `marker` is a server id (which must exist, live
    /// or deleted); `limit` is capped at `max_limit`.
    pub async fn usage(
        &self,
        ctx: &Context,
        project: Option<&ProjectId>,
        start: Timestamp,
        stop: Timestamp,
        limit: Option<usize>,
        marker: Option<&str>,
    ) -> Result<Vec<ServerUsage>> {
        match project {
            None if !ctx.is_admin() => {
                return Err(Error::Forbidden(
                    "Policy doesn't allow os_compute_api:os-simple-tenant-usage:list to be performed."
                        .into(),
                ));
            }
            Some(p) if p != &ctx.project_id && !ctx.is_admin() => {
                return Err(Error::Forbidden(
                    "Policy doesn't allow os_compute_api:os-simple-tenant-usage:show to be performed."
                        .into(),
                ));
            }
            _ => {}
        }
        let filter = ServerFilter {
            project_id: project.cloned(),
            include_deleted: true,
            ..Default::default()
        };
        let page = ServerPage {
            sort: vec![
                (ServerSortKey::ProjectId, SortDir::Asc),
                (ServerSortKey::Uuid, SortDir::Asc),
            ],
            marker: None,
            limit: None,
        };
        let all = self.inner.store.servers_list(filter, page).await?;
        let from = match marker {
            None => 0,
            Some(m) => {
                all.iter()
                    .position(|s| s.id.to_string() == m)
                    .ok_or_else(|| Error::invalid(format!("Marker {m} could not be found.")))?
                    + 1
            }
        };
        let limit = limit
            .unwrap_or(self.inner.config.max_limit)
            .min(self.inner.config.max_limit);
        Ok(all
            .into_iter()
            .skip(from)
            .filter(|s| active_in(s, start, stop))
            .take(limit)
            .map(|server| ServerUsage {
                hours: hours_for(server.launched_at, server.terminated_at, start, stop),
                server,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(h: u32) -> Timestamp {
        chrono::Utc.with_ymd_and_hms(2024, 1, 1, h, 0, 0).unwrap()
    }

    #[test]
    fn hours_table() {
        let (start, stop) = (at(10), at(20));
        let cases = [
            // (launched, terminated, hours)
            (None, None, 0.0),
            (Some(at(8)), None, 10.0),
            (Some(at(12)), None, 8.0),
            (Some(at(12)), Some(at(15)), 3.0),
            (Some(at(8)), Some(at(9)), 0.0),
            (Some(at(21)), None, 0.0),
            (Some(at(8)), Some(at(22)), 10.0),
        ];
        for (l, t, want) in cases {
            assert_eq!(hours_for(l, t, start, stop), want, "{l:?} {t:?}");
        }
        let half = chrono::Utc.with_ymd_and_hms(2024, 1, 1, 19, 30, 0).unwrap();
        assert_eq!(hours_for(Some(half), None, start, stop), 0.5);
    }
}
