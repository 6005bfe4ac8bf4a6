"""Races on the Foundry conversation: duplicate deliveries, bursts, an outage and processes that die mid-way.

Real local peers: the conversation core, a SQLite customer store, Redis session state (the session locks), the real
azure-ai-projects/openai SDKs, and for WhatsApp the ACS emulator in-process. Fakes only at network boundaries:
tests/peers/foundry_server.py stands in for the Foundry project, and two tests wrap the customer store to lose one
write after Foundry took something (the backlog cleared, a turn saved), as a process killed at that moment would.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import httpx
import pytest

import shared.policies.foundry as foundry_policy
from local.acs.messages import CHANNEL_ID
from local.acs.server import EmulatorService
from shared.bootstrap import Services, build_services
from shared.conversation import Conversation
from shared.foundry.agents import sync
from shared.foundry.client import build_foundry
from shared.models import Channel, Customer, Identity, IdentityKind
from shared.policies.foundry import FoundryPolicy
from shared.policies.offline import OfflinePolicy
from shared.scenario import load_scenario
from shared.settings import Settings
from shared.whatsapp.events import InboundMessage
from tests.peers.whatsapp_emulator import whatsapp_emulator
from tests.peers.foundry_server import FoundryTestServer

pytest_plugins = ["tests.peers.foundry_server"]

ACCESS_KEY = base64.b64encode(b"switchboard-foundry-races-key!!").decode()  # the emulator's, made up


def new_number() -> str:
    return f"+1444{uuid.uuid4().int % 10**7:07d}"


@pytest.fixture
async def emulator() -> AsyncIterator[EmulatorService]:
    async with whatsapp_emulator(ACCESS_KEY) as service:
        yield service


@pytest.fixture
async def services(foundry_server: FoundryTestServer, emulator: EmulatorService, redis_url: str, tmp_path: Path,
                   monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Services]:
    monkeypatch.setattr(foundry_policy, "RETRY_AFTER_SECONDS", 0.0)  # every turn tries Foundry: outages are short
    config = Settings.from_env({
        "AZURE_AI_PROJECT_ENDPOINT": foundry_server.endpoint, "SWITCHBOARD_DATA_DIR": str(tmp_path),
        "SESSION_STATE": "redis", "REDIS_URL": redis_url, "LLM_TIMEOUT_SECONDS": "5",
        "ACS_ENDPOINT": emulator.url, "ACS_ACCESS_KEY": ACCESS_KEY, "WHATSAPP_CHANNEL_ID": CHANNEL_ID,
    })
    foundry = build_foundry(config)
    await sync(foundry.project, load_scenario(config.scenario), config.foundry_agent_prefix,
               config.azure_openai_deployment)
    await foundry.close()
    built = await build_services(config)
    assert isinstance(built.policy, FoundryPolicy)
    yield built
    await built.close()


def said_in(foundry_server: FoundryTestServer, conversation: str, role: str) -> list[str]:
    """What the Foundry conversation holds from one role, in order."""
    return [_text(i) for i in foundry_server.conversations[conversation]
            if i["type"] == "message" and i.get("role") == role]


def _text(item: dict[str, Any]) -> str:
    content = item.get("content")
    return content if isinstance(content, str) else "".join(p.get("text", "") for p in content or [])


async def conversation_of(services: Services, customer_id: str) -> str:
    await drain(services)
    conversation = (await services.customers.get(customer_id)).foundry_thread_id
    assert conversation is not None
    return conversation


async def drain(services: Services) -> None:
    policy = services.policy
    assert isinstance(policy, FoundryPolicy)
    await policy.drain()


async def web_chat(services: Services) -> tuple[str, str]:
    session_id = f"web_{uuid.uuid4().hex[:8]}"
    opened = await services.conversation.open_for_identity(
        Channel.WEBCHAT, session_id, Identity(IdentityKind.WEBCHAT, session_id))
    return session_id, opened.customer.customer_id


async def web_chat_said_hi(services: Services, foundry_server: FoundryTestServer) -> tuple[str, str]:
    """A web chat whose first turn ("hi") Foundry answered: the conversation exists."""
    session_id, customer_id = await web_chat(services)
    foundry_server.reply_text("Hello, how can I help?")
    await say(services.conversation, session_id, customer_id, "hi")
    return session_id, customer_id


async def say(conversation: Conversation, session_id: str, customer_id: str, text: str, key: str | None = None
              ) -> str:
    outcome = await conversation.turn(session_id, customer_id, text, key=key)
    return " ".join(r.text for r in outcome.replies)


# 1. One message delivered twice at once ----------------------------------------------------------------------------

async def test_a_whatsapp_message_redelivered_at_once_reaches_foundry_once_and_is_answered_once(
    services: Services, foundry_server: FoundryTestServer, emulator: EmulatorService
) -> None:
    phone = new_number()
    async with httpx.AsyncClient(timeout=20) as acs:
        built = await acs.post(f"{emulator.url}/_emulator/inbound",
                               json={"from": phone, "text": "is there an outage on my street?", "deliver": False})
        event = built.json()["event"]
        message = InboundMessage(message_id=event["data"]["messageId"], phone=phone, channel_id=CHANNEL_ID,
                                 kind="text", text="is there an outage on my street?", detail="",
                                 received_at=datetime.now(timezone.utc))
        # The answer takes a moment, so the second delivery arrives while the first is still with Foundry.
        foundry_server.reply_text("Yes, crews are on Oak Street until 4 PM.", delay=0.5)
        await asyncio.gather(services.whatsapp.handle(message), services.whatsapp.handle(message))
        await drain(services)
        texts = [m["content"] for m in (await acs.get(f"{emulator.url}/_emulator/messages",
                                                     params={"to": phone})).json() if m["kind"] == "text"]

    assert texts == ["Yes, crews are on Oak Street until 4 PM."]  # one reply on the customer's phone
    assert len(foundry_server.responses) == 1
    customer = await services.customers.find_by_identity(Identity(IdentityKind.PHONE, phone))
    assert customer is not None
    conversation = await conversation_of(services, customer.customer_id)
    assert said_in(foundry_server, conversation, "user") == ["is there an outage on my street?"]


async def test_two_web_chat_posts_with_one_idempotency_key_at_once_reach_foundry_once(
    services: Services, foundry_server: FoundryTestServer
) -> None:
    session_id, customer_id = await web_chat(services)
    foundry_server.reply_text("Your bill is due on the 15th.", delay=0.5)
    first, second = await asyncio.gather(
        say(services.conversation, session_id, customer_id, "when is my bill due?", key="k-1"),
        say(services.conversation, session_id, customer_id, "when is my bill due?", key="k-1"),
    )
    assert first == second == "Your bill is due on the 15th."  # the retry gets the same answer, not a second one
    assert len(foundry_server.responses) == 1
    conversation = await conversation_of(services, customer_id)
    assert said_in(foundry_server, conversation, "user") == ["when is my bill due?"]


# 2. A burst of distinct messages -------------------------------------------------------------------------------------

async def test_a_burst_of_messages_reaches_foundry_once_each_in_the_order_they_were_answered(
    services: Services, foundry_server: FoundryTestServer
) -> None:
    session_id, customer_id = await web_chat(services)
    words = [f"message {n} about my bill" for n in range(6)]
    for n in range(len(words)):
        foundry_server.reply_text(f"Answer {n}.", delay=0.05)
    await asyncio.gather(*(say(services.conversation, session_id, customer_id, w) for w in words))

    record = await services.customers.get(customer_id)
    transcript = record.sessions[session_id].turns
    answered = [t.text for t in transcript if t.role == "customer"]
    replies = [t.text for t in transcript if t.role == "agent"][1:]  # after the greeting
    assert sorted(answered) == sorted(words)  # none lost, none twice
    conversation = await conversation_of(services, customer_id)
    assert said_in(foundry_server, conversation, "user") == answered
    # The greeting seeded the conversation when it was made (the first turn); then each answer after its message.
    assert said_in(foundry_server, conversation, "assistant")[1:] == replies == [f"Answer {n}." for n in range(6)]


# 3. An outage, then Foundry back -------------------------------------------------------------------------------------

async def missed_turns(services: Services, foundry_server: FoundryTestServer, session_id: str, customer_id: str,
                       texts: list[str]) -> list[str]:
    """Turns answered while Foundry cannot be reached: returns the fallback's replies."""
    foundry_server.unreachable = True
    replies = [await say(services.conversation, session_id, customer_id, text) for text in texts]
    await drain(services)
    foundry_server.unreachable = False
    return replies


