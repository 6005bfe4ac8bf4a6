"""A web chat customer asks for a person and gets one, over the real HTTP API of `python -m local`.

What each side sees: the person at the desk sees the customer in the queue (channel, reason, summary, wait), claims
them and writes; the customer's chat page, long-polling its session, gets the person's words marked as a person's
and with their name; the customer's reply goes to the desk and not to the AI; the person closes (or hands back) and
the customer's record keeps the disposition and the note.
"""

from __future__ import annotations

import asyncio
from typing import Any

from tests.desk.people import Customer, Person

POLL = 20  # seconds a long poll may be held: far longer than anything below takes


async def _person_turns(customer: Customer, after: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The customer's long poll for turns beyond `after`: the whole answer, and the new turns."""
    session = await customer.session(after=after, wait=POLL)
    return session, session["turns"][after:]


async def test_a_web_chat_customer_gets_a_person_and_the_record_keeps_how_it_ended(desk_host, web) -> None:
    dana = await Person.signed_in(desk_host.url, "Dana Reyes")
    try:
        await dana.available()
        customer = await Customer.start(web)
        await customer.send("I have a question about my bill")
        asked = await customer.send("I want to talk to a person")

        # The desk: who is waiting, on which channel, why, what the AI did, and for how long.
        entry = await dana.waiting_for(customer.session_id)
        assert f"number {entry['position']} in line" in asked["replies"][0]["text"], asked
        assert entry["channel"] == "webchat" and entry["reason"] == "asked for a person"
        assert "bill" in entry["summary"].lower(), entry["summary"]
        assert entry["position"] >= 1 and entry["waiting_seconds"] >= 0 and entry["status"] == "waiting"
        escalation_id = entry["escalation_id"]
        waiting = await customer.session()
        assert waiting["escalation"] == {"status": "waiting", "agent_name": None, "position": entry["position"]}

        # The customer's page waits on its session while the person claims and writes.
        seen = len(waiting["turns"])
        poll = asyncio.create_task(_person_turns(customer, seen))
        claimed = await dana.claim(escalation_id)
        assert claimed.status_code == 200 and claimed.json()["escalation"]["agent_name"] == "Dana Reyes"
        session, new = await poll
        assert [t["person"] for t in new] == [True] and new[0]["agent"] == "Dana Reyes", new
        assert "Dana Reyes" in new[0]["text"], "the customer is told who joined"
        assert session["escalation"] == {"status": "with_person", "agent_name": "Dana Reyes", "position": None}

        seen = len(session["turns"])
        poll = asyncio.create_task(_person_turns(customer, seen))
        said = await dana.say(escalation_id, "I can see your bill. Which charge looks wrong?")
        assert said["turn"] | {"at": None} == {"role": "agent", "text": "I can see your bill. Which charge looks wrong?",
                                               "agent": "Dana Reyes", "at": None, "person": True}
        _, new = await poll
        assert [(t["text"], t["agent"], t["person"]) for t in new] == [
            ("I can see your bill. Which charge looks wrong?", "Dana Reyes", True)]

        # The customer's answer goes to the person: no reply from the AI, and it is on the desk.
        reply = await customer.send("The late fee of $15, I paid on time")
        assert reply["replies"] == [], "a customer with a person hears from the person, not the AI"
        context = await dana.context(escalation_id)
        turns = next(s for s in context["sessions"] if s["session_id"] == customer.session_id)["turns"]
        assert turns[-1] == turns[-1] | {"role": "customer", "text": "The late fee of $15, I paid on time"}
        assert context["escalation"]["status"] == "with_person" and "bill" in context["summary"].lower()

        # Closed with a disposition and a note: the customer is told, and the record holds both.
        closed = await dana.ok("POST", f"/api/desk/escalations/{escalation_id}/close",
                               json={"disposition": "follow_up", "note": "Late fee to be refunded; check Monday"})
        assert closed["escalation"]["status"] == "closed"
        record = (await dana.context(escalation_id))["escalation"]
        assert (record["status"], record["disposition"], record["note"], record["agent_name"]) == (
            "closed", "follow_up", "Late fee to be refunded; check Monday", "Dana Reyes")
        assert record["claimed_at"] and record["ended_at"]
        after = await customer.session()
        assert after["turns"][-1]["person"] and after["escalation"]["status"] == "closed"
        assert escalation_id not in {e["escalation_id"] for e in (await dana.queue())["mine"]}

        # Asked for a person again, the desk sees the earlier ending in the customer's history.
        await customer.send("I want to talk to a person")
        again = await dana.waiting_for(customer.session_id)
        history = (await dana.context(again["escalation_id"]))["history"]
        assert [(h["escalation_id"], h["disposition"], h["note"]) for h in history] == [
            (escalation_id, "follow_up", "Late fee to be refunded; check Monday")]
    finally:
        await dana.close()


async def test_handed_back_the_customer_is_the_ais_again_and_the_note_is_kept(desk_host, web) -> None:
    sam = await Person.signed_in(desk_host.url, "Sam Okafor")
    try:
        customer = await Customer.start(web)
        await customer.send("I want to talk to a person")
        escalation_id = (await sam.waiting_for(customer.session_id))["escalation_id"]
        assert (await sam.claim(escalation_id)).status_code == 200
        await sam.say(escalation_id, "Our assistant can take your meter reading for you.")
        returned = await sam.ok("POST", f"/api/desk/escalations/{escalation_id}/return",
                                json={"note": "Wanted to give a meter reading"})
        assert returned["escalation"]["status"] == "returned"
        assert returned["escalation"]["note"] == "Wanted to give a meter reading"
        session = await customer.session()
        assert session["turns"][-1]["person"] and "assistant" in session["turns"][-1]["text"]
        answer = await customer.send("what's my balance?")
        assert answer["replies"] and not any(t["person"] for t in (await customer.session())["turns"][-len(
            answer["replies"]):]), "the AI answers again"
        # Done with, the customer is no longer the person's to write to.
        late = await sam.client.post(f"/api/desk/escalations/{escalation_id}/messages", json={"text": "one more"})
        assert late.status_code == 409 and "not with a person" in late.json()["error"]
    finally:
        await sam.close()


async def test_a_person_cannot_write_to_or_close_someone_elses_customer(desk_host, web) -> None:
    dana = await Person.signed_in(desk_host.url, "Dana Reyes")
    sam = await Person.signed_in(desk_host.url, "Sam Okafor")
    try:
        customer = await Customer.start(web)
        await customer.send("I want to talk to a person")
        escalation_id = (await dana.waiting_for(customer.session_id))["escalation_id"]
        too_soon = await dana.client.post(f"/api/desk/escalations/{escalation_id}/messages", json={"text": "hi"})
        assert too_soon.status_code == 409, "nobody writes to a customer before claiming them"
        assert (await dana.claim(escalation_id)).status_code == 200
        again = await dana.claim(escalation_id)
        assert again.status_code == 200, "claiming your own customer again is not a conflict (a retried request)"
        for path, body in (("messages", {"text": "I'll take it from here"}), ("close", {"disposition": "resolved"}),
                           ("return", {})):
            refused = await sam.client.post(f"/api/desk/escalations/{escalation_id}/{path}", json=body)
            assert refused.status_code == 409 and refused.json()["error"] == "taken: Dana Reyes has this customer"
        assert not any(t["agent"] == "Sam Okafor" for t in (await customer.session())["turns"])
    finally:
        await dana.close()
        await sam.close()


async def test_a_retried_message_with_the_same_key_reaches_the_customer_once(desk_host, web) -> None:
    dana = await Person.signed_in(desk_host.url, "Dana Reyes")
    try:
        customer = await Customer.start(web)
        await customer.send("I want to talk to a person")
        escalation_id = (await dana.waiting_for(customer.session_id))["escalation_id"]
        assert (await dana.claim(escalation_id)).status_code == 200
        path, headers = f"/api/desk/escalations/{escalation_id}/messages", {"Idempotency-Key": "msg-1"}
        first = await dana.ok("POST", path, json={"text": "Checking now"}, headers=headers)
        retry = await dana.ok("POST", path, json={"text": "Checking now"}, headers=headers)
        assert first["turn"] == retry["turn"]
        texts = [t["text"] for t in (await customer.session())["turns"]]
        assert texts.count("Checking now") == 1
    finally:
        await dana.close()
