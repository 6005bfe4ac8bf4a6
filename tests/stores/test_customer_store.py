"""CustomerStore contract: every adapter (SQLite, Cosmos on the emulator) must behave the same to its callers.

The last sections test what only one adapter must do: SQLite shared by two processes, Cosmos turning an outage
into Unavailable.
"""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
import subprocess
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from shared.errors import Conflict, NotFound, Unavailable
from shared.models import Channel, ChannelSession, Customer, Identity, IdentityKind, SessionStatus, Turn
from shared.stores import CustomerStore
from shared.stores.azure_cosmos import CosmosCustomerStore
from shared.stores.embedded_customers import SqliteCustomerStore
from tests.peers import free_port
from tests.peers.cosmos_emulator import CosmosEmulator

PROJECT_ROOT = Path(__file__).resolve().parents[2]


# Fixtures ---------------------------------------------------------------------------------------------------------


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SqliteCustomerStore]:
    store = SqliteCustomerStore(tmp_path / "not-yet-created" / "customers.sqlite3")
    yield store
    await store.close()


@pytest.fixture(scope="module")
async def cosmos_store(cosmos_emulator: CosmosEmulator) -> AsyncIterator[CosmosCustomerStore]:
    store = CosmosCustomerStore(
        cosmos_emulator.endpoint, cosmos_emulator.key, "switchboard_tests", f"customers_{uuid.uuid4().hex[:12]}",
        verify_tls=False,
    )
    await store.ensure()
    yield store
    await store.close()


@pytest.fixture(params=["sqlite", "cosmos"])
def store(request: pytest.FixtureRequest) -> CustomerStore:
    return request.getfixturevalue(f"{request.param}_store")


def phone() -> Identity:
    """A number no other test uses (the Cosmos container is shared by this module's tests)."""
    return Identity(IdentityKind.PHONE, f"+1555{random.randrange(10**7):07d}")


def webchat() -> Identity:
    return Identity(IdentityKind.WEBCHAT, uuid.uuid4().hex)


async def customers_naming(store: CustomerStore, identity: Identity) -> list[str]:
    """Ids of every stored customer record listing `identity`, read from the backend itself, orphans included."""
    if isinstance(store, SqliteCustomerStore):
        with sqlite3.connect(store.path) as conn:
            docs = [json.loads(doc) for (doc,) in conn.execute("SELECT doc FROM customers")]
        return [d["customer_id"] for d in docs if identity.key in d["identities"]]
    assert isinstance(store, CosmosCustomerStore)
    items = store._container.query_items(  # noqa: SLF001 - the test audits what the adapter left in the container
        "SELECT c.id FROM c WHERE c.type = 'customer' AND ARRAY_CONTAINS(c.identities, @key)",
        parameters=[{"name": "@key", "value": identity.key}],
    )
    return [item["id"] async for item in items]


# Reading and writing ----------------------------------------------------------------------------------------------


async def test_a_full_record_comes_back_as_it_was_stored(store: CustomerStore) -> None:
    number, chat, account = phone(), webchat(), Identity(IdentityKind.ACCOUNT, f"AC-{uuid.uuid4().hex[:8]}")
    customer = Customer.new(number, chat, account)
    voice = ChannelSession(session_id="ses_voice_1", channel=Channel.VOICE, status=SessionStatus.TRANSFERRED)
    voice.add_turn(Turn(role="customer", text="My power is out at 12 Elm St.", agent="triage"))
    voice.add_turn(Turn(role="agent", text="Sorry to hear that. Can I have your account number?", agent="triage"))
    chat_session = ChannelSession(session_id="ses_chat_1", channel=Channel.WEBCHAT, active_agent="outages")
    chat_session.add_turn(Turn(role="customer", text="Still out — any update? ☹"))
    customer.sessions = {voice.session_id: voice, chat_session.session_id: chat_session}
    customer.collected = {"account_number": "1234-5678", "service_address": "12 Elm St."}
    customer.summary = "Reported an outage by phone, continued on web chat."

    stored = await store.create(customer)
    read = await store.get(customer.customer_id)

    assert read.to_dict() == customer.to_dict()
    assert read.version is not None and read.version == stored.version
    for identity in (number, chat, account):
        found = await store.find_by_identity(identity)
        assert found is not None and found.customer_id == customer.customer_id


async def test_reading_a_missing_customer_raises_not_found(store: CustomerStore) -> None:
    with pytest.raises(NotFound):
        await store.get(f"cus_{uuid.uuid4().hex}")
    assert await store.find_by_identity(phone()) is None


async def test_an_identity_that_needs_escaping_still_finds_its_customer(store: CustomerStore) -> None:
    # Account numbers from other systems can hold characters Cosmos does not allow in an id.
    odd = Identity(IdentityKind.ACCOUNT, f"AC/{uuid.uuid4().hex[:6]}#7?x\\y%2F")
    lookalike = Identity(IdentityKind.ACCOUNT, odd.value.replace("%2F", "/"))  # must not collide after escaping
    customer, created = await store.get_or_create(odd)
    other, other_created = await store.get_or_create(lookalike)

    assert created and other_created and other.customer_id != customer.customer_id
    found = await store.find_by_identity(odd)
    assert found is not None and found.customer_id == customer.customer_id


# get_or_create ----------------------------------------------------------------------------------------------------


async def test_get_or_create_returns_the_same_customer_the_second_time(store: CustomerStore) -> None:
    number = phone()
    first, first_created = await store.get_or_create(number)
    second, second_created = await store.get_or_create(number)

    assert (first_created, second_created) == (True, False)
    assert second.customer_id == first.customer_id
    assert second.identities == [number]


