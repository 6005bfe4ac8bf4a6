"""The text-to-speech port.

`synthesize(text, sample_rate)` yields PCM16 mono audio at the call's rate as it becomes available (piper renders a
clause at once, Azure streams). A retryable failure before any audio came is retried here, once, so no caller of the
port writes its own retry loop.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator

from shared.errors import SwitchboardError

log = logging.getLogger(__name__)

RETRIES = 1


class TtsError(SwitchboardError):
    def __init__(self, message: str, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class Tts(ABC):
    name: str

    async def synthesize(self, text: str, sample_rate: int) -> AsyncIterator[bytes]:
        for attempt in range(RETRIES + 1):
            produced = False
            try:
                async for pcm in self._synthesize(text, sample_rate):
                    produced = True
                    yield pcm
                return
            except TtsError as exc:
                if produced or not exc.retryable or attempt == RETRIES:
                    raise
                log.warning("%s failed, trying again: %s", self.name, exc)

    @abstractmethod
    def _synthesize(self, text: str, sample_rate: int) -> AsyncIterator[bytes]:
        """Yield PCM16 mono at `sample_rate`; raise TtsError."""

    async def warm(self) -> None:
        """Load models or open connections ahead of the first call."""

    async def close(self) -> None:
        pass
