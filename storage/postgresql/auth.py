"""API keys, IdPs and sign-ins on PostgreSQL.

authenticate is synchronous and must not wait for the database: every instance keeps each IdP's
key (its hash and privileges) in memory, loaded at open() and again whenever a change could end or
start a sign-in. Made here, the change is reloaded before the call returns; made by another
instance, the CLI or psql, the tables' triggers (migration 001) notify channel scimlet_auth and the
listener reloads at once, and a poll of auth_epoch every AUTH_POLL_SECONDS catches a notification
lost with its connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hmac
import logging
import time
import uuid
from functools import partial
from typing import NamedTuple

import asyncpg

from scim.errors import ScimError, shown
from storage import AdminError, ApiKey, Idp, Principal, SchemaConfig, SignInFailure
from storage.common import (
    CLEAR_CHUNK,
    IDP_COLUMNS,
    IDP_SELECT,
    api_key_of,
    check_second_key,
    format_timestamp,
    hash_secret,
    idp_of,
    key_named,
    new_api_secret,
    now,
)
from storage.postgresql.engine import UNAVAILABLE, Connection, Engine

log = logging.getLogger("scimlet.storage")
AUTH_POLL_SECONDS = 1.0
CHANNEL = "scimlet_auth"
Rows = list[asyncpg.Record]


class Binding(NamedTuple):
    """An IdP's unrevoked key, as a sign-in checks it."""

    secret_hash: str
    principal: Principal


class KeyOwner(NamedTuple):
    """An API key as a failed sign-in's reason names it (SignInFailure)."""

    name: str
    revoked: str | None
    idp_id: str | None  # the IdP it is selected for


