"""One `python -m local` for the desk's API tests, of their own, so the queue holds only the customers they put in it.

Its data folder is known, so a test can start a second host on the same stores: two instances of the function app
behind one front door, as in Azure, whose writers race through the stores rather than taking turns in one process.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from tests.peers.local_host import LocalHost


@pytest.fixture(scope="session")
def desk_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("desk-data")


@pytest.fixture(scope="session")
def desk_host(local_host_factory: Callable[..., LocalHost], desk_data: Path) -> LocalHost:
    return local_host_factory(SWITCHBOARD_DATA_DIR=str(desk_data))


@pytest.fixture
async def web(desk_host: LocalHost) -> AsyncIterator[httpx.AsyncClient]:
    """A client with no sign-in: a customer's browser, or anyone on the internet."""
    async with httpx.AsyncClient(base_url=desk_host.url, timeout=60) as client:
        yield client
