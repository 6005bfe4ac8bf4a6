"""Repeatable requests as ACS keeps them (docs/reliability.md, "Repeatable sends"), for the emulator's sends.

A request carries a Repeatability-Request-ID (a UUID) and a Repeatability-First-Sent time (an HTTP date). ACS tracks
an id for five minutes from its first-sent time: within them a repeat with the same first-sent time gets the first
answer and nothing is done again, and one with another first-sent time is refused (400). A first-sent time older
than the five minutes is refused with 412, tracked or not: the service can no longer tell whether it did the work.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from typing import Any, Callable

TRACKED = timedelta(minutes=5)
#: A first-sent time this far ahead of our clock is a client's clock, not a lie; further ahead is refused.
SKEW = timedelta(minutes=5)


@dataclass(frozen=True)
class Refusal:
    status: int  # 400 or 412
    code: str
    message: str


@dataclass
class _Tracked:
    first_sent: datetime
    answer: Any


class Repeats:
    """The requests one API has seen by repeatability id, forgotten five minutes after their first-sent time."""

    def __init__(self, clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> None:
        self._clock = clock
        self._seen: dict[str, _Tracked] = {}

    def check(self, request_id: Any, first_sent: Any) -> Refusal | tuple[str, Any] | None:
        """Before doing a request: a Refusal, ("repeat", the first answer), or None for a request to do (and
        `remember` once done). Without a request id the request is simply not repeatable."""
        if request_id is None:
            return None
        try:
            uuid.UUID(str(request_id))
        except ValueError:
            return Refusal(400, "InvalidRepeatabilityHeaders", "the repeatability request id must be a UUID")
        sent = _when(first_sent)
        if sent is None:
            return Refusal(400, "InvalidRepeatabilityHeaders",
                           "the repeatability first-sent time must come with the request id, as an HTTP date "
                           "(e.g. 'Wed, 01 Jan 2025 00:00:00 GMT')")
        now = self._clock()
        self._forget_before(now - TRACKED)
        if sent < now - TRACKED:
            return Refusal(412, "PreconditionFailed",
                           f"the repeatability first-sent time {first_sent} is more than five minutes ago: a request "
                           "first sent that long ago is not tracked and is not safe to do again")
        if sent > now + SKEW:
            return Refusal(400, "InvalidRepeatabilityHeaders", "the repeatability first-sent time is in the future")
        tracked = self._seen.get(str(request_id))
        if tracked is None:
            return None
        if tracked.first_sent != sent:
            return Refusal(400, "InvalidRepeatabilityHeaders",
                           "a request with this repeatability id was first sent at another time: it does not match")
        return ("repeat", tracked.answer)

    def remember(self, request_id: Any, first_sent: Any, answer: Any) -> None:
        sent = _when(first_sent)
        if request_id is not None and sent is not None:
            self._seen[str(request_id)] = _Tracked(sent, answer)

    def _forget_before(self, moment: datetime) -> None:
        for request_id in [r for r, t in self._seen.items() if t.first_sent < moment]:
            del self._seen[request_id]


def _when(raw: Any) -> datetime | None:
    if not raw:
        return None
    try:
        sent = parsedate_to_datetime(str(raw))
    except (TypeError, ValueError):
        return None
    return sent if sent.tzinfo is not None else sent.replace(tzinfo=timezone.utc)
