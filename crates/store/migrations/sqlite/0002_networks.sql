-- Networks and NICs. IP and MAC uniqueness are enforced by constraints as well as by the
-- allocation transaction.

CREATE TABLE networks (
    serial     INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT NOT NULL UNIQUE,
    project_id TEXT,
    name       TEXT NOT NULL,
    shared     INTEGER NOT NULL,
    public     INTEGER NOT NULL,
    deleted    INTEGER NOT NULL DEFAULT 0,
    generation INTEGER NOT NULL,
    doc        TEXT NOT NULL
);

CREATE TABLE nics (
    id         TEXT PRIMARY KEY,
    server_id  TEXT NOT NULL,
    network_id TEXT NOT NULL REFERENCES networks (id),
    ordinal    INTEGER NOT NULL,
    mac        TEXT NOT NULL UNIQUE,
    ipv4       TEXT,
    doc        TEXT NOT NULL,
    UNIQUE (network_id, ipv4),
    UNIQUE (server_id, ordinal)
);
CREATE INDEX nics_network ON nics (network_id);
