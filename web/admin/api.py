"""The admin JSON API under /v1/admin: the console's operations for scripts.

Authenticated by `Authorization: Bearer <[admin] token>` or by a console session cookie; with the
cookie, every request that changes something must repeat the session's CSRF token in X-CSRF-Token
(a token-authenticated call carries no ambient credential, so it needs none).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from scim.errors import ScimError, shown
from scim.schemas import GROUP_TYPE, USER_TYPE, ResourceType
from storage import AdminError
from web.admin.auth import AdminAuth, Throttled, client_address, csrf_ok
from web.admin.bodies import AdminBodies
from web.admin.connection_test import ConnectionTest
from web.admin.export import export_response
from web.admin.service import AdminService, failing_json, log_query_of
from web.faults import DEFAULT_PRESET_MINUTES, PRESETS, rule_json

UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
WWW_AUTHENTICATE = {"WWW-Authenticate": 'Bearer realm="scimlet-admin"'}

Handler = Callable[[Request], Awaitable[Response]]


class JsonResponse(Response):
    media_type = "application/json"

    def render(self, content: object) -> bytes:
        return orjson.dumps(content)


class ApiError(Exception):
    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}


class AdminApi:
    def __init__(
        self, service: AdminService, auth: AdminAuth, bodies: AdminBodies, connection_test: ConnectionTest
    ) -> None:
        self.service = service
        self.auth = auth
        self.bodies = bodies
        self.connection_test = connection_test

    def app(self) -> Starlette:
        route = self._route
        routes = [
            route("/session", self.session_info, ["GET"]),
            route("/apikeys", self.list_keys, ["GET"]),
            route("/apikeys", self.create_key, ["POST"]),
            route("/apikeys/{key}", self.get_key, ["GET"]),
            route("/apikeys/{key}/revoke", self.revoke_key, ["POST"]),
            route("/idps", self.list_idps, ["GET"]),
            route("/idps", self.create_idp, ["POST"]),
            route("/idps/{idp}", self.get_idp, ["GET"]),
            route("/idps/{idp}", self.delete_idp, ["DELETE"]),
            route("/idps/{idp}", self.rename_idp, ["PATCH"]),
            route("/idps/{idp}/clear", self.clear_idp, ["POST"]),
            route("/idps/{idp}/test-connection", self.test_connection, ["POST"]),
            route("/idps/{idp}/faults", self.faults, ["GET", "POST", "DELETE"]),
            route("/idps/{idp}/faults/{rule}", self.fault, ["DELETE"]),
            route("/idps/{idp}/apikey", self.configure_scim, ["PUT"]),
            route("/idps/{idp}/second-apikey", self.second_key, ["PUT", "DELETE"]),
            route("/idps/{idp}/schema", self.idp_schema, ["GET"]),
            route("/idps/{idp}/schema", self.update_idp_schema, ["PUT", "PATCH"]),
            route("/idps/{idp}/users", self._bind(self.directory, USER_TYPE), ["GET"]),
            route("/idps/{idp}/users/{id}", self.user, ["GET"]),
            route("/idps/{idp}/groups", self._bind(self.directory, GROUP_TYPE), ["GET"]),
            route("/idps/{idp}/groups/{id}", self.group, ["GET"]),
            route("/idps/{idp}/subscriptions", self.subscriptions, ["GET", "POST"]),
            route("/subscriptions/{id}", self.subscription, ["GET", "DELETE"]),
            route("/subscriptions/{id}/{action:str}", self.subscription_action, ["POST"]),
            route("/subscriptions/{id}/events/{seq:int}", self.subscription_event, ["GET"]),
            route("/events/rotate-keys", self.rotate_event_keys, ["POST"]),
            route("/logs", self.logs, ["GET"]),
            route("/logs/counters", self.counters, ["GET"]),
            route("/logs/export", self.export_logs, ["GET"]),
            route("/logs/{id:int}", self.log, ["GET"]),
        ]
        return Starlette(routes=routes, exception_handlers={HTTPException: _http_error})

    def _route(self, path: str, handler: Handler, methods: list[str]) -> Route:
        async def endpoint(request: Request) -> Response:
            try:
                await self._authenticate(request)
                return await handler(request)
            except ApiError as exc:
                return _error(exc.status, exc.detail, exc.headers)
            except AdminError as exc:
                return _error(exc.status, str(exc))
            except ScimError as exc:
                return _error(exc.status, exc.detail)

        endpoint.__name__ = handler.__name__
        return Route(path, endpoint, methods=methods)

    @staticmethod
    def _bind(handler: Callable[[Request, ResourceType], Awaitable[Response]], rtype: ResourceType) -> Handler:
        async def endpoint(request: Request) -> Response:
            return await handler(request, rtype)

        endpoint.__name__ = f"{handler.__name__}_{rtype.name.lower()}"
        return endpoint

    async def _authenticate(self, request: Request) -> None:
        client = client_address(request)
        token = self.auth.bearer_token_ok(request)
        if token is not None:
            # A wrong admin token counts against the same per-address budget as a wrong password.
            wait = self.auth.throttle.retry_after(client)
            if wait:
                raise ApiError(429, str(Throttled(wait)), {"Retry-After": str(wait)})
            if not token:
                self.auth.throttle.failed(client)
                detail = (
                    "The bearer token is not the admin token"
                    if self.auth.token
                    else "Admin token authentication is off: set [admin] token (SCIMLET_ADMIN_TOKEN) or use a "
                    "console session"
                )
                raise ApiError(401, detail, WWW_AUTHENTICATE)
            request.state.auth = "token"
            return
        session = await self.auth.session(request)
        if session is None:
            raise ApiError(
                401,
                "Sign in to the console (session cookie) or send Authorization: Bearer <admin token>",
                WWW_AUTHENTICATE,
            )
        if request.method in UNSAFE and not csrf_ok(session, request.headers.get("x-csrf-token")):
            raise ApiError(
                403,
                "With a session cookie, send the session's CSRF token in the X-CSRF-Token header "
                "(GET /v1/admin/session returns it)",
            )
        request.state.auth = "session"
        request.state.session = session

    async def _body(self, request: Request, *, optional: bool = False) -> dict:
        """The JSON object sent; with `optional`, no body is an empty object."""
        try:
            body = await self.bodies.json(request)
        except orjson.JSONDecodeError as exc:
            raise ApiError(400, f"The body is not valid JSON: {exc}") from None
        if body is None and optional:
            return {}
        if not isinstance(body, dict):
            raise ApiError(400, "Send a JSON object as the body")
        return body

    async def session_info(self, request: Request) -> Response:
        session = getattr(request.state, "session", None)
        body = {"auth": request.state.auth}
        if session is not None:
            body.update(csrf_token=session.csrf_token, expires=session.expires)
        return JsonResponse(body)

    # --- API keys ----------------------------------------------------------------------------------

    async def list_keys(self, request: Request) -> Response:
        return JsonResponse({"Resources": [self.service.key_json(k) for k in await self.service.api_keys()]})

    async def get_key(self, request: Request) -> Response:
        return JsonResponse(self.service.key_json(await self.service.api_key(request.path_params["key"])))

    async def create_key(self, request: Request) -> Response:
        body = await self._body(request)
        key, secret = await self.service.create_api_key(
            _text(body, "name", required=True),
            _text(body, "description"),
            _flag(body, "users_write"),
            _flag(body, "groups_write"),
        )
        return JsonResponse(
            {**self.service.key_json(key), "secret": secret}, status_code=201, headers={"Cache-Control": "no-store"}
        )

    async def revoke_key(self, request: Request) -> Response:
        return JsonResponse(self.service.key_json(await self.service.revoke_api_key(request.path_params["key"])))

    # --- IdPs --------------------------------------------------------------------------------------

    async def list_idps(self, request: Request) -> Response:
        return JsonResponse({"Resources": [self.service.idp_json(i) for i in await self.service.idps()]})

    async def get_idp(self, request: Request) -> Response:
        return JsonResponse(self.service.idp_json(await self.service.idp(request.path_params["idp"])))

    async def create_idp(self, request: Request) -> Response:
        body = await self._body(request)
        idp = await self.service.create_idp(
            _text(body, "name", required=True),
            _text(body, "icon") or "key",
            _text(body, "api_key") or None,
            profile=_text(body, "profile") or None,
            strict=_flag(body, "strict"),
            extensions=body.get("extensions"),
        )
        return JsonResponse(self.service.idp_json(idp), status_code=201)

    async def idp_schema(self, request: Request) -> Response:
        idp = await self.service.idp(request.path_params["idp"])
        return JsonResponse(await self.service.idp_schema_report(idp))

    async def update_idp_schema(self, request: Request) -> Response:
        """PUT replaces the whole configuration (what is left out gets its default); PATCH changes what it names."""
        body = await self._body(request)
        unknown = sorted(set(body) - {"profile", "strict", "extensions"})
        if unknown:
            raise ApiError(400, f"Unknown field {shown(unknown[0])}; send profile, strict and extensions")
        whole = request.method == "PUT"
        update = await self.service.update_idp_schema(
            request.path_params["idp"],
            profile=_text(body, "profile") or ("meta-networks" if whole else None),
            strict=_flag(body, "strict") if whole or "strict" in body else None,
            extensions=body.get("extensions", [] if whole else None),
        )
        return JsonResponse(
            {
                **self.service.idp_json(update.idp),
                "changes": update.changes,
                "failing_users": failing_json(update.failing),
            }
        )

    async def configure_scim(self, request: Request) -> Response:
        body = await self._body(request)
        idp = await self.service.configure_scim(request.path_params["idp"], _text(body, "api_key", required=True))
        return JsonResponse(self.service.idp_json(idp))

    async def second_key(self, request: Request) -> Response:
        """PUT {"api_key"}: a second key signs in beside the IdP's key (a rotation); DELETE ends it."""
        api_key = _text(await self._body(request), "api_key", required=True) if request.method == "PUT" else None
        idp = await self.service.set_second_key(request.path_params["idp"], api_key)
        return JsonResponse(self.service.idp_json(idp))

    async def delete_idp(self, request: Request) -> Response:
        await self.service.delete_idp(request.path_params["idp"])
        return Response(status_code=204)

    async def rename_idp(self, request: Request) -> Response:
        body = await self._body(request)
        unknown = sorted(set(body) - {"name", "icon"})
        if unknown:
            raise ApiError(400, f"Unknown field {shown(unknown[0])}; send name and icon")
        idp = await self.service.rename_idp(
            request.path_params["idp"], _text(body, "name", required=True), _text(body, "icon") or None
        )
        return JsonResponse(self.service.idp_json(idp))

    async def clear_idp(self, request: Request) -> Response:
        idp, users, groups = await self.service.clear_idp(request.path_params["idp"])
        return JsonResponse({**self.service.idp_json(idp), "deleted": {"users": users, "groups": groups}})

    async def faults(self, request: Request) -> Response:
        """GET the IdP's active fault rules (and the presets); POST turns one on, DELETE all off."""
        idp_id = request.path_params["idp"]
        if request.method == "DELETE":
            return JsonResponse({"deleted": await self.service.clear_faults(idp_id)})
        if request.method == "GET":
            await self.service.idp(idp_id)  # 404 for an unknown IdP
            rules = await self.service.fault_rules(idp_id)
            return JsonResponse(
                {
                    "Resources": [rule_json(rule) for rule in rules],
                    "presets": {name: words for name, (words, *_) in PRESETS.items()},
                }
            )
        body = await self._body(request)
        fields = {"preset", "kind", "fraction", "minutes", "method", "resource", "operation", "retry_after", "delay_ms"}
        unknown = sorted(set(body) - fields)
        if unknown:
            raise ApiError(400, f"Unknown field {shown(unknown[0])}; send {', '.join(sorted(fields))}")
        texts = {name: _text(body, name) or None for name in ("preset", "kind", "method", "resource", "operation")}
        rule = await self.service.add_fault(
            idp_id,
            **texts,
            fraction=body.get("fraction"),
            minutes=body.get("minutes", DEFAULT_PRESET_MINUTES),
            retry_after=body.get("retry_after"),
            delay_ms=body.get("delay_ms"),
        )
        return JsonResponse(rule_json(rule), status_code=201)

    async def fault(self, request: Request) -> Response:
        await self.service.clear_faults(request.path_params["idp"], request.path_params["rule"])
        return Response(status_code=204)

    async def test_connection(self, request: Request) -> Response:
        body = await self._body(request)
        idp = await self.service.idp(request.path_params["idp"])
        report = await self.connection_test.run(idp, _text(body, "secret", required=True))
        return JsonResponse(report.json())

    # --- directory ---------------------------------------------------------------------------------

    async def directory(self, request: Request, rtype: ResourceType) -> Response:
        params = request.query_params
        if "q" in params and "filter" in params:
            raise ApiError(400, "Send either q (plain text or a filter) or filter, not both")
        text = params.get("filter") if "filter" in params else params.get("q")
        if "filter" in params and not (text or "").strip():
            raise ApiError(400, "filter is empty")
        count = _whole(params.get("count"), "count", 50)
        idp_id = request.path_params["idp"]
        rtype = (await self.service.tenant(idp_id)).type_named(rtype.name)  # its declared extensions answered
        page = await self.service.directory(
            rtype, idp_id, text, after=params.get("after"), before=params.get("before"), count=count
        )
        resources = []
        for row in page.rows:
            resource = self.service.resource(
                rtype, idp_id, row.id, row.doc, row.version, row.created, row.modified, groups=row.groups
            )
            if rtype.name == "Group":
                resource["memberCount"] = page.member_counts.get(row.id, 0)
            resources.append(resource)
        return JsonResponse(
            {
                "totalResults": page.total,
                "Resources": resources,
                "previous": page.first if page.has_previous else None,
                "next": page.last if page.has_next else None,
            }
        )

    async def user(self, request: Request) -> Response:
        return JsonResponse(await self.service.user(request.path_params["idp"], request.path_params["id"]))

    async def group(self, request: Request) -> Response:
        detail = await self.service.group(request.path_params["idp"], request.path_params["id"])
        return JsonResponse({**detail.resource, "memberCount": detail.member_total})

    # --- provisioning logs -------------------------------------------------------------------------

    async def logs(self, request: Request) -> Response:
        params = request.query_params
        query = log_query_of(params, before=params.get("before"), count=params.get("count"))
        records, more = await self.service.logs(query)
        return JsonResponse(
            {
                "Resources": [self.service.log_json(r) for r in records],
                "next": records[-1].id if more and records else None,
            }
        )

    async def export_logs(self, request: Request) -> Response:
        return export_response(self.service, request.query_params)

    async def log(self, request: Request) -> Response:
        record = await self.service.log(request.path_params["id"])
        return JsonResponse(self.service.log_json(record, bodies=True))

    async def counters(self, request: Request) -> Response:
        hours = _whole(request.query_params.get("hours"), "hours", 24)
        if not 1 <= hours <= 24 * 90:
            raise ApiError(400, "hours must be between 1 and 2160")
        counters = await self.service.counters(hours)
        return JsonResponse(
            {
                "hours": hours,
                "Resources": [
                    {
                        "idp_id": idp_id,
                        "operations": c.operations,
                        "failures": c.failures,
                        "last_activity": c.last_activity,
                    }
                    for idp_id, c in counters.items()
                ],
            }
        )

    async def subscriptions(self, request: Request) -> Response:
        """GET an IdP's event subscriptions; POST makes one (its secret is in this answer only)."""
        events = self.service.events.subscriptions
        idp_id = request.path_params["idp"]
        if request.method == "GET":
            return JsonResponse({"Resources": [await events.json(s) for s in await events.of_idp(idp_id)]})
        body = await self._body(request)
        fields = {"url", "delivery", "events", "form", "audience", "alg"}
        unknown = sorted(set(body) - fields)
        if unknown:
            raise ApiError(400, f"Unknown field {shown(unknown[0])}; send {', '.join(sorted(fields))}")
        chosen = body.get("events")
        if chosen is not None and (not isinstance(chosen, list) or not all(isinstance(e, str) for e in chosen)):
            raise ApiError(400, "events must be an array of event names")
        subscription, secret = await events.subscribe(
            idp_id,
            url=_text(body, "url"),
            events=chosen,
            form=_text(body, "form") or "full",
            audience=_text(body, "audience"),
            alg=_text(body, "alg") or "HS256",
            delivery=_text(body, "delivery") or "push",
        )
        return JsonResponse({**await events.json(subscription), "secret": secret}, status_code=201)

    async def subscription(self, request: Request) -> Response:
        events = self.service.events.subscriptions
        if request.method == "DELETE":
            await events.delete(request.path_params["id"])
            return Response(status_code=204)
        subscription = await events.get(request.path_params["id"])
        return JsonResponse({**await events.json(subscription), "events": await events.events(subscription)})

    async def subscription_action(self, request: Request) -> Response:
        """POST pause, resume, or redeliver ({"from": seq}, optional)."""
        events = self.service.events.subscriptions
        subscription_id, action = request.path_params["id"], request.path_params["action"]
        if action == "pause":
            changed = await events.pause(subscription_id)
        elif action == "resume":
            changed = await events.resume(subscription_id)
        elif action == "redeliver":
            start = (await self._body(request, optional=True)).get("from")
            if start is not None and type(start) is not int:
                raise ApiError(400, "from must be an event's number")
            changed = await events.redeliver(subscription_id, start)
        else:
            raise ApiError(404, f"No subscription action {shown(action)}: use pause, resume or redeliver")
        return JsonResponse(await events.json(changed))

    async def subscription_event(self, request: Request) -> Response:
        events = self.service.events.subscriptions
        subscription = await events.get(request.path_params["id"])
        event = await self.service.store.outbox_event(request.path_params["seq"])
        if event is None or event.idp_id != subscription.idp_id:
            raise ApiError(404, "No such event in this subscription's outbox (never made, or pruned)")
        return JsonResponse(await events.event_json(subscription, event))

    async def rotate_event_keys(self, request: Request) -> Response:
        keys = await self.service.events.keys.rotate()
        return JsonResponse({"keys": [k.public_jwk | {"retired": k.retired is not None} for k in keys]})


def _error(status: int, detail: str, headers: dict[str, str] | None = None) -> Response:
    return JsonResponse({"status": status, "detail": detail}, status_code=status, headers=headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return _error(404, f"No admin API endpoint at {shown(request.url.path)}")
    if exc.status_code == 405:
        return _error(405, f"{request.method} is not allowed on {shown(request.url.path)}", dict(exc.headers or {}))
    return _error(exc.status_code, str(exc.detail))


def _text(body: dict, name: str, *, required: bool = False) -> str:
    value = body.get(name)
    if value is None:
        if required:
            raise ApiError(400, f"{name} is required")
        return ""
    if not isinstance(value, str):
        raise ApiError(400, f"{name} must be a string")
    if required and not value.strip():
        raise ApiError(400, f"{name} must not be empty")
    return value


def _flag(body: dict, name: str) -> bool:
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise ApiError(400, f"{name} must be true or false")
    return value


def _whole(value: str | None, name: str, default: int) -> int:
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ApiError(400, f"{name} must be a whole number, not {shown(value)}") from None
