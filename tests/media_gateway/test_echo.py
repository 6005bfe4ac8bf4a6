"""The bot's own voice coming back on a speakerphone is not the caller speaking (media_gateway/echo.py).

Through the real gateway: a caller whose line carries the echo of what they hear (tests/media_gateway/caller.py's
`Echo`) and who says nothing hears the greeting to its end; one who talks over it still stops it. Then the canceller
alone, on lines put together from piper's speech sample by sample, heard by the real VAD (Silero): an echo at
several lags and gains is taken out before the VAD hears it, the caller's own voice over it goes through, and a line
with no echo is left as it is.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
import numpy as np
import pytest

from media_gateway.audio import FRAME_SECONDS, float_to_pcm16, pcm16_to_float, resample
from media_gateway.echo import EchoCanceller
from media_gateway.frames import Frame, InputAudioFrame, SpeechAudioFrame, UserStartedSpeakingFrame
from media_gateway.metrics import CallMeter, GatewayStats
from media_gateway.processor import FrameProcessor
from media_gateway.reply import CUT
from media_gateway.vad import VadParams, VadProcessor
from tests.media_gateway.caller import AcsCaller, Echo
from tests.media_gateway.conftest import CALLER_GAIN, RunningGateway

RATE = 16000
#: The offline voice's level on the line (media_gateway/tts/piper.py's GAIN) against the caller's (CALLER_GAIN).
BOT_GAIN = 0.7 / CALLER_GAIN
REPLY = "Hi, thanks for contacting Springfield Power and Water. I can help with outages, bills and payments."
FLOOR_DBFS = VadParams().floor_dbfs  # the VAD does not even run its model on quieter frames


# Through the gateway ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("echo", [Echo(delay_ms=100, gain_db=-10), Echo(delay_ms=300, gain_db=-20)],
                         ids=["100ms-10dB", "300ms-20dB"])
async def test_a_silent_caller_on_speakerphone_hears_the_whole_greeting(gateway: RunningGateway, echo: Echo) -> None:
    call = await gateway.open_call("+15555550171")
    async with aiohttp.ClientSession() as http:
        caller = await AcsCaller.connect(http, call.url, echo=echo)
        await caller.wait_audio(time.monotonic(), timeout=10)
        # Quiet for 2.5 s: the greeting is over (on a busy machine the next clause can take over a second to come).
        last = await caller.wait_quiet(2.5, timeout=40)
        await asyncio.sleep(max(0.0, last + 1.5 - time.monotonic()))  # the echo's tail, and a turn's end after it
        await caller.close()

    assert [r for r in caller.received if r.kind == "stop"] == [], "the bot's own echo interrupted it"
    turns = (await gateway.services.conversation.transcript(call.session_id, call.customer_id)).turns
    assert [t.role for t in turns] == ["agent"], f"the echo made a customer turn: {[t.text for t in turns]}"
    assert not turns[0].text.endswith(CUT), "the greeting was cut"
    played = len(caller.audio_since(0.0)) / 2 / RATE
    assert played > 5.0, f"only {played:.1f} s of greeting played"


async def test_a_caller_on_speakerphone_who_talks_over_the_greeting_still_stops_it(
        gateway: RunningGateway, speech) -> None:
    call = await gateway.open_call("+15555550172")
    async with aiohttp.ClientSession() as http:
        caller = await AcsCaller.connect(http, call.url, echo=Echo(delay_ms=200, gain_db=-10))
        await caller.wait_audio(time.monotonic(), timeout=10)
        await asyncio.sleep(2.0)  # the greeting (about nine seconds) is under way, its echo on the line
        barge = caller.say(speech("I have a question about my bill"))
        await asyncio.wait_for(barge.done.wait(), timeout=15)
        await caller.wait_audio(barge.finished_at, timeout=15)  # they are answered
        await caller.wait_quiet(1.0, timeout=60)
        await caller.close()

    stops = [r for r in caller.received if r.kind == "stop"]
    assert stops, "talking over the greeting did not stop it"
    assert stops[0].at > barge.started_at, "the echo stopped the greeting before the caller spoke"
    turns = (await gateway.services.conversation.transcript(call.session_id, call.customer_id)).turns
    assert turns[0].text.endswith(CUT)
    customer = [t.text for t in turns if t.role == "customer"]
    assert len(customer) == 1 and "bill" in customer[0].lower(), customer


# The canceller on lines put together sample by sample ---------------------------------------------------------------


class Sink(FrameProcessor):
    def __init__(self) -> None:
        super().__init__()
        self.frames: list[Frame] = []

    async def process_frame(self, frame: Frame) -> None:
        self.frames.append(frame)

    def started(self) -> list[UserStartedSpeakingFrame]:
        return [f for f in self.frames if isinstance(f, UserStartedSpeakingFrame)]


class Line:
    """A call's audio both ways, on the gateway's clock: replies sent as the output stage sends them (a burst of
    three frames, then one each 20 ms), played by the phone from `phone_ms` after the first left, and heard back on
    the caller's line `echo` later; and the caller's own voice, mixed in."""

    def __init__(self, seconds: float, echo: Echo | None) -> None:
        self.line = np.zeros(int(seconds * RATE), np.float32)
        self.sends: list[tuple[float, bytes]] = []
        self._echo = echo

    def reply(self, pcm: bytes, at: float, phone_ms: float = 7.0) -> None:
        size = int(RATE * FRAME_SECONDS) * 2
        frames = [pcm[i : i + size].ljust(size, b"\0") for i in range(0, len(pcm), size)]
        self.sends += [(at + max(0, i - 3) * FRAME_SECONDS, frame) for i, frame in enumerate(frames)]
        if self._echo is not None:
            self.mix(pcm16_to_float(b"".join(frames)) * 10 ** (self._echo.gain_db / 20),
                     at + (phone_ms + self._echo.delay_ms) / 1000)

    def mix(self, audio: np.ndarray, at: float) -> None:
        start = int(round(at * RATE))
        audio = audio[: len(self.line) - start]
        self.line[start : start + len(audio)] += audio

    def frames(self) -> list[bytes]:
        pcm, size = float_to_pcm16(self.line), int(RATE * FRAME_SECONDS) * 2
        return [pcm[i : i + size] for i in range(0, len(pcm) - size + 1, size)]


async def heard(engines, line: Line, cancel: bool = True,
                stall: tuple[float, float] | None = None) -> tuple[Sink, list[bytes]]:
    """The caller's line through the canceller (or not) and the VAD, frame i arriving at (i + 1) x 20 ms after
    the replies' frames sent by then: what the VAD made of it, and what it was given. A `stall` (from, seconds):
    the gateway's event loop was busy then (synthesizing, say), and the frames due in it arrive together at its end."""
    echo = EchoCanceller(RATE, origin=0.0) if cancel else None
    vad, sink = VadProcessor(engines.vad, engines.vad_executor, RATE, CallMeter(GatewayStats())), Sink()
    vad.link(sink)
    given: list[bytes] = []
    sends = sorted(line.sends, key=lambda send: send[0])
    for index, frame in enumerate(line.frames()):
        arrived = (index + 1) * FRAME_SECONDS + 0.001
        if stall is not None and stall[0] <= arrived < stall[0] + stall[1]:
            arrived = stall[0] + stall[1]
        while sends and sends[0][0] <= arrived:
            sent_at, sent = sends.pop(0)
            if echo is not None:
                echo.played(sent, sent_at)
        given.append(echo.clean(frame, arrived) if echo is not None else frame)
        await vad.process_frame(InputAudioFrame(given[-1], received_at=arrived))
        await vad.flush()
    await vad.stop()
    return sink, given


