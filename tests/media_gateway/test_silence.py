"""A caller who says nothing: after the scenario's silence time the agent asks whether they are still there, and
after a second silence says goodbye and ends the call as abandoned. Waiting for a person, hold music and the agent's
own turns are not the caller's silence (media_gateway/silence.py, docs/voice.md "Silence").

The timer's rules are checked with a fake clock; then the real gateway (offline engines, the conversation core on
the embedded stores) serves calls of a copy of the utilities scenario whose silence is 1.5 s, so the calls are
short. What the caller hears is transcribed with faster-whisper. The function app is out of reach here: its hooks
record what the gateway asks of it (as conftest.py's gateway does); tests/calls/test_call_record.py records the
hang-up as abandoned through the real route's service and the ACS emulator.
"""

from __future__ import annotations

from dataclasses import replace

import asyncio
import re
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from media_gateway.audio import frame_bytes
from media_gateway.hold import hold_music
from media_gateway.hooks import ABANDONED, CallHooks
from media_gateway.server import Gateway, create_app
from media_gateway.silence import Silence, SilenceTimer
from shared.bootstrap import build_services
from shared.errors import ScenarioError
from shared.models import EscalationStatus
from shared.scenario import DEFAULT_REPROMPT, SCENARIOS_DIR, VoiceSpec, load_scenario
from shared.settings import Settings
from tests.media_gateway.caller import AcsCaller
from tests.media_gateway.conftest import RunningGateway
from tests.media_gateway.test_gateway import transcribe
from tests.media_gateway.test_put_through import ASK
from tests.peers import serving

SILENCE = 1.5
VOICE = f"""
voice:
  silence_reprompt_seconds: {SILENCE}
  reprompt: Are you still there?
  goodbye: I haven't heard from you, so I'll end the call now. Goodbye from {{company}}.
"""


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# The timer's rules -------------------------------------------------------------------------------------------------


def test_a_silence_after_the_agent_has_spoken_calls_for_the_reprompt_and_a_second_for_the_goodbye() -> None:
    clock = FakeClock()
    timer = SilenceTimer(7, clock)
    timer.listening()
    clock.now += 6.9
    assert timer.expire() is None
    clock.now += 0.1
    assert timer.expire() is Silence.REPROMPT
    assert timer.expire() is None, "the agent speaks next: nothing counts until its reprompt has played"
    clock.now += 30
    assert timer.expire() is None
    timer.listening()  # the reprompt has played
    clock.now += 7
    assert timer.expire() is Silence.GOODBYE


def test_nothing_counts_until_the_agents_audio_has_played() -> None:
    clock = FakeClock()
    timer = SilenceTimer(7, clock)
    clock.now += 60  # the greeting is still being decided, synthesized, played
    assert timer.deadline() is None and timer.expire() is None
    timer.listening()
    assert timer.deadline() == clock.now + 7, "the wait starts when the audio has played, not before"


@pytest.mark.parametrize("caller", ["speaks", "presses a key"])
def test_a_caller_who_speaks_or_keys_starts_afresh(caller: str) -> None:
    clock = FakeClock()
    timer = SilenceTimer(7, clock)
    timer.listening()
    clock.now += 7
    assert timer.expire() is Silence.REPROMPT
    timer.listening()
    clock.now += 3
    timer.heard_caller()  # the agent stage calls this on UserStartedSpeaking and on every DTMF key alike
    clock.now += 30
    assert timer.expire() is None, "while the caller talks (and their turn runs), nothing counts"
    timer.listening()  # the answer to them has played
    clock.now += 7
    assert timer.expire() is Silence.REPROMPT, "their earlier silence is forgotten: a reprompt, not the goodbye"


@pytest.mark.parametrize("reason", ["desk", "hold", "transfer", "turn"])
def test_a_hold_stops_the_count_and_the_caller_gets_the_whole_time_once_it_lifts(reason: str) -> None:
    clock = FakeClock()
    timer = SilenceTimer(7, clock)
    timer.listening()
    clock.now += 5
    timer.hold(reason)
    clock.now += 600  # ten minutes in the desk queue, a long tool call
    assert timer.deadline() is None and timer.expire() is None
    timer.release(reason)
    clock.now += 6.9
    assert timer.expire() is None, "the wait started over when the hold lifted"
    clock.now += 0.1
    assert timer.expire() is Silence.REPROMPT


def test_holds_for_different_reasons_each_keep_the_timer_held() -> None:
    clock = FakeClock()
    timer = SilenceTimer(7, clock)
    timer.listening()
    with timer.held_for("desk"):
        with timer.held_for("turn"):
            pass
        clock.now += 60
        assert timer.expire() is None, "still in the desk queue after the turn"
    timer.release("desk")  # a release without a hold changes nothing
    clock.now += 7
    assert timer.expire() is Silence.REPROMPT


