"""The speech engines a gateway process uses, chosen once from settings and shared by every call.

- `azure`: Azure AI Speech for speech-to-text and neural TTS (when SPEECH_ENDPOINT or SPEECH_REGION is set);
- `offline`: faster-whisper (tiny.en) and piper (joe), from wheels that carry their models: the default;
- `null`: a scripted recogniser and a tone for a voice, for benchmarks that measure the gateway itself.

Voice activity detection is always Silero (it decides what reaches speech-to-text, so it runs in every mode), and
the end of a turn is judged by Smart Turn (turn_model.py) when its file is there, in every mode too.
Models load lazily, once per process; `warm()` loads them ahead of the first call. CPU-bound inference runs on two
thread pools, never on the event loop: one for the VAD, whose 32 ms steps must not queue behind a transcription, and
one for speech-to-text and TTS.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from media_gateway.stt import Stt
from media_gateway.tts import Tts
from media_gateway.turn_model import SmartTurnModel
from media_gateway.vad import SileroModel

if TYPE_CHECKING:
    from shared.settings import Settings

log = logging.getLogger(__name__)

KINDS = ("auto", "azure", "offline", "null")
#: What the null recogniser hears, turn after turn.
NULL_SCRIPT = ("What is my balance?", "My account number is 100200300.", "Thanks, that's all.")


@dataclass
class Engines:
    kind: str
    vad: SileroModel
    stt: Stt
    tts: Tts
    vad_executor: ThreadPoolExecutor
    inference_executor: ThreadPoolExecutor
    turn: SmartTurnModel = field(default_factory=SmartTurnModel)
    warm_seconds: float | None = None  # how long warm() took, once it has

    def describe(self) -> dict[str, object]:
        warm = self.warm_seconds is not None
        return {"kind": self.kind, "stt": self.stt.name, "tts": self.tts.name, "vad": "silero",
                "turn": "smart-turn-v3" if self.turn.available else "silence", "warm": warm}

    async def warm(self) -> None:
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        await asyncio.gather(loop.run_in_executor(self.vad_executor, self.vad.warm),
                             loop.run_in_executor(self.vad_executor, self.turn.warm), self.stt.warm(), self.tts.warm())
        self.warm_seconds = time.perf_counter() - started
        log.info("speech engines ready (%s, %s) in %.1f s", self.stt.name, self.tts.name, self.warm_seconds)

    async def close(self) -> None:
        await self.stt.close()
        await self.tts.close()
        self.vad_executor.shutdown(wait=False, cancel_futures=True)
        self.inference_executor.shutdown(wait=False, cancel_futures=True)


def build_engines(settings: Settings, kind: str = "auto") -> Engines:
    """Engines of `kind`; `auto` is azure when Azure AI Speech is configured, else offline. Loads nothing yet."""
    if kind not in KINDS:
        raise ValueError(f"engines must be one of {', '.join(KINDS)}, not {kind!r}")
    if kind == "auto":
        kind = "azure" if settings.uses_azure_speech else "offline"
    cores = os.cpu_count() or 2
    # Half the cores for the VAD: a model step is ~0.2 ms, so one thread serves over a hundred calls, and fewer
    # threads contending for the GIL keeps the event loop (and so the pacing) on time.
    vad_executor = ThreadPoolExecutor(max_workers=max(1, cores // 2), thread_name_prefix="vad")
    inference = ThreadPoolExecutor(max_workers=min(cores, 4), thread_name_prefix="inference")
    stt: Stt
    tts: Tts
    if kind == "azure":
        from media_gateway.stt.azure_speech import AzureSpeechStt
        from media_gateway.tts.azure_speech import AzureSpeechTts

        stt, tts = AzureSpeechStt(settings, inference), AzureSpeechTts(settings, inference)
    elif kind == "offline":
        from media_gateway.stt.whisper import WhisperStt
        from media_gateway.tts.piper import PiperTts

        stt, tts = WhisperStt(inference, cpu_threads=cores), PiperTts(inference)
    else:
        from media_gateway.stt.scripted import ScriptedStt
        from media_gateway.tts.tone import ToneTts

        stt, tts = ScriptedStt(NULL_SCRIPT), ToneTts()
    return Engines(kind, SileroModel(), stt, tts, vad_executor, inference)
