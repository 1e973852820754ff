-- Storage pools and data volumes.
CREATE TABLE pools (
    serial INTEGER PRIMARY KEY AUTOINCREMENT,
    id     TEXT NOT NULL UNIQUE,
    name   TEXT NOT NULL UNIQUE,
    doc    TEXT NOT NULL
);

CREATE TABLE volumes (
    serial      INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT NOT NULL UNIQUE,
    pool_id     TEXT NOT NULL REFERENCES pools (id),
    project_id  TEXT NOT NULL,
    size_gb     INTEGER NOT NULL,
    attached_to TEXT,
    deleted     INTEGER NOT NULL DEFAULT 0,
    doc         TEXT NOT NULL
);
CREATE INDEX volumes_pool ON volumes (pool_id) WHERE deleted = 0;
CREATE INDEX volumes_server ON volumes (attached_to) WHERE attached_to IS NOT NULL;
