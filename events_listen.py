"""`python app.py events-listen`: a receiver of scimlet's pushed SETs (RFC 8935) for demos and tests.

Verifies every SET's signature (HS256 with the subscription's secret, or RS256/ES256 with the keys
of a JWKS URL) and its claims (RFC 8417: typ, iss, iat, jti, events; RFC 9967: txn, sub_id; aud
when --audience is given), answers 202, and prints each event in one line (--json: one JSON
object per line, the verified SET's claims). A SET that fails gets 400 with an RFC 8935 error
and a line on standard error. Imports nothing of the server: it sees scimlet from outside.
"""

from __future__ import annotations

import sys

import jwt
import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

REQUIRED = ("iss", "iat", "jti", "events", "txn", "sub_id")


def _error(err: str, description: str) -> Response:
    print(f"refused: {err}: {description}", file=sys.stderr, flush=True)
    return Response(orjson.dumps({"err": err, "description": description}), 400, media_type="application/json")


def describe(claims: dict) -> str:
    """One readable line: the event, the resource, what changed, the txn and jti."""
    (uri, payload), *_ = claims["events"].items()
    event = uri.removeprefix("urn:ietf:params:scim:event:prov:")
    subject = claims["sub_id"]
    words = [event, subject.get("uri", "?")]
    if subject.get("externalId"):
        words.append(f"externalId={subject['externalId']}")
    data = payload.get("data")
    if isinstance(data, dict) and "Operations" in data:
        words.append("ops=" + ",".join(f"{op.get('op')}:{op.get('path', '')}" for op in data["Operations"]))
    elif isinstance(data, dict):
        name = data.get("userName") or data.get("displayName")
        if name:
            words.append(f"name={name}")
    elif payload.get("attributes"):
        words.append("attributes=" + ",".join(payload["attributes"]))
    words += [f"txn={claims['txn']}", f"jti={claims['jti']}"]
    return " ".join(words)


def receiver(secret: str | None, jwks: str | None, audience: str | None, as_json: bool) -> Starlette:
    keys = jwt.PyJWKClient(jwks) if jwks else None

    async def receive(request: Request) -> Response:
        token = (await request.body()).decode(errors="replace").strip()
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            return _error("invalid_request", f"not a JWT: {exc}")
        if header.get("typ") != "secevent+jwt":
            return _error("invalid_request", f"typ is {header.get('typ')!r}, not secevent+jwt")
        try:
            if keys is not None:
                key = keys.get_signing_key_from_jwt(token).key
                algorithms = ["RS256", "ES256"]
            else:
                key, algorithms = secret, ["HS256"]
            claims = jwt.decode(
                token,
                key,
                algorithms=algorithms,
                audience=audience,
                options={"require": list(REQUIRED), "verify_aud": audience is not None},
            )
        except jwt.InvalidAudienceError as exc:
            return _error("invalid_audience", str(exc))
        except (jwt.InvalidSignatureError, jwt.PyJWKClientError) as exc:
            return _error("invalid_key", str(exc))
        except jwt.PyJWTError as exc:
            return _error("invalid_request", str(exc))
        if not isinstance(claims["events"], dict) or len(claims["events"]) != 1:
            return _error("invalid_request", "events must hold one event")
        if not isinstance(claims["sub_id"], dict) or claims["sub_id"].get("format") != "scim":
            return _error("invalid_request", "sub_id must be a subject identifier of the scim format")
        print(orjson.dumps(claims).decode() if as_json else describe(claims), flush=True)
        return Response(status_code=202)

    return Starlette(routes=[Route("/", receive, methods=["POST"]), Route("/{path:path}", receive, methods=["POST"])])


def listen(host: str, port: int, *, secret: str | None, jwks: str | None, audience: str | None, as_json: bool) -> int:
    print(f"listening on http://{host}:{port}/ for SETs", file=sys.stderr, flush=True)
    uvicorn.run(receiver(secret, jwks, audience, as_json), host=host, port=port, log_level="warning")
    return 0
