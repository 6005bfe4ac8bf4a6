"""A caller accepts to move to web chat and the function app refuses to start the handoff: the caller hears the
acceptance, then the apology, and stays on the line; the transcript says what they heard, not that they moved.

The gateway runs its real hooks (media_gateway/hooks.py) against a function app that answers 503 to
`POST /api/handoffs`, the boundary where the handoff's start fails in production.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from media_gateway.hooks import build_hooks
from media_gateway.server import Gateway, create_app
from shared.models import SessionStatus
from tests.media_gateway.caller import AcsCaller
from tests.media_gateway.conftest import RunningGateway
from tests.peers import serving


class RefusingFunctionApp:
    """The function app's call routes, with the handoff's start failing as during a Durable or store outage."""

    def __init__(self) -> None:
        self.handoffs = 0
        self.hangups = 0

    async def start_handoff(self, request: web.Request) -> web.Response:
        self.handoffs += 1
        return web.json_response({"error": "a backing service is unavailable; try again shortly"}, status=503)

    async def hang_up(self, request: web.Request) -> web.Response:
        self.hangups += 1
        return web.json_response({}, status=202)


@pytest.fixture
async def refusing_gateway(services, offline_engines) -> AsyncIterator[tuple[RunningGateway, RefusingFunctionApp]]:
    functions = RefusingFunctionApp()
    app = web.Application()
    app.router.add_post("/api/handoffs", functions.start_handoff)
    app.router.add_post("/api/calls/{call_id}/hangup", functions.hang_up)
    async with serving(app) as function_app:
        running = Gateway(services, offline_engines, hooks=build_hooks(function_app))
        async with serving(create_app(running)) as url:
            yield RunningGateway(running, url, services, [], []), functions


async def test_a_refused_handoff_is_apologised_for_and_the_transcript_says_so(refusing_gateway, speech) -> None:
    gateway, functions = refusing_gateway
    call = await gateway.open_call("+15555550100")  # Jordan Lee: we have their number for WhatsApp
    async with aiohttp.ClientSession() as http:
        caller = await AcsCaller.connect(http, call.url)
        await caller.wait_audio(time.monotonic(), timeout=10)
        # "web chat", not "WhatsApp", which speech-to-text now and then hears as "what's app"
        asked = caller.say(speech("can we continue on web chat instead?"))  # over the greeting
        await asyncio.wait_for(asked.done.wait(), timeout=15)
        await caller.wait_audio(asked.finished_at, timeout=30)
        await caller.wait_quiet(1.5, timeout=60)  # the acceptance, then the apology, played out
        still_on_the_line = not caller.closed.is_set()
        await caller.close()

    assert functions.handoffs == 1 and functions.hangups == 0
    assert still_on_the_line, "a caller whose handoff did not start must not be hung up on"
    session = await gateway.services.conversation.transcript(call.session_id, call.customer_id)
    asked_turn = max(i for i, t in enumerate(session.turns) if t.role == "customer")
    answer = " ".join(t.text for t in session.turns[asked_turn + 1:])
    print(f"\nthe caller heard: {answer}")
    # The acceptance they heard first, then the apology: both, in that order, as spoken.
    assert "sending you a web chat message" in answer and "can't move this conversation to web chat" in answer, answer
    assert answer.index("sending you") < answer.index("can't move"), answer
    assert session.turns[asked_turn].switch_to is None, "the turn still records the switch as accepted"
    assert session.status is SessionStatus.ACTIVE
