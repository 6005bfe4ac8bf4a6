"""Calls: answer an incoming call into a voice session, follow it through its callbacks, end or transfer it.

On IncomingCall we resolve the caller by phone number, open a voice session (its greeting is what the media gateway
speaks first), sign two per-call tokens (one in the gateway URL, one in the callback URL; shared/calls/tokens.py
says what each is for and how long it lives) and answer with bidirectional media streaming to the gateway.
Callbacks then move the call along: connected, streaming, ended, transferred. Each step runs once however often
Event Grid or ACS deliver it.

What a live call needs across processes (its connection id, session and state) is kept in SessionState under
`call:<correlation id>`, so the callback handler, the control routes and the gateway all find it; the desk finds a
voice session's call under `call-of-session:<session id>`.

A caller escalated to the desk reaches a person by transfer (docs/desk.md, "How calls reach people"): the desk
routes the escalation to someone (CONNECTING), `transfer(call, escalation_id=...)` rings their phone or ACS user
with the escalation id in the call's custom context and "escalate:<escalation id>" as the operation context, and the
callbacks settle it: CallTransferAccepted gives the person the customer, CallTransferFailed puts the caller back in
the queue (still talking with the AI), and a caller who hangs up while waiting is counted as having left.

A call the gateway ends because the caller said nothing (media_gateway/silence.py) is hung up with the outcome
"abandoned": the record keeps `abandoned_at` and its state reads "abandoned" once it is over, and the
switchboard.calls.abandoned counter counts it once.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from shared import redact, telemetry
from shared.calls.callback_auth import AcsJwtVerifier
from shared.calls.control import ESCALATION_HEADER, CallEnded, CallRejected, MediaStreaming, TransferTarget
from shared.calls.events import CallEvent, IncomingCall
from shared.calls import tokens as call_tokens
from shared.calls.tokens import CALLBACK_AUDIENCE, MEDIA_AUDIENCE
from shared.errors import Conflict, InvalidInput, NotFound, SwitchboardError, Unauthorized, Unavailable
from shared.models import (
    Channel, Customer, Escalation, EscalationStatus, Identity, IdentityKind, SessionStatus, utcnow,
)

if TYPE_CHECKING:
    from shared.bootstrap import Services
    from shared.desk import DeskAgent, Presence

log = logging.getLogger(__name__)

CALLBACK_ROUTE = "api/calls/callbacks"
#: How long a delivered event id is remembered (Event Grid retries for up to 24 hours).
DEDUP_TTL_SECONDS = 24 * 3600
#: How long one delivery's claim on an event turns the others away while it does the work. Only a delivery that
#: died mid-work (a killed process) leaves a claim to expire; any failure it survives releases it at once. Longer
#: than any answer takes: ACS stops ringing an unanswered call within about 30 seconds.
CLAIM_TTL_SECONDS = 60.0

#: The outcome of a call hung up on a caller who said nothing through the reprompt and the goodbye.
ABANDONED = "abandoned"
#: The outcome of an outbound call an answering machine took: the gateway left a short message and hung up.
VOICEMAIL = "voicemail"
#: The operation context of a transfer to the person an escalation was routed to: "escalate:<escalation id>".
ESCALATE = "escalate:"
_SESSION_CALL = "call-of-session:"  # + voice session id: {"call_id": correlation id}

_UNSAFE = re.compile(r"[^A-Za-z0-9-]")
_FAILED_TO_CONNECT = {"AnswerFailed", "ConnectFailed", "CreateCallFailed"}

# Verifiers hold fetched signing keys, so one per audience lives as long as the process.
_verifiers: dict[tuple[str, str], AcsJwtVerifier] = {}


class Forbidden(SwitchboardError):
    """A valid credential for another call."""


@dataclass(frozen=True)
class CallRef:
    """What the per-call tokens carry: which call, session and customer."""

    call_id: str  # the correlation id (an outbound call: our own id, shared/calls/outbound.py)
    session_id: str
    customer_id: str
    outbound: bool = False  # we placed the call; the record keeps ACS's correlation id


def session_id_for(correlation_id: str) -> str:
    """One voice session per call, named after it, so every delivery of the call's events finds the same one."""
    return "voice_" + _UNSAFE.sub("", correlation_id)[:64]


