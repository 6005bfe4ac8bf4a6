"""docs/scenarios.md says what the scenario models accept: its key tables are generated from them."""

from __future__ import annotations

from shared import scenario_schema
from shared.settings import PROJECT_ROOT

DOC = PROJECT_ROOT / "docs" / "scenarios.md"


def test_the_key_tables_match_the_models() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert scenario_schema.render_docs(text) == text, (
        "docs/scenarios.md differs from shared/scenario_schema.py: run `python -m shared.scenario_schema`")


def test_every_section_of_the_file_has_its_table() -> None:
    text = DOC.read_text(encoding="utf-8")
    sections = set(scenario_schema.Section.__subclasses__())
    assert sections == set(scenario_schema.DOCUMENTED)
    missing = [model.__name__ for model in sections if f"<!-- keys: {model.__name__} -->" not in text]
    assert not missing, f"docs/scenarios.md has no table for {missing}"


def test_a_table_names_each_key_with_its_bounds_and_default() -> None:
    rows = scenario_schema.table(scenario_schema.VerificationRules).splitlines()
    assert "| `code_length` | whole number, 4 to 10 | 6 | the one-time code's digits |" in rows
    assert rows[2].startswith("| `methods` | list of `code`, `knowledge`, at least 1 | `[code]` |")
