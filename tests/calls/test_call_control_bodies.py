"""The call-control routes' bodies (functions/api/call_control.py), through the running system: `python -m local`
(Functions host + ACS emulator, the real Call Automation SDK between them) and the scripted gateway peer at the media
WebSocket (tests/calls/gateway_peer.py, standing in for the media gateway's socket only).

What the media gateway sends (media_gateway/hooks.py, its real HTTP client) must pass the models' checks; a body the
models refuse is a 400 naming the field, and leaves the call alone. Every answer is checked against the document the
host serves, as JSON Schema 2020-12, so the document and the routes cannot drift.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from media_gateway.hooks import ABANDONED, VOICEMAIL, CallRef, FunctionsCallControl
from shared.errors import SwitchboardError
from tests.calls.gateway_peer import FakeGateway
from tests.e2e.test_calls import ACCESS_KEY, SECRET, System, control_token, eventually
from tests.e2e.test_openapi import validate
from tests.peers import free_port


@pytest.fixture(scope="module")
async def system(local_host_factory, tmp_path_factory):
    gateway = FakeGateway(SECRET)
    await gateway.start()
    host = await asyncio.to_thread(
        local_host_factory, SWITCHBOARD_TOKEN_SECRET=SECRET.decode(),
        SWITCHBOARD_DATA_DIR=str(tmp_path_factory.mktemp("call-control-data")), ACS_ACCESS_KEY=ACCESS_KEY,
        GATEWAY_PORT=str(free_port()), GATEWAY_PUBLIC_URL=gateway.url,
    )
    system = System(host, gateway, tmp_path_factory.mktemp("unused"))
    yield system
    await system.close()
    await gateway.stop()


@pytest.fixture(scope="module")
async def document(system: System) -> dict[str, Any]:
    served = await system.app.get("/api/openapi.json")
    assert served.status_code == 200, served.text
    return served.json()


def assert_documented(document: dict[str, Any], component: str, body: Any) -> None:
    """`body` is valid against `components.schemas[component]` of the served document (tests/e2e/test_openapi.py)."""
    validate(document, {"$ref": f"#/components/schemas/{component}"}, body)


def gateway_ref(call: dict[str, Any]) -> CallRef:
    """The call as the media gateway holds it: its ids and its call-control token."""
    return CallRef(call["id"], f"voice_{call['id']}", "unused", control_token(call))


async def test_bodies_the_models_refuse_are_400s_naming_the_field_and_leave_the_call_alone(system, document) -> None:
    call = await system.connected()
    headers = {"Authorization": f"Bearer {control_token(call)}"}
    refused = [
        ("hangup", {"outcome": "bored"}, "outcome: Input should be 'abandoned' or 'voicemail'"),
        ("hangup", {"outcome": None}, "outcome: Input should be 'abandoned' or 'voicemail'"),
        ("hangup", {"outcome": 1}, "outcome: Input should be 'abandoned' or 'voicemail'"),
        ("hangup", {"reason": "done"}, "unknown field(s): reason"),
        ("hangup", ["abandoned"], "request body must be a JSON object"),
        ("transfer", {"escalation_id": "   "}, "escalation_id: String should hold something other than whitespace"),
        ("transfer", {"escalation_id": "e" * 101}, "escalation_id: String should have at most 100 characters"),
        ("transfer", {"escalation_id": 7}, "escalation_id: Input should be a valid string"),
        ("transfer", {"escalation_id": "esc_1", "to": "+15555550123"}, "unknown field(s): to"),
    ]
    for action, body, says in refused:
        response = await system.app.post(f"/api/calls/{call['id']}/{action}", json=body, headers=headers)
        assert (response.status_code, response.json()) == (400, {"error": says}), (action, body)

    view = (await system.app_view(call)).json()
    assert_documented(document, "CallStatus", view)
    assert (view["state"], view["media"]) == ("connected", "streaming") and "transfer" not in view, view
    emulated = await system.call(call["id"])
    assert emulated["state"] == "connected" and not [a for a in emulated["actions"] if a["op"] != "answer"], emulated


@pytest.mark.parametrize("reason, outcome", [(VOICEMAIL, "voicemail"), (ABANDONED, "abandoned"), ("done", None)])
async def test_the_gateways_hang_ups_are_accepted_and_recorded(system, document, reason, outcome) -> None:
    """The gateway's own client sends each body it can (media_gateway/hooks.py); voicemail included, which the
    hand-written schema left out."""
    call = await system.connected()
    await FunctionsCallControl(system.host.url).hang_up(gateway_ref(call), reason)

    async def over() -> dict[str, Any] | None:
        view = (await system.app_view(call)).json()
        return view if view.get("ended_at") else None

    view = await eventually(over, what="the hang-up to reach the call's record")
    assert_documented(document, "CallStatus", view)
    kept = {key for key in ("abandoned_at", "voicemail_at") if key in view}
    assert kept == ({f"{outcome}_at"} if outcome else set()), view
    assert view["state"] == ("abandoned" if outcome == "abandoned" else "ended"), view


async def test_the_answer_to_a_hang_up_echoes_its_outcome_as_documented(system, document) -> None:
    call = await system.connected()
    response = await system.app.post(f"/api/calls/{call['id']}/hangup", json={"outcome": "voicemail"},
                                     headers={"Authorization": f"Bearer {control_token(call)}"})
    assert response.status_code == 202, response.text
    assert response.json() == {"call_id": call["id"], "action": "hangup", "outcome": "voicemail"}
    assert_documented(document, "CallAction", response.json())


async def test_the_gateways_transfer_request_passes_the_check(system) -> None:
    """`{"escalation_id"}` as the gateway sends it gets past the body's check to the desk's records: an escalation
    this caller never had is a 404 from there, not a 400; the call stays where it was."""
    call = await system.connected()
    with pytest.raises(SwitchboardError) as refused:
        await FunctionsCallControl(system.host.url).transfer(gateway_ref(call), "esc_nobody")
    assert "404" in str(refused.value) and "no escalation 'esc_nobody'" in str(refused.value), refused.value
    assert (await system.call(call["id"]))["state"] == "connected"


async def test_a_transfer_without_a_body_answers_as_documented(system, document) -> None:
    call = await system.connected()
    response = await system.app.post(f"/api/calls/{call['id']}/transfer",
                                     headers={"Authorization": f"Bearer {control_token(call)}"})
    assert response.status_code == 202, response.text
    body = response.json()
    assert_documented(document, "CallAction", body)
    assert body == {"call_id": call["id"], "action": "transfer", "target": "+15555550199"}, body
    async with httpx.AsyncClient(base_url=system.host.url, timeout=20) as app:
        view = await eventually(lambda: _transferred(app, call), what="the transfer to reach the app")
    assert_documented(document, "CallStatus", view)


async def _transferred(app: httpx.AsyncClient, call: dict[str, Any]) -> dict[str, Any] | None:
    response = await app.get(f"/api/calls/{call['id']}", headers={"Authorization": f"Bearer {control_token(call)}"})
    view = response.json()
    return view if view.get("state") == "transferred" else None
