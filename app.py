"""scimlet: assembles config -> store -> routes -> Starlette, and the command line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import gc
import logging
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from scim.errors import ScimError
from scim.events import FORMS, SELECTABLE
from scim.profiles import PROFILES
from scim.routes import SCIM_PREFIX
from settings import ConfigError, Settings, load_settings, masked_url
from storage import AdminError, Store, create_store
from storage.common import AUTH_RECHECK_SECONDS
from storage.copy import copy_database
from web.access_log import RequestMiddleware
from web.admin import AdminApps, security
from web.admin.connection_test import ConnectionTest
from web.admin.service import AdminService, FailingUsers, failing_json, schema_json
from web.events import Events, prune_outbox
from web.events.delivery import EventDelivery
from web.events.endpoints import EventEndpoints
from web.events.keys import ALGORITHMS
from web.faults import KINDS, OPERATIONS, PRESETS, REFRESH_SECONDS, Faults, describe, rule_json
from web.health import Health
from web.http_protocol import http_protocol
from web.log_setup import configure_logging
from web.metrics import Metrics
from web.observe import ProvisioningLog, UnauthenticatedLimit
from web.openapi import openapi_document
from web.scim.cursors import CURSOR_KEY_SETTING
from web.scim.entry import ScimApi
from web.scim.error_responses import error_response, http_error_response, server_error_response

log = logging.getLogger("scimlet")
HOUSEKEEPING_SECONDS = 5.0
PRUNE_EVERY_TICKS = 720  # hourly
PRUNE_OUTBOX_EVERY_TICKS = 12  # every minute
GC_THRESHOLDS = (50_000, 20, 20)


def create_app(settings: Settings, store: Store | None = None, *, first_start: bool = False) -> Starlette:
    """The ASGI app. The store is opened and closed by the app's lifespan; with `first_start` (serve),
    the lifespan also makes what a first start needs (_first_start) once the store is open."""
    store = store or create_store(settings)
    recording = settings.provisioning_log
    provisioning_log = ProvisioningLog(
        store,
        UnauthenticatedLimit(recording.unauthenticated_per_minute, recording.unauthenticated_total_per_minute),
    )
    metrics = Metrics(store, settings.metrics.token, provisioning_log)
    faults = Faults(store)
    scim = ScimApi(
        store,
        settings,
        metrics,
        listeners=[provisioning_log.add, metrics.record_operation],
        faults=faults,
        # The key of paging cursors (web/scim/cursors.py), one for every instance on the database.
        cursor_key=lambda: store.setting_or_create(CURSOR_KEY_SETTING, security.new_token()),
    )
    health = Health(store)
    events = Events(store, settings)
    delivery = EventDelivery(store, settings, events.sets, metrics.observe_event)
    event_endpoints = EventEndpoints(store, events.sets, events.keys)

    def events_written() -> None:
        delivery.wake()
        event_endpoints.wake()

    scim.handlers.events_written = events_written
    events.subscriptions.changed = delivery.refresh
    admin = AdminApps(AdminService(store, settings, faults, events), ConnectionTest(scim, store))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await store.migrate()
        await store.open()
        if first_start:
            await _first_start(store, settings)
        await provisioning_log.start()
        await metrics.load_idps()
        await faults.refresh()  # rules still active from before a restart are in force from the first request
        housekeeping = asyncio.create_task(_housekeeping(store, settings))
        fault_rules = asyncio.create_task(faults.run())
        pushing = asyncio.create_task(delivery.run())
        try:
            yield
        finally:
            housekeeping.cancel()
            fault_rules.cancel()
            pushing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pushing
            try:
                await provisioning_log.stop()
            except ScimError as exc:  # the database cannot store writes (deleted, full): say so and close
                log.error("%d provisioning log records not saved: %s", len(provisioning_log.pending), exc.detail)
            await store.close()

    openapi = orjson.dumps(openapi_document(settings.base_url, scim.limits))

    async def openapi_json(request: Request) -> Response:
        return Response(openapi, media_type="application/json")

    app = ScimletApp(
        scim,
        routes=[
            Route("/openapi.json", openapi_json, methods=["GET"]),
            *health.routes(),
            *event_endpoints.routes(),
            Route("/metrics", metrics.endpoint, methods=["GET"]),
            *admin.mounts(),
        ],
        middleware=[Middleware(RequestMiddleware, metrics=metrics)],
        exception_handlers={ScimError: _scim_error, HTTPException: _http_error, Exception: _server_error},
        lifespan=lifespan,
    )
    app.state.store = store
    app.state.settings = settings
    app.state.provisioning_log = provisioning_log
    app.state.metrics = metrics
    app.state.health = health
    app.state.admin_auth = admin.auth
    app.state.faults = faults
    app.state.events = events
    return app


class ScimletApp(Starlette):
    """Starlette for the admin console, health, metrics and the rest; SCIM requests, the hot path,
    go straight to the SCIM API, which answers, times, logs and records each one itself."""

    def __init__(self, scim: ScimApi, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scim = scim

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(SCIM_PREFIX):
            await self.scim(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


async def _housekeeping(store: Store, settings: Settings) -> None:
    """Batched last-used times every few seconds; provisioning log retention at start and hourly;
    the outbox's bounds every minute."""
    retention = settings.provisioning_log
    ticks = 0
    while True:
        try:
            if ticks % PRUNE_EVERY_TICKS == 0:
                await store.prune_logs(retention.retention_days, retention.retention_rows)
            if ticks % PRUNE_OUTBOX_EVERY_TICKS == 0:
                await prune_outbox(store, settings.events)
            await store.flush_last_used()
        except Exception:
            log.exception("housekeeping failed; it will be retried")
        ticks += 1
        await asyncio.sleep(HOUSEKEEPING_SECONDS)


