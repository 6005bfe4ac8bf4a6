"""Calls through the running system: `python -m local` (Functions host + ACS emulator) with the real
azure-communication-callautomation SDK on the app's side, the emulator's HMAC check on the other, and a scripted
media gateway peer (tests/calls/gateway_peer.py) at the end of the media WebSocket.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, Awaitable, Callable
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from azure.communication.callautomation import TextSource
from azure.communication.callautomation.aio import CallAutomationClient
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import HttpResponseError

from local.acs.calls import RESOURCE_ID
from local.acs.oidc import METADATA_PATH
from shared.models import Identity, IdentityKind
from shared.stores.embedded_customers import SqliteCustomerStore
from shared.tokens import TokenSigner
from tests.calls.gateway_peer import FakeGateway
from tests.peers import free_port

SECRET = b"calls-test-secret-" + b"x" * 40
ACCESS_KEY = "c2VjcmV0LWtleS1mb3ItdGhlLWNhbGxzLXRlc3RzLTEyMzQ1Njc4OTA="  # base64, as ACS keys are
JORDAN = "+15555550100"
ESCALATION = "+15555550199"  # scenarios/utilities/scenario.yaml


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 10.0, what: str = "") -> Any:
    """Poll `check` until it returns something truthy; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what or check}"
        await asyncio.sleep(0.05)


class System:
    """The host, its emulator and the gateway peer, driven over HTTP as a person or ACS would."""

    def __init__(self, host: Any, gateway: FakeGateway, data_dir: Path) -> None:
        self.host, self.gateway, self.data_dir = host, gateway, data_dir
        self.app = httpx.AsyncClient(base_url=host.url, timeout=20)
        self.acs = httpx.AsyncClient(base_url=host.acs_url, timeout=20)
        self.tokens = TokenSigner(SECRET)

    async def place(self, caller: str | None = JORDAN) -> dict[str, Any]:
        response = await self.acs.post("/_emulator/calls", json={"from": caller})
        assert response.status_code == 201, response.text
        return response.json()

    async def call(self, call_id: str) -> dict[str, Any]:
        response = await self.acs.get(f"/_emulator/calls/{call_id}")
        assert response.status_code == 200, response.text
        return response.json()

    async def connected(self, caller: str | None = JORDAN) -> dict[str, Any]:
        """Place a call and wait until the app answered and the media stream runs."""
        call_id = (await self.place(caller))["id"]

        async def streaming() -> dict[str, Any] | None:
            call = await self.call(call_id)
            # ACS posts these in any order, ParticipantsUpdated beside them (local/acs/calls.py).
            return call if call["media"] == "streaming" and {"CallConnected", "MediaStreamingStarted"} <= set(
                _callback_types(call)) else None

        return await eventually(streaming, what=f"call {call_id} to stream")

    async def app_view(self, call: dict[str, Any], token: str | None = None) -> httpx.Response:
        return await self.app.get(f"/api/calls/{call['id']}", headers=_bearer(token or control_token(call)))

    async def app_state(self, call: dict[str, Any]) -> dict[str, Any]:
        response = await self.app_view(call)
        assert response.status_code == 200, response.text
        return response.json()

    async def close(self) -> None:
        for client in (self.app, self.acs):
            await client.aclose()


def media_token(call: dict[str, Any]) -> str:
    return parse_qs(urlsplit(call["answer"]["mediaStreamingOptions"]["transportUrl"]).query)["token"][0]


def control_token(call: dict[str, Any]) -> str:
    """The call-control token the media gateway mints for the call when it takes its media socket."""
    claims = TokenSigner(SECRET).verify(media_token(call), "media")
    return TokenSigner(SECRET).issue("call-control", 600, **{k: claims[k] for k in ("call", "sid", "cid")})


def callback_url(call: dict[str, Any]) -> str:
    return call["answer"]["callbackUri"]


