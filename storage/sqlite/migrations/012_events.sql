-- SCIM events (RFC 9967; web/events/). event_subscriptions: an IdP's receivers; `cursor` is the seq
-- of the last event a subscription is done with, `secret` sealed (web/events/keys.py), `events` the
-- JSON list of kinds it wants. events: the outbox, written in the transaction of the change that made
-- them, in commit order (seq); bounded by events.outbox_max_rows and events.outbox_max_days (no
-- index on time, which would cost each write a page more: the age bound is found by a scan on a
-- reader, once a minute). seq is the rowid, not AUTOINCREMENT (which costs each write a page of
-- sqlite_sequence): pruning never deletes the newest row, so a new seq is always above every old one.
-- event_attempts: every try at handing an event to a receiver, pruned with the events.
-- A subscription made or removed moves auth_epoch: sign-ins carry whether their IdP has any, and a
-- write makes events only then.
CREATE TABLE event_subscriptions (
    id TEXT PRIMARY KEY,
    idp_id TEXT NOT NULL REFERENCES idps(id) ON DELETE CASCADE,
    delivery TEXT NOT NULL,
    url TEXT NOT NULL,
    events TEXT NOT NULL,
    form TEXT NOT NULL,
    audience TEXT NOT NULL,
    alg TEXT NOT NULL,
    secret TEXT NOT NULL,
    state TEXT NOT NULL,
    cursor INTEGER NOT NULL,
    created TEXT NOT NULL,
    delivered INTEGER NOT NULL DEFAULT 0,
    rejected INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    last_error_at TEXT,
    last_delivered_at TEXT,
    retry_since TEXT,
    dropped INTEGER NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_until TEXT
);
CREATE INDEX event_subscriptions_idp ON event_subscriptions(idp_id);

CREATE TABLE events (
    seq INTEGER PRIMARY KEY,
    idp_id TEXT NOT NULL,
    txn TEXT NOT NULL,
    time TEXT NOT NULL,
    rtype TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    external_id TEXT,
    kind TEXT NOT NULL,
    version INTEGER,
    attributes TEXT NOT NULL,
    data TEXT
);
CREATE INDEX events_idp ON events(idp_id, seq);
-- A user's create or put event without data (it reads the user's row, storage/outbox.py), by user.
CREATE INDEX events_live ON events(resource_id) WHERE data IS NULL;

CREATE TABLE event_attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    subscription_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    time TEXT NOT NULL,
    outcome TEXT NOT NULL,
    status INTEGER,
    error TEXT,
    duration_ms REAL
);
CREATE INDEX event_attempts_subscription ON event_attempts(subscription_id, seq);

CREATE TRIGGER event_subscriptions_added AFTER INSERT ON event_subscriptions
BEGIN
    UPDATE auth_epoch SET n = n + 1;
END;

CREATE TRIGGER event_subscriptions_removed AFTER DELETE ON event_subscriptions
BEGIN
    UPDATE auth_epoch SET n = n + 1;
END;
