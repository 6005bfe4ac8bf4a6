"""Every call's caller audio through the VAD model together: one model run per batch tick, off the event loop.

Each call keeps a `VadStream`: its audio at 16 kHz in one preallocated buffer (the 64 samples before each window
stay in place as its context, so a row is a slice, not a concatenation), the windows that are complete and not yet
heard by the model, and the model's recurrent state. A window completed by a frame is queued on the process's
`VadBatcher`, which starts a run at once when none ran in the last `BATCH_SECONDS`, else at that mark: at low load a
window is heard as soon as it is complete, under load every call's windows of the last tick share one run (the
batching that makes the model cheap, silero.py). The run (level gate, encoder, one LSTM step per window in order)
happens on the event loop, between messages: ~1-2 ms for 50 calls' windows. On a thread it would fight the loop for
the GIL, and with a worker process per core a thread preempted by the OS while it holds the GIL stalls every call of
its process: p99 frame lateness at 100 calls was 100 ms with the run on the VAD thread, 5 ms without (docs/cost.md,
"Media gateway CPU"). Results go back to each stream in order.

Times: a window's `at` is when the audio that completed it arrived; its `decided_at` is when the gateway knew its
probability, on the same clock: `at` plus the time from feeding it to knowing (in a live call `at` is the arrival
time, so `decided_at` is simply now; a test that feeds recorded audio stamped ahead of time gets its own clock).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from media_gateway.audio import Resampler
from media_gateway.silero import CONTEXT, HIDDEN, ROW, SAMPLE_RATE, WINDOW, SileroBatch

log = logging.getLogger(__name__)

#: The shortest time between two model runs: under load, a run takes every call's windows of that long.
BATCH_SECONDS = 0.02
_BUFFER = CONTEXT + 4 * WINDOW  # room for the context, a window being filled and a backlog of a few
_SCALE = np.float32(1 / 32768)


@dataclass(frozen=True, slots=True)
class WindowResult:
    probability: float
    audio: np.ndarray  # the window's 512 samples at 16 kHz, float32
    at: float
    decided_at: float


@dataclass(frozen=True, slots=True)
class _Queued:
    start: int  # buffer index of the window's first sample
    at: float
    fed_at: float
    silent: bool


class VadStream:
    """One call's audio on its way to the model (used on the event loop; its state only in a run)."""

    def __init__(self, sample_rate: int, deliver: Callable[[list[WindowResult]], None],
                 fail: Callable[[BaseException], None]) -> None:
        self.deliver = deliver
        self.fail = fail
        self.h = np.zeros(HIDDEN, np.float32)
        self.c = np.zeros(HIDDEN, np.float32)
        self._resampler = Resampler(sample_rate, SAMPLE_RATE) if sample_rate != SAMPLE_RATE else None
        self._buffer = np.zeros(_BUFFER, np.float32)  # zeros before the first window stand in for its context
        self._filled = CONTEXT
        self._next = CONTEXT  # start of the next window not yet queued
        self.queued: list[_Queued] = []

    def feed(self, pcm: bytes, at: float, silent: bool) -> int:
        """Take one frame of caller audio; returns how many windows it completed."""
        samples = np.frombuffer(pcm, "<i2")
        audio = samples if self._resampler is None else self._resampler.process(samples * _SCALE)
        count = len(audio)
        if self._filled + count > len(self._buffer):
            self._compact(count)
        target = self._buffer[self._filled : self._filled + count]
        if self._resampler is None:
            np.multiply(samples, _SCALE, out=target, casting="unsafe")  # int16 -> float in place: no new array
        else:
            target[:] = audio
        self._filled += count
        completed = 0
        while self._filled - self._next >= WINDOW:
            self.queued.append(_Queued(self._next, at, time.monotonic(), silent))
            self._next += WINDOW
            completed += 1
        return completed

    def take_rows(self, rows: np.ndarray, offset: int) -> list[_Queued]:
        """Copy the queued windows (with their context) into `rows` from `offset`; they leave the queue."""
        taken, self.queued = self.queued, []
        for index, window in enumerate(taken):
            rows[offset + index] = self._buffer[window.start - CONTEXT : window.start + WINDOW]
        return taken

    def _compact(self, incoming: int) -> None:
        keep_from = (self.queued[0].start if self.queued else self._next) - CONTEXT
        kept = self._filled - keep_from
        if kept + incoming > len(self._buffer):  # a backlog the buffer does not hold: grow it (rare)
            grown = np.zeros(max(2 * len(self._buffer), kept + incoming), np.float32)
            grown[:kept] = self._buffer[keep_from : self._filled]
            self._buffer = grown
        else:
            self._buffer[:kept] = self._buffer[keep_from : self._filled]
        self._filled, self._next = kept, self._next - keep_from
        self.queued = [_Queued(q.start - keep_from, q.at, q.fed_at, q.silent) for q in self.queued]


