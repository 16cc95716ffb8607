-- A counter that every change able to end a sign-in moves: a key revoked (or its secret or
-- privileges changed) or deleted, an IdP given another key or deleted. The server keeps the
-- principals it has verified in memory and reads this counter at most every 0.1 s (see
-- SqliteStore.authenticate), so such a change made by another process (the CLI) takes effect
-- within that time. Triggers, not application code, move it: whoever writes the tables, it moves.
CREATE TABLE auth_epoch (n INTEGER NOT NULL);
INSERT INTO auth_epoch (n) VALUES (0);

CREATE TRIGGER api_keys_auth_changed AFTER UPDATE OF secret_hash, users_write, groups_write, revoked ON api_keys
BEGIN
    UPDATE auth_epoch SET n = n + 1;
END;

CREATE TRIGGER api_keys_auth_deleted AFTER DELETE ON api_keys
BEGIN
    UPDATE auth_epoch SET n = n + 1;
END;

CREATE TRIGGER idps_auth_changed AFTER UPDATE OF api_key_id ON idps
BEGIN
    UPDATE auth_epoch SET n = n + 1;
END;

CREATE TRIGGER idps_auth_deleted AFTER DELETE ON idps
BEGIN
    UPDATE auth_epoch SET n = n + 1;
END;