def _callback_types(call: dict[str, Any]) -> list[str]:
    return [c["type"] for c in call["callbacks"]]


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _event(call: dict[str, Any], event_type: str = "CallConnected", **data: Any) -> dict[str, Any]:
    return {
        "id": f"test-{time.monotonic_ns()}", "source": f"calling/callConnections/{call['call_connection_id']}",
        "type": f"Microsoft.Communication.{event_type}", "specversion": "1.0", "time": "2026-01-01T00:00:00Z",
        "data": {"callConnectionId": call["call_connection_id"], "correlationId": call["id"], **data},
    }


@pytest.fixture(scope="module")
async def system(local_host_factory, tmp_path_factory):
    gateway = FakeGateway(SECRET)
    await gateway.start()
    data_dir = tmp_path_factory.mktemp("calls-data")
    host = await asyncio.to_thread(
        local_host_factory,
        SWITCHBOARD_TOKEN_SECRET=SECRET.decode(),
        SWITCHBOARD_DATA_DIR=str(data_dir),
        ACS_ACCESS_KEY=ACCESS_KEY,
        GATEWAY_PORT=str(free_port()),
        GATEWAY_PUBLIC_URL=gateway.url,
    )
    system = System(host, gateway, data_dir)
    yield system
    await system.close()
    await gateway.stop()


@pytest.fixture(autouse=True)
async def hang_up_what_the_test_left(request):
    """Each test starts with no live call, so queue figures and listeners are the test's own."""
    yield
    if "system" in request.fixturenames:
        system: System = request.getfixturevalue("system")
        for call in (await system.acs.get("/_emulator/calls")).json()["calls"]:
            if call["state"] == "connected":
                await system.acs.post(f"/_emulator/calls/{call['id']}/hangup")


# --- answering ------------------------------------------------------------------------------------------------


async def test_an_incoming_call_is_answered_with_media_streaming_to_the_gateway(system: System) -> None:
    call = await system.connected()

    media = call["answer"]["mediaStreamingOptions"]
    assert {k: v for k, v in media.items() if k != "transportUrl"} == {
        "transportType": "websocket", "contentType": "audio", "audioChannelType": "mixed",
        "startMediaStreaming": True, "enableBidirectional": True, "audioFormat": "pcm16KMono",
        "enableDtmfTones": True,  # the caller may key a code (docs/security.md, "Verifying customers")
    }
    assert media["transportUrl"].startswith(f"{system.gateway.url}/media?token=")
    claims = system.tokens.verify(media_token(call), "media")
    assert claims["call"] == call["id"] and claims["sid"] == f"voice_{call['id']}"

    callback_claims = system.tokens.verify(parse_qs(urlsplit(callback_url(call)).query)["token"][0], "acs-callback")
    assert callback_url(call).startswith(f"{system.host.url}/api/calls/callbacks?token=")
    assert {k: callback_claims[k] for k in ("call", "sid", "cid")} == {k: claims[k] for k in ("call", "sid", "cid")}

    # The caller is Jordan Lee's record, and the voice session holds the greeting the gateway speaks first.
    store = SqliteCustomerStore(system.data_dir / "customers.sqlite3")
    try:
        jordan = await store.find_by_identity(Identity(IdentityKind.PHONE, JORDAN))
    finally:
        await store.close()
    assert jordan is not None and jordan.customer_id == claims["cid"]
    session = jordan.sessions[claims["sid"]]
    assert session.channel.value == "voice" and session.turns[0].role == "agent" and "Jordan" in session.turns[0].text

    assert all(c["status"] == 204 for c in call["callbacks"])
    state = await system.app_state(call)
    assert (state["state"], state["media"], state["session_status"]) == ("connected", "streaming", "active")


