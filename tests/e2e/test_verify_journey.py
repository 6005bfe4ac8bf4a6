"""Jordan proves who he is once, on the phone, and is believed wherever he goes next; a stranger is not.

Every piece runs as it does under `make run`: `python -m local` (the Functions host, its ACS emulator and the media
gateway with the offline engines), the phone simulator's code as Jordan (local/phone.py: piper speaks, faster-whisper
hears, `--keys` presses his keypad), and WhatsApp and web chat driven as a customer drives them. Jordan reads his
code where the host sent it, the emulator's text message outbox, as he would on his phone (`{code}` in a line).

- He calls from +15555550100: the caller ID identifies him (greeted by name, never asked for his number), not more.
- He asks for his balance, is sent a code, says it (or keys it), and hears the balance.
- He moves to WhatsApp and asks about his usage: answered, with no second code and no account number asked; or he
  moves to web chat through the link he is sent, and the chat is verified there too (`GET` shows it).
- A new anonymous web chat is unverified, and asking about the account is asked to verify.
- A person at the desk sees each session's level and the audit of what was shown, and never a code.

Slow by nature (the calls run in real time): a few minutes for the module.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from local.phone import Dialogue, Line
from shared.models import Channel, Customer, Verification
from tests.desk.people import Person
from tests.peers.host_records import read_customers
from tests.verifying import ASKS_TO_VERIFY, codes_sent_async
from tests.voice_rig import VoiceLine, voice_line

JORDAN = "+15555550100"  # scenarios/utilities/data.yaml: account 100200300, balance $127.45, 612 kWh in November
BALANCE = re.compile(r"\b127\b")
ASKED_AGAIN = re.compile(r"\bagain\b|didn'?t get|doesn'?t match", re.I)
USAGE = "612 kWh"
# The scenario's questions for the account (the code's "sent to the phone number on the account." asks nothing).
ASKS_FOR_NUMBER = re.compile(r"account number|what'?s (the|your) phone number|phone number on the account\?", re.I)
T = TypeVar("T")


class System(VoiceLine):
    """The running system, and what a test reads from it the way the customer or the back office would."""

    async def call(self, *lines: Line) -> Dialogue:
        """Jordan calls and says (or keys) each line after the agent's answer, as `python -m local.phone` does."""
        return await self.converse(JORDAN, list(lines), timeout=300)

    async def busy(self, busy: bool) -> None:
        """Make the phone queue long (so the agent offers another channel), or give it back its live figures."""
        body = {"set": {"waiting": 70, "estimated_wait_seconds": 480}} if busy else {
            "set": {"waiting": 0}, "clear_overrides": True}
        (await self.app.post("/api/ops/queue", json=body)).raise_for_status()

    async def codes(self) -> list[str]:
        return await codes_sent_async(self.acs, self.host.acs_url, JORDAN)

    async def outbox(self) -> list[dict[str, Any]]:
        return (await self.acs.get("/_emulator/messages", params={"to": JORDAN})).json()

    async def whatsapp(self, text: str) -> list[str]:
        """Jordan writes on WhatsApp; the texts the agent sent back for it."""
        before = len(await self.outbox())
        sent = await self.acs.post("/_emulator/inbound", json={"from": JORDAN, "text": text})
        assert sent.status_code == 200, sent.text

        async def replies() -> list[str] | None:
            texts = [m["content"] for m in (await self.outbox())[before:] if m["kind"] == "text"]
            return texts or None

        return await eventually(replies, "the agent's WhatsApp reply")

    async def record(self, phone: str = JORDAN) -> Customer:
        return await super().record(phone)

    async def audit(self) -> list[dict[str, Any]]:
        """Jordan's audit as the desk reads it (each session's body holds its own entries)."""
        customer_id = (await self.record()).customer_id
        return await read_customers(self.data_dir, lambda store: store.audit(customer_id))

    async def web_chat(self, **body: str) -> WebChat:
        created = await self.app.post("/api/webchat/sessions", json=body)
        assert created.status_code == 201, created.text
        session = created.json()
        return WebChat(self.app, session["session_id"], session["token"], [r["text"] for r in session["replies"]])


class WebChat:
    def __init__(self, app: httpx.AsyncClient, session_id: str, token: str, greeting: list[str]) -> None:
        self.app, self.session_id, self.greeting = app, session_id, greeting
        self.headers = {"Authorization": f"Bearer {token}"}

    async def say(self, text: str) -> str:
        sent = await self.app.post(f"/api/webchat/sessions/{self.session_id}/messages", json={"text": text},
                                   headers=self.headers)
        assert sent.status_code == 200, sent.text
        return " ".join(r["text"] for r in sent.json()["replies"])

    async def shown(self) -> dict[str, Any]:
        got = await self.app.get(f"/api/webchat/sessions/{self.session_id}", headers=self.headers)
        assert got.status_code == 200, got.text
        return got.json()


