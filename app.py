"""scimlet: assembles config -> store -> routes -> Starlette, and the command line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from collections.abc import AsyncIterator

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount

from scim.errors import ScimError
from settings import ConfigError, Settings, load_settings
from storage.sqlite import AdminError, SqliteStore, migrate
from web.observe import ObserveMiddleware, ProvisioningLog
from web.responses import error_response
from web.scim_api import WWW_AUTHENTICATE, ScimApi

log = logging.getLogger("scimlet")
HOUSEKEEPING_SECONDS = 5.0
PRUNE_EVERY_TICKS = 720  # hourly


def create_store(settings: Settings) -> SqliteStore:
    db = settings["database"]
    return SqliteStore(db["path"], synchronous=db["synchronous"], readers=db["readers"],
                       max_write_queue=settings["scim"]["max_write_queue"])


def create_app(settings: Settings, store: SqliteStore | None = None) -> Starlette:
    """The ASGI app. The store is opened and closed by the app's lifespan."""
    store = store or create_store(settings)
    api = ScimApi(store, settings)
    provisioning_log = ProvisioningLog(store)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        migrate(settings["database"]["path"])
        await store.open()
        await provisioning_log.start()
        housekeeping = asyncio.create_task(_housekeeping(store, settings))
        try:
            yield
        finally:
            housekeeping.cancel()
            await provisioning_log.stop()
            await store.close()

    app = Starlette(
        routes=[Mount("/v1/scim/{idp}", routes=api.routes())],
        middleware=[Middleware(ObserveMiddleware, listeners=[provisioning_log.add])],
        exception_handlers={ScimError: _scim_error, HTTPException: _http_error, Exception: _server_error},
        lifespan=lifespan,
    )
    app.state.store = store
    app.state.settings = settings
    app.state.provisioning_log = provisioning_log
    return app


async def _housekeeping(store: SqliteStore, settings: Settings) -> None:
    """Batched last-used times every few seconds; provisioning log retention at start and hourly."""
    retention = settings["provisioning_log"]
    ticks = 0
    while True:
        try:
            if ticks % PRUNE_EVERY_TICKS == 0:
                await store.prune_logs(retention["retention_days"], retention["retention_rows"])
            await store.flush_last_used()
        except Exception:
            log.exception("housekeeping failed; it will be retried")
        ticks += 1
        await asyncio.sleep(HOUSEKEEPING_SECONDS)


async def _scim_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ScimError)
    headers = dict(WWW_AUTHENTICATE) if exc.status == 401 else {}
    if exc.status in (429, 503):
        headers["Retry-After"] = "1"
    return error_response(exc, headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        detail = f"No such endpoint: {request.url.path}; SCIM resources are under /v1/scim/<IdP ID>/Users and /Groups"
    elif exc.status_code == 405:
        detail = f"{request.method} is not allowed on {request.url.path}"
    else:
        detail = str(exc.detail)
    return error_response(ScimError(exc.status_code, detail), dict(exc.headers or {}))


async def _server_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(ScimError(500, "Internal server error; this is a bug in scimlet, please report it"))


# --- command line ------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="app.py", description="scimlet: a SCIM 2.0 service provider")
    parser.add_argument("--config", metavar="PATH", help="config file (default: config.toml beside app.py)")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="apply migrations and serve (creates a Default IdP on first start)")
    commands.add_parser("migrate", help="apply pending database migrations")

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
    create.add_argument("--json", action="store_true")
    listing = idp.add_parser("list", help="list IdPs and their tenant URLs")
    listing.add_argument("--json", action="store_true")
    delete = idp.add_parser("delete", help="delete an IdP with all its users and groups")
    delete.add_argument("id", metavar="ID")
    delete.add_argument("--yes", action="store_true", help="confirm the deletion")
    return parser


def _privileges(text: str) -> tuple[bool, bool]:
    names = {part.strip().lower() for part in text.split(",") if part.strip()}
    unknown = names - {"users", "groups"}
    if unknown:
        raise AdminError(f"unknown privilege {', '.join(sorted(unknown))}; use --write users,groups")
    return "users" in names, "groups" in names


