"""The desk: the people in the contact center, the queue of customers waiting for them, and what they do with them.

Two stores, as everywhere: the customer record is the truth of an escalation (who has it, its status, the
disposition), written with the record's optimistic concurrency, so of two people claiming the same customer exactly
one wins; SessionState holds what the desk shows and counts across instances (who is on duty, which escalations are
waiting, recent handle times), each entry expiring by itself. A queue entry whose record says it is no longer waiting
is dropped the next time it is read, and an open escalation missing from the queue (its indexing failed) is put back
by its customer's next message (`Conversation`), so the two cannot drift apart for long.

Presence is kept by the desk page itself: every poll refreshes the person's entry, and a person whose page is gone
stops counting as on duty PRESENCE_SECONDS later. docs/desk.md tells the whole story.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any, Callable

from shared.errors import Conflict, InvalidInput, NotFound, SwitchboardError
from shared.models import (
    Channel, ChannelSession, Customer, Escalation, EscalationStatus, Handoff, Turn, new_id, utcnow,
)
from shared.ops_metrics import Figures, Ledger, handoff_figures
from shared.scenario import Scenario
from shared.stores.base import CustomerStore, SessionState
from shared.wait import DeskLoad

log = logging.getLogger(__name__)

#: How long a person counts as at the desk after their page last polled (it polls every few seconds).
PRESENCE_SECONDS = 90.0
#: How long a person's settings (name, available or away, phone) are kept without a visit.
PROFILE_SECONDS = 12 * 3600.0
#: How long an escalation may wait in the queue: after this it is dropped from the count (the customer is long gone).
MAX_WAIT_SECONDS = 4 * 3600.0
#: How long a person may hold a customer before the desk stops counting them busy with that one.
MAX_HANDLE_SECONDS = 8 * 3600.0
#: How long a call routed to a person may take to be accepted before that person is offered the next one.
ROUTING_SECONDS = 90.0
#: Handle times the average is taken over.
RECENT_HANDLES = 20
#: The window of the per-hour figures.
HOUR = 3600.0
#: Longest time one long poll (the desk's, the chat page's) waits for a change.
MAX_POLL_SECONDS = 25.0
POLL_STEP_SECONDS = 0.25

ON_DUTY = "desk:on_duty"  # set: people present and available
PRESENT = "desk:present"  # set: people whose page polled lately (available or away)
WAITING = "desk:waiting"  # set: escalation ids waiting for a person
HELD_CALLS = "desk:held_calls"  # set: calls on hold because the media gateway is full (they wait for the AI)
VERSION = "desk:version"  # counter: anything the desk shows changed
_PROFILE = "desk:agent:"  # + agent id: {name, status, phone, acs_user}
_CLAIMS = "desk:claims:"  # + agent id: set of escalation ids the person has now
_ROUTING = "desk:routing:"  # + agent id: a call is on its way to them (a lease-like mark)
_ENTRY = "desk:esc:"  # + escalation id: the queue's copy of an escalation
_HANDLES = "desk:handle_times"
_ESCALATED = "desk:hour:escalated"  # sets with one member per event, each expiring after an hour
_ABANDONED = "desk:hour:abandoned"
_CLAIMED = "desk:hour:claimed"
_SESSION_VERSION = "desk:session:"  # + session id: counter the chat page's long poll waits on
DAY = 24 * 3600.0

AVAILABLE, AWAY = "available", "away"

#: Roles from the sign-in principal (Entra app roles; the local sign-in grants them too).
AGENT_ROLE, SUPERVISOR_ROLE = "desk.agent", "desk.supervisor"


@dataclass(frozen=True)
class DeskAgent:
    """A person signed in at the desk, as the sign-in says (shared/principal.py)."""

    agent_id: str
    name: str
    roles: frozenset[str] = frozenset({AGENT_ROLE})

    @property
    def supervisor(self) -> bool:
        return SUPERVISOR_ROLE in self.roles


@dataclass(frozen=True)
class Presence:
    agent_id: str
    name: str
    status: str = AWAY
    phone: str = ""  # E.164: transferred calls ring here
    acs_user: str = ""  # or an ACS user id (8:acs:...): transferred calls ring there
    claims: int = 0  # customers the person has now

    @property
    def reachable_by_phone(self) -> bool:
        return bool(self.phone or self.acs_user)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Placement:
    """Where a customer stands on being escalated: their place and wait, or the person their call goes to."""

    position: int | None  # 1 = next; None when routed straight to someone
    wait_seconds: float | None  # None: nobody is on duty
    routed_to: Presence | None = None
    on_duty: int = 0


#: Channel bookkeeping added to the write that saves a person's message (WhatsApp logs the send it owes).
OnSay = Callable[[ChannelSession, list[str]], None]


@dataclass
class Desk:
    scenario: Scenario
    customers: CustomerStore
    state: SessionState
    clock: Callable[[], float] = time.time
    presence_seconds: float = PRESENCE_SECONDS
    _poll_step: float = field(default=POLL_STEP_SECONDS, repr=False)

    # People ----------------------------------------------------------------------------------------------------

    async def set_presence(
        self, agent: DeskAgent, status: str, *, phone: str | None = None, acs_user: str | None = None
    ) -> Presence:
        if status not in (AVAILABLE, AWAY):
            raise InvalidInput('"status" must be "available" or "away"')
        changes: dict[str, Any] = {"name": agent.name, "status": status}
        if phone is not None:
            changes["phone"] = phone
        if acs_user is not None:
            changes["acs_user"] = acs_user
        await self.state.merge(_PROFILE + agent.agent_id, changes, PROFILE_SECONDS)
        await self.touch(agent)
        await self._bump()
        return await self.presence(agent.agent_id)

    async def touch(self, agent: DeskAgent) -> Presence:
        """The person's page is open: they count as present (and on duty, if available) for a while longer."""
        profile = await self.state.get(_PROFILE + agent.agent_id)
        if profile is None:
            profile = await self.state.merge(_PROFILE + agent.agent_id, {"name": agent.name, "status": AWAY},
                                             PROFILE_SECONDS)
        was_on_duty = agent.agent_id in await self.state.members(ON_DUTY)
        await self.state.add_member(PRESENT, agent.agent_id, self.presence_seconds)
        if profile.get("status") == AVAILABLE:
            await self.state.add_member(ON_DUTY, agent.agent_id, self.presence_seconds)
        else:
            await self.state.remove_member(ON_DUTY, agent.agent_id)
        if was_on_duty != (profile.get("status") == AVAILABLE):
            await self._bump()
        return await self.presence(agent.agent_id)

    async def presence(self, agent_id: str) -> Presence:
        profile = await self.state.get(_PROFILE + agent_id) or {}
        claims = await self.state.count_members(_CLAIMS + agent_id)
        present = agent_id in await self.state.members(PRESENT)
        return Presence(
            agent_id, str(profile.get("name") or agent_id), str(profile.get("status") or AWAY) if present else AWAY,
            str(profile.get("phone") or ""), str(profile.get("acs_user") or ""), claims,
        )

    async def on_duty(self) -> list[Presence]:
        return [await self.presence(agent_id) for agent_id in sorted(await self.state.members(ON_DUTY))]

    async def load(self) -> DeskLoad:
        """The figures the wait estimate is made from (shared/wait.py)."""
        people = await self.on_duty()
        waiting = await self.state.count_members(WAITING) + await self.state.count_members(HELD_CALLS)
        free = sum(1 for p in people if p.claims == 0)
        return DeskLoad(waiting, len(people), free, await self.handle_seconds())

    async def handle_seconds(self) -> float:
        recent = (await self.state.get(_HANDLES) or {}).get("seconds", [])
        return statistics.fmean(recent) if recent else self.scenario.desk.default_handle_seconds

    # Escalating ------------------------------------------------------------------------------------------------

    async def place(self, channel: Channel) -> Placement:
        """Where a customer escalated now would stand. A call goes straight to someone free who takes calls by
        phone, reserved for it so that two calls are not routed to the same person at once."""
        load = await self.load()
        if channel is Channel.VOICE:
            for person in await self.on_duty():
                if person.claims == 0 and person.reachable_by_phone and await self.state.mark_processed(
                    _ROUTING + person.agent_id, ROUTING_SECONDS
                ):
                    return Placement(None, 0.0, person, load.on_duty)
        position = load.waiting + 1
        return Placement(position, load.wait_for(position), None, load.on_duty)

    @staticmethod
    def new_escalation(session_id: str, channel: Channel, reason: str, summary: str,
                       placement: Placement) -> Escalation:
        escalation = Escalation(new_id("esc"), session_id, channel, reason, summary)
        if placement.routed_to is not None:
            escalation.status = EscalationStatus.CONNECTING
            escalation.agent_id, escalation.agent_name = placement.routed_to.agent_id, placement.routed_to.name
        return escalation

    async def enqueue(self, customer: Customer, escalation: Escalation) -> None:
        """Show a new (or still open) escalation on the desk. Safe to repeat."""
        name = customer.collected.get("customer_name") or ""
        entry = {
            "escalation_id": escalation.escalation_id, "customer_id": customer.customer_id,
            "session_id": escalation.session_id, "channel": escalation.channel.value, "reason": escalation.reason,
            "summary": escalation.summary, "customer_name": name, "created_at": _epoch(escalation.created_at),
            "status": escalation.status.value, "agent_id": escalation.agent_id, "agent_name": escalation.agent_name,
        }
        await self.state.merge(_ENTRY + escalation.escalation_id, entry, MAX_WAIT_SECONDS + MAX_HANDLE_SECONDS)
        if escalation.status is EscalationStatus.WAITING:
            await self.state.add_member(WAITING, escalation.escalation_id, MAX_WAIT_SECONDS)
        elif escalation.agent_id:
            await self.state.add_member(_CLAIMS + escalation.agent_id, escalation.escalation_id, MAX_HANDLE_SECONDS)
        if await self.state.mark_processed(f"desk:counted:{escalation.escalation_id}", HOUR):
            await self.state.add_member(_ESCALATED, escalation.escalation_id, HOUR)
        await self._bump(escalation.session_id)

    async def position(self, escalation_id: str) -> int | None:
        """The escalation's place in the queue (1 = next), or None if it is not waiting."""
        waiting = await self.waiting()
        return next((i + 1 for i, e in enumerate(waiting) if e["escalation_id"] == escalation_id), None)

    # What the desk sees ----------------------------------------------------------------------------------------

    async def waiting(self) -> list[dict[str, Any]]:
        """The queue, longest waiting first, each with its place and how long it has waited."""
        now = self.clock()
        entries = await self._entries(await self.state.members(WAITING))
        entries = [e for e in entries if e.get("status") == EscalationStatus.WAITING.value]
        entries.sort(key=lambda e: (e.get("created_at") or now, e["escalation_id"]))
        return [{**e, "position": i + 1, "waiting_seconds": round(max(0.0, now - (e.get("created_at") or now)), 1)}
                for i, e in enumerate(entries)]

    async def claimed_by(self, agent_id: str) -> list[dict[str, Any]]:
        return await self._entries(await self.state.members(_CLAIMS + agent_id))

    async def entry(self, escalation_id: str) -> dict[str, Any]:
        entry = await self.state.get(_ENTRY + escalation_id)
        if entry is None:
            raise NotFound(f"no escalation {escalation_id!r}")
        return entry

    async def context(self, escalation_id: str) -> dict[str, Any]:
        """Everything a person needs to help without asking the customer again: who they are, what was collected,
        the AI's summary, the reason, and the transcript of every session the record lists, on every channel, with
        how sure we were who it was (the session's verification level); and the audit, each verification step and
        each disclosure of account data, so the person sees what was told and whether the customer proved who they
        are. Codes and answers are in none of it: the record never holds them."""
        from shared.callbacks import open_callback
        from shared.notifications import promised_view

        entry = await self.entry(escalation_id)
        customer = await self.customers.get(entry["customer_id"])
        escalation = customer.find_escalation(escalation_id)
        if escalation is None:
            raise NotFound(f"no escalation {escalation_id!r} on this customer's record")
        sessions = []
        for header in sorted(customer.sessions.values(), key=lambda s: s.started_at):
            try:
                session = await self.customers.get_session(customer.customer_id, header.session_id)
            except NotFound:
                continue  # aged out of storage: the summary still covers it
            sessions.append({
                "session_id": session.session_id, "channel": session.channel.value, "status": session.status.value,
                "started_at": session.started_at, "verification": session.verification.value,
                "turns": [{"role": t.role, "text": t.text, "agent": t.agent, "at": t.at, "person": t.person}
                          for t in session.turns],
            })
        return {
            "escalation": escalation.to_dict(),
            "customer": {"customer_id": customer.customer_id, "collected": dict(customer.collected),
                         "identities": [i.kind.value for i in customer.identities]},
            "summary": customer.summary or escalation.summary,
            "sessions": sessions,
            "history": [e.to_dict() for e in customer.escalations if e.escalation_id != escalation_id],
            "syntheses": list(customer.syntheses),  # how each ended conversation ended (shared/synthesis.py)
            "promised": promised_view(customer),  # what we said we would send them (shared/notifications.py)
            "callback": _callback_view(open_callback(customer)),
            "audit": [_audit_view(entry) for entry in await self.customers.audit(customer.customer_id)],
        }

    # What people do --------------------------------------------------------------------------------------------

    async def claim(self, escalation_id: str, agent: DeskAgent, *, joined: str | None = None,
                    on_say: OnSay | None = None) -> Escalation:
        """Take a waiting customer. Of people claiming at once exactly one wins; the others get Conflict naming who
        has it. `joined` is the line the customer sees ("Dana has joined"), written in the same write."""
        entry = await self.entry(escalation_id)

        def take(customer: Customer) -> Escalation:
            escalation = _find(customer, escalation_id)
            if escalation.status is not EscalationStatus.WAITING:
                if escalation.agent_id == agent.agent_id and escalation.status is EscalationStatus.WITH_PERSON:
                    return escalation  # the same person's retried claim
                raise Conflict(_taken(escalation))
            now = utcnow()
            escalation.status, escalation.agent_id, escalation.agent_name = (
                EscalationStatus.WITH_PERSON, agent.agent_id, agent.name)
            escalation.claimed_at = escalation.updated_at = now
            if joined:
                _say(customer, escalation, agent, [joined], on_say)
            return replace(escalation)

        _, escalation = await self.customers.update(entry["customer_id"], take)
        await self._claimed(escalation, entry)
        return escalation

    async def route(self, escalation_id: str, agent: DeskAgent) -> Escalation:
        """A person takes a waiting caller: the escalation is theirs, CONNECTING until the call transferred to them
        is accepted (`connected`) or not (`not_connected`). Of people routing at once exactly one wins, as `claim`."""
        entry = await self.entry(escalation_id)

        def take(customer: Customer) -> Escalation:
            escalation = _find(customer, escalation_id)
            if escalation.status is not EscalationStatus.WAITING:
                if escalation.agent_id == agent.agent_id and escalation.status in (
                    EscalationStatus.CONNECTING, EscalationStatus.WITH_PERSON
                ):
                    return replace(escalation)  # the same person's retried claim
                raise Conflict(_taken(escalation))
            escalation.status, escalation.agent_id, escalation.agent_name = (
                EscalationStatus.CONNECTING, agent.agent_id, agent.name)
            escalation.updated_at = utcnow()
            return replace(escalation)

        _, escalation = await self.customers.update(entry["customer_id"], take)
        # Reserved like a call `place` routes: no other call is routed to them while this one rings.
        await self.state.mark_processed(_ROUTING + agent.agent_id, ROUTING_SECONDS)
        await self.state.remove_member(WAITING, escalation_id)
        await self.state.add_member(_CLAIMS + agent.agent_id, escalation_id, MAX_HANDLE_SECONDS)
        await self.state.merge(
            _ENTRY + escalation_id,
            {"status": escalation.status.value, "agent_id": escalation.agent_id, "agent_name": escalation.agent_name},
            MAX_WAIT_SECONDS + MAX_HANDLE_SECONDS,
        )
        await self._bump(escalation.session_id)
        return escalation

    async def connected(self, customer_id: str, escalation_id: str) -> Escalation | None:
        """A call routed to a person was accepted: they have the customer now."""

        def accept(customer: Customer) -> Escalation | None:
            escalation = customer.find_escalation(escalation_id)
            if escalation is None or escalation.status is not EscalationStatus.CONNECTING:
                return None
            escalation.status, escalation.claimed_at = EscalationStatus.WITH_PERSON, utcnow()
            escalation.updated_at = escalation.claimed_at
            return replace(escalation)

        _, escalation = await self.customers.update(customer_id, accept)
        if escalation is not None:
            await self._claimed(escalation, await self.state.get(_ENTRY + escalation_id) or {})
        return escalation

    async def not_connected(self, customer_id: str, escalation_id: str) -> Escalation | None:
        """A call routed to a person did not reach them: the customer waits in the queue like anyone else."""

        def requeue(customer: Customer) -> tuple[Escalation | None, str | None]:
            escalation = customer.find_escalation(escalation_id)
            if escalation is None or escalation.status is not EscalationStatus.CONNECTING:
                return None, None
            agent_id = escalation.agent_id
            escalation.status, escalation.agent_id, escalation.agent_name = EscalationStatus.WAITING, None, None
            escalation.updated_at = utcnow()
            return replace(escalation), agent_id

        customer, (escalation, agent_id) = await self.customers.update(customer_id, requeue)
        if escalation is not None:
            if agent_id:
                await self.state.release_processed(_ROUTING + agent_id)
                await self.state.remove_member(_CLAIMS + agent_id, escalation_id)
            await self.state.merge(_ENTRY + escalation_id, {"status": "waiting", "agent_id": None, "agent_name": None},
                                   MAX_WAIT_SECONDS + MAX_HANDLE_SECONDS)
            await self.enqueue(customer, escalation)
        return escalation

    async def say(self, escalation_id: str, agent: DeskAgent, text: str, *, on_say: OnSay | None = None,
                  key: str | None = None) -> Customer:
        """A person's message to the customer they have, saved on the customer's session as theirs. With an
        idempotency `key`, a retried request finds its message saved and adds (and sends) nothing."""
        text = text.strip()
        if not text:
            raise InvalidInput('"text" must not be empty')
        entry = await self.entry(escalation_id)

        def write(customer: Customer) -> None:
            escalation = self._held_by(customer, escalation_id, agent)
            session = customer.sessions.get(escalation.session_id)
            if key is not None and session is not None and any(t.person and t.key == key for t in session.turns):
                return  # said already
            _say(customer, escalation, agent, [text], on_say, key)

        customer, _ = await self.customers.update(entry["customer_id"], write)
        await self._bump(entry["session_id"])
        return customer

    async def hand_back(self, escalation_id: str, agent: DeskAgent, *, farewell: str, note: str = "",
                        on_say: OnSay | None = None) -> Escalation:
        """The person is done and the AI carries on with the customer; `farewell` tells the customer so."""
        return await self._end(escalation_id, agent, EscalationStatus.RETURNED, None, note, farewell, on_say)

    async def close(self, escalation_id: str, agent: DeskAgent, *, disposition: str, note: str = "",
                    farewell: str = "", on_say: OnSay | None = None) -> Escalation:
        """The person resolved it: the disposition and note go on the customer's record."""
        if not disposition.strip():
            raise InvalidInput('"disposition" must not be empty')
        return await self._end(escalation_id, agent, EscalationStatus.CLOSED, disposition.strip(), note, farewell,
                               on_say)

    async def leave(self, customer_id: str, escalation_id: str, status: EscalationStatus, *,
                    callback: str | None = None) -> Escalation | None:
        """The customer stopped waiting: they left (ABANDONED) or took another way (WITHDRAWN). Safe to repeat."""
        if status not in (EscalationStatus.ABANDONED, EscalationStatus.WITHDRAWN):
            raise ValueError(f"a customer leaves the queue as abandoned or withdrawn, not {status.value}")

        def stop(customer: Customer) -> tuple[Escalation | None, str | None]:
            escalation = customer.find_escalation(escalation_id)
            if escalation is None or escalation.status not in (EscalationStatus.WAITING, EscalationStatus.CONNECTING):
                return None, None
            routed = escalation.agent_id
            escalation.status, escalation.ended_at, escalation.callback = status, utcnow(), callback
            escalation.updated_at = escalation.ended_at
            return replace(escalation), routed

        _, (escalation, routed) = await self.customers.update(customer_id, stop)
        if escalation is not None:
            if routed:
                await self.state.release_processed(_ROUTING + routed)
            if status is EscalationStatus.ABANDONED:
                await self.state.add_member(_ABANDONED, escalation_id, HOUR)
            await self._unlist(escalation, routed)
        return escalation

    # Long polls ------------------------------------------------------------------------------------------------

    async def version(self) -> int:
        return await self.state.counter(VERSION)

    async def wait_for_change(self, since: int | None, timeout: float) -> int:
        """Returns the desk's version once it differs from `since`, or after `timeout` seconds."""
        return await self._wait(VERSION, since, timeout)

    async def session_version(self, session_id: str) -> int:
        return await self.state.counter(_SESSION_VERSION + session_id)

    async def wait_for_session(self, session_id: str, since: int | None, timeout: float) -> int:
        """The chat page's long poll: returns once a person wrote to (or joined, or left) this session."""
        return await self._wait(_SESSION_VERSION + session_id, since, timeout)

    async def touch_session(self, session_id: str) -> None:
        """Something the customer's page should fetch happened on this session."""
        await self._bump(session_id)

    # Handoffs, for the supervisor's figures (shared/ops_metrics.py computes them from the records) -------------

    async def handoff_started(self, customer_id: str, session_id: str, to_channel: str) -> None:
        """The customer said yes to continuing on `to_channel`: remember it, with the slots their record holds now
        (what the new channel must not ask for again)."""
        customer = await self.customers.get(customer_id)
        await Ledger(self.state, self.clock).handoff_accepted(customer_id, session_id, to_channel,
                                                              [k for k, v in customer.collected.items() if v])

    async def handoff_engaged(self, handoff: Handoff, customer_id: str) -> None:
        """A session on the new channel continues `handoff`, on `customer_id`'s record."""
        if handoff.to_session_id:
            await Ledger(self.state, self.clock).handoff_engaged(handoff.from_session_id, customer_id,
                                                                 handoff.to_session_id)

    async def metrics(self) -> dict[str, Any]:
        """The supervisor's figures: the queue now, the last hour, and the handoffs of the last day."""
        now = self.clock()
        waiting = await self.waiting()
        load = await self.load()
        escalated = await self.state.count_members(_ESCALATED)
        abandoned = await self.state.count_members(_ABANDONED)
        handoffs = handoff_figures(
            await Figures(self.scenario, self.customers, self.state, self.clock).handoffs(now - DAY, context=False))
        succeeded, switch = handoffs["handoff_success"], handoffs["channel_switch_seconds"]
        handles = (await self.state.get(_HANDLES) or {}).get("seconds", [])
        return {
            "waiting": len(waiting),
            "calls_on_hold": await self.state.count_members(HELD_CALLS),
            "longest_wait_seconds": max((e["waiting_seconds"] for e in waiting), default=0.0),
            "agents_available": load.on_duty,
            "agents_free": load.free,
            "estimated_wait_seconds": load.next_wait,
            "escalations_last_hour": escalated,
            "claimed_last_hour": await self.state.count_members(_CLAIMED),
            "abandoned_last_hour": abandoned,
            "abandonment_rate": round(abandoned / escalated, 3) if escalated else None,
            "average_handle_seconds": round(statistics.fmean(handles), 1) if handles else None,
            "handle_seconds_in_use": load.handle_seconds,
            "handoffs_started_last_day": succeeded["n"],
            "handoffs_engaged_last_day": succeeded["succeeded"],
            "handoff_success_rate": succeeded["rate"],
            "switch_seconds_median": switch["p50"],
            "at": now,
        }

    # Inside ----------------------------------------------------------------------------------------------------

    def _held_by(self, customer: Customer, escalation_id: str, agent: DeskAgent) -> Escalation:
        escalation = _find(customer, escalation_id)
        if escalation.status is not EscalationStatus.WITH_PERSON:
            raise Conflict(f"this customer is not with a person now (the escalation is {escalation.status.value})")
        if escalation.agent_id != agent.agent_id:
            raise Conflict(_taken(escalation))
        return escalation

    async def _end(self, escalation_id: str, agent: DeskAgent, status: EscalationStatus, disposition: str | None,
                   note: str, farewell: str, on_say: OnSay | None) -> Escalation:
        entry = await self.entry(escalation_id)

        def finish(customer: Customer) -> Escalation:
            escalation = _find(customer, escalation_id)
            if escalation.status is status and escalation.agent_id == agent.agent_id:
                return replace(escalation)  # a retried request: it is done already
            escalation = self._held_by(customer, escalation_id, agent)
            if farewell:
                _say(customer, escalation, agent, [farewell], on_say)
            escalation.status, escalation.ended_at = status, utcnow()
            escalation.updated_at = escalation.ended_at
            escalation.disposition, escalation.note = disposition, note.strip() or None
            return replace(escalation)

        _, escalation = await self.customers.update(entry["customer_id"], finish)
        if escalation.claimed_at and escalation.ended_at and await self.state.mark_processed(
            f"desk:handled:{escalation_id}", HOUR
        ):
            await self._append(_HANDLES, max(0.0, _epoch(escalation.ended_at) - _epoch(escalation.claimed_at)))
        await self._unlist(escalation, agent.agent_id)
        return escalation

    async def _claimed(self, escalation: Escalation, entry: dict[str, Any]) -> None:
        await self.state.remove_member(WAITING, escalation.escalation_id)
        if escalation.agent_id:
            await self.state.add_member(_CLAIMS + escalation.agent_id, escalation.escalation_id, MAX_HANDLE_SECONDS)
            await self.state.release_processed(_ROUTING + escalation.agent_id)
        await self.state.add_member(_CLAIMED, escalation.escalation_id, HOUR)
        await self.state.merge(
            _ENTRY + escalation.escalation_id,
            {"status": escalation.status.value, "agent_id": escalation.agent_id, "agent_name": escalation.agent_name},
            MAX_WAIT_SECONDS + MAX_HANDLE_SECONDS,
        )
        await self._bump(escalation.session_id or entry.get("session_id"))

    async def _unlist(self, escalation: Escalation, agent_id: str | None) -> None:
        await self.state.remove_member(WAITING, escalation.escalation_id)
        if agent_id:
            await self.state.remove_member(_CLAIMS + agent_id, escalation.escalation_id)
        await self.state.merge(_ENTRY + escalation.escalation_id, {"status": escalation.status.value},
                               MAX_WAIT_SECONDS + MAX_HANDLE_SECONDS)
        await self._bump(escalation.session_id)

    async def _entries(self, ids: list[str]) -> list[dict[str, Any]]:
        found = await asyncio.gather(*(self.state.get(_ENTRY + i) for i in ids))
        return [entry for entry in found if entry is not None]

    async def _append(self, key: str, seconds: float) -> None:
        # Read-modify-write: two at the same instant may drop one sample, which an average can afford.
        recent = (await self.state.get(key) or {}).get("seconds", [])
        await self.state.put(key, {"seconds": [*recent, round(seconds, 1)][-RECENT_HANDLES:]}, DAY)

    async def _bump(self, session_id: str | None = None) -> None:
        try:
            await self.state.increment(VERSION)
            if session_id:
                await self.state.increment(_SESSION_VERSION + session_id)
        except SwitchboardError as exc:  # pages notice on their next poll anyway
            log.warning("could not signal a desk change: %s", exc)

    async def _wait(self, key: str, since: int | None, timeout: float) -> int:
        deadline = time.monotonic() + max(0.0, min(timeout, MAX_POLL_SECONDS))
        while True:
            current = await self.state.counter(key)
            if since is None or current != since or time.monotonic() >= deadline:
                return current
            await asyncio.sleep(self._poll_step)