async def test_the_gateway_gets_metadata_first_then_20ms_frames_in_real_time(system: System) -> None:
    call = await system.connected()
    connection = await system.gateway.connection(call["id"])
    await asyncio.sleep(1.0)
    first, *rest = connection.messages
    assert first == {"kind": "AudioMetadata", "audioMetadata": {
        "subscriptionId": call["call_connection_id"], "encoding": "PCM", "sampleRate": 16000, "channels": 1,
        "length": 640,
    }}
    frames = connection.audio_frames
    # 640 bytes of silence, or (now and then, as the docs allow) silence with "data": null
    assert frames and all(f["silent"] is True and (f["data"] is None or len(f["data"]) == 856) for f in frames)
    assert any(f["data"] is None for f in frames) and sum(f["data"] is None for f in frames) < len(frames) / 10
    span = connection.frame_times[-1] - connection.frame_times[1]
    assert 40 <= (len(frames) - 1) / span <= 60, "about 50 frames a second"

    await system.acs.post(f"/_emulator/calls/{call['id']}/audio", content=b"\x01\x02" * 3200)  # 200 ms of speech
    spoken = lambda: _async(sum(1 for f in connection.audio_frames if not f["silent"]) == 10)  # noqa: E731
    await eventually(spoken, what="the caller's 10 frames")


async def _async(value: Any) -> Any:
    return value


async def test_a_redelivered_incoming_call_is_answered_once(system: System) -> None:
    call = await system.connected()
    for same_event in (True, True, False):  # Event Grid retrying, then ACS publishing the call again
        response = await system.acs.post(f"/_emulator/calls/{call['id']}/redeliver", json={"same_event": same_event})
        assert response.json()["status"] == 202
    await asyncio.sleep(0.5)
    call = await system.call(call["id"])
    assert call["answers"] == 1 and [a["op"] for a in call["actions"]] == ["answer"]
    assert _callback_types(call).count("CallConnected") == 1


async def test_a_withheld_number_is_answered_as_a_new_customer(system: System) -> None:
    call = await system.connected(caller=None)
    jordan = await system.connected()
    customer = system.tokens.verify(media_token(call), "media")["cid"]
    assert customer != system.tokens.verify(media_token(jordan), "media")["cid"]


@pytest.mark.parametrize(
    "event",
    [
        {"eventType": "Microsoft.Communication.IncomingCall", "data": {"correlationId": "c", "from": {}}},
        {"eventType": "Microsoft.Communication.CallEnded", "data": {}},
    ],
)
async def test_a_malformed_or_unexpected_event_is_dropped_without_a_retry(system: System, event: dict) -> None:
    body = [{"id": f"bad-{time.monotonic_ns()}", "subject": "s", "eventTime": "2026-01-01T00:00:00Z",
             "dataVersion": "1.0", **event}]
    response = await system.app.post(
        "/runtime/webhooks/EventGrid?functionName=incoming_call", json=body, headers={"aeg-event-type": "Notification"}
    )
    assert response.status_code == 202  # accepted and logged: a redelivery could not fix it


async def test_an_incoming_call_in_the_cloudevents_schema_is_answered_once(system: System) -> None:
    # An ACS subscription may deliver CloudEvents 1.0 (type, time, source) instead of the Event Grid schema.
    placed = (await system.acs.post("/_emulator/calls", json={"from": JORDAN, "deliver": False})).json()
    event = placed["event"]
    cloud_event = {
        "id": event["id"], "source": "/subscriptions/s/resourceGroups/r/providers/Microsoft.Communication/"
        "communicationServices/switchboard", "type": event["eventType"], "specversion": "1.0",
        "time": event["eventTime"], "subject": event["subject"], "data": event["data"],
    }
    for _ in range(2):  # and Event Grid redelivering it
        response = await system.app.post("/runtime/webhooks/EventGrid?functionName=incoming_call",
                                         json=[cloud_event], headers={"aeg-event-type": "Notification"})
        assert response.status_code in (200, 202), response.text
    call = await eventually(lambda: _answered(system, placed["id"]), what="the CloudEvents call to be answered")
    assert call["answers"] == 1 and call["state"] == "connected"


async def _answered(system: System, call_id: str) -> dict[str, Any] | None:
    call = await system.call(call_id)
    return call if call["answers"] else None


