"""WhatsApp with a person at the desk: the customer writes through the ACS emulator to a real `python -m local`, and a
person signed in at the desk (the host's dev sign-in) claims, writes and closes through the desk's HTTP API.

Where a test needs to reach inside (to run delivery itself, or to play a process that died after sending), it runs
the WhatsApp service in this process on the host's own stores: its SQLite record store and SQLite session state, the
same files, so the customer's lock and the record are shared with the host. Everything the customer receives is read
from the emulator's outbox.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from local.acs.messages import CHANNEL_ID
from local.auth import dev_agent_id
from shared.conversation import DESK_PHRASES, Conversation
from shared.desk import AVAILABLE, Desk, DeskAgent
from shared.messenger import TextMessage
from shared.messenger.acs import AcsMessenger
from shared.models import (
    Channel, ChannelSession, Delivery, Escalation, EscalationStatus, Identity, IdentityKind, Turn,
)
from shared.policies.offline import OfflinePolicy
from shared.scenario import load_scenario
from shared.stores.embedded_customers import SqliteCustomerStore
from shared.stores.embedded_sqlite_state import SqliteSessionState
from shared.whatsapp.service import WhatsAppService
from tests.whatsapp.conftest import ACCESS_KEY, WhatsAppStack, new_number

SCENARIO = load_scenario("utilities")
PLACE = re.compile(r"You're number (\d+) in line")
DANA = DeskAgent(dev_agent_id("Dana"), "Dana")  # who the host's sign-in says Dana is
JOINED = DESK_PHRASES["person_joined"].format(person="Dana", company=SCENARIO.company)
CLOSED = DESK_PHRASES["person_closed"].format(company=SCENARIO.company)


@pytest.fixture(scope="module")
def stack(local_host_factory, tmp_path_factory) -> Iterator[WhatsAppStack]:
    data_dir = tmp_path_factory.mktemp("desk-whatsapp-data")
    host = local_host_factory(SWITCHBOARD_DATA_DIR=str(data_dir), ACS_ACCESS_KEY=ACCESS_KEY,
                              WHATSAPP_CHANNEL_ID=CHANNEL_ID)
    assert host.acs_url is not None
    with httpx.Client(timeout=60) as client:
        yield WhatsAppStack(host, host.acs_url, data_dir, client)


@dataclass
class DeskSide:
    """Dana at the desk: her requests to the desk's routes, and the host's stores and WhatsApp service to look inside."""

    page: httpx.Client  # signed in as Dana
    desk: Desk
    whatsapp: WhatsAppService
    customers: SqliteCustomerStore

    def post(self, path: str, body: dict | None = None, key: str | None = None) -> dict:
        response = self.page.post(path, json=body or {}, headers={"Idempotency-Key": key} if key else {})
        assert response.status_code == 200, response.text
        return response.json()

    async def escalation_of(self, phone: str) -> Escalation:
        customer = await self.customers.find_by_identity(Identity(IdentityKind.PHONE, phone))
        assert customer is not None and customer.escalations, "the customer was never escalated"
        return customer.escalations[-1]

    async def session(self, phone: str) -> ChannelSession:
        """The customer's one WhatsApp session, as the record holds it now."""
        customer = await self.customers.find_by_identity(Identity(IdentityKind.PHONE, phone))
        assert customer is not None
        (session,) = [s for s in customer.sessions.values() if s.channel is Channel.WHATSAPP]
        return session

    def waiting(self) -> list[dict]:
        response = self.page.get("/api/desk/queue")
        assert response.status_code == 200, response.text
        return response.json()["waiting"]

    def claim(self, escalation: Escalation) -> None:
        self.post(f"/api/desk/escalations/{escalation.escalation_id}/claim")

    def say(self, escalation: Escalation, text: str, key: str) -> None:
        self.post(f"/api/desk/escalations/{escalation.escalation_id}/messages", {"text": text}, key=key)

    def close(self, escalation: Escalation) -> None:
        self.post(f"/api/desk/escalations/{escalation.escalation_id}/close",
                  {"disposition": "resolved", "note": "explained the bill"})

    async def deliver(self, escalation: Escalation) -> None:
        entry = await self.desk.entry(escalation.escalation_id)
        await self.whatsapp.deliver_owed(entry["customer_id"], escalation.session_id)


