-- API keys: the secret is never stored, only its SHA-256 (secrets are 256-bit random tokens).
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL COLLATE NOCASE UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    secret_hash TEXT NOT NULL UNIQUE,
    users_write INTEGER NOT NULL DEFAULT 0,
    groups_write INTEGER NOT NULL DEFAULT 0,
    created TEXT NOT NULL,
    last_used TEXT,
    revoked TEXT
);

-- An IdP configuration is a tenant: every SCIM row carries its idp_id.
CREATE TABLE idps (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL COLLATE NOCASE UNIQUE,
    icon TEXT NOT NULL DEFAULT 'key',
    api_key_id TEXT REFERENCES api_keys(id),
    created TEXT NOT NULL
);

CREATE TABLE users (
    rowid INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    idp_id TEXT NOT NULL,
    user_name TEXT NOT NULL COLLATE NOCASE,
    external_id TEXT,
    active INTEGER,
    doc TEXT NOT NULL,
    version INTEGER NOT NULL,
    created TEXT NOT NULL,
    modified TEXT NOT NULL
);
CREATE UNIQUE INDEX users_idp_user_name ON users(idp_id, user_name);
CREATE INDEX users_idp_external_id ON users(idp_id, external_id);

CREATE TABLE groups (
    rowid INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    idp_id TEXT NOT NULL,
    display_name TEXT NOT NULL COLLATE NOCASE,
    external_id TEXT,
    doc TEXT NOT NULL,
    version INTEGER NOT NULL,
    created TEXT NOT NULL,
    modified TEXT NOT NULL
);
CREATE UNIQUE INDEX groups_idp_display_name ON groups(idp_id, display_name);
CREATE INDEX groups_idp_external_id ON groups(idp_id, external_id);

-- One row per (group, member): membership changes are row inserts and deletes.
CREATE TABLE group_members (
    idp_id TEXT NOT NULL,
    group_id TEXT NOT NULL,
    member_id TEXT NOT NULL,
    type TEXT NOT NULL,
    PRIMARY KEY (group_id, member_id)
) WITHOUT ROWID;
CREATE INDEX group_members_member ON group_members(member_id);

CREATE TABLE provisioning_log (
    id INTEGER PRIMARY KEY,
    time TEXT NOT NULL,
    idp_id TEXT,
    api_key_id TEXT,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    operation TEXT NOT NULL,
    resource_type TEXT,
    resource_id TEXT,
    target TEXT,
    status INTEGER NOT NULL,
    scim_type TEXT,
    detail TEXT,
    duration_ms REAL NOT NULL,
    client TEXT,
    request_body TEXT,
    response_body TEXT
);
CREATE INDEX provisioning_log_idp_time ON provisioning_log(idp_id, time);
CREATE INDEX provisioning_log_time ON provisioning_log(time);
