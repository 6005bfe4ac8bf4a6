"""One trace per customer journey, across a Durable handoff, read from what a real local host exports.

The host runs with SWITCHBOARD_TELEMETRY=<file> (the JSON-lines exporter) and is driven as a customer would drive it:
web chat over HTTP, WhatsApp through the ACS emulator, a caller's handoff through `POST /api/handoffs` with the
traceparent the media gateway sends. The assertions read the exported spans only.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from shared.conversation import Conversation
from shared.models import Channel, Identity, IdentityKind, new_id
from shared.policies.offline import OfflinePolicy
from shared.scenario import load_scenario
from shared.stores.embedded_customers import SqliteCustomerStore
from shared.stores.embedded_state import InProcessSessionState
from shared.tokens import TokenSigner, load_secret
from tests.handoff_links import sent_link
from tests.observability.telemetry_file import Exported
from tests.peers.local_host import LocalHost
from tests.waiting import eventually as wait_until

eventually = partial(wait_until, timeout=30)
JORDAN = "+15555550100"  # a demo customer the app seeds


@dataclass
class Observed:
    host: LocalHost
    data_dir: Path
    exported: Exported
    client: httpx.Client

    def url(self, path: str) -> str:
        return f"{self.host.url}{path}"

    def outbox(self, phone: str) -> list[dict[str, Any]]:
        response = self.client.get(f"{self.host.acs_url}/_emulator/messages", params={"to": phone})
        response.raise_for_status()
        return response.json()

    def handoff(self, instance_id: str) -> dict[str, Any]:
        return self.client.get(self.url(f"/api/handoffs/{instance_id}")).json()

    def one(self, name: str, **attributes: Any) -> dict[str, Any]:
        spans = eventually(lambda: self.exported.spans(name, **attributes))
        assert len(spans) == 1, spans
        return spans[0]


@pytest.fixture(scope="module")
def observed(local_host_factory, tmp_path_factory) -> Iterator[Observed]:
    work = tmp_path_factory.mktemp("tracing")
    host = local_host_factory(
        SWITCHBOARD_DATA_DIR=str(work / "data"),
        SWITCHBOARD_TELEMETRY=str(work / "telemetry.jsonl"),
        HANDOFF_REMIND_AFTER_SECONDS="60",
        HANDOFF_EXPIRE_AFTER_SECONDS="60",
    )
    with httpx.Client(timeout=60) as client:
        client.get(f"{host.url}/api/ops/queue").raise_for_status()  # seeds the demo customers
        yield Observed(host, work / "data", Exported(work / "telemetry.jsonl"), client)


def test_one_trace_follows_a_web_chat_customer_onto_whatsapp(observed: Observed) -> None:
    created = observed.client.post(observed.url("/api/webchat/sessions")).json()
    session_id, auth = created["session_id"], {"Authorization": f"Bearer {created['token']}"}
    for text in ("what's my balance? my number is 555-555-0100", "can we do this on WhatsApp?"):
        response = observed.client.post(observed.url(f"/api/webchat/sessions/{session_id}/messages"),
                                        json={"text": text}, headers=auth)
        assert response.status_code == 200, response.text
    instance_id = f"handoff-{session_id}"
    eventually(lambda: [m for m in observed.outbox(JORDAN) if m.get("template") == "switchboard_handoff_invite"])
    inbound = observed.client.post(f"{observed.host.acs_url}/_emulator/inbound",
                                   json={"from": JORDAN, "text": "hi, it's me"})
    assert inbound.status_code == 200, inbound.text
    eventually(lambda: observed.handoff(instance_id)["runtime_status"] == "Completed")

    # The web chat turn that asked to switch starts the handoff: the trace is born there.
    start = observed.one("handoff.start", handoff_id=instance_id)
    trace_id = start["trace_id"]
    asked = observed.exported.span_by_id(start["parent_id"])
    assert (asked["name"], asked["trace_id"]) == ("webchat.turn", trace_id)
    assert asked["attributes"]["session_id"] == session_id
    request = observed.exported.span_by_id(asked["parent_id"])
    assert request["name"] == "webchat_post_message" and request["kind"] == "SERVER"
    assert request["attributes"]["http.status_code"] == 200

    # Every activity the orchestration ran is a child of the start, though each ran as its own invocation.
    steps = {step: observed.one(f"handoff.{step}", handoff_id=instance_id)
             for step in ("summarise", "save_context", "invite")}
    for step, span in steps.items():
        assert (span["trace_id"], span["parent_id"]) == (trace_id, start["span_id"]), step
    assert not observed.exported.spans("handoff.remind", handoff_id=instance_id)  # they came before any reminder

    # The invite went out inside the invite activity.
    invite_sends = observed.exported.children(steps["invite"], "whatsapp.send", template="switchboard_handoff_invite")
    assert len(invite_sends) == 1 and invite_sends[0]["trace_id"] == trace_id and invite_sends[0]["kind"] == "CLIENT"

    # The first WhatsApp turn continues the handoff's trace, linked to the Event Grid delivery that brought it.
    turn = observed.one("whatsapp.turn", continues_handoff=True)
    assert (turn["trace_id"], turn["parent_id"]) == (trace_id, start["span_id"])
    delivery = observed.exported.span_by_id(turn["links"][0]["span_id"])
    assert delivery["name"] == "whatsapp_events" and delivery["trace_id"] != trace_id
    assert delivery["attributes"]["event_type"].endswith("AdvancedMessageReceived") and delivery["kind"] == "CONSUMER"
    replies = observed.exported.children(turn, "whatsapp.send", message="TextMessage")
    assert replies and all(s["trace_id"] == trace_id for s in replies)
    assert turn["attributes"]["customer_id"] == steps["invite"]["attributes"]["customer_id"]  # Jordan's own record

    # Identifiers and counts only: no phone number and no customer words anywhere in what was exported.
    exported = observed.exported.path.read_text()
    for secret in ("5555550100", "555-555-0100", "my balance", "it's me", "WhatsApp?"):
        assert secret not in exported


def test_a_callers_handoff_to_web_chat_continues_the_gateways_trace(observed: Observed) -> None:
    import asyncio

    gateway_trace, gateway_span = secrets.token_hex(16), secrets.token_hex(8)
    session_id, phone = new_id("call"), "+15555550111"

    async def call() -> str:
        """The caller's turns, through the conversation core on the host's store, as the media gateway runs them."""
        store = SqliteCustomerStore(observed.data_dir / "customers.sqlite3")
        conversation = Conversation(load_scenario("utilities"), store, InProcessSessionState(), OfflinePolicy())
        await conversation.queue.set(waiting=75, estimated_wait_seconds=480)
        try:
            caller = Identity(IdentityKind.PHONE, phone)
            customer_id = (await conversation.open_for_identity(Channel.VOICE, session_id, caller)).customer.customer_id
            await conversation.turn(session_id, customer_id, "what do I owe this month")
            outcome = await conversation.turn(session_id, customer_id, "can we continue on web chat instead?")
            assert outcome.switch_to == "webchat"
            return customer_id
        finally:
            await store.close()

    customer_id = asyncio.run(call())
    signer = TokenSigner(load_secret("", observed.data_dir))
    control = signer.issue("call-control", 600, sid=session_id, cid=customer_id)  # what the gateway holds
    started = observed.client.post(
        observed.url("/api/handoffs"),
        json={"customer_id": customer_id, "session_id": session_id, "to_channel": "webchat"},
        headers={"Authorization": f"Bearer {control}", "traceparent": f"00-{gateway_trace}-{gateway_span}-01"},
    )
    assert started.status_code == 202, started.text
    instance_id = started.json()["id"]
    link = eventually(lambda: sent_link(
        observed.client.get(f"{observed.host.acs_url}/_emulator/messages").json(), instance_id))
    token = parse_qs(urlparse(link).query)["handoff"][0]
    created = observed.client.post(observed.url("/api/webchat/sessions"), json={"handoff_token": token})
    assert created.status_code == 201, created.text
    eventually(lambda: observed.handoff(instance_id)["runtime_status"] == "Completed")

    request = observed.one("handoffs_start")
    assert (request["trace_id"], request["parent_id"], request["kind"]) == (gateway_trace, gateway_span, "SERVER")
    start = observed.one("handoff.start", handoff_id=instance_id)
    assert (start["trace_id"], start["parent_id"]) == (gateway_trace, request["span_id"])
    for step in ("summarise", "save_context", "invite"):
        span = observed.one(f"handoff.{step}", handoff_id=instance_id)
        assert (span["trace_id"], span["parent_id"]) == (gateway_trace, start["span_id"]), step

    # The web chat session opened from the link carries on in the caller's trace, linked to its own request.
    continued = observed.one("webchat.continue", session_id=created.json()["session_id"])
    assert (continued["trace_id"], continued["parent_id"]) == (gateway_trace, start["span_id"])
    opened = observed.exported.span_by_id(continued["links"][0]["span_id"])
    assert opened["name"] == "webchat_create_session" and opened["trace_id"] != gateway_trace
    assert opened["attributes"]["http.status_code"] == 201
    assert continued["start"] >= opened["start"] and continued["end"] <= opened["end"]


def test_a_handoff_nobody_takes_up_is_reminded_and_expires_in_the_same_trace(local_host_factory, tmp_path) -> None:
    exported = Exported(tmp_path / "telemetry.jsonl")
    host = local_host_factory(
        SWITCHBOARD_TELEMETRY=str(exported.path), OTEL_METRIC_EXPORT_INTERVAL="300",
        HANDOFF_REMIND_AFTER_SECONDS="1", HANDOFF_EXPIRE_AFTER_SECONDS="1",
    )
    with httpx.Client(timeout=60) as client:
        client.get(f"{host.url}/api/ops/queue").raise_for_status()
        created = client.post(f"{host.url}/api/webchat/sessions").json()
        for text in ("what's my balance? my number is 555-555-0100", "can we do this on WhatsApp?"):
            response = client.post(f"{host.url}/api/webchat/sessions/{created['session_id']}/messages",
                                   json={"text": text}, headers={"Authorization": f"Bearer {created['token']}"})
            assert response.status_code == 200, response.text
        instance_id = f"handoff-{created['session_id']}"
        eventually(lambda: client.get(f"{host.url}/api/handoffs/{instance_id}").json()["runtime_status"] == "Completed")

    start = eventually(lambda: exported.spans("handoff.start", handoff_id=instance_id))[0]
    for step in ("summarise", "save_context", "invite", "remind", "expire"):
        (span,) = eventually(lambda: exported.spans(f"handoff.{step}", handoff_id=instance_id))
        assert (span["trace_id"], span["parent_id"]) == (start["trace_id"], start["span_id"]), step
    (reminder,) = exported.spans("whatsapp.send", template="switchboard_handoff_reminder")
    assert reminder["trace_id"] == start["trace_id"]
    outcome = eventually(lambda: exported.metric("switchboard.handoff.outcomes", outcome="expired"))
    assert outcome["value"] == 1 and outcome["attributes"]["to_channel"] == "whatsapp"
    duration = eventually(lambda: exported.metric("switchboard.handoff.duration", outcome="expired"))
    assert duration["count"] == 1 and duration["unit"] == "s" and duration["min"] >= 2  # remind + expire waits
    assert exported.metric("switchboard.handoff.outcomes", outcome="engaged") is None
