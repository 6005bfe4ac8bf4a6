"""A promise due at a time (a booked visit's follow-up, "SR-...@<time>") goes at that time, once, and a host
restarted while it waits still sends it once.

The promise is written on the record as the conversation core writes it (a booking's tool result names it), and its
orchestration is started through the route the core calls, with the start token the app signs; the durations are
seconds, not the evening of the booked day.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest

from shared.models import Channel, ChannelSession, Customer, Identity, IdentityKind
from shared.notifications import START_AUDIENCE
from shared.stores.embedded_customers import SqliteCustomerStore
from shared.tokens import TokenSigner, load_secret
from tests.notifications.conftest import Stack, eventually, new_number, start_stack
from tests.peers.local_host import LocalHost

FOLLOW_UP = "how did your service visit"


def promise_follow_up(stack: Stack, phone: str, due: datetime) -> str:
    """An SMS customer whose booking promised a follow-up at `due`; returns their id, the orchestration started."""
    async def write() -> str:
        store = SqliteCustomerStore(stack.data_dir / "customers.sqlite3")
        try:
            customer = Customer.new(Identity(IdentityKind.PHONE, phone))
            session = ChannelSession("sms_follow_up_test", Channel.SMS)
            customer.sessions[session.session_id] = session
            customer.collected["customer_name"] = "Jordan Lee"
            customer.add_promise("service_follow_up", f"SR-12345@{due.isoformat()}", session)
            return (await store.create(customer)).customer_id
        finally:
            await store.close()

    customer_id = asyncio.run(write())
    token = TokenSigner(load_secret("", stack.data_dir)).issue(START_AUDIENCE, 60, cid=customer_id)
    started = stack.client.post(f"{stack.host.url}/api/notifications/start",
                                headers={"Authorization": f"Bearer {token}"})
    assert started.status_code == 200 and len(started.json()["started"]) == 1, started.text
    return customer_id


def follow_ups(stack: Stack, phone: str) -> list[str]:
    return [t for t in stack.sms_outbox(phone) if FOLLOW_UP in t]


def test_a_follow_up_goes_at_its_time_once(stack: Stack) -> None:
    phone = new_number()
    due = datetime.now(timezone.utc) + timedelta(seconds=4)
    promise_follow_up(stack, phone, due)
    time.sleep(2)
    assert follow_ups(stack, phone) == []  # not before its time
    eventually(lambda: follow_ups(stack, phone))
    assert datetime.now(timezone.utc) >= due
    kept = stack.promise(phone, "service_follow_up")
    assert kept and kept["kept_by"] == "sms" and datetime.fromisoformat(kept["sent_at"]) >= due
    assert follow_ups(stack, phone) == [
        "Springfield Power & Water: hi Jordan, how did your service visit (SR-12345) go? Reply here if anything still "
        "needs doing. Reply STOP to opt out."]


def test_a_host_restarted_while_a_follow_up_waits_sends_it_once(
        local_host_factory: Callable[..., LocalHost], tmp_path: Path) -> None:
    stacks = start_stack(local_host_factory, tmp_path)
    stack = next(stacks)
    phone = new_number()
    promise_follow_up(stack, phone, datetime.now(timezone.utc) + timedelta(seconds=6))
    with pytest.raises(StopIteration):
        next(stacks)  # the host stops mid-wait (SIGTERM), the emulator with it
    restarted = start_stack(local_host_factory, tmp_path)  # on the same data: the Durable engine's SQLite
    again = next(restarted)
    eventually(lambda: (again.promise(phone, "service_follow_up") or {}).get("sent_at"))
    time.sleep(2)
    assert len(follow_ups(again, phone)) == 1
    restarted.close()
