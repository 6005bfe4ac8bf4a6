"""When the caller's turn ends, through the real gateway with the offline engines and the end-of-turn model: a
caller who stops to read on mid-number is not cut off, and one who asks a question is answered at the pause, not
after a fixed wait. The speech is piper's; the pauses are put in where a caller would make them."""

from __future__ import annotations

import asyncio
import logging
import re
import time

import aiohttp
import pytest

from media_gateway.stt.base import normalize_transcript
from tests.media_gateway.caller import AcsCaller
from tests.media_gateway.conftest import RunningGateway, Speech
from tests.media_gateway.speaking import silence, word_gaps

#: A caller reading their account number in groups, who stops after the second group (to find the last three).
NUMBER = "My account number is one hundred, two hundred, three hundred."


def stopped_after_second_group(pcm: bytes, pause_ms: float) -> bytes:
    """The caller's line with their breath after "two hundred," made a pause of `pause_ms`."""
    commas = [gap for gap in word_gaps(pcm) if gap[1] - gap[0] >= 0.2]
    assert len(commas) >= 2, f"piper read the groups without the pauses a caller makes: {word_gaps(pcm)}"
    start, end = commas[1]
    return pcm[: int(start * 16000) * 2] + silence(pause_ms) + pcm[int(end * 16000) * 2:]


async def greeted(http: aiohttp.ClientSession, url: str) -> AcsCaller:
    caller = await AcsCaller.connect(http, url)
    connected = time.monotonic()
    await caller.wait_audio(connected, timeout=10)
    await caller.wait_quiet(0.6, timeout=30)
    return caller


async def test_a_caller_who_stops_mid_number_to_read_on_is_not_cut_off(
        gateway: RunningGateway, speech: Speech) -> None:
    call = await gateway.open_call("+15555550166")
    async with aiohttp.ClientSession() as http:
        caller = await greeted(http, call.url)
        said = caller.say(stopped_after_second_group(speech(NUMBER), pause_ms=900))
        await asyncio.wait_for(said.done.wait(), timeout=20)
        await caller.wait_audio(said.finished_at, timeout=20)
        await caller.wait_quiet(1.0, timeout=60)
        await caller.close()

    turns = (await gateway.services.conversation.transcript(call.session_id, call.customer_id)).turns
    heard = [t.text for t in turns if t.role == "customer"]
    assert len(heard) == 1, f"one turn, not cut at the pause: {heard}"
    assert "100200300" in re.sub(r"\D", "", normalize_transcript(heard[0])), heard


async def test_a_finished_question_is_answered_at_the_pause_not_after_the_long_wait(
        gateway: RunningGateway, speech: Speech, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="media_gateway")
    call = await gateway.open_call("+15555550167")
    async with aiohttp.ClientSession() as http:
        caller = await greeted(http, call.url)
        said = caller.say(speech("Is there a power outage on Main Street?"))
        await asyncio.wait_for(said.done.wait(), timeout=20)
        first = await caller.wait_audio(said.finished_at, timeout=20)
        await caller.wait_quiet(1.0, timeout=60)
        await caller.close()

    # Answered before the long wait for an unfinished turn could even have run out: the judge ended the turn.
    assert first.at - said.finished_at < gateway.gateway.vad_params.end_of_turn_ms / 1000, "answered only after the wait"
    ended = await _summary(caplog, call.call_id)
    assert re.search(r"[1-9]\d* of \d+ pauses ended a turn", ended), ended


async def _summary(caplog: pytest.LogCaptureFixture, call_id: str) -> str:
    """The gateway's line about the call when it ends (media_gateway/call.py), once it has been written."""
    for _ in range(100):
        lines = [r.getMessage() for r in caplog.records if call_id in r.getMessage() and "pauses" in r.getMessage()]
        if lines:
            return lines[-1]
        await asyncio.sleep(0.05)
    raise AssertionError(f"no summary of call {call_id} in the log")
