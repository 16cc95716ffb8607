"""An OpenAPI 3 description of the SCIM API, served at /openapi.json.

The resource schemas are generated from scim/schemas.py, the same definitions that drive
validation and /Schemas, so the description cannot drift from what the server enforces; the rest
(paths, parameters, status codes) is written out by hand. Paths are relative to the tenant URL
`/v1/scim/{idpId}`, as SCIM clients such as Entra see them.
"""

from __future__ import annotations

from scim import schemas
from scim.bulk import BULK_REQUEST, BULK_RESPONSE
from scim.errors import ERROR_SCHEMA, SCIM_TYPES
from scim.schemas import DEFAULT_LIMITS, Attribute, Limits, ResourceType

SCIM_JSON = "application/scim+json"
_SIMPLE_TYPES = {
    "string": {"type": "string"},
    "reference": {"type": "string"},
    "binary": {"type": "string"},
    "dateTime": {"type": "string", "format": "date-time"},
    "boolean": {"type": "boolean"},
    "integer": {"type": "integer"},
    "decimal": {"type": "number"},
}
_ERRORS = {
    "400": "Bad request: invalidSyntax, invalidValue, invalidFilter, invalidPath, noTarget, mutability or tooMany",
    "401": "The bearer token is missing, unknown, revoked or not the key of this IdP (or the IdP was deleted "
    "while a write ran: nothing was stored)",
    "403": "The API key lacks the write privilege for this resource type",
    "404": "No such resource in this IdP",
    "408": "The request body did not arrive in time",
    "409": "userName or displayName already taken (scimType uniqueness)",
    "412": "If-Match did not match the resource's current ETag",
    "413": "The request body is larger than the configured limit",
    "415": "The body is not JSON",
    "429": "Too many writes queued, or too many failed authentications: retry after Retry-After seconds",
    "503": "The database cannot store writes now (its file deleted or replaced, no space left, an I/O error): "
    "nothing was stored; retry after Retry-After seconds",
}


def _attribute(attr: Attribute, limits: Limits | None, request: bool = False) -> dict:
    if attr.name in schemas.STORED_APART:
        limits = None  # group members: scim.max_members_per_patch, not the document limits
    if attr.is_complex:
        subs = [sub for sub in attr.sub_attributes if not (request and sub.mutability == "readOnly")]
        one: dict = {"type": "object", "properties": {sub.name: _attribute(sub, limits, request) for sub in subs}}
        required = [sub.name for sub in subs if sub.required]
        if request and required:
            one["required"] = required
    else:
        one = dict(_SIMPLE_TYPES[attr.type])
        if limits is not None and attr.type != "boolean" and attr.mutability != "readOnly":
            one["maxLength"] = limits.max_length(attr)
        if attr.canonical_values and not attr.multi_valued:
            one["description"] = "Usually one of: " + ", ".join(attr.canonical_values)
    out = {"type": "array", "items": one} if attr.multi_valued else one
    if limits is not None and attr.multi_valued and attr.mutability != "readOnly":
        out["maxItems"] = limits.max_attribute_values
    out["description"] = attr.description or attr.name
    if attr.mutability == "readOnly":
        out["readOnly"] = True
    elif attr.mutability == "writeOnly":
        out["writeOnly"] = True
    if not attr.required:
        out["nullable"] = True  # null is read as "absent" (Entra sends it)
    return out


def _resource(rtype: ResourceType, limits: Limits, request: bool = False) -> dict:
    """A resource as returned, or (request=True) as sent: no read-only attributes, required ones required."""

    def described(attrs: tuple[Attribute, ...]) -> dict:
        return {
            attr.name: _attribute(attr, limits, request)
            for attr in attrs
            if not (request and attr.mutability == "readOnly")
        }

    attributes = described(schemas.COMMON_ATTRIBUTES)
    attributes.update(described(schemas.SCHEMAS[rtype.schema].attributes))
    for urn in rtype.extensions:
        extension = schemas.SCHEMAS[urn]
        attributes[urn] = {
            "type": "object",
            "nullable": True,
            "description": f"The {extension.name} extension",
            "properties": described(extension.attributes),
        }
    attributes["schemas"] = {
        "type": "array",
        "items": {"type": "string"},
        "description": f"Schema URNs; {rtype.schema} first",
    }
    required = (
        [attr.name for attr in schemas.SCHEMAS[rtype.schema].attributes if attr.required]
        if request
        else ["schemas", "id"]
    )
    return {
        "type": "object",
        "description": f"A SCIM {rtype.name} (RFC 7643). Attribute names are "
        "case-insensitive on input; unknown attributes are ignored.",
        "required": required,
        "properties": attributes,
    }


