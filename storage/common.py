"""Helpers every backend shares: timestamps as stored, resource ids, secret hashes, readiness texts."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import secrets
import time
from collections.abc import Awaitable
from datetime import datetime
from typing import Any, Protocol

from scim.errors import ScimError, shown
from storage.errors import AdminError
from storage.records import ApiKey, Idp, SchemaConfig

log = logging.getLogger("scimlet.health")
# How long a change to keys or IdPs made by another process may take to reach a running server
# (every backend's authenticate keeps to it; the CLI waits it out before it reports such a change done).
AUTH_RECHECK_SECONDS = 0.1
# Rows an IdP's clear deletes per write transaction: each a few milliseconds, so the writes of other
# tenants interleave with a clear of a million rows instead of waiting for it.
CLEAR_CHUNK = 2000


def now() -> str:
    """The current time as format_datetime writes it (UTC, milliseconds, Z)."""
    return format_timestamp(time.time())


def format_timestamp(seconds: float) -> str:
    """A time.time() value as format_datetime writes it (a current time: a four-digit year). The
    part up to the second is formatted once per second: a few times per request, this costs a
    quarter of datetime's isoformat."""
    global _second
    whole = int(seconds)
    cached, prefix = _second
    if cached != whole:
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
        _second = (whole, prefix)  # one tuple, replaced whole: safe across threads
    return f"{prefix}.{int((seconds - whole) * 1000):03d}Z"


_second: tuple[int, str] = (-1, "")


def timestamp_seconds(stamp: str) -> float:
    """A stored timestamp (as now() writes it) as a time.time() value: format_timestamp's inverse."""
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def new_resource_id() -> str:
    """A UUIDv7 (RFC 9562 §5.7): time first, then random bits. New users and groups sort after the
    ones before them, so their id index entries (and their member rows, which Entra adds in batches
    of recently created users) land on a few pages at the end of each B-tree instead of on one
    random page per row: a batch of 100 member rows was 200 pages written, it is now a handful."""
    millis = time.time_ns() // 1_000_000
    random = int.from_bytes(os.urandom(10))  # one system call for both random fields
    rand_a, rand_b = random >> 68, random & (2**62 - 1)
    digits = f"{(millis << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b:032x}"
    # str(uuid.UUID(int=...)) gives the same text for three times the cost.
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"


def new_api_secret() -> str:
    """A key's secret: 43 URL-safe characters, never starting with "-" (a command line would read
    `--token -x...` as an option: one secret in 64 broke `entra-sim --token SECRET`)."""
    while True:
        secret = secrets.token_urlsafe(32)
        if not secret.startswith("-"):
            return secret


def hash_secret(secret: str) -> str:
    # Secrets are 256-bit random tokens, so a fast hash is enough: there is nothing to brute-force.
    return hashlib.sha256(secret.encode()).hexdigest()


def readiness_failure(what: str, exc: BaseException, timeout: float) -> str:
    """A readiness check's text for a probe of the database that failed or timed out (no paths)."""
    if isinstance(exc, TimeoutError):
        return f"{what} within {timeout:g} s"
    if isinstance(exc, ScimError) and exc.status == 429:
        return "busy: the write queue is full (scim.max_write_queue)"
    if isinstance(exc, ScimError) and exc.status == 503:
        return f"{what}: the database cannot store writes"
    log.warning("readiness: %s: %s", what, exc)
    return f"{what}: {type(exc).__name__}"


class Columns(Protocol):
    """A row as a driver returns it (sqlite3's tuple, asyncpg's Record): its columns by position."""

    def __getitem__(self, index: int, /) -> Any: ...


def api_key_of(row: Columns, last_used: dict[str, float]) -> ApiKey:
    """An API key from its row (id, name, description, users_write, groups_write, created,
    last_used, revoked), with the last sign-in recorded in memory and not stored yet, if later."""
    stored_use = format_timestamp(last_used[row[0]]) if row[0] in last_used else row[6]
    return ApiKey(row[0], row[1], row[2], bool(row[3]), bool(row[4]), row[5], stored_use, row[7])


def key_named(keys: list[ApiKey], id_or_name: str) -> ApiKey:
    """The key with this id, or this name in any letter case; AdminError 404 when none has it."""
    for key in keys:
        if key.id == id_or_name or key.name.lower() == id_or_name.lower():
            return key
    raise AdminError(f"No API key with id or name {shown(id_or_name)}", 404)


async def probe_reads_and_writes(
    checks: dict[str, str], read: Awaitable[list[str]], write: Awaitable[None], timeout: float, writer_failure: str
) -> BaseException | None:
    """Readiness's "database", "migrations" and "writer" checks, in `checks`: `read` (the pending
    migrations) and `write` (an empty write) run together, each within `timeout`. Returns the
    write's failure, if any."""
    reader: list[str] | BaseException
    writer: None | BaseException
    reader, writer = await asyncio.gather(
        asyncio.wait_for(read, timeout), asyncio.wait_for(write, timeout), return_exceptions=True
    )
    if isinstance(reader, BaseException):
        checks["database"] = readiness_failure("the database does not answer reads", reader, timeout)
        checks["migrations"] = "unknown: the database does not answer"
    elif reader:
        checks["migrations"] = f"{len(reader)} pending: {', '.join(reader)}; run `python app.py migrate`"
    if isinstance(writer, BaseException):
        checks["writer"] = readiness_failure(writer_failure, writer, timeout)
        return writer
    return None


# An IdP's columns as idp_of reads them, in both backends.
IDP_COLUMNS = "id, name, icon, api_key_id, created, schema_profile, schema_strict, schema_extensions"
IDP_SELECT = f"{IDP_COLUMNS}, second_api_key_id"  # what idp_of reads


def idp_of(row: Columns) -> Idp:
    """An Idp from a row of IDP_SELECT."""
    return Idp(row[0], row[1], row[2], row[3], row[4], SchemaConfig(row[5], bool(row[6]), row[7]), row[8])


def check_second_key(idp: Idp, key: ApiKey) -> None:
    """What a key must be to become an IdP's second key: not revoked, not its key already."""
    if key.revoked:
        raise AdminError(f"API key {shown(key.name)} is revoked; create a new key for the rotation")
    if key.id == idp.api_key_id:
        raise AdminError(
            f"API key {shown(key.name)} is already this IdP's key; a second key is another one, for a rotation"
        )
