"""Turns of one session run one at a time, across processes, and a holder whose lease lapsed cannot overwrite a newer
turn (defect 3 of the lost-state issue).

Two "instances" are two Conversation objects with their own store and state adapters on the same SQLite files: what
two function instances share in production (through Redis and Cosmos) they share here through the files, and they
share nothing in memory. A delay is injected at the store boundary (reads of the record are slow), so every turn's
read-decide-write window overlaps the others'. The policy is a scripted fake at the LLM seam: it answers with how many
of the customer's earlier messages it saw, which is what a real model would get wrong on stale history.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from shared.conversation import Conversation
from shared.errors import Unavailable
from shared.models import Channel, Customer, Identity, IdentityKind, new_id
from shared.policies.base import Policy, TextDelta, TurnContext
from shared.scenario import load_scenario
from shared.session_lock import SessionBusy
from shared.stores.embedded_customers import SqliteCustomerStore
from shared.stores.embedded_sqlite_state import SqliteSessionState

READ_DELAY = 0.05


class CountingPolicy(Policy):
    """Says how many earlier customer messages the turn's history holds."""

    def __init__(self, think: float = 0.0) -> None:
        self.think = think

    async def respond(self, ctx: TurnContext) -> AsyncIterator[TextDelta]:
        await asyncio.sleep(self.think)
        yield TextDelta(f"seen {sum(1 for t in ctx.history if t.role == 'customer')}")


class SlowReads(SqliteCustomerStore):
    """The real SQLite adapter, with every record read delayed: a slow store, as under load."""

    async def _read(self, customer_id: str) -> Customer | None:
        await asyncio.sleep(READ_DELAY)
        return await super()._read(customer_id)


class Partitioned(SqliteSessionState):
    """The real SQLite state, cut off from this instance for renewals: its lease lapses while its turn runs."""

    async def renew_lease(self, key: str, token: int, ttl_seconds: float) -> bool:
        raise Unavailable("partitioned")


def instance(data: Path, policy: Policy, state_class=SqliteSessionState, **lock) -> Conversation:
    conversation = Conversation(
        load_scenario("utilities"), SlowReads(data / "customers.sqlite3"), state_class(data / "state.sqlite3"), policy
    )
    for name, value in lock.items():
        setattr(conversation.locks, name, value)
    return conversation


async def open_chat(conversation: Conversation) -> tuple[str, str]:
    session_id = new_id("web")
    opened = await conversation.open_for_identity(
        Channel.WEBCHAT, session_id, Identity(IdentityKind.WEBCHAT, session_id), greet=False
    )
    return session_id, opened.customer.customer_id


async def close(*conversations: Conversation) -> None:
    for conversation in conversations:
        await conversation.customers.close()
        await conversation.state.close()


async def test_a_burst_on_one_session_across_two_instances_runs_one_turn_at_a_time(tmp_path) -> None:
    a, b = instance(tmp_path, CountingPolicy()), instance(tmp_path, CountingPolicy())
    try:
        session_id, customer_id = await open_chat(a)
        count = 10

        async def send(n: int):
            await asyncio.sleep(n * 0.01)
            return await (a if n % 2 else b).turn(session_id, customer_id, f"message {n}")

        await asyncio.gather(*(send(n) for n in range(count)))
        session = (await a.customers.get(customer_id)).sessions[session_id]
    finally:
        await close(a, b)
    # Every message answered once, and each answer saw every message before it: no turn ran on stale history.
    said = [t.text for t in session.turns]
    customers = [t for t in said if t.startswith("message")]
    assert sorted(customers) == sorted(f"message {n}" for n in range(count))
    assert [t for t in said if t.startswith("seen")] == [f"seen {n}" for n in range(count)]
    assert all(said[i].startswith("message") and said[i + 1].startswith("seen") for i in range(0, len(said), 2))


async def test_within_one_instance_turns_run_in_arrival_order(tmp_path) -> None:
    a = instance(tmp_path, CountingPolicy(think=0.05))
    try:
        session_id, customer_id = await open_chat(a)

        async def send(n: int):
            await asyncio.sleep(n * 0.02)
            return await a.turn(session_id, customer_id, f"message {n}")

        outcomes = await asyncio.gather(*(send(n) for n in range(6)))
        session = (await a.customers.get(customer_id)).sessions[session_id]
    finally:
        await close(a)
    assert [o.replies[0].text for o in outcomes] == [f"seen {n}" for n in range(6)]
    assert [t.text for t in session.turns if t.role == "customer"] == [f"message {n}" for n in range(6)]


async def test_a_turn_whose_lease_lapsed_cannot_overwrite_the_newer_turn(tmp_path) -> None:
    # Instance A is partitioned from the state store mid-turn and thinks for longer than its lease; B takes the lease
    # once it lapses and saves its turn. A's late write must be refused, not saved over B's.
    lease = {"lease_seconds": 0.3}
    a = instance(tmp_path, CountingPolicy(think=1.0), Partitioned, **lease)
    b = instance(tmp_path, CountingPolicy(), **lease)
    try:
        session_id, customer_id = await open_chat(a)
        stale = asyncio.create_task(a.turn(session_id, customer_id, "from the stalled instance"))
        await asyncio.sleep(0.6)  # A's lease has lapsed; B gets it
        fresh = await b.turn(session_id, customer_id, "from the live instance")
        with pytest.raises(SessionBusy):
            await stale
        session = (await b.customers.get(customer_id)).sessions[session_id]
    finally:
        await close(a, b)
    assert fresh.replies[0].text == "seen 0"
    assert [t.text for t in session.turns] == ["from the live instance", "seen 0"]


async def test_a_killed_holder_blocks_its_session_only_until_its_lease_expires(tmp_path) -> None:
    state = SqliteSessionState(tmp_path / "state.sqlite3")
    a = instance(tmp_path, CountingPolicy(), lease_seconds=0.5)
    try:
        session_id, customer_id = await open_chat(a)
        # A process that took the lease and died holds it until it expires.
        assert await state.acquire_lease(f"turn:{session_id}", 0.5) is not None
        outcome = await asyncio.wait_for(a.turn(session_id, customer_id, "anyone there?"), timeout=5)
    finally:
        await state.close()
        await close(a)
    assert outcome.replies[0].text == "seen 0"
