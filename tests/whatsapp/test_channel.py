"""WhatsApp end to end: the customer writes through the ACS emulator, Event Grid-style delivery reaches the local
Functions host, the agent answers with the real `azure-communication-messages` SDK, the emulator checks the SDK's
signature, takes the send and posts delivery statuses back. Assertions read the emulator's outbox and the record.
"""

from __future__ import annotations

import concurrent.futures
import re
from datetime import datetime, timedelta, timezone

from shared.models import Delivery
from tests.waiting import eventually
from tests.verifying import ASKS_TO_VERIFY
from tests.whatsapp.conftest import JORDAN, WhatsAppStack, new_number

ASKS_FOR_ACCOUNT = re.compile(r"account number|phone number on the account", re.I)


def test_jordan_gets_billing_then_the_outage_eta_without_being_asked_who_he_is(whatsapp: WhatsAppStack) -> None:
    before = len(whatsapp.outbox(JORDAN))
    whatsapp.inbound(JORDAN, "hi, I have a question about my bill")
    billing = whatsapp.texts(JORDAN)[before:]
    assert billing[0] == "Hi, you're through to Billing."  # an announced handoff; no greeting before it
    assert "$127.45" in billing[-1] and "December 15" in billing[-1]

    whatsapp.inbound(JORDAN, "and now my lights are out too")
    replies = whatsapp.texts(JORDAN)[before + len(billing):]
    assert len(replies) == 1 and "4:00 PM" in replies[0]
    assert not any(ASKS_FOR_ACCOUNT.search(text) for text in billing + replies)

    session = whatsapp.session(JORDAN)
    assert session.active_agent == "OutageAgent"
    assert [t.role for t in session.turns][:2] == ["customer", "agent"]  # the customer spoke first
    sent = {m["messageId"] for m in whatsapp.outbox(JORDAN)}
    logged = [m for m in session.messages if m.direction == "out"]
    assert logged and {m.message_id for m in logged} <= sent  # every reply's ACS id is on the record


def test_delivery_statuses_reach_the_record(whatsapp: WhatsAppStack) -> None:
    phone = new_number()
    whatsapp.inbound(phone, "hello")
    message_id = whatsapp.outbox(phone)[0]["messageId"]

    def read_on_record():
        out = whatsapp.session(phone).message(message_id=message_id)
        return out if out is not None and out.status is Delivery.READ else None

    eventually(read_on_record)
    assert eventually(lambda: whatsapp.outbox(phone)[0]["status"] == "read")


def test_an_unknown_number_becomes_a_new_customer(whatsapp: WhatsAppStack) -> None:
    phone = new_number()
    assert whatsapp.customer(phone) is None
    whatsapp.inbound(phone, "what do I owe this month?")

    customer = whatsapp.customer(phone)
    assert customer is not None and customer.collected.get("account_number") is None
    assert ASKS_FOR_ACCOUNT.search(whatsapp.texts(phone)[-1])  # a stranger is asked who they are
    whatsapp.inbound(phone, "the number on the account is 555-555-0111")
    # ... and, writing from a number that is not the one on record, to prove it with the code sent to that one.
    assert ASKS_TO_VERIFY.search(whatsapp.texts(phone)[-1]) and "$" not in whatsapp.texts(phone)[-1]
    assert "$42.10" in whatsapp.verify(phone, "+15555550111")


def test_the_same_event_delivered_twice_is_answered_once(whatsapp: WhatsAppStack) -> None:
    phone = new_number()
    event = whatsapp.inbound(phone, "my lights are out", deliver=False)["event"]
    assert whatsapp.post_events([event]).status_code == 202
    assert whatsapp.post_events([event]).status_code == 202
    with concurrent.futures.ThreadPoolExecutor(4) as pool:  # and again, all at once
        assert {r.status_code for r in pool.map(lambda _: whatsapp.post_events([event]), range(4))} == {202}

    assert len(whatsapp.outbox(phone)) == 1
    session = whatsapp.session(phone)
    assert [t.role for t in session.turns] == ["customer", "agent"]


