"""Channel handoff journeys: a caller on a busy line accepts to continue on WhatsApp or web chat, and carries on there
without repeating anything.

The voice leg runs the conversation core on channel `voice` in this process, on the host's own record store, and
starts the handoff through `POST /api/handoffs`: exactly what the media gateway does with a caller's words. The new
channel is driven the way a customer would: WhatsApp through the ACS emulator (which posts Event Grid events to the
host), web chat through the invitation link. The Durable orchestration runs in the host's local engine.
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from shared.conversation import Conversation
from shared.models import Channel, Customer, Identity, IdentityKind, new_id
from shared.policies.offline import OfflinePolicy
from shared.scenario import load_scenario
from shared.stores.embedded_customers import SqliteCustomerStore
from shared.stores.embedded_state import InProcessSessionState
from shared.tokens import TokenSigner, load_secret
from tests.handoff_links import sent_link
from tests.peers.local_host import LocalHost
from tests.verifying import ASKS_TO_VERIFY, CONFIRMED, proof
from tests.waiting import eventually as wait_until

SCENARIO = load_scenario("utilities")
eventually = partial(wait_until, timeout=30)  # a loaded CI machine runs the host, the engine and the emulator
REMIND_AFTER, EXPIRE_AFTER = 4, 4  # seconds: long enough for a customer who engages, short for one who doesn't


def asked_slots(text: str) -> set[str]:
    """The slots a reply asks for, judged by the scenario's own questions."""
    asked = {name for name, slot in SCENARIO.slots.items() if slot.ask in text}
    for tool in SCENARIO.tools.values():
        for requirement in tool.requires:
            if requirement.ask in text:
                asked |= set(requirement.any_of)
    # "I've sent a code to the phone number on the account" asks for proof, not for the account.
    if re.search(r"account number|phone number on the account", text.replace("to the phone number on the", ""), re.I):
        asked |= {"account_number"}
    return asked


@dataclass(frozen=True)
class Prove:
    """A journey's step: the caller answers the agent's check as the holder of `account` would."""

    account: str


@dataclass
class Stack:
    host: LocalHost
    data_dir: Path
    client: httpx.Client

    def url(self, path: str) -> str:
        return f"{self.host.url}{path}"

    def set_queue(self, **values: Any) -> None:
        self.client.post(self.url("/api/ops/queue"), json={"set": values}).raise_for_status()

    def outbox(self, phone: str) -> list[dict[str, Any]]:
        response = self.client.get(f"{self.host.acs_url}/_emulator/messages", params={"to": phone})
        response.raise_for_status()
        return response.json()

    def whatsapp(self, phone: str, text: str) -> list[str]:
        """The customer writes on WhatsApp; returns the texts the agent sent back for it."""
        before = len(self.outbox(phone))
        response = self.client.post(f"{self.host.acs_url}/_emulator/inbound", json={"from": phone, "text": text})
        assert response.status_code == 200, response.text
        sent = eventually(lambda: [m for m in self.outbox(phone)[before:] if m["kind"] == "text"])
        return [m["content"] for m in sent]

    def control_token(self, session_id: str, customer_id: str) -> str:
        """The call's control token, as the media gateway holds it (signed with the host's secret)."""
        return TokenSigner(load_secret("", self.data_dir)).issue("call-control", 600, sid=session_id, cid=customer_id)

    def handoff(self, instance_id: str) -> dict[str, Any]:
        response = self.client.get(self.url(f"/api/handoffs/{instance_id}"))
        assert response.status_code == 200, response.text
        return response.json()


