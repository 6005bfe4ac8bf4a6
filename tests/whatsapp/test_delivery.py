"""The delivery log and the 24-hour window, on a session: what goes out now, what waits, how statuses move."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from shared.models import Channel, ChannelSession, Delivery
from shared.whatsapp import delivery
from shared.whatsapp.events import DeliveryStatus, InboundMessage

NOW = datetime(2025, 6, 1, 12, tzinfo=timezone.utc)


def inbound(message_id: str, age: timedelta = timedelta(0), text: str = "hello") -> InboundMessage:
    return InboundMessage(message_id, "+15555550100", "channel", "text", text, "", NOW - age)


def status(message_id: str, value: str, code: str | None = None) -> DeliveryStatus:
    return DeliveryStatus("evt", message_id, "+15555550100", value, code, f"{code}: x" if code else None, NOW)


def outgoing(session: ChannelSession) -> list[tuple[str, str, Delivery]]:
    return [(m.kind, m.text, m.status) for m in session.messages if m.direction == "out"]


def test_replies_inside_the_window_are_owed_under_deterministic_keys() -> None:
    session = ChannelSession("s", Channel.WHATSAPP)
    delivery.record_exchange(session, inbound("m1"), ["one", "two"], "follow_up", NOW)
    assert outgoing(session) == [("text", "one", Delivery.PENDING), ("text", "two", Delivery.PENDING)]
    assert [m.key for m in delivery.owed(session)] == [delivery.send_key("m1", "0"), delivery.send_key("m1", "1")]
    assert session.last_inbound_at == delivery.iso(NOW)


def test_recording_the_same_message_twice_changes_nothing() -> None:
    session = ChannelSession("s", Channel.WHATSAPP)
    delivery.record_exchange(session, inbound("m1"), ["one"], "follow_up", NOW)
    delivery.record_exchange(session, inbound("m1"), ["one"], "follow_up", NOW)
    assert len(session.messages) == 2


def test_outside_the_window_replies_are_held_and_one_template_goes_out() -> None:
    session = ChannelSession("s", Channel.WHATSAPP)
    delivery.record_exchange(session, inbound("m1", age=timedelta(hours=25)), ["one", "two"], "follow_up", NOW)
    assert outgoing(session) == [
        ("text", "one", Delivery.HELD), ("text", "two", Delivery.HELD), ("template", "follow_up", Delivery.PENDING)
    ]

    # The customer answers the template: the window reopens, the held replies go first, then the new answer.
    delivery.record_exchange(session, inbound("m2"), ["three"], "follow_up", NOW)
    assert [m.text for m in delivery.owed(session)] == ["one", "two", "follow_up", "three"]


def test_a_late_old_message_does_not_move_the_window_back() -> None:
    session = ChannelSession("s", Channel.WHATSAPP)
    delivery.record_exchange(session, inbound("m2"), ["hi"], "t", NOW)
    delivery.record_exchange(session, inbound("m1", age=timedelta(hours=30)), ["late"], "t", NOW)
    assert session.last_inbound_at == delivery.iso(NOW)
    assert delivery.window_open(session, NOW + timedelta(hours=23))
    assert not delivery.window_open(session, NOW + timedelta(hours=24))


def test_statuses_move_forward_only_and_failure_is_final() -> None:
    session = ChannelSession("s", Channel.WHATSAPP)
    delivery.record_exchange(session, inbound("m1"), ["one"], "t", NOW)
    key = delivery.owed(session)[0].key
    delivery.record_send(session, key, "r1", None, NOW)
    assert session.message(key=key).status is Delivery.ACCEPTED

    for value, expected in [("read", Delivery.READ), ("delivered", Delivery.READ), ("failed", Delivery.FAILED),
                            ("sent", Delivery.FAILED)]:
        assert delivery.record_status(session, status("r1", value), "t", NOW) is True
        assert session.message(key=key).status is expected
    assert delivery.record_status(session, status("unknown-id", "read"), "t", NOW) is False


def test_a_text_refused_for_the_window_is_held_again_and_the_template_replaces_it() -> None:
    session = ChannelSession("s", Channel.WHATSAPP)
    delivery.record_exchange(session, inbound("m1"), ["one", "two"], "follow_up", NOW)
    first, second = delivery.owed(session)
    delivery.record_send(session, first.key, "r1", None, NOW)
    delivery.record_send(session, second.key, "r2", None, NOW)

    delivery.record_status(session, status("r1", "failed", delivery.OUTSIDE_WINDOW), "follow_up", NOW)
    delivery.record_status(session, status("r2", "failed", delivery.OUTSIDE_WINDOW), "follow_up", NOW)
    assert outgoing(session) == [
        ("text", "one", Delivery.FAILED), ("text", "two", Delivery.FAILED),
        ("text", "one", Delivery.HELD), ("template", "follow_up", Delivery.PENDING), ("text", "two", Delivery.HELD),
    ]
    assert session.message(key=first.key).error == "131047: x"


def test_a_permanent_send_failure_is_recorded_with_its_reason() -> None:
    session = ChannelSession("s", Channel.WHATSAPP)
    delivery.record_exchange(session, inbound("m1"), ["one"], "t", NOW)
    key = delivery.owed(session)[0].key
    delivery.record_send(session, key, None, "ACS rejected the message (400): bad number", NOW)
    message = session.message(key=key)
    assert (message.status, message.error) == (Delivery.FAILED, "ACS rejected the message (400): bad number")
    assert delivery.owed(session) == []


def test_held_replies_released_beside_the_same_answer_go_out_once() -> None:
    # The customer asked outside the window, then asked again: the held answer and the new one say the same thing.
    session = ChannelSession("s", Channel.WHATSAPP)
    delivery.record_exchange(session, inbound("m1", age=timedelta(hours=25)), ["hello", "balance"], "t", NOW)
    delivery.record_exchange(session, inbound("m2"), ["balance", "balance"], "t", NOW)
    assert [m.text for m in delivery.owed(session)] == ["hello", "balance", "t"]
    held_balance = session.message(key=delivery.send_key("m1", "1"))
    for index in ("0", "1"):
        copy = session.message(key=delivery.send_key("m2", index))
        assert copy.status is Delivery.SUPERSEDED and copy.error == f"the same text went out as {held_balance.key}"


def test_the_same_answer_to_a_later_question_still_goes_out() -> None:
    session = ChannelSession("s", Channel.WHATSAPP)
    earlier = NOW - timedelta(minutes=2)
    delivery.record_exchange(session, inbound("m1", age=timedelta(minutes=2)), ["balance"], "t", earlier)
    delivery.record_send(session, delivery.owed(session)[0].key, "r1", None, earlier)
    delivery.record_exchange(session, inbound("m2"), ["balance"], "t", NOW)
    assert [m.text for m in delivery.owed(session)] == ["balance"]  # asked again after the first answer: answered


def test_a_text_refused_after_the_customer_wrote_again_is_resent_at_once_unless_already_answered() -> None:
    session = ChannelSession("s", Channel.WHATSAPP)
    delivery.record_exchange(session, inbound("m1", age=timedelta(minutes=1)), ["hello", "balance"], "t",
                             NOW - timedelta(minutes=1))
    first, second = delivery.owed(session)
    delivery.record_send(session, first.key, "r1", None, NOW - timedelta(minutes=1))
    delivery.record_send(session, second.key, "r2", None, NOW - timedelta(minutes=1))
    delivery.record_exchange(session, inbound("m2"), ["balance"], "t", NOW)  # the window reopened meanwhile

    delivery.record_status(session, status("r1", "failed", delivery.OUTSIDE_WINDOW), "t", NOW)
    delivery.record_status(session, status("r2", "failed", delivery.OUTSIDE_WINDOW), "t", NOW)
    assert [(m.kind, m.text) for m in delivery.owed(session)] == [("text", "balance"), ("text", "hello")]
    resent_balance = session.message(key=delivery.send_key(second.key, "again"))
    assert resent_balance.status is Delivery.SUPERSEDED  # m2's answer says it already
    assert not [m for m in session.messages if m.kind == "template"]  # nothing to invite the customer back for
