"""Callbacks: a customer offered a long wait asks us to call them back instead, "when it's my turn" or at a time
they name ("at 3 pm", "in an hour"), on any channel.

The conversation core records the request on the customer record (`Customer.callbacks`, the latest last) in the turn's
own write and answers it, and the turn's outcome says so (`TurnOutcome.callbacks_changed`); the channel then starts the
callback's Durable orchestration (functions/callbacks.py, `sync_callbacks`), whose id is derived from the customer and
the request, so a redelivered message or hang-up starts nothing new. The orchestration waits for the time, or polls the
queue's estimate until it drops under the scenario's threshold (durable timers), then calls through
`OutboundCalls.place` with the agent the customer was talking to and an opening that says why we call and what they were
doing. Not reached (busy, no answer, an answering machine): one retry after a delay, then a WhatsApp (inside the 24-hour
window) or SMS message saying we tried. "Cancel my callback" on any channel marks the request cancelled in the turn's
write and raises an event the orchestration waits on; the call step reads the record again, so a cancel whose event is
lost still places no call.

The steps with I/O are here (each safe to run twice); the orchestrator only decides.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from shared.errors import NotFound, SwitchboardError
from shared.models import Channel, ChannelSession, Customer, utcnow

if TYPE_CHECKING:
    from shared.bootstrap import Services
    from shared.scenario import Scenario
    from shared.settings import Settings

log = logging.getLogger(__name__)

#: The event the orchestration waits on beside its timers: the customer cancelled.
CANCEL_EVENT = "CallbackCancelled"
# The timings are settings (shared/settings_model.py, CALLBACK_*): how often a "when it's my turn" callback looks at
# the queue's estimate, how long it waits for it before calling anyway (the customer asked for a call, and hours of
# silence serve them worse than a call with a wait at its end), the delay before the one retry, and how long the call
# step waits in real time for a placed call to be taken or refused (ACS's ring times are 30-60 s) and for an answer to
# turn out to be a machine (the gateway's screen takes 8 s at most, docs/outbound.md). The orchestration's waits
# travel in its input (`plan_for`), as the handoff's do: a running orchestration keeps the values it started with.
PLAN_TIMINGS = {"poll_seconds": "callback_poll_seconds", "max_turn_wait_seconds": "callback_max_turn_wait_seconds",
                "retry_after_seconds": "callback_retry_after_seconds"}
#: How far ahead a named time may be booked. A callback "in 100 hours" is a slip or a wish no queue can promise:
#: the agent says how far ahead it can book and records nothing. "At 3 pm" is read on the scenario's clock
#: (`timezone` in scenario.yaml).
MAX_AHEAD = timedelta(days=2)

# A callback's state on the record.
REQUESTED, CALLING, ANSWERED, CANCELLED, MISSED, FAILED = "requested", "calling", "answered", "cancelled", "missed", \
    "failed"
OPEN = (REQUESTED, CALLING)
#: Outcomes of a placed call (shared/calls/outbound.py) that did not reach the customer.
NOT_REACHED = ("busy", "no_answer", "voicemail", "failed")

ASKS = re.compile(r"\bcall(ing)? (me )?back\b|\bcall-?back\b|\bring me back\b|\bgive me a call\b", re.I)
CANCELS = re.compile(r"\b(cancel|stop|forget)\b.{0,20}\bcall-?\s?back\b|\bdon'?t (need to )?call me( back)?\b|"
                     r"\bno need to call me\b", re.I)
_IN = re.compile(r"\bin\s+(an?|one|two|three|four|five|ten|fifteen|twenty|thirty|forty|forty-five|half an|\d{1,3})\s+"
                 r"(hours?|hrs?|minutes?|mins?)\b", re.I)
_AT = re.compile(r"\b(?:at|around|about|after)\s+(\d{1,2})(?:[:.](\d{2}))?\s*(a\.?\s?m\.?|p\.?\s?m\.?|o'?clock)?", re.I)
_NOON = re.compile(r"\b(?:at|around|about|after)\s+(noon|midday)\b", re.I)
_WORDS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "ten": 10, "fifteen": 15,
          "twenty": 20, "thirty": 30, "forty": 40, "forty-five": 45, "half an": 0.5}

#: The opening the agent calls with, unless the scenario's phrases give `callback_opening` ({name} is the first name
#: on record, filled when the call is placed; {topic} what they were doing; {title} the agent's team).
OPENING = "Hi {name}, it's {company} calling you back, as you asked. {topic} You're through to {title}."
PHRASES = {
    "callback_recorded_turn": "Done: we'll call you back on {number} when it's your turn, so you don't need to "
                              "hold. If you change your mind, just say cancel my callback.",
    "callback_recorded_at": "Done: we'll call you back on {number} {when}. If you change your mind, just say "
                            "cancel my callback.",
    "callback_already": "You already have a callback booked on {number} {when}. Say cancel my callback to drop it.",
    "callback_unavailable": "I'm sorry, I don't have a number to call you back on. I'll keep your place in line.",
    "callback_cancelled": "Done, I've cancelled your callback. We won't call you.",
    "callback_none": "You don't have a callback booked with us.",
    "callback_too_far": "I can book a callback up to two days ahead. When in the next two days should we call you?",
    "callback_tried": "Hi {name}, it's {company}. We tried to call you back as you asked, twice, but couldn't reach "
                      "you. Reply here or call us any time and we'll pick up where you left off.",
}


def phrase(scenario: Scenario, key: str, **values: object) -> str:
    return scenario.phrases.get(key, PHRASES[key]).format(company=scenario.company, **values)


# When: "when it's my turn" or a time they named -------------------------------------------------------------------


def parse_when(text: str, now: datetime, zone: ZoneInfo) -> dict[str, str]:
    """`{"kind": "turn"}`, `{"kind": "at", "at": ISO UTC}` for a time named in `text` ("in an hour", "at 3 pm" on
    the `zone` clock, "tomorrow at 9"), or `{"kind": "too_far"}` for one more than MAX_AHEAD away. A bare hour from
    1 to 7 is the afternoon: nobody asks for a call at 3 in the night."""
    when = _named_time(text, now, zone)
    if when is None:
        return {"kind": "turn"}
    if when - now > MAX_AHEAD:
        return {"kind": "too_far"}
    return {"kind": "at", "at": when.astimezone(UTC).isoformat()}


def _named_time(text: str, now: datetime, zone: ZoneInfo) -> datetime | None:
    if found := _IN.search(text):
        amount = float(found[1]) if found[1].isdigit() else _WORDS[found[1].lower()]
        unit = timedelta(hours=1) if found[2].lower().startswith("h") else timedelta(minutes=1)
        return now + amount * unit
    local = now.astimezone(zone)
    hour = minute = None
    if _NOON.search(text):
        hour, minute = 12, 0
    elif (found := _AT.search(text)) and int(found[1]) <= 23 and int(found[2] or 0) < 60:
        hour, minute, suffix = int(found[1]), int(found[2] or 0), (found[3] or "").lower()
        if suffix.startswith("p") and hour < 12:
            hour += 12
        elif suffix.startswith("a") and hour == 12:
            hour = 0
        elif not suffix.startswith(("a", "p")) and 1 <= hour <= 7:
            hour += 12
    if hour is None:
        return None
    moment = local.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if re.search(r"\btomorrow\b", text, re.I):
        moment += timedelta(days=1)
    elif moment <= local:
        moment += timedelta(days=1)  # "at 9" said at 10: tomorrow's 9
    return moment


def spoken_when(callback: dict[str, Any], now: datetime, zone: ZoneInfo) -> str:
    """"when it's your turn", "at 3:00 PM", "tomorrow at 9:30 AM", "in about 45 minutes"."""
    if callback.get("when") != "at" or not callback.get("at"):
        return "when it's your turn"
    at = datetime.fromisoformat(callback["at"])
    minutes = round((at - now).total_seconds() / 60)
    if 0 < minutes < 60:
        return f"in about {minutes} minutes"
    local, today = at.astimezone(zone), now.astimezone(zone).date()
    clock = local.strftime("%I:%M %p").lstrip("0")
    return f"at {clock}" if local.date() == today else f"tomorrow at {clock}"


# On the record (pure functions, run inside a record write: they may run more than once) ---------------------------


@dataclass(frozen=True)
class Request:
    callback_id: str
    number: str
    agent: str
    topic: str  # what they were doing, a sentence ("You were asking about your bill.")
    when: str  # "turn" or "at"
    at: str | None  # ISO UTC, for "at"


def open_callback(customer: Customer) -> dict[str, Any] | None:
    """The customer's callback still to be made, if any (one at a time: asking again finds this one)."""
    return next((c for c in reversed(customer.callbacks) if c.get("state") in OPEN), None)


