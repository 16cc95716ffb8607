-- Key rotation without a gap: an IdP may have a second API key beside its own. Both sign in until
-- the first is revoked, when the second becomes the IdP's key (storage/postgresql/auth.py).
ALTER TABLE idps ADD COLUMN second_api_key_id text COLLATE "C" REFERENCES api_keys (id);

-- A change of either key reloads every instance's bindings.
DROP TRIGGER idps_auth_changed ON idps;
CREATE TRIGGER idps_auth_changed
    AFTER INSERT OR DELETE OR UPDATE OF api_key_id, second_api_key_id ON idps
    FOR EACH STATEMENT EXECUTE FUNCTION scimlet_auth_changed();
