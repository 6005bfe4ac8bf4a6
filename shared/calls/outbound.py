"""Outbound calls: we ring a customer with a purpose (a scenario agent and the line it opens with).

`POST /api/calls` (an operator, functions/calls.py) calls `OutboundCalls.place`; the callback orchestration of issue
17 will call it the same way. A call is placed:

- to a number on a customer record (`customer_id`, or a `phone` that is someone's identity), or to any E.164 number
  the body says the person consented to be called on (`consent`), which the call's session keeps in its audit;
- at most `PER_CUSTOMER` times per customer per `PER_CUSTOMER_WINDOW` and `OVERALL` times per `OVERALL_WINDOW`;
- once per `Idempotency-Key`: the same request retried gets the first one's answer, and no second call.

The call's voice session starts at the named agent with the opening as its first turn, on the customer's record (so
the agent has their context, as in any handoff); it is "identified" at most: answering a call proves nothing. The
media gateway speaks that opening once it has heard a person (not an answering machine) pick up (media_gateway/
voicemail.py). The call's record (`call:<id>`, shared/calls/service.py) says how it went in `outcome`: `answered`,
`voicemail`, `no_answer`, `busy` or `failed`.

Our call id is ours, not ACS's correlation id (which only exists once ACS has taken the request): the per-call
tokens name ours, and the record keeps ACS's as `correlation_id`, against which callbacks are checked.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shared import redact
from shared.calls.control import MediaStreaming
from shared.calls.service import CallRef, CallService
from shared.errors import Conflict, NotFound, SwitchboardError
from shared.models import Channel, ChannelSession, Customer, Identity, IdentityKind, Turn, Verification, utcnow

if TYPE_CHECKING:
    from shared.bootstrap import Services
    from shared.settings import Settings

log = logging.getLogger(__name__)

#: Calls one customer may be placed in PER_CUSTOMER_WINDOW seconds: a retry or two, never a barrage.
PER_CUSTOMER, PER_CUSTOMER_WINDOW = 3, 3600.0
#: Calls placed overall per OVERALL_WINDOW seconds: a runaway script stops here, not at the phone bill.
OVERALL, OVERALL_WINDOW = 60, 60.0
#: How long an idempotency key's answer is kept (a client retrying a lost response does so within minutes).
IDEMPOTENCY_TTL_SECONDS = 24 * 3600
#: How long a retried request waits for the first one, still placing the call, to finish.
IDEMPOTENCY_WAIT_SECONDS = 10.0
OPENING_CHARS = 500

OUTBOUND_CLAIM = "out"  # in the call's tokens: the gateway screens for an answering machine before speaking
#: How an outbound call ended (`outcome` on its record).
ANSWERED, VOICEMAIL, NO_ANSWER, BUSY, FAILED = "answered", "voicemail", "no_answer", "busy", "failed"


def caller_id(settings: Settings) -> str:
    """The number our calls come from: ACS_CALL_FROM, else ACS_SMS_FROM; "" when neither is set."""
    return settings.acs_call_from or settings.acs_sms_from


class RateLimited(SwitchboardError):
    """Too many calls lately, for this customer or overall; try again after `retry_after` seconds."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class NoConsent(SwitchboardError):
    """A number on no customer record, and no word that its holder agreed to be called on it."""


@dataclass(frozen=True)
class CallRequest:
    agent: str
    opening: str
    customer_id: str | None = None
    phone: str | None = None
    consent: dict[str, str] | None = None  # {"given_at": ISO time, "source": where they said yes}