async def test_concurrent_get_or_create_for_a_new_number_makes_exactly_one_customer(store: CustomerStore) -> None:
    number = phone()
    results = await asyncio.gather(*(store.get_or_create(number) for _ in range(20)))

    assert len({customer.customer_id for customer, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    # The losers' candidate records were deleted, not left behind as orphans.
    assert await customers_naming(store, number) == [results[0][0].customer_id]


# Optimistic concurrency -------------------------------------------------------------------------------------------


async def test_a_write_based_on_a_stale_read_is_rejected(store: CustomerStore) -> None:
    customer, _ = await store.get_or_create(phone())
    stale = await store.get(customer.customer_id)
    fresh = await store.get(customer.customer_id)

    fresh.collected["account_number"] = "1111"
    written = await store._replace(fresh)  # noqa: SLF001 - the hook under test
    stale.collected["account_number"] = "2222"
    with pytest.raises(Conflict):
        await store._replace(stale)  # noqa: SLF001

    assert written.version != stale.version
    assert (await store.get(customer.customer_id)).collected["account_number"] == "1111"


async def test_concurrent_updates_all_survive(store: CustomerStore) -> None:
    customer, _ = await store.get_or_create(phone())

    def setter(i: int):
        def mutate(c: Customer) -> int:
            c.collected[f"slot_{i}"] = str(i)
            return i

        return mutate

    results = await asyncio.gather(*(store.update(customer.customer_id, setter(i)) for i in range(50)))

    assert sorted(result for _, result in results) == list(range(50))
    stored = await store.get(customer.customer_id)
    assert stored.collected == {f"slot_{i}": str(i) for i in range(50)}


async def test_updating_a_missing_customer_raises_not_found(store: CustomerStore) -> None:
    with pytest.raises(NotFound):
        await store.update(f"cus_{uuid.uuid4().hex}", lambda c: None)


# Identities -------------------------------------------------------------------------------------------------------


async def test_add_identity_links_a_new_channel_to_the_customer(store: CustomerStore) -> None:
    customer, _ = await store.get_or_create(phone())
    chat = webchat()

    updated = await store.add_identity(customer.customer_id, chat)
    await store.add_identity(customer.customer_id, chat)  # again: harmless

    assert updated.identities.count(chat) == 1
    found = await store.find_by_identity(chat)
    assert found is not None and found.customer_id == customer.customer_id


async def test_an_identity_held_by_another_customer_cannot_be_added(store: CustomerStore) -> None:
    number = phone()
    holder, _ = await store.get_or_create(number)
    other, _ = await store.get_or_create(phone())

    with pytest.raises(Conflict):
        await store.add_identity(other.customer_id, number)

    assert number not in (await store.get(other.customer_id)).identities
    found = await store.find_by_identity(number)
    assert found is not None and found.customer_id == holder.customer_id


async def test_creating_a_customer_with_a_taken_identity_fails_and_leaves_nothing(store: CustomerStore) -> None:
    number, chat = phone(), webchat()
    holder, _ = await store.get_or_create(number)
    newcomer = Customer.new(chat, number)

    with pytest.raises(Conflict):
        await store.create(newcomer)

    with pytest.raises(NotFound):
        await store.get(newcomer.customer_id)
    assert await store.find_by_identity(chat) is None  # the identity it did claim was released
    assert (await store.find_by_identity(number)).customer_id == holder.customer_id


# SQLite only: one file, several processes -------------------------------------------------------------------------

_OTHER_PROCESS = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from shared.stores.embedded_customers import SqliteCustomerStore

    async def main(path, customer_id):
        store = SqliteCustomerStore(Path(path))
        def setter(i):
            return lambda c: c.collected.__setitem__(f"theirs_{i}", str(i))
        await asyncio.gather(*(store.update(customer_id, setter(i)) for i in range(40)))
        await store.close()

    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
)


async def test_sqlite_file_shared_with_another_process_loses_no_update(tmp_path: Path) -> None:
    path = tmp_path / "customers.sqlite3"
    store = SqliteCustomerStore(path)
    try:
        customer, _ = await store.get_or_create(phone())
        other = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _OTHER_PROCESS, str(path), customer.customer_id, cwd=PROJECT_ROOT,
            stderr=subprocess.PIPE,
        )

        def setter(i: int):
            return lambda c: c.collected.__setitem__(f"ours_{i}", str(i))

        await asyncio.gather(*(store.update(customer.customer_id, setter(i)) for i in range(40)))
        _, stderr = await other.communicate()
        assert other.returncode == 0, stderr.decode()

        collected = (await store.get(customer.customer_id)).collected
        assert {k for k in collected if k.startswith("ours_")} == {f"ours_{i}" for i in range(40)}
        assert {k for k in collected if k.startswith("theirs_")} == {f"theirs_{i}" for i in range(40)}
    finally:
        await store.close()


async def test_sqlite_takes_100_concurrent_writers(sqlite_store: SqliteCustomerStore) -> None:
    numbers = [phone() for _ in range(100)]
    created = await asyncio.gather(*(sqlite_store.get_or_create(n) for n in numbers))
    await asyncio.gather(
        *(sqlite_store.update(c.customer_id, lambda c: c.collected.__setitem__("seen", "yes")) for c, _ in created)
    )
    for customer, _ in created:
        assert (await sqlite_store.get(customer.customer_id)).collected == {"seen": "yes"}


# Cosmos only: an outage is Unavailable, not a crash -----------------------------------------------------------------


async def test_cosmos_unreachable_raises_unavailable() -> None:
    store = CosmosCustomerStore(
        f"https://127.0.0.1:{free_port()}", "a2V5", "switchboard_tests", "customers", verify_tls=False
    )
    try:
        with pytest.raises(Unavailable) as caught:
            await store.get("cus_anyone")
        assert caught.value.retry_after and caught.value.retry_after > 0
    finally:
        await store.close()