def _list_response(name: str) -> dict:
    return {
        "type": "object",
        "required": ["schemas", "totalResults", "Resources", "itemsPerPage"],
        "properties": {
            "schemas": {"type": "array", "items": {"type": "string", "enum": [schemas.LIST_RESPONSE]}},
            "totalResults": {"type": "integer", "minimum": 0},
            "Resources": {"type": "array", "items": {"$ref": f"#/components/schemas/{name}"}},
            "startIndex": {"type": "integer", "minimum": 1, "description": "On index pages"},
            "itemsPerPage": {"type": "integer", "minimum": 0},
            "nextCursor": {"type": "string", "description": "On cursor pages, when more follow"},
            "previousCursor": {"type": "string", "description": "On cursor pages, when some come before"},
        },
    }


def _json(ref: str) -> dict:
    return {
        SCIM_JSON: {"schema": {"$ref": f"#/components/schemas/{ref}"}},
        "application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}},
    }


def _ok(description: str, ref: str, headers: dict | None = None) -> dict:
    response: dict = {
        "description": description,
        "content": {SCIM_JSON: {"schema": {"$ref": f"#/components/schemas/{ref}"}}},
    }
    if headers:
        response["headers"] = headers
    return response


def _errors(*codes: str) -> dict:
    return {code: {"$ref": f"#/components/responses/E{code}"} for code in ("400", "401", *codes, "429")}


def _param(name: str) -> dict:
    return {"$ref": f"#/components/parameters/{name}"}


_ETAG = {"ETag": {"$ref": "#/components/headers/ETag"}}
_INDEX_QUERY = ("filter", "startIndex", "count", "sortBy", "sortOrder", "attributes", "excludedAttributes")
_QUERY = [_param(name) for name in (*_INDEX_QUERY[:3], "cursor", *_INDEX_QUERY[3:])]
_ACROSS_QUERY = [_param(name) for name in _INDEX_QUERY]  # cursors walk one resource type
_PROJECTION = [_param("attributes"), _param("excludedAttributes")]


def _links(name: str) -> dict:
    """How a created resource's id feeds the operations on it (OpenAPI links; also for fuzzers)."""
    return {
        f"{verb}{name}": {
            "operationId": f"{verb}{name}",
            "parameters": {"id": "$response.body#/id"},
            "description": f"{verb.capitalize()} the created {name.lower()} by its id",
        }
        for verb in ("get", "replace", "patch", "delete")
    }


