"""SCIM filters (RFC 7644 §3.4.2.2) -> a typed AST resolved against a resource type.

Parsing uses scim2-filter-parser's grammar (its SLY parser) fed by our own tokenizer, because its
lexer accepts neither escaped quotes in strings nor numbers of more than one digit. Its parser also
gives "and" and "or" the same precedence, so we re-associate implicit chains ("and" binds tighter).
Every attribute is resolved against the schema here; anything unknown is an invalidFilter error,
never a silently ignored clause. The same AST is evaluated in Python by `matches` (PATCH value
filters) and translated to SQL by storage/sql.py.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar, cast

from scim2_filter_parser import ast as sfp
from scim2_filter_parser.parser import SCIMParser, SCIMParserError
from sly.lex import Token

from scim.errors import ScimError, invalid_filter, shown
from scim.paths import AttrRef, resolve, resolve_sub
from scim.schemas import ResourceType

Value = str | int | float | bool | None

COMPARE_OPS = frozenset({"eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le"})
ORDER_OPS = frozenset({"gt", "ge", "lt", "le"})
MAX_FILTER_LENGTH = 4096
MAX_FILTER_DEPTH = 32


@dataclass(frozen=True)
class Compare:
    ref: AttrRef
    op: str
    value: Value


@dataclass(frozen=True)
class Present:
    ref: AttrRef


@dataclass(frozen=True)
class And:
    left: Node
    right: Node


@dataclass(frozen=True)
class Or:
    left: Node
    right: Node


@dataclass(frozen=True)
class Not:
    expr: Node


@dataclass(frozen=True)
class ValuePath:
    """attr[filter]: one element of a multi-valued attribute must satisfy the inner filter.

    Inner Compare/Present nodes carry refs to sub-attributes of `ref.attr`.
    """

    ref: AttrRef
    filter: Node


Node = Compare | Present | And | Or | Not | ValuePath

# --- tokenizer -------------------------------------------------------------------------------

_KEYWORDS = {
    "eq": "EQ",
    "ne": "NE",
    "co": "CO",
    "sw": "SW",
    "ew": "EW",
    "gt": "GT",
    "ge": "GE",
    "lt": "LT",
    "le": "LE",
    "pr": "PR",
    "and": "AND",
    "or": "OR",
    "not": "NOT",
    "true": "TRUE",
    "false": "FALSE",
    "null": "NULL",
}
_TOKEN_RE = re.compile(
    r"""
    (?P<ws>[ \t\r\n]+)
  | (?P<string>"(?:[^"\\\x00-\x1f]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*")
  | (?P<number>-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?(?![A-Za-z0-9_$]))
  | (?P<urn>[a-zA-Z][a-zA-Z0-9-]*:[a-zA-Z0-9:._-]*:(?=[a-zA-Z$]))
  | (?P<subattr>\.[a-zA-Z$][a-zA-Z0-9_$-]*)
  | (?P<name>[a-zA-Z$][a-zA-Z0-9_$-]*)
  | (?P<punct>[()\[\]])
    """,
    re.VERBOSE,
)
_PUNCT = {"(": "LPAREN", ")": "RPAREN", "[": "LBRACKET", "]": "RBRACKET"}
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def _decode_string(raw: str) -> str:
    def unescape(match: re.Match) -> str:
        esc = match.group(1)
        return chr(int(esc[1:], 16)) if esc[0] == "u" else _ESCAPES[esc]

    text = re.sub(r"\\(u[0-9a-fA-F]{4}|.)", unescape, raw[1:-1])
    try:
        # JSON spells characters beyond U+FFFF as surrogate pairs ("\\ud83d\\ude00"): join them.
        text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le")
    except UnicodeDecodeError:
        raise invalid_filter(f"The string {shown(raw)} contains an unpaired \\u surrogate escape") from None
    if "\x00" in text:
        # SQLite's NOCASE, LIKE, instr and length stop at NUL, so such a value could not match exactly.
        raise invalid_filter(f"The string {shown(raw)} contains a NUL character (\\u0000), which is not allowed")
    return text


def _token(kind: str, value: object, index: int, end: int) -> Token:
    tok = Token()
    tok.type, tok.value, tok.lineno, tok.index, tok.end = kind, value, 1, index, end
    return tok


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN_RE.match(text, pos)
        if match is None:
            if text[pos] == '"':
                raise invalid_filter(
                    f"The string starting at position {pos + 1} of the filter is not closed, or holds a raw control "
                    'character or an invalid escape; escape " and \\ as \\" and \\\\'
                )
            raise invalid_filter(
                f"Unexpected character {shown(text[pos])} at position {pos + 1} of the filter; "
                'strings must be in double quotes, e.g. userName eq "alice@contoso.com"'
            )
        kind = match.lastgroup
        raw = match.group()
        if kind == "string":
            tokens.append(_token("COMP_VALUE", ("value", _decode_string(raw)), pos, match.end()))
        elif kind == "number":
            number: float | int = float(raw) if any(c in raw for c in ".eE") else int(raw)
            tokens.append(_token("NUMBER", ("value", number), pos, match.end()))
        elif kind == "urn":
            tokens.append(_token("SCHEMA_URI", raw[:-1], pos, match.end()))
        elif kind == "subattr":
            tokens.append(_token("SUBATTR", raw[1:], pos, match.end()))
        elif kind == "name":
            keyword = _KEYWORDS.get(raw.lower())
            if keyword in ("TRUE", "FALSE", "NULL"):
                literal = {"TRUE": True, "FALSE": False, "NULL": None}[keyword]
                tokens.append(_token(keyword, ("value", literal), pos, match.end()))
            else:
                tokens.append(_token(keyword or "ATTRNAME", raw, pos, match.end()))
        elif kind == "punct":
            tokens.append(_token(_PUNCT[raw], raw, pos, match.end()))
        pos = match.end()
    return tokens


# --- parse and resolve --------------------------------------------------------------------------


def parse_filter(
    text: str, rtype: ResourceType, *, max_length: int = MAX_FILTER_LENGTH, max_depth: int = MAX_FILTER_DEPTH
) -> Node:
    """Parse and resolve a filter, or raise ScimError(400, invalidFilter).

    The limits come from the caller (the server's configuration), so scim/ stays free of settings.

    Parsed filters are cached by shape: the tokens with their literal values taken out. Entra sends
    the same `userName eq "..."` with a new value every time, so the parser runs once per shape and
    each request only tokenizes, checks and slots in its values.
    """
    if len(text) > max_length:
        raise invalid_filter(f"The filter is {len(text)} characters long; the limit is {max_length}")
    if not text.strip():
        raise invalid_filter('The filter is empty; send e.g. userName eq "alice@contoso.com"')
    simple = _SIMPLE_RE.fullmatch(text)
    if simple is not None:
        # The commonest filter by far, `attribute op "value"` (Entra's every lookup), skips the
        # tokenizer once its shape is known. A string without backslashes needs no decoding, and
        # the pattern admits no control character.
        simple_shape = (rtype, simple["attr"], simple["op"].lower())
        template = _TEMPLATES.get(simple_shape)
        if template is not None:
            return _fill(template, [simple["value"]])
    tokens = tokenize(text)
    # Checked on every call, not only when a shape is first parsed: the limit may differ per caller.
    _check_depth(tokens, max_depth)
    literals = [tok.value[1] for tok in tokens if tok.type in _LITERAL_TYPES]
    shape = (rtype, *(tok.type if tok.type in _LITERAL_TYPES else (tok.type, tok.value) for tok in tokens))
    template = _TEMPLATES.get(shape)
    if template is None:
        slot = 0
        for tok in tokens:
            if tok.type in _LITERAL_TYPES:
                tok.value = ("slot", _Slot(slot))
                slot += 1
        resolved = _Resolver(rtype, max_depth).filter(_parse_tree(text, tokens), depth=0)
        assert not isinstance(resolved, bool), "only a lenient resolver folds a filter to a constant"
        template = resolved
        if len(tokens) <= MAX_CACHED_TOKENS:
            if len(_TEMPLATES) >= MAX_CACHED_SHAPES:
                _TEMPLATES.clear()
            _TEMPLATES[shape] = template
            if simple is not None:
                _TEMPLATES[simple_shape] = template
    return _fill(template, literals)


@dataclass(frozen=True)
class _Slot:
    """Where a literal goes in a cached filter shape."""

    index: int


_LITERAL_TYPES = frozenset({"COMP_VALUE", "NUMBER", "TRUE", "FALSE", "NULL"})
_SIMPLE_RE = re.compile(
    r"[ \t\r\n]*(?P<attr>[a-zA-Z$][a-zA-Z0-9_$-]*(?:\.[a-zA-Z$][a-zA-Z0-9_$-]*)?)[ \t\r\n]+"
    r'(?P<op>[eEnNcCsSgGlL][qQeEoOwWtT])[ \t\r\n]+"(?P<value>[^"\\\x00-\x1f]*)"[ \t\r\n]*'
)
_TEMPLATES: dict[tuple, Node] = {}
MAX_CACHED_SHAPES = 1024
# Only short shapes are cached (Entra's have 3 to 11 tokens): 1024 shapes of 4096-character filters
# held 185 MB. A longer filter is parsed each time, which is what its first request costs anyway.
MAX_CACHED_TOKENS = 64


def _fill(node: Node, literals: list) -> Node:
    """The cached shape with this request's values, each checked against its attribute's type."""
    if isinstance(node, Compare):
        if isinstance(node.value, _Slot):
            return Compare(node.ref, node.op, _check_value(node.ref, node.op, literals[node.value.index]))
        return node
    if isinstance(node, And):
        return And(_fill(node.left, literals), _fill(node.right, literals))
    if isinstance(node, Or):
        return Or(_fill(node.left, literals), _fill(node.right, literals))
    if isinstance(node, Not):
        return Not(_fill(node.expr, literals))
    if isinstance(node, ValuePath):
        return ValuePath(node.ref, _fill(node.filter, literals))
    return node


def _check_depth(tokens: list[Token], max_depth: int) -> None:
    depth = 0
    for tok in tokens:
        depth += tok.type in ("LPAREN", "LBRACKET")
        depth -= tok.type in ("RPAREN", "RBRACKET")
        if depth > max_depth:
            raise invalid_filter(f"The filter nests deeper than {max_depth} levels")


def _parse_tree(text: str, tokens: list[Token]) -> sfp.Filter:
    try:
        tree = SCIMParser().parse(iter(tokens))
    except SCIMParserError as exc:
        raise invalid_filter(f"The filter is not valid SCIM filter syntax ({_describe(exc, text)})") from None
    except RecursionError:
        raise invalid_filter("The filter is too deeply nested") from None
    if tree is None:
        raise invalid_filter("The filter is incomplete")
    return tree


def _describe(exc: SCIMParserError, text: str) -> str:
    match = re.search(r"index=(\d+)", str(exc))
    if match:
        index = int(match.group(1))
        return f"unexpected {shown(text[index:])} at position {index + 1}"
    if str(exc).endswith("at: None"):
        return "it ends too early"
    return 'a value filter [...] must follow a plain attribute name, e.g. emails[type eq "work"].value'


def parse_path_filter(attr_text: str, filter_text: str, rtype: ResourceType) -> ValuePath:
    """Resolve `attr[filter]` for a PATCH path; attr_text may carry a URN prefix."""
    node = parse_filter(f"{attr_text}[{filter_text}]", rtype)
    assert isinstance(node, ValuePath)
    return node


def parse_filter_across(
    text: str,
    rtypes: list[ResourceType],
    *,
    max_length: int = MAX_FILTER_LENGTH,
    max_depth: int = MAX_FILTER_DEPTH,
) -> dict[str, Node | bool]:
    """A filter over several resource types at once (RFC 7644 §3.4.2, a search at the root), resolved
    for each: resource type name -> its filter, or True (every resource of the type matches) or
    False (none does). An attribute a type does not have is unassigned in every resource of it:
    a comparison or `pr` on it is false there, so `title eq "x"` matches no group and
    `not (title pr)` every group, and the filter folds to what remains. An attribute that none of
    the types has, and every other fault, is 400 invalidFilter, as in a search of one type."""
    if len(text) > max_length:
        raise invalid_filter(f"The filter is {len(text)} characters long; the limit is {max_length}")
    if not text.strip():
        raise invalid_filter('The filter is empty; send e.g. userName eq "alice@contoso.com"')
    resolved: dict[str, Node | bool] = {}
    unknown: list[dict[str, str]] = []
    for rtype in rtypes:
        tokens = tokenize(text)
        _check_depth(tokens, max_depth)
        resolver = _Resolver(rtype, max_depth, lenient=True)
        resolved[rtype.name] = resolver.filter(_parse_tree(text, tokens), depth=0)
        unknown.append(resolver.unknown)

    def lacks(names: dict[str, str], name: str) -> bool:
        """Whether a type lacks the name: it lacks the name or the attribute the name is a part of."""
        parts = name.split(".")
        return any(".".join(parts[:end]) in names for end in range(1, len(parts) + 1))

    for name in sorted({name for names in unknown for name in names}):
        if all(lacks(names, name) for names in unknown):
            detail = next(names[name] for names in unknown if name in names)
            types = ", ".join(rtype.name for rtype in rtypes)
            raise invalid_filter(f"{detail}: no resource type searched ({types}) has it")
    return resolved


class _UnknownAttribute(ScimError):
    """A name the resource type does not have, met by a lenient resolver (parse_filter_across)."""


def _unknown(detail: str) -> ScimError:
    return _UnknownAttribute(400, detail, "invalidFilter")


def _and(left: Node | bool, right: Node | bool) -> Node | bool:
    if left is False or right is False:
        return False
    if left is True:
        return right
    if right is True:
        return left
    return And(left, right)


def _or(left: Node | bool, right: Node | bool) -> Node | bool:
    if left is True or right is True:
        return True
    if left is False:
        return right
    if right is False:
        return left
    return Or(left, right)


def _not(expr: Node | bool) -> Node | bool:
    return (not expr) if isinstance(expr, bool) else Not(expr)


class _Resolver:
    """The filter's parse tree resolved against a resource type. A lenient resolver reads a name
    the type does not have as an unassigned attribute (False) and folds the constants away,
    keeping in `unknown` each such name (lower-cased, as written) with its error's detail."""

    def __init__(self, rtype: ResourceType, max_depth: int = MAX_FILTER_DEPTH, *, lenient: bool = False) -> None:
        self.rtype = rtype
        self.max_depth = max_depth
        self.lenient = lenient
        self.unknown: dict[str, str] = {}
        self.error = _unknown if lenient else invalid_filter

    def filter(self, node: sfp.AST, depth: int, parent: AttrRef | None = None) -> Node | bool:
        if depth > self.max_depth * 4:
            raise invalid_filter(f"The filter nests deeper than {self.max_depth} levels")
        if isinstance(node, sfp.Filter):
            if node.namespace is not None:
                return self.value_path(node.namespace, node.expr, depth, parent)
            if isinstance(node.expr, sfp.LogExpr) and not node.negated:
                return self.chain(node.expr, depth, parent)
            inner = self.filter(node.expr, depth + 1, parent)
            return _not(inner) if node.negated else inner
        if isinstance(node, sfp.LogExpr):
            return self.chain(node, depth, parent)
        if isinstance(node, sfp.AttrExpr):
            return self.attr_expr(node, parent)
        raise invalid_filter("The filter is not valid SCIM filter syntax")

    def chain(self, node: sfp.LogExpr, depth: int, parent: AttrRef | None) -> Node | bool:
        """Rebuild an implicit left-associated chain of and/or with "and" binding tighter."""
        operands: list[sfp.AST] = []
        operators: list[str] = []

        def flatten(item: sfp.AST) -> None:
            if (
                isinstance(item, sfp.Filter)
                and item.namespace is None
                and not item.negated
                and isinstance(item.expr, sfp.LogExpr)
            ):
                item = item.expr
            if isinstance(item, sfp.LogExpr):
                flatten(item.expr1)
                operators.append(item.op.lower())
                flatten(item.expr2)
            else:
                operands.append(item)

        flatten(node)
        resolved = [self.filter(item, depth + 1, parent) for item in operands]
        terms: list[Node | bool] = [resolved[0]]
        for op, operand in zip(operators, resolved[1:], strict=False):
            if op == "and":
                terms[-1] = _and(terms[-1], operand)
            else:
                terms.append(operand)
        result = terms[0]
        for term in terms[1:]:
            result = _or(result, term)
        return result

    def value_path(self, path: sfp.AttrPath, expr: sfp.AST, depth: int, parent: AttrRef | None) -> Node | bool:
        if parent is not None:
            raise invalid_filter("A value filter [...] cannot be nested inside another value filter")
        if not isinstance(path, sfp.AttrPath) or not isinstance(path.attr_name, str) or path.sub_attr:
            raise invalid_filter('A value filter must follow a plain attribute name, e.g. emails[type eq "work"]')
        ref = self.lenient_ref(path, None)
        if ref is None:
            return False
        if not ref.attr.is_complex or not ref.attr.multi_valued:
            raise invalid_filter(f"{ref.name} is not a multi-valued complex attribute; it cannot take [...]")
        inner = self.filter(expr, depth + 1, ref)
        if isinstance(inner, bool):
            # Every element matches (the test named only sub-attributes it lacks, negated): one is there.
            return inner and Present(ref)
        return ValuePath(ref, inner)

    def lenient_ref(self, path: sfp.AttrPath, parent: AttrRef | None) -> AttrRef | None:
        """ref(), or None (noted in `unknown`) when a lenient resolver's type does not have the name."""
        try:
            return self.ref(path, parent)
        except _UnknownAttribute as exc:
            sub = f".{path.sub_attr.value}" if path.sub_attr is not None else ""
            written = f"{parent.attr.name}." if parent is not None else ""
            self.unknown[f"{written}{path.uri or ''}{path.attr_name}{sub}".lower()] = exc.detail
            return None

    def attr_expr(self, node: sfp.AttrExpr, parent: AttrRef | None) -> Node | bool:
        path = node.attr_path
        if isinstance(path.attr_name, sfp.Filter):
            # emails[type eq "work"].value eq "x": the comparison applies inside the value filter
            inner_path = path.attr_name.namespace
            sub = inner_path.sub_attr
            inner_path.sub_attr = None
            outer = self.value_path(inner_path, path.attr_name.expr, 0, parent)
            if isinstance(outer, bool):
                return outer  # lenient: the type has no such attribute
            assert isinstance(outer, ValuePath | Present)
            # A Present: the value filter held for every element (lenient, on sub-attributes the type lacks).
            test = outer.filter if isinstance(outer, ValuePath) else True
            leaf_path = sfp.AttrPath(sub.value if sub else "value", None, None)
            leaf = self.attr_expr(sfp.AttrExpr(node.value, leaf_path, node.comp_value), outer.ref)
            both = _and(test, leaf)
            if isinstance(both, bool):
                return both and Present(outer.ref)
            return ValuePath(outer.ref, both)
        ref = self.lenient_ref(path, parent)
        if ref is None:
            return False
        op = node.value.lower()
        if op == "pr":
            return Present(ref)
        value = node.comp_value.value[1] if node.comp_value is not None else None
        if isinstance(value, _Slot):
            # Only a cached shape holds a slot: _fill puts the checked literal there before any node
            # leaves parse_filter, so a Compare's value is a Value wherever it is read.
            return Compare(ref, op, cast(Value, value))
        return Compare(ref, op, _check_value(ref, op, value))

    def ref(self, path: sfp.AttrPath, parent: AttrRef | None) -> AttrRef:
        sub = path.sub_attr.value if path.sub_attr is not None else None
        if parent is not None:
            if path.uri or sub:
                raise invalid_filter(f"Inside {parent.name}[...] use sub-attribute names such as value or type")
            return resolve_sub(parent, path.attr_name, error=self.error)
        ref = resolve(self.rtype, path.uri, path.attr_name, sub, error=self.error)
        if ref.attr.is_complex and ref.sub is None:
            # "emails eq x", "members eq id", "manager eq id" compare the value sub-attribute
            value_sub = ref.attr.sub("value")
            if value_sub is None:
                raise invalid_filter(
                    f"{ref.name} is a complex attribute; filter on one of its sub-attributes, "
                    f"e.g. {ref.name}.{ref.attr.sub_attributes[0].name}"
                )
            return AttrRef(ref.urn, ref.attr, value_sub)
        return ref


def _check_value(ref: AttrRef, op: str, value: Value) -> Value:
    leaf = ref.leaf
    if value is None:
        if op not in ("eq", "ne"):
            raise invalid_filter(f"null can only be compared with eq or ne (in {ref.name} {op} null)")
        return None
    if leaf.type == "boolean":
        if op not in ("eq", "ne"):
            raise invalid_filter(f"{ref.name} is a boolean; only eq and ne apply to it, not {op}")
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if not isinstance(value, bool):
            raise invalid_filter(f"{ref.name} is a boolean; compare it with true or false")
        return value
    if isinstance(value, bool):
        raise invalid_filter(f"{ref.name} is a {leaf.type}, not a boolean; compare it with a quoted string")
    if leaf.type in ("integer", "decimal"):
        if isinstance(value, str) or op in ("co", "sw", "ew"):
            raise invalid_filter(f"{ref.name} is a number; compare it with an unquoted number")
        return value
    if not isinstance(value, str):
        raise invalid_filter(
            f'{ref.name} is a {leaf.type}; put the value in double quotes, e.g. {ref.name} eq "{shown(value)}"'
        )
    if leaf.type == "dateTime":
        if op in ("co", "sw", "ew"):
            raise invalid_filter(f"{ref.name} is a dateTime; use eq, ne, gt, ge, lt or le")
        return normalize_datetime(value, ref.name)
    if leaf.type == "binary" and op in ORDER_OPS:
        raise invalid_filter(f"{ref.name} is binary; it cannot be ordered with {op}")
    return value


def format_datetime(moment: datetime) -> str:
    """The one dateTime form we store and return: UTC, milliseconds, Z suffix."""
    # isoformat, unlike strftime("%Y"), pads years before 1000 to four digits, keeping text order = time order.
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def normalize_datetime(text: str, name: str) -> str:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return format_datetime(moment)
    except (ValueError, OverflowError):  # OverflowError: e.g. 0001-01-01T00:00:00+01:00 is before year 1 in UTC
        raise invalid_filter(f'{name} is a dateTime; use the form "2026-01-31T12:00:00Z", not {shown(text)}') from None


# --- evaluation in Python ---------------------------------------------------------------------

_ASCII_FOLD = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def fold(text: str) -> str:
    """Case folding as SQLite does it (ASCII letters only), so Python and SQL always agree.
    On ASCII text that is str.lower, nine times faster than the translation table."""
    return text.lower() if text.isascii() else text.translate(_ASCII_FOLD)


def matches(node: Node, resource: dict) -> bool:
    """Evaluate a resolved filter against a canonical resource dict (or a multi-valued element)."""
    if isinstance(node, And):
        return matches(node.left, resource) and matches(node.right, resource)
    if isinstance(node, Or):
        return matches(node.left, resource) or matches(node.right, resource)
    if isinstance(node, Not):
        return not matches(node.expr, resource)
    if isinstance(node, ValuePath):
        elements = node.ref.values_of_attr(resource)
        return any(isinstance(el, dict) and matches(node.filter, el) for el in elements)
    values = node.ref.leaf_values(resource)
    if isinstance(node, Present):
        return any(_is_present(v) for v in values)
    if node.op == "ne":
        return not any(_compare(node.ref, "eq", v, node.value) for v in values) and not (
            node.value is None and not any(_is_present(v) for v in values)
        )
    if node.value is None:  # eq null: absent
        return not any(_is_present(v) for v in values)
    return any(_compare(node.ref, node.op, v, node.value) for v in values)


def element_matcher(node: Node) -> Callable[[dict], bool]:
    """A predicate equal to matches(node, element) on one element of a multi-valued attribute.

    For `sub eq "text"` on a string sub-attribute (Entra's type eq "work", value eq "...") it is a
    lookup and a comparison, five times faster than the general walk: a PATCH runs it over every
    value of the attribute for every filtered operation, on the single writer."""
    if (
        isinstance(node, Compare)
        and node.op == "eq"
        and isinstance(node.value, str)
        and node.ref.element
        and node.ref.leaf.type in ("string", "reference", "binary")
    ):
        name = node.ref.leaf.name
        if node.ref.leaf.case_exact:
            exact = node.value
            return lambda element: element.get(name) == exact
        folded = fold(node.value)
        return lambda element: isinstance(value := element.get(name), str) and fold(value) == folded
    return lambda element: matches(node, element)


def _is_present(value: object) -> bool:
    return value is not None and value != "" and value != [] and value != {}


def _compare(ref: AttrRef, op: str, actual: object, expected: Value) -> bool:
    if actual is None or expected is None:
        return False
    leaf = ref.leaf
    if leaf.type == "boolean":
        return isinstance(actual, bool) and (actual == expected) == (op == "eq")
    if isinstance(expected, (int, float)):
        if not isinstance(actual, (int, float)) or isinstance(actual, bool):
            return False
        return _ordered(op, actual, expected)
    if not isinstance(actual, str):
        return False
    left, right = actual, expected
    if leaf.type == "dateTime":
        try:
            left = normalize_datetime(actual, ref.name)
        except ScimError:
            return False
    if not leaf.case_exact:
        left, right = fold(left), fold(right)
    if op == "eq":
        return left == right
    if op == "co":
        return right in left
    if op == "sw":
        return left.startswith(right)
    if op == "ew":
        return left.endswith(right)
    return _ordered(op, left, right)


# Strings compare with strings, numbers with numbers (an int is promoted to float): never one with the other.
_Ordered = TypeVar("_Ordered", str, float)


def _ordered(op: str, left: _Ordered, right: _Ordered) -> bool:
    if op == "eq":
        return left == right
    if op == "gt":
        return left > right
    if op == "ge":
        return left >= right
    if op == "lt":
        return left < right
    if op == "le":
        return left <= right
    return False
