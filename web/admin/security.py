"""Admin sign-in primitives: password hashes, random tokens and the sign-in throttle. No I/O.

The admin password, unlike API secrets, may be chosen by a person, so it is stored with a slow,
memory-hard, salted hash (scrypt); the parameters are kept in the stored text so they can be raised
later without breaking existing hashes.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import math
import secrets
import time
from collections import OrderedDict
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
    guessing runs at most one try per lock-out period (1 s, 2 s, 4 s ... up to `ceiling`). A check
    takes a slot (`reserve`) before the slow hash starts, and each address has one slot: concurrent
    guesses cannot all pass the lock-out test while the first is still being hashed. A success
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
        # client -> (failures, locked until), least recently failed first (a failure moves it to the end).
        self.clients: OrderedDict[str, tuple[int, float]] = OrderedDict()
        self.checking: set[str] = set()  # clients with a password check in flight

    def retry_after(self, client: str) -> int:
        """Seconds the client must wait before its next attempt; 0 when it may try now."""
        failures, until = self.clients.get(client, (0, 0.0))
        wait = until - self.clock()
        return math.ceil(wait) if wait > 0 else 0

    def reserve(self, client: str) -> int:
        """Take the client's one check slot: 0 when taken (give it back with release once the check is
        done), else the seconds to wait (locked out, or a check from this address still running)."""
        wait = self.retry_after(client)
        if wait:
            return wait
        if client in self.checking:
            return 1
        self.checking.add(client)
        return 0

    def release(self, client: str) -> None:
        self.checking.discard(client)

    def failed(self, client: str) -> None:
        now = self.clock()
        failures, _ = self.clients.pop(client, (0, 0.0))
        if len(self.clients) >= self.max_clients:
            self._forget_idle(now)
        failures += 1
        lock = 0.0 if failures < self.free else min(self.ceiling, 2.0 ** (failures - self.free))
        self.clients[client] = (failures, now + lock)

    def succeeded(self, client: str) -> None:
        self.clients.pop(client, None)

    def _forget_idle(self, now: float) -> None:
        """Idle records first, then the least recently failed; both come off the front, so a full
        table costs O(1) amortised per new address rather than a scan of all 10,000."""
        clients = self.clients
        while clients and now - next(iter(clients.values()))[1] >= self.forget:
            clients.popitem(last=False)
        while len(clients) >= self.max_clients:
            clients.popitem(last=False)


class UsedTokens:
    """Single-use tokens that expire by themselves (the sign-in form's): each is remembered until
    its expiry, so a used one is refused for as long as its signature would still be accepted.

    At most `max_tokens` are kept; past that the one nearest its expiry is forgotten first. A flood
    of 10,000 sign-in posts within the hour can thus make an older used form usable once more, which
    still takes its signed cookie and token both (a stolen pair) and a password check: refusing every
    new sign-in instead would let the same flood lock the admin out."""

    def __init__(self, clock: Callable[[], float] = time.time, max_tokens: int = 10_000) -> None:
        self.clock = clock
        self.max_tokens = max_tokens
        self.expiries: list[tuple[float, str]] = []  # a heap: the next to expire first
        self.used: set[str] = set()

    def use(self, token: str, expires: float) -> bool:
        """True the first time a token is used (and remembers it until `expires`); False after."""
        now = self.clock()
        while self.expiries and (self.expiries[0][0] <= now or len(self.expiries) >= self.max_tokens):
            self.used.discard(heapq.heappop(self.expiries)[1])
        if token in self.used:
            return False
        self.used.add(token)
        heapq.heappush(self.expiries, (expires, token))
        return True
