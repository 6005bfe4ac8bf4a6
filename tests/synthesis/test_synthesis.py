"""The post-conversation synthesis, through the running system: `python -m local` (offline policy, so the synthesis
is the rule-based one), its local Durable engine, and real HTTP as the customer, the person at the desk and the
Durable extension's clients use it.

A conversation ends; a Durable activity writes what it came to on the customer record, once; the desk shows it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.conversation import Conversation
from shared.models import Channel, Customer, Identity, IdentityKind, new_id
from shared.policies.offline import OfflinePolicy
from shared.scenario import load_scenario
from shared.stores.embedded_customers import SqliteCustomerStore
from shared.stores.embedded_state import InProcessSessionState
from shared.tokens import TokenSigner, load_secret
from tests.desk.people import Person, customer_asking_for_a_person
from tests.peers.local_host import LocalHost

SCENARIO = load_scenario("utilities")
DURABLE = "/runtime/webhooks/durabletask"
NOTE = "Crew to check the line; call back Monday"


async def soon(check: Callable[[], Awaitable[Any]], timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := await check()):
        assert time.monotonic() < deadline, f"timed out waiting for {check}"
        await asyncio.sleep(0.1)
    return result


class System:
    def __init__(self, host: LocalHost, data_dir: Path, web: httpx.AsyncClient) -> None:
        self.host, self.data_dir, self.web = host, data_dir, web

    async def record(self, customer_id: str) -> Customer:
        store = SqliteCustomerStore(self.data_dir / "customers.sqlite3")
        try:
            return await store.get(customer_id)
        finally:
            await store.close()

    async def start_synthesis(self, instance_id: str, end: dict[str, Any]) -> None:
        """Start the synthesis orchestration as the extension's client does (a redelivered end starts one too)."""
        response = await self.web.post(f"{DURABLE}/orchestrators/synthesis_orchestrator/{instance_id}", json=end)
        # The extension refuses a second start of a running instance with a 500 naming the reason.
        refused = response.status_code == 500 and "OrchestrationAlreadyExists" in response.text
        assert response.status_code == 202 or refused, response.text

    async def finished(self, instance_id: str) -> dict[str, Any]:
        async def done() -> dict[str, Any] | None:
            status = (await self.web.get(f"{DURABLE}/instances/{instance_id}")).json()
            return status if status.get("runtimeStatus") in ("Completed", "Failed") else None
        return await soon(done)


@pytest.fixture(scope="module")
def system_host(local_host_factory, tmp_path_factory) -> tuple[LocalHost, Path]:
    data_dir = tmp_path_factory.mktemp("synthesis-data")
    host = local_host_factory(SWITCHBOARD_DATA_DIR=str(data_dir), HANDOFF_REMIND_AFTER_SECONDS="1",
                              HANDOFF_EXPIRE_AFTER_SECONDS="1")
    return host, data_dir


@pytest.fixture
async def system(system_host) -> AsyncIterator[System]:
    host, data_dir = system_host
    async with httpx.AsyncClient(base_url=host.url, timeout=60) as web:
        yield System(host, data_dir, web)


async def _closed_with_a_person(system: System, disposition: str) -> tuple[Person, str, str]:
    """A web chat customer reports an outage, asks for a person, and the person closes the case with `disposition`.
    Returns the person, the escalation and the session."""
    customer = await customer_asking_for_a_person(system.web, first="my lights are out at 123 Oak Street")
    person = await Person.signed_in(system.host.url, f"Dana {uuid.uuid4().hex[:6]}")
    await person.available()
    escalation_id = (await person.waiting_for(customer.session_id))["escalation_id"]
    assert (await person.claim(escalation_id)).status_code == 200
    await person.ok("POST", f"/api/desk/escalations/{escalation_id}/close", json={"disposition": disposition,
                                                                                  "note": NOTE})
    return person, escalation_id, customer.session_id


async def test_a_case_closed_at_the_desk_has_its_synthesis_on_the_desk_api(system: System) -> None:
    person, escalation_id, session_id = await _closed_with_a_person(system, "follow_up")
    try:
        async def written() -> list[dict[str, Any]]:
            return (await person.context(escalation_id))["syntheses"]

        [synthesis] = await soon(written)
        assert synthesis["session_id"] == session_id and synthesis["channel"] == "webchat"
        assert (synthesis["ended_by"], synthesis["disposition"], synthesis["escalation_id"]) == (
            "desk_disposition", "follow_up", escalation_id)
        assert synthesis["goal"] == "reporting the power outage at 123 Oak Street" and synthesis["intent"] == "outage"
        # A follow-up is not a resolution: the person's disposition and note say what happens next.
        assert synthesis["goal_met"] is False and synthesis["next_action"] == f"Follow up with the customer: {NOTE}"
        assert "power outage at 123 Oak Street" in synthesis["summary"] and synthesis["sentiment"] == "neutral"
        # The agent promised a text when the power is back: the synthesis carries it, not yet sent.
        [follow_up] = synthesis["follow_ups"]
        assert follow_up["kind"] == "outage_restored" and follow_up["sent"] is False
        assert follow_up["text"] == f"Text the customer when outage {follow_up['ref']} is restored"
        assert synthesis["written_by"] == "rules"
    finally:
        await person.close()


