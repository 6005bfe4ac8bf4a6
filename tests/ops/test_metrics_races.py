"""The success figures a supervisor reads on GET /api/ops/metrics count each event once under races.

- A handoff's events delivered twice at once: the customer's first WhatsApp message after the invite, posted twice
  at the same moment as Event Grid redelivers; the figures (and the concurrent reads that each settle the handoff)
  count one handoff, one success and one channel-switch time.
- A burst: 20 web chat conversations started and written in at once through the local host, and 200 sessions
  noted in the ledger's time index in the same millisecond by four writers (as four app instances would): every
  one is counted, none twice.
- A delay at the store boundary: two app instances (each its own store on the same database) write the same
  customer's record, each write held back before it lands, while both accept the handoff and both open and answer
  the continuing session; the figures still count one handoff, one conversation, one first message.

Everything is real: the local host (with its ACS emulator) for the first two, SQLite files and a Redis of the test's
own for the state. The one fake is `SlowWrites`, a real store with a sleep before each write: the delay a busy
database or network adds, injected at the store boundary. The orchestration's step that puts the handoff on the
record (shared.handoff.save_context) is called directly with only the store it uses, as the activity would.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from shared.conversation import Conversation
from shared.handoff import HandoffPlan, instance_id_for, save_context
from shared.models import Channel, Customer, Identity, IdentityKind, new_id
from shared.ops_metrics import Figures, Ledger
from shared.policies.offline import OfflinePolicy
from shared.scenario import load_scenario
from shared.stores.azure_redis import RedisSessionState
from shared.stores.base import SessionState
from shared.stores.embedded_customers import SqliteCustomerStore
from shared.stores.embedded_sqlite_state import SqliteSessionState
from tests.peers.local_host import LocalHost

SCENARIO = load_scenario("utilities")
WEBHOOK = "/runtime/webhooks/EventGrid?functionName=whatsapp_events"
OWNER_PHONE = "+15555550122"  # a demo customer: the web chat visitor gives this number and moves to WhatsApp
BURST = 20


@pytest.fixture(params=["sqlite", "redis"])
def state_kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def host(local_host_factory, state_kind: str, request: pytest.FixtureRequest) -> LocalHost:
    """A host of the test's own (its figures start empty), on SQLite state or a Redis of the test's own; no limit
    on new web chat sessions per address, since the burst all comes from 127.0.0.1."""
    env = {"SESSION_STATE": "sqlite"} if state_kind == "sqlite" else {
        "REDIS_URL": request.getfixturevalue("redis_server").url}
    return local_host_factory(WEBCHAT_SESSIONS_PER_ADDRESS="0", HANDOFF_REMIND_AFTER_SECONDS="600", **env)


async def figures(host: LocalHost, client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get(f"{host.url}/api/ops/metrics", params={"hours": "1"})
    assert response.status_code == 200, host.stderr()[-3000:]
    return response.json()


async def outbox(host: LocalHost, client: httpx.AsyncClient, phone: str) -> list[dict[str, Any]]:
    response = await client.get(f"{host.acs_url}/_emulator/messages", params={"to": phone})
    response.raise_for_status()
    return response.json()


async def eventually(probe, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while not (found := await probe()):
        assert time.monotonic() < deadline, f"nothing after {timeout} s: {probe}"
        await asyncio.sleep(0.1)
    return found


class WebChat:
    """A web chat visitor, as the chat page talks to the host."""

    def __init__(self, host: LocalHost, client: httpx.AsyncClient) -> None:
        self.host, self.client = host, client
        self.session_id, self.auth = "", {}

    async def open(self) -> WebChat:
        created = await self.client.post(f"{self.host.url}/api/webchat/sessions")
        assert created.status_code == 201, created.text
        self.session_id = created.json()["session_id"]
        self.auth = {"Authorization": f"Bearer {created.json()['token']}"}
        return self

    async def say(self, text: str) -> str:
        response = await self.client.post(f"{self.host.url}/api/webchat/sessions/{self.session_id}/messages",
                                          json={"text": text}, headers=self.auth)
        assert response.status_code == 200, response.text
        return " ".join(r["text"] for r in response.json()["replies"])


# 1. A handoff's events delivered twice at once ------------------------------------------------------------------


async def test_a_first_whatsapp_message_delivered_twice_at_once_is_one_handoff_and_one_switch_time(
    host: LocalHost,
) -> None:
    """A web chat visitor gives a customer's number and moves to WhatsApp; their first WhatsApp message reaches the
    host twice at the same moment (Event Grid redelivers). The supervisor sees one accepted handoff that succeeded,
    one switch time, and gets the same answer from five reads at once (each of which settles the handoff)."""
    async with httpx.AsyncClient(timeout=60) as client:
        assert (await figures(host, client))["handoff_success"]["n"] == 0  # the app seeds its demo customers
        started = time.monotonic()
        chat = await WebChat(host, client).open()
        await chat.say("what's my balance? my number is 555-555-0122")
        earlier = len(await outbox(host, client, OWNER_PHONE))
        assert "sending you a WhatsApp message" in await chat.say("can we do this on WhatsApp?")
        await eventually(lambda: invited(host, client, earlier))

        built = await client.post(f"{host.acs_url}/_emulator/inbound",
                                  json={"from": OWNER_PHONE, "text": "hi, it's me", "deliver": False})
        assert built.status_code == 200, built.text
        event = built.json()["event"]
        deliveries = await asyncio.gather(*(
            client.post(f"{host.url}{WEBHOOK}", json=[event], headers={"aeg-event-type": "Notification"})
            for _ in range(2)))
        assert all(d.status_code in (200, 202) for d in deliveries), [d.text for d in deliveries]
        answers = await eventually(lambda: continuations(host, client, earlier))
        elapsed = time.monotonic() - started

        reads = await asyncio.gather(*(figures(host, client) for _ in range(5)))
        answers = await continuations(host, client, earlier)

    assert len(answers) == 1, answers  # the customer was answered once
    for seen in reads:
        assert seen["handoff_success"] | {"target": ""} == {
            "n": 1, "succeeded": 1, "rate": 1.0, "target_rate": 0.9, "met": True, "target": ""}
        switch = seen["channel_switch_seconds"]
        assert switch["n"] == 1 and 0 <= switch["p50"] == switch["p95"] < elapsed, switch
        assert seen["context_preservation"]["n"] == 1, seen["context_preservation"]
    switch_times = [seen["channel_switch_seconds"] for seen in reads]
    assert all(s == switch_times[0] for s in switch_times), switch_times


async def invited(host: LocalHost, client: httpx.AsyncClient, earlier: int) -> list[dict[str, Any]]:
    return [m for m in (await outbox(host, client, OWNER_PHONE))[earlier:] if m["kind"] == "template"]


async def continuations(host: LocalHost, client: httpx.AsyncClient, earlier: int) -> list[str]:
    """The agent's texts on WhatsApp that carry on from the web chat (the answer to the first message)."""
    return [m["content"] for m in (await outbox(host, client, OWNER_PHONE))[earlier:]
            if m["kind"] == "text" and "carrying on from our web chat" in m["content"]]


