"""The last stage: reply audio to the caller at real-time pace, and an interruption as StopAudio.

Every outbound message goes through one lock, so StopAudio never overtakes (or is overtaken by) an AudioData
already on its way: once StopAudio has been sent, no audio of the interrupted reply follows it.

Frames leave on the process's pacing clock (pacing.py), which serves every call in turn, so one caller whose side
stops reading must not make it wait: while more than `MAX_BACKLOG_BYTES` are still queued for this caller, their
frames are dropped (and counted) rather than queued behind it. StopAudio is always sent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Awaitable, Callable

from media_gateway.audio import frame_bytes
from media_gateway.echo import EchoCanceller
from media_gateway.frames import Frame, InterruptionFrame, OutputAudioFrame, ReplyEndFrame, TtsAudioFrame
from media_gateway.metrics import GatewayStats
from media_gateway.pacing import Pacer
from media_gateway.processor import FrameProcessor
from media_gateway.serializer import AcsMediaSerializer

log = logging.getLogger(__name__)

#: About a second of audio messages waiting in the socket: past that the caller's side is not reading.
MAX_BACKLOG_BYTES = 64 * 1024 // 2


class OutputProcessor(FrameProcessor):
    def __init__(
        self,
        send_text: Callable[[str], Awaitable[None]],
        serializer: AcsMediaSerializer,
        sample_rate: int,
        stats: GatewayStats,
        call_id: str,
        backlog: Callable[[], int] | None = None,
        echo: EchoCanceller | None = None,
    ) -> None:
        super().__init__()
        self._echo = echo  # told what the caller hears, to tell its echo from them (echo.py)
        self._send_text = send_text
        self._serializer = serializer
        self._stats = stats
        self._call_id = call_id
        self._backlog = backlog  # bytes written to the caller's socket and not yet taken by the network
        self._dropped = 0
        self._audio_since_stop = False
        self._lock = asyncio.Lock()
        self._pacer = Pacer(frame_bytes(sample_rate), self._send_audio, stats, on_failure=self._pacing_failed)

    async def stop(self) -> None:
        self._pacer.stop()
        await super().stop()

    async def process_frame(self, frame: Frame) -> None:
        if isinstance(frame, TtsAudioFrame):
            if not frame.reply.interrupted:
                self._pacer.put(frame)
                await self._pacer.send_due()  # the first audio of a stretch leaves now, not at the next tick
        elif isinstance(frame, ReplyEndFrame):
            self._pacer.put(frame)
            await self._pacer.send_due()
        elif isinstance(frame, InterruptionFrame):
            self._pacer.drop_interrupted()
            if self._audio_since_stop:  # ACS may have audio queued: flush it
                await self._send(self._serializer.serialize(frame))
                if self._echo is not None:
                    self._echo.stopped(time.monotonic())
                self._audio_since_stop = False
                self._stats.barge_in(self._call_id, (time.monotonic() - frame.onset_at) * 1000)

    async def _send_audio(self, pcm: bytes) -> None:
        if self._backlog is not None and self._backlog() > MAX_BACKLOG_BYTES:
            self._dropped += 1
            if self._dropped in (1, 50) or not self._dropped % 500:
                log.warning("call %s: the caller's side is not reading; %d audio frames dropped", self._call_id,
                            self._dropped)
            return
        self._audio_since_stop = True  # before the send: an interruption during it must still flush this frame
        if self._echo is not None:
            self._echo.played(pcm, time.monotonic())
        await self._send(self._serializer.serialize(OutputAudioFrame(pcm)))

    def _pacing_failed(self, exc: BaseException) -> None:
        if self._on_failure is not None:
            self._on_failure(exc)

    async def _send(self, message: str | None) -> None:
        if message is None:
            return
        async with self._lock:
            try:
                await self._send_text(message)
            except ConnectionResetError:  # the peer hung up: the call's reader sees the close and ends the call
                pass
