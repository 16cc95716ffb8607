"""The typed filter AST (scim.filters) -> a parameterised WHERE clause and ORDER BY, in a backend's dialect.

This is the backend-neutral core: hot attributes map to indexed columns; everything else reads the
JSON document, multi-valued attributes through their elements inside EXISTS, and group membership
through the group_members rows. Every value is a bound parameter. Case rules follow the schema's
caseExact, folding ASCII letters only, exactly as scim.filters.matches does in Python. How a value
is read from the document and compared is each backend's `Dialect` (storage/sqlite/dialect.py,
storage/postgresql/dialect.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from scim.errors import ScimError, invalid_filter, invalid_value
from scim.filters import And, Compare, Node, Not, Or, Present, ValuePath
from scim.paths import AttrRef

# The SQL expression of one sub-attribute of the element an EXISTS walks.
ExprOf = Callable[[AttrRef], str]


@dataclass(frozen=True)
class TableMap:
    """How one resource type is stored: its table and the attributes kept in columns."""

    table: str
    resource_type: str
    columns: dict[str, str]
    not_filterable: frozenset[str] = field(default_factory=frozenset)
    point_columns: frozenset[str] = frozenset()  # indexed and (nearly) unique: eq finds a few rows


USERS = TableMap(
    "users",
    "User",
    {
        "id": "t.id",
        "externalid": "t.external_id",
        "username": "t.user_name",
        "active": "t.active",
        "meta.created": "t.created",
        "meta.lastmodified": "t.modified",
    },
    frozenset({"meta.location", "meta.version", "password"}),
    frozenset({"id", "externalid", "username"}),
)
GROUPS = TableMap(
    "groups",
    "Group",
    {
        "id": "t.id",
        "externalid": "t.external_id",
        "displayname": "t.display_name",
        "meta.created": "t.created",
        "meta.lastmodified": "t.modified",
    },
    frozenset({"meta.location", "meta.version"}),
    frozenset({"id", "externalid", "displayname"}),
)

# The table map of each resource type, by its name ("User", "Group").
TABLES: dict[str, TableMap] = {"User": USERS, "Group": GROUPS}

# Member rows answer filters on Group.members and User.groups; these are the sub-attributes they keep.
_MEMBER_COLUMNS = {"value": "m.member_id", "type": "m.type"}


def json_keys(ref: AttrRef, *, with_sub: bool) -> list[str]:
    """The keys from the document down to the attribute (and its sub-attribute): the extension's URN first."""
    keys = [ref.urn] if ref.urn else []
    keys.append(ref.attr.name)
    if with_sub and ref.sub is not None:
        keys.append(ref.sub.name)
    return keys


def escape_like(value: str) -> str:
    """A value for LIKE ... ESCAPE '\\': its own %, _ and \\ match only themselves."""
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class Dialect(Protocol):
    """What differs from one database's SQL to another's: parameters, reading the JSON document, and
    the comparisons of one value (leaf). The structure of a filter (and, or, not, value filters,
    EXISTS over elements, group membership and the walk through nested groups) is the core's."""

    creation_order: str  # the column that orders rows as they were created

    def param(self, params: list, value: object) -> str:
        """Bind `value`: append it to `params` and return its placeholder."""
        ...

    def json_value(self, ref: AttrRef) -> str:
        """The (singular) attribute, or sub-attribute, of the document t.doc."""
        ...

    def json_elements(self, ref: AttrRef, alias: str) -> str:
        """A table expression of the elements of a multi-valued attribute, each as `alias`.value."""
        ...

    def element_sub(self, alias: str, sub: str) -> str:
        """A sub-attribute of the element `alias` an EXISTS walks."""
        ...

    def not_true(self, test: str) -> str:
        """A test that holds unless `test` holds (it may be unknown: no value to compare)."""
        ...

    def leaf(self, builder: Builder, node: Compare | Present, expr: str) -> str:
        """One comparison (or presence test) of the value `expr`; builder.typed(expr) tells a column from JSON."""
        ...

    def sort_key(self, ref: AttrRef, expr: str, typed: bool) -> list[str]:
        """The ORDER BY terms, ascending, of the value `expr` (absent values last is the core's)."""
        ...

    def first_element_sub(self, ref: AttrRef, sub: str) -> str:
        """A multi-valued attribute's sub-attribute to sort by: the primary element's, else the first's."""
        ...