async def test_turns_missed_in_an_outage_reach_foundry_once_in_order_with_the_next_answered_turn(
    services: Services, foundry_server: FoundryTestServer
) -> None:
    session_id, customer_id = await web_chat_said_hi(services, foundry_server)
    missed = ["there is no power on my street", "it went off an hour ago"]
    replies = await missed_turns(services, foundry_server, session_id, customer_id, missed)
    assert all(replies)  # the fallback answered each
    kept = (await services.customers.get(customer_id)).foundry_backlog
    assert [i["content"] for i in kept] == [missed[0], replies[0], missed[1], replies[1]]

    foundry_server.reply_text("Crews expect power back by 4 PM.")
    assert "4 PM" in await say(services.conversation, session_id, customer_id, "when will it be back?")
    foundry_server.reply_text("You're welcome.")
    await say(services.conversation, session_id, customer_id, "thanks")

    conversation = await conversation_of(services, customer_id)
    assert said_in(foundry_server, conversation, "user") == ["hi", *missed, "when will it be back?", "thanks"]
    assert (await services.customers.get(customer_id)).foundry_backlog == []


async def test_two_turns_racing_right_after_an_outage_send_the_backlog_once(
    services: Services, foundry_server: FoundryTestServer
) -> None:
    # The customer is on web chat and WhatsApp at once (two sessions, two locks: the turns really overlap).
    session_id, customer_id = await web_chat_said_hi(services, foundry_server)
    await services.conversation.open(Channel.WHATSAPP, "wa_race", customer_id, greet=False)
    missed = ["my meter is beeping"]
    await missed_turns(services, foundry_server, session_id, customer_id, missed)

    foundry_server.reply_text("Let me check your meter.", delay=0.3)
    foundry_server.reply_text("A technician can come tomorrow.", delay=0.3)
    await asyncio.gather(
        say(services.conversation, session_id, customer_id, "is it dangerous?"),
        say(services.conversation, "wa_race", customer_id, "can someone come out?"),
    )

    conversation = await conversation_of(services, customer_id)
    users = said_in(foundry_server, conversation, "user")
    assert users.count("my meter is beeping") == 1, users
    assert sorted(users[2:]) == sorted(["is it dangerous?", "can someone come out?"])
    assert (await services.customers.get(customer_id)).foundry_backlog == []


