"""The channel-agnostic conversation core: customer text in, agent replies out.

Voice, WhatsApp and web chat all call `Conversation`. It loads the customer's record and the session's hot state,
runs the active agent's policy (following handoffs between agents), and saves everything the turn produced in one
optimistic-concurrency write: the customer's words, the agents' replies, the slots collected, the active agent.
Hot state (the policy's scratch, the active agent) is a cache: if it is lost, the record still says who is talking.
"""

from __future__ import annotations

import logging
import re
import uuid
from datetime import UTC, datetime
from functools import partial
from dataclasses import dataclass, field, replace
from contextlib import AbstractAsyncContextManager
from typing import Awaitable, Callable

from shared import callbacks, telemetry
from shared.desk import Desk, Placement
from shared.errors import InvalidInput, NotFound, SessionClosed, SwitchboardError, Unavailable
from shared.models import (
    Channel, ChannelSession, Customer, Escalation, EscalationStatus, Handoff, HandoffStatus, Identity, IdentityKind,
    SessionStatus, Turn, Verification, utcnow,
)
from shared.notifications import pending as pending_promises
from shared.ops_metrics import Ledger
from shared.policies.base import (
    EscalateRequest, HandoffRequest, Policy, SwitchRequest, TextDelta, TurnContext, VerificationNeeded,
)
from shared.policies.nlu import requested_channel
from shared.queue import QueueMetrics
from shared.router import SwitchDecision, available_channels, decide, phone_of
from shared.scenario import AgentSpec, Holder, Scenario, ScenarioData
from shared.session_lock import SessionBusy, SessionLocks
from shared.sms.promises import happened, promised
from shared.stores.base import CustomerStore, SessionState
from shared.verification import Challenge, Checked, Verifier, level_of_channel
from shared.wait import spoken_wait

log = logging.getLogger(__name__)

#: How many agent switches one customer message may cause (guards against two agents bouncing a customer).
MAX_HOPS = 3
#: The continuation opening, unless the scenario's phrases give a `continue` line.
_CONTINUE = "Hi {name}, it's {company} again, carrying on from {came_from}."
#: How much of the session's transcript a policy sees.
HISTORY_TURNS = 20

OnText = Callable[[str, str], Awaitable[None]]  # (text delta, agent name)
#: Channel bookkeeping applied to the session inside the write that saves the turn (WhatsApp logs the inbound
#: message id and the replies it owes there, so a redelivered message can never be answered twice), and the channel
#: the customer agreed to move to, if any (so a redelivery after a crash can still start that handoff). It may run
#: more than once (optimistic concurrency re-applies it), so it must be a pure function of its arguments.
OnSave = Callable[[ChannelSession, "list[Reply]", "str | None"], None]

# A message that names another channel may be the customer asking to move; only then is the queue worth reading
# on a text channel.
_MENTIONS_CHANNEL = re.compile(r"what'?s\s?app|web\s?chat|chat (online|instead)|online chat|text me|a link", re.I)
# ... or stop waiting: they leave the queue and the assistant is theirs again.
_STOP_WAITING = re.compile(r"\b(never ?mind|forget it|don'?t need (a|the) person|no longer need (a|the) person|"
                           r"i'?ll (stay|carry on) with (you|the assistant))\b|^\W*cancel( that| it)?\W*$", re.I)
#: How long a keyed turn's attempt is remembered (`_tried_before`): as long as a channel redelivers (Event Grid, a day).
ATTEMPT_TTL_SECONDS = 48 * 3600
#: Scratch key: failed lookups in a row (the scenario's desk.failed_attempts of them escalate).
_FAILED = "failed_attempts"
#: What the customer hears about the desk, unless the scenario's phrases say it their way.
DESK_PHRASES = {
    "escalate_connecting": "I'm putting you through to {person} now. They'll see everything we've talked about.",
    "escalate_queued": "I'm getting you a person. You're number {position} in line, and the wait is {wait}.",
    "escalate_nobody": "I've asked for a person, but nobody from our team is free right now. I'll keep your place.",
    "escalate_offer": "If you'd rather not wait, I can carry on with you on {options} straight away.",
    "escalate_waiting": "Thanks, I've passed that on. You're number {position} in line; the wait is {wait}.",
    "escalate_waiting_nobody": "Thanks, I've passed that on. Nobody from our team is free yet; you keep your place.",
    "escalate_connecting_wait": "Just a moment, I'm connecting you.",
    "callback_recorded": "Done: someone from our team will call you back on {number}. You don't need to hold.",
    "callback_unavailable": "I'm sorry, I don't have a number to call you back on. I'll keep your place in line.",
    "stopped_waiting": "No problem, I've taken you out of the queue. I'm still here: what can I help you with?",
    "person_joined": "Hi, this is {person} from {company}. I've read your conversation, so I'm up to speed.",
    "person_returned": "I'm handing you back to our assistant now. Thanks for your patience!",
    "person_closed": "Thanks for contacting {company}. I've noted everything on your account.",
}
#: What the customer hears about verifying, unless the scenario's phrases say it their way.
VERIFY_PHRASES = {
    "verify_code_sent": "To keep your account safe, I need to check it's you. I've sent a {length}-digit code by "
                        "{by} to the phone number on the account. What's the code?",
    "verify_knowledge": "To keep your account safe, I need to check it's you. Could you tell me {questions}?",
    "verify_knowledge_rest": "Thanks. And {questions}?",
    "verify_ok": "Thanks, that's confirmed.",
    "verify_wrong": "That doesn't match what we have. Please try again.",
    "verify_code_again": "Sorry, I didn't get the whole code: it has {length} digits. Could you give it to me again?",
    "verify_locked": "I can't check who you are right now: there have been too many tries. Please try again later, "
                     "or ask for a person.",
    "verify_expired": "That code has expired, so I've sent a new one. What's the new code?",
    "verify_too_many": "I've already sent several codes to the number on the account this hour. Please use the "
                       "latest one, or try again later.",
    "verify_unavailable": "I can't check who you are on this channel right now. Please try again later, or ask for "
                          "a person.",
}
_CODE_CHANNELS = {"sms": "text message", "whatsapp": "WhatsApp"}


