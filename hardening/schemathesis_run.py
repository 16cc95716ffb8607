"""Fuzz a fresh scimlet server with schemathesis, driven by the server's own /openapi.json.

`make schemathesis` runs this with the project's interpreter. It starts `app.py serve` on a
temporary SQLite file (or the empty database --database-url names) and a free port, creates an API
key and an IdP through the CLI, and runs schemathesis (installed in .venv-fuzz) against the tenant
URL with a bounded number of examples per operation. It fails on any 5xx, on any failed check, and on
any unhandled error in the server's output. The tally counts what the server itself recorded: every
SCIM request lands in the provisioning log (read through the admin API, on any backend), so the
status counts do not depend on schemathesis' report.

Checks: all of schemathesis' checks except two whose premise does not hold for SCIM:
  * positive_data_acceptance: a schema-valid request is not always acceptable; a filter must follow
    the RFC 7644 grammar, a work phone must be E.164, userName must be unique, members must exist.
  * negative_data_rejection: SCIM asks servers to be liberal (Entra relies on it): `count=` and
    `sortOrder=` empty mean "absent", unknown attributes are ignored, and a stale If-Match answers
    412 before the body is read (RFC 9110 §13.2.1 lets preconditions come first).
The auth-failure throttle is off for the run: schemathesis' ignored_auth check sends bad tokens on
purpose, and 401 (not 429) is what it must see.
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: the tests' live-server helper is found here
from tests.live_server import running, server_at  # noqa: E402 - needs ROOT on sys.path first

SCHEMATHESIS = ROOT / ".venv-fuzz" / "bin" / "schemathesis"
EXCLUDED_CHECKS = ("positive_data_acceptance", "negative_data_rejection")


def tally(records: list[dict]) -> dict[int, int]:
    """Responses by status, from the provisioning log's records."""
    return dict(sorted(Counter(record["status"] for record in records).items()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--server-python", default=sys.executable, help="interpreter that runs app.py")
    parser.add_argument(
        "--examples",
        type=int,
        default=int(os.environ.get("SCHEMATHESIS_EXAMPLES", "30")),
        help="most test cases per operation and phase (default 30, or $SCHEMATHESIS_EXAMPLES)",
    )
    parser.add_argument(
        "--seed",
        default=os.environ.get("SCHEMATHESIS_SEED", "1"),
        help="random seed, for a reproducible run (default 1, or $SCHEMATHESIS_SEED)",
    )
    parser.add_argument(
        "--database-url",
        default="",
        metavar="URL",
        help="an empty database for the server, such as postgresql://... (default: a temporary SQLite file)",
    )
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="scimlet-fuzz-"))
    server = server_at(
        args.database_url or work / "fuzz.db",
        work / "server.out",
        provision=False,
        python=args.server_python,
        SCIMLET_SECURITY_AUTH_FAILURE_LIMIT="0",
        SCIMLET_ADMIN_TOKEN=secrets.token_urlsafe(32),  # the tally reads the log through the admin API
    )
    key = server.cli_json("apikey", "create", "--name", "fuzz", "--write", "users,groups")
    idp = server.cli_json("idp", "create", "--name", "Fuzz", "--apikey", "fuzz")
    with running(server):
        command = [
            str(SCHEMATHESIS),
            "run",
            f"{server.base}/openapi.json",
            "--url",
            idp["tenant_url"],
            "--header",
            f"Authorization: Bearer {key['secret']}",
            "--checks",
            "all",
            "--exclude-checks",
            ",".join(EXCLUDED_CHECKS),
            "--max-examples",
            str(args.examples),
            "--seed",
            str(args.seed),
            "--workers",
            "2",
            "--request-timeout",
            "30",
            "--no-color",
        ]
        started = time.monotonic()
        fuzz = subprocess.run(command, cwd=work)
        seconds = time.monotonic() - started
    unhandled = server.output().count("unhandled error")  # before the restart that reads the log
    statuses = tally(server.provisioning_log())
    server_errors = sum(count for status, count in statuses.items() if status >= 500)
    print(
        f"\nschemathesis: {args.examples} examples per operation, seed {args.seed}, {seconds:.0f} s, "
        f"exit status {fuzz.returncode}"
    )
    print(
        "responses recorded by the server: "
        + ", ".join(f"{s}: {n}" for s, n in statuses.items())
        + f" (total {sum(statuses.values())})"
    )
    print(f"5xx responses: {server_errors}; unhandled errors in the server output: {unhandled}")
    if fuzz.returncode or server_errors or unhandled:
        print(f"FAILED: see the report above and {server.output_path}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
