"""The benchmark harness itself: a quick run against scimlet (on SQLite, and on PostgreSQL where it is
installed) completes and reports every phase."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests import pg_server
from tests.conftest import ROOT

# Run alone: the harness pins the server to one CPU and its load generator to the other and loads both,
# and each phase runs to its count or its time limit: beside other tests it takes longer and slows them.
pytestmark = pytest.mark.serial


def test_quick_bench_runs_every_phase_with_correct_answers(tmp_path: Path) -> None:
    # Not `serial`: it checks answers, not speed. A phase cut short by its time limit on a busy machine
    # is marked ⏱ in the report, not ✗, and the figures of a smoke run are not read.
    done = subprocess.run(
        [sys.executable, "bench/run.py", "--quick", "--skip-baseline", "--results-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    reports = list(tmp_path.glob("*.md"))
    assert len(reports) == 1
    report = reports[0].read_text()
    for phase in ("create", "lookup", "patch", "group member adds", "group GET excl. members"):
        assert f"| {phase} |" in report, phase
    assert "✗" not in report.split("## scimlet: every phase")[1].split("##")[0]
    bulk = next(line for line in report.splitlines() if "creates: single requests / one Bulk request" in line)
    assert "200 of 200 created" in bulk, bulk
    events = next(line for line in report.splitlines() if "event subscription whose receiver is down" in line)
    assert "rounds of 200 creates" in events and "200 events waiting at the end" in events, events
    if pg_server.binaries() is not None:
        on_postgresql = report.split("## scimlet on PostgreSQL: every phase")[1].split("##")[0]
        for phase in (
            "create",
            "lookup",
            "patch",
            "group member adds",
            "create, 2 instance(s)",
            "lookup, 2 instance(s)",
        ):
            assert f"| {phase} |" in on_postgresql, phase
        assert "✗" not in on_postgresql
        assert "## One instance vs two on one PostgreSQL database" in report