@dataclass
class VoiceLeg:
    """A caller's side of a call, through the same conversation core the media gateway runs."""

    stack: Stack
    conversation: Conversation
    phone: str
    customer_id: str = ""
    session_id: str = field(default_factory=lambda: new_id("call"))
    heard: list[str] = field(default_factory=list)
    last: str = ""  # the replies to the last thing said

    async def dial(self) -> None:
        opened = await self.conversation.open_for_identity(Channel.VOICE, self.session_id, Identity(IdentityKind.PHONE, self.phone))
        self.customer_id = opened.customer.customer_id
        self.heard += [r.text for r in opened.replies]

    async def say(self, text: str) -> str | None:
        outcome = await self.conversation.turn(self.session_id, self.customer_id, text)
        self.heard += [r.text for r in outcome.replies]
        self.last = " ".join(r.text for r in outcome.replies)
        return outcome.switch_to

    async def verify(self, account: str) -> str | None:
        """Say what proves the caller holds `account` (the gateway's core here sends no codes: the knowledge
        answers); the reply confirms it and answers what was asked before the check."""
        switch = await self.say(proof(self.last, self.stack.host.acs_url, account))
        assert self.last.startswith(CONFIRMED), self.last
        return switch

    async def step(self, line: str | Prove) -> str | None:
        return await (self.verify(line.account) if isinstance(line, Prove) else self.say(line))

    def start_handoff(self, channel: str) -> str:
        response = self.stack.client.post(
            self.stack.url("/api/handoffs"),
            json={"customer_id": self.customer_id, "session_id": self.session_id, "to_channel": channel},
            headers={"Authorization": f"Bearer {self.stack.control_token(self.session_id, self.customer_id)}"},
        )
        assert response.status_code == 202, response.text
        return response.json()["id"]

    async def record(self) -> Customer:
        return await self.conversation.customers.get(self.customer_id)


@pytest.fixture(scope="module")
def stack(local_host_factory, tmp_path_factory) -> Iterator[Stack]:
    data_dir = tmp_path_factory.mktemp("handoff-data")
    host = local_host_factory(
        SWITCHBOARD_DATA_DIR=str(data_dir),
        HANDOFF_REMIND_AFTER_SECONDS=str(REMIND_AFTER),
        HANDOFF_EXPIRE_AFTER_SECONDS=str(EXPIRE_AFTER),
    )
    with httpx.Client(timeout=60) as client:
        client.get(f"{host.url}/api/ops/queue").raise_for_status()  # the app seeds its demo customers on first use
        yield Stack(host, data_dir, client)


@pytest.fixture
async def voice(stack: Stack):
    """A factory of callers; the queue is long (as the journeys need) and the store is the host's own."""
    store = SqliteCustomerStore(stack.data_dir / "customers.sqlite3")
    state = InProcessSessionState()  # the gateway's own hot state
    conversation = Conversation(SCENARIO, store, state, OfflinePolicy())
    await conversation.queue.set(waiting=75, estimated_wait_seconds=480)

    def caller(phone: str) -> VoiceLeg:
        return VoiceLeg(stack, conversation, phone)

    yield caller
    await store.close()


def new_phone() -> str:
    return f"+1333{uuid.uuid4().int % 10**7:07d}"


# name, caller (None = a new number), what they say on the phone (Prove: the caller answers the agent's check, as
# account data needs: a caller ID only identifies), what they write first on WhatsApp, what the continuation must
# carry, a follow-up that must be answered without asking again (WhatsApp vouches for its sender, and a caller
# verified on the phone stays verified).
WHATSAPP_JOURNEYS = [
    ("known caller, outage", "+15555550100", ["there's no power on my street"], "hi, I'm here",
     ["power outage at 123 Oak St", "4:00 PM"], ("what's my balance?", "$127.45")),
    ("known caller, billing", "+15555550111", ["I have a question about my bill", Prove("+15555550111")], "hello",
     ["asking about your bill", "$42.10"], ("how can I pay it?", "pay online")),
    ("new caller gives the account", None, ["my lights are out", "my account number is 100200300", Prove("100200300")],
     "ok I'm on WhatsApp", ["power outage at 123 Oak St", "4:00 PM"], ("and what do I owe?", "$127.45")),
    ("new caller gives the address", None, ["we have no electricity", "123 Oak Street, Springfield"], "hi",
     ["power outage at 123 Oak Street", "4:00 PM"], ("is it still the 4 pm estimate?", "4:00 PM")),
    ("new caller, usage by phone number", None, ["how much electricity did I use last month",
                                                "the account phone is 555 555 0111", Prove("+15555550111")],
     "hey", ["energy use", "431 kWh"], ("what's my balance", "$42.10")),
    ("known caller, service request", "+15555550122", ["I need a technician for my meter", "next Monday",
                                                      Prove("+15555550122")],
     "hi there", ["service request", "SR-"], ("how much do I owe", "nothing due")),
    ("known caller asks for WhatsApp themselves", "+15555550111", ["can we do this on WhatsApp?"], "hi",
     ["carrying on from your call"], ("is there an outage at my address?", "77 Elm Ave")),
]


