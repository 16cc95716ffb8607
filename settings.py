"""Settings: defaults, then config.toml (or --config PATH), then SCIMLET_<SECTION>_<KEY> variables."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_CONFIG = Path(__file__).parent / "config.toml"

# Every setting, its default and its check. config.toml documents the same keys.
DEFAULTS: dict[str, dict[str, Any]] = {
    "server": {"host": "127.0.0.1", "port": 8000, "base_url": "", "max_body_bytes": 1_048_576},
    "database": {"path": "./data/scimlet.db", "synchronous": "NORMAL", "readers": 2},
    "scim": {"default_page_size": 100, "max_page_size": 1000, "max_operations": 1000,
             "max_members_per_patch": 10_000, "max_write_queue": 2000},
    "logging": {"level": "info"},
    "provisioning_log": {"retention_days": 30, "retention_rows": 1_000_000},
}
SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")
LEVELS = ("debug", "info", "warning", "error")


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


def load_settings(path: str | os.PathLike | None = None, environ: dict[str, str] | None = None) -> Settings:
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
    if (section, key) == ("database", "readers") and value < 1:
        raise ConfigError(f"{where}: database.readers must be at least 1")
    if (section, key) in (("scim", "max_page_size"), ("scim", "default_page_size")) and value < 1:
        raise ConfigError(f"{where}: scim.{key} must be at least 1")
    return value
