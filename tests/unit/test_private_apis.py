"""The private APIs of pinned packages that scimlet relies on, one test each.

An upgrade of aiosqlite, uvicorn, starlette, sly, scim2-filter-parser or prometheus-client can
remove or change what these tests pin without any import error; scimlet would then break at run
time, or quietly get slower. Each failure names the table that says what uses the API and what to
adapt: docs/architecture.md, "Private APIs of pinned packages".
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import re
import socket
import sqlite3
import textwrap
import threading
from importlib.metadata import version
from pathlib import Path

import aiosqlite
import prometheus_client
import pytest
from prometheus_client.utils import floatToGoString
from scim2_filter_parser import ast as sfp
from scim2_filter_parser.parser import SCIMParser, SCIMParserError
from sly.lex import Token
from starlette.responses import Response
from starlette.routing import Match, Mount, Route, Router
from uvicorn.config import Config
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.server import ServerState

from scim.filters import _KEYWORDS, _PUNCT, tokenize
from storage.sqlite.engine import _run
from web.http_protocol import CoalescingHttpProtocol
from web.metrics import BUCKETS
from web.scim.responses import ScimResponse

TABLE = "docs/architecture.md, section 'Private APIs of pinned packages'"
REQUIREMENTS = Path(__file__).resolve().parents[2] / "requirements.txt"


def broken(package: str, what: str) -> str:
    """The failure message: which package no longer offers what, and where to read about it."""
    return (
        f"{package} {version(package)} (requirements.txt pins {pinned(package)}) no longer {what}. "
        f"scimlet relies on it: see {TABLE}, for the code that uses it and what to change."
    )


def pinned(package: str) -> str:
    for line in REQUIREMENTS.read_text().splitlines():
        name, _, pin = line.partition("==")
        if name.strip().lower() == package.lower():
            return pin.strip()
    return "nothing"


def test_the_installed_versions_are_the_pinned_ones() -> None:
    """The checks below were written against these versions; a mismatch means the venv is stale or an
    upgrade is under way, and then every failure below matters."""
    for package in ("aiosqlite", "uvicorn", "starlette", "sly", "scim2-filter-parser", "prometheus-client"):
        assert version(package) == pinned(package), broken(package, f"is the pinned version {pinned(package)}")


# --- aiosqlite: Connection._execute and Connection._conn (storage/sqlite/engine.py, _run) ---------


async def test_aiosqlite_execute_runs_a_function_on_the_connection_thread(tmp_path: Path) -> None:
    assert inspect.iscoroutinefunction(getattr(aiosqlite.Connection, "_execute", None)), broken(
        "aiosqlite", "has the coroutine Connection._execute(fn, *args)"
    )
    parameters = list(inspect.signature(aiosqlite.Connection._execute).parameters.values())
    assert [p.kind for p in parameters[1:]] == [
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        inspect.Parameter.VAR_POSITIONAL,
        inspect.Parameter.VAR_KEYWORD,
    ], broken("aiosqlite", f"takes Connection._execute(fn, *args, **kwargs); it is {parameters}")
    conn = await aiosqlite.connect(tmp_path / "probe.db", isolation_level=None)
    try:
        raw = conn._conn
        assert isinstance(raw, sqlite3.Connection), broken(
            "aiosqlite", f"gives its sqlite3.Connection as Connection._conn (got {raw!r})"
        )

        def unit_of_work(db: sqlite3.Connection, value: int) -> tuple[int, int]:
            db.execute("CREATE TABLE t (v INTEGER)")
            db.execute("INSERT INTO t VALUES (?)", (value,))
            return threading.get_ident(), db.execute("SELECT v FROM t").fetchone()[0]

        thread, value = await _run(conn, unit_of_work, 41)
        assert value == 41, broken("aiosqlite", "returns the function's result from Connection._execute")
        assert thread != threading.get_ident(), broken(
            "aiosqlite", "runs Connection._execute's function on the connection's own thread"
        )
        again, _ = await _run(conn, lambda db: (threading.get_ident(), None))
        assert again == thread, broken("aiosqlite", "runs every call of a connection on the same thread")
    finally:
        await conn.close()


# --- uvicorn: HttpToolsProtocol (web/http_protocol.py) -----------------------------------------------


def _config() -> Config:
    async def app(scope: dict, receive: object, send: object) -> None:
        raise AssertionError("not called")

    # log_config=None: building a Config must leave this process's logging alone.
    return Config(app, log_config=None, http=CoalescingHttpProtocol)


def _parameters(function: object) -> list[tuple[str, object]]:
    """Names and kinds: what a call depends on (annotations may be spelled differently)."""
    return [(p.name, p.kind) for p in inspect.signature(function).parameters.values()]


# The subclass's own methods: not overrides, and uvicorn must not grow methods of these names (the
# subclass would then replace them without meaning to).
OWN_PROTOCOL_METHODS = {"feed", "may_read", "body_unread"}


def test_uvicorn_httptools_protocol_has_what_the_subclass_overrides() -> None:
    functions = {name: f for name, f in vars(CoalescingHttpProtocol).items() if inspect.isfunction(f)}
    for name in OWN_PROTOCOL_METHODS:
        assert name in functions, f"CoalescingHttpProtocol no longer has {name}: update OWN_PROTOCOL_METHODS"
        assert not hasattr(HttpToolsProtocol, name), broken(
            "uvicorn", f"has no HttpToolsProtocol.{name} (scimlet's subclass defines its own {name})"
        )
    overrides = {name: f for name, f in functions.items() if name not in OWN_PROTOCOL_METHODS}
    assert "connection_made" in overrides, "the subclass no longer overrides connection_made: update this test"
    for name, override in overrides.items():
        original = getattr(HttpToolsProtocol, name, None)
        assert inspect.isfunction(original), broken("uvicorn", f"has HttpToolsProtocol.{name}, which scimlet overrides")
        assert _parameters(original) == _parameters(override), broken(
            "uvicorn",
            f"has HttpToolsProtocol.{name}{inspect.signature(override)}, which scimlet overrides "
            f"(it is now {name}{inspect.signature(original)})",
        )


async def test_uvicorn_httptools_protocol_has_the_attributes_the_subclass_reads() -> None:
    tree = ast.parse(textwrap.dedent(inspect.getsource(CoalescingHttpProtocol)))
    on_self = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self"
    ]
    # What the subclass defines or assigns itself is its own; the rest must come from uvicorn.
    own = set(vars(CoalescingHttpProtocol)) | {node.attr for node in on_self if isinstance(node.ctx, ast.Store)}
    read = {node.attr for node in on_self if node.attr not in own}
    assert "loop" in read, "the subclass no longer reads self.loop: update this test and the table"
    protocol = HttpToolsProtocol(config=_config(), server_state=ServerState(), app_state={})
    for name in sorted(read):
        assert hasattr(protocol, name), broken("uvicorn", f"sets HttpToolsProtocol.{name}, which scimlet reads")
    assert protocol.loop is asyncio.get_running_loop(), broken("uvicorn", "keeps the event loop as self.loop")


async def test_uvicorn_httptools_protocol_keeps_the_transport_it_is_given() -> None:
    config = _config()
    config.load()
    assert config.http_protocol_class is CoalescingHttpProtocol, broken("uvicorn", "accepts a protocol class as http=")
    ours, theirs = socket.socketpair()
    transport, _ = await asyncio.get_running_loop().connect_accepted_socket(asyncio.Protocol, ours)
    try:
        protocol = HttpToolsProtocol(config=config, server_state=ServerState(), app_state={})
        protocol.connection_made(transport)
        assert protocol.transport is transport, broken(
            "uvicorn", "keeps the transport given to connection_made as self.transport"
        )
        protocol.connection_lost(None)
    finally:
        transport.close()
        theirs.close()


async def test_uvicorn_httptools_protocol_writes_every_response_byte_through_that_transport(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def app(scope: dict, receive: object, send: object) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"5")]})
        await send({"type": "http.response.body", "body": b"hello"})

    loop = asyncio.get_running_loop()
    ours, theirs = socket.socketpair()
    theirs.setblocking(False)
    transport, _ = await loop.connect_accepted_socket(asyncio.Protocol, ours)
    protocol = CoalescingHttpProtocol(
        config=Config(app, log_config=None, proxy_headers=False), server_state=ServerState(), app_state={}
    )
    protocol.connection_made(transport)
    given = protocol.transport  # what the subclass handed to HttpToolsProtocol.connection_made
    written: list[bytes] = []
    write = type(given).write

    def recorded(self: object, data: bytes) -> None:
        if self is given:
            written.append(bytes(data))
        write(self, data)

    monkeypatch.setattr(type(given), "write", recorded)
    try:
        protocol.data_received(b"GET /v1/scim/probe HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        received = b""
        async with asyncio.timeout(10):
            while not received.endswith(b"hello"):
                received += await loop.sock_recv(theirs, 65536)
        assert received.startswith(b"HTTP/1.1 200 OK\r\n") and b"\r\n\r\nhello" in received, received
        assert b"".join(written) == received, broken(
            "uvicorn",
            "writes each response through the transport given to connection_made "
            f"(that got {written!r}, the client {received!r})",
        )
    finally:
        protocol.connection_lost(None)
        transport.close()
        theirs.close()


# --- starlette: Response internals (web/scim/responses.py ScimResponse, web/scim/entry.py) ----------------

RESPONSE_ATTRIBUTES = {"status_code", "body", "raw_headers", "background"}


def test_starlette_response_init_sets_only_what_scim_response_sets() -> None:
    plain = vars(Response(b"{}", status_code=201, headers={"ETag": 'W/"1"'}))
    assert set(plain) == RESPONSE_ATTRIBUTES, broken(
        "starlette", f"sets only {sorted(RESPONSE_ATTRIBUTES)} in Response.__init__ (it sets {sorted(plain)})"
    )
    scim = vars(ScimResponse({"id": "1"}, status_code=201, headers={"ETag": 'W/"1"'}))
    assert set(scim) == RESPONSE_ATTRIBUTES, f"ScimResponse sets {sorted(scim)}; see {TABLE}"


async def test_starlette_response_call_sends_only_those_attributes() -> None:
    response = ScimResponse({"id": "1"}, status_code=201, headers={"Location": "http://x/Users/1"})
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    try:
        await Response.__call__(response, {"type": "http", "method": "POST", "path": "/"}, receive, send)
    except AttributeError as exc:
        pytest.fail(broken("starlette", f"reads only {sorted(RESPONSE_ATTRIBUTES)} in Response.__call__ ({exc})"))
    assert sent == [
        {"type": "http.response.start", "status": 201, "headers": response.raw_headers},
        {"type": "http.response.body", "body": response.body},
    ], broken("starlette", f"sends status_code, raw_headers and body as two messages in Response.__call__: {sent}")
    assert response.headers["content-type"] == "application/scim+json", broken(
        "starlette", "builds Response.headers from raw_headers"
    )
    assert response.headers["location"] == "http://x/Users/1"


async def test_starlette_router_leaves_the_matched_route_in_the_scope() -> None:
    async def endpoint(request: object) -> Response:
        return Response(status_code=204)

    inner = Route("/x", endpoint)
    plain = Route("/y", endpoint)
    router = Router([Mount("/m", routes=[inner]), plain])

    async def receive() -> dict:
        return {"type": "http.request", "body": b""}

    async def send(message: dict) -> None:
        pass

    for path, route in (("/m/x", inner), ("/y", plain)):
        scope = {"type": "http", "method": "GET", "path": path, "root_path": "", "query_string": b"", "headers": []}
        await router(scope, receive, send)
        assert scope.get("route") is route, broken(
            "starlette", f"leaves the matched route in scope['route'] for {path} (found {scope.get('route')!r})"
        )


def test_starlette_route_matches_a_path_alone_and_hands_back_its_parameters() -> None:
    async def endpoint(request: object) -> Response:
        return Response(status_code=204)

    route = Route("/v1/scim/{idp}/Users/{id}", endpoint, methods=("GET", "PATCH"))

    def matches(method: str, path: str) -> tuple[Match, dict]:
        return route.matches({"type": "http", "method": method, "path": path, "root_path": ""})

    match, child = matches("PATCH", "/v1/scim/contoso/Users/42")
    assert match is Match.FULL and child["path_params"] == {"idp": "contoso", "id": "42"}, broken(
        "starlette", f"matches a path and gives its parameters in child_scope['path_params'] (got {match}, {child})"
    )
    match, child = matches("POST", "/v1/scim/contoso/Users/42")
    assert match is Match.PARTIAL and child["path_params"] == {"idp": "contoso", "id": "42"}, broken(
        "starlette", f"gives PARTIAL and the parameters for a matching path under another method (got {match})"
    )
    for path in ("/v1/scim/contoso/Users/42/x", "/v1/scim//Users/42", "/v1/scim/contoso/Users/"):
        assert matches("GET", path)[0] is Match.NONE, broken("starlette", f"answers NONE for {path}")


# --- sly: Token built by hand (scim/filters.py, _token and _describe) ---------------------------------


def test_sly_token_is_built_without_arguments_and_has_the_fields_the_tokenizer_sets() -> None:
    try:
        token = Token()
        token.type, token.value, token.lineno, token.index, token.end = "ATTRNAME", "userName", 1, 7, 15
    except (TypeError, AttributeError) as exc:
        pytest.fail(broken("sly", f"lets Token() be built and given type, value, lineno, index and end ({exc})"))
    assert re.search(r"index=(\d+)", repr(token)).group(1) == "7", broken(
        "sly", f"shows index=N in Token's repr, which scim.filters._describe reads (repr: {token!r})"
    )


# --- scim2-filter-parser: its grammar fed our tokens (scim/filters.py) --------------------------------


def test_scim2_filter_parser_knows_every_token_type_the_tokenizer_emits() -> None:
    emitted = set(_KEYWORDS.values()) | set(_PUNCT.values()) | {"COMP_VALUE", "NUMBER", "SCHEMA_URI", "SUBATTR"}
    emitted.add("ATTRNAME")
    missing = emitted - set(SCIMParser.tokens)
    assert not missing, broken("scim2-filter-parser", f"has the grammar tokens {sorted(missing)}")


def _unwrapped(node: object) -> object:
    """Below the plain Filter wrappers the grammar puts around every expression, as _Resolver skips them."""
    while isinstance(node, sfp.Filter) and node.namespace is None and not node.negated:
        node = node.expr
    return node


def test_scim2_filter_parser_builds_the_ast_the_resolver_reads() -> None:
    text = 'urn:ietf:params:scim:schemas:core:2.0:User:name.givenName eq "Bo" or not (emails[type eq "work"])'
    tree = SCIMParser().parse(iter(tokenize(text)))
    try:
        either = _unwrapped(tree)
        assert isinstance(either, sfp.LogExpr) and either.op.lower() == "or"
        left = _unwrapped(either.expr1)
        assert isinstance(left, sfp.AttrExpr) and left.value == "eq"
        assert left.attr_path.uri == "urn:ietf:params:scim:schemas:core:2.0:User"
        assert left.attr_path.attr_name == "name" and left.attr_path.sub_attr.value == "givenName"
        assert left.comp_value.value == ("value", "Bo")
        negation = either.expr2
        assert isinstance(negation, sfp.Filter) and negation.negated
        value_path = _unwrapped(negation.expr)
        assert isinstance(value_path, sfp.Filter) and value_path.namespace.attr_name == "emails"
        inner = _unwrapped(value_path.expr)
        assert isinstance(inner, sfp.AttrExpr) and inner.attr_path.attr_name == "type" and inner.attr_path.uri is None
        assert inner.comp_value.value == ("value", "work")
    except (AssertionError, AttributeError) as exc:
        pytest.fail(broken("scim2-filter-parser", f"builds the AST scim.filters._Resolver reads ({exc!r}): {tree!r}"))


def test_scim2_filter_parser_errors_say_where_the_filter_went_wrong() -> None:
    with pytest.raises(SCIMParserError) as early_end:
        SCIMParser().parse(iter(tokenize("userName eq")))
    assert str(early_end.value).endswith("at: None"), broken(
        "scim2-filter-parser", f"ends the error of a filter that stops early with 'at: None' ({early_end.value})"
    )
    with pytest.raises(SCIMParserError) as misplaced:
        SCIMParser().parse(iter(tokenize('userName eq eq "x"')))
    found = re.search(r"index=(\d+)", str(misplaced.value))
    assert found is not None and found.group(1) == "12", broken(
        "scim2-filter-parser", f"names the unexpected token (with index=N) in its errors ({misplaced.value})"
    )


# --- prometheus-client: floatToGoString (web/metrics.py) -----------------------------------------------


def test_prometheus_bucket_bounds_are_written_as_the_library_writes_them() -> None:
    registry = prometheus_client.CollectorRegistry()
    histogram = prometheus_client.Histogram("probe_seconds", "probe", buckets=BUCKETS, registry=registry)
    histogram.observe(0.001)
    exposition = prometheus_client.generate_latest(registry).decode()
    theirs = re.findall(r'probe_seconds_bucket\{le="([^"]+)"\}', exposition)
    assert theirs == [*map(floatToGoString, BUCKETS), "+Inf"], broken(
        "prometheus-client", f"writes bucket bounds as utils.floatToGoString does ({theirs})"
    )


def test_uvicorn_flow_control_has_what_the_queue_bound_uses() -> None:
    assert _parameters(FlowControl.__init__) == [("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)] + [
        ("transport", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ], broken("uvicorn", "builds FlowControl(transport)")
    for name in ("pause_reading", "resume_reading"):
        assert inspect.isfunction(getattr(FlowControl, name, None)), broken("uvicorn", f"has FlowControl.{name}")
    assert "more_body" in inspect.getsource(RequestResponseCycle), broken(
        "uvicorn", "keeps RequestResponseCycle.more_body, which the lingering close reads"
    )
