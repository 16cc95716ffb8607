-- A resource's timeline (the console's user and group pages): every request addressed to it, found by
-- its id without reading the whole log.
CREATE INDEX provisioning_log_resource ON provisioning_log (resource_id, time) WHERE resource_id IS NOT NULL;