def _print(data: object, as_json: bool, text: str) -> None:
    print(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() if as_json else text)


async def _admin(settings: Settings, args: argparse.Namespace) -> int:
    migrate(settings["database"]["path"])
    store = create_store(settings)
    await store.open()
    try:
        if args.command == "apikey":
            return await _apikey(store, args)
        return await _idp(store, settings, args)
    finally:
        await store.close()


async def _apikey(store: SqliteStore, args: argparse.Namespace) -> int:
    if args.action == "create":
        users, groups = _privileges(args.write)
        key, secret = await store.create_api_key(args.name, args.description, users, groups)
        _print({"id": key.id, "name": key.name, "secret": secret, "privileges": key.privileges}, args.json,
               f"API key {key.name} ({key.id}), write: {', '.join(key.privileges) or 'none'}\n"
               f"Secret (shown only now, store it safely): {secret}")
    elif args.action == "list":
        keys = await store.list_api_keys()
        rows = [{"id": k.id, "name": k.name, "description": k.description, "privileges": k.privileges,
                 "created": k.created, "last_used": k.last_used, "revoked": k.revoked} for k in keys]
        _print(rows, args.json, "\n".join(
            f"{k.id}  {k.name}  write: {','.join(k.privileges) or '-'}  created {k.created}"
            f"{'  REVOKED ' + k.revoked if k.revoked else ''}" for k in keys) or "no API keys")
    else:
        key = await store.revoke_api_key(args.key)
        print(f"API key {key.name} ({key.id}) revoked")
    return 0


async def _idp(store: SqliteStore, settings: Settings, args: argparse.Namespace) -> int:
    if args.action == "create":
        idp = await store.create_idp(args.name, args.icon, args.apikey)
        url = settings.tenant_url(idp.id)
        _print({"id": idp.id, "name": idp.name, "tenant_url": url}, args.json,
               f"IdP {idp.name}: IdP ID {idp.id}\nTenant URL: {url}")
    elif args.action == "list":
        idps = await store.list_idps()
        rows = [{"id": i.id, "name": i.name, "icon": i.icon, "api_key_id": i.api_key_id, "created": i.created,
                 "tenant_url": settings.tenant_url(i.id)} for i in idps]
        _print(rows, args.json, "\n".join(f"{i.id}  {i.name}  {settings.tenant_url(i.id)}" for i in idps)
               or "no IdPs")
    else:
        if not args.yes:
            raise AdminError("deleting an IdP deletes all its users and groups; add --yes to confirm")
        idp = await store.get_idp(args.id)
        await store.delete_idp(idp.id)
        print(f"IdP {idp.name} ({idp.id}) deleted with its users and groups")
    return 0


async def _bootstrap(settings: Settings) -> None:
    """On first start (no IdP yet), create a Default IdP and key, and print the secret once."""
    store = create_store(settings)
    await store.open()
    try:
        if await store.list_idps():
            for idp in await store.list_idps():
                print(f"IdP {idp.name}: tenant URL {settings.tenant_url(idp.id)}", flush=True)
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
    finally:
        await store.close()


def _serve(settings: Settings) -> int:
    import uvicorn

    migrate(settings["database"]["path"])
    asyncio.run(_bootstrap(settings))
    server = settings["server"]
    uvicorn.run(create_app(settings), host=server["host"], port=server["port"], loop="uvloop", http="httptools",
                log_level=settings["logging"]["level"], access_log=False, server_header=False,
                timeout_graceful_shutdown=10)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(args.config)
        logging.basicConfig(level=settings["logging"]["level"].upper(), format="%(levelname)s %(name)s: %(message)s")
        if args.command == "serve":
            return _serve(settings)
        if args.command == "migrate":
            applied = migrate(settings["database"]["path"])
            print(f"applied {', '.join(applied)}" if applied else "database is up to date")
            return 0
        return asyncio.run(_admin(settings, args))
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    except AdminError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