async def _scim_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ScimError)
    return error_response(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return http_error_response(request.method, request.url.path, exc)


async def _server_error(request: Request, exc: Exception) -> Response:
    return server_error_response(request.method, request.url.path, exc)


# --- command line ------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="app.py", description="scimlet: a SCIM 2.0 service provider")
    parser.add_argument("--config", metavar="PATH", help="config file (default: config.toml beside app.py)")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="apply migrations and serve (creates a Default IdP on first start)")
    commands.add_parser("migrate", help="apply pending database migrations")
    commands.add_parser(
        "check-config", help="validate the config file and print the effective settings (secrets masked)"
    )
    copy = commands.add_parser("backup", help="copy the database consistently, also while the server runs")
    copy.add_argument("path", metavar="PATH", help="the backup file to write (must not exist)")
    move = commands.add_parser(
        "copy-database", help="copy every row of the database into an empty one at URL (either backend), and verify it"
    )
    move.add_argument("--to", required=True, metavar="URL", help="the target: sqlite:///PATH or postgresql://...")

    apikey = commands.add_parser("apikey", help="manage API keys").add_subparsers(dest="action", required=True)
    create = apikey.add_parser("create", help="create a key; prints its secret once")
    create.add_argument("--name", required=True)
    create.add_argument("--description", default="")
    create.add_argument("--write", default="", help="comma-separated privileges: users,groups")
    create.add_argument("--json", action="store_true")
    listing = apikey.add_parser("list", help="list keys (never their secrets)")
    listing.add_argument("--json", action="store_true")
    revoke = apikey.add_parser("revoke", help="revoke a key; it stops working at once")
    revoke.add_argument("key", metavar="ID_OR_NAME")

    idp = commands.add_parser("idp", help="manage IdP configurations").add_subparsers(dest="action", required=True)
    create = idp.add_parser("create", help="create an IdP bound to an API key; prints its tenant URL")
    create.add_argument("--name", required=True)
    create.add_argument("--icon", default="key")
    create.add_argument("--apikey", required=True, metavar="ID_OR_NAME")
    _schema_arguments(create)
    create.add_argument("--json", action="store_true")
    update = idp.add_parser(
        "update", help="change an IdP's schema profile, strict switch or extension schemas; says what it means"
    )
    update.add_argument("id", metavar="ID")
    _schema_arguments(update)
    update.add_argument("--json", action="store_true")
    show = idp.add_parser(
        "show", help="an IdP's schema rules, the Entra mapping they imply and what Entra sent that it ignores"
    )
    show.add_argument("id", metavar="ID")
    show.add_argument("--json", action="store_true")
    listing = idp.add_parser("list", help="list IdPs and their tenant URLs")
    listing.add_argument("--json", action="store_true")
    second = idp.add_parser(
        "second-key",
        help="rotate without a gap: a second key signs in beside the IdP's key until one is revoked "
        "(revoking the IdP's key makes the second its key)",
    )
    second.add_argument("id", metavar="ID")
    which = second.add_mutually_exclusive_group(required=True)
    which.add_argument("--apikey", metavar="ID_OR_NAME", help="the key to add as the second key")
    which.add_argument("--remove", action="store_true", help="end the rotation: only the IdP's key signs in")
    second.add_argument("--json", action="store_true")
    rename = idp.add_parser("rename", help="give an IdP a new name (and icon); its tenant URL, key and data stay")
    rename.add_argument("id", metavar="ID")
    rename.add_argument("--name", required=True)
    rename.add_argument("--icon", help="a new icon (default: keep it)")
    rename.add_argument("--json", action="store_true")
    clear = idp.add_parser(
        "clear", help="delete an IdP's users and groups, keeping the IdP, its tenant URL, key, profile and logs"
    )
    clear.add_argument("id", metavar="ID")
    clear.add_argument("--yes", action="store_true", help="confirm the clear")
    delete = idp.add_parser("delete", help="delete an IdP with all its users and groups")
    delete.add_argument("id", metavar="ID")
    delete.add_argument("--yes", action="store_true", help="confirm the deletion")

    fill = commands.add_parser(
        "seed", help="fill an IdP with realistic made-up people and groups (departments, managers, nested teams)"
    )
    fill.add_argument("--idp", required=True, metavar="ID", help="the IdP to fill")
    fill.add_argument("--users", type=int, required=True, metavar="N", help="people to create")
    fill.add_argument("--groups", type=int, default=10, metavar="G", help="groups to create (default 10)")
    fill.add_argument("--domain", default="contoso.example", help="the domain of every userName and email")
    fill.add_argument("--seed", type=int, default=1, help="the same seed makes the same directory (default 1)")

    faults = commands.add_parser(
        "faults", help="fault injection: make an IdP's SCIM requests fail, throttle, wait or drop, for a while"
    ).add_subparsers(dest="action", required=True)
    add = faults.add_parser("add", help="turn a fault rule on for an IdP (at most 24 hours)")
    add.add_argument("--idp", required=True, metavar="ID")
    add.add_argument("--preset", choices=tuple(PRESETS), help="; ".join(p[0] for p in PRESETS.values()))
    add.add_argument("--kind", choices=KINDS, help="the fault (without --preset)")
    add.add_argument("--fraction", type=float, help="the share of matching requests that get it, above 0 and at most 1")
    add.add_argument("--minutes", type=float, default=30, help="how long the rule stays on (default 30, at most 1440)")
    add.add_argument("--method", help="only requests with this method (default: any)")
    add.add_argument("--resource", choices=("Users", "Groups"), help="only requests to this resource type")
    add.add_argument(
        "--operation",
        choices=OPERATIONS,
        help="only this operation",
    )
    add.add_argument("--retry-after", type=int, help="the Retry-After seconds of a 429 or 503 (default 5)")
    add.add_argument("--delay-ms", type=int, help="the delay of a delay rule, in milliseconds")
    add.add_argument("--json", action="store_true")
    listing = faults.add_parser("list", help="the fault rules on now")
    listing.add_argument("--idp", metavar="ID", help="only this IdP's")
    listing.add_argument("--json", action="store_true")
    clear = faults.add_parser("clear", help="turn an IdP's fault rules off (or one of them)")
    clear.add_argument("--idp", required=True, metavar="ID")
    clear.add_argument("--rule", metavar="RULE_ID", help="only this rule")

    admin = commands.add_parser("admin", help="the admin console's sign-in").add_subparsers(
        dest="action", required=True
    )
    admin.add_parser("password", help="generate a new admin password, print it once and sign every session out")

    events = commands.add_parser(
        "events", help="SCIM event subscriptions (RFC 9967): push SETs to a receiver's URL, or let it poll"
    ).add_subparsers(dest="action", required=True)
    subscribe = events.add_parser("subscribe", help="a new subscription; prints its id and its secret (once)")
    subscribe.add_argument("--idp", required=True, metavar="ID")
    target = subscribe.add_mutually_exclusive_group(required=True)
    target.add_argument("--url", help="the receiver's URL: each SET is POSTed there (RFC 8935)")
    target.add_argument("--poll", action="store_true", help="the receiver polls for its SETs instead (RFC 8936)")
    subscribe.add_argument(
        "--events",
        nargs="+",
        choices=SELECTABLE,
        metavar="EVENT",
        help=f"the events wanted (default all): {', '.join(SELECTABLE)}",
    )
    subscribe.add_argument(
        "--form", choices=FORMS, default="full", help="full: the resource or the PATCH; notice: what changed"
    )
    subscribe.add_argument("--audience", default="", help="the SETs' aud (default: the receiver's URL)")
    subscribe.add_argument(
        "--alg", choices=ALGORITHMS, default="HS256", help="HS256 with the secret, or RS256/ES256 (JWKS)"
    )
    subscribe.add_argument("--json", action="store_true")
    listing = events.add_parser("list", help="the subscriptions, with what they delivered and what waits")
    listing.add_argument("--idp", metavar="ID", help="only this IdP's")
    listing.add_argument("--json", action="store_true")
    for action, words in (
        ("pause", "stop delivering (events are kept)"),
        ("resume", "deliver again"),
        ("delete", "delete the subscription"),
    ):
        one = events.add_parser(action, help=words)
        one.add_argument("id", metavar="ID")
        one.add_argument("--json", action="store_true")
    again = events.add_parser("redeliver", help="deliver again from an event (a failed subscription becomes active)")
    again.add_argument("id", metavar="ID")
    again.add_argument(
        "--from", dest="from_seq", type=int, metavar="SEQ", help="the event's number (default: the first not done)"
    )
    again.add_argument("--json", action="store_true")
    rotate = events.add_parser("rotate-keys", help="new RS256/ES256 signing keys; the old stay in the JWKS a while")
    rotate.add_argument("--json", action="store_true")

    listen = commands.add_parser(
        "events-listen", help="a receiver that verifies each pushed SET and prints its event (for demos and tests)"
    )
    listen.add_argument("--port", type=int, required=True)
    listen.add_argument("--host", default="127.0.0.1")
    key = listen.add_mutually_exclusive_group(required=True)
    key.add_argument("--secret", help="the subscription's secret (HS256)")
    key.add_argument("--jwks", metavar="URL", help="scimlet's JWKS URL (RS256, ES256)")
    listen.add_argument("--audience", help="refuse SETs for another aud")
    listen.add_argument("--json", action="store_true", help="one JSON object per line: the verified SET's claims")

    sim = commands.add_parser(
        "entra-sim",
        help="replay a Microsoft Entra ID provisioning cycle against any SCIM "
        "server and report like Entra's provisioning logs",
    )
    sim.add_argument("--url", required=True, metavar="TENANT_URL", help="e.g. http://127.0.0.1:8000/v1/scim/<IdP ID>")
    sim.add_argument("--token", required=True, metavar="SECRET", help="the secret token Entra would send")
    sim.add_argument("--users", type=int, default=5, metavar="N", help="users to provision (default 5)")
    sim.add_argument("--groups", type=int, default=2, metavar="G", help="groups to provision (default 2)")
    sim.add_argument(
        "--dialect",
        choices=("legacy", "aadOptscim062020", "both"),
        default="both",
        help="Entra's PATCH dialect(s) to replay (default both, one cycle each)",
    )
    sim.add_argument(
        "--keep",
        action="store_true",
        help="leave the users and groups it provisioned (named entra-sim-<run>-...) instead of deleting them",
    )
    return parser


