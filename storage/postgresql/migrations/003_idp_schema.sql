-- Each IdP's schema configuration (storage.records.SchemaConfig): its profile, whether what its
-- tenant does not keep is refused, and its declared extension schemas as JSON text (kept as given:
-- scim.extensions parses it). Existing IdPs keep the rules they had.
ALTER TABLE idps ADD COLUMN schema_profile text NOT NULL DEFAULT 'meta-networks';
ALTER TABLE idps ADD COLUMN schema_strict boolean NOT NULL DEFAULT false;
ALTER TABLE idps ADD COLUMN schema_extensions text NOT NULL DEFAULT '[]';

-- Every instance's sign-in bindings carry the IdP's schema: a change to it reloads them.
CREATE TRIGGER idps_schema_changed
    AFTER UPDATE OF schema_profile, schema_strict, schema_extensions ON idps
    FOR EACH STATEMENT EXECUTE FUNCTION scimlet_auth_changed();

-- What a request sent that its tenant did not keep: a JSON array of names, NULL when nothing was.
ALTER TABLE provisioning_log ADD COLUMN ignored text;
CREATE INDEX provisioning_log_idp_ignored ON provisioning_log (idp_id, time) WHERE ignored IS NOT NULL;
