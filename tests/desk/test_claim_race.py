"""Two people claiming the same customer at the same moment: exactly one gets them, the other is told who has them.

A hundred times over real HTTP, each a fresh web chat customer who asked for a person, each claimed by both people
at once. The two people are on two hosts sharing one set of stores, like two instances of the function app in Azure:
within one process writers to a record take turns, so only across processes does the claim rest on the customer
record's concurrency token (shared/desk.py), which is what must hold. Who sends first alternates; who wins
varies from run to run, since the two requests overlap in the stores.
"""

from __future__ import annotations

import asyncio
from collections import Counter

from tests.desk.people import Person, customer_asking_for_a_person

RACES = 100


async def test_two_people_racing_for_a_customer_one_wins_every_time(desk_host, desk_data, local_host_factory,
                                                                    web) -> None:
    twin = await asyncio.to_thread(local_host_factory, SWITCHBOARD_DATA_DIR=str(desk_data))
    dana = await Person.signed_in(desk_host.url, "Dana Reyes")
    sam = await Person.signed_in(twin.url, "Sam Okafor")
    try:
        customers = []
        for _ in range(0, RACES, 10):  # ten customers at a time ask for a person
            customers += await asyncio.gather(*(customer_asking_for_a_person(web) for _ in range(10)))
        waiting = {e["session_id"]: e["escalation_id"] for e in (await sam.queue())["waiting"]}
        escalations = [waiting[c.session_id] for c in customers]
        assert len(set(escalations)) == RACES, "each customer is their own escalation, seen from both hosts"

        winners: Counter[str] = Counter()
        for race, escalation_id in enumerate(escalations):
            first, second = (dana, sam) if race % 2 else (sam, dana)
            answers = await asyncio.gather(first.claim(escalation_id), second.claim(escalation_id))
            statuses = sorted(a.status_code for a in answers)
            assert statuses == [200, 409], f"{escalation_id}: {[(a.status_code, a.text) for a in answers]}"
            won, lost = sorted(answers, key=lambda a: a.status_code)
            winner = won.json()["escalation"]["agent_name"]
            assert lost.json()["error"] == f"taken: {winner} has this customer"
            winners[winner] += 1

        # The record agrees with the answers: each customer is with the one who won, and only with them.
        held = {person.name: {e["escalation_id"] for e in (await person.queue())["mine"]} for person in (dana, sam)}
        assert {name: len(ids) for name, ids in held.items()} == dict(winners) | {
            name: 0 for name in held if name not in winners}
        assert held["Dana Reyes"].isdisjoint(held["Sam Okafor"])
        assert held["Dana Reyes"] | held["Sam Okafor"] == set(escalations)
        assert not {e["escalation_id"] for e in (await dana.queue())["waiting"]} & set(escalations)
        for customer in customers[:10]:  # and each customer heard from the one person who has them
            people = {t["agent"] for t in (await customer.session())["turns"] if t["person"]}
            assert len(people) == 1 and people <= set(winners), people
        print(f"\n{RACES} races across two hosts: {dict(winners)}")
    finally:
        await dana.close()
        await sam.close()
        await asyncio.to_thread(twin.stop)
