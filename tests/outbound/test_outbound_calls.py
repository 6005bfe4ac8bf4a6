"""Calls we place (issue 17), through every real piece: `POST /api/calls` on the local Functions host (`python -m
local`) places the call with the real callautomation SDK on the ACS emulator, whose scripted personas pick up (a
person saying "Hello?", an answering machine with a greeting and a beep) or do not (busy, no answer); the media
gateway (`python -m media_gateway`, offline engines) screens who picked up. What the callee heard is read from the
emulator and transcribed with faster-whisper, as the phone simulator hears it. Real time, so slow: about a minute.
"""

from __future__ import annotations

import asyncio
import re
import time

import httpx
import pytest

from local.phone import Engines
from tests.e2e.test_calls_audio import wait_warm
from tests.peers import free_port

JORDAN = "+15555550100"  # on record in the utilities scenario: Jordan Lee, 123 Oak St
STRANGER = "+15555550188"  # on no record
OPENING = "Hi {name}, this is a call about your bill."


@pytest.fixture(scope="module")
def line(local_host_factory):
    gateway_port = free_port()
    host = local_host_factory(GATEWAY_PORT=str(gateway_port), GATEWAY_PRELOAD_MODELS="true")
    engines = Engines(transcribe=True)
    engines.load(need_voice=False)
    wait_warm(f"http://127.0.0.1:{gateway_port}")
    return host, engines


async def _persona(acs: httpx.AsyncClient, number: str, answers: str, **extra: object) -> None:
    response = await acs.post("/_emulator/personas", json={"number": number, "answers": answers, **extra})
    assert response.status_code == 201, response.text


async def _place(app: httpx.AsyncClient, body: dict, **headers: str) -> httpx.Response:
    return await app.post("/api/calls", json=body, headers=headers)


