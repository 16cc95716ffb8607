"""What a failure in the provisioning log means and what to do about it: a short hint per kind of
failure, and the section of scimlet's own documentation (docs/, shown by the console) that explains it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from storage import LogRecord

DOCS = Path(__file__).resolve().parent.parent.parent / "docs"


@dataclass(frozen=True)
class Hint:
    text: str
    doc: str  # a file of docs/, without .md
    section: str  # the heading of its section

    @property
    def anchor(self) -> str:
        return slug(self.section)


def slug(heading: str) -> str:
    """A heading's anchor as GitHub makes it: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


STATUS = "Status codes"
RETRIES = "Failures, retries and quarantine"
BY_SCIM_TYPE = {
    "uniqueness": "Another user or group of this IdP already has this userName or displayName (letter case aside): "
    "Entra's matching attribute should find it first; delete the old one or fix the mapping.",
    "invalidFilter": "The filter is not one scimlet reads: the detail names the fault. Entra sends "
    'userName eq "..." and displayName eq "..."; a custom mapping may send another attribute.',
    "invalidValue": "A value does not fit its attribute (a work phone not in E.164, a boolean that is not one, a "
    "required name missing): the detail says which; fix the attribute mapping or the source value.",
    "invalidSyntax": "The body is not the JSON SCIM expects: the detail says where.",
    "invalidPath": "A PATCH path names no attribute of this IdP's schema: declare the attribute (IdP page, Schema) "
    "or drop it from the mapping.",
    "noTarget": "A PATCH's filtered path matched nothing to change.",
    "mutability": "The request changes a read-only attribute (id, meta): the client must leave it out.",
    "tooMany": "The request asks for more than a limit allows: the detail names the setting.",
    "invalidCursor": "The paging cursor was changed, or belongs to another query: start the walk again.",
    "expiredCursor": "The paging cursor is older than scim.cursor_timeout: start the walk again.",
}
BY_STATUS = {
    401: (
        "The sign-in failed; the detail says why and what to fix (the client only got a plain 401).",
        "entra",
        STATUS,
    ),
    403: ("The API key lacks the Write privilege for this resource type: grant it on the key's page.", "entra", STATUS),
    404: (
        "No such resource in this IdP (deleted here, or created under another IdP): Entra provisions it again "
        "on its next cycle.",
        "entra",
        STATUS,
    ),
    412: ("The resource changed since the client read it (If-Match): it must read it again.", "entra", STATUS),
    413: (
        "The body is larger than server.max_body_bytes (or a Bulk request's limit).",
        "security",
        "Limits and their settings",
    ),
    415: ("The body was not sent as JSON: send Content-Type application/scim+json.", "entra", STATUS),
    429: (
        "Too many writes queued (scim.max_write_queue) or too many failed sign-ins from this address: the client "
        "should retry after Retry-After, as Entra does.",
        "entra",
        RETRIES,
    ),
    500: ("A bug in scimlet: the server's log has the traceback; please report it.", "entra", RETRIES),
    503: (
        "The database could not store the write (disk full, file replaced, PostgreSQL unreachable): /readyz "
        "says which; nothing was stored, the client retries.",
        "deploy",
        "Monitoring",
    ),
}


def failure_hint(record: LogRecord) -> Hint | None:
    """The hint for a failed request's record (None for a success or a Test Connection probe)."""
    if not record.failed:
        return None
    if record.injected is not None:
        return Hint(
            "A fault rule of this IdP answered instead of scimlet: nothing was stored. Turn the rule off on the IdP's "
            "page when the rehearsal is over.",
            "entra",
            RETRIES,
        )
    if record.scim_type in BY_SCIM_TYPE:
        return Hint(BY_SCIM_TYPE[record.scim_type], "entra", STATUS)
    if record.status in BY_STATUS:
        return Hint(*BY_STATUS[record.status])
    if record.status >= 500:
        return Hint(*BY_STATUS[500])
    return Hint("The request was refused: the detail says what to fix.", "entra", STATUS)


def doc_sections(name: str) -> list[tuple[int, str, str]] | None:
    """A file of docs/ as (heading level or 0, text, anchor) lines, for the console to show; None
    when there is no such document."""
    if not re.fullmatch(r"[a-z0-9-]+", name):
        return None
    path = DOCS / f"{name}.md"
    if not path.is_file():
        return None
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        heading = re.match(r"(#{1,4}) (.*)", line)
        if heading:
            lines.append((len(heading.group(1)), heading.group(2), slug(heading.group(2))))
        else:
            lines.append((0, line, ""))
    return lines
