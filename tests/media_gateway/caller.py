"""The ACS end of a media WebSocket, for tests and the benchmark: it streams a caller's audio in real time and
records what the gateway sends back, with arrival times.

Like ACS (docs/protocols.md, "Media streaming") it sends AudioMetadata, then one 20 ms AudioData every 20 ms: the queued
caller audio when there is some, otherwise background (digital silence, or quiet noise for a realistic line); and the
keys the caller presses, one DtmfData message per key, a key every `KEY_FRAMES` frames.

A caller on speakerphone (`echo=Echo(...)`) plays what the gateway sends as a phone does, a frame each 20 ms from a
queue that StopAudio empties, and their line carries it back, attenuated and delayed, mixed into what they say.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from dataclasses import dataclass, field

import aiohttp
import numpy as np

FRAME_SECONDS = 0.02
KEY_FRAMES = 5  # 100 ms between keys: a quick but human pace


@dataclass
class Utterance:
    """One `say()`: when its first and last frames left (monotonic seconds)."""

    started_at: float | None = None
    finished_at: float | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)
    voiced_seconds: float = 0.0  # from the first frame to the end of the last one that is not quiet

    @property
    def speech_ended_at(self) -> float:
        """When the caller's voice stopped: synthesized speech ends in ~150 ms of quiet, which the VAD already counts
        towards the pause that ends the turn, so a turn can end before `finished_at` + the pause."""
        assert self.started_at is not None, "not said yet"
        return self.started_at + self.voiced_seconds


@dataclass(frozen=True)
class Echo:
    """What a speakerphone sends back of what it plays: `delay_ms` later, `gain_db` quieter."""

    delay_ms: float
    gain_db: float


@dataclass
class Received:
    at: float
    kind: str  # "audio" or "stop"
    pcm: bytes = b""


class AcsCaller:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse, sample_rate: int, noise_dbfs: float | None,
                 echo: Echo | None = None) -> None:
        self.ws = ws
        self.sample_rate = sample_rate
        self.frame_bytes = int(sample_rate * FRAME_SECONDS) * 2
        self.received: list[Received] = []
        self.closed = asyncio.Event()
        self.close_code: int | None = None
        self._noise = None if noise_dbfs is None else 10 ** (noise_dbfs / 20)
        self._rng = np.random.default_rng(7)
        self._queue: list[tuple[bytes, Utterance]] = []
        self._offset = 0
        self._tasks: list[asyncio.Task] = []
        self._audio_event = asyncio.Event()
        self._keys: list[str] = []
        self.keys_sent = asyncio.Event()  # set when the last key pressed has gone
        self._echo_gain = 0.0 if echo is None else 10 ** (echo.gain_db / 20)
        self._playing = bytearray()  # received and not yet played; StopAudio empties it
        # What was played, `delay_ms` ago first: each frame played goes in at the end, the frame heard comes out.
        self._echo_line = np.zeros(0 if echo is None else int(sample_rate * echo.delay_ms / 1000), np.float32)

    @classmethod
    async def connect(
        cls, http: aiohttp.ClientSession, url: str, sample_rate: int = 16000, noise_dbfs: float | None = None,
        echo: Echo | None = None,
    ) -> AcsCaller:
        ws = await http.ws_connect(url)
        caller = cls(ws, sample_rate, noise_dbfs, echo)
        await ws.send_str(json.dumps({"kind": "AudioMetadata", "audioMetadata": {
            "subscriptionId": "test", "encoding": "PCM", "sampleRate": sample_rate, "channels": 1,
            "length": caller.frame_bytes}}))
        caller._tasks = [asyncio.create_task(caller._send_loop()), asyncio.create_task(caller._receive_loop())]
        return caller

    def say(self, pcm: bytes) -> Utterance:
        """Queue caller audio (PCM16 at the call's rate); it goes out at real-time pace after what is queued."""
        utterance = Utterance(voiced_seconds=voiced_seconds(pcm, self.frame_bytes))
        self._queue.append((pcm, utterance))
        return utterance

    def press(self, keys: str) -> None:
        """Press keys on the keypad; each goes as its own DtmfData message, in order, between the audio frames."""
        self.keys_sent.clear()
        self._keys.extend(keys)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.ws.close()

    # What came back -----------------------------------------------------------------------------------------------

    def audio_since(self, since: float, until: float | None = None) -> bytes:
        return b"".join(r.pcm for r in self.received if r.kind == "audio" and r.at >= since and (until is None or r.at < until))

    def first(self, kind: str, since: float) -> Received | None:
        return next((r for r in self.received if r.kind == kind and r.at >= since), None)

    async def wait_audio(self, since: float, timeout: float) -> Received:
        deadline = time.monotonic() + timeout
        while (found := self.first("audio", since)) is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no audio from the gateway within {timeout:.0f} s")
            await asyncio.sleep(0.01)
        return found

    async def wait_quiet(self, quiet: float = 0.6, timeout: float = 60.0) -> float:
        """Wait until the gateway has sent no audio for `quiet` seconds; returns when its last audio came."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            last = max((r.at for r in self.received if r.kind == "audio"), default=0.0)
            if time.monotonic() - last >= quiet:
                return last
            await asyncio.sleep(0.02)
        raise TimeoutError(f"the gateway kept talking for {timeout:.0f} s")

    # Loops ----------------------------------------------------------------------------------------------------------

    def _next_frame(self, now: float) -> tuple[bytes, bool]:
        frame, silent = self._said(now)
        if not self._echo_gain:
            return frame, silent
        played = np.frombuffer(bytes(self._playing[: self.frame_bytes]).ljust(self.frame_bytes, b"\0"), "<i2")
        del self._playing[: self.frame_bytes]
        line = np.concatenate([self._echo_line, played.astype(np.float32)])
        heard, self._echo_line = line[: len(played)], line[len(played):]
        if not heard.any():
            return frame, silent
        mixed = np.frombuffer(frame, "<i2") + heard * self._echo_gain
        return np.clip(mixed, -32768, 32767).astype("<i2").tobytes(), False

    def _said(self, now: float) -> tuple[bytes, bool]:
        """The caller's own frame: what they say, or the line's background."""
        while self._queue:
            pcm, utterance = self._queue[0]
            if self._offset == 0 and utterance.started_at is None:
                utterance.started_at = now
            frame = pcm[self._offset : self._offset + self.frame_bytes]
            self._offset += self.frame_bytes
            if self._offset >= len(pcm):
                self._queue.pop(0)
                self._offset = 0
                utterance.finished_at = now
                utterance.done.set()
            if frame:
                return frame + bytes(self.frame_bytes - len(frame)), False
        if self._noise is None:
            return bytes(self.frame_bytes), True
        noise = self._rng.normal(0, self._noise, self.frame_bytes // 2)
        return (np.clip(noise, -1, 1) * 32767).astype("<i2").tobytes(), False

    async def _send_loop(self) -> None:
        start = time.monotonic()
        index = 0
        while not self.ws.closed:
            delay = start + index * FRAME_SECONDS - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            frame, silent = self._next_frame(time.monotonic())
            try:
                await self.ws.send_str(json.dumps({"kind": "AudioData", "audioData": {
                    "timestamp": "2025-01-01T00:00:00.000Z", "data": base64.b64encode(frame).decode(), "silent": silent}}))
                if self._keys and index % KEY_FRAMES == 0:
                    await self.ws.send_str(json.dumps({"kind": "DtmfData", "dtmfData": {"data": self._keys.pop(0)}}))
                    if not self._keys:
                        self.keys_sent.set()
            except (ConnectionError, RuntimeError):
                return
            index += 1

    async def _receive_loop(self) -> None:
        async for message in self.ws:
            if message.type is not aiohttp.WSMsgType.TEXT:
                break
            data = json.loads(message.data)
            now = time.monotonic()
            if data["Kind"] == "AudioData":
                self.received.append(Received(now, "audio", base64.b64decode(data["AudioData"]["Data"])))
                if self._echo_gain:
                    self._playing += self.received[-1].pcm
            elif data["Kind"] == "StopAudio":
                self.received.append(Received(now, "stop"))
                self._playing.clear()
        self.close_code = self.ws.close_code
        self.closed.set()


async def bad_peer(http: aiohttp.ClientSession, url: str, *messages: str | bytes) -> int | None:
    """Connect, send `messages` as fast as possible, and return the close code the gateway answers with.

    It yields to the event loop every few messages: it shares the loop with the gateway under test and the good
    caller, and would otherwise measure its own hogging of it.
    """
    ws = await http.ws_connect(url, max_msg_size=0)
    for count, message in enumerate(messages):
        if ws.closed:
            break
        try:
            await (ws.send_bytes(message) if isinstance(message, bytes) else ws.send_str(message))
        except (ConnectionError, RuntimeError):
            break
        if count % 20 == 19:
            await asyncio.sleep(0)
    async for _ in ws:  # drain until the gateway closes
        pass
    return ws.close_code


def voiced_seconds(pcm: bytes, frame_bytes: int, quiet_dbfs: float = -34.0) -> float:
    """Seconds from the start of `pcm` to the end of its last 20 ms frame with a sample above `quiet_dbfs`."""
    samples = np.abs(np.frombuffer(pcm, "<i2").astype(np.int32))
    loud = np.nonzero(samples > 32767 * 10 ** (quiet_dbfs / 20))[0]
    if loud.size == 0:
        return 0.0
    frame_samples = frame_bytes // 2
    return (int(loud[-1]) // frame_samples + 1) * FRAME_SECONDS
