"""The queue figures cannot leak a call (issue 11, defect 6).

IncomingCall counts the call waiting while its voice session opens; when the open fails the call is never
answered, and nothing would ever count it out. Now a failed open takes it out at once, and a call we lose track of
altogether (a crash after it was counted) stops being counted when its membership expires. Operators' figures
(`/api/ops/queue`) still hold on top of the calls counted.
"""

from __future__ import annotations

import asyncio
import contextlib

from shared.errors import Unavailable
from shared.queue import QueueMetrics
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
        assert (snapshot.waiting, snapshot.in_progress) == (0, 0)
        assert (await rig.emulated(incoming.correlation_id))["state"] == "ringing"


async def test_a_call_counted_and_then_lost_track_of_stops_counting_when_it_expires(tmp_path) -> None:
    state = SqliteSessionState(tmp_path / "state.sqlite3")
    try:
        queue = QueueMetrics(state, max_wait_seconds=SHORT_WAIT)
        await queue.call_arrived("crashed-after-arrival")  # ... and the process died: nothing ever follows
        await queue.call_arrived("answered")
        await queue.call_answered("answered")
        assert (await queue.snapshot()).waiting == 1

        await asyncio.sleep(SHORT_WAIT + 0.3)
        snapshot = await queue.snapshot()
        assert (snapshot.waiting, snapshot.in_progress) == (0, 1)
    finally:
        await state.close()


async def test_operator_figures_hold_on_top_of_the_calls_counted(tmp_path) -> None:
    state = SqliteSessionState(tmp_path / "state.sqlite3")
    try:
        queue = QueueMetrics(state, max_wait_seconds=SHORT_WAIT)
        await queue.call_arrived("a")
        assert (await queue.set(waiting=40, in_progress=3)).waiting == 40
        await queue.call_answered("a")
        snapshot = await queue.snapshot()
        assert (snapshot.waiting, snapshot.in_progress) == (39, 4)
        assert (await queue.adjust(waiting=-9)).waiting == 30
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
