"""What the reliability tests share: Event Grid-style delivery to a running host, reading its stores directly, and
the redelivery storm (tests/reliability/test_redelivery.py, and bench/redelivery.py with larger counts).

Event Grid (and ACS for call callbacks) retries a delivery that did not get a 2xx; `deliver` does the same, so a
test sees what a customer would: whatever the host answers along the way, the event eventually lands. The stores
are read straight from the host's data dir through the adapters, the same files the host writes.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from shared.calls.service import session_id_for
from shared.models import Channel, Customer, Identity, IdentityKind, SessionStatus
from shared.queue import QueueMetrics
from shared.stores.embedded_customers import SqliteCustomerStore
from shared.stores.embedded_sqlite_state import SqliteSessionState
from shared.whatsapp.delivery import send_key

EVENTGRID = "/runtime/webhooks/EventGrid?functionName="
#: The callbacks ACS posts for one call of the storm, in order (media fails, so the caller is transferred).
CALLBACK_TYPES = ("CallConnected", "MediaStreamingFailed", "CallTransferAccepted", "CallDisconnected")
#: What the storm's WhatsApp customers write.
TEXTS = ("hi there", "I have a question", "hello again", "are you there?", "thanks", "one more thing")
#: Event Grid's retry schedule, squeezed into seconds (as the ACS emulator squeezes it).
RETRY_DELAYS = (0.2, 0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0)


@dataclass
class Deliveries:
    """What a sender did: attempts per event, and the statuses it got back."""

    attempts: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)  # "what: status" of each delivery not answered 2xx
    given_up: list[str] = field(default_factory=list)

    def count(self, status: int, what: str) -> None:
        self.attempts += 1
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if not 200 <= status < 300:
            self.refused.append(f"{what}: {status}")


async def deliver(
    client: httpx.AsyncClient, url: str, body: Any, tally: Deliveries, what: str,
    headers: dict[str, str] | None = None,
) -> int:
    """POST until a 2xx, backing off like Event Grid; returns the last status (0: never reached the host)."""
    status = 0
    for delay in (*RETRY_DELAYS, None):
        try:
            response = await client.post(url, json=body, headers=headers)
            status = response.status_code
        except httpx.TransportError:
            status = 0
        tally.count(status, what)
        if 200 <= status < 300 or 400 <= status < 500:  # 4xx: Event Grid dead-letters, no retry
            return status
        if delay is None:
            break
        await asyncio.sleep(delay)
    tally.given_up.append(what)
    return status


def eventgrid_headers() -> dict[str, str]:
    return {"aeg-event-type": "Notification"}


async def read_customer(data_dir: Path, phone: str) -> Customer | None:
    store = SqliteCustomerStore(data_dir / "customers.sqlite3")
    try:
        return await store.find_by_identity(Identity(IdentityKind.PHONE, phone))
    finally:
        await store.close()


async def queue_counters(data_dir: Path) -> tuple[int, int]:
    """The raw (unclamped) waiting and in-progress figures: a duplicate shows up as a count off by one."""
    state = SqliteSessionState(data_dir / "state.sqlite3")
    try:
        return await QueueMetrics(state).counts()
    finally:
        await state.close()


async def settle(probe, quiet_seconds: float = 1.5, timeout: float = 60.0) -> Any:
    """Poll the async `probe` until its value stops changing for `quiet_seconds`; returns the last value."""
    deadline = time.monotonic() + timeout
    last, since = await probe(), time.monotonic()
    while time.monotonic() < deadline:
        await asyncio.sleep(0.25)
        value = await probe()
        if value != last:
            last, since = value, time.monotonic()
        elif time.monotonic() - since >= quiet_seconds:
            return value
    return last


@dataclass
class Storm:
    """What a redelivery storm did, and what came of it."""

    events: int
    deliveries: int  # ours (first deliveries and duplicates) plus the callbacks the emulator posted itself
    effects: int  # events whose one effect is there, once
    duplicates: int  # effects seen more than once (including a queue counter off by one)
    problems: list[str]
    tally: Deliveries
    seconds: float  # to deliver everything
    sent: int  # messages in the emulator's outbox
    waiting: int  # raw queue counters at the end
    in_progress: int
    queue: dict[str, Any]  # GET /api/ops/queue at the end

    def summary(self) -> str:
        return (f"redelivery storm: {self.events} events, {self.deliveries} deliveries, {self.effects} effects, "
                f"{self.duplicates} duplicates ({self.seconds:.1f} s to deliver, {self.sent} messages sent, "
                f"statuses {dict(sorted(self.tally.statuses.items()))}, queue waiting={self.waiting} "
                f"in_progress={self.in_progress})" + (f"; not 2xx: {', '.join(self.tally.refused[:3])}"
                                                       if self.tally.refused else ""))


#: The events one call of the storm brings: IncomingCall, then the callbacks.
EVENTS_PER_CALL = ("IncomingCall", *CALLBACK_TYPES)


async def storm(
    url: str, acs_url: str, data_dir: Path, *, events: int, calls: int, phones_count: int, in_flight: int, seed: int,
) -> Storm:
    """Deliver `events` inbound events 1-3 times each, shuffled, `in_flight` at a time, through a running host.

    `calls` calls bring five events each (IncomingCall through Event Grid, four Call Automation callbacks); the rest
    are WhatsApp messages from `phones_count` numbers. The host must be one whose media gateway URL answers nobody
    (media fails, each caller is transferred) and whose data dir is `data_dir`. Then every effect is counted.
    """
    rng = random.Random(seed)
    tally = Deliveries()
    gate = asyncio.Semaphore(in_flight)
    limits = httpx.Limits(max_connections=in_flight * 2, max_keepalive_connections=in_flight * 2)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:

        async def post(target: str, body: Any, what: str, headers: dict[str, str] | None = None) -> int:
            async with gate:
                return await deliver(client, target, body, tally, what, headers)

        async def ring(copies: int, caller: str) -> dict[str, Any]:
            """Place a call and deliver its IncomingCall `copies` times at once, in one slot: it rings only 30 s."""
            async with gate:
                placed = await client.post(f"{acs_url}/_emulator/calls", json={"from": caller, "deliver": False})
                assert placed.status_code == 201, placed.text
                call = placed.json()
                incoming = url + EVENTGRID + "incoming_call"
                await asyncio.gather(*(deliver(client, incoming, [call["event"]], tally, f"IncomingCall {call['id']}",
                                               eventgrid_headers()) for _ in range(copies)))
                return call

        # WhatsApp: the emulator builds each event (and notes that the customer wrote, which opens the window).
        phones = [f"+1444{rng.randrange(10**7):07d}" for _ in range(phones_count)]
        messages: list[tuple[str, dict[str, Any]]] = []
        for index in range(events - calls * len(EVENTS_PER_CALL)):
            phone = phones[index % phones_count]
            built = await client.post(f"{acs_url}/_emulator/inbound",
                                      json={"from": phone, "text": rng.choice(TEXTS), "deliver": False})
            assert built.status_code == 200, built.text
            messages.append((phone, built.json()["event"]))

        webhook = url + EVENTGRID + "whatsapp_events"
        jobs = [post(webhook, [event], f"whatsapp {event['id']}", eventgrid_headers())
                for _, event in messages for _ in range(rng.randint(1, 3))]
        call_ids: list[str] = []
        jobs += [_call(client, acs_url, ring, post, rng.randint(1, 3), random.Random(rng.random()), call_ids)
                 for _ in range(calls)]
        rng.shuffle(jobs)

        started = time.monotonic()
        await asyncio.gather(*jobs)
        delivered = time.monotonic() - started

        # Let the tail land: replies going out, the emulator's delivery statuses coming back.
        async def outbox_size() -> int:
            return len((await client.get(f"{acs_url}/_emulator/messages")).json())

        await settle(outbox_size)
        calls_seen = [(await client.get(f"{acs_url}/_emulator/calls/{c}")).json() for c in call_ids]
        outbox = (await client.get(f"{acs_url}/_emulator/messages")).json()
        queue = (await client.get(f"{url}/api/ops/queue")).json()["queue"]
    waiting, in_progress = await queue_counters(data_dir)

    # WhatsApp: one turn per message, and each reply it earned in the outbox once.
    sent = Counter(m["repeatabilityRequestId"] for m in outbox)
    effects = duplicates = 0
    by_phone: dict[str, list[dict[str, Any]]] = {}
    for phone, event in messages:
        by_phone.setdefault(phone, []).append(event)
    problems: list[str] = []
    for phone, written in by_phone.items():
        customer = await read_customer(data_dir, phone)
        sessions = [s for s in (customer.sessions.values() if customer else []) if s.channel is Channel.WHATSAPP]
        if len(sessions) != 1:
            problems.append(f"{phone}: {len(sessions)} WhatsApp sessions")
            continue
        [session] = sessions
        turns = [t for t in session.turns if t.role == "customer"]
        if len(turns) != len(written):
            problems.append(f"{phone}: {len(written)} messages but {len(turns)} customer turns")
            duplicates += max(0, len(turns) - len(written))
        for event in written:
            message_id = event["data"]["messageId"]
            replies = [m for m in session.messages if m.direction == "out" and m.reply_to == message_id]
            first = send_key(message_id, "0")
            if not replies or sent[first] != 1 or any(sent[r.key] != 1 for r in replies):
                problems.append(f"{phone}: message {message_id} has {len(replies)} replies, "
                                f"{sent[first]} sends of the first")
                duplicates += max(0, sent[first] - 1)
            else:
                effects += 1

    # Calls: one answer, one transfer, the session closed, every callback seen by the app.
    for call in calls_seen:
        answers = call["answers"]
        transfers = sum(1 for a in call["actions"] if a["op"] == "transferToParticipant")
        seen = [c["type"] for c in call["callbacks"]]
        if answers == 1:
            effects += 1
        else:
            problems.append(f"call {call['id']}: answered {answers} times")
            duplicates += max(0, answers - 1)
        if transfers != 1:
            problems.append(f"call {call['id']}: transferred {transfers} times")
            duplicates += max(0, transfers - 1)
        # ACS posts callbacks concurrently, in any order, with ParticipantsUpdated beside CallConnected.
        if sorted(t for t in seen if t != "ParticipantsUpdated") != sorted(CALLBACK_TYPES):
            problems.append(f"call {call['id']}: callbacks {seen}")
        customer = await read_customer(data_dir, call["from"])
        voice = customer.sessions.get(session_id_for(call["id"])) if customer else None
        if voice is not None and voice.status is SessionStatus.TRANSFERRED and transfers == 1:
            effects += len(CALLBACK_TYPES)
        else:
            problems.append(f"call {call['id']}: voice session {voice.status if voice else None}")
    duplicates += abs(waiting) + abs(in_progress)

    deliveries = tally.attempts + sum(len(call["callbacks"]) for call in calls_seen)  # ours, plus the emulator's
    return Storm(len(messages) + calls * len(EVENTS_PER_CALL), deliveries, effects, duplicates, problems,
                 tally, delivered, len(outbox), waiting, in_progress, queue)


async def _call(
    client: httpx.AsyncClient, acs_url: str, ring, post, copies: int, rng: random.Random, call_ids: list[str]
) -> None:
    """One call as ACS would bring it: IncomingCall `copies` times at once, then each callback redelivered 0-2 times."""
    call = await ring(copies, f"+1333{rng.randrange(10**7):07d}")
    call_ids.append(call["id"])

    # The emulator posts each callback once as the call moves on; ACS may post any of them again.
    deadline = time.monotonic() + 60
    while True:
        details = (await client.get(f"{acs_url}/_emulator/calls/{call['id']}")).json()
        if details["state"] != "ringing" and any(c["type"] == "CallDisconnected" for c in details["callbacks"]):
            break
        assert time.monotonic() < deadline, f"call {call['id']} never ended: {details['state']} {details['callbacks']}"
        await asyncio.sleep(0.1)
    callback_url = details["answer"]["callbackUri"]
    again = [
        post(callback_url, [_callback(details, c)], f"{c['type']} {call['id']}")
        for c in details["callbacks"] for _ in range(rng.randint(0, 2))
    ]
    rng.shuffle(again)
    await asyncio.gather(*again)


def _callback(call: dict[str, Any], seen: dict[str, Any]) -> dict[str, Any]:
    """The callback the emulator posted (same id), as ACS would post it again."""
    source = f"calling/callConnections/{call['call_connection_id']}"
    data: dict[str, Any] = {
        "callConnectionId": call["call_connection_id"], "correlationId": call["id"],
        "resultInformation": {"code": 200, "subCode": 0, "message": "redelivered"},
    }
    if seen["type"] == "MediaStreamingFailed":
        data["mediaStreamingUpdate"] = {"contentType": "Audio", "mediaStreamingStatus": "mediaStreamingFailed",
                                        "mediaStreamingStatusDetails": "streamConnectionUnsuccessful"}
    return {"id": seen["id"], "source": source, "type": f"Microsoft.Communication.{seen['type']}",
            "specversion": "1.0", "time": seen["at"], "subject": source, "data": data}