async def test_an_end_delivered_again_and_at_once_writes_one_synthesis(system: System) -> None:
    """The person closes the case (which starts the synthesis), and at once the same end is delivered four more
    times: twice under the close's own instance id, twice under ids of their own, as if the id had not caught them.
    One synthesis on the record, written by one of them."""
    customer = await customer_asking_for_a_person(system.web, first="my lights are out at 123 Oak Street")
    person = await Person.signed_in(system.host.url, f"Sam {uuid.uuid4().hex[:6]}")
    try:
        await person.available()
        escalation_id = (await person.waiting_for(customer.session_id))["escalation_id"]
        customer_id = (await person.context(escalation_id))["customer"]["customer_id"]
        assert (await person.claim(escalation_id)).status_code == 200
        await person.ok("POST", f"/api/desk/escalations/{escalation_id}/close",
                        json={"disposition": "resolved", "note": NOTE})
        own = f"synthesis-desk_disposition-{customer.session_id}"
        others = [f"redelivered-{uuid.uuid4().hex}" for _ in range(2)]
        end = {"customer_id": customer_id, "session_id": customer.session_id, "ended_by": "desk_disposition",
               "escalation_id": escalation_id}
        await asyncio.gather(*[system.start_synthesis(i, end) for i in [*others, own, own]])

        outputs = [(await system.finished(i))["output"] for i in [own, *others]]
        record = await system.record(customer_id)
        mine = [s for s in record.syntheses if s["session_id"] == customer.session_id]
        assert len(mine) == 1, mine
        # The close's own orchestration may have finished and been run again by a redelivery (the extension
        # restarts an instance that is no longer running): no more than one run wrote, the others found it written.
        assert [o["written"] for o in outputs].count(True) <= 1, outputs
        assert {o["reason"] for o in outputs if not o["written"]} == {"already written"}
        assert mine[0]["goal_met"] is True and mine[0]["disposition"] == "resolved"  # "resolved": the goal was met
        assert len((await person.context(escalation_id))["syntheses"]) == 1
    finally:
        await person.close()


async def test_a_handoff_nobody_takes_up_ends_the_conversation_with_its_synthesis(system: System) -> None:
    """A caller reports an outage, accepts WhatsApp and never writes there: when the handoff expires, the call's
    conversation is over and its synthesis says what we still owe them (the text when the power is back)."""
    store = SqliteCustomerStore(system.data_dir / "customers.sqlite3")
    try:
        conversation = Conversation(SCENARIO, store, InProcessSessionState(), OfflinePolicy())
        phone, session_id = f"+1333{uuid.uuid4().int % 10**7:07d}", new_id("call")
        opened = await conversation.open_for_identity(Channel.VOICE, session_id, Identity(IdentityKind.PHONE, phone))
        customer_id = opened.customer.customer_id
        for line in ("we have no electricity", "123 Oak Street, Springfield", "thanks, that's great"):
            await conversation.turn(session_id, customer_id, line)
    finally:
        await store.close()
    token = TokenSigner(load_secret("", system.data_dir)).issue("call-control", 600, sid=session_id, cid=customer_id)
    started = await system.web.post("/api/handoffs", headers={"Authorization": f"Bearer {token}"},
                                    json={"customer_id": customer_id, "session_id": session_id,
                                          "to_channel": "whatsapp"})
    assert started.status_code == 202, started.text
    status = await system.finished(started.json()["id"])
    assert status["output"] == {"outcome": "expired"}

    [synthesis] = (await system.record(customer_id)).syntheses
    assert (synthesis["session_id"], synthesis["channel"], synthesis["ended_by"]) == (
        session_id, "voice", "handoff_expired")
    assert synthesis["goal_met"] is True and synthesis["sentiment"] == "positive"  # the ETA was given; "thanks"
    [follow_up] = synthesis["follow_ups"]
    assert synthesis["next_action"] == follow_up["text"] == f"Text the customer when outage {follow_up['ref']} is restored"
