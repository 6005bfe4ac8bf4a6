"""Voice activity detection and end of turn: Silero VAD (the model faster-whisper ships) on 32 ms windows.

`SileroModel` holds the process's model (silero.py: the arithmetic in numpy, loaded on first use) and, per event
loop, the `VadBatcher` (vad_batch.py) that runs every call's complete windows together between messages; the model
is recurrent, so each call keeps its own state and 64 samples of context. `TurnDetector` turns the per-window speech
probability into the caller's turns, and `VadProcessor` is the pipeline stage: it hands the caller's audio to the
batcher frame by frame (resampled to 16 kHz), takes each window's probability back in order, and forwards only the
audio around speech (with a pre-roll, so the first syllable is never clipped) to speech-to-text.

When a turn ends. With a judge (media_gateway/endpoint.py, the default), a short pause (`pause_ms`, 400 ms) is
enough if the end-of-turn model and the words so far both say the caller finished; otherwise the turn ends after
`end_of_turn_ms` of silence (the longer wait, 1.5 s: a caller reading out a number), or goes on when they do. The
judge is asked earlier, after `ask_ms` (200 ms), so that its speech-to-text pass is done by the time the pause is
long enough: the turn's transcript is then ready as it ends. A pause shorter than `pause_ms` never ends a turn, the
breath after a comma included. Without a judge, `end_of_turn_ms` of silence (500 ms) ends every turn, as before
there was a model.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import weakref
import time
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from enum import Enum

import numpy as np

from media_gateway.audio import dbfs, float_to_pcm16
from media_gateway.echo import EchoCanceller
from media_gateway.frames import (
    Frame,
    InputAudioFrame,
    SpeechAudioFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)
from media_gateway.metrics import CallMeter
from media_gateway.processor import FrameProcessor
from media_gateway.silero import HIDDEN, ROW, SAMPLE_RATE, WINDOW, SileroBatch, SileroWeights
from media_gateway.vad_batch import VadBatcher, VadStream, WindowResult

log = logging.getLogger(__name__)

WINDOW_SECONDS = WINDOW / SAMPLE_RATE


@dataclass(frozen=True)
class VadParams:
    threshold: float = 0.5
    """Speech probability at or above which a window is speech."""
    neg_threshold: float = 0.35
    """Below this a window is silence; in between, the current state holds (hysteresis)."""
    start_ms: int = 96
    """Speech must last this long to count as the caller speaking (and to interrupt a reply)."""
    end_of_turn_ms: int = 500
    """Silence after speech that ends the caller's turn (with a judge: the turn it judged unfinished)."""
    pause_ms: int | None = None
    """With a judge: the shortest silence that ends a turn it says is finished. None: no judge."""
    ask_ms: int = 200
    """With a judge: the silence after which it is asked (at most `pause_ms`)."""
    pre_roll_ms: int = 300
    """Audio from before the onset sent to speech-to-text, so no word is clipped."""
    post_roll_ms: int = 300
    """Silence after speech still sent to speech-to-text; longer pauses inside a turn are not sent."""
    max_turn_s: float = 30.0
    """A turn longer than this is cut (bounds speech-to-text cost and latency)."""
    floor_dbfs: float = -65.0
    """Windows quieter than this are silence without running the model (digital silence, muted lines)."""
    tail_db: float | None = 30.0
    """Within a turn, a window this many dB below the turn's loudest is not speech, whatever the model says: Silero's
    probability stays up for a window or two after the voice stops, and a pause should count from the voice's end
    (docs/voice.md, "Where the voice ends"). A fading fricative ("please") is ~20 dB down and stays speech; the line's
    noise is more than 30 dB down for a caller at a normal level. None: the model alone."""


class SileroModel:
    """The process's Silero VAD, loaded on first use and shared by every call, and its batcher per event loop."""

    def __init__(self) -> None:
        self._model: SileroBatch | None = None
        self._lock = threading.Lock()
        self._batchers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, VadBatcher] = weakref.WeakKeyDictionary()

    def model(self) -> SileroBatch:
        with self._lock:
            if self._model is None:
                self._model = SileroBatch(SileroWeights.load())
            return self._model

    def batcher(self, floor_dbfs: float) -> VadBatcher:
        """The running loop's batcher (the first caller's level floor is its)."""
        loop = asyncio.get_running_loop()
        if (batcher := self._batchers.get(loop)) is None:
            batcher = self._batchers[loop] = VadBatcher(self.model, floor_dbfs)
        return batcher

    def warm(self) -> None:
        model, state = self.model(), np.zeros((1, HIDDEN), np.float32)
        model.step(model.encode(np.zeros((1, ROW), np.float32)), state, state)


class _State(Enum):
    QUIET = "quiet"
    STARTING = "starting"  # speech heard, not yet long enough
    SPEAKING = "speaking"


