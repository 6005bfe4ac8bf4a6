"""The local Functions host as a real process, for the tests: the session fixtures around local/host_process.py.

`live_host` is the shared offline instance (a base URL string). Tests that need their own configuration (e.g. with
REDIS_URL) call `local_host_factory(REDIS_URL=...)` and get a `LocalHost` with `.url` and `.stop()`; whatever is
still running at the end of the session is stopped for them. A test host sees only what its test gives it (see
local/host_process.py).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from local.host_process import (  # noqa: F401 - the tests import these names from here
    PROJECT_ROOT,
    START_TIMEOUT,
    STOP_TIMEOUT,
    LocalHost,
    LocalHostFailed,
    host_environ,
    start_local_host,
)


@pytest.fixture(scope="session")
def local_host_factory() -> Iterator[Callable[..., LocalHost]]:
    """`local_host_factory(**env)` starts a host with extra settings; the session stops any left running."""
    started: list[LocalHost] = []
    with tempfile.TemporaryDirectory(prefix="switchboard-host-") as tmp:

        def start(*args: str, **env: str) -> LocalHost:
            try:
                host = start_local_host(Path(tmp) / f"host{len(started)}", tuple(args), **env)
            except LocalHostFailed as exc:
                pytest.fail(str(exc), pytrace=False)
            started.append(host)
            return host

        yield start
        for host in started:
            host.stop()


@pytest.fixture(scope="session")
def live_local_host(local_host_factory: Callable[..., LocalHost]) -> LocalHost:
    """The offline `python -m local` shared by the session (its ACS emulator, where codes go, at `.acs_url`)."""
    return local_host_factory()


@pytest.fixture(scope="session")
def live_host(live_local_host: LocalHost) -> str:
    """Base URL ("http://127.0.0.1:PORT") of an offline `python -m local` shared by the session."""
    return live_local_host.url
