-- A group's membership delta (the members of one PATCH add, or of one remove) in one statement:
-- the group's row is locked only while PostgreSQL runs it, not across round trips to scimlet, so
-- concurrent adds to one group follow each other at the database's speed. The caller read the
-- group and ran the PATCH on that document; p_doc is it, and when the stored document is no longer
-- it ('stale') the caller runs the PATCH again in a transaction. 'missing': no such group in the
-- IdP. 'invalid': some id is not a user or group of the IdP, is the group itself, or is not of the
-- type the request declared (p_kinds: '' for undeclared); found_ids/found_kinds say what each id is,
-- for the caller's error, and nothing was changed. 'ok': new_version and new_modified are the
-- group's after (changed only when a member row was inserted or deleted).
CREATE FUNCTION scimlet_member_delta(
    p_idp text, p_group text, p_doc jsonb, p_op text, p_ids text[], p_kinds text[], p_modified text
) RETURNS TABLE (outcome text, new_version integer, new_modified text, found_ids text[], found_kinds text[])
LANGUAGE plpgsql AS $$
DECLARE
    stored_doc jsonb;
    stored_version integer;
    stored_modified text;
    ids text[];
    kinds text[];
    changed integer;
BEGIN
    SELECT g.doc, g.version, g.modified INTO stored_doc, stored_version, stored_modified FROM groups AS g
        WHERE g.id = p_group AND g.idp_id = p_idp FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'missing', NULL::integer, NULL::text, NULL::text[], NULL::text[];
        RETURN;
    END IF;
    IF stored_doc <> p_doc THEN
        RETURN QUERY SELECT 'stale', stored_version, stored_modified, NULL::text[], NULL::text[];
        RETURN;
    END IF;
    IF p_op = 'add' THEN
        -- An index probe per id (a join on unnest: = ANY's bitmap scan costs twice as much); the
        -- groups only when some id is not a user (a nested group).
        SELECT array_agg(x.id), array_agg('User'::text) INTO ids, kinds
            FROM unnest(p_ids) AS x(id) JOIN users AS u ON u.id = x.id WHERE u.idp_id = p_idp;
        IF coalesce(cardinality(ids), 0) < cardinality(p_ids) THEN
            SELECT coalesce(ids, '{}'::text[]) || array_agg(x.id), coalesce(kinds, '{}'::text[]) || array_agg('Group'::text)
                INTO ids, kinds
                FROM unnest(p_ids) AS x(id) JOIN groups AS g ON g.id = x.id WHERE g.idp_id = p_idp;
        END IF;
        IF coalesce(cardinality(ids), 0) <> cardinality(p_ids) OR p_group = ANY(ids) OR EXISTS (
            SELECT 1 FROM unnest(p_ids, p_kinds) AS d(id, kind)
            JOIN unnest(ids, kinds) AS f(id, kind) ON f.id = d.id
            WHERE d.kind <> '' AND d.kind <> f.kind
        ) THEN
            RETURN QUERY SELECT 'invalid', stored_version, stored_modified, ids, kinds;
            RETURN;
        END IF;
        INSERT INTO group_members (idp_id, group_id, member_id, type)
            SELECT p_idp, p_group, f.id, f.kind FROM unnest(ids, kinds) AS f(id, kind)
            ON CONFLICT DO NOTHING;
    ELSE
        DELETE FROM group_members WHERE group_id = p_group AND member_id = ANY(p_ids);
    END IF;
    GET DIAGNOSTICS changed = ROW_COUNT;
    IF changed > 0 THEN
        UPDATE groups SET version = version + 1, modified = p_modified WHERE id = p_group
            RETURNING version, modified INTO stored_version, stored_modified;
    END IF;
    RETURN QUERY SELECT 'ok', stored_version, stored_modified, NULL::text[], NULL::text[];
END
$$;
