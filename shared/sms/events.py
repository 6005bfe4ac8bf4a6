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
from datetime import datetime
from typing import Any

from shared.messenger.events import MalformedEvent, event_data, phone, required_str, timestamp

__all__ = ["DELIVERY_REPORT", "EVENT_TYPES", "RECEIVED", "DeliveryReport", "MalformedEvent", "SmsEvent", "TextReceived",
           "parse_event"]

RECEIVED = "Microsoft.Communication.SMSReceived"
DELIVERY_REPORT = "Microsoft.Communication.SMSDeliveryReportReceived"
EVENT_TYPES = (RECEIVED, DELIVERY_REPORT)
#: Longest inbound text we take into a conversation (ten segments); anything longer is not a customer typing.
MAX_INBOUND = 1600


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
    fields = {str(key).lower(): value for key, value in event_data(event_type, data, EVENT_TYPES).items()}
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
        message_id=required_str(data, "messageid"),
        phone=phone(data.get("from"), "from"),
        to=phone(data.get("to"), "to"),
        text=text.strip(),
        received_at=timestamp(data.get("receivedtimestamp"), event_time),
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
        message_id=required_str(data, "messageid"),
        phone=phone(data.get("to"), "to"),
        status=status,
        details=str(data.get("deliverystatusdetails") or ""),
        tag=str(tag) if tag else None,
        at=timestamp(data.get("receivedtimestamp"), event_time),
    )