@dataclass(frozen=True)
class Reply:
    text: str
    agent: str
    tool: str | None = None  # the tool whose result this reply gives, if any

    def to_dict(self) -> dict[str, str]:
        return {"text": self.text, "agent": self.agent}


@dataclass(frozen=True)
class TurnOutcome:
    replies: list[Reply]
    agent: str  # the active agent after this turn
    customer: Customer  # the record as stored after this turn
    switch_to: str | None = None  # the customer accepted to continue on this channel: the channel starts the handoff
    replayed: bool = False  # a retried request: these are the replies the first one earned, and nothing ran again
    # The escalation this turn opened: a call routed to a person (CONNECTING) is for the channel to transfer.
    escalation: Escalation | None = None
    # The turn recorded a promise: the channel starts its notification's orchestration (functions/notifications.py;
    # the media gateway asks the function app to) once the reply is out. Not done here: it is no part of the answer.
    promised: bool = False
    # The turn recorded or cancelled a callback: the channel starts or tells its orchestration (functions/
    # callbacks.py, `sync_callbacks`). A turn that changes none costs the channel nothing.
    callbacks_changed: bool = False


@dataclass(frozen=True)
class Opened:
    session_id: str
    customer: Customer
    replies: list[Reply]
    agent: str
    continued: Handoff | None = None  # the handoff this session continues: the channel tells the orchestration


