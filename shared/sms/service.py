"""The SMS conversation service: a customer's text in, the agent's answer out, and every other text we owe.

Inbound texts are handled like WhatsApp messages (shared/whatsapp/service.py has the long argument), in short:

1. `mark_processed` on the message id turns away repeated and concurrent deliveries fast; if the mark cannot be
   taken, the record alone keeps the effect once.
2. Under the customer's lock, the turn, the inbound message id and the reply it earned are saved in one record
   write (the core's `on_save`); a message already logged runs no second turn.
3. The reply goes out under a repeatability id derived from the inbound message id, and its receipt is written right
   after: a send repeated after a crash is recognised by ACS, not texted twice.
4. A failure that a redelivery can cure releases the mark and re-raises, so Event Grid brings the text back.

The turn's replies go out as *one* text: SMS does not keep separate messages in order, and one message costs less.

Consent (shared/sms/keywords.py): a text that is only STOP (or another opt-out word) records the opt-out on the
customer record and nothing more is texted to that number, replies included, until they text START; HELP is answered
with the scenario's help line (`sms_help`). Codes, web chat links and promised notifications go through `SmsOutbox.text`
(shared/sms/outbox.py), which refuses an opted-out number with OptedOut, so the caller can try another way.

A customer with a person at the desk gets no AI reply (the core answers nothing); what the person writes is logged as
owed by `on_person_say` in the desk's own record write, under a key derived from its turn, and texted by
`deliver_owed` under the customer's lock, as a reply is: once, however often the person's request is retried.

The sender's number is identified, not verified: a session opened here starts IDENTIFIED for the number on record
(caller ID's level), since a sender number can be spoofed (docs/security.md).
"""

from __future__ import annotations

import logging
from datetime import datetime

from shared import redact, telemetry
from shared.conversation import Conversation, Reply, TurnOutcome, answered_before
from shared.messenger.base import SendFailed
from shared.messenger.inbound import InboundService, Received
from shared.models import (
    Channel, ChannelMessage, ChannelSession, Customer, Delivery, Identity, IdentityKind, SessionStatus, utcnow,
)
from shared.scenario import Scenario
from shared.sms.events import DeliveryReport, TextReceived
from shared.sms.keywords import Keyword, keyword_in
from shared.sms.outbox import OptedOut, send_key, sms_phrase
from shared.sms.sender import SmsSender
from shared.stores.base import CustomerStore, SessionState

log = logging.getLogger(__name__)


