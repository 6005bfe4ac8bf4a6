"""Contention: 100 writers from three channels update one customer's record at once, and no field is lost.

Voice, WhatsApp and web chat all save onto the same customer record (that is how nobody repeats themselves), so a
busy customer's record sees concurrent writes: slots collected on different channels, turns added to the call and
the chats, new sessions opened, the summary extended. Each writer goes through the CustomerStore port's optimistic-
concurrency update; every write must survive, exactly once, on the embedded SQLite store and on Cosmos (the
emulator; in CI it must run). Twice each: all writers through one store (one function instance taking 100 requests
for the customer), and each channel through a store of its own on the same data (the media gateway and two function
instances). The figures: writers, conflicts retried (mutations re-applied after losing a race), elapsed.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable

import pytest

from shared.models import Channel, ChannelSession, Customer, Identity, IdentityKind, Turn
from shared.stores import CustomerStore
from shared.stores.azure_cosmos import CosmosCustomerStore
from shared.stores.embedded_customers import SqliteCustomerStore
from tests.stores.test_customer_store import cosmos_store, sqlite_store, store  # noqa: F401 - SQLite, Cosmos

WRITERS = 100
CHANNELS = (Channel.VOICE, Channel.WHATSAPP, Channel.WEBCHAT)


def writer(index: int, attempts: Counter[int]) -> Callable[[Customer], None]:
    """Writer `index`: a slot of its own, two turns, and per channel a session to open or add to, or the summary."""
    channel = CHANNELS[index % 3]

    def session(customer: Customer, session_id: str) -> ChannelSession:
        if session_id not in customer.sessions:
            customer.sessions[session_id] = ChannelSession(session_id, channel)
        return customer.sessions[session_id]

    def mutate(customer: Customer) -> None:
        attempts[index] += 1
        customer.collected[f"{channel.value}_{index}"] = str(index)
        if channel is Channel.VOICE:
            target = session(customer, "voice_call")
        elif channel is Channel.WHATSAPP:  # every third opens a session of its own
            target = session(customer, f"wa_{index}" if index % 9 == 1 else "wa_main")
        else:
            target = session(customer, f"web_{index % 5}")
            customer.summary += f"[web {index}]"
        target.add_turn(Turn("customer", f"{channel.value} says {index}"))
        target.add_turn(Turn("agent", f"answer to {index}"))

    return mutate


def sibling(store: CustomerStore, request: pytest.FixtureRequest) -> CustomerStore:
    """Another store on the same data, as another process (the media gateway, a function instance) would have."""
    if isinstance(store, SqliteCustomerStore):
        return SqliteCustomerStore(store.path)
    assert isinstance(store, CosmosCustomerStore)
    emulator = request.getfixturevalue("cosmos_emulator")
    return CosmosCustomerStore(emulator.endpoint, emulator.key, store._cosmos.database_name,  # noqa: SLF001
                               store._cosmos.container_name, verify_tls=False)  # noqa: SLF001


@pytest.mark.parametrize("processes", [1, 3])
async def test_100_writers_from_three_channels_lose_nothing(
    store: CustomerStore, processes: int, request: pytest.FixtureRequest  # noqa: F811
) -> None:
    """All writers in one process (one function instance), or each channel in its own (gateway, instances)."""
    backend = type(store).__name__.removesuffix("CustomerStore")
    stores = [store, *(sibling(store, request) for _ in range(processes - 1))]
    customer, _ = await store.get_or_create(Identity(IdentityKind.PHONE, f"+1555{time.time_ns() % 10**7:07d}"))
    attempts: Counter[int] = Counter()

    started = time.perf_counter()
    try:
        await asyncio.gather(*(stores[i % processes].update(customer.customer_id, writer(i, attempts))
                               for i in range(WRITERS)))
    finally:
        elapsed = time.perf_counter() - started
        for extra in stores[1:]:
            await extra.close()

    stored = await store.get(customer.customer_id)
    retried = sum(attempts.values()) - WRITERS
    print(f"\ncontention ({backend}, {processes} store instance{'s' if processes > 1 else ''}): {WRITERS} writers, "
          f"{retried} conflicts retried, {elapsed:.2f} s elapsed")

    assert stored.collected == {f"{CHANNELS[i % 3].value}_{i}": str(i) for i in range(WRITERS)}
    said = Counter(t.text for s in stored.sessions.values() for t in s.turns if t.role == "customer")
    assert said == Counter(f"{CHANNELS[i % 3].value} says {i}" for i in range(WRITERS))  # each once, none lost
    for session in stored.sessions.values():
        customers = [t for t in session.turns if t.role == "customer"]
        assert len(session.turns) == 2 * len(customers)  # each writer's two turns landed together
        assert all(CHANNELS[int(t.text.rsplit(" ", 1)[1]) % 3] is session.channel for t in customers)
    opened = {f"wa_{i}" for i in range(WRITERS) if i % 3 == 1 and i % 9 == 1}
    assert set(stored.sessions) == {"voice_call", "wa_main", *opened, *(f"web_{i}" for i in range(5))}
    extended = sorted(int(mark.split()[-1]) for mark in stored.summary.split("]") if mark)
    assert extended == [i for i in range(WRITERS) if CHANNELS[i % 3] is Channel.WEBCHAT], stored.summary
