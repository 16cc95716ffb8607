"""Replay a whole Microsoft Entra ID provisioning cycle against a SCIM server, and report like Entra does.

`python app.py entra-sim --url TENANT_URL --token SECRET` sends the requests of docs/entra.md
in the order Entra sends them: Test Connection, schema discovery, then for each user the lookup by
userName and the create, group creation and membership, an incremental cycle (updates, a disable, a
restore, member removals, a rename), and the deletes. Each operation is printed as it happens, in the
spirit of Entra's provisioning logs, with the server's own detail for every failure, and a summary at
the end. The exit status is 1 when the server answered anything Entra would count as a failure.

Besides the requests Entra sends, the simulator reads back what it changed ("Verify ..." steps):
Entra would not notice a server that wipes a group on a member removal, but its admins would.
It works against any SCIM server; it creates users and groups named entra-sim-<run>-... and deletes
them at the end of the cycle, unless `--keep` asks it to leave them (to look at in the console):
then the cycle stops before the deprovisioning and the report lists what it left.
"""

from __future__ import annotations

import functools
import json
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO
from urllib.parse import quote_plus

import httpx

LEGACY, MODERN = "legacy", "aadOptscim062020"
DIALECTS = (LEGACY, MODERN)
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
MS_GROUP = "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
CONTENT_TYPE = "application/scim+json; charset=utf-8"
MANAGER = f"{ENTERPRISE}:manager"
# Attributes of the Meta Networks Connector's mappings (and the re-addable ones the cycle uses):
# Entra checks them against /Schemas when an admin saves the provisioning configuration.
MAPPED: dict[str, dict[str, tuple[str, ...]]] = {
    USER: {
        "userName": (),
        "active": (),
        "name": ("givenName", "familyName"),
        "phoneNumbers": ("value", "type"),
        "emails": ("value", "type"),
        "displayName": (),
        "nickName": (),
    },
    ENTERPRISE: {"manager": (), "employeeNumber": ()},
    GROUP: {"displayName": (), "members": ("value",)},
}

Check = Callable[[httpx.Response], str | None]


def eq(attribute: str, value: str) -> str:
    """A form-encoded filter as Entra sends it: filter=userName+eq+%22alice%40contoso.com%22."""
    return "filter=" + quote_plus(f'{attribute} eq "{value}"')


@dataclass
class Step:
    number: int
    phase: str
    action: str
    identity: str
    result: str  # "Success", "Failure" or "Skipped"
    status: int | None = None
    ms: float | None = None
    detail: str = ""


@dataclass
class Report:
    steps: list[Step] = field(default_factory=list)

    def count(self, result: str) -> int:
        return sum(1 for step in self.steps if step.result == result)

    @property
    def failed(self) -> bool:
        return self.count("Failure") > 0


