"""Several gateway worker processes on one replica: `python -m media_gateway` with GATEWAY_WORKERS=2 as a real
process tree on one port, with the null engines (so the calls are cheap) and the embedded stores in a temporary
data dir shared with this test, which opens the voice sessions the way the call function does."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from shared.bootstrap import Services, build_services
from shared.calls import tokens as call_tokens
from shared.calls.tokens import MEDIA_AUDIENCE
from shared.models import Channel, Identity, IdentityKind, new_id
from shared.settings import PROJECT_ROOT, SETTINGS, Settings
from tests.media_gateway.caller import AcsCaller
from tests.peers import free_port

CALLS = 12  # spread over two workers by the kernel: all on one would be a 1 in 2048 chance


@dataclass
class Replica:
    url: str
    process: subprocess.Popen[bytes]
    services: Services

    async def open_call(self, number: int) -> str:
        customer, _ = await self.services.customers.get_or_create(Identity(IdentityKind.PHONE, f"+1555640{number:04d}"))
        session_id, call_id = new_id("voice"), new_id("call")
        await self.services.conversation.open(Channel.VOICE, session_id, customer.customer_id)
        token = call_tokens.issue(self.services.tokens, self.services.settings, MEDIA_AUDIENCE,
                                  call=call_id, sid=session_id, cid=customer.customer_id)
        return f"{self.url}/media?token={token}"

    async def stats(self, http: aiohttp.ClientSession) -> dict:
        async with http.get(f"{self.url}/stats") as response:
            assert response.status == 200
            return await response.json()


@pytest.fixture
async def replica(tmp_path: Path) -> AsyncIterator[Replica]:
    port, data_dir = free_port(), tmp_path / "data"
    env = {key: value for key, value in os.environ.items() if key not in SETTINGS}
    env.update(GATEWAY_PORT=str(port), GATEWAY_WORKERS="2", SWITCHBOARD_DATA_DIR=str(data_dir),
               SWITCHBOARD_POLICY="offline", SWITCHBOARD_SKIP_LOCAL_SETTINGS="1", PYTHONUNBUFFERED="1")
    log = open(tmp_path / "gateway.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen([sys.executable, "-m", "media_gateway", "--engines", "null"], cwd=PROJECT_ROOT,
                               env=env, stdout=log, stderr=subprocess.STDOUT)
    services = await build_services(Settings.from_env({"SWITCHBOARD_DATA_DIR": str(data_dir),
                                                       "SWITCHBOARD_POLICY": "offline"}))
    running = Replica(f"http://127.0.0.1:{port}", process, services)
    try:
        async with aiohttp.ClientSession() as http:
            await _until(lambda: _both_warm(http, running), timeout=60, what="two warm workers")
        yield running
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise AssertionError("the supervisor did not stop on SIGTERM") from None
        finally:
            log.close()
            await services.close()
        assert process.returncode == 0, (tmp_path / "gateway.log").read_text()[-3000:]


async def _both_warm(http: aiohttp.ClientSession, replica: Replica) -> bool:
    try:
        stats = await replica.stats(http)
    except aiohttp.ClientError:
        return False
    return len(stats["workers"]) == 2 and all(worker["up"] for worker in stats["workers"])


async def _until(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"no {what} within {timeout:.0f} s")


async def test_calls_spread_over_the_workers_and_stats_add_them_up(replica: Replica) -> None:
    async with aiohttp.ClientSession() as http:
        callers = [await AcsCaller.connect(http, await replica.open_call(i)) for i in range(CALLS)]
        for caller in callers:
            await caller.wait_audio(time.monotonic() - 5, timeout=15)  # every caller hears its greeting
        stats = await replica.stats(http)
        workers = stats["workers"]
        assert [w["index"] for w in workers] == [0, 1] and len({w["pid"] for w in workers}) == 2
        assert all(w["calls_active"] > 0 for w in workers), workers  # both carry calls
        assert stats["calls"]["active"] == sum(w["calls_active"] for w in workers) == CALLS
        assert stats["frames_sent"] == sum(w["frames_sent"] for w in workers) > 0
        assert stats["frame_lateness_ms"]["frames"] == sum(int(n) for n in stats["frame_lateness_buckets"].values())
        for caller in callers:
            await caller.close()


async def test_a_killed_workers_calls_end_and_stay_refused_while_the_others_go_on(replica: Replica) -> None:
    async with aiohttp.ClientSession() as http:
        urls = [await replica.open_call(100 + i) for i in range(CALLS)]
        callers = [await AcsCaller.connect(http, url) for url in urls]
        for caller in callers:
            await caller.wait_audio(time.monotonic() - 5, timeout=15)
        victim = max((await replica.stats(http))["workers"], key=lambda w: w["calls_active"])
        os.kill(victim["pid"], signal.SIGKILL)

        await asyncio.sleep(2.0)
        lost = [caller for caller in callers if caller.closed.is_set()]
        kept = [caller for caller in callers if not caller.closed.is_set()]
        assert len(lost) == victim["calls_active"] and kept, (len(lost), victim)
        since = time.monotonic()
        for caller in kept:  # the other worker's callers still hear their call
            await caller.wait_audio(since, timeout=10)
        # ACS reconnecting a lost call to the replica finds it ended: its socket was taken once, and stays taken.
        url = urls[callers.index(lost[0])]
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(url)
        assert refused.value.status == 409

        # The supervisor starts another worker in its place; /stats counts the replica's calls again.
        async def replaced() -> bool:
            stats = await replica.stats(http)
            return (all(w["up"] for w in stats["workers"]) and victim["pid"] not in {w["pid"] for w in stats["workers"]}
                    and stats["calls"]["active"] == len(kept))

        await _until(replaced, timeout=60, what="replacement worker")
        newcomers = [await AcsCaller.connect(http, await replica.open_call(200 + i)) for i in range(4)]
        for caller in newcomers:
            await caller.wait_audio(time.monotonic() - 5, timeout=15)
        for caller in kept + newcomers:
            await caller.close()