class KeysAndIdps(Engine):
    """AdminStore's keys and IdPs, and authenticate from the in-memory bindings."""

    _last_used: dict[str, float]  # API key id -> time.time() of its last sign-in here, not yet stored
    _bindings: dict[str, tuple[Binding, ...]]  # IdP ID -> its key (and its second key, in a rotation)
    # For the reasons of failed sign-ins, loaded with the bindings: no database read on a failure.
    _idp_names: dict[str, tuple[str, str | None]]  # IdP ID -> (its name, its key's name)
    _key_owners: dict[str, KeyOwner]  # secret hash -> the key
    _auth_epoch: int
    _listener: Connection | None
    _auth_task: asyncio.Task | None
    _reload_wanted: asyncio.Event

    def _start_auth_cache(self) -> None:
        self._last_used = {}
        self._bindings = {}
        self._idp_names = {}
        self._key_owners = {}
        self._auth_epoch = -1
        self._listener = None
        self._auth_task = None

    async def _open_auth(self) -> None:
        self._reload_wanted = asyncio.Event()
        await self._reload_bindings()
        await self._listen()
        self._auth_task = asyncio.create_task(self._auth_loop())

    async def _close_auth(self) -> None:
        if self._auth_task is not None:
            task, self._auth_task = self._auth_task, None
            task.cancel()
            await asyncio.wait({task}, timeout=self.connect_timeout)
        if self._listener is not None:
            listener, self._listener = self._listener, None
            with contextlib.suppress(*UNAVAILABLE):
                await asyncio.wait_for(listener.close(), self.connect_timeout)

    async def _listen(self) -> None:
        self._listener = await self.connect()
        await self._listener.add_listener(CHANNEL, self._notified)

    def _notified(self, *_: object) -> None:
        self._reload_wanted.set()

    async def _auth_loop(self) -> None:
        """Reload on a notification; poll the epoch (and reconnect the listener) every AUTH_POLL_SECONDS."""
        while True:
            # asyncio.timeout, not wait_for: Python 3.11's wait_for drops a cancellation that comes
            # as the event fires (this store's own change notifies as close() cancels the loop),
            # and close() then waited for ever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(AUTH_POLL_SECONDS):
                    await self._reload_wanted.wait()
            try:
                if self._reload_wanted.is_set():
                    self._reload_wanted.clear()
                    await self._reload_bindings()
                    continue
                if self._listener is None or self._listener.is_closed():
                    await self._listen()
                    await self._reload_bindings()
                elif await self._listener.fetchval("SELECT n FROM auth_epoch") != self._auth_epoch:
                    await self._reload_bindings()
            except (*UNAVAILABLE, asyncpg.PostgresError, ScimError) as exc:
                # The sign-ins already known keep working; the next round tries again. ScimError is
                # the 503 of a pooled read (Engine.run) that found two ended connections in a row:
                # uncaught, it ended this loop, and no key change reached this instance again.
                log.warning("API keys not reloaded from PostgreSQL: %s", exc)
                if self._listener is not None and not self._listener.is_closed():
                    self._listener.terminate()
                self._listener = None

    async def _reload_bindings(self) -> None:
        async def load(conn: Connection) -> tuple[int, Rows, Rows, Rows, Rows]:
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                epoch = await conn.fetchval("SELECT n FROM auth_epoch")
                rows = await conn.fetch(
                    "SELECT i.id, k.id, k.secret_hash, k.users_write, k.groups_write, "
                    "i.schema_profile, i.schema_strict, i.schema_extensions, "
                    "EXISTS (SELECT 1 FROM event_subscriptions AS s WHERE s.idp_id = i.id) FROM idps AS i "
                    "JOIN api_keys AS k ON k.id IN (i.api_key_id, i.second_api_key_id) WHERE k.revoked IS NULL "
                    "ORDER BY i.id, k.id = i.api_key_id DESC"
                )
                idps = await conn.fetch(
                    "SELECT i.id, i.name, k.name FROM idps AS i LEFT JOIN api_keys AS k ON k.id = i.api_key_id"
                )
                keys = await conn.fetch(
                    "SELECT k.secret_hash, k.name, k.revoked, i.id FROM api_keys AS k "
                    "LEFT JOIN idps AS i ON k.id IN (i.api_key_id, i.second_api_key_id)"
                )
                deleted = await conn.fetch("SELECT id, name FROM deleted_idps")
            return epoch, rows, idps, keys, deleted

        epoch, rows, idps, keys, deleted = await self.read(load)
        if epoch < self._auth_epoch:
            # A reload that read before a later one finished (the listener's, racing this
            # instance's own after a change): what it read is older than what is installed.
            return
        bindings: dict[str, tuple[Binding, ...]] = {}
        for r in rows:
            binding = Binding(r[2], Principal(r[0], r[1], r[3], r[4], SchemaConfig(r[5], r[6], r[7]), r[8]))
            bindings[r[0]] = (*bindings.get(r[0], ()), binding)
        self._bindings = bindings
        self._idp_names = {r[0]: (r[1], r[2]) for r in idps}
        self._key_owners = {r[0]: KeyOwner(r[1], r[2], r[3]) for r in keys}
        self._deleted_idps = {r[0]: r[1] for r in deleted}
        self._auth_epoch = epoch

    def authenticate(self, idp_id: str, secret: str) -> Principal | None:
        digest = hash_secret(secret)
        # Compare in constant time with each of the IdP's keys (two during a rotation); an unknown
        # IdP still costs one comparison, so timing tells nothing.
        matched = None
        for binding in self._bindings.get(idp_id) or (None,):
            if hmac.compare_digest(binding.secret_hash if binding else "0" * 64, digest) and binding is not None:
                matched = binding
        if matched is None:
            return None
        self._last_used[matched.principal.api_key_id] = time.time()
        return matched.principal

    def sign_in_failure(self, idp_id: str, secret: str) -> SignInFailure:
        idp = self._idp_names.get(idp_id)
        key = self._key_owners.get(hash_secret(secret))
        key_idp = self._idp_names.get(key.idp_id) if key is not None and key.idp_id is not None else None
        return SignInFailure(
            idp[0] if idp else None,
            idp[1] if idp else None,
            key.name if key else None,
            key.revoked if key else None,
            key.idp_id if key else None,
            key_idp[0] if key_idp else None,
            None if idp else self._deleted_idps.get(idp_id),
        )

    async def create_api_key(
        self, name: str, description: str, users_write: bool, groups_write: bool
    ) -> tuple[ApiKey, str]:
        name = _checked_name(name, "An API key")
        secret = new_api_secret()
        key = ApiKey(str(uuid.uuid4()), name, description, users_write, groups_write, now(), None, None)

        async def insert(conn: Connection) -> None:
            try:
                await conn.execute(
                    "INSERT INTO api_keys (id, name, description, secret_hash, users_write, groups_write, created)"
                    " VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    key.id,
                    key.name,
                    description.replace("\x00", ""),
                    hash_secret(secret),
                    users_write,
                    groups_write,
                    key.created,
                )
            except asyncpg.UniqueViolationError:
                raise AdminError(f"An API key named {shown(name)} already exists", 409) from None

        await self.write(insert)
        await self._reload_bindings()  # a failed sign-in with the new secret is named by its key at once
        return key, secret

    async def list_api_keys(self) -> list[ApiKey]:
        rows = await self.read(
            lambda conn: conn.fetch(
                "SELECT id, name, description, users_write, groups_write, created, last_used, revoked "
                'FROM api_keys ORDER BY created COLLATE "C", id'
            )
        )
        return [api_key_of(r, self._last_used) for r in rows]

    async def find_api_key(self, id_or_name: str) -> ApiKey:
        return key_named(await self.list_api_keys(), id_or_name)

    async def revoke_api_key(self, id_or_name: str) -> ApiKey:
        key = await self.find_api_key(id_or_name)
        if key.revoked:
            return key
        stamp = now()

        async def revoke(conn: Connection) -> None:
            await conn.execute("UPDATE api_keys SET revoked = $1 WHERE id = $2", stamp, key.id)
            # A rotation ends: an IdP whose key this was keeps signing in with its second key alone.
            await conn.execute(
                "UPDATE idps SET api_key_id = second_api_key_id, second_api_key_id = NULL "
                "WHERE api_key_id = $1 AND second_api_key_id IS NOT NULL",
                key.id,
            )
            await conn.execute("UPDATE idps SET second_api_key_id = NULL WHERE second_api_key_id = $1", key.id)

        await self.write(revoke)
        await self._reload_bindings()
        return await self.find_api_key(key.id)

    async def create_idp(self, name: str, icon: str, api_key: str | None, schema: SchemaConfig | None = None) -> Idp:
        name = _checked_name(name, "An IdP")
        key_id = None
        key_name = ""
        if api_key:
            key = await self.find_api_key(api_key)
            if key.revoked:
                raise AdminError(f"API key {shown(key.name)} is revoked")
            key_id, key_name = key.id, key.name
        idp = Idp(uuid.uuid4().hex, name, icon.replace("\x00", ""), key_id, now(), schema or SchemaConfig())

        async def insert(conn: Connection) -> None:
            if key_id is not None:
                await _check_key_free(conn, key_id, key_name, idp.id)
            try:
                await conn.execute(
                    f"INSERT INTO idps ({IDP_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    idp.id,
                    idp.name,
                    idp.icon,
                    idp.api_key_id,
                    idp.created,
                    idp.schema.profile,
                    idp.schema.strict,
                    idp.schema.extensions,
                )
            except asyncpg.UniqueViolationError:
                raise AdminError(f"An IdP named {shown(name)} already exists", 409) from None
            except asyncpg.ForeignKeyViolationError:
                raise AdminError(f"No API key with id or name {shown(api_key)}", 404) from None

        await self.write(insert)
        await self._reload_bindings()
        return idp

    async def list_idps(self) -> list[Idp]:
        rows = await self.read(
            lambda conn: conn.fetch(f'SELECT {IDP_SELECT} FROM idps ORDER BY created COLLATE "C", id')
        )
        return [idp_of(r) for r in rows]

    async def get_idp(self, idp_id: str) -> Idp:
        row = await self.read(lambda conn: conn.fetchrow(f"SELECT {IDP_SELECT} FROM idps WHERE id = $1", idp_id))
        if row is None:
            raise AdminError(f"No IdP with id {shown(idp_id)}", 404)
        return idp_of(row)

    async def set_idp_api_key(self, idp_id: str, api_key: str) -> Idp:
        idp = await self.get_idp(idp_id)
        key = await self.find_api_key(api_key)
        if key.revoked:
            raise AdminError(f"API key {shown(key.name)} is revoked")

        async def select(conn: Connection) -> None:
            if idp.api_key_id != key.id:  # saving the key it has is no new binding (even a shared legacy one)
                await _check_key_free(conn, key.id, key.name, idp.id)
            await conn.execute(
                "UPDATE idps SET api_key_id = $1, second_api_key_id = nullif(second_api_key_id, $1) WHERE id = $2",
                key.id,
                idp.id,
            )

        await self.write(select)
        await self._reload_bindings()
        return await self.get_idp(idp.id)

    async def set_idp_second_key(self, idp_id: str, api_key: str | None) -> Idp:
        idp = await self.get_idp(idp_id)
        key = None
        if api_key is not None:
            key = await self.find_api_key(api_key)
            check_second_key(idp, key)

        async def select(conn: Connection) -> None:
            if key is not None and key.id != idp.second_api_key_id:
                await _check_key_free(conn, key.id, key.name, idp.id)
            await conn.execute("UPDATE idps SET second_api_key_id = $1 WHERE id = $2", key.id if key else None, idp.id)

        await self.write(select)
        await self._reload_bindings()
        return await self.get_idp(idp.id)

    async def set_idp_schema(self, idp_id: str, schema: SchemaConfig) -> Idp:
        idp = await self.get_idp(idp_id)
        await self.write(
            lambda conn: conn.execute(
                "UPDATE idps SET schema_profile = $1, schema_strict = $2, schema_extensions = $3 WHERE id = $4",
                schema.profile,
                schema.strict,
                schema.extensions.replace("\x00", ""),
                idp.id,
            )
        )
        await self._reload_bindings()
        return await self.get_idp(idp.id)

    async def delete_idp(self, idp_id: str) -> None:
        idp = await self.get_idp(idp_id)

        async def delete(conn: Connection) -> None:
            # The IdP's row first: creates still running in it hold a key-share lock on it and are
            # waited for, and those after see it gone (resources.check_idp).
            await conn.execute("DELETE FROM idps WHERE id = $1", idp.id)
            for table in ("group_members", "users", "groups"):
                await conn.execute(f"DELETE FROM {table} WHERE idp_id = $1", idp.id)
            await conn.execute(
                "INSERT INTO deleted_idps (id, name, deleted) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING",
                idp.id,
                idp.name,
                now(),
            )

        await self.write(delete)
        await self._reload_bindings()

    async def deleted_idp_names(self) -> dict[str, str]:
        rows = await self.read(lambda conn: conn.fetch("SELECT id, name FROM deleted_idps"))
        return {r[0]: r[1] for r in rows}

    async def rename_idp(self, idp_id: str, name: str, icon: str) -> Idp:
        idp = await self.get_idp(idp_id)
        name = _checked_name(name, "An IdP")
        icon = icon.replace("\x00", "")

        async def rename(conn: Connection) -> None:
            try:
                await conn.execute("UPDATE idps SET name = $1, icon = $2 WHERE id = $3", name, icon, idp.id)
            except asyncpg.UniqueViolationError:
                raise AdminError(f"An IdP named {shown(name)} already exists", 409) from None

        await self.write(rename)
        return dataclasses.replace(idp, name=name, icon=icon)

    async def clear_idp(self, idp_id: str) -> tuple[int, int]:
        idp = await self.get_idp(idp_id)
        # What exists now is cleared, CLEAR_CHUNK rows per transaction: a short lock on a few rows
        # at a time instead of every row of the IdP for the whole clear.
        counts = []
        for table in ("groups", "users"):
            last = await self.read(partial(_last_seq, table=table, idp_id=idp.id))
            cleared = 0
            while last is not None:
                done = await self.write(partial(_clear_chunk, table=table, idp_id=idp.id, last=last))
                cleared += done
                if done < CLEAR_CHUNK:
                    break
            counts.append(cleared)
        return counts[1], counts[0]

    async def flush_last_used(self) -> None:
        """Store the last-use times, batched: sign-ins never write. The later time wins, whichever
        instance stores it."""
        if not self._last_used:
            return
        pending, self._last_used = self._last_used, {}
        await self.write(
            lambda conn: conn.execute(
                "UPDATE api_keys AS k SET last_used = greatest(k.last_used, u.at) "
                "FROM unnest($1::text[], $2::text[]) AS u(id, at) WHERE k.id = u.id",
                list(pending),
                [format_timestamp(at) for at in pending.values()],
            )
        )


