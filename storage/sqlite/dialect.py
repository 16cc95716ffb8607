"""The filter translator's SQLite dialect: json_extract and json_each over the TEXT document, typeof to
keep JSON numbers apart from strings, LIKE (ASCII case-insensitive by itself) and COLLATE NOCASE."""

from __future__ import annotations

from scim.filters import Compare, Present
from scim.paths import AttrRef
from storage.sql import SQL_OPS, Builder, escape_like, json_keys


def _json_path(keys: list[str]) -> str:
    return ".".join(["$", *(f'"{key}"' if key.startswith("$") or ":" in key else key for key in keys)])


class SqliteDialect:
    creation_order = "t.rowid"

    def param(self, params: list, value: object) -> str:
        params.append(value)
        return "?"

    def json_value(self, ref: AttrRef) -> str:
        return f"json_extract(t.doc, '{_json_path(json_keys(ref, with_sub=True))}')"

    def json_elements(self, ref: AttrRef, alias: str) -> str:
        return f"json_each(t.doc, '{_json_path(json_keys(ref, with_sub=False))}') AS {alias}"

    def element_sub(self, alias: str, sub: str) -> str:
        return f"json_extract({alias}.value, '{_json_path([sub])}')"

    def not_true(self, test: str) -> str:
        return f"({test} IS NOT 1)"

    def leaf(self, builder: Builder, node: Compare | Present, expr: str) -> str:
        leaf = node.ref.leaf
        if isinstance(node, Present):
            if leaf.type == "complex":
                return f"({expr} IS NOT NULL AND {expr} NOT IN ('', '{{}}', '[]'))"
            return f"({expr} IS NOT NULL AND {expr} != '')"
        op, value = node.op, node.value
        if value is None:
            present = self.leaf(builder, Present(node.ref), expr)
            return f"(NOT {present})" if op == "eq" else present
        if op == "ne":
            return f"(NOT coalesce({self.leaf(builder, Compare(node.ref, 'eq', value), expr)}, 0))"
        if leaf.type == "boolean":
            return f"({expr} = {builder.param(1 if value else 0)})"
        if isinstance(value, (int, float)):
            return f"({expr} {SQL_OPS[op]} {builder.param(value)})"
        nocase = not leaf.case_exact
        # A JSON number or boolean is never equal to a string in Python; keep SQL in step.
        text_expr = expr if builder.typed(expr) else f"(CASE WHEN typeof({expr}) = 'text' THEN {expr} END)"
        if op in ("co", "sw", "ew"):
            if nocase:
                pattern = escape_like(value)
                pattern = {"co": f"%{pattern}%", "sw": f"{pattern}%", "ew": f"%{pattern}"}[op]
                return f"({text_expr} LIKE {builder.param(pattern)} ESCAPE '\\')"
            if op == "co":
                return f"(instr({text_expr}, {builder.param(value)}) > 0)"
            if op == "sw":
                return f"(substr({text_expr}, 1, length({builder.param(value)})) = {builder.param(value)})"
            empty, length, suffix = (builder.param(value) for _ in range(3))
            return f"({text_expr} IS NOT NULL AND ({empty} = '' OR substr({text_expr}, -length({length})) = {suffix}))"
        collate = " COLLATE NOCASE" if nocase else ""
        return f"({text_expr}{collate} {SQL_OPS[op]} {builder.param(value)})"

    def sort_key(self, ref: AttrRef, expr: str, typed: bool) -> list[str]:
        return [expr if ref.leaf.case_exact else f"{expr} COLLATE NOCASE"]

    def first_element_sub(self, ref: AttrRef, sub: str) -> str:
        return (
            f"(SELECT {self.element_sub('s', sub)} FROM {self.json_elements(ref, 's')} "
            f"ORDER BY coalesce({self.element_sub('s', 'primary')}, 0) DESC LIMIT 1)"
        )


SQLITE = SqliteDialect()
