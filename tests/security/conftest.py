"""One `python -m local` for the security tests, configured the way Azure checks things where it can be.

The host has a token secret we know (so tests can mint expired, foreign and wrong-audience tokens with the real
signer), requires ACS's callback JWT (ACS_RESOURCE_IMMUTABLE_ID, with the emulator's OpenID endpoint standing in for
ACS's), and logs every request (`--access-log`), so the log test sees what an operator's terminal would.
"""

from __future__ import annotations

import functools
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from local.acs.calls import RESOURCE_ID
from local.acs.oidc import METADATA_PATH
from shared.tokens import TokenSigner
from tests import app_functions
from tests.peers import free_port
from tests.peers.local_host import LocalHost
from tests.waiting import eventually

#: Made per run, so no secret of the test host is ever in the repository.
TOKEN_SECRET = secrets.token_urlsafe(48)


@dataclass
class SecureStack:
    host: LocalHost
    data_dir: Path
    gateway_url: str
    client: httpx.Client
    signer: TokenSigner

    def url(self, path: str) -> str:
        return f"{self.host.url}{path}"

    def acs(self, path: str) -> str:
        return f"{self.host.acs_url}{path}"

    def token(self, audience: str, ttl: float = 600, **claims: Any) -> str:
        """A token signed with the host's secret, exactly as the app would sign it."""
        return self.signer.issue(audience, ttl, **claims)

    def expired(self, audience: str, **claims: Any) -> str:
        past = TokenSigner(TOKEN_SECRET.encode(), clock=lambda: time.time() - 3600)
        return past.issue(audience, 60, **claims)

    def logs(self) -> str:
        return self.host.stdout() + self.host.stderr()


@functools.cache
def registered_functions() -> list[Any]:
    """What function_app registers; the SDK lets an app be asked only once
    (docs/protocols.md, "Function app introspection")."""
    return list(app_functions.registered_functions())


@pytest.fixture(scope="session")
def secure(local_host_factory, tmp_path_factory) -> Iterator[SecureStack]:
    acs_port, gateway_port = free_port(), free_port()
    data_dir = tmp_path_factory.mktemp("security-data")
    host = local_host_factory(
        "--access-log",
        SWITCHBOARD_DATA_DIR=str(data_dir),
        ACS_EMULATOR_PORT=str(acs_port),
        GATEWAY_PORT=str(gateway_port),
        SWITCHBOARD_TOKEN_SECRET=TOKEN_SECRET,
        ACS_RESOURCE_IMMUTABLE_ID=RESOURCE_ID,
        ACS_OPENID_CONFIGURATION_URL=f"http://127.0.0.1:{acs_port}{METADATA_PATH}",
        LOG_LEVEL="INFO",
    )
    gateway_url = f"http://127.0.0.1:{gateway_port}"
    with httpx.Client(timeout=60) as client:
        client.get(f"{host.url}/api/ops/queue").raise_for_status()  # the app seeds its demo customers on first use
        eventually(lambda: _answers(client, f"{gateway_url}/healthz"), timeout=60)  # it starts after the host
        yield SecureStack(host, data_dir, gateway_url, client, TokenSigner(TOKEN_SECRET.encode()))


def _answers(client: httpx.Client, url: str) -> bool:
    try:
        return client.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False