def server_detail(response: httpx.Response) -> str:
    """What the server said: a SCIM error's scimType and detail, or the start of any other body."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:300].strip() or "(empty body)"
    if isinstance(body, dict) and ("detail" in body or "scimType" in body):
        kind = f"{body['scimType']}: " if body.get("scimType") else ""
        return f"{kind}{body.get('detail', '')}"
    return json.dumps(body)[:300]


def json_of(response: httpx.Response) -> dict | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _same_user_name(name: str, response: httpx.Response) -> str | None:
    """A Get User check: the user that came back is the one asked for."""
    if str((json_of(response) or {}).get("userName", "")).lower() == name.lower():
        return None
    return "a different user came back"


def _has_active(active: bool, user: dict) -> bool:
    return user.get("active") is active


def holds_null(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, dict):
        return any(holds_null(item) for item in value.values())
    if isinstance(value, list):
        return any(holds_null(item) for item in value)
    return False


def list_check(expect_ids: set[str] | None = None, user_name: str | None = None) -> Check:
    """A ListResponse; with expect_ids, exactly those resources; with user_name, only that user."""

    def check(response: httpx.Response) -> str | None:
        body = json_of(response)
        if body is None or not isinstance(body.get("totalResults"), int):
            return "not a ListResponse: no totalResults"
        resources = body.get("Resources", [])
        if not isinstance(resources, list):
            return "Resources is not a list"
        if user_name is not None and any(str(r.get("userName", "")).lower() != user_name.lower() for r in resources):
            return f"the filter returned other users than {user_name}: Entra would match the wrong user"
        if expect_ids is not None:
            found = {r.get("id") for r in resources}
            if found != expect_ids or body["totalResults"] != len(expect_ids):
                return (
                    f"expected {len(expect_ids)} result(s) {sorted(expect_ids)}, got {body['totalResults']}: "
                    f"{sorted(map(str, found))}"
                )
        return None

    return check


class Simulator:
    """One provisioning cycle in one PATCH dialect; steps are numbered across the whole run."""

    def __init__(self, client: httpx.Client, dialect: str, report: Report, out: TextIO, run: str) -> None:
        self.http = client
        self.dialect = dialect
        self.report = report
        self.out = out
        self.run = run
        self.tag = "l" if dialect == LEGACY else "m"
        self.phase = ""

    def begin(self, phase: str) -> None:
        self.phase = phase
        print(f"{'':6}-- {phase}", file=self.out)

    # --- recording -------------------------------------------------------------------------------

    def record(self, step: Step) -> None:
        self.report.steps.append(step)
        status = "" if step.status is None else str(step.status)
        ms = "" if step.ms is None else f"{step.ms:.1f}"
        identity = step.identity if len(step.identity) <= 46 else step.identity[:45] + "…"
        print(
            f"{step.number:4}  {step.action:<24} {identity:<46} {step.result:<8} {status:>4} {ms:>7}",
            file=self.out,
            flush=True,
        )
        if step.detail and step.result != "Success":
            print(f"{'':6}{step.detail}", file=self.out, flush=True)

    def skip(self, action: str, identity: str, reason: str) -> None:
        self.record(Step(len(self.report.steps) + 1, self.phase, action, identity, "Skipped", detail=reason))

    def call(
        self,
        action: str,
        identity: str,
        method: str,
        path: str,
        body: dict | None = None,
        *,
        expect: tuple[int, ...],
        check: Check | None = None,
        token: str | None = None,
    ) -> httpx.Response | None:
        """Send one request; record Success, or Failure with the server's detail. None on failure."""
        if self.dialect == MODERN:
            path += ("&" if "?" in path else "?") + MODERN
        headers = {"Content-Type": CONTENT_TYPE} if body is not None else {}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        number = len(self.report.steps) + 1
        started = time.perf_counter()
        try:
            response = self.http.request(
                method, path, headers=headers, content=None if body is None else json.dumps(body).encode()
            )
        except httpx.HTTPError as exc:
            self.record(
                Step(number, self.phase, action, identity, "Failure", detail=f"{method} {path}: no answer: {exc}")
            )
            return None
        ms = (time.perf_counter() - started) * 1000
        problem = None
        if response.status_code not in expect:
            problem = (
                f"{method} {path} answered {response.status_code}, expected "
                f"{' or '.join(map(str, expect))}: {server_detail(response)}"
            )
        elif check is not None:
            problem = check(response)
            problem = problem and f"{method} {path}: {problem}"
        self.record(
            Step(
                number,
                self.phase,
                action,
                identity,
                "Failure" if problem else "Success",
                response.status_code,
                ms,
                problem or "",
            )
        )
        return None if problem else response

    def patch(
        self, action: str, identity: str, path: str, *operations: dict, check: Check | None = None
    ) -> httpx.Response | None:
        """A PATCH; Entra counts 200 (users, with the resource) and 204 (groups) alike as success."""
        return self.call(
            action,
            identity,
            "PATCH",
            path,
            {"schemas": [PATCH_OP], "Operations": list(operations)},
            expect=(200, 204),
            check=check,
        )

    def op(self, name: str, path: str | None, value: object) -> dict:
        """An operation as the dialect spells it: capitalised in legacy, lower case with the flag."""
        operation: dict[str, object] = {"op": name.capitalize() if self.dialect == LEGACY else name}
        if path is not None:
            operation["path"] = path
        operation["value"] = value
        return operation

    def boolean(self, value: bool) -> object:
        return str(value) if self.dialect == LEGACY else value

    # --- the cycle -------------------------------------------------------------------------------

    def test_connection(self) -> bool:
        self.begin("Test connection")
        probe = str(uuid.uuid4())
        ok = self.call(
            "Test connection",
            "Users, by a random userName",
            "GET",
            f"/Users?{eq('userName', probe)}",
            expect=(200,),
            check=list_check(set()),
        )
        ok = (
            self.call(
                "Test connection",
                "Groups, by a random displayName",
                "GET",
                f"/Groups?excludedAttributes=members&{eq('displayName', probe)}",
                expect=(200,),
                check=list_check(set()),
            )
            and ok
        )
        ok = (
            self.call(
                "Test connection",
                "with a wrong secret token",
                "GET",
                f"/Users?{eq('userName', probe)}",
                expect=(401,),
                token=f"wrong-{uuid.uuid4().hex}",
            )
            and ok
        )
        return bool(ok)

    def discover(self) -> None:
        self.begin("Schema discovery")

        def mapped_present(response: httpx.Response) -> str | None:
            body = json_of(response)
            if body is None or not isinstance(body.get("Resources"), list):
                return "not a ListResponse of schemas"
            if holds_null(body):
                return "a discovery document holds null values"
            schemas = {str(s.get("id", "")).lower(): s for s in body["Resources"] if isinstance(s, dict)}
            missing = []
            for urn, attributes in MAPPED.items():
                schema = schemas.get(urn.lower(), {})
                known = {str(a.get("name", "")).lower(): a for a in schema.get("attributes", [])}
                for name, subs in attributes.items():
                    attribute = known.get(name.lower())
                    if attribute is None:
                        missing.append(f"{urn}:{name}")
                        continue
                    sub_names = {str(s.get("name", "")).lower() for s in attribute.get("subAttributes", [])}
                    missing += [f"{name}.{sub}" for sub in subs if sub.lower() not in sub_names]
            return f"mapped attributes missing from /Schemas: {', '.join(missing)}" if missing else None

        self.call("Read schemas", "/Schemas", "GET", "/Schemas", expect=(200,), check=mapped_present)
        self.call(
            "Read configuration",
            "/ServiceProviderConfig",
            "GET",
            "/ServiceProviderConfig",
            expect=(200,),
            check=lambda r: (
                None
                if (json_of(r) or {}).get("patch", {}).get("supported") is True
                else "patch.supported is not true: Entra updates with PATCH"
            ),
        )
        self.call("Read resource types", "/ResourceTypes", "GET", "/ResourceTypes", expect=(200,))

    def user_body(self, index: int, user_name: str) -> dict:
        return {
            "schemas": [USER, ENTERPRISE],
            "externalId": str(uuid.uuid4()),
            "userName": user_name,
            "active": True if self.dialect == MODERN else "True",
            "emails": [{"primary": True, "type": "work", "value": user_name}],
            "meta": {"resourceType": "User"},
            "name": {"formatted": f"Sim{index} User{index}", "familyName": f"User{index}", "givenName": f"Sim{index}"},
            "phoneNumbers": [{"type": "work", "value": f"+1617555{index % 10000:04d}"}],
            "roles": [],
            ENTERPRISE: {"employeeNumber": str(1000 + index), "department": None},
        }

    def provision_users(self, count: int) -> dict[str, str]:
        """Lookup then create, per user; then the manager of every user but the first. {userName: id}."""
        self.begin("Initial cycle")
        ids: dict[str, str] = {}
        for index in range(count):
            name = f"entra-sim-{self.run}-{self.tag}{index}@contoso.com"
            if not self.call(
                "Find User",
                name,
                "GET",
                f"/Users?{eq('userName', name)}",
                expect=(200,),
                check=list_check(set(), user_name=name),
            ):
                self.skip("Create User", name, "Entra creates a user only after a lookup that finds nothing")
                continue
            created = self.call(
                "Create User",
                name,
                "POST",
                "/Users",
                self.user_body(index, name),
                expect=(201,),
                check=lambda r: (
                    None
                    if isinstance((json_of(r) or {}).get("id"), str) and (json_of(r) or {}).get("id")
                    else "the created user has no id"
                ),
            )
            if created is not None:
                ids[name] = created.json()["id"]
        names = list(ids)
        for name in names[1:]:
            manager = ids[names[0]] if self.dialect == LEGACY else {"value": ids[names[0]]}
            self.patch(
                "Update User (manager)",
                name,
                f"/Users/{ids[name]}",
                self.op("add", MANAGER, manager),
                check=self.user_check(
                    lambda user: ((user.get(ENTERPRISE) or {}).get("manager") or {}).get("value") == ids[names[0]],
                    "the manager was not set",
                ),
            )
        return ids

    @staticmethod
    def user_check(ok: Callable[[dict], bool], problem: str) -> Check:
        """Check a PATCH answer's user when the server returns one (204 carries none, and is fine)."""

        def check(response: httpx.Response) -> str | None:
            if response.status_code == 204:
                return None
            user = json_of(response)
            return None if user is not None and ok(user) else problem

        return check

    def provision_groups(self, count: int, members: list[str]) -> dict[str, str]:
        ids: dict[str, str] = {}
        for index in range(count):
            name = f"entra-sim-{self.run}-{self.tag} Group {index}"
            lookup = f"/Groups?excludedAttributes=members&{eq('displayName', name)}"
            if not self.call("Find Group", name, "GET", lookup, expect=(200,), check=list_check(set())):
                self.skip("Create Group", name, "Entra creates a group only after a lookup that finds nothing")
                continue
            created = self.call(
                "Create Group",
                name,
                "POST",
                "/Groups",
                {
                    "schemas": [GROUP, MS_GROUP],
                    "externalId": str(uuid.uuid4()),
                    "displayName": name,
                    "meta": {"resourceType": "Group"},
                },
                expect=(201,),
                check=lambda r: None if (json_of(r) or {}).get("id") else "the created group has no id",
            )
            if created is None:
                continue
            ids[name] = created.json()["id"]
            if not members:
                continue
            value = (
                [{"$ref": None, "value": member} for member in members]
                if self.dialect == LEGACY
                else [{"value": member} for member in members]
            )
            if self.patch(
                "Add members", f"{name} (+{len(members)})", f"/Groups/{ids[name]}", self.op("add", "members", value)
            ):
                self.verify_members(name, ids[name], set(members))
        return ids

    def verify_members(self, name: str, group_id: str, expected: set[str]) -> None:
        def check(response: httpx.Response) -> str | None:
            found = {m.get("value") for m in (json_of(response) or {}).get("members") or []}
            if found == expected:
                return None
            return (
                f"members are {len(found)} ({len(found - expected)} unexpected, {len(expected - found)} "
                f"missing); expected {len(expected)}"
            )

        self.call("Verify members", name, "GET", f"/Groups/{group_id}", expect=(200,), check=check)

    def update_users(self, users: dict[str, str]) -> None:
        self.begin("Incremental cycle")
        names = list(users)
        for index, name in enumerate(names):
            user_id = users[name]
            if not self.call(
                "Get User",
                name,
                "GET",
                f"/Users/{user_id}",
                expect=(200,),
                check=functools.partial(_same_user_name, name),
            ):
                continue
            email = f"updated-{index}@contoso.com"
            family = f"Updated{index}"
            # The last user's phone is emptied in Entra: it sends "" and the number must go.
            phone = "" if index == len(names) - 1 else f"+1617555{(index + 5000) % 10000:04d}"
            if self.dialect == LEGACY:
                operations = [
                    self.op("replace", 'emails[type eq "work"].value', email),
                    self.op("replace", "name.familyName", family),
                    self.op("replace", 'phoneNumbers[type eq "work"].value', phone),
                    self.op("add", "nickName", f"Nick{index}"),
                ]
            else:
                operations = [
                    self.op("replace", 'emails[type eq "work"].value', email),
                    self.op("replace", 'phoneNumbers[type eq "work"].value', phone),
                    self.op(
                        "replace",
                        None,
                        {
                            "name.familyName": family,
                            "displayName": f"Sim {family}",
                            f"{ENTERPRISE}:employeeNumber": f"E{index}",
                        },
                    ),
                ]
            if self.patch("Update User", name, f"/Users/{user_id}", *operations):
                self.verify_user(name, user_id, email, family, phone)

    def verify_user(self, name: str, user_id: str, email: str, family: str, phone: str) -> None:
        def check(response: httpx.Response) -> str | None:
            user = json_of(response) or {}
            problems = []
            if (user.get("name") or {}).get("familyName") != family:
                problems.append(f"name.familyName is {(user.get('name') or {}).get('familyName')!r}, not {family!r}")
            works = [p.get("value") for p in user.get("phoneNumbers") or [] if p.get("type") == "work"]
            if works != ([phone] if phone else []):
                problems.append(f"work phones are {works}, expected {[phone] if phone else 'none'}")
            emails = [e.get("value") for e in user.get("emails") or [] if e.get("type") == "work"]
            if emails != [email]:
                problems.append(f"work emails are {emails}, expected [{email!r}]")
            dotted = [key for key in user if "." in key and not key.startswith(("urn:", "http"))]
            if dotted:
                problems.append(f"dotted names stored as literal attributes: {dotted}")
            return "; ".join(problems) or None

        self.call("Verify user", name, "GET", f"/Users/{user_id}", expect=(200,), check=check)

    def disable_and_restore(self, name: str, user_id: str) -> None:
        for active, action in ((False, "Disable User"), (True, "Enable User")):
            if not self.patch(
                action,
                name,
                f"/Users/{user_id}",
                self.op("replace", "active", self.boolean(active)),
                check=self.user_check(
                    functools.partial(_has_active, active), f"active did not become {str(active).lower()}"
                ),
            ):
                return

            def found(response: httpx.Response, a: bool = active) -> str | None:
                resources = (json_of(response) or {}).get("Resources") or []
                if [(r.get("id"), r.get("active")) for r in resources] != [(user_id, a)]:
                    return f"the lookup by userName did not find the user with active={str(a).lower()}"
                return None

            # Disabled users must still be found, or Entra would try to create them again.
            self.call("Find User", name, "GET", f"/Users?{eq('userName', name.upper())}", expect=(200,), check=found)

    def remove_member(self, name: str, group_id: str, members: list[str]) -> None:
        gone = members[0]
        if self.dialect == LEGACY:
            operation = self.op("remove", "members", [{"$ref": None, "value": gone}])
        else:
            operation = {"op": "remove", "path": f'members[value eq "{gone}"]'}
        if self.patch("Remove members", f"{name} (-1)", f"/Groups/{group_id}", operation):
            self.verify_members(name, group_id, set(members[1:]))

    def rename_group(self, name: str, group_id: str) -> None:
        new = f"{name} renamed"
        if self.dialect == LEGACY:
            operation = self.op("replace", "displayName", new)
        else:
            operation = self.op("replace", None, {"displayName": new})
        if self.patch("Update Group", f"{name} -> renamed", f"/Groups/{group_id}", operation):
            self.call(
                "Verify group",
                new,
                "GET",
                f"/Groups/{group_id}?excludedAttributes=members",
                expect=(200,),
                check=lambda r: (
                    None
                    if (json_of(r) or {}).get("displayName") == new and "members" not in (json_of(r) or {})
                    else "not renamed, or members were not excluded"
                ),
            )

    def delete_all(self, users: dict[str, str], groups: dict[str, str]) -> None:
        self.begin("Deprovision")
        for name, group_id in groups.items():
            self.call("Delete Group", name, "DELETE", f"/Groups/{group_id}", expect=(204,))
        for name, user_id in users.items():
            self.call("Delete User", name, "DELETE", f"/Users/{user_id}", expect=(204,))
        if users:
            name, user_id = next(iter(users.items()))
            self.call("Verify deleted", name, "GET", f"/Users/{user_id}", expect=(404,))
            self.call(
                "Find User", name, "GET", f"/Users?{eq('userName', name)}", expect=(200,), check=list_check(set())
            )

    def cycle(self, users: int, groups: int, keep: bool = False) -> None:
        if not self.test_connection():
            print(
                f"{'':6}Test Connection failed: Entra would not save these credentials, and would not "
                "provision at all.",
                file=self.out,
            )
            return
        self.discover()
        user_ids = self.provision_users(users)
        members = list(user_ids.values())
        group_ids = self.provision_groups(groups, members)
        self.update_users(user_ids)
        if user_ids:
            name = list(user_ids)[-1]
            self.disable_and_restore(name, user_ids[name])
        for index, (name, group_id) in enumerate(group_ids.items()):
            if members:
                self.remove_member(name, group_id, members)
            if index == 0:
                self.rename_group(name, group_id)
        if keep:
            print(
                f"{'':6}-- Kept (--keep): {len(user_ids)} users and {len(group_ids)} groups named "
                f"entra-sim-{self.run}-{self.tag}... stay on the server",
                file=self.out,
            )
            return
        self.delete_all(user_ids, group_ids)


