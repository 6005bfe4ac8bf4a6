"""The SMS events parser, on the event shapes Azure documents (PascalCase samples, camelCase SDK models)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from shared.sms.events import DELIVERY_REPORT, RECEIVED, DeliveryReport, MalformedEvent, TextReceived, parse_event
from shared.sms.keywords import Keyword, keyword_in

SAMPLE = {"MessageId": "Incoming_20200918002745d29ebbea", "From": "15555550100", "To": "+18005550100",
          "Message": " Is my power out? ", "ReceivedTimestamp": "2020-09-18T00:27:45.32Z"}


def test_a_received_text_in_the_documented_shape() -> None:
    parsed = parse_event(RECEIVED, "evt-1", SAMPLE)
    assert parsed == TextReceived("Incoming_20200918002745d29ebbea", "+15555550100", "+18005550100",
                                  "Is my power out?", datetime(2020, 9, 18, 0, 27, 45, 320000, tzinfo=timezone.utc))
    assert parsed.dedup_key == "sms:message:Incoming_20200918002745d29ebbea"


def test_keys_in_the_sdk_models_spelling_read_the_same() -> None:
    camel = {key[0].lower() + key[1:]: value for key, value in SAMPLE.items()}
    assert parse_event(RECEIVED, "evt-1", camel) == parse_event(RECEIVED, "evt-1", SAMPLE)


def test_a_delivery_report_with_seven_digit_fractions_and_a_tag() -> None:
    data = {"MessageId": "Outgoing_1", "From": "18005550100", "To": "+15555550100", "DeliveryStatus": "Delivered",
            "DeliveryStatusDetails": "No error.", "ReceivedTimestamp": "2020-09-18T00:22:20.2855749Z",
            "DeliveryAttempts": [{"Timestamp": "2020-09-18T00:22:14.9315918Z", "SegmentsSucceeded": 1,
                                  "SegmentsFailed": 0}], "Tag": "reply"}
    report = parse_event(DELIVERY_REPORT, "evt-2", data)
    assert isinstance(report, DeliveryReport) and report.delivered and report.tag == "reply"
    assert report.phone == "+15555550100" and report.dedup_key == "sms:report:evt-2"


def test_the_event_time_stands_in_for_a_missing_timestamp() -> None:
    when = datetime(2026, 1, 1, tzinfo=timezone.utc)
    data = {k: v for k, v in SAMPLE.items() if k != "ReceivedTimestamp"}
    assert parse_event(RECEIVED, "evt-1", data, when).received_at == when


@pytest.mark.parametrize(("event_type", "data", "reason"), [
    ("Microsoft.Communication.SomethingElse", SAMPLE, "unsupported event type"),
    (RECEIVED, None, "not a JSON object"),
    (RECEIVED, {**SAMPLE, "Message": "   "}, "message is missing"),
    (RECEIVED, {**SAMPLE, "Message": "x" * 1601}, "at most 1600"),
    (RECEIVED, {**SAMPLE, "From": "not a number"}, "not a phone number"),
    (RECEIVED, {k: v for k, v in SAMPLE.items() if k != "MessageId"}, "messageid is missing"),
    (RECEIVED, {**SAMPLE, "ReceivedTimestamp": "yesterday"}, "not an ISO 8601 time"),
    (DELIVERY_REPORT, {"MessageId": "m", "To": "+15555550100"}, "deliveryStatus is missing"),
])
def test_what_cannot_be_acted_on_says_why(event_type: str, data: object, reason: str) -> None:
    with pytest.raises(MalformedEvent, match=reason):
        parse_event(event_type, "evt-1", data)


@pytest.mark.parametrize(("text", "keyword"), [
    ("STOP", Keyword.STOP), (" stop. ", Keyword.STOP), ("Unsubscribe", Keyword.STOP), ("opt out", Keyword.STOP),
    ("START", Keyword.START), ("unstop", Keyword.START), ("Help!", Keyword.HELP), ("info", Keyword.HELP),
    ("stop texting me about my bill", None), ("can you help me with my bill", None), ("what's my balance", None),
])
def test_consent_words_are_whole_messages(text: str, keyword: Keyword | None) -> None:
    assert keyword_in(text) is keyword
