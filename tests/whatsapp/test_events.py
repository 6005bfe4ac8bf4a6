"""Parsing the ACS Advanced Messaging events: the real schema's variants in, one of our two events or a reason out."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from shared.whatsapp.events import (
    DELIVERY_STATUS,
    RECEIVED,
    DeliveryStatus,
    InboundMessage,
    MalformedEvent,
    parse_event,
)

CHANNEL = "11111111-2222-3333-4444-555555555555"


def received(**data) -> dict:
    return {"channelType": "whatsapp", "from": "15555550100", "to": CHANNEL, "messageId": "m1",
            "messageType": "text", "content": "my lights are out", "receivedTimestamp": "2025-01-01T10:00:00+00:00",
            **data}


def test_a_text_message_from_the_docs_sample() -> None:
    event = parse_event(RECEIVED, "e1", received())
    assert isinstance(event, InboundMessage)
    assert (event.phone, event.kind, event.text, event.channel_id) == ("+15555550100", "text", "my lights are out",
                                                                         CHANNEL)
    assert event.received_at == datetime(2025, 1, 1, 10, tzinfo=timezone.utc)
    assert event.dedup_key == "whatsapp:message:m1"


def test_the_typespec_spelling_of_the_timestamp_and_a_plus_sign_are_accepted() -> None:
    data = received(**{"from": "+15555550100", "receivedTimeStamp": "2025-01-01T10:00:00.1234567Z"})
    del data["receivedTimestamp"]
    event = parse_event(RECEIVED, "e1", data)
    assert event.phone == "+15555550100" and event.received_at.hour == 10


def test_without_a_timestamp_the_event_time_stands_in() -> None:
    data = received()
    del data["receivedTimestamp"]
    at = datetime(2025, 2, 2, tzinfo=timezone.utc)
    assert parse_event(RECEIVED, "e1", data, at).received_at == at


@pytest.mark.parametrize(
    ("data", "kind", "text"),
    [
        ({"messageType": "button", "button": {"text": "Yes, please", "payload": "yes"}}, "button", "Yes, please"),
        ({"messageType": "interactive",
          "interactive": {"type": "listReply", "listReply": {"id": "2", "title": "Billing"}}}, "interactive", "Billing"),
        ({"messageType": "image", "media": {"mimeType": "image/jpeg", "id": "x", "caption": "my meter"}}, "image", ""),
        ({"messageType": "reaction", "reaction": {"messageId": "m0", "emoji": "👍"}}, "reaction", ""),
        ({"messageType": None, "media": {"mimeType": "audio/ogg", "id": "x"}}, "media", ""),
    ],
)
def test_replies_media_and_reactions(data: dict, kind: str, text: str) -> None:
    body = received(**data)
    body.pop("content")
    event = parse_event(RECEIVED, "e1", body)
    assert (event.kind, event.text) == (kind, text)


def test_media_details_are_kept_for_the_record() -> None:
    body = received(messageType="image", media={"mimeType": "image/jpeg", "id": "x", "caption": "my meter"})
    assert parse_event(RECEIVED, "e1", body).detail == "image/jpeg my meter"


def test_a_message_without_a_message_id_is_known_by_its_event_id() -> None:
    # The docs' samples of AdvancedMessageReceived have no messageId; Event Grid redelivers an event under its id.
    sample = {k: v for k, v in received().items() if k != "messageId"}
    first, again = parse_event(RECEIVED, "evt-7", sample), parse_event(RECEIVED, "evt-7", {**sample, "messageId": ""})
    assert isinstance(first, InboundMessage) and first.message_id == again.message_id == "event:evt-7"
    assert first.dedup_key != parse_event(RECEIVED, "evt-8", sample).dedup_key
    with pytest.raises(MalformedEvent, match="messageId is missing, and so is the event id"):
        parse_event(RECEIVED, "", sample)


@pytest.mark.parametrize(
    ("event_type", "data", "reason"),
    [
        ("Microsoft.Communication.SMSReceived", received(), "unsupported event type"),
        (RECEIVED, "not an object", "not a JSON object"),
        (RECEIVED, received(messageId=5), "messageId 5 is not a string"),
        (RECEIVED, received(**{"from": None}), "from is missing"),
        (RECEIVED, received(**{"from": "not-a-number"}), "is not a phone number"),
        (RECEIVED, received(content="   "), "text message without content"),
        (RECEIVED, received(receivedTimestamp="yesterday"), "not an ISO 8601 time"),
        (RECEIVED, received(messageType="button", button={}), "button reply without the text"),
        (DELIVERY_STATUS, {"messageId": "x", "status": "Exploded", "to": "15555550100"}, "status 'Exploded'"),
        (DELIVERY_STATUS, {"status": "Sent", "to": "15555550100"}, "messageId is missing"),
    ],
)
def test_malformed_events_say_why(event_type: str, data, reason: str) -> None:
    with pytest.raises(MalformedEvent, match=reason):
        parse_event(event_type, "e1", data, datetime.now(timezone.utc))


def test_a_failed_delivery_status_carries_the_channel_error() -> None:
    data = {"messageId": "r1", "status": "Failed", "channelType": "whatsapp", "from": CHANNEL, "to": "15555550100",
            "receivedTimestamp": "2025-01-01T10:00:00Z",
            "error": {"channelCode": 131047, "channelMessage": "Re-engagement message"}}
    event = parse_event(DELIVERY_STATUS, "evt-9", data)
    assert isinstance(event, DeliveryStatus)
    assert (event.message_id, event.status, event.phone) == ("r1", "failed", "+15555550100")
    assert (event.error_code, event.error) == ("131047", "131047: Re-engagement message")
    assert event.dedup_key == "whatsapp:status:evt-9"