class CallService:
    def __init__(self, services: Services, *, claim_ttl_seconds: float = CLAIM_TTL_SECONDS) -> None:
        self.services = services
        self.settings = services.settings
        self.state = services.state
        self.claim_ttl_seconds = claim_ttl_seconds

    # IncomingCall ----------------------------------------------------------------------------------------------

    async def answer(self, call: IncomingCall) -> str | None:
        """Answer the call once. Returns the call connection id, or None when this delivery had nothing to do.

        Raises when a retry may help (a store or ACS outage), so that Event Grid redelivers; the claim is released
        first, so the redelivery is let through. ACS may publish one call in two events (two subscriptions, a
        re-sent event): the call id, not the event id, decides.
        """
        work = f"call-answer:{call.correlation_id}"
        if not await self._claim(work):
            log.info("call %s is answered, or being answered, by another delivery", call.correlation_id)
            telemetry.dedup_hit("call_event")
            return None
        try:
            connection_id = await self._answer(call)
        except BaseException:
            await self._unclaim(work)
            raise
        await self._done(work)
        return connection_id

    async def _answer(self, call: IncomingCall) -> str | None:
        caller = redact.phone(call.caller)  # for the log lines below: never the full number
        session_id = session_id_for(call.correlation_id)
        arrived, opened = await asyncio.gather(
            self.services.queue.call_arrived(call.correlation_id), self._open_session(call, session_id),
            return_exceptions=True,
        )
        if isinstance(failure := arrived if isinstance(arrived, BaseException) else opened, BaseException):
            await self._abandon(call.correlation_id)  # counted waiting, never to be answered by this delivery
            if not isinstance(failure, SwitchboardError) or failure.retryable:
                raise failure
            log.error("could not open a voice session for call %s from %s: %s", call.correlation_id, caller, failure)
            return None
        ref = CallRef(call.correlation_id, session_id, opened)
        media = MediaStreaming(self.media_url(ref), self.settings.call_audio_sample_rate)
        try:
            await self._remember(ref.call_id, session_id=session_id, customer_id=opened, state="answering")
            await self.state.put(_SESSION_CALL + session_id, {"call_id": ref.call_id},
                                 self.settings.call_token_ttl_seconds)  # the desk finds the call of a session here
            answered = await self.services.call_control.answer(
                call.incoming_call_context, self.callback_url(ref), media, operation_context=session_id
            )
        except SwitchboardError as exc:
            if exc.retryable:
                await self._abandon(call.correlation_id)
                raise
            log.error("could not answer call %s from %s: %s", call.correlation_id, caller, exc)
            await self._finish(ref, "failed", SessionStatus.COMPLETED)
            return None
        # The connection id is recorded from CallConnected, which may already have arrived: writing it here too
        # could race that callback's write and lose its state.
        log.info("answered call %s from %s: session %s, connection %s", call.correlation_id, caller, session_id,
                 answered.call_connection_id)
        return answered.call_connection_id

    async def _open_session(self, call: IncomingCall, session_id: str) -> str:
        conversation = self.services.conversation
        if call.caller is not None:
            identity = Identity(IdentityKind.PHONE, call.caller)
            opened = await conversation.open_for_identity(Channel.VOICE, session_id, identity)
        else:  # a withheld number: serve them as a new customer; the agent asks who they are
            customer = await self.services.customers.create(Customer.new())
            opened = await conversation.open(Channel.VOICE, session_id, customer.customer_id)
        return opened.customer.customer_id

    def media_url(self, ref: CallRef, **extra: str) -> str:
        """The gateway URL for ACS: its token opens this call's media socket once, within minutes (tokens.py)."""
        # The call's trace context rides in the media token: the gateway's turns join the IncomingCall's trace.
        trace = {"tp": traceparent} if (traceparent := telemetry.traceparent()) else {}
        token = self._token(MEDIA_AUDIENCE, ref, **trace, **extra)
        return f"{self.settings.gateway_public_url}/media?token={quote(token)}"

    def callback_url(self, ref: CallRef, **extra: str) -> str:
        token = self._token(CALLBACK_AUDIENCE, ref, **extra)
        return f"{self.settings.public_url}/{CALLBACK_ROUTE}?token={quote(token)}"

    def _token(self, audience: str, ref: CallRef, **extra: str) -> str:
        return call_tokens.issue(self.services.tokens, self.settings, audience,
                                 call=ref.call_id, sid=ref.session_id, cid=ref.customer_id, **extra)

    # Callbacks -------------------------------------------------------------------------------------------------

    async def authenticate_callback(self, url_token: str, authorization: str) -> CallRef:
        """The call a callback request belongs to, or Unauthorized."""
        if not url_token:
            raise Unauthorized("the callback URL has no token")
        claims = self.services.tokens.verify(url_token, CALLBACK_AUDIENCE)
        if self.settings.acs_resource_immutable_id:
            await _verifier(self.settings.acs_resource_immutable_id, self.settings.acs_openid_configuration_url).verify(
                authorization
            )
        return CallRef(str(claims["call"]), str(claims["sid"]), str(claims["cid"]), outbound=bool(claims.get("out")))

    async def on_callbacks(self, ref: CallRef, events: list[CallEvent]) -> None:
        ours = ref.call_id
        if ref.outbound:  # ACS named the call we placed when it took the request (shared/calls/outbound.py)
            ours = str((await self.state.get(_key(ref.call_id)) or {}).get("correlation_id") or "")
            if not ours:
                raise Unavailable(f"call {ref.call_id} is still being placed: deliver its callbacks again shortly",
                                  retry_after=1)
        if foreign := [e.event_id for e in events if e.correlation_id != ours]:
            raise Forbidden(f"event(s) {', '.join(foreign)} belong to another call than this callback URL's")
        for event in events:
            work = f"acs-event:{event.event_id}"
            if not await self._claim(work):
                telemetry.dedup_hit("call_event")
                continue
            try:
                await self._apply(ref, event)
            except BaseException:
                # Kept, the claim would turn away ACS's retry and the step (a call ended, a session closed) would
                # never happen. Each step is safe to apply again: the queue counts a call once anyway.
                await self._unclaim(work)
                raise
            await self._done(work)

    async def _apply(self, ref: CallRef, event: CallEvent) -> None:
        log.info("call %s: %s %s", ref.call_id, event.type, event.detail)
        queue = self.services.queue
        # The token names the session, so even a call whose hot record was lost is followed correctly.
        await self._remember(ref.call_id, session_id=ref.session_id, customer_id=ref.customer_id)
        match event.type:
            case "CallConnected":
                await self._remember(ref.call_id, state="connected", connection_id=event.call_connection_id)
                if not ref.outbound:  # an outbound call never waited in the queue
                    await queue.call_answered(ref.call_id)
            case "MediaStreamingStarted":
                await self._remember(ref.call_id, media="streaming")
            case "MediaStreamingStopped":
                await self._remember(ref.call_id, media="stopped")
            case "MediaStreamingFailed":
                await self._remember(ref.call_id, media="failed", media_detail=event.detail)
                await self._rescue(ref, event)
            case "CallTransferAccepted":
                if escalation_id := _escalation_of(event):
                    await self.services.desk.connected(ref.customer_id, escalation_id)
                await self._finish(ref, "transferred", SessionStatus.TRANSFERRED)
            case "CallTransferFailed":
                await self._remember(ref.call_id, transfer="failed", transfer_detail=event.detail)
                if escalation_id := _escalation_of(event):
                    await self._not_put_through(ref, escalation_id, event.detail)
            case "CallDisconnected":
                if ref.outbound and not (await self.call(ref.call_id)).get("connection_id"):
                    await self._remember(ref.call_id, **{f"{_not_reached(event)}_at": utcnow()})  # rang out
                await self._finish(ref, "ended", SessionStatus.COMPLETED)
                await self._caller_left(ref)
            case failed if failed in _FAILED_TO_CONNECT:
                if ref.outbound:
                    await self._remember(ref.call_id, **{f"{_not_reached(event)}_at": utcnow()})
                await self._finish(ref, "failed", SessionStatus.COMPLETED)
            case other if other.endswith("Failed"):
                log.warning("call %s: %s: %s", ref.call_id, other, event.detail)

    async def _rescue(self, ref: CallRef, event: CallEvent) -> None:
        """Without media the agent can neither hear nor speak: hand the caller to a person, or end the call."""
        call = await self.call(ref.call_id)
        if _over(call):
            return
        log.error("call %s lost its media stream (%s): %s", ref.call_id, event.detail,
                  "transferring to a person" if self.services.scenario.escalation else "hanging up")
        try:
            if self.services.scenario.escalation:
                await self.transfer(ref.call_id, connection_id=event.call_connection_id)
            else:
                await self.hang_up(ref.call_id, connection_id=event.call_connection_id)
        except (CallEnded, CallRejected) as exc:
            log.warning("call %s: could not rescue it: %s", ref.call_id, exc)

    # Control ---------------------------------------------------------------------------------------------------

    async def hang_up(self, call_id: str, *, connection_id: str | None = None, outcome: str | None = None) -> None:
        """End the call; with `outcome="abandoned"` (the caller stayed silent) or `"voicemail"` (an answering
        machine took our call) the record says so first."""
        connection_id = connection_id or await self._connection_id(call_id)
        if outcome == ABANDONED:
            await self._abandoned(call_id)
        elif outcome == VOICEMAIL:
            await self._remember(call_id, voicemail_at=utcnow())
        elif outcome is not None:
            raise InvalidInput(f"a call is hung up as {ABANDONED!r}, {VOICEMAIL!r} or with no outcome, not {outcome!r}")
        await self.services.call_control.hang_up(connection_id)

    async def _abandoned(self, call_id: str) -> None:
        """Recorded before the hang-up, so the disconnect that follows finds it; counted once however often asked."""
        await self._remember(call_id, abandoned_at=utcnow())
        if await self.state.mark_processed(f"call-abandoned:{call_id}", DEDUP_TTL_SECONDS):
            telemetry.call_abandoned("silence")

    async def transfer(
        self, call_id: str, *, connection_id: str | None = None, escalation_id: str | None = None
    ) -> str:
        """Transfer the caller to a person; returns where the call rings.

        With `escalation_id`: to the person the desk routed that escalation to (`_put_through`). Without: to the
        scenario's escalation number (the team's line, for a call the AI cannot carry on); CallRejected if it has
        none."""
        if escalation_id is not None:
            return await self._put_through(call_id, escalation_id)
        number = self.services.scenario.escalation
        if not number:
            raise CallRejected(f"scenario {self.services.scenario.name!r} has no escalation number to transfer to")
        await self.services.call_control.transfer(
            connection_id or await self._connection_id(call_id), TransferTarget(number),
            operation_context=f"transfer:{call_id}",
        )
        await self._remember(call_id, transfer="requested", transfer_to=number)
        return number

    # People at the desk ----------------------------------------------------------------------------------------

    async def claim_call(self, escalation_id: str, agent: DeskAgent) -> Escalation:
        """A person at the desk takes a caller waiting in the queue: the call is transferred to their phone or ACS
        user. Of two people claiming at once exactly one wins (Conflict for the other, naming who has it). Conflict
        too, saying what to do, when this person has no phone to ring or the caller is no longer on the line."""
        desk = self.services.desk
        entry = await desk.entry(escalation_id)
        if entry.get("channel") != Channel.VOICE.value:
            raise InvalidInput(f"escalation {escalation_id} is on {entry.get('channel')}, not a call")
        person = await desk.presence(agent.agent_id)
        if _ring(person) is None:
            raise Conflict(f"this customer is on the phone: set a phone number or an ACS user at the desk so "
                           f"the call can ring you, {agent.name}")
        call_id = await self._call_of_session(str(entry["session_id"]))
        if call_id is None:
            raise Conflict("this caller's call is no longer on our line")
        escalation = await desk.route(escalation_id, agent)
        try:
            await self._put_through(call_id, escalation_id)
        except (CallEnded, CallRejected) as exc:  # the desk's routes answer Conflict with a 409 and these words
            raise Conflict(f"the call could not be put through to you: {exc}") from exc
        return escalation

    async def _put_through(self, call_id: str, escalation_id: str) -> str:
        """Ring the person `escalation_id` was routed to, once however often asked; returns where it rings."""
        record = await self.call(call_id)
        customer = await self.services.customers.get(str(record.get("customer_id")))
        escalation = customer.find_escalation(escalation_id)
        if escalation is None:
            raise NotFound(f"no escalation {escalation_id!r} for this call's customer")
        if escalation.session_id != record.get("session_id"):
            raise Forbidden(f"escalation {escalation_id} belongs to another conversation than this call's")
        # Once per routing: the same person's retried request rings nobody twice, while a caller put back in the
        # queue and routed again (to the next person, or the same one later) is rung again.
        work = f"call-transfer:{escalation_id}:{escalation.agent_id}:{escalation.updated_at}"
        if not await self._claim(work):  # a retried request: the first one rang (or is ringing) the person
            return str((await self.call(call_id)).get("transfer_to") or "")
        try:
            target = await self._ring_person(call_id, customer.customer_id, escalation)
        except BaseException:
            await self._unclaim(work)
            raise
        await self._done(work)
        return target

    async def _ring_person(self, call_id: str, customer_id: str, escalation: Escalation) -> str:
        desk, escalation_id = self.services.desk, escalation.escalation_id
        if escalation.status is not EscalationStatus.CONNECTING or not escalation.agent_id:
            raise Conflict(f"escalation {escalation_id} is {escalation.status.value}: it is not being put through "
                           "to anyone")
        person = await desk.presence(escalation.agent_id)
        target = _ring(person)
        if target is None:
            await desk.not_connected(customer_id, escalation_id)
            raise Conflict(f"{person.name} has no phone number or ACS user to ring: the caller is back in the queue")
        # Recorded before asking, so that an outcome arriving before the answer to this request finds it.
        await self._remember(call_id, transfer="requested", transfer_to=target.value, escalation_id=escalation_id)
        try:
            await self.services.call_control.transfer(
                await self._connection_id(call_id), target, operation_context=ESCALATE + escalation_id,
                context={ESCALATION_HEADER: escalation_id},
            )
        except CallEnded:
            await self._remember(call_id, transfer="failed", transfer_detail="the call has ended")
            await desk.leave(customer_id, escalation_id, EscalationStatus.ABANDONED)
            raise
        except SwitchboardError as exc:
            await self._remember(call_id, transfer="failed", transfer_detail=str(exc))
            await desk.not_connected(customer_id, escalation_id)  # the caller stays with the AI, in the queue
            raise
        log.info("call %s: ringing %s (%s) for escalation %s", call_id, person.name,
                 redact.phone(target.value) if target.is_phone else "ACS user", escalation_id)
        return target.value

    async def _not_put_through(self, ref: CallRef, escalation_id: str, detail: str) -> None:
        """The person did not take the call: back in the queue with the AI, or, if the caller has hung up
        meanwhile, gone."""
        record = await self.call(ref.call_id)
        log.info("call %s: not put through for escalation %s: %s", ref.call_id, escalation_id, detail)
        if record.get("ended_at"):
            await self.services.desk.leave(ref.customer_id, escalation_id, EscalationStatus.ABANDONED)
        else:
            await self.services.desk.not_connected(ref.customer_id, escalation_id)

    async def _caller_left(self, ref: CallRef) -> None:
        """The call is over: a caller still waiting for a person has left the queue. One being put through is left
        to the transfer's own outcome (its callback may come after this one)."""
        customer = await self.services.customers.get(ref.customer_id)
        escalation = customer.open_escalation(ref.session_id)
        if escalation is None or escalation.status is EscalationStatus.WITH_PERSON:
            return
        record = await self.call(ref.call_id)
        if (escalation.status is EscalationStatus.CONNECTING and record.get("transfer") == "requested"
                and record.get("escalation_id") == escalation.escalation_id):
            return
        await self.services.desk.leave(ref.customer_id, escalation.escalation_id, EscalationStatus.ABANDONED)

    async def _call_of_session(self, session_id: str) -> str | None:
        found = await self.state.get(_SESSION_CALL + session_id)
        return str(found["call_id"]) if found and found.get("call_id") else None

    async def call(self, call_id: str) -> dict[str, Any]:
        """What we know of a call: state, media, connection id, session; NotFound if we never answered it."""
        record = await self.state.get(_key(call_id))
        if record is None:
            raise NotFound(f"no call {call_id!r}")
        outcome = {"outcome": _outbound_outcome(record)} if record.get("direction") == "outbound" else {}
        return {**record, "state": _state(record), **outcome}

    async def describe(self, call_id: str) -> dict[str, Any]:
        """The call's record (less the customer id) and the status of its voice session on the customer record."""
        record = await self.call(call_id)
        status = None
        try:
            customer = await self.services.customers.get(str(record.get("customer_id")))
        except NotFound:
            customer = None
        if customer is not None and (session := customer.sessions.get(str(record.get("session_id")))) is not None:
            status = session.status.value
        return {**{k: v for k, v in record.items() if k != "customer_id"}, "session_status": status}

    async def _connection_id(self, call_id: str) -> str:
        record = await self.call(call_id)
        if _over(record):
            raise CallEnded(f"call {call_id} has {record['state']}")
        if not record.get("connection_id"):
            raise CallEnded(f"call {call_id} is not connected")
        return str(record["connection_id"])

    # Exactly once under at-least-once delivery -----------------------------------------------------------------
    #
    # A delivery claims the work for a short while (`claim_ttl_seconds`), does it, then marks it done for as long as
    # redeliveries come (DEDUP_TTL_SECONDS). A failure releases the claim, and a delivery that dies mid-work (a
    # killed process) leaves a claim that expires: either way the redelivery gets through. One long mark taken
    # before the work instead dropped every redelivery after an outage or a crash.

    async def _claim(self, work: str) -> bool:
        """True if this delivery is to do `work`: nobody has done it, and no other delivery is doing it now."""
        if not await self.state.mark_processed(f"{work}:claim", self.claim_ttl_seconds):
            return False
        try:
            if await self.state.get(f"done:{work}") is None:
                return True
        except BaseException:
            await self._unclaim(work)
            raise
        return False  # done already: the claim expires by itself

    async def _unclaim(self, work: str) -> None:
        try:
            await self.state.release_processed(f"{work}:claim")
        except Exception:
            log.exception("could not release the claim on %s: its redelivery waits for it to expire", work)

    async def _done(self, work: str) -> None:
        try:
            await self.state.put(f"done:{work}", {"at": utcnow()}, DEDUP_TTL_SECONDS)
        except SwitchboardError as exc:
            # The work is done and its claim still turns duplicates away for a while; failing now would only make
            # Event Grid or ACS deliver it again.
            log.warning("could not mark %s done: %s", work, exc)

    async def _abandon(self, call_id: str) -> None:
        try:
            await self.services.queue.call_abandoned(call_id)
        except SwitchboardError as exc:
            log.warning("call %s stays counted waiting until that expires: %s", call_id, exc)

    # Bookkeeping -----------------------------------------------------------------------------------------------

    async def remember(self, call_id: str, **changes: Any) -> dict[str, Any]:
        """Set fields of a call's record (shared/calls/outbound.py records the calls it places here)."""
        return await self._remember(call_id, **changes)

    async def remember_session_call(self, session_id: str, call_id: str) -> None:
        """Which call carries a voice session: the desk finds it here."""
        await self.state.put(_SESSION_CALL + session_id, {"call_id": call_id}, self.settings.call_token_ttl_seconds)

    async def _remember(self, call_id: str, **changes: Any) -> dict[str, Any]:
        # Field by field, atomically in the store: a call's callbacks land together (CallConnected and
        # MediaStreamingStarted within milliseconds, on any instance) and each sets only its own fields. Reading,
        # merging and writing the whole record here lost the connection id, and hang-up and transfer with it.
        changes = {"call_id": call_id, **changes, "updated_at": utcnow()}
        return await self.state.merge(_key(call_id), changes, self.settings.call_token_ttl_seconds)

    async def _finish(self, ref: CallRef, outcome: str, status: SessionStatus) -> None:
        # Each ending has a field of its own and the call's state is derived from them (`_state`), so endings that
        # land together (a transfer accepted, the disconnect after it) cannot overwrite one another.
        record = await self._remember(ref.call_id, **{f"{outcome}_at": utcnow()})
        await self.services.queue.call_ended(ref.call_id)
        if _state(record) == "transferred":
            status = SessionStatus.TRANSFERRED  # the disconnect that follows a transfer keeps "transferred"
        await self._set_session_status(ref.customer_id, ref.session_id, status)

    async def _set_session_status(self, customer_id: str, session_id: str, status: SessionStatus) -> None:
        def close(customer: Customer) -> None:
            session = customer.sessions.get(session_id)
            closable = {SessionStatus.ACTIVE}
            if status is SessionStatus.TRANSFERRED:
                closable.add(SessionStatus.COMPLETED)  # a transfer applied just after its disconnect still counts
            if session is not None and session.status in closable:
                session.status = status
                session.updated_at = utcnow()

        await self.services.customers.update(customer_id, close)


