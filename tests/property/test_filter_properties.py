"""Properties of filters: any text parses or fails as invalidFilter, and each backend's search selects
what Python matches.

A backend's search (the filter translated to its SQL) and scim.filters.matches (the filter evaluated
in Python) are two implementations of RFC 7644 §3.4.2.2 over the same AST; for generated filters over
users written through the backend's own `create`, they must select exactly the same ids. Every test
here runs once per backend (tests/backends.py), on a store of its own for the module.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from scim.errors import ScimError
from scim.extensions import parse_declarations
from scim.filters import Node, fold, format_datetime, matches, parse_filter
from scim.schemas import ENTERPRISE_USER, GROUP_TYPE, USER, USER_TYPE
from scim.tenant import tenant
from storage import Query, Store
from tests import pg_server
from tests.backends import BACKENDS, open_store

SETTINGS = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


@dataclass
class Backend:
    """A store on one backend, driven from these synchronous (hypothesis) tests through its own loop."""

    runner: asyncio.Runner
    store: Store
    empty_idp: str  # an IdP with no resources: what an accepted filter runs against in (a)
    tenants: Iterator[int]

    def run(self, coro: Any) -> Any:
        return self.runner.run(coro)

    def ids(self, rtype: str, idp_id: str, node: Node) -> set[str]:
        total, rows = self.run(self.store.search(rtype, idp_id, Query(where=node, count=1000, members=False)))
        assert total == len(rows)
        return {row.id for row in rows}


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    with contextlib.ExitStack() as stack:
        if request.param == "postgresql":
            url = stack.enter_context(pg_server.fresh_database(request.getfixturevalue("postgresql_url")))
        else:
            url = f"sqlite:///{tmp_path_factory.mktemp('filter_properties') / 'scim.db'}"
        runner = stack.enter_context(asyncio.Runner())
        store = runner.run(open_store(url))
        stack.callback(runner.run, store.close())
        empty = runner.run(store.create_idp("no resources", "", None))
        yield Backend(runner, store, empty.id, itertools.count())


def assert_invalid_filter(err: ScimError) -> None:
    assert err.status == 400
    assert err.scim_type == "invalidFilter"
    assert err.detail


# --- (a) any text: a node, or invalidFilter --------------------------------------------------------

TOKENS = [
    "userName",
    "USERNAME",
    "name.givenName",
    "emails",
    "emails.value",
    ".value",
    "type",
    "value",
    "primary",
    "members",
    "members.value",
    "groups",
    "manager",
    "active",
    "meta.created",
    "title",
    "id",
    "externalId",
    f"{USER}:",
    f"{ENTERPRISE_USER}:",
    "urn:x:",
    "urn:",
    ":",
    ".",
    "$ref",
    "eq",
    "ne",
    "co",
    "sw",
    "ew",
    "gt",
    "ge",
    "lt",
    "le",
    "pr",
    "and",
    "or",
    "not",
    "AND",
    "Not",
    "true",
    "false",
    "null",
    "0",
    "-1",
    "1.5e3",
    "01",
    "1e999",
    '"a"',
    '"A%_\\\\"',
    '"\\""',
    '""',
    '"\\u00e9"',
    '"\\ud83d\\ude00"',
    '"\\ud800"',
    '"\\u0000"',
    '"2026-01-01T00:00:00Z"',
    '"0001-01-01T00:00:00+01:00"',
    '"',
    "\\",
    "'",
    "(",
    ")",
    "[",
    "]",
    "[]",
    "()",
    " ",
    "\t",
    ",",
    "*",
    ";",
    "--",
]
token_soup = st.lists(st.sampled_from(TOKENS), max_size=24).map(" ".join) | st.lists(
    st.sampled_from(TOKENS), max_size=24
).map("".join)


def parse_or_invalid(backend: Backend, text: str) -> None:
    for rtype in (USER_TYPE, GROUP_TYPE):
        try:
            node = parse_filter(text, rtype)
        except ScimError as err:
            assert_invalid_filter(err)
            event(f"{rtype.name}: invalidFilter")
            continue
        event(f"{rtype.name}: parsed")
        try:
            backend.ids(rtype.name, backend.empty_idp, node)  # an accepted filter always runs: no SQL error
        except ScimError as err:
            assert_invalid_filter(err)  # e.g. members.display: valid syntax, but not filterable


@SETTINGS
@given(text=st.text())
def test_arbitrary_text_parses_or_is_invalid_filter(backend: Backend, text: str) -> None:
    parse_or_invalid(backend, text)


@settings(SETTINGS, max_examples=600)
@given(text=token_soup)
def test_token_soup_parses_or_is_invalid_filter(backend: Backend, text: str) -> None:
    parse_or_invalid(backend, text)


def mutate(text: str, edits: list[tuple[int, int, str]]) -> str:
    """Near-valid filters: cut, insert and duplicate at random points of a valid one."""
    for where, length, token in edits:
        at = where % (len(text) + 1)
        if length < 0:
            text = text[:at] + text[at - length :]
        elif length == 0:
            text = text[:at] + token + text[at:]
        else:
            text = text[:at] + text[at : at + length] + text[at:]
    return text


edits = st.lists(st.tuples(st.integers(0, 10_000), st.integers(-6, 6), st.sampled_from(TOKENS)), min_size=1, max_size=3)


@settings(SETTINGS, max_examples=600)
@given(data=st.data())
def test_mutated_filters_parse_or_are_invalid_filter(backend: Backend, data: st.DataObject) -> None:
    text = data.draw(FILTERS | GROUP_FILTERS, label="valid filter")
    parse_or_invalid(backend, data.draw(edits.map(lambda e: mutate(text, e)), label="mutated"))


WRAPPERS = [
    "not ({})",
    "({})",
    "title pr and ({})",
    "({}) or title pr",
    "not (title pr) or ({})",
    "not ({}) and userName pr",
    "emails[type pr] and ({})",
    "({}) and (groups pr or id pr)",
]
DEEP_LEAVES = [
    'title eq "a"',
    'emails[not (type eq "a") or value co "b"]',
    'groups ne "g"',
    "emails.value ne null",
    'manager eq "m"',
    'meta.created gt "2026-01-01"',
]


@SETTINGS
@given(leaf=st.sampled_from(DEEP_LEAVES), wrappers=st.lists(st.sampled_from(WRAPPERS), min_size=20, max_size=40))
def test_deeply_nested_filters_run_or_are_invalid(backend: Backend, leaf: str, wrappers: list[str]) -> None:
    text = leaf
    for wrapper in wrappers:
        text = wrapper.format(text)
    parse_or_invalid(backend, text)


# --- (b) generated filters: SQL selects exactly what matches() selects -----------------------------

ALPHABET = 'aAbB%_\\"é \t\U0001f600'
small_text = st.text(alphabet=ALPHABET, max_size=4)
word = small_text | st.sampled_from(["work", "home", "Work", "x@Contoso.com", "x@contoso.COM", "a%b", "A_b"])
maybe = st.one_of(word, st.none())
element = st.fixed_dictionaries(
    {}, optional={"type": maybe, "value": maybe, "display": word, "primary": st.one_of(st.booleans(), st.none())}
)
user_doc = st.fixed_dictionaries(
    {"userName": word},
    optional={
        "displayName": maybe,
        "title": maybe,
        "externalId": maybe,
        "active": st.one_of(st.booleans(), st.none()),
        "name": st.fixed_dictionaries({}, optional={"givenName": maybe, "familyName": word}),
        "emails": st.lists(element, max_size=3),
        "phoneNumbers": st.lists(element, max_size=2),
        ENTERPRISE_USER: st.fixed_dictionaries(
            {}, optional={"department": maybe, "manager": st.fixed_dictionaries({}, optional={"value": maybe})}
        ),
    },
)
moments = st.datetimes(min_value=datetime(100, 1, 2), max_value=datetime(9998, 12, 30), timezones=st.just(UTC))
users = st.lists(user_doc, min_size=10, max_size=20)

STRING_PATHS = [
    "userName",
    "displayName",
    "title",
    "externalId",
    "id",
    "name.givenName",
    "name.familyName",
    "emails",
    "emails.value",
    "emails.type",
    "emails.display",
    "phoneNumbers.value",
    "phoneNumbers.type",
    "department",
    f"{ENTERPRISE_USER}:department",
    "manager",
    "manager.value",
    f"{ENTERPRISE_USER}:manager.value",
    f"{USER}:userName",
    f"{USER}:name.givenName",
    f"{USER}:emails.value",
    "meta.resourceType",
]
BOOLEAN_PATHS = ["active", "emails.primary", "phoneNumbers.primary"]
DATE_PATHS = ["meta.created", "meta.lastModified"]
ELEMENT_STRINGS = ["type", "value", "display"]
STRING_OPS = ["eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le"]
DATE_OPS = ["eq", "ne", "gt", "ge", "lt", "le"]


def cased(names: list[str]) -> st.SearchStrategy[str]:
    """Attribute names in any letter case (URNs too): resolution is case-insensitive."""
    return st.sampled_from(names).flatmap(lambda n: st.sampled_from([n, n.upper(), n.lower(), n.swapcase()]))


def quoted(values: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return values.map(json.dumps)  # \" \\ \t escapes, \uXXXX (surrogate pairs beyond the BMP)


def date_text(moment: datetime, form: int, offset_minutes: int) -> str:
    if form == 0:
        return format_datetime(moment)
    if form == 1:
        return moment.astimezone(timezone(timedelta(minutes=offset_minutes))).isoformat()
    if form == 2:
        return moment.isoformat(timespec="seconds").replace("+00:00", "Z")
    return moment.date().isoformat()


def leaf_strategies(strings: st.SearchStrategy[str], dates: st.SearchStrategy[datetime]) -> st.SearchStrategy[str]:
    def compare(paths, ops, values):
        return st.builds("{} {} {}".format, cased(paths), st.sampled_from(ops), values)

    def presence(paths):
        return st.builds("{} pr".format, cased(paths)) | st.builds(
            "{} {} null".format, cased(paths), st.sampled_from(["eq", "ne"])
        )

    booleans = st.sampled_from(["true", "false", "TRUE", '"True"', '"false"'])
    date_values = st.builds(date_text, dates, st.integers(0, 3), st.integers(-14 * 60, 14 * 60)).map(json.dumps)
    plain = st.one_of(
        compare(STRING_PATHS, STRING_OPS, quoted(strings)),
        compare(BOOLEAN_PATHS, ["eq", "ne"], booleans),
        compare(DATE_PATHS, DATE_OPS, date_values),
        presence(STRING_PATHS + BOOLEAN_PATHS + DATE_PATHS),
    )
    element_leaf = st.one_of(
        compare(ELEMENT_STRINGS, STRING_OPS, quoted(strings)),
        compare(["primary"], ["eq", "ne"], booleans),
        presence([*ELEMENT_STRINGS, "primary"]),
    )
    element_filter = st.recursive(element_leaf, combine, max_leaves=4)
    value_paths = st.one_of(
        st.builds("{}[{}]".format, cased(["emails", "phoneNumbers", f"{USER}:emails"]), element_filter),
        st.builds(
            "{}[{}].{} {} {}".format,
            cased(["emails", "phoneNumbers"]),
            element_filter,
            cased(ELEMENT_STRINGS),
            st.sampled_from(STRING_OPS),
            quoted(strings),
        ),
    )
    return plain | value_paths


def combine(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    def binary(left: str, op: str, right: str, wrap_left: bool, wrap_right: bool) -> str:
        return f"{f'({left})' if wrap_left else left} {op} {f'({right})' if wrap_right else right}"

    return st.one_of(
        st.builds(
            binary, children, st.sampled_from(["and", "or", "AND", "Or"]), children, st.booleans(), st.booleans()
        ),
        children.map("not ({})".format),
        children.map("({})".format),
    )


class InData:
    """Values present in the current example's users, set before its filters are drawn.

    The filter strategy is built once (building it per example costs more than drawing from it) and
    picks these by index, so a draw depends only on the example's own earlier draws.
    """

    strings: list[str] = ["a"]
    moments: list[datetime] = [datetime(2026, 1, 1, tzinfo=UTC)]

    @classmethod
    def pick(cls, kind: str) -> st.SearchStrategy:
        return st.integers(0, 1023).map(lambda i: getattr(cls, kind)[i % len(getattr(cls, kind))])


FILTERS = st.recursive(
    leaf_strategies(InData.pick("strings") | small_text, InData.pick("moments") | moments), combine, max_leaves=6
)
GROUP_FILTERS = st.recursive(
    st.builds(
        "{} {} {}".format,
        cased(["displayName", "members", "members.value", "members.type", "externalId"]),
        st.sampled_from(STRING_OPS),
        quoted(word),
    )
    | st.builds("members[{} {} {}]".format, cased(["value", "type"]), st.sampled_from(STRING_OPS), quoted(word)),
    combine,
    max_leaves=4,
)


def value_pool(docs: list[dict]) -> list[str]:
    """Strings present in the data, and case-changed and partial forms of them (for co/sw/ew)."""
    found: set[str] = set()

    def walk(value: object) -> None:
        if isinstance(value, str):
            found.update({value, value.upper(), value.lower(), value.swapcase(), value[:2], value[-2:]})
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    for doc in docs:
        walk(doc)
    return sorted(found) or ["a"]


def create_users(backend: Backend, idp_id: str, docs: list[dict]) -> dict[str, dict]:
    """The users, written through the backend's own create (concurrently: in a batch where it batches
    writes); id -> the resource as matches() sees it, with the id and times the store gave it."""
    taken: set[str] = set()
    unique = []
    for index, doc in enumerate(docs):
        if fold(doc["userName"]) in taken:  # userName is unique regardless of case
            doc = {**doc, "userName": f"{doc['userName']}{index}"}
        taken.add(fold(doc["userName"]))
        unique.append(doc)

    async def create_all() -> list:
        return await asyncio.gather(*[backend.store.create("User", idp_id, doc) for doc in unique])

    rows = backend.run(create_all())
    return {
        row.id: {
            **row.doc,
            "id": row.id,
            "meta": {"resourceType": "User", "created": row.created, "lastModified": row.modified},
        }
        for row in rows
    }


@SETTINGS
@given(docs=users, data=st.data())
def test_search_selects_what_python_matches(backend: Backend, docs: list[dict], data: st.DataObject) -> None:
    idp_id = backend.run(backend.store.create_idp(f"example {next(backend.tenants)}", "", None)).id
    try:
        resources = create_users(backend, idp_id, docs)
        assert backend.ids("User", idp_id, parse_filter("id pr", USER_TYPE)) == set(resources)
        ids = sorted(resources)
        InData.strings = value_pool(docs) + ids + [ids[0].upper(), ids[-1][:8]]
        InData.moments = [
            datetime.fromisoformat(resource["meta"][stamp])
            for resource in resources.values()
            for stamp in ("created", "lastModified")
        ]
        for _ in range(5):
            text = data.draw(FILTERS, label="filter")
            node = parse_filter(text, USER_TYPE)
            expected = {uid for uid, resource in resources.items() if matches(node, resource)}
            assert backend.ids("User", idp_id, node) == expected, text
            event("selects " + ("none" if not expected else "all" if len(expected) == len(resources) else "some"))
    finally:
        backend.run(backend.store.delete_idp(idp_id))


# --- (c) declared extension attributes: the same agreement on a tenant's own schema ---------------

ACME = "urn:ietf:params:scim:schemas:extension:Acme:2.0:User"
ACME_TENANT = tenant(
    "rfc7643",
    False,
    json.dumps(
        parse_declarations(
            [
                {
                    "id": ACME,
                    "attributes": [
                        {"name": "costCenter"},
                        {"name": "code", "caseExact": True},
                        {"name": "badge", "type": "integer"},
                        {"name": "rate", "type": "decimal"},
                        {"name": "remote", "type": "boolean"},
                        {"name": "hired", "type": "dateTime"},
                        {"name": "skills", "multiValued": True},
                        {
                            "name": "office",
                            "type": "complex",
                            "subAttributes": [{"name": "building"}, {"name": "floor", "type": "integer"}],
                        },
                    ],
                }
            ]
        )
    ),
)
ACME_USER = ACME_TENANT.user
numbers = st.integers(-(2**40), 2**40)
decimals = st.floats(-1e9, 1e9, allow_nan=False).map(lambda f: round(f, 3)) | numbers.map(float)
acme_doc = st.fixed_dictionaries(
    {"userName": word},
    optional={
        ACME: st.fixed_dictionaries(
            {},
            optional={
                "costCenter": word,
                "code": word,
                "badge": numbers,
                "rate": decimals,
                "remote": st.booleans(),
                "hired": moments.map(format_datetime),
                "skills": st.lists(word, min_size=1, max_size=3),
                "office": st.fixed_dictionaries({}, optional={"building": word, "floor": st.integers(-5, 200)}),
            },
        ).filter(bool)
    },
)


def acme_filters(strings: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    def path(name: str) -> st.SearchStrategy[str]:
        # Qualified in any case, or bare (resolved in the extensions, as Entra writes them).
        return st.sampled_from([f"{ACME}:{name}", f"{ACME.lower()}:{name}", name, name.upper()])

    def compare(names: list[str], ops: list[str], values: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        return st.builds("{} {} {}".format, st.sampled_from(names).flatmap(path), st.sampled_from(ops), values)

    hired_values = st.builds(date_text, moments, st.integers(0, 3), st.integers(-600, 600)).map(json.dumps)
    leaf = st.one_of(
        compare(["costCenter", "code", "skills", "office.building"], STRING_OPS, quoted(strings)),
        compare(["badge", "office.floor"], DATE_OPS, numbers.map(str) | st.integers(-5, 200).map(str)),
        compare(["rate"], DATE_OPS, decimals.map(repr) | numbers.map(str)),
        compare(["remote"], ["eq", "ne"], st.sampled_from(["true", "false", '"True"'])),
        compare(["hired"], DATE_OPS, hired_values),
        st.builds("{} pr".format, st.sampled_from(["costCenter", "badge", "skills", "office.floor"]).flatmap(path)),
    )
    return st.recursive(leaf, combine, max_leaves=4)


ACME_FILTERS = acme_filters(InData.pick("strings") | small_text)


@SETTINGS
@given(docs=st.lists(acme_doc, min_size=10, max_size=20), data=st.data())
def test_search_on_declared_attributes_selects_what_python_matches(
    backend: Backend, docs: list[dict], data: st.DataObject
) -> None:
    idp_id = backend.run(backend.store.create_idp(f"acme {next(backend.tenants)}", "", None)).id
    try:
        resources = create_users(backend, idp_id, docs)
        InData.strings = value_pool(docs)
        for _ in range(5):
            text = data.draw(ACME_FILTERS, label="filter")
            node = parse_filter(text, ACME_USER)
            expected = {uid for uid, resource in resources.items() if matches(node, resource)}
            assert backend.ids("User", idp_id, node) == expected, text
            event("selects " + ("none" if not expected else "all" if len(expected) == len(resources) else "some"))
    finally:
        backend.run(backend.store.delete_idp(idp_id))
