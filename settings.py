"""Settings: defaults, then config.toml (or --config PATH), then SCIMLET_<SECTION>_<KEY> variables."""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

DEFAULT_CONFIG = Path(__file__).parent / "config.toml"

# Every setting, its default and its check. config.toml documents the same keys.
DEFAULTS: dict[str, dict[str, Any]] = {
    "server": {
        "host": "127.0.0.1",
        "port": 8000,
        "base_url": "",
        "max_body_bytes": 1_048_576,
        "body_timeout": 30,
        "write_timeout": 30,
    },
    "database": {
        "path": "./data/scimlet.db",
        "synchronous": "NORMAL",
        "readers": 2,
        "max_size_bytes": 0,
        "min_free_bytes": 64 * 2**20,
    },
    "scim": {
        "default_page_size": 100,
        "max_page_size": 1000,
        "max_operations": 1000,
        "max_members_per_patch": 10_000,
        "max_write_queue": 2000,
        "max_filter_length": 4096,
        "max_filter_depth": 32,
        "max_name_length": 512,
        "max_string_length": 8192,
        "max_attribute_values": 100,
        "max_document_bytes": 65536,
        "max_page_bytes": 4_194_304,
        "max_user_groups": 5000,
    },
    "security": {"auth_failure_limit": 20, "auth_failure_window": 60},
    "logging": {"level": "info", "format": "text"},
    "metrics": {"token": ""},
    "admin": {"password": "", "token": "", "session_hours": 12},
    "provisioning_log": {
        "retention_days": 30,
        "retention_rows": 1_000_000,
        "unauthenticated_per_minute": 30,
        "unauthenticated_total_per_minute": 300,
    },
}
SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")
LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")
# check-config masks every setting whose name contains one of these words.
SECRET_WORDS = ("token", "password", "secret")


class ConfigError(Exception):
    """A bad config file or value; the message is one line that says what to fix."""


@dataclass(frozen=True)
class Settings:
    values: dict[str, dict[str, Any]]
    source: str

    def __getitem__(self, section: str) -> dict[str, Any]:
        return self.values[section]

    @property
    def base_url(self) -> str:
        """The public URL prefix (no trailing slash) used in locations and tenant URLs."""
        configured = self.values["server"]["base_url"].rstrip("/")
        if configured:
            return configured
        host, port = self.values["server"]["host"], self.values["server"]["port"]
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
                elif isinstance(value, bool):
                    lines.append(f"{key} = {'true' if value else 'false'}")
                elif isinstance(value, str):
                    # A JSON string literal is a valid TOML basic string.
                    lines.append(f"{key} = {json.dumps(value, ensure_ascii=False)}")
                else:
                    lines.append(f"{key} = {value}")
        return "\n".join(lines).lstrip("\n")

    def warnings(self) -> list[str]:
        """Settings that are valid but probably not what a deployment for Entra wants."""
        found = []
        base_url, host = self.values["server"]["base_url"], self.values["server"]["host"]
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
            if section not in DEFAULTS or not isinstance(keys, dict):
                raise ConfigError(f"{file}: unknown section [{section}]; known: {', '.join(DEFAULTS)}")
            for key, value in keys.items():
                if key not in DEFAULTS[section]:
                    raise ConfigError(f"{file}: unknown setting {section}.{key}")
                values[section][key] = _check(section, key, value, str(file))
    for section, keys in DEFAULTS.items():
        for key in keys:
            name = f"SCIMLET_{section.upper()}_{key.upper()}"
            if name in environ:
                values[section][key] = _check(section, key, _from_env(section, key, environ[name]), name)
    return Settings(values, str(file))


def _from_env(section: str, key: str, raw: str) -> Any:
    default = DEFAULTS[section][key]
    if isinstance(default, bool):
        return raw.lower() in ("1", "true", "yes", "on")
    if isinstance(default, int):
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"SCIMLET_{section.upper()}_{key.upper()} must be a whole number, not {raw!r}") from None
    return raw


def _check(section: str, key: str, value: Any, where: str) -> Any:
    default = DEFAULTS[section][key]
    if type(value) is not type(default):
        raise ConfigError(f"{where}: {section}.{key} must be a {type(default).__name__}, not {value!r}")
    if isinstance(value, int) and value < 0:
        raise ConfigError(f"{where}: {section}.{key} must not be negative")
    if (section, key) == ("server", "port") and not 0 <= value <= 65535:
        raise ConfigError(f"{where}: server.port must be between 0 and 65535, not {value}")
    if (section, key) == ("database", "synchronous"):
        value = value.upper()
        if value not in SYNCHRONOUS:
            raise ConfigError(f"{where}: database.synchronous must be one of {', '.join(SYNCHRONOUS)}")
    if (section, key) == ("logging", "level"):
        value = value.lower()
        if value not in LEVELS:
            raise ConfigError(f"{where}: logging.level must be one of {', '.join(LEVELS)}")
    if (section, key) == ("logging", "format"):
        value = value.lower()
        if value not in LOG_FORMATS:
            raise ConfigError(f"{where}: logging.format must be one of {', '.join(LOG_FORMATS)}")
    if (section, key) == ("server", "base_url") and value:
        url = urlsplit(value)
        if url.scheme not in ("http", "https") or not url.netloc or url.query or url.fragment:
            raise ConfigError(
                f"{where}: server.base_url must be the public http(s) URL of this server, such as "
                f'"https://scim.example.com", not {value!r}'
            )
    if (section, key) == ("admin", "session_hours") and value < 1:
        raise ConfigError(f"{where}: admin.session_hours must be at least 1")
    if (section, key) == ("database", "readers") and value < 1:
        raise ConfigError(f"{where}: database.readers must be at least 1")
    if (section, key) in (
        ("scim", "max_page_size"),
        ("scim", "default_page_size"),
        ("scim", "max_filter_length"),
        ("scim", "max_user_groups"),
        ("server", "body_timeout"),
        ("scim", "max_name_length"),
        ("scim", "max_string_length"),
        ("scim", "max_attribute_values"),
        ("scim", "max_document_bytes"),
        ("server", "write_timeout"),
    ) and value < 1:
        raise ConfigError(f"{where}: {section}.{key} must be at least 1")
    # The filter resolver recurses a few frames per level: past 100 Python's recursion limit is near.
    if (section, key) == ("scim", "max_filter_depth") and not 1 <= value <= 100:
        raise ConfigError(f"{where}: scim.max_filter_depth must be between 1 and 100, not {value}")
    return value
