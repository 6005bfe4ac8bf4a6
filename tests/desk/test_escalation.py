"""When the AI hands a customer to a person, and what the customer hears while they wait and after.

The conversation core runs as the channels run it (SQLite record store, in-process state, the offline policy, the
utilities scenario and its desk rules); the desk is driven the way the desk's routes drive it. Assertions are on
what the customer is told, what a person at the desk sees, and what the record keeps. The last test runs a real
voice-to-WhatsApp handoff through the local host and reads the supervisor's figures from the host's own state.
"""

from __future__ import annotations

import re
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import httpx
import pytest
import yaml

from shared.bootstrap import seed_demo_customers
from shared.conversation import DESK_PHRASES, Conversation
from shared.desk import AVAILABLE, Desk, DeskAgent
from shared.models import Channel, Customer, EscalationStatus, Identity, IdentityKind, new_id
from shared.policies.offline import OfflinePolicy
from shared.scenario import SCENARIOS_DIR, load_scenario
from shared.stores.embedded_customers import SqliteCustomerStore
from shared.stores.embedded_sqlite_state import SqliteSessionState
from shared.stores.embedded_state import InProcessSessionState
from shared.tokens import TokenSigner, load_secret
from tests.peers.local_host import LocalHost
from tests.verifying import CONFIRMED, knowledge_answers
from tests.waiting import eventually as wait_until

SCENARIO = load_scenario("utilities")
ASKS_FOR_ACCOUNT = re.compile(r"account number|phone number on the account", re.I)
JORDAN = "+15555550100"  # a demo account holder: account 100200300, balance $127.45
DANA = DeskAgent("agent-dana", "Dana")
SAM = DeskAgent("agent-sam", "Sam")


@dataclass
class Party:
    """One customer's session on a channel, driven as the channel drives the core."""

    conversation: Conversation
    session_id: str
    customer_id: str
    heard: list[str] = field(default_factory=list)

    async def say(self, text: str) -> str:
        outcome = await self.conversation.turn(self.session_id, self.customer_id, text)
        said = " ".join(r.text for r in outcome.replies)
        self.heard.append(said)
        return said

    async def verify(self, account: str) -> str:
        """Answer the agent's check with the holder's knowledge answers (no code can go from these conversations);
        returns what followed, the answer to the question asked before the check."""
        said = await self.say(knowledge_answers(account))
        assert said.startswith(CONFIRMED), said
        return said

    async def record(self) -> Customer:
        return await self.conversation.customers.get(self.customer_id)

    async def escalations(self) -> list:
        return (await self.record()).escalations


@pytest.fixture
async def conversation(tmp_path) -> AsyncIterator[Conversation]:
    store = SqliteCustomerStore(tmp_path / "customers.sqlite3")
    await seed_demo_customers(store, SCENARIO)
    yield Conversation(SCENARIO, store, InProcessSessionState(), OfflinePolicy())
    await store.close()


@pytest.fixture
async def insurance(tmp_path) -> AsyncIterator[Conversation]:
    """The insurance scenario with its policy tools' verification taken off (a copy): there a policy number that
    matches nothing is said to match nothing, the failed lookup this rule counts. As shipped, insurance asks such a
    number to verify like a real one, as utilities does, and the lookup never fails (docs/security.md)."""
    folder = tmp_path / "insurance-unchecked"
    shutil.copytree(SCENARIOS_DIR / "insurance", folder)
    spec = yaml.safe_load((folder / "scenario.yaml").read_text())
    for tool in spec["tools"].values():
        tool.pop("verification", None)
    (folder / "scenario.yaml").write_text(yaml.safe_dump(spec))
    store = SqliteCustomerStore(tmp_path / "insurance.sqlite3")
    yield Conversation(load_scenario(str(folder)), store, InProcessSessionState(), OfflinePolicy())
    await store.close()


async def arrive(conversation: Conversation, channel: Channel = Channel.WEBCHAT, phone: str | None = None
                 ) -> Party:
    session_id = new_id({Channel.VOICE: "call", Channel.WHATSAPP: "wa"}.get(channel, "web"))
    identity = Identity(IdentityKind.PHONE, phone) if phone else Identity(IdentityKind.WEBCHAT, session_id)
    opened = await conversation.open_for_identity(channel, session_id, identity)
    return Party(conversation, session_id, opened.customer.customer_id, [r.text for r in opened.replies])


async def on_duty(desk: Desk, *people: DeskAgent) -> None:
    for person in people:
        await desk.set_presence(person, AVAILABLE)


