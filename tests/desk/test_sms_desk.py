"""SMS with a person at the desk: the customer texts through the ACS emulator to a real `python -m local` (with an SMS
number), and a person signed in at the desk (the host's dev sign-in) claims, writes and closes through the desk's HTTP
API. What the customer's phone receives is read from the emulator's SMS outbox; the record from the host's SQLite.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import httpx
import pytest

from local.acs.sms import SMS_NUMBER
from shared.conversation import DESK_PHRASES
from shared.desk import AVAILABLE
from shared.models import Delivery, Escalation, EscalationStatus
from shared.scenario import load_scenario
from tests.peers.local_host import LocalHost
from tests.sms.conftest import ACCESS_KEY, SmsStack, new_number

SCENARIO = load_scenario("utilities")
PLACE = re.compile(r"You're number (\d+) in line")
JOINED = DESK_PHRASES["person_joined"].format(person="Dana", company=SCENARIO.company)
CLOSED = DESK_PHRASES["person_closed"].format(company=SCENARIO.company)
HELLO = "Hi! I can see your account. What can I help with?"


@pytest.fixture(scope="module")
def sms(local_host_factory: Callable[..., LocalHost], tmp_path_factory: pytest.TempPathFactory) -> Iterator[SmsStack]:
    data_dir = tmp_path_factory.mktemp("desk-sms-data")
    host = local_host_factory(SWITCHBOARD_DATA_DIR=str(data_dir), ACS_ACCESS_KEY=ACCESS_KEY, ACS_SMS_FROM=SMS_NUMBER)
    assert host.acs_url is not None
    with httpx.Client(timeout=60) as client:
        yield SmsStack(host, host.acs_url, data_dir, client)


@pytest.fixture
def dana(sms: SmsStack) -> Iterator[httpx.Client]:
    """Dana's desk page, signed in and available."""
    with httpx.Client(base_url=sms.host.url, timeout=60) as page:
        assert page.get("/.auth/login/dev", params={"agent": "Dana"}).status_code in (302, 303)
        assert page.post("/api/desk/presence", json={"status": AVAILABLE}).status_code == 200
        yield page


def post(page: httpx.Client, path: str, body: dict | None = None, key: str | None = None) -> dict:
    response = page.post(path, json=body or {}, headers={"Idempotency-Key": key} if key else {})
    assert response.status_code == 200, response.text
    return response.json()


def escalation_of(sms: SmsStack, phone: str) -> Escalation:
    customer = sms.customer(phone)
    assert customer is not None and customer.escalations, "the customer was never escalated"
    return customer.escalations[-1]


def test_a_person_writes_to_an_sms_customer_and_each_line_is_texted_once(sms: SmsStack, dana: httpx.Client) -> None:
    phone = new_number()
    (told,) = sms.text(phone, "I want to talk to a person")
    escalation = escalation_of(sms, phone)
    assert PLACE.search(told) and escalation.status is EscalationStatus.WAITING
    route = f"/api/desk/escalations/{escalation.escalation_id}"

    post(dana, f"{route}/claim")
    post(dana, f"{route}/messages", {"text": HELLO}, key="sms-say-1")
    post(dana, f"{route}/messages", {"text": HELLO}, key="sms-say-1")  # the person's request retried: said once
    assert sms.texts(phone)[1:] == [JOINED, HELLO]

    # The customer's answer goes to the person, not the AI: nothing is texted back for it.
    assert sms.text(phone, "my bill looks too high this month") == []
    assert sms.session(phone).turns[-1].text == "my bill looks too high this month"

    post(dana, f"{route}/close", {"disposition": "resolved", "note": "explained the bill"})
    assert sms.texts(phone)[1:] == [JOINED, HELLO, CLOSED]
    # Each of the person's lines is on the record with the receipt ACS gave for it.
    sent = {t["messageId"] for t in sms.outbox(phone)}
    people = [m for m in sms.session(phone).messages if m.direction == "out" and m.reply_to is None]
    assert [(m.text, m.status is not Delivery.PENDING) for m in people] == [(JOINED, True), (HELLO, True),
                                                                             (CLOSED, True)]
    assert all(m.message_id in sent for m in people)


def test_nothing_the_person_writes_is_texted_to_a_customer_who_opted_out(sms: SmsStack, dana: httpx.Client) -> None:
    phone = new_number()
    sms.text(phone, "can I speak to a human please")
    escalation = escalation_of(sms, phone)
    route = f"/api/desk/escalations/{escalation.escalation_id}"
    assert sms.text(phone, "STOP") == []  # the carrier confirms; we send nothing more
    post(dana, f"{route}/claim")
    post(dana, f"{route}/messages", {"text": HELLO}, key="sms-say-stop")
    assert len(sms.texts(phone)) == 1  # only the place in line, from before STOP
    people = [m for m in sms.session(phone).messages if m.direction == "out" and m.reply_to is None]
    assert [(m.text, m.status) for m in people] == [(JOINED, Delivery.FAILED), (HELLO, Delivery.FAILED)]
    post(dana, f"{route}/close", {"disposition": "not_resolved"})