def simulate(
    url: str,
    token: str,
    *,
    users: int = 5,
    groups: int = 2,
    dialect: str = "both",
    keep: bool = False,
    out: TextIO = sys.stdout,
    timeout: float = 60.0,
) -> int:
    """Run the cycle in one dialect or both; print the report; 0 when Entra would count no failure.
    With `keep`, what the cycle provisioned is left on the server instead of deprovisioned."""
    if users < 1 or groups < 0:
        print("entra-sim: --users must be at least 1 and --groups at least 0", file=sys.stderr)
        return 2
    base = url.split("?", 1)[0].rstrip("/")
    run = uuid.uuid4().hex[:6]
    dialects = DIALECTS if dialect == "both" else (dialect,)
    report = Report()
    print(
        f"entra-sim: replaying Microsoft Entra ID provisioning against {base}\n"
        f"run {run}: {users} users, {groups} groups, dialect {', '.join(dialects)}",
        file=out,
    )
    # Entra answers within 60 s or counts a failure (docs/entra.md, "Requests in general").
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=timeout) as client:
        for name in dialects:
            print(
                f"\n[{name}{' (the default, and on-demand provisioning)' if name == LEGACY else ''}]\n"
                f"{'#':>4}  {'Action':<24} {'Identity':<46} {'Result':<8} {'HTTP':>4} {'ms':>7}",
                file=out,
            )
            Simulator(client, name, report, out, run).cycle(users, groups, keep)
    failures = [step for step in report.steps if step.result == "Failure"]
    print(
        f"\nSummary: {len(report.steps)} operations: {report.count('Success')} succeeded, {len(failures)} failed, "
        f"{report.count('Skipped')} skipped",
        file=out,
    )
    for step in failures:
        print(f"  failed #{step.number} ({step.phase}) {step.action} {step.identity}: {step.detail}", file=out)
    print(
        "Result: "
        + (
            "FAILED: Entra would log these operations as failures and retry them."
            if failures
            else "PASSED: Entra would provision this server without a failure."
        ),
        file=out,
    )
    return 1 if report.failed else 0
