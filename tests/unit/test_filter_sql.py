"""storage.sql: resolved filters -> parameterised SQLite, run against a real database file.

Each filter is checked against the ids it must select; where the filter does not involve group
membership (kept in group_members rows, not in the document) the same ids must also come out of
scim.filters.matches evaluated in Python on the full resource.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from scim.errors import ScimError
from scim.filters import Node, matches, parse_filter
from scim.paths import resolve_text
from scim.schemas import ENTERPRISE_USER, GROUP_TYPE, USER_TYPE
from storage.sql import GROUPS, USERS, order_clause, where_clause
from storage.sqlite.dialect import SQLITE

MIGRATION = Path(__file__).resolve().parents[2] / "storage" / "sqlite" / "migrations" / "001_initial.sql"
IDP = "idp-1"
OTHER_IDP = "idp-2"
HOSTILE = "O'Brien\"; DROP TABLE users; -- x"

USERS_DATA: dict[str, tuple[dict, str]] = {
    "u1": (
        {
            "userName": "Alice@Contoso.com",
            "externalId": "Ext-1",
            "active": True,
            "title": "Engineer",
            "name": {"givenName": "Alice", "familyName": "Smith"},
            "emails": [
                {"type": "work", "value": "alice@contoso.com", "primary": True},
                {"type": "home", "value": "alice@home.net"},
            ],
            ENTERPRISE_USER: {"manager": {"value": "u2"}, "department": "Sales"},
        },
        "2026-01-01T00:00:00.000Z",
    ),
    "u2": (
        {
            "userName": "bob@contoso.com",
            "externalId": "ext-1",
            "active": False,
            "title": "",
            "name": {"givenName": "Bob", "familyName": "Jones"},
            "emails": [{"type": "work", "value": "bob@fabrikam.com"}],
            ENTERPRISE_USER: {"department": "R&D"},
        },
        "2026-02-01T00:00:00.000Z",
    ),
    "u3": (
        {
            "userName": "50%_off\\path",
            "displayName": "Percent",
        },
        "2026-03-01T00:00:00.000Z",
    ),
    "u4": (
        {
            "userName": "500xoffpath",
            "externalId": "",
            "active": True,
            "displayName": "Five hundred",
            "phoneNumbers": [{"type": "work", "value": "+16175551212"}],
            "emails": [{"type": "work", "value": ""}],
        },
        "2026-04-01T00:00:00.000Z",
    ),
    "u5": (
        {
            "userName": HOSTILE,
            "displayName": "Zoë 日本 \U0001f600",
            "title": "ÉCOLE",
            "active": False,
            ENTERPRISE_USER: {"manager": {"value": "u1"}},
        },
        "2026-05-01T00:00:00.000Z",
    ),
}
ALL_USERS = set(USERS_DATA)

# g1 holds u1 and the nested group g5 (which holds u4); g2 and g3 hold each other (a cycle); g4 is empty.
GROUPS_DATA: dict[str, tuple[str, list[tuple[str, str]]]] = {
    "g1": ("Sales", [("u1", "User"), ("g5", "Group")]),
    "g2": ("Engineering", [("u2", "User"), ("g3", "Group")]),
    "g3": ("Engineering Sub", [("g2", "Group")]),
    "g4": ("Empty", []),
    "g5": ("Sales_EU", [("u4", "User")]),
}
ALL_GROUPS = set(GROUPS_DATA)


def user_resource(uid: str) -> dict:
    doc, created = USERS_DATA[uid]
    return {**doc, "id": uid, "meta": {"resourceType": "User", "created": created, "lastModified": created}}


@pytest.fixture(scope="module")
def conn(tmp_path_factory: pytest.TempPathFactory) -> sqlite3.Connection:
    path = tmp_path_factory.mktemp("filter_sql") / "scim.db"
    db = sqlite3.connect(path)
    db.executescript(MIGRATION.read_text())
    for uid, (doc, created) in USERS_DATA.items():
        active = doc.get("active")
        db.execute(
            "INSERT INTO users (id, idp_id, user_name, external_id, active, doc, version, created, modified) "
            "VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?)",
            (
                uid,
                IDP,
                doc["userName"],
                doc.get("externalId"),
                None if active is None else int(active),
                json.dumps(doc),
                created,
                created,
            ),
        )
    # Another tenant with look-alike data: never selected.
    db.execute(
        "INSERT INTO users (id, idp_id, user_name, external_id, active, doc, version, created, modified) "
        "VALUES ('x1', ?, 'alice@contoso.com', 'Ext-1', 1, ?, 1, '2026-01-01T00:00:00.000Z', "
        "'2026-01-01T00:00:00.000Z')",
        (OTHER_IDP, json.dumps({"userName": "alice@contoso.com", "externalId": "Ext-1", "active": True})),
    )
    for gid, (display, members) in GROUPS_DATA.items():
        db.execute(
            "INSERT INTO groups (id, idp_id, display_name, external_id, doc, version, created, modified) "
            "VALUES (?, ?, ?, ?, ?, 1, '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z')",
            (gid, IDP, display, f"ext-{gid}", json.dumps({"displayName": display, "externalId": f"ext-{gid}"})),
        )
        db.executemany(
            "INSERT INTO group_members (idp_id, group_id, member_id, type) VALUES (?, ?, ?, ?)",
            [(IDP, gid, member, kind) for member, kind in members],
        )
    db.commit()
    yield db
    db.close()


def sql_ids(conn: sqlite3.Connection, text: str, group: bool = False) -> set[str]:
    rtype, tmap = (GROUP_TYPE, GROUPS) if group else (USER_TYPE, USERS)
    where, params = where_clause(parse_filter(text, rtype), tmap, IDP, SQLITE)
    rows = conn.execute(f"SELECT t.id FROM {tmap.table} AS t WHERE t.idp_id = ? AND {where}", [IDP, *params])
    return {row[0] for row in rows}


def python_ids(node: Node) -> set[str]:
    return {uid for uid in USERS_DATA if matches(node, user_resource(uid))}


def check(conn: sqlite3.Connection, text: str, expected: set[str]) -> None:
    """SQL selects `expected`, and so does matches() in Python."""
    assert sql_ids(conn, text) == expected, text
    assert python_ids(parse_filter(text, USER_TYPE)) == expected, text


# --- columns, case rules and indexes -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('userName eq "alice@contoso.com"', {"u1"}),
        ('USERNAME EQ "ALICE@CONTOSO.COM"', {"u1"}),
        ('userName ne "alice@contoso.com"', ALL_USERS - {"u1"}),
        ('userName sw "ALICE"', {"u1"}),
        ('userName ew "@CONTOSO.COM"', {"u1", "u2"}),
        ('userName co "contoso"', {"u1", "u2"}),
        ('userName gt "b"', {"u2", "u5"}),
        ('userName gt "BOB@contoso.com"', {"u5"}),
        ('userName ge "bob@contoso.com"', {"u2", "u5"}),
        ('userName lt "B"', {"u1", "u3", "u4"}),
        ('userName le "ALICE@contoso.com"', {"u1", "u3", "u4"}),
    ],
)
def test_user_name_is_case_insensitive(conn: sqlite3.Connection, text: str, expected: set[str]) -> None:
    check(conn, text, expected)


def test_external_id_is_case_exact(conn: sqlite3.Connection) -> None:
    check(conn, 'externalId eq "Ext-1"', {"u1"})
    check(conn, 'externalId eq "ext-1"', {"u2"})
    check(conn, 'externalId eq "EXT-1"', set())
    check(conn, 'externalId sw "E"', {"u1"})
    check(conn, 'externalId ew "t-1"', {"u1", "u2"})
    check(conn, 'externalId ew "Ext-1"', {"u1"})
    check(conn, 'externalId ew "EXT-1"', set())
    check(conn, 'externalId co "xt"', {"u1", "u2"})
    check(conn, 'externalId co "XT"', set())
    check(conn, 'externalId gt "Z"', {"u2"})  # "e" > "Z" in binary order
    check(conn, 'externalId sw ""', {"u1", "u2", "u4"})
    check(conn, 'externalId ew ""', {"u1", "u2", "u4"})
    check(conn, 'externalId ew "a-much-longer-suffix-than-any-value"', set())


def test_id_is_case_exact(conn: sqlite3.Connection) -> None:
    check(conn, 'id eq "u1"', {"u1"})
    check(conn, 'id eq "U1"', set())
    check(conn, 'id ne "u1"', ALL_USERS - {"u1"})


def test_user_name_eq_uses_the_index(conn: sqlite3.Connection) -> None:
    where, params = where_clause(parse_filter('userName eq "Alice@contoso.com"', USER_TYPE), USERS, IDP, SQLITE)
    plan = conn.execute(
        f"EXPLAIN QUERY PLAN SELECT t.id FROM users AS t WHERE t.idp_id = ? AND {where}", [IDP, *params]
    ).fetchall()
    assert any("users_idp_user_name" in row[-1] for row in plan), plan


def test_group_display_name_eq_uses_the_index(conn: sqlite3.Connection) -> None:
    where, params = where_clause(parse_filter('displayName eq "SALES"', GROUP_TYPE), GROUPS, IDP, SQLITE)
    plan = conn.execute(
        f"EXPLAIN QUERY PLAN SELECT t.id FROM groups AS t WHERE t.idp_id = ? AND {where}", [IDP, *params]
    ).fetchall()
    assert any("groups_idp_display_name" in row[-1] for row in plan), plan
    assert sql_ids(conn, 'displayName eq "SALES"', group=True) == {"g1"}


def test_other_tenants_are_never_selected(conn: sqlite3.Connection) -> None:
    assert sql_ids(conn, 'externalId eq "Ext-1"') == {"u1"}
    assert "x1" not in sql_ids(conn, "userName pr")


def test_booleans(conn: sqlite3.Connection) -> None:
    check(conn, "active eq true", {"u1", "u4"})
    check(conn, "active eq false", {"u2", "u5"})
    check(conn, 'active eq "TRUE"', {"u1", "u4"})
    check(conn, "active ne true", {"u2", "u3", "u5"})
    check(conn, "active pr", ALL_USERS - {"u3"})
    check(conn, "active eq null", {"u3"})
    check(conn, "emails[primary eq true]", {"u1"})
    check(conn, "emails.primary eq false", set())
    check(conn, "emails.primary ne true", ALL_USERS - {"u1"})


# --- LIKE wildcards and hostile values ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('userName co "%"', {"u3"}),
        ('userName co "_"', {"u3"}),
        (r'userName co "\\"', {"u3"}),
        ('userName sw "50%"', {"u3"}),
        ('userName sw "50_"', set()),
        ('userName sw "50%_"', {"u3"}),
        ('userName co "%_off"', {"u3"}),
        ('userName co "0%_O"', {"u3"}),
        (r'userName ew "\\PATH"', {"u3"}),
        (r'userName ew "xoff\\path"', set()),
        (r'userName ew "off\\path"', {"u3"}),
        (r'userName eq "50%_off\\path"', {"u3"}),
        ('userName eq "50%"', set()),
        ('displayName co "%"', set()),
        ('externalId co "%"', set()),
        ('externalId co "_"', set()),
    ],
)
def test_like_wildcards_are_literal(conn: sqlite3.Connection, text: str, expected: set[str]) -> None:
    check(conn, text, expected)


@pytest.mark.parametrize(
    "value",
    [
        HOSTILE,
        "O'Brien",
        "'",
        '"',
        "--",
        ";",
        "'; DELETE FROM users; --",
        "') OR 1=1 --",
        '" OR ""="',
        "Zoë 日本 \U0001f600",
        "ZOË 日本 \U0001f600",
        "\U0001f600",
        "日本",
        "\t\n\r",
        "*",
        "%' OR '%'='",
    ],
)
@pytest.mark.parametrize(
    "attr", ["userName", "displayName", "title", "externalId", "emails.value", "name.givenName", "manager"]
)
@pytest.mark.parametrize("op", ["eq", "co", "sw", "ew", "gt"])
def test_hostile_strings_are_values_not_sql(conn: sqlite3.Connection, value: str, attr: str, op: str) -> None:
    text = f"{attr} {op} {json.dumps(value)}"  # json.dumps: \" \\ escapes and \uXXXX surrogate pairs
    node = parse_filter(text, USER_TYPE)
    where, params = where_clause(node, USERS, IDP, SQLITE)
    # The SQL text is the same as for a harmless value: the value only ever travels as a parameter.
    harmless_where, harmless_params = where_clause(parse_filter(f'{attr} {op} "x"', USER_TYPE), USERS, IDP, SQLITE)
    assert (where, len(params)) == (harmless_where, len(harmless_params))
    assert value in params or op in ("co", "sw", "ew")
    check(conn, text, python_ids(node))
    assert conn.execute("SELECT count(*) FROM users").fetchone()[0] == len(USERS_DATA) + 1


def test_hostile_value_finds_its_row(conn: sqlite3.Connection) -> None:
    check(conn, f"userName eq {json.dumps(HOSTILE)}", {"u5"})
    check(conn, f"userName eq {json.dumps(HOSTILE.upper())}", {"u5"})
    check(conn, 'userName co "; DROP TABLE"', {"u5"})
    check(conn, 'userName sw "o\'brien\\""', {"u5"})
    check(conn, "displayName eq " + json.dumps(USERS_DATA["u5"][0]["displayName"]), {"u5"})
    check(conn, r'displayName eq "Zo\u00eb \u65e5\u672c \ud83d\ude00"', {"u5"})
    check(conn, r'displayName ew "\ud83d\ude00"', {"u5"})
    # Only ASCII letters fold, in SQL and Python alike.
    check(conn, 'title eq "école"', set())
    check(conn, 'title eq "École"', {"u5"})
    check(conn, 'displayName co "ZOË"', set())
    check(conn, 'displayName co "ZOë"', {"u5"})


def test_nul_in_a_value_is_rejected_not_truncated(conn: sqlite3.Connection) -> None:
    # SQLite compares text only up to a NUL under NOCASE/LIKE; such a filter is refused outright.
    with pytest.raises(ScimError) as info:
        sql_ids(conn, r'userName eq "O\u0000anything"')
    assert info.value.scim_type == "invalidFilter"


# --- complex, multi-valued and extension attributes -----------------------------------------------


def test_sub_attributes_and_multi_valued(conn: sqlite3.Connection) -> None:
    check(conn, 'name.givenName eq "alice"', {"u1"})
    check(conn, 'name.familyName sw "J"', {"u2"})
    check(conn, "name.givenName pr", {"u1", "u2"})
    check(conn, 'emails.value co "@contoso.com"', {"u1"})
    check(conn, 'emails eq "BOB@fabrikam.com"', {"u2"})
    check(conn, 'emails.type eq "home"', {"u1"})
    check(conn, 'emails[type eq "work" and value co "@contoso.com"]', {"u1"})
    check(conn, 'emails[type eq "home" and value co "@contoso.com"]', set())
    check(conn, 'emails[type eq "work"].value ew ".COM"', {"u1", "u2"})
    check(conn, 'emails[type eq "work" or value ew ".net"]', {"u1", "u2", "u4"})
    check(conn, 'emails[not (type eq "work")]', {"u1"})
    check(conn, "emails[value pr]", {"u1", "u2"})
    check(conn, 'phoneNumbers[type eq "work"].value eq "+16175551212"', {"u4"})
    check(conn, 'phoneNumbers.value sw "+1"', {"u4"})


def test_enterprise_attributes(conn: sqlite3.Connection) -> None:
    check(conn, f'{ENTERPRISE_USER}:department eq "sales"', {"u1"})
    check(conn, 'department eq "R&D"', {"u2"})
    check(conn, 'manager eq "u2"', {"u1"})
    check(conn, 'manager.value eq "u1"', {"u5"})
    check(conn, f"{ENTERPRISE_USER}:manager.value pr", {"u1", "u5"})
    check(conn, 'id eq "u1" and manager eq "u2"', {"u1"})
    check(conn, 'id eq "u1" and manager eq "u1"', set())
    check(conn, 'manager ne "u2"', ALL_USERS - {"u1"})


def test_meta_dates(conn: sqlite3.Connection) -> None:
    check(conn, 'meta.created gt "2026-02-01T00:00:00Z"', {"u3", "u4", "u5"})
    check(conn, 'meta.created ge "2026-02-01T00:00:00Z"', {"u2", "u3", "u4", "u5"})
    check(conn, 'meta.created ge "2026-02-01T01:00:00+01:00"', {"u2", "u3", "u4", "u5"})
    check(conn, 'meta.created lt "2026-02-01T00:00:00.001Z"', {"u1", "u2"})
    check(conn, 'meta.created eq "2026-03-01T00:00:00Z"', {"u3"})
    check(conn, 'meta.lastModified le "2026-01-31"', {"u1"})
    check(conn, 'meta.created gt "0999-12-31T00:00:00Z"', ALL_USERS)
    check(conn, "meta.created pr", ALL_USERS)


def test_meta_resource_type(conn: sqlite3.Connection) -> None:
    check(conn, 'meta.resourceType eq "User"', ALL_USERS)
    check(conn, 'meta.resourceType eq "user"', set())  # caseExact
    assert sql_ids(conn, 'meta.resourceType eq "Group"', group=True) == ALL_GROUPS


# --- logic, absence and presence -----------------------------------------------------------------


def test_not_and_or(conn: sqlite3.Connection) -> None:
    check(conn, 'not (userName sw "alice")', ALL_USERS - {"u1"})
    check(conn, 'not (title eq "Engineer")', ALL_USERS - {"u1"})  # absent title: "not eq" holds
    check(conn, "not (title pr)", {"u2", "u3", "u4"})
    check(conn, 'not (emails[type eq "work"])', {"u3", "u5"})
    check(conn, "not (not (active eq true))", {"u1", "u4"})
    check(conn, 'active eq true or title eq "ÉCOLE" and userName co "drop"', {"u1", "u4", "u5"})
    check(conn, '(active eq true or title eq "ÉCOLE") and userName co "alice"', {"u1"})
    check(conn, 'not (externalId eq "Ext-1" or externalId eq "ext-1")', {"u3", "u4", "u5"})
    check(conn, 'not (externalId gt "a") and not (displayName lt "q")', {"u1", "u5"})


def test_ne_with_absent_attributes(conn: sqlite3.Connection) -> None:
    check(conn, 'title ne "Engineer"', ALL_USERS - {"u1"})
    check(conn, 'externalId ne "Ext-1"', ALL_USERS - {"u1"})
    check(conn, 'displayName ne "Percent"', ALL_USERS - {"u3"})
    check(conn, 'emails.value ne "alice@contoso.com"', ALL_USERS - {"u1"})
    check(conn, 'department ne "Sales"', ALL_USERS - {"u1"})
    check(conn, 'name.givenName ne "bob"', ALL_USERS - {"u2"})
    check(conn, 'emails[type ne "work"]', {"u1"})


def test_pr_and_null_on_absent_and_empty(conn: sqlite3.Connection) -> None:
    check(conn, "title pr", {"u1", "u5"})  # u2 has "", u3/u4 none
    check(conn, "title eq null", {"u2", "u3", "u4"})
    check(conn, "title ne null", {"u1", "u5"})
    check(conn, 'title eq ""', {"u2"})
    check(conn, "externalId pr", {"u1", "u2"})  # u4 has ""
    check(conn, "externalId eq null", {"u3", "u4", "u5"})
    check(conn, "emails pr", {"u1", "u2"})  # u4's only email has an empty value
    check(conn, "emails.type pr", {"u1", "u2", "u4"})
    check(conn, "emails eq null", {"u3", "u4", "u5"})
    check(conn, "emails ne null", {"u1", "u2"})
    check(conn, "emails.type ne null", {"u1", "u2", "u4"})
    check(conn, "phoneNumbers pr", {"u4"})
    check(conn, "department pr", {"u1", "u2"})
    check(conn, "manager pr", {"u1", "u5"})


# --- group membership ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('members eq "u1"', {"g1"}),
        ('members.value eq "u1"', {"g1"}),
        ('members.value eq "U1"', {"g1"}),
        ('members eq "g5"', {"g1"}),
        ('members eq "u4"', {"g5"}),
        ('members eq "g2"', {"g3"}),
        ('members eq "nobody"', set()),
        ('members[type eq "Group"]', {"g1", "g2", "g3"}),
        ('members[type eq "User" and value eq "u2"]', {"g2"}),
        ('members.type eq "user"', {"g1", "g2", "g5"}),
        ("members pr", ALL_GROUPS - {"g4"}),
        ("members eq null", {"g4"}),
        ("members ne null", ALL_GROUPS - {"g4"}),
        ('members ne "u1"', ALL_GROUPS - {"g1"}),
        ('not (members eq "u1")', ALL_GROUPS - {"g1"}),
        ('displayName sw "sales" and members eq "u4"', {"g5"}),
        ('displayName co "_"', {"g5"}),
        ('externalId eq "ext-g2"', {"g2"}),
    ],
)
def test_group_members(conn: sqlite3.Connection, text: str, expected: set[str]) -> None:
    assert sql_ids(conn, text, group=True) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('groups.value eq "g1"', {"u1", "u4"}),  # u1 directly, u4 through g5
        ('groups eq "g5"', {"u4"}),
        ('groups eq "G5"', {"u4"}),
        ('groups eq "g2"', {"u2"}),  # g2 <-> g3 is a cycle: the query still ends
        ('groups eq "g3"', {"u2"}),
        ('groups eq "g4"', set()),
        ('groups[value eq "g1"]', {"u1", "u4"}),
        ("groups pr", {"u1", "u2", "u4"}),
        ("groups eq null", {"u3", "u5"}),
        ("groups ne null", {"u1", "u2", "u4"}),
        ('groups ne "g1"', {"u2", "u3", "u5"}),
        ("not (groups pr)", {"u3", "u5"}),
        ('groups eq "g1" and active eq true', {"u1", "u4"}),
        ('groups eq "g3" or userName sw "50"', {"u2", "u3", "u4"}),
    ],
)
def test_user_groups_direct_and_nested(conn: sqlite3.Connection, text: str, expected: set[str]) -> None:
    assert sql_ids(conn, text) == expected


@pytest.mark.parametrize(
    ("text", "rtype", "tmap"),
    [
        ('members.display eq "x"', GROUP_TYPE, GROUPS),
        ('members[display eq "x"]', GROUP_TYPE, GROUPS),
        ('groups.display eq "x"', USER_TYPE, USERS),
        ('meta.location eq "x"', USER_TYPE, USERS),
        ('meta.version eq "x"', GROUP_TYPE, GROUPS),
        ('password eq "x"', USER_TYPE, USERS),
    ],
)
def test_unfilterable_attributes_are_invalid_filter(text: str, rtype, tmap) -> None:
    with pytest.raises(ScimError) as info:
        where_clause(parse_filter(text, rtype), tmap, IDP, SQLITE)
    assert info.value.status == 400
    assert info.value.scim_type == "invalidFilter"


def test_values_are_always_parameters() -> None:
    node = parse_filter('userName eq "a" and emails[value co "b"] or title sw "c" and manager eq "d"', USER_TYPE)
    where, params = where_clause(node, USERS, IDP, SQLITE)
    assert sorted(params) == ["%b%", "a", "c%", "d"]
    assert where.count("?") == len(params)


def test_long_chains_run(conn: sqlite3.Connection) -> None:
    clause = 'title eq "a"'
    text = " or ".join([clause] * 200) + ' or title eq "ENGINEER"'
    check(conn, text, {"u1"})
    text = " and ".join(["userName pr"] * 200)
    check(conn, text, ALL_USERS)


# --- ORDER BY ----------------------------------------------------------------------------------


def ordered(conn: sqlite3.Connection, path: str, descending: bool = False) -> list[str]:
    order = order_clause(resolve_text(USER_TYPE, path), descending, USERS, SQLITE)
    return [row[0] for row in conn.execute(f"SELECT t.id FROM users AS t WHERE t.idp_id = ? ORDER BY {order}", [IDP])]


def test_order_clause(conn: sqlite3.Connection) -> None:
    assert ordered(conn, "userName") == ["u3", "u4", "u1", "u2", "u5"]
    assert ordered(conn, "userName", descending=True) == ["u5", "u2", "u1", "u4", "u3"]
    # Absent values last in both directions; ties by creation order.
    assert ordered(conn, "title") == ["u2", "u1", "u5", "u3", "u4"]
    assert ordered(conn, "title", descending=True) == ["u5", "u1", "u2", "u3", "u4"]
    assert ordered(conn, "meta.created", descending=True) == ["u5", "u4", "u3", "u2", "u1"]
    # Multi-valued: the primary (else first) element's value.
    assert ordered(conn, "emails") == ["u4", "u1", "u2", "u3", "u5"]


@pytest.mark.parametrize("path", ["groups", "groups.value", "name"])
def test_order_clause_rejects_unsortable(path: str) -> None:
    with pytest.raises(ScimError) as info:
        order_clause(resolve_text(USER_TYPE, path), False, USERS, SQLITE)
    assert info.value.scim_type == "invalidValue"


# --- the deepest filters we accept still run ---------------------------------------------------

DEEP_SHAPES = {
    "not": lambda inner, i: f"not ({inner})",
    "alternating": lambda inner, i: f"title pr {'or' if i % 2 else 'and'} ({inner})",
    "alternating-left": lambda inner, i: f"({inner}) {'or' if i % 2 else 'and'} title pr",
    "not-first": lambda inner, i: f"not (title pr) {'or' if i % 2 else 'and'} ({inner})",
    "not-and-group": lambda inner, i: f"not ({inner}) and userName pr" if i % 2 else f"userName pr or ({inner})",
}
DEEP_LEAVES = [
    'title eq "Engineer"',
    'emails[not (type eq "home") and value co "@"]',
    'groups ne "g4"',
    'emails.value ne "x"',
]


@pytest.mark.parametrize("shape", sorted(DEEP_SHAPES))
@pytest.mark.parametrize("leaf", DEEP_LEAVES)
def test_deepest_accepted_filters_run_in_sqlite(conn: sqlite3.Connection, shape: str, leaf: str) -> None:
    # SQLite's parser stack is small (100 entries in many builds): nesting must not grow it per level much.
    wrap = DEEP_SHAPES[shape]
    text, depth = leaf, 0
    while True:
        candidate = wrap(text, depth)
        try:
            parse_filter(candidate, USER_TYPE)
        except ScimError:
            break
        text, depth = candidate, depth + 1
    assert depth >= 10
    sql_ids(conn, text)  # no "parser stack overflow"
    if "groups" not in text:
        check(conn, text, sql_ids(conn, text))