class SmsService(InboundService[TextReceived, DeliveryReport]):
    channel = "sms"
    label = "SMS"
    noun = "text"
    message_type = TextReceived

    def __init__(self, scenario: Scenario, customers: CustomerStore, state: SessionState,
                 conversation: Conversation, sender: SmsSender, *, number: str = "") -> None:
        self.scenario = scenario
        self.customers = customers
        self.state = state
        self.conversation = conversation
        self.sender = sender
        self.number = number  # our number (ACS_SMS_FROM): texts to another number of the resource are not ours

    # Events (handled once by InboundService.handle) --------------------------------------------------------------

    def _ours(self, message: TextReceived) -> bool:
        if not self.number or message.to == self.number:
            return True
        log.warning("text %s from %s was sent to %s, not our number; dropped", message.message_id,
                    redact.phone(message.phone), redact.phone(message.to))
        return False

    async def _answered(self, message: TextReceived) -> bool:
        customer = await self.customers.find_by_identity(Identity(IdentityKind.PHONE, message.phone))
        if customer is None:
            return False
        session = _session_that_logged(customer, message.message_id)
        return session is not None and not _owed(session)

    async def _receive(self, message: TextReceived) -> Received | None:
        identity = Identity(IdentityKind.PHONE, message.phone)
        customer, created = await self.customers.get_or_create(identity)
        if created:
            log.info("SMS from a new number: customer %s", customer.customer_id)
        keyword = keyword_in(message.text)
        if keyword in (Keyword.STOP, Keyword.START):
            await self._consent(customer.customer_id, message, opted_out=keyword is Keyword.STOP)
            return None
        if customer.sms_opt_out:
            log.info("text %s from %s not answered: they opted out of texts (START opts back in)",
                     message.message_id, redact.phone(message.phone))
            return None
        if keyword is Keyword.HELP:
            await self._send_help(message)
            return None

        logged_in = _session_that_logged(customer, message.message_id)
        session_id = logged_in.session_id if logged_in else _sms_session(customer)
        continued = None
        if session_id not in customer.sessions:
            opened = await self.conversation.open(Channel.SMS, session_id, customer.customer_id, greet=False,
                                                  proven=identity)
            customer, continued = opened.customer, opened.continued
        outcome = None
        with telemetry.turn("sms", continues=continued.traceparent if continued else None,
                            session_id=session_id, customer_id=customer.customer_id):
            if _session_that_logged(customer, message.message_id) is None:
                outcome = await self._converse(customer.customer_id, session_id, message)
            else:  # answered before: start what that delivery may have failed to (answered_before)
                outcome = answered_before(customer)
            await self._deliver(customer.customer_id, session_id, message.phone)
        return Received(customer.customer_id, session_id, continued, outcome.switch_to if outcome else None,
                        promised=bool(outcome and outcome.promised),
                        callbacks_changed=bool(outcome and outcome.callbacks_changed))

    async def _converse(self, customer_id: str, session_id: str, message: TextReceived) -> TurnOutcome | None:
        now = utcnow()
        key = send_key(message.message_id, "reply")

        def log_exchange(session: ChannelSession, replies: list[Reply], switch_to: str | None) -> None:
            if session.message(key=message.message_id) is not None:
                return
            # The transcript's words, not the raw text: a verification code is masked there and must not be kept here.
            said = next((t.text for t in reversed(session.turns) if t.role == "customer"
                         and t.key == message.message_id), "")
            session.last_inbound_at = message.received_at.isoformat(timespec="milliseconds")
            session.add_message(ChannelMessage(
                key=message.message_id, direction="in", kind="text", text=said, status=Delivery.RECEIVED,
                message_id=message.message_id, switch_to=switch_to, at=session.last_inbound_at, updated_at=now))
            if text := "\n\n".join(r.text for r in replies):
                session.add_message(ChannelMessage(
                    key=key, direction="out", kind="text", text=text, status=Delivery.PENDING,
                    reply_to=message.message_id, at=now, updated_at=now))

        outcome = await self.conversation.turn(session_id, customer_id, message.text, on_save=log_exchange,
                                               key=message.message_id)
        return None if outcome.replayed else outcome  # a replay: the delivery that ran the turn starts its work

    async def _consent(self, customer_id: str, message: TextReceived, *, opted_out: bool) -> None:
        def record(customer: Customer) -> None:
            if opted_out and not customer.sms_opt_out:
                customer.sms_opt_out = {"at": utcnow(), "message_id": message.message_id}
            elif not opted_out:
                customer.sms_opt_out = None

        await self.customers.update(customer_id, record)
        log.info("%s opted %s texts", redact.phone(message.phone), "out of" if opted_out else "back in to")

    async def _send_help(self, message: TextReceived) -> None:
        try:
            await self.sender.send(message.phone, sms_phrase(self.scenario, "sms_help"),
                                   repeatability_id=send_key(message.message_id, "help"),
                                   first_sent=message.received_at, tag="help")
        except SendFailed as exc:
            log.warning("the help line to %s was not sent: %s", redact.phone(message.phone), exc)

    # A person at the desk ----------------------------------------------------------------------------------------

    def on_person_say(self, session: ChannelSession, texts: list[str]) -> None:
        """The desk's OnSay (shared/desk.py): log a person's texts to an SMS customer as owed, inside the write that
        saves them as the session's turns; `deliver_owed` sends them. Other channels' sessions are left as they are.

        Each text's key is derived from its turn (its place in the transcript and its time), so the write applied
        again logs the same keys, and a send repeated after a crash carries the same repeatability id to ACS.
        """
        if session.channel is not Channel.SMS or not texts:
            return
        turns = session.turns[-len(texts):]
        first, now = len(session.turns) - len(turns), utcnow()
        for index, (turn, text) in enumerate(zip(turns, texts, strict=True)):
            key = send_key(session.session_id, "person", str(first + index), turn.at)
            if session.message(key=key) is None:
                session.add_message(ChannelMessage(key=key, direction="out", kind="text", text=text,
                                                   status=Delivery.PENDING, at=now, updated_at=now))

    async def deliver_owed(self, customer_id: str, session_id: str) -> None:
        """Text whatever the session owes the customer (a person's messages), oldest first, under the customer's lock
        so it never races an inbound text's own sends. Safe to repeat: what went out is no longer owed."""
        customer = await self.customers.get(customer_id)
        session = customer.sessions.get(session_id)
        phone = _phone(customer)
        if session is None or session.channel is not Channel.SMS or not _owed(session) or phone is None:
            return
        async with self._customer_lock(phone):
            await self._deliver(customer_id, session_id, phone)

    # Sending -----------------------------------------------------------------------------------------------------

    async def _deliver(self, customer_id: str, session_id: str, phone: str) -> None:
        """Send what the session owes, oldest first, writing each receipt (or failure) as it comes. Nothing goes to
        a number that opted out (STOP): what it is owed is marked failed, with why."""
        customer = await self.customers.get(customer_id)
        for message in _owed(customer.sessions[session_id]):
            if customer.sms_opt_out:
                await self._record_send(customer_id, session_id, message.key, None, str(OptedOut()))
                continue
            try:
                message_id, error = await self.sender.send(
                    phone, message.text, repeatability_id=message.key,
                    first_sent=datetime.fromisoformat(message.at), tag="reply"), None
            except SendFailed as exc:
                message_id, error = None, str(exc)
                log.warning("SMS reply to %s not sent: %s", redact.phone(phone), exc)
            await self._record_send(customer_id, session_id, message.key, message_id, error)

    async def _record_send(self, customer_id: str, session_id: str, key: str, message_id: str | None,
                           error: str | None) -> None:
        now = utcnow()

        def record(customer: Customer) -> None:
            logged = customer.sessions[session_id].message(key=key)
            if logged is None or logged.status is not Delivery.PENDING:
                return
            logged.status = Delivery.FAILED if error else Delivery.ACCEPTED
            logged.message_id, logged.error, logged.updated_at = message_id, error, now

        await self.customers.update(customer_id, record)

    async def _report(self, report: DeliveryReport) -> None:
        """A delivery report for a reply: its status on the record. Reports for the texts sent outside a
        conversation (codes, links, notifications) only say how they went, in the log."""
        customer = await self.customers.find_by_identity(Identity(IdentityKind.PHONE, report.phone))
        session = _session_that_sent(customer, report.message_id) if customer else None
        if customer is None or session is None:
            level = logging.INFO if report.delivered else logging.WARNING
            log.log(level, "SMS %s (%s) to %s: %s %s", report.message_id, report.tag or "untagged",
                    redact.phone(report.phone), report.status, report.details)
            return
        now = utcnow()

        def record(c: Customer) -> None:
            logged = c.sessions[session.session_id].message(message_id=report.message_id)
            if logged is None or logged.status in (Delivery.DELIVERED, Delivery.FAILED):
                return
            logged.status = Delivery.DELIVERED if report.delivered else Delivery.FAILED
            logged.error = None if report.delivered else f"{report.status}: {report.details}"
            logged.updated_at = now

        await self.customers.update(customer.customer_id, record)
        if not report.delivered:
            log.warning("SMS reply %s to %s was not delivered: %s %s", report.message_id,
                        redact.phone(report.phone), report.status, report.details)


