"""Real-time pacing: reply audio leaves in 20 ms frames at the rate it plays, not as fast as TTS makes it.

ACS queues whatever it is sent and plays it in order, so sending a whole reply at once would leave nothing for
StopAudio to flush but also nothing we could take back: pacing keeps what has left close to what the caller has
heard, which is what makes barge-in stop the voice at once and lets the transcript say what was heard.

A stretch of audio starts with a small burst (`lead_frames`), sent the moment its first audio arrives, as a jitter
buffer; after that frame i is due at start + (i - lead) x 20 ms. One `PacingClock` per process serves every call:
it ticks every 20 ms and each call with audio playing sends what is due, instead of every call sleeping for each of
its frames (a timer, a future and a task wake-up, 50 times a second a call). A stretch's start is put on the clock's
grid (the last tick at or before its first audio), so its frames fall due exactly on ticks; ticks are counted as
whole numbers, so "due" never hangs on how two sums of 0.02 round. How late each frame leaves against that schedule
is recorded (the benchmark's figure).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import weakref
from collections import deque
from typing import Awaitable, Callable

from media_gateway.audio import FRAME_SECONDS
from media_gateway.frames import ReplyEndFrame, TtsAudioFrame
from media_gateway.metrics import GatewayStats

log = logging.getLogger(__name__)

LEAD_FRAMES = 3


class Pacer:
    """One call's reply audio, frame by frame on the process's clock."""

    def __init__(
        self,
        frame_bytes: int,
        send: Callable[[bytes], Awaitable[None]],
        stats: GatewayStats,
        lead_frames: int = LEAD_FRAMES,
        on_failure: Callable[[BaseException], None] | None = None,
    ) -> None:
        self._frame_bytes = frame_bytes
        self._send = send
        self._stats = stats
        self._lead = lead_frames
        self._on_failure = on_failure
        self._queue: deque[TtsAudioFrame | ReplyEndFrame] = deque()
        self._offset = 0  # bytes of the head frame already sent
        self._grid: int | None = None  # the tick the current stretch started on; None when idle
        self._burst_due = 0.0  # when the current stretch's first audio arrived: its burst was due then
        self._index = 0  # frames sent in the current stretch
        self._clock: PacingClock | None = None

    @property
    def playing(self) -> bool:
        return self._grid is not None

    def put(self, item: TtsAudioFrame | ReplyEndFrame) -> None:
        self._queue.append(item)

    def drop_interrupted(self) -> None:
        """Forget queued audio of interrupted replies."""
        head = self._queue[0] if self._queue else None
        self._queue = deque(item for item in self._queue if not item.reply.interrupted)
        if not self._queue or self._queue[0] is not head:
            self._offset = 0

    def stop(self) -> None:
        """The call is over: off the clock."""
        if self._clock is not None:
            self._clock.remove(self)
        self._grid = None

    async def send_due(self, now: float | None = None, tick: int | None = None) -> None:
        """Send every frame due by `now` (the clock's `tick`); a stretch that starts here sends its burst at once
        and joins the clock."""
        now = time.monotonic() if now is None else now
        while self._queue:
            head = self._queue[0]
            if isinstance(head, ReplyEndFrame):
                self._queue.popleft()
                head.reply.played_out()
                continue
            if head.reply.interrupted:
                self.drop_interrupted()
                continue
            if self._grid is None:  # a new stretch: its burst is due now, the rest on the clock's ticks
                self._clock = PacingClock.of_running_loop()
                self._grid, self._burst_due, self._index = self._clock.tick_at(now), now, 0
                self._clock.add(self)
            assert self._clock is not None
            due = self._burst_due
            if self._index > self._lead:
                due_tick = self._grid + self._index - self._lead
                if due_tick > (self._clock.tick_at(now) if tick is None else tick):
                    return
                due = self._clock.time_of(due_tick)
            await self._send_frame(head, due)
        self.stop()  # idle: the next audio starts a new stretch

    def failed(self, exc: BaseException) -> None:
        self.stop()
        if self._on_failure is not None:
            self._on_failure(exc)

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


class PacingClock:
    """The process's one pacing timer (per event loop): a tick every 20 ms on a fixed grid, while any call plays."""

    _clocks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, PacingClock] = weakref.WeakKeyDictionary()

    def __init__(self) -> None:
        self._origin = time.monotonic()
        self._playing: dict[Pacer, None] = {}
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def of_running_loop(cls) -> PacingClock:
        loop = asyncio.get_running_loop()
        if (clock := cls._clocks.get(loop)) is None:
            clock = cls._clocks[loop] = cls()
        return clock

    def tick_at(self, now: float) -> int:
        """The last tick at or before `now`."""
        return math.floor((now - self._origin) / FRAME_SECONDS + 1e-6)

    def time_of(self, tick: int) -> float:
        return self._origin + tick * FRAME_SECONDS

    def add(self, pacer: Pacer) -> None:
        self._playing[pacer] = None
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._tick(), name="pacing clock")

    def remove(self, pacer: Pacer) -> None:
        self._playing.pop(pacer, None)

    async def _tick(self) -> None:
        while self._playing:
            tick = self.tick_at(time.monotonic()) + 1
            await asyncio.sleep(self.time_of(tick) - time.monotonic())
            now = time.monotonic()  # uvloop's timers count whole ms and may wake a little early: it is still `tick`
            for pacer in list(self._playing):
                try:
                    await pacer.send_due(now, tick)
                except Exception as exc:  # that call's output failed: it ends; the others play on
                    log.error("pacing a call's audio failed", exc_info=exc)
                    pacer.failed(exc)
