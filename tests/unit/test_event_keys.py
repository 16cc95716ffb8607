"""web/events/keys.py: sealing subscription secrets, and the signing keys' rotation with its overlap."""

from __future__ import annotations

import jwt
import pytest

from storage import AdminError
from web.events.keys import Sealer, SealError, SigningKeys, sign


class Settings:
    """The settings table, in memory (ConsoleStore's get_setting / set_setting)."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    async def get_setting(self, key: str) -> str | None:
        return self.values.get(key)

    async def set_setting(self, key: str, value: str) -> None:
        self.values[key] = value


def test_a_secret_opens_only_under_the_key_that_sealed_it() -> None:
    sealer = Sealer(b"a" * 32)
    sealed = sealer.seal("the secret")
    assert sealed.startswith("v1.") and "the secret" not in sealed
    assert sealer.open(sealed) == "the secret"
    assert sealer.seal("the secret") != sealed  # a fresh nonce each time
    with pytest.raises(SealError, match="events.secret_key"):
        Sealer(b"b" * 32).open(sealed)
    with pytest.raises(SealError):
        sealer.open("v1.not-base64-at-all!")
    with pytest.raises(AdminError, match="SCIMLET_EVENTS_SECRET_KEY"):
        Sealer(None).seal("x")


async def test_a_rotation_keeps_the_old_keys_in_the_jwks_for_the_overlap() -> None:
    store = Settings()
    keys = SigningKeys(store, Sealer(b"k" * 32), overlap_hours=24)
    token = await sign({"jti": "1"}, "ES256", "", keys)
    first = jwt.get_unverified_header(token)["kid"]
    assert first.startswith("es256-") and [k["kid"] for k in (await keys.jwks())["keys"]] == [first]
    await keys.rotate()
    after = jwt.get_unverified_header(await sign({"jti": "2"}, "ES256", "", keys))["kid"]
    kids = {k["kid"] for k in (await keys.jwks())["keys"]}
    assert after != first and {first, after} <= kids and any(k.startswith("rs256-") for k in kids)
    public = next(k for k in (await keys.jwks())["keys"] if k["kid"] == first)
    assert jwt.decode(token, jwt.PyJWK(public).key, algorithms=["ES256"])["jti"] == "1"
    no_overlap = SigningKeys(store, Sealer(b"k" * 32), overlap_hours=0)
    await no_overlap.rotate("ES256")
    assert first not in {k["kid"] for k in (await no_overlap.jwks())["keys"]}  # past the overlap: gone
