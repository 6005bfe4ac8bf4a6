"""The two ACS SMS events we subscribe to, parsed from their Event Grid `data` (docs/sms.md, "The events").

`Microsoft.Communication.SMSReceived`: a customer's text to our number (`messageId`, `from`, `to`, `message`,
`receivedTimestamp`, `segmentCount`). `Microsoft.Communication.SMSDeliveryReportReceived`: how far one of our texts
got (`messageId`, `from`, `to`, `deliveryStatus`, `deliveryStatusDetails`, `deliveryAttempts`, `tag`,
`receivedTimestamp`). Azure's samples spell the keys in PascalCase (`MessageId`) and the SDK models in camelCase, so
keys are read whatever their case; numbers may come with or without their "+".

Strict about what we act on (an id, the numbers, the text), lenient about the rest. Anything we cannot act on raises
MalformedEvent with the reason; the trigger logs it and drops the event, since a redelivery would not mend it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from shared.errors import InvalidInput
from shared.models import Identity, IdentityKind

RECEIVED = "Microsoft.Communication.SMSReceived"
DELIVERY_REPORT = "Microsoft.Communication.SMSDeliveryReportReceived"
EVENT_TYPES = (RECEIVED, DELIVERY_REPORT)
#: Longest inbound text we take into a conversation (ten segments); anything longer is not a customer typing.
MAX_INBOUND = 1600


class MalformedEvent(InvalidInput):
    """The event lacks something we need to act on it; the message says what."""


@dataclass(frozen=True)
class TextReceived:
    """A customer's text to our number."""

    message_id: str
    phone: str  # E.164, the sender
    to: str  # E.164, our number it was sent to
    text: str
    received_at: datetime

    @property
    def dedup_key(self) -> str:
        return f"sms:message:{self.message_id}"


@dataclass(frozen=True)
class DeliveryReport:
    """How far one of our texts got."""

    event_id: str
    message_id: str  # the id our send returned
    phone: str  # E.164, the recipient
    status: str  # as ACS says it, lower case: delivered, failed, ...
    details: str
    tag: str | None
    at: datetime

    @property
    def dedup_key(self) -> str:
        return f"sms:report:{self.event_id}"

    @property
    def delivered(self) -> bool:
        return self.status == "delivered"


SmsEvent = TextReceived | DeliveryReport


def parse_event(event_type: str, event_id: str, data: Any, event_time: datetime | None = None) -> SmsEvent:
    """The event as one of ours, or MalformedEvent saying why it cannot be acted on."""
    if event_type not in EVENT_TYPES:
        raise MalformedEvent(f"unsupported event type {event_type!r}; expected one of {', '.join(EVENT_TYPES)}")
    if not isinstance(data, dict):
        raise MalformedEvent("data is not a JSON object")
    fields = {str(key).lower(): value for key, value in data.items()}
    if event_type == RECEIVED:
        return _received(fields, event_time)
    return _report(event_id, fields, event_time)


def _received(data: dict[str, Any], event_time: datetime | None) -> TextReceived:
    text = data.get("message")
    if not isinstance(text, str) or not text.strip():
        raise MalformedEvent("message is missing or empty")
    if len(text) > MAX_INBOUND:
        raise MalformedEvent(f"message is {len(text)} characters; we take at most {MAX_INBOUND}")
    return TextReceived(
        message_id=_required(data, "messageid"),
        phone=_phone(data.get("from"), "from"),
        to=_phone(data.get("to"), "to"),
        text=text.strip(),
        received_at=_timestamp(data, event_time),
    )


def _report(event_id: str, data: dict[str, Any], event_time: datetime | None) -> DeliveryReport:
    if not event_id:
        raise MalformedEvent("a delivery report without an event id")
    status = str(data.get("deliverystatus") or "").strip().lower()
    if not status:
        raise MalformedEvent("deliveryStatus is missing")
    tag = data.get("tag")
    return DeliveryReport(
        event_id=event_id,
        message_id=_required(data, "messageid"),
        phone=_phone(data.get("to"), "to"),
        status=status,
        details=str(data.get("deliverystatusdetails") or ""),
        tag=str(tag) if tag else None,
        at=_timestamp(data, event_time),
    )


def _required(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        raise MalformedEvent(f"{key} is missing or not a non-empty string")
    return value.strip()


def _phone(raw: Any, key: str) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise MalformedEvent(f"{key} is missing")
    digits = raw.strip().removeprefix("+")
    try:
        return Identity(IdentityKind.PHONE, f"+{digits}").value
    except ValueError:
        raise MalformedEvent(f"{key} {raw!r} is not a phone number") from None


def _timestamp(data: dict[str, Any], event_time: datetime | None) -> datetime:
    raw = data.get("receivedtimestamp")
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