def levels(frames: list[bytes]) -> np.ndarray:
    audio = np.stack([pcm16_to_float(frame) for frame in frames])
    return 10 * np.log10(np.maximum(np.mean(audio ** 2, axis=1), 1e-15))


@pytest.mark.parametrize("delay_ms,gain_db", [(50, -6), (100, -10), (200, -15), (300, -20), (380, -10)])
async def test_an_echo_is_taken_out_before_the_vad_hears_it(offline_engines, speech, delay_ms, gain_db) -> None:
    bot = float_to_pcm16(pcm16_to_float(speech(REPLY)) * BOT_GAIN)
    line = Line(1.0 + len(bot) / 2 / RATE + 1.0, Echo(delay_ms, gain_db))
    line.reply(bot, at=0.5)
    line.reply(bot, at=0.5 + len(bot) / 2 / RATE + 0.3, phone_ms=13.0)  # the next reply, on another phone tick

    untouched, _ = await heard(offline_engines, line, cancel=False)
    assert untouched.started(), "the echo alone should be speech to the VAD"
    sink, given = await heard(offline_engines, line)
    assert sink.started() == [], "the VAD took the bot's echo for the caller"
    audible = np.flatnonzero(levels(given) > FLOOR_DBFS)
    assert len(audible) <= 4, f"echo frames left above the VAD's floor: {audible}"


