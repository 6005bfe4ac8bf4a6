"""The emulator's Call Automation API and callbacks, against azure-communication-callautomation's models.

The emulator runs in this process; the real SDK client answers, plays, reads and transfers a call on it (so the SDK
parses every answer the emulator gives), and what the SDK reads back from the wire is also checked field by field.
The callbacks go to a small recording server standing where the app's callback route would be: every one is read
as a CloudEvent (azure-core) and its data through the SDK's generated model of that event type. The IncomingCall
event has no model in these packages (it is an Event Grid system event), so it is not checked here.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
from aiohttp import web
from azure.communication.callautomation import PhoneNumberIdentifier, TextSource
from azure.communication.callautomation._generated import models
from azure.communication.callautomation.aio import CallAutomationClient
from azure.core.credentials import AzureKeyCredential
from azure.core.messaging import CloudEvent

from local.acs.calls import CallsApi
from local.acs.server import AcsEmulator, EmulatorService
from tests.acs_contract.models import read_back
from tests.peers import free_port, serving

ACCESS_KEY = "c2VjcmV0LWtleS1mb3ItdGhlLWFjcy1jb250cmFjdC10ZXN0cw=="
CALLER, TARGET = "+15555550123", "+15555550188"
#: Fields the docs' sample callbacks carry that the SDK's event models do not have.
SAMPLE_EXTRAS = frozenset({"version", "publicEventType"})


async def test_the_emulators_call_answers_and_callbacks_read_back_through_the_sdks_models() -> None:
    posted: list[dict[str, Any]] = []

    async def callbacks(request: web.Request) -> web.Response:
        posted.extend(await request.json())
        return web.Response(status=204)

    recorder = web.Application()
    recorder.router.add_post("/callbacks", callbacks)
    async with serving(recorder) as app_url:
        emulator = EmulatorService(AcsEmulator(
            access_key=ACCESS_KEY, functions_url=app_url,
            modules=[CallsApi(sign_callbacks=False, transfer_ring_seconds=0.5, redelivery=0.0)]), free_port())
        await emulator.start()
        try:
            bodies = await _a_call(emulator.url, f"{app_url}/callbacks", posted)
        finally:
            await emulator.stop()

    for body in bodies:  # what the SDK got back from the API, as the service would answer
        properties = read_back(models.CallConnectionProperties, body)
        assert properties.source.phone_number.value == CALLER and properties.call_connection_state == "connected"
    types = [event["type"].removeprefix("Microsoft.Communication.") for event in posted]
    assert {"CallConnected", "ParticipantsUpdated", "PlayStarted", "PlayCompleted", "CallTransferAccepted",
            "CallDisconnected"} <= set(types), types
    for event in posted:
        envelope = CloudEvent.from_dict(event)
        model = getattr(models, event["type"].removeprefix("Microsoft.Communication."))
        data = read_back(model, envelope.data, beyond=SAMPLE_EXTRAS)
        assert data.call_connection_id == bodies[0]["callConnectionId"]
    [participants] = [e["data"] for e in posted if e["type"].endswith("ParticipantsUpdated")]
    read = models.ParticipantsUpdated.deserialize(participants)
    assert [p.identifier.phone_number.value for p in read.participants][:1] == [CALLER]
    [accepted] = [e["data"] for e in posted if e["type"].endswith("CallTransferAccepted")]
    assert models.CallTransferAccepted.deserialize(accepted).transfer_target.phone_number.value == TARGET


async def _a_call(emulator_url: str, callback_url: str, posted: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ring, answer, play, read and transfer one call with the SDK; returns the API bodies the SDK read."""
    bodies: list[dict[str, Any]] = []

    def keep(response: Any) -> None:
        bodies.append(response.http_response.json())

    async with httpx.AsyncClient(base_url=emulator_url) as driver:
        placed = await driver.post("/_emulator/calls", json={"from": CALLER, "deliver": False})
        context = placed.json()["event"]["data"]["incomingCallContext"]
    async with CallAutomationClient(emulator_url, AzureKeyCredential(ACCESS_KEY)) as client:
        answered = await client.answer_call(context, callback_url, raw_response_hook=keep)
        connection = client.get_call_connection(answered.call_connection_id)
        await connection.play_media(TextSource(text="Hello", voice_name="en-US-NancyNeural"),
                                    operation_context="greeting")
        await connection.get_call_properties(raw_response_hook=keep)
        await connection.transfer_call_to_participant(PhoneNumberIdentifier(TARGET), operation_context="person")
    deadline = time.monotonic() + 10
    while not any(e["type"].endswith("CallDisconnected") for e in posted):
        assert time.monotonic() < deadline, [e["type"] for e in posted]
        await asyncio.sleep(0.05)
    return bodies
