"""A speech-to-text engine that hears a script: each stretch of speech transcribes as the next line.

For benchmarks and tests that measure the gateway rather than a recogniser. It does the port's work honestly
(accepts the audio, counts it, answers at once) and says what it is.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from media_gateway.stt.base import Stt, SttStream


class ScriptedStt(Stt):
    name = "scripted"

    def __init__(self, lines: Iterable[str]) -> None:
        self._lines = list(lines) or [""]
        self._next = 0
        self.audio_bytes = 0

    def stream(self, vocabulary: Sequence[str] = ()) -> SttStream:
        return _ScriptedStream(self)


class _ScriptedStream(SttStream):
    def __init__(self, engine: ScriptedStt) -> None:
        self._engine = engine

    async def push(self, pcm: bytes) -> None:
        self._engine.audio_bytes += len(pcm)

    async def partial(self) -> str:
        engine = self._engine
        return engine._lines[engine._next % len(engine._lines)]

    async def finish(self) -> str:
        engine = self._engine
        line, engine._next = engine._lines[engine._next % len(engine._lines)], engine._next + 1
        return line
