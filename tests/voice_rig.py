"""The running systems the call tests set up: `python -m local` with its real media gateway warm (the voice tests,
with the phone simulator's engines), or with the scripted gateway peer at the end of the media WebSocket."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TypeVar

import httpx
import pytest

from local.phone import Dialogue, Engines, Line, converse
from shared.models import Customer
from tests.calls.gateway_peer import FakeGateway
from tests.e2e.test_calls import ACCESS_KEY, SECRET, System
from tests.peers import free_port
from tests.peers.host_records import customer_by_phone
from tests.peers.local_host import LocalHost

GATEWAY_WARM_SECONDS = 90


def wait_warm(gateway_url: str, seconds: float = GATEWAY_WARM_SECONDS) -> None:
    """Until the gateway's /healthz says its speech engines are loaded, so no turn is timed with a cold model."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{gateway_url}/healthz", timeout=2) as response:
                if json.loads(response.read())["engines"].get("warm"):
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError, KeyError, ValueError):
            pass
        time.sleep(0.2)
    pytest.fail(f"the media gateway at {gateway_url} did not load its speech engines", pytrace=False)


async def warm_voice_host(local_host_factory: Callable[..., LocalHost], *, need_voice: bool = True,
                          warm_seconds: float = GATEWAY_WARM_SECONDS, **settings: str) -> tuple[LocalHost, Engines]:
    """`python -m local` with its media gateway's speech engines loaded, and the phone simulator's engines (piper
    too with `need_voice`, to speak; faster-whisper always, to hear), both loaded at once."""
    gateway_port = free_port()
    host = await asyncio.to_thread(local_host_factory, GATEWAY_PORT=str(gateway_port), GATEWAY_PRELOAD_MODELS="true",
                                   **settings)
    engines = Engines(transcribe=True)
    await asyncio.gather(asyncio.to_thread(engines.load, need_voice),
                         asyncio.to_thread(wait_warm, f"http://127.0.0.1:{gateway_port}", warm_seconds))
    return host, engines


@asynccontextmanager
async def gateway_peer_system(local_host_factory: Callable[..., LocalHost], data_dir: Path) -> AsyncIterator[System]:
    """`python -m local` streaming calls to the scripted media gateway peer (tests/calls/gateway_peer.py: a fake at
    the network boundary), with the call tests' token secret and ACS key; both stopped after the block."""
    gateway = FakeGateway(SECRET)
    await gateway.start()
    host = await asyncio.to_thread(
        local_host_factory, SWITCHBOARD_TOKEN_SECRET=SECRET.decode(), SWITCHBOARD_DATA_DIR=str(data_dir),
        ACS_ACCESS_KEY=ACCESS_KEY, GATEWAY_PORT=str(free_port()), GATEWAY_PUBLIC_URL=gateway.url,
    )
    system = System(host, gateway, data_dir)
    yield system
    await system.close()
    await gateway.stop()


class VoiceLine:
    """`python -m local` with its warm media gateway, the phone simulator's engines, and clients for the emulator
    and the app: what a voice test calls through and reads from."""

    def __init__(self, host: LocalHost, data_dir: Path, engines: Engines) -> None:
        self.host, self.data_dir, self.engines = host, data_dir, engines
        self.acs = httpx.AsyncClient(base_url=host.acs_url, timeout=20)
        self.app = httpx.AsyncClient(base_url=host.url, timeout=60)

    async def converse(self, caller: str, lines: list[Line], timeout: float) -> Dialogue:
        """Call the agent from `caller` and say (or key) each line after its answer, as `python -m local.phone`
        does with a patient speaker (1.2 s of silence ends the agent's turn)."""
        args = argparse.Namespace(
            emulator=self.host.acs_url, caller=caller, lines=lines, barge_after=1.5, quiet_ms=1200,
            reply_timeout=25.0, answer_timeout=15.0, transcribe=True,
        )
        return await asyncio.wait_for(converse(args, self.engines), timeout=timeout)

    async def record(self, phone: str) -> Customer:
        customer = await customer_by_phone(self.data_dir, phone)
        assert customer is not None
        return customer

    async def close(self) -> None:
        await self.acs.aclose()
        await self.app.aclose()


Line_ = TypeVar("Line_", bound=VoiceLine)


@asynccontextmanager
async def voice_line(local_host_factory: Callable[..., LocalHost], data_dir: Path,
                     kind: type[Line_]) -> AsyncIterator[Line_]:
    """A `kind` of VoiceLine on a warm voice host keeping its record under `data_dir`, closed after the block."""
    host, engines = await warm_voice_host(local_host_factory, SWITCHBOARD_DATA_DIR=str(data_dir))
    line = kind(host, data_dir, engines)
    yield line
    await line.close()
