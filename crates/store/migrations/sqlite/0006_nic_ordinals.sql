-- The next NIC ordinal of each server. A NIC id (`nic-<server serial>-<ordinal>`) names one
-- NIC: an ordinal is not handed out again after its NIC is removed, so a client holding a
-- stale NIC id never reaches a different NIC. The row goes when all the server's NICs are
-- released (delete, failed build).
CREATE TABLE nic_ordinals (
    server_id TEXT PRIMARY KEY,
    next INTEGER NOT NULL
);