# --- callbacks ------------------------------------------------------------------------------------------------


async def test_queue_metrics_follow_the_call(system: System) -> None:
    async def in_progress() -> int:
        return (await system.app.get("/api/ops/queue")).json()["queue"]["in_progress"]

    before = await in_progress()
    call = await system.connected()
    assert await in_progress() == before + 1
    await system.acs.post(f"/_emulator/calls/{call['id']}/hangup")
    await eventually(lambda: _equals(in_progress(), before), what="the call to leave the queue figures")


async def _equals(value: Awaitable[Any], expected: Any) -> bool:
    return (await value) == expected


async def test_the_caller_hanging_up_ends_the_session(system: System) -> None:
    call = await system.connected()
    connection = await system.gateway.connection(call["id"])
    await system.acs.post(f"/_emulator/calls/{call['id']}/hangup")
    await asyncio.wait_for(connection.closed.wait(), 5)

    ended = await eventually(lambda: _when_state(system, call, "ended"), what="the app to see the call end")
    assert (ended["media"], ended["session_status"]) == ("stopped", "completed")
    assert _callback_types(await system.call(call["id"]))[-2:] == ["MediaStreamingStopped", "CallDisconnected"]


async def _when_state(system: System, call: dict[str, Any], state: str) -> dict[str, Any] | None:
    view = await system.app_state(call)
    return view if view["state"] == state else None