def _schema_arguments(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--profile",
        choices=tuple(PROFILES),
        help="schema profile: meta-networks (the connector's rules, default) or rfc7643",
    )
    command.add_argument(
        "--strict",
        action=argparse.BooleanOptionalAction,
        help="refuse (400) an attribute the IdP does not keep instead of ignoring it and naming it in the log",
    )
    command.add_argument(
        "--extensions",
        metavar="FILE",
        help="a JSON file with the extension schemas to declare (an array of {id, resourceType, attributes}); "
        "replaces the declared ones; '-' reads standard input",
    )


def _declarations(path: str | None) -> str | None:
    if path is None:
        return None
    try:
        return sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise AdminError(f"cannot read the extension schemas from {path}: {exc}") from None


def _privileges(text: str) -> tuple[bool, bool]:
    names = {part.strip().lower() for part in text.split(",") if part.strip()}
    unknown = names - {"users", "groups"}
    if unknown:
        raise AdminError(f"unknown privilege {', '.join(sorted(unknown))}; use --write users,groups")
    return "users" in names, "groups" in names


def _print(data: object, as_json: bool, text: str) -> None:
    print(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() if as_json else text)


async def _admin(settings: Settings, args: argparse.Namespace) -> int:
    store = create_store(settings)
    await store.migrate()
    await store.open()
    service = AdminService(store, settings)
    try:
        if args.command == "apikey":
            return await _apikey(service, args)
        if args.command == "admin":
            return await _admin_password(service)
        if args.command == "seed":
            return await _seed(service, args)
        if args.command == "faults":
            return await _faults(service, args)
        if args.command == "events":
            return await _events(service, args)
        return await _idp(service, args)
    finally:
        await store.close()


