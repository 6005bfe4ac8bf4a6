"""A caller put through to a person: the transfer's callbacks settle the escalation once, in whatever order and
however often ACS delivers them, and a person who never picks up sends the caller back to the queue.

The emulator rings a person's phone registered on it (local/acs/phones.py); the callbacks are posted here through
`CallService.on_callbacks`, as the callback route does, on a state that delays every read and write
(tests/calls/rig.py) so that callbacks landing together interleave, on SQLite and on a real Redis.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest

from shared.desk import AVAILABLE, DeskAgent
from shared.models import Escalation, EscalationStatus, SessionStatus, new_id
from shared.stores.azure_redis import RedisSessionState
from tests.calls.rig import CallRig, SlowState, callback, call_rig, eventually

PHONE = "+15555550142"
RING_SECONDS = 0.5  # a person's phone rings this long in these tests, then the call is missed


@pytest.fixture(params=["sqlite", "redis"])
async def rig(request: pytest.FixtureRequest, tmp_path) -> AsyncIterator[CallRig]:
    state = RedisSessionState(request.getfixturevalue("redis_url")) if request.param == "redis" else None
    async with call_rig(tmp_path, SlowState, state, transfer_ring_seconds=RING_SECONDS) as rig:
        yield rig


async def routed_caller(rig: CallRig) -> tuple[str, str, Escalation]:
    """A call answered and connected whose caller asked for a person and was routed to one who is free."""
    await rig.services.desk.set_presence(DeskAgent(new_id("agent"), "Dana"), AVAILABLE, phone=PHONE)
    incoming, _ = await rig.ring()
    connection_id = await rig.calls.answer(incoming)
    call_id = incoming.correlation_id
    ref = await rig.ref(call_id)
    await rig.calls.on_callbacks(ref, [callback(call_id, connection_id, "CallConnected")])
    outcome = await rig.services.conversation.turn(ref.session_id, ref.customer_id, "I want to speak to a person")
    assert outcome.escalation is not None and outcome.escalation.status is EscalationStatus.CONNECTING
    return call_id, connection_id, outcome.escalation


async def escalation(rig: CallRig, call_id: str, escalation_id: str) -> Escalation:
    ref = await rig.ref(call_id)
    found = (await rig.services.customers.get(ref.customer_id)).find_escalation(escalation_id)
    assert found is not None
    return found


async def test_a_transfer_accepted_then_disconnected_in_any_order_leaves_the_caller_with_the_person(
    rig: CallRig,
) -> None:
    for disconnect_first in (True, False):
        call_id, connection_id, routed = await routed_caller(rig)
        assert await rig.calls.transfer(call_id, escalation_id=routed.escalation_id) == PHONE
        ref = await rig.ref(call_id)
        context = {"operationContext": f"escalate:{routed.escalation_id}"}
        accepted = callback(call_id, connection_id, "CallTransferAccepted", **context)
        disconnected = callback(call_id, connection_id, "CallDisconnected")
        ordered = [disconnected, accepted] if disconnect_first else [accepted, disconnected]
        for event in ordered:
            await rig.calls.on_callbacks(ref, [event])
        await asyncio.gather(*(rig.calls.on_callbacks(ref, [event]) for event in ordered))  # redelivered at once

        taken = await escalation(rig, call_id, routed.escalation_id)
        assert (taken.status, taken.agent_name) == (EscalationStatus.WITH_PERSON, "Dana"), disconnect_first
        customer = await rig.services.customers.get(ref.customer_id)
        assert customer.sessions[ref.session_id].status is SessionStatus.TRANSFERRED
        assert (await rig.calls.call(call_id))["state"] == "transferred"
        assert (await rig.services.desk.metrics())["abandoned_last_hour"] == 0


async def test_a_person_who_never_picks_up_sends_the_caller_back_to_the_queue_once(rig: CallRig) -> None:
    call_id, connection_id, routed = await routed_caller(rig)
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"{rig.acs.base_url}/_emulator/phones/{PHONE}")
        assert await rig.calls.transfer(call_id, escalation_id=routed.escalation_id) == PHONE
        kinds = []
        async for message in ws:  # the phone rings, nobody answers, the emulator gives up
            kinds.append(json.loads(message.data)["kind"])
            if kinds[-1] == "missed":
                break
        await ws.close()
    assert kinds == ["registered", "ringing", "missed"]
    emulated = await eventually(lambda: _callback_posted(rig, call_id, "CallTransferFailed"), what="the failure")
    assert emulated["state"] == "connected", "the caller stays on the line with the AI"

    ref = await rig.ref(call_id)
    failed = callback(call_id, connection_id, "CallTransferFailed", operationContext=f"escalate:{routed.escalation_id}",
                      resultInformation={"code": 408, "subCode": 0, "message": "The transfer target did not answer."})
    await asyncio.gather(*(rig.calls.on_callbacks(ref, [failed]) for _ in range(3)))  # ACS redelivering it

    back = await escalation(rig, call_id, routed.escalation_id)
    assert (back.status, back.agent_id) == (EscalationStatus.WAITING, None)
    assert [e["escalation_id"] for e in await rig.services.desk.waiting()] == [routed.escalation_id]
    record = await rig.calls.call(call_id)
    assert (record["state"], record["transfer"], record["transfer_detail"]) == (
        "connected", "failed", "The transfer target did not answer.")

    # The caller hanging up later, still waiting, has left the queue.
    await rig.calls.on_callbacks(ref, [callback(call_id, connection_id, "CallDisconnected")])
    assert (await escalation(rig, call_id, routed.escalation_id)).status is EscalationStatus.ABANDONED
    assert await rig.services.desk.waiting() == []


async def _callback_posted(rig: CallRig, call_id: str, event_type: str) -> dict | None:
    emulated = await rig.emulated(call_id)
    return emulated if event_type in [c["type"] for c in emulated["callbacks"]] else None
