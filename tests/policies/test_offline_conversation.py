"""The offline policy holds a conversation (issue 15): follow-ups, acknowledgements, answers to the agent's own
question, and a channel switch asked for in the insurance scenario.

Each drives the real conversation core (SQLite customer store, in-process session state, the scenario as shipped)
the way a web chat or a call would, and asserts what the customer would read or hear.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from shared.bootstrap import seed_demo_customers
from shared.conversation import Conversation, TurnOutcome
from shared.models import Channel, Identity, IdentityKind, new_id
from shared.policies.offline import OfflinePolicy
from shared.scenario import load_scenario
from shared.stores.embedded_customers import SqliteCustomerStore
from shared.stores.embedded_state import InProcessSessionState
from tests.verifying import ASKS_TO_VERIFY, CONFIRMED, knowledge_answers

OUTAGE_ANSWER = "crews expect power back by 4:00 PM"


class Chat:
    def __init__(self, conversation: Conversation, session_id: str, customer_id: str) -> None:
        self.conversation, self.session_id, self.customer_id = conversation, session_id, customer_id
        self.outcome: TurnOutcome | None = None

    async def say(self, text: str) -> str:
        self.outcome = await self.conversation.turn(self.session_id, self.customer_id, text)
        return " ".join(r.text for r in self.outcome.replies)

    @property
    def agent(self) -> str:
        assert self.outcome is not None
        return self.outcome.agent


@pytest.fixture
async def make_chat(tmp_path: Path) -> AsyncIterator:
    stores: list[SqliteCustomerStore] = []

    async def make(scenario: str = "utilities", channel: Channel = Channel.WEBCHAT, phone: str | None = None) -> Chat:
        spec = load_scenario(scenario)
        store = SqliteCustomerStore(tmp_path / f"customers-{len(stores)}.sqlite3")
        stores.append(store)
        await seed_demo_customers(store, spec)
        conversation = Conversation(spec, store, InProcessSessionState(), OfflinePolicy())
        session_id = new_id("web")
        identity = Identity(IdentityKind.PHONE, phone) if phone else Identity(IdentityKind.WEBCHAT, session_id)
        opened = await conversation.open_for_identity(channel, session_id, identity)
        return Chat(conversation, session_id, opened.customer.customer_id)

    yield make
    for store in stores:
        await store.close()


async def test_how_long_after_the_outage_answer_is_answered_from_the_outage(make_chat) -> None:
    chat = await make_chat()
    await chat.say("there is no power on my street")
    assert OUTAGE_ANSWER in await chat.say("123 Oak St")

    reply = await chat.say("how long until it comes back?")

    assert "4:00 PM" in reply, reply
    assert "anything else" not in reply.lower()
    assert OUTAGE_ANSWER not in reply  # the short answer, not the outage read out again
    assert chat.agent == "OutageAgent"


async def test_a_caller_asking_how_long_hears_the_eta(make_chat) -> None:
    chat = await make_chat(channel=Channel.VOICE, phone="+15555550100")  # caller ID: the account is known
    assert OUTAGE_ANSWER in await chat.say("there's no power on my street")
    assert "4:00 PM" in await chat.say("how long will it take?")


async def test_a_phone_number_after_the_outage_answer_is_acknowledged(make_chat) -> None:
    chat = await make_chat()
    await chat.say("my power is out")
    assert OUTAGE_ANSWER in await chat.say("123 Oak St, Springfield")

    reply = await chat.say("my phone number is 555 555 0100")

    assert "noted" in reply, reply
    assert "outage" not in reply and not ASKS_TO_VERIFY.search(reply)
    record = await chat.conversation.customers.get(chat.customer_id)
    assert record.collected["phone_number"] == "+15555550100"


async def test_a_caller_repeating_their_number_is_acknowledged_not_read_the_outage_again(make_chat) -> None:
    chat = await make_chat(channel=Channel.VOICE, phone="+15555550100")
    assert OUTAGE_ANSWER in await chat.say("there's no power on my street")
    reply = await chat.say("my phone number is 555 555 0100")
    assert "noted" in reply and "outage" not in reply, reply


async def test_a_corrected_address_is_checked_again(make_chat) -> None:
    chat = await make_chat()
    await chat.say("my power is out")
    assert "don't see a reported outage at 77 Elm Ave" in await chat.say("77 Elm Ave")
    assert OUTAGE_ANSWER in await chat.say("sorry, no: 123 Oak St, not Elm")


async def test_the_policy_number_answers_the_claims_agent_and_stays_in_claims(make_chat) -> None:
    chat = await make_chat("insurance")
    assert "policy number" in await chat.say("I was in a car accident")
    assert chat.agent == "ClaimsAgent"

    reply = await chat.say("my policy number is LM-482913")

    assert chat.agent == "ClaimsAgent", reply
    assert "Policy Services" not in reply
    assert "When did it happen?" in reply  # the claim's next question: the policy number was taken
    reply = await chat.say("yesterday")
    assert ASKS_TO_VERIFY.search(reply)
    reply = await chat.say(knowledge_answers("LM-482913", "insurance"))
    assert reply.startswith(CONFIRMED) and "opened claim CLM-" in reply and "car accident" in reply


async def test_whatsapp_in_insurance_asks_for_a_number_then_switches(make_chat) -> None:
    chat = await make_chat("insurance")
    await chat.say("I need to file a claim")

    reply = await chat.say("can I switch to WhatsApp?")
    assert "can't move" not in reply and "number" in reply, reply

    assert "ending 0142" in await chat.say("it's 555 555 0142")
    await chat.say("yes please")
    assert chat.outcome is not None and chat.outcome.switch_to == "whatsapp"


async def test_an_insurance_caller_switches_to_whatsapp_at_once(make_chat) -> None:
    chat = await make_chat("insurance", Channel.VOICE, "+15555550200")
    await chat.say("I need to file a claim")
    reply = await chat.say("can I switch to WhatsApp?")
    assert "sending you a WhatsApp message" in reply, reply
    assert chat.outcome is not None and chat.outcome.switch_to == "whatsapp"


async def test_a_policy_number_stays_with_claims_when_nothing_is_pending(make_chat) -> None:
    # As after a move to WhatsApp: the question was asked in another session, so this one waits on nothing
    # (the session state below is what a new session starts with).
    chat = await make_chat("insurance", Channel.WHATSAPP, "+15555550142")
    await chat.say("I need to file a claim")
    hot = await chat.conversation.state.get(f"session:{chat.session_id}")
    await chat.conversation.state.put(f"session:{chat.session_id}", {**hot, "scratch": {}}, 60)

    reply = await chat.say("my policy number is LM-482913")

    assert chat.agent == "ClaimsAgent" and "Policy Services" not in reply, reply


async def test_an_account_number_with_a_billing_question_still_goes_to_billing(make_chat) -> None:
    chat = await make_chat()
    await chat.say("my power is out")
    await chat.say("my account number is 100200300, and what's my bill?")
    assert chat.agent == "BillingAgent"


async def test_policy_and_the_number_answers_claims(make_chat) -> None:
    chat = await make_chat("insurance")
    await chat.say("I was in a car accident")
    reply = await chat.say("policy LM 482913")
    assert chat.agent == "ClaimsAgent" and "When did it happen?" in reply, reply


# The defects the journeys found (docs/evals.md, "Defects fixed"): each test failed before its fix.


async def test_a_number_to_text_on_names_no_account(make_chat) -> None:
    chat = await make_chat()
    await chat.say("my power is out")
    assert OUTAGE_ANSWER in await chat.say("123 Oak St")
    assert "ending 0177" in await chat.say("you can text me on 555 555 0177")
    await chat.say("no thanks")

    reply = await chat.say("how long will it take?")

    assert "4:00 PM" in reply and not ASKS_TO_VERIFY.search(reply), reply
    record = await chat.conversation.customers.get(chat.customer_id)
    assert record.collected["contact_number"] == "+15555550177" and "phone_number" not in record.collected


async def test_a_known_caller_correcting_the_address_hears_about_that_address(make_chat) -> None:
    chat = await make_chat(channel=Channel.VOICE, phone="+15555550100")
    assert "123 Oak St" in await chat.say("my power is out")

    reply = await chat.say("no, I'm not at home, I'm at 12 Lakeview Dr")

    assert "12 Lakeview Dr" in reply and "7:30 PM" in reply, reply
    assert "7:30 PM" in await chat.say("how long will it take?")


async def test_a_follow_up_asked_again_is_answered_in_other_words(make_chat) -> None:
    chat = await make_chat()
    await chat.say("my power is out")
    await chat.say("123 Oak St")
    first = await chat.say("how long will it take?")

    second = await chat.say("sorry, how long did you say?")

    assert "4:00 PM" in first and "4:00 PM" in second and first != second, second


@pytest.mark.parametrize("said", ["the basement flooded", "a pipe burst in the kitchen"])
async def test_the_incident_in_the_customers_words_is_taken(make_chat, said: str) -> None:
    chat = await make_chat("insurance")
    await chat.say("I need to file a claim")
    await chat.say("LM-771204")
    assert "When did it happen?" in await chat.say(said)
    await chat.say("yesterday")

    reply = await chat.say(knowledge_answers("LM-771204", "insurance"))

    assert "for the water damage yesterday" in reply and "on yesterday" not in reply, reply


async def test_today_is_a_day_for_a_visit(make_chat) -> None:
    chat = await make_chat(channel=Channel.WHATSAPP, phone="+15555550111")
    await chat.say("I need a technician to look at my meter")

    reply = await chat.say("today")

    assert "technician visit" in reply and "for today" in reply, reply
