"""A real `python -m local` (Functions host, its Durable engine, the ACS emulator) for the notification tests.

Customers reach the host the way they would: texts and WhatsApp messages through the emulator, which posts the
events to the host. What the system sends them is read from the emulator's outboxes, and the record straight from
the host's SQLite file.
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from local.acs.sms import SMS_NUMBER
from shared.models import ChannelSession, Customer, Identity, IdentityKind
from shared.stores.embedded_customers import SqliteCustomerStore
from tests.peers.host_records import customer_by_phone, read_customers
from tests.peers.local_host import LocalHost
from tests.waiting import eventually as wait_until

ACCESS_KEY = base64.b64encode(b"switchboard-notification-tests-key").decode()
eventually = partial(wait_until, timeout=30)  # a loaded CI machine runs the host, the engine and the emulator
RESTORED = "power is back on"
T = TypeVar("T")


def new_number() -> str:
    """A phone number no other test uses (and no demo account holds)."""
    return f"+1667{uuid.uuid4().int % 10**7:07d}"


@dataclass
class Stack:
    host: LocalHost
    data_dir: Path
    client: httpx.Client

    @property
    def acs(self) -> str:
        assert self.host.acs_url is not None
        return self.host.acs_url

    def text(self, phone: str, text: str) -> None:
        """The customer texts our number."""
        answer = self.client.post(f"{self.acs}/_emulator/sms/inbound", json={"from": phone, "text": text})
        assert answer.status_code == 200 and answer.json()["status"] == 202, answer.text

    def whatsapp(self, phone: str, text: str, **fields: Any) -> None:
        """The customer writes on WhatsApp."""
        answer = self.client.post(f"{self.acs}/_emulator/inbound", json={"from": phone, "text": text, **fields})
        assert answer.status_code == 200, answer.text

    def sms_outbox(self, phone: str) -> list[str]:
        response = self.client.get(f"{self.acs}/_emulator/sms", params={"to": phone})
        response.raise_for_status()
        return [t["message"] for t in response.json()]

    def whatsapp_outbox(self, phone: str) -> list[dict[str, Any]]:
        response = self.client.get(f"{self.acs}/_emulator/messages", params={"to": phone})
        response.raise_for_status()
        return response.json()

    def whatsapp_texts(self, phone: str) -> list[str]:
        return [m["content"] for m in self.whatsapp_outbox(phone) if m["kind"] == "text"]

    def restore(self, outage: str) -> httpx.Response:
        return self.client.post(f"{self.host.url}/api/ops/outages/{outage}/restored")

    def customer(self, phone: str) -> Customer | None:
        return asyncio.run(customer_by_phone(self.data_dir, phone))

    def webchat_customer(self, session_id: str) -> Customer:
        """The record of the customer on this web chat session (an anonymous chat holds its session's identity)."""
        return self._read(lambda store: store.find_by_identity(Identity(IdentityKind.WEBCHAT, session_id)))

    def session(self, customer_id: str, session_id: str) -> ChannelSession:
        """A session with its transcript."""
        return self._read(lambda store: store.get_session(customer_id, session_id))

    def _read(self, read: Callable[[SqliteCustomerStore], Awaitable[T]]) -> T:
        found = asyncio.run(read_customers(self.data_dir, read))
        assert found is not None
        return found

    def promise(self, phone: str, kind: str) -> dict[str, Any] | None:
        customer = self.customer(phone)
        return next((p for p in reversed(customer.promises) if p["kind"] == kind), None) if customer else None


def start_stack(factory: Callable[..., LocalHost], data_dir: Path, **settings: str) -> Iterator[Stack]:
    host = factory(**{"SWITCHBOARD_DATA_DIR": str(data_dir), "ACS_ACCESS_KEY": ACCESS_KEY, "ACS_SMS_FROM": SMS_NUMBER,
                      "LOG_LEVEL": "INFO", **settings})
    with httpx.Client(timeout=60) as client:
        client.get(f"{host.url}/api/ops/queue").raise_for_status()  # the app seeds its demo customers on first use
        yield Stack(host, data_dir, client)
    host.stop()


# A host per module: a host remembers an outage declared restored, and says so from then on.
@pytest.fixture(scope="module")
def stack(local_host_factory: Callable[..., LocalHost], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from start_stack(local_host_factory, tmp_path_factory.mktemp("notifications-data"))