def test_an_event_without_a_message_id_delivered_again_and_again_is_answered_once(whatsapp: WhatsAppStack) -> None:
    # The docs' samples have no messageId; the emulator sends such an event when asked with "messageId": null.
    phone = new_number()
    built = whatsapp.inbound(phone, "my lights are out", deliver=False, messageId=None)
    event = built["event"]
    assert "messageId" not in event["data"] and built["messageId"] is None
    assert whatsapp.post_events([event]).status_code == 202
    with concurrent.futures.ThreadPoolExecutor(4) as pool:  # Event Grid again, and again all at once
        assert {r.status_code for r in pool.map(lambda _: whatsapp.post_events([event]), range(4))} == {202}

    assert len(whatsapp.outbox(phone)) == 1
    session = whatsapp.session(phone)
    assert [t.role for t in session.turns] == ["customer", "agent"]
    [inbound] = [m for m in session.messages if m.direction == "in"]
    assert inbound.key == f"event:{event['id']}"

    # A second message without an id is another message: it has its own event id, and its own answer.
    whatsapp.inbound(phone, "are you still there?", messageId=None)
    assert len(whatsapp.outbox(phone)) == 2
    assert [t.role for t in whatsapp.session(phone).turns] == ["customer", "agent"] * 2


def test_a_batch_of_events_is_answered_event_by_event(whatsapp: WhatsAppStack) -> None:
    first, second = new_number(), new_number()
    events = [
        whatsapp.inbound(first, "I have a question about my bill", deliver=False)["event"],
        whatsapp.inbound(second, "my lights are out", deliver=False)["event"],
        whatsapp.inbound(first, "100 200 300", deliver=False)["event"],
    ]
    assert whatsapp.post_events(events).status_code == 202

    assert ASKS_TO_VERIFY.search(whatsapp.texts(first)[-1])  # not the number on record for that account
    assert "address" in whatsapp.texts(second)[-1]  # a stranger's outage: where are you?
    assert "$127.45" in whatsapp.verify(first, JORDAN)
    assert [t.text for t in whatsapp.session(first).turns if t.role == "customer"] == [
        "I have a question about my bill", "100 200 300", "[verification code]"
    ]


def test_outside_the_24_hour_window_the_template_goes_out_and_the_answer_waits(whatsapp: WhatsAppStack) -> None:
    phone = new_number()
    day_ago = (datetime.now(timezone.utc) - timedelta(hours=25)).isoformat()
    whatsapp.inbound(phone, "my lights are out", receivedTimestamp=day_ago)

    [template] = whatsapp.outbox(phone)
    assert (template["kind"], template["template"], template["language"]) == ("template", "switchboard_follow_up",
                                                                               "en_US")
    assert template["templateValues"] == {"customer_name": "there", "company": "Springfield Power & Water"}
    assert eventually(lambda: whatsapp.outbox(phone)[0]["status"] == "read")  # templates may open a conversation
    [held] = [m for m in whatsapp.session(phone).messages if m.status is Delivery.HELD]
    assert "address" in held.text  # the outage desk's question, kept for when the customer is back

    whatsapp.inbound(phone, "ok, I'm here")  # the customer answers: the window reopens
    # The held question goes out first. The answer to "ok, I'm here" is that same question: asked once, not twice.
    assert whatsapp.texts(phone) == [held.text]
    session = whatsapp.session(phone)
    assert not [m for m in session.messages if m.status is Delivery.HELD]
    [superseded] = [m for m in session.messages if m.status is Delivery.SUPERSEDED]
    assert superseded.text == held.text and superseded.error == f"the same text went out as {held.key}"