@pytest.mark.parametrize(("name", "phone", "lines", "first", "context", "follow_up"), WHATSAPP_JOURNEYS,
                         ids=[j[0] for j in WHATSAPP_JOURNEYS])
async def test_a_caller_moves_to_whatsapp_and_is_never_asked_again(
    stack: Stack, voice, name, phone, lines, first, context, follow_up
) -> None:
    caller = voice(phone or new_phone())
    await caller.dial()
    switch = None
    for line in lines:
        switch = await caller.step(line)
    if switch is None:  # the agent offered WhatsApp on the busy line; the caller accepts
        assert any("WhatsApp" in h for h in caller.heard), caller.heard
        switch = await caller.say("yes please")
    assert switch == "whatsapp"
    earlier = len(stack.outbox(caller.phone))  # the demo customers travel in several journeys
    instance_id = caller.start_handoff("whatsapp")
    assert caller.start_handoff("whatsapp") == instance_id  # accepted twice: one orchestration

    invite = eventually(lambda: [m for m in stack.outbox(caller.phone)[earlier:] if m["kind"] == "template"])
    assert [m["template"] for m in invite] == ["switchboard_handoff_invite"]
    assert eventually(lambda: stack.handoff(instance_id)["step"] == "waiting")
    known = (await caller.record()).collected

    replies = stack.whatsapp(caller.phone, first)
    continuation = " ".join(replies)
    assert "carrying on from your call" in continuation
    for fact in context:
        assert fact in continuation, f"{name}: {fact!r} missing from {continuation!r}"
    question, answer = follow_up
    answered = " ".join(stack.whatsapp(caller.phone, question))
    assert answer in answered and not ASKS_TO_VERIFY.search(answered), f"{name}: {answered!r}"

    re_asked = [s for text in [*replies, answered] for s in asked_slots(text) if s in known]
    assert re_asked == [], f"{name}: asked again for {re_asked}"
    status = eventually(lambda: (s := stack.handoff(instance_id))["runtime_status"] == "Completed" and s)
    assert status["output"]["outcome"] == "engaged" and status["step"] == "engaged"
    assert len([m for m in stack.outbox(caller.phone)[earlier:] if m["kind"] == "template"]) == 1  # no reminder


# The web chat link keeps what the call had shown: the outage caller was only identified by caller ID, so on web
# chat his balance takes the code sent to his phone, once; the others proved it on the phone, and are asked nothing.
WEBCHAT_JOURNEYS = [
    ("outage", "+15555550100", ["the lights are out"], ["power outage at 123 Oak St"], ("what's my balance", "$127.45")),
    ("billing", "+15555550111", ["what do I owe this month", Prove("+15555550111")], ["asking about your bill"],
     ("is my power out?", "77 Elm Ave")),
    ("new caller", None, ["I'd like to know my balance", "100200311", Prove("100200311")],
     ["asking about your bill", "$42.10"], ("how do I pay", "pay online")),
]
CHECKED_ON_WEB_CHAT = {"outage"}


@pytest.mark.parametrize(("name", "phone", "lines", "context", "follow_up"), WEBCHAT_JOURNEYS,
                         ids=[j[0] for j in WEBCHAT_JOURNEYS])
