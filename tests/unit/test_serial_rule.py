"""Which tests `make test` runs alone, after the parallel pass (tests/conftest.py): those that
measure latency or memory, found by the names they use, so that a new test of that kind is serial
without anyone remembering to mark it. (The tests here run in parallel: the subjects they judge are
in tables the rule does not follow.)"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace

import pytest

from tests.conftest import measures_latency_or_memory
from tests.hardening.stall import P99_BUDGET_MS, other_tenant_p99


def probe_the_other_tenant(server: object) -> float:
    return other_tenant_p99(server, lambda: None).p99_ms()


def resident_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return int(status.read().split("VmRSS:")[1].split()[0])


def calls_other_tenant_p99(server_factory: Callable) -> None:
    assert other_tenant_p99(server_factory(), lambda: None).p99_ms() < P99_BUDGET_MS


def calls_a_helper_that_measures(server_factory: Callable) -> None:
    assert probe_the_other_tenant(server_factory()) < 100


def reads_the_resident_set_size(server_factory: Callable) -> None:
    assert resident_kib(server_factory().process.pid) < 200_000


def takes_a_memory_fixture(server_rss_kib: int) -> None:
    assert server_rss_kib < 200_000


def checks_answers_only(server_factory: Callable) -> None:
    assert server_factory().query("SELECT count(*) FROM users") == [(0,)]


MEASURING = {
    "calls other_tenant_p99": (calls_other_tenant_p99, ["server_factory"]),
    "calls a helper of its module that does": (calls_a_helper_that_measures, ["server_factory"]),
    "reads VmRSS through a helper": (reads_the_resident_set_size, ["server_factory"]),
    "takes a fixture named after RSS": (takes_a_memory_fixture, ["server_rss_kib"]),
}


@pytest.mark.parametrize("case", sorted(MEASURING))
def test_a_test_that_measures_is_serial(case: str) -> None:
    function, fixtures = MEASURING[case]
    assert measures_latency_or_memory(SimpleNamespace(function=function, fixturenames=fixtures))


def test_a_test_of_answers_only_runs_in_parallel() -> None:
    subject = SimpleNamespace(function=checks_answers_only, fixturenames=["server_factory", "tmp_path"])
    assert not measures_latency_or_memory(subject)