async def _last_seq(conn: Connection, *, table: str, idp_id: str) -> int | None:
    return await conn.fetchval(f"SELECT max(seq) FROM {table} WHERE idp_id = $1", idp_id)


async def _clear_chunk(conn: Connection, *, table: str, idp_id: str, last: int) -> int:
    """Delete up to CLEAR_CHUNK of the IdP's rows of `table` up to seq `last`, with their
    memberships; a group left (made after the clear began) that loses a member gets a new version,
    as after a DELETE. Returns how many rows it deleted."""
    rows = await conn.fetch(
        f"SELECT id FROM {table} WHERE idp_id = $1 AND seq <= $2 ORDER BY seq LIMIT $3 FOR UPDATE",
        idp_id,
        last,
        CLEAR_CHUNK,
    )
    if not rows:
        return 0
    ids = [r[0] for r in rows]
    await conn.execute(
        "UPDATE groups SET version = version + 1, modified = $1 WHERE id IN "
        "(SELECT group_id FROM group_members WHERE member_id = ANY($2::text[])) AND NOT id = ANY($2::text[])",
        now(),
        ids,
    )
    await conn.execute("DELETE FROM group_members WHERE member_id = ANY($1::text[])", ids)
    if table == "groups":
        await conn.execute("DELETE FROM group_members WHERE group_id = ANY($1::text[])", ids)
    await conn.execute(f"DELETE FROM {table} WHERE id = ANY($1::text[])", ids)
    return len(ids)


def _checked_name(name: str, what: str) -> str:
    name = name.strip()
    if not name:
        raise AdminError(f"{what} needs a name")
    if "\x00" in name:
        raise AdminError(f"{what}'s name cannot hold a NUL character")
    return name


async def _check_key_free(conn: Connection, key_id: str, key_name: str, idp_id: str) -> None:
    """A key belongs to one IdP: it signs in to that IdP's tenant URL and nowhere else. The key's
    row stays locked until the transaction ends, so two instances cannot bind it to two IdPs at once."""
    await conn.execute("SELECT 1 FROM api_keys WHERE id = $1 FOR UPDATE", key_id)
    other = await conn.fetchval(
        "SELECT name FROM idps WHERE $1 IN (api_key_id, second_api_key_id) AND id <> $2", key_id, idp_id
    )
    if other is not None:
        raise AdminError(
            f"API key {key_name!r} is already selected for IdP {other!r}; a key belongs to one IdP: "
            "create a new key for this one",
            409,
        )
