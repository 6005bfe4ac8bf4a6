"""What the host reads from the function app's folder at startup, as Core Tools does: local.settings.json, host.json
and the app module itself.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import sys
from pathlib import Path
from typing import Any, Callable

from azure.functions.decorators.function_app import FunctionRegister

from shared.settings import SettingsError

#: Set to 1 to ignore local.settings.json, so only the environment counts. The test fixtures set it: a developer's
#: own file must not change what the tests run against. It is not a setting itself, since the file cannot switch
#: itself off.
SKIP_LOCAL_SETTINGS = "SWITCHBOARD_SKIP_LOCAL_SETTINGS"


def load_local_settings(root: Path) -> list[str]:
    """Copy `local.settings.json` Values into os.environ, never overriding what the shell already set.

    Returns the keys it set. The real host does the same with Core Tools (docs/protocols.md, "Local settings"). Nothing
    is read when SWITCHBOARD_SKIP_LOCAL_SETTINGS=1.
    """
    skip = os.environ.get(SKIP_LOCAL_SETTINGS, "").strip()
    if skip not in ("", "0", "1"):
        raise SettingsError(f"{SKIP_LOCAL_SETTINGS} must be 1 or 0, not {skip!r}")
    path = root / "local.settings.json"
    if skip == "1" or not path.exists():
        return []
    try:
        values = json.loads(path.read_text(encoding="utf-8")).get("Values") or {}
    except (ValueError, AttributeError) as exc:
        raise SettingsError(f"{path.name} is not a JSON object: {exc}") from None
    if not isinstance(values, dict):
        raise SettingsError(f"{path.name}: Values must be an object of setting names to strings")
    added: list[str] = []
    for key, value in values.items():
        if key not in os.environ:
            os.environ[key] = value if isinstance(value, str) else json.dumps(value)
            added.append(key)
    return added


def read_route_prefix(root: Path) -> str:
    """`extensions.http.routePrefix` from host.json ("api" when absent), with %SETTING% references resolved."""
    path = root / "host.json"
    if not path.exists():
        return "api"
    try:
        prefix = json.loads(path.read_text(encoding="utf-8")).get("extensions", {}).get("http", {}).get("routePrefix")
    except (ValueError, AttributeError) as exc:
        raise SettingsError(f"host.json is not a JSON object with an extensions object: {exc}") from None
    if prefix is None:
        return "api"
    prefix = re.sub(r"%([^%]+)%", lambda m: os.environ.get(m[1], m[0]), str(prefix))
    return prefix.strip("/")


def load_app(spec: str, root: Path) -> tuple[FunctionRegister, Callable[[], Any] | None]:
    """Import `module:attribute` (e.g. "function_app:app") from the project root.

    Returns the app and the module's optional `shutdown()` hook, which stores use to close connections.
    """
    module_name, _, attribute = spec.partition(":")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    module = importlib.import_module(module_name)
    app = getattr(module, attribute or "app")
    shutdown = getattr(module, "shutdown", None)
    return app, shutdown if callable(shutdown) else None
