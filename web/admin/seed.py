"""`python app.py seed`: fill an IdP with realistic people and groups, for demos and load tests.

The people are made up but shaped like a company's directory: a name, a userName and work email at
one domain, a title, a department, an employee number, a work phone in E.164 (in the fictional
+1 425 555 01xx..99xx range of North America), and a manager, so the directory is a tree: each
department has a head and every other person reports to someone of their department, five reports
at most. Groups are the departments (each with its people as members), teams inside them (nested:
each team is a member of its department's group), and an "All employees" group whose members are
the department groups. A `seed` makes the same directory every time it is given the same `--seed`.

Seeding goes through the store's `create` and `update` (the uniqueness rules, the IdP's profile
checked by validate_resource), not through HTTP: no request is made, so nothing is written to the
provisioning log. It is fast because many creates are in flight at once and the SQLite writer
commits them in groups. Memory stays bounded: users are made level by level of the manager tree
(a manager exists before their reports), a level in chunks, and only the ids the next level needs
(the managers') are kept; members reach their groups chunk by chunk.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from typing import TextIO

import orjson

from scim.errors import ScimError
from scim.patch import MemberOp
from scim.schemas import ENTERPRISE_USER, ResourceType
from scim.tenant import tenant
from scim.validate import Member, validate_resource
from storage.interfaces import ResourceStore
from storage.records import Change, SchemaConfig

FIRST_NAMES = [
    "Ada",
    "Alan",
    "Amara",
    "Ana",
    "Anders",
    "Aiko",
    "Amir",
    "Beatriz",
    "Bjorn",
    "Carlos",
    "Chen",
    "Chiara",
    "Chloe",
    "Daniel",
    "Dmitri",
    "Elena",
    "Emeka",
    "Emma",
    "Farah",
    "Fatima",
    "Felix",
    "Grace",
    "Hana",
    "Hugo",
    "Ines",
    "Isaac",
    "Ivan",
    "Jamal",
    "Jana",
    "Javier",
    "Jin",
    "Joao",
    "Julia",
    "Kai",
    "Kamala",
    "Kenji",
    "Lars",
    "Leila",
    "Liam",
    "Lina",
    "Lucia",
    "Malik",
    "Maria",
    "Mateo",
    "Mei",
    "Mia",
    "Nadia",
    "Noah",
    "Nora",
    "Olga",
    "Omar",
    "Oscar",
    "Priya",
    "Rafael",
    "Ravi",
    "Rosa",
    "Sana",
    "Santiago",
    "Sara",
    "Sofia",
    "Tariq",
    "Thomas",
    "Uma",
    "Valentina",
    "Victor",
    "Wei",
    "Yara",
    "Yusuf",
    "Zara",
    "Zoe",
]
LAST_NAMES = [
    "Abe",
    "Adeyemi",
    "Ahmed",
    "Alvarez",
    "Andersson",
    "Bauer",
    "Becker",
    "Chen",
    "Costa",
    "Dubois",
    "Eriksen",
    "Fischer",
    "Garcia",
    "Gomez",
    "Haddad",
    "Hansen",
    "Hoffmann",
    "Ibrahim",
    "Ito",
    "Jansen",
    "Kim",
    "Kowalski",
    "Kumar",
    "Lambert",
    "Larsen",
    "Li",
    "Lopez",
    "Martin",
    "Meyer",
    "Moreau",
    "Muller",
    "Nakamura",
    "Nguyen",
    "Novak",
    "Okafor",
    "Olsen",
    "Park",
    "Patel",
    "Perez",
    "Petrov",
    "Ricci",
    "Rossi",
    "Santos",
    "Sato",
    "Schmidt",
    "Silva",
    "Singh",
    "Suzuki",
    "Tanaka",
    "Torres",
    "Wagner",
    "Wang",
    "Weber",
    "Wilson",
    "Wong",
    "Yamamoto",
    "Yilmaz",
    "Zhang",
]
DEPARTMENTS = (
    ("Engineering", ("Software Engineer", "Senior Software Engineer", "Engineering Manager", "SRE")),
    ("Sales", ("Account Executive", "Sales Engineer", "Sales Manager")),
    ("Marketing", ("Marketing Specialist", "Content Strategist", "Marketing Manager")),
    ("Finance", ("Accountant", "Financial Analyst", "Controller")),
    ("Human Resources", ("HR Partner", "Recruiter", "HR Manager")),
    ("Support", ("Support Engineer", "Support Lead")),
    ("Legal", ("Counsel", "Paralegal")),
    ("Operations", ("Operations Analyst", "Facilities Coordinator", "Operations Manager")),
    ("Product", ("Product Manager", "Product Designer", "UX Researcher")),
    ("IT", ("IT Administrator", "Security Analyst", "Help Desk Technician")),
)
REPORTS_PER_MANAGER = 5
TEAM_SIZE = 12  # the members a team group gets, at most
IN_FLIGHT = 256  # creates in flight at once: the SQLite writer commits up to 256 per batch
CHUNK = 4096  # users made (and members added) per step
ALL_EMPLOYEES = "All employees"


@dataclass
class SeedResult:
    users: int
    groups: int
    seconds: float


@dataclass(frozen=True)
class Person:
    """One made-up person: their place in the directory and their SCIM body."""

    department: int  # index in DEPARTMENTS
    rank: int  # their place in the department's manager tree (0: the head)
    body: dict


class People:
    """The directory's people, made from a seeded random generator; `domain` ends every userName."""

    def __init__(self, total: int, domain: str, seed: int) -> None:
        self.total = total
        self.domain = domain
        self.random = random.Random(seed)
        # People per department: as even as it goes, the first departments one more.
        share, extra = divmod(total, len(DEPARTMENTS))
        self.sizes = [share + (1 if d < extra else 0) for d in range(len(DEPARTMENTS))]
        self.made = 0

    def levels(self) -> Iterator[list[tuple[int, int]]]:
        """(department, rank) of everyone, level by level of the manager trees: the heads, then
        their reports, ... so that every manager is created before the people reporting to them."""
        low = 0
        width = 1
        while any(low < size for size in self.sizes):
            yield [(d, rank) for d, size in enumerate(self.sizes) for rank in range(low, min(low + width, size))]
            low += width
            width *= REPORTS_PER_MANAGER

    def person(self, department: int, rank: int, manager_id: str | None) -> Person:
        self.made += 1
        pick = self.random
        first, last = pick.choice(FIRST_NAMES), pick.choice(LAST_NAMES)
        name, titles = DEPARTMENTS[department]
        number = self.made
        title = f"Head of {name}" if rank == 0 else pick.choice(titles)
        user_name = f"{first}.{last}.{number}@{self.domain}".lower()
        enterprise: dict = {"employeeNumber": str(100000 + number), "department": name}
        if manager_id is not None:
            enterprise["manager"] = {"value": manager_id}
        body = {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE_USER],
            "userName": user_name,
            "active": pick.random() > 0.03,
            "displayName": f"{first} {last}",
            "name": {"givenName": first, "familyName": last, "formatted": f"{first} {last}"},
            "title": title,
            "emails": [{"value": user_name, "type": "work", "primary": True}],
            "phoneNumbers": [{"value": f"+1425555{pick.randrange(100, 10000):04d}", "type": "work"}],
            "externalId": f"seed-{number}",
            ENTERPRISE_USER: enterprise,
        }
        return Person(department, rank, body)


