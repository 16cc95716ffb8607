"""Run third-party SCIM conformance checkers against a fresh scimlet server, and tally the results.

`make conformance` runs this with the interpreter of .venv-conformance (where the checkers are
installed) and points --server-python at the project's .venv. It starts `app.py serve` on a
temporary SQLite file (or the empty database --database-url names) and a free port, and through the
CLI creates one IdP of each schema profile (PROFILE_RUNS: meta-networks, and rfc7643 with a declared
extension schema), each with its own API key. Against each tenant URL it runs

  * scim2-tester's check_server (every tag), through scim2-client's httpx2 engine, and
  * scim-sanity's live probe in strict mode (`scim-sanity probe URL --json-output`).

Checks that contradict docs/entra.md or the connector's rules are excluded by name below, each with
its reason (docs/conformance.md explains them at length). The last line is
`N passed, N failed, N skipped` over every profile; the exit status is 1 when anything failed.
"""

from __future__ import annotations

import argparse
import json
import random
import secrets
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from its own venv: the tests' live-server helper is found here
from tests.live_server import Server, running, server_at  # noqa: E402 - needs ROOT on sys.path first

SANITY = Path(sys.executable).with_name("scim-sanity")

# The extension schema the rfc7643 IdP declares (see PROFILE_RUNS).
ACME = "urn:ietf:params:scim:schemas:extension:Acme:2.0:User"
MEMBER_DISPLAY = "compares members field by field, including the readOnly display the server fills in"
GROUP_PATCH_204 = "expects 200 with a body; groups answer PATCH with 204 (docs/entra.md, RFC 7644 §3.5.2 allows it)"
# Checks we deliberately do not count, by exact name, with the one-line reason (see docs/conformance.md).
EXCLUDED: dict[str, str] = {
    "scim2-tester Group/check_add_attribute[members]": MEMBER_DISPLAY,
    "scim2-tester Group/check_replace_attribute[members]": MEMBER_DISPLAY,
    "scim-sanity PATCH /Groups/{id}": GROUP_PATCH_204,
    "scim-sanity PATCH /Groups/{id} add member": (
        'adds the member "fake-member-id"; members must be users or groups of the same IdP (400)'
    ),
    "scim-sanity PATCH /Groups/{id} remove members": GROUP_PATCH_204,
    f"scim2-tester User/check_add_attribute[{ACME}:skills]": (
        "adds the whole extension first (skills included), then adds a skill and expects only that one back; "
        "RFC 7644 §3.5.2.1: add puts the value beside those there"
    ),
}


# The IdPs a run checks: (schema profile, the extension schemas declared for it). The rfc7643 one
# declares an extension of every simple type, so the checkers also write, read and filter
# attributes an admin declared (they discover it in /Schemas and /ResourceTypes).
PROFILE_RUNS: tuple[tuple[str, list[dict]], ...] = (
    ("meta-networks", []),
    (
        "rfc7643",
        [
            {
                "id": ACME,
                "description": "Attributes an Entra admin added to the mapping",
                "attributes": [
                    {"name": "costCenter", "description": "Cost center"},
                    {"name": "badgeNumber", "type": "integer"},
                    {"name": "remote", "type": "boolean"},
                    {"name": "hireDate", "type": "dateTime"},
                    {"name": "skills", "multiValued": True},
                ],
            }
        ],
    ),
)


@dataclass
class Outcome:
    tool: str
    name: str
    status: str  # "passed", "failed" or "skipped"
    detail: str = ""
    profile: str = "meta-networks"  # of the IdP checked

    @property
    def key(self) -> str:
        return f"{self.tool} {self.name}"


@dataclass
class Tenant:
    profile: str
    url: str
    secret: str


# --- the server -------------------------------------------------------------------------------


@contextmanager
def scimlet(python: str, workdir: Path, database_url: str = "") -> Iterator[tuple[list[Tenant], Server]]:
    """A server on `database_url`, else a temporary SQLite file, with an IdP of each PROFILE_RUNS:
    yields (their tenants, server), the server stopped after the block."""
    server = server_at(
        database_url or workdir / "conformance.db",
        workdir / "server.log",
        provision=False,
        python=python,
        SCIMLET_SERVER_BASE_URL="",
        SCIMLET_ADMIN_TOKEN=secrets.token_urlsafe(32),  # server_errors reads the log through the admin API
    )
    tenants = []
    for profile, extensions in PROFILE_RUNS:
        key = server.cli_json("apikey", "create", "--name", f"conformance {profile}", "--write", "users,groups")
        declared = workdir / f"{profile}.json"
        declared.write_text(json.dumps(extensions))
        idp = server.cli_json(
            "idp",
            "create",
            "--name",
            f"Conformance {profile}",
            "--apikey",
            key["id"],
            "--profile",
            profile,
            "--extensions",
            str(declared),
        )
        tenants.append(Tenant(profile, idp["tenant_url"], key["secret"]))
    with running(server):
        yield tenants, server