class Conversation:
    def __init__(
        self,
        scenario: Scenario,
        customers: CustomerStore,
        state: SessionState,
        policy: Policy,
        *,
        queue: QueueMetrics | None = None,
        desk: Desk | None = None,
        verifier: Verifier | None = None,
        session_ttl_seconds: float = 86400,
    ) -> None:
        self.scenario = scenario
        self.customers = customers
        self.state = state
        self.policy = policy
        self.desk = desk or Desk(scenario, customers, state)
        self.verifier = verifier or Verifier(scenario, state, None)
        self.queue = queue or QueueMetrics(state, desk=self.desk)
        self.session_ttl_seconds = session_ttl_seconds
        self.locks = SessionLocks(state)

    def session_lock(self, session_id: str) -> AbstractAsyncContextManager[int | None]:
        """Hold the session's turn (one turn at a time per session, across processes; see shared/session_lock.py).

        `turn` takes it itself; a channel that must also keep its sends in order holds it around both, since
        holding it is re-entrant within a task. Yields the lease's fencing token (None if state is unreachable).
        """
        return self.locks.hold(session_id)

    async def open(self, channel: Channel, session_id: str, customer_id: str, *, greet: bool = True,
                   proven: Identity | None = None) -> Opened:
        """Start a session for a customer on a channel.

        A customer handed over to this channel continues where they left off: the agent they were talking to greets
        them with what they were doing, and the handoff is marked engaged in the same write. Anyone else is greeted
        by the scenario's start agent, unless `greet=False`: on WhatsApp the customer writes first, and the answer to
        that message is a better first word than a greeting asking what they want. Opening a session that already
        exists returns it unchanged (a retried request opens nothing twice).

        `proven` is the phone number the channel vouches for (the caller ID, the WhatsApp sender): the session starts
        identified or verified for it, as the channel allows (shared/verification.py). A continued handoff keeps what
        the session it continues had shown.
        """

        def add_session(customer: Customer) -> tuple[bool, Handoff | None]:
            if session_id in customer.sessions:
                return False, None
            agent = self.scenario.agent(self.scenario.start_agent)
            handoff = customer.handoff
            continued = handoff if handoff and handoff.open and handoff.to_channel is channel else None
            greeting = self._greeting(agent, customer) if greet else None
            if continued is not None:
                previous = customer.sessions.get(continued.from_session_id)
                if previous is not None and previous.active_agent in self.scenario.agents:
                    agent = self.scenario.agent(previous.active_agent)
                greeting = self._continuation(customer, continued)
                continued.status, continued.to_session_id = HandoffStatus.ENGAGED, session_id
                continued.updated_at = utcnow()
            session = ChannelSession(session_id=session_id, channel=channel, active_agent=agent.name)
            if proven is not None and proven.kind is IdentityKind.PHONE:
                session.raise_verification(level_of_channel(channel.value), proven.value, f"{channel.value} sender")
            if continued is not None and (previous := customer.sessions.get(continued.from_session_id)) is not None:
                if previous.verified_phone and previous.verification.at_least(session.verification):
                    session.raise_verification(previous.verification, previous.verified_phone, "handoff")
            if greeting:
                session.add_turn(Turn(role="agent", text=greeting, agent=agent.name))
            customer.sessions[session_id] = session
            return True, continued

        customer, (added, continued) = await self.customers.update(customer_id, add_session)
        if continued is not None:
            telemetry.handoff_outcome("engaged", continued.to_channel.value, continued.started_at)
            try:
                await self.desk.handoff_engaged(continued, customer.customer_id)
            except SwitchboardError as exc:  # a figure on the supervisor's page, not the customer's business
                log.warning("could not count the engaged handoff: %s", exc)
        session = customer.sessions[session_id]
        agent = session.active_agent or self.scenario.start_agent
        if added:  # a retried open must not wipe the scratch its session's turns have built since
            await self._save_hot(session_id, customer_id, agent, {})
            try:  # the success figures find conversations by it (shared/ops_metrics.py)
                await Ledger(self.state).session_opened(customer_id, session_id, continues=continued is not None)
            except SwitchboardError as exc:  # a figure, not the customer's business
                log.warning("could not count the opened session: %s", exc)
        replies = [Reply(t.text, t.agent or agent) for t in session.turns[:1] if t.role == "agent"]
        return Opened(session_id, customer, replies, agent, continued)

    async def open_for_identity(
        self, channel: Channel, session_id: str, identity: Identity, *, greet: bool = True
    ) -> Opened:
        """Open a session for whoever holds `identity`, creating the customer on first contact."""
        customer, _ = await self.customers.get_or_create(identity)
        return await self.open(channel, session_id, customer.customer_id, greet=greet, proven=identity)

    async def turn(
        self,
        session_id: str,
        customer_id: str,
        text: str,
        on_text: OnText | None = None,
        *,
        on_save: OnSave | None = None,
        key: str | None = None,
    ) -> TurnOutcome:
        """Handle one customer message. `on_text` receives reply text as it is produced (voice speaks it early);
        `on_save` adds channel bookkeeping to the same write as the turn. With an idempotency `key`, a message
        already answered under that key (a client retrying after a lost response) runs nothing and gets the replies
        it earned the first time; the key is saved on the customer's turn in the turn's own write."""
        text = text.strip()
        if not text:
            raise InvalidInput("text must not be empty")
        async with self.session_lock(session_id) as fence:
            return await self._turn(session_id, customer_id, text, on_text, on_save, key, fence)

    async def _turn(
        self,
        session_id: str,
        customer_id: str,
        text: str,
        on_text: OnText | None,
        on_save: OnSave | None,
        key: str | None,
        fence: int | None,
    ) -> TurnOutcome:
        # Read under the session's lock: the turn before this one has saved, so its reply is in this one's history.
        customer = await self.customers.get(customer_id)
        session = customer.sessions.get(session_id)
        if session is None:
            raise NotFound(f"no session {session_id!r} for this customer")
        if key is not None and (earlier := _replay(customer, session_id, key)) is not None:
            return earlier
        if session.status is not SessionStatus.ACTIVE:
            raise SessionClosed(f"this session is {session.status.value}; start a new one")
        if (escalation := customer.open_escalation(session_id)) is not None:
            return await self._turn_at_desk(customer, session, escalation, text, on_text, on_save, key, fence)
        if (answered := await self._callback_turn(customer, session, text, on_text, on_save, key, fence)) is not None:
            return answered

        hot = await self._load_hot(session_id)
        agent = self.scenario.agent(hot.get("agent") or session.active_agent or self.scenario.start_agent)
        change = _SessionChange(verification=session.verification, phone=session.verified_phone)
        asked, said = text, text  # what the agents answer, and what the transcript keeps of the customer's words
        prefix: list[Reply] = []
        collected, learned = dict(customer.collected), {}
        if session.pending_verification is not None:
            answered = await self._verification_answer(session, text, change, agent.name)
            if isinstance(answered, list):  # not verified (yet): that is the whole reply
                return await self._finish(customer_id, session_id, change.masked or text, agent, answered, change,
                                          on_text, on_save, key, fence)
            if change.masked:
                said = change.masked
            if answered is not None:  # verified: answer the question they asked before the check
                asked, prefix = answered[0], [answered[1]]
                agent = self.scenario.agent(session.pending_verification.get("agent") or agent.name)
                # ... as it was asked: what that message told us counts as just learned again, as it did then.
                learned = dict(session.pending_verification.get("learned") or {})
                collected = {k: v for k, v in collected.items() if learned.get(k) != v}
        ctx = TurnContext(
            scenario=self.scenario,
            agent=agent,
            text=asked,
            collected=collected,
            summary=customer.summary,
            history=session.turns[-HISTORY_TURNS:],
            scratch=dict(hot.get("scratch") or {}),
            channel=session.channel.value,
            switch=await self._switch_decision(customer, session.channel.value, text),
            learned=learned,
            verification=change.verification,
            verified_phone=change.phone,
            data=await self._data(),
            customer=customer,
            session_id=session_id,
            retried=await self._tried_before(customer_id, key),
        )
        for reply in prefix:
            if on_text is not None:
                await on_text(reply.text, reply.agent)
        # A safety word goes to a person before any agent answers: a gas smell is not a billing question.
        if word := self.scenario.desk.safety_word_in(text):
            replies, switch_to, reason = [], None, f"safety: {word}"
        else:
            try:
                replies, switch_to, reason = await self._run_agents(ctx, on_text)
            except VerificationNeeded as needed:
                challenge = await self._challenge(session, needed, asked, ctx.agent.name, change)
                if isinstance(change.pending, dict):
                    change.pending["learned"] = dict(ctx.learned)
                # What the customer told us on the way (the account number) is kept: asked again otherwise.
                heard = prefix + needed.said  # already out through on_text
                finished = await self._finish(customer_id, session_id, said, ctx.agent, heard + challenge, change,
                                              on_text, on_save, key, fence, learned=ctx.learned, heard=len(heard))
                # The agent who asked is the one talking (a handoff on the way counts); its scratch stays as it was
                # before this turn, so the question is answered after the check as it would have been now.
                await self._save_hot(session_id, customer_id, ctx.agent.name, dict(hot.get("scratch") or {}))
                return finished
            reason = reason or self._escalation_due(ctx)
            _audit_disclosures(ctx, change)
            _promises(ctx, change)
        replies = prefix + replies
        escalation = None
        if reason is not None and switch_to is None:
            escalation, placed = await self._escalate(customer, session, ctx, reason)
            replies.append(placed)
            if on_text is not None:
                await on_text(placed.text, placed.agent)
        try:
            customer = await self._save_turn(
                customer_id, session_id, said, agent.name, ctx, replies, switch_to, on_save, key, fence, escalation,
                change,
            )
        except _AnsweredMeanwhile:  # a concurrent retry under the same key saved its turn first: that one counts
            customer = await self.customers.get(customer_id)
            return _replay(customer, session_id, key) or TurnOutcome([], agent.name, customer)
        await self._save_hot(session_id, customer_id, ctx.agent.name, ctx.scratch)
        if escalation is not None:
            await self._show_on_desk(customer, escalation)
        for kind, ref in change.promises:
            await promised(self.state, kind, ref, customer_id)
        return TurnOutcome(replies, ctx.agent.name, customer, switch_to, escalation=escalation,
                           promised=bool(change.promises))

    async def _data(self) -> ScenarioData:
        """The scenario's data as the tools read it this turn: with what has happened since it shipped (an outage
        restored, so a customer asking now hears it is over, not its old ETA)."""
        events = await happened(self.state)
        return replace(self.scenario.data, happened=events) if events else self.scenario.data

    # Verifying who the customer is ---------------------------------------------------------------------------------

    async def _challenge(self, session: ChannelSession, needed: VerificationNeeded, question: str, agent: str,
                         change: _SessionChange) -> list[Reply]:
        """Ask the customer to prove who they are, in the channel's way, and remember the question they asked."""
        methods = self.verifier.methods_for(session.channel.value)
        holder = needed.holder
        phone = holder.phone if holder is not None else ""
        for method in methods:
            if holder is None:  # no such account: asked, refused and capped the same way, and nothing is sent
                challenge = await self.verifier.challenge_nobody(session.session_id, needed.named, method)
            else:
                challenge = await self.verifier.challenge(session.session_id, holder, method)
            if challenge.refused in ("unavailable", "too_many") and method != methods[-1]:
                # No code can go out (or the number has had its codes this hour: anyone who knows it can use them
                # up, and must not keep its holder from verifying): try the next way.
                continue
            break
        else:
            return [Reply(self._verify_phrase("verify_unavailable"), agent)]
        change.audit.append(("verification_requested", {"tool": needed.tool, "method": challenge.method,
                                                         "refused": challenge.refused}))
        if challenge.refused in ("locked", "unavailable"):
            return [Reply(self._verify_phrase(f"verify_{challenge.refused}"), agent)]
        change.pending = {"method": challenge.method, "phone": phone, "question": question, "agent": agent,
                          "tool": needed.tool,
                          **({"account": needed.account} if holder is not None else {"named": needed.named})}
        if challenge.refused == "too_many":
            return [Reply(self._verify_phrase("verify_too_many"), agent)]
        return [Reply(self._challenge_words(challenge), agent)]

    def _challenge_words(self, challenge: Challenge) -> str:
        spec = self.scenario.verification
        if challenge.method == "code":
            by = _CODE_CHANNELS.get(challenge.sent_by or "", challenge.sent_by or "text message")
            return self._verify_phrase("verify_code_sent", length=spec.code_length, by=by)
        return self._verify_phrase("verify_knowledge", questions=self._asks())

    def _asks(self, *, digits: bool | None = None) -> str:
        """The scenario's knowledge questions as the agent says them; `digits=False`: only those a number does not
        answer (what is left once a ZIP code was keyed)."""
        asks = [q.ask for q in self.scenario.verification.knowledge if digits is None or q.digits is digits]
        return ", ".join(asks[:-1]) + (" and " if len(asks) > 1 else "") + asks[-1]

    async def _verification_answer(self, session: ChannelSession, text: str, change: _SessionChange,
                                   agent: str) -> list[Reply] | tuple[str, Reply] | None:
        """Check what the customer said against the verification the agent asked for. Verified: the question they
        asked before, and the line confirming it. Not verified: the reply. Not an answer at all: None (the agent
        answers the message as usual, and the check is dropped)."""
        pending = session.pending_verification or {}
        phone, method = str(pending.get("phone") or ""), pending.get("method")
        holder = self._holder_asked_about(pending)
        named = str(pending.get("named") or session.session_id)  # the made-up account, when there is no holder
        if method == "knowledge" and not pending.get("held") \
                and await self.verifier.hold_digits(session.session_id, text):
            # Only the number (a ZIP code keyed and ended with #): kept for the rest of the answer, not counted wrong.
            change.masked, change.pending = "[verification answer]", {**pending, "held": True}
            return [Reply(self._verify_phrase("verify_knowledge_rest", questions=self._asks(digits=False)), agent)]
        if holder is None:
            checked = await self.verifier.check_nobody(session.session_id, named, text, method)
        elif method == "code":
            checked = await self.verifier.check_code(session.session_id, phone, text)
        else:
            checked = await self.verifier.check_knowledge(holder, text, session.session_id)
        if pending.get("held"):  # the held number was part of this answer: the next try starts whole again
            await self.verifier.forget_held(session.session_id)
            change.pending = {k: v for k, v in pending.items() if k != "held"}
        if checked is Checked.NOT_AN_ANSWER:
            change.pending = None
            return None
        change.masked = "[verification code]" if method == "code" else "[verification answer]"
        if checked is Checked.MISHEARD:  # most of a code, maybe: masked, and asked again with the check still open
            return [Reply(self._verify_phrase("verify_code_again", length=self.scenario.verification.code_length),
                          agent)]
        change.audit.append((f"verification_{checked.value}", {"method": method}))
        if checked is Checked.VERIFIED:
            change.verification, change.phone, change.by, change.pending = Verification.VERIFIED, phone, method, None
            return str(pending.get("question") or ""), Reply(self._verify_phrase("verify_ok"), agent)
        if checked is Checked.WRONG:
            return [Reply(self._verify_phrase("verify_wrong"), agent)]
        if checked is Checked.EXPIRED:  # a new code, real or pretend, counted towards the hour's cap alike
            if holder is not None:
                challenge = await self.verifier.challenge(session.session_id, holder, "code")
            else:
                challenge = await self.verifier.challenge_nobody(session.session_id, named, "code")
            if challenge.refused is None:
                return [Reply(self._verify_phrase("verify_expired"), agent)]
            change.pending = None
            return [Reply(self._verify_phrase(f"verify_{challenge.refused}"), agent)]
        change.pending = None  # locked: start again later
        return [Reply(self._verify_phrase("verify_locked"), agent)]

    def _holder_asked_about(self, pending: dict) -> Holder | None:
        """The holder the pending check is for, found again as the tool found them (by the arguments that named the
        account, whatever the scenario calls them); None for an account that does not exist. A check saved before
        it kept those arguments was always about utilities' phone number on record."""
        phone = str(pending.get("phone") or "")
        if not phone:
            return None
        account = pending.get("account")
        holder = self.scenario.holder(account if isinstance(account, dict) else {"phone_number": phone})
        return holder if holder is not None and holder.phone == phone else None

    def _verify_phrase(self, key: str, **values: object) -> str:
        template = self.scenario.phrases.get(key, VERIFY_PHRASES[key])
        return template.format(company=self.scenario.company, **values)

    async def _finish(self, customer_id: str, session_id: str, said: str, agent: AgentSpec, replies: list[Reply],
                      change: _SessionChange, on_text: OnText | None, on_save: OnSave | None, key: str | None,
                      fence: int | None, *, learned: dict[str, str] | None = None, heard: int = 0) -> TurnOutcome:
        """Save a turn the agents did not answer (a verification step), with the slots it learned, and return it.
        The first `heard` replies have gone out through `on_text` already."""
        for reply in replies[heard:]:
            if on_text is not None:
                await on_text(reply.text, reply.agent)
        customer = await self.customers.get(customer_id)
        ctx = TurnContext(self.scenario, agent, said, dict(customer.collected), customer.summary, [], {},
                          learned=dict(learned or {}))
        try:
            customer = await self._save_turn(customer_id, session_id, said, agent.name, ctx, replies, None, on_save,
                                             key, fence, None, change)
        except _AnsweredMeanwhile:
            customer = await self.customers.get(customer_id)
            return _replay(customer, session_id, key) or TurnOutcome([], agent.name, customer)
        return TurnOutcome(replies, agent.name, customer)

    # The desk ---------------------------------------------------------------------------------------------------

    def _escalation_due(self, ctx: TurnContext) -> str | None:
        """Escalations the scenario's rules call for: a tool result that asks for a person, or failed lookups in a
        row (the customer is getting nowhere with us)."""
        for call in ctx.tool_calls:
            if call.result is not None and call.result.escalate:
                return call.result.escalate
        failed = int(ctx.scratch.get(_FAILED, 0))
        for call in ctx.tool_calls:
            if call.result is not None:
                failed = 0 if call.result.ok else failed + 1
        ctx.scratch[_FAILED] = failed
        if failed >= self.scenario.desk.failed_attempts:
            ctx.scratch[_FAILED] = 0
            return f"{failed} failed attempts in a row"
        return None

    async def _escalate(
        self, customer: Customer, session: ChannelSession, ctx: TurnContext, reason: str
    ) -> tuple[Escalation, Reply]:
        """The escalation this turn opens, and what the customer is told: who they are going to, or their place
        and wait, with the ways not to wait when the wait is long (another channel, or on the phone a callback)."""
        from shared.summary import extractive_summary  # summary imports the offline NLU; only escalations need it

        placement = await self.desk.place(session.channel)
        summary = customer.summary or extractive_summary(self.scenario, customer, session.session_id)
        escalation = self.desk.new_escalation(session.session_id, session.channel, reason, summary, placement)
        text = self._placement_words(placement, customer, session.channel.value, ctx.switch.channels)
        log.info("session %s escalated to the desk (%s): %s", session.session_id, reason, escalation.status.value)
        return escalation, Reply(text, ctx.agent.name)

    def _placement_words(self, placement: Placement, customer: Customer, channel: str,
                         channels: tuple[str, ...]) -> str:
        if placement.routed_to is not None:
            return self._desk_phrase("escalate_connecting", person=placement.routed_to.name)
        if placement.wait_seconds is None:
            said = self._desk_phrase("escalate_nobody")
        else:
            said = self._desk_phrase("escalate_queued", position=placement.position,
                                     wait=spoken_wait(placement.wait_seconds))
        long_wait = placement.wait_seconds is None or (
            placement.wait_seconds > self.scenario.omnichannel.queue_wait_threshold_seconds)
        if long_wait and (options := self._ways_not_to_wait(customer, channel, channels)):
            said += " " + self._desk_phrase("escalate_offer", options=options)
        return said

    def _ways_not_to_wait(self, customer: Customer, channel: str, channels: tuple[str, ...]) -> str:
        from shared.policies.offline import CHANNEL_NAMES

        names = [CHANNEL_NAMES.get(c, c) for c in channels or available_channels(self.scenario.omnichannel, customer,
                                                                                  channel)]
        if phone_of(customer):  # any channel: we call the number on record (shared/callbacks.py)
            names.append("a call back when someone is free")
        return ", ".join(names[:-1]) + (" or " if len(names) > 1 else "") + names[-1] if names else ""

    async def _turn_at_desk(
        self,
        customer: Customer,
        session: ChannelSession,
        escalation: Escalation,
        text: str,
        on_text: OnText | None,
        on_save: OnSave | None,
        key: str | None,
        fence: int | None,
    ) -> TurnOutcome:
        """A message from a customer who is the desk's: it goes to the person (who reads the session), not to the
        AI. A customer still waiting hears their place, and may take another way instead of waiting."""
        agent = session.active_agent or self.scenario.start_agent
        replies: list[Reply] = []
        switch_to = callback = None
        edit: _Edit | None = None
        stopped = escalation.status is EscalationStatus.WAITING and bool(_STOP_WAITING.search(text))
        if stopped:
            replies.append(Reply(self._desk_phrase("stopped_waiting"), agent))
        elif escalation.status is EscalationStatus.WAITING:
            await self._show_on_desk(customer, escalation)  # puts it back if indexing it failed the first time
            channels = available_channels(self.scenario.omnichannel, customer, session.channel.value)
            asked = requested_channel(text)
            if asked in channels:
                switch_to = asked
                name = _channel_name(asked)
                replies.append(Reply(self.scenario.phrase("switch_accepted", channel=name), agent))
            elif callbacks.ASKS.search(text) and not callbacks.CANCELS.search(text):
                request, said = self._callback_asked(customer, session, text, "callback_recorded",
                                                     self._desk_phrase("callback_unavailable"))
                if request is not None:
                    edit, callback = partial(_add_callback, request), request.number
                replies.append(Reply(said, agent))
            else:
                position = await self.desk.position(escalation.escalation_id)
                load = await self.desk.load()
                wait = load.wait_for(position or load.waiting + 1)
                phrase = "escalate_waiting_nobody" if wait is None else "escalate_waiting"
                replies.append(Reply(self._desk_phrase(phrase, position=position or 1, wait=spoken_wait(wait)), agent))
        elif escalation.status is EscalationStatus.CONNECTING:
            replies.append(Reply(self._desk_phrase("escalate_connecting_wait"), agent))
        # WITH_PERSON: no reply; the person answers from the desk.
        for reply in replies:
            if on_text is not None:
                await on_text(reply.text, reply.agent)
        ctx = TurnContext(self.scenario, self.scenario.agent(agent), text, dict(customer.collected), customer.summary,
                          [], {})
        try:
            customer = await self._save_turn(
                customer.customer_id, session.session_id, text, agent, ctx, replies, switch_to, on_save, key, fence,
                edit=edit,
            )
        except _AnsweredMeanwhile:
            customer = await self.customers.get(customer.customer_id)
            return _replay(customer, session.session_id, key) or TurnOutcome([], agent, customer)
        if stopped:  # they left before a person came: that counts as abandoned
            await self.desk.leave(customer.customer_id, escalation.escalation_id, EscalationStatus.ABANDONED)
        elif switch_to is not None or callback:
            await self.desk.leave(customer.customer_id, escalation.escalation_id, EscalationStatus.WITHDRAWN,
                                  callback=callback)
        else:
            await self.desk.touch_session(session.session_id)  # the person's page shows the new message
        return TurnOutcome(replies, agent, customer, switch_to, callbacks_changed=edit is not None)

    async def _tried_before(self, customer_id: str, key: str | None) -> bool:
        """Whether this keyed turn ran before and was not saved: its host died mid-turn, and the channel delivers it
        again under the same key. A policy with state of its own (Foundry's conversation) must then not take the
        customer's words twice; one mark per attempt tells it, so only a retry pays for checking."""
        if key is None:
            return False
        try:
            return not await self.state.mark_processed(f"turn-attempt:{customer_id}:{key}", ATTEMPT_TTL_SECONDS)
        except Unavailable:
            return True  # cannot tell: checking costs a retry a request; not checking could say things twice

    # Callbacks (shared/callbacks.py) -------------------------------------------------------------------------------

    async def _callback_turn(self, customer: Customer, session: ChannelSession, text: str, on_text: OnText | None,
                             on_save: OnSave | None, key: str | None, fence: int | None) -> TurnOutcome | None:
        """"Cancel my callback" on any channel; "call me back (at 3 pm)" while the line is busy (the wait for a
        person is over the threshold the channel offer is made at). None: the turn is for the agents."""
        cancels, asks = callbacks.CANCELS.search(text), callbacks.ASKS.search(text)
        agent = session.active_agent or self.scenario.start_agent
        edit: _Edit | None = None
        if cancels and callbacks.open_callback(customer) is not None:
            edit, said = _cancel_callback, callbacks.phrase(self.scenario, "callback_cancelled")
        elif cancels and asks:
            said = callbacks.phrase(self.scenario, "callback_none")
        elif asks and await self._long_wait():
            request, said = self._callback_asked(customer, session, text, "callback_recorded_turn",
                                                 callbacks.phrase(self.scenario, "callback_unavailable"))
            edit = partial(_add_callback, request) if request is not None else None
        else:
            return None
        replies = [Reply(said, agent)]
        if on_text is not None:
            await on_text(said, agent)
        ctx = TurnContext(self.scenario, self.scenario.agent(agent), text, dict(customer.collected), customer.summary,
                          [], {})
        try:
            saved = await self._save_turn(customer.customer_id, session.session_id, text, agent, ctx, replies, None,
                                          on_save, key, fence, edit=edit)
        except _AnsweredMeanwhile:
            saved = await self.customers.get(customer.customer_id)
            return _replay(saved, session.session_id, key) or TurnOutcome([], agent, saved)
        return TurnOutcome(replies, agent, saved, callbacks_changed=edit is not None)

    async def _long_wait(self) -> bool:
        """Whether a customer asking for a person now would be offered not to wait (shared/router.py's rule)."""
        omni, queue = self.scenario.omnichannel, await self.queue.snapshot()
        if not queue.known:
            return False
        return (queue.estimated_wait_seconds is not None
                and queue.estimated_wait_seconds > omni.queue_wait_threshold_seconds) \
            or (queue.waiting is not None and queue.waiting > omni.queue_depth_threshold)

    def _callback_asked(self, customer: Customer, session: ChannelSession, text: str, recorded: str,
                        unavailable: str) -> tuple[callbacks.Request | None, str]:
        """"Call me back (at 3 pm)": the request to record and the words to say (the `recorded` phrase), or None
        and why not: no number to call (`unavailable`), or a time further ahead than can be booked. An open callback
        is the request again: asking twice books one."""
        number = phone_of(customer)
        if not number:
            return None, unavailable
        if (existing := callbacks.open_callback(customer)) is not None:
            request = callbacks.Request(**{k: existing[k] for k in callbacks.Request.__dataclass_fields__})
            return request, self._callback_words(request, recorded)
        when = callbacks.parse_when(text, datetime.now(UTC), self.scenario.clock)
        if when["kind"] == "too_far":
            return None, callbacks.phrase(self.scenario, "callback_too_far")
        request = callbacks.Request(
            callback_id="cb_" + uuid.uuid4().hex[:16], number=number,
            agent=session.active_agent or self.scenario.start_agent,
            topic=callbacks.topic_of(self.scenario, customer, session.session_id, text),
            when=when["kind"], at=when.get("at"),
        )
        return request, self._callback_words(request, recorded)

    def _callback_words(self, request: callbacks.Request, turn_phrase: str) -> str:
        number = _spoken_number(request.number)
        if request.when == "at":
            when = callbacks.spoken_when({"when": "at", "at": request.at}, datetime.now(UTC), self.scenario.clock)
            return callbacks.phrase(self.scenario, "callback_recorded_at", number=number, when=when)
        if turn_phrase in DESK_PHRASES:
            return self._desk_phrase(turn_phrase, number=number)
        return callbacks.phrase(self.scenario, turn_phrase, number=number)

    async def _show_on_desk(self, customer: Customer, escalation: Escalation) -> None:
        try:
            await self.desk.enqueue(customer, escalation)
        except SwitchboardError as exc:
            # The record has it; the customer's next message puts it on the desk (see _turn_at_desk).
            log.error("escalation %s is on the record but not yet on the desk: %s", escalation.escalation_id, exc)

    def _desk_phrase(self, key: str, **values: object) -> str:
        template = self.scenario.phrases.get(key, DESK_PHRASES[key])
        return template.format(company=self.scenario.company, **values)

    async def transcript(self, session_id: str, customer_id: str) -> ChannelSession:
        """The session whole, open or closed, listed on the record or aged out of it; NotFound if there is none."""
        return await self.customers.get_session(customer_id, session_id)

    async def interrupted(
        self, session_id: str, customer_id: str, heard: list[Reply], *, switch_failed: bool = False
    ) -> None:
        """Voice barge-in: the customer cut the latest reply short, so the transcript keeps only what they heard.

        Replaces the agent turns after the session's last customer turn (the reply, or the greeting) with `heard`,
        which is empty when none of it was heard. `switch_failed`: the switch that turn accepted could not start
        and the caller was told so; `heard` has the apology, and the turn no longer records the switch as accepted.
        """

        def cut(customer: Customer) -> None:
            session = customer.sessions.get(session_id)
            if session is None:
                raise NotFound(f"no session {session_id!r} for this customer")
            keep = len(session.turns)
            while keep and session.turns[keep - 1].role == "agent":
                keep -= 1
            del session.turns[keep:]
            if switch_failed and keep:
                session.turns[keep - 1].switch_to = None
            for reply in heard:
                session.add_turn(Turn("agent", reply.text, reply.agent))

        await self.customers.update(customer_id, cut)

    # The agent loop --------------------------------------------------------------------------------------------

    async def _switch_decision(self, customer: Customer, channel: str, text: str) -> SwitchDecision:
        """Voice always consults the queue (it may offer a switch); text channels only when the customer asks."""
        omni = self.scenario.omnichannel
        if channel != "voice" and not _MENTIONS_CHANNEL.search(text):
            return SwitchDecision(False, available_channels(omni, customer, channel))
        return decide(omni, await self.queue.snapshot(), customer, channel)

    async def _run_agents(
        self, ctx: TurnContext, on_text: OnText | None
    ) -> tuple[list[Reply], str | None, str | None]:
        """The agents' replies, the channel the customer accepted to move to, and why they need a person, if so."""
        replies: list[Reply] = []
        switch_to: str | None = None
        escalate: str | None = None
        for _hop in range(MAX_HOPS + 1):
            self._extract_slots(ctx)
            handoff: HandoffRequest | None = None
            parts: list[str] = []
            calls_before = len(ctx.tool_calls)
            try:
                async for event in self.policy.respond(ctx):
                    if isinstance(event, TextDelta):
                        parts.append(event.text)
                        if on_text is not None:
                            await on_text(event.text, ctx.agent.name)
                    elif isinstance(event, HandoffRequest):
                        handoff = event
                        break
                    elif isinstance(event, SwitchRequest):
                        if event.channel in ctx.switch.channels:
                            switch_to = event.channel
                        else:
                            log.warning("%s asked to switch to %s, which this customer cannot take", ctx.agent.name,
                                        event.channel)
                        break
                    elif isinstance(event, EscalateRequest):
                        escalate = event.reason or "the agent asked for a person"
                        break
            except VerificationNeeded as needed:
                # What was said before the check (a handoff's greeting, "let me look") has reached a caller's ears:
                # the transcript keeps it too, before the request to verify.
                if text := "".join(parts).strip():
                    replies.append(Reply(text, ctx.agent.name))
                needed.said = replies
                raise
            if text := "".join(parts).strip():
                answered = [c.name for c in ctx.tool_calls[calls_before:] if c.result is not None and c.result.ok]
                replies.append(Reply(text, ctx.agent.name, answered[-1] if answered else None))
            if handoff is None or escalate is not None:
                break
            target = self._follow(ctx.agent, handoff)
            if target is None:
                if not replies:
                    replies.append(Reply(self.scenario.phrase("clarify"), ctx.agent.name))
                break
            edge = ctx.agent.edge_to(target.name)
            log.info("handoff %s -> %s (%s, %s)", ctx.agent.name, target.name, edge.mode, handoff.reason)
            ctx.agent = target
            ctx.hops += 1
            if edge.mode == "announced":
                replies.append(Reply(target.greeting, target.name))
                if on_text is not None:
                    await on_text(target.greeting, target.name)
        return replies, switch_to, escalate

    def _follow(self, agent: AgentSpec, handoff: HandoffRequest) -> AgentSpec | None:
        if handoff.target == agent.name or agent.edge_to(handoff.target) is None:
            log.warning("%s asked for a handoff to %s, which is not one of its edges", agent.name, handoff.target)
            return None
        return self.scenario.agent(handoff.target)

    def _extract_slots(self, ctx: TurnContext) -> None:
        """Take what the customer stated outright: patterned slots always, choice slots when this agent needs them.

        Choice words are common ("start", "fix"), so they count only where the agent is asking about them.
        """
        for slot in self.scenario.slots.values():
            if slot.choices and slot.name not in ctx.agent.slots:
                continue
            if value := slot.extract(ctx.text):
                ctx.learn(slot.name, value)

    def _continuation(self, customer: Customer, handoff: Handoff) -> str:
        name = (customer.collected.get("customer_name") or "").split(" ")[0]
        came_from = {"voice": "your call", "whatsapp": "WhatsApp", "webchat": "our web chat",
                     "sms": "your text messages"}[handoff.from_channel.value]
        template = self.scenario.phrases.get("continue", _CONTINUE)
        opening = template.format(company=self.scenario.company, came_from=came_from, name=name or "there")
        return " ".join(p for p in (opening, customer.summary) if p)

    def _greeting(self, agent: AgentSpec, customer: Customer) -> str:
        name = customer.collected.get("customer_name")
        if name and "welcome_back" in self.scenario.phrases:
            return f"{self.scenario.phrase('welcome_back', customer_name=name.split()[0])} {agent.greeting}"
        return agent.greeting

    # Persistence -----------------------------------------------------------------------------------------------

    async def _save_turn(
        self,
        customer_id: str,
        session_id: str,
        text: str,
        agent: str,
        ctx: TurnContext,
        replies: list[Reply],
        switch_to: str | None,
        on_save: OnSave | None = None,
        key: str | None = None,
        fence: int | None = None,
        escalation: Escalation | None = None,
        change: _SessionChange | None = None,
        *,
        edit: _Edit | None = None,
    ) -> Customer:
        turns = [Turn(role="customer", text=text, agent=agent, key=key, switch_to=switch_to)] + [
            Turn("agent", r.text, r.agent, tool=r.tool) for r in replies
        ]

        def record(customer: Customer) -> None:
            session = customer.sessions[session_id]
            if key is not None and session.answered(key) is not None:
                raise _AnsweredMeanwhile(key)
            if session.status is not SessionStatus.ACTIVE:  # moved to another channel while this turn ran
                raise SessionClosed(f"this session is {session.status.value}; start a new one")
            if fence is not None:
                if fence < session.fence:  # our lease lapsed and a newer turn has written: ours is stale
                    raise SessionBusy(f"turn lease {fence} was overtaken by {session.fence}", retry_after=1.0)
                session.fence = fence
            for turn in turns:
                session.add_turn(turn)
            session.active_agent = ctx.agent.name
            customer.collected.update(ctx.learned)
            if escalation is not None and customer.open_escalation(session_id) is None:
                customer.add_escalation(escalation)
            if change is not None:
                change.apply(customer, session)
            if on_save is not None:
                on_save(session, replies, switch_to)
            if edit is not None:
                edit(customer, session)

        customer, _ = await self.customers.update(customer_id, record)
        return customer

    def _hot_key(self, session_id: str) -> str:
        return f"session:{session_id}"

    async def _load_hot(self, session_id: str) -> dict:
        try:
            return await self.state.get(self._hot_key(session_id)) or {}
        except SwitchboardError as exc:  # hot state is a cache: the record knows the active agent
            log.warning("session state unavailable, continuing from the record: %s", exc)
            return {}

    async def _save_hot(self, session_id: str, customer_id: str, agent: str, scratch: dict) -> None:
        value = {"customer_id": customer_id, "agent": agent, "scratch": scratch}
        try:
            await self.state.put(self._hot_key(session_id), value, self.session_ttl_seconds)
        except SwitchboardError as exc:
            log.warning("session state unavailable, the next turn starts from the record: %s", exc)


