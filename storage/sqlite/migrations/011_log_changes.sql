-- What a write changed, for the console's before/after view of a provisioning log record: the top-level
-- attributes whose stored value changed, as JSON ([before, after] each), and a group's member delta.
ALTER TABLE provisioning_log ADD COLUMN changes TEXT;
