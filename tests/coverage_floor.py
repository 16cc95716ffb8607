"""`make coverage`'s last step: every module of scim/ and storage/ is covered above the floor.

coverage.py's own fail_under checks one total; this checks each module, so a well-tested package
cannot hide an untested module. Run after the suite, on the combined .coverage data.
"""

from __future__ import annotations

import sys
from pathlib import Path

import coverage

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("scim", "storage")
FLOOR = 90.0


def percent_covered(cov: coverage.Coverage, path: Path) -> float | None:
    """Line coverage of one file; None for a file with no statements (an empty __init__.py)."""
    _, statements, _, missing, _ = cov.analysis2(str(path))
    return 100.0 * (len(statements) - len(missing)) / len(statements) if statements else None


def main() -> int:
    cov = coverage.Coverage(data_file=str(ROOT / ".coverage"))
    cov.load()
    below = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).glob("*.py")):
            percent = percent_covered(cov, path)
            if percent is not None and percent <= FLOOR:
                below.append(f"{path.relative_to(ROOT)}: {percent:.1f}%")
    if below:
        print(f"covered at or below {FLOOR:.0f}%:", *below, sep="\n  ")
        return 1
    print(f"every module of {' and '.join(f'{p}/' for p in PACKAGES)} is covered above {FLOOR:.0f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
