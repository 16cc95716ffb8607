"""`python app.py --config PATH check-config`: effective settings with secrets masked, or one error line.

One test runs the real command line; the rest call app.main in process (same code, no start-up cost).
"""

from __future__ import annotations

import asyncio
import os
import tomllib
from pathlib import Path

import pytest

import app
from settings import DEFAULTS, SECRET_WORDS, load_settings
from storage import create_store
from storage.sqlite import migrate
from tests.conftest import run_cli

GOOD = """
[server]
base_url = "https://scim.example.com"
port = 8100

[database]
path = "{db}"

[logging]
format = "json"

[metrics]
token = "{token}"
"""


@pytest.fixture(autouse=True)
def no_scimlet_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("SCIMLET_"):
            monkeypatch.delenv(name)


def check_config(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    status = app.main([*args, "check-config"])
    out, err = capsys.readouterr()
    return status, out, err


def test_command_line_prints_effective_settings_with_the_token_masked(tmp_path: Path) -> None:
    token = "metrics-token-that-must-not-show"
    config = tmp_path / "scimlet.toml"
    config.write_text(GOOD.format(db=tmp_path / "s.db", token=token))
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("SCIMLET_")}, "SCIMLET_SERVER_PORT": "9100"}
    result = run_cli(env, "--config", str(config), "check-config")
    assert result.returncode == 0, result.stderr
    assert token not in result.stdout + result.stderr
    printed = tomllib.loads(result.stdout)  # the output is TOML a user can copy back into a file
    expected = load_settings(config, environ={"SCIMLET_SERVER_PORT": "9100"}).values
    expected["metrics"]["token"] = "********"
    assert printed == expected
    assert printed["server"]["port"] == 9100  # the environment wins over the file
    assert set(printed) == set(DEFAULTS)
    assert f"{config} is valid" in result.stdout
    assert "does not exist yet" in result.stdout  # the database has not been created
    assert result.stderr == ""  # https base_url, loopback host: nothing to warn about


def test_every_token_password_or_secret_setting_is_masked(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever sections exist (admin passwords and tokens too), no such value is ever printed."""
    values, lines = {}, []
    for section, keys in DEFAULTS.items():
        lines.append(f"[{section}]")
        for key, default in keys.items():
            if isinstance(default, str) and any(word in key for word in SECRET_WORDS):
                values[(section, key)] = f"value-of-{section}-{key}-xyz"
                lines.append(f'{key} = "{values[(section, key)]}"')
    assert ("metrics", "token") in values
    config = tmp_path / "secrets.toml"
    config.write_text("\n".join(lines) + "\n")
    monkeypatch.setenv("SCIMLET_DATABASE_PATH", str(tmp_path / "s.db"))
    status, out, err = check_config(capsys, "--config", str(config))
    assert status == 0, err
    printed = tomllib.loads(out)
    for (section, key), secret in values.items():
        assert printed[section][key] == "********"
        assert secret not in out + err


def test_an_empty_token_shows_as_empty(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SCIMLET_DATABASE_PATH", str(tmp_path / "s.db"))
    status, out, _ = check_config(capsys)
    assert status == 0
    assert tomllib.loads(out)["metrics"]["token"] == ""


def test_database_state_and_warnings(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SCIMLET_DATABASE_PATH", str(tmp_path / "s.db"))
    monkeypatch.setenv("SCIMLET_SERVER_BASE_URL", "http://scim.example.com")
    monkeypatch.setenv("SCIMLET_SERVER_HOST", "0.0.0.0")
    migrate(str(tmp_path / "s.db"))
    status, out, err = check_config(capsys)
    assert status == 0
    assert f"# database {tmp_path / 's.db'}: exists, schema up to date" in out
    warnings = err.splitlines()
    assert len(warnings) == 2 and all(line.startswith("warning: ") for line in warnings)
    assert "Entra only calls https" in warnings[0]
    assert "server.host is 0.0.0.0" in warnings[1]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist"),
        ("[server\nport = 1", "is not valid TOML"),
        ("[server]\nprot = 8000\n", "unknown setting server.prot"),
        ("[sever]\nport = 8000\n", "unknown section [sever]"),
        ('[server]\nport = "eighty"\n', "server.port must be a"),
        ('[server]\nbase_url = "scim.example.com"\n', "server.base_url must be the public http(s) URL"),
        ('[server]\nbase_url = "https://scim.example.com/?x=1"\n', "server.base_url must be the public http(s) URL"),
        ('[logging]\nformat = "xml"\n', "logging.format must be one of text, json"),
        ("[scim]\nmax_user_groups = 0\n", "scim.max_user_groups must be at least 1"),
        ("[scim]\nmax_page_bytes = -1\n", "scim.max_page_bytes must not be negative"),
        ('[database]\nurl = "./data/scimlet.db"\n', "database.url must be a URL such as"),
        ('[database]\nurl = "sqlite://host/scimlet.db"\n', "database.url must name the SQLite file as sqlite:///PATH"),
        ('[database]\nurl = "sqlite:///"\n', "database.url must name the SQLite file"),
        ('[database]\nurl = "mysql://db.example.com/scim"\n', "no storage backend for mysql://; use one of sqlite://"),
    ],
)
def test_bad_file_is_one_line_and_a_non_zero_exit(
    tmp_path: Path, capsys: pytest.CaptureFixture, content: str | None, message: str
) -> None:
    config = tmp_path / "bad.toml"
    if content is not None:
        config.write_text(content)
    status, out, err = check_config(capsys, "--config", str(config))
    assert status == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("config error: ")
    assert message in err


def test_bad_environment_value_is_reported_too(capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCIMLET_LOGGING_FORMAT", "yaml")
    status, _, err = check_config(capsys)
    assert status == 2
    assert err == "config error: SCIMLET_LOGGING_FORMAT: logging.format must be one of text, json\n"


def test_database_url_wins_over_database_path(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SCIMLET_DATABASE_PATH", str(tmp_path / "from-path.db"))
    monkeypatch.setenv("SCIMLET_DATABASE_URL", f"sqlite:///{tmp_path / 'from-url.db'}")
    assert asyncio.run(create_store(load_settings()).migrate()) != []
    assert (tmp_path / "from-url.db").is_file() and not (tmp_path / "from-path.db").exists()
    status, out, _ = check_config(capsys)
    assert status == 0
    assert f"# database {tmp_path / 'from-url.db'}: exists, schema up to date" in out


def test_a_password_in_database_url_is_masked() -> None:
    settings = load_settings(environ={"SCIMLET_DATABASE_URL": "postgresql://scim:hunter2@db.example.com:5432/scim"})
    printed = settings.to_toml()
    assert "hunter2" not in printed
    assert tomllib.loads(printed)["database"]["url"] == "postgresql://scim:********@db.example.com:5432/scim"