async def _until(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (found := await check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)
    return found


async def _outcome(app: httpx.AsyncClient, call_id: str, timeout: float = 60) -> dict:
    async def ended():
        record = (await app.get(f"/api/calls/placed/{call_id}")).json()
        return record if record.get("outcome") and record.get("state") in ("ended", "failed") else None

    return await _until(ended, timeout, f"call {call_id} to end")


async def _emulated(acs: httpx.AsyncClient, number: str) -> list[dict]:
    return [c for c in (await acs.get("/_emulator/calls")).json()["calls"] if c["to"] == number]


async def _heard(acs: httpx.AsyncClient, engines: Engines, emulated_id: str) -> str:
    response = await acs.get(f"/_emulator/calls/{emulated_id}/audio/played")
    rate = int(response.headers["X-Sample-Rate"])
    return (await asyncio.to_thread(engines.transcribe, response.content, rate)).lower()


async def test_a_person_picks_up_hears_the_opening_and_the_agent_goes_on(line) -> None:
    host, engines = line
    async with httpx.AsyncClient(base_url=host.url, timeout=30) as app, \
            httpx.AsyncClient(base_url=host.acs_url, timeout=30) as acs:
        await _persona(acs, JORDAN, "person", say="Hello?")
        placed = await _place(app, {"phone": JORDAN, "purpose": {"agent": "BillingAgent", "opening": OPENING}})
        assert placed.status_code == 201, placed.text
        call_id = placed.json()["call_id"]
        emulated = (await _emulated(acs, JORDAN))[-1]
        assert emulated["direction"] == "outbound" and emulated["from"] == "+18005550100"

        async def opening_played():
            audio = (await acs.get(f"/_emulator/calls/{emulated['id']}")).json()["audio"]
            return audio["played_ms"] > 1500 and audio["queued_ms"] == 0 and audio["received_ms"] == audio["played_ms"]

        await _until(opening_played, 60, "the opening to be played")
        heard = await _heard(acs, engines, emulated["id"])
        assert "jordan" in heard and "bill" in heard, f"the opening, with the name on record: {heard!r}"
        assert (await app.get(f"/api/calls/placed/{call_id}")).json()["outcome"] == "answered"

        # The callee answers; the billing agent (not the concierge's greeting) carries on.
        before = (await acs.get(f"/_emulator/calls/{emulated['id']}")).json()["audio"]["received_ms"]
        voice = Engines(transcribe=False)
        await asyncio.to_thread(voice.load, True)
        pcm = await asyncio.to_thread(voice.speak, "what do I owe?", 16000)
        await acs.post(f"/_emulator/calls/{emulated['id']}/audio", content=pcm)

        async def answered():
            audio = (await acs.get(f"/_emulator/calls/{emulated['id']}")).json()["audio"]
            return audio["received_ms"] > before + 1000
        await _until(answered, 60, "the agent's answer")
        await acs.post(f"/_emulator/calls/{emulated['id']}/hangup")


async def test_an_answering_machine_gets_a_short_message_without_account_data(line) -> None:
    host, engines = line
    async with httpx.AsyncClient(base_url=host.url, timeout=30) as app, \
            httpx.AsyncClient(base_url=host.acs_url, timeout=30) as acs:
        await _persona(acs, JORDAN, "voicemail")
        placed = await _place(app, {"phone": JORDAN, "purpose": {"agent": "BillingAgent", "opening": OPENING}})
        assert placed.status_code == 201, placed.text
        record = await _outcome(app, placed.json()["call_id"])
        assert record["outcome"] == "voicemail"
        emulated = (await _emulated(acs, JORDAN))[-1]
        heard = await _heard(acs, engines, emulated["id"])
        assert re.search(r"call (us )?back|try again", heard), f"the message left: {heard!r}"
        for private in ("jordan", "bill", "oak", "balance"):
            assert private not in heard, f"{private!r} left on a mailbox anyone may play: {heard!r}"


@pytest.mark.parametrize("answers, outcome", [("busy", "busy"), ("no_answer", "no_answer")])
async def test_a_call_nobody_takes_says_why(line, answers: str, outcome: str) -> None:
    host, _ = line
    async with httpx.AsyncClient(base_url=host.url, timeout=30) as app, \
            httpx.AsyncClient(base_url=host.acs_url, timeout=30) as acs:
        await _persona(acs, STRANGER, answers, ring_seconds=1)
        consent = {"given_at": "2026-01-05T10:00:00Z", "source": "callback form"}
        placed = await _place(app, {"phone": STRANGER, "consent": consent,
                                    "purpose": {"agent": "OutageAgent", "opening": "About your outage."}})
        assert placed.status_code == 201, placed.text
        assert (await _outcome(app, placed.json()["call_id"], 30))["outcome"] == outcome


async def test_bad_requests_are_refused_and_a_retried_request_places_one_call(line) -> None:
    host, _ = line
    number = "+15555550166"
    async with httpx.AsyncClient(base_url=host.url, timeout=30) as app, \
            httpx.AsyncClient(base_url=host.acs_url, timeout=30) as acs:
        purpose = {"agent": "BillingAgent", "opening": "Hello"}
        # Malformed bodies are 400s from the model the document's schema comes from; well-formed ones the records
        # refuse have their own statuses (schemathesis holds a body the schema allows to anything but a 400).
        refused = {
            "unknown agent": (400, {"phone": JORDAN, "purpose": {"agent": "nobody", "opening": "Hi"}},
                              "purpose.agent: Input should be 'BillingAgent', "),
            "no opening": (400, {"phone": JORDAN, "purpose": {"agent": "BillingAgent"}},
                           "purpose.opening: Field required"),
            "blank opening": (400, {"phone": JORDAN, "purpose": {"agent": "BillingAgent", "opening": " \t"}},
                              "purpose.opening: String should hold something other than whitespace"),
            "bad consent": (400, {"phone": number, "purpose": purpose, "consent": {"given_at": ""}},
                            "consent.given_at: String should have at least 1 character"),
            "both callees": (400, {"phone": JORDAN, "customer_id": "cus_x", "purpose": purpose},
                             "request body must hold exactly one of customer_id and phone"),
            "no callee": (400, {"purpose": purpose}, "request body must hold exactly one of customer_id and phone"),
            "on no record, no consent": (400, {"phone": number, "purpose": purpose}, "send consent"),
            "unknown customer": (404, {"customer_id": "cus_nobody", "purpose": purpose}, "customer_id: no customer"),
        }
        for why, (status, body, says) in refused.items():
            response = await _place(app, body)
            assert response.status_code == status, (why, response.text)
            assert says in response.json()["error"], (why, response.json())
        assert not await _emulated(acs, number), "a refused request places no call"

        await _persona(acs, number, "no_answer", ring_seconds=1)
        body = {"phone": number, "purpose": purpose,
                "consent": {"given_at": "2026-01-05T10:00:00Z", "source": "callback form"}}
        answers = await asyncio.gather(*(_place(app, body, **{"Idempotency-Key": "op-42"}) for _ in range(3)))
        assert {r.status_code for r in answers} == {201}, [r.text for r in answers]
        assert len({r.json()["call_id"] for r in answers}) == 1
        again = await _place(app, body, **{"Idempotency-Key": "op-42"})
        assert again.json()["call_id"] == answers[0].json()["call_id"]
        assert len(await _emulated(acs, number)) == 1, "one call, however often the request came"
