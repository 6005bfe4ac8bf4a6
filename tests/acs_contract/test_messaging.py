"""The emulator's Advanced Messaging and SMS answers, against azure-communication-messages' and -sms' models.

The real SDK clients send through the emulator (in this process), so they parse its answers; the bodies they read
are also checked field by field (tests/acs_contract/models.py), refusals included: a repeatable request first sent
over five minutes ago, as ACS refuses it (docs/reliability.md, "Repeatable sends"). The inbound and status events
have no model in these packages (they are Event Grid system events), so they are not checked here.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any

import pytest
from azure.communication.messages.aio import NotificationMessagesClient
from azure.communication.messages.models import MessageReceipt, SendMessageResult, TextNotificationContent
from azure.communication.sms._generated.models import (
    SendMessageRequest, SmsRecipient, SmsSendOptions, SmsSendResponse, SmsSendResponseItem,
)
from azure.communication.sms.aio import SmsClient
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import HttpResponseError

from local.acs.messages import CHANNEL_ID, MessagesApi
from local.acs.server import AcsEmulator, EmulatorService
from local.acs.sms import SMS_NUMBER, SmsApi
from tests.acs_contract.models import read_back
from tests.peers import free_port

ACCESS_KEY = "c2VjcmV0LWtleS1mb3ItdGhlLWFjcy1jb250cmFjdC10ZXN0cw=="
CUSTOMER = "+15555550123"


@pytest.fixture
async def emulator():
    service = EmulatorService(AcsEmulator(access_key=ACCESS_KEY, functions_url=f"http://127.0.0.1:{free_port()}",
                                          modules=[MessagesApi(), SmsApi()]), free_port())
    await service.start()
    yield service.url
    await service.stop()


def _first_sent(minutes_ago: float) -> str:
    return format_datetime(datetime.now(timezone.utc) - timedelta(minutes=minutes_ago), usegmt=True)


async def test_a_whatsapp_send_and_its_refusals_read_back_through_the_messages_sdk(emulator: str) -> None:
    bodies: list[dict[str, Any]] = []

    def keep(response: Any) -> None:
        bodies.append(json.loads(response.http_response.text()))

    content = TextNotificationContent(channel_registration_id=CHANNEL_ID, to=[CUSTOMER], content="Hello")
    async with NotificationMessagesClient(emulator, AzureKeyCredential(ACCESS_KEY), retry_total=0) as client:
        result = await client.send(content, raw_response_hook=keep, headers={
            "Repeatability-Request-ID": str(uuid.uuid4()), "Repeatability-First-Sent": _first_sent(0)})
        with pytest.raises(HttpResponseError) as too_old:
            await client.send(content, headers={"Repeatability-Request-ID": str(uuid.uuid4()),
                                                "Repeatability-First-Sent": _first_sent(6)})
        with pytest.raises(HttpResponseError) as foreign:
            await client.send(TextNotificationContent(channel_registration_id=str(uuid.uuid4()), to=[CUSTOMER],
                                                      content="Hello"))

    [body] = bodies
    read = read_back(SendMessageResult, body)
    [receipt] = body["receipts"]
    assert read_back(MessageReceipt, receipt).to == CUSTOMER and result.receipts[0].message_id == receipt["messageId"]
    # Refusals carry {"error": {"code", "message"}}, which azure-core reads into the exception the app inspects.
    assert (too_old.value.status_code, too_old.value.error.code) == (412, "PreconditionFailed")
    assert (foreign.value.status_code, foreign.value.error.code) == (400, "BadRequest")


async def test_an_sms_send_with_one_result_per_recipient_reads_back_through_the_sms_sdk(emulator: str) -> None:
    bodies: list[dict[str, Any]] = []

    def keep(response: Any) -> None:
        bodies.append(json.loads(response.http_response.text()))

    def recipient(to: str, minutes_ago: float) -> SmsRecipient:
        return SmsRecipient(to=to, repeatability_request_id=str(uuid.uuid4()),
                            repeatability_first_sent=_first_sent(minutes_ago))

    request = SendMessageRequest(
        from_property=SMS_NUMBER, message="Hello", sms_send_options=SmsSendOptions(enable_delivery_report=False),
        sms_recipients=[recipient(CUSTOMER, 0), recipient("not-a-number", 0), recipient("+15555550124", 6)],
    )
    client = SmsClient(emulator, AzureKeyCredential(ACCESS_KEY), retry_total=0)
    try:
        response = await client._sms_service_client.sms.send(request, raw_response_hook=keep)
    finally:
        await client.close()

    [body] = bodies
    read_back(SmsSendResponse, body)
    sent, invalid, too_old = (read_back(SmsSendResponseItem, item) for item in body["value"])
    assert (sent.successful, sent.http_status_code, sent.repeatability_result) == (True, 202, "accepted")
    assert (invalid.successful, invalid.http_status_code) == (False, 400)
    assert (too_old.successful, too_old.http_status_code, too_old.repeatability_result) == (False, 412, "rejected")
    assert [r.message_id for r in response.value] == [sent.message_id, None, None]
