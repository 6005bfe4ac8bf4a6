"""What only the Cosmos SessionState must do, beyond the shared contract (tests/stores/test_session_state.py).

Cosmos purges an item some time after its `ttl`, and the emulator never does, so expiry must come from the item's own
`expires_at`; items must still carry a `ttl` so Azure deletes the garbage. A clock the test moves stands in for time.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from shared.errors import Unavailable
from shared.settings import Settings, SettingsError
from shared.stores import build_session_state
from shared.stores.azure_cosmos_state import _SET, PURGE_GRACE_SECONDS, CosmosSessionState, _item_id
from shared.stores.azure_redis import RedisSessionState
from shared.stores.embedded_sqlite_state import SqliteSessionState
from shared.stores.embedded_state import InProcessSessionState
from tests.peers import free_port
from tests.peers.cosmos_emulator import CosmosEmulator


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
async def clocked(cosmos_emulator: CosmosEmulator) -> AsyncIterator[tuple[CosmosSessionState, Clock]]:
    clock = Clock()
    state = CosmosSessionState(
        cosmos_emulator.endpoint, cosmos_emulator.key, "switchboard_tests", f"sessions_{uuid.uuid4().hex[:12]}",
        verify_tls=False, create_container=True, clock=clock,
    )
    yield state, clock
    await state.close()


async def raw_item(state: CosmosSessionState, item_id: str) -> dict | None:
    """The item as stored, read past the adapter (the emulator answers 500 for a missing item, so query)."""
    items = state._container.query_items(  # noqa: SLF001 - the test audits what the adapter stored
        "SELECT * FROM c WHERE c.id = @id", parameters=[{"name": "@id", "value": item_id}], partition_key=item_id
    )
    return next(iter([item async for item in items]), None)


async def test_an_expired_value_reads_as_absent_while_its_item_still_exists(clocked) -> None:
    state, clock = clocked
    key = f"ses_{uuid.uuid4().hex}"
    await state.put(key, {"v": 1}, ttl_seconds=60)
    clock.now += 59.9
    assert await state.get(key) == {"v": 1}

    clock.now += 0.2
    assert await state.get(key) is None
    assert await raw_item(state, _item_id("state:", key)) is not None  # not purged: the read alone decided


async def test_items_carry_a_ttl_for_cosmos_to_purge_and_counters_carry_none(clocked) -> None:
    state, _ = clocked
    key = f"ses_{uuid.uuid4().hex}"
    await state.put(key, {"v": 1}, ttl_seconds=0.3)
    await state.mark_processed(key, ttl_seconds=90)
    await state.increment(key)

    assert (await raw_item(state, _item_id("state:", key)))["ttl"] == 1 + PURGE_GRACE_SECONDS
    assert (await raw_item(state, _item_id("event:", key)))["ttl"] == 90 + PURGE_GRACE_SECONDS
    assert "ttl" not in await raw_item(state, _item_id("count:", key))
    container = await state._container.read()  # noqa: SLF001
    assert container["defaultTtl"] == -1  # TTL on, nothing expires unless the item says so
    assert container["partitionKey"]["paths"] == ["/id"]


async def test_an_expired_event_not_yet_purged_is_taken_over_by_exactly_one_delivery(clocked) -> None:
    state, clock = clocked
    event = f"evt_{uuid.uuid4().hex}"
    assert await state.mark_processed(event, ttl_seconds=30) is True
    clock.now += 31

    results = await asyncio.gather(*(state.mark_processed(event, ttl_seconds=30) for _ in range(20)))
    assert sorted(results) == [False] * 19 + [True]
    assert await state.mark_processed(event, ttl_seconds=30) is False


async def test_keys_cosmos_cannot_hold_as_ids_are_stored_apart(clocked) -> None:
    state, _ = clocked
    base = uuid.uuid4().hex
    keys = [f"{base}/a", f"{base}%2Fa", f"{base}?#\\", f"{base}~", "x" * 300 + base, "y" * 300 + base]
    for n, key in enumerate(keys):
        await state.put(key, {"n": n}, ttl_seconds=60)
    assert [await state.get(key) for key in keys] == [{"n": n} for n in range(len(keys))]
    assert all(len(_item_id("state:", key)) <= 255 for key in keys)


async def test_a_set_lists_its_members_by_name_and_forgets_the_names_of_those_gone(clocked) -> None:
    state, clock = clocked
    key = f"set_{uuid.uuid4().hex}"
    await state.add_member(key, "esc/1", ttl_seconds=60)
    await state.add_member(key, "esc~2", ttl_seconds=10)
    await state.add_member(key, "esc 3", ttl_seconds=60)
    assert sorted(await state.members(key)) == ["esc 3", "esc/1", "esc~2"]

    assert await state.remove_member(key, "esc/1") is True
    clock.now += 11  # esc~2 expires; counting prunes it
    assert await state.count_members(key) == 1
    assert await state.members(key) == ["esc 3"]
    item = await raw_item(state, _item_id(_SET, key))
    assert list(item["names"].values()) == ["esc 3"]  # the set's item does not grow with every member it had


async def test_cosmos_unreachable_raises_unavailable() -> None:
    state = CosmosSessionState(f"https://127.0.0.1:{free_port()}", "a2V5", "db", "sessions", verify_tls=False)
    try:
        with pytest.raises(Unavailable) as caught:
            await state.get("ses_anyone")
        assert caught.value.retry_after and caught.value.retry_after > 0
    finally:
        await state.close()


# The factory: SESSION_STATE picks the adapter, without I/O ---------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, SqliteSessionState),
        ({"SESSION_STATE": "memory"}, InProcessSessionState),
        ({"COSMOS_ENDPOINT": "https://127.0.0.1:9"}, CosmosSessionState),
        ({"COSMOS_ENDPOINT": "https://127.0.0.1:9", "REDIS_URL": "redis://127.0.0.1:9"}, RedisSessionState),
        ({"SESSION_STATE": "memory", "COSMOS_ENDPOINT": "https://127.0.0.1:9"}, InProcessSessionState),
        ({"SESSION_STATE": "cosmos", "COSMOS_ENDPOINT": "https://x:9", "REDIS_URL": "redis://x:9"}, CosmosSessionState),
    ],
)
async def test_session_state_setting_picks_the_adapter(env: dict[str, str], expected: type) -> None:
    state = build_session_state(Settings.from_env({"COSMOS_KEY": "a2V5", **env}))
    try:
        assert type(state) is expected
    finally:
        await state.close()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SESSION_STATE": "disk"}, "SESSION_STATE must be"),
        ({"SESSION_STATE": "redis"}, "SESSION_STATE=redis needs REDIS_URL"),
        ({"SESSION_STATE": "cosmos"}, "SESSION_STATE=cosmos needs COSMOS_ENDPOINT"),
    ],
)
def test_a_session_state_that_cannot_work_is_refused_by_name(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env)