@pytest.mark.parametrize(
    "token",
    [
        None,
        "",
        "forged.token",
        TokenSigner(b"another-secret-" + b"y" * 40).issue("acs-callback", 60, call="x", sid="y", cid="z"),
        "MEDIA",  # the call's media token: the right signer, the wrong audience
        "EXPIRED",
    ],
)
async def test_callbacks_without_a_valid_token_are_refused_and_change_nothing(system: System, token) -> None:
    call = await system.connected()
    before = await system.app_state(call)
    url = f"/api/calls/callbacks?token={token}" if token is not None else "/api/calls/callbacks"
    if token == "MEDIA":
        url = f"/api/calls/callbacks?token={media_token(call)}"
    elif token == "EXPIRED":
        old = TokenSigner(SECRET, clock=lambda: time.time() - 10 * 24 * 3600)
        url = f"/api/calls/callbacks?token={old.issue('acs-callback', 60, call=call['id'], sid='s', cid='c')}"
    response = await system.app.post(url, json=[_event(call, "CallDisconnected")])
    assert response.status_code == 401 and response.json()["error"]
    after = await system.app_state(call)
    assert (after["state"], after["session_status"]) == (before["state"], before["session_status"])
    assert after["state"] == "connected" and after["session_status"] == "active"


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b"[]", 400, "non-empty"),
        (b'[{"type": "Microsoft.Communication.CallDisconnected", "id": "x", "data": {}}]', 400, "callConnectionId"),
        ("OTHER CALL", 403, "another call"),
    ],
)
async def test_malformed_callbacks_get_a_clear_4xx_and_change_nothing(system: System, body, status, says) -> None:
    call = await system.connected()
    if body == "OTHER CALL":
        other = await system.connected()
        body = httpx.Request("POST", "/", json=[_event(other, "CallDisconnected")]).read()
    response = await system.app.post(
        "/api" + callback_url(call).split("/api", 1)[1], content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == status and says in response.json()["error"]
    assert (await system.app_state(call))["state"] == "connected"


async def test_a_repeated_callback_is_applied_once(system: System) -> None:
    call = await system.connected()
    url = "/api" + callback_url(call).split("/api", 1)[1]
    event = _event(call, "CallTransferAccepted")
    for _ in range(2):
        assert (await system.app.post(url, json=[event])).status_code == 204
    assert (await system.app_state(call))["state"] == "transferred"
    later = _event(call, "CallConnected")  # a new event still counts; the duplicate did not
    assert (await system.app.post(url, json=[later])).status_code == 204


# --- call control ---------------------------------------------------------------------------------------------


async def test_the_gateway_hangs_up_through_call_control(system: System) -> None:
    call = await system.connected()
    response = await system.app.post(f"/api/calls/{call['id']}/hangup", headers=_bearer(control_token(call)))
    assert response.status_code == 202, response.text
    emulated = await system.call(call["id"])
    assert emulated["state"] == "disconnected" and emulated["actions"][-1]["op"] == "terminate"
    ended = await eventually(lambda: _when_state(system, call, "ended"), what="CallDisconnected to reach the app")
    assert ended["session_status"] == "completed"

    again = await system.app.post(f"/api/calls/{call['id']}/hangup", headers=_bearer(control_token(call)))
    assert again.status_code == 409 and "ended" in again.json()["error"]


async def test_a_transfer_goes_to_the_scenarios_escalation_number(system: System) -> None:
    call = await system.connected()
    response = await system.app.post(f"/api/calls/{call['id']}/transfer", headers=_bearer(control_token(call)))
    assert response.status_code == 202 and response.json()["target"] == ESCALATION
    emulated = await eventually(lambda: _emulated_state(system, call, "transferred"), what="the transfer")
    transfer = next(a for a in emulated["actions"] if a["op"] == "transferToParticipant")
    assert transfer["body"]["targetParticipant"]["rawId"] == f"4:{ESCALATION}"
    assert emulated["transfer_target"] == ESCALATION
    assert _callback_types(emulated)[-3:] == ["CallTransferAccepted", "MediaStreamingStopped", "CallDisconnected"]
    view = await eventually(lambda: _when_state(system, call, "transferred"), what="the app to see the transfer")
    assert view["session_status"] == "transferred"


async def _emulated_state(system: System, call: dict[str, Any], state: str) -> dict[str, Any] | None:
    emulated = await system.call(call["id"])
    return emulated if emulated["state"] == state and "CallDisconnected" in _callback_types(emulated) else None


async def test_the_control_routes_take_only_the_calls_own_control_token(system: System) -> None:
    call, other = await system.connected(), await system.connected()
    callback_token = parse_qs(urlsplit(callback_url(call)).query)["token"][0]
    for headers, status in [
        ({}, 401),
        (_bearer("forged.token"), 401),
        (_bearer(callback_token), 401),  # the right signer, the wrong audience
        (_bearer(media_token(call)), 401),  # the socket's token: for the socket only
        (_bearer(control_token(other)), 403),
    ]:
        for path in ("", "/hangup", "/transfer"):
            method = system.app.get if not path else system.app.post
            response = await method(f"/api/calls/{call['id']}{path}", headers=headers)
            assert response.status_code == status, (path, headers, response.text)
    assert (await system.call(call["id"]))["state"] == "connected"

    unknown = system.tokens.issue("call-control", 60, call="no-such-call", sid="s", cid="c")
    response = await system.app.get("/api/calls/no-such-call", headers=_bearer(unknown))
    assert response.status_code == 404


async def test_without_the_gateway_the_caller_is_handed_to_a_person(system: System) -> None:
    system.gateway.refuse_all = True
    try:
        call_id = (await system.place())["id"]
        emulated = await eventually(lambda: _emulated_state(system, {"id": call_id}, "transferred"), what="a rescue")
    finally:
        system.gateway.refuse_all = False
    assert "MediaStreamingFailed" in _callback_types(emulated) and emulated["transfer_target"] == ESCALATION


# --- the emulator's side ----------------------------------------------------------------------------------------


async def test_the_emulator_takes_only_requests_signed_with_the_resource_key(system: System) -> None:
    call = await system.connected()
    async with CallAutomationClient(system.host.acs_url, AzureKeyCredential(ACCESS_KEY)) as client:
        props = await client.get_call_connection(call["call_connection_id"]).get_call_properties()
        assert props.correlation_id == call["id"] and props.call_connection_state == "connected"

    wrong = "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXktMTIzNA=="
    async with CallAutomationClient(system.host.acs_url, AzureKeyCredential(wrong)) as client:
        with pytest.raises(HttpResponseError) as refused:
            await client.get_call_connection(call["call_connection_id"]).hang_up(is_for_everyone=True)
    assert refused.value.status_code == 401
    unsigned = await system.acs.post(f"/calling/callConnections/{call['call_connection_id']}:terminate", json={})
    assert unsigned.status_code == 401
    assert (await system.call(call["id"]))["state"] == "connected"


async def test_the_sdk_stops_and_restarts_media_and_plays_on_the_emulator(system: System) -> None:
    call = await system.connected()
    first = await system.gateway.connection(call["id"])
    async with CallAutomationClient(system.host.acs_url, AzureKeyCredential(ACCESS_KEY)) as client:
        connection = client.get_call_connection(call["call_connection_id"])

        await connection.stop_media_streaming(operation_context="pause")
        await asyncio.wait_for(first.closed.wait(), 5)
        stopped = await eventually(lambda: _when_media(system, call, "stopped"), what="the app to see media stop")
        assert stopped["state"] == "connected"

        system.gateway.connections.pop(call["id"])
        await connection.start_media_streaming(operation_context="resume")
        second = await system.gateway.connection(call["id"])
        await eventually(lambda: _async(len(second.messages) > 1), what="audio on the new stream")
        assert second.messages[0]["kind"] == "AudioMetadata" and second.messages[1]["kind"] == "AudioData"
        await eventually(lambda: _when_media(system, call, "streaming"), what="the app to see media resume")

        await connection.play_media(TextSource(text="Please hold.", voice_name="en-US-NancyNeural"))
        emulated = await eventually(lambda: _has_callback(system, call, "PlayCompleted"), what="PlayCompleted")
    play = next(a for a in emulated["actions"] if a["op"] == "play")
    assert play["body"]["playSources"][0]["text"]["text"] == "Please hold."
    types = _callback_types(emulated)
    assert types.index("MediaStreamingStopped") < types.index("PlayStarted") < types.index("PlayCompleted")


async def _when_media(system: System, call: dict[str, Any], media: str) -> dict[str, Any] | None:
    view = await system.app_state(call)
    return view if view["media"] == media else None


async def _has_callback(system: System, call: dict[str, Any], event_type: str) -> dict[str, Any] | None:
    emulated = await system.call(call["id"])
    return emulated if event_type in _callback_types(emulated) else None


# --- ACS's JWT on callbacks -------------------------------------------------------------------------------------


async def test_with_a_resource_id_callbacks_must_carry_acs_jwt(local_host_factory, tmp_path_factory) -> None:
    gateway = FakeGateway(SECRET)
    await gateway.start()
    acs_port = free_port()
    host = await asyncio.to_thread(
        local_host_factory,
        SWITCHBOARD_TOKEN_SECRET=SECRET.decode(),
        ACS_EMULATOR_PORT=str(acs_port),
        ACS_RESOURCE_IMMUTABLE_ID=RESOURCE_ID,
        ACS_OPENID_CONFIGURATION_URL=f"http://127.0.0.1:{acs_port}{METADATA_PATH}",
        GATEWAY_PORT=str(free_port()),
        GATEWAY_PUBLIC_URL=gateway.url,
    )
    system = System(host, gateway, tmp_path_factory.mktemp("jwt"))
    try:
        call = await system.connected()  # the emulator's JWTs were checked and accepted
        assert all(c["status"] == 204 for c in call["callbacks"])
        url = "/api" + callback_url(call).split("/api", 1)[1]
        response = await system.app.post(url, json=[_event(call, "CallDisconnected")])  # URL token, no JWT
        assert response.status_code == 401 and "JWT" in response.json()["error"]
        assert (await system.app_state(call))["state"] == "connected"
        await system.acs.post(f"/_emulator/calls/{call['id']}/hangup")
    finally:
        await system.close()
        await gateway.stop()
        host.stop()
