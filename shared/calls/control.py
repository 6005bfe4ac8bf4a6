"""The CallControl port: what the app asks of the telephony service (answer, hang up, transfer).

ACS Call Automation is the adapter (`shared/calls/acs.py`), pointed at Azure or at the local ACS emulator. Errors
come back as domain errors: `Unavailable` when a retry may help, `CallEnded` when the call is gone, `CallRejected`
when the service refused the request for good.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from shared.errors import SwitchboardError

#: The audio formats ACS streams (PROTOCOLS.md B.4): 20 ms frames of 16-bit mono PCM.
AUDIO_FORMATS = {16000: "pcm16KMono", 24000: "pcm24KMono"}


class CallEnded(SwitchboardError):
    """The call no longer exists (hung up, transferred away, or never answered)."""


class CallRejected(SwitchboardError):
    """The service refused the request (a bad target, an expired incoming-call context); retrying will not help."""


@dataclass(frozen=True)
class MediaStreaming:
    """Bidirectional audio over a WebSocket to the media gateway, started as the call connects."""

    transport_url: str  # wss://gateway/media?token=...
    sample_rate: int = 16000

    def __post_init__(self) -> None:
        if self.sample_rate not in AUDIO_FORMATS:
            raise ValueError(f"sample_rate must be one of {sorted(AUDIO_FORMATS)}, not {self.sample_rate}")

    @property
    def audio_format(self) -> str:
        return AUDIO_FORMATS[self.sample_rate]


@dataclass(frozen=True)
class AnsweredCall:
    call_connection_id: str
    correlation_id: str | None
    state: str | None  # callConnectionState right after answering, usually "connecting"


class CallControl(ABC):
    @abstractmethod
    async def answer(
        self, incoming_call_context: str, callback_url: str, media: MediaStreaming, *, operation_context: str = ""
    ) -> AnsweredCall:
        """Answer a ringing call; ACS then posts callbacks to `callback_url` and opens the media WebSocket."""

    @abstractmethod
    async def hang_up(self, call_connection_id: str) -> None:
        """End the call for everyone on it."""

    @abstractmethod
    async def transfer(self, call_connection_id: str, phone_number: str, *, operation_context: str = "") -> None:
        """Hand the caller to a phone number (a person); our leg ends when the transfer is accepted."""

    async def close(self) -> None:
        """Release connections. The default holds none."""