def add(customer: Customer, session: ChannelSession, request: Request) -> dict[str, Any]:
    """Record the request, unless one is open already (that one is returned and stays as it was)."""
    if (existing := open_callback(customer)) is not None:
        return existing
    entry = {**asdict(request), "state": REQUESTED, "requested_at": utcnow(), "channel": session.channel.value,
             "session_id": session.session_id, "calls": []}
    customer.callbacks.append(entry)
    del customer.callbacks[:-MAX_CALLBACKS]
    session.add_audit("callback_requested", callback_id=request.callback_id, when=request.when, call_at=request.at)
    return entry


def cancel(customer: Customer, session: ChannelSession) -> dict[str, Any] | None:
    """Cancel the open callback; None if there is none."""
    entry = open_callback(customer)
    if entry is None:
        return None
    entry.update(state=CANCELLED, ended_at=utcnow(), cancelled_on=session.channel.value)
    session.add_audit("callback_cancelled", callback_id=entry["callback_id"])
    return entry


MAX_CALLBACKS = 10


def find(customer: Customer, callback_id: str) -> dict[str, Any] | None:
    return next((c for c in customer.callbacks if c.get("callback_id") == callback_id), None)


def instance_id_for(customer_id: str, callback_id: str) -> str:
    """One orchestration per request: the request's id is on the record, so a redelivery finds the same one."""
    return f"callback-{customer_id}-{callback_id}"


