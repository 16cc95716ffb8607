-- The names of deleted IdPs: their provisioning log records outlive them (until pruned), and the
-- console names the IdP of each record. One row per IdP ever deleted, written with its deletion.
CREATE TABLE deleted_idps (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    deleted TEXT NOT NULL
);