# 2. A burst of conversations ending in the same second ----------------------------------------------------------


async def test_twenty_web_chats_at_once_are_twenty_conversations(host: LocalHost) -> None:
    """20 visitors open web chat and write at the same moment, through the host: the figures count 20
    conversations, each with its one message, none lost and none twice."""
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=BURST * 2)) as client:
        assert (await figures(host, client))["resolution"]["n"] == 0

        async def visit() -> str:
            chat = await WebChat(host, client).open()
            return await chat.say("is there an outage at 123 Oak St, Springfield?")

        replies = await asyncio.gather(*(visit() for _ in range(BURST)))
        assert all(replies), replies
        seen = await figures(host, client)
    assert seen["escalations"] == {"n": BURST, "escalated": 0, "rate": 0.0}, seen["escalations"]
    resolution = seen["resolution"]
    assert resolution["n"] == BURST, resolution
    assert resolution["turns"]["p95"] in (None, 1), resolution  # one message each: no turn counted twice


@pytest.fixture
async def states(state_kind: str, tmp_path: Path, request: pytest.FixtureRequest):
    """A factory of state clients on one store, each as another app instance would hold it."""
    opened: list[SessionState] = []
    url = request.getfixturevalue("redis_server").url if state_kind == "redis" else ""

    def new() -> SessionState:
        state = RedisSessionState(url) if url else SqliteSessionState(tmp_path / "state.sqlite3")
        opened.append(state)
        return state

    yield new
    for state in opened:
        await state.close()


async def test_two_hundred_sessions_noted_in_the_same_millisecond_are_all_in_the_index(states) -> None:
    """The time index's write path: four instances note 50 sessions each, all at the same instant (one frozen
    clock, so one hour bucket and one millisecond). Adding to the index is one atomic set insert on every store (no
    read-modify-write of a list), so all 200 are read back, each once; a session noted again by a retried open is
    still one."""
    instant = time.time()
    ledgers = [Ledger(states(), clock=lambda: instant) for _ in range(4)]
    sessions = [(f"cust-{i}", new_id("web")) for i in range(200)]
    await asyncio.gather(*(ledgers[i % 4].session_opened(c, s, continues=False) for i, (c, s) in enumerate(sessions)))
    later = instant + 0.5  # the same session noted again half a second later, by another instance
    await Ledger(states(), clock=lambda: later).session_opened(*sessions[0], continues=False)

    found = await Ledger(states(), clock=lambda: later).sessions_since(instant - 60)
    assert sorted(found) == sorted((c, s, False) for c, s in sessions)