async def eventually(probe: Callable[[], Awaitable[T | None]], what: str, timeout: float = 30) -> T:
    deadline = time.monotonic() + timeout
    while (found := await probe()) is None:
        assert time.monotonic() < deadline, f"{what} did not come within {timeout:.0f} s"
        await asyncio.sleep(0.2)
    return found


def heard(dialogue: Dialogue) -> list[str]:
    """What the agent said on the call, turn by turn (the greeting first), as the caller heard it."""
    return [text for who, text in dialogue.lines if who == "bot"]


def link_in(messages: list[dict[str, Any]]) -> str | None:
    """The newest web chat link among messages sent to Jordan (WhatsApp template values, or a text message)."""
    for message in reversed(messages):
        values = [*(message.get("templateValues") or {}).values(), message.get("content"), message.get("message")]
        for value in values:
            if isinstance(value, str) and (found := re.search(r"https?://\S*handoff=[\w.-]+", value)):
                return found.group()
    return None


@pytest.fixture(scope="module")
async def line(local_host_factory, tmp_path_factory) -> AsyncIterator[System]:
    async with voice_line(local_host_factory, tmp_path_factory.mktemp("verify-journey"), System) as running:
        yield running


def assert_verified_on_the_call(dialogue: Dialogue, codes_before: int, codes: list[str]) -> None:
    """Greeted by name, never asked for his number, sent one code, and the balance once he gave it."""
    said = heard(dialogue)
    assert "jordan" in said[0].lower(), f"the caller ID identifies him: greeted by name, heard {said[0]!r}"
    assert not any(ASKS_FOR_NUMBER.search(text) for text in said), f"asked for a number: {said}"
    assert len(codes) == codes_before + 1, "one code, to the number on record"
    asked = said[1]
    assert "code" in asked.lower(), f"asked for the code: {asked!r}"
    # Whisper tiny.en gets a digit of a spoken code wrong about one time in four (measured on piper's voice): the
    # agent then asks again, within the scenario's three tries, and Jordan says it again, as a person would.
    answered = next((i for i, text in enumerate(said[2:], 2) if "confirmed" in text.lower()), None)
    assert answered is not None and answered <= 4, f"confirmed within three tries: {said}"
    assert all(ASKED_AGAIN.search(text) for text in said[2:answered]), f"only asked again before: {said}"
    assert BALANCE.search(said[answered]), f"the balance after the code: {said[answered]!r}"


async def test_jordan_says_his_code_on_the_phone_and_on_whatsapp_is_asked_nothing(line: System) -> None:
    codes_before = len(await line.codes())
    invites_before = len([m for m in await line.outbox() if m["kind"] == "template"])
    await line.busy(True)  # a long queue: the agent offers WhatsApp
    try:
        dialogue = await line.call(Line("say", "what's my balance?"), Line("say", "{code}"),
                                   Line("say", "yes, send it to WhatsApp"))
    finally:
        await line.busy(False)

    codes = await line.codes()
    assert_verified_on_the_call(dialogue, codes_before, codes)
    assert dialogue.ended and dialogue.ended != "you hung up", "the agent ends the call once he moves"

    async def invited() -> list[dict[str, Any]] | None:
        return [m for m in await line.outbox() if m["kind"] == "template"][invites_before:] or None

    invites = await eventually(invited, "the WhatsApp invite")
    assert [m["template"] for m in invites] == ["switchboard_handoff_invite"]

    replies = " ".join(await line.whatsapp("how much electricity did I use last month?"))
    assert USAGE in replies, f"his usage, on WhatsApp: {replies!r}"
    assert not ASKS_TO_VERIFY.search(replies) and not ASKS_FOR_NUMBER.search(replies), replies
    assert await line.codes() == codes, "no second code"

    customer = await line.record()
    voice = _newest(customer, Channel.VOICE)
    whatsapp = _newest(customer, Channel.WHATSAPP)
    assert (voice.verification, voice.verified_by) == (Verification.VERIFIED, "code")
    assert whatsapp.verification is Verification.VERIFIED
    assert [t.text for t in voice.turns if t.role == "customer"][1] == "[verification code]"
    audit = [(e["event"], e.get("tool"), e["level"], e["channel"]) for e in await line.audit()
             if e["session_id"] in (voice.session_id, whatsapp.session_id)]
    assert audit == [("verification_requested", "get_balance", "identified", "voice"),
                     ("verification_verified", None, "verified", "voice"),
                     ("disclosed", "get_balance", "verified", "voice"),
                     ("disclosed", "get_usage", "verified", "whatsapp")]

    # On WhatsApp he asks for a person: the desk sees both sessions verified, what was shown, and no code.
    await line.whatsapp("I want to talk to a person")
    dana = await Person.signed_in(line.host.url, "Dana Reyes")
    try:
        entry = await dana.waiting_for(whatsapp.session_id)
        context = await dana.context(entry["escalation_id"])
    finally:
        await dana.close()
    levels = {s["session_id"]: s["verification"] for s in context["sessions"]}
    assert (levels[voice.session_id], levels[whatsapp.session_id]) == ("verified", "verified")
    shown = [(e["event"], e["tool"], e["level"], e["channel"], e["who"]) for e in context["audit"]
             if e["session_id"] in (voice.session_id, whatsapp.session_id)]
    assert shown == [("verification_requested", "get_balance", "identified", "voice", "…0100"),
                     ("verification_verified", None, "verified", "voice", "…0100"),
                     ("disclosed", "get_balance", "verified", "voice", "…0100"),
                     ("disclosed", "get_usage", "verified", "whatsapp", "…0100")]
    how = [e["shown_by"] for e in context["audit"] if e["session_id"] == voice.session_id]
    assert how == ["voice sender", "code", "code"], "the caller ID, then the code he said"
    assert not any(code in json.dumps(context) for code in codes), "a person at the desk never sees a code"