def test_whoever_sleeps_until_the_deadline_hears_when_it_moves() -> None:
    moved: list[float | None] = []
    clock = FakeClock()
    timer = SilenceTimer(7, clock, on_change=lambda: moved.append(timer.deadline()))
    timer.listening()
    timer.hold("turn")
    timer.release("turn")
    timer.heard_caller()
    assert moved == [107.0, None, 107.0, None]


# The scenario's voice section --------------------------------------------------------------------------------------


def scenario_with(tmp_path: Path, voice: str) -> Path:
    folder = tmp_path / "utilities"
    shutil.copytree(SCENARIOS_DIR / "utilities", folder)
    with (folder / "scenario.yaml").open("a", encoding="utf-8") as spec:
        spec.write(voice)
    return folder


def test_a_scenario_without_silence_settings_reprompts_after_seven_seconds() -> None:
    voice = load_scenario("utilities").voice  # its voice section lists only a vocabulary
    assert voice.vocabulary and replace(voice, vocabulary=()) == VoiceSpec()
    assert voice.silence_reprompt_seconds == 7 and voice.reprompt == DEFAULT_REPROMPT


def test_a_scenario_sets_its_silence_and_words(tmp_path: Path) -> None:
    voice = load_scenario(str(scenario_with(tmp_path, VOICE))).voice
    assert (voice.silence_reprompt_seconds, voice.reprompt) == (1.5, "Are you still there?")
    assert voice.goodbye.endswith("Goodbye from {company}.")


@pytest.mark.parametrize(("voice", "says"), [
    ("voice:\n  silence_reprompt_seconds: 0.2\n", "silence_reprompt_seconds: expected a number of seconds from 1"),
    ("voice:\n  silence_reprompt_seconds: true\n", "silence_reprompt_seconds"),
    ("voice:\n  silence_reprompt_seconds: 600\n", "to 120"),
    ("voice:\n  reprompt: ''\n", "voice.reprompt: expected a sentence"),
    ("voice:\n  goodbye: Bye {customer_name}\n", "voice.goodbye: may name only {company}"),
    ("voice:\n  goodbye: 'Bye {'\n", "voice.goodbye"),
    ("voice:\n  silence_seconds: 5\n", "unknown key(s) ['silence_seconds']"),
    ("voice: 7\n", "voice: expected a mapping"),
])
def test_a_bad_voice_section_fails_at_start_up_naming_the_key(tmp_path: Path, voice: str, says: str) -> None:
    with pytest.raises(ScenarioError) as failure:
        load_scenario(str(scenario_with(tmp_path, voice)))
    assert says in str(failure.value)


# Through the gateway -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def quiet_services(tmp_path_factory: pytest.TempPathFactory):
    folder = scenario_with(tmp_path_factory.mktemp("scenario"), VOICE)
    built = await build_services(Settings.from_env({
        "SWITCHBOARD_DATA_DIR": str(tmp_path_factory.mktemp("silence-data")), "SWITCHBOARD_POLICY": "offline",
        "SWITCHBOARD_SCENARIO": str(folder),
    }))
    yield built
    await built.close()


async def serve(services, engines, **options) -> AsyncIterator[RunningGateway]:
    ended: list[tuple[str, str]] = []

    async def end_call(call, reason: str) -> None:
        ended.append((call.call_id, reason))

    running = Gateway(services, engines, hooks=CallHooks(end_call=end_call), **options)
    async with serving(create_app(running)) as url:
        yield RunningGateway(running, url, services, ended, [])


@pytest.fixture
async def quiet_gateway(quiet_services, offline_engines, metric_reader) -> AsyncIterator[RunningGateway]:
    async for running in serve(quiet_services, offline_engines):
        yield running


async def greeted(http: aiohttp.ClientSession, url: str) -> tuple[AcsCaller, float]:
    """Connect and let the greeting play; returns the caller and when the greeting's last audio came."""
    caller = await AcsCaller.connect(http, url)
    await caller.wait_audio(time.monotonic(), timeout=10)
    return caller, await caller.wait_quiet(0.8, timeout=30)


