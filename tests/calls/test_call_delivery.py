"""IncomingCall and callbacks are never dropped, and still take effect once (issue 11, defect 7).

Event Grid and ACS redeliver what failed. A mark taken for a day before the work turned that redelivery away after
a store outage between the marks, or after a process died between marking a callback and applying it: the call was
never answered, or never ended. Here the outage is injected at the SessionState boundary (tests/calls/rig.py), and
the dead process is a delivery that hangs for good after taking its claim, as a killed one would.
"""

from __future__ import annotations

import asyncio

import pytest

from shared.errors import Unavailable
from tests.calls.rig import CallRig, FailingState, callback, call_rig

CLAIM_TTL = 1.0  # seconds a delivery's claim lasts, in these tests


@pytest.fixture
async def rig(tmp_path):
    async with call_rig(tmp_path, FailingState, claim_ttl_seconds=CLAIM_TTL) as rig:
        yield rig


def store(rig: CallRig) -> FailingState:
    assert isinstance(rig.services.state, FailingState)
    return rig.services.state


def outage_after_first_mark(rig: CallRig) -> None:
    """The store goes down just after the next delivery takes its first mark, for one request."""
    marked = []

    def fails(operation: str, key: str) -> bool:
        if marked == [1]:
            marked.append(2)
            return True
        if operation == "mark_processed" and not marked:
            marked.append(1)
        return False

    store(rig).fails = fails


async def answered_call(rig: CallRig):
    """A call answered through the emulator: its id, connection id, callback ref and its CallConnected callback."""
    incoming, _ = await rig.ring()
    connection_id = await rig.calls.answer(incoming)
    call_id = incoming.correlation_id
    return call_id, connection_id, await rig.ref(call_id), callback(call_id, connection_id, "CallConnected")


async def test_an_outage_between_the_marks_then_a_redelivery_answers_the_call_once(rig: CallRig) -> None:
    incoming, _ = await rig.ring()
    outage_after_first_mark(rig)
    with pytest.raises(Unavailable):  # the trigger fails, so Event Grid redelivers
        await rig.calls.answer(incoming)
    assert store(rig).failures

    assert await rig.calls.answer(incoming)  # Event Grid's redelivery of the same event
    assert await rig.calls.answer(incoming) is None  # and any after it
    emulated = await rig.emulated(incoming.correlation_id)
    assert (emulated["state"], emulated["answers"]) == ("connected", 1)


async def test_a_delivery_that_died_mid_answer_lets_the_redelivery_through_once_its_claim_expires(rig: CallRig) -> None:
    incoming, _ = await rig.ring()
    session_id = f"voice_{incoming.correlation_id}"
    store(rig).hangs = lambda operation, key: operation == "put" and session_id in key  # dies opening the session
    dead = asyncio.create_task(rig.calls.answer(incoming))
    try:
        await asyncio.sleep(0.3)
        assert not dead.done()
        store(rig).hangs = lambda operation, key: False
        assert await rig.calls.answer(incoming) is None  # the claim is live: someone is answering

        await asyncio.sleep(CLAIM_TTL)
        assert await rig.calls.answer(incoming)  # Event Grid's later redelivery
        emulated = await rig.emulated(incoming.correlation_id)
        assert (emulated["state"], emulated["answers"]) == ("connected", 1)
    finally:
        dead.cancel()
        await asyncio.gather(dead, return_exceptions=True)


async def test_duplicate_deliveries_at_once_answer_once(rig: CallRig) -> None:
    incoming, event = await rig.ring()
    republished = type(incoming)(**{**incoming.__dict__, "event_id": "another-event-for-the-same-call"})
    results = await asyncio.gather(*(rig.calls.answer(incoming) for _ in range(6)), rig.calls.answer(republished))

    assert sum(result is not None for result in results) == 1
    assert (await rig.emulated(incoming.correlation_id))["answers"] == 1


async def test_a_callback_whose_delivery_died_mid_apply_is_applied_by_the_retry(rig: CallRig) -> None:
    call_id, connection_id, ref, connected = await answered_call(rig)

    store(rig).hangs = lambda operation, key: operation == "merge" and key == f"call:{call_id}"
    dead = asyncio.create_task(rig.calls.on_callbacks(ref, [connected]))
    try:
        await asyncio.sleep(0.3)
        store(rig).hangs = lambda operation, key: False
        await asyncio.sleep(CLAIM_TTL)
        await rig.calls.on_callbacks(ref, [connected])  # ACS's retry
        assert (await rig.calls.call(call_id)).get("connection_id") == connection_id
        await rig.calls.hang_up(call_id)
        assert (await rig.emulated(call_id))["state"] == "disconnected"
    finally:
        dead.cancel()
        await asyncio.gather(dead, return_exceptions=True)


async def test_a_callback_failing_in_an_outage_is_applied_by_the_retry_once(rig: CallRig) -> None:
    call_id, connection_id, ref, connected = await answered_call(rig)
    outage_after_first_mark(rig)
    with pytest.raises(Unavailable):
        await rig.calls.on_callbacks(ref, [connected])

    await asyncio.gather(*(rig.calls.on_callbacks(ref, [connected]) for _ in range(3)))
    assert (await rig.calls.call(call_id)).get("connection_id") == connection_id
    assert (await rig.services.queue.snapshot()).in_progress == 1