def plan_for(customer_id: str, entry: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """The orchestration's input, its waits included."""
    return {"instance_id": instance_id_for(customer_id, entry["callback_id"]), "customer_id": customer_id,
            "callback_id": entry["callback_id"], "when": entry["when"], "at": entry.get("at"),
            "agent": entry["agent"], **{key: getattr(settings, name) for key, name in PLAN_TIMINGS.items()}}


def plan_seconds(plan: dict[str, Any], key: str) -> float:
    """One of the plan's waits; a plan started before they travelled in it has the setting's default."""
    if key in plan:
        return float(plan[key])
    from shared.settings_model import Settings  # deterministic: a default, never the environment

    return float(Settings.model_fields[PLAN_TIMINGS[key]].default)


def topic_of(scenario: Scenario, customer: Customer, session_id: str, text: str = "") -> str:
    """What the customer was doing (the message asking for the call included), as the intent's handoff summary says
    it ("You were asking about your bill.")."""
    from shared.models import Turn
    from shared.summary import asked_for, fill  # the offline classifier: only a callback request needs it here

    session = customer.sessions.get(session_id)
    turns = (list(session.turns) if session is not None else []) + ([Turn("customer", text)] if text else [])
    if not (asked := asked_for(scenario, turns, customer.collected)):
        return ""
    return fill(scenario.intents[asked[0]].summary, scenario, customer.collected).rstrip(".") + "."


def opening(scenario: Scenario, entry: dict[str, Any]) -> str:
    title = scenario.agent(entry["agent"]).title if entry["agent"] in scenario.agents else scenario.company
    template = scenario.phrases.get("callback_opening", OPENING)
    # {name} stays for OutboundCalls.place, which fills it from the record when it places the call.
    return " ".join(template.replace("{company}", scenario.company).replace("{topic}", entry.get("topic") or "")
                    .replace("{title}", title).split())


# The orchestration's steps (activities) ----------------------------------------------------------------------------


async def estimate(services: Services) -> dict[str, Any]:
    """Whether the wait for a person is under the scenario's threshold now (unknown is not under)."""
    snapshot = await services.queue.snapshot()
    wait = snapshot.estimated_wait_seconds
    threshold = services.scenario.omnichannel.queue_wait_threshold_seconds
    return {"wait": wait, "under": wait is not None and wait <= threshold}


async def place(services: Services, plan: dict[str, Any], attempt: int) -> dict[str, Any]:
    """Place the call (once per attempt, whoever runs this step again); `{"placed", "call_id", "reason"}`."""
    from shared.calls.control import CallRejected
    from shared.calls.outbound import CallRequest, OutboundCalls, RateLimited

    customer = await services.customers.get(plan["customer_id"])
    entry = find(customer, plan["callback_id"])
    if entry is None or entry.get("state") == CANCELLED:
        return {"placed": False, "call_id": None, "reason": CANCELLED}
    request = CallRequest(plan["agent"], opening(services.scenario, entry), customer_id=plan["customer_id"])
    try:
        placed = await OutboundCalls(services).place(request, idempotency_key=f"{plan['instance_id']}:{attempt}")
    except (RateLimited, CallRejected, SwitchboardError) as exc:
        if getattr(exc, "retryable", False):
            raise  # an outage: Durable retries the step
        log.warning("callback %s: attempt %d could not be placed: %s", plan["callback_id"], attempt, exc)
        return {"placed": False, "call_id": None, "reason": str(exc)[:200]}
    call_id = placed["call_id"]

    def calling(record: Customer) -> None:
        if (found := find(record, plan["callback_id"])) is not None and found.get("state") in OPEN:
            found["state"] = CALLING
            if call_id not in found["calls"]:
                found["calls"].append(call_id)

    await services.customers.update(plan["customer_id"], calling)
    return {"placed": True, "call_id": call_id, "reason": ""}


async def outcome(services: Services, call_id: str) -> str:
    """How the placed call went: answered (a person), or busy, no_answer, voicemail, failed. Waits in real time (at
    most CALLBACK_OUTCOME_WAIT_SECONDS) for the phone to be taken or refused, and for the answering-machine screen."""
    from shared.calls.service import CallService

    calls = CallService(services)
    screen_seconds = services.settings.callback_screen_seconds
    deadline = time.monotonic() + services.settings.callback_outcome_wait_seconds
    answered_at: float | None = None
    while time.monotonic() < deadline:
        try:
            record = await calls.describe(call_id)
        except NotFound:
            return "failed"
        found = record.get("outcome")
        if found in NOT_REACHED:
            return found
        if found == "answered":
            answered_at = answered_at or time.monotonic()
            if record.get("state") in ("ended", "failed") or time.monotonic() - answered_at >= screen_seconds:
                return "answered"
        await asyncio.sleep(0.5)
    return "answered" if answered_at is not None else "no_answer"


async def settle(services: Services, plan: dict[str, Any], state: str, detail: str = "") -> bool:
    """Put the callback's end on the record (a cancelled one stays cancelled); False if it had ended already."""

    def end(customer: Customer) -> bool:
        entry = find(customer, plan["callback_id"])
        if entry is None or entry.get("state") not in OPEN:
            return False
        entry.update(state=state, ended_at=utcnow(), **({"detail": detail} if detail else {}))
        return True

    _, changed = await services.customers.update(plan["customer_id"], end)
    return changed


async def tell_we_tried(services: Services, plan: dict[str, Any]) -> dict[str, Any]:
    """One message saying we tried: WhatsApp free text while the customer's 24-hour window is open, else SMS, else
    nothing (the record says so). Sent under a key derived from the callback, so a re-run sends nothing twice."""
    from shared.messenger.base import TextMessage
    from shared.router import phone_of
    from shared.whatsapp.delivery import window_open

    customer = await services.customers.get(plan["customer_id"])
    number = phone_of(customer)
    entry = find(customer, plan["callback_id"]) or {}
    if not number or entry.get("state") == CANCELLED:
        return {"sent_by": None}
    name = (customer.collected.get("customer_name") or "there").split()[0]
    text = phrase(services.scenario, "callback_tried", name=name)
    key = _uuid_for(f"{plan['instance_id']}:tried")
    first = datetime.fromisoformat(entry.get("requested_at") or utcnow())
    now = datetime.now(UTC)
    chats = [s for s in customer.sessions.values() if s.channel is Channel.WHATSAPP and s.loaded]
    if services.settings.whatsapp_channel_id and any(window_open(s, now) for s in chats):
        await services.messenger.send(TextMessage(number, text), repeatability_id=key, first_sent=now)
        sent_by = "whatsapp"
    elif services.texts.configured:
        await services.texts.text(number, text, key=key, first_sent=first if first > now - timedelta(hours=1) else now,
                                  tag="callback")
        sent_by = "sms"
    else:
        return {"sent_by": None}

    def told(record: Customer) -> None:
        if (found := find(record, plan["callback_id"])) is not None:
            found["told_by"] = sent_by

    await services.customers.update(plan["customer_id"], told)
    return {"sent_by": sent_by}


def _uuid_for(text: str) -> str:
    """A repeatability id (a UUID) that is the same for the same text: the same message, sent once."""
    import uuid

    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"switchboard:{text}"))


async def due(services: Services, customer_id: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The customer's callbacks to start (requested) and to tell of a cancel (cancelled lately)."""
    try:
        customer = await services.customers.get(customer_id)
    except NotFound:
        return [], []
    start = [plan_for(customer_id, c, services.settings) for c in customer.callbacks if c.get("state") in OPEN]
    stop = [plan_for(customer_id, c, services.settings) for c in _cancelled_lately(customer)]
    return start, stop


def has_open(customer: Customer) -> bool:
    """Whether the record holds a callback whose orchestration `due` would start or tell of a cancel: a redelivered
    turn syncs them again only then (the first delivery may have saved the turn and failed before syncing)."""
    return any(c.get("state") in OPEN for c in customer.callbacks) or bool(_cancelled_lately(customer))


def _cancelled_lately(customer: Customer) -> list[dict[str, Any]]:
    recent = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    return [c for c in customer.callbacks if c.get("state") == CANCELLED and (c.get("ended_at") or "") >= recent]
