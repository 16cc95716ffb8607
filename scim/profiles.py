"""Schema profiles: the rules an IdP's tenant enforces beyond RFC 7643's own, as data.

`meta-networks` is the Meta Networks Connector's (the default): name.givenName and name.familyName
are required and a work phone must be in E.164 form. `rfc7643` is RFC 7643 alone: userName is the
only required attribute and phone numbers are free text, for any other app an admin points Entra at.
Each profile also says which Entra attribute mapping it implies (the IdP page shows the table).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mapping:
    """One row of an Entra attribute mapping: Entra's source attribute -> the SCIM attribute."""

    source: str
    target: str
    rule: str  # what this profile asks of the value ("required", "E.164", "")


@dataclass(frozen=True)
class Profile:
    name: str
    title: str
    summary: str
    required: tuple[str, ...]  # a User's required paths ("userName", "name.givenName")
    e164_work_phones: bool  # phoneNumbers[type eq "work"].value must be E.164
    user_mappings: tuple[Mapping, ...]
    group_mappings: tuple[Mapping, ...]


META_NETWORKS = Profile(
    name="meta-networks",
    title="Meta Networks Connector",
    summary="The connector's rules: name.givenName and name.familyName are required, "
    "and a work phone must be in E.164 form (+16175551212)",
    required=("userName", "name.givenName", "name.familyName"),
    e164_work_phones=True,
    user_mappings=(
        Mapping("userPrincipalName", "userName", "required"),
        Mapping('Switch([IsSoftDeleted], , "False", "True", "True", "False")', "active", ""),
        Mapping("givenName", "name.givenName", "required"),
        Mapping("surname", "name.familyName", "required"),
        Mapping("telephoneNumber", 'phoneNumbers[type eq "work"].value', "E.164"),
    ),
    group_mappings=(Mapping("displayName", "displayName", "required"), Mapping("members", "members", "")),
)
RFC7643 = Profile(
    name="rfc7643",
    title="RFC 7643",
    summary="RFC 7643's rules only: userName is required, names are optional and phone numbers are free text",
    required=("userName",),
    e164_work_phones=False,
    user_mappings=(
        Mapping("userPrincipalName", "userName", "required"),
        Mapping('Switch([IsSoftDeleted], , "False", "True", "True", "False")', "active", ""),
        Mapping("displayName", "displayName", ""),
        Mapping("mail", 'emails[type eq "work"].value', ""),
        Mapping("givenName", "name.givenName", ""),
        Mapping("surname", "name.familyName", ""),
        Mapping("jobTitle", "title", ""),
        Mapping("telephoneNumber", 'phoneNumbers[type eq "work"].value', ""),
        Mapping("mobile", 'phoneNumbers[type eq "mobile"].value', ""),
        Mapping("department", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department", ""),
        Mapping("manager", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager", ""),
        Mapping("objectId", "externalId", ""),
    ),
    group_mappings=(
        Mapping("displayName", "displayName", "required"),
        Mapping("objectId", "externalId", ""),
        Mapping("members", "members", ""),
    ),
)
PROFILES: dict[str, Profile] = {profile.name: profile for profile in (META_NETWORKS, RFC7643)}
DEFAULT_PROFILE = META_NETWORKS.name


def profile_named(name: str) -> Profile:
    """The profile called `name`; ValueError naming the known ones otherwise."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"no schema profile {name!r}; known: {', '.join(PROFILES)}") from None