async def test_a_caller_moves_to_web_chat_through_a_single_use_link(stack: Stack, voice, name, phone, lines, context,
                                                                  follow_up) -> None:
    caller = voice(phone or new_phone())
    await caller.dial()
    for line in lines:
        await caller.step(line)
    assert await caller.say("can we continue on web chat instead?") == "webchat"
    earlier = len(stack.outbox(caller.phone))
    instance_id = caller.start_handoff("webchat")

    link = eventually(lambda: sent_link(stack.outbox(caller.phone), instance_id))
    sent = eventually(lambda: [m for m in stack.outbox(caller.phone)[earlier:] if m["kind"] == "template"])
    assert sent[0]["template"] == "switchboard_handoff_link"  # the link went to their phone
    status = stack.handoff(instance_id)
    assert status["invite"]["link_sent"] is True and "handoff=" not in json.dumps(status)  # and only there
    token = parse_qs(urlparse(link).query)["handoff"][0]
    known = (await caller.record()).collected

    created = stack.client.post(stack.url("/api/webchat/sessions"), json={"handoff_token": token})
    assert created.status_code == 201, created.text
    session = created.json()
    continuation = " ".join(r["text"] for r in session["replies"])
    assert "carrying on from your call" in continuation
    for fact in context:
        assert fact in continuation
    question, answer = follow_up

    def say(text: str) -> str:
        reply = stack.client.post(stack.url(f"/api/webchat/sessions/{session['session_id']}/messages"),
                                  json={"text": text}, headers={"Authorization": f"Bearer {session['token']}"})
        assert reply.status_code == 200, reply.text
        return " ".join(r["text"] for r in reply.json()["replies"])

    answered = say(question)
    assert bool(ASKS_TO_VERIFY.search(answered)) == (name in CHECKED_ON_WEB_CHAT), f"{name}: {answered!r}"
    if name in CHECKED_ON_WEB_CHAT:
        answered = say(proof(answered, stack.host.acs_url, caller.phone))
        assert answered.startswith(CONFIRMED)
    assert answer in answered
    assert [s for text in (continuation, answered) for s in asked_slots(text) if s in known] == []

    replayed = stack.client.post(stack.url("/api/webchat/sessions"), json={"handoff_token": token})
    assert replayed.status_code == 401 and "link" in replayed.json()["error"]
    status = eventually(lambda: (s := stack.handoff(instance_id))["runtime_status"] == "Completed" and s)
    assert status["output"] == {"outcome": "engaged", "session_id": session["session_id"]}


async def test_a_customer_who_never_comes_is_reminded_once_then_the_handoff_expires(stack: Stack, voice) -> None:
    caller = voice(new_phone())
    await caller.dial()
    await caller.say("my power is out, account 100200311")
    await caller.verify("100200311")  # the outage at an account's address is the account holder's to hear
    assert await caller.say("sure") == "whatsapp"
    instance_id = caller.start_handoff("whatsapp")

    eventually(lambda: stack.handoff(instance_id)["step"] == "reminded", timeout=REMIND_AFTER + 20)
    templates = [m["template"] for m in stack.outbox(caller.phone) if m["kind"] == "template"]
    assert templates == ["switchboard_handoff_invite", "switchboard_handoff_reminder"]
    status = eventually(lambda: (s := stack.handoff(instance_id))["runtime_status"] == "Completed" and s,
                        timeout=EXPIRE_AFTER + 20)
    assert status["output"] == {"outcome": "expired"} and status["step"] == "expired"
    record = await caller.record()
    assert record.handoff is not None and record.handoff.status.value == "expired"
    assert "power outage" in record.summary  # the context stays for next time


@pytest.fixture(scope="module")
def hurried_stack(local_host_factory, tmp_path_factory) -> Iterator[Stack]:
    """A host whose Durable engine runs its timers 30 times faster: the handoff's retries span minutes by design
    (so that a store outage does not end a handoff), and a test of what happens when they run out need not wait."""
    data_dir = tmp_path_factory.mktemp("hurried-handoff-data")
    host = local_host_factory(SWITCHBOARD_DATA_DIR=str(data_dir), LOCAL_DURABLE_TIME_SCALE="30")
    with httpx.Client(timeout=60) as client:
        client.get(f"{host.url}/api/ops/queue").raise_for_status()
        yield Stack(host, data_dir, client)


