"""SessionState contract: in-process, Redis and Cosmos (on the emulator) must behave the same to their callers.

The last sections test what only one adapter must do: Redis turning an outage into Unavailable and recovering, the
in-process store not growing without bound.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest

from shared.errors import Unavailable
from shared.stores import SessionState
from shared.stores.azure_cosmos_state import CosmosSessionState
from shared.stores.azure_redis import RedisSessionState
from shared.stores.embedded_sqlite_state import SqliteSessionState
from shared.stores.embedded_state import InProcessSessionState
from tests.peers.cosmos_emulator import CosmosEmulator
from tests.peers.redis_server import RedisServer

SHORT_TTL = 0.3  # seconds; long enough to read back at once, short enough to wait out


@pytest.fixture
async def memory_state() -> AsyncIterator[InProcessSessionState]:
    state = InProcessSessionState()
    yield state
    await state.close()


@pytest.fixture
async def redis_state(redis_url: str) -> AsyncIterator[RedisSessionState]:
    state = RedisSessionState(redis_url)
    yield state
    await state.close()


@pytest.fixture(scope="module")
async def cosmos_state(cosmos_emulator: CosmosEmulator) -> AsyncIterator[CosmosSessionState]:
    state = CosmosSessionState(
        cosmos_emulator.endpoint, cosmos_emulator.key, "switchboard_tests", f"sessions_{uuid.uuid4().hex[:12]}",
        verify_tls=False, create_container=True,
    )
    yield state
    await state.close()


@pytest.fixture
async def sqlite_state(tmp_path) -> AsyncIterator[SqliteSessionState]:
    state = SqliteSessionState(tmp_path / "state.sqlite3")
    yield state
    await state.close()


@pytest.fixture(params=["memory", "sqlite", "redis", "cosmos"])
def state(request: pytest.FixtureRequest) -> SessionState:
    return request.getfixturevalue(f"{request.param}_state")


def key() -> str:
    return f"ses_{uuid.uuid4().hex}"  # the Redis server is shared by the session: never reuse a key


# Values -----------------------------------------------------------------------------------------------------------


async def test_a_value_comes_back_as_it_was_stored(state: SessionState) -> None:
    k = key()
    value = {"agent": "billing", "turn": 3, "slots": {"account": "1234"}, "pending": [1, 2.5, None, True], "note": "é☎"}
    await state.put(k, value, ttl_seconds=60)

    assert await state.get(k) == value


async def test_a_stored_value_is_not_changed_by_the_callers_copy(state: SessionState) -> None:
    k, value = key(), {"slots": {"account": "1234"}}
    await state.put(k, value, ttl_seconds=60)
    value["slots"]["account"] = "changed after put"
    read = await state.get(k)
    read["slots"]["account"] = "changed after get"

    assert await state.get(k) == {"slots": {"account": "1234"}}


async def test_missing_overwritten_and_deleted_keys(state: SessionState) -> None:
    k = key()
    assert await state.get(k) is None

    await state.put(k, {"v": 1}, ttl_seconds=60)
    await state.put(k, {"v": 2}, ttl_seconds=60)
    assert await state.get(k) == {"v": 2}

    await state.delete(k)
    assert await state.get(k) is None
    await state.delete(k)  # deleting what is not there is fine


async def test_a_value_expires_after_its_ttl(state: SessionState) -> None:
    k = key()
    await state.put(k, {"v": 1}, ttl_seconds=SHORT_TTL)
    assert await state.get(k) == {"v": 1}

    await asyncio.sleep(SHORT_TTL + 0.3)
    assert await state.get(k) is None


async def test_a_non_positive_ttl_is_refused(state: SessionState) -> None:
    with pytest.raises(ValueError):
        await state.put(key(), {"v": 1}, ttl_seconds=0)
    with pytest.raises(ValueError):
        await state.mark_processed(key(), ttl_seconds=-1)


# Processed events -------------------------------------------------------------------------------------------------


async def test_an_event_is_processed_once_within_its_ttl(state: SessionState) -> None:
    event = f"evt_{uuid.uuid4().hex}"
    assert await state.mark_processed(event, ttl_seconds=SHORT_TTL) is True
    assert await state.mark_processed(event, ttl_seconds=SHORT_TTL) is False

    await asyncio.sleep(SHORT_TTL + 0.3)
    assert await state.mark_processed(event, ttl_seconds=SHORT_TTL) is True


async def test_concurrent_deliveries_of_one_event_let_exactly_one_through(state: SessionState) -> None:
    event = f"evt_{uuid.uuid4().hex}"
    results = await asyncio.gather(*(state.mark_processed(event, ttl_seconds=60) for _ in range(20)))

    assert sorted(results) == [False] * 19 + [True]


async def test_a_released_event_is_handled_again(state: SessionState) -> None:
    event = f"evt_{uuid.uuid4().hex}"
    assert await state.mark_processed(event, ttl_seconds=60) is True
    await state.release_processed(event)
    assert await state.mark_processed(event, ttl_seconds=60) is True
    assert await state.mark_processed(event, ttl_seconds=60) is False
    await state.release_processed(f"evt_{uuid.uuid4().hex}")  # never marked: no error


async def test_event_ids_and_state_keys_do_not_collide(state: SessionState) -> None:
    shared_name = key()
    assert await state.mark_processed(shared_name, ttl_seconds=60) is True
    assert await state.get(shared_name) is None

    await state.put(shared_name, {"v": 1}, ttl_seconds=60)
    await state.delete(shared_name)
    assert await state.mark_processed(shared_name, ttl_seconds=60) is False


# Counters -------------------------------------------------------------------------------------------------------


async def test_concurrent_increments_are_all_counted(state: SessionState) -> None:
    name = key()
    assert await state.counter(name) == 0
    await asyncio.gather(*(state.increment(name) for _ in range(50)), *(state.increment(name, -1) for _ in range(20)))
    assert await state.counter(name) == 30


async def test_a_counter_can_be_set_and_is_apart_from_state_keys(state: SessionState) -> None:
    name = key()
    await state.set_counter(name, 12)
    assert await state.increment(name, 3) == 15
    assert await state.get(name) is None
    await state.put(name, {"v": 1}, ttl_seconds=60)
    assert await state.counter(name) == 15


# Redis only: an outage is Unavailable, quickly, and the store recovers --------------------------------------------


async def test_redis_outage_raises_unavailable_quickly_and_recovers(redis_server: RedisServer) -> None:
    state = RedisSessionState(redis_server.url)
    try:
        k = key()
        await state.put(k, {"v": 1}, ttl_seconds=60)

        redis_server.kill()
        started = time.monotonic()
        with pytest.raises(Unavailable) as caught:
            await state.get(k)
        assert time.monotonic() - started < 5
        assert caught.value.retry_after and caught.value.retry_after > 0
        with pytest.raises(Unavailable):
            await state.mark_processed(f"evt_{uuid.uuid4().hex}", ttl_seconds=60)

        redis_server.start()  # same port, empty (no persistence)
        assert await state.get(k) is None
        await state.put(k, {"v": 2}, ttl_seconds=60)
        assert await state.get(k) == {"v": 2}
    finally:
        await state.close()


# In-process only: memory does not grow without bound ------------------------------------------------------------


async def test_in_process_state_drops_expired_keys_nobody_reads_again(memory_state: InProcessSessionState) -> None:
    for _ in range(3000):
        await memory_state.mark_processed(f"evt_{uuid.uuid4().hex}", ttl_seconds=0.05)
    await asyncio.sleep(0.1)
    for _ in range(3000):
        await memory_state.put(key(), {"v": 1}, ttl_seconds=60)

    # 6000 keys written, 3000 of them long expired and never touched again: a sweep must have dropped most.
    assert len(memory_state._entries) < 4500  # noqa: SLF001 - memory use is the behaviour under test


# SQLite only: two processes (here: two adapters on one file) see one state -----------------------------------------


async def test_the_sqlite_state_is_shared_by_everyone_on_the_file(tmp_path) -> None:
    host, gateway = SqliteSessionState(tmp_path / "s.sqlite3"), SqliteSessionState(tmp_path / "s.sqlite3")
    try:
        await host.set_counter("queue:waiting", 60)
        assert await gateway.increment("queue:waiting", -1) == 59
        assert await host.mark_processed("evt_1", 60) is True
        assert await gateway.mark_processed("evt_1", 60) is False
        await gateway.put("session:1", {"agent": "OutageAgent"}, 60)
        assert await host.get("session:1") == {"agent": "OutageAgent"}
    finally:
        await host.close()
        await gateway.close()
