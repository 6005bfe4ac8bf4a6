"""The first seconds of a call we placed: did a person pick up, or an answering machine?

A person answers with a short "Hello?" and waits; a machine plays a greeting of several seconds, says so in words
("leave a message", "not available") and ends with a beep. `Screen` hears the callee until one of those settles it:

- a stretch of speech longer than GREETING_SECONDS (a person's "hello?" is about a second, 1.5 s at most), or words
  of a voicemail greeting in what they said, or a beep (a pure tone near 1 kHz): an answering machine;
- a short answer whose words are not a greeting's, then quiet for PERSON_WAIT_SECONDS (a person waits for us; a
  machine's greeting goes on after its commas): a person; and a callee who says nothing for SILENT_SECONDS is
  treated as one too (some people pick up and wait), so they hear why we call.

Speech is counted over all the stretches so far: the turn detector splits a greeting at its pauses.

For a machine the agent then waits for the beep (or for the greeting to end and the line to stay quiet), leaves
`message` (no name, no account details: anyone may play a mailbox back) and hangs up; the call's record says
`voicemail`. The gateway screens only calls whose media token says we placed them (`out`, shared/calls/outbound.py).
"""

from __future__ import annotations

import asyncio
import re
import time

import numpy as np

from media_gateway.frames import (
    Frame,
    InputAudioFrame,
    TranscriptionFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)
from media_gateway.processor import FrameProcessor

PERSON, MACHINE = "person", "machine"
#: Longer than a person's "hello?" (about 1.5 s at most): a greeting.
GREETING_SECONDS = 2.0
#: A callee silent this long is taken for a person waiting to hear who is calling.
SILENT_SECONDS = 4.0
#: After a short answer, this much quiet means a person waiting for us to speak.
PERSON_WAIT_SECONDS = 1.0
#: After a greeting without a beep, this much quiet means the machine is recording.
QUIET_AFTER_GREETING_SECONDS = 1.0
#: How long to wait for the beep (or the quiet after the greeting) before speaking anyway.
BEEP_WAIT_SECONDS = 8.0
#: A beep: at least this share of a frame's energy within BEEP_BAND Hz, loud enough, for BEEP_FRAMES frames (20 ms).
BEEP_BAND, BEEP_SHARE, BEEP_RMS, BEEP_FRAMES = (850.0, 1150.0), 0.8, 500.0, 5
#: How long into the call a beep is listened for: a machine's comes within its greeting's time.
SCREEN_SECONDS = 40.0
_GREETING_WORDS = re.compile(
    r"leave (me )?(a |your )?(message|name)|not available|unavailable|after the (tone|beep)|voice ?mail|"
    r"can'?t (take|come to) (your|the) (call|phone)|reached the (mailbox|voicemail)|you have reached|you've reached",
    re.IGNORECASE,
)
MESSAGE = ("Hello, this is {company}. We tried to reach you and will try again later, or you can call us back "
           "at any time. Thank you, goodbye.")


def greeting_words(text: str) -> bool:
    return bool(_GREETING_WORDS.search(text))


def is_beep(pcm: bytes, sample_rate: int) -> bool:
    """Whether one frame is a loud, pure tone in the beep band (speech spreads its energy over many frequencies)."""
    samples = np.frombuffer(pcm[: len(pcm) - len(pcm) % 2], dtype=np.int16).astype(np.float32)
    if samples.size < 64 or float(np.sqrt(np.mean(samples**2))) < BEEP_RMS:
        return False
    power = np.abs(np.fft.rfft(samples * np.hanning(samples.size))) ** 2
    freqs = np.fft.rfftfreq(samples.size, 1 / sample_rate)
    band = power[(freqs >= BEEP_BAND[0]) & (freqs <= BEEP_BAND[1])].sum()
    return bool(band / max(power.sum(), 1e-9) >= BEEP_SHARE)


class Screen:
    """What the callee has done so far, and the verdict on it; fed by the agent stage and `BeepListener`."""

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self.started_at = time.monotonic()
        self.speech_since: float | None = None  # the current stretch of speech began (None: quiet)
        self.quiet_since: float | None = None  # the last stretch ended
        self.stretches: list[float] = []  # how long each finished stretch lasted
        self.words: list[str] = []
        self.beeped = asyncio.Event()
        self._tone_frames = 0
        self._moved = asyncio.Event()

    # What was heard --------------------------------------------------------------------------------------------

    def hear(self, frame: Frame) -> None:
        if isinstance(frame, UserStartedSpeakingFrame):
            self.speech_since, self.quiet_since = frame.onset_at, None
        elif isinstance(frame, UserStoppedSpeakingFrame):
            if self.speech_since is not None:
                self.stretches.append(frame.speech_ended_at - self.speech_since)
            self.speech_since, self.quiet_since = None, frame.speech_ended_at
        elif isinstance(frame, TranscriptionFrame) and frame.text:
            self.words.append(frame.text)
        self._moved.set()

    def audio(self, pcm: bytes) -> None:
        if self.beeped.is_set() or time.monotonic() - self.started_at > SCREEN_SECONDS:
            return
        self._tone_frames = self._tone_frames + 1 if is_beep(pcm, self.sample_rate) else 0
        if self._tone_frames >= BEEP_FRAMES:
            self.beeped.set()
            self._moved.set()

    # Verdicts --------------------------------------------------------------------------------------------------

    def _verdict(self) -> str | None:
        now = time.monotonic()
        if self.beeped.is_set() or greeting_words(" ".join(self.words)):
            return MACHINE
        spoken = sum(self.stretches) + (now - self.speech_since if self.speech_since is not None else 0.0)
        if spoken > GREETING_SECONDS:
            return MACHINE
        quiet = self.quiet_since
        if self.stretches and quiet is not None and now - quiet > PERSON_WAIT_SECONDS and (
                self.words or now - quiet > SILENT_SECONDS):  # words not heard (a mumble): do not wait for ever
            return PERSON  # a short answer, not a greeting's words, and then they waited for us
        if not self.stretches and self.speech_since is None and now - self.started_at > SILENT_SECONDS:
            return PERSON
        return None

    async def verdict(self) -> str:
        """PERSON or MACHINE, as soon as the callee's first seconds settle it."""
        while (found := self._verdict()) is None:
            self._moved.clear()
            try:
                await asyncio.wait_for(self._moved.wait(), 0.1)
            except TimeoutError:
                pass
        return found

    async def recording(self) -> None:
        """Until the machine records: its beep, or its greeting over and the line quiet; at most BEEP_WAIT_SECONDS."""
        deadline = time.monotonic() + BEEP_WAIT_SECONDS
        while time.monotonic() < deadline and not self.beeped.is_set():
            quiet = self.quiet_since
            if self.speech_since is None and quiet is not None and time.monotonic() - quiet > QUIET_AFTER_GREETING_SECONDS:
                return
            await asyncio.sleep(0.05)


class BeepListener(FrameProcessor):
    """First in an outbound call's pipeline: hands the callee's audio to the screen, passes every frame on."""

    def __init__(self, screen: Screen) -> None:
        super().__init__()
        self._screen = screen

    async def process_frame(self, frame: Frame) -> None:
        if isinstance(frame, InputAudioFrame) and not frame.silent:
            self._screen.audio(frame.pcm)
        await self.push_frame(frame)