class OutboundCalls:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.settings = services.settings
        self.state = services.state
        self.calls = CallService(services)

    async def place(self, request: CallRequest, *, idempotency_key: str | None = None) -> dict[str, Any]:
        """Place the call (once per idempotency key); returns {call_id, customer_id, session_id, state}."""
        if idempotency_key is None:
            return await self._place(request)
        key = f"outbound-request:{idempotency_key}"
        if not await self.state.mark_processed(f"{key}:claim", IDEMPOTENCY_TTL_SECONDS):
            return await self._earlier(key)
        try:
            placed = await self._place(request)
        except BaseException:
            # Refused (bad number, rate limit) or failed: the same key may try again and get its own answer.
            await self.state.release_processed(f"{key}:claim")
            raise
        await self.state.put(key, placed, IDEMPOTENCY_TTL_SECONDS)
        return placed

    async def _earlier(self, key: str) -> dict[str, Any]:
        """The answer the first request with this key got, once it has one."""
        deadline = asyncio.get_running_loop().time() + IDEMPOTENCY_WAIT_SECONDS
        while (placed := await self.state.get(key)) is None:
            if asyncio.get_running_loop().time() > deadline:
                raise Conflict("a request with this Idempotency-Key is still placing its call: try again shortly")
            await asyncio.sleep(0.1)
        return placed

    async def _place(self, request: CallRequest) -> dict[str, Any]:
        source = caller_id(self.settings)
        if not source:
            raise Conflict("no number to call from: set ACS_CALL_FROM (or ACS_SMS_FROM) to a number of the ACS "
                           "resource")
        customer, phone = await self._callee(request)
        await self._limit(customer.customer_id)
        call_id = "out-" + uuid.uuid4().hex
        session_id = "voice_" + call_id.replace("-", "")
        await self._open_session(customer, session_id, phone, request)
        ref = CallRef(call_id, session_id, customer.customer_id)
        media = MediaStreaming(self.calls.media_url(ref, **{OUTBOUND_CLAIM: "1"}), self.settings.call_audio_sample_rate)
        await self.calls.remember(call_id, session_id=session_id, customer_id=customer.customer_id, state="dialing",
                                  direction="outbound", agent=request.agent)
        await self.calls.remember_session_call(session_id, call_id)
        try:
            placed = await self.services.call_control.create_call(
                phone, source, self.calls.callback_url(ref, **{OUTBOUND_CLAIM: "1"}), media,
                operation_context=session_id,
            )
        except SwitchboardError as exc:
            await self.calls.remember(call_id, outcome=FAILED, failed_at=utcnow(), failed_detail=str(exc))
            raise
        await self.calls.remember(call_id, correlation_id=placed.correlation_id, state="ringing")
        log.info("placed call %s to %s for %s (%s): connection %s", call_id, redact.phone(phone),
                 customer.customer_id, request.agent, placed.call_connection_id)
        return {"call_id": call_id, "customer_id": customer.customer_id, "session_id": session_id, "state": "ringing"}

    async def _callee(self, request: CallRequest) -> tuple[Customer, str]:
        """Whom we call and on which number: a record's phone, or a number the person consented to be called on."""
        customers = self.services.customers
        if request.customer_id is not None:
            try:
                customer = await customers.get(request.customer_id)
            except NotFound:
                raise NotFound(f"customer_id: no customer {request.customer_id!r}") from None
            phones = [i.value for i in customer.identities if i.kind is IdentityKind.PHONE]
            # Our own callers (a promised notification) may name the number the customer gave to be reached on; the
            # API takes one of customer_id and phone.
            given = [customer.collected.get(slot) for slot in ("contact_number", "phone_number")]
            if request.phone is not None and request.phone in phones + given:
                return customer, request.phone
            if not phones:
                raise Conflict("customer_id: this customer has no phone number on record; send phone with consent")
            return customer, phones[0]
        assert request.phone is not None
        identity = Identity(IdentityKind.PHONE, request.phone)
        found = await customers.find_by_identity(identity)
        if found is not None:
            return found, request.phone
        if request.consent is None:
            raise NoConsent("phone: this number is on no customer record; send consent (given_at, source) "
                            "to call it")
        customer, _ = await customers.get_or_create(identity)
        return customer, request.phone

    async def _limit(self, customer_id: str) -> None:
        for key, limit, window, whom in (
            (f"outbound-rate:{customer_id}", PER_CUSTOMER, PER_CUSTOMER_WINDOW, "this customer"),
            ("outbound-rate:all", OVERALL, OVERALL_WINDOW, "all customers"),
        ):
            if await self.state.hit(key, window) > limit:
                raise RateLimited(f"at most {limit} calls to {whom} per {int(window)} s", int(window))

    async def _open_session(self, customer: Customer, session_id: str, phone: str, request: CallRequest) -> None:
        """The call's voice session: at the purpose's agent, its opening said first, the callee identified at most."""
        name = (customer.collected.get("customer_name") or "").split()
        opening = request.opening.replace("{name}", name[0] if name else "there")

        def add(record: Customer) -> None:
            session = ChannelSession(session_id=session_id, channel=Channel.VOICE, active_agent=request.agent)
            # Whoever picks up a number on record is believed to be its holder, never proven so by answering.
            session.raise_verification(Verification.IDENTIFIED, phone, "called on a number on record")
            session.add_audit("call_placed", agent=request.agent, consent=request.consent)
            session.add_turn(Turn(role="agent", text=opening, agent=request.agent))
            record.sessions[session_id] = session

        await self.services.customers.update(customer.customer_id, add)