#: A change to the record made in a turn's own write (it may run more than once: a pure function of its arguments).
_Edit = Callable[[Customer, ChannelSession], None]


def _add_callback(request: callbacks.Request, customer: Customer, session: ChannelSession) -> None:
    callbacks.add(customer, session, request)


def _cancel_callback(customer: Customer, session: ChannelSession) -> None:
    callbacks.cancel(customer, session)


class _AnsweredMeanwhile(Exception):
    """Raised inside a record write to abandon it: a turn with this idempotency key is already on the record."""


def _replay(customer: Customer, session_id: str, key: str) -> TurnOutcome | None:
    """What the turn sent under `key` answered, if the session has one."""
    session = customer.sessions[session_id]
    if not session.loaded:
        return None  # a session closed long ago (its transcript is stored apart): nothing to replay, it is closed
    answered = session.answered(key)
    if answered is None:
        return None
    replies = [Reply(t.text, t.agent or session.active_agent or "", t.tool) for t in answered]
    agent = replies[-1].agent if replies else session.active_agent or ""
    # The accepted switch too: the first request may have failed to start the handoff after saving the turn.
    asked = next(t for t in session.turns if t.role == "customer" and t.key == key)
    # What the first request may have failed to start after saving the turn, as for the switch.
    return TurnOutcome(replies, agent, customer, asked.switch_to, replayed=True, **_still_to_start(customer))


