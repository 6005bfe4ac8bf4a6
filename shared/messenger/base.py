"""The Messenger port: send one WhatsApp message (free text or an approved template), get the channel's id back.

Retries live here, once. Adapters implement `_send` and raise `Unavailable` when trying again can help (throttling,
a 5xx, a dropped connection) or `SendFailed` when it cannot (a bad number, an unknown template, no configuration).
`send` retries the first kind with jittered exponential backoff under the *same* repeatability id and first-sent time,
so a retry of a send that did reach the service is recognised there instead of becoming a second message. The
first-sent time is the caller's only while ACS still tracks it (shared/messenger/repeatability.py): a held reply or a
reminder sent long after it was decided goes with now, not with a time ACS refuses as too old.
"""

from __future__ import annotations

import asyncio
import logging
import random
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime

from shared import telemetry
from shared.errors import SwitchboardError
from shared.messenger import repeatability

log = logging.getLogger(__name__)

#: Tries per send, and the backoff between them: uniform in [0, min(cap, base * 2**attempt)] seconds. Four tries
#: span a few seconds, which rides out a throttled burst without holding an Event Grid delivery for long; past that
#: the handler fails and Event Grid redelivers later, which is the longer retry.
SEND_ATTEMPTS = 4
BACKOFF_BASE = 0.5
BACKOFF_CAP = 4.0


class SendFailed(SwitchboardError):
    """The channel refused this message for good; sending it again cannot help. `code` is the channel's code."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class TextMessage:
    to: str  # E.164
    text: str


@dataclass(frozen=True)
class TemplateMessage:
    to: str  # E.164
    name: str
    language: str
    values: tuple[tuple[str, str], ...] = ()  # (parameter name, text), in the template body's order


OutboundMessage = TextMessage | TemplateMessage


class Messenger(ABC):
    """Sends WhatsApp messages. `send` returns the channel's message id (what delivery status events refer to)."""

    attempts: int = SEND_ATTEMPTS
    backoff_base: float = BACKOFF_BASE
    backoff_cap: float = BACKOFF_CAP

    async def send(self, message: OutboundMessage, *, repeatability_id: str, first_sent: datetime) -> str:
        """Send once, whatever happens in between: `repeatability_id` (a UUID) identifies this message across
        retries here and redeliveries of the event that caused it; `first_sent` is when it was decided, sent as the
        first-sent time while ACS still tracks it and replaced by now once it is older (repeatability.py).

        Raises SendFailed (permanent) or, once the retries are spent, Unavailable.
        """
        for attempt in range(1, self.attempts + 1):
            first_sent = repeatability.first_sent(first_sent)  # a retry keeps its first attempt's, while tracked
            try:
                with telemetry.span("whatsapp.send", kind=telemetry.SpanKind.CLIENT, attempt=attempt,
                                    message=type(message).__name__, template=getattr(message, "name", None)):
                    return await self._send(message, repeatability_id, first_sent)
            except SwitchboardError as exc:
                if not exc.retryable or attempt == self.attempts:
                    raise
                delay = getattr(exc, "retry_after", None) or random.uniform(
                    0, min(self.backoff_cap, self.backoff_base * 2 ** (attempt - 1))
                )
                log.warning("send %s failed (%s); try %d of %d in %.2fs", repeatability_id, exc, attempt + 1,
                            self.attempts, delay)
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def close(self) -> None:
        """Release clients. The default holds none."""

    @abstractmethod
    async def _send(self, message: OutboundMessage, repeatability_id: str, first_sent: datetime) -> str:
        """One attempt. Raise Unavailable (retryable) or SendFailed (permanent)."""


class UnconfiguredMessenger(Messenger):
    """Stands in when no ACS endpoint is set: every send fails permanently, saying which settings are missing."""

    def __init__(self, missing: str) -> None:
        self.missing = missing

    async def _send(self, message: OutboundMessage, repeatability_id: str, first_sent: datetime) -> str:
        raise SendFailed(f"WhatsApp replies cannot be sent: {self.missing} is not set", code="NotConfigured")
