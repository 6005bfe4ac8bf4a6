"""The local Durable Functions engine: the part of the Durable extension that `function_app.py` needs off Azure.

`DurableExtension` plugs into the local host (`Host(app, extensions=[DurableExtension(path)])`): it adopts the
orchestration and activity functions, supplies the `durableClient` binding, serves the Durable HTTP API the SDK's
client calls, and runs orchestrations by replaying their history through the SDK's own orchestrator entry point.
State lives in SQLite, so orchestrations survive a restart.

Modules: `history` (DTFx events, the context JSON), `replay` (one episode: ids, actions, outcome), `store` (SQLite),
`engine` (the dispatcher and activities), `api` (HTTP routes), `clock` (real or hand-driven time).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from azure.functions.decorators.core import Binding

from local.durable.api import DurableApi
from local.durable.clock import Clock, ManualClock, ScaledClock, SystemClock, clock_from_environment
from local.durable.engine import OVERRIDABLE_STATES, Engine

if TYPE_CHECKING:
    from aiohttp import web

    from local.host import Host, Invocation

__all__ = [
    "DEFAULT_TASK_HUB",
    "DurableExtension",
    "ManualClock",
    "ScaledClock",
    "SystemClock",
    "read_overridable_states",
    "read_task_hub",
]

#: Core Tools' hub name when host.json names none (or names an app setting that is not set).
DEFAULT_TASK_HUB = "TestHubName"
DATABASE_NAME = "durable.sqlite3"


class DurableExtension:
    """The host extension. `path` is the SQLite file (`SWITCHBOARD_DATA_DIR/durable.sqlite3` under `python -m local`).

    Tests pass `clock=ManualClock()` and move time with `clock.advance(...)`; `await extension.engine.idle()`
    waits until everything due has been applied. Without a clock, the engine runs on the wall clock, or faster when
    LOCAL_DURABLE_TIME_SCALE says so (see `clock_from_environment`). `overridable` is host.json's
    overridableExistingInstanceStates (`read_overridable_states`).
    """

    def __init__(
        self,
        path: Path,
        *,
        task_hub: str = DEFAULT_TASK_HUB,
        clock: Clock | None = None,
        overridable: str = "NonRunningStates",
    ) -> None:
        self.path = path
        self.task_hub = task_hub
        self.clock = clock or clock_from_environment()
        self.overridable = overridable
        self._host: Host | None = None
        self._engine: Engine | None = None
        self._api: DurableApi | None = None

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            raise RuntimeError("install the extension in a Host first")
        return self._engine

    def install(self, host: Host) -> None:
        self._host = host
        self._engine = Engine(self.path, host, self.clock, overridable=self.overridable)
        self._api = DurableApi(self._engine, self.task_hub)
        host.add_trigger_handler("orchestrationTrigger", self._engine.add_orchestrator)
        host.add_trigger_handler("activityTrigger", self._engine.add_activity)
        host.add_input_provider("durableClient", self._client_binding)
        self._api.add_routes(host.web.router)
        host.web.on_startup.append(self._on_startup)
        host.web.on_cleanup.append(self._on_cleanup)

    async def _client_binding(self, binding: Binding, invocation: Invocation) -> str:
        assert self._api is not None and self._host is not None
        # The RPC base is the host itself; management links use the caller's origin, as the extension's do.
        return self._api.binding(self._host.url)

    async def _on_startup(self, app: web.Application) -> None:
        await self.engine.start()

    async def _on_cleanup(self, app: web.Application) -> None:
        await self.engine.stop()


def read_task_hub(root: Path) -> str:
    """`extensions.durableTask.hubName` from host.json with %SETTING% resolved, else Core Tools' default."""
    try:
        name = str(_durable_task_section(root)["hubName"])
    except (OSError, ValueError, KeyError, TypeError):
        return DEFAULT_TASK_HUB
    name = re.sub(r"%([^%]+)%", lambda m: os.environ.get(m[1], ""), name).strip()
    return name or DEFAULT_TASK_HUB


def read_overridable_states(root: Path) -> str:
    """`extensions.durableTask.overridableExistingInstanceStates` from host.json, else the extension's default
    (NonRunningStates). Matched without regard to case, as .NET binds an enum; any other value fails the start, as
    the Functions host fails to bind the options."""
    try:
        value = _durable_task_section(root).get("overridableExistingInstanceStates")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return "NonRunningStates"
    if value is None:
        return "NonRunningStates"
    for state in OVERRIDABLE_STATES:
        if str(value).lower() == state.lower():
            return state
    raise ValueError(
        f"host.json: overridableExistingInstanceStates is {value!r}; it must be one of {', '.join(OVERRIDABLE_STATES)}"
    )


def _durable_task_section(root: Path) -> dict:
    config = json.loads((root / "host.json").read_text(encoding="utf-8"))
    return config["extensions"]["durableTask"]
