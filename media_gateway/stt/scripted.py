"""A speech-to-text engine that hears a script: each stretch of speech transcribes as the next line.

For benchmarks and tests that measure the gateway rather than a recogniser. It does the port's work honestly
(accepts the audio, counts it, answers at once) and says what it is.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable

from media_gateway.stt.base import Stt, SttStream


class ScriptedStt(Stt):
    name = "scripted"

    def __init__(self, lines: Iterable[str]) -> None:
        self._lines = itertools.cycle(list(lines) or [""])
        self.audio_bytes = 0

    def stream(self) -> SttStream:
        return _ScriptedStream(self)


class _ScriptedStream(SttStream):
    def __init__(self, engine: ScriptedStt) -> None:
        self._engine = engine

    async def push(self, pcm: bytes) -> None:
        self._engine.audio_bytes += len(pcm)

    async def finish(self) -> str:
        return next(self._engine._lines)