def _resource_paths(rtype: ResourceType) -> dict:
    name = rtype.name
    plural = f"{name}s"
    patch_ok: dict = {"200": _ok(f"The updated {name}", name, _ETAG)}
    put_ok: dict = {"200": _ok(f"The replaced {name}", name, _ETAG)}
    if rtype is schemas.USER_TYPE:
        # An answer lists at most scim.max_user_groups groups: a user in more is written, without a body.
        too_many_groups = {
            "description": "Updated; no body: the user is in more groups than an answer lists (scim.max_user_groups)",
            "headers": _ETAG,
        }
        patch_ok["204"] = put_ok["204"] = too_many_groups
    if rtype is schemas.GROUP_TYPE:
        patch_ok = {
            "204": {
                "description": "Updated; no body unless attributes or excludedAttributes is given",
                "headers": _ETAG,
            },
            "200": _ok("The updated group, when attributes or excludedAttributes is given", name, _ETAG),
        }
    one = [_param("id")]
    return {
        rtype.endpoint: {
            "get": {
                "operationId": f"list{plural}",
                "summary": f"List or filter {plural.lower()}",
                "tags": [plural],
                "parameters": _QUERY,
                "responses": {
                    "200": _ok("A page of results (an empty list when nothing matches)", f"{name}ListResponse"),
                    **_errors(),
                },
            },
            "post": {
                "operationId": f"create{name}",
                "summary": f"Create a {name.lower()}",
                "tags": [plural],
                "parameters": _PROJECTION,
                "requestBody": {"required": True, "content": _json(f"{name}Input")},
                "responses": {
                    "201": {
                        **_ok(
                            f"The created {name}",
                            name,
                            {
                                **_ETAG,
                                "Location": {"description": "The new resource's URL", "schema": {"type": "string"}},
                            },
                        ),
                        "links": _links(name),
                    },
                    **_errors("403", "408", "409", "413", "415", "503"),
                },
            },
        },
        f"{rtype.endpoint}/.search": {
            "post": {
                "operationId": f"search{plural}",
                "summary": f"Query {plural.lower()} with a body",
                "tags": [plural],
                "requestBody": {"required": True, "content": _json("SearchRequest")},
                "responses": {"200": _ok("A page of results", f"{name}ListResponse"), **_errors("408", "413", "415")},
            },
        },
        f"{rtype.endpoint}/{{id}}": {
            "get": {
                "operationId": f"get{name}",
                "summary": f"Read a {name.lower()}",
                "tags": [plural],
                "parameters": [*one, *_PROJECTION, _param("If-None-Match")],
                "responses": {
                    "200": _ok(f"The {name}", name, _ETAG),
                    "304": {"description": "If-None-Match matched", "headers": _ETAG},
                    **_errors("404"),
                },
            },
            "put": {
                "operationId": f"replace{name}",
                "summary": f"Replace a {name.lower()}",
                "tags": [plural],
                "parameters": [*one, *_PROJECTION, _param("If-Match")],
                "requestBody": {"required": True, "content": _json(f"{name}Input")},
                "responses": {**put_ok, **_errors("403", "404", "408", "409", "412", "413", "415", "503")},
            },
            "patch": {
                "operationId": f"patch{name}",
                "summary": f"Update a {name.lower()} (RFC 7644 PatchOp and Entra's dialects); atomic",
                "tags": [plural],
                "parameters": [*one, *_PROJECTION, _param("If-Match")],
                "requestBody": {"required": True, "content": _json("PatchOp")},
                "responses": {**patch_ok, **_errors("403", "404", "408", "409", "412", "413", "415", "503")},
            },
            "delete": {
                "operationId": f"delete{name}",
                "summary": f"Delete a {name.lower()}",
                "tags": [plural],
                "parameters": [*one, _param("If-Match")],
                "responses": {"204": {"description": "Deleted"}, **_errors("403", "404", "412", "503")},
            },
        },
    }


def _discovery_paths() -> dict:
    def get(
        operation: str, summary: str, ref: str, parameters: list | None = None, errors: tuple[str, ...] = ()
    ) -> dict:
        op: dict = {
            "operationId": operation,
            "summary": summary,
            "tags": ["Discovery"],
            "responses": {"200": _ok(summary, ref), **_errors(*errors)},
        }
        if parameters:
            op["parameters"] = parameters
        return {"get": op}

    name = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
    urn = {"name": "urn", "in": "path", "required": True, "schema": {"type": "string"}}
    return {
        "/ServiceProviderConfig": get("getServiceProviderConfig", "What this server supports", "ServiceProviderConfig"),
        "/ResourceTypes": get("listResourceTypes", "The resource types (User, Group)", "DiscoveryListResponse"),
        "/ResourceTypes/{name}": get("getResourceType", "One resource type", "ResourceType", [name], ("404",)),
        "/Schemas": get("listSchemas", "The schemas (User, EnterpriseUser, Group)", "DiscoveryListResponse"),
        "/Schemas/{urn}": get("getSchema", "One schema by URN", "Schema", [urn], ("404",)),
    }


def _tenant_paths() -> dict:
    """The endpoints of no one resource type: searches across types, and Bulk."""
    across = "Users and groups in one search (RFC 7644 §3.4.3): users first, then groups, unless sortBy"
    return {
        "/": {
            "get": {
                "operationId": "searchAll",
                "summary": across,
                "tags": ["Search"],
                "parameters": _ACROSS_QUERY,
                "responses": {"200": _ok("A page of users and groups", "ResourceListResponse"), **_errors()},
            }
        },
        "/.search": {
            "post": {
                "operationId": "searchAllWithBody",
                "summary": across,
                "tags": ["Search"],
                "requestBody": {"required": True, "content": _json("SearchRequest")},
                "responses": {
                    "200": _ok("A page of users and groups", "ResourceListResponse"),
                    **_errors("408", "413", "415"),
                },
            }
        },
        "/Bulk": {
            "post": {
                "operationId": "bulk",
                "summary": "Run POST, PUT, PATCH and DELETE operations on users and groups in one request "
                "(RFC 7644 §3.7); each answers as if sent alone",
                "tags": ["Bulk"],
                "requestBody": {"required": True, "content": _json("BulkRequest")},
                "responses": {
                    "200": _ok("Each operation's outcome, in the order they ran", "BulkResponse"),
                    **_errors("408", "413", "415"),
                },
            }
        },
    }


