"""Settings, read once from the environment (Azure app settings, local.settings.json Values, or the shell).

One typed model (shared/settings_model.py, on pydantic-settings) declares each setting's key, default, bounds and
help text. Every default keeps the embedded, offline stack working; each Azure setting switches one adapter to the
real service. A value that cannot be used (a word for a number, `nan`, a negative timeout, an unknown choice) is
refused with its key. The README's configuration table is generated from the model
(`python -m shared.settings --readme`; a test fails when they differ).

This module is light on purpose: `Settings`, `SETTINGS` and `readme_table` are loaded from the model on first use.
The function app builds its settings with its services, on the first request, so pydantic is not imported while the
host loads the app (bench/cold_start.py); code on that path imports `Settings` inside functions, or for type checking.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class SettingsError(ValueError):
    """A setting has a value we cannot use; the message names the key."""


if TYPE_CHECKING:
    from shared.settings_model import SETTINGS, Settings, readme_table

_FROM_MODEL = ("Settings", "SETTINGS", "readme_table")


def __getattr__(name: str) -> Any:
    if name in _FROM_MODEL:
        from shared import settings_model

        return getattr(settings_model, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["PROJECT_ROOT", "SETTINGS", "Settings", "SettingsError", "readme_table"]

if __name__ == "__main__":  # python -m shared.settings --readme
    if sys.argv[1:] != ["--readme"]:
        sys.exit("usage: python -m shared.settings --readme   (prints the README's configuration table)")
    from shared.settings_model import readme_table as table

    sys.stdout.write(table())
