"""Voice activity detection and end of turn: Silero VAD (the ONNX model faster-whisper ships) on 32 ms windows.

`SileroModel` holds the one ONNX session of the process (loaded on first use). `SileroVad` is a call's view of it:
the model is recurrent, so each call keeps its own state and 64 samples of context between windows.
`TurnDetector` turns the per-window speech probability into the caller's turns, and `VadProcessor` is the pipeline
stage: it resamples the caller's audio to 16 kHz, runs the model off the event loop, and forwards only the audio
around speech (with a pre-roll, so the first syllable is never clipped) to speech-to-text.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from concurrent.futures import Executor
from dataclasses import dataclass
from enum import Enum

import numpy as np

from media_gateway.audio import Resampler, dbfs, float_to_pcm16, pcm16_to_float
from media_gateway.frames import (
    Frame,
    InputAudioFrame,
    SpeechAudioFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)
from media_gateway.metrics import CallMeter
from media_gateway.processor import FrameProcessor

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
WINDOW = 512  # samples per model step at 16 kHz (32 ms)
CONTEXT = 64  # samples of the previous window the model sees
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
    """Silence after speech that ends the caller's turn."""
    pre_roll_ms: int = 300
    """Audio from before the onset sent to speech-to-text, so no word is clipped."""
    post_roll_ms: int = 300
    """Silence after speech still sent to speech-to-text; longer pauses inside a turn are not sent."""
    max_turn_s: float = 30.0
    """A turn longer than this is cut (bounds speech-to-text cost and latency)."""
    floor_dbfs: float = -65.0
    """Windows quieter than this are silence without running the model (digital silence, muted lines)."""
    step_windows: int = 2
    """Windows per model run. The run costs about as much for two windows as for one, so two halve the VAD's CPU
    (the gateway's largest per-call cost) for 32 ms more delay at most in hearing the caller start or stop."""


class SileroModel:
    """The process's one Silero ONNX session, loaded on first use and shared by every call."""

    def __init__(self) -> None:
        self._session = None
        self._lock = threading.Lock()

    def session(self):  # -> onnxruntime.InferenceSession
        with self._lock:
            if self._session is None:
                from faster_whisper.vad import get_vad_model

                self._session = get_vad_model().session
            return self._session

    def warm(self) -> None:
        SileroVad(self).probabilities(np.zeros(WINDOW, np.float32))


