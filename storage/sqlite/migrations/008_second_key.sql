-- Key rotation without a gap: an IdP may have a second API key beside its own. Both sign in until
-- the first is revoked, when the second becomes the IdP's key (storage/sqlite/auth.py).
ALTER TABLE idps ADD COLUMN second_api_key_id TEXT REFERENCES api_keys(id);

-- A change of either key ends the sign-ins remembered with it.
DROP TRIGGER idps_auth_changed;
CREATE TRIGGER idps_auth_changed AFTER UPDATE OF api_key_id, second_api_key_id ON idps
BEGIN
    UPDATE auth_epoch SET n = n + 1;
END;
