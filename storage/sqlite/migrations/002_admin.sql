-- Server-wide settings kept in the database: the admin password's scrypt hash and the key that
-- signs console session cookies. Values are text; the code that owns a key knows its format.
CREATE TABLE settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    updated TEXT NOT NULL
);

-- Admin console sessions. The cookie carries a signed random id; only its SHA-256 is stored, so a
-- copy of the database cannot be replayed as a session. Signing out deletes the row.
CREATE TABLE admin_sessions (
    id_hash TEXT PRIMARY KEY,
    csrf_token TEXT NOT NULL,
    created TEXT NOT NULL,
    expires TEXT NOT NULL,
    client TEXT
);
CREATE INDEX admin_sessions_expires ON admin_sessions(expires);

-- The console's per-IdP counters (operations, failures, last activity in the last 24 hours) read
-- only this index, never the log rows with their bodies.
CREATE INDEX provisioning_log_idp_time_status ON provisioning_log(idp_id, time, status);