class SileroVad:
    """One call's recurrent state over the shared model."""

    def __init__(self, model: SileroModel) -> None:
        self._model = model
        self._h = np.zeros((1, 1, 128), np.float32)
        self._c = np.zeros((1, 1, 128), np.float32)
        self._context = np.zeros(CONTEXT, np.float32)

    def probabilities(self, audio: np.ndarray) -> list[float]:
        """Speech probability of each 512-sample window of `audio` (blocking: run it on the executor).

        One model run takes them all: the model reads its batch as consecutive windows, each row led by the last
        64 samples of the one before, carrying its state from row to row (as faster-whisper feeds it).
        """
        windows = audio[: len(audio) // WINDOW * WINDOW].reshape(-1, WINDOW)
        if not len(windows):
            return []
        contexts = np.concatenate([self._context[None, :], windows[:-1, -CONTEXT:]])
        rows = np.ascontiguousarray(np.concatenate([contexts, windows], axis=1), dtype=np.float32)
        out, self._h, self._c = self._model.session().run(None, {"input": rows, "h": self._h, "c": self._c})
        self._context = windows[-1, -CONTEXT:].copy()
        return [float(p) for p in np.asarray(out).reshape(-1)]


class _State(Enum):
    QUIET = "quiet"
    STARTING = "starting"  # speech heard, not yet long enough
    SPEAKING = "speaking"


@dataclass(frozen=True)
class TurnEvent:
    kind: str  # "started" or "stopped"
    at: float  # started: the onset; stopped: the end of the last speech
    window: int  # index of the window that decided it


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

    @property
    def speaking(self) -> bool:
        return self._state is _State.SPEAKING

    def silence_ms(self) -> float:
        """How long it has been quiet within the current turn."""
        return (self._window - self._last_speech_window) * WINDOW_SECONDS * 1000

    def update(self, probability: float, at: float) -> TurnEvent | None:
        """`at` is when the window's audio arrived (the end of the window)."""
        self._window += 1
        params = self.params
        is_speech, is_silence = probability >= params.threshold, probability < params.neg_threshold
        if self._state is _State.QUIET:
            if is_speech:
                self._state, self._onset_window = _State.STARTING, self._window
                self._onset_at = at
                self._mark_speech(at)
            return None
        if self._state is _State.STARTING:
            if is_silence:
                self._state = _State.QUIET  # a click, not speech
                return None
            if is_speech:
                self._mark_speech(at)
            if (self._window - self._onset_window + 1) * WINDOW_SECONDS * 1000 >= params.start_ms:
                self._state = _State.SPEAKING
                return TurnEvent("started", self._onset_at, self._window)
            return None
        if is_speech:
            self._mark_speech(at)
        too_long = (self._window - self._onset_window) * WINDOW_SECONDS >= params.max_turn_s
        if self.silence_ms() >= params.end_of_turn_ms or too_long:
            self._state = _State.QUIET
            return TurnEvent("stopped", self._last_speech_at, self._window)
        return None

    def _mark_speech(self, at: float) -> None:
        self._last_speech_at, self._last_speech_window = at, self._window


class VadProcessor(FrameProcessor):
    """Caller audio in; UserStartedSpeaking, SpeechAudio (for speech-to-text) and UserStoppedSpeaking out."""

    def __init__(
        self,
        model: SileroModel,
        executor: Executor,
        sample_rate: int,
        meter: CallMeter,
        params: VadParams = VadParams(),
    ) -> None:
        super().__init__()
        self._vad = SileroVad(model)
        self._executor = executor
        self._rate = sample_rate
        self._meter = meter
        self._resampler = Resampler(sample_rate, SAMPLE_RATE) if sample_rate != SAMPLE_RATE else None
        self._detector = TurnDetector(params)
        self._params = params
        self._pending = np.zeros(0, np.float32)
        # Recent windows (index, audio) for the pre-roll; `_sent_upto` is the last window sent to speech-to-text.
        keep = int((params.pre_roll_ms + params.start_ms) / 1000 / WINDOW_SECONDS) + 1
        self._recent: deque[tuple[int, np.ndarray]] = deque(maxlen=keep)
        self._sent_upto = -1
        self._window = -1

    async def process_frame(self, frame: Frame) -> None:
        if not isinstance(frame, InputAudioFrame):
            await self.push_frame(frame)
            return
        self._meter.received(len(frame.pcm) / 2 / self._rate)
        audio = pcm16_to_float(frame.pcm)
        if self._resampler is not None:
            audio = self._resampler.process(audio)
        self._pending = np.concatenate([self._pending, audio])
        step = WINDOW * self._params.step_windows
        usable = len(self._pending) // step * step
        if not usable:
            return
        windows, self._pending = self._pending[:usable], self._pending[usable:]
        probabilities = await self._probabilities(windows, frame.silent)
        count = len(probabilities)
        for index, (probability, window) in enumerate(zip(probabilities, windows.reshape(-1, WINDOW))):
            # Audio arrives in real time: a window that ended k windows before the last one arrived k x 32 ms earlier.
            at = frame.received_at - (count - 1 - index) * WINDOW_SECONDS
            await self._window_done(probability, window, at, decided_at=frame.received_at)

    async def _probabilities(self, windows: np.ndarray, silent: bool) -> list[float]:
        count = len(windows) // WINDOW
        if silent or dbfs(windows) < self._params.floor_dbfs:
            return [0.0] * count
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._vad.probabilities, windows)

    async def _window_done(self, probability: float, window: np.ndarray, at: float, decided_at: float) -> None:
        self._window += 1
        self._recent.append((self._window, window))
        event = self._detector.update(probability, at)
        if event is not None and event.kind == "started":
            await self.push_frame(UserStartedSpeakingFrame(onset_at=event.at))
        if self._detector.speaking and self._detector.silence_ms() <= self._params.post_roll_ms:
            await self._send_recent()
        if event is not None and event.kind == "stopped":
            await self.push_frame(UserStoppedSpeakingFrame(speech_ended_at=event.at, detected_at=decided_at))

    async def _send_recent(self) -> None:
        """Send speech-to-text every kept window it has not had: the pre-roll at a (re)start, else the latest."""
        fresh = [audio for index, audio in self._recent if index > self._sent_upto]
        if fresh:
            self._sent_upto = self._window
            await self.push_frame(SpeechAudioFrame(float_to_pcm16(np.concatenate(fresh))))