async def _apikey(service: AdminService, args: argparse.Namespace) -> int:
    if args.action == "create":
        users, groups = _privileges(args.write)
        key, secret = await service.create_api_key(args.name, args.description, users, groups)
        _print(
            {"id": key.id, "name": key.name, "secret": secret, "privileges": key.privileges},
            args.json,
            f"API key {key.name} ({key.id}), write: {', '.join(key.privileges) or 'none'}\n"
            f"Secret (shown only now, store it safely): {secret}",
        )
    elif args.action == "list":
        keys = await service.api_keys()
        _print(
            [service.key_json(k) for k in keys],
            args.json,
            "\n".join(
                f"{k.id}  {k.name}  write: {','.join(k.privileges) or '-'}  created {k.created}"
                f"{'  REVOKED ' + k.revoked if k.revoked else ''}"
                for k in keys
            )
            or "no API keys",
        )
    else:
        key = await service.revoke_api_key(args.key)
        await _until_servers_notice()
        print(f"API key {key.name} ({key.id}) revoked")
    return 0


async def _idp(service: AdminService, args: argparse.Namespace) -> int:
    if args.action == "create":
        idp = await service.create_idp(
            args.name,
            args.icon,
            args.apikey,
            profile=args.profile,
            strict=bool(args.strict),
            extensions=_declarations(args.extensions),
        )
        url = service.settings.tenant_url(idp.id)
        _print(
            {"id": idp.id, "name": idp.name, "tenant_url": url, "schema": schema_json(idp.schema)},
            args.json,
            f"IdP {idp.name}: IdP ID {idp.id}\nTenant URL: {url}\nSchema profile: {idp.schema.profile}"
            f"{' (strict)' if idp.schema.strict else ''}",
        )
    elif args.action == "update":
        update = await service.update_idp_schema(
            args.id, profile=args.profile, strict=args.strict, extensions=_declarations(args.extensions)
        )
        if update.changes:
            await _until_servers_notice()
        _print(
            {
                **service.idp_json(update.idp),
                "changes": update.changes,
                "failing_users": failing_json(update.failing),
            },
            args.json,
            "\n".join(
                [
                    *(f"- {change}" for change in update.changes or ["Nothing changed."]),
                    _failing_text(update.failing),
                ]
            ),
        )
    elif args.action == "show":
        idp = await service.idp(args.id)
        data = await service.idp_schema_report(idp)
        _print(data, args.json, _schema_text(idp.name, data))
    elif args.action == "list":
        idps = await service.idps()
        _print(
            [service.idp_json(i) for i in idps],
            args.json,
            "\n".join(f"{i.id}  {i.name}  {service.settings.tenant_url(i.id)}" for i in idps) or "no IdPs",
        )
    elif args.action == "second-key":
        idp = await service.set_second_key(args.id, None if args.remove else args.apikey)
        await _until_servers_notice()
        names = {key.id: key.name for key in await service.api_keys()}
        _print(
            service.idp_json(idp),
            args.json,
            f"IdP {idp.name}: keys {names.get(idp.api_key_id or '')} and {names[idp.second_api_key_id]} both sign "
            f"in; revoke {names.get(idp.api_key_id or '')} once the client sends the second key's secret"
            if idp.second_api_key_id
            else f"IdP {idp.name}: no second key; only its key {names.get(idp.api_key_id or '', '(none)')} signs in",
        )
    elif args.action == "rename":
        idp = await service.rename_idp(args.id, args.name, args.icon)
        _print(service.idp_json(idp), args.json, f"IdP {idp.id} is now named {idp.name}")
    elif args.action == "clear":
        if not args.yes:
            raise AdminError("clearing an IdP deletes all its users and groups; add --yes to confirm")
        idp, users, groups = await service.clear_idp(args.id)
        print(
            f"IdP {idp.name} ({idp.id}) cleared: {users} users and {groups} groups deleted; "
            "its tenant URL, key and logs stay"
        )
    else:
        if not args.yes:
            raise AdminError("deleting an IdP deletes all its users and groups; add --yes to confirm")
        idp = await service.delete_idp(args.id)
        await _until_servers_notice()
        print(f"IdP {idp.name} ({idp.id}) deleted with its users and groups")
    return 0


