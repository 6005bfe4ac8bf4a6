"""A real `python -m local` (Functions host + ACS emulator) for the SMS tests, and a customer's phone on it.

The host is offline (SQLite under its own data dir, offline policy) with a known ACS access key, so tests can also
sign requests to the emulator with the real SDK. Texts reach the host the way Event Grid delivers them (the emulator
posts SMSReceived to the Event Grid webhook); what the system texts back is read from the emulator's SMS outbox, and
the record straight from the host's SQLite file.
"""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import httpx
import pytest

from local.acs.sms import SMS_NUMBER
from shared.models import Channel
from tests.peers.channel_stack import ChannelStack
from tests.peers.local_host import LocalHost
from tests.waiting import eventually as wait_until

ACCESS_KEY = base64.b64encode(b"switchboard-sms-tests-access-key").decode()
JORDAN = "+15555550100"  # a demo account holder: account 100200300, 123 Oak St, where outage OUT-4471 is
eventually = partial(wait_until, timeout=30)  # a loaded CI machine runs the host, the engine and the emulator


def new_number() -> str:
    """A phone number no other test uses (and no demo account holds)."""
    return f"+1666{uuid.uuid4().int % 10**7:07d}"


def code_in(text: str) -> str | None:
    found = re.match(r"(\d{6}) is your ", text)
    return found.group(1) if found else None


@dataclass
class SmsStack(ChannelStack):
    channel = Channel.SMS
    function = "sms_events"
    outbox_path = "/_emulator/sms"

    def url(self, path: str) -> str:
        return f"{self.host.url}{path}"

    def send(self, phone: str, text: str, **fields: Any) -> dict[str, Any]:
        """The customer texts our number (through the emulator, which posts the event to the host)."""
        response = self.client.post(f"{self.acs_url}/_emulator/sms/inbound", json={"from": phone, "text": text,
                                                                                     **fields})
        assert response.status_code == 200, response.text
        return response.json()

    def text(self, phone: str, text: str) -> list[str]:
        """The customer texts; returns what came back for it (the host answers before Event Grid's delivery does)."""
        before = len(self.outbox(phone))
        answer = self.send(phone, text)
        assert answer["status"] == 202, answer
        return [t["message"] for t in self.outbox(phone)[before:]]

    def texts(self, phone: str) -> list[str]:
        return [t["message"] for t in self.outbox(phone)]

    def logs(self) -> str:
        return self.host.stdout() + self.host.stderr()


# Each module gets a host of its own: a host remembers an outage declared restored (and says so from then on), so a
# module that reports the demo outage as active must not follow one that ended it.
@pytest.fixture(scope="module")
def sms(local_host_factory: Callable[..., LocalHost], tmp_path_factory: pytest.TempPathFactory) -> Iterator[SmsStack]:
    data_dir = tmp_path_factory.mktemp("sms-data")
    host = local_host_factory(SWITCHBOARD_DATA_DIR=str(data_dir), ACS_ACCESS_KEY=ACCESS_KEY, ACS_SMS_FROM=SMS_NUMBER,
                              LOG_LEVEL="INFO")
    assert host.acs_url is not None
    with httpx.Client(timeout=60) as client:
        client.get(f"{host.url}/api/ops/queue").raise_for_status()  # the app seeds its demo customers on first use
        yield SmsStack(host, host.acs_url, data_dir, client)
    host.stop()
