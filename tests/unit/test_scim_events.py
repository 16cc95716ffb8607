"""scim/events.py: which events a change makes, who wants them, and the SET claims (RFC 9967)."""

from __future__ import annotations

from scim.events import ChangeEvent, change_events, event_payload, event_uri, set_claims, wanted


def test_a_change_makes_its_event_and_an_activation_event_when_active_turns_over() -> None:
    assert change_events("create", "User", None, {"userName": "a", "active": False}) == [
        ChangeEvent("create", ("active", "userName"), None)
    ]
    before, after = {"userName": "a", "active": True}, {"userName": "a", "active": False, "title": "x"}
    assert change_events("patch", "User", before, after, data={"Operations": []}) == [
        ChangeEvent("patch", ("active", "title"), {"Operations": []}),
        ChangeEvent("deactivate", ("active",), None),
    ]
    assert change_events("put", "User", after, before)[1] == ChangeEvent("activate", ("active",), None)
    assert change_events("patch", "User", {"userName": "a"}, {"userName": "a", "active": True}) == [
        ChangeEvent("patch", ("active",), None)  # no active is active: nothing turned over
    ]
    assert change_events("patch", "Group", {"displayName": "g"}, {"displayName": "g"}, members_changed=True) == [
        ChangeEvent("patch", ("members",), None)
    ]
    assert change_events("delete", "Group", {"displayName": "g"}, None) == [ChangeEvent("delete", (), None)]


def test_a_subscription_gets_what_it_chose_and_members_picks_membership_changes() -> None:
    assert wanted(["create"], "create", "User", [])
    assert not wanted(["create"], "patch", "User", ["title"])
    assert wanted(["members"], "patch", "Group", ["members"])
    assert not wanted(["members"], "patch", "Group", ["displayName"])
    assert not wanted(["members"], "patch", "User", ["members"])


def test_uris_payloads_and_claims() -> None:
    assert event_uri("create", "notice") == "urn:ietf:params:scim:event:prov:create:notice"
    assert event_uri("delete", "full") == "urn:ietf:params:scim:event:prov:delete"
    assert event_payload("put", "full", ["a"], {"id": "1"}, 'W/"2"') == {"data": {"id": "1"}, "version": 'W/"2"'}
    assert event_payload("put", "notice", ["a"], {"id": "1"}, 'W/"2"') == {"attributes": ["a"], "version": 'W/"2"'}
    assert event_payload("delete", "full", [], None, None) == {}
    claims = set_claims(
        issuer="https://h/v1/scim/i",
        audience="https://r/",
        jti="s.1",
        issued=1,
        txn="t",
        rtype="User",
        resource_id="u1",
        external_id=None,
        kind="deactivate",
        form="full",
        attributes=["active"],
        data=None,
        version='W/"3"',
    )
    assert claims["sub_id"] == {"format": "scim", "uri": "/Users/u1"}
    assert claims["events"] == {"urn:ietf:params:scim:event:prov:deactivate": {"version": 'W/"3"'}}
