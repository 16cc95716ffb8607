"""API keys, IdPs and the sign-in cache on SQLite."""

from __future__ import annotations

import dataclasses
import hmac
import math
import sqlite3
import time
import uuid

import orjson

from scim.errors import shown
from storage import (
    AdminError,
    ApiKey,
    Idp,
    Principal,
    SchemaConfig,
    SignInFailure,
)
from storage.common import (
    AUTH_RECHECK_SECONDS,
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
from storage.sqlite.engine import Engine, fetch

# Only verified sign-ins are cached, one per IdP (an IdP has one key, whose change clears the
# cache), so a client cannot grow it; this bounds it should IdPs be created by the hundred thousand:
# past it the cache starts over, and the next sign-ins are verified again.
MAX_CACHED_SIGNINS = 10_000


class KeysAndIdps(Engine):
    """AdminStore's keys and IdPs, and authenticate from an in-memory cache of verified sign-ins."""

    # API key id -> time.time() of its last sign-in; formatted only when read or written out.
    _last_used: dict[str, float]
    _principals: dict[tuple[str, str], Principal]  # (IdP ID, secret hash) -> principal
    _auth_epoch: int
    _auth_checked: float

    def _start_auth_cache(self) -> None:
        self._last_used = {}
        self._principals = {}
        self._auth_epoch = -1
        self._auth_checked = -math.inf

    async def create_api_key(
        self, name: str, description: str, users_write: bool, groups_write: bool
    ) -> tuple[ApiKey, str]:
        name = name.strip()
        if not name:
            raise AdminError("An API key needs a name")
        secret = new_api_secret()
        key = ApiKey(str(uuid.uuid4()), name, description, users_write, groups_write, now(), None, None)

        def insert(conn: sqlite3.Connection) -> None:
            try:
                conn.execute(
                    "INSERT INTO api_keys (id, name, description, secret_hash, users_write, groups_write, created)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        key.id,
                        key.name,
                        description,
                        hash_secret(secret),
                        int(users_write),
                        int(groups_write),
                        key.created,
                    ),
                )
            except sqlite3.IntegrityError:
                raise AdminError(f"An API key named {shown(name)} already exists", 409) from None

        await self.write(insert)
        return key, secret

    async def list_api_keys(self) -> list[ApiKey]:
        rows = await self.read(
            fetch,
            "SELECT id, name, description, users_write, groups_write, created, "
            "last_used, revoked FROM api_keys ORDER BY created",
            (),
        )
        return [api_key_of(r, self._last_used) for r in rows]

    async def find_api_key(self, id_or_name: str) -> ApiKey:
        return key_named(await self.list_api_keys(), id_or_name)

    async def revoke_api_key(self, id_or_name: str) -> ApiKey:
        key = await self.find_api_key(id_or_name)
        if key.revoked:
            return key
        stamp = now()

        def revoke(conn: sqlite3.Connection) -> None:
            conn.execute("UPDATE api_keys SET revoked = ? WHERE id = ?", (stamp, key.id))
            # A rotation ends: an IdP whose key this was keeps signing in with its second key alone.
            conn.execute(
                "UPDATE idps SET api_key_id = second_api_key_id, second_api_key_id = NULL "
                "WHERE api_key_id = ? AND second_api_key_id IS NOT NULL",
                (key.id,),
            )
            conn.execute("UPDATE idps SET second_api_key_id = NULL WHERE second_api_key_id = ?", (key.id,))

        await self.write(revoke)
        self._auth_changed()
        return await self.find_api_key(key.id)

    async def create_idp(self, name: str, icon: str, api_key: str | None, schema: SchemaConfig | None = None) -> Idp:
        name = name.strip()
        if not name:
            raise AdminError("An IdP needs a name")
        key_id = None
        if api_key:
            key = await self.find_api_key(api_key)
            if key.revoked:
                raise AdminError(f"API key {shown(key.name)} is revoked")
            key_id = key.id
        idp = Idp(_idp_id(), name, icon, key_id, now(), schema or SchemaConfig())

        def insert(conn: sqlite3.Connection) -> None:
            if key_id is not None:
                _check_key_free(conn, key_id, key.name, idp.id)
            try:
                conn.execute(
                    f"INSERT INTO idps ({IDP_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        idp.id,
                        idp.name,
                        idp.icon,
                        idp.api_key_id,
                        idp.created,
                        idp.schema.profile,
                        int(idp.schema.strict),
                        idp.schema.extensions,
                    ),
                )
            except sqlite3.IntegrityError:
                raise AdminError(f"An IdP named {shown(name)} already exists", 409) from None

        await self.write(insert)
        return idp

    async def list_idps(self) -> list[Idp]:
        rows = await self.read(fetch, f"SELECT {IDP_SELECT} FROM idps ORDER BY created", ())
        return [idp_of(r) for r in rows]

    async def get_idp(self, idp_id: str) -> Idp:
        for idp in await self.list_idps():
            if idp.id == idp_id:
                return idp
        raise AdminError(f"No IdP with id {shown(idp_id)}", 404)

    async def set_idp_api_key(self, idp_id: str, api_key: str) -> Idp:
        idp = await self.get_idp(idp_id)
        key = await self.find_api_key(api_key)
        if key.revoked:
            raise AdminError(f"API key {shown(key.name)} is revoked")

        def select(conn: sqlite3.Connection) -> None:
            if idp.api_key_id != key.id:  # saving the key it has is no new binding (even a shared legacy one)
                _check_key_free(conn, key.id, key.name, idp.id)
            conn.execute(
                "UPDATE idps SET api_key_id = ?, second_api_key_id = nullif(second_api_key_id, ?) WHERE id = ?",
                (key.id, key.id, idp.id),
            )

        await self.write(select)
        self._auth_changed()
        return await self.get_idp(idp.id)

    async def set_idp_second_key(self, idp_id: str, api_key: str | None) -> Idp:
        idp = await self.get_idp(idp_id)
        key = None
        if api_key is not None:
            key = await self.find_api_key(api_key)
            check_second_key(idp, key)

        def select(conn: sqlite3.Connection) -> None:
            if key is not None and key.id != idp.second_api_key_id:
                _check_key_free(conn, key.id, key.name, idp.id)
            conn.execute("UPDATE idps SET second_api_key_id = ? WHERE id = ?", (key.id if key else None, idp.id))

        await self.write(select)
        self._auth_changed()
        return await self.get_idp(idp.id)

    async def set_idp_schema(self, idp_id: str, schema: SchemaConfig) -> Idp:
        idp = await self.get_idp(idp_id)
        await self.write(
            lambda conn: conn.execute(
                "UPDATE idps SET schema_profile = ?, schema_strict = ?, schema_extensions = ? WHERE id = ?",
                (schema.profile, int(schema.strict), schema.extensions, idp.id),
            )
        )
        self._auth_changed()
        return await self.get_idp(idp.id)

    async def delete_idp(self, idp_id: str) -> None:
        idp = await self.get_idp(idp_id)

        def delete(conn: sqlite3.Connection) -> None:
            for table in ("group_members", "users", "groups"):
                conn.execute(f"DELETE FROM {table} WHERE idp_id = ?", (idp.id,))
            # Its event subscriptions go too (PostgreSQL's foreign key cascades; SQLite runs with
            # foreign keys off); its events go with the outbox's next prune.
            conn.execute(
                "DELETE FROM event_attempts WHERE subscription_id IN "
                "(SELECT id FROM event_subscriptions WHERE idp_id = ?)",
                (idp.id,),
            )
            conn.execute("DELETE FROM event_subscriptions WHERE idp_id = ?", (idp.id,))
            conn.execute("DELETE FROM idps WHERE id = ?", (idp.id,))
            conn.execute(
                "INSERT INTO deleted_idps (id, name, deleted) VALUES (?, ?, ?) ON CONFLICT (id) DO NOTHING",
                (idp.id, idp.name, now()),
            )

        await self.write(delete)
        self._auth_changed()

    async def deleted_idp_names(self) -> dict[str, str]:
        return dict(await self.read(fetch, "SELECT id, name FROM deleted_idps", ()))

    async def rename_idp(self, idp_id: str, name: str, icon: str) -> Idp:
        idp = await self.get_idp(idp_id)
        name = name.strip()
        if not name:
            raise AdminError("An IdP needs a name")

        def rename(conn: sqlite3.Connection) -> None:
            try:
                conn.execute("UPDATE idps SET name = ?, icon = ? WHERE id = ?", (name, icon, idp.id))
            except sqlite3.IntegrityError:
                raise AdminError(f"An IdP named {shown(name)} already exists", 409) from None

        await self.write(rename)
        return dataclasses.replace(idp, name=name, icon=icon)

    async def clear_idp(self, idp_id: str) -> tuple[int, int]:
        idp = await self.get_idp(idp_id)
        # What exists now is cleared, CLEAR_CHUNK rows per write transaction: one transaction for a
        # million rows would hold the single writer, and every tenant's writes, for seconds.
        counts = []
        for table in ("groups", "users"):
            last = (await self.read(fetch, f"SELECT max(rowid) FROM {table} WHERE idp_id = ?", (idp.id,)))[0][0]
            cleared = 0
            while last is not None:
                done = await self.write(_clear_chunk, table, idp.id, last)
                cleared += done
                if done < CLEAR_CHUNK:
                    break
            counts.append(cleared)
        return counts[1], counts[0]

    def authenticate(self, idp_id: str, secret: str) -> Principal | None:
        """The principal for this IdP and bearer secret, or None.

        Verified principals are kept in memory: a database read on the event loop cost about an
        eighth of a SCIM request's CPU (it hands the GIL to the writer thread and back). Changes
        that can end a sign-in move auth_epoch (migration 004): made in this process they clear
        the cache at once; made by another (the CLI) they are seen within AUTH_RECHECK_SECONDS,
        which the CLI waits out before it reports the change done. Failures are never cached.
        """
        digest = hash_secret(secret)
        self._check_auth_epoch()
        principal = self._principals.get((idp_id, digest))
        if principal is None:
            principal = self._verify(idp_id, digest)
            if principal is None:
                return None
            if len(self._principals) >= MAX_CACHED_SIGNINS:
                self._principals.clear()
            self._principals[(idp_id, digest)] = principal
        self._last_used[principal.api_key_id] = time.time()
        return principal

    def _verify(self, idp_id: str, digest: str) -> Principal | None:
        assert self.local_conn is not None, "the store is not open"
        rows = self.local_conn.execute(
            "SELECT k.id, k.secret_hash, k.users_write, k.groups_write, "
            "i.schema_profile, i.schema_strict, i.schema_extensions, "
            "EXISTS (SELECT 1 FROM event_subscriptions AS s WHERE s.idp_id = i.id) FROM idps AS i "
            "JOIN api_keys AS k ON k.id IN (i.api_key_id, i.second_api_key_id) "
            "WHERE i.id = ? AND k.revoked IS NULL",
            (idp_id,),
        ).fetchall()
        # Compare in constant time with each of the IdP's keys (two during a rotation); an unknown
        # IdP still costs one comparison, so timing tells nothing.
        row = None
        for candidate in rows or [None]:
            if hmac.compare_digest(candidate[1] if candidate else "0" * 64, digest) and candidate is not None:
                row = candidate
        if row is None:
            return None
        return Principal(
            idp_id, row[0], bool(row[2]), bool(row[3]), SchemaConfig(row[4], bool(row[5]), row[6]), bool(row[7])
        )

    def sign_in_failure(self, idp_id: str, secret: str) -> SignInFailure:
        """Read on the event loop like _verify's: the IdP (or the deleted one) by its primary key, the
        key by its hash among the admin's few keys (a failed sign-in already costs one such read;
        failures are throttled)."""
        assert self.local_conn is not None, "the store is not open"
        idp = self.local_conn.execute(
            "SELECT i.name, k.name FROM idps AS i LEFT JOIN api_keys AS k ON k.id = i.api_key_id WHERE i.id = ?",
            (idp_id,),
        ).fetchone()
        key = self.local_conn.execute(
            "SELECT k.name, k.revoked, i.id, i.name FROM api_keys AS k "
            "LEFT JOIN idps AS i ON k.id IN (i.api_key_id, i.second_api_key_id) "
            "WHERE k.secret_hash = ?",
            (hash_secret(secret),),
        ).fetchone()
        # Read whether or not the IdP exists: a failure costs the same reads whichever the reason.
        deleted = self.local_conn.execute("SELECT name FROM deleted_idps WHERE id = ?", (idp_id,)).fetchone()
        key_name, revoked, key_idp_id, key_idp_name = key if key else (None, None, None, None)
        return SignInFailure(
            idp[0] if idp else None,
            idp[1] if idp else None,
            key_name,
            revoked,
            key_idp_id,
            key_idp_name,
            deleted[0] if deleted and not idp else None,
        )

    def _check_auth_epoch(self) -> None:
        moment = time.monotonic()
        if moment - self._auth_checked < AUTH_RECHECK_SECONDS:
            return
        assert self.local_conn is not None, "the store is not open"
        epoch = self.local_conn.execute("SELECT n FROM auth_epoch").fetchone()[0]
        self._auth_checked = moment
        if epoch != self._auth_epoch:
            self._principals.clear()
            self._auth_epoch = epoch

    def _auth_changed(self) -> None:
        """After a change to keys or IdPs made here: the next sign-in reads the database again."""
        self._principals.clear()
        self._auth_checked = -math.inf

    async def flush_last_used(self) -> None:
        """Persist last-used times, batched: auth itself never writes."""
        if not self._last_used:
            return
        pending, self._last_used = self._last_used, {}
        await self.write(
            lambda conn: conn.executemany(
                "UPDATE api_keys SET last_used = ? WHERE id = ?", [(format_timestamp(t), k) for k, t in pending.items()]
            )
        )


