"""The queue figures: who waits for a person, and calls that cannot leak (issue 11, defect 6; issue 12).

Waiting means customers waiting for a person: escalations the desk has not given to anyone, and calls on hold
because the media gateway is full. A call ringing (IncomingCall until we answer it, seconds) is nobody waiting for a
person: it is reported apart, as `ringing`, and the estimate comes from the desk, not from answer times.

IncomingCall counts the call ringing while its voice session opens; when the open fails the call is never answered,
and nothing would ever count it out. A failed open takes it out at once, and a call we lose track of altogether (a
crash after it was counted) stops being counted when its membership expires. Operators' figures (`/api/ops/queue`)
still hold on top of what is counted.
"""

from __future__ import annotations

import asyncio
import contextlib

from shared.desk import HELD_CALLS, AVAILABLE, Desk, DeskAgent
from shared.errors import Unavailable
from shared.models import Channel, Customer
from shared.queue import QueueMetrics
from shared.scenario import load_scenario
from shared.stores.embedded_customers import SqliteCustomerStore
from shared.stores.embedded_sqlite_state import SqliteSessionState
from tests.calls.rig import FailingState, call_rig

SHORT_WAIT = 1.0  # seconds a call may count as waiting, in these tests


async def test_a_call_whose_session_fails_to_open_is_not_left_waiting(tmp_path) -> None:
    async with call_rig(tmp_path, FailingState, max_wait_seconds=3600) as rig:
        incoming, _ = await rig.ring()
        failed: list[str] = []
        rig.customers.fails = lambda operation: operation == "update" and not failed.append(operation)

        with contextlib.suppress(Unavailable):  # a store outage: raised, so that Event Grid redelivers
            assert await rig.calls.answer(incoming) is None
        assert failed, "the open was made to fail"

        snapshot = await rig.services.queue.snapshot()
        assert (snapshot.waiting, snapshot.in_progress, snapshot.ringing) == (0, 0, 0)
        assert (await rig.emulated(incoming.correlation_id))["state"] == "ringing"


async def test_a_call_counted_and_then_lost_track_of_stops_counting_when_it_expires(tmp_path) -> None:
    state = SqliteSessionState(tmp_path / "state.sqlite3")
    try:
        queue = QueueMetrics(state, max_wait_seconds=SHORT_WAIT)
        await queue.call_arrived("crashed-after-arrival")  # ... and the process died: nothing ever follows
        await queue.call_arrived("answered")
        await queue.call_answered("answered")
        snapshot = await queue.snapshot()
        assert (snapshot.ringing, snapshot.waiting, snapshot.in_progress) == (1, 0, 1)

        await asyncio.sleep(SHORT_WAIT + 0.3)
        snapshot = await queue.snapshot()
        assert (snapshot.ringing, snapshot.waiting, snapshot.in_progress) == (0, 0, 1)
    finally:
        await state.close()


async def test_operator_figures_hold_on_top_of_the_calls_counted(tmp_path) -> None:
    state = SqliteSessionState(tmp_path / "state.sqlite3")
    try:
        queue = QueueMetrics(state, max_wait_seconds=SHORT_WAIT)
        await queue.call_arrived("a")
        assert (await queue.set(waiting=40, in_progress=3)).waiting == 40
        await queue.call_answered("a")  # a call answered by the AI was never waiting for a person
        snapshot = await queue.snapshot()
        assert (snapshot.waiting, snapshot.in_progress, snapshot.overridden) == (40, 4, True)
        assert (await queue.adjust(waiting=-9)).waiting == 31
        await queue.call_ended("a")
        assert (await queue.snapshot()).in_progress == 3
    finally:
        await state.close()


async def test_a_connect_applied_after_the_disconnect_does_not_count_the_call_in_progress(tmp_path) -> None:
    # Callbacks of one call may be applied in any order (redeliveries, two instances): a CallConnected that lands
    # after its CallDisconnected must not leave an ended call counted in progress for hours.
    state = SqliteSessionState(tmp_path / "state.sqlite3")
    try:
        queue = QueueMetrics(state)
        await queue.call_arrived("late-connect")
        await queue.call_ended("late-connect")
        await queue.call_answered("late-connect")
        snapshot = await queue.snapshot()
        assert (snapshot.waiting, snapshot.in_progress) == (0, 0)
    finally:
        await state.close()


async def test_waiting_counts_customers_waiting_for_a_person_not_calls_ringing(tmp_path) -> None:
    state = SqliteSessionState(tmp_path / "state.sqlite3")
    customers = SqliteCustomerStore(tmp_path / "customers.sqlite3")
    try:
        scenario = load_scenario("utilities")
        desk = Desk(scenario, customers, state)
        queue = QueueMetrics(state, desk=desk)
        for call_id in ("ringing-1", "ringing-2"):
            await queue.call_arrived(call_id)
        snapshot = await queue.snapshot()
        assert (snapshot.ringing, snapshot.waiting, snapshot.agents_available) == (2, 0, 0)
        assert snapshot.estimated_wait_seconds is None, "nobody on duty: no honest estimate, whatever rings"

        customer = await customers.create(Customer.new())
        escalation = desk.new_escalation("webchat_1", Channel.WEBCHAT, "asked for a person", "",
                                         await desk.place(Channel.WEBCHAT))
        customer, _ = await customers.update(customer.customer_id, lambda c: c.add_escalation(escalation))
        await desk.enqueue(customer, escalation)
        await state.add_member(HELD_CALLS, "held-call", 60)  # the media gateway is full: this caller is on hold
        await desk.set_presence(DeskAgent("dana", "Dana"), AVAILABLE)
        await desk.claim(escalation.escalation_id, DeskAgent("dana", "Dana"))  # Dana is busy with that one
        snapshot = await queue.snapshot()
        assert (snapshot.ringing, snapshot.waiting, snapshot.agents_available) == (2, 1, 1)
        # A newcomer is second, behind the held call, and the one person on duty is busy: two handle times.
        assert snapshot.estimated_wait_seconds == 2 * scenario.desk.default_handle_seconds
    finally:
        await customers.close()
        await state.close()
