"""The filter translator's PostgreSQL dialect: numbered parameters, the jsonb document read with ->,
JSON types kept apart with jsonb_typeof (a number never equals a string, as in Python), ASCII-only
case folding with scim_fold (migration 001) and byte order (COLLATE "C"), as SQLite compares."""

from __future__ import annotations

from scim.filters import Compare, Present, fold
from scim.paths import AttrRef
from storage.sql import SQL_OPS, Builder, escape_like, json_keys

# Columns that hold booleans; every other column holds text.
BOOLEAN_COLUMNS = frozenset({"t.active"})


def literal(text: str) -> str:
    """A name from the schema (an attribute, a URN) as an SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def json_path(keys: list[str]) -> str:
    return "".join(f" -> {literal(key)}" for key in keys)


def json_text(expr: str) -> str:
    """A JSON value as text when it is a JSON string, else NULL."""
    return f"(CASE WHEN jsonb_typeof({expr}) = 'string' THEN {expr} #>> '{{}}' END)"


def json_elements_of(expr: str, alias: str, *, ordinality: bool = False) -> str:
    # A multi-valued attribute is stored as an array; anything else has no elements.
    columns = f"{alias}(value, n)" if ordinality else f"{alias}(value)"
    with_ordinality = " WITH ORDINALITY" if ordinality else ""
    return (
        f"jsonb_array_elements(CASE WHEN jsonb_typeof({expr}) = 'array' THEN {expr} ELSE '[]'::jsonb END)"
        f"{with_ordinality} AS {columns}"
    )


class PostgresqlDialect:
    creation_order = "t.seq"

    def param(self, params: list, value: object) -> str:
        params.append(value)
        return f"${len(params)}"

    def json_value(self, ref: AttrRef) -> str:
        return f"(t.doc{json_path(json_keys(ref, with_sub=True))})"

    def json_elements(self, ref: AttrRef, alias: str) -> str:
        return json_elements_of(f"(t.doc{json_path(json_keys(ref, with_sub=False))})", alias)

    def element_sub(self, alias: str, sub: str) -> str:
        return f"({alias}.value -> {literal(sub)})"

    def not_true(self, test: str) -> str:
        return f"({test} IS NOT TRUE)"

    def leaf(self, builder: Builder, node: Compare | Present, expr: str) -> str:
        leaf = node.ref.leaf
        typed = builder.typed(expr)
        if isinstance(node, Present):
            if expr in BOOLEAN_COLUMNS:
                return f"({expr} IS NOT NULL)"
            if typed:
                return f"({expr} IS NOT NULL AND {expr} <> '')"
            # As scim.filters: null, "", [] and {} are no value.
            return f"({expr} IS NOT NULL AND {expr} NOT IN ('null', '\"\"', '[]', '{{}}'))"
        op, value = node.op, node.value
        if value is None:
            present = self.leaf(builder, Present(node.ref), expr)
            return f"(NOT {present})" if op == "eq" else present
        if op == "ne":
            return f"(NOT coalesce({self.leaf(builder, Compare(node.ref, 'eq', value), expr)}, false))"
        if leaf.type == "boolean":
            if expr in BOOLEAN_COLUMNS:
                return f"({expr} = {builder.param(bool(value))})"
            if typed:
                return "false"
            return f"({expr} = '{'true' if value else 'false'}'::jsonb)"
        if isinstance(value, (int, float)):
            if typed:  # text columns hold no numbers
                return "false"
            number = f"(CASE WHEN jsonb_typeof({expr}) = 'number' THEN ({expr} #>> '{{}}')::float8 END)"
            return f"({number} {SQL_OPS[op]} {builder.param(float(value))})"
        if expr in BOOLEAN_COLUMNS:
            return "false"
        nocase = not leaf.case_exact
        text = expr if typed else json_text(expr)
        if nocase:
            text, value = f"scim_fold({text})", fold(value)
        if op in ("co", "sw", "ew"):
            pattern = escape_like(value)
            pattern = {"co": f"%{pattern}%", "sw": f"{pattern}%", "ew": f"%{pattern}"}[op]
            return f"({text} LIKE {builder.param(pattern)} ESCAPE '\\')"
        # Equality needs no collation (and keeps the indexes usable); order is byte order, as SQLite's.
        collate = "" if op == "eq" else ' COLLATE "C"'
        return f"({text}{collate} {SQL_OPS[op]} {builder.param(value)})"

    def sort_key(self, ref: AttrRef, expr: str, typed: bool) -> list[str]:
        nocase = not ref.leaf.case_exact
        if typed:
            if expr in BOOLEAN_COLUMNS:
                return [expr]
            return [f'scim_fold({expr}) COLLATE "C"' if nocase else f'{expr} COLLATE "C"']
        # As SQLite orders json_extract's values: numbers (and booleans, 0 and 1) before text.
        number = (
            f"(CASE jsonb_typeof({expr}) WHEN 'number' THEN ({expr} #>> '{{}}')::float8 "
            f"WHEN 'boolean' THEN ({expr} = 'true'::jsonb)::int END)"
        )
        text = f"({expr} #>> '{{}}')"
        return [number, f'scim_fold({text}) COLLATE "C"' if nocase else f'{text} COLLATE "C"']

    def first_element_sub(self, ref: AttrRef, sub: str) -> str:
        elements = json_elements_of(f"(t.doc{json_path(json_keys(ref, with_sub=False))})", "s", ordinality=True)
        return (
            f"(SELECT s.value -> {literal(sub)} FROM {elements} "
            "ORDER BY (s.value -> 'primary') = 'true'::jsonb DESC NULLS LAST, s.n LIMIT 1)"
        )


POSTGRESQL = PostgresqlDialect()