def _failing_text(failing: FailingUsers) -> str:
    checked = f"{failing.checked} stored users checked" + ("" if failing.complete else " (the first, by userName)")
    lines = [f"{failing.failing} of {checked} would not pass these rules on their next write."]
    lines += [f"  {name} ({user_id}): {detail}" for user_id, name, detail in failing.examples]
    return "\n".join(lines)


def _schema_text(name: str, data: dict) -> str:
    schema = data["schema"]
    lines = [
        f"IdP {name}: schema profile {schema['profile']}{' (strict)' if schema['strict'] else ''}",
        f"  {schema['profile_summary']}",
        "Entra attribute mapping:",
        *(f"  {m['resource_type']:<6} {m['source']} -> {m['target']}  {m['rule']}" for m in schema["mappings"]),
        "Declared extension schemas:" if schema["extensions"] else "No extension schemas declared.",
    ]
    for declared in schema["extensions"]:
        lines.append(f"  {declared['id']} ({declared['resourceType']})")
        lines += [f"    {attr['name']}: {attr['type']}" for attr in declared["attributes"]]
    failing = data["failing_users"]
    lines.append(f"{failing['failing']} of {failing['checked']} stored users would not pass these rules.")
    ignored = data["ignored"]
    lines.append(
        "Sent by the IdP but not kept (from the provisioning log):" if ignored else "Nothing sent was ignored."
    )
    lines += [f"  {item['name']}: {item['requests']} requests, last {item['last']}" for item in ignored]
    return "\n".join(lines)


