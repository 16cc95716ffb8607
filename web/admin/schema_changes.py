"""What a change to an IdP's schema configuration means, in words an admin reads before and after
saving it: which rules and declared attributes changed, and what happens to the values stored
under the old ones. Nothing is converted or re-validated when a configuration changes: stored
documents stay as they are, the next write of a resource is checked against the new rules, and a
value of an attribute no longer declared stays in the database (the console shows it; SCIM answers
leave it out).
"""

from __future__ import annotations

import orjson

from scim.profiles import profile_named
from storage import SchemaConfig

# The declaration keys whose change an admin is told about, in this order.
_COMPARED = ("type", "multiValued", "required", "caseExact", "mutability", "returned", "uniqueness", "canonicalValues")


def describe_changes(old: SchemaConfig, new: SchemaConfig) -> list[str]:
    """One sentence per change from `old` to `new`; empty when they enforce the same rules."""
    changes: list[str] = []
    if old.profile != new.profile:
        rules = profile_named(new.profile)
        changes.append(
            f"Schema profile {old.profile} → {new.profile}: {rules.summary}. Stored users are not changed; "
            "each is checked against these rules on its next create, replace or update."
        )
    if old.strict != new.strict:
        changes.append(
            "Strict on: a request that sends an attribute this IdP does not keep is refused with 400 invalidValue."
            if new.strict
            else "Strict off: an attribute this IdP does not keep is ignored and named in the provisioning log."
        )
    changes.extend(_extension_changes(_declared(old.extensions), _declared(new.extensions)))
    return changes


def _declared(text: str) -> dict[str, dict]:
    return {item["id"]: item for item in orjson.loads(text)}


def _extension_changes(old: dict[str, dict], new: dict[str, dict]) -> list[str]:
    changes: list[str] = []
    for urn in sorted(new.keys() - old.keys()):
        names = ", ".join(attr["name"] for attr in new[urn]["attributes"])
        changes.append(f"Declared {urn} ({new[urn]['resourceType']}): {names}.")
    for urn in sorted(old.keys() - new.keys()):
        changes.append(
            f"Removed {urn}: values stored under it stay in the database and on the console's pages; "
            "SCIM answers no longer carry them, and requests that send them are treated as sending an "
            "attribute this IdP does not keep."
        )
    for urn in sorted(old.keys() & new.keys()):
        before = {attr["name"]: attr for attr in old[urn]["attributes"]}
        after = {attr["name"]: attr for attr in new[urn]["attributes"]}
        for name in sorted(after.keys() - before.keys()):
            changes.append(f"{urn}: attribute {name} added ({_summary(after[name])}).")
        for name in sorted(before.keys() - after.keys()):
            changes.append(
                f"{urn}: attribute {name} removed; stored values stay in the database and on the console's "
                "pages, SCIM answers no longer carry them."
            )
        for name in sorted(before.keys() & after.keys()):
            changes.extend(_attribute_changes(urn, name, before[name], after[name]))
    return changes


def _attribute_changes(urn: str, name: str, before: dict, after: dict) -> list[str]:
    changed = [
        f"{key} {_shown(before[key])} → {_shown(after[key])}" for key in _COMPARED if before.get(key) != after.get(key)
    ]
    subs_before = {sub["name"]: sub for sub in before.get("subAttributes", [])}
    subs_after = {sub["name"]: sub for sub in after.get("subAttributes", [])}
    changed += [f"sub-attribute {sub} added" for sub in sorted(subs_after.keys() - subs_before.keys())]
    changed += [f"sub-attribute {sub} removed" for sub in sorted(subs_before.keys() - subs_after.keys())]
    for sub in sorted(subs_before.keys() & subs_after.keys()):
        changed += [
            f"{sub}.{key} {_shown(subs_before[sub][key])} → {_shown(subs_after[sub][key])}"
            for key in _COMPARED
            if subs_before[sub].get(key) != subs_after[sub].get(key)
        ]
    if not changed:
        return []
    return [
        f"{urn}: attribute {name}: {'; '.join(changed)}. Stored values are kept as they are, not converted; "
        "a write that sends a new value for it is checked against the new declaration."
    ]


def _summary(attr: dict) -> str:
    parts = [attr["type"] + (", multi-valued" if attr["multiValued"] else "")]
    if attr["required"]:
        parts.append("required")
    if attr["uniqueness"] == "server":
        parts.append("unique")
    return ", ".join(parts)


def _shown(value: object) -> str:
    return orjson.dumps(value).decode() if isinstance(value, list) else str(value)
