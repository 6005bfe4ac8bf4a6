"""A whole phone call, with audio, through every real piece: the phone simulator's code (local/phone.py) places a
call on the ACS emulator, which delivers IncomingCall to the Functions host (`python -m local`); the app answers
with the real callautomation SDK; the emulator streams the caller's piper-spoken words in real time to the media
gateway (`python -m media_gateway`, which `python -m local` starts, with the offline engines), and the simulator transcribes what comes back with
faster-whisper. Slow by nature (the calls run in real time): about a minute for the module.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time
import urllib.request

import pytest

from local.phone import Dialogue, Line, converse
from tests.voice_rig import wait_warm, warm_voice_host  # noqa: F401 - other voice tests import wait_warm from here

ETA = re.compile(r"\b(4|four)(:00)?\s*(p\.?\s*m\.?|o'clock)", re.IGNORECASE)  # the utilities outage's "4:00 PM"


@pytest.fixture(scope="module")
async def phone_line(local_host_factory):
    """(emulator URL, loaded engines): `python -m local` with its ACS emulator and media gateway, ready for calls."""
    host, engines = await warm_voice_host(local_host_factory)
    return host.acs_url, engines, host.url


def _args(emulator: str, *lines: Line) -> argparse.Namespace:
    """What `python -m local.phone` parses from its command line."""
    return argparse.Namespace(
        emulator=emulator, caller="+15555550100", lines=list(lines), barge_after=1.5, quiet_ms=900,
        reply_timeout=25.0, answer_timeout=15.0, transcribe=True,
    )


async def _call(phone_line, *lines: Line) -> Dialogue:
    emulator, engines, _ = phone_line
    return await asyncio.wait_for(converse(_args(emulator, *lines), engines), timeout=180)


async def test_jordan_calls_about_a_power_cut_and_hears_the_eta(phone_line) -> None:
    dialogue = await _call(phone_line, Line("say", "there is no power on my street"))

    assert dialogue.answered and dialogue.ended == "you hung up"
    (who, greeting), *rest = dialogue.lines
    assert who == "bot" and "jordan" in greeting.lower(), "a known caller is greeted by name"
    assert rest[0] == ("caller", "there is no power on my street")
    answer = " ".join(text for who, text in rest[1:] if who == "bot")
    assert ETA.search(answer), f"the caller should hear the outage ETA, heard: {answer!r}"
    assert "oak" in answer.lower(), "the ETA is for the caller's own address (123 Oak St)"
    assert len(dialogue.latencies_ms) == 1 and 0 < dialogue.latencies_ms[0] < 5000


async def test_talking_over_the_agent_stops_it(phone_line) -> None:
    dialogue = await _call(
        phone_line, Line("say", "my lights are out"), Line("barge", "sorry, when will it be back on?")
    )
    assert dialogue.stops_ms, "the gateway sent StopAudio when the caller talked over it"
    assert dialogue.stops_ms[0] < 1500
    assert ETA.search(dialogue.lines[-1][1]), f"the answer after the interruption: {dialogue.lines[-1]!r}"


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def _get(url: str) -> object:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


async def test_on_a_busy_line_the_caller_accepts_whatsapp_and_gets_the_invite(phone_line) -> None:
    emulator, _, host_url = phone_line
    _post(f"{host_url}/api/ops/queue", {"set": {"waiting": 70, "estimated_wait_seconds": 480}})
    try:
        before = len(_get(f"{emulator}/_emulator/messages?to=%2B15555550100"))
        dialogue = await _call(
            phone_line, Line("say", "there is no power on my street"), Line("say", "yes, send it to WhatsApp")
        )
    finally:
        _post(f"{host_url}/api/ops/queue", {"set": {"waiting": 0}, "clear_overrides": True})

    heard = " ".join(text for who, text in dialogue.lines if who == "bot").lower()
    assert "whatsapp" in heard, f"the agent offers WhatsApp on a busy line, heard: {heard!r}"
    assert dialogue.ended and dialogue.ended != "you hung up", "the agent ends the call after the switch"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        sent = _get(f"{emulator}/_emulator/messages?to=%2B15555550100")[before:]
        if any(m["kind"] == "template" for m in sent):
            break
        await asyncio.sleep(0.2)
    assert [m["template"] for m in sent if m["kind"] == "template"] == ["switchboard_handoff_invite"]
