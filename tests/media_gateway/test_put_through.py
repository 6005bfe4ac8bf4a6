"""A caller who asks for a person while someone is free at the desk: the gateway says who they are going to, and once
that has played asks for the transfer. If the transfer cannot start, the caller hears so and keeps their place.

The desk's person is set on the gateway's own state (shared.desk.Desk); the first test records what the gateway's
hooks are asked, the second runs the real hooks against a function app that refuses the transfer, as one does when
the call has gone or the person can no longer be reached.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from media_gateway.hooks import build_hooks
from media_gateway.server import Gateway, create_app
from shared.desk import AVAILABLE, AWAY, DeskAgent
from shared.models import EscalationStatus, new_id
from tests.media_gateway.caller import AcsCaller
from tests.media_gateway.conftest import RunningGateway
from tests.media_gateway.test_gateway import transcribe
from tests.peers import serving

ASK = "can I speak to a real person please"


@pytest.fixture
async def dana(gateway: RunningGateway) -> AsyncIterator[DeskAgent]:
    """Dana, on duty with a phone, on the gateway's desk, for one test."""
    agent = DeskAgent(new_id("agent"), "Dana")
    await gateway.services.desk.set_presence(agent, AVAILABLE, phone="+15555550142")
    yield agent
    await gateway.services.desk.set_presence(agent, AWAY)


async def ask_for_a_person(base_url: str, call_url: str, speech) -> tuple[AcsCaller, float]:
    """Connect, let the greeting play, ask for a person; returns the caller and when they finished asking."""
    http = aiohttp.ClientSession()
    caller = await AcsCaller.connect(http, call_url)
    caller.http = http  # type: ignore[attr-defined]
    await caller.wait_audio(time.monotonic(), timeout=10)
    await caller.wait_quiet(0.6, timeout=30)
    asked = caller.say(speech(ASK))
    await asyncio.wait_for(asked.done.wait(), timeout=15)
    return caller, asked.finished_at


async def hang_up(caller: AcsCaller) -> None:
    await caller.close()
    await caller.http.close()  # type: ignore[attr-defined]


async def test_a_caller_routed_to_a_free_person_is_put_through_after_hearing_who(
    gateway: RunningGateway, dana: DeskAgent, speech, offline_engines
) -> None:
    call = await gateway.open_call("+15555550100")  # Jordan Lee
    caller, asked_at = await ask_for_a_person(gateway.base_url, call.url, speech)
    try:
        await caller.wait_audio(asked_at, timeout=20)
        await caller.wait_quiet(1.0, timeout=60)
        for _ in range(100):
            if any(c == call.call_id for c, _ in gateway.transfers):
                break
            await asyncio.sleep(0.05)
        heard = await transcribe(offline_engines, caller.audio_since(asked_at))
    finally:
        await hang_up(caller)

    assert re.search(r"putting you through", heard, re.I), heard  # not the name: STT once heard "today and"
    customer = await gateway.services.customers.get(call.customer_id)
    escalation = customer.open_escalation(call.session_id)
    assert escalation is not None and (escalation.status, escalation.agent_id) == (
        EscalationStatus.CONNECTING, dana.agent_id)
    assert [e for c, e in gateway.transfers if c == call.call_id] == [escalation.escalation_id]


class RefusingFunctionApp:
    """The function app's transfer route, refusing as it does when the call or the person cannot be reached."""

    def __init__(self) -> None:
        self.transfers: list[dict] = []

    async def transfer(self, request: web.Request) -> web.Response:
        self.transfers.append(await request.json())
        return web.json_response({"error": "the call could not be put through: ACS refused"}, status=409)


async def test_a_transfer_that_cannot_start_is_told_to_the_caller_who_keeps_their_place(
    services, offline_engines, dana: DeskAgent, speech
) -> None:
    functions = RefusingFunctionApp()
    app = web.Application()
    app.router.add_post("/api/calls/{call_id}/transfer", functions.transfer)
    async with serving(app) as function_app:
        running = Gateway(services, offline_engines, hooks=build_hooks(function_app))
        async with serving(create_app(running)) as url:
            gateway = RunningGateway(running, url, services, [], [])
            call = await gateway.open_call("+15555550100")
            caller, asked_at = await ask_for_a_person(url, call.url, speech)
            try:
                await caller.wait_audio(asked_at, timeout=20)
                await caller.wait_quiet(1.5, timeout=60)  # who they are going to, then that it did not work
                heard = await transcribe(offline_engines, caller.audio_since(asked_at))
                still_on_the_line = not caller.closed.is_set()
            finally:
                await hang_up(caller)

    assert re.search(r"putting you through", heard, re.I), heard  # not the name: STT once heard "today and"
    assert re.search(r"couldn'?t reach Dana", heard, re.I) and "keep your place" in heard.lower(), heard
    assert still_on_the_line
    customer = await services.customers.get(call.customer_id)
    escalation = customer.open_escalation(call.session_id)
    assert functions.transfers == [{"escalation_id": escalation.escalation_id}]
    assert (escalation.status, escalation.agent_id) == (EscalationStatus.WAITING, None)
    assert escalation.escalation_id in [e["escalation_id"] for e in await services.desk.waiting()]


async def test_a_waiting_caller_hears_when_a_person_claims_them_and_when_that_person_does_not_take_the_call(
    gateway: RunningGateway, speech, offline_engines
) -> None:
    call = await gateway.open_call("+15555550100")
    desk = gateway.services.desk
    caller, asked_at = await ask_for_a_person(gateway.base_url, call.url, speech)  # nobody on duty: they wait
    lee = DeskAgent(new_id("agent"), "Lee")
    try:
        await caller.wait_audio(asked_at, timeout=20)
        await caller.wait_quiet(1.0, timeout=60)
        customer = await gateway.services.customers.get(call.customer_id)
        waiting = customer.open_escalation(call.session_id)
        assert waiting is not None and waiting.status is EscalationStatus.WAITING

        await desk.set_presence(lee, AVAILABLE, phone="+15555550143")
        claimed_at = time.monotonic()
        await desk.route(waiting.escalation_id, lee)  # what the desk's claim does before it rings Lee
        await caller.wait_audio(claimed_at, timeout=10)
        await caller.wait_quiet(1.0, timeout=60)
        claimed = await transcribe(offline_engines, caller.audio_since(claimed_at))

        declined_at = time.monotonic()
        await desk.not_connected(call.customer_id, waiting.escalation_id)  # Lee's phone was declined
        await caller.wait_audio(declined_at, timeout=10)
        await caller.wait_quiet(1.0, timeout=60)
        declined = await transcribe(offline_engines, caller.audio_since(declined_at))
    finally:
        await hang_up(caller)
        await desk.set_presence(lee, AWAY)

    # Speech-to-text hears a short name as it likes ("Lee", "Leigh", "Deli"): the words around it are what count.
    assert re.search(r"putting \w+ through", claimed, re.I), claimed
    assert re.search(r"couldn'?t reach", declined, re.I) and "keep your place" in declined.lower(), declined
