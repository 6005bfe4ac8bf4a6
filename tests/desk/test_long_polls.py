"""The long polls that keep the desk page and the chat page live: each waits while nothing changes and answers as
soon as something does. Asserted by what comes back and when it comes back relative to the change, not by timings."""

from __future__ import annotations

import asyncio

from tests.desk.people import Customer, Person

POLL = 20  # seconds a poll may be held: far longer than the steps below take
QUIET = 0.5  # seconds to let a poll sit while nothing changes


async def test_the_queue_poll_waits_while_nothing_changes_and_answers_when_someone_claims(desk_host, web) -> None:
    dana = await Person.signed_in(desk_host.url, "Dana Reyes")
    sam = await Person.signed_in(desk_host.url, "Sam Okafor")
    try:
        await dana.queue()  # Dana's page is open: her later polls change nothing by themselves
        customer = await Customer.start(web)
        await customer.send("I want to talk to a person")
        current = await dana.queue()
        escalation_id = next(e["escalation_id"] for e in current["waiting"] if e["session_id"] == customer.session_id)

        # Nothing happens: the poll answers when its wait is over, with the same version and the same queue.
        unchanged = await dana.queue(since=current["version"], wait=1)
        assert unchanged["version"] == current["version"]
        assert [e["escalation_id"] for e in unchanged["waiting"]] == [e["escalation_id"] for e in current["waiting"]]

        # Sam claims during Dana's poll: it answers with the new version, the customer gone from the queue.
        poll = asyncio.create_task(dana.queue(since=current["version"], wait=POLL))
        await asyncio.sleep(QUIET)
        assert not poll.done(), "the poll is held while nothing changes"
        assert (await sam.claim(escalation_id)).status_code == 200
        changed = await asyncio.wait_for(poll, POLL / 2)  # well before its wait is over
        assert changed["version"] != current["version"]
        assert escalation_id not in {e["escalation_id"] for e in changed["waiting"]}

        # A new customer asking for a person ends the next poll the same way.
        poll = asyncio.create_task(dana.queue(since=changed["version"], wait=POLL))
        await asyncio.sleep(QUIET)
        assert not poll.done()
        newcomer = await Customer.start(web)
        await newcomer.send("I want to talk to a person")
        arrived = await asyncio.wait_for(poll, POLL / 2)
        assert newcomer.session_id in {e["session_id"] for e in arrived["waiting"]}

        # A version from before a restart (or any other) is answered at once with the current one.
        stale = await dana.queue(since=arrived["version"] + 1000, wait=POLL)
        assert stale["version"] == arrived["version"]
    finally:
        await dana.close()
        await sam.close()


async def test_the_chat_page_poll_waits_for_the_person_and_answers_when_they_write(desk_host, web) -> None:
    dana = await Person.signed_in(desk_host.url, "Dana Reyes")
    try:
        customer = await Customer.start(web)
        await customer.send("I want to talk to a person")
        escalation_id = (await dana.waiting_for(customer.session_id))["escalation_id"]
        assert (await dana.claim(escalation_id)).status_code == 200
        seen = len((await customer.session())["turns"])

        quiet = await customer.session(after=seen, wait=1)
        assert len(quiet["turns"]) == seen, "nothing new: the poll ends with its wait and brings nothing"

        poll = asyncio.create_task(customer.session(after=seen, wait=POLL))
        await asyncio.sleep(QUIET)
        assert not poll.done(), "the chat page's poll is held while the person has not written"
        await dana.say(escalation_id, "Thanks for waiting, I'm here.")
        session = await asyncio.wait_for(poll, POLL / 2)
        assert [(t["text"], t["person"], t["agent"]) for t in session["turns"][seen:]] == [
            ("Thanks for waiting, I'm here.", True, "Dana Reyes")]

        # Turns the page has not seen yet come back at once, however long it offers to wait.
        behind = await asyncio.wait_for(customer.session(after=0, wait=POLL), POLL / 2)
        assert len(behind["turns"]) == len(session["turns"])
    finally:
        await dana.close()


async def test_the_chat_page_poll_still_answers_once_the_session_keeps_only_its_latest_turns(desk_host, web) -> None:
    from shared.models import MAX_TURNS_PER_SESSION

    dana = await Person.signed_in(desk_host.url, "Dana Reyes")
    try:
        customer = await Customer.start(web)
        await customer.send("I want to talk to a person")
        escalation_id = (await dana.waiting_for(customer.session_id))["escalation_id"]
        assert (await dana.claim(escalation_id)).status_code == 200
        for n in range(MAX_TURNS_PER_SESSION):  # a long conversation: the oldest turns drop off the session
            await dana.say(escalation_id, f"note {n}")
        seen = len((await customer.session())["turns"])
        assert seen == MAX_TURNS_PER_SESSION

        poll = asyncio.create_task(customer.session(after=seen, wait=POLL))
        await asyncio.sleep(QUIET)
        assert not poll.done()
        await dana.say(escalation_id, "One more thing.")
        session = await asyncio.wait_for(poll, POLL / 2)  # the count cannot grow, but the poll still answers
        assert session["turns"][-1]["text"] == "One more thing."
    finally:
        await dana.close()
