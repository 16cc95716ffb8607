-- The whole schema of the PostgreSQL backend, as SQLite's migrations 001-004 leave theirs.
-- Text is compared byte by byte (COLLATE "C", as SQLite's BINARY) and names fold ASCII letters only
-- (scim_fold, as SQLite's NOCASE and scim.filters.fold): the database's own locale never decides
-- whether two userNames are the same or how a page is sorted. Timestamps are the same ISO text
-- (UTC, milliseconds, Z) as SQLite's, so filters on meta.created compare alike on every backend.

-- ASCII-only case folding: lower() would also fold É to é under a UTF-8 locale, unlike SQLite.
CREATE FUNCTION scim_fold(text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$SELECT translate($1, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz')$$;

-- API keys: the secret is never stored, only its SHA-256 (secrets are 256-bit random tokens).
CREATE TABLE api_keys (
    id text COLLATE "C" PRIMARY KEY,
    name text COLLATE "C" NOT NULL,
    description text NOT NULL DEFAULT '',
    secret_hash text COLLATE "C" NOT NULL UNIQUE,
    users_write boolean NOT NULL DEFAULT false,
    groups_write boolean NOT NULL DEFAULT false,
    created text COLLATE "C" NOT NULL,
    last_used text COLLATE "C",
    revoked text COLLATE "C"
);
CREATE UNIQUE INDEX api_keys_name ON api_keys (scim_fold(name));

-- An IdP configuration is a tenant: every SCIM row carries its idp_id.
CREATE TABLE idps (
    id text COLLATE "C" PRIMARY KEY,
    name text COLLATE "C" NOT NULL,
    icon text NOT NULL DEFAULT 'key',
    api_key_id text COLLATE "C" REFERENCES api_keys (id),
    created text COLLATE "C" NOT NULL
);
CREATE UNIQUE INDEX idps_name ON idps (scim_fold(name));

-- seq: creation order (SQLite's rowid), the default order of a list and the last tie-breaker of a sort.
-- doc: the canonical document, hot attributes included; they are kept in columns for the indexes.
CREATE TABLE users (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id text COLLATE "C" NOT NULL UNIQUE,
    idp_id text COLLATE "C" NOT NULL,
    user_name text COLLATE "C" NOT NULL,
    external_id text COLLATE "C",
    active boolean,
    doc jsonb NOT NULL,
    version integer NOT NULL,
    created text COLLATE "C" NOT NULL,
    modified text COLLATE "C" NOT NULL
);
CREATE UNIQUE INDEX users_idp_user_name ON users (idp_id, scim_fold(user_name));
CREATE INDEX users_idp_external_id ON users (idp_id, external_id);
CREATE INDEX users_idp_seq ON users (idp_id, seq);

CREATE TABLE groups (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id text COLLATE "C" NOT NULL UNIQUE,
    idp_id text COLLATE "C" NOT NULL,
    display_name text COLLATE "C" NOT NULL,
    external_id text COLLATE "C",
    doc jsonb NOT NULL,
    version integer NOT NULL,
    created text COLLATE "C" NOT NULL,
    modified text COLLATE "C" NOT NULL
);
CREATE UNIQUE INDEX groups_idp_display_name ON groups (idp_id, scim_fold(display_name));
CREATE INDEX groups_idp_external_id ON groups (idp_id, external_id);
CREATE INDEX groups_idp_seq ON groups (idp_id, seq);

-- One row per (group, member): membership changes are row inserts and deletes.
CREATE TABLE group_members (
    idp_id text COLLATE "C" NOT NULL,
    group_id text COLLATE "C" NOT NULL,
    member_id text COLLATE "C" NOT NULL,
    type text COLLATE "C" NOT NULL,
    PRIMARY KEY (group_id, member_id)
);
CREATE INDEX group_members_member ON group_members (member_id);

CREATE TABLE provisioning_log (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    time text COLLATE "C" NOT NULL,
    idp_id text COLLATE "C",
    api_key_id text COLLATE "C",
    method text NOT NULL,
    path text NOT NULL,
    operation text NOT NULL,
    resource_type text,
    resource_id text COLLATE "C",
    target text,
    status integer NOT NULL,
    scim_type text,
    detail text,
    duration_ms double precision NOT NULL,
    client text,
    request_body text,
    response_body text
);
CREATE INDEX provisioning_log_time ON provisioning_log (time, id);
CREATE INDEX provisioning_log_idp_time_status ON provisioning_log (idp_id, time, status);

-- Server-wide settings: the admin password's scrypt hash, the key that signs console cookies.
CREATE TABLE settings (
    key text COLLATE "C" PRIMARY KEY,
    value text NOT NULL,
    updated text NOT NULL
);

-- Admin console sessions, by the SHA-256 of their id.
CREATE TABLE admin_sessions (
    id_hash text COLLATE "C" PRIMARY KEY,
    csrf_token text NOT NULL,
    created text COLLATE "C" NOT NULL,
    expires text COLLATE "C" NOT NULL,
    client text
);
CREATE INDEX admin_sessions_expires ON admin_sessions (expires);

-- Every change able to end a sign-in (a key created, revoked, deleted or changed; an IdP created,
-- given another key or deleted) moves this counter and notifies channel scimlet_auth. Each
-- instance keeps the IdPs' keys in memory, reloads them on the notification at once, and reads the
-- counter every second in case a notification was lost with its connection. Triggers, not
-- application code, do it: whoever writes the tables (another instance, the CLI, psql), it happens.
CREATE TABLE auth_epoch (n bigint NOT NULL);
INSERT INTO auth_epoch (n) VALUES (0);

CREATE FUNCTION scimlet_auth_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE auth_epoch SET n = n + 1;
    PERFORM pg_notify('scimlet_auth', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER api_keys_auth_changed
    AFTER INSERT OR DELETE OR UPDATE OF secret_hash, users_write, groups_write, revoked ON api_keys
    FOR EACH STATEMENT EXECUTE FUNCTION scimlet_auth_changed();
CREATE TRIGGER idps_auth_changed
    AFTER INSERT OR DELETE OR UPDATE OF api_key_id ON idps
    FOR EACH STATEMENT EXECUTE FUNCTION scimlet_auth_changed();
