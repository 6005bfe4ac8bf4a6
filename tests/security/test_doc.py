"""docs/security.md cannot drift: every row names tests that exist, and the functions table is the code's."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.security.conftest import registered_functions

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "security.md"
TEST_REF = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")


def table_rows(text: str) -> list[list[str]]:
    """The body rows of every markdown table (header and separator rows left out), as lists of cells."""
    rows, previous = [], ""
    for line in text.splitlines():
        if line.startswith("|") and not re.fullmatch(r"\|(?:\s*:?-+:?\s*\|)+", line):
            if previous.startswith("|"):  # a header row is the first of its table
                rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
        previous = line if line.startswith("|") else ""
    return [row for row in rows if not all(re.fullmatch(r":?-+:?", cell) for cell in row)]


def defined_tests(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {node.name for node in tree.body
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test_")}


def assert_rows_name_existing_tests(rows: list[list[str]], test_ref: re.Pattern[str]) -> None:
    """Each row's last column names at least one `path::test`, and each exists."""
    for row in rows:
        refs = test_ref.findall(row[-1])
        assert refs, f"row {row[0]!r} names no test in its last column"
        for path, name in refs:
            assert (ROOT / path).is_file(), f"row {row[0]!r}: {path} does not exist"
            assert name in defined_tests(ROOT / path), f"row {row[0]!r}: {path} has no {name}"


def test_every_row_names_tests_that_exist() -> None:
    rows = table_rows(DOC.read_text())
    assert len(rows) >= 30, "the doc's tables were read"
    assert_rows_name_existing_tests(rows, TEST_REF)


def test_every_security_test_is_named_by_a_row() -> None:
    named = {name for row in table_rows(DOC.read_text()) for _, name in TEST_REF.findall(row[-1])}
    for path in (ROOT / "tests" / "security").glob("test_*.py"):
        if path.name == "test_doc.py":
            continue
        unnamed = defined_tests(path) - named
        assert not unnamed, f"{path.name}: tests no row of docs/security.md names: {sorted(unnamed)}"


def test_function_auth_levels_match_the_doc() -> None:
    in_code = {}
    for function in registered_functions():
        trigger = function.get_trigger()
        if trigger.type == "httpTrigger":
            methods = " ".join(sorted(str(getattr(m, "value", m)) for m in trigger.methods or ()))
            in_code[function.get_function_name()] = (f"http {methods}", f"`{trigger.route}`", trigger.auth_level.name)
        elif trigger.type == "eventGridTrigger":
            in_code[function.get_function_name()] = ("eventGrid", "", "SYSTEM KEY")
    in_doc = {row[0].strip("`"): (row[1], row[2], row[3]) for row in table_rows(DOC.read_text()) if len(row) == 5}
    assert in_doc == in_code