async def test_an_echo_is_found_when_the_caller_frames_came_late_as_the_reply_began(offline_engines, speech) -> None:
    # The gateway's loop was busy for 150 ms as the reply started: the caller's frames of that time came together at
    # its end. Tied to the clock by the first of them, the echo at 300 ms looked 450 ms late, past the longest lag
    # looked for, and went to the VAD as it was (a fresh CI run saw the bot interrupt itself so).
    bot = float_to_pcm16(pcm16_to_float(speech(REPLY)) * BOT_GAIN)
    line = Line(1.5 + len(bot) / 2 / RATE + 1.0, Echo(300, -20))
    line.reply(bot, at=1.0)

    sink, given = await heard(offline_engines, line, stall=(0.97, 0.15))
    assert sink.started() == [], "the VAD took the bot's echo for the caller"
    audible = np.flatnonzero(levels(given) > FLOOR_DBFS)
    assert len(audible) <= 4, f"echo frames left above the VAD's floor: {audible}"


async def test_the_caller_talking_over_the_echo_goes_through(offline_engines, speech) -> None:
    bot = float_to_pcm16(pcm16_to_float(speech(REPLY)) * BOT_GAIN)
    # Another voice: the caller's words, pitched up by a fifth.
    voice = resample(pcm16_to_float(speech("I have a question about my bill")), RATE, RATE * 2 // 3)
    talks_at = 2.5
    line = Line(1.0 + len(bot) / 2 / RATE + 1.0, Echo(200, -10))
    line.reply(bot, at=0.5)
    line.mix(voice, talks_at)
    only_voice = Line(len(line.line) / RATE, None)
    only_voice.mix(voice, talks_at)

    sink, given = await heard(offline_engines, line)
    started = sink.started()
    assert len(started) == 1 and talks_at <= started[0].onset_at <= talks_at + 0.3, started
    # What speech-to-text gets is the caller's voice, the bot's taken out of it.
    spoken = np.flatnonzero(levels(only_voice.frames()) > -30)  # the caller's louder frames
    passed = pcm16_to_float(b"".join(given[i] for i in spoken))
    wanted = pcm16_to_float(b"".join(only_voice.frames()[i] for i in spoken))
    assert np.mean(levels([given[i] for i in spoken]) > -90) >= 0.9, "the caller's voice was muted as echo"
    left = np.sum((passed - wanted) ** 2) / np.sum(wanted ** 2)
    assert 10 * np.log10(left) < -20, f"the bot's voice is left {10 * np.log10(left):.0f} dB under the caller's"
    assert any(isinstance(f, SpeechAudioFrame) for f in sink.frames)


async def test_a_line_without_echo_is_left_as_it_is(offline_engines, speech) -> None:
    bot = float_to_pcm16(pcm16_to_float(speech(REPLY)) * BOT_GAIN)
    line = Line(1.0 + len(bot) / 2 / RATE, echo=None)  # a handset, or a phone that cancels its own echo
    line.reply(bot, at=0.5)
    line.mix(pcm16_to_float(speech("I have a question about my bill")), 2.0)
    line.line += np.random.default_rng(5).normal(0, 10 ** (-50 / 20), len(line.line)).astype(np.float32)

    sink, given = await heard(offline_engines, line)
    assert given == line.frames()
    assert len(sink.started()) == 1
