"""Queue metrics count each call event once, and the router offers a switch only on known, bad figures."""

from __future__ import annotations

import pytest

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


async def test_call_events_move_calls_through_the_queue_once_each() -> None:
    clock = Clock()
    queue = QueueMetrics(InProcessSessionState(), clock=clock)
    for call in ("a", "b", "c"):
        await queue.call_arrived(call)
        await queue.call_arrived(call)  # redelivered
    assert (await queue.snapshot()).waiting == 3

    clock.now += 90
    await queue.call_answered("a")
    await queue.call_answered("a")
    snap = await queue.snapshot()
    assert (snap.waiting, snap.in_progress, snap.estimated_wait_seconds) == (2, 1, 90.0)

    await queue.call_ended("a")
    await queue.call_ended("b")  # hung up while waiting
    await queue.call_ended("b")
    snap = await queue.snapshot()
    assert (snap.waiting, snap.in_progress) == (1, 0)


async def test_operators_set_and_adjust_and_an_empty_queue_has_no_wait() -> None:
    queue = QueueMetrics(InProcessSessionState())
    assert (await queue.snapshot()).estimated_wait_seconds == 0.0
    snap = await queue.set(waiting=60, estimated_wait_seconds=300)
    assert (snap.waiting, snap.estimated_wait_seconds, snap.known) == (60, 300, True)
    snap = await queue.adjust(waiting=-10)
    assert snap.waiting == 50
    snap = await queue.set(clear_overrides=True)
    assert snap.estimated_wait_seconds is None and not snap.known  # 50 waiting, no answer times: unknown


JORDAN = Customer("cus_1", [Identity(IdentityKind.PHONE, "+15555550100")])
ANONYMOUS = Customer("cus_2", [Identity(IdentityKind.WEBCHAT, "web_1")])


@pytest.mark.parametrize(
    ("snapshot", "offer"),
    [
        (QueueSnapshot(3, 1, 30.0), False),
        (QueueSnapshot(3, 1, 121.0), True),
        (QueueSnapshot(51, 1, 10.0), True),
        (QueueSnapshot(0, 0, 0.0, incident_customers=2400), True),
        (QueueSnapshot(None, None, None), False),  # unknown: never offer on a guess
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
