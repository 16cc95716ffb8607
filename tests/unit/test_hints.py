"""The log's failure hints (web/admin/hints.py) point at sections that exist in docs/."""

from __future__ import annotations

from storage import LogRecord
from web.admin.hints import BY_STATUS, STATUS, Hint, doc_sections, failure_hint, slug


def failed(status: int, scim_type: str | None = None, injected: str | None = None) -> LogRecord:
    return LogRecord(
        "2026-12-06T00:00:00.000Z",
        "idp",
        "key",
        "GET",
        "/x",
        "Get User",
        "User",
        None,
        None,
        status,
        scim_type,
        "detail",
        1.0,
        None,
        None,
        None,
        injected=injected,
    )


def test_every_hint_names_a_section_of_the_docs() -> None:
    hints = [Hint(text, doc, section) for text, doc, section in BY_STATUS.values()]
    hints += [failure_hint(failed(400, "uniqueness")), failure_hint(failed(500, injected="500"))]
    for hint in hints:
        assert hint is not None
        sections = doc_sections(hint.doc)
        assert sections is not None, hint.doc
        assert hint.anchor in {anchor for level, _, anchor in sections if level}, (hint.doc, hint.section)


def test_successes_and_probes_get_no_hint_and_odd_failures_a_general_one() -> None:
    assert failure_hint(failed(201)) is None
    probe = failed(401)._replace(probe=True)
    assert failure_hint(probe) is None
    teapot, gateway = failure_hint(failed(418)), failure_hint(failed(502))
    assert teapot is not None and teapot.section == STATUS
    assert gateway is not None and gateway.text.startswith("A bug")
    assert slug("Failures, retries and quarantine") == "failures-retries-and-quarantine"
    assert doc_sections("../README") is None and doc_sections("nope") is None
