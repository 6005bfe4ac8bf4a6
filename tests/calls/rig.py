"""A call service on real peers, with the store boundary made hostile on purpose.

`call_rig` runs the ACS emulator in this process (its Call Automation API, HMAC-checked, answered by the real ACS
SDK through AcsCallControl), and builds the app's services as the Functions host does, on a SQLite or Redis
SessionState wrapped by the test:

* `SlowState` sleeps a random few milliseconds around every read and write, as a busy network does, so handlers that
  read and then write interleave the way two instances would. The product's atomic operations (merge, mark) are
  slowed too, but stay atomic: the adapter under them does the work.
* `FailingState` raises Unavailable on the operations a test names, as Redis does during an outage.

Nothing of ours is patched: the wrappers are SessionState adapters, and the events are ACS's wire format parsed by
shared/calls/events.py. The emulator's own callbacks go nowhere (the app's public URL is a closed port); tests post
the callbacks themselves, concurrently, through `CallService.on_callbacks` as the callback route does.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from functions.api.calls import parse_callbacks
from local.acs.calls import CallsApi
from local.acs.phones import TRANSFER_RING_SECONDS
from local.acs.server import AcsEmulator, EmulatorService
from shared.bootstrap import Services, build_services
from shared.calls.events import CallEvent, IncomingCall, parse_incoming_call
from shared.calls.service import CallRef, CallService
from shared.errors import Unavailable
from shared.conversation import Conversation
from shared.desk import Desk
from shared.queue import MAX_WAIT_SECONDS, QueueMetrics
from shared.settings import Settings
from shared.stores.base import SessionState
from tests.peers import free_port

ACCESS_KEY = "c2VjcmV0LWtleS1mb3ItdGhlLWNhbGxzLXRlc3RzLTEyMzQ1Njc4OTA="
JORDAN = "+15555550100"
ESCALATION = "+15555550199"  # scenarios/utilities/scenario.yaml


class WrappedState(SessionState):
    """Every call goes to the adapter underneath, after `_before(operation, key)`, which subclasses fill in."""

    def __init__(self, inner: SessionState) -> None:
        self.inner = inner

    async def _before(self, operation: str, key: str) -> None:
        pass

    async def get(self, key: str) -> dict[str, Any] | None:
        await self._before("get", key)
        return await self.inner.get(key)

    async def put(self, key: str, value: dict[str, Any], ttl_seconds: float) -> None:
        await self._before("put", key)
        await self.inner.put(key, value, ttl_seconds)

    async def delete(self, key: str) -> None:
        await self._before("delete", key)
        await self.inner.delete(key)

    async def mark_processed(self, event_id: str, ttl_seconds: float) -> bool:
        await self._before("mark_processed", event_id)
        return await self.inner.mark_processed(event_id, ttl_seconds)

    async def release_processed(self, event_id: str) -> None:
        await self._before("release_processed", event_id)
        await self.inner.release_processed(event_id)

    async def increment(self, key: str, amount: int = 1) -> int:
        await self._before("increment", key)
        return await self.inner.increment(key, amount)

    async def set_counter(self, key: str, value: int) -> None:
        await self._before("set_counter", key)
        await self.inner.set_counter(key, value)

    async def counter(self, key: str) -> int:
        await self._before("counter", key)
        return await self.inner.counter(key)

    async def merge(self, key: str, changes: dict[str, Any], ttl_seconds: float) -> dict[str, Any]:
        await self._before("merge", key)
        return await self.inner.merge(key, changes, ttl_seconds)

    async def acquire_lease(self, key: str, ttl_seconds: float) -> int | None:
        await self._before("acquire_lease", key)
        return await self.inner.acquire_lease(key, ttl_seconds)

    async def renew_lease(self, key: str, token: int, ttl_seconds: float) -> bool:
        await self._before("renew_lease", key)
        return await self.inner.renew_lease(key, token, ttl_seconds)

    async def release_lease(self, key: str, token: int) -> None:
        await self._before("release_lease", key)
        await self.inner.release_lease(key, token)

    async def hit(self, key: str, window_seconds: float) -> int:
        await self._before("hit", key)
        return await self.inner.hit(key, window_seconds)

    async def add_member(self, key: str, member: str, ttl_seconds: float) -> None:
        await self._before("add_member", key)
        await self.inner.add_member(key, member, ttl_seconds)

    async def remove_member(self, key: str, member: str) -> bool:
        await self._before("remove_member", key)
        return await self.inner.remove_member(key, member)

    async def count_members(self, key: str) -> int:
        await self._before("count_members", key)
        return await self.inner.count_members(key)

    async def members(self, key: str) -> list[str]:
        await self._before("members", key)
        return await self.inner.members(key)

    async def close(self) -> None:
        await self.inner.close()


class SlowState(WrappedState):
    """A random delay (up to `max_delay` seconds) after each read and before and after each write."""

    def __init__(self, inner: SessionState, max_delay: float = 0.02) -> None:
        super().__init__(inner)
        self.max_delay = max_delay

    async def _pause(self) -> None:
        await asyncio.sleep(random.uniform(0, self.max_delay))

    async def get(self, key: str) -> dict[str, Any] | None:
        value = await self.inner.get(key)
        await self._pause()  # the reply is on its way back while another writer goes ahead
        return value

    async def put(self, key: str, value: dict[str, Any], ttl_seconds: float) -> None:
        await self._pause()
        await self.inner.put(key, value, ttl_seconds)

    async def merge(self, key: str, changes: dict[str, Any], ttl_seconds: float) -> dict[str, Any]:
        await self._pause()
        merged = await self.inner.merge(key, changes, ttl_seconds)
        await self._pause()
        return merged


class FailingState(WrappedState):
    """Raises Unavailable, as a store outage does, on the calls `fails(operation, key)` picks; or, where `hangs` picks,
    never returns, as a process killed mid-request never does: what it claimed stays claimed."""

    def __init__(self, inner: SessionState) -> None:
        super().__init__(inner)
        self.fails: Callable[[str, str], bool] = lambda operation, key: False
        self.hangs: Callable[[str, str], bool] = lambda operation, key: False
        self.failures: list[tuple[str, str]] = []

    async def _before(self, operation: str, key: str) -> None:
        if self.hangs(operation, key):
            await asyncio.Event().wait()
        if self.fails(operation, key):
            self.failures.append((operation, key))
            raise Unavailable(f"injected outage: {operation} {key}", retry_after=0.1)


class FailingCustomers:
    """The customer store, failing as a store outage does on the public operations `fails(operation)` picks.

    A proxy at the store's public surface rather than a subclass: the adapter underneath is the real one."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.fails: Callable[[str], bool] = lambda operation: False

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.inner, name)
        if not callable(attribute):
            return attribute

        async def call(*args: Any, **kwargs: Any) -> Any:
            if self.fails(name):
                raise Unavailable(f"injected customer store outage: {name}", retry_after=0.1)
            return await attribute(*args, **kwargs)

        return call


