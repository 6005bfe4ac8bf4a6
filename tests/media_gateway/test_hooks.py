"""Ending a call, starting a handoff and putting a caller through to a person go to the function app's routes, with
the call's control token."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from media_gateway.hooks import ABANDONED, CallRef, FunctionsCallControl, build_hooks
from shared.errors import SwitchboardError, Unavailable
from tests.peers import free_port, serving

CALL = CallRef(call_id="corr-1", session_id="voice_1", customer_id="cus_1", token="control-token")


class FunctionApp:
    """The two routes as functions/calls.py and functions/handoff.py answer them."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict | None]] = []
        self.hangup_status = 202
        self.transfer_status = 202

    async def hangup(self, request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else None
        self.requests.append((request.path, request.headers.get("Authorization", ""), body))
        return web.json_response({"error": "call corr-1 has ended"} if self.hangup_status == 409 else {}, status=self.hangup_status)

    async def transfer(self, request: web.Request) -> web.Response:
        self.requests.append((request.path, request.headers.get("Authorization", ""), await request.json()))
        if self.transfer_status != 202:
            return web.json_response({"error": "escalation esc_1 is waiting: it is not being put through to anyone"},
                                     status=self.transfer_status)
        return web.json_response({"call_id": "corr-1", "action": "transfer", "target": "+15555550142",
                                  "escalation_id": "esc_1"}, status=202)

    async def handoffs(self, request: web.Request) -> web.Response:
        self.requests.append((request.path, request.headers.get("Authorization", ""), await request.json()))
        return web.json_response({"id": "handoff-voice_1", "status_url": "/api/handoffs/handoff-voice_1"}, status=202)


@pytest.fixture
async def function_app() -> AsyncIterator[tuple[FunctionApp, str]]:
    fake = FunctionApp()
    app = web.Application()
    app.router.add_post("/api/calls/{call_id}/hangup", fake.hangup)
    app.router.add_post("/api/handoffs", fake.handoffs)
    app.router.add_post("/api/calls/{call_id}/transfer", fake.transfer)
    async with serving(app) as url:
        yield fake, url


async def test_the_default_hooks_hang_up_and_start_the_handoff_through_the_function_app(function_app) -> None:
    fake, url = function_app
    hooks = build_hooks(url)
    await hooks.start_handoff(CALL, "whatsapp")
    await hooks.end_call(CALL, "the caller moved to whatsapp")
    assert fake.requests == [
        ("/api/handoffs", "Bearer control-token", {"customer_id": "cus_1", "session_id": "voice_1", "to_channel": "whatsapp"}),
        ("/api/calls/corr-1/hangup", "Bearer control-token", None),
    ]


async def test_a_call_ended_on_a_silent_caller_is_hung_up_as_abandoned(function_app) -> None:
    fake, url = function_app
    await build_hooks(url).end_call(CALL, ABANDONED)
    assert fake.requests == [("/api/calls/corr-1/hangup", "Bearer control-token", {"outcome": "abandoned"})]


async def test_a_call_that_already_ended_is_not_an_error_but_a_refusal_is(function_app) -> None:
    fake, url = function_app
    control = FunctionsCallControl(url)
    fake.hangup_status = 409
    await control.hang_up(CALL, "done")
    fake.hangup_status = 500
    with pytest.raises(SwitchboardError, match="refused: 500"):
        await control.hang_up(CALL, "done")


async def test_an_unreachable_function_app_is_unavailable() -> None:
    with pytest.raises(Unavailable):
        await FunctionsCallControl(f"http://127.0.0.1:{free_port()}").hang_up(CALL, "done")


async def test_putting_a_caller_through_names_the_escalation_and_a_refusal_raises(function_app) -> None:
    fake, url = function_app
    hooks = build_hooks(url)
    await hooks.transfer(CALL, "esc_1")
    assert fake.requests == [("/api/calls/corr-1/transfer", "Bearer control-token", {"escalation_id": "esc_1"})]
    fake.transfer_status = 409
    with pytest.raises(SwitchboardError, match="refused: 409 .*not being put through"):
        await hooks.transfer(CALL, "esc_1")
