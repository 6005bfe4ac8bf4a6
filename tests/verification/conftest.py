"""The verification rig: the real conversation core on SQLite, a real SessionState (in-process, or a Redis of the
test's own), the offline policy, and codes that really go out by WhatsApp through the ACS SDK to an ACS emulator
in this process, where a test reads them back as the account holder would from their phone.

Every test runs on both session states: attempts, locks, codes and the flood cap live there, so both must keep them
the same way. Each test gets its own Redis, so one test's wrong answers never lock another's account holder.
"""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from local.acs.messages import CHANNEL_ID
from local.acs.server import EmulatorService
from shared.bootstrap import seed_demo_customers
from shared.conversation import Conversation, TurnOutcome
from shared.messenger import build_messenger
from shared.models import Channel, ChannelSession, Customer, Identity, IdentityKind, new_id
from shared.policies.offline import OfflinePolicy
from shared.scenario import Scenario, load_scenario
from shared.settings import Settings
from shared.stores.azure_redis import RedisSessionState
from shared.stores.base import SessionState
from shared.stores.embedded_customers import SqliteCustomerStore
from shared.stores.embedded_state import InProcessSessionState
from shared.verification import Verifier, whatsapp_code_sender
from tests.peers.whatsapp_emulator import whatsapp_emulator
from tests.verifying import codes_sent_async

ACCESS_KEY = base64.b64encode(b"switchboard-verification-tests!!").decode()
UTILITIES = Path(__file__).resolve().parents[2] / "scenarios" / "utilities"
JORDAN, SAM = "+15555550100", "+15555550111"  # numbers on record in scenarios/utilities/data.yaml


@dataclass
class Chat:
    """One customer's session, as a channel drives it; `said` collects every reply it was given."""

    rig: Rig
    session_id: str
    customer_id: str
    greeting: str

    async def say(self, text: str) -> str:
        outcome: TurnOutcome = await self.rig.conversation.turn(self.session_id, self.customer_id, text)
        return " ".join(r.text for r in outcome.replies)

    async def record(self) -> Customer:
        return await self.rig.customers.get(self.customer_id)

    async def audit(self) -> list[dict[str, Any]]:
        """The customer's audit as the desk reads it: every listed session's entries, oldest first."""
        return await self.rig.customers.audit(self.customer_id)

    async def session(self) -> ChannelSession:
        return await self.rig.conversation.transcript(self.session_id, self.customer_id)


@dataclass
class Rig:
    scenario: Scenario
    conversation: Conversation
    customers: SqliteCustomerStore
    state: SessionState
    acs: httpx.AsyncClient
    acs_url: str

    async def web_chat(self) -> Chat:
        """A new anonymous web chat visitor: nobody knows who they are."""
        session_id = new_id("web")
        opened = await self.conversation.open_for_identity(Channel.WEBCHAT, session_id,
                                                          Identity(IdentityKind.WEBCHAT, session_id))
        return Chat(self, session_id, opened.customer.customer_id, " ".join(r.text for r in opened.replies))

    async def from_phone(self, channel: Channel, phone: str) -> Chat:
        """A caller (the caller ID) or a WhatsApp sender: the channel vouches for the number as far as it can."""
        session_id = new_id(channel.value[:3])
        opened = await self.conversation.open_for_identity(channel, session_id, Identity(IdentityKind.PHONE, phone))
        return Chat(self, session_id, opened.customer.customer_id, " ".join(r.text for r in opened.replies))

    async def codes(self, phone: str) -> list[str]:
        """The codes that reached `phone`, oldest first: what its holder reads on their phone."""
        return await codes_sent_async(self.acs, self.acs_url, phone, self.scenario.name)

    async def code(self, phone: str) -> str:
        codes = await self.codes(phone)
        assert codes, f"no code reached {phone}"
        return codes[-1]


def scenario_copy(tmp_path: Path, **verification: float) -> Scenario:
    """The utilities scenario with other verification numbers (a lock of seconds, say), loaded from a copy."""
    folder = tmp_path / f"utilities-{new_id('copy')}"
    folder.mkdir()
    for name in ("data.yaml", "tools.py"):
        (folder / name).write_text((UTILITIES / name).read_text())
    text = (UTILITIES / "scenario.yaml").read_text()
    for key, value in verification.items():
        before = f"\n  {key}: "
        start = text.index(before) + len(before)
        text = text[:start] + str(value) + text[text.index("\n", start):]
    (folder / "scenario.yaml").write_text(text)
    return load_scenario(str(folder))


@pytest.fixture(params=["in-process", "redis"])
def state(request: pytest.FixtureRequest) -> Iterator[SessionState]:
    if request.param == "in-process":
        yield InProcessSessionState()
        return
    server = request.getfixturevalue("redis_server")  # a Redis of this test's own: nothing left from another
    yield RedisSessionState(server.url)


@pytest.fixture
async def emulator() -> AsyncIterator[EmulatorService]:
    async with whatsapp_emulator(ACCESS_KEY) as service:
        yield service


@pytest.fixture
async def make_rig(tmp_path: Path, state: SessionState, emulator: EmulatorService) -> AsyncIterator:
    """Build the rig for a scenario (default utilities); `codes=False`: no way to send a code (knowledge only);
    `clock`: the time codes expire by (a test moves it on rather than wait five minutes)."""
    built: list[tuple[SqliteCustomerStore, object]] = []
    settings = Settings.from_env({"ACS_ENDPOINT": emulator.url, "ACS_ACCESS_KEY": ACCESS_KEY,
                                  "WHATSAPP_CHANNEL_ID": CHANNEL_ID, "SWITCHBOARD_DATA_DIR": str(tmp_path)})
    acs = httpx.AsyncClient(timeout=20)

    async def make(scenario: Scenario | None = None, *, codes: bool = True,
                   clock: Callable[[], float] = time.time) -> Rig:
        scenario = scenario or load_scenario("utilities")
        customers = SqliteCustomerStore(tmp_path / f"customers-{len(built)}.sqlite3")
        await seed_demo_customers(customers, scenario)
        messenger = build_messenger(settings)
        built.append((customers, messenger))
        verifier = Verifier(scenario, state, whatsapp_code_sender(scenario, messenger) if codes else None,
                            clock=clock)
        conversation = Conversation(scenario, customers, state, OfflinePolicy(), verifier=verifier)
        return Rig(scenario, conversation, customers, state, acs, emulator.url)

    yield make
    for customers, messenger in built:
        await customers.close()
        await messenger.close()  # type: ignore[attr-defined]
    await acs.aclose()
    await state.close()


@pytest.fixture
async def rig(make_rig) -> Rig:  # type: ignore[no-untyped-def]
    return await make_rig()
