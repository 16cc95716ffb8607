-- Fault injection (web/faults.py): per IdP, rules that answer a share of its SCIM requests with an
-- error, a delay or a closed connection, each until it expires (at most 24 hours after it was made).
-- Stored so that they survive a restart and reach every instance; expired rows are swept when a
-- rule is added. injected: the kind of fault a provisioning log record's answer was, else NULL.
CREATE TABLE fault_rules (
    id text COLLATE "C" PRIMARY KEY,
    idp_id text COLLATE "C" NOT NULL,
    kind text COLLATE "C" NOT NULL,
    fraction float8 NOT NULL,
    method text COLLATE "C",
    resource text COLLATE "C",
    operation text COLLATE "C",
    retry_after integer,
    delay_ms integer,
    created text COLLATE "C" NOT NULL,
    expires text COLLATE "C" NOT NULL
);
CREATE INDEX fault_rules_expires ON fault_rules (expires);
ALTER TABLE provisioning_log ADD COLUMN injected text;
