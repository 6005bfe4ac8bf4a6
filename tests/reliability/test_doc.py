"""docs/reliability.md cannot drift: every row of its defects table names tests, and every one of them exists."""

from __future__ import annotations

import re
from pathlib import Path

from tests.security.test_doc import defined_tests, table_rows

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "reliability.md"
TEST_REF = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")


def test_every_defect_row_names_tests_that_exist() -> None:
    rows = table_rows(DOC.read_text())
    assert len(rows) >= 13, "the defects table was read"
    for row in rows:
        refs = TEST_REF.findall(row[-1])
        assert refs, f"row {row[0]!r} names no test"
        for path, name in refs:
            assert (ROOT / path).is_file(), f"row {row[0]!r}: {path} does not exist"
            assert name in defined_tests(ROOT / path), f"row {row[0]!r}: {path} has no {name}"
