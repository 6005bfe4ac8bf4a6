"""The wait for a person: the estimate against the worked examples in docs/desk.md (read from the doc's tables, so
the doc and the code cannot drift apart), how a wait is said, and the figures the desk counts it from on real
SessionState adapters (in-process, SQLite and Redis).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from shared.conversation import DESK_PHRASES, Conversation
from shared.desk import AVAILABLE, AWAY, Desk, DeskAgent
from shared.models import Channel, Customer, Escalation, Identity, IdentityKind, new_id
from shared.policies.offline import OfflinePolicy
from shared.scenario import load_scenario
from shared.stores import SessionState
from shared.stores.embedded_customers import SqliteCustomerStore
from shared.stores.embedded_sqlite_state import SqliteSessionState
from shared.stores.embedded_state import InProcessSessionState
from shared.wait import DeskLoad, estimate_wait, spoken_wait

DOC = Path(__file__).resolve().parents[2] / "docs" / "desk.md"
SCENARIO = load_scenario("utilities")
DANA, SAM, LEE = DeskAgent("a-dana", "Dana"), DeskAgent("a-sam", "Sam"), DeskAgent("a-lee", "Lee")


def doc_tables(section: str) -> list[list[dict[str, str]]]:
    """The tables of one `## section` of docs/desk.md, each as rows of {header: cell}."""
    text = DOC.read_text(encoding="utf-8")
    body = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    tables, rows = [], []
    for line in [*body.splitlines(), ""]:
        if line.startswith("|"):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
        elif rows:
            header, _rule, *cells = rows
            tables.append([dict(zip(header, row, strict=True)) for row in cells])
            rows = []
    return tables


EXAMPLES, SAID = doc_tables("The queue and the wait")


def test_the_doc_has_the_worked_examples() -> None:
    # A doc edit that loses the tables must fail here, not silently leave the tests below with nothing to check.
    assert len(EXAMPLES) >= 8 and len(SAID) >= 6
    assert {"p", "N", "F", "AHT (s)", "wait (s)", "the customer hears", "other ways offered"} <= set(EXAMPLES[0])


@pytest.mark.parametrize("row", EXAMPLES, ids=[row["example"] for row in EXAMPLES])
def test_each_worked_example_in_the_doc_is_what_the_estimate_gives(row: dict[str, str]) -> None:
    wait = estimate_wait(int(row["p"]), int(row["N"]), int(row["F"]), float(row["AHT (s)"]))
    threshold = SCENARIO.omnichannel.queue_wait_threshold_seconds
    if row["wait (s)"] == "unknown":
        assert wait is None
        assert row["the customer hears"] == "that nobody is free yet" and "nobody" in DESK_PHRASES["escalate_nobody"]
    else:
        assert wait == pytest.approx(float(row["wait (s)"]))
        assert spoken_wait(wait) == row["the customer hears"]
    offered = wait is None or wait > threshold
    assert ("yes" if offered else "no") == row["other ways offered"]


@pytest.mark.parametrize("row", SAID, ids=[row["wait (s)"] for row in SAID])
def test_a_wait_is_said_as_the_doc_says(row: dict[str, str]) -> None:
    assert spoken_wait(float(row["wait (s)"])) == row["said as"]


def test_the_estimate_has_no_number_without_people_and_never_counts_more_free_than_on_duty() -> None:
    assert spoken_wait(None) == "a while"
    assert estimate_wait(1, 2, 5, 300) == 0.0 and estimate_wait(3, 2, 5, 300) == 150.0  # free is capped at on duty
    with pytest.raises(ValueError, match="starts at 1"):
        estimate_wait(0, 1, 1, 300)
    load = DeskLoad(waiting=3, on_duty=2, free=0, handle_seconds=200)
    assert load.next_wait == 400.0 and load.wait_for(1) == 100.0


# The load, counted on real SessionState ----------------------------------------------------------------------------


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def state(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SessionState]:
    if request.param == "memory":
        state: SessionState = InProcessSessionState()
    elif request.param == "sqlite":
        state = SqliteSessionState(tmp_path / "state.sqlite3")
    else:
        import redis.asyncio as aioredis

        from shared.stores.azure_redis import RedisSessionState

        # The desk's keys are fixed names: a database of its own keeps other tests' desks out of the count.
        url = request.getfixturevalue("redis_url").rsplit("/", 1)[0] + "/9"
        raw = aioredis.from_url(url)
        await raw.flushdb()
        await raw.aclose()
        state = RedisSessionState(url)
    yield state
    await state.close()


@pytest.fixture
async def conversation(state: SessionState, tmp_path: Path) -> AsyncIterator[Conversation]:
    store = SqliteCustomerStore(tmp_path / "customers.sqlite3")
    yield Conversation(SCENARIO, store, state, OfflinePolicy())
    await store.close()


async def ask_for_a_person(conversation: Conversation) -> tuple[str, str]:
    """A web chat visitor asks for a person; returns what they were told and their escalation id."""
    session_id = new_id("web")
    visitor = Identity(IdentityKind.WEBCHAT, session_id)
    opened = await conversation.open_for_identity(Channel.WEBCHAT, session_id, visitor)
    outcome = await conversation.turn(session_id, opened.customer.customer_id, "I want to talk to a person")
    assert outcome.escalation is not None
    return " ".join(r.text for r in outcome.replies), outcome.escalation.escalation_id


async def conversation_that_took(desk: Desk, escalation_id: str, agent: DeskAgent, seconds: int) -> None:
    """A person claims the escalation and closes it `seconds` after the claim (the claim is moved back in time)."""
    escalation = await desk.claim(escalation_id, agent)
    entry = await desk.entry(escalation_id)
    claimed = (datetime.now(timezone.utc) - timedelta(seconds=seconds)).isoformat(timespec="milliseconds")

    def earlier(customer: Customer) -> Escalation:
        found = customer.find_escalation(escalation.escalation_id)
        found.claimed_at = claimed
        return replace(found)

    await desk.customers.update(entry["customer_id"], earlier)
    await desk.close(escalation_id, agent, disposition="resolved")


async def test_the_desk_counts_who_is_on_duty_and_free(conversation: Conversation) -> None:
    desk = conversation.desk
    assert await desk.load() == DeskLoad(0, 0, 0, SCENARIO.desk.default_handle_seconds)

    await desk.set_presence(DANA, AVAILABLE)
    await desk.set_presence(SAM, AVAILABLE)
    await desk.set_presence(LEE, AWAY)  # signed in, page open, not taking customers
    assert await desk.load() == DeskLoad(0, 2, 2, 300.0)

    _, first = await ask_for_a_person(conversation)
    _, second = await ask_for_a_person(conversation)
    assert await desk.load() == DeskLoad(2, 2, 2, 300.0)
    await desk.claim(first, DANA)
    assert await desk.load() == DeskLoad(1, 2, 1, 300.0)  # Dana is busy; the second still waits
    assert await desk.position(second) == 1

    await desk.set_presence(SAM, AWAY)
    assert await desk.load() == DeskLoad(1, 1, 0, 300.0)
    told, _ = await ask_for_a_person(conversation)
    # Two waiting, one person on duty and busy: (2 - 0) x 300 / 1 = 600 s.
    # (An anonymous visitor has no other channel to be offered.)
    assert told == DESK_PHRASES["escalate_queued"].format(position=2, wait="about 10 minutes")


async def test_handle_times_are_averaged_from_the_conversations_the_desk_closed(conversation: Conversation) -> None:
    desk = conversation.desk
    await desk.set_presence(DANA, AVAILABLE)
    for seconds in (120, 240):
        _, escalation_id = await ask_for_a_person(conversation)
        await conversation_that_took(desk, escalation_id, DANA, seconds)

    load = await desk.load()
    assert load.handle_seconds == pytest.approx(180, abs=3)  # (120 + 240) / 2, not the scenario's 300
    metrics = await desk.metrics()
    assert metrics["average_handle_seconds"] == pytest.approx(180, abs=3)
    assert metrics["handle_seconds_in_use"] == pytest.approx(180, abs=3)

    _, busy = await ask_for_a_person(conversation)
    await desk.claim(busy, DANA)
    told, _ = await ask_for_a_person(conversation)
    # Dana is busy: the next customer waits for one of her conversations, now about 3 minutes.
    assert told.startswith(DESK_PHRASES["escalate_queued"].format(position=1, wait="about 3 minutes"))


async def test_a_person_whose_page_is_gone_stops_counting(conversation: Conversation) -> None:
    desk = Desk(SCENARIO, conversation.customers, conversation.state, presence_seconds=0.5)
    await desk.set_presence(DANA, AVAILABLE)
    assert (await desk.load()).on_duty == 1
    await asyncio.sleep(0.8)  # no poll from Dana's page meanwhile
    assert (await desk.load()).on_duty == 0 and await desk.on_duty() == []
    await desk.touch(DANA)  # the page polls again: she is back, still available
    assert (await desk.load()).on_duty == 1


def test_the_doc_examples_hold_plain_numbers() -> None:
    # So the rows above are read as the doc means them: no units or thousands separators slipped into a cell.
    for row in EXAMPLES:
        for column in ("p", "N", "F", "AHT (s)"):
            assert re.fullmatch(r"\d+(\.\d+)?", row[column]), (row["example"], column, row[column])
