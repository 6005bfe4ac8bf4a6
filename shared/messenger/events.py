"""What the SMS and WhatsApp event parsers (shared/sms/events.py, shared/whatsapp/events.py) read the same way: the
checks every event passes, the fields we act on (an id, a phone number, a time), and the error that says why an event
cannot be acted on.

One MalformedEvent for both channels, so the one trigger body (functions/messaging_events.py) knows what to log and
drop: a redelivery of such an event would be no better. Each parser re-exports it under its own module's name.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from shared.errors import InvalidInput
from shared.models import Identity, IdentityKind


class MalformedEvent(InvalidInput):
    """The event lacks something we need to act on it; the message says what."""


def event_data(event_type: str, data: Any, event_types: tuple[str, ...]) -> dict[str, Any]:
    """The event's `data` object, if the event is one of `event_types`; MalformedEvent otherwise."""
    if event_type not in event_types:
        raise MalformedEvent(f"unsupported event type {event_type!r}; expected one of {', '.join(event_types)}")
    if not isinstance(data, dict):
        raise MalformedEvent("data is not a JSON object")
    return data


def required_str(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        raise MalformedEvent(f"{key} is missing or not a non-empty string")
    return value.strip()


def phone(raw: Any, key: str) -> str:
    """The number in E.164: ACS sends WhatsApp numbers as bare digits ("15555550100"), SMS ones with or without "+"."""
    if not isinstance(raw, str) or not raw.strip():
        raise MalformedEvent(f"{key} is missing")
    digits = raw.strip().removeprefix("+")
    try:
        return Identity(IdentityKind.PHONE, f"+{digits}").value
    except ValueError:
        raise MalformedEvent(f"{key} {raw!r} is not a phone number") from None


def timestamp(raw: Any, event_time: datetime | None) -> datetime:
    """The event's `receivedTimestamp` (`raw`, as the caller found it), or the Event Grid event's time without one."""
    if raw is None:
        if event_time is None:
            raise MalformedEvent("receivedTimestamp is missing")
        return _aware(event_time)
    try:
        return _aware(datetime.fromisoformat(str(raw).replace("Z", "+00:00")))
    except ValueError:
        raise MalformedEvent(f"receivedTimestamp {raw!r} is not an ISO 8601 time") from None


def _aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)
