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


# Merges -----------------------------------------------------------------------------------------------------------


async def test_a_merge_creates_the_value_keeps_other_fields_and_reads_back_with_get(state: SessionState) -> None:
    k = key()
    assert await state.merge(k, {"state": "answering"}, ttl_seconds=60) == {"state": "answering"}
    await state.put(k, {"state": "answering", "session_id": "s1", "slots": {"a": [1, None]}}, ttl_seconds=60)

    merged = await state.merge(k, {"state": "connected", "connection_id": "c1"}, ttl_seconds=60)

    expected = {"state": "connected", "session_id": "s1", "slots": {"a": [1, None]}, "connection_id": "c1"}
    assert merged == expected
    assert await state.get(k) == expected
    merged["state"] = "changed by the caller"
    assert (await state.get(k))["state"] == "connected"


async def test_an_empty_value_and_odd_field_names_survive(state: SessionState) -> None:
    k = key()
    await state.put(k, {}, ttl_seconds=60)
    assert await state.get(k) == {}
    odd = {"": 1, "a/b": 2, "~0": 3, ".": 4, "é☎": 5, "_etag": 6, "id": 7}
    assert await state.merge(k, odd, ttl_seconds=60) == odd
    assert await state.get(k) == odd


async def test_concurrent_merges_of_different_fields_lose_none(state: SessionState) -> None:
    k = key()
    await state.put(k, {"call_id": "c"}, ttl_seconds=60)

    await asyncio.gather(*(state.merge(k, {f"field_{i}": i}, ttl_seconds=60) for i in range(40)))

    assert await state.get(k) == {"call_id": "c", **{f"field_{i}": i for i in range(40)}}


async def test_concurrent_merges_of_many_fields_on_a_new_key_lose_none(state: SessionState) -> None:
    # Ten fields each: more than one Cosmos patch carries, so this drives its conditional whole-item writes.
    k = key()
    await asyncio.gather(
        *(state.merge(k, {f"m{i}_{j}": j for j in range(10)}, ttl_seconds=60) for i in range(12))
    )

    assert await state.get(k) == {f"m{i}_{j}": j for i in range(12) for j in range(10)}


async def test_a_merge_resets_the_ttl_and_never_revives_an_expired_value(state: SessionState) -> None:
    k = key()
    await state.put(k, {"old": 1}, ttl_seconds=SHORT_TTL)
    await state.merge(k, {"kept": 1}, ttl_seconds=60)
    await asyncio.sleep(SHORT_TTL + 0.3)
    assert await state.get(k) == {"old": 1, "kept": 1}  # the merge's TTL replaced the put's

    await state.merge(k, {"short": 1}, ttl_seconds=SHORT_TTL)
    await asyncio.sleep(SHORT_TTL + 0.3)
    assert await state.get(k) is None
    assert await state.merge(k, {"new": 1}, ttl_seconds=60) == {"new": 1}


# Leases -----------------------------------------------------------------------------------------------------------


async def test_a_lease_goes_to_exactly_one_of_many_concurrent_acquirers(state: SessionState) -> None:
    k = key()
    tokens = await asyncio.gather(*(state.acquire_lease(k, ttl_seconds=60) for _ in range(20)))

    assert sum(token is not None for token in tokens) == 1


async def test_a_lease_expires_and_the_next_token_is_higher(state: SessionState) -> None:
    k = key()
    first = await state.acquire_lease(k, ttl_seconds=SHORT_TTL)
    assert first is not None
    assert await state.acquire_lease(k, ttl_seconds=SHORT_TTL) is None

    await asyncio.sleep(SHORT_TTL + 0.3)
    second = await state.acquire_lease(k, ttl_seconds=60)
    assert second is not None and second > first


