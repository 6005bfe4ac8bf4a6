"""When a callback is for: a time the customer names is read on the scenario's clock (`timezone` in scenario.yaml),
and one further ahead than can be booked is declined in words, with nothing recorded. The conversation core runs on
the embedded stores, with the line busy so that callbacks are offered.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

from shared import callbacks
from shared.conversation import Conversation
from shared.errors import ScenarioError
from shared.models import Channel, Identity, IdentityKind, new_id
from shared.policies.offline import OfflinePolicy
from shared.queue import QueueMetrics
from shared.scenario import SCENARIOS_DIR, load_scenario
from shared.stores.embedded_customers import SqliteCustomerStore
from shared.stores.embedded_state import InProcessSessionState

JORDAN = "+15555550100"
NOON_UTC = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)  # 7 am in New York, noon in London


def test_three_pm_is_three_pm_on_the_businesss_clock() -> None:
    in_new_york = callbacks.parse_when("call me back at 3 pm", NOON_UTC, ZoneInfo("America/New_York"))
    in_london = callbacks.parse_when("call me back at 3 pm", NOON_UTC, ZoneInfo("Europe/London"))
    assert in_new_york == {"kind": "at", "at": "2026-12-07T20:00:00+00:00"}
    assert in_london == {"kind": "at", "at": "2026-12-07T15:00:00+00:00"}
    london = ZoneInfo("Europe/London")
    assert callbacks.spoken_when({"when": "at", "at": in_london["at"]}, NOON_UTC, london) == "at 3:00 PM"


def test_a_time_more_than_two_days_ahead_is_too_far() -> None:
    zone = ZoneInfo("America/New_York")
    assert callbacks.parse_when("call me back in 100 hours", NOON_UTC, zone) == {"kind": "too_far"}
    in_two_hours = callbacks.parse_when("call me back in 2 hours", NOON_UTC, zone)
    assert in_two_hours == {"kind": "at", "at": (NOON_UTC + timedelta(hours=2)).isoformat()}
    assert callbacks.parse_when("call me back tomorrow at 9", NOON_UTC, zone)["kind"] == "at"
    assert callbacks.parse_when("call me back when it's my turn", NOON_UTC, zone) == {"kind": "turn"}


def test_a_scenario_names_its_time_zone_or_keeps_new_yorks(tmp_path: Path) -> None:
    assert load_scenario("utilities").timezone == "America/New_York"
    assert _utilities_in(tmp_path / "london", "Europe/London").clock == ZoneInfo("Europe/London")
    with pytest.raises(ScenarioError, match="timezone.*IANA"):
        _utilities_in(tmp_path / "nowhere", "Springfield/Evergreen")


def _utilities_in(folder: Path, timezone: str):
    """The utilities scenario copied to `folder` with its clock set to `timezone`."""
    folder.mkdir()
    for name in ("tools.py", "data.yaml"):
        (folder / name).write_text((SCENARIOS_DIR / "utilities" / name).read_text())
    spec = yaml.safe_load((SCENARIOS_DIR / "utilities" / "scenario.yaml").read_text())
    (folder / "scenario.yaml").write_text(yaml.safe_dump({**spec, "timezone": timezone}))
    return load_scenario(str(folder))


async def test_a_callback_too_far_ahead_is_declined_and_nothing_is_booked(tmp_path: Path) -> None:
    store, state = SqliteCustomerStore(tmp_path / "customers.sqlite3"), InProcessSessionState()
    queue = QueueMetrics(state)
    await queue.set(waiting=70, estimated_wait_seconds=1200)  # a busy line: callbacks are offered
    conversation = Conversation(load_scenario("utilities"), store, state, OfflinePolicy(), queue=queue)
    try:
        session = new_id("wa")
        opened = await conversation.open_for_identity(Channel.WHATSAPP, session, Identity(IdentityKind.PHONE, JORDAN))
        customer_id = opened.customer.customer_id

        far = await conversation.turn(session, customer_id, "can you call me back in 100 hours?")
        assert "up to two days ahead" in far.replies[0].text, far.replies
        assert not far.callbacks_changed and (await store.get(customer_id)).callbacks == []

        near = await conversation.turn(session, customer_id, "ok, call me back in 2 hours then")
        assert "call you back" in near.replies[0].text, near.replies
        booked = (await store.get(customer_id)).callbacks
        assert near.callbacks_changed and [c["state"] for c in booked] == ["requested"]
    finally:
        await store.close()
