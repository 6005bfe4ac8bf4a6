"""A real `python -m local` as the SMS and WhatsApp tests drive it: the customer's messages go through the ACS
emulator (which posts them to the host's Event Grid trigger), what the system sends is read from the emulator's
outbox for the channel, and the record straight from the host's SQLite file."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import httpx

from shared.models import Channel, ChannelSession, Customer
from tests.peers.host_records import customer_by_phone, only_session
from tests.peers.local_host import LocalHost


@dataclass
class ChannelStack:
    """The running host for one channel; a subclass names the channel, its Event Grid function and its outbox."""

    channel: ClassVar[Channel]
    function: ClassVar[str]  # the Event Grid trigger the channel's events go to
    outbox_path: ClassVar[str]  # where the emulator lists what was sent on the channel

    host: LocalHost
    acs_url: str
    data_dir: Path
    client: httpx.Client

    @property
    def webhook(self) -> str:
        return f"{self.host.url}/runtime/webhooks/EventGrid?functionName={self.function}"

    def post_events(self, events: list[dict[str, Any]]) -> httpx.Response:
        """POST a batch straight to the Event Grid trigger, as Event Grid does."""
        return self.client.post(self.webhook, json=events, headers={"aeg-event-type": "Notification"})

    def outbox(self, phone: str) -> list[dict[str, Any]]:
        response = self.client.get(f"{self.acs_url}{self.outbox_path}", params={"to": phone})
        assert response.status_code == 200, response.text
        return response.json()

    def customer(self, phone: str) -> Customer | None:
        return asyncio.run(customer_by_phone(self.data_dir, phone))

    def session(self, phone: str) -> ChannelSession:
        """The customer's one session on this channel."""
        return asyncio.run(only_session(self.data_dir, phone, self.channel))
