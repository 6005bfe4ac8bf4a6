"""Keys a caller presses, through the gateway: ACS streams each as a DtmfData message on the media WebSocket, and the
gateway gathers them into the caller's turn (media_gateway/keypad.py).

The whole-call tests play ACS with real audio, as test_gateway.py does: piper speaks the caller, faster-whisper hears
the gateway. Codes go out for real: by WhatsApp through the ACS SDK to an ACS emulator in this process, from whose
outbox the caller reads the code, as they would on their phone.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import httpx
import pytest

from local.acs.messages import CHANNEL_ID, MessagesApi
from local.acs.server import AcsEmulator, EmulatorService
from media_gateway.engines import Engines
from media_gateway.hooks import CallHooks
from media_gateway.keypad import ENTRY_TIMEOUT, Keypad, keys_in
from media_gateway.reply import CUT
from media_gateway.server import Gateway, create_app
from shared.bootstrap import Services, build_services
from shared.calls import tokens as call_tokens
from shared.calls.tokens import MEDIA_AUDIENCE
from shared.models import Channel, Identity, IdentityKind, Verification, new_id
from shared.settings import Settings
from tests.media_gateway.caller import AcsCaller
from tests.media_gateway.conftest import RunningGateway
from tests.media_gateway.test_gateway import transcribe
from tests.peers import free_port, serving
from tests.verifying import codes_sent_async

ACCESS_KEY = base64.b64encode(b"switchboard-keypad-tests-key!!!!").decode()
JORDAN = "+15555550100"


# Gathering keys into an entry --------------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def press(keypad: Keypad, keys: str) -> list[str]:
    return [entry for key in keys if (entry := keypad.press(key)) is not None]


def test_hash_ends_an_entry_and_star_starts_it_again() -> None:
    keypad = Keypad()
    assert press(keypad, "100200300#") == ["100200300"]
    assert press(keypad, "12*100200311#") == ["100200311"]
    assert press(keypad, "#") == []  # nothing keyed: nothing to say


def test_while_a_code_is_awaited_its_last_digit_ends_the_entry() -> None:
    keypad = Keypad()
    assert press(keypad, "123456") == []  # no code awaited: six digits are just six digits so far
    keypad.press("*")
    keypad.expect_code(6)
    assert press(keypad, "123456") == ["123456"]
    assert press(keypad, "98#") == ["98"]  # a short entry still ends with #
    keypad.expect_code(None)
    assert press(keypad, "654321") == [] and keypad.pending == 6


def test_keys_left_alone_are_forgotten() -> None:
    clock = Clock()
    keypad = Keypad(clock)
    press(keypad, "55")
    clock.now += ENTRY_TIMEOUT + 1
    assert press(keypad, "100200300#") == ["100200300"]


def test_what_a_dtmf_message_carries() -> None:
    assert [keys_in(d) for d in ("5", "#", "*", "pound", "Nine", "A", "12")] == ["5", "#", "*", "#", "9", "", "12"]


# Whole calls ---------------------------------------------------------------------------------------------------------


@dataclass
class CodeLine:
    """A gateway whose conversation core sends codes by WhatsApp to the ACS emulator at `acs_url`."""

    gateway: RunningGateway
    acs_url: str

    async def call_from(self, phone: str) -> tuple[str, str, str]:
        """Open a voice session as the call function does for caller ID `phone`: (session, customer, media URL)."""
        services = self.gateway.services
        session_id, call_id = new_id("voice"), new_id("call")
        opened = await services.conversation.open_for_identity(Channel.VOICE, session_id,
                                                              Identity(IdentityKind.PHONE, phone))
        customer_id = opened.customer.customer_id
        token = call_tokens.issue(services.tokens, services.settings, MEDIA_AUDIENCE, call=call_id, sid=session_id,
                                  cid=customer_id)
        return session_id, customer_id, f"{self.gateway.base_url}/media?token={token}"


@pytest.fixture(scope="module")
async def code_line(tmp_path_factory: pytest.TempPathFactory, offline_engines: Engines) -> AsyncIterator[CodeLine]:
    emulator = EmulatorService(AcsEmulator(access_key=ACCESS_KEY, functions_url=f"http://127.0.0.1:{free_port()}",
                                           modules=[MessagesApi(CHANNEL_ID, status_step=3600)]), free_port())
    await emulator.start()
    settings = Settings.from_env({
        "SWITCHBOARD_DATA_DIR": str(tmp_path_factory.mktemp("keypad-data")), "SWITCHBOARD_POLICY": "offline",
        "ACS_ENDPOINT": emulator.url, "ACS_ACCESS_KEY": ACCESS_KEY, "WHATSAPP_CHANNEL_ID": CHANNEL_ID,
    })
    services: Services = await build_services(settings)
    ended: list[tuple[str, str]] = []

    async def end_call(call, reason: str) -> None:
        ended.append((call.call_id, reason))

    async def nothing(call, value: str) -> None:
        return None

    running = Gateway(services, offline_engines, hooks=CallHooks(end_call=end_call, start_handoff=nothing,
                                                                  transfer=nothing))
    try:
        async with serving(create_app(running)) as url:
            yield CodeLine(RunningGateway(running, url, services, ended, []), emulator.url)
    finally:
        await services.close()
        await emulator.stop()


async def test_a_caller_keys_the_code_they_were_sent_and_hears_their_balance(
    code_line: CodeLine, speech, offline_engines
) -> None:
    session_id, customer_id, url = await code_line.call_from(JORDAN)  # caller ID: identified, not verified
    async with aiohttp.ClientSession() as http, httpx.AsyncClient(timeout=20) as acs:
        caller = await AcsCaller.connect(http, url)
        await caller.wait_audio(time.monotonic(), timeout=10)
        await caller.wait_quiet(0.6, timeout=30)

        asked = caller.say(speech("what's my balance?"))
        await asyncio.wait_for(asked.done.wait(), timeout=15)
        await caller.wait_audio(asked.finished_at, timeout=15)
        await caller.wait_quiet(1.0, timeout=60)
        question = caller.audio_since(asked.finished_at)
        codes = await codes_sent_async(acs, code_line.acs_url, JORDAN)
        assert len(codes) == 1, "the code went to the number on record, by WhatsApp"

        pressed = time.monotonic()
        caller.press(codes[0])  # no #: a whole code ends the entry while the agent waits on one
        await asyncio.wait_for(caller.keys_sent.wait(), timeout=5)
        answered = await caller.wait_audio(pressed, timeout=15)
        await caller.wait_quiet(1.0, timeout=60)
        reply = caller.audio_since(answered.at)
        await caller.close()

    assert "code" in (await transcribe(offline_engines, question)).lower()
    heard = await transcribe(offline_engines, reply)
    assert "confirmed" in heard.lower() and "127" in heard, heard
    assert answered.at - pressed < 6.0  # the last key, not a pause in speech, ended the caller's turn

    customer = await code_line.gateway.services.customers.get(customer_id)
    session = customer.sessions[session_id]
    assert (session.verification, session.verified_by) == (Verification.VERIFIED, "code")
    said = [t.text for t in session.turns if t.role == "customer"]
    assert said[-1] == "[verification code]" and not any(codes[0] in t.text for t in session.turns)
    assert session.pending_verification is None


async def test_keys_stop_the_question_and_an_account_number_ended_with_hash_is_the_callers_turn(
    gateway: RunningGateway, speech, offline_engines
) -> None:
    call = await gateway.open_call("+15555550166")  # a number we do not know
    async with aiohttp.ClientSession() as http:
        caller = await AcsCaller.connect(http, call.url)
        await caller.wait_audio(time.monotonic(), timeout=10)
        await caller.wait_quiet(0.6, timeout=30)
        said = caller.say(speech("how much do I owe?"))
        await asyncio.wait_for(said.done.wait(), timeout=15)
        question = await caller.wait_audio(said.finished_at, timeout=15)
        await asyncio.sleep(1.5)  # the agent is asking which account (it takes several seconds)

        pressed = time.monotonic()
        caller.press("4*100200311#")  # a slip, started again with *, then the account number and #
        await asyncio.wait_for(caller.keys_sent.wait(), timeout=5)
        stop = caller.first("stop", pressed)
        assert stop is not None and stop.at - pressed < 1.0, "the first key stopped the agent"
        answered = await caller.wait_audio(stop.at + 0.05, timeout=15)
        await caller.wait_quiet(1.0, timeout=60)
        check = await transcribe(offline_engines, caller.audio_since(answered.at))
        await caller.close()

    assert answered.at - question.at > 1.5
    assert "zip code" in check.lower(), "the account is named: now the caller proves it is theirs"
    session = await gateway.services.conversation.transcript(call.session_id, call.customer_id)
    assert [t.text for t in session.turns if t.role == "customer"][1:] == ["100200311"]
    keyed = next(i for i, t in enumerate(session.turns) if t.text == "100200311")
    cut = session.turns[keyed - 1]
    assert cut.text.endswith(CUT), "the transcript keeps only what the caller heard of the question"
    assert session.pending_verification is not None and session.pending_verification["method"] == "knowledge"


async def test_a_keyed_zip_code_and_hash_waits_for_the_spoken_last_name_and_verifies(
    gateway: RunningGateway, speech, offline_engines
) -> None:
    # The knowledge answer is a ZIP code and a last name. A caller keys the ZIP code and # (the entry arrives without
    # its #, as the whole of that turn), then says the name: the two are one answer, so the keyed half alone is not
    # counted as a wrong one, and together they verify.
    call = await gateway.open_call("+15555550144")  # a number we do not know: the account is named by keys
    async with aiohttp.ClientSession() as http:
        caller = await AcsCaller.connect(http, call.url)
        await caller.wait_audio(time.monotonic(), timeout=10)
        await caller.wait_quiet(0.6, timeout=30)
        said = caller.say(speech("how much do I owe?"))
        await asyncio.wait_for(said.done.wait(), timeout=15)
        await caller.wait_audio(said.finished_at, timeout=15)
        await caller.wait_quiet(1.0, timeout=60)

        for keys in ("100200300#", "62701#"):  # Jordan Lee's account, then its service ZIP code
            pressed = time.monotonic()
            caller.press(keys)
            await asyncio.wait_for(caller.keys_sent.wait(), timeout=5)
            answered = await caller.wait_audio(pressed, timeout=15)
            await caller.wait_quiet(1.0, timeout=60)

        # Whisper tiny hears a surname alone badly ("Lee" as "Wait", "Rivera" as "Revere" or "Tamru Vera"); the whole
        # name, said without piper's sampling noise, it hears right.
        said = caller.say(speech("Jordan Lee"))
        await asyncio.wait_for(said.done.wait(), timeout=15)
        answered = await caller.wait_audio(said.finished_at, timeout=15)
        await caller.wait_quiet(1.0, timeout=60)
        reply = await transcribe(offline_engines, caller.audio_since(answered.at))
        await caller.close()

    # What the agent said is read from the record (speech-to-text of its voice has heard "last main" for "last name").
    session = await gateway.services.conversation.transcript(call.session_id, call.customer_id)
    answers = [i for i, t in enumerate(session.turns) if t.role == "customer" and t.text == "[verification answer]"]
    assert len(answers) == 2, [t.text for t in session.turns]  # the ZIP code is kept nowhere
    after_zip = " ".join(t.text for t in session.turns[answers[0] + 1: answers[1]] if t.role == "agent").lower()
    assert "last name" in after_zip and "zip" not in after_zip, after_zip  # asked only for what keys cannot say
    assert "confirmed" in reply.lower() and "127" in reply, reply
    assert (session.verification, session.verified_by) == (Verification.VERIFIED, "knowledge")