class DyingStore:
    """The customer store of a process killed at one moment: the first write that `loses` (before, after) picks is
    lost, as a process dying before the record was saved would lose it; every other write goes through to the real
    SQLite store."""

    def __init__(self, store: Any, loses: Callable[[Customer, Customer], bool]) -> None:
        self._store = store
        self._loses = loses
        self.lost = 0

    async def update(self, customer_id: str, mutate: Callable[[Customer], Any]) -> Any:
        before = await self._store.get(customer_id)
        after = copy.deepcopy(before)
        mutate(after)
        if not self.lost and self._loses(before, after):
            self.lost += 1
            raise ConnectionError("the process died before the record was saved")
        return await self._store.update(customer_id, mutate)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def clears_the_backlog(before: Customer, after: Customer) -> bool:
    return len(after.foundry_backlog) < len(before.foundry_backlog)


async def test_a_process_killed_after_foundry_took_the_backlog_does_not_send_it_twice(
    services: Services, foundry_server: FoundryTestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    session_id, customer_id = await web_chat_said_hi(services, foundry_server)
    missed = ["I was charged twice this month"]
    await missed_turns(services, foundry_server, session_id, customer_id, missed)

    # This process sends the backlog with its turn, Foundry takes it, and the process dies before the record says so.
    dying = DyingStore(services.customers, clears_the_backlog)
    doomed = FoundryPolicy(services.settings, dying, OfflinePolicy())  # type: ignore[arg-type]
    doomed_core = Conversation(services.scenario, services.customers, services.state, doomed)
    foundry_server.reply_text("I can see the double charge.")
    await say(doomed_core, session_id, customer_id, "can you refund one?")
    await doomed.drain()
    assert dying.lost == 1
    assert (await services.customers.get(customer_id)).foundry_backlog  # still on the record

    # While its claim lasts, another process's turn does not send it again ...
    foundry_server.reply_text("The refund is on its way.")
    await say(services.conversation, session_id, customer_id, "how long will it take?")
    # ... and once the claim has run out, the next turn finds it in the conversation and only clears the record.
    monkeypatch.setattr(foundry_policy, "CLAIM_SECONDS", 0.0)
    await services.customers.update(customer_id, _expire_claims)
    foundry_server.reply_text("Three to five days.")
    await say(services.conversation, session_id, customer_id, "thanks, and when exactly?")

    conversation = await conversation_of(services, customer_id)
    users = said_in(foundry_server, conversation, "user")
    assert users.count("I was charged twice this month") == 1, users
    assert (await services.customers.get(customer_id)).foundry_backlog == []


def _expire_claims(customer: Customer) -> None:
    """Time passes: the dead process's claim on the backlog runs out (CLAIM_SECONDS, two minutes in production)."""
    customer.foundry_backlog = [{**i, "_claim_until": 0.0} for i in customer.foundry_backlog]


# 4. A host killed after Foundry answered, before the turn was saved ---------------------------------------------------

def saves_a_turn(session_id: str) -> Callable[[Customer, Customer], bool]:
    def saves(before: Customer, after: Customer) -> bool:
        return len(after.sessions[session_id].turns) > len(before.sessions[session_id].turns)
    return saves


async def test_a_turn_retried_after_its_host_died_unsaved_adds_nothing_to_foundry_and_gets_the_same_answer(
    services: Services, foundry_server: FoundryTestServer
) -> None:
    session_id, customer_id = await web_chat_said_hi(services, foundry_server)

    # Foundry answers the turn, then the host dies before the core saves it on the record: the web chat client got
    # no answer and retries with the same Idempotency-Key, on another host.
    dying = DyingStore(services.customers, saves_a_turn(session_id))
    doomed = FoundryPolicy(services.settings, dying, OfflinePolicy())  # type: ignore[arg-type]
    doomed_core = Conversation(services.scenario, dying, services.state, doomed)  # type: ignore[arg-type]
    foundry_server.reply_text("Your bill is due on the 15th.")
    foundry_server.reply_text("A second answer, written for the same question.")  # what a second request would get
    with pytest.raises(ConnectionError):
        await say(doomed_core, session_id, customer_id, "when is my bill due?", key="k-7")
    await doomed.drain()
    assert dying.lost == 1

    retried = await say(services.conversation, session_id, customer_id, "when is my bill due?", key="k-7")

    assert retried == "Your bill is due on the 15th."  # the answer Foundry gave, not a second one
    record = await services.customers.get(customer_id)
    asked = [t.text for t in record.sessions[session_id].turns if t.role == "customer"]
    assert asked == ["hi", "when is my bill due?"]
    conversation = await conversation_of(services, customer_id)
    assert said_in(foundry_server, conversation, "user") == ["hi", "when is my bill due?"]  # the words once
    assert said_in(foundry_server, conversation, "assistant")[-1] == "Your bill is due on the 15th."

    # The next message, even in the same words, is a new turn: it reaches Foundry and gets its own answer, and as a
    # first attempt it pays no check of the conversation's items (only a retry reads them).
    foundry_server.clear_script()
    foundry_server.reply_text("Still the 15th.")
    foundry_server.calls.clear()
    assert await say(services.conversation, session_id, customer_id, "when is my bill due?", key="k-8") == \
        "Still the 15th."
    assert "GET items" not in foundry_server.calls, foundry_server.calls
    assert said_in(foundry_server, conversation, "user") == ["hi", "when is my bill due?", "when is my bill due?"]
