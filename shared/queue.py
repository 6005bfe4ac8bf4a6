"""Live queue metrics: customers waiting for a person, calls in progress, and the estimated wait for a person.

The wait that matters is the wait for a person: customers escalated to the desk and not yet claimed, plus calls on
hold because the media gateway is full. The desk counts those and estimates the wait from the people on duty and
their recent handle times (shared/desk.py, shared/wait.py; docs/desk.md has the formula). That estimate, against the
scenario's threshold, is what makes the agent offer another channel.

Call events feed the call figures (IncomingCall → arrived, CallConnected → answered, CallDisconnected → ended); each
step counts once per call id, because Event Grid and ACS redeliver. A call is counted by being a member of the set of
calls ringing or of calls in progress, and each membership expires by itself (MAX_WAIT_SECONDS, MAX_CALL_SECONDS): a
call whose end we never hear of (a session that failed to open, a crash, a lost callback) stops being counted then.
A call ringing (between IncomingCall and our answer, seconds) is reported as `ringing`, not as waiting: nobody waits
for a person there. Operators can set or adjust the figures (`/api/ops/queue`) for demos and load tests: that moves
an offset added to what is counted, or pins the estimate. The figures live in SessionState (Redis in Azure), shared
by every instance; if it cannot be read, the snapshot says "unknown" and nobody is offered a switch on a guess.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from shared import telemetry
from shared.errors import SwitchboardError
from shared.stores.base import SessionState

if TYPE_CHECKING:
    from shared.desk import Desk

log = logging.getLogger(__name__)

WAITING = "queue:waiting"  # counters: the operators' offsets
IN_PROGRESS = "queue:in_progress"
WAITING_CALLS = "queue:waiting_calls"  # sets of call ids: ringing (not yet answered), and in progress
CALLS_IN_PROGRESS = "queue:calls_in_progress"
_OVERRIDE = "queue:override"  # {"estimated_wait_seconds": s, "incident_customers": n} set by an operator
_CALL = "queue:call:"  # per call: {"arrived_at": epoch seconds, "ended": true once its disconnect is applied}

#: How long a call's bookkeeping is kept.
CALL_TTL_SECONDS = 24 * 3600
#: How long a call counts as waiting without being answered or ended. ACS stops ringing an unanswered call within a
#: minute or so, and our answer connects in seconds: a call still "waiting" after this is one we lost track of.
MAX_WAIT_SECONDS = 10 * 60
#: How long a call counts as in progress without its disconnect: the longest call (a call's tokens and record live
#: CALL_TOKEN_TTL_SECONDS, two hours by default), with room to spare.
MAX_CALL_SECONDS = 4 * 3600
OVERRIDE_TTL_SECONDS = 7 * 24 * 3600


@dataclass(frozen=True)
class QueueSnapshot:
    """What the queue looks like now; None means unknown."""

    waiting: int | None  # customers waiting for a person (escalations not yet claimed, calls on hold)
    in_progress: int | None  # calls connected
    estimated_wait_seconds: float | None  # for a customer joining the queue now; None: unknown (nobody on duty)
    incident_customers: int | None = None  # customers affected by a declared mass incident (an outage)
    agents_available: int | None = None  # people on duty at the desk
    ringing: int | None = None  # calls between IncomingCall and our answer
    overridden: bool = False  # an operator pinned or offset a figure (`/api/ops/queue`): not all of it is live

    @property
    def known(self) -> bool:
        """Whether the figures could be read at all (the estimate alone may still be unknown: nobody on duty)."""
        return self.waiting is not None

    def to_dict(self) -> dict:
        return {**asdict(self), "known": self.known}


UNKNOWN = QueueSnapshot(None, None, None, None)


class QueueMetrics:
    def __init__(self, state: SessionState, clock=time.time, *, max_wait_seconds: float = MAX_WAIT_SECONDS,
                 max_call_seconds: float = MAX_CALL_SECONDS, desk: Desk | None = None) -> None:
        self._state = state
        self._desk = desk
        self._clock = clock
        self._max_wait = max_wait_seconds
        self._max_call = max_call_seconds

    async def call_arrived(self, call_id: str) -> None:
        if await self._once("arrived", call_id):
            await self._state.merge(_CALL + call_id, {"arrived_at": self._clock()}, CALL_TTL_SECONDS)
            await self._state.add_member(WAITING_CALLS, call_id, self._max_wait)

    async def call_answered(self, call_id: str) -> None:
        """The call left the queue: our agent (or a person) picked it up."""
        if not await self._once("answered", call_id):
            return
        # A call we never saw arrive (state lost, or answered elsewhere) is counted in progress only.
        await self._state.remove_member(WAITING_CALLS, call_id)
        call = await self._state.get(_CALL + call_id)
        if (call or {}).get("ended"):
            return  # its disconnect was applied first (callbacks come in any order): it is over, not in progress
        await self._state.add_member(CALLS_IN_PROGRESS, call_id, self._max_call)

    async def call_abandoned(self, call_id: str) -> None:
        """This delivery could not take the call in (its session did not open, the answer failed on the way): stop
        counting it as waiting now. No once-mark is taken, so a redelivery that answers it still counts it in
        progress and then ended."""
        await self._state.remove_member(WAITING_CALLS, call_id)

    async def call_ended(self, call_id: str) -> None:
        """The call is over, or never got going (its session could not open, the answer failed): count it no more."""
        if not await self._once("ended", call_id):
            return
        await self._state.merge(_CALL + call_id, {"ended": True}, CALL_TTL_SECONDS)
        await self._state.remove_member(WAITING_CALLS, call_id)
        await self._state.remove_member(CALLS_IN_PROGRESS, call_id)

    async def counts(self) -> tuple[int, int]:
        """Customers waiting for a person and calls in progress, unclamped: what is counted plus the offsets."""
        waiting = await self._waiting_for_people() + await self._state.counter(WAITING)
        in_progress = await self._state.count_members(CALLS_IN_PROGRESS) + await self._state.counter(IN_PROGRESS)
        return waiting, in_progress

    async def snapshot(self) -> QueueSnapshot:
        # Read on every voice turn: each figure once (the desk's load counts people on duty one by one).
        try:
            offsets = await self._state.counter(WAITING), await self._state.counter(IN_PROGRESS)
            load = await self._desk.load() if self._desk is not None else None
            waiting = max(0, (load.waiting if load is not None else 0) + offsets[0])
            in_progress = max(0, await self._state.count_members(CALLS_IN_PROGRESS) + offsets[1])
            override = await self._state.get(_OVERRIDE) or {}
            ringing = await self._state.count_members(WAITING_CALLS)
        except SwitchboardError as exc:
            log.warning("queue metrics unavailable: %s", exc)
            return UNKNOWN
        estimate = override.get("estimated_wait_seconds")
        if estimate is None and load is not None:
            # The wait of a customer joining now, behind everyone counted waiting (offsets included).
            estimate = load.wait_for(waiting + 1)
        elif estimate is None:
            estimate = 0.0 if waiting == 0 else None
        return QueueSnapshot(
            waiting, in_progress, estimate, override.get("incident_customers"),
            agents_available=load.on_duty if load is not None else None, ringing=ringing,
            overridden=bool(override) or any(offsets),
        )

    async def _waiting_for_people(self) -> int:
        if self._desk is None:
            return 0
        load = await self._desk.load()
        return load.waiting

    async def set(
        self,
        *,
        waiting: int | None = None,
        in_progress: int | None = None,
        estimated_wait_seconds: float | None = None,
        incident_customers: int | None = None,
        clear_overrides: bool = False,
    ) -> QueueSnapshot:
        """Operator control: set the figures, pin the estimate or declare an incident (None leaves a value alone).

        Setting a figure sets the offset that makes it so now; calls arriving and ending move it from there.
        """
        if waiting is not None:
            await self._state.set_counter(WAITING, waiting - await self._waiting_for_people())
        if in_progress is not None:
            await self._state.set_counter(IN_PROGRESS, in_progress - await self._state.count_members(CALLS_IN_PROGRESS))
        override = {} if clear_overrides else (await self._state.get(_OVERRIDE) or {})
        if estimated_wait_seconds is not None:
            override["estimated_wait_seconds"] = estimated_wait_seconds
        if incident_customers is not None:
            override["incident_customers"] = incident_customers
        await self._state.put(_OVERRIDE, override, OVERRIDE_TTL_SECONDS)
        return await self.snapshot()

    async def adjust(self, *, waiting: int = 0, in_progress: int = 0) -> QueueSnapshot:
        if waiting:
            await self._state.increment(WAITING, waiting)
        if in_progress:
            await self._state.increment(IN_PROGRESS, in_progress)
        return await self.snapshot()

    async def _once(self, step: str, call_id: str) -> bool:
        first = await self._state.mark_processed(f"queue:{step}:{call_id}", CALL_TTL_SECONDS)
        if not first:
            telemetry.dedup_hit("queue")
        return first
