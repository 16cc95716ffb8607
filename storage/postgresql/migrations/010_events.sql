-- SCIM events (RFC 9967; web/events/). event_subscriptions: an IdP's receivers; `cursor` is the seq
-- of the last event a subscription is done with, `secret` sealed (web/events/keys.py), `events` the
-- JSON list of kinds it wants. events: the outbox, written in the transaction of the change that made
-- them; a transaction that writes an IdP's events holds an advisory lock on them until it commits,
-- so their seq order is their commit order. Bounded by events.outbox_max_rows and
-- events.outbox_max_days. event_attempts: every try at handing an event to a receiver, pruned with
-- the events. A subscription made or removed moves auth_epoch (sign-ins carry whether their IdP has
-- any, and a write makes events only then).
CREATE TABLE event_subscriptions (
    id text COLLATE "C" PRIMARY KEY,
    idp_id text COLLATE "C" NOT NULL REFERENCES idps(id) ON DELETE CASCADE,
    delivery text COLLATE "C" NOT NULL,
    url text COLLATE "C" NOT NULL,
    events text COLLATE "C" NOT NULL,
    form text COLLATE "C" NOT NULL,
    audience text COLLATE "C" NOT NULL,
    alg text COLLATE "C" NOT NULL,
    secret text COLLATE "C" NOT NULL,
    state text COLLATE "C" NOT NULL,
    cursor bigint NOT NULL,
    created text COLLATE "C" NOT NULL,
    delivered bigint NOT NULL DEFAULT 0,
    rejected bigint NOT NULL DEFAULT 0,
    last_error text COLLATE "C",
    last_error_at text COLLATE "C",
    last_delivered_at text COLLATE "C",
    retry_since text COLLATE "C",
    dropped bigint NOT NULL DEFAULT 0,
    lease_owner text COLLATE "C",
    lease_until text COLLATE "C"
);
CREATE INDEX event_subscriptions_idp ON event_subscriptions (idp_id);

CREATE TABLE events (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    idp_id text COLLATE "C" NOT NULL,
    txn text COLLATE "C" NOT NULL,
    time text COLLATE "C" NOT NULL,
    rtype text COLLATE "C" NOT NULL,
    resource_id text COLLATE "C" NOT NULL,
    external_id text COLLATE "C",
    kind text COLLATE "C" NOT NULL,
    version integer,
    attributes text COLLATE "C" NOT NULL,
    data text COLLATE "C"
);
CREATE INDEX events_idp ON events (idp_id, seq);
-- A user's create or put event without data (it reads the user's row, storage/outbox.py), by user.
CREATE INDEX events_live ON events (resource_id) WHERE data IS NULL;
CREATE INDEX events_time ON events (time);

CREATE TABLE event_attempts (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subscription_id text COLLATE "C" NOT NULL,
    seq bigint NOT NULL,
    time text COLLATE "C" NOT NULL,
    outcome text COLLATE "C" NOT NULL,
    status integer,
    error text COLLATE "C",
    duration_ms float8
);
CREATE INDEX event_attempts_subscription ON event_attempts (subscription_id, seq);

CREATE TRIGGER event_subscriptions_auth_changed
    AFTER INSERT OR DELETE ON event_subscriptions
    FOR EACH STATEMENT EXECUTE FUNCTION scimlet_auth_changed();