def _parameters() -> dict:
    def query(name: str, description: str, schema: dict) -> dict:
        return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}

    return {
        "id": {
            "name": "id",
            "in": "path",
            "required": True,
            "description": "The resource's id",
            "schema": {"type": "string"},
        },
        "filter": query(
            "filter",
            'RFC 7644 filter, e.g. userName eq "alice@contoso.com"; '
            "400 invalidFilter when malformed or on an unknown attribute",
            {"type": "string"},
        ),
        "startIndex": query(
            "startIndex", "1-based index of the first result (values below 1 read as 1)", {"type": "integer"}
        ),
        "count": query(
            "count",
            "Most results per page; clamped to filter.maxResults; 0 returns only totalResults",
            {"type": "integer"},
        ),
        "cursor": query(
            "cursor",
            'Cursor paging (RFC 9865): "" for the first page, then a nextCursor or previousCursor; '
            "not with startIndex or sortBy; 400 invalidCursor or expiredCursor when it cannot be used",
            {"type": "string"},
        ),
        "sortBy": query("sortBy", "Attribute to sort by", {"type": "string"}),
        "sortOrder": query(
            "sortOrder", "ascending (default) or descending", {"type": "string", "enum": ["ascending", "descending"]}
        ),
        "attributes": query("attributes", "Comma-separated attributes to return", {"type": "string"}),
        "excludedAttributes": query(
            "excludedAttributes", "Comma-separated attributes to leave out, e.g. members", {"type": "string"}
        ),
        "If-Match": {
            "name": "If-Match",
            "in": "header",
            "required": False,
            "description": 'Only change the resource if its ETag matches, e.g. W/"3"; otherwise 412',
            "schema": {"type": "string"},
        },
        "If-None-Match": {
            "name": "If-None-Match",
            "in": "header",
            "required": False,
            "description": "Answer 304 without a body when the ETag matches",
            "schema": {"type": "string"},
        },
    }


def _message_schemas() -> dict:
    free_object = {"type": "object", "additionalProperties": True}
    return {
        "Error": {
            "type": "object",
            "required": ["schemas", "status", "detail"],
            "properties": {
                "schemas": {"type": "array", "items": {"type": "string", "enum": [ERROR_SCHEMA]}},
                "status": {"type": "string", "description": "The HTTP status code, as a string"},
                "scimType": {"type": "string", "enum": sorted(SCIM_TYPES)},
                "detail": {"type": "string", "description": "What is wrong and what to do about it"},
            },
        },
        "PatchOp": {
            "type": "object",
            "required": ["schemas", "Operations"],
            "properties": {
                "schemas": {"type": "array", "items": {"type": "string"}, "description": schemas.PATCH_OP},
                "Operations": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["op"],
                        "properties": {
                            "op": {"type": "string", "description": "add, remove or replace, in any letter case"},
                            "path": {
                                "type": "string",
                                "description": 'e.g. name.familyName, emails[type eq "work"].value, '
                                'members[value eq "<id>"]; omit to merge an object',
                            },
                            "value": {"description": "The new value; for a path-less op, an object of attributes"},
                        },
                    },
                },
            },
        },
        "SearchRequest": {
            "type": "object",
            "properties": {
                "schemas": {"type": "array", "items": {"type": "string"}, "description": schemas.SEARCH_REQUEST},
                "filter": {"type": "string"},
                "startIndex": {"type": "integer"},
                "count": {"type": "integer"},
                "cursor": {"type": "string", "description": "Cursor paging (RFC 9865); /Users and /Groups only"},
                "sortBy": {"type": "string"},
                "sortOrder": {"type": "string", "enum": ["ascending", "descending"]},
                "attributes": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
                "excludedAttributes": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
            },
        },
        "BulkRequest": {
            "type": "object",
            "required": ["schemas", "Operations"],
            "properties": {
                "schemas": {"type": "array", "items": {"type": "string", "enum": [BULK_REQUEST]}},
                "failOnErrors": {"type": "integer", "minimum": 1},
                "Operations": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["method", "path"],
                        "properties": {
                            "method": {"type": "string", "enum": ["POST", "PUT", "PATCH", "DELETE"]},
                            "path": {"type": "string", "description": "/Users, /Groups, /Users/<id> or /Groups/<id>"},
                            "bulkId": {
                                "type": "string",
                                "description": "Required with POST; refer to it as bulkId:<id>",
                            },
                            "version": {"type": "string", "description": "The ETag the resource must have (If-Match)"},
                            "data": free_object,
                        },
                    },
                },
            },
        },
        "BulkResponse": {
            "type": "object",
            "required": ["schemas", "Operations"],
            "properties": {
                "schemas": {"type": "array", "items": {"type": "string", "enum": [BULK_RESPONSE]}},
                "Operations": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["status"],
                        "properties": {
                            "method": {"type": "string"},
                            "bulkId": {"type": "string"},
                            "version": {"type": "string"},
                            "location": {"type": "string"},
                            "status": {"type": "string", "description": "The operation's HTTP status code"},
                            "response": {"$ref": "#/components/schemas/Error"},
                        },
                    },
                },
            },
        },
        "ServiceProviderConfig": {
            **free_object,
            "required": [
                "schemas",
                "patch",
                "bulk",
                "filter",
                "changePassword",
                "sort",
                "etag",
                "authenticationSchemes",
            ],
        },
        "ResourceType": {**free_object, "required": ["schemas", "id", "name", "endpoint", "schema"]},
        "Schema": {**free_object, "required": ["schemas", "id", "attributes"]},
        "DiscoveryListResponse": {
            "type": "object",
            "required": ["schemas", "totalResults", "Resources"],
            "properties": {
                "schemas": {"type": "array", "items": {"type": "string"}},
                "totalResults": {"type": "integer"},
                "Resources": {"type": "array", "items": free_object},
            },
        },
    }


