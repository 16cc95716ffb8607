"""Settings: defaults, then config.toml (or --config PATH), then SCIMLET_<SECTION>_<KEY> variables.

Every setting is declared once, below, as a field of its section's frozen dataclass: its type, default,
bounds or choices, a special check where one is needed, and the one line the README's configuration
table shows. Validation, environment parsing, check-config and `python settings.py --markdown` (the
README's table) come from these declarations; tests/ops/test_settings_table.py checks config.toml and
the README against them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, get_type_hints
from urllib.parse import urlsplit

from scim.schemas import Limits

DEFAULT_CONFIG = Path(__file__).parent / "config.toml"
# check-config masks every setting whose name contains one of these words.
SECRET_WORDS = ("token", "password", "secret")

T = TypeVar("T", int, str)


class ConfigError(Exception):
    """A bad config file or value; the message is one line that says what to fix."""


@dataclass(frozen=True)
class Setting:
    """One setting as data: where it lives, its type and default, what a valid value is, what it means."""

    section: str
    key: str
    type: type
    default: int | str
    help: str  # the README table's "meaning" cell
    default_note: str = ""  # shown after the default in the README, e.g. "(no limit)"
    minimum: int = 0  # for whole numbers; no setting may be negative
    maximum: int | None = None
    choices: tuple[str, ...] = ()  # matched without regard to case, stored as spelled here
    # A rule beyond type, bounds and choices: returns what is wrong with a value, or None.
    check: Callable[[Any], str | None] | None = None

    @property
    def name(self) -> str:
        return f"{self.section}.{self.key}"

    @property
    def env(self) -> str:
        return f"SCIMLET_{self.section.upper()}_{self.key.upper()}"

    def validate(self, value: Any, where: str) -> Any:
        """The value as stored (choices in their canonical case), or ConfigError saying what to fix."""
        if type(value) is not self.type:
            raise ConfigError(f"{where}: {self.name} must be a {self.type.__name__}, not {value!r}")
        if isinstance(value, int):
            if value < 0:
                raise ConfigError(f"{where}: {self.name} must not be negative")
            if self.maximum is not None and not self.minimum <= value <= self.maximum:
                raise ConfigError(
                    f"{where}: {self.name} must be between {self.minimum} and {self.maximum}, not {value}"
                )
            if value < self.minimum:
                raise ConfigError(f"{where}: {self.name} must be at least {self.minimum}")
        if self.choices and isinstance(value, str):
            canonical = {choice.lower(): choice for choice in self.choices}.get(value.lower())
            if canonical is None:
                raise ConfigError(f"{where}: {self.name} must be one of {', '.join(self.choices)}")
            value = canonical
        if self.check is not None and (problem := self.check(value)) is not None:
            raise ConfigError(f"{where}: {self.name} {problem}")
        return value

    def from_env(self, raw: str) -> Any:
        if self.type is int:
            try:
                return int(raw)
            except ValueError:
                raise ConfigError(f"{self.env} must be a whole number, not {raw!r}") from None
        return raw


def setting(
    default: T,
    help: str,
    *,
    default_note: str = "",
    minimum: int = 0,
    maximum: int | None = None,
    choices: tuple[str, ...] = (),
    check: Callable[[Any], str | None] | None = None,
) -> T:
    """A section dataclass field carrying its Setting (section and key are filled in from the class)."""
    spec = {
        "default": default,
        "help": help,
        "default_note": default_note,
        "minimum": minimum,
        "maximum": maximum,
        "choices": choices,
        "check": check,
    }
    return field(default=default, metadata={"setting": spec})


def _public_url(value: str) -> str | None:
    url = urlsplit(value)
    if not value or (url.scheme in ("http", "https") and url.netloc and not url.query and not url.fragment):
        return None
    return f'must be the public http(s) URL of this server, such as "https://scim.example.com", not {value!r}'


@dataclass(frozen=True)
class ServerSettings:
    host: str = setting("127.0.0.1", "where uvicorn listens")
    port: int = setting(8000, "the port uvicorn listens on", maximum=65535)
    base_url: str = setting(
        "",
        "public URL used in `meta.location`, `Location` and tenant URLs",
        default_note="(= `http://host:port`)",
        check=_public_url,
    )
    max_body_bytes: int = setting(1_048_576, "larger request bodies get 413")
    body_timeout: int = setting(30, "seconds a request body may take to arrive; a slower one gets 408", minimum=1)
    write_timeout: int = setting(
        30,
        "seconds a client may leave answers unread while more wait to be sent; then its connection is dropped",
        minimum=1,
    )


def _database_url(value: str) -> str | None:
    if not value:
        return None
    try:
        url = urlsplit(value)
    except ValueError:
        url = urlsplit("")
    if not url.scheme or not value.startswith(f"{url.scheme}://"):
        return (
            'must be a URL such as "sqlite:///./data/scimlet.db" or "postgresql://user:password@host:5432/scimlet", '
            f"not {masked_url(value)!r}"
        )
    if url.scheme == "sqlite" and (url.netloc or url.path in ("", "/") or url.query or url.fragment):
        return (
            "must name the SQLite file as sqlite:///PATH (relative to the working directory) or "
            f"sqlite:////PATH (absolute), not {value!r}"
        )
    return None


def masked_url(value: str) -> str:
    """The URL with its password, if any, masked (check-config and error messages print URLs)."""
    try:
        url = urlsplit(value)
    except ValueError:
        return value
    if url.password is None:
        return value
    return url._replace(netloc=url.netloc.replace(f":{url.password}@", ":********@", 1)).geturl()


@dataclass(frozen=True)
class DatabaseSettings:
    url: str = setting(
        "",
        "the database: `sqlite:///PATH` (`sqlite:////PATH` absolute) or `postgresql://user:password@host:port/db`",
        default_note="(= `sqlite:///` + `database.path`)",
        check=_database_url,
    )
    path: str = setting("./data/scimlet.db", "the SQLite file (directory created) when `database.url` is not set")
    synchronous: str = setting(
        "NORMAL",
        "`FULL` makes every acknowledged write survive power loss, at a cost",
        choices=("OFF", "NORMAL", "FULL", "EXTRA"),
    )
    readers: int = setting(2, "reader connections", minimum=1)
    max_size_bytes: int = setting(
        0,
        "a disk budget for the database file: a write that needs more gets 503 + `Retry-After`, nothing of it stored",
        default_note="(no limit)",
    )
    read_timeout_ms: int = setting(
        30_000,
        "milliseconds one read may run (a filter that scans, such as `co` on an unindexed attribute, a deep walk "
        "of nested groups); past it the request gets 400 `tooMany`; writes are not cut; `0`: no limit",
        default_note="(30 s)",
    )
    min_free_bytes: int = setting(
        64 * 2**20,
        "`/readyz` answers 503 (`disk`) while the database's file system has less free space; `0` turns it off",
        default_note="(64 MiB)",
    )

    @property
    def backend_url(self) -> str:
        """database.url, or the SQLite file database.path as a URL when it is not set."""
        return self.url or f"sqlite:///{self.path}"


@dataclass(frozen=True)
class PostgresqlSettings:
    pool_min: int = setting(2, "connections each instance keeps open to PostgreSQL", minimum=1)
    pool_max: int = setting(
        10, "the most connections an instance opens; writes past them wait (`scim.max_write_queue`)", minimum=1
    )
    connect_timeout: int = setting(5, "seconds to connect before the database counts as unreachable", minimum=1)
    statement_timeout: int = setting(
        30, "seconds one statement may run before PostgreSQL cancels it (503 to the client)", minimum=1
    )
    retry_after: int = setting(
        5, "the `Retry-After` (seconds) of the 503 a request gets while PostgreSQL is unreachable", minimum=1
    )


@dataclass(frozen=True)
class ScimSettings:
    default_page_size: int = setting(100, "page size when a client sends no `count`", minimum=1)
    max_page_size: int = setting(1000, "the most resources one page returns", minimum=1)
    max_operations: int = setting(1000, "operations per PATCH")
    cursor_timeout: int = setting(
        3600, "seconds a paging cursor (RFC 9865, `cursorTimeout`) stays good; later 400 `expiredCursor`", minimum=1
    )
    bulk_max_operations: int = setting(
        1000, "operations per Bulk request (`maxOperations` in `/ServiceProviderConfig`); more get 413", minimum=1
    )
    bulk_max_payload_bytes: int = setting(
        1_048_576,
        "largest Bulk request body in bytes (`maxPayloadSize` in `/ServiceProviderConfig`); larger gets 413",
        minimum=1,
    )
    max_members_per_patch: int = setting(10_000, "members one request may change")
    max_write_queue: int = setting(2000, "writes waiting beyond this get 429 + `Retry-After`; `0` turns it off")
    max_filter_length: int = setting(4096, "longer filters (characters) get 400 `invalidFilter`", minimum=1)
    # The filter resolver recurses a few frames per level: past 100 Python's recursion limit is near.
    max_filter_depth: int = setting(
        32, "more deeply nested `( )` and `[ ]` in a filter get 400 `invalidFilter`", minimum=1, maximum=100
    )
    max_name_length: int = setting(
        512, "longest userName, displayName, externalId, in characters; longer gets 400 `invalidValue`", minimum=1
    )
    max_string_length: int = setting(
        8192, "longest other string value, in characters; longer gets 400 `invalidValue`", minimum=1
    )
    max_attribute_values: int = setting(
        100,
        "most values of one multi-valued attribute; past it 400 `invalidValue` (advertised in `/Schemas`)",
        minimum=1,
    )
    max_document_bytes: int = setting(
        65536,
        "largest stored resource in bytes of JSON; past it 400 `invalidValue` (advertised in `/Schemas`)",
        minimum=1,
    )
    max_page_bytes: int = setting(
        4_194_304,
        "a page of a list or search ends before the resource that would pass it "
        "(`itemsPerPage` says how many it holds); `0`: no limit",
    )
    max_user_groups: int = setting(
        5000,
        "groups (direct and nested) a user's `groups` lists; a read of a user in more gets 400 `tooMany` "
        "unless it excludes `groups`",
        minimum=1,
    )

    @property
    def limits(self) -> Limits:
        """The limits validation enforces on a resource."""
        return Limits(
            max_name_length=self.max_name_length,
            max_string_length=self.max_string_length,
            max_attribute_values=self.max_attribute_values,
            max_document_bytes=self.max_document_bytes,
        )


@dataclass(frozen=True)
class SecuritySettings:
    auth_failure_limit: int = setting(
        20,
        "failed authentications per client address per window before further failures get 429 + `Retry-After`; "
        "a valid token always passes; `0` turns it off",
    )
    auth_failure_window: int = setting(60, "the window of `auth_failure_limit`, in seconds")


@dataclass(frozen=True)
class LoggingSettings:
    level: str = setting(
        "info",
        "`debug`, `info`, `warning`, `error`; requests are logged at `info`, probes at `debug`",
        choices=("debug", "info", "warning", "error"),
    )
    format: str = setting(
        "text",
        "`json`: one JSON object per line (method, path, route, status, duration_ms, idp, client)",
        choices=("text", "json"),
    )


@dataclass(frozen=True)
class MetricsSettings:
    token: str = setting("", "when set, `/metrics` requires `Authorization: Bearer <token>`", default_note="(open)")


@dataclass(frozen=True)
class AdminSettings:
    password: str = setting(
        "",
        "the admin console's sign-in password; when set it wins over the stored one",
        default_note="(generated on first start, stored hashed)",
    )
    token: str = setting("", "bearer token for the admin API `/v1/admin`", default_note="(off)")
    session_hours: int = setting(12, "how long a console sign-in lasts", minimum=1)


@dataclass(frozen=True)
class ProvisioningLogSettings:
    retention_days: int = setting(30, "records older than this are pruned hourly; `0` turns it off")
    retention_rows: int = setting(1_000_000, "records beyond the newest this many are pruned hourly; `0` turns it off")
    unauthenticated_per_minute: int = setting(
        30,
        "records of requests without a valid key kept per client address a minute; past it counted "
        "(`scimlet_provisioning_log_dropped_records`) and summed up in one record a minute; `0` turns it off",
    )
    unauthenticated_total_per_minute: int = setting(300, "the same for all addresses together; `0` turns it off")


@dataclass(frozen=True)
class EventsSettings:
    secret_key: str = setting(
        "",
        "the key that seals subscription secrets (AES-GCM) in the database; set the same on every instance",
        default_note="(SQLite: made in a file beside the database; PostgreSQL: required to subscribe)",
    )
    retry_limit: int = setting(
        86_400,
        "seconds a subscription retries an event its receiver does not accept; then the subscription is failed "
        "and its events wait for an admin to redeliver",
        default_note="(a day)",
        minimum=1,
    )
    retry_max_delay: int = setting(
        300, "the longest wait between two attempts (exponential back-off, jittered)", minimum=1
    )
    delivery_timeout: int = setting(10, "seconds a receiver may take to answer a pushed SET", minimum=1)
    outbox_max_rows: int = setting(
        500_000,
        "events the outbox keeps; past it the oldest go, delivered or not (counted as dropped per subscription)",
        minimum=1,
    )
    outbox_max_days: int = setting(7, "days the outbox keeps an event, delivered or not", minimum=1)
    key_overlap_hours: int = setting(
        24, "hours a rotated-out RS256/ES256 signing key stays in the JWKS, so receivers can verify what it signed"
    )


@dataclass(frozen=True)
class Settings:
    server: ServerSettings
    database: DatabaseSettings
    postgresql: PostgresqlSettings
    scim: ScimSettings
    security: SecuritySettings
    logging: LoggingSettings
    metrics: MetricsSettings
    admin: AdminSettings
    provisioning_log: ProvisioningLogSettings
    events: EventsSettings
    source: str

    @property
    def values(self) -> dict[str, dict[str, Any]]:
        """Every setting by section and key (a fresh copy)."""
        return {section: dataclasses.asdict(getattr(self, section)) for section in SECTIONS}

    @property
    def base_url(self) -> str:
        """The public URL prefix (no trailing slash) used in locations and tenant URLs."""
        configured = self.server.base_url.rstrip("/")
        if configured:
            return configured
        host, port = self.server.host, self.server.port
        shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
        return f"http://{shown}:{port}"

    def tenant_url(self, idp_id: str) -> str:
        return f"{self.base_url}/v1/scim/{idp_id}"

    def to_toml(self) -> str:
        """The effective settings as TOML, every token, password or secret masked (check-config)."""
        lines = []
        for section, keys in self.values.items():
            lines.append(f"\n[{section}]")
            for key, value in keys.items():
                if any(word in key.lower() for word in SECRET_WORDS) and value:
                    lines.append(f'{key} = "********"')
                elif key == "url" and isinstance(value, str):
                    lines.append(f"{key} = {toml_value(masked_url(value))}")
                else:
                    lines.append(f"{key} = {toml_value(value)}")
        return "\n".join(lines).lstrip("\n")

    def warnings(self) -> list[str]:
        """Settings that are valid but probably not what a deployment for Entra wants."""
        found = []
        base_url, host = self.server.base_url, self.server.host
        if not base_url:
            found.append(
                "server.base_url is empty: tenant URLs and meta.location will use "
                f"{self.base_url}; set it to the public https URL Entra calls"
            )
        elif base_url.startswith("http://"):
            found.append("server.base_url is http: Entra only calls https tenant URLs")
        if host not in ("127.0.0.1", "::1", "localhost"):
            found.append(
                f"server.host is {host}: scimlet serves plain HTTP, keep it on 127.0.0.1 behind a TLS "
                "proxy unless a proxy on another machine (or a container network) must reach it"
            )
        return found


# Section name -> its dataclass, in the order check-config prints them.
SECTIONS: dict[str, type] = {name: cls for name, cls in get_type_hints(Settings).items() if name != "source"}
# Every setting, in order: the one table everything else is derived from.
TABLE: tuple[Setting, ...] = tuple(
    Setting(section, item.name, type(item.default), **item.metadata["setting"])
    for section, cls in SECTIONS.items()
    for item in dataclasses.fields(cls)
)
BY_NAME: dict[tuple[str, str], Setting] = {(item.section, item.key): item for item in TABLE}
DEFAULTS: dict[str, dict[str, Any]] = {
    section: {item.key: item.default for item in TABLE if item.section == section} for section in SECTIONS
}


def toml_value(value: int | str) -> str:
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a JSON string literal is a valid TOML basic string
    return str(value)


def load_settings(path: str | os.PathLike | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    environ = os.environ if environ is None else environ
    file = Path(path) if path else Path(environ.get("SCIMLET_CONFIG", DEFAULT_CONFIG))
    values = {section: dict(keys) for section, keys in DEFAULTS.items()}
    if path or file.exists():
        try:
            data = tomllib.loads(file.read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {file} does not exist") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read config file {file}: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{file} is not valid TOML: {exc}") from None
        for section, keys in data.items():
            if section not in SECTIONS or not isinstance(keys, dict):
                raise ConfigError(f"{file}: unknown section [{section}]; known: {', '.join(SECTIONS)}")
            for key, value in keys.items():
                if (section, key) not in BY_NAME:
                    raise ConfigError(f"{file}: unknown setting {section}.{key}")
                values[section][key] = BY_NAME[section, key].validate(value, str(file))
    for item in TABLE:
        if item.env in environ:
            values[item.section][item.key] = item.validate(item.from_env(environ[item.env]), item.env)
    sections = {section: cls(**values[section]) for section, cls in SECTIONS.items()}
    return Settings(**sections, source=str(file))


def markdown_table() -> str:
    """The README's configuration table (README.md must contain exactly this; a test checks)."""
    rows = ["| setting | default | meaning |", "|---|---|---|"]
    for item in TABLE:
        default = f"`{toml_value(item.default) if item.default == '' else item.default}`"
        note = f" {item.default_note}" if item.default_note else ""
        rows.append(f"| `{item.name}` | {default}{note} | {item.help} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    if sys.argv[1:] != ["--markdown"]:
        sys.exit("usage: python settings.py --markdown  (prints the README's configuration table)")
    print(markdown_table(), end="")
