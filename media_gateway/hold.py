"""Calls the AI cannot take yet: a gateway carries GATEWAY_MAX_CALLS conversations, and holds the calls beyond that.

A held call's socket is accepted as any other, but instead of the greeting the caller hears hold music (generated
here, so nothing is shipped or fetched), paced as it plays. Held calls get a slot first come, first served as calls
end (`CallSlots`); then the hold music stops (StopAudio flushes what ACS still has queued) and the AI greets them.

While it waits, a held call counts as a customer waiting (the desk's HELD_CALLS set, which the queue estimate reads),
as a membership that expires unless it is renewed, so a gateway that dies holding calls stops counting them soon.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import deque
from typing import Awaitable, Callable

import numpy as np

from media_gateway.audio import FRAME_SECONDS, float_to_pcm16, frame_bytes
from shared.desk import HELD_CALLS
from shared.errors import SwitchboardError
from shared.stores.base import SessionState

log = logging.getLogger(__name__)

#: How long a held call counts without its mark being renewed, and how often it is renewed.
HELD_MARK_SECONDS = 60.0
HELD_RENEW_SECONDS = 20.0
#: Frames sent ahead of the schedule, as a jitter buffer (as the reply pacer does).
LEAD_FRAMES = 3

#: The hold tune: a slow arpeggio (frequency in Hz, seconds), quiet enough to talk over.
_TUNE = [(523.25, 0.4), (659.25, 0.4), (783.99, 0.4), (1046.5, 0.8), (783.99, 0.4), (659.25, 0.4), (587.33, 0.8),
         (0.0, 0.6)]
_LEVEL = 0.12  # peak amplitude: about -18 dBFS


class CallSlots:
    """How many conversations run at once; callers beyond that wait their turn, first come, first served."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("a gateway carries at least one call")
        self.limit = limit
        self.in_use = 0
        self._waiting: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        return sum(1 for future in self._waiting if not future.done())

    def try_take(self) -> bool:
        """Take a slot if one is free and nobody is waiting ahead."""
        if self.in_use < self.limit and not self.waiting:
            self.in_use += 1
            return True
        return False

    async def take(self) -> None:
        """Wait for a slot. Cancelled while waiting, the caller gives up their place (or the slot they were handed)."""
        if self.try_take():
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(future)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release()  # handed a slot in the same instant: pass it on
            raise

    def release(self) -> None:
        """A call ended: its slot goes to the longest waiting, else back to the pool."""
        while self._waiting:
            future = self._waiting.popleft()
            if not future.done():
                future.set_result(None)  # the slot changes hands: in_use stays
                return
        self.in_use = max(0, self.in_use - 1)


@functools.lru_cache(maxsize=4)
def hold_music(sample_rate: int) -> bytes:
    """One loop of the hold tune as 16-bit PCM: soft sine notes with a bell-like fade, then a rest."""
    notes = []
    for frequency, seconds in _TUNE:
        t = np.arange(int(sample_rate * seconds)) / sample_rate
        if frequency == 0.0:
            notes.append(np.zeros_like(t))
            continue
        envelope = np.minimum(1.0, t / 0.02) * np.exp(-3.0 * t / seconds)  # a quick attack, then a fade
        tone = np.sin(2 * np.pi * frequency * t) + 0.3 * np.sin(4 * np.pi * frequency * t)
        notes.append(_LEVEL / 1.3 * envelope * tone)
    loop = float_to_pcm16(np.concatenate(notes).astype(np.float32))
    size = frame_bytes(sample_rate)
    return loop + bytes(-len(loop) % size)  # whole frames, so the loop restarts on a frame boundary


async def play_hold_music(send: Callable[[bytes], Awaitable[None]], sample_rate: int) -> None:
    """Send the hold tune in 20 ms frames at the pace it plays, looping, until cancelled."""
    music, size = hold_music(sample_rate), frame_bytes(sample_rate)
    started, index = time.monotonic(), 0
    while True:
        offset = (index * size) % len(music)
        delay = started + max(0, index - LEAD_FRAMES) * FRAME_SECONDS - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        await send(music[offset : offset + size])
        index += 1


async def count_held(state: SessionState, call_id: str) -> None:
    """Count the call among those on hold, renewing the mark until cancelled; then it counts no more."""
    try:
        while True:
            try:
                await state.add_member(HELD_CALLS, call_id, HELD_MARK_SECONDS)
            except SwitchboardError as exc:  # the queue figures miss this caller for a while; the hold goes on
                log.warning("call %s: could not count it on hold: %s", call_id, exc)
            await asyncio.sleep(HELD_RENEW_SECONDS)
    finally:
        try:
            await asyncio.shield(state.remove_member(HELD_CALLS, call_id))
        except (SwitchboardError, asyncio.CancelledError) as exc:
            log.warning("call %s: still counted on hold until its mark expires: %s", call_id, exc)
