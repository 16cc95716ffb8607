"""The keys of events: sealing subscription secrets, and the RS256/ES256 signing keys with their JWKS.

A subscription's secret is both the HMAC key of its HS256 SETs and its poll bearer token, so the
server must be able to use it again: a hash could not sign. It is stored sealed with AES-256-GCM
under a key that is not in the database (events.secret_key; on SQLite without it, a file beside
the database made on first use, mode 0600), so a copy of the database (a backup, copy-database, a
leaked dump) does not give the secrets away.

The RS256 and ES256 signing keys are one per algorithm for the whole server (a receiver verifies
every tenant's SETs with one JWKS), kept in the settings table with their private keys sealed. A
rotation makes a new key per algorithm the signing one; the old stay in the JWKS for
events.key_overlap_hours, so SETs already sent stay verifiable, and then go.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import secrets
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Protocol

import jwt
import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from settings import Settings
from storage import AdminError

ALGORITHMS = ("HS256", "RS256", "ES256")
SIGNING_KEYS_SETTING = "events.signing_keys"
SET_TYPE = "secevent+jwt"  # RFC 8417 §2.3


def key_encryption_key(settings: Settings) -> bytes | None:
    """The 32-byte sealing key: from events.secret_key, else (SQLite) from its key file, made
    when missing; None on PostgreSQL without events.secret_key."""
    configured = settings.events.secret_key
    if configured:
        return hashlib.sha256(configured.encode()).digest()
    url = settings.database.backend_url
    if not url.startswith("sqlite:///"):
        return None
    path = Path(url.removeprefix("sqlite:///") + ".events-key")
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process made it first
        else:
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_urlsafe(32))
    return hashlib.sha256(path.read_text().strip().encode()).digest()


class SealError(Exception):
    """A sealed secret that this server's key cannot open (sealed under another events.secret_key)."""


class Sealer:
    """AES-256-GCM over short texts: "v1." + base64(nonce + ciphertext)."""

    def __init__(self, key: bytes | None) -> None:
        self.aead = AESGCM(key) if key is not None else None

    def _ready(self) -> AESGCM:
        if self.aead is None:
            raise AdminError(
                "Set events.secret_key (SCIMLET_EVENTS_SECRET_KEY), the same on every instance: on PostgreSQL, "
                "subscription secrets are sealed with it"
            )
        return self.aead

    def seal(self, text: str) -> str:
        nonce = secrets.token_bytes(12)
        return "v1." + base64.urlsafe_b64encode(nonce + self._ready().encrypt(nonce, text.encode(), None)).decode()

    def open(self, sealed: str) -> str:
        """The secret; SealError when this key did not seal it (a database copied from elsewhere)."""
        aead = self._ready()
        try:
            raw = base64.urlsafe_b64decode(sealed.removeprefix("v1."))
            return aead.decrypt(raw[:12], raw[12:], None).decode()
        except (InvalidTag, ValueError):
            raise SealError(
                "the subscription's secret was sealed under another key: set events.secret_key to the key that "
                "sealed it (after copy-database from SQLite, the text of its <database>.events-key file)"
            ) from None


@dataclass(frozen=True)
class SigningKey:
    kid: str
    alg: str
    private_pem: str  # sealed
    public_jwk: dict
    created: float
    retired: float | None = None  # when a rotation replaced it

    def published(self, moment: float, overlap: float) -> bool:
        """In the JWKS: it signs now, or stopped less than `overlap` seconds ago."""
        return self.retired is None or moment - self.retired < overlap


class SettingsStore(Protocol):
    """What the signing keys need of the store: the settings table (ConsoleStore)."""

    async def get_setting(self, key: str) -> str | None: ...

    async def set_setting(self, key: str, value: str) -> None: ...


class SigningKeys:
    """The server's RS256/ES256 keys, read from the settings table (kept for a few seconds, so
    every instance signs with the newest within that time of a rotation)."""

    CACHE_SECONDS = 5.0

    def __init__(self, store: SettingsStore, sealer: Sealer, overlap_hours: int) -> None:
        self.store = store
        self.sealer = sealer
        self.overlap = overlap_hours * 3600
        self._keys: list[SigningKey] = []
        self._read_at = -1e9
        self._private: dict[str, object] = {}

    async def keys(self) -> list[SigningKey]:
        if time.monotonic() - self._read_at > self.CACHE_SECONDS:
            stored = await self.store.get_setting(SIGNING_KEYS_SETTING)
            self._keys = [SigningKey(**k) for k in orjson.loads(stored)] if stored else []
            self._read_at = time.monotonic()
        return self._keys

    async def signing(self, alg: str) -> tuple[str, object]:
        """The kid and private key that sign `alg` now, made when there is none yet."""
        current = [k for k in await self.keys() if k.alg == alg and k.retired is None]
        if not current:
            await self.rotate(alg)
            current = [k for k in await self.keys() if k.alg == alg and k.retired is None]
        key = current[-1]
        if key.kid not in self._private:
            pem = self.sealer.open(key.private_pem).encode()
            self._private[key.kid] = serialization.load_pem_private_key(pem, password=None)
        return key.kid, self._private[key.kid]

    async def rotate(self, alg: str | None = None) -> list[SigningKey]:
        """A new signing key for `alg` (None: both); the replaced ones are retired now and leave
        the JWKS after the overlap. Returns the keys as stored. The keys are made on a thread: an
        RSA key takes tens of milliseconds, which the event loop must not wait."""
        stamp = time.time()
        self._read_at = -1e9
        replaced = ("RS256", "ES256") if alg is None else (alg,)
        kept = [
            replace(k, retired=stamp) if k.retired is None and k.alg in replaced else k
            for k in await self.keys()
            if k.published(stamp, self.overlap)
        ]
        for which in replaced:
            kept.append(await asyncio.to_thread(new_signing_key, which, self.sealer, stamp))
        await self.store.set_setting(SIGNING_KEYS_SETTING, orjson.dumps([asdict(k) for k in kept]).decode())
        self._read_at = -1e9
        return await self.keys()

    async def jwks(self) -> dict:
        stamp = time.time()
        return {"keys": [k.public_jwk for k in await self.keys() if k.published(stamp, self.overlap)]}


def new_signing_key(alg: str, sealer: Sealer, stamp: float) -> SigningKey:
    private: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    if alg == "RS256":
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
    else:
        private = ec.generate_private_key(ec.SECP256R1())
        jwk = ECAlgorithm.to_jwk(private.public_key(), as_dict=True)
    kid = f"{alg.lower()}-{secrets.token_hex(6)}"
    jwk = {**jwk, "kid": kid, "alg": alg, "use": "sig"}
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return SigningKey(kid, alg, sealer.seal(pem), jwk, stamp)


async def sign(claims: dict, alg: str, secret: str, keys: SigningKeys) -> str:
    """The SET as a compact JWS: HS256 with the subscription's secret, else the server's key."""
    if alg == "HS256":
        return jwt.encode(claims, secret, algorithm="HS256", headers={"typ": SET_TYPE})
    kid, private = await keys.signing(alg)
    return jwt.encode(claims, private, algorithm=alg, headers={"typ": SET_TYPE, "kid": kid})  # type: ignore[arg-type]
