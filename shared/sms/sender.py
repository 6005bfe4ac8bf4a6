"""The SmsSender port: send one text to one number, get the service's message id back.

Like the Messenger (shared/messenger/base.py), retries live here, once: adapters implement `_send` and raise
`Unavailable` when trying again can help (throttling, a 5xx, no connection) or `SendFailed` when it cannot (a number
that cannot take texts, an opted-out recipient, no configuration). `send` retries the first kind under the *same*
repeatability id and first-sent time, which ACS SMS uses to recognise a repeat of a send that did reach it instead of
texting twice. The first-sent time is the caller's only while ACS still tracks it (shared/messenger/repeatability.py):
a promised text kept hours later goes with now, not with a time ACS refuses as too old.
"""

from __future__ import annotations

import asyncio
import logging
import random
from abc import ABC, abstractmethod
from datetime import datetime

from shared import telemetry
from shared.errors import SwitchboardError
from shared.messenger import repeatability
from shared.messenger.base import BACKOFF_BASE, BACKOFF_CAP, SEND_ATTEMPTS, SendFailed

log = logging.getLogger(__name__)

#: Longest text we send. An SMS segment holds 160 GSM-7 characters (70 in UCS-2); longer texts go as several
#: segments that the phone joins again, each one billed. Past this many characters something is wrong.
MAX_TEXT = 1600


class SmsSender(ABC):
    """Sends texts from our number. `configured` says whether a send can succeed at all."""

    attempts: int = SEND_ATTEMPTS
    backoff_base: float = BACKOFF_BASE
    backoff_cap: float = BACKOFF_CAP
    configured: bool = True

    async def send(self, to: str, text: str, *, repeatability_id: str, first_sent: datetime,
                   tag: str | None = None) -> str:
        """Send once, whatever happens in between: `repeatability_id` (a UUID) names this text across retries here
        and redeliveries of whatever caused it; `first_sent` is when it was decided, sent as the first-sent time
        while ACS still tracks it and replaced by now once it is older (repeatability.py). `tag` comes back on the
        delivery report. Raises SendFailed (permanent) or, once the retries are spent, Unavailable."""
        if not text.strip():
            raise SendFailed("an empty text cannot be sent", code="EmptyMessage")
        if len(text) > MAX_TEXT:
            raise SendFailed(f"a text of {len(text)} characters is over {MAX_TEXT}", code="TooLong")
        for attempt in range(1, self.attempts + 1):
            first_sent = repeatability.first_sent(first_sent)  # a retry keeps its first attempt's, while tracked
            try:
                with telemetry.span("sms.send", kind=telemetry.SpanKind.CLIENT, attempt=attempt, tag=tag):
                    return await self._send(to, text, repeatability_id, first_sent, tag)
            except SwitchboardError as exc:
                if not exc.retryable or attempt == self.attempts:
                    raise
                delay = getattr(exc, "retry_after", None) or random.uniform(
                    0, min(self.backoff_cap, self.backoff_base * 2 ** (attempt - 1)))
                log.warning("SMS %s failed (%s); try %d of %d in %.2fs", repeatability_id, exc, attempt + 1,
                            self.attempts, delay)
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def close(self) -> None:
        """Release clients. The default holds none."""

    @abstractmethod
    async def _send(self, to: str, text: str, repeatability_id: str, first_sent: datetime, tag: str | None) -> str:
        """One attempt. Raise Unavailable (retryable) or SendFailed (permanent)."""


class UnconfiguredSmsSender(SmsSender):
    """Stands in when no SMS number is set: every send fails permanently, saying which settings are missing."""

    configured = False

    def __init__(self, missing: str) -> None:
        self.missing = missing

    async def _send(self, to: str, text: str, repeatability_id: str, first_sent: datetime, tag: str | None) -> str:
        raise SendFailed(f"texts cannot be sent: {self.missing} is not set", code="NotConfigured")