# 3. A delay at the store boundary between two writers of the same record -----------------------------------------


class SlowWrites(SqliteCustomerStore):
    """The real SQLite store, with `delay` seconds before each write of a record: a busy database or network, so
    another instance's write lands in between and this one must read again (the store's optimistic retry)."""

    def __init__(self, path: Path, delay: float) -> None:
        super().__init__(path)
        self.delay = delay

    async def _replace(self, customer: Customer) -> Customer:
        await asyncio.sleep(self.delay)
        return await super()._replace(customer)


@pytest.fixture
async def instances(tmp_path: Path, states):
    """Two app instances: each its own store on the same customer database (delayed writes) and its own state
    client on the same state, with the offline policy."""
    path = tmp_path / "customers.sqlite3"
    stores = [SlowWrites(path, 0.15), SlowWrites(path, 0.05)]
    yield [Conversation(SCENARIO, store, states(), OfflinePolicy()) for store in stores]
    for store in stores:
        await store.close()


async def test_two_instances_with_delayed_writes_count_one_handoff_and_one_conversation(
    instances: list[Conversation], states, tmp_path: Path
) -> None:
    """A WhatsApp customer accepts web chat. Both instances then do each step (as a retried request or a
    redelivered event reaching another instance would), at once, with their writes held back: both record the
    acceptance (the second 20 ms later), both run the orchestration's step that puts the handoff on the record,
    both open the continuing web chat session and both answer its first message (one Idempotency-Key). The figures
    count one accepted handoff that succeeded, one switch time from the yes to that message, one conversation with
    three customer messages."""
    a, b = instances
    phone = f"+1333{uuid.uuid4().int % 10**7:07d}"
    whatsapp = new_id("wa")
    opened = await a.open_for_identity(Channel.WHATSAPP, whatsapp, Identity(IdentityKind.PHONE, phone), greet=False)
    customer_id = opened.customer.customer_id
    await a.turn(whatsapp, customer_id, "my power is out at 123 Oak St, Springfield")
    accepted = await b.turn(whatsapp, customer_id, "can we continue on web chat instead?")
    assert accepted.switch_to == "webchat", [r.text for r in accepted.replies]

    plan = HandoffPlan(instance_id=instance_id_for(whatsapp), customer_id=customer_id, from_session_id=whatsapp,
                       from_channel="whatsapp", to_channel="webchat", remind_after_seconds=600,
                       expire_after_seconds=1800, traceparent=None)
    await asyncio.gather(a.desk.handoff_started(customer_id, whatsapp, "webchat"),
                         later(0.02, b.desk.handoff_started(customer_id, whatsapp, "webchat")))
    await asyncio.gather(*(save_context(SimpleNamespace(customers=c.customers), plan, "power cut at 123 Oak St")
                           for c in instances))

    web = new_id("web")
    both = await asyncio.gather(*(c.open(Channel.WEBCHAT, web, customer_id) for c in instances))
    assert [o.continued is not None for o in both].count(True) == 1  # one instance continued it; the other found it
    key = uuid.uuid4().hex
    answered = await asyncio.gather(*(c.turn(web, customer_id, "is the power back yet?", key=key) for c in instances))
    assert [o.replayed for o in answered].count(False) == 1

    reader = SqliteCustomerStore(tmp_path / "customers.sqlite3")
    try:
        figures_ = Figures(SCENARIO, reader, states())
        reads = await asyncio.gather(*(figures_.compute(1) for _ in range(3)))  # each settles the handoff
        record = await reader.get(customer_id)
    finally:
        await reader.close()

    yes = next(t.at for t in record.sessions[whatsapp].turns if t.switch_to == "webchat")
    first = next(t.at for t in record.sessions[web].turns if t.role == "customer")
    expected = round(_epoch(first) - _epoch(yes), 1)
    for seen in reads:
        assert (seen["handoff_success"]["n"], seen["handoff_success"]["succeeded"]) == (1, 1), seen["handoff_success"]
        assert seen["channel_switch_seconds"] | {"target": "", "met": None} == {
            "n": 1, "p50": expected, "p95": expected, "met": None, "target": ""}
        assert seen["context_preservation"]["n"] == 1, seen["context_preservation"]
        assert seen["resolution"]["n"] == 1 and seen["escalations"]["n"] == 1, seen["resolution"]
    messages = [t for s in (whatsapp, web) for t in record.sessions[s].turns if t.role == "customer"]
    assert len(messages) == 3, [t.text for t in messages]


async def later(seconds: float, work):
    await asyncio.sleep(seconds)
    return await work


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()
