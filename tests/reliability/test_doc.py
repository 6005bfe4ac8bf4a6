"""docs/reliability.md cannot drift: every row of its defects table names tests, and every one of them exists."""

from __future__ import annotations

import re
from pathlib import Path

from tests.security.test_doc import assert_rows_name_existing_tests, table_rows

DOC = Path(__file__).resolve().parents[2] / "docs" / "reliability.md"
TEST_REF = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")


def test_every_defect_row_names_tests_that_exist() -> None:
    rows = table_rows(DOC.read_text())
    assert len(rows) >= 13, "the defects table was read"
    assert_rows_name_existing_tests(rows, TEST_REF)
