-- Fault injection (web/faults.py): per IdP, rules that answer a share of its SCIM requests with an
-- error, a delay or a closed connection, each until it expires (at most 24 hours after it was made).
-- Stored so that they survive a restart and reach every instance; expired rows are swept when a
-- rule is added. injected: the kind of fault a provisioning log record's answer was, else NULL.
CREATE TABLE fault_rules (
    id TEXT PRIMARY KEY,
    idp_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    fraction REAL NOT NULL,
    method TEXT,
    resource TEXT,
    operation TEXT,
    retry_after INTEGER,
    delay_ms INTEGER,
    created TEXT NOT NULL,
    expires TEXT NOT NULL
);
CREATE INDEX fault_rules_expires ON fault_rules(expires);
ALTER TABLE provisioning_log ADD COLUMN injected TEXT;