@dataclass(frozen=True)
class TurnEvent:
    kind: str  # "started", "paused" (ask_ms of silence in a turn) or "stopped"
    at: float  # started: the onset; paused and stopped: the end of the last speech
    window: int  # index of the window that decided it


#: Asked at a pause with the turn's audio (16 kHz float, at most its last 8 s): has the caller finished?
Judge = Callable[[np.ndarray], Awaitable[bool]]
#: How much of the turn a judge hears: the end-of-turn model reads 8 s.
JUDGED_SECONDS = 8.0


class TurnDetector:
    """Speech probability per window in, turn starts and ends out. Pure logic: times come with the windows."""

    def __init__(self, params: VadParams) -> None:
        self.params = params
        self._state = _State.QUIET
        self._onset_at = 0.0
        self._onset_window = 0
        self._last_speech_at = 0.0
        self._last_speech_window = 0
        self._window = -1
        self._paused = False
        self._loudest = -math.inf  # the turn's loudest window, in dBFS
        self.pauses = 0  # counts the pauses in this call: a verdict about an earlier one is stale

    @property
    def speaking(self) -> bool:
        return self._state is _State.SPEAKING

    def pause_is(self, pause: int) -> bool:
        """Whether the caller is still silent in pause number `pause` (they have not gone on, the turn has not ended)."""
        return self._paused and self.pauses == pause and self._state is _State.SPEAKING

    def may_end(self, pause: int) -> bool:
        """Whether a turn judged finished at pause number `pause` may end now: still silent, for `pause_ms`."""
        return self.pause_is(pause) and self.silence_ms() >= (self.params.pause_ms or 0)

    def end(self) -> float:
        """End the turn now (a judge said the caller finished); returns when their speech ended."""
        self._state, self._paused = _State.QUIET, False
        return self._last_speech_at

    def silence_ms(self) -> float:
        """How long it has been quiet within the current turn."""
        return (self._window - self._last_speech_window) * WINDOW_SECONDS * 1000

    def update(self, probability: float, at: float, level_dbfs: float | None = None) -> TurnEvent | None:
        """`at` is when the window's audio arrived (the end of the window); `level_dbfs` its level, if known."""
        self._window += 1
        params = self.params
        is_speech, is_silence = probability >= params.threshold, probability < params.neg_threshold
        if self._state is _State.QUIET:
            if is_speech:
                self._state, self._onset_window = _State.STARTING, self._window
                self._onset_at = at
                self._loudest = -math.inf
                self._mark_speech(at, level_dbfs)
            return None
        if self._state is _State.STARTING:
            if is_silence:
                self._state = _State.QUIET  # a click, not speech
                return None
            if is_speech:
                self._mark_speech(at, level_dbfs)
            if (self._window - self._onset_window + 1) * WINDOW_SECONDS * 1000 >= params.start_ms:
                self._state = _State.SPEAKING
                return TurnEvent("started", self._onset_at, self._window)
            return None
        if is_speech and not self._fading(level_dbfs):
            self._mark_speech(at, level_dbfs)
            self._paused = False
        too_long = (self._window - self._onset_window) * WINDOW_SECONDS >= params.max_turn_s
        if self.silence_ms() >= params.end_of_turn_ms or too_long:
            self._state, self._paused = _State.QUIET, False
            return TurnEvent("stopped", self._last_speech_at, self._window)
        if params.pause_ms is not None and not self._paused and self.silence_ms() >= min(params.ask_ms, params.pause_ms):
            self._paused = True
            self.pauses += 1
            return TurnEvent("paused", self._last_speech_at, self._window)
        return None

    def _mark_speech(self, at: float, level_dbfs: float | None) -> None:
        self._last_speech_at, self._last_speech_window = at, self._window
        if level_dbfs is not None:
            self._loudest = max(self._loudest, level_dbfs)

    def _fading(self, level_dbfs: float | None) -> bool:
        """A window the model still calls speech, far below the turn's voice: the model's hangover, not the caller."""
        tail = self.params.tail_db
        return tail is not None and level_dbfs is not None and level_dbfs < self._loudest - tail