def openapi_document(base_url: str, limits: Limits = DEFAULT_LIMITS) -> dict:
    """The OpenAPI 3.0 document; `base_url` is the server's public URL (server.base_url), `limits`
    the configured size limits (maxLength, maxItems)."""
    error_headers = {
        "Retry-After": {"description": "Seconds to wait (429)", "schema": {"type": "integer"}},
        "WWW-Authenticate": {"description": "Bearer challenge (401)", "schema": {"type": "string"}},
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "scimlet SCIM 2.0 API",
            "version": "2.0",
            "description": "SCIM 2.0 (RFC 7643, RFC 7644) for Microsoft Entra ID and other SCIM clients. "
            "Every path is relative to an IdP's tenant URL; authenticate with the secret of "
            "the API key selected for that IdP. Errors are SCIM error bodies.",
        },
        "servers": [
            {
                "url": f"{base_url}/v1/scim/{{idpId}}",
                "description": "An IdP's tenant URL",
                "variables": {"idpId": {"default": "IDP_ID", "description": "The IdP ID (see `idp list`)"}},
            }
        ],
        "security": [{"bearer": []}],
        "tags": [{"name": n} for n in ("Users", "Groups", "Search", "Bulk", "Discovery")],
        "paths": {
            **_resource_paths(schemas.USER_TYPE),
            **_resource_paths(schemas.GROUP_TYPE),
            **_tenant_paths(),
            **_discovery_paths(),
        },
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The API key's secret, as Authorization: Bearer <secret>",
                }
            },
            "schemas": {
                "User": _resource(schemas.USER_TYPE, limits),
                "UserInput": _resource(schemas.USER_TYPE, limits, request=True),
                "Group": _resource(schemas.GROUP_TYPE, limits),
                "GroupInput": _resource(schemas.GROUP_TYPE, limits, request=True),
                "UserListResponse": _list_response("User"),
                "GroupListResponse": _list_response("Group"),
                "ResourceListResponse": {
                    **_list_response("User"),
                    "properties": {
                        **_list_response("User")["properties"],
                        "Resources": {"type": "array", "items": {"type": "object", "additionalProperties": True}},
                    },
                },
                **_message_schemas(),
            },
            "parameters": _parameters(),
            "headers": {"ETag": {"description": 'The resource version, e.g. W/"3"', "schema": {"type": "string"}}},
            "responses": {
                f"E{code}": {
                    "description": text,
                    "headers": error_headers,
                    "content": {SCIM_JSON: {"schema": {"$ref": "#/components/schemas/Error"}}},
                }
                for code, text in _ERRORS.items()
            },
        },
    }
