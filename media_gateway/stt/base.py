"""The speech-to-text port.

An `Stt` engine opens one `SttStream` per stretch of caller speech: the VAD stage decides what is speech, and only
that audio (with its pre-roll) is pushed, so a cloud engine is never billed for the silence between turns.
`partial()` is what the engine has heard so far while the caller pauses (media_gateway/endpoint.py judges the pause
with it); `finish()` returns the transcript once the caller's turn has ended, and an engine that already transcribed
all of it for `partial()` gives that at once; `aclose()` abandons a stream (the call ended).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Sequence

from shared.errors import SwitchboardError

#: Audio pushed to every stream: PCM16 little-endian mono at 16 kHz.
STT_SAMPLE_RATE = 16000


class SttError(SwitchboardError):
    """Speech-to-text failed for one utterance; `retryable` says whether the engine itself is still usable."""

    def __init__(self, message: str, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class SttStream(ABC):
    @abstractmethod
    async def push(self, pcm: bytes) -> None:
        """Add caller audio (16 kHz PCM16)."""

    async def partial(self) -> str:
        """The transcript of the audio pushed so far; the stream goes on. "" when the engine cannot tell yet."""
        return ""

    @abstractmethod
    async def finish(self) -> str:
        """The transcript of everything pushed; raises SttError."""

    async def aclose(self) -> None:
        """Abandon the stream without a transcript."""


class Stt(ABC):
    name: str

    @abstractmethod
    def stream(self, vocabulary: Sequence[str] = ()) -> SttStream:
        """A stream for one stretch of speech; opening it must not block (network setup happens in the background).
        `vocabulary`: names and words the caller is likely to say (the scenario's `voice.vocabulary`), to bias
        recognition towards; an engine that cannot use them ignores them."""

    async def warm(self) -> None:
        """Load models or open connections ahead of the first call."""

    async def close(self) -> None:
        pass


# Whisper writes "100,200,300"; account and phone numbers are digit strings to the conversation core.
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}\b)")


def normalize_transcript(text: str) -> str:
    """One transcript style for every engine: trimmed, and numbers without thousands separators."""
    return _THOUSANDS.sub("", " ".join(text.split()))