def answered_before(customer: Customer) -> TurnOutcome:
    """A message the record shows answered arrives again (a redelivered event): the delivery that ran its turn may
    have failed before starting what it set going, so the channel starts whatever the record still holds."""
    return TurnOutcome([], "", customer, **_still_to_start(customer))


def _still_to_start(customer: Customer) -> dict[str, bool]:
    """The outcome's flags for whatever the record holds to start: promises not kept, callbacks open (each start
    finds one already running by its id, so this starts nothing twice)."""
    return {"promised": bool(pending_promises(customer)), "callbacks_changed": callbacks.has_open(customer)}


def _channel_name(channel: str) -> str:
    from shared.policies.offline import CHANNEL_NAMES

    return CHANNEL_NAMES.get(channel, channel)


def _spoken_number(number: str | None) -> str:
    """A number as the customer hears it: its last four digits are enough for them to know it."""
    return f"the number ending {number[-4:]}" if number else ""


_KEEP = object()


@dataclass
class _SessionChange:
    """What a turn changes about who the customer has shown they are, applied inside the turn's own write."""

    verification: Verification
    phone: str | None
    by: str | None = None
    pending: object = _KEEP  # a dict to wait on an answer, None to stop waiting, _KEEP to leave it
    masked: str | None = None  # what the transcript keeps instead of an answer (codes are never stored)
    audit: list[tuple[str, dict]] = field(default_factory=list)
    promises: list[tuple[str, str]] = field(default_factory=list)  # (kind, ref): texts the replies promised

    def apply(self, customer: Customer, session: ChannelSession) -> None:
        for kind, ref in self.promises:
            customer.add_promise(kind, ref, session)
        if self.by is not None and self.phone:
            session.raise_verification(self.verification, self.phone, self.by)
        if self.pending is not _KEEP:
            session.pending_verification = self.pending  # type: ignore[assignment]
        for event, details in self.audit:
            session.add_audit(event, level=session.verification.value, **details)


def _promises(ctx: TurnContext, change: _SessionChange) -> None:
    """Texts this turn's tools promised ("we'll text you when it's restored") go on the record with the turn."""
    for call in ctx.tool_calls:
        if call.result is not None and call.result.ok and call.result.promise:
            kind, _, ref = call.result.promise.partition(":")
            change.promises.append((kind, ref))


def _audit_disclosures(ctx: TurnContext, change: _SessionChange) -> None:
    """Each tool that showed account data (it needed the customer identified or verified) goes on the record."""
    for call in ctx.tool_calls:
        spec = ctx.scenario.tools[call.name]
        if call.result is not None and call.result.ok and spec.verification.at_least(Verification.IDENTIFIED) \
                and ctx.scenario.names_account(call.name, call.arguments):
            change.audit.append(("disclosed", {"tool": call.name}))
