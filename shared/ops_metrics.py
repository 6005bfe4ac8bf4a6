"""The design's success figures, computed from real traffic: what `GET /api/ops/metrics` serves.

The customer records are the truth (who said what and when, what was collected, each escalation and how it ended),
but a record cannot be found by time. So a small ledger in SessionState remembers, for up to MAX_HOURS, which
sessions opened and which handoffs were accepted, by customer and session id only; the figures then read those
records and sessions. docs/observability.md ("Success figures") says how each is computed.

- **Handoff success**: accepted offers (the customer's yes started a handoff) whose new channel received a first
  message from the customer. **Channel-switch time**: from that yes (the customer turn that accepted, on the old
  session) to that first message, p50 and p95.
- **Context preservation**: of handoffs continued on a new channel, the share where that channel's agents asked for
  nothing the record held when the customer said yes (shared/reasking.py: the evaluation suite's own test).
- **Resolution**: a conversation (a session and the sessions continuing it through handoffs) is resolved by the AI
  at its last reply that gave a tool's result, unless it was escalated; an escalated one is resolved when a person
  closes it as "resolved". Turns (customer messages) and time from its start to that point, p50 and p95.
- **Escalations**: conversations handed to the desk; **abandonment**: escalations the customer left before a person
  came.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, TypeVar

from shared.errors import NotFound
from shared.models import ChannelSession, Customer, EscalationStatus
from shared.reasking import reasked, slot_questions
from shared.scenario import Scenario
from shared.stores.base import CustomerStore, SessionState

T = TypeVar("T")

#: The widest window the figures are computed over, and so how long the ledger keeps an entry.
MAX_HOURS = 168
DEFAULT_HOURS = 24
HOUR = 3600.0
_KEEP_SECONDS = (MAX_HOURS + 1) * HOUR
_SESSIONS = "ops:sessions:"  # + hour number: set of "<epoch ms> <customer id> <session id> <0|1 continues>"
_HANDOFFS = "ops:handoffs:"  # + hour number: set of "<epoch ms> <from session id>"
_HANDOFF = "ops:handoff:"  # + from session id: what the handoff was and where it went
_ACCEPTED = "ops:accepted:"  # + from session id: the handoff's acceptance was written (first writer only)
#: Records read at once while computing (each a store round trip).
_READS_AT_ONCE = 16
#: How many handoffs a conversation may chain through (guards against a loop in bad data).
_MAX_CHAIN = 10

#: The design's targets.
CONTEXT_TARGET = 0.95  # context preserved in at least 95% of handoffs
SUCCESS_TARGET = 0.90  # at least 90% of accepted handoffs succeed
SWITCH_TARGET_SECONDS = 30.0  # channel switch under 30 s (held to the p95: nearly every customer, not half)
PERCENTILES = (50, 95)


class Ledger:
    """Which sessions opened and which handoffs were accepted when: the index the figures are read through."""

    def __init__(self, state: SessionState, clock: Callable[[], float] = time.time) -> None:
        self.state, self.clock = state, clock

    async def session_opened(self, customer_id: str, session_id: str, *, continues: bool) -> None:
        now = self.clock()
        member = f"{int(now * 1000)} {customer_id} {session_id} {int(continues)}"
        await self.state.add_member(_SESSIONS + _hour(now), member, _KEEP_SECONDS)

    async def handoff_accepted(self, customer_id: str, from_session_id: str, to_channel: str,
                               known: Iterable[str]) -> None:
        """The customer said yes to continuing on `to_channel`; `known`: the slots their record held then.

        Once per session: one handoff per session (its orchestration's id is the session's), so a second acceptance
        (a retried start, two starts that both got through) is the same handoff. It must neither count twice nor
        move the yes later and widen `known` to slots the new channel has collected since (which would read as
        asked again). The first writer wins atomically (`mark_processed`); if its writes fail, the next may try.
        """
        if not await self.state.mark_processed(_ACCEPTED + from_session_id, _KEEP_SECONDS):
            return
        try:
            await self._accepted(customer_id, from_session_id, to_channel, known)
        except BaseException:
            await self.state.release_processed(_ACCEPTED + from_session_id)
            raise

    async def _accepted(self, customer_id: str, from_session_id: str, to_channel: str, known: Iterable[str]) -> None:
        now = self.clock()
        await self.state.merge(_HANDOFF + from_session_id, {
            "customer_id": customer_id, "from_session_id": from_session_id, "to_channel": to_channel,
            "started_at": now, "known": sorted(known),
        }, _KEEP_SECONDS)
        await self.state.add_member(_HANDOFFS + _hour(now), f"{int(now * 1000)} {from_session_id}", _KEEP_SECONDS)

    async def handoff_engaged(self, from_session_id: str, customer_id: str, to_session_id: str) -> None:
        """The new channel's session that continues it (on `customer_id`'s record, the phone owner's if it moved)."""
        await self.state.merge(_HANDOFF + from_session_id,
                               {"to_customer_id": customer_id, "to_session_id": to_session_id}, _KEEP_SECONDS)

    async def handoff(self, from_session_id: str) -> dict[str, Any] | None:
        return await self.state.get(_HANDOFF + from_session_id)

    async def settle(self, from_session_id: str, facts: dict[str, Any]) -> None:
        """Keep what no later event can change (the yes and the first message's times), so it is read once."""
        await self.state.merge(_HANDOFF + from_session_id, facts, _KEEP_SECONDS)

    async def sessions_since(self, since: float) -> list[tuple[str, str, bool]]:
        """(customer id, session id, continues a handoff) of the sessions opened since `since` (epoch seconds), each
        once: a session noted twice (two entries a millisecond or an hour apart) is one conversation."""
        found: dict[str, tuple[str, str, bool]] = {}
        for member in await self._members(_SESSIONS, since):  # oldest first: a session counts from its first entry
            at, customer_id, session_id, continues = member.split(" ")
            if int(at) >= since * 1000:
                found.setdefault(session_id, (customer_id, session_id, continues == "1"))
        return list(found.values())

    async def handoffs_since(self, since: float) -> list[str]:
        """The from-session ids of the handoffs accepted since `since` (epoch seconds), each once (one handoff per
        session, whatever entries a retried acceptance left before `handoff_accepted` kept to the first)."""
        found: dict[str, None] = {}
        for member in await self._members(_HANDOFFS, since):
            at, session_id = member.split(" ")
            if int(at) >= since * 1000:
                found.setdefault(session_id)
        return list(found)

    async def _members(self, prefix: str, since: float) -> list[str]:
        """The members of the hour buckets since `since`, oldest first (by their epoch ms, numerically)."""
        first, last = int(since // HOUR), int(self.clock() // HOUR)
        buckets = await asyncio.gather(*(self.state.members(f"{prefix}{hour}") for hour in range(first, last + 1)))
        return sorted({member for bucket in buckets for member in bucket}, key=lambda m: int(m.split(" ", 1)[0]))


# What one handoff and one conversation came to -----------------------------------------------------------------


@dataclass
class HandoffFacts:
    accepted_at: float  # the customer's yes
    continued: bool = False  # a session on the new channel continued it
    first_message_at: float | None = None  # the customer's first message there
    reasked: list[str] = field(default_factory=list)  # slots held at the yes that the new channel asked for

    @property
    def switch_seconds(self) -> float | None:
        return None if self.first_message_at is None else max(0.0, self.first_message_at - self.accepted_at)


@dataclass
class ConversationFacts:
    customer_turns: int
    escalations: int
    abandoned: int
    resolved_at: float | None = None
    turns_to_resolution: int | None = None
    started_at: float = 0.0

    @property
    def resolution_seconds(self) -> float | None:
        return None if self.resolved_at is None else max(0.0, self.resolved_at - self.started_at)


class Figures:
    """Computes the figures over a window from the ledger and the records it names."""

    def __init__(self, scenario: Scenario, customers: CustomerStore, state: SessionState,
                 clock: Callable[[], float] = time.time) -> None:
        self.scenario, self.customers, self.ledger, self.clock = scenario, customers, Ledger(state, clock), clock
        self._asks = slot_questions(scenario)
        self._reads = asyncio.Semaphore(_READS_AT_ONCE)

    async def compute(self, hours: int = DEFAULT_HOURS) -> dict[str, Any]:
        """Every figure over the last `hours`, each with its n, its target and whether it is met."""
        now = self.clock()
        since = now - hours * HOUR
        handoffs = await self.handoffs(since, context=True)
        conversations = await self.conversations(since)
        return {
            "window": {"hours": hours, "from": _iso(since), "to": _iso(now)},
            **handoff_figures(handoffs),
            **conversation_figures(conversations),
        }

    async def handoffs(self, since: float, *, context: bool) -> list[HandoffFacts]:
        """The handoffs accepted since `since`. Without `context`, a settled handoff is read from the ledger alone."""
        ids = await self.ledger.handoffs_since(since)
        found = await asyncio.gather(*(self._handoff(session_id, context) for session_id in ids))
        return [facts for facts in found if facts is not None]

    async def conversations(self, since: float) -> list[ConversationFacts]:
        """The conversations that began since `since` and in which the customer said something."""
        roots = [(c, s) for c, s, continues in await self.ledger.sessions_since(since) if not continues]
        found = await asyncio.gather(*(self._conversation(c, s) for c, s in roots))
        return [facts for facts in found if facts is not None and facts.customer_turns]

    async def _handoff(self, from_session_id: str, context: bool) -> HandoffFacts | None:
        entry = await self.ledger.handoff(from_session_id)
        if entry is None:
            return None  # expired with the ledger
        if not context and entry.get("settled_first_message_at") is not None:
            return HandoffFacts(entry["settled_accepted_at"], True, entry["settled_first_message_at"])
        accepted_at = float(entry.get("settled_accepted_at") or entry["started_at"])
        source = await self._session(entry["customer_id"], from_session_id)
        if source is not None:
            accepted_at = _accepted_at(source, entry["to_channel"]) or accepted_at
        facts = HandoffFacts(accepted_at)
        if entry.get("to_session_id"):
            target = await self._session(entry["to_customer_id"], entry["to_session_id"])
            if target is not None:
                facts.continued = True
                facts.first_message_at = next((_epoch(t.at) for t in target.turns if t.role == "customer"), None)
                if context:
                    known = set(entry.get("known") or [])
                    facts.reasked = sorted({slot for t in target.turns if t.role == "agent"
                                            for slot in reasked(t.text, self._asks, known)})
        if facts.first_message_at is not None and entry.get("settled_first_message_at") is None:
            await self.ledger.settle(from_session_id, {"settled_accepted_at": facts.accepted_at,
                                                       "settled_first_message_at": facts.first_message_at})
        return facts

    async def _conversation(self, customer_id: str, session_id: str) -> ConversationFacts | None:
        chain: list[tuple[str, ChannelSession]] = []
        where: tuple[str, str] | None = (customer_id, session_id)
        while where is not None and len(chain) < _MAX_CHAIN:
            session = await self._session(*where)
            if session is None:
                break
            chain.append((where[0], session))
            entry = await self.ledger.handoff(where[1])
            where = (entry["to_customer_id"], entry["to_session_id"]) if entry and entry.get("to_session_id") else None
        if not chain:
            return None
        records = {cid: await self._record(cid) for cid in {cid for cid, _ in chain}}
        in_chain = {s.session_id for _, s in chain}
        escalations = {e.escalation_id: e for record in records.values() if record is not None
                       for e in record.escalations if e.session_id in in_chain}.values()
        turns = sorted((t for _, s in chain for t in s.turns), key=lambda t: t.at)
        facts = ConversationFacts(
            customer_turns=sum(1 for t in turns if t.role == "customer"),
            escalations=len(escalations),
            abandoned=sum(1 for e in escalations if e.status is EscalationStatus.ABANDONED),
            started_at=min(_epoch(s.started_at) for _, s in chain),
        )
        if escalations:
            closed = [e for e in escalations if e.status is EscalationStatus.CLOSED and e.disposition == "resolved"
                      and e.ended_at]
            resolved_at = max((_epoch(e.ended_at) for e in closed if e.ended_at), default=None)
        else:
            resolved_at = max((_epoch(t.at) for t in turns if t.role == "agent" and t.tool), default=None)
        if resolved_at is not None:
            facts.resolved_at = resolved_at
            facts.turns_to_resolution = sum(1 for t in turns if t.role == "customer" and _epoch(t.at) <= resolved_at)
        return facts

    async def _session(self, customer_id: str, session_id: str) -> ChannelSession | None:
        return await self._read(self.customers.get_session(customer_id, session_id))

    async def _record(self, customer_id: str) -> Customer | None:
        return await self._read(self.customers.get(customer_id))

    async def _read(self, read: Awaitable[T]) -> T | None:
        async with self._reads:
            try:
                return await read
            except NotFound:  # deleted (an anonymous visitor) or past its retention: not counted
                return None


# The figures ------------------------------------------------------------------------------------------------------


def handoff_figures(handoffs: list[HandoffFacts]) -> dict[str, Any]:
    continued = [h for h in handoffs if h.continued]
    succeeded = [h for h in handoffs if h.first_message_at is not None]
    preserved = [h for h in continued if not h.reasked]
    switch = [h.switch_seconds for h in succeeded if h.switch_seconds is not None]
    switch_figures = percentiles(switch, 1)
    return {
        "context_preservation": {
            "n": len(continued), "preserved": len(preserved), **_rate(len(preserved), len(continued), CONTEXT_TARGET),
            "reasked_slots": sorted({slot for h in continued for slot in h.reasked}),
            "target": f"at least {CONTEXT_TARGET:.0%} of handoffs continued on a new channel",
        },
        "handoff_success": {
            "n": len(handoffs), "succeeded": len(succeeded), **_rate(len(succeeded), len(handoffs), SUCCESS_TARGET),
            "target": f"at least {SUCCESS_TARGET:.0%} of accepted handoffs",
        },
        "channel_switch_seconds": {
            "n": len(switch), **switch_figures,
            "met": None if not switch else switch_figures["p95"] < SWITCH_TARGET_SECONDS,
            "target": f"under {SWITCH_TARGET_SECONDS:g} s (p95)",
        },
    }


def conversation_figures(conversations: list[ConversationFacts]) -> dict[str, Any]:
    resolved = [c for c in conversations if c.resolved_at is not None]
    escalated = [c for c in conversations if c.escalations]
    escalations = sum(c.escalations for c in conversations)
    abandoned = sum(c.abandoned for c in conversations)
    return {
        "resolution": {
            "n": len(conversations), "resolved": len(resolved),
            "rate": _ratio(len(resolved), len(conversations)),
            "turns": percentiles([c.turns_to_resolution for c in resolved if c.turns_to_resolution is not None], 0),
            "seconds": percentiles([c.resolution_seconds for c in resolved if c.resolution_seconds is not None], 1),
        },
        "escalations": {"n": len(conversations), "escalated": len(escalated),
                        "rate": _ratio(len(escalated), len(conversations))},
        "abandonment": {"n": escalations, "abandoned": abandoned, "rate": _ratio(abandoned, escalations)},
    }


def percentiles(values: list[float] | list[int], digits: int) -> dict[str, float | None]:
    """p50 and p95 by nearest rank (a value that was measured, never one between two); None with no values."""
    ordered = sorted(values)
    figures: dict[str, float | None] = {}
    for p in PERCENTILES:
        value = ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] if ordered else None
        figures[f"p{p}"] = None if value is None else (round(value, digits) if digits else value)
    return figures


def _rate(part: int, whole: int, target: float) -> dict[str, Any]:
    rate = _ratio(part, whole)
    return {"rate": rate, "target_rate": target, "met": None if rate is None else part / whole >= target}


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 3) if whole else None  # an empty window says so rather than 100%


def _accepted_at(session: ChannelSession, to_channel: str) -> float | None:
    """When the customer said yes to `to_channel`: the latest customer turn that accepted it."""
    return next((_epoch(t.at) for t in reversed(session.turns) if t.role == "customer" and t.switch_to == to_channel),
                None)


def _hour(epoch: float) -> str:
    return str(int(epoch // HOUR))


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="seconds")