def _phone(customer: Customer) -> str | None:
    """The number the customer texts from: the phone identity their SMS sessions were opened for."""
    return next((i.value for i in customer.identities if i.kind is IdentityKind.PHONE), None)


def _sms_sessions(customer: Customer) -> list[ChannelSession]:
    return [s for s in customer.sessions.values() if s.channel is Channel.SMS and s.loaded]


def _sms_session(customer: Customer) -> str:
    """The customer's active SMS session, or the id the next one gets (derived from the record, so two texts racing
    to open one agree on it)."""
    active = [s for s in _sms_sessions(customer) if s.status is SessionStatus.ACTIVE]
    if active:
        return max(active, key=lambda s: s.updated_at).session_id
    return f"sms_{customer.customer_id.removeprefix('cus_')}_{customer.session_count(Channel.SMS) + 1}"


def _owed(session: ChannelSession) -> list[ChannelMessage]:
    return [m for m in session.messages if m.direction == "out" and m.status is Delivery.PENDING]


def _session_that_logged(customer: Customer, message_id: str) -> ChannelSession | None:
    return next((s for s in _sms_sessions(customer) if s.message(key=message_id) is not None), None)


def _session_that_sent(customer: Customer, message_id: str) -> ChannelSession | None:
    return next((s for s in _sms_sessions(customer) if s.message(message_id=message_id) is not None), None)