def _find(customer: Customer, escalation_id: str) -> Escalation:
    escalation = customer.find_escalation(escalation_id)
    if escalation is None:
        raise NotFound(f"no escalation {escalation_id!r} on this customer's record")
    return escalation


def _taken(escalation: Escalation) -> str:
    who = escalation.agent_name or "someone else"
    if escalation.status in (EscalationStatus.WITH_PERSON, EscalationStatus.CONNECTING):
        return f"taken: {who} has this customer"
    return f"this escalation is {escalation.status.value}"


def _say(customer: Customer, escalation: Escalation, agent: DeskAgent, texts: list[str],
         on_say: OnSay | None, key: str | None = None) -> None:
    session = customer.sessions.get(escalation.session_id)
    if session is None:
        raise NotFound(f"the escalation's session {escalation.session_id!r} is not on the record")
    for text in texts:
        session.add_turn(Turn(role="agent", text=text, agent=agent.name, person=True, key=key))
    if on_say is not None:
        on_say(session, texts)


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


#: What an audit entry shows a person at the desk (shared/conversation.py writes them; ChannelSession.add_audit).
_AUDIT_FIELDS = ("at", "event", "channel", "session_id", "tool", "method", "refused", "level", "shown_by")


def _callback_view(callback: dict[str, Any] | None) -> dict[str, Any] | None:
    """The open callback as the desk shows it: when we call, on which number, about what, attempts so far."""
    if callback is None:
        return None
    return {key: callback.get(key) for key in ("callback_id", "state", "when", "at", "number", "topic",
                                               "requested_at", "channel")} | {"attempts": len(callback.get("calls", []))}


def _audit_view(entry: dict[str, Any]) -> dict[str, Any]:
    """One audit entry as the desk shows it: who (the number the session stood for, its last four digits are enough
    to tell it), on which channel, which tool, at what level, when."""
    view = {name: entry.get(name) for name in _AUDIT_FIELDS}
    who = entry.get("who")
    view["who"] = f"…{str(who)[-4:]}" if who else None
    return view
