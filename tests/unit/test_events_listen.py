"""events_listen.py's receiver in process: what it accepts (202, one readable line) and what it
refuses with an RFC 8935 error."""

from __future__ import annotations

import httpx
import jwt
import pytest

from events_listen import receiver

SECRET = "listen-secret-0123456789abcdefghijklmnop"
HEADERS = {"typ": "secevent+jwt"}


def token(claims: dict, secret: str = SECRET, headers: dict | None = None) -> str:
    return jwt.encode(claims, secret, algorithm="HS256", headers=HEADERS if headers is None else headers)


def claims(event: str, payload: dict, **extra: object) -> dict:
    return {
        "iss": "https://h/v1/scim/i",
        "aud": "https://r/",
        "iat": 1,
        "jti": "s.1",
        "txn": "t1",
        "sub_id": {"format": "scim", "uri": "/Users/u1", "externalId": "x"},
        "events": {f"urn:ietf:params:scim:event:prov:{event}": payload},
        **extra,
    }


async def post(body: str, *, as_json: bool = False) -> httpx.Response:
    app = receiver(SECRET, None, "https://r/", as_json)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://r") as client:
        return await client.post("/", content=body)


@pytest.mark.parametrize(
    ("payload", "line"),
    [
        ({"data": {"userName": "ann"}}, "create:full /Users/u1 externalId=x name=ann txn=t1 jti=s.1"),
        (
            {"data": {"Operations": [{"op": "add", "path": "title"}]}},
            "create:full /Users/u1 externalId=x ops=add:title txn=t1 jti=s.1",
        ),
        (
            {"attributes": ["title", "active"]},
            "create:full /Users/u1 externalId=x attributes=title,active txn=t1 jti=s.1",
        ),
    ],
)
async def test_a_valid_set_is_accepted_and_printed_in_one_line(
    payload: dict, line: str, capsys: pytest.CaptureFixture[str]
) -> None:
    answer = await post(token(claims("create:full", payload)))
    assert answer.status_code == 202
    assert capsys.readouterr().out.strip() == line


async def test_json_output_is_the_verified_claims(capsys: pytest.CaptureFixture[str]) -> None:
    assert (await post(token(claims("delete", {})), as_json=True)).status_code == 202
    assert '"jti":"s.1"' in capsys.readouterr().out


@pytest.mark.parametrize(
    ("body", "err", "words"),
    [
        ("not a jwt", "invalid_request", "not a JWT"),
        (token(claims("delete", {}), headers={"typ": "JWT"}), "invalid_request", "not secevent+jwt"),
        (token(claims("delete", {}), secret="another-secret-0123456789abcdefghijkl"), "invalid_key", "Signature"),
        (token(claims("delete", {}, aud="https://elsewhere/")), "invalid_audience", "Audience"),
        (token({**claims("delete", {}), "events": {"a": {}, "b": {}}}), "invalid_request", "one event"),
        (token({**claims("delete", {}), "sub_id": {"format": "email"}}), "invalid_request", "scim format"),
        (token({k: v for k, v in claims("delete", {}).items() if k != "txn"}), "invalid_request", "txn"),
    ],
)
async def test_a_bad_set_gets_400_with_an_rfc_8935_error(body: str, err: str, words: str) -> None:
    answer = await post(body)
    assert answer.status_code == 400
    assert answer.json()["err"] == err and words in answer.json()["description"]
