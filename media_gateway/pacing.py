"""Real-time pacing: reply audio leaves in 20 ms frames at the rate it plays, not as fast as TTS makes it.

ACS queues whatever it is sent and plays it in order, so sending a whole reply at once would leave nothing for
StopAudio to flush but also nothing we could take back: pacing keeps what has left close to what the caller has
heard, which is what makes barge-in stop the voice at once and lets the transcript say what was heard.

A stretch of audio starts with a small burst (`lead_frames`) as a jitter buffer; after that frame i is due at
start + (i - lead) x 20 ms. How late each frame leaves against that schedule is recorded (the benchmark's figure).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Awaitable, Callable

from media_gateway.audio import FRAME_SECONDS
from media_gateway.frames import ReplyEndFrame, TtsAudioFrame
from media_gateway.metrics import GatewayStats

LEAD_FRAMES = 3


class Pacer:
    def __init__(
        self,
        frame_bytes: int,
        send: Callable[[bytes], Awaitable[None]],
        stats: GatewayStats,
        lead_frames: int = LEAD_FRAMES,
    ) -> None:
        self._frame_bytes = frame_bytes
        self._send = send
        self._stats = stats
        self._lead = lead_frames
        self._queue: deque[TtsAudioFrame | ReplyEndFrame] = deque()
        self._offset = 0  # bytes of the head frame already sent
        self._wake = asyncio.Event()
        self._started_at: float | None = None  # start of the current stretch; None when idle
        self._index = 0  # frames sent in the current stretch

    def put(self, item: TtsAudioFrame | ReplyEndFrame) -> None:
        self._queue.append(item)
        self._wake.set()

    def drop_interrupted(self) -> None:
        """Forget queued audio of interrupted replies."""
        head = self._queue[0] if self._queue else None
        self._queue = deque(item for item in self._queue if not item.reply.interrupted)
        if not self._queue or self._queue[0] is not head:
            self._offset = 0

    async def run(self) -> None:
        while True:
            if not self._queue:
                self._started_at = None  # idle: the next audio starts a new stretch
                self._wake.clear()
                await self._wake.wait()
                continue
            head = self._queue[0]
            if isinstance(head, ReplyEndFrame):
                self._queue.popleft()
                head.reply.played_out()
                continue
            if head.reply.interrupted:
                self.drop_interrupted()
                continue
            if self._started_at is None:
                self._started_at, self._index = time.monotonic(), 0
            due = self._started_at + max(0, self._index - self._lead) * FRAME_SECONDS
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
                continue  # look again: an interruption may have emptied the queue meanwhile
            await self._send_frame(head, due)

    async def _send_frame(self, head: TtsAudioFrame, due: float) -> None:
        frame = head.pcm[self._offset : self._offset + self._frame_bytes]
        now = time.monotonic()
        self._stats.frame_sent(now - due)
        metrics = head.reply.metrics
        if metrics is not None and metrics.first_audio_at is None:
            metrics.first_audio_at = now
        self._index += 1
        self._offset += len(frame)
        if self._offset >= len(head.pcm):
            self._queue.popleft()
            self._offset = 0
        head.clause.played_samples += len(frame) // 2
        await self._send(frame)
