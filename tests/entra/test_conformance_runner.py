"""conformance/run.py's tally: exclusions are exact, failures fail the run, the last line is the summary."""

from __future__ import annotations

import pytest

from conformance.run import EXCLUDED, Outcome, apply_exclusions, report

EXCLUDED_KEY = next(iter(EXCLUDED))
EXCLUDED_TOOL, EXCLUDED_NAME = EXCLUDED_KEY.split(" ", 1)


def run(outcomes: list[Outcome], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    code = report(*apply_exclusions(outcomes), {"scim-sanity": "0.7.4"})
    return code, capsys.readouterr().out.strip().splitlines()


def test_all_passing_exits_zero_with_the_summary_last(capsys: pytest.CaptureFixture[str]) -> None:
    code, lines = run(
        [Outcome("scim-sanity", "GET /Schemas", "passed"), Outcome("scim-sanity", "Agent CRUD Lifecycle", "skipped")],
        capsys,
    )
    assert code == 0
    assert lines[-1] == "1 passed, 0 failed, 1 skipped"
    assert "meta-networks: scim-sanity 0.7.4: 1 passed, 0 failed, 1 skipped (0 of them excluded)" in lines


def test_a_failure_fails_the_run_and_is_shown(capsys: pytest.CaptureFixture[str]) -> None:
    code, lines = run([Outcome("scim-sanity", "POST /Users", "failed", "fail: Expected 201, got 400")], capsys)
    assert code == 1
    assert lines[-1] == "0 passed, 1 failed, 0 skipped"
    assert "FAIL  [meta-networks] scim-sanity POST /Users" in lines and any("Expected 201" in line for line in lines)


def test_an_excluded_check_counts_as_skipped_only_when_it_fails(capsys: pytest.CaptureFixture[str]) -> None:
    code, lines = run([Outcome(EXCLUDED_TOOL, EXCLUDED_NAME, "failed", "fail: 204")], capsys)
    assert code == 0 and lines[-1] == "0 passed, 0 failed, 1 skipped"
    assert f"EXCLUDED  {EXCLUDED_KEY}: {EXCLUDED[EXCLUDED_KEY]}" in lines
    code, lines = run([Outcome(EXCLUDED_TOOL, EXCLUDED_NAME, "passed")], capsys)
    assert code == 0 and lines[-1] == "1 passed, 0 failed, 0 skipped"
    assert any("may be stale" in line and EXCLUDED_KEY in line for line in lines)


def test_exclusions_match_the_exact_name_only(capsys: pytest.CaptureFixture[str]) -> None:
    code, lines = run(
        [Outcome(EXCLUDED_TOOL, EXCLUDED_NAME + " (other)", "failed"), Outcome("other-tool", EXCLUDED_NAME, "failed")],
        capsys,
    )
    assert code == 1 and lines[-1] == "0 passed, 2 failed, 0 skipped"