def _key(call_id: str) -> str:
    return f"call:{call_id}"


def _escalation_of(event: CallEvent) -> str | None:
    """The escalation a transfer callback is about, from the operation context the transfer was asked with."""
    context = str(event.data.get("operationContext") or "")
    if not context.startswith(ESCALATE):
        return None  # a transfer to the team's line, or another operation
    return context[len(ESCALATE):] or None


def _ring(person: Presence) -> TransferTarget | None:
    """Where a transferred call reaches this person: their ACS user (the desk's own calling app, where the VoIP
    headers open the customer's context) before their phone number; None when they have neither."""
    for value in (person.acs_user, person.phone):
        if value and TransferTarget.valid(value):
            return TransferTarget(value)
    return None


#: How a call can end, strongest first: a call transferred and then disconnected was transferred, and one hung up
#: on a silent caller and then disconnected was abandoned.
_OUTCOMES = ("transferred", "failed", ABANDONED, "ended")


#: An outbound call's outcomes, strongest first; one that connected and has none of these was answered.
_OUTBOUND_OUTCOMES = (VOICEMAIL, "busy", "no_answer")


def _outbound_outcome(record: dict[str, Any]) -> str | None:
    """answered, voicemail, busy, no_answer or failed; None while it rings."""
    if found := next((o for o in _OUTBOUND_OUTCOMES if record.get(f"{o}_at")), None):
        return found
    if record.get("connection_id"):
        return "answered"
    return "failed" if record.get("failed_at") or record.get("ended_at") else None


def _not_reached(event: CallEvent) -> str:
    """Why a call we placed did not connect, from ACS's result code: busy (486), else no answer."""
    code = (event.data.get("resultInformation") or {}).get("code")
    return "busy" if code == 486 else "no_answer"


def _over(record: dict[str, Any]) -> bool:
    """Whether the call has ended (disconnected, transferred, failed): an abandoned call is over once disconnected."""
    return any(record.get(f"{outcome}_at") for outcome in ("transferred", "failed", "ended"))


def _state(record: dict[str, Any]) -> str | None:
    """The call's strongest recorded ending (`<outcome>_at` fields), whatever arrived after it; else its progress."""
    return next((outcome for outcome in _OUTCOMES if record.get(f"{outcome}_at")), record.get("state"))


def _verifier(audience: str, openid_url: str) -> AcsJwtVerifier:
    key = (audience, openid_url)
    if key not in _verifiers:
        _verifiers[key] = AcsJwtVerifier(audience, openid_url)
    return _verifiers[key]