async def test_a_silent_caller_hears_the_reprompt_then_the_goodbye_and_the_call_ends_as_abandoned(
    quiet_gateway: RunningGateway, offline_engines
) -> None:
    call = await quiet_gateway.open_call("+15555550100")
    async with aiohttp.ClientSession() as http:
        caller, greeting_end = await greeted(http, call.url)
        reprompt = await caller.wait_audio(greeting_end + 0.5, timeout=10)
        reprompt_end = await caller.wait_quiet(0.8, timeout=30)
        goodbye = await caller.wait_audio(reprompt_end + 0.5, timeout=10)
        await asyncio.wait_for(caller.closed.wait(), timeout=30)
        first = await transcribe(offline_engines, caller.audio_since(reprompt.at, reprompt_end + 0.1))
        second = await transcribe(offline_engines, caller.audio_since(goodbye.at))
        await caller.close()

    assert re.search(r"still there", first, re.I), first
    assert re.search(r"goodbye", second, re.I) and re.search(r"end the call", second, re.I), second
    assert caller.close_code == 1000
    assert quiet_gateway.ended == [(call.call_id, ABANDONED)], "hung up once, as abandoned"


async def test_a_caller_who_answers_the_reprompt_carries_on_and_is_not_said_goodbye_to(
    quiet_gateway: RunningGateway, speech, offline_engines
) -> None:
    # The same voice every run: with piper's sampling, the gateway once heard the answer without "outage" in it.
    call = await quiet_gateway.open_call("+15555550100")
    async with aiohttp.ClientSession() as http:
        caller, greeting_end = await greeted(http, call.url)
        await caller.wait_audio(greeting_end + 0.5, timeout=10)  # "Are you still there?"
        await caller.wait_quiet(0.8, timeout=30)
        answered = caller.say(speech("yes sorry, is there a power outage at my address"))
        await asyncio.wait_for(answered.done.wait(), timeout=15)
        await caller.wait_audio(answered.finished_at, timeout=20)
        reply_end = await caller.wait_quiet(1.0, timeout=60)
        after = await caller.wait_audio(reply_end + 0.5, timeout=10)  # their next silence
        after_end = await caller.wait_quiet(0.8, timeout=30)
        reply = await transcribe(offline_engines, caller.audio_since(answered.finished_at, reply_end + 0.1))
        next_silence = await transcribe(offline_engines, caller.audio_since(after.at, after_end + 0.1))
        still_on = not caller.closed.is_set()
        await caller.close()

    assert still_on and not quiet_gateway.ended
    assert "goodbye" not in reply.lower() and reply.strip(), reply
    assert re.search(r"still there", next_silence, re.I), f"a reprompt again, not the goodbye: {next_silence}"
    session = await quiet_gateway.services.conversation.transcript(call.session_id, call.customer_id)
    assert any(turn.role == "customer" and "outage" in turn.text.lower() for turn in session.turns)


async def test_a_caller_waiting_in_the_desk_queue_is_not_reprompted(
    quiet_gateway: RunningGateway, speech, offline_engines
) -> None:
    call = await quiet_gateway.open_call("+15555550100")  # nobody is on duty at this desk: they wait in line
    async with aiohttp.ClientSession() as http:
        caller, greeting_end = await greeted(http, call.url)
        asked = caller.say(speech(ASK))
        await asyncio.wait_for(asked.done.wait(), timeout=15)
        await caller.wait_audio(asked.finished_at, timeout=20)
        queued_end = await caller.wait_quiet(1.0, timeout=60)
        customer = await quiet_gateway.services.customers.get(call.customer_id)
        escalation = customer.open_escalation(call.session_id)
        await asyncio.sleep(4 * SILENCE)  # long enough for a reprompt and the goodbye, were they counted
        heard_since = caller.audio_since(queued_end + 0.05)
        still_on = not caller.closed.is_set()
        await caller.close()

    assert escalation is not None and escalation.status is EscalationStatus.WAITING
    assert not heard_since, await transcribe(offline_engines, heard_since)
    assert still_on and not quiet_gateway.ended


async def test_a_caller_on_hold_music_is_not_reprompted(quiet_services, offline_engines, metric_reader) -> None:
    async for small in serve(quiet_services, offline_engines, max_calls=1):
        first_call, held_call = await small.open_call("+15555550301"), await small.open_call("+15555550302")
        async with aiohttp.ClientSession() as http:
            first, _ = await greeted(http, first_call.url)
            held = await AcsCaller.connect(http, held_call.url)
            await held.wait_audio(time.monotonic(), timeout=10)
            await asyncio.sleep(3 * SILENCE)
            heard = held.audio_since(0)
            await held.close()
            await first.close()

    assert len(heard) >= 3 * SILENCE * 50 * frame_bytes(16000) * 0.8
    assert heard == (hold_music(16000) * 4)[: len(heard)], "the hold tune and nothing else: no reprompt on hold"
    assert held_call.call_id not in [call_id for call_id, _ in small.ended]
