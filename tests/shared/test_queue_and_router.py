"""Queue metrics count each call event once, and the router offers a switch only on known, bad figures."""

from __future__ import annotations

import pytest

from shared.desk import AVAILABLE, Desk, DeskAgent
from shared.models import Customer, Identity, IdentityKind
from shared.queue import QueueMetrics, QueueSnapshot
from shared.router import decide
from shared.scenario import load_scenario
from shared.stores.embedded_state import InProcessSessionState


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def queue_with_desk(state: InProcessSessionState, clock: Clock | None = None) -> tuple[QueueMetrics, Desk]:
    desk = Desk(load_scenario("utilities"), None, state)  # type: ignore[arg-type]  # the load needs no records
    return QueueMetrics(state, clock=clock or Clock(), desk=desk), desk


async def test_call_events_move_calls_through_ringing_and_in_progress_once_each() -> None:
    clock = Clock()
    queue, _ = queue_with_desk(InProcessSessionState(), clock)
    for call in ("a", "b", "c"):
        await queue.call_arrived(call)
        await queue.call_arrived(call)  # redelivered
    snap = await queue.snapshot()
    assert (snap.ringing, snap.waiting) == (3, 0)  # ringing for our answer is nobody waiting for a person

    clock.now += 90
    await queue.call_answered("a")
    await queue.call_answered("a")
    snap = await queue.snapshot()
    assert (snap.ringing, snap.in_progress) == (2, 1)

    await queue.call_ended("a")
    await queue.call_ended("b")  # hung up while ringing
    await queue.call_ended("b")
    snap = await queue.snapshot()
    assert (snap.ringing, snap.in_progress) == (1, 0)


async def test_the_estimate_is_the_wait_for_a_person_from_who_is_on_duty() -> None:
    state = InProcessSessionState()
    queue, desk = queue_with_desk(state)
    snap = await queue.snapshot()
    assert (snap.waiting, snap.estimated_wait_seconds, snap.agents_available) == (0, None, 0)  # nobody on duty

    await desk.set_presence(DeskAgent("a1", "Dana"), AVAILABLE)
    await desk.set_presence(DeskAgent("a2", "Sam"), AVAILABLE)
    snap = await queue.snapshot()
    assert (snap.estimated_wait_seconds, snap.agents_available) == (0.0, 2)  # someone is free

    # Five customers waiting (an operator's offset stands in for them), both people free, 300 s handle time:
    # the sixth waits (6 - 2) x 300 / 2 = 600 s.
    snap = await queue.set(waiting=5)
    assert (snap.waiting, snap.estimated_wait_seconds, snap.overridden) == (5, 600.0, True)


async def test_operators_set_and_adjust_and_pin_the_estimate() -> None:
    queue, _ = queue_with_desk(InProcessSessionState())
    snap = await queue.set(waiting=60, estimated_wait_seconds=300)
    assert (snap.waiting, snap.estimated_wait_seconds, snap.known) == (60, 300, True)
    snap = await queue.adjust(waiting=-10)
    assert snap.waiting == 50
    snap = await queue.set(clear_overrides=True)
    assert snap.estimated_wait_seconds is None  # 50 waiting and nobody on duty: no honest estimate


JORDAN = Customer("cus_1", [Identity(IdentityKind.PHONE, "+15555550100")])
ANONYMOUS = Customer("cus_2", [Identity(IdentityKind.WEBCHAT, "web_1")])


@pytest.mark.parametrize(
    ("snapshot", "offer"),
    [
        (QueueSnapshot(3, 1, 30.0), False),
        (QueueSnapshot(3, 1, 121.0), True),
        (QueueSnapshot(51, 1, 10.0), True),
        (QueueSnapshot(0, 0, 0.0, incident_customers=2400), True),
        (QueueSnapshot(None, None, None), False),  # unreadable: never offer on a guess
        (QueueSnapshot(60, 1, None), True),  # nobody on duty: the depth alone can still make the offer
        (QueueSnapshot(3, 1, None), False),
    ],
)
def test_the_scenario_thresholds_decide(snapshot: QueueSnapshot, offer: bool) -> None:
    decision = decide(load_scenario("utilities").omnichannel, snapshot, JORDAN, "voice")
    assert decision.offer is offer
    assert decision.channels == ("whatsapp", "webchat")
    assert bool(decision.reasons) is offer


def test_whatsapp_needs_a_phone_and_the_current_channel_is_not_offered() -> None:
    omni = load_scenario("utilities").omnichannel
    busy = QueueSnapshot(80, 5, 400.0)
    assert decide(omni, busy, ANONYMOUS, "voice").channels == ("webchat",)
    assert decide(omni, busy, JORDAN, "webchat").channels == ("whatsapp",)