def test_a_text_the_service_refuses_for_the_window_is_replaced_by_the_template(whatsapp: WhatsAppStack) -> None:
    # Our clock says the window is open; WhatsApp's says it closed (the emulator saw the customer a day ago). The
    # send is accepted, then fails with 131047, and the app falls back to the template.
    phone = new_number()
    day_ago = (datetime.now(timezone.utc) - timedelta(hours=25)).isoformat()
    event = whatsapp.inbound(phone, "hello", receivedTimestamp=day_ago, deliver=False)["event"]
    event["data"]["receivedTimestamp"] = datetime.now(timezone.utc).isoformat()
    assert whatsapp.post_events([event]).status_code == 202

    def refused_then_template():
        outbox = whatsapp.outbox(phone)
        return outbox if len(outbox) == 2 else None

    outbox = eventually(refused_then_template)
    assert outbox[0]["kind"] == "text" and outbox[0]["status"] == "failed"
    assert outbox[0]["error"] == {"channelCode": "131047", "channelMessage": "Re-engagement message"}
    assert outbox[1]["kind"] == "template"
    refused = eventually(lambda: whatsapp.session(phone).message(message_id=outbox[0]["messageId"]))
    assert refused.status is Delivery.FAILED and refused.error == "131047: Re-engagement message"


def test_pictures_get_a_polite_answer_and_reactions_are_only_recorded(whatsapp: WhatsAppStack) -> None:
    phone = new_number()
    whatsapp.inbound(phone, type="image", caption="my meter")
    [answer] = whatsapp.texts(phone)
    assert "only read text" in answer

    whatsapp.inbound(phone, type="reaction", emoji="👍")
    assert len(whatsapp.outbox(phone)) == 1
    session = whatsapp.session(phone)
    assert [t.text for t in session.turns][:1] == ["[image: image/jpeg my meter]"]
    assert [m.kind for m in session.messages if m.direction == "in"] == ["image", "reaction"]


def test_malformed_and_unsupported_events_are_dropped_with_a_reason(whatsapp: WhatsAppStack) -> None:
    phone = new_number()
    good = whatsapp.inbound(phone, "hello", deliver=False)["event"]
    broken = [
        {**good, "id": "bad-1", "data": {**good["data"], "messageId": 5}},
        {**good, "id": "bad-2", "data": {**good["data"], "from": "not-a-number"}},
        {**good, "id": "bad-3", "data": "a string"},
        {**good, "id": "bad-4", "eventType": "Microsoft.Communication.AdvancedMessageAnalysisCompleted"},
        {**good, "id": "bad-5", "data": {**good["data"], "messageType": "text", "content": ""}},
    ]
    response = whatsapp.post_events(broken)
    assert response.status_code == 202  # nothing for Event Grid to retry
    assert whatsapp.customer(phone) is None and whatsapp.outbox(phone) == []
    log = whatsapp.host.stderr()
    for reason in ("messageId 5 is not a string", "'not-a-number' is not a phone number", "data is not a JSON object",
                   "unsupported event type", "a text message without content"):
        assert reason in log


def test_a_throttled_send_is_retried_and_goes_out_once(whatsapp: WhatsAppStack) -> None:
    phone = new_number()
    whatsapp.fault(503, 2)
    whatsapp.inbound(phone, "hello")
    assert len(whatsapp.outbox(phone)) == 1


def test_a_send_failing_past_the_retries_is_redelivered_by_event_grid_and_still_sent_once(
    whatsapp: WhatsAppStack,
) -> None:
    phone = new_number()
    whatsapp.fault(503, 4)  # every try of the first delivery: the handler fails, the host answers 500
    answer = whatsapp.inbound(phone, "hello")
    assert answer["status"] == 500 and answer["redelivering"] is True

    eventually(lambda: len(whatsapp.outbox(phone)) == 1, timeout=20)
    session = whatsapp.session(phone)
    assert [t.role for t in session.turns] == ["customer", "agent"]  # the turn ran once
    assert eventually(lambda: whatsapp.session(phone).messages[-1].status is not Delivery.PENDING)


def test_a_permanent_send_failure_is_recorded_on_the_record(whatsapp: WhatsAppStack) -> None:
    phone = new_number()
    whatsapp.fault(400, 1, code="InvalidRecipient", message="the number is not on WhatsApp")
    answer = whatsapp.inbound(phone, "hello")
    assert answer["status"] == 202  # nothing a redelivery could fix

    assert whatsapp.outbox(phone) == []
    [reply] = [m for m in whatsapp.session(phone).messages if m.direction == "out"]
    assert reply.status is Delivery.FAILED
    assert reply.error == "ACS rejected the message (400): the number is not on WhatsApp"