async def test_a_renewal_extends_a_live_lease_and_fails_after_expiry(state: SessionState) -> None:
    k = key()
    token = await state.acquire_lease(k, ttl_seconds=SHORT_TTL)
    assert await state.renew_lease(k, token, ttl_seconds=60) is True
    await asyncio.sleep(SHORT_TTL + 0.3)
    assert await state.acquire_lease(k, ttl_seconds=60) is None  # renewed: still held

    other = key()
    token = await state.acquire_lease(other, ttl_seconds=SHORT_TTL)
    await asyncio.sleep(SHORT_TTL + 0.3)
    assert await state.renew_lease(other, token, ttl_seconds=60) is False  # expired, even with nobody else on it
    assert await state.acquire_lease(other, ttl_seconds=60) is not None


async def test_a_stale_token_neither_renews_nor_releases_the_next_holders_lease(state: SessionState) -> None:
    k = key()
    stale = await state.acquire_lease(k, ttl_seconds=SHORT_TTL)
    await asyncio.sleep(SHORT_TTL + 0.3)
    holder = await state.acquire_lease(k, ttl_seconds=60)
    assert holder is not None and holder > stale

    await state.release_lease(k, stale)
    assert await state.renew_lease(k, stale, ttl_seconds=60) is False
    assert await state.acquire_lease(k, ttl_seconds=60) is None

    await state.release_lease(k, holder)
    assert await state.renew_lease(k, holder, ttl_seconds=60) is False  # released is over
    following = await state.acquire_lease(k, ttl_seconds=60)
    assert following is not None and following > holder
    await state.release_lease(key(), 1)  # never held: no error


async def test_lease_tokens_strictly_increase(state: SessionState) -> None:
    k, tokens = key(), []
    for _ in range(6):
        token = await state.acquire_lease(k, ttl_seconds=60)
        assert token is not None
        tokens.append(token)
        await state.release_lease(k, token)

    assert tokens == sorted(set(tokens))
    assert await state.acquire_lease(key(), ttl_seconds=60) > tokens[-1] - 60_000  # a new key: from the clock


async def test_lease_and_merge_refuse_a_non_positive_ttl(state: SessionState) -> None:
    for call in (lambda: state.acquire_lease(key(), 0), lambda: state.merge(key(), {"v": 1}, -1),
                 lambda: state.hit(key(), 0)):
        with pytest.raises(ValueError):
            await call()


# Rate-limit windows -----------------------------------------------------------------------------------------------


async def test_hits_are_counted_once_each_and_the_window_expires(state: SessionState) -> None:
    k = key()
    counts = await asyncio.gather(*(state.hit(k, window_seconds=SHORT_TTL * 2) for _ in range(20)))
    assert sorted(counts) == list(range(1, 21))

    await asyncio.sleep(SHORT_TTL * 2 + 0.3)
    assert await state.hit(k, window_seconds=60) == 1
    assert await state.hit(k, window_seconds=60) == 2


async def test_a_window_ends_after_its_first_hit_however_many_follow(state: SessionState) -> None:
    k = key()
    assert await state.hit(k, window_seconds=SHORT_TTL * 2) == 1
    await asyncio.sleep(SHORT_TTL)
    assert await state.hit(k, window_seconds=SHORT_TTL * 2) == 2  # does not push the window's end out
    await asyncio.sleep(SHORT_TTL + 0.3)
    assert await state.hit(k, window_seconds=SHORT_TTL * 2) == 1


# Sets whose members expire one by one -------------------------------------------------------------------------


