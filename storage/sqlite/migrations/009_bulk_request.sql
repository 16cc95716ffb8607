-- The records of one Bulk request's operations share its id (web/scim/bulk.py): the console and
-- the admin API list them together. NULL for a request sent alone.
ALTER TABLE provisioning_log ADD COLUMN bulk_request TEXT;
CREATE INDEX provisioning_log_bulk_request ON provisioning_log (bulk_request) WHERE bulk_request IS NOT NULL;