class VadProcessor(FrameProcessor):
    """Caller audio in; UserStartedSpeaking, SpeechAudio (for speech-to-text) and UserStoppedSpeaking out."""

    def __init__(
        self,
        model: SileroModel,
        executor: Executor,
        sample_rate: int,
        meter: CallMeter,
        params: VadParams = VadParams(),
        judge: Judge | None = None,
        echo: EchoCanceller | None = None,
    ) -> None:
        super().__init__()
        self._judge = judge if params.pause_ms is not None else None
        self._echo = echo  # takes the bot's own voice out of the caller's audio before anything hears it (echo.py)
        # `executor` is not used: the model runs on the event loop (vad_batch.py says why); call sites still pass it.
        self._batcher = model.batcher(params.floor_dbfs)
        self._stream = VadStream(sample_rate, self._windows_heard, self._model_failed)
        self._rate = sample_rate
        self._meter = meter
        self._detector = TurnDetector(params)
        self._params = params
        self._heard: deque[WindowResult] = deque()  # probabilities back from the model, not yet acted on
        self._acting: asyncio.Task[None] | None = None
        # Recent windows (index, audio) for the pre-roll; `_sent_upto` is the last window sent to speech-to-text.
        keep = int((params.pre_roll_ms + params.start_ms) / 1000 / WINDOW_SECONDS) + 1
        self._recent: deque[tuple[int, np.ndarray]] = deque(maxlen=keep)
        self._sent_upto = -1
        self._window = -1
        # The turn's audio so far (pre-roll included), for the judge: windows, at most JUDGED_SECONDS of them.
        self._turn: deque[np.ndarray] = deque(maxlen=int(JUDGED_SECONDS / WINDOW_SECONDS))
        self._finished_pause = 0  # the pause the judge said ends the turn, once it has been silent long enough

    async def process_frame(self, frame: Frame) -> None:
        if not isinstance(frame, InputAudioFrame):
            await self.push_frame(frame)
            return
        self._meter.received(len(frame.pcm) / 2 / self._rate)
        pcm = frame.pcm if self._echo is None else self._echo.clean(frame.pcm, frame.received_at, frame.silent)
        if self._stream.feed(pcm, frame.received_at, frame.silent):  # the frame completed a window
            self._batcher.windows_queued(self._stream)

    async def stop(self) -> None:
        self._batcher.forget(self._stream)
        await super().stop()

    async def flush(self) -> None:
        """Hear every window fed so far now and act on it (tests feed recorded audio frame by frame, flushing)."""
        await self._batcher.flush()
        while self._acting is not None and not self._acting.done():
            await asyncio.wait({self._acting})

    def _windows_heard(self, results: list[WindowResult]) -> None:
        """(From the batcher, on the event loop.) Act on them in order, on a task: acting may wait (a barge-in)."""
        self._heard.extend(results)
        if self._acting is None or self._acting.done():
            self._acting = self.create_task(self._act(), "windows")

    async def _act(self) -> None:
        while self._heard:
            result = self._heard.popleft()
            await self._window_done(result.probability, result.audio.copy(), result.at, result.decided_at)

    def _model_failed(self, exc: BaseException) -> None:
        if self._on_failure is not None:
            self._on_failure(exc)

    async def _window_done(self, probability: float, window: np.ndarray, at: float, decided_at: float) -> None:
        self._window += 1
        self._recent.append((self._window, window))
        event = self._detector.update(probability, at, dbfs(window))
        if event is not None and event.kind == "started":
            self._turn.clear()
            self._turn.extend(audio.copy() for _, audio in self._recent)
            await self.push_frame(UserStartedSpeakingFrame(onset_at=event.at))
        elif self._detector.speaking:
            self._turn.append(window.copy())  # a view would pin the whole batch it came in
        if self._detector.speaking and self._detector.silence_ms() <= self._params.post_roll_ms:
            await self._send_recent()
        if event is not None and event.kind == "paused" and self._judge is not None:
            self.create_task(self._ask(self._detector.pauses, np.concatenate(self._turn)), "end of turn?")
        if event is not None and event.kind == "stopped":
            await self.push_frame(UserStoppedSpeakingFrame(speech_ended_at=event.at, detected_at=decided_at))
        elif self._finished_pause and self._detector.may_end(self._finished_pause):
            await self._end_turn(decided_at)

    async def _ask(self, pause: int, audio: np.ndarray) -> None:
        """Ask the judge about this pause; if it says the caller finished, the turn ends once the pause has lasted
        `pause_ms` (now, if it already has), unless they go on first."""
        assert self._judge is not None
        if not await self._judge(audio) or not self._detector.pause_is(pause):
            return
        self._finished_pause = pause
        if self._detector.may_end(pause):
            await self._end_turn(time.monotonic())

    async def _end_turn(self, decided_at: float) -> None:
        self._finished_pause = 0
        ended_at = self._detector.end()
        await self.push_frame(UserStoppedSpeakingFrame(speech_ended_at=ended_at, detected_at=decided_at))

    async def _send_recent(self) -> None:
        """Send speech-to-text every kept window it has not had: the pre-roll at a (re)start, else the latest."""
        fresh = [audio for index, audio in self._recent if index > self._sent_upto]
        if fresh:
            self._sent_upto = self._window
            await self.push_frame(SpeechAudioFrame(float_to_pcm16(np.concatenate(fresh))))
