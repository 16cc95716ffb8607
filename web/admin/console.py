"""The admin console at /admin: server-rendered pages (Starlette + Jinja2), plain HTML forms, each
carrying the session's CSRF token. The only script is the copy buttons' (static/admin.js).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from pathlib import Path
from urllib.parse import quote, urlencode

import jinja2
import orjson
from markupsafe import Markup
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from scim.errors import ScimError, shown
from scim.events import SELECTABLE
from scim.extensions import MUTABILITY, RESOURCE_TYPES, RETURNED, TYPES, UNIQUENESS
from scim.profiles import DEFAULT_PROFILE, PROFILES
from scim.schemas import GROUP_TYPE, USER_TYPE, ResourceType
from storage import AdminError, AdminSession, Idp, LogQuery, LogRecord
from storage.common import timestamp_seconds
from web.admin.auth import AdminAuth, Throttled, client_address, csrf_ok
from web.admin.bodies import AdminBodies
from web.admin.connection_test import ConnectionTest
from web.admin.export import export_response
from web.admin.hints import doc_sections, failure_hint
from web.admin.live import POLL_SECONDS, LiveTail
from web.admin.log_row import log_row, status_badge, when
from web.admin.service import (
    ICONS,
    OPERATIONS,
    AdminService,
    FailingUsers,
    SchemaUpdate,
    log_query,
    log_query_of,
    schema_json,
)
from web.faults import PRESETS, describe

HERE = Path(__file__).parent
SECURITY_HEADERS = {
    # Nothing inline runs or styles: scripts and CSS come only from /admin/static.
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
NOTICES = {
    "idp-created": "IdP created. Paste its tenant URL and the API key's secret into Entra.",
    "scim-configured": "SCIM configuration saved: Entra must now use the selected API key's secret.",
    "idp-deleted": "IdP deleted with its users and groups.",
    "second-key-added": "Second key added: both keys sign in. Put its secret in Entra, then revoke the old key.",
    "second-key-removed": "Second key removed: only the IdP's key signs in.",
    "faults-on": "Fault rule on: matching requests of this IdP get the fault until it expires or you turn it off.",
    "faults-off": "Fault rules off: this IdP's requests are answered as usual.",
    "idp-renamed": "IdP renamed. Its tenant URL and API key are unchanged: Entra needs no change.",
    "idp-cleared": "Users and groups cleared. The IdP ID, tenant URL, API key, profile and logs are kept.",
    "key-revoked": "API key revoked: requests with its secret now get 401.",
    "signed-out": "You are signed out.",
}
PAGE_SIZE = 50
OVERVIEW_CHARTS = 12  # IdPs whose activity chart the Overview draws
LATEST_ON_IDP_PAGE = 10  # the IdP page's live list of its latest requests
# Live log views (server-sent events, web/admin/live.py): at most this many at once, a comment line when
# idle this long (proxies keep the connection), and each ending after an hour (the browser reconnects).
MAX_LIVE_STREAMS = 16
LIVE_KEEPALIVE_SECONDS = 15.0
LIVE_STREAM_SECONDS = 3600.0
LIVE_ROWS_PER_STEP = 20  # rows a view sends in one write, before other work runs
COUNTERS_SECONDS = 2.0  # the Overview's live counters: read (once for every open Overview) and sent this often

Page = Callable[[Request, AdminSession], Awaitable[Response]]


class Console:
    def __init__(
        self, service: AdminService, auth: AdminAuth, bodies: AdminBodies, connection_test: ConnectionTest
    ) -> None:
        self.service = service
        self.auth = auth
        self.bodies = bodies
        self.connection_test = connection_test
        self.live_streams = 0  # live log views open now
        self.live_tails: dict[LogQuery, LiveTail] = {}  # the newest records of each live log query, shared
        # The Overview's counters as its live streams send them: (time read, the event), one read
        # every COUNTERS_SECONDS for all open Overviews.
        self.live_counters: tuple[float, str] = (-1e9, "")
        self.live_counters_lock = asyncio.Lock()
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        env.filters.update(when=when, icon=_icon, json=_pretty_json, phone=_work_phone)
        env.globals.update(
            failure_hint=failure_hint,
            log_row=log_row,
            status_badge=status_badge,
            icons=ICONS,
            operations=OPERATIONS,
            profiles=PROFILES,
            attribute_types=TYPES,
            mutabilities=MUTABILITY,
            returns=RETURNED,
            uniquenesses=UNIQUENESS,
            resource_types=RESOURCE_TYPES,
        )
        self.templates = Jinja2Templates(env=env)

    def app(self) -> Starlette:
        routes = [
            Route("/", self._page(self.overview)),
            Route("/login", self.login, methods=["GET", "POST"]),
            Route("/logout", self._page(self.logout), methods=["POST"]),
            Route("/keys", self._page(self.keys), methods=["GET", "POST"]),
            Route("/keys/{key}/revoke", self._page(self.revoke_key), methods=["GET", "POST"]),
            Route("/idps", self._page(self.idps), methods=["GET", "POST"]),
            Route("/idps/new", self._page(self.new_idp)),
            Route("/idps/{idp}", self._page(self.idp)),
            Route("/idps/{idp}/scim", self._page(self.configure_scim), methods=["POST"]),
            Route("/idps/{idp}/second-key", self._page(self.second_key), methods=["POST"]),
            Route("/idps/{idp}/schema", self._page(self.idp_schema), methods=["GET", "POST"]),
            Route("/idps/{idp}/delete", self._page(self.delete_idp), methods=["GET", "POST"]),
            Route("/idps/{idp}/rename", self._page(self.rename_idp), methods=["GET", "POST"]),
            Route("/idps/{idp}/clear", self._page(self.clear_idp), methods=["GET", "POST"]),
            Route("/idps/{idp}/test", self._page(self.test_connection), methods=["GET", "POST"]),
            Route("/idps/{idp}/faults", self._page(self.faults), methods=["POST"]),
            Route("/idps/{idp}/subscriptions", self._page(self.subscribe), methods=["POST"]),
            Route("/subscriptions/{id}", self._page(self.subscription), methods=["GET", "POST"]),
            Route("/directory", self._page(self.directory)),
            Route("/idps/{idp}/users", self._page(self.users)),
            Route("/idps/{idp}/users/{id}", self._page(self.user)),
            Route("/idps/{idp}/groups", self._page(self.groups)),
            Route("/idps/{idp}/groups/{id}", self._page(self.group)),
            Route("/logs", self._page(self.logs)),
            Route("/logs/export", self._page(self.export_logs)),
            Route("/logs/live", self._page(self.live_logs)),
            Route("/counters/live", self._page(self.live_overview)),
            Route("/logs/{id:int}", self._page(self.log)),
            Route("/docs/{name}", self._page(self.doc)),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ]
        return Starlette(
            routes=routes,
            exception_handlers={
                HTTPException: self._http_error,
                AdminError: self._admin_error,
                ScimError: self._scim_error,
            },
        )

    # --- plumbing ----------------------------------------------------------------------------------

    def _page(self, handler: Page) -> Callable[[Request], Awaitable[Response]]:
        """Signed-in pages only; every POST must carry the session's CSRF token."""

        async def endpoint(request: Request) -> Response:
            session = await self.auth.session(request)
            if session is None:
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return _secure(RedirectResponse(f"{_base(request)}/login?next={quote(target)}", status_code=303))
            request.state.session = session
            request.state.faults_on = await self.service.fault_banner()
            if request.method == "POST":
                form = await self.bodies.form(request)
                if not csrf_ok(session, form.get("csrf_token")):
                    return self.render(
                        request,
                        "error.html",
                        {
                            "title": "Form expired",
                            "message": "The form's security token is missing or does not "
                            "match your session (a form from another tab or an old page?). Go back, reload the page "
                            "and submit again.",
                        },
                        403,
                    )
                request.state.form = form
            return await handler(request, session)

        endpoint.__name__ = handler.__name__
        return endpoint

    def render(
        self, request: Request, template: str, context: dict, status: int = 200, headers: dict[str, str] | None = None
    ) -> Response:
        session = getattr(request.state, "session", None)
        notice = NOTICES.get(request.query_params.get("notice", ""))
        base = {
            "base": _base(request),
            "csrf_token": session.csrf_token if session else "",
            "notice": notice,
            "signed_in": session is not None,
            "section": "",
            "faults_on": getattr(request.state, "faults_on", []),
        }
        response = self.templates.TemplateResponse(
            request, template, {**base, **context}, status_code=status, headers=headers
        )
        return _secure(response)

    async def _http_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        title = "Page not found" if exc.status_code == 404 else f"Error {exc.status_code}"
        message = (
            f"There is no console page at {shown(request.url.path)}." if exc.status_code == 404 else str(exc.detail)
        )
        return self.render(request, "error.html", {"title": title, "message": message}, exc.status_code)

    async def _admin_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, AdminError)
        title = "Not found" if exc.status == 404 else "That did not work"
        return self.render(request, "error.html", {"title": title, "message": str(exc)}, exc.status)

    async def _scim_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ScimError)
        return self.render(request, "error.html", {"title": "That did not work", "message": exc.detail}, exc.status)

    # --- sign-in -----------------------------------------------------------------------------------

    async def login(self, request: Request) -> Response:
        next_url = _local_next(request, request.query_params.get("next"))
        if request.method == "GET":
            if await self.auth.session(request) is not None:
                return _secure(RedirectResponse(next_url, status_code=303))
            return await self._login_form(request, next_url, None, 200)
        form = await self.bodies.form(request)
        next_url = _local_next(request, form.get("next"))
        if not await self.auth.login_form_token_ok(request, form.get("csrf_token", "")):
            return await self._login_form(request, next_url, "The sign-in form expired. Enter the password again.", 403)
        client = client_address(request)
        try:
            signed_in = await self.auth.sign_in(form.get("password", ""), client)
        except Throttled as exc:
            return await self._login_form(
                request,
                next_url,
                f"{exc}.",
                429,
                {"Retry-After": str(exc.retry_after)},
            )
        if signed_in is None:
            return await self._login_form(request, next_url, "Wrong password.", 401)
        cookie, _ = signed_in
        previous = await self.auth.session(request)
        if previous is not None:
            await self.auth.sign_out(previous)
        response = _secure(RedirectResponse(next_url, status_code=303))
        self.auth.set_session_cookie(response, request, cookie)
        self.auth.clear_login_cookie(response, request)
        return response

    async def _login_form(
        self, request: Request, next_url: str, error: str | None, status: int, headers: dict[str, str] | None = None
    ) -> Response:
        token, cookie = await self.auth.login_form_token()
        response = self.render(
            request, "login.html", {"error": error, "next": next_url, "csrf_token": token}, status, headers
        )
        self.auth.set_login_cookie(response, request, cookie)
        return response

    async def logout(self, request: Request, session: AdminSession) -> Response:
        await self.auth.sign_out(session)
        response = _secure(RedirectResponse(f"{_base(request)}/login?notice=signed-out", status_code=303))
        self.auth.clear_session_cookie(response, request)
        return response

    # --- overview ----------------------------------------------------------------------------------

    async def overview(self, request: Request, session: AdminSession) -> Response:
        idps = await self.service.idps()
        counters = await self.service.counters()
        counts = {idp.id: await self.service.store.counts(idp.id) for idp in idps}
        # The last 24 hours of the first IdPs: a chart each (its own queries) is for a handful of IdPs.
        charts = {idp.id: (await self.service.activity(idp.id, ("24h",)))[0] for idp in idps[:OVERVIEW_CHARTS]}
        failures, _ = await self.service.logs(log_query(outcome="failure", count=5))
        repeated = await self.service.repeated_failures()
        return self.render(
            request,
            "overview.html",
            {
                "troubled_subscriptions": await self._troubled_subscriptions(),
                "section": "overview",
                "idps": idps,
                "counters": counters,
                "counts": counts,
                "charts": charts,
                "failures": failures,
                "repeated": repeated,
                "names": await self.service.idp_names(),
                "keys": {k.id: k for k in await self.service.api_keys()},
            },
        )

    # --- API keys ----------------------------------------------------------------------------------

    async def keys(self, request: Request, session: AdminSession) -> Response:
        error, values = None, {}
        if request.method == "POST":
            form = request.state.form
            values = {
                "name": form.get("name", ""),
                "description": form.get("description", ""),
                "users_write": form.get("users_write") == "on",
                "groups_write": form.get("groups_write") == "on",
            }
            try:
                key, secret = await self.service.create_api_key(
                    values["name"], values["description"], values["users_write"], values["groups_write"]
                )
            except AdminError as exc:
                error = str(exc)
            else:
                return self.render(request, "key_created.html", {"section": "keys", "key": key, "secret": secret})
        keys = await self.service.api_keys()
        return self.render(
            request,
            "keys.html",
            {"section": "keys", "keys": keys, "error": error, "values": values},
            400 if error else 200,
        )

    async def revoke_key(self, request: Request, session: AdminSession) -> Response:
        key = await self.service.api_key(request.path_params["key"])
        if request.method == "POST":
            await self.service.revoke_api_key(key.id)
            return _secure(RedirectResponse(f"{_base(request)}/keys?notice=key-revoked", status_code=303))
        idps = await self.service.idps()
        names = {k.id: k.name for k in await self.service.api_keys()}
        # An IdP with a second key keeps signing in with it: the rotation ends, nothing stops.
        rotating = [
            (idp, names.get(idp.second_api_key_id or "", ""))
            for idp in idps
            if idp.api_key_id == key.id and idp.second_api_key_id
        ]
        used_by = [idp for idp in idps if idp.api_key_id == key.id and not idp.second_api_key_id]
        seconds = [idp for idp in idps if idp.second_api_key_id == key.id]
        return self.render(
            request,
            "key_revoke.html",
            {"section": "keys", "key": key, "used_by": used_by, "rotating": rotating, "seconds": seconds},
        )

    # --- IdPs --------------------------------------------------------------------------------------

    async def idps(self, request: Request, session: AdminSession) -> Response:
        if request.method == "POST":
            form = request.state.form
            values = {
                "name": form.get("name", ""),
                "icon": form.get("icon", ""),
                "api_key": form.get("api_key", ""),
                "profile": form.get("profile") or DEFAULT_PROFILE,  # no choice sent: the default
                "strict": form.get("strict") == "on",
            }
            try:
                idp = await self.service.create_idp(
                    values["name"],
                    values["icon"],
                    values["api_key"],
                    profile=values["profile"],
                    strict=values["strict"],
                )
            except AdminError as exc:
                return await self._idp_form(request, values, str(exc), 400)
            return _secure(RedirectResponse(f"{_base(request)}/idps/{idp.id}?notice=idp-created", status_code=303))
        idps = await self.service.idps()
        return self.render(
            request,
            "idps.html",
            {
                "section": "idps",
                "idps": idps,
                "counters": await self.service.counters(),
                "keys": {k.id: k for k in await self.service.api_keys()},
                "tenant_url": self.service.settings.tenant_url,
            },
        )

    async def new_idp(self, request: Request, session: AdminSession) -> Response:
        values = {"name": "", "icon": "key", "api_key": "", "profile": DEFAULT_PROFILE, "strict": False}
        return await self._idp_form(request, values, None, 200)

    async def _idp_form(self, request: Request, values: dict, error: str | None, status: int) -> Response:
        keys = await self.service.selectable_keys()
        return self.render(
            request, "idp_new.html", {"section": "idps", "values": values, "error": error, "keys": keys}, status
        )

    async def idp(self, request: Request, session: AdminSession) -> Response:
        idp = await self.service.idp(request.path_params["idp"])
        return await self._idp_page(request, idp, attribute=_declare_values(request.query_params.get("declare", "")))

    async def _idp_page(
        self,
        request: Request,
        idp: Idp,
        *,
        update: SchemaUpdate | None = None,
        error: str | None = None,
        action: str = "",
        attribute: dict | None = None,
        declarations: str | None = None,
        fault_error: str | None = None,
        events_error: str | None = None,
    ) -> Response:
        """The IdP page; after a schema form, with what changed (`update`) or why it was refused
        (`error`, shown at the form named by `action`, the form keeping what was typed)."""
        keys = await self.service.api_keys()
        key = next((k for k in keys if k.id == idp.api_key_id), None)
        second_key = next((k for k in keys if k.id == idp.second_api_key_id), None)
        counters = (await self.service.counters()).get(idp.id)
        shared = (await self.service.shared_keys()).get(idp.api_key_id or "", [])
        schema = schema_json(idp.schema)
        failing: FailingUsers = update.failing if update else await self.service.failing_users(idp)
        return self.render(
            request,
            "idp.html",
            {
                "section": "idps",
                "idp": idp,
                "key": key,
                "second_key": second_key,
                "keys": await self.service.selectable_keys(idp.id),
                "shared_with": [other for other in shared if other.id != idp.id],
                "tenant_url": self.service.settings.tenant_url(idp.id),
                "schema": schema,
                "counters": counters,
                "counts": await self.service.store.counts(idp.id),
                "charts": await self.service.activity(idp.id),
                "latest": (await self.service.logs(log_query(idp=idp.id, count=LATEST_ON_IDP_PAGE)))[0],
                "live_url": f"{_base(request)}/logs/live?{urlencode({'idp': idp.id})}",
                "names": await self.service.idp_names(),
                "key_names": {k.id: k.name for k in keys},
                "failing": failing,
                "ignored": await self.service.ignored_attributes(idp.id),
                # An ignored name declared since it was last sent: the log still counts it.
                "declared_names": {
                    f"{item['id']}:{attr['name']}".lower()
                    for item in schema["extensions"]
                    for attr in item["attributes"]
                },
                "update": update,
                "schema_error": error,
                "schema_action": action,
                "attribute": attribute or _declare_values(""),
                "declarations": _pretty_json(schema["extensions"]) if declarations is None else declarations,
                "fault_rules": [(rule, describe(rule)) for rule in await self.service.fault_rules(idp.id)],
                "fault_presets": {name: words for name, (words, *_) in PRESETS.items()},
                "fault_error": fault_error,
                "subscriptions": await self._subscriptions(idp.id),
                "event_names": SELECTABLE,
                "events_error": events_error,
            },
            400 if error or fault_error or events_error else 200,
        )

    async def idp_schema(self, request: Request, session: AdminSession) -> Response:
        """The Schema card's forms: profile and strict, add an extension attribute, remove one or a
        whole schema, or replace the declarations with pasted JSON. Each builds the full new
        configuration and saves it through the service, which checks it whole; the answer is the
        IdP page saying what changed, or the form again with what to fix (nothing saved)."""
        idp = await self.service.idp(request.path_params["idp"])
        if request.method == "GET":  # a reload of a form's answer page
            return _secure(RedirectResponse(f"{_base(request)}/idps/{idp.id}", status_code=303))
        form = request.state.form
        action = form.get("action", "")
        attribute, declarations = None, None
        try:
            if action == "rules":
                update = await self.service.update_idp_schema(
                    idp.id, profile=form.get("profile") or None, strict=form.get("strict") == "on"
                )
            elif action == "add-attribute":
                attribute = {name: form.get(name, "") for name in _ATTRIBUTE_FIELDS}
                attribute.update({flag: form.get(flag) == "on" for flag in _ATTRIBUTE_FLAGS})
                update = await self.service.add_extension_attribute(
                    idp.id, attribute["urn"], attribute["resource_type"], _declared_attribute(attribute)
                )
            elif action == "remove":
                update = await self.service.remove_extension(idp.id, form.get("urn", ""), form.get("attribute") or None)
            elif action == "declarations":
                declarations = form.get("declarations", "")
                update = await self.service.update_idp_schema(idp.id, extensions=declarations)
            else:
                raise AdminError(f"Unknown schema form action {shown(action)}")
        except AdminError as exc:
            if exc.status == 404:
                raise
            return await self._idp_page(
                request, idp, error=str(exc), action=action, attribute=attribute, declarations=declarations
            )
        return await self._idp_page(request, update.idp, update=update)

    async def configure_scim(self, request: Request, session: AdminSession) -> Response:
        idp = await self.service.configure_scim(request.path_params["idp"], request.state.form.get("api_key", ""))
        return _secure(RedirectResponse(f"{_base(request)}/idps/{idp.id}?notice=scim-configured", status_code=303))

    async def second_key(self, request: Request, session: AdminSession) -> Response:
        """The rotation form: add a second key that signs in beside the IdP's key, or remove it."""
        form = request.state.form
        adding = form.get("action") != "remove"
        idp = await self.service.set_second_key(request.path_params["idp"], form.get("api_key", "") if adding else None)
        notice = "second-key-added" if adding else "second-key-removed"
        return _secure(
            RedirectResponse(f"{_base(request)}/idps/{idp.id}?notice={notice}#configure-scim", status_code=303)
        )

    async def delete_idp(self, request: Request, session: AdminSession) -> Response:
        idp = await self.service.idp(request.path_params["idp"])
        if request.method == "POST":
            await self.service.delete_idp(idp.id)
            return _secure(RedirectResponse(f"{_base(request)}/idps?notice=idp-deleted", status_code=303))
        return self.render(
            request,
            "idp_delete.html",
            {"section": "idps", "idp": idp, "counts": await self.service.store.counts(idp.id)},
        )

    async def rename_idp(self, request: Request, session: AdminSession) -> Response:
        idp = await self.service.idp(request.path_params["idp"])
        values = {"name": idp.name, "icon": idp.icon}
        error = None
        if request.method == "POST":
            form = request.state.form
            values = {"name": form.get("name", ""), "icon": form.get("icon", "") or idp.icon}
            try:
                await self.service.rename_idp(idp.id, values["name"], values["icon"])
            except AdminError as exc:
                if exc.status == 404:
                    raise
                error = str(exc)
            else:
                return _secure(RedirectResponse(f"{_base(request)}/idps/{idp.id}?notice=idp-renamed", status_code=303))
        return self.render(
            request,
            "idp_rename.html",
            {"section": "idps", "idp": idp, "values": values, "error": error},
            400 if error else 200,
        )

    async def clear_idp(self, request: Request, session: AdminSession) -> Response:
        idp = await self.service.idp(request.path_params["idp"])
        if request.method == "POST":
            await self.service.clear_idp(idp.id)
            return _secure(RedirectResponse(f"{_base(request)}/idps/{idp.id}?notice=idp-cleared", status_code=303))
        return self.render(
            request,
            "idp_clear.html",
            {"section": "idps", "idp": idp, "counts": await self.service.store.counts(idp.id)},
        )

    async def faults(self, request: Request, session: AdminSession) -> Response:
        """The IdP page's Fault injection card: a preset, a rule spelled out, or rules off."""
        idp = await self.service.idp(request.path_params["idp"])
        form = request.state.form
        action = form.get("action", "")
        back = f"{_base(request)}/idps/{idp.id}"
        try:
            if action == "preset":
                await self.service.add_fault(
                    idp.id, preset=form.get("preset", ""), minutes=_number(form.get("minutes"))
                )
            elif action == "add":
                await self.service.add_fault(
                    idp.id,
                    kind=form.get("kind", ""),
                    fraction=_number(form.get("percent"), scale=0.01),
                    minutes=_number(form.get("minutes")),
                    method=form.get("method") or None,
                    resource=form.get("resource") or None,
                    operation=form.get("operation") or None,
                    retry_after=_whole(form.get("retry_after")),
                    delay_ms=_whole(form.get("delay_ms")),
                )
            elif action == "remove":
                await self.service.clear_faults(idp.id, form.get("rule", ""))
            elif action == "clear":
                await self.service.clear_faults(idp.id)
            else:
                raise AdminError(f"Unknown fault form action {shown(action)}")
        except AdminError as exc:
            if exc.status == 404 and action != "remove":
                raise
            return await self._idp_page(request, idp, fault_error=str(exc))
        notice = "faults-off" if action in ("remove", "clear") else "faults-on"
        return _secure(RedirectResponse(f"{back}?notice={notice}#faults", status_code=303))

    async def _troubled_subscriptions(self) -> list[dict]:
        """Event subscriptions an admin must look at: failed, with dropped events, or whose
        pending events near the outbox's bound (docs/events.md)."""
        events = self.service.events.subscriptions
        near = self.service.settings.events.outbox_max_rows * 0.8
        troubled = []
        for subscription in await events.of_idp():
            shown = await events.json(subscription)
            if shown["state"] == "failed" or shown["dropped"] or shown["pending"] > near:
                troubled.append(shown)
        return troubled

    async def _subscriptions(self, idp_id: str) -> list[dict]:
        events = self.service.events.subscriptions
        return [await events.json(s) for s in await events.of_idp(idp_id)]

    async def subscribe(self, request: Request, session: AdminSession) -> Response:
        """The IdP page's Events card: a new subscription, its secret shown once."""
        idp = await self.service.idp(request.path_params["idp"])
        form = request.state.form
        try:
            subscription, secret = await self.service.events.subscriptions.subscribe(
                idp.id,
                url=form.get("url", ""),
                events=[name for name in SELECTABLE if form.get(f"event-{name}")] or None,
                form=form.get("form", "full"),
                audience=form.get("audience", ""),
                alg=form.get("alg", "HS256"),
                delivery=form.get("delivery", "push"),
            )
        except AdminError as exc:
            if exc.status == 404:
                raise
            return await self._idp_page(request, idp, events_error=str(exc))
        return self.render(
            request,
            "subscription_created.html",
            {
                "section": "idps",
                "idp": idp,
                "subscription": await self.service.events.subscriptions.json(subscription),
                "secret": secret,
            },
            201,
        )

    async def subscription(self, request: Request, session: AdminSession) -> Response:
        """A subscription: its counters, its events with their SETs and attempts; pause, resume,
        redeliver from an event, delete."""
        events = self.service.events.subscriptions
        subscription = await events.get(request.path_params["id"])
        back = f"{_base(request)}/subscriptions/{subscription.id}"
        if request.method == "POST":
            form = request.state.form
            action = form.get("action", "")
            if action == "delete":
                await events.delete(subscription.id)
                return _secure(RedirectResponse(f"{_base(request)}/idps/{subscription.idp_id}#events", status_code=303))
            if action == "pause":
                await events.pause(subscription.id)
            elif action == "resume":
                await events.resume(subscription.id)
            elif action == "redeliver":
                start = _whole(form.get("from"))
                await events.redeliver(subscription.id, start if isinstance(start, int) else None)
            else:
                raise AdminError(f"Unknown subscription action {shown(action)}")
            return _secure(RedirectResponse(f"{back}?notice={action}", status_code=303))
        listed = await events.events(subscription)
        latencies = sorted(
            timestamp_seconds(attempt["time"]) - timestamp_seconds(event["time"])
            for event in listed
            for attempt in event["attempts"]
            if attempt["outcome"] in ("delivered", "acked")
        )
        idp = await self.service.idp(subscription.idp_id)
        return self.render(
            request,
            "subscription.html",
            {
                "section": "idps",
                "idp": idp,
                "subscription": await events.json(subscription),
                "events": [{**e, "set_json": _pretty_json(e["set"])} for e in reversed(listed)],
                "latency": latencies[len(latencies) // 2] if latencies else None,
                "jwks_url": f"{self.service.settings.base_url}/v1/events/jwks.json",
                "outbox_max_rows": self.service.settings.events.outbox_max_rows,
                "notice": request.query_params.get("notice"),
            },
        )

    async def test_connection(self, request: Request, session: AdminSession) -> Response:
        """Entra's Test Connection, run by the server against this tenant with the pasted secret."""
        idp = await self.service.idp(request.path_params["idp"])
        report = None
        if request.method == "POST":
            report = await self.connection_test.run(idp, request.state.form.get("secret", ""))
        return self.render(
            request,
            "idp_test.html",
            {"section": "idps", "idp": idp, "tenant_url": self.service.settings.tenant_url(idp.id), "report": report},
        )

    # --- directory ---------------------------------------------------------------------------------

    async def directory(self, request: Request, session: AdminSession) -> Response:
        """Each IdP is its own directory: go straight to the only one, or let the admin choose."""
        idps = await self.service.idps()
        if len(idps) == 1:
            return _secure(RedirectResponse(f"{_base(request)}/idps/{idps[0].id}/users", status_code=303))
        counts = {idp.id: await self.service.store.counts(idp.id) for idp in idps}
        return self.render(request, "directories.html", {"section": "directory", "idps": idps, "counts": counts})

    async def users(self, request: Request, session: AdminSession) -> Response:
        return await self._listing(request, USER_TYPE)

    async def groups(self, request: Request, session: AdminSession) -> Response:
        return await self._listing(request, GROUP_TYPE)

    async def _listing(self, request: Request, rtype: ResourceType) -> Response:
        idp = await self.service.idp(request.path_params["idp"])
        rtype = idp.schema.tenant.type_named(rtype.name)
        params = request.query_params
        text = params.get("q", "")
        error, page = None, None
        try:
            page = await self.service.directory(
                rtype, idp.id, text, after=params.get("after"), before=params.get("before"), count=PAGE_SIZE
            )
        except ScimError as exc:
            error = f"The search is not a valid SCIM filter: {exc.detail}"
        except AdminError as exc:
            if exc.status == 404:
                raise
            error = str(exc)
        here = f"{_base(request)}/idps/{idp.id}/{'users' if rtype.name == 'User' else 'groups'}"
        links = {}
        if page is not None:
            query = {"q": text} if text else {}
            if page.has_previous:
                links["previous"] = f"{here}?{urlencode({**query, 'before': page.first})}"
            if page.has_next:
                links["next"] = f"{here}?{urlencode({**query, 'after': page.last})}"
        return self.render(
            request,
            "directory.html",
            {
                "section": "directory",
                "idp": idp,
                "idps": await self.service.idps(),
                "kind": rtype.name,
                "page": page,
                "q": text,
                "error": error,
                "links": links,
                "here": here,
                "declared": [
                    f"{item['id']}:{attr['name']}"
                    for item in schema_json(idp.schema)["extensions"]
                    if item["resourceType"] == rtype.name
                    for attr in item["attributes"]
                ],
            },
            400 if error else 200,
        )

    async def user(self, request: Request, session: AdminSession) -> Response:
        idp = await self.service.idp(request.path_params["idp"])
        view = await self.service.user_view(idp.id, request.path_params["id"])
        timeline, older = await self.service.timeline(idp.id, view.resource["id"])
        return self.render(
            request,
            "user.html",
            {
                "section": "directory",
                "idp": idp,
                "timeline": timeline,
                "older": older,
                "user": view.resource,
                "extensions": view.extensions,
                "unanswered": view.unanswered,
            },
        )

    async def group(self, request: Request, session: AdminSession) -> Response:
        idp = await self.service.idp(request.path_params["idp"])
        detail = await self.service.group(idp.id, request.path_params["id"])
        timeline, older = await self.service.timeline(idp.id, detail.resource["id"])
        return self.render(
            request,
            "group.html",
            {
                "section": "directory",
                "idp": idp,
                "timeline": timeline,
                "older": older,
                "group": detail.resource,
                "member_total": detail.member_total,
                "extensions": detail.extensions,
                "unanswered": detail.unanswered,
            },
        )

    # --- provisioning logs -------------------------------------------------------------------------

    async def live_logs(self, request: Request, session: AdminSession) -> Response:
        """Server-sent events: each record the log filters match, as it is written after `after`
        (or the Last-Event-ID an EventSource resends when it reconnects), as the log page's row.
        The store is read every POLL_SECONDS; a stream ends after LIVE_STREAM_SECONDS and the
        browser reconnects where it was, so nothing is lost and nothing is held for good."""
        params = request.query_params
        try:
            query = log_query_of(params)
            after = request.headers.get("last-event-id") or params.get("after") or "0"
            if not after.isdigit() or len(after) > 18:
                raise AdminError(f"after must be a record id, not {shown(after)}")
        except AdminError as exc:
            return Response(str(exc), status_code=400, media_type="text/plain")
        if self.live_streams >= MAX_LIVE_STREAMS:
            return too_many_live_views()
        base = _base(request)
        names = await self.service.idp_names()
        keys = {k.id: k.name for k in await self.service.api_keys()}

        def event(record: LogRecord) -> str:
            data = orjson.dumps({"id": record.id, "html": str(log_row(record, names, keys, base))}).decode()
            return f"id: {record.id}\nevent: record\ndata: {data}\n\n"

        shared = dataclasses.replace(query, limit=0)  # a tail per query, whatever page size
        tail = self.live_tails.get(shared)
        if tail is None:
            tail = self.live_tails[shared] = LiveTail(query, int(after))
        tail.views += 1

        async def events() -> AsyncGenerator[str, None]:
            last, started, quiet = int(after), time.monotonic(), 0.0
            try:
                yield "retry: 1000\n\n"
                while time.monotonic() - started < LIVE_STREAM_SECONDS:
                    await tail.refresh(self.service.logs, event)
                    if tail.covers(last):  # after the refresh: it may have dropped what this view had not sent
                        batch, more = tail.after(last), tail.more
                    else:
                        # Further behind than the tail reaches: read up to it on its own.
                        records, more = await self.service.logs(dataclasses.replace(query, after_id=last, limit=200))
                        batch = [(record.id or last, event(record)) for record in records]
                    for start in range(0, len(batch), LIVE_ROWS_PER_STEP):
                        # Sent LIVE_ROWS_PER_STEP at a time: one write each, and other work runs between
                        # (a write to a socket that takes it does not give the loop a turn by itself).
                        part = batch[start : start + LIVE_ROWS_PER_STEP]
                        last = part[-1][0]
                        yield "".join(text for _, text in part)
                        await asyncio.sleep(0)
                    if batch:
                        quiet = 0.0
                    elif not more:
                        await asyncio.sleep(POLL_SECONDS)
                        quiet += POLL_SECONDS
                        if quiet >= LIVE_KEEPALIVE_SECONDS:
                            quiet = 0.0
                            yield ": still here\n\n"
            finally:
                tail.views -= 1
                if tail.views == 0:
                    self.live_tails.pop(shared, None)

        return self._live_stream(events())

    async def live_overview(self, request: Request, session: AdminSession) -> Response:
        """Server-sent events for the Overview: every IdP's counters of the last 24 hours (as the
        admin API's /logs/counters gives them), every COUNTERS_SECONDS while they change, read
        once for all open Overviews; a stream ends after LIVE_STREAM_SECONDS and the browser
        reconnects. It counts against MAX_LIVE_STREAMS with the live log views."""
        if self.live_streams >= MAX_LIVE_STREAMS:
            return too_many_live_views()

        async def events() -> AsyncGenerator[str, None]:
            started, sent, quiet = time.monotonic(), "", 0.0
            yield "retry: 2000\n\n"
            while time.monotonic() - started < LIVE_STREAM_SECONDS:
                event = await self._counters_event()
                if event != sent:
                    sent, quiet = event, 0.0
                    yield event
                await asyncio.sleep(COUNTERS_SECONDS)
                quiet += COUNTERS_SECONDS
                if quiet >= LIVE_KEEPALIVE_SECONDS:
                    quiet = 0.0
                    yield ": still here\n\n"

        return self._live_stream(events())

    def _live_stream(self, events: AsyncGenerator[str, None]) -> Response:
        """A live view's server-sent events, counted in live_streams while it is open."""
        self.live_streams += 1

        async def counted() -> AsyncIterator[str]:
            try:
                async for chunk in events:
                    yield chunk
            finally:
                self.live_streams -= 1
                await events.aclose()

        return StreamingResponse(
            counted(), media_type="text/event-stream", headers={**SECURITY_HEADERS, "X-Accel-Buffering": "no"}
        )

    async def _counters_event(self) -> str:
        async with self.live_counters_lock:
            read_at, event = self.live_counters
            if time.monotonic() - read_at >= COUNTERS_SECONDS:
                counters = await self.service.counters(24)
                data = orjson.dumps(
                    [
                        {
                            "idp_id": idp_id,
                            "operations": c.operations,
                            "failures": c.failures,
                            "last_activity": c.last_activity,
                        }
                        for idp_id, c in counters.items()
                    ]
                ).decode()
                event = f"event: counters\ndata: {data}\n\n"
                self.live_counters = (time.monotonic(), event)
            return event

    async def export_logs(self, request: Request, session: AdminSession) -> Response:
        try:
            return export_response(self.service, request.query_params)
        except AdminError as exc:
            return self.render(request, "error.html", {"title": "Cannot export", "message": str(exc)}, 400)

    async def logs(self, request: Request, session: AdminSession) -> Response:
        params = request.query_params
        fields = {
            name: params.get(name, "")
            for name in ("idp", "outcome", "operation", "q", "since", "until", "bulk", "resource")
        }
        idps = await self.service.idps()
        error: str | None = None
        records: list[LogRecord] = []
        more = False
        try:
            query = log_query_of(fields, before=params.get("before"), count=PAGE_SIZE)
            records, more = await self.service.logs(query)
        except AdminError as exc:
            error = str(exc)
        chosen = {k: v for k, v in fields.items() if v}
        links = {}
        if more and records:
            links["older"] = f"{_base(request)}/logs?{urlencode({**chosen, 'before': records[-1].id})}"
        if params.get("before"):
            links["newest"] = f"{_base(request)}/logs?{urlencode(chosen)}"
        for fmt in ("csv", "ndjson"):
            links[fmt] = f"{_base(request)}/logs/export?{urlencode({**chosen, 'format': fmt})}"
        if not params.get("before"):
            # The newest page updates itself: rows written after its newest one come over server-sent events.
            links["live"] = f"{_base(request)}/logs/live?{urlencode(chosen)}"
        return self.render(
            request,
            "logs.html",
            {
                "section": "logs",
                "idps": idps,
                "names": await self.service.idp_names(),
                "keys": {k.id: k.name for k in await self.service.api_keys()},
                "counters": await self.service.counters(),
                "fields": fields,
                "records": records,
                "newest_id": max((r.id or 0 for r in records), default=0),
                "links": links,
                "error": error,
            },
            400 if error else 200,
        )

    async def doc(self, request: Request, session: AdminSession) -> Response:
        """One of scimlet's documents (docs/<name>.md), which the log's hints link to by section."""
        sections = doc_sections(request.path_params["name"])
        if sections is None:
            raise HTTPException(404)
        blocks: list[tuple[int, str, str]] = []
        for level, text, anchor in sections:
            if level or not blocks or blocks[-1][0]:
                blocks.append((level, text, anchor))
            else:
                blocks[-1] = (0, f"{blocks[-1][1]}\n{text}", "")
        title = next((text for level, text, _ in blocks if level == 1), request.path_params["name"])
        return self.render(request, "doc.html", {"section": "logs", "title": title, "blocks": blocks})

    async def log(self, request: Request, session: AdminSession) -> Response:
        record = await self.service.log(request.path_params["id"])
        names = await self.service.idp_names()
        keys = {k.id: k.name for k in await self.service.api_keys()}
        return self.render(request, "log.html", {"section": "logs", "record": record, "names": names, "keys": keys})


# --- helpers ---------------------------------------------------------------------------------------

# The add-attribute form's fields, as typed (re-shown when the service refuses them).
_ATTRIBUTE_FIELDS = (
    "urn",
    "resource_type",
    "name",
    "type",
    "sub_attributes",
    "mutability",
    "returned",
    "uniqueness",
    "canonical_values",
    "description",
)
_ATTRIBUTE_FLAGS = ("multi_valued", "required", "case_exact")


def _declare_values(sent: str) -> dict:
    """The add-attribute form's starting values; for a name Entra sent that the IdP does not keep
    (the ignored attributes' "Declare" link), its URN and attribute name filled in."""
    urn, _, name = sent.rpartition(":") if sent.startswith("urn:") else ("", "", sent)
    values: dict = {field: "" for field in _ATTRIBUTE_FIELDS}
    values.update({flag: False for flag in _ATTRIBUTE_FLAGS})
    values.update(
        urn=urn,
        resource_type="Group" if urn.endswith(":Group") else "User",
        name=name,
        type="string",
        mutability="readWrite",
        returned="default",
        uniqueness="none",
    )
    return values


def _declared_attribute(values: dict) -> dict:
    """The add-attribute form as an attribute declaration (scim.extensions checks it whole)."""
    attribute: dict = {
        "name": values["name"].strip(),
        "type": values["type"],
        "multiValued": values["multi_valued"],
        "required": values["required"],
        "caseExact": values["case_exact"],
        "mutability": values["mutability"],
        "returned": values["returned"],
        "uniqueness": values["uniqueness"],
        "canonicalValues": [item.strip() for item in values["canonical_values"].split(",") if item.strip()],
        "description": values["description"].strip(),
    }
    subs = [item.strip() for item in values["sub_attributes"].split(",") if item.strip()]
    if subs:
        attribute["subAttributes"] = [_sub_attribute(item) for item in subs]
    return attribute


def _sub_attribute(text: str) -> dict:
    """`building` or `floor:integer` -> a sub-attribute declaration (a string unless typed)."""
    name, colon, kind = (part.strip() for part in text.partition(":"))
    if not name or (colon and not kind) or ":" in kind:
        raise AdminError(
            f"Write each sub-attribute as name or name:type, separated by commas "
            f"(e.g. building, floor:integer); not {shown(text)}"
        )
    return {"name": name, "type": kind or "string"}


def too_many_live_views() -> Response:
    return Response(
        f"At most {MAX_LIVE_STREAMS} live views at once; close one", status_code=503, headers={"Retry-After": "5"}
    )


def _base(request: Request) -> str:
    return request.scope.get("root_path", "")


def _secure(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def _local_next(request: Request, value: str | None) -> str:
    """Where to go after sign-in: only a console path, never another site (no open redirect)."""
    base = _base(request)
    if value and value.startswith(f"{base}/") and not value.startswith("//") and "\\" not in value:
        return value
    return f"{base}/"


def _icon(name: str, size: int = 20) -> Markup:
    # The SVG markup comes from the fixed ICONS table, never from user input.
    body = ICONS.get(name, ICONS["key"])[1]
    return Markup(
        f'<svg class="icon" width="{size}" height="{size}" viewBox="0 0 24 24" fill="none" '
        f'stroke="currentColor" stroke-width="1.8" stroke-linecap="round" stroke-linejoin="round" '
        f'aria-hidden="true">{body}</svg>'
    )


def _pretty_json(value: object) -> str:
    """JSON indented for reading; text that is not JSON is shown as it is."""
    if value is None:
        return ""
    if isinstance(value, str):
        text = value
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError:
            return text
    return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()


def _work_phone(doc: dict) -> str:
    for phone in doc.get("phoneNumbers") or []:
        if isinstance(phone, dict) and str(phone.get("type", "")).lower() == "work":
            return str(phone.get("value", ""))
    return ""


def _number(text: str | None, scale: float = 1.0) -> object:
    """A form's number field as a number (scaled), or as typed when it is not one: the service
    then says what is wrong with it."""
    try:
        return float(text or "") * scale
    except ValueError:
        return text


def _whole(text: str | None) -> object:
    """A form's optional whole-number field: None when empty, the int, or the text as typed."""
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        return text
