"""A caller who picks web chat and cannot get WhatsApp gets the web chat link by text message.

The voice leg runs the conversation core on channel `voice` in this process, on the host's own record store, and
starts the handoff through `POST /api/handoffs`, as the media gateway does. WhatsApp refuses the link for good, at once
(the emulator answers 400) or late (it accepts the message, then Event Grid brings a `failed` status, as for a number
without WhatsApp); either way the link then goes by SMS, once, and works.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timezone
from urllib.parse import parse_qs, urlparse

import httpx

from local.acs.events import event_grid_event
from local.acs.messages import CHANNEL_ID, DELIVERY_STATUS, UNDELIVERABLE

from shared.conversation import Conversation
from shared.models import Channel, Identity, IdentityKind, new_id
from shared.policies.offline import OfflinePolicy
from shared.scenario import load_scenario
from shared.stores.embedded_customers import SqliteCustomerStore
from shared.stores.embedded_state import InProcessSessionState
from shared.tokens import TokenSigner, load_secret
from tests.sms.conftest import SmsStack, eventually


def links(texts: list[str]) -> list[str]:
    return [m.group(0) for t in texts if (m := re.search(r"http\S+handoff=\S+", t))]


async def caller_picks_web_chat(sms: SmsStack, phone: str) -> tuple[str, str]:
    """A call from `phone` whose caller accepts to carry on by web chat: (customer id, the call's session id)."""
    store = SqliteCustomerStore(sms.data_dir / "customers.sqlite3")
    conversation = Conversation(load_scenario("utilities"), store, InProcessSessionState(), OfflinePolicy())
    session_id = new_id("call")
    opened = await conversation.open_for_identity(Channel.VOICE, session_id, Identity(IdentityKind.PHONE, phone))
    customer_id = opened.customer.customer_id
    await conversation.turn(session_id, customer_id, "my power is out, account 100200311")
    assert (await conversation.turn(session_id, customer_id, "can we continue on web chat instead?")).switch_to \
        == "webchat"
    await store.close()
    return customer_id, session_id


def start_handoff(sms: SmsStack, customer_id: str, session_id: str) -> str:
    """The handoff to web chat, started as the media gateway starts it; its orchestration id."""
    control = TokenSigner(load_secret("", sms.data_dir)).issue("call-control", 600, sid=session_id, cid=customer_id)
    started = sms.client.post(sms.url("/api/handoffs"), headers={"Authorization": f"Bearer {control}"},
                              json={"customer_id": customer_id, "session_id": session_id, "to_channel": "webchat"})
    assert started.status_code == 202, started.text
    return started.json()["id"]


def open_link(sms: SmsStack, link: str) -> str:
    """The customer follows the link: what the new web chat says first."""
    token = parse_qs(urlparse(link).query)["handoff"][0]
    chat = sms.client.post(sms.url("/api/webchat/sessions"), json={"handoff_token": token})
    assert chat.status_code == 201, chat.text
    return " ".join(r["text"] for r in chat.json()["replies"])


async def test_a_caller_without_whatsapp_gets_the_web_chat_link_by_text_once(sms: SmsStack) -> None:
    phone = f"+1777{uuid.uuid4().int % 10**7:07d}"
    customer_id, session_id = await caller_picks_web_chat(sms, phone)

    refused = sms.client.post(f"{sms.acs_url}/_emulator/messages/faults", json={"status": 400, "count": 1})
    assert refused.status_code == 200
    instance_id = start_handoff(sms, customer_id, session_id)

    link = eventually(lambda: links(sms.texts(phone)))[0]
    status = eventually(lambda: (s := sms.client.get(sms.url(f"/api/handoffs/{instance_id}")).json())["step"]
                        == "waiting" and s)
    assert status["invite"]["sent"] is True and status["invite"]["by"] == "sms" and status["invite"]["link_sent"]
    assert "handoff=" not in str(status)  # the link went to the phone only
    whatsapp = sms.client.get(f"{sms.acs_url}/_emulator/messages", params={"to": phone}).json()
    assert whatsapp == []  # WhatsApp took nothing

    assert "carrying on from your call" in open_link(sms, link)
    done = eventually(lambda: (s := sms.client.get(sms.url(f"/api/handoffs/{instance_id}")).json())[
        "runtime_status"] == "Completed" and s)
    assert done["output"]["outcome"] == "engaged"
    assert len(links(sms.texts(phone))) == 1  # one text, no reminder


async def test_a_whatsapp_link_that_fails_after_it_was_accepted_goes_by_text_once(sms: SmsStack) -> None:
    # ACS accepts a WhatsApp message before WhatsApp tries it: for a number without WhatsApp the failure comes later,
    # as a `failed` delivery status through Event Grid. The caller must still get the link, by text, and once however
    # often that status arrives.
    phone = f"+1778{uuid.uuid4().int % 10**7:07d}"
    customer_id, session_id = await caller_picks_web_chat(sms, phone)
    assert sms.client.post(f"{sms.acs_url}/_emulator/messages/unreachable", json={"phone": phone}).status_code == 200
    instance_id = start_handoff(sms, customer_id, session_id)

    (invite,) = eventually(lambda: [m for m in whatsapp_outbox(sms, phone) if m["status"] == "failed"])
    assert invite["kind"] == "template" and invite["error"]["channelCode"] == "131026"  # accepted, then failed
    link = eventually(lambda: links(sms.texts(phone)))[0]

    # The failed status again: Event Grid's redelivery (same event id), and another event about the same message.
    event = failed_status(phone, invite["messageId"])
    for again in (event, event, {**event, "id": str(uuid.uuid4())}):
        assert whatsapp_events(sms, again).status_code == 202
    assert len(links(sms.texts(phone))) == 1  # one text
    store = SqliteCustomerStore(sms.data_dir / "customers.sqlite3")
    handoff = (await store.get(customer_id)).handoff
    await store.close()
    assert handoff is not None and handoff.instance_id == instance_id and handoff.texted == ["invite"]

    assert "carrying on from your call" in open_link(sms, link)
    done = eventually(lambda: (s := sms.client.get(sms.url(f"/api/handoffs/{instance_id}")).json())[
        "runtime_status"] == "Completed" and s)
    assert done["output"]["outcome"] == "engaged"
    assert len(links(sms.texts(phone))) == 1


def whatsapp_outbox(sms: SmsStack, phone: str) -> list[dict]:
    return sms.client.get(f"{sms.acs_url}/_emulator/messages", params={"to": phone}).json()


def failed_status(phone: str, message_id: str) -> dict:
    data = {"messageId": message_id, "status": "Failed", "channelType": "whatsapp", "from": CHANNEL_ID,
            "to": phone.removeprefix("+"), "receivedTimestamp": datetime.now(timezone.utc).isoformat(),
            "error": dict(UNDELIVERABLE)}
    return event_grid_event(DELIVERY_STATUS, f"advancedMessage/sender/{CHANNEL_ID}/recipient/{phone[1:]}", data)


def whatsapp_events(sms: SmsStack, event: dict) -> httpx.Response:
    return sms.client.post(f"{sms.host.url}/runtime/webhooks/EventGrid?functionName=whatsapp_events", json=[event],
                           headers={"aeg-event-type": "Notification"})
