"""Real local peers the tests talk to (Redis, the Cosmos emulator, the local Functions host).

Each module is a pytest plugin exposing session-scoped fixtures. When a peer cannot be started here, the test
is skipped with a sentence saying what is missing, except in CI (CI=true), where a missing peer is a failure.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from local.host_process import free_port  # noqa: F401 - the tests import it from here


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unavailable(reason: str) -> None:
    """Skip locally, fail in CI: a test that needs a server must run there."""
    if in_ci():
        pytest.fail(f"CI=true and a required test peer is missing: {reason}", pytrace=False)
    pytest.skip(reason)


@contextlib.asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[str]:
    """Serve an aiohttp app on a free loopback port for the block; yields its base URL."""
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