async def _until_servers_notice() -> None:
    """A running server sees a change to keys or IdPs made by another process within
    AUTH_RECHECK_SECONDS: waiting that out makes "revoked" mean that the next request fails."""
    await asyncio.sleep(AUTH_RECHECK_SECONDS * 1.5)


async def _seed(service: AdminService, args: argparse.Namespace) -> int:
    if args.users < 0 or args.groups < 0:
        raise AdminError("--users and --groups must be at least 0")
    from web.admin.seed import ProgressBar, seed  # imported here: serving never needs it

    idp = await service.idp(args.idp)
    bar = ProgressBar(sys.stderr)
    try:
        result = await seed(
            service.store,
            idp.schema,
            idp.id,
            users=args.users,
            groups=args.groups,
            domain=args.domain,
            random_seed=args.seed,
            progress=bar.show,
        )
    except ScimError as exc:
        raise AdminError(
            f"seeding stopped: {exc.detail} (seed fills an IdP that holds no seeded directory yet: "
            "clear its users and groups first, or seed another IdP)"
        ) from None
    finally:
        bar.end()
    rate = result.users / result.seconds if result.seconds else 0.0
    print(
        f"IdP {idp.name} ({idp.id}): {result.users:,} users and {result.groups:,} groups created "
        f"in {result.seconds:.1f} s ({rate:,.0f} users/s)"
    )
    return 0