@dataclass
class CallRig:
    services: Services
    calls: CallService
    acs: httpx.AsyncClient  # the emulator's driver surface
    customers: FailingCustomers

    async def ring(self, caller: str | None = JORDAN) -> tuple[IncomingCall, dict[str, Any]]:
        """A call rings at the emulator; returns the IncomingCall the app would get, and the Event Grid event."""
        response = await self.acs.post("/_emulator/calls", json={"from": caller, "deliver": False})
        assert response.status_code == 201, response.text
        event = response.json()["event"]
        return parse_incoming_call(event["id"], event["data"]), event

    async def emulated(self, call_id: str) -> dict[str, Any]:
        response = await self.acs.get(f"/_emulator/calls/{call_id}")
        assert response.status_code == 200, response.text
        return response.json()

    async def ref(self, call_id: str) -> CallRef:
        record = await self.calls.call(call_id)
        return CallRef(call_id, record["session_id"], record["customer_id"])


def callback(call_id: str, connection_id: str, event_type: str, **data: Any) -> CallEvent:
    """One Call Automation callback as ACS posts it, parsed as the callback route parses it."""
    body = [{
        "id": str(uuid.uuid4()), "source": f"calling/callConnections/{connection_id}",
        "type": f"Microsoft.Communication.{event_type}", "specversion": "1.0", "time": "2026-01-01T00:00:00Z",
        "data": {"callConnectionId": connection_id, "correlationId": call_id,
                 "resultInformation": {"code": 200, "subCode": 0, "message": "ok"}, **data},
    }]
    return parse_callbacks(json.dumps(body).encode())[0]


@contextlib.asynccontextmanager
async def call_rig(
    data_dir: Path, wrap: Callable[[SessionState], SessionState], state: SessionState | None = None, *,
    max_wait_seconds: float = MAX_WAIT_SECONDS, claim_ttl_seconds: float | None = None,
    transfer_ring_seconds: float = TRANSFER_RING_SECONDS,
) -> AsyncIterator[CallRig]:
    """The rig on `state` (default: the embedded SQLite state in `data_dir`) wrapped by `wrap`; the queue counts a
    call waiting for at most `max_wait_seconds`, a delivery's claim lasts `claim_ttl_seconds` if given, and a
    transferred call rings a person's phone for `transfer_ring_seconds`."""
    emulator = EmulatorService(
        AcsEmulator(access_key=ACCESS_KEY, functions_url=f"http://127.0.0.1:{free_port()}",
                    modules=[CallsApi(sign_callbacks=False, transfer_ring_seconds=transfer_ring_seconds)]),
        free_port(),
    )
    await emulator.start()
    settings = Settings.from_env({
        "SWITCHBOARD_DATA_DIR": str(data_dir), "SWITCHBOARD_TOKEN_SECRET": "call-rig-secret-" + "x" * 40,
        "ACS_ENDPOINT": emulator.url, "ACS_ACCESS_KEY": ACCESS_KEY, "SESSION_STATE": "sqlite",
        "SWITCHBOARD_PUBLIC_URL": f"http://127.0.0.1:{free_port()}",
        "GATEWAY_PUBLIC_URL": f"ws://127.0.0.1:{free_port()}",
    })
    services = await build_services(settings)
    wrapped = wrap(state or services.state)
    customers = FailingCustomers(services.customers)
    desk = Desk(services.scenario, customers, wrapped)  # type: ignore[arg-type]
    queue = QueueMetrics(wrapped, max_wait_seconds=max_wait_seconds, desk=desk)
    conversation = Conversation(services.scenario, customers, wrapped, services.policy, queue=queue,  # type: ignore[arg-type]
                                desk=desk, session_ttl_seconds=settings.session_ttl_seconds)  # as bootstrap builds it
    rigged = dataclasses.replace(services, state=wrapped, queue=queue, conversation=conversation, customers=customers,
                                 desk=desk)
    claim = {} if claim_ttl_seconds is None else {"claim_ttl_seconds": claim_ttl_seconds}
    acs = httpx.AsyncClient(base_url=emulator.url, timeout=20)
    try:
        yield CallRig(rigged, CallService(rigged, **claim), acs, customers)
    finally:
        await acs.aclose()
        await services.close()  # the real stores underneath the wrappers
        if state is not None:
            await state.close()
        await emulator.stop()


async def eventually(check: Callable[[], Any], timeout: float = 10.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while not (result := await check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)
    return result
