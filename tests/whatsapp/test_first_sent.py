"""Sends decided long before they go out still arrive (issue 19, item 1).

ACS tracks a repeatable request for five minutes from its Repeatability-First-Sent time and refuses an older one with
412, which the app can only take as permanent. The emulator does the same (local/acs/repeatability.py). A held reply
goes out when the customer writes again, maybe hours after it was decided; a handoff reminder goes ten minutes after
the handoff started. Here their times on the record are set ten minutes back, through the same store the host writes,
and the message must still reach the customer.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime, formatdate

import httpx
import pytest
from azure.communication.messages import NotificationMessagesClient
from azure.communication.messages.models import TextNotificationContent
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import HttpResponseError

from local.acs.messages import CHANNEL_ID
from shared.conversation import Conversation
from shared.models import Channel, Customer, Delivery, Identity, IdentityKind, new_id
from shared.policies.offline import OfflinePolicy
from shared.scenario import load_scenario
from shared.stores.embedded_customers import SqliteCustomerStore
from shared.stores.embedded_state import InProcessSessionState
from shared.tokens import TokenSigner, load_secret
from shared.whatsapp import delivery
from tests.peers.local_host import LocalHost
from tests.waiting import eventually
from tests.whatsapp.conftest import ACCESS_KEY, WhatsAppStack, new_number

LONG_AGO = timedelta(minutes=10)  # twice as old as ACS tracks a request
REMIND_AFTER = 8  # seconds: time to see the invite and set the handoff's start back before the reminder goes


def backdate(stack_dir, phone: str, change: Callable[[Customer], None]) -> None:
    """Change the customer's record as the host would, through the store on the host's own SQLite file."""
    async def write() -> None:
        store = SqliteCustomerStore(stack_dir / "customers.sqlite3")
        try:
            customer = await store.find_by_identity(Identity(IdentityKind.PHONE, phone))
            assert customer is not None
            await store.update(customer.customer_id, change)
        finally:
            await store.close()

    asyncio.run(write())


def sdk(stack: WhatsAppStack) -> NotificationMessagesClient:
    return NotificationMessagesClient(stack.acs_url, AzureKeyCredential(ACCESS_KEY), retry_total=0)


def test_the_emulator_refuses_a_first_sent_time_older_than_five_minutes_with_412(whatsapp: WhatsAppStack) -> None:
    phone = new_number()
    whatsapp.inbound(phone, type="reaction")  # opens the window without an answer
    old = format_datetime(datetime.now(timezone.utc) - timedelta(minutes=6), usegmt=True)
    content = TextNotificationContent(channel_registration_id=CHANNEL_ID, to=[phone], content="too late")
    with sdk(whatsapp) as client, pytest.raises(HttpResponseError) as refused:
        client.send(content, headers={"Repeatability-Request-ID": str(uuid.uuid4()), "Repeatability-First-Sent": old})
    assert refused.value.status_code == 412 and "five minutes" in refused.value.message

    # Inside the five minutes a repeat is recognised only with the first-sent time it was first sent with.
    headers = {"Repeatability-Request-ID": str(uuid.uuid4()), "Repeatability-First-Sent": formatdate(usegmt=True)}
    with sdk(whatsapp) as client:
        client.send(content, headers=headers)
        earlier = format_datetime(datetime.now(timezone.utc) - timedelta(minutes=1), usegmt=True)
        with pytest.raises(HttpResponseError) as mismatched:
            client.send(content, headers={**headers, "Repeatability-First-Sent": earlier})
    assert mismatched.value.status_code == 400
    assert [m["content"] for m in whatsapp.outbox(phone)] == ["too late"]


def test_a_reply_held_for_longer_than_acs_tracks_a_request_reaches_the_customer(whatsapp: WhatsAppStack) -> None:
    phone = new_number()
    day_ago = (datetime.now(timezone.utc) - timedelta(hours=25)).isoformat()
    whatsapp.inbound(phone, "my lights are out", receivedTimestamp=day_ago)  # outside the window: held
    [held] = [m for m in whatsapp.session(phone).messages if m.status is Delivery.HELD]

    def decided_long_ago(customer: Customer) -> None:
        [session] = [s for s in customer.sessions.values() if s.channel is Channel.WHATSAPP]
        message = session.message(key=held.key)
        assert message is not None
        message.at = delivery.iso(datetime.now(timezone.utc) - LONG_AGO)

    backdate(whatsapp.data_dir, phone, decided_long_ago)
    whatsapp.inbound(phone, "ok, I'm here")  # the window reopens: the held reply goes out

    assert whatsapp.texts(phone) == [held.text]
    released = whatsapp.session(phone).message(key=held.key)
    assert released is not None and released.status is not Delivery.FAILED, released
    assert released.message_id and not released.error


@pytest.fixture(scope="module")
def reminding(local_host_factory: Callable[..., LocalHost], tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[WhatsAppStack]:
    """A host whose handoffs remind after a few seconds (and expire long after)."""
    data_dir = tmp_path_factory.mktemp("whatsapp-reminders")
    host = local_host_factory(SWITCHBOARD_DATA_DIR=str(data_dir), ACS_ACCESS_KEY=ACCESS_KEY,
                              WHATSAPP_CHANNEL_ID=CHANNEL_ID, HANDOFF_REMIND_AFTER_SECONDS=str(REMIND_AFTER),
                              HANDOFF_EXPIRE_AFTER_SECONDS="120")
    assert host.acs_url is not None
    with httpx.Client(timeout=60) as client:
        yield WhatsAppStack(host, host.acs_url, data_dir, client)


async def test_a_handoff_reminder_sent_ten_minutes_after_the_start_reaches_the_customer(
    reminding: WhatsAppStack,
) -> None:
    phone = f"+1777{uuid.uuid4().int % 10**7:07d}"
    # The caller's side, as the media gateway runs it: the core on the host's store, then POST /api/handoffs.
    store = SqliteCustomerStore(reminding.data_dir / "customers.sqlite3")
    conversation = Conversation(load_scenario("utilities"), store, InProcessSessionState(), OfflinePolicy())
    session_id = new_id("call")
    opened = await conversation.open_for_identity(Channel.VOICE, session_id, Identity(IdentityKind.PHONE, phone))
    customer_id = opened.customer.customer_id
    await store.close()
    control = TokenSigner(load_secret("", reminding.data_dir)).issue("call-control", 600, sid=session_id,
                                                                     cid=customer_id)
    started = reminding.client.post(f"{reminding.host.url}/api/handoffs",
                                    headers={"Authorization": f"Bearer {control}"},
                                    json={"customer_id": customer_id, "session_id": session_id,
                                          "to_channel": "whatsapp"})
    assert started.status_code == 202, started.text

    def templates() -> list[str]:
        return [m["template"] for m in reminding.outbox(phone) if m["kind"] == "template"]

    assert eventually(lambda: templates() == ["switchboard_handoff_invite"], timeout=REMIND_AFTER - 2)

    def started_long_ago(customer: Customer) -> None:
        assert customer.handoff is not None
        customer.handoff.started_at = delivery.iso(datetime.now(timezone.utc) - LONG_AGO)

    await asyncio.to_thread(backdate, reminding.data_dir, phone, started_long_ago)
    eventually(lambda: len(templates()) == 2, timeout=REMIND_AFTER + 30)
    assert templates() == ["switchboard_handoff_invite", "switchboard_handoff_reminder"]


def test_a_first_sent_time_is_kept_only_while_acs_still_tracks_it() -> None:
    from shared.messenger.repeatability import first_sent

    now = datetime(2025, 6, 1, 12, tzinfo=timezone.utc)
    assert first_sent(now - timedelta(minutes=3), now) == now - timedelta(minutes=3)  # a redelivery: same time
    assert first_sent(now - timedelta(minutes=4, seconds=30), now) == now  # too close to the five minutes
    assert first_sent(now - timedelta(hours=2), now) == now  # a held reply released later
    assert first_sent(now + timedelta(minutes=10), now) == now  # a clock far ahead is not trusted
    assert first_sent(datetime(2025, 6, 1, 11, 58), now) == datetime(2025, 6, 1, 11, 58, tzinfo=timezone.utc)
