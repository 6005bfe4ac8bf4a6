"""The last stage: reply audio to the caller at real-time pace, and an interruption as StopAudio.

Every outbound message goes through one lock, so StopAudio never overtakes (or is overtaken by) an AudioData
already on its way: once StopAudio has been sent, no audio of the interrupted reply follows it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Awaitable, Callable

from media_gateway.audio import frame_bytes
from media_gateway.frames import Frame, InterruptionFrame, OutputAudioFrame, ReplyEndFrame, TtsAudioFrame
from media_gateway.metrics import GatewayStats
from media_gateway.pacing import Pacer
from media_gateway.processor import FrameProcessor, OnFailure
from media_gateway.serializer import AcsMediaSerializer


class OutputProcessor(FrameProcessor):
    def __init__(
        self,
        send_text: Callable[[str], Awaitable[None]],
        serializer: AcsMediaSerializer,
        sample_rate: int,
        stats: GatewayStats,
        call_id: str,
    ) -> None:
        super().__init__()
        self._send_text = send_text
        self._serializer = serializer
        self._stats = stats
        self._call_id = call_id
        self._lock = asyncio.Lock()
        self._pacer = Pacer(frame_bytes(sample_rate), self._send_audio, stats)
        self._audio_since_stop = False

    async def start(self, on_failure: OnFailure) -> None:
        await super().start(on_failure)
        self.create_task(self._pacer.run(), "pace")

    async def process_frame(self, frame: Frame) -> None:
        if isinstance(frame, TtsAudioFrame):
            if not frame.reply.interrupted:
                self._pacer.put(frame)
        elif isinstance(frame, ReplyEndFrame):
            self._pacer.put(frame)
        elif isinstance(frame, InterruptionFrame):
            self._pacer.drop_interrupted()
            if self._audio_since_stop:  # ACS may have audio queued: flush it
                await self._send(self._serializer.serialize(frame))
                self._audio_since_stop = False
                self._stats.barge_in(self._call_id, (time.monotonic() - frame.onset_at) * 1000)

    async def _send_audio(self, pcm: bytes) -> None:
        self._audio_since_stop = True  # before the send: an interruption during it must still flush this frame
        await self._send(self._serializer.serialize(OutputAudioFrame(pcm)))

    async def _send(self, message: str | None) -> None:
        if message is None:
            return
        async with self._lock:
            try:
                await self._send_text(message)
            except ConnectionResetError:  # the peer hung up: the call's reader sees the close and ends the call
                pass