class Builder:
    """Translates one filter; its params are the values bound, in the dialect's order."""

    def __init__(self, tmap: TableMap, idp_id: str, dialect: Dialect, params: list | None = None) -> None:
        self.tmap = tmap
        self.idp_id = idp_id
        self.dialect = dialect
        self.params: list = [] if params is None else params
        self.aliases = 0
        # Columns and member rows hold text already; JSON values may be of any JSON type.
        self.typed_exprs = {*tmap.columns.values(), *_MEMBER_COLUMNS.values(), "g.id"}

    def param(self, value: object) -> str:
        return self.dialect.param(self.params, value)

    def typed(self, expr: str) -> bool:
        return expr in self.typed_exprs

    def alias(self) -> str:
        self.aliases += 1
        return f"e{self.aliases}"

    def node(self, node: Node) -> str:
        if isinstance(node, (And, Or)):
            joiner = " AND " if isinstance(node, And) else " OR "
            return f"({joiner.join(self.node(item) for item in _chain(node))})"
        if isinstance(node, Not):
            # Each test yields true, false or unknown (no value to compare): "not" holds unless it is true.
            return self.dialect.not_true(self.node(node.expr))
        if isinstance(node, ValuePath):
            return self.exists(node.ref, lambda expr_of: self.node_in(node.filter, expr_of))
        ref = node.ref
        if ref.name.lower() in self.tmap.not_filterable:
            raise invalid_filter(f"{ref.name} cannot be used in a filter")
        if ref.attr.multi_valued:
            if isinstance(node, Compare) and node.value is None:
                # "ne null" means some element has the value; "eq null" that none has.
                present = self.exists(ref, lambda expr_of: self.leaf(Present(ref), expr_of(ref)))
                return present if node.op == "ne" else f"(NOT {present})"
            if isinstance(node, Compare) and node.op == "ne":
                inner = Compare(ref, "eq", node.value)
                return f"(NOT {self.exists(ref, lambda expr_of: self.leaf(inner, expr_of(ref)))})"
            return self.exists(ref, lambda expr_of: self.leaf(node, expr_of(ref)))
        return self.leaf(node, self.scalar(ref))

    def node_in(self, node: Node, expr_of: ExprOf) -> str:
        """A filter inside [...], over one element whose sub-attributes expr_of maps to SQL."""
        if isinstance(node, (And, Or)):
            joiner = " AND " if isinstance(node, And) else " OR "
            return f"({joiner.join(self.node_in(item, expr_of) for item in _chain(node))})"
        if isinstance(node, Not):
            return self.dialect.not_true(self.node_in(node.expr, expr_of))
        if isinstance(node, ValuePath):
            raise invalid_filter("A value filter cannot be nested inside another value filter")
        return self.leaf(node, expr_of(node.ref))

    def leaf(self, node: Compare | Present, expr: str) -> str:
        return self.dialect.leaf(self, node, expr)

    def scalar(self, ref: AttrRef) -> str:
        column = self.tmap.columns.get(ref.name.lower())
        if column is not None:
            return column
        if ref.name.lower() == "meta.resourcetype":
            resource_type = f"'{self.tmap.resource_type}'"
            self.typed_exprs.add(resource_type)
            return resource_type
        if ref.attr.name == "meta":
            raise invalid_filter(f"{ref.name} cannot be used in a filter")
        return self.dialect.json_value(ref)

    def exists(self, ref: AttrRef, inner: Callable[[ExprOf], str]) -> str:
        """EXISTS over the elements of a multi-valued attribute; inner(expr_of) builds the test."""
        name = ref.attr.name
        if self.tmap.table == "groups" and name == "members":

            def member_expr(sub_ref: AttrRef) -> str:
                sub = sub_ref.leaf.name if sub_ref.sub else "value"
                if sub not in _MEMBER_COLUMNS:
                    raise invalid_filter(f"members.{sub} cannot be used in a filter; use members.value or members.type")
                return _MEMBER_COLUMNS[sub]

            return f"EXISTS (SELECT 1 FROM group_members AS m WHERE m.group_id = t.id AND {inner(member_expr)})"
        if self.tmap.table == "users" and name == "groups":

            def group_expr(sub_ref: AttrRef) -> str:
                if sub_ref.sub is not None and sub_ref.sub.name != "value":
                    raise invalid_filter(f"groups.{sub_ref.sub.name} cannot be used in a filter; use groups.value")
                return "g.id"

            # The users in a group that passes the test, directly or through nested groups: one walk
            # down from those groups for the whole query, over group ids with UNION, so each group is
            # visited once (cycles end) and the walk is linear in the graph below them. (A walk up
            # from every user of the tenant, once per row, was quadratic on dense nesting.)
            idp = self.param(self.idp_id)
            test = inner(group_expr)
            return (
                "t.id IN (WITH RECURSIVE down(gid) AS ("
                f"SELECT g.id FROM groups AS g WHERE g.idp_id = {idp} AND {test} "
                "UNION SELECT m.member_id FROM group_members AS m JOIN down ON m.group_id = down.gid "
                "WHERE m.type = 'Group') "
                "SELECT m.member_id FROM group_members AS m JOIN down ON m.group_id = down.gid WHERE m.type = 'User')"
            )
        alias = self.alias()

        def element_expr(sub_ref: AttrRef) -> str:
            if sub_ref.sub is None:
                return f"{alias}.value"
            return self.dialect.element_sub(alias, sub_ref.sub.name)

        return f"EXISTS (SELECT 1 FROM {self.dialect.json_elements(ref, alias)} WHERE {inner(element_expr)})"