# --- scim2-tester ------------------------------------------------------------------------------


def e164_phones(generate: Callable[..., Any]) -> Callable[..., Any]:
    """scim2-tester fills phone numbers with ten random digits; make them E.164 ("+1" and the digits).

    The connector keeps work phones in E.164 and answers 400 to anything else, and scim2-tester
    picks the phone's type at random, so without this a random fifth of its runs would fail a
    random User check. docs/conformance.md, "Adaptations", explains it.
    """

    def generate_e164(context: Any, path: Any, *args: Any, **kwargs: Any) -> Any:
        value = generate(context, path, *args, **kwargs)
        if isinstance(value, str) and value.isdigit() and _is_phone_value(path):
            return f"+1{value}"
        return value

    return generate_e164


def datetimes(generate: Callable[..., Any]) -> Callable[..., Any]:
    """scim2-tester 0.5.2 fills a dateTime attribute with a random UUID string (its generator has no
    dateTime case), which its own model then refuses; give such attributes a random whole-second
    time instead. Only a declared extension has one (the rfc7643 run's hireDate)."""

    def generate_datetime(context: Any, path: Any, *args: Any, **kwargs: Any) -> Any:
        value = generate(context, path, *args, **kwargs)
        binding = path.resolve()
        if value is None or binding is None or binding.target_type is not datetime:
            return value
        moment = datetime(2020, 1, 1, tzinfo=UTC) + timedelta(seconds=random.randrange(10**8))
        return [moment] if isinstance(value, list) else moment

    return generate_datetime


def _is_phone_value(path: Any) -> bool:
    # The same test scim2_tester.filling uses to decide to generate digits.
    binding = path.resolve()
    model = binding.target_model if binding else path.model
    field = binding.target_field_name if binding else None
    return str(path).endswith("phoneNumbers.value") or (
        field == "value" and model is not None and "phone" in model.__name__.lower()
    )


@contextmanager
def generated_values(e164: bool) -> Iterator[None]:
    """scim2-tester's value generator, with phone numbers in E.164 form when `e164` (the
    meta-networks profile's rule; an rfc7643 IdP takes its ten random digits as they are)."""
    from scim2_tester import filling

    original = filling.generate_random_value
    adapted = datetimes(e164_phones(original) if e164 else original)
    # The checker modules imported the function by name: replace every such binding, and restore it.
    bound = [
        module
        for name, module in list(sys.modules.items())
        if name.startswith("scim2_tester") and getattr(module, "generate_random_value", None) is original
    ]
    for module in bound:
        module.generate_random_value = adapted
    try:
        yield
    finally:
        for module in bound:
            module.generate_random_value = original


def run_scim2_tester(url: str, secret: str, profile: str = "meta-networks") -> list[Outcome]:
    # Imported here: the checkers exist only in .venv-conformance, and the tally code above and
    # below is also imported by scimlet's own tests, which run in .venv.
    import httpx2
    import scim2_tester
    from scim2_client.engines.httpx2 import SyncSCIMClient
    from scim2_tester import Status, check_server

    passed = {Status.SUCCESS, Status.COMPLIANT, Status.ACCEPTABLE}
    with (
        generated_values(e164=profile == "meta-networks"),
        httpx2.Client(base_url=url, headers={"Authorization": f"Bearer {secret}"}, timeout=30) as http,
    ):
        results = check_server(SyncSCIMClient(http), include_tags=set(scim2_tester.get_all_available_tags()))
    outcomes = []
    for result in results:
        name = f"{result.resource_type}/{result.title}" if result.resource_type else str(result.title)
        if isinstance(result.data, dict) and isinstance(result.data.get("urn"), str):
            name += f"[{result.data['urn']}]"
        status = "passed" if result.status in passed else "skipped" if result.status is Status.SKIPPED else "failed"
        outcomes.append(Outcome("scim2-tester", name, status, f"{result.status.name}: {result.reason or ''}", profile))
    return outcomes


# --- scim-sanity -------------------------------------------------------------------------------