def _idp_id() -> str:
    return uuid.uuid4().hex


def _check_key_free(conn: sqlite3.Connection, key_id: str, key_name: str, idp_id: str) -> None:
    """A key belongs to one IdP: it signs in to that IdP's tenant URL and nowhere else."""
    other = conn.execute(
        "SELECT name FROM idps WHERE ? IN (api_key_id, second_api_key_id) AND id <> ?", (key_id, idp_id)
    ).fetchone()
    if other is not None:
        raise AdminError(
            f"API key {key_name!r} is already selected for IdP {other[0]!r}; a key belongs to one IdP: "
            "create a new key for this one",
            409,
        )


def _clear_chunk(conn: sqlite3.Connection, table: str, idp_id: str, last: int) -> int:
    """Delete up to CLEAR_CHUNK of the IdP's rows of `table` up to rowid `last`, with their
    memberships; a group left (made after the clear began) that loses a member gets a new version,
    as after a DELETE. Returns how many rows it deleted."""
    ids = [
        r[0]
        for r in conn.execute(
            f"SELECT id FROM {table} WHERE idp_id = ? AND rowid <= ? LIMIT ?", (idp_id, last, CLEAR_CHUNK)
        )
    ]
    if not ids:
        return 0
    chosen = orjson.dumps(ids).decode()
    conn.execute(
        "UPDATE groups SET version = version + 1, modified = ? WHERE id IN "
        "(SELECT group_id FROM group_members WHERE member_id IN (SELECT value FROM json_each(?))) "
        "AND id NOT IN (SELECT value FROM json_each(?))",
        (now(), chosen, chosen),
    )
    conn.execute("DELETE FROM group_members WHERE member_id IN (SELECT value FROM json_each(?))", (chosen,))
    if table == "groups":
        conn.execute("DELETE FROM group_members WHERE group_id IN (SELECT value FROM json_each(?))", (chosen,))
    conn.execute(f"DELETE FROM {table} WHERE id IN (SELECT value FROM json_each(?))", (chosen,))
    return len(ids)
