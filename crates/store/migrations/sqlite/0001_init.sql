-- Nimbus schema v1 (SQLite). Each resource: typed columns for what is filtered, sorted,
-- summed or constrained; `doc` holds the whole record as JSON.

CREATE TABLE servers (
    serial            INTEGER PRIMARY KEY AUTOINCREMENT,
    id                TEXT NOT NULL UNIQUE,
    project_id        TEXT NOT NULL,
    user_id           TEXT NOT NULL,
    name              TEXT NOT NULL,
    hostname          TEXT NOT NULL,
    vm_state          TEXT NOT NULL,
    task_state        TEXT,
    power_state       INTEGER NOT NULL,
    progress          INTEGER NOT NULL,
    image_id          TEXT,
    flavor_id         TEXT NOT NULL,
    vcpus             INTEGER NOT NULL,
    ram_mb            INTEGER NOT NULL,
    host              TEXT,
    host_id           TEXT,
    availability_zone TEXT,
    key_name          TEXT,
    locked            INTEGER NOT NULL,
    reservation_id    TEXT NOT NULL,
    server_group      TEXT,
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL,
    launched_at       TEXT,
    terminated_at     TEXT,
    deleted_at        TEXT,
    deleted           INTEGER NOT NULL DEFAULT 0,
    generation        INTEGER NOT NULL,
    doc               TEXT NOT NULL
);
CREATE INDEX servers_project ON servers (project_id, deleted, created_at);
CREATE INDEX servers_updated ON servers (updated_at);
CREATE INDEX servers_group ON servers (server_group) WHERE server_group IS NOT NULL;
CREATE INDEX servers_host ON servers (host_id) WHERE host_id IS NOT NULL;

CREATE TABLE flavors (
    serial     INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT NOT NULL UNIQUE,
    name       TEXT NOT NULL UNIQUE,
    is_public  INTEGER NOT NULL,
    disabled   INTEGER NOT NULL,
    vcpus      INTEGER NOT NULL,
    ram_mb     INTEGER NOT NULL,
    disk_gb    INTEGER NOT NULL,
    deleted    INTEGER NOT NULL DEFAULT 0,
    doc        TEXT NOT NULL
);

CREATE TABLE flavor_access (
    flavor_id  TEXT NOT NULL,
    project_id TEXT NOT NULL,
    PRIMARY KEY (flavor_id, project_id)
);

CREATE TABLE images (
    serial      INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT NOT NULL UNIQUE,
    name        TEXT,
    status      TEXT NOT NULL,
    visibility  TEXT NOT NULL,
    owner       TEXT,
    os_hash     TEXT,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    deleted     INTEGER NOT NULL DEFAULT 0,
    generation  INTEGER NOT NULL,
    doc         TEXT NOT NULL
);
CREATE INDEX images_hash ON images (os_hash) WHERE os_hash IS NOT NULL;

CREATE TABLE projects (
    id        TEXT PRIMARY KEY,
    name      TEXT NOT NULL,
    domain_id TEXT NOT NULL,
    doc       TEXT NOT NULL,
    UNIQUE (domain_id, name)
);

CREATE TABLE users (
    id        TEXT PRIMARY KEY,
    name      TEXT NOT NULL,
    domain_id TEXT NOT NULL,
    doc       TEXT NOT NULL,
    UNIQUE (domain_id, name)
);

CREATE TABLE roles (
    id   TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);

CREATE TABLE role_assignments (
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    project_id TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    role_id    TEXT NOT NULL REFERENCES roles (id) ON DELETE CASCADE,
    PRIMARY KEY (user_id, project_id, role_id)
);

CREATE TABLE tokens (
    hash       TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    doc        TEXT NOT NULL
);
CREATE INDEX tokens_expiry ON tokens (expires_at);

CREATE TABLE keypairs (
    serial  INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id TEXT NOT NULL,
    name    TEXT NOT NULL,
    doc     TEXT NOT NULL,
    UNIQUE (user_id, name)
);

CREATE TABLE quotas (
    project_id TEXT NOT NULL,
    resource   TEXT NOT NULL,
    hard_limit INTEGER NOT NULL,
    PRIMARY KEY (project_id, resource)
);

CREATE TABLE hosts (
    serial INTEGER PRIMARY KEY AUTOINCREMENT,
    id     TEXT NOT NULL UNIQUE,
    name   TEXT NOT NULL UNIQUE,
    doc    TEXT NOT NULL
);

-- A server's claim on a host. At most one per server; the claim moves on resize.
CREATE TABLE allocations (
    server_id TEXT PRIMARY KEY,
    host_id   TEXT NOT NULL,
    vcpus     INTEGER NOT NULL,
    ram_mb    INTEGER NOT NULL,
    disk_gb   INTEGER NOT NULL
);
CREATE INDEX allocations_host ON allocations (host_id);

CREATE TABLE server_groups (
    serial     INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT NOT NULL UNIQUE,
    project_id TEXT NOT NULL,
    doc        TEXT NOT NULL
);

CREATE TABLE operations (
    serial      INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT NOT NULL UNIQUE,
    request_id  TEXT NOT NULL,
    server_id   TEXT NOT NULL,
    state       TEXT NOT NULL,
    not_before  TEXT,
    start_time  TEXT NOT NULL,
    doc         TEXT NOT NULL
);
CREATE INDEX operations_server ON operations (server_id, serial);
CREATE INDEX operations_open ON operations (state) WHERE state IN ('pending', 'running');

CREATE TABLE operation_events (
    serial       INTEGER PRIMARY KEY AUTOINCREMENT,
    operation_id TEXT NOT NULL REFERENCES operations (id) ON DELETE CASCADE,
    event        TEXT NOT NULL,
    doc          TEXT NOT NULL
);
CREATE INDEX operation_events_op ON operation_events (operation_id, serial);
