"""The ACS emulator's SMS API against the real SDK: what our sender relies on the service doing.

Signed with the host's access key through `azure-communication-sms`, exactly as the app sends.
"""

from __future__ import annotations

import base64
import uuid
from datetime import datetime, timezone

import pytest

from local.acs.sms import SMS_NUMBER
from shared.errors import Unavailable
from shared.messenger.base import SendFailed
from shared.sms.acs import AcsSmsSender
from tests.sms.conftest import ACCESS_KEY, SmsStack, eventually, new_number


def sender(sms: SmsStack, key: str = ACCESS_KEY, number: str = SMS_NUMBER) -> AcsSmsSender:
    made = AcsSmsSender(sms.acs_url, number, access_key=key)
    made.backoff_base = made.backoff_cap = 0.05
    return made


async def test_a_repeated_send_is_recognised_and_texts_once(sms: SmsStack) -> None:
    phone, key, now = new_number(), str(uuid.uuid4()), datetime.now(timezone.utc)
    texts = sender(sms)
    first = await texts.send(phone, "hello", repeatability_id=key, first_sent=now, tag="test")
    again = await texts.send(phone, "hello", repeatability_id=key, first_sent=now, tag="test")
    other = await texts.send(phone, "hello", repeatability_id=str(uuid.uuid4()), first_sent=now, tag="test")
    await texts.close()
    assert first == again != other
    outbox = sms.outbox(phone)
    assert [t["messageId"] for t in outbox] == [first, other] and outbox[0]["repeatabilityRequestId"] == key
    eventually(lambda: all(t["status"] == "delivered" for t in sms.outbox(phone)))


async def test_a_wrong_key_is_refused_for_good(sms: SmsStack) -> None:
    texts = sender(sms, key=base64.b64encode(b"not-the-emulator-key-at-all-0000").decode())
    with pytest.raises(SendFailed, match="credentials"):
        await texts.send(new_number(), "hi", repeatability_id=str(uuid.uuid4()), first_sent=datetime.now(timezone.utc))
    await texts.close()


async def test_a_number_not_of_the_resource_is_refused(sms: SmsStack) -> None:
    texts = sender(sms, number="+18005550000")
    with pytest.raises(SendFailed, match="not a number of this resource"):
        await texts.send(new_number(), "hi", repeatability_id=str(uuid.uuid4()), first_sent=datetime.now(timezone.utc))
    await texts.close()


async def test_a_recipient_that_is_not_a_number_gets_its_own_refusal(sms: SmsStack) -> None:
    texts = sender(sms)
    with pytest.raises(SendFailed, match="Invalid To phone number"):
        await texts.send("12345", "hi", repeatability_id=str(uuid.uuid4()), first_sent=datetime.now(timezone.utc))
    await texts.close()


async def test_throttling_is_retried_under_the_same_repeatability_id(sms: SmsStack) -> None:
    phone = new_number()
    sms.client.post(f"{sms.acs_url}/_emulator/sms/faults", json={"status": 429, "count": 2}).raise_for_status()
    texts = sender(sms)
    sent = await texts.send(phone, "after a wait", repeatability_id=str(uuid.uuid4()),
                            first_sent=datetime.now(timezone.utc))
    assert [t["messageId"] for t in sms.outbox(phone)] == [sent]
    # Every try fails: past the sender's tries it is the caller's to retry later (Event Grid, Durable). Exactly that
    # many faults, so none is left for the tests that follow.
    sms.client.post(f"{sms.acs_url}/_emulator/sms/faults",
                    json={"status": 503, "count": texts.attempts}).raise_for_status()
    with pytest.raises(Unavailable):
        await texts.send(phone, "never", repeatability_id=str(uuid.uuid4()), first_sent=datetime.now(timezone.utc))
    await texts.close()
    assert sms.text(phone, "hello")  # and the next send goes through