def manager_rank(rank: int) -> int:
    """The rank of a person's manager in the department's tree (rank 0 has none)."""
    return (rank - 1) // REPORTS_PER_MANAGER


async def seed(
    store: ResourceStore,
    schema: SchemaConfig,
    idp_id: str,
    *,
    users: int,
    groups: int,
    domain: str = "contoso.example",
    random_seed: int = 1,
    progress: Callable[[int, int, int, int], None] | None = None,
) -> SeedResult:
    """Create `users` people and `groups` groups in the IdP whose rules are `schema`; progress(users
    done, users, groups done, groups) is called as they are made. Raises ScimError as the store does
    (409 when a name is taken: the IdP already holds a seeded directory at this domain) or as the
    IdP's rules do (400: a required extension attribute seed cannot make up)."""
    started = time.perf_counter()
    people = People(users, domain, random_seed)
    group_type = schema.tenant.group
    department_groups = min(groups, len(DEPARTMENTS))
    made_groups = 0

    def report(done_users: int) -> None:
        if progress is not None:
            progress(done_users, users, made_groups, groups)

    # The department groups first, empty: members arrive chunk by chunk as people are created.
    group_ids: list[str] = []
    for d in range(department_groups):
        row = await store.create(group_type.name, idp_id, _group_doc(group_type, DEPARTMENTS[d][0]), [])
        group_ids.append(row.id)
        made_groups += 1
    report(0)

    team_pool: list[list[str]] = [[] for _ in DEPARTMENTS]  # the first people of each department, for teams
    team_wanted = max(0, groups - department_groups - (1 if groups > department_groups else 0))
    team_capacity = TEAM_SIZE * -(-team_wanted // len(DEPARTMENTS))  # ids per department the teams use
    # A person's id is kept only while the next level may need it as their manager's.
    last_manager = [manager_rank(size - 1) if size > 1 else -1 for size in people.sizes]
    done = 0

    async def create_users(docs: list[dict]) -> list[str]:
        """The ids of the docs' new users, IN_FLIGHT creates at a time (workers, not a semaphore:
        thousands of waiters on one asyncio.Semaphore cost more than the creates' own bookkeeping)."""
        ids: list[str] = [""] * len(docs)
        order = iter(range(len(docs)))

        async def worker() -> None:
            for index in order:
                ids[index] = (await store.create("User", idp_id, docs[index])).id

        await asyncio.gather(*(worker() for _ in range(min(IN_FLIGHT, len(docs)))))
        return ids

    loop = asyncio.get_running_loop()
    # People are made and validated in a process of their own, a chunk ahead of the creates: that
    # CPU-bound half then runs beside the event loop and the writer instead of taking turns with them.
    with ProcessPoolExecutor(
        1, mp_context=get_context("fork"), initializer=_start_maker, initargs=(users, domain, random_seed, schema)
    ) as maker:
        managers: dict[tuple[int, int], str] = {}
        for level in people.levels():
            chunks = [
                [(d, rank, managers.get((d, manager_rank(rank)))) for d, rank in level[start : start + CHUNK]]
                for start in range(0, len(level), CHUNK)
            ]
            kept: dict[tuple[int, int], str] = {}
            ahead = loop.run_in_executor(maker, _made_docs, chunks[0])
            for index, chunk in enumerate(chunks):
                made = await ahead
                if index + 1 < len(chunks):
                    ahead = loop.run_in_executor(maker, _made_docs, chunks[index + 1])
                if isinstance(made, str):
                    raise ScimError(400, made, "invalidValue")
                ids = await create_users(orjson.loads(made))
                by_department: dict[int, list[str]] = {}
                for (department, rank, _), user_id in zip(chunk, ids, strict=True):
                    if rank <= last_manager[department]:
                        kept[(department, rank)] = user_id
                    by_department.setdefault(department, []).append(user_id)
                    if len(team_pool[department]) < team_capacity:
                        team_pool[department].append(user_id)
                for d, member_ids in by_department.items():
                    if d < department_groups:
                        await _add_members(store, group_type, idp_id, group_ids[d], member_ids, "User")
                done += len(chunk)
                report(done)
            managers = kept

    # Teams: groups of a department's people, each nested in its department's group.
    for index in range(team_wanted):
        d = index % len(DEPARTMENTS)
        pool = team_pool[d]
        team = index // len(DEPARTMENTS)
        member_ids = pool[team * TEAM_SIZE : (team + 1) * TEAM_SIZE] or pool[:TEAM_SIZE]
        name = f"{DEPARTMENTS[d][0]} Team {team + 1}"
        row = await store.create(
            group_type.name,
            idp_id,
            _group_doc(group_type, name),
            [Member(user_id, "User") for user_id in member_ids],
        )
        if d < department_groups:
            await _add_members(store, group_type, idp_id, group_ids[d], [row.id], "Group")
        made_groups += 1
        report(done)
    if groups > department_groups:
        await store.create(
            group_type.name,
            idp_id,
            _group_doc(group_type, ALL_EMPLOYEES),
            [Member(group_id, "Group") for group_id in group_ids],
        )
        made_groups += 1
        report(done)
    return SeedResult(done, made_groups, time.perf_counter() - started)


# The maker process's people and the User type they are validated against (set by _start_maker).
_maker: tuple[People, ResourceType] | None = None


def _start_maker(users: int, domain: str, random_seed: int, schema: SchemaConfig) -> None:
    global _maker
    # Validated as not strict: what the IdP does not keep is left out of the document instead of
    # refused, so a strict IdP gets the attributes it keeps.
    _maker = People(users, domain, random_seed), tenant(schema.profile, False, schema.extensions).user


def _made_docs(chunk: list[tuple[int, int, str | None]]) -> bytes | str:
    """The canonical documents of a chunk's people (as JSON), or the detail of why the IdP's rules
    refuse them. Runs in the maker process, which makes chunks in the order they are asked for."""
    assert _maker is not None
    people, user_type = _maker
    try:
        return orjson.dumps(
            [
                validate_resource(user_type, people.person(d, rank, manager).body, ignored=[])
                for d, rank, manager in chunk
            ]
        )
    except ScimError as exc:
        return f"the IdP's rules refuse a seeded user: {exc.detail}"


def _group_doc(group_type: ResourceType, name: str) -> dict:
    return validate_resource(
        group_type, {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": name}
    )


async def _add_members(
    store: ResourceStore, group_type: ResourceType, idp_id: str, group_id: str, member_ids: list[str], kind: str
) -> None:
    members = tuple(Member(member_id, kind) for member_id in member_ids)
    await store.update(
        group_type.name, idp_id, group_id, lambda _row: Change(member_ops=[MemberOp("add", members)]), members=False
    )


class ProgressBar:
    """`seed`'s progress on a terminal: one line redrawn at most ten times a second; to a file or a
    pipe, a line at every tenth of the way, so a log stays short."""

    WIDTH = 30

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.live = out.isatty()
        self.started = time.perf_counter()
        self.drawn = 0.0
        self.tenths = -1

    def show(self, users_done: int, users: int, groups_done: int, groups: int) -> None:
        whole = users + groups
        fraction = (users_done + groups_done) / whole if whole else 1.0
        now = time.perf_counter()
        if self.live:
            if now - self.drawn < 0.1 and fraction < 1.0:
                return
            self.drawn = now
        elif int(fraction * 10) == self.tenths:
            return
        self.tenths = int(fraction * 10)
        elapsed = now - self.started
        rate = users_done / elapsed if elapsed > 0 else 0.0
        filled = int(fraction * self.WIDTH)
        line = (
            f"[{'#' * filled}{'.' * (self.WIDTH - filled)}] {fraction:4.0%}  users {users_done:,}/{users:,}  "
            f"groups {groups_done:,}/{groups:,}  {rate:,.0f} users/s"
        )
        print(f"\r{line}" if self.live else line, end="" if self.live else "\n", file=self.out, flush=True)

    def end(self) -> None:
        if self.live and self.drawn:
            print(file=self.out)