@pytest.fixture
async def desk(stack: WhatsAppStack) -> AsyncIterator[DeskSide]:
    customers = SqliteCustomerStore(stack.data_dir / "customers.sqlite3")
    state = SqliteSessionState(stack.data_dir / "state.sqlite3")
    messenger = AcsMessenger(stack.acs_url, CHANNEL_ID, access_key=ACCESS_KEY)
    conversation = Conversation(SCENARIO, customers, state, OfflinePolicy())
    whatsapp = WhatsAppService(SCENARIO, customers, state, conversation, messenger, channel_id=CHANNEL_ID)
    with httpx.Client(base_url=stack.host.url, timeout=60) as page:
        assert page.get("/.auth/login/dev", params={"agent": "Dana"}).status_code in (302, 303)
        side = DeskSide(page, conversation.desk, whatsapp, customers)
        side.post("/api/desk/presence", {"status": AVAILABLE})
        yield side
    await messenger.close()
    await state.close()
    await customers.close()


def texts_after(stack: WhatsAppStack, phone: str, before: int) -> list[str]:
    return stack.texts(phone)[before:]


async def test_a_person_talks_with_a_whatsapp_customer_and_every_line_arrives_once(
    stack: WhatsAppStack, desk: DeskSide
) -> None:
    phone = new_number()
    stack.inbound(phone, "I want to talk to a person")
    (told,) = stack.texts(phone)
    escalation = await desk.escalation_of(phone)
    assert (match := PLACE.search(told)) and escalation.status is EscalationStatus.WAITING
    assert int(match.group(1)) == await desk.desk.position(escalation.escalation_id)

    (queued,) = [e for e in desk.waiting() if e["escalation_id"] == escalation.escalation_id]
    assert (queued["channel"], queued["reason"]) == ("whatsapp", "asked for a person")

    desk.claim(escalation)
    desk.claim(escalation)  # the person's claim retried (a double click, a lost response)
    desk.say(escalation, "Hi! I can see your account. What can I help with?", key="say-1")
    desk.say(escalation, "Hi! I can see your account. What can I help with?", key="say-1")  # retried
    await asyncio.gather(*(desk.deliver(escalation) for _ in range(3)))  # and delivery run again, all at once
    assert texts_after(stack, phone, 1) == [JOINED, "Hi! I can see your account. What can I help with?"]

    # The customer's next message reaches the person (the transcript), not the AI: nothing goes back.
    event = stack.inbound(phone, "my bill looks too high this month", deliver=False)["event"]
    assert stack.post_events([event]).status_code == 202
    assert stack.post_events([event]).status_code == 202  # Event Grid delivers it again
    assert texts_after(stack, phone, 3) == []
    session = await desk.session(phone)
    assert [(t.role, t.text, t.person) for t in session.turns[-3:]] == [
        ("agent", JOINED, True), ("agent", "Hi! I can see your account. What can I help with?", True),
        ("customer", "my bill looks too high this month", False),
    ]
    inbound = session.message(key=event["data"]["messageId"])
    assert inbound is not None and inbound.status is Delivery.RECEIVED and session.last_inbound_at == inbound.at
    assert not [m for m in session.messages if m.reply_to == inbound.key]  # it earned no reply
    context = await desk.desk.context(escalation.escalation_id)
    assert context["sessions"][-1]["turns"][-1]["text"] == "my bill looks too high this month"

    desk.close(escalation)
    desk.close(escalation)  # retried
    assert texts_after(stack, phone, 3) == [CLOSED]
    closed = await desk.escalation_of(phone)
    assert (closed.status, closed.disposition, closed.note) == (EscalationStatus.CLOSED, "resolved",
                                                               "explained the bill")
    # Every line the person wrote carries the channel's receipt on the record.
    sent = {m["messageId"] for m in stack.outbox(phone)}
    people = [m for m in (await desk.session(phone)).messages if m.direction == "out" and m.reply_to is None]
    assert [m.text for m in people] == [JOINED, "Hi! I can see your account. What can I help with?", CLOSED]
    assert all(m.message_id in sent for m in people)

    stack.inbound(phone, "what's my balance?")  # the AI is theirs again
    assert texts_after(stack, phone, 4) and "account number" in texts_after(stack, phone, 4)[-1]