async def _faults(service: AdminService, args: argparse.Namespace) -> int:
    if args.action == "add":
        rule = await service.add_fault(
            args.idp,
            preset=args.preset,
            kind=args.kind,
            fraction=args.fraction,
            minutes=args.minutes,
            method=args.method,
            resource=args.resource,
            operation=args.operation,
            retry_after=args.retry_after,
            delay_ms=args.delay_ms,
        )
        await asyncio.sleep(REFRESH_SECONDS * 1.5)  # a running server reads the rules about once a second
        _print(rule_json(rule), args.json, f"Fault rule {rule.id} on: {describe(rule)}")
    elif args.action == "list":
        rules = await service.fault_rules(args.idp)
        _print(
            [rule_json(rule) for rule in rules],
            args.json,
            "\n".join(f"{rule.id}  IdP {rule.idp_id}  {describe(rule)}" for rule in rules) or "no fault rules on",
        )
    else:
        count = await service.clear_faults(args.idp, args.rule)
        await asyncio.sleep(REFRESH_SECONDS * 1.5)
        print(f"{count} fault rule{'s' if count != 1 else ''} turned off")
    return 0


async def _events(service: AdminService, args: argparse.Namespace) -> int:
    subscriptions = service.events.subscriptions
    if args.action == "subscribe":
        subscription, secret = await subscriptions.subscribe(
            args.idp,
            url=args.url or "",
            events=args.events,
            form=args.form,
            audience=args.audience,
            alg=args.alg,
            delivery="poll" if args.poll else "push",
        )
        body = {**await subscriptions.json(subscription), "secret": secret}
        where = body.get("poll_url") or subscription.url
        _print(body, args.json, f"Subscription {subscription.id} to {where}\nSecret (shown once): {secret}")
    elif args.action == "list":
        listed = [await subscriptions.json(s) for s in await subscriptions.of_idp(args.idp)]
        _print(
            listed,
            args.json,
            "\n".join(
                f"{s['id']}  IdP {s['idp']}  {s['state']}  {s['url'] or 'poll'}  delivered {s['delivered']}, "
                f"pending {s['pending']}, rejected {s['rejected']}"
                + (f", last error: {s['last_error']}" if s["last_error"] else "")
                for s in listed
            )
            or "no event subscriptions",
        )
    elif args.action == "rotate-keys":
        keys = await service.events.keys.rotate()
        _print(
            [k.public_jwk for k in keys],
            args.json,
            "\n".join(f"{k.kid} {k.alg}" + (" (retired)" if k.retired else "") for k in keys),
        )
    elif args.action == "delete":
        await subscriptions.delete(args.id)
        _print({"deleted": args.id}, args.json, f"Subscription {args.id} deleted")
    else:
        if args.action == "redeliver":
            changed = await subscriptions.redeliver(args.id, args.from_seq)
        else:
            changed = await (subscriptions.pause if args.action == "pause" else subscriptions.resume)(args.id)
        _print(await subscriptions.json(changed), args.json, f"Subscription {changed.id} is {changed.state}")
    return 0


async def _admin_password(service: AdminService) -> int:
    password = security.new_password()
    await service.set_admin_password(password)
    print(f"New admin password (shown only now): {password}\nEvery console session was signed out.")
    if service.password_source == "config":
        print(
            "warning: [admin] password (or SCIMLET_ADMIN_PASSWORD) is set and wins over this one; "
            "clear it to use the new password",
            file=sys.stderr,
        )
    return 0


async def _first_start(store: Store, settings: Settings) -> None:
    """On first start, create a Default IdP and key and an admin password, and print the secrets once.
    Run in the server's lifespan, on its store: opening a store of its own first cost start-up ~50 ms."""
    password = await AdminService(store, settings).ensure_admin_password()
    console = f"{settings.base_url}/admin"
    if password:
        print(
            f"\nAdmin console: {console}\n  Admin password: {password}\n"
            "The password is shown only this once; it is stored only as a hash "
            "(`python app.py admin password` makes a new one).",
            flush=True,
        )
    else:
        log.info("admin console: %s", console)
    if await store.list_idps():
        for idp in await store.list_idps():
            log.info("IdP %s: tenant URL %s", idp.name, settings.tenant_url(idp.id))
        for key_id, idps in (await AdminService(store, settings).shared_keys()).items():
            log.warning(
                "API key %s is selected for %d IdPs (%s) and signs in to each: a key belongs to one IdP; "
                "create a key for each and select it (console: Configure SCIM)",
                key_id,
                len(idps),
                ", ".join(idp.name for idp in idps),
            )
        return
    key, secret = await store.create_api_key("Default", "Created on first start", True, True)
    idp = await store.create_idp("Default", "key", key.id)
    print(
        "\nscimlet is ready for Microsoft Entra ID. In the app's Provisioning page enter:\n"
        f"  Tenant URL:   {settings.tenant_url(idp.id)}\n"
        f"  Secret Token: {secret}\n"
        "The secret is shown only this once; it is stored only as a hash.\n",
        flush=True,
    )


