"""Admin sign-in primitives: password hashes, random tokens and the sign-in throttle. No I/O.

The admin password, unlike API secrets, may be chosen by a person, so it is stored with a slow,
memory-hard, salted hash (scrypt); the parameters are kept in the stored text so they can be raised
later without breaking existing hashes.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import time
from collections.abc import Callable

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1  # about 0.15 s and 32 MiB per check on a small VM
MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024


def hash_password(password: str) -> str:
    """`scrypt$N$r$p$<salt hex>$<hash hex>` for a new random salt."""
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    """Whether password matches a hash made by hash_password; False for anything malformed."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        actual = _scrypt(password, bytes.fromhex(salt), int(n), int(r), int(p))
        return hmac.compare_digest(actual, bytes.fromhex(digest))
    except ValueError:
        return False


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    # maxmem must cover 128 * r * n bytes plus a little; the default (32 MiB) is just too small.
    return hashlib.scrypt(
        password[:MAX_PASSWORD_LENGTH].encode(), salt=salt, n=n, r=r, p=p, dklen=32, maxmem=256 * r * n + 1024 * 1024
    )


def matches_configured(given: str, configured: str) -> bool:
    """Constant-time comparison with a password or token taken from the configuration."""
    return hmac.compare_digest(hashlib.sha256(given.encode()).digest(), hashlib.sha256(configured.encode()).digest())


def new_password() -> str:
    """A generated admin password: 20 URL-safe characters (120 bits), easy to paste."""
    return secrets.token_urlsafe(15)


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    # Session ids are 256-bit random tokens: a fast hash suffices, there is nothing to brute-force.
    return hashlib.sha256(token.encode()).hexdigest()


class SignInThrottle:
    """Per client address: after `free` failed sign-ins, each further failure doubles a lock-out.

    While a client is locked out every attempt is refused before the password is even checked, so
    guessing runs at most one try per lock-out period (1 s, 2 s, 4 s ... up to `ceiling`). A success
    clears the client's record; records idle for `forget` seconds are dropped.
    """

    def __init__(
        self,
        free: int = 5,
        ceiling: float = 900.0,
        forget: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
        max_clients: int = 10_000,
    ) -> None:
        self.free = free
        self.ceiling = ceiling
        self.forget = forget
        self.clock = clock
        self.max_clients = max_clients
        self.clients: dict[str, tuple[int, float]] = {}  # client -> (failures, locked until)

    def retry_after(self, client: str) -> int:
        """Seconds the client must wait before its next attempt; 0 when it may try now."""
        failures, until = self.clients.get(client, (0, 0.0))
        wait = until - self.clock()
        return math.ceil(wait) if wait > 0 else 0

    def failed(self, client: str) -> None:
        now = self.clock()
        failures, _ = self.clients.get(client, (0, 0.0))
        if client not in self.clients and len(self.clients) >= self.max_clients:
            self._forget_idle(now)
        failures += 1
        lock = 0.0 if failures < self.free else min(self.ceiling, 2.0 ** (failures - self.free))
        self.clients[client] = (failures, now + lock)

    def succeeded(self, client: str) -> None:
        self.clients.pop(client, None)

    def _forget_idle(self, now: float) -> None:
        for client, (_, until) in list(self.clients.items()):
            if now - until >= self.forget:
                del self.clients[client]
        while len(self.clients) >= self.max_clients:
            del self.clients[next(iter(self.clients))]
