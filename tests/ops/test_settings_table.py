"""settings.py's table is the one declaration of every setting: config.toml, the README and validation follow it."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from settings import (
    BY_NAME,
    DEFAULT_CONFIG,
    DEFAULTS,
    SECTIONS,
    TABLE,
    ConfigError,
    Setting,
    load_settings,
    markdown_table,
)

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
CONFIG_LINES = DEFAULT_CONFIG.read_text().splitlines()
ASSIGNMENT = re.compile(r"^(\w+) = ")
NO_ENV: dict[str, str] = {}


def test_config_toml_holds_every_setting_with_its_default_and_nothing_else() -> None:
    assert tomllib.loads(DEFAULT_CONFIG.read_text()) == DEFAULTS


def test_every_setting_in_config_toml_has_a_comment_in_its_block() -> None:
    """A comment above each setting, or above the run of settings it belongs to (no blank line between)."""
    uncommented = []
    for number, line in enumerate(CONFIG_LINES):
        if not (match := ASSIGNMENT.match(line)):
            continue
        above = number - 1
        while above >= 0 and ASSIGNMENT.match(CONFIG_LINES[above]):
            above -= 1
        if above < 0 or not CONFIG_LINES[above].startswith("#"):
            uncommented.append(match.group(1))
    assert uncommented == []


def test_readme_configuration_table_is_the_generated_one() -> None:
    section = README[README.index("## Configuration") :]
    section = section[: section.index("\n## ", 1)]
    table = "\n".join(line for line in section.splitlines() if line.startswith("|")) + "\n"
    assert table == markdown_table()
    assert all(f"`{item.name}`" in table for item in TABLE)


def test_settings_py_prints_the_table_for_the_readme() -> None:
    result = subprocess.run(
        [sys.executable, "settings.py", "--markdown"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout == markdown_table()


def test_every_setting_the_docs_name_exists() -> None:
    """`section.key` in README.md and docs/*.md (a renamed or removed setting leaves a stale mention)."""
    mentioned = re.compile(r"`(" + "|".join(SECTIONS) + r")\.(\w+)`")
    stale = [
        f"{doc.name}: {match.group(0)}"
        for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
        for match in mentioned.finditer(doc.read_text())
        if (match.group(1), match.group(2)) not in BY_NAME and match.group(2) != "py"  # a module's file name
    ]
    assert stale == []


@pytest.mark.parametrize("item", TABLE, ids=lambda item: item.name)
def test_every_setting_is_overridable_from_the_environment_with_its_type(item: Setting) -> None:
    value = item.default if item.type is str else item.minimum + 1
    loaded = load_settings(DEFAULT_CONFIG, environ={item.env: str(value)})
    assert getattr(getattr(loaded, item.section), item.key) == value
    assert type(getattr(getattr(loaded, item.section), item.key)) is item.type


@pytest.mark.parametrize("item", [item for item in TABLE if item.type is int], ids=lambda item: item.name)
def test_every_whole_number_setting_rejects_values_outside_its_bounds(item: Setting) -> None:
    with pytest.raises(ConfigError, match=f"{item.env} must be a whole number, not 'ten'"):
        load_settings(DEFAULT_CONFIG, environ={item.env: "ten"})
    too_small = str(item.minimum - 1)
    expected = (
        "must not be negative" if item.minimum == 0 else f"must be (between {item.minimum}|at least {item.minimum})"
    )
    with pytest.raises(ConfigError, match=f"{item.env}: {item.name} {expected}"):
        load_settings(DEFAULT_CONFIG, environ={item.env: too_small})
    if item.maximum is not None:
        with pytest.raises(ConfigError, match=f"must be between {item.minimum} and {item.maximum}"):
            load_settings(DEFAULT_CONFIG, environ={item.env: str(item.maximum + 1)})
        loaded = load_settings(DEFAULT_CONFIG, environ={item.env: str(item.maximum)})
        assert getattr(getattr(loaded, item.section), item.key) == item.maximum


@pytest.mark.parametrize("item", [item for item in TABLE if item.choices], ids=lambda item: item.name)
def test_choices_are_matched_without_case_and_stored_as_declared(item: Setting) -> None:
    for choice in item.choices:
        for spelled in (choice.lower(), choice.upper(), choice.title()):
            loaded = load_settings(DEFAULT_CONFIG, environ={item.env: spelled})
            assert getattr(getattr(loaded, item.section), item.key) == choice
    with pytest.raises(ConfigError, match=f"{item.name} must be one of {', '.join(item.choices)}"):
        load_settings(DEFAULT_CONFIG, environ={item.env: "nonsense"})


def test_typed_access_matches_the_values_by_section_and_key() -> None:
    loaded = load_settings(DEFAULT_CONFIG, environ={"SCIMLET_SCIM_MAX_PAGE_SIZE": "7"})
    assert loaded.scim.max_page_size == 7
    assert loaded.values["scim"]["max_page_size"] == 7
    assert {section: set(keys) for section, keys in loaded.values.items()} == {
        section: set(keys) for section, keys in DEFAULTS.items()
    }