async def test_a_send_whose_receipt_was_lost_is_not_sent_again(stack: WhatsAppStack, desk: DeskSide) -> None:
    phone = new_number()
    stack.inbound(phone, "can I speak to a human please")
    escalation = await desk.escalation_of(phone)
    desk.claim(escalation)
    await desk.desk.say(escalation.escalation_id, DANA, "One moment, checking.",
                        on_say=desk.whatsapp.on_person_say, key="say-lost")
    # The desk's process sent it, then died before writing the receipt: ACS has it, the record still owes it.
    (owed,) = [m for m in (await desk.session(phone)).messages if m.status is Delivery.PENDING]
    accepted = await desk.whatsapp.messenger.send(TextMessage(phone, owed.text), repeatability_id=owed.key,
                                                  first_sent=datetime.fromisoformat(owed.at))

    await desk.deliver(escalation)  # the retry sends under the same key: recognised, not delivered twice

    assert stack.texts(phone).count("One moment, checking.") == 1
    assert (await desk.session(phone)).message(key=owed.key).message_id == accepted  # type: ignore[union-attr]
    desk.close(escalation)


async def test_outside_the_24_hour_window_the_persons_lines_wait_for_the_customer(
    stack: WhatsAppStack, desk: DeskSide
) -> None:
    phone = new_number()
    day_ago = (datetime.now(timezone.utc) - timedelta(hours=25)).isoformat()
    stack.inbound(phone, "I need to speak to a person", receivedTimestamp=day_ago)  # read only a day later
    escalation = await desk.escalation_of(phone)
    (template,) = stack.outbox(phone)
    assert template["kind"] == "template"  # the place in line is held; the approved template invites them back

    desk.claim(escalation)
    desk.say(escalation, "Sorry for the wait! Are you still there?", key="late-1")
    assert len(stack.outbox(phone)) == 1  # free text may not go out, and one invitation is enough

    stack.inbound(phone, "yes, still here")  # the window reopens: what was held goes out, in order, once
    texts = stack.texts(phone)
    assert PLACE.search(texts[0])
    assert texts[1:] == [JOINED, "Sorry for the wait! Are you still there?"]
    assert not [m for m in (await desk.session(phone)).messages if m.status is Delivery.HELD]
    desk.close(escalation)


async def test_on_person_say_logs_only_whatsapp_and_the_same_write_again_logs_the_same_keys(desk: DeskSide) -> None:
    def said(channel: Channel) -> ChannelSession:
        session = ChannelSession("wa_1", channel, last_inbound_at=datetime.now(timezone.utc).isoformat())
        session.add_turn(Turn("agent", "Hello", "Dana", at="2026-01-01T10:00:00.000+00:00", person=True))
        desk.whatsapp.on_person_say(session, ["Hello"])
        return session

    first, again = said(Channel.WHATSAPP), said(Channel.WHATSAPP)  # an optimistic-concurrency write applied twice
    assert [(m.text, m.status) for m in first.messages] == [("Hello", Delivery.PENDING)]
    assert [m.key for m in first.messages] == [m.key for m in again.messages]
    desk.whatsapp.on_person_say(first, ["Hello"])  # the same turn logged again changes nothing
    assert len(first.messages) == 1
    assert said(Channel.WEBCHAT).messages == []  # another channel's session is not WhatsApp's to send