# Asking for a person ----------------------------------------------------------------------------------------------


async def test_a_customer_who_asks_for_a_person_is_queued_with_the_context_and_told_their_place(
    conversation: Conversation,
) -> None:
    desk = conversation.desk
    await on_duty(desk, DANA)  # free: the first in line waits for nobody
    customer = await arrive(conversation)
    await customer.say("what's my balance?")
    await customer.say("100200300")
    await customer.verify("100200300")

    said = await customer.say("I'd like to talk to a real person please")

    assert said == DESK_PHRASES["escalate_queued"].format(position=1, wait="under a minute")
    (escalation,) = await customer.escalations()
    assert (escalation.status, escalation.reason, escalation.channel) == (
        EscalationStatus.WAITING, "asked for a person", Channel.WEBCHAT)
    (waiting,) = await desk.waiting()
    assert waiting["escalation_id"] == escalation.escalation_id and waiting["customer_name"] == "Jordan Lee"
    assert "bill" in waiting["summary"]  # the AI's summary travels with the customer
    context = await desk.context(escalation.escalation_id)
    assert context["customer"]["collected"]["account_number"] == "100200300"
    (session,) = context["sessions"]
    assert [t["text"] for t in session["turns"] if t["role"] == "customer"][-1].startswith("I'd like to talk")


ASKS = ["can I speak with someone", "get me an agent", "agent please", "let me talk to a live person",
        "connect me to customer service", "I want to speak to your manager", "can you put me through to someone",
        "I need a real human", "representative"]
NOT_ASKS = ["human error on my bill, I think", "I need someone to fix my meter", "the person next door has power"]


@pytest.mark.parametrize("words", ASKS)
async def test_the_ways_people_ask_for_a_person_are_understood(conversation: Conversation, words: str) -> None:
    customer = await arrive(conversation)
    await customer.say(words)
    (escalation,) = await customer.escalations()
    assert escalation.reason == "asked for a person"


@pytest.mark.parametrize("words", NOT_ASKS)
async def test_a_message_that_only_mentions_someone_is_not_a_request_for_a_person(
    conversation: Conversation, words: str
) -> None:
    customer = await arrive(conversation)
    await customer.say(words)
    assert await customer.escalations() == []


async def test_nobody_on_duty_is_said_plainly_with_the_ways_not_to_wait(conversation: Conversation) -> None:
    caller = await arrive(conversation, Channel.VOICE, JORDAN)
    said = await caller.say("can I speak to a representative")
    assert said.startswith(DESK_PHRASES["escalate_nobody"])
    assert "WhatsApp" in said and "a call back" in said  # the wait is unknown, so the other ways are offered


# The scenario's rules ---------------------------------------------------------------------------------------------


async def test_a_safety_word_goes_to_a_person_at_once_without_a_billing_answer(conversation: Conversation) -> None:
    customer = await arrive(conversation)
    assert ASKS_FOR_ACCOUNT.search(await customer.say("I have a question about my bill"))

    said = await customer.say("wait, I can smell gas near the meter")

    assert "$" not in said and not ASKS_FOR_ACCOUNT.search(said)  # no billing answer, no question first
    assert said.startswith(DESK_PHRASES["escalate_nobody"])
    (escalation,) = await customer.escalations()
    assert escalation.reason == "safety: smell gas"


@pytest.mark.parametrize("words", ["There's a downed power line across my driveway", "my CO alarm says carbon monoxide",
                                   "the outlet is sparking"])
async def test_each_safety_word_escalates_even_as_the_first_message(conversation: Conversation, words: str) -> None:
    customer = await arrive(conversation)
    said = await customer.say(words)
    assert not ASKS_FOR_ACCOUNT.search(said)
    (escalation,) = await customer.escalations()
    assert escalation.reason.startswith("safety: ")


async def test_three_failed_lookups_in_a_row_escalate(insurance: Conversation) -> None:
    customer = await arrive(insurance)
    await customer.say("what's my deductible?")
    for number in ("LM-111111", "LM-222222"):
        said = await customer.say(number)
        assert f"couldn't find policy {number}" in said
    assert await customer.escalations() == []  # two misses: the customer may still find the right number

    said = await customer.say("LM-333333")

    assert "couldn't find policy LM-333333" in said  # they hear why, then that a person is coming
    assert DESK_PHRASES["escalate_nobody"] in said
    (escalation,) = await customer.escalations()
    assert escalation.reason == "3 failed attempts in a row"


