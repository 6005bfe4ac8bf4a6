"""The handoff summary written by the model, checked before a customer reads it.

The local host runs the OpenAI policy against the OpenAI-compatible test server (tests/peers/openai_server.py): a fake
at the network boundary, because the real service cannot run here; the `openai` SDK, the Durable orchestration, the
record store and the ACS emulator that carries the WhatsApp invitation are all real. The caller's leg runs the
conversation core in this process on the host's own store, as the media gateway does (tests/e2e/test_handoff.py),
offline, so the only model requests are the ones the handoff makes.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from pathlib import Path

import httpx
import pytest

from shared.conversation import Conversation
from shared.models import Channel, Customer, Identity, IdentityKind, new_id
from shared.policies.offline import OfflinePolicy
from shared.scenario import load_scenario
from shared.stores.embedded_customers import SqliteCustomerStore
from shared.stores.embedded_state import InProcessSessionState
from shared.summary import SUMMARY_FALLBACKS
from shared.tokens import TokenSigner, load_secret
from tests.observability.telemetry_file import Exported
from tests.peers.local_host import LocalHost

SCENARIO = load_scenario("utilities")
async def soon(check: Callable[[], Awaitable[Any]], timeout: float = 30) -> Any:
    """`check()` once it is truthy. Async, so the test's OpenAI server (on this event loop) answers meanwhile."""
    deadline = time.monotonic() + timeout
    while not (result := await check()):
        assert time.monotonic() < deadline, f"timed out waiting for {check}"
        await asyncio.sleep(0.1)
    return result
ADDRESS_LINE = "123 Oak Street, Springfield"


class Handoffs:
    def __init__(self, host: LocalHost, data_dir: Path, exported: Exported, client: httpx.AsyncClient) -> None:
        self.host, self.data_dir, self.exported, self.client = host, data_dir, exported, client

    async def caller_reporting_an_outage(self) -> tuple[Customer, str]:
        """A new caller reports an outage and gives the address: the agent checks it and answers with the ETA."""
        store = SqliteCustomerStore(self.data_dir / "customers.sqlite3")
        try:
            conversation = Conversation(SCENARIO, store, InProcessSessionState(), OfflinePolicy())
            phone, session_id = f"+1333{uuid.uuid4().int % 10**7:07d}", new_id("call")
            opened = await conversation.open_for_identity(Channel.VOICE, session_id, Identity(IdentityKind.PHONE, phone))
            customer_id = opened.customer.customer_id
            for line in ("we have no electricity", ADDRESS_LINE):
                await conversation.turn(session_id, customer_id, line)
            return await store.get(customer_id), session_id
        finally:
            await store.close()

    async def start_handoff(self, customer: Customer, session_id: str) -> str:
        token = TokenSigner(load_secret("", self.data_dir)).issue("call-control", 600, sid=session_id,
                                                                  cid=customer.customer_id)
        response = await self.client.post(f"{self.host.url}/api/handoffs", headers={"Authorization": f"Bearer {token}"},
                                    json={"customer_id": customer.customer_id, "session_id": session_id,
                                          "to_channel": "whatsapp"})
        assert response.status_code == 202, response.text
        return response.json()["id"]

    async def invitation(self, phone: str) -> str:
        """The WhatsApp invitation the customer received, as its words reach them."""
        async def sent() -> list[dict]:
            response = await self.client.get(f"{self.host.acs_url}/_emulator/messages", params={"to": phone})
            return [m for m in response.json() if m["kind"] == "template"]
        return json.dumps((await soon(sent))[0]["templateValues"])

    async def record(self, customer_id: str) -> Customer:
        store = SqliteCustomerStore(self.data_dir / "customers.sqlite3")
        try:
            return await store.get(customer_id)
        finally:
            await store.close()


@pytest.fixture
async def handoffs(local_host_factory, tmp_path, openai_server) -> AsyncIterator[Handoffs]:
    """A host of each test's own (the test server runs on the test's event loop), counting from zero."""
    work = tmp_path
    data_dir = work / "data"
    host = await asyncio.to_thread(
        local_host_factory,
        SWITCHBOARD_DATA_DIR=str(data_dir), SWITCHBOARD_POLICY="openai", OPENAI_BASE_URL=openai_server.base_url,
        OPENAI_API_KEY="k", HANDOFF_REMIND_AFTER_SECONDS="3600", HANDOFF_EXPIRE_AFTER_SECONDS="3600",
        SWITCHBOARD_TELEMETRY=str(work / "telemetry.jsonl"), OTEL_METRIC_EXPORT_INTERVAL="300",
    )
    async with httpx.AsyncClient(timeout=60) as client:
        (await client.get(f"{host.url}/api/ops/queue")).raise_for_status()  # the app seeds its demo customers
        yield Handoffs(host, data_dir, Exported(work / "telemetry.jsonl"), client)
    host.stop()


async def _async(value: Any) -> Any:
    return value


def _phone(customer: Customer) -> str:
    return next(i.value for i in customer.identities if i.kind is IdentityKind.PHONE)


async def test_a_summary_the_model_writes_well_is_the_one_the_customer_reads(handoffs, openai_server) -> None:
    customer, session_id = await handoffs.caller_reporting_an_outage()
    address = customer.collected["service_address"]
    written = f"You were reporting the power outage at {address}; crews expect power back by 4:00 PM."
    openai_server.reply_text(written)
    before = len(openai_server.requests)

    await handoffs.start_handoff(customer, session_id)

    assert written in await handoffs.invitation(_phone(customer))
    assert (await handoffs.record(customer.customer_id)).summary == written
    # The model wrote it from the transcript and the collected data, told what it must state.
    request = openai_server.requests[before]
    system, transcript = request.messages[0]["content"], request.messages[1]["content"]
    assert f"service_address: {address}" in system and "Springfield Power & Water" in system
    assert "Customer: we have no electricity" in transcript and "4:00 PM" in transcript
    assert handoffs.exported.total(SUMMARY_FALLBACKS) == 0


async def test_a_summary_that_leaves_out_a_collected_slot_is_rejected_for_the_extractive_one(
    handoffs, openai_server
) -> None:
    customer, session_id = await handoffs.caller_reporting_an_outage()
    address = customer.collected["service_address"]
    openai_server.reply_text("You were reporting a power outage; crews expect power back by 4:00 PM.")

    await handoffs.start_handoff(customer, session_id)

    invitation = await handoffs.invitation(_phone(customer))
    assert f"You were reporting the power outage at {address}." in invitation  # the extractive summary
    assert "a power outage;" not in invitation
    summary = (await handoffs.record(customer.customer_id)).summary
    assert summary.startswith(f"You were reporting the power outage at {address}. Where we got to:")
    assert await soon(lambda: _async(handoffs.exported.total(SUMMARY_FALLBACKS, what="summary", reason="rejected") == 1))


async def test_a_model_that_does_not_answer_leaves_the_extractive_summary(handoffs, openai_server) -> None:
    customer, session_id = await handoffs.caller_reporting_an_outage()
    openai_server.fail(500, times=5)  # past the SDK's retries

    await handoffs.start_handoff(customer, session_id)

    invitation = await handoffs.invitation(_phone(customer))
    assert f"power outage at {customer.collected['service_address']}" in invitation
    assert await soon(lambda: _async(handoffs.exported.total(SUMMARY_FALLBACKS, what="summary", reason="error") >= 1))
