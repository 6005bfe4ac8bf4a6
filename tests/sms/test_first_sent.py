"""A promised text kept long after the promise still arrives (issue 19, item 1).

ACS tracks a repeatable send for five minutes from its first-sent time and refuses an older one (412, here a
recipient's own 412 result); the emulator does the same (local/acs/repeatability.py). "We'll text you when it's
restored" is kept when the outage ends, hours later. Here the promise's time on the record is set ten minutes back,
through the same store the host writes, and the text must still go.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

from azure.communication.sms import SmsClient
from azure.core.credentials import AzureKeyCredential

from local.acs.sms import SMS_NUMBER
from shared.models import Customer, Identity, IdentityKind, utcnow
from shared.stores.embedded_customers import SqliteCustomerStore
from tests.sms.conftest import ACCESS_KEY, SmsStack, new_number
from tests.waiting import eventually

OUTAGE = "OUT-4471"  # the demo outage at 45 Birch Rd, Springfield


def test_the_emulator_gives_a_recipient_first_sent_long_ago_a_412_result(sms: SmsStack) -> None:
    from azure.communication.sms._generated.models import SendMessageRequest, SmsRecipient, SmsSendOptions

    phone = new_number()
    old = format_datetime(datetime.now(timezone.utc) - timedelta(minutes=6), usegmt=True)
    request = SendMessageRequest(
        from_property=SMS_NUMBER, message="too late", sms_send_options=SmsSendOptions(enable_delivery_report=False),
        sms_recipients=[SmsRecipient(to=phone, repeatability_request_id=str(uuid.uuid4()),
                                     repeatability_first_sent=old)],
    )
    client = SmsClient(sms.acs_url, AzureKeyCredential(ACCESS_KEY), retry_total=0)
    [result] = client._sms_service_client.sms.send(request).value
    assert (result.http_status_code, result.successful, result.repeatability_result) == (412, False, "rejected")
    assert sms.outbox(phone) == []


def test_a_promise_kept_ten_minutes_after_it_was_made_is_texted(sms: SmsStack) -> None:
    phone = new_number()
    reply = sms.text(phone, "my power is out at 45 Birch Rd, Springfield")
    assert "we'll text you when it's restored" in reply[0]

    def promised_long_ago(customer: Customer) -> None:
        promise = customer.promise("outage_restored", OUTAGE)
        assert promise is not None and not promise.get("sent_at")
        promise["at"] = (datetime.now(timezone.utc) - timedelta(minutes=10)).isoformat()

    async def write() -> None:
        store = SqliteCustomerStore(sms.data_dir / "customers.sqlite3")
        try:
            customer = await store.find_by_identity(Identity(IdentityKind.PHONE, phone))
            assert customer is not None
            await store.update(customer.customer_id, promised_long_ago)
        finally:
            await store.close()

    asyncio.run(write())
    restored = sms.client.post(sms.url(f"/api/ops/outages/{OUTAGE}/restored"))
    assert restored.status_code == 200, restored.text

    # The restore tells the promise's orchestration, which sends the text (docs/notifications.md).
    eventually(lambda: [t for t in sms.texts(phone) if "power is back on" in t], timeout=20)
    texts = [t for t in sms.texts(phone) if "power is back on" in t]
    assert len(texts) == 1, sms.texts(phone)
    promise = sms.customer(phone).promise("outage_restored", OUTAGE)  # type: ignore[union-attr]
    assert promise is not None and promise.get("sent_at") and not promise.get("error"), promise
    assert promise["sent_at"] <= utcnow()
