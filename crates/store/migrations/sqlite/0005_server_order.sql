-- Listings order by (sort key, serial) with serial as the unique tie-breaker (see
-- `order_clause`). With `serial` in the index, the default order (created_at DESC, serial
-- DESC) of one project's servers is read straight off the index instead of sorted in a
-- temporary B-tree: /servers/detail of 1,000 of 10,000 servers, 4.5 -> 2.0 ms in SQLite.
CREATE INDEX servers_project_order ON servers (project_id, deleted, created_at, serial);
DROP INDEX servers_project;
-- The same for admins listing every project (all_tenants).
CREATE INDEX servers_created ON servers (created_at, serial);
