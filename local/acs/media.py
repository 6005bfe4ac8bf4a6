"""The media half of an emulated call: the WebSocket ACS opens to the app's transport URL
(docs/protocols.md, "Media streaming").

ACS sends AudioMetadata first, then one AudioData every 20 ms in real time: the caller's audio when there is some,
silence frames otherwise. The docs give AudioData's `data` as nullable, so now and then (one frame in
`NULL_SILENCE_EVERY`, when it is silence) a frame goes with `"data": null`, as the service may send it. When the app
answered with DTMF tones on (`enableDtmfTones`), each key the caller presses
goes as its own `{"kind": "DtmfData", "dtmfData": {"data": "5"}}` message between the audio frames, a key every
`KEY_SECONDS`, as a person keys them. What the app sends back (AudioData, StopAudio) goes into a playout queue that is played
at the same real-time pace, the way the caller's phone would hear it; StopAudio flushes what has not been played.
Both directions are recorded on the call (`CallAudio`) for the driver and the tests.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable

import aiohttp

log = logging.getLogger("local.acs.media")

FRAME_SECONDS = 0.02
#: Recorded audio per direction is capped (10 minutes at 24 kHz); the oldest is dropped first.
MAX_RECORDED_BYTES = 10 * 60 * 24000 * 2
CONNECT_TIMEOUT_SECONDS = 5
#: How far apart the keys a caller presses reach the app (a quick but human pace).
KEY_SECONDS = 0.1
#: The keys a phone has.
KEYS = frozenset("0123456789*#ABCD")
#: One frame in this many, when it is silence, goes without audio (`"data": null`); 0 never.
NULL_SILENCE_EVERY = 25


def frame_bytes(sample_rate: int) -> int:
    return int(sample_rate * FRAME_SECONDS) * 2  # 16-bit mono: 640 bytes at 16 kHz, 960 at 24 kHz


@dataclass
class CallAudio:
    """Both directions of one call's audio, and what the app's side of the socket did."""

    sample_rate: int = 16000
    caller_pending: bytearray = field(default_factory=bytearray)  # queued by the driver, not yet streamed
    keys_pending: list[str] = field(default_factory=list)  # keys the caller pressed, not yet sent to the app
    keys_sent: int = 0
    playout: bytearray = field(default_factory=bytearray)  # received from the app, not yet "heard"
    received: bytearray = field(default_factory=bytearray)  # every byte of AudioData the app sent
    played: bytearray = field(default_factory=bytearray)  # what the caller heard (received minus flushed)
    frames_sent: int = 0
    null_frames: int = 0  # silence frames sent with "data": null
    audio_messages: int = 0  # AudioData messages from the app
    stop_audio: int = 0
    flushed_bytes: int = 0  # queued audio that StopAudio discarded before it was played
    bad_messages: int = 0
    last_audio_at: float | None = None  # monotonic time of the last AudioData from the app
    stop_audio_at: list[float] = field(default_factory=list)

    def queue_caller_audio(self, pcm: bytes) -> None:
        self.caller_pending += pcm[: len(pcm) - len(pcm) % 2]

    def press_keys(self, keys: str) -> None:
        """The caller presses `keys` (checked against KEYS by the driver), one after another."""
        self.keys_pending.extend(keys)

    def summary(self) -> dict[str, Any]:
        rate = self.sample_rate * 2
        return {
            "sample_rate": self.sample_rate,
            "frames_sent": self.frames_sent,
            "null_frames": self.null_frames,
            "keys_sent": self.keys_sent,
            "keys_pending": len(self.keys_pending),
            "caller_pending_ms": int(len(self.caller_pending) / rate * 1000),
            "audio_messages": self.audio_messages,
            "received_ms": int(len(self.received) / rate * 1000),
            "played_ms": int(len(self.played) / rate * 1000),
            "queued_ms": int(len(self.playout) / rate * 1000),
            "stop_audio": self.stop_audio,
            "flushed_ms": int(self.flushed_bytes / rate * 1000),
            "bad_messages": self.bad_messages,
        }


#: What the leg reports to its call: ("started" | "played" | "StopAudio" | "failed" | "closed", detail or bytes).
Listener = Callable[[str, Any], Awaitable[None]]


class MediaLeg:
    """One media WebSocket, owned by its call: `start()` connects and streams, `stop()` closes and waits."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        transport_url: str,
        audio: CallAudio,
        listener: Listener,
        *,
        subscription_id: str,
        participant_raw_id: str | None = None,
        dtmf: bool = False,
        null_silence_every: int = NULL_SILENCE_EVERY,
    ) -> None:
        self.transport_url = transport_url
        self.audio = audio
        self.state = "idle"  # idle, connecting, streaming, stopped, failed
        self._session = session
        self._listener = listener
        self._subscription_id = subscription_id
        self._participant = participant_raw_id
        self.dtmf = dtmf  # the app asked for the caller's keys (enableDtmfTones)
        self.null_silence_every = null_silence_every
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    async def start(self) -> bool:
        """Connect and start streaming; False (and state "failed") if the app's endpoint refused or was unreachable."""
        self.state = "connecting"
        try:
            self._ws = await self._session.ws_connect(
                self.transport_url, timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=2),
                autoping=True, heartbeat=None, max_msg_size=4 * 1024 * 1024,
            )
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            self.state = "failed"
            log.warning("media: could not connect to %s: %s", _redacted(self.transport_url), exc)
            return False
        metadata = {
            "kind": "AudioMetadata",
            "audioMetadata": {
                "subscriptionId": self._subscription_id,
                "encoding": "PCM",
                "sampleRate": self.audio.sample_rate,
                "channels": 1,
                "length": frame_bytes(self.audio.sample_rate),
            },
        }
        await self._ws.send_str(json.dumps(metadata))
        self.state = "streaming"
        self._tasks = [asyncio.create_task(self._send_frames()), asyncio.create_task(self._receive())]
        return True

    async def stop(self) -> None:
        """Close the socket (as ACS does on hang-up) and wait for both loops to end."""
        self._stopping = True
        if self.state in ("streaming", "connecting"):
            self.state = "stopped"
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        if self._ws is not None and not self._ws.closed:
            await self._ws.close()
        for task in self._tasks:
            if task is not current:
                try:
                    await asyncio.wait_for(task, 2)
                except (asyncio.CancelledError, asyncio.TimeoutError):
                    pass

    # The two loops ----------------------------------------------------------------------------------------------

    async def _send_frames(self) -> None:
        """Every 20 ms on a fixed schedule (no drift): one caller frame out, one frame of the app's audio played."""
        assert self._ws is not None
        size = frame_bytes(self.audio.sample_rate)
        loop = asyncio.get_running_loop()
        start = loop.time()
        tick = 0
        key_every = max(1, round(KEY_SECONDS / FRAME_SECONDS))
        try:
            while not self._ws.closed:
                await self._ws.send_str(json.dumps(self._caller_frame(size)))
                self.audio.frames_sent += 1
                if self.audio.keys_pending and tick % key_every == 0:
                    await self._send_key(self.audio.keys_pending.pop(0))
                await self._play(size)
                tick += 1
                delay = start + tick * FRAME_SECONDS - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
        except (ConnectionResetError, aiohttp.ClientError, RuntimeError) as exc:
            if not self._stopping:
                log.warning("media: sending to the app failed: %s", exc)

    def _caller_frame(self, size: int) -> dict[str, Any]:
        pending = self.audio.caller_pending
        chunk = bytes(pending[:size])
        del pending[:size]
        silent = not chunk
        chunk = chunk.ljust(size, b"\0")
        data: dict[str, Any] = {
            "timestamp": datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "data": base64.b64encode(chunk).decode(),
            "silent": silent,
        }
        if silent and self.null_silence_every and self.audio.frames_sent % self.null_silence_every == 0:
            data["data"] = None  # nullable in the docs: silence with no audio in it
            self.audio.null_frames += 1
        if self._participant:  # only unmixed audio names its speaker
            data["participantRawID"] = self._participant
        return {"kind": "AudioData", "audioData": data}

    async def _send_key(self, key: str) -> None:
        if not self.dtmf:  # without enableDtmfTones ACS streams no keys: they are lost, as on the real service
            return
        assert self._ws is not None
        await self._ws.send_str(json.dumps({"kind": "DtmfData", "dtmfData": {"data": key}}))
        self.audio.keys_sent += 1

    async def _play(self, size: int) -> None:
        playout = self.audio.playout
        if not playout:
            return
        chunk = bytes(playout[:size])
        del playout[:size]
        _append_capped(self.audio.played, chunk)
        await self._listener("played", chunk)

    async def _receive(self) -> None:
        assert self._ws is not None
        async for message in self._ws:
            if message.type == aiohttp.WSMsgType.TEXT:
                await self._on_text(message.data)
            elif message.type == aiohttp.WSMsgType.BINARY:
                self.audio.bad_messages += 1  # ACS speaks JSON text frames only
            elif message.type == aiohttp.WSMsgType.ERROR:
                break
        if not self._stopping:  # the app closed the stream while the call was up
            self.state = "failed"
            await self._listener("failed", "streamConnectionInterrupted")
        await self._listener("closed", None)

    async def _on_text(self, text: str) -> None:
        try:
            message = json.loads(text)
            kind = str(_field(message, "kind")).lower()
        except (ValueError, TypeError, KeyError):
            self.audio.bad_messages += 1
            return
        if kind == "audiodata":
            try:
                pcm = base64.b64decode(_field(_field(message, "audioData"), "data"), validate=True)
            except (TypeError, KeyError, ValueError, binascii.Error):
                self.audio.bad_messages += 1
                return
            self.audio.audio_messages += 1
            self.audio.last_audio_at = time.monotonic()
            _append_capped(self.audio.received, pcm)
            self.audio.playout += pcm[: len(pcm) - len(pcm) % 2]
        elif kind == "stopaudio":
            self.audio.stop_audio += 1
            self.audio.stop_audio_at.append(time.monotonic())
            self.audio.flushed_bytes += len(self.audio.playout)
            self.audio.playout.clear()
            await self._listener("StopAudio", None)
        else:
            self.audio.bad_messages += 1


def _field(message: Any, name: str) -> Any:
    """A field by name in any casing: the service accepts PascalCase and camelCase
    (docs/protocols.md, "Media streaming")."""
    if not isinstance(message, dict):
        raise TypeError("not an object")
    for key, value in message.items():
        if key.lower() == name.lower():
            return value
    raise KeyError(name)


def _append_capped(buffer: bytearray, chunk: bytes) -> None:
    buffer += chunk
    if len(buffer) > MAX_RECORDED_BYTES:
        del buffer[: len(buffer) - MAX_RECORDED_BYTES]


def _redacted(url: str) -> str:
    return url.split("?", 1)[0] + ("?token=..." if "?" in url else "")
