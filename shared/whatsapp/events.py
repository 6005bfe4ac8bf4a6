"""The two ACS Advanced Messaging events we subscribe to, parsed from their Event Grid `data`
(docs/protocols.md, "Advanced Messaging events").

Parsing is strict about what we act on (an id, a phone number, a time) and lenient about the rest, because ACS adds
fields over time. An inbound message without a `messageId` (the docs' samples have none) takes its id from the Event
Grid event's id, which every redelivery of the event keeps, so a redelivery is still recognised and has one effect.
Anything we cannot act on raises MalformedEvent with the reason; the trigger logs it and drops the event, since Event
Grid redelivering it would not make it any better.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.messenger.events import MalformedEvent, event_data, phone, required_str, timestamp

__all__ = ["DELIVERY_STATUS", "EVENT_TYPES", "RECEIVED", "SILENT", "STATUSES", "WORDS", "DeliveryStatus",
           "InboundMessage", "MalformedEvent", "WhatsAppEvent", "parse_event"]

RECEIVED = "Microsoft.Communication.AdvancedMessageReceived"
DELIVERY_STATUS = "Microsoft.Communication.AdvancedMessageDeliveryStatusUpdated"
EVENT_TYPES = (RECEIVED, DELIVERY_STATUS)

#: Inbound kinds whose words go through the conversation: typed text and tapped buttons or list items.
WORDS = ("text", "button", "interactive")
#: Inbound kinds that need no answer: a reaction is not a question.
SILENT = ("reaction",)
#: Delivery statuses as the SDK enum has them (the docs capitalise them; ACS is compared case-insensitively).
STATUSES = ("sent", "delivered", "read", "failed", "warning", "unknown")


@dataclass(frozen=True)
class InboundMessage:
    """A customer's WhatsApp message (`AdvancedMessageReceived`)."""

    message_id: str
    phone: str  # E.164, the sender
    channel_id: str  # the channel registration id it was sent to
    kind: str  # text, button, interactive, image, audio, video, document, location, sticker, reaction, ...
    text: str  # the words: the text, the button or list item chosen; "" for media and reactions
    detail: str  # what else came with it, for the record: media type and caption, the reaction emoji
    received_at: datetime

    @property
    def dedup_key(self) -> str:
        return f"whatsapp:message:{self.message_id}"


@dataclass(frozen=True)
class DeliveryStatus:
    """How far one of our messages got (`AdvancedMessageDeliveryStatusUpdated`)."""

    event_id: str
    message_id: str  # the receipt id our send returned
    phone: str  # E.164, the recipient
    status: str  # one of STATUSES
    error_code: str | None  # the channel's code when failed, e.g. "131047" (outside the 24-hour window)
    error: str | None  # "131047: Re-engagement message"
    at: datetime

    @property
    def dedup_key(self) -> str:
        # Several status events share a message id (sent, delivered, read), so the event id is the unit here.
        return f"whatsapp:status:{self.event_id}"


WhatsAppEvent = InboundMessage | DeliveryStatus


def parse_event(event_type: str, event_id: str, data: Any, event_time: datetime | None = None) -> WhatsAppEvent:
    """The event as one of ours, or MalformedEvent saying why it cannot be acted on."""
    data = event_data(event_type, data, EVENT_TYPES)
    if event_type == RECEIVED:
        return _inbound(event_id, data, event_time)
    return _status(event_id, data, event_time)


def _inbound(event_id: str, data: dict[str, Any], event_time: datetime | None) -> InboundMessage:
    message_id = _message_id(event_id, data)
    sender = phone(data.get("from"), "from")
    kind = str(data.get("messageType") or "").lower()
    content = data.get("content")
    if not kind:  # the first event version had no messageType: text is what has content
        kind = "text" if content else "media" if isinstance(data.get("media"), dict) else ""
    if not kind:
        raise MalformedEvent("messageType is missing and there is neither content nor media")

    text, detail = "", ""
    if kind == "text":
        if not isinstance(content, str) or not content.strip():
            raise MalformedEvent("a text message without content")
        text = content.strip()
    elif kind == "button":
        button = data.get("button") if isinstance(data.get("button"), dict) else {}
        text = str(button.get("text") or button.get("payload") or "").strip()
    elif kind == "interactive":
        text = _interactive_title(data.get("interactive"))
    elif kind == "reaction":
        reaction = data.get("reaction") if isinstance(data.get("reaction"), dict) else {}
        detail = str(reaction.get("emoji") or "")
    else:
        media = data.get("media") if isinstance(data.get("media"), dict) else {}
        detail = " ".join(str(media[k]) for k in ("mimeType", "fileName", "caption") if media.get(k))
    if kind in WORDS and not text:
        raise MalformedEvent(f"a {kind} reply without the text of the choice")

    return InboundMessage(
        message_id=message_id,
        phone=sender,
        channel_id=str(data.get("to") or ""),
        kind=kind,
        text=text,
        detail=detail,
        received_at=_received_at(data, event_time),
    )


def _status(event_id: str, data: dict[str, Any], event_time: datetime | None) -> DeliveryStatus:
    if not event_id:
        raise MalformedEvent("a delivery status event without an event id")
    status = str(data.get("status") or "").lower()
    if status not in STATUSES:
        raise MalformedEvent(f"status {data.get('status')!r} is not one of {', '.join(STATUSES)}")
    error = data.get("error") if isinstance(data.get("error"), dict) else {}
    code = str(error["channelCode"]) if error.get("channelCode") not in (None, "") else None
    described = ": ".join(str(part) for part in (code, error.get("channelMessage")) if part) or None
    return DeliveryStatus(
        event_id=event_id,
        message_id=required_str(data, "messageId"),
        phone=phone(data.get("to"), "to"),
        status=status,
        error_code=code,
        error=described,
        at=_received_at(data, event_time),
    )


def _message_id(event_id: str, data: dict[str, Any]) -> str:
    """ACS's id for an inbound message, or, when the event carries none, one made from the event's id: stable across
    Event Grid's redeliveries, and never the same as an id ACS gives (those are GUIDs)."""
    raw = data.get("messageId")
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        if not (event_id or "").strip():
            raise MalformedEvent("messageId is missing, and so is the event id that would stand in for it")
        return f"event:{event_id.strip()}"
    if not isinstance(raw, str):
        raise MalformedEvent(f"messageId {raw!r} is not a string")
    return raw.strip()


def _interactive_title(raw: Any) -> str:
    if not isinstance(raw, dict):
        return ""
    for key in ("buttonReply", "listReply"):
        if isinstance(raw.get(key), dict) and raw[key].get("title"):
            return str(raw[key]["title"]).strip()
    return ""


def _received_at(data: dict[str, Any], event_time: datetime | None) -> datetime:
    # The docs sample spells it receivedTimestamp, the typespec deserializers receivedTimeStamp: take either.
    return timestamp(data.get("receivedTimestamp") or data.get("receivedTimeStamp"), event_time)