def run_scim_sanity(url: str, secret: str, profile: str = "meta-networks") -> list[Outcome]:
    done = subprocess.run(
        [str(SANITY), "probe", url, "--token", secret, "--i-accept-side-effects", "--strict", "--json-output"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        raise SystemExit(f"scim-sanity gave no JSON report (exit {done.returncode}):\n{done.stderr}") from None
    statuses = {"pass": "passed", "skip": "skipped"}
    return [
        Outcome(
            "scim-sanity",
            result["name"],
            statuses.get(result["status"], "failed"),
            f"{result['status']}: {result.get('message', '')}",
            profile,
        )
        for result in report["results"]
    ]


# --- scimlet's own log -------------------------------------------------------------------------


def server_errors(records: list[dict]) -> list[Outcome]:
    """A 500 is a bug whatever the request: the provisioning log shows whether any was answered."""
    errors = [record for record in records if record["status"] == 500]
    detail = "; ".join(f"{r['method']} {r['path']}: {r['detail']}" for r in errors[:5])
    return [Outcome("scimlet", "no 500 answered during the run", "failed" if errors else "passed", detail, "every IdP")]


# --- report ------------------------------------------------------------------------------------


def apply_exclusions(outcomes: list[Outcome]) -> tuple[list[Outcome], set[str]]:
    """Excluded checks that fail count as skipped; returns the outcomes and the exclusions that matched."""
    matched = set()
    for outcome in outcomes:
        if outcome.key in EXCLUDED and outcome.status == "failed":
            outcome.status = "skipped"
            outcome.detail = f"excluded: {EXCLUDED[outcome.key]} ({outcome.detail})"
            matched.add(outcome.key)
    return outcomes, matched


def report(outcomes: list[Outcome], matched: set[str], versions: dict[str, str]) -> int:
    """The failures, the exclusions, a tally per profile and tool, and the total last."""
    for outcome in outcomes:
        if outcome.status == "failed":
            print(f"FAIL  [{outcome.profile}] {outcome.key}\n      {outcome.detail.strip()[:2000]}")
    for key in sorted(matched):
        print(f"EXCLUDED  {key}: {EXCLUDED[key]}")
    for key in sorted(set(EXCLUDED) - matched):
        print(f"note: the excluded check {key!r} did not fail this time; the exclusion may be stale")
    print()
    for profile, tool in dict.fromkeys((outcome.profile, outcome.tool) for outcome in outcomes):
        mine = [outcome for outcome in outcomes if outcome.tool == tool and outcome.profile == profile]
        counts = {status: sum(1 for o in mine if o.status == status) for status in ("passed", "failed", "skipped")}
        excluded = sum(1 for o in mine if o.key in matched and o.status == "skipped")
        version = f" {versions[tool]}" if tool in versions else ""
        print(
            f"{profile}: {tool}{version}: {counts['passed']} passed, {counts['failed']} failed, "
            f"{counts['skipped']} skipped ({excluded} of them excluded)"
        )
    totals = {status: sum(1 for o in outcomes if o.status == status) for status in ("passed", "failed", "skipped")}
    print(f"{totals['passed']} passed, {totals['failed']} failed, {totals['skipped']} skipped")
    return 1 if totals["failed"] else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--server-python",
        default=str(ROOT / ".venv" / "bin" / "python"),
        help="interpreter with scimlet's dependencies (default: .venv/bin/python)",
    )
    parser.add_argument(
        "--database-url",
        default="",
        metavar="URL",
        help="an empty database for the server, such as postgresql://... (default: a temporary SQLite file)",
    )
    args = parser.parse_args(argv)
    from importlib.metadata import version

    versions = {tool: version(tool) for tool in ("scim2-tester", "scim-sanity")}
    with tempfile.TemporaryDirectory(prefix="scimlet-conformance-") as tmp:
        outcomes: list[Outcome] = []
        with scimlet(args.server_python, Path(tmp), args.database_url) as (tenants, server):
            for tenant in tenants:
                print(
                    f"scimlet under test: {tenant.url} (schema profile {tenant.profile}); checkers: "
                    + ", ".join(f"{tool} {v}" for tool, v in versions.items()),
                    flush=True,
                )
                outcomes += run_scim2_tester(tenant.url, tenant.secret, tenant.profile)
                outcomes += run_scim_sanity(tenant.url, tenant.secret, tenant.profile)
        # Read once the server has stopped: its shutdown writes the last buffered log records.
        outcomes += server_errors(server.provisioning_log())
    outcomes, matched = apply_exclusions(outcomes)
    return report(outcomes, matched, versions)


if __name__ == "__main__":
    sys.exit(main())
