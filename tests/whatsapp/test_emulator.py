"""The ACS messaging emulator, driven by the real `azure-communication-messages` SDK as the app drives it."""

from __future__ import annotations

import base64
import uuid
from email.utils import formatdate

import pytest
from azure.communication.messages import NotificationMessagesClient
from azure.communication.messages.models import (
    MessageTemplate,
    MessageTemplateText,
    TemplateNotificationContent,
    TextNotificationContent,
    WhatsAppMessageTemplateBindings,
    WhatsAppMessageTemplateBindingsComponent,
)
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError

from local.acs.messages import CHANNEL_ID
from tests.waiting import eventually
from tests.whatsapp.conftest import ACCESS_KEY, WhatsAppStack, new_number


def client(whatsapp: WhatsAppStack, key: str = ACCESS_KEY) -> NotificationMessagesClient:
    return NotificationMessagesClient(whatsapp.acs_url, AzureKeyCredential(key), retry_total=0)


def text(to: str, content: str = "hello", channel: str = CHANNEL_ID) -> TextNotificationContent:
    return TextNotificationContent(channel_registration_id=channel, to=[to], content=content)


def test_a_request_signed_with_another_key_is_rejected(whatsapp: WhatsAppStack) -> None:
    phone = new_number()
    wrong = base64.b64encode(b"not the emulator's key at all!!!").decode()
    with client(whatsapp, wrong) as sdk, pytest.raises(ClientAuthenticationError) as raised:
        sdk.send(text(phone))
    assert raised.value.status_code == 401
    assert "signature does not match" in str(raised.value)
    assert whatsapp.outbox(phone) == []


def test_free_text_to_someone_who_never_wrote_is_accepted_then_fails_like_whatsapp(whatsapp: WhatsAppStack) -> None:
    phone = new_number()
    with client(whatsapp) as sdk:
        result = sdk.send(text(phone))
    [receipt] = result.receipts
    assert receipt.to == phone

    failed = eventually(lambda: [m for m in whatsapp.outbox(phone) if m["status"] == "failed"])
    assert failed[0]["messageId"] == receipt.message_id
    assert failed[0]["error"] == {"channelCode": "131047", "channelMessage": "Re-engagement message"}


def test_a_template_may_start_a_conversation(whatsapp: WhatsAppStack) -> None:
    phone = new_number()
    template = MessageTemplate(
        name="switchboard_follow_up",
        language="en_US",
        template_values=[MessageTemplateText(name="customer_name", text="Ana")],
        bindings=WhatsAppMessageTemplateBindings(
            body=[WhatsAppMessageTemplateBindingsComponent(ref_value="customer_name")]
        ),
    )
    with client(whatsapp) as sdk:
        sdk.send(TemplateNotificationContent(channel_registration_id=CHANNEL_ID, to=[phone], template=template))
    [sent] = eventually(lambda: [m for m in whatsapp.outbox(phone) if m["status"] == "read"])
    assert (sent["kind"], sent["template"], sent["templateValues"]) == ("template", "switchboard_follow_up",
                                                                         {"customer_name": "Ana"})


def test_a_repeated_request_id_sends_nothing_new(whatsapp: WhatsAppStack) -> None:
    phone = new_number()
    whatsapp.inbound(phone, type="reaction")  # opens the window without an answer
    headers = {"Repeatability-Request-ID": str(uuid.uuid4()), "Repeatability-First-Sent": formatdate(usegmt=True)}
    with client(whatsapp) as sdk:
        first = sdk.send(text(phone, "only once"), headers=headers)
        again = sdk.send(text(phone, "only once"), headers=headers)
    assert first.receipts[0].message_id == again.receipts[0].message_id
    assert [m["content"] for m in whatsapp.outbox(phone)] == ["only once"]


def test_a_channel_the_resource_does_not_have_is_a_clear_400(whatsapp: WhatsAppStack) -> None:
    with client(whatsapp) as sdk, pytest.raises(HttpResponseError) as raised:
        sdk.send(text(new_number(), channel=str(uuid.uuid4())))
    assert raised.value.status_code == 400
    assert "is not a channel of this resource" in raised.value.message
