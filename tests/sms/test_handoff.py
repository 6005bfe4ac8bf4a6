"""A caller who picks web chat and cannot get WhatsApp gets the web chat link by text message.

The voice leg runs the conversation core on channel `voice` in this process, on the host's own record store, and
starts the handoff through `POST /api/handoffs`, as the media gateway does. WhatsApp refuses the link for good (the
emulator answers 400, as for a number that cannot get WhatsApp messages); the link then goes by SMS, once, and works.
"""

from __future__ import annotations

import re
import uuid
from urllib.parse import parse_qs, urlparse

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


async def test_a_caller_without_whatsapp_gets_the_web_chat_link_by_text_once(sms: SmsStack) -> None:
    phone = f"+1777{uuid.uuid4().int % 10**7:07d}"
    store = SqliteCustomerStore(sms.data_dir / "customers.sqlite3")
    conversation = Conversation(load_scenario("utilities"), store, InProcessSessionState(), OfflinePolicy())
    session_id = new_id("call")
    opened = await conversation.open_for_identity(Channel.VOICE, session_id, Identity(IdentityKind.PHONE, phone))
    customer_id = opened.customer.customer_id
    await conversation.turn(session_id, customer_id, "my power is out, account 100200311")
    assert (await conversation.turn(session_id, customer_id, "can we continue on web chat instead?")).switch_to \
        == "webchat"
    await store.close()

    refused = sms.client.post(f"{sms.acs_url}/_emulator/messages/faults", json={"status": 400, "count": 1})
    assert refused.status_code == 200
    control = TokenSigner(load_secret("", sms.data_dir)).issue("call-control", 600, sid=session_id, cid=customer_id)
    started = sms.client.post(sms.url("/api/handoffs"), headers={"Authorization": f"Bearer {control}"},
                              json={"customer_id": customer_id, "session_id": session_id, "to_channel": "webchat"})
    assert started.status_code == 202, started.text
    instance_id = started.json()["id"]

    link = eventually(lambda: links(sms.texts(phone)))[0]
    status = eventually(lambda: (s := sms.client.get(sms.url(f"/api/handoffs/{instance_id}")).json())["step"]
                        == "waiting" and s)
    assert status["invite"]["sent"] is True and status["invite"]["by"] == "sms" and status["invite"]["link_sent"]
    assert "handoff=" not in str(status)  # the link went to the phone only
    whatsapp = sms.client.get(f"{sms.acs_url}/_emulator/messages", params={"to": phone}).json()
    assert whatsapp == []  # WhatsApp took nothing

    token = parse_qs(urlparse(link).query)["handoff"][0]
    chat = sms.client.post(sms.url("/api/webchat/sessions"), json={"handoff_token": token})
    assert chat.status_code == 201, chat.text
    assert "carrying on from your call" in " ".join(r["text"] for r in chat.json()["replies"])
    done = eventually(lambda: (s := sms.client.get(sms.url(f"/api/handoffs/{instance_id}")).json())[
        "runtime_status"] == "Completed" and s)
    assert done["output"]["outcome"] == "engaged"
    assert len(links(sms.texts(phone))) == 1  # one text, no reminder