async def test_a_lookup_that_works_resets_the_count(insurance: Conversation) -> None:
    customer = await arrive(insurance)
    await customer.say("what's my deductible?")
    await customer.say("LM-111111")
    await customer.say("LM-222222")
    assert "$500" in await customer.say("sorry, it's LM-482913")
    await customer.say("and for policy LM-333333?")
    assert await customer.escalations() == []


async def test_an_account_that_matches_nothing_is_asked_to_verify_and_never_calls_the_desk_by_itself(
    conversation: Conversation,
) -> None:
    # In utilities an unknown account number reads like a real one (docs/security.md, "Verifying customers"): no
    # lookup fails, so no failed-lookup count; the wrong answers lock, and the customer is told they can ask for a
    # person.
    customer = await arrive(conversation)
    await customer.say("how much do I owe?")
    said = [await customer.say("123456789")] + [await customer.say(f"6270{n}, Lee") for n in range(3)]
    assert not any("couldn't find" in s for s in said)
    assert "ask for a person" in said[-1] and await customer.escalations() == []


async def test_a_dispute_over_the_limit_goes_to_a_person(conversation: Conversation) -> None:
    customer = await arrive(conversation)
    assert ASKS_FOR_ACCOUNT.search(await customer.say("I want to dispute a $412.50 charge on my bill"))
    await customer.say("100200300")

    said = await customer.verify("100200300")

    assert "$412.50 needs someone from our billing team" in said and DESK_PHRASES["escalate_nobody"] in said
    (escalation,) = await customer.escalations()
    limit = SCENARIO.data["disputes"]["desk_over"]
    assert escalation.reason == f"billing dispute over ${limit:,.0f}: $412.50 disputed"


async def test_a_dispute_under_the_limit_is_handled_by_the_agent(conversation: Conversation) -> None:
    customer = await arrive(conversation)
    await customer.say("there's a wrong charge on my bill")
    assert "How much is the charge" in await customer.say("100200300")
    await customer.say("it was $40")

    said = await customer.verify("100200300")

    assert "I've put $40.00 on hold" in said and "dispute DSP-" in said
    assert await customer.escalations() == []


# Waiting ----------------------------------------------------------------------------------------------------------


async def test_the_customer_waiting_hears_their_place_and_one_escalation_is_kept(conversation: Conversation) -> None:
    desk = conversation.desk
    await on_duty(desk, DANA)
    first, second = await arrive(conversation), await arrive(conversation)
    await first.say("I want to talk to a person")
    said = await second.say("get me a human")
    # Dana is free for the first; the second waits for one conversation (300 s) shared by one person.
    assert said == DESK_PHRASES["escalate_queued"].format(position=2, wait="about 5 minutes")

    again = await second.say("hello? is anyone there?")
    assert again == DESK_PHRASES["escalate_waiting"].format(position=2, wait="about 5 minutes")
    await second.say("I want to talk to a person!!")
    assert len(await second.escalations()) == 1  # asking again while waiting is not a second escalation
    assert [e["customer_id"] for e in await desk.waiting()] == [first.customer_id, second.customer_id]
    assert (await desk.metrics())["escalations_last_hour"] == 2

    (ahead,) = await first.escalations()
    await desk.claim(ahead.escalation_id, DANA)
    # Dana is busy now: the second is next, and waits for her conversation to end.
    assert await second.say("still waiting") == DESK_PHRASES["escalate_waiting"].format(
        position=1, wait="about 5 minutes")


async def test_a_caller_waiting_can_ask_to_be_called_back(conversation: Conversation) -> None:
    caller = await arrive(conversation, Channel.VOICE, JORDAN)
    await caller.say("I want to speak to a person")

    said = await caller.say("actually, can you just call me back?")

    assert said == DESK_PHRASES["callback_recorded"].format(number="the number ending 0100")
    (escalation,) = await caller.escalations()
    assert (escalation.status, escalation.callback) == (EscalationStatus.WITHDRAWN, JORDAN)
    assert await conversation.desk.waiting() == []  # nobody at the desk waits for a caller who will be called


# After the person --------------------------------------------------------------------------------------------------


