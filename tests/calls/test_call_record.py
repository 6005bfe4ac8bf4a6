"""A call's record survives its callbacks landing together (issue 11, defect 2).

ACS posts CallConnected and MediaStreamingStarted within milliseconds of each other, and Event Grid and ACS retries
can put them on different instances. Each writes its own fields of `call:<id>`; the connection id CallConnected
brings is what hang-up and transfer need. With a delay at the store boundary (tests/calls/rig.py) the callbacks of
every call interleave, on the embedded SQLite state and on a real Redis.
"""

from __future__ import annotations

import asyncio

import pytest

from shared.calls.control import CallEnded
from shared.errors import InvalidInput
from shared.models import SessionStatus
from shared.stores.azure_redis import RedisSessionState
from tests.calls.rig import ESCALATION, CallRig, SlowState, callback, call_rig, eventually

CALLS = 12  # each with its callbacks at once; before the fix nearly every call lost a field


@pytest.fixture(params=["sqlite", "redis"])
async def rig(request: pytest.FixtureRequest, tmp_path):
    state = RedisSessionState(request.getfixturevalue("redis_url")) if request.param == "redis" else None
    async with call_rig(tmp_path, SlowState, state) as rig:
        yield rig


async def test_concurrent_callbacks_keep_the_connection_id_and_the_call_can_be_ended(rig: CallRig) -> None:
    for index in range(CALLS):
        incoming, _ = await rig.ring()
        connection_id = await rig.calls.answer(incoming)
        assert connection_id
        call_id = incoming.correlation_id
        ref = await rig.ref(call_id)
        started = {"mediaStreamingUpdate": {"contentType": "Audio", "mediaStreamingStatus": "mediaStreamingStarted",
                                            "mediaStreamingStatusDetails": "subscriptionStarted"}}
        events = [
            callback(call_id, connection_id, "CallConnected"),
            callback(call_id, connection_id, "MediaStreamingStarted", **started),
            callback(call_id, connection_id, "ParticipantsUpdated"),
            callback(call_id, connection_id, "PlayCompleted"),
        ]
        await asyncio.gather(*(rig.calls.on_callbacks(ref, [event]) for event in events))

        record = await rig.calls.call(call_id)
        assert (record.get("connection_id"), record["state"], record.get("media")) == (
            connection_id, "connected", "streaming"), f"call {index}: {record}"
        if index % 2:
            await rig.calls.hang_up(call_id)
            assert (await rig.emulated(call_id))["state"] == "disconnected"
        else:
            assert await rig.calls.transfer(call_id) == ESCALATION
            transferred = await eventually(lambda: _state_is(rig, call_id, "transferred"), what="the transfer")
            assert transferred["transfer_target"] == ESCALATION


async def test_a_disconnect_landing_with_its_transfer_leaves_the_call_transferred(rig: CallRig) -> None:
    for _ in range(6):
        incoming, _ = await rig.ring()
        connection_id = await rig.calls.answer(incoming)
        call_id = incoming.correlation_id
        ref = await rig.ref(call_id)
        await rig.calls.on_callbacks(ref, [callback(call_id, connection_id, "CallConnected")])

        endings = [callback(call_id, connection_id, kind)
                   for kind in ("CallTransferAccepted", "MediaStreamingStopped", "CallDisconnected")]
        await asyncio.gather(*(rig.calls.on_callbacks(ref, [event]) for event in endings))

        assert (await rig.calls.call(call_id))["state"] == "transferred"
        customer = await rig.services.customers.get(ref.customer_id)
        assert customer.sessions[ref.session_id].status is SessionStatus.TRANSFERRED


async def _state_is(rig: CallRig, call_id: str, state: str) -> dict | None:
    emulated = await rig.emulated(call_id)
    return emulated if emulated["state"] == state else None


async def test_a_call_hung_up_on_a_silent_caller_is_recorded_abandoned_and_stays_so_once_disconnected(
    rig: CallRig,
) -> None:
    """The gateway ends a call whose caller said nothing (media_gateway/silence.py) with the outcome "abandoned"."""
    incoming, _ = await rig.ring()
    connection_id = await rig.calls.answer(incoming)
    call_id = incoming.correlation_id
    ref = await rig.ref(call_id)
    await rig.calls.on_callbacks(ref, [callback(call_id, connection_id, "CallConnected")])
    with pytest.raises(InvalidInput):
        await rig.calls.hang_up(call_id, outcome="bored")
    assert (await rig.calls.call(call_id))["state"] == "connected", "a refused outcome leaves the call alone"

    await rig.calls.hang_up(call_id, outcome="abandoned")
    assert (await rig.emulated(call_id))["state"] == "disconnected"
    await rig.calls.on_callbacks(ref, [callback(call_id, connection_id, "CallDisconnected")])

    record = await rig.calls.call(call_id)
    assert record["state"] == "abandoned" and record["abandoned_at"] and record["ended_at"], record
    assert (await rig.calls.describe(call_id))["session_status"] == SessionStatus.COMPLETED.value
    with pytest.raises(CallEnded):  # over: the route answers a second hang-up with 409
        await rig.calls.hang_up(call_id, outcome="abandoned")
