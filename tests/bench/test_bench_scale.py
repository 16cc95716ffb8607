"""`make bench-scale` itself, at tiny sizes: it loads each directory, answers every operation correctly on
every backend installed, and writes a report, JSON and plot with every operation and every target."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests import pg_server
from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))
import scale  # noqa: E402

# Alone, as the quick bench: it pins the server to one CPU and itself to the other.
pytestmark = pytest.mark.serial

SIZES = (200, 2000)


def test_scale_bench_reports_every_operation_and_target_on_every_backend(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "bench/scale.py",
            "--sizes",
            ",".join(map(str, SIZES)),
            "--groups",
            "50",
            "--big-group",
            "500",
            "--phase-seconds",
            "0.5",
            "--results-dir",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    # Non-zero when any answer was wrong (a lookup that found the wrong user, a page short of rows...).
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    backends = ["SQLite"] + (["PostgreSQL"] if pg_server.binaries() is not None else [])
    (md,) = tmp_path.glob("*-scale.md")
    (data,) = tmp_path.glob("*-scale.json")
    (png,) = tmp_path.glob("*-scale.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = md.read_text()
    results = json.loads(data.read_text())
    assert list(results["runs"]) == backends
    for backend in backends:
        section = report.split(f"## {backend}\n")[1].split("\n## ")[0]
        table, targets = section.split(f"### {backend}: targets")
        assert f"| {' | '.join(f'{n:,} users' for n in SIZES)} |" in table
        for _, label, _ in scale.OPERATIONS:
            assert f"| {label} |" in table, (backend, label)
        for row in ("load (import_rows)", "start-up to first 200", "RSS idle / under load", "database size per user"):
            assert f"| {row} |" in table, (backend, row)
        for row in scale.TARGET_ROWS:
            line = next((line for line in targets.splitlines() if line.startswith(f"| {row} |")), None)
            assert line is not None, (backend, row)
            # Measured below the size the targets name, every verdict says so.
            assert "PASS (at 2,000, not 1,000,000)" in line or "**MISS** (at 2,000, not 1,000,000)" in line, line
        sizes = results["runs"][backend]
        assert [s["size"] for s in sizes] == list(SIZES)
        for size in sizes:
            assert set(size["ops"]) == {key for key, _, _ in scale.OPERATIONS}
            assert all(op["ok"] and op["ops"] > 0 for op in size["ops"].values()), size["ops"]
            assert size["db_bytes"] > 0 and size["rss_idle_kb"] > 0 and 0 < size["startup_s"] < 60
        assert [t["target"] for t in results["targets"][backend]] == scale.TARGET_ROWS
