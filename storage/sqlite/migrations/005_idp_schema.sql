-- Each IdP's schema configuration (storage.records.SchemaConfig): its profile, whether what its
-- tenant does not keep is refused, and its declared extension schemas as JSON text. Existing IdPs
-- keep the rules they had: the meta-networks profile, lenient, no extensions.
ALTER TABLE idps ADD COLUMN schema_profile TEXT NOT NULL DEFAULT 'meta-networks';
ALTER TABLE idps ADD COLUMN schema_strict INTEGER NOT NULL DEFAULT 0;
ALTER TABLE idps ADD COLUMN schema_extensions TEXT NOT NULL DEFAULT '[]';

-- A signed-in principal carries its IdP's schema: a change to it must reach the sign-in cache.
CREATE TRIGGER idps_schema_changed AFTER UPDATE OF schema_profile, schema_strict, schema_extensions ON idps
BEGIN
    UPDATE auth_epoch SET n = n + 1;
END;

-- What a request sent that its tenant did not keep: a JSON array of names, NULL when nothing was.
ALTER TABLE provisioning_log ADD COLUMN ignored TEXT;
CREATE INDEX provisioning_log_idp_ignored ON provisioning_log(idp_id, time) WHERE ignored IS NOT NULL;
