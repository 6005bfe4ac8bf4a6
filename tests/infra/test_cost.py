"""docs/cost.md adds up: every figure is recomputed from the prices and assumptions the document states.

The document's tables follow three shapes this test reads:

* `| key | value | ... |`: a price or an assumption, named by the backticked key in the first column;
* tables with `formula` columns: each formula (backticked arithmetic over the keys) must give the figure in the
  column right after it, to the decimals shown; a `**Total**` row must be the sum of the rows above it;
* `<!-- cost-table: name -->` before a table names its total, which later formulas may use.
"""

from __future__ import annotations

import ast
import operator
import re
from decimal import Decimal
from pathlib import Path

import pytest

COST_MD = Path(__file__).resolve().parents[2] / "docs" / "cost.md"

_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


def evaluate(formula: str, names: dict[str, float]) -> float:
    """Arithmetic (+ - * / and parentheses) over numbers and known names; anything else is an error."""

    def walk(node: ast.AST) -> float:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return float(node.value)
        if isinstance(node, ast.Name):
            if node.id not in names:
                raise KeyError(f"{node.id!r} is neither a stated price, an assumption nor an earlier table")
            return names[node.id]
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](walk(node.left), walk(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -walk(node.operand)
        raise ValueError(f"not plain arithmetic: {ast.unparse(node)}")

    return walk(ast.parse(formula, mode="eval"))


def tables(text: str) -> list[tuple[str | None, list[str], list[list[str]]]]:
    """(name from a preceding cost-table comment, header cells, rows) for every Markdown table."""
    found = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("|") and i + 1 < len(lines) and re.match(r"^\|[\s:|-]+\|$", lines[i + 1]):
            name = None
            for back in range(i - 1, max(-1, i - 4), -1):
                if m := re.match(r"<!-- cost-table: (\w+) -->", lines[back].strip()):
                    name = m.group(1)
                    break
            header = cells(lines[i])
            rows = []
            i += 2
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(cells(lines[i]))
                i += 1
            found.append((name, header, rows))
        else:
            i += 1
    return found


def cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def number(cell: str) -> tuple[float, int]:
    """A figure as shown ('**$1,234.50**', '0.0418') and its number of decimals."""
    raw = re.sub(r"[*$,\s]", "", cell)
    if not re.fullmatch(r"-?\d+(\.\d+)?", raw):
        raise ValueError(f"not a figure: {cell!r}")
    return float(raw), -Decimal(raw).as_tuple().exponent if "." in raw else 0


def matches(computed: float, cell: str) -> bool:
    shown, decimals = number(cell)
    return abs(computed - shown) <= 0.5 * 10**-decimals + 1e-12


def backticked(cell: str) -> str | None:
    m = re.fullmatch(r"`([^`]+)`", cell)
    return m.group(1) if m else None


def check_document(text: str) -> tuple[dict[str, float], int]:
    """Recompute every formula table; return the names known at the end and how many figures were checked."""
    names: dict[str, float] = {}
    checked = 0
    for name, header, rows in tables(text):
        if header and header[0].lower() == "key":
            for row in rows:
                key = backticked(row[0])
                assert key, f"a key must be backticked: {row}"
                assert key not in names, f"{key} is defined twice"
                names[key] = number(row[1])[0]
            continue
        formula_columns = [i for i, h in enumerate(header) if "formula" in h.lower()]
        if not formula_columns:
            continue
        totals = {i: 0.0 for i in formula_columns}
        for row in rows:
            is_total = row[0].strip("* ").lower() == "total"
            for col in formula_columns:
                figure = row[col + 1]
                if is_total:
                    assert matches(totals[col], figure), f"{name or header}: total is {totals[col]:.6f}, shown {figure}"
                    checked += 1
                    continue
                formula = backticked(row[col])
                if formula is None:
                    assert not row[col] and not figure.strip(" -"), f"{row[0]}: a figure without a formula"
                    continue
                value = evaluate(formula, names)
                assert matches(value, figure), f"{row[0]}: `{formula}` = {value:.6f}, shown {figure}"
                totals[col] += value
                checked += 1
        if name:
            assert len(formula_columns) == 1, f"{name}: a named table has one formula column"
            names[name] = totals[formula_columns[0]]
    return names, checked


def test_every_figure_in_the_cost_model_follows_from_its_stated_prices() -> None:
    names, checked = check_document(COST_MD.read_text())
    assert checked >= 40, f"only {checked} figures were checked: is the table format still the one this test reads?"
    for table in ("floor_per_use", "floor_always_on", "call_minute", "whatsapp_conversation", "webchat_turn"):
        assert table in names, f"docs/cost.md has no `<!-- cost-table: {table} -->` table"


def test_prices_carry_a_source_and_a_date() -> None:
    for name, header, rows in tables(COST_MD.read_text()):
        if header and header[0].lower() == "key" and any("source" in h.lower() for h in header):
            source = next(i for i, h in enumerate(header) if "source" in h.lower())
            for row in rows:
                assert re.search(r"20\d\d-\d\d", row[source]), f"{row[0]}: the source needs a date: {row[source]!r}"


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("| key | value |\n|---|---|\n| `p` | 2 |\n\n| item | formula | $ |\n|---|---|---|\n| a | `p * 3` | 7 |\n", "shown 7"),
        ("| key | value |\n|---|---|\n| `p` | 2 |\n\n| item | formula | $ |\n|---|---|---|\n| a | `p * 3` | 6 |\n"
         "| **Total** | | **7** |\n", "total"),
        ("| item | formula | $ |\n|---|---|---|\n| a | `q * 3` | 6 |\n", "neither a stated price"),
        ("| item | formula | $ |\n|---|---|---|\n| a | `__import__('os')` | 6 |\n", "not plain arithmetic"),
    ],
)
def test_the_checker_catches_a_wrong_figure(text: str, error: str) -> None:
    with pytest.raises((AssertionError, KeyError, ValueError), match=error):
        check_document(text)