async def test_an_invite_that_never_goes_out_ends_the_handoff_as_failed_on_the_record(hurried_stack: Stack) -> None:
    """WhatsApp keeps answering 503 to every try of the invite (4 sends x 12 activity attempts): the orchestration
    does not just die in the task hub; the record says the handoff failed, keeping the context, and a new handoff
    can start later."""
    from functions.handoff import RETRY

    stack = hurried_stack
    store = SqliteCustomerStore(stack.data_dir / "customers.sqlite3")
    conversation = Conversation(SCENARIO, store, InProcessSessionState(), OfflinePolicy())
    await conversation.queue.set(waiting=75, estimated_wait_seconds=480)
    caller = VoiceLeg(stack, conversation, new_phone())
    await caller.dial()
    await caller.say("my power is out, account 100200311")
    await caller.verify("100200311")  # the outage at an account's address is the account holder's to hear
    assert await caller.say("sure") == "whatsapp"
    faults = stack.client.post(f"{stack.host.acs_url}/_emulator/messages/faults",
                               json={"status": 503, "count": 4 * RETRY.max_number_of_attempts})
    assert faults.status_code == 200, faults.text
    instance_id = caller.start_handoff("whatsapp")

    status = eventually(lambda: (s := stack.handoff(instance_id))["runtime_status"] == "Completed" and s, timeout=180)
    assert status["output"]["outcome"] == "failed" and status["step"] == "failed"
    assert "503" in status["output"]["reason"]
    record = await caller.record()
    assert record.handoff is not None and record.handoff.status.value == "failed" and not record.handoff.open
    assert "power outage" in record.summary  # what was saved stays for next time
    assert [m for m in stack.outbox(caller.phone) if m["kind"] == "template"] == []
    await store.close()


def test_a_forged_or_unknown_handoff_link_is_refused(stack: Stack) -> None:
    for token in ("forged.token", "eyJhdWQiOiJoYW5kb2ZmIn0.AAAA"):
        response = stack.client.post(stack.url("/api/webchat/sessions"), json={"handoff_token": token})
        assert response.status_code == 401 and response.json()["error"]
    assert stack.client.get(stack.url("/api/handoffs/handoff-nobody")).status_code == 404