async def test_set_members_are_counted_removed_once_and_expire_one_by_one(state: SessionState) -> None:
    k = key()
    assert await state.count_members(k) == 0
    await asyncio.gather(*(state.add_member(k, f"call-{i}", ttl_seconds=60) for i in range(15)))
    await state.add_member(k, "call-0", ttl_seconds=60)  # again: still one member
    await state.add_member(k, "short/~é", ttl_seconds=SHORT_TTL)
    assert await state.count_members(k) == 16

    removed = await asyncio.gather(*(state.remove_member(k, "call-3") for _ in range(5)))
    assert sorted(removed) == [False] * 4 + [True]
    assert await state.remove_member(k, "never-added") is False
    assert await state.count_members(k) == 15

    assert "short/~é" in await state.members(k) and "call-3" not in await state.members(k)

    await asyncio.sleep(SHORT_TTL + 0.3)
    assert await state.count_members(k) == 14  # the short one expired by itself
    assert sorted(await state.members(k)) == sorted(f"call-{i}" for i in range(15) if i != 3)
    assert await state.members(key()) == []
    assert await state.remove_member(k, "short/~é") is False  # expired is not live
    await state.add_member(k, "short/~é", ttl_seconds=60)
    assert await state.count_members(k) == 15


async def test_adding_a_member_again_moves_its_expiry(state: SessionState) -> None:
    k = key()
    await state.add_member(k, "a", ttl_seconds=SHORT_TTL)
    await state.add_member(k, "a", ttl_seconds=60)
    await asyncio.sleep(SHORT_TTL + 0.3)
    assert await state.count_members(k) == 1
    with pytest.raises(ValueError):
        await state.add_member(k, "b", ttl_seconds=0)


# Two processes (here: two adapters on one store) share merges and leases ---------------------------------------


@pytest.fixture(params=["sqlite", "redis", "cosmos"])
async def two_clients(request: pytest.FixtureRequest, tmp_path) -> AsyncIterator[tuple[SessionState, SessionState]]:
    if request.param == "sqlite":
        pair = (SqliteSessionState(tmp_path / "s.sqlite3"), SqliteSessionState(tmp_path / "s.sqlite3"))
        for client in pair:  # open one after the other: two first opens at once can find the file locked
            await client.get("warm-up")
    elif request.param == "redis":
        url = request.getfixturevalue("redis_url")
        pair = (RedisSessionState(url), RedisSessionState(url))
    else:
        emulator, container = request.getfixturevalue("cosmos_emulator"), f"shared_{uuid.uuid4().hex[:12]}"
        pair = tuple(
            CosmosSessionState(emulator.endpoint, emulator.key, "switchboard_tests", container, verify_tls=False,
                               create_container=True)
            for _ in range(2)
        )
        await pair[0].ensure()
    yield pair
    for client in pair:
        await client.close()


async def test_merges_and_leases_hold_across_processes(two_clients: tuple[SessionState, SessionState]) -> None:
    a, b = two_clients
    k, lease = key(), key()
    await asyncio.gather(*(client.merge(k, {f"f{i}": i}, ttl_seconds=60) for i in range(30) for client in (a, b)))
    assert await b.get(k) == {f"f{i}": i for i in range(30)}

    tokens = await asyncio.gather(*(client.acquire_lease(lease, ttl_seconds=60) for _ in range(10) for client in (a, b)))
    winner = [t for t in tokens if t is not None]
    assert len(winner) == 1
    await (a if await a.renew_lease(lease, winner[0], 60) else b).release_lease(lease, winner[0])
    assert await b.acquire_lease(lease, ttl_seconds=60) > winner[0]


# Redis only: values written before they were hashes are still read and merged ------------------------------------


async def test_redis_reads_and_merges_a_value_stored_as_one_json_string(redis_url: str) -> None:
    import redis.asyncio as aioredis

    raw, state, k = aioredis.from_url(redis_url), RedisSessionState(redis_url), key()
    try:
        await raw.set(f"sb:state:{k}", '{"state": "connected", "connection_id": "c1"}', px=60_000)
        assert await state.get(k) == {"state": "connected", "connection_id": "c1"}
        assert await state.merge(k, {"media": "streaming"}, ttl_seconds=60) == {
            "state": "connected", "connection_id": "c1", "media": "streaming"
        }
        assert 0 < await raw.pttl(f"sb:state:{k}") <= 60_000
    finally:
        await raw.aclose()
        await state.close()


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
