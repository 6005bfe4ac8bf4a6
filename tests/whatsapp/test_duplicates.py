"""One inbound message may earn several distinct replies, never the same reply twice (issue 11, defect 1).

Through a real `python -m local` and its ACS emulator. Each round is a fresh customer whose previous answers failed
for the 24-hour window (the emulator saw their last message a day ago, while the event we post says now), so resends
of those answers are held. Their next message, the same question again, releases the resends together with its own
answer, and a failed status can land while that message's turn and sends run. The message is delivered twice, in a
row or at once, as Event Grid may; the failed statuses come as a burst of distinct events, as the emulator's own
arrive. Whatever the interleaving, the customer never receives the same text twice, and at most one template.
"""

from __future__ import annotations

import concurrent.futures
import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from local.acs.events import event_grid_event
from local.acs.messages import CHANNEL_ID, DELIVERY_STATUS, REENGAGEMENT
from shared.models import Delivery
from tests.waiting import eventually
from tests.whatsapp.conftest import WhatsAppStack, new_number

ROUNDS = 20
PARALLEL = 4  # customers in flight at once: rounds overlap, as customers do
QUESTION = "hi, what do I owe? account 100200300"  # Triage hands over to Billing, which answers with the balance


def received(whatsapp: WhatsAppStack, phone: str) -> list[str]:
    """What reached the customer's phone: every outbox entry but those WhatsApp refused."""
    return [m.get("content") or f"template:{m['template']}" for m in whatsapp.outbox(phone) if m["status"] != "failed"]


def settled(whatsapp: WhatsAppStack, phone: str) -> bool:
    """Nothing owed on the record and nothing in flight at the emulator: every status has come back."""
    if any(m["status"] == "accepted" for m in whatsapp.outbox(phone)):
        return False
    return whatsapp.customer(phone) is not None and not [
        m for m in whatsapp.session(phone).messages if m.direction == "out" and m.status is Delivery.PENDING
    ]


def answered_after_the_window_closed(whatsapp: WhatsAppStack, phone: str) -> list[dict[str, Any]]:
    """The customer's first message, as if the emulator had last seen them a day ago: our clock says the window is
    open, WhatsApp's says closed, so the answers are accepted and then fail. Returns the answers' outbox entries."""
    day_ago = (datetime.now(timezone.utc) - timedelta(hours=25)).isoformat()
    event = whatsapp.inbound(phone, QUESTION, receivedTimestamp=day_ago, deliver=False)["event"]
    event["data"]["receivedTimestamp"] = datetime.now(timezone.utc).isoformat()
    assert whatsapp.post_events([event]).status_code == 202
    return [m for m in whatsapp.outbox(phone) if m["kind"] == "text"]


def failed_status(phone: str, message_id: str) -> dict[str, Any]:
    data = {"messageId": message_id, "status": "Failed", "channelType": "whatsapp", "from": CHANNEL_ID,
            "to": phone.removeprefix("+"), "receivedTimestamp": datetime.now(timezone.utc).isoformat(),
            "error": dict(REENGAGEMENT)}
    event = event_grid_event(DELIVERY_STATUS, f"advancedMessage/sender/{CHANNEL_ID}/recipient/{phone[1:]}", data)
    return {**event, "id": str(uuid.uuid4())}


def deliver_all(whatsapp: WhatsAppStack, batches: list[list[dict[str, Any]]]) -> None:
    with concurrent.futures.ThreadPoolExecutor(len(batches)) as pool:
        codes = list(pool.map(whatsapp.post_events, batches))
    assert {c.status_code for c in codes} == {202}, [c.text for c in codes]


def run_rounds(round_: Any) -> None:
    with concurrent.futures.ThreadPoolExecutor(PARALLEL) as pool:
        problems = [p for p in pool.map(lambda _: round_(), range(ROUNDS)) if p]
    assert not problems, "\n".join(problems)


def repeats(texts: list[str]) -> list[str]:
    return [text for text, count in Counter(texts).items() if count > 1]


@pytest.mark.parametrize("delivery", ["in_a_row", "at_once"])
def test_a_message_delivered_twice_never_gets_the_same_reply_twice(whatsapp: WhatsAppStack, delivery: str) -> None:
    def round_() -> str | None:
        phone = new_number()
        answered_after_the_window_closed(whatsapp, phone)
        # The answers failed for the window: their resends are held and the template went out.
        eventually(lambda: settled(whatsapp, phone), timeout=30)
        before = len(whatsapp.outbox(phone))

        again = whatsapp.inbound(phone, QUESTION, deliver=False)["event"]  # this one opens WhatsApp's window
        if delivery == "in_a_row":
            for _ in range(2):
                assert whatsapp.post_events([again]).status_code == 202
        else:
            deliver_all(whatsapp, [[again], [again]])
        eventually(lambda: settled(whatsapp, phone), timeout=30)

        answers = [m.get("content") for m in whatsapp.outbox(phone)[before:] if m["status"] != "failed"]
        got = received(whatsapp, phone)
        if repeats(answers) or repeats(got):
            return f"{phone}: the second message brought {answers}; the customer got {got}"
        return None

    run_rounds(round_)


def test_failed_statuses_in_a_burst_and_beside_a_new_message_send_no_text_twice(whatsapp: WhatsAppStack) -> None:
    def round_() -> str | None:
        phone = new_number()
        answers = answered_after_the_window_closed(whatsapp, phone)
        assert answers, "the first message was not answered"
        # While the emulator's own failed statuses are on their way: three more for each answer, and the customer's
        # next message (delivered twice), all at once.
        again = whatsapp.inbound(phone, QUESTION, deliver=False)["event"]
        burst = [[failed_status(phone, m["messageId"])] for m in answers for _ in range(3)]
        deliver_all(whatsapp, [*burst, [again], [again]])
        eventually(lambda: settled(whatsapp, phone), timeout=30)

        got = received(whatsapp, phone)
        templates = [m for m in whatsapp.outbox(phone) if m["kind"] == "template"]
        if repeats(got) or len(templates) > 1:
            return f"{phone}: the customer got {got} ({len(templates)} templates sent)"
        return None

    run_rounds(round_)

