"""A real `python -m local` (Functions host + ACS emulator) for the WhatsApp tests, and a customer's phone on it.

The host is offline (SQLite under its own data dir, offline policy) with a known ACS access key, so tests can also
sign requests to the emulator with the real SDK. The record is read straight from the host's SQLite file through
the store adapter: the same record the app writes, no HTTP surface in between.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from local.acs.messages import CHANNEL_ID
from shared.models import Channel
from tests.peers.channel_stack import ChannelStack
from tests.peers.local_host import LocalHost
from tests.verifying import CONFIRMED, sent_code

ACCESS_KEY = base64.b64encode(b"switchboard-whatsapp-tests-key!!").decode()
JORDAN = "+15555550100"  # a demo account holder: account 100200300, 123 Oak St


def new_number() -> str:
    """A phone number no other test uses (and no demo account holds)."""
    return f"+1444{uuid.uuid4().int % 10**7:07d}"


@dataclass
class WhatsAppStack(ChannelStack):
    channel = Channel.WHATSAPP
    function = "whatsapp_events"
    outbox_path = "/_emulator/messages"

    def inbound(self, phone: str, text: str | None = None, **fields: Any) -> dict[str, Any]:
        """The customer writes (through the emulator, which posts the event to the host); returns its answer."""
        body = {"from": phone, **({"text": text} if text is not None else {}), **fields}
        response = self.client.post(f"{self.acs_url}/_emulator/inbound", json=body)
        assert response.status_code == 200, response.text
        return response.json()

    def texts(self, phone: str) -> list[str]:
        return [m["content"] for m in self.outbox(phone) if m["kind"] == "text"]

    def verify(self, phone: str, holder: str) -> str:
        """Answer the agent's check from `phone` with the code sent to `holder`, the number on record, as its holder
        would; returns what followed the confirmation (the answer to the question asked before the check)."""
        before = len(self.texts(phone))
        self.inbound(phone, sent_code(self.acs_url, holder))
        replies = self.texts(phone)[before:]
        assert replies and replies[0] == CONFIRMED, replies
        return " ".join(replies[1:])

    def fault(self, status: int, count: int, **extra: Any) -> None:
        response = self.client.post(f"{self.acs_url}/_emulator/messages/faults",
                                    json={"status": status, "count": count, **extra})
        assert response.status_code == 200, response.text


@pytest.fixture(scope="session")
def whatsapp(local_host_factory: Callable[..., LocalHost], tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[WhatsAppStack]:
    data_dir = tmp_path_factory.mktemp("whatsapp-data")
    host = local_host_factory(
        SWITCHBOARD_DATA_DIR=str(data_dir), ACS_ACCESS_KEY=ACCESS_KEY, WHATSAPP_CHANNEL_ID=CHANNEL_ID
    )
    assert host.acs_url is not None
    with httpx.Client(timeout=60) as client:
        yield WhatsAppStack(host, host.acs_url, data_dir, client)
