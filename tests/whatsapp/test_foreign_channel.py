"""A WhatsApp message for another channel registration on the same ACS resource is not ours (issue 11, defect 10).

One ACS resource can hold several WhatsApp numbers, and one Event Grid subscription brings the messages of all of
them. Answering a message written to another number would reply from ours, to someone who never wrote to us.
"""

from __future__ import annotations

import uuid

from tests.whatsapp.conftest import WhatsAppStack, new_number


def test_a_message_to_another_channel_registration_is_dropped(whatsapp: WhatsAppStack) -> None:
    # Another WhatsApp number registered on the same ACS resource: its events reach the same subscription.
    phone, other_channel = new_number(), str(uuid.uuid4())
    event = whatsapp.inbound(phone, "what do I owe?", deliver=False)["event"]
    event["data"]["to"] = other_channel
    assert whatsapp.post_events([event]).status_code == 202  # nothing Event Grid should retry

    assert whatsapp.customer(phone) is None
    assert whatsapp.outbox(phone) == []
    assert f"was sent to channel '{other_channel}', not ours" in whatsapp.host.stderr()


def test_a_message_to_our_channel_is_still_answered(whatsapp: WhatsAppStack) -> None:
    phone = new_number()
    event = whatsapp.inbound(phone, "what do I owe?", deliver=False)["event"]
    assert whatsapp.post_events([event]).status_code == 202
    assert whatsapp.texts(phone) and whatsapp.customer(phone) is not None