SQL_OPS = {"eq": "=", "gt": ">", "ge": ">=", "lt": "<", "le": "<="}


def _chain(node: And | Or) -> list[Node]:
    """The operands of a run of the same operator: a or b or c -> [a, b, c], most nested first.

    One flat "(a OR b OR c)" instead of "((a OR b) OR c)", and nested groups before plain clauses
    ("((x OR y) AND a)", not "(a AND (x OR y))"): either would otherwise pile up open parentheses
    past SQLite's parser stack (a fixed 100 entries in many builds) on filters within our limits.
    AND and OR are commutative, so the order is free.
    """
    return sorted(_operands(node), key=_nesting, reverse=True)


def _operands(node: And | Or) -> list[Node]:
    kind = type(node)
    operands: list[Node] = []
    stack: list[Node] = [node]
    while stack:
        item = stack.pop()
        if type(item) is kind:
            stack.extend((item.right, item.left))
        else:
            operands.append(item)
    return operands


def _nesting(node: Node) -> int:
    """How many levels of nested SQL a node turns into (roughly)."""
    if isinstance(node, (And, Or)):
        return 1 + max(_nesting(item) for item in _operands(node))
    if isinstance(node, Not):
        return 1 + _nesting(node.expr)
    if isinstance(node, ValuePath):
        return 2 + _nesting(node.filter)
    return 0


def is_point_lookup(node: Node | None, tmap: TableMap) -> bool:
    """Whether a filter pins a few rows down through an indexed column (id, userName, displayName,
    externalId eq ...), anded with anything but a test of a user's groups (a walk through the
    nesting, done on a reader thread): cheap enough to answer without leaving the event loop."""
    if node is None or (tmap is USERS and _tests_groups(node)):
        return False
    return _pins_rows(node, tmap)


def _tests_groups(node: Node) -> bool:
    if isinstance(node, (And, Or)):
        return _tests_groups(node.left) or _tests_groups(node.right)
    if isinstance(node, Not):
        return _tests_groups(node.expr)
    return node.ref.attr.name == "groups"


def _pins_rows(node: Node, tmap: TableMap) -> bool:
    if isinstance(node, Compare):
        return node.op == "eq" and node.value is not None and node.ref.name.lower() in tmap.point_columns
    if isinstance(node, And):
        return _pins_rows(node.left, tmap) or _pins_rows(node.right, tmap)
    return False


def where_clause(
    node: Node, tmap: TableMap, idp_id: str, dialect: Dialect, params: list | None = None
) -> tuple[str, list]:
    """SQL text (over table alias t, the rows of IdP `idp_id`) and its parameters for a resolved
    filter, in `dialect`; the parameters are appended to `params` when given (numbered after them)."""
    builder = Builder(tmap, idp_id, dialect, params)
    return builder.node(node), builder.params


def taken_query(tmap: TableMap, idp_id: str, resource_id: str, where: Node, dialect: Dialect) -> tuple[str, list]:
    """A query whose one row says that a resource of the IdP other than `resource_id` matches
    `where` (a uniqueness: server value is taken), and its parameters."""
    params: list = []
    idp, me = dialect.param(params, idp_id), dialect.param(params, resource_id)
    condition, params = where_clause(where, tmap, idp_id, dialect, params)
    return f"SELECT 1 FROM {tmap.table} AS t WHERE t.idp_id = {idp} AND t.id <> {me} AND ({condition}) LIMIT 1", params


def order_clause(ref: AttrRef, descending: bool, tmap: TableMap, dialect: Dialect) -> str:
    """ORDER BY for sortBy: absent values last, ties broken by creation order."""
    builder = Builder(tmap, "", dialect)
    typed = False
    if ref.attr.multi_valued:
        if ref.name.lower() in ("members", "groups", "members.value", "groups.value"):
            raise invalid_value(f"sortBy {ref.name} is not supported; sort on a singular attribute")
        expr = dialect.first_element_sub(ref, ref.sub.name if ref.sub else "value")
    elif ref.attr.is_complex and ref.sub is None:
        raise invalid_value(f"sortBy {ref.name} names a complex attribute; sort on a sub-attribute")
    else:
        try:
            expr = builder.scalar(ref)
        except ScimError:
            raise invalid_value(f"sortBy {ref.name} is not supported") from None
        typed = builder.typed(expr)
    direction = " DESC" if descending else " ASC"
    keys = ", ".join(f"{key}{direction}" for key in dialect.sort_key(ref, expr, typed))
    return f"{expr} IS NULL, {keys}, {dialect.creation_order}"