def test_bad_handoff_requests_are_refused(stack: Stack) -> None:
    def start(body: dict, token: str | None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return stack.client.post(stack.url("/api/handoffs"), json=body, headers=headers)

    token = stack.control_token("call_1", "cus_nobody")
    good = {"customer_id": "cus_nobody", "session_id": "call_1", "to_channel": "whatsapp"}
    assert start(good, None).status_code == 401
    assert start(good, "forged.token").status_code == 401
    assert start({**good, "session_id": "call_2"}, token).status_code == 403  # another call's token
    for body in ({}, {**good, "to_channel": "fax"}, {**good, "customer_id": 1}, {**good, "extra": 1}):
        assert start(body, token).status_code == 400, body
    assert start(good, token).status_code == 404  # a genuine token, but no such customer


def _kill_hard(host: LocalHost) -> None:
    """SIGKILL the host and every process under it (the gateway's supervisor and its workers), as a crashed machine
    would, and wait until they are gone: a restarted host binds the same ports."""
    import os
    import signal
    import subprocess
    import time

    def descendants(pid: int) -> list[int]:
        children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
        return [grand for child in map(int, children) for grand in (child, *descendants(child))]

    doomed = [host.process.pid, *descendants(host.process.pid)]
    for pid in doomed:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    host.process.wait()
    deadline = time.monotonic() + 10
    while any(_running(pid) for pid in doomed) and time.monotonic() < deadline:
        time.sleep(0.05)
    host.stop()  # closes its log files


def _running(pid: int) -> bool:
    """The process exists and is not a zombie (a killed orphan waits for init to reap it, its sockets already shut)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


async def test_a_host_killed_while_the_handoff_waits_finishes_it_once_after_restart(
    local_host_factory, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    settings = {"SWITCHBOARD_DATA_DIR": str(data_dir), "HANDOFF_REMIND_AFTER_SECONDS": "30",
                "HANDOFF_EXPIRE_AFTER_SECONDS": "30"}
    first = local_host_factory(**settings)
    with httpx.Client(timeout=60) as client:
        client.get(f"{first.url}/api/ops/queue").raise_for_status()
        stack = Stack(first, data_dir, client)
        store = SqliteCustomerStore(data_dir / "customers.sqlite3")
        conversation = Conversation(SCENARIO, store, InProcessSessionState(), OfflinePolicy())
        await conversation.queue.set(waiting=75, estimated_wait_seconds=480)
        caller = VoiceLeg(stack, conversation, "+15555550100")
        await caller.dial()
        await caller.say("the power's out")
        assert await caller.say("yes") == "whatsapp"
        instance_id = caller.start_handoff("whatsapp")
        eventually(lambda: stack.handoff(instance_id)["step"] == "waiting")
        assert [m["template"] for m in stack.outbox(caller.phone)] == ["switchboard_handoff_invite"]

        _kill_hard(first)
        second = local_host_factory(**settings)  # same data: the orchestration and the record survive
        stack.host = second
        assert stack.handoff(instance_id)["step"] == "waiting"
        replies = stack.whatsapp(caller.phone, "hi, got your message")
        assert "power outage at 123 Oak St" in " ".join(replies)
        status = eventually(lambda: (s := stack.handoff(instance_id))["runtime_status"] == "Completed" and s)
        assert status["output"]["outcome"] == "engaged"
        # The restarted emulator's outbox holds only what was sent after the crash: the reply, no second invite.
        assert [m["kind"] for m in stack.outbox(caller.phone)] == ["text"] * len(replies)
        await store.close()


def test_a_web_chat_visitor_who_is_a_known_customer_moves_to_whatsapp(stack: Stack) -> None:
    """Jordan starts anonymously on web chat, gives his number, and asks for WhatsApp: his WhatsApp messages come
    from his own record, so the conversation moves onto it and continues there."""
    created = stack.client.post(stack.url("/api/webchat/sessions")).json()
    auth = {"Authorization": f"Bearer {created['token']}"}
    url = stack.url(f"/api/webchat/sessions/{created['session_id']}/messages")

    def say(text: str) -> str:
        response = stack.client.post(url, json={"text": text}, headers=auth)
        assert response.status_code == 200, response.text
        return " ".join(r["text"] for r in response.json()["replies"])

    assert ASKS_TO_VERIFY.search(asked := say("what's my balance? my number is 555-555-0100"))
    assert "$127.45" in say(proof(asked, stack.host.acs_url, "+15555550100"))  # the code from his phone
    earlier = len(stack.outbox("+15555550100"))
    assert "sending you a WhatsApp message" in say("can we do this on WhatsApp?")
    instance_id = f"handoff-{created['session_id']}"
    eventually(lambda: [m for m in stack.outbox("+15555550100")[earlier:] if m["kind"] == "template"])

    replies = " ".join(stack.whatsapp("+15555550100", "hi, it's me"))
    assert "carrying on from our web chat" in replies and "asking about your bill" in replies
    answered = " ".join(stack.whatsapp("+15555550100", "how can I pay it?"))
    assert "pay online" in answered and not asked_slots(answered)
    status = eventually(lambda: (s := stack.handoff(instance_id))["runtime_status"] == "Completed" and s)
    assert status["output"]["outcome"] == "engaged"


def test_a_redelivered_whatsapp_request_to_move_to_web_chat_starts_one_handoff(stack: Stack) -> None:
    """A WhatsApp customer asks for web chat; Event Grid delivers that message twice. The record keeps which channel
    the message asked for (so a redelivery after a crash between the turn and the handoff's start can still start
    it), and the two deliveries start one handoff: one link, one reply."""
    phone = new_phone()
    stack.whatsapp(phone, "hi, my lights are out")
    built = stack.client.post(f"{stack.host.acs_url}/_emulator/inbound",
                              json={"from": phone, "text": "can we continue on web chat instead?", "deliver": False})
    assert built.status_code == 200, built.text
    webhook = stack.url("/runtime/webhooks/EventGrid?functionName=whatsapp_events")
    for _ in range(2):
        delivered = stack.client.post(webhook, json=[built.json()["event"]], headers={"aeg-event-type": "Notification"})
        assert delivered.status_code in (200, 202), delivered.text

    def record() -> Customer:
        async def read() -> Customer:
            store = SqliteCustomerStore(stack.data_dir / "customers.sqlite3")
            try:
                found = await store.find_by_identity(Identity(IdentityKind.PHONE, phone))
                assert found is not None
                return found
            finally:
                await store.close()

        return asyncio.run(read())

    customer = eventually(lambda: (c := record()).handoff is not None and c)
    [session] = [s for s in customer.sessions.values() if s.channel is Channel.WHATSAPP]
    asked = session.message(key=built.json()["messageId"])
    assert asked is not None and asked.switch_to == "webchat"
    assert customer.handoff.to_channel is Channel.WEBCHAT and customer.handoff.from_session_id == session.session_id
    links = eventually(lambda: [m for m in stack.outbox(phone) if "/api/webchat" in str(m.get("content", ""))
                                or m["kind"] == "template"])
    assert len(links) == 1, links
    assert [t.role for t in session.turns].count("customer") == 2  # the redelivery ran no second turn


class WebChat:
    """A web chat visitor talking to the host, as the chat page would."""

    def __init__(self, stack: Stack) -> None:
        created = stack.client.post(stack.url("/api/webchat/sessions"))
        assert created.status_code == 201, created.text
        self.stack, self.session_id = stack, created.json()["session_id"]
        self.auth = {"Authorization": f"Bearer {created.json()['token']}"}

    def post(self, text: str, key: str | None = None) -> httpx.Response:
        headers = {**self.auth, **({"Idempotency-Key": key} if key else {})}
        return self.stack.client.post(self.stack.url(f"/api/webchat/sessions/{self.session_id}/messages"),
                                      json={"text": text}, headers=headers)

    def say(self, text: str) -> str:
        response = self.post(text)
        assert response.status_code == 200, response.text
        return " ".join(r["text"] for r in response.json()["replies"])

    def turns(self) -> list[dict[str, Any]]:
        response = self.stack.client.get(self.stack.url(f"/api/webchat/sessions/{self.session_id}"), headers=self.auth)
        assert response.status_code == 200, response.text
        return response.json()["turns"]


def _records(stack: Stack, *identities: Identity) -> list[Customer | None]:
    async def read() -> list[Customer | None]:
        store = SqliteCustomerStore(stack.data_dir / "customers.sqlite3")
        try:
            return [await store.find_by_identity(identity) for identity in identities]
        finally:
            await store.close()

    return asyncio.run(read())


def test_a_web_chat_handoff_whose_start_failed_starts_once_on_the_clients_retry(stack: Stack) -> None:
    """Defect 4: the turn that accepts WhatsApp is saved, then the handoff's start fails (the task hub is locked by
    another writer past SQLite's busy timeout, as the Durable store failing at that moment), so the client gets a
    500. Its retry with the same Idempotency-Key replays the saved turn, and starts the handoff it promised: one
    orchestration, one invite, and the customer told once."""
    phone = new_phone()
    chat = WebChat(stack)
    chat.say(f"my lights are out, my number is {phone[2:5]}-{phone[5:8]}-{phone[8:]}")
    hub = sqlite3.connect(stack.data_dir / "durable.sqlite3", timeout=0)
    hub.execute("BEGIN IMMEDIATE")  # the engine cannot write until this rolls back
    try:
        first = chat.post("can we do this on WhatsApp?", key="move-1")
    finally:
        hub.rollback()
        hub.close()
    assert first.status_code == 500, first.text

    retried = chat.post("can we do this on WhatsApp?", key="move-1")
    assert retried.status_code == 200, retried.text
    assert "sending you a WhatsApp message" in " ".join(r["text"] for r in retried.json()["replies"])
    instance_id = f"handoff-{chat.session_id}"
    invite = eventually(lambda: [m for m in stack.outbox(phone) if m["kind"] == "template"])
    assert [m["template"] for m in invite] == ["switchboard_handoff_invite"]
    assert eventually(lambda: stack.handoff(instance_id)["step"] == "waiting")

    again = chat.post("can we do this on WhatsApp?", key="move-1")  # a third try changes nothing
    assert again.status_code in (200, 409), again.text
    history = stack.client.get(stack.url(f"/runtime/webhooks/durabletask/instances/{instance_id}"),
                               params={"showHistory": "true"}).json()["historyEvents"]
    assert [e["EventType"] for e in history].count("ExecutionStarted") == 1
    assert len([m for m in stack.outbox(phone) if m["kind"] == "template"]) == 1
    told = [t for t in chat.turns() if "sending you a WhatsApp message" in t["text"]]
    asked = [t for t in chat.turns() if t["role"] == "customer" and "WhatsApp" in t["text"]]
    assert len(told) == 1 and len(asked) == 1, chat.turns()


async def test_many_concurrent_acceptances_start_one_handoff(stack: Stack, voice) -> None:
    """Defect 8: the gateway (or a retrying client) starts the same handoff many times at once. Every request gets
    the one instance's id; one orchestration runs (the extension refuses to restart a running one, and the losers
    find the winner's), and the invite goes out once."""
    caller = voice(new_phone())
    await caller.dial()
    await caller.say("my power is out, account 100200311")
    await caller.verify("100200311")  # the outage at an account's address is the account holder's to hear
    assert await caller.say("sure") == "whatsapp"
    headers = {"Authorization": f"Bearer {stack.control_token(caller.session_id, caller.customer_id)}"}
    body = {"customer_id": caller.customer_id, "session_id": caller.session_id, "to_channel": "whatsapp"}

    async with httpx.AsyncClient(timeout=60) as client:
        answers = await asyncio.gather(*(client.post(stack.url("/api/handoffs"), json=body, headers=headers)
                                         for _ in range(16)))

    assert [a.status_code for a in answers] == [202] * 16, [a.text for a in answers if a.status_code != 202]
    instance_id = f"handoff-{caller.session_id}"
    assert {a.json()["id"] for a in answers} == {instance_id}
    eventually(lambda: stack.handoff(instance_id)["step"] == "waiting")
    history = stack.client.get(stack.url(f"/runtime/webhooks/durabletask/instances/{instance_id}"),
                               params={"showHistory": "true"}).json()["historyEvents"]
    assert [e["EventType"] for e in history].count("ExecutionStarted") == 1
    assert [m["template"] for m in stack.outbox(caller.phone) if m["kind"] == "template"] == [
        "switchboard_handoff_invite"]


def test_the_visitors_own_record_lets_go_of_a_handoff_that_moved_to_the_phone_owner(stack: Stack) -> None:
    """Defect 11: a web chat visitor gives a known customer's number and moves to WhatsApp; the handoff continues on
    the owner's record. The visitor's record must not keep an open handoff that nothing will ever move on: it says
    where the handoff went."""
    owner_phone = "+15555550122"
    chat = WebChat(stack)
    chat.say("what's my balance? my number is 555-555-0122")
    assert "sending you a WhatsApp message" in chat.say("can we do this on WhatsApp?")
    instance_id = f"handoff-{chat.session_id}"
    eventually(lambda: stack.handoff(instance_id)["step"] == "waiting")

    visitor, owner = _records(stack, Identity(IdentityKind.WEBCHAT, chat.session_id),
                              Identity(IdentityKind.PHONE, owner_phone))
    assert visitor is not None and owner is not None and visitor.customer_id != owner.customer_id
    assert owner.handoff is not None and owner.handoff.instance_id == instance_id and owner.handoff.open
    assert visitor.handoff is not None and visitor.handoff.instance_id == instance_id
    assert not visitor.handoff.open, f"the visitor's copy of the handoff stays {visitor.handoff.status.value}"
    assert visitor.handoff.moved_to == owner.customer_id
    # The conversation moved whole: its transcript is stored under the owner too (defect 5's session bodies).
    moved = [t.text for t in owner.sessions[chat.session_id].turns if t.role == "customer"]
    assert moved == ["what's my balance? my number is 555-555-0122", "can we do this on WhatsApp?"], moved


async def test_an_invite_refused_for_good_ends_the_handoff_as_failed_not_invited(stack: Stack, voice) -> None:
    """Defect 11: WhatsApp refuses the invite outright (a 400: the number cannot get WhatsApp messages). The record
    must not say the customer was invited, nor the orchestration wait, remind and expire for a message that never
    went: the handoff ends as failed at once, its context kept."""
    caller = voice(new_phone())
    await caller.dial()
    await caller.say("my power is out, account 100200311")
    await caller.verify("100200311")  # the outage at an account's address is the account holder's to hear
    assert await caller.say("sure") == "whatsapp"
    faults = stack.client.post(f"{stack.host.acs_url}/_emulator/messages/faults", json={"status": 400, "count": 1})
    assert faults.status_code == 200, faults.text
    instance_id = caller.start_handoff("whatsapp")

    status = eventually(lambda: (s := stack.handoff(instance_id))["runtime_status"] == "Completed" and s,
                        timeout=REMIND_AFTER)
    assert status["output"]["outcome"] == "failed" and status["step"] == "failed", status
    record = await caller.record()
    assert record.handoff is not None and record.handoff.status.value == "failed"
    assert "power outage" in record.summary
    assert [m for m in stack.outbox(caller.phone) if m["kind"] == "template"] == []
