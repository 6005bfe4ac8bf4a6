"""SMS end to end: a customer texts through the ACS emulator, Event Grid-style delivery reaches the local Functions
host, the conversation core answers, the real `azure-communication-sms` SDK sends the reply and the emulator checks
its signature, keeps it in the outbox and posts a delivery report back. Assertions read the outbox and the record.
"""

from __future__ import annotations

import concurrent.futures

from shared.models import Delivery, Verification
from tests.sms.conftest import JORDAN, SmsStack, code_in, eventually, new_number


def test_a_text_is_answered_by_the_core_and_the_sender_starts_identified(sms: SmsStack) -> None:
    replies = sms.text(JORDAN, "is there an outage at my address?")
    assert len(replies) == 1 and "123 Oak St" in replies[0] and "4:00 PM" in replies[0]
    assert "account number" not in replies[0]  # identified by the number he texts from: not asked who he is
    session = sms.session(JORDAN)
    assert session.verification is Verification.IDENTIFIED and session.verified_phone == JORDAN
    assert [t.role for t in session.turns][:2] == ["customer", "agent"]  # the customer spoke first
    sent = {t["messageId"] for t in sms.outbox(JORDAN)}
    assert {m.message_id for m in session.messages if m.direction == "out"} <= sent


def test_account_data_by_text_needs_the_code_texted_to_the_number_on_record(sms: SmsStack) -> None:
    phone = "+15555550122"  # Priya: her number texts, her number gets the code
    challenge = sms.text(phone, "what's my balance?")
    code = code_in(challenge[0])
    assert code is not None and "code" in challenge[1] and "text message" in challenge[1]
    assert "$" not in " ".join(challenge)
    answered = sms.text(phone, f"it's {code}")
    assert "nothing due" in answered[0] or "paid up" in answered[0], answered
    assert code not in sms.logs()  # codes never reach the logs
    assert all(code not in t.text for t in sms.session(phone).turns)


def test_the_reply_and_its_delivery_report_reach_the_record(sms: SmsStack) -> None:
    phone = new_number()
    sms.text(phone, "hello")
    message_id = sms.outbox(phone)[0]["messageId"]

    def delivered():
        out = sms.session(phone).message(message_id=message_id)
        return out if out is not None and out.status is Delivery.DELIVERED else None

    eventually(delivered)


def test_a_reply_the_carrier_cannot_deliver_is_failed_on_the_record(sms: SmsStack) -> None:
    phone = new_number()
    sms.client.post(f"{sms.acs_url}/_emulator/sms/unreachable", json={"phone": phone}).raise_for_status()
    sms.text(phone, "hello")
    message_id = sms.outbox(phone)[0]["messageId"]
    failed = eventually(lambda: (m := sms.session(phone).message(message_id=message_id)) is not None
                        and m.status is Delivery.FAILED and m)
    assert "could not deliver" in (failed.error or "")


def test_the_same_text_delivered_many_times_is_answered_once(sms: SmsStack) -> None:
    phone = new_number()
    event = sms.send(phone, "my lights are out", deliver=False)["event"]
    assert sms.post_events([event]).status_code == 202
    assert sms.post_events([event]).status_code == 202
    with concurrent.futures.ThreadPoolExecutor(4) as pool:  # and again, all at once
        assert {r.status_code for r in pool.map(lambda _: sms.post_events([event]), range(4))} == {202}
    assert len(sms.outbox(phone)) == 1
    assert [t.role for t in sms.session(phone).turns] == ["customer", "agent"]


def test_malformed_events_are_logged_and_dropped(sms: SmsStack) -> None:
    phone = new_number()
    good = sms.send(phone, "hello", deliver=False)["event"]
    broken = [
        {**good, "id": "evt-no-text", "data": {**good["data"], "Message": ""}},
        {**good, "id": "evt-bad-from", "data": {**good["data"], "From": "not-a-number"}},
        {**good, "id": "evt-no-data", "data": "just a string"},
        {**good, "id": "evt-wrong-type", "eventType": "Microsoft.Communication.SomethingElse"},
    ]
    for event in broken:
        assert sms.post_events([event]).status_code == 202  # dropped, not bounced back into Event Grid's retries
    assert sms.outbox(phone) == [] and sms.customer(phone) is None
    logs = sms.logs()
    assert "dropped SMS event evt-no-text" in logs and "dropped SMS event evt-wrong-type" in logs


def test_a_text_to_another_number_of_the_resource_is_not_ours(sms: SmsStack) -> None:
    phone = new_number()
    sms.send(phone, "hello", to="+18005559999")
    assert sms.outbox(phone) == [] and sms.customer(phone) is None


def test_stop_records_the_opt_out_and_nothing_more_is_texted_until_start(sms: SmsStack) -> None:
    phone = new_number()
    assert sms.text(phone, "hello")
    help_line = sms.text(phone, "HELP")
    assert len(help_line) == 1 and "Reply STOP" in help_line[0]

    assert sms.text(phone, "STOP") == []  # the carrier confirms STOP; that text is not ours
    customer = sms.customer(phone)
    assert customer is not None and customer.sms_opt_out is not None
    assert sms.text(phone, "is there an outage on my street?") == []
    assert sms.text(phone, "help") == []
    assert sms.text(phone, "stop") == []  # twice is still opted out

    assert sms.text(phone, "START") == []  # re-opted in; the carrier's confirmation is not ours either
    assert sms.customer(phone).sms_opt_out is None  # type: ignore[union-attr]
    assert sms.text(phone, "hello again")


def test_a_redelivered_stop_keeps_the_opt_out_of_its_first_delivery(sms: SmsStack) -> None:
    phone = new_number()
    event = sms.send(phone, "stop", deliver=False)["event"]
    sms.post_events([event])
    first = sms.customer(phone).sms_opt_out  # type: ignore[union-attr]
    sms.post_events([event])
    assert sms.customer(phone).sms_opt_out == first  # type: ignore[union-attr]
