"""The desk on the phone, end to end with audio: `python -m local` (Functions host, ACS emulator, media gateway with
the offline engines), the phone simulator's code as the caller (local/phone.py: piper speaks, faster-whisper hears),
the phone simulator's `--answer-transfers` as the person's phone, and people at the desk signed in over HTTP with the
local host's dev sign-in (tests/desk/people.py).

- Nobody on duty: a caller who asks for a person hears that nobody is free and is offered WhatsApp, web chat or a
  callback; saying "WhatsApp" starts the handoff, and the invite lands in the emulator's WhatsApp outbox; the
  escalation is withdrawn for WhatsApp. Asking to be called back instead records the callback on the escalation.
- Dana on duty with a phone: the caller hears they are being put through to Dana, the call is transferred to
  Dana's phone with the escalation id in its custom context, and Dana's desk has that customer.

Slow by nature (the calls run in real time): a few minutes for the module.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from local.phone import Dialogue, Line, answer_transfers
from shared.models import Customer, EscalationStatus
from tests import voice_rig
from tests.desk.people import Person
from tests.peers.host_records import read_customers

WHATSAPP = re.compile(r"what'?s\s?app", re.I)  # speech-to-text writes it either way
JORDAN = "+15555550100"  # a demo customer: we have their number for WhatsApp and for a callback
DANA_PHONE = "+15555550142"


class VoiceLine(voice_rig.VoiceLine):
    """The running system and what the test reads from it."""

    async def call(self, *said: str, caller: str = JORDAN) -> Dialogue:
        """Call the agent and say each line after the agent's answer, as `python -m local.phone --say ...` does."""
        return await self.converse(caller, [Line("say", text) for text in said], timeout=240)

    async def outbox(self, phone: str) -> list[dict[str, Any]]:
        return (await self.acs.get("/_emulator/messages", params={"to": phone})).json()

    async def record(self, phone: str = JORDAN) -> Customer:
        return await super().record(phone)


@pytest.fixture(scope="module")
async def line(local_host_factory, tmp_path_factory) -> AsyncIterator[VoiceLine]:
    async with voice_rig.voice_line(local_host_factory, tmp_path_factory.mktemp("voice-desk"), VoiceLine) as voice:
        yield voice


@pytest.fixture
async def supervisor(line: VoiceLine) -> AsyncIterator[Person]:
    sam = await Person.signed_in(line.host.url, "Sam Okafor", supervisor=True)
    yield sam
    await sam.close()


async def test_with_nobody_on_duty_a_caller_is_offered_whatsapp_and_the_invite_goes_out(
    line: VoiceLine, supervisor: Person
) -> None:
    assert (await supervisor.queue())["metrics"]["agents_available"] == 0, "nobody is at the desk"
    before = len(await line.outbox(JORDAN))

    dialogue = await line.call("I want to talk to a real person", "yes, send it to WhatsApp")

    heard = " ".join(text for who, text in dialogue.lines if who == "bot").lower()
    assert "free" in heard and WHATSAPP.search(heard), f"the caller hears nobody is free, and WhatsApp: {heard!r}"
    assert dialogue.ended and dialogue.ended != "you hung up", "the agent ends the call after the switch"
    invites = await _eventually(lambda: _templates(line, JORDAN, before), what="the WhatsApp invite")
    assert [m["template"] for m in invites] == ["switchboard_handoff_invite"]

    customer = await line.record()
    escalation = customer.escalation
    assert escalation is not None and escalation.channel.value == "voice"
    assert escalation.status is EscalationStatus.WITHDRAWN and escalation.callback is None
    turns = customer.sessions[escalation.session_id].turns
    offer = next(t.text for t in turns if t.role == "agent" and "rather not wait" in t.text)
    assert "nobody from our team is free" in offer, offer
    assert "WhatsApp" in offer and "web chat" in offer and "call back" in offer, offer
    assert escalation.escalation_id not in [e["escalation_id"] for e in (await supervisor.queue())["waiting"]]


async def test_with_nobody_on_duty_a_caller_who_asks_to_be_called_back_has_it_recorded(
    line: VoiceLine, supervisor: Person
) -> None:
    # Worded as the caller in the test above: speech-to-text once heard "can I speak to a person" as "a percent".
    dialogue = await line.call("I want to talk to a real person", "please call me back")

    heard = " ".join(text for who, text in dialogue.lines if who == "bot").lower()
    assert "call you back" in heard, heard
    customer = await line.record()
    escalation = customer.escalation
    assert escalation is not None and escalation.status is EscalationStatus.WITHDRAWN
    assert escalation.callback == JORDAN
    assert escalation.escalation_id not in [e["escalation_id"] for e in (await supervisor.queue())["waiting"]]


async def test_a_caller_is_put_through_to_dana_whose_phone_gets_the_escalation_and_whose_desk_has_them(
    line: VoiceLine,
) -> None:
    dana = await Person.signed_in(line.host.url, "Dana Reyes")
    registered = asyncio.Event()
    phone = asyncio.create_task(answer_transfers(line.host.acs_url, DANA_PHONE, count=1, registered=registered))
    try:
        await asyncio.wait_for(registered.wait(), 10)
        await dana.ok("POST", "/api/desk/presence", json={"status": "available", "phone": DANA_PHONE})

        dialogue = await line.call("I'd like to talk to a person please")
        (took,) = await asyncio.wait_for(phone, 30)
        mine = (await dana.queue())["mine"]
    finally:
        phone.cancel()
        await asyncio.gather(phone, return_exceptions=True)
        await dana.ok("POST", "/api/desk/presence", json={"status": "away"})
        await dana.close()

    # The caller hears that they are being put through; whom to is read from what the agent said (the phone's ear,
    # tiny.en, once wrote "to Dana Reyes now" as "today in a race now").
    heard = " ".join(text for who, text in dialogue.lines if who == "bot").lower()
    assert "putting you through" in heard, heard
    assert dialogue.ended.startswith(f"transferred to {DANA_PHONE}"), dialogue.ended
    customer = await line.record()
    escalation = customer.escalation
    assert escalation is not None and escalation.escalation_id == took.escalation_id
    session = await read_customers(line.data_dir, lambda store: store.get_session(customer.customer_id,
                                                                                 escalation.session_id))
    said = [t.text for t in session.turns if t.role == "agent"]
    assert any("putting you through to Dana" in text for text in said), said
    assert took.custom_context["sipHeaders"] == {"X-MS-Custom-Switchboard-Escalation": escalation.escalation_id}
    assert took.caller == JORDAN
    assert (escalation.status, escalation.agent_name) == (EscalationStatus.WITH_PERSON, "Dana Reyes")
    assert [(e["escalation_id"], e["status"]) for e in mine] == [(escalation.escalation_id, "with_person")]


async def _templates(line: VoiceLine, phone: str, before: int) -> list[dict[str, Any]]:
    return [m for m in (await line.outbox(phone))[before:] if m["kind"] == "template"]


async def _eventually(check, timeout: float = 30.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while not (result := await check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)
    return result