async def test_jordan_keys_his_code_and_the_web_chat_link_keeps_him_verified_where_a_new_chat_is_not(
    line: System,
) -> None:
    codes_before = len(await line.codes())
    messages_before = len(await line.outbox())

    dialogue = await line.call(Line("say", "what's my balance?"), Line("keys", "{code}"),
                               Line("say", "can we continue on web chat instead?"))

    codes = await line.codes()
    assert_verified_on_the_call(dialogue, codes_before, codes)
    voice = _newest(await line.record(), Channel.VOICE)
    assert [t.text for t in voice.turns if t.role == "customer"][1] == "[verification code]", "keyed, then masked"

    async def sent_link() -> str | None:
        return link_in((await line.outbox())[messages_before:])

    link = await eventually(sent_link, "the web chat link")

    chat = await line.web_chat(handoff_token=parse_qs(urlsplit(link).query)["handoff"][0])
    assert "carrying on from your call" in " ".join(chat.greeting)
    assert (await chat.shown())["verification"] == "verified", "the link keeps the level he earned on the phone"
    answer = await chat.say("how much electricity did I use last month?")
    assert USAGE in answer and not ASKS_TO_VERIFY.search(answer) and not ASKS_FOR_NUMBER.search(answer), answer
    assert await line.codes() == codes, "no second code"

    stranger = await line.web_chat()
    assert (await stranger.shown())["verification"] == "unverified"
    answer = await stranger.say("how much electricity did I use last month? my account number is 100200300")
    assert ASKS_TO_VERIFY.search(answer) and USAGE not in answer, answer
    assert (await stranger.shown())["verification"] == "unverified"


async def test_keys_on_a_call_reach_the_app_only_as_it_asked_for_them(line: System) -> None:
    """The emulator's keypad: keys go as DtmfData because the app answered with DTMF tones on; bad keys are 400."""
    placed = await line.acs.post("/_emulator/calls", json={"from": "+15555550166"})
    assert placed.status_code == 201, placed.text
    call_id = placed.json()["id"]

    async def streaming() -> dict[str, Any] | None:
        call = (await line.acs.get(f"/_emulator/calls/{call_id}")).json()
        return call if call["media"] == "streaming" else None

    call = await eventually(streaming, "the call's media stream")
    assert call["answer"]["mediaStreamingOptions"]["enableDtmfTones"] is True
    assert (await line.acs.post(f"/_emulator/calls/{call_id}/keys", json={"keys": "12x"})).status_code == 400
    pressed = await line.acs.post(f"/_emulator/calls/{call_id}/keys", json={"keys": "100200300#"})
    assert pressed.status_code == 200, pressed.text

    async def sent() -> dict[str, Any] | None:
        audio = (await line.acs.get(f"/_emulator/calls/{call_id}")).json()["audio"]
        return audio if audio["keys_sent"] == 10 else None

    await eventually(sent, "the ten keys")
    await line.acs.post(f"/_emulator/calls/{call_id}/hangup")
    refused = await line.acs.post(f"/_emulator/calls/{call_id}/keys", json={"keys": "1"})
    assert refused.status_code == 409 and "disconnected" in refused.json()["error"]["message"]


def _newest(customer: Customer, channel: Channel):  # type: ignore[no-untyped-def]
    return max((s for s in customer.sessions.values() if s.channel is channel), key=lambda s: s.started_at)