@dataclass
class _Batch:
    rows: np.ndarray  # (n, 576)
    silent: np.ndarray  # (n,) bool: ACS marked the frame that completed the window as silence
    owners: list[tuple[VadStream, list[_Queued], int]]  # stream, its windows, index of its first row


class VadBatcher:
    """The process's model runs for one event loop: windows in from every call, probabilities back to each."""

    def __init__(self, model: Callable[[], SileroBatch], floor_dbfs: float) -> None:
        self._model = model
        self._floor_energy = 10 ** (floor_dbfs / 10)
        self._loop = asyncio.get_running_loop()
        self._waiting: dict[VadStream, None] = {}  # streams with queued windows, in the order they queued
        self._timer: asyncio.TimerHandle | None = None
        self._last_start = -BATCH_SECONDS
        self._idle = asyncio.Event()
        self._idle.set()
        self.runs = 0
        self.windows = 0

    def windows_queued(self, stream: VadStream) -> None:
        self._waiting[stream] = None
        self._idle.clear()
        if self._timer is None:
            delay = self._last_start + BATCH_SECONDS - self._loop.time()
            self._timer = self._loop.call_later(max(0.0, delay), self._start_run)

    def forget(self, stream: VadStream) -> None:
        """The call ended: its queued windows are dropped."""
        self._waiting.pop(stream, None)
        stream.queued = []

    async def flush(self) -> None:
        """Hear the queued windows now, without waiting for the batch tick, and return once they are delivered."""
        if self._timer is not None:
            self._timer.cancel()
            self._start_run()
        await self._idle.wait()

    def _start_run(self) -> None:
        self._timer = None
        streams, self._waiting = list(self._waiting), {}
        count = sum(len(stream.queued) for stream in streams)
        if not count:
            self._idle.set()
            return
        batch = _Batch(np.empty((count, ROW), np.float32), np.zeros(count, bool), [])
        offset = 0
        for stream in streams:
            taken = stream.take_rows(batch.rows, offset)
            for index, window in enumerate(taken):
                batch.silent[offset + index] = window.silent
            batch.owners.append((stream, taken, offset))
            offset += len(taken)
        self._last_start = self._loop.time()
        self.runs += 1
        self.windows += count
        try:
            probabilities = self._evaluate(batch)
        except Exception as exc:  # a model failure is the calls' failure: each ends rather than going deaf
            log.exception("the VAD model run failed")
            for stream, _, _ in batch.owners:
                stream.fail(exc)
        else:
            self._deliver(batch, probabilities)
        if self._waiting:
            delay = self._last_start + BATCH_SECONDS - self._loop.time()
            self._timer = self._loop.call_later(max(0.0, delay), self._start_run)
        else:
            self._idle.set()

    def _evaluate(self, batch: _Batch) -> np.ndarray:
        """Speech probability of every row; each stream's state advances window by window."""
        rows, probabilities = batch.rows, np.zeros(len(batch.rows), np.float32)
        windows = rows[:, CONTEXT:]
        energy = np.einsum("ij,ij->i", windows, windows) / WINDOW
        # Quieter windows, and those ACS marked silent, are silence without the model (muted lines, digital silence).
        heard = (energy >= self._floor_energy) & ~batch.silent
        if not heard.any():
            return probabilities
        model = self._model()
        projected = np.zeros((len(rows), 4 * HIDDEN), np.float32)
        projected[heard] = model.encode(rows[heard])
        rounds = max(len(taken) for _, taken, _ in batch.owners)
        for step in range(rounds):  # one call's windows in order; every call's k-th window in one product
            members = [(stream, first + step) for stream, taken, first in batch.owners
                       if step < len(taken) and heard[first + step]]
            if not members:
                continue
            index = [row for _, row in members]
            h = np.stack([stream.h for stream, _ in members])
            c = np.stack([stream.c for stream, _ in members])
            probability, h, c = model.step(projected[index], h, c)
            probabilities[index] = probability
            for k, (stream, _) in enumerate(members):
                stream.h, stream.c = h[k], c[k]
        return probabilities

    def _deliver(self, batch: _Batch, probabilities: np.ndarray) -> None:
        now, windows = time.monotonic(), batch.rows[:, CONTEXT:]  # views: the windows are not copied again
        for stream, taken, first in batch.owners:
            stream.deliver([
                WindowResult(float(probabilities[first + k]), windows[first + k], window.at,
                             window.at + (now - window.fed_at))
                for k, window in enumerate(taken)
            ])
