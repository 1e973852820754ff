-- Server statistics samples (cumulative counters), kept for a retention window.
CREATE TABLE samples (
    server_id TEXT NOT NULL,
    at        TEXT NOT NULL,
    doc       TEXT NOT NULL
);
CREATE INDEX samples_server ON samples (server_id, at);
CREATE INDEX samples_at ON samples (at);
