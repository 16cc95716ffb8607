-- The names of deleted IdPs: their provisioning log records outlive them (until pruned), and the
-- console names the IdP of each record. One row per IdP ever deleted, written with its deletion.
CREATE TABLE deleted_idps (
    id text COLLATE "C" PRIMARY KEY,
    name text COLLATE "C" NOT NULL,
    deleted text COLLATE "C" NOT NULL
);