async def test_after_the_person_hands_back_the_ai_answers_without_asking_again(conversation: Conversation) -> None:
    desk = conversation.desk
    await on_duty(desk, DANA)
    customer = await arrive(conversation)
    await customer.say("what's my balance?")
    await customer.say("it's 100200300")
    assert "$127.45" in await customer.verify("100200300")
    await customer.say("I'd like to talk to a person about it")
    (escalation,) = await customer.escalations()

    joined = DESK_PHRASES["person_joined"].format(person="Dana", company=SCENARIO.company)
    await desk.claim(escalation.escalation_id, DANA, joined=joined)
    await desk.say(escalation.escalation_id, DANA, "I can see the $127.45. It includes last month's late fee.")
    assert await customer.say("oh I see, thanks") == ""  # a person has them: the AI stays quiet
    await desk.hand_back(escalation.escalation_id, DANA, farewell=DESK_PHRASES["person_returned"], note="explained fee")

    said = await customer.say("how much electricity did I use last month?")

    assert "kWh" in said and not ASKS_FOR_ACCOUNT.search(said)
    said = await customer.say("and is there an outage at my address?")
    assert "4:00 PM" in said and not ASKS_FOR_ACCOUNT.search(said)
    session = await conversation.transcript(customer.session_id, customer.customer_id)
    people = [(t.agent, t.text) for t in session.turns if t.person]
    assert people == [("Dana", joined), ("Dana", "I can see the $127.45. It includes last month's late fee."),
                      ("Dana", DESK_PHRASES["person_returned"])]
    (escalation,) = await customer.escalations()
    assert (escalation.status, escalation.note) == (EscalationStatus.RETURNED, "explained fee")
    assert (await desk.metrics())["average_handle_seconds"] is not None


# The handoff figures ----------------------------------------------------------------------------------------------

eventually = partial(wait_until, timeout=30)


@pytest.fixture(scope="module")
def host(local_host_factory, tmp_path_factory) -> Iterator[tuple[LocalHost, Path, httpx.Client]]:
    data_dir = tmp_path_factory.mktemp("desk-handoff-data")
    host = local_host_factory(SWITCHBOARD_DATA_DIR=str(data_dir))
    with httpx.Client(timeout=60) as client:
        client.get(f"{host.url}/api/ops/queue").raise_for_status()  # the app seeds its demo customers on first use
        yield host, data_dir, client


async def test_the_supervisor_sees_handoff_success_and_switch_time(
    host: tuple[LocalHost, Path, httpx.Client],
) -> None:
    local, data_dir, client = host
    store = SqliteCustomerStore(data_dir / "customers.sqlite3")
    host_state = SqliteSessionState(data_dir / "state.sqlite3")  # the host's own: its figures are counted there
    supervisor_view = Desk(SCENARIO, store, host_state)
    try:
        before = await supervisor_view.metrics()
        assert before["handoffs_started_last_day"] == 0 and before["handoff_success_rate"] is None

        # A caller (the media gateway's side: the core on the host's record store) asks to go on WhatsApp.
        phone = f"+1333{uuid.uuid4().int % 10**7:07d}"
        voice = Conversation(SCENARIO, store, InProcessSessionState(), OfflinePolicy())
        caller = await arrive(voice, Channel.VOICE, phone)
        await caller.say("my lights are out at 123 Oak St, Springfield")
        outcome = await voice.turn(caller.session_id, caller.customer_id, "can we do this on WhatsApp?")
        assert outcome.switch_to == "whatsapp"
        token = TokenSigner(load_secret("", data_dir)).issue("call-control", 600, sid=caller.session_id,
                                                             cid=caller.customer_id)
        started = client.post(f"{local.url}/api/handoffs", headers={"Authorization": f"Bearer {token}"},
                              json={"customer_id": caller.customer_id, "session_id": caller.session_id,
                                    "to_channel": "whatsapp"})
        assert started.status_code == 202, started.text

        figures = await supervisor_view.metrics()
        assert (figures["handoffs_started_last_day"], figures["handoffs_engaged_last_day"]) == (1, 0)
        assert figures["handoff_success_rate"] == 0.0

        # The invite reaches their phone; they write back on WhatsApp, which opens the continuing session.
        outbox = f"{local.acs_url}/_emulator/messages"
        eventually(lambda: [m for m in client.get(outbox, params={"to": phone}).json() if m["kind"] == "template"])
        client.post(f"{local.acs_url}/_emulator/inbound", json={"from": phone, "text": "hi, here now"}
                    ).raise_for_status()

        eventually(lambda: any(m["kind"] == "text" for m in client.get(outbox, params={"to": phone}).json()))
        figures = await supervisor_view.metrics()
        assert (figures["handoffs_started_last_day"], figures["handoffs_engaged_last_day"]) == (1, 1)
        assert figures["handoff_success_rate"] == 1.0
        assert figures["switch_seconds_median"] is not None and 0 <= figures["switch_seconds_median"] < 60
    finally:
        await host_state.close()
        await store.close()
