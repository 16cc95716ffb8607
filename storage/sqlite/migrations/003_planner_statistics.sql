-- Query planner statistics, written by hand (https://sqlite.org/fileformat2.html#stat1tab) rather
-- than measured by ANALYZE, so that plans never depend on what the data happened to look like.
-- They describe the shape we design for: one IdP may hold every row, so idp_id alone selects
-- nothing; ids, user names and display names are unique. Without them SQLite was free to find
-- 100 member ids by walking all of an IdP's users (16 ms instead of 0.2 ms at 30,000 users).
-- Nothing runs ANALYZE, so these stay as written.

-- idp_id alone, in rowid order: paging and counting one IdP's resources without a sort.
CREATE INDEX users_idp ON users(idp_id);
CREATE INDEX groups_idp ON groups(idp_id);

ANALYZE sqlite_schema;
DELETE FROM sqlite_stat1;
INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES
    ('users', 'sqlite_autoindex_users_1', '1000000 1'),
    ('users', 'users_idp_user_name', '1000000 1000000 1'),
    ('users', 'users_idp_external_id', '1000000 1000000 2'),
    ('users', 'users_idp', '1000000 1000000'),
    ('groups', 'sqlite_autoindex_groups_1', '100000 1'),
    ('groups', 'groups_idp_display_name', '100000 100000 1'),
    ('groups', 'groups_idp_external_id', '100000 100000 2'),
    ('groups', 'groups_idp', '100000 100000'),
    ('group_members', 'group_members', '10000000 1000 1'),
    ('group_members', 'group_members_member', '10000000 10');