async def _copy_database(settings: Settings, url: str) -> int:
    target_settings = dataclasses.replace(settings, database=dataclasses.replace(settings.database, url=url))
    source, target = create_store(settings), create_store(target_settings)
    if settings.database.backend_url == url:
        raise AdminError(f"--to names the configured database itself ({masked_url(url)})")
    started = time.monotonic()
    checks = await copy_database(source, target)
    print(
        f"copied {masked_url(settings.database.backend_url)} to {masked_url(url)} in {time.monotonic() - started:.1f} s"
    )
    print(f"{'table':<18} {'rows':>10}  checksum")
    for check in checks:
        rows = (
            str(check.target_rows)
            if check.source_rows == check.target_rows
            else f"{check.source_rows}->{check.target_rows}"
        )
        print(f"{check.table:<18} {rows:>10}  {'match' if check.matches else 'DIFFERS'}")
    if all(check.matches for check in checks):
        return 0
    print("error: the copy differs from the source", file=sys.stderr)
    return 1


def _check_config(settings: Settings) -> int:
    store = create_store(settings)  # a database.url no backend serves is a config error, before any output
    source = Path(settings.source)
    origin = f"{source} is valid" if source.exists() else f"{source} does not exist: built-in defaults"
    print(f"# {origin}. Effective settings (file, then SCIMLET_* variables), secrets masked:\n")
    print(settings.to_toml())
    for line in asyncio.run(store.describe()):
        print(f"\n# {line}")
    for warning in settings.warnings():
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def _serve(settings: Settings) -> int:
    import uvicorn

    server = settings.server
    # Requests allocate many short-lived dicts and almost no reference cycles: collecting the young
    # generation every 700 allocations cost ~4% of request CPU. Freeze what start-up built and
    # collect less often.
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    # log_config=None: uvicorn's own lines go through configure_logging's handler and format too;
    # its access log stays off: web/access_log.py logs each request instead. The HTTP protocol is
    # uvicorn's httptools one, sending each response in one write (web/http_protocol.py).
    uvicorn.run(
        create_app(settings, first_start=True),
        host=server.host,
        port=server.port,
        loop="uvloop",
        http=http_protocol(server.write_timeout),
        log_config=None,
        log_level=settings.logging.level,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=10,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "events-listen":  # a receiver: needs no config, no database
        from events_listen import listen

        return listen(
            args.host, args.port, secret=args.secret, jwks=args.jwks, audience=args.audience, as_json=args.json
        )
    if args.command == "entra-sim":  # a client of any SCIM server: needs no config, no database
        from entra_sim import simulate  # imported here so that the server never loads the HTTP client

        return simulate(
            args.url, args.token, users=args.users, groups=args.groups, dialect=args.dialect, keep=args.keep
        )
    try:
        settings = load_settings(args.config)
        if args.command == "check-config":  # prints, never logs: leaves logging as it found it
            return _check_config(settings)
        configure_logging(settings.logging.level, settings.logging.format)
        if args.command == "serve":
            return _serve(settings)
        if args.command == "migrate":
            applied = asyncio.run(create_store(settings).migrate())
            print(f"applied {', '.join(applied)}" if applied else "database is up to date")
            return 0
        if args.command == "backup":
            counts = asyncio.run(create_store(settings).backup(args.path))
            print(
                f"backed up the database to {args.path}: "
                f"{counts['users']} users, {counts['groups']} groups, integrity ok"
            )
            return 0
        if args.command == "copy-database":
            return asyncio.run(_copy_database(settings, args.to))
        return asyncio.run(_admin(settings, args))
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    except AdminError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
