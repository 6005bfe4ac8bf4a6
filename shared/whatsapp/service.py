"""The WhatsApp conversation service: an ACS event in, replies out through the Messenger, everything on the record.

Event Grid delivers at least once, and so can we fail halfway. The effect is still once:

1. `mark_processed` on the event's id, before anything else, turns away concurrent and repeated deliveries fast.
   When the mark cannot be taken (Redis down), the event is handled anyway and step 2 alone keeps it once.
2. The customer's turn, the inbound message id and the replies it earned are saved in *one* record write (the
   conversation core's `on_save` hook). A delivery whose message is already in the log runs no second turn, and of
   two racing deliveries the write that finds the message already logged is abandoned, turn and all.
3. Each reply is sent under a repeatability id derived from the inbound message id and the reply's index, and its
   receipt is written right after. A send repeated after a crash is recognised by ACS, not delivered twice.
   Whatever sends holds the customer's lock (`Conversation.session_lock`, a lease across processes): a message's
   turn with the sends it owes, and the resend or template a `failed` status queues. Two deliveries of one message,
   or a status racing the message's own sends, take turns, and each sends only what the record still owes. Within
   one inbound message no text is queued twice (shared/whatsapp/delivery.py).
4. If anything fails on the way (a store or ACS outage outlasting the Messenger's retries), the mark is released
   and the error re-raised: the Functions host answers 500, Event Grid redelivers, and steps 2-3 pick up exactly
   what is still owed. Keeping the mark instead would make a transient failure lose the customer's message.
   A host that crashes mid-way cannot release its mark, so a marked message is skipped only once the record shows
   it answered with nothing owed; otherwise the redelivery finishes it.

So the mark alone gives at-most-once (it could drop work), the record and repeatability ids alone give exactly-once
effects but run duplicates concurrently; together a redelivery is cheap and harmless. A permanent send failure is
not an exception: it is recorded on the message (visible on the record) and the event completes.

A message sent to another channel registration on the same ACS resource (another number's `to`) is not ours to
answer: it is logged and dropped before anything is marked or written.

A customer with a person at the desk gets no AI reply (the core answers nothing); their message is still logged as
above, which also releases anything the person wrote while the window was closed. What the person writes reaches
the customer the same way the AI's replies do: `on_person_say` logs it on the session in the desk's own record write,
each text under a key derived from its turn, and `deliver_owed` sends what is owed under the customer's lock.

The frame of steps 1 to 4 (the mark, the customer's lock, the release on failure) is the SMS channel's too, and lives
once in shared/messenger/inbound.py; what is here is what WhatsApp does inside it.
"""

from __future__ import annotations

import itertools
import logging
from datetime import datetime, timezone
from typing import Awaitable, Callable

from shared import redact, telemetry
from shared.conversation import Conversation, Reply, TurnOutcome, answered_before
from shared.errors import Unavailable
from shared.messenger import Messenger, SendFailed, TemplateMessage, TextMessage
from shared.messenger.base import OutboundMessage
from shared.messenger.inbound import InboundService, Received
from shared.models import (
    Channel, ChannelMessage, ChannelSession, Customer, HandoffStatus, Identity, IdentityKind, SessionStatus,
    Turn,
)
from shared.scenario import Scenario
from shared.stores.base import CustomerStore, SessionState
from shared.whatsapp import delivery
from shared.whatsapp.events import SILENT, DeliveryStatus, InboundMessage

log = logging.getLogger(__name__)

#: What to do when WhatsApp reports a handoff's invite or reminder failed: (customer id, the status).
OnHandoffFailed = Callable[[str, DeliveryStatus], Awaitable[None]]


def _unsent_opening(session: ChannelSession) -> list[str]:
    """Agent turns recorded before the customer's first (a handoff's continuation line), if no message of this
    session has been logged yet (the first one logged carries them). Also right inside the turn's write, when the
    customer's turn has just been added."""
    if session.messages:
        return []
    return [t.text for t in itertools.takewhile(lambda t: t.role == "agent", session.turns)]


class WhatsAppService(InboundService[InboundMessage, DeliveryStatus]):
    channel = "whatsapp"
    label = "WhatsApp"
    noun = "WhatsApp message"
    message_type = InboundMessage

    def __init__(
        self,
        scenario: Scenario,
        customers: CustomerStore,
        state: SessionState,
        conversation: Conversation,
        messenger: Messenger,
        *,
        channel_id: str = "",
        on_handoff_failed: OnHandoffFailed | None = None,
    ) -> None:
        self.scenario = scenario
        #: Our WhatsApp channel registration (WHATSAPP_CHANNEL_ID); empty accepts every channel.
        self.channel_id = channel_id
        self.customers = customers
        self.state = state
        self.conversation = conversation
        self.messenger = messenger
        #: Told of a `failed` status about a handoff's invite or reminder (shared/handoff.py sends those outside any
        #: session), under the customer's lock: a web chat link then goes by SMS.
        self.on_handoff_failed = on_handoff_failed

    def _ours(self, message: InboundMessage) -> bool:
        if not self.channel_id or message.channel_id == self.channel_id:
            return True
        log.warning("WhatsApp message %s from %s was sent to channel %r, not ours (%s); dropped",
                    message.message_id, redact.phone(message.phone), message.channel_id, self.channel_id)
        return False

    # Inbound ---------------------------------------------------------------------------------------------------

    async def _answered(self, message: InboundMessage) -> bool:
        """Whether the record holds this message and everything the customer is owed has gone out."""
        customer = await self.customers.find_by_identity(Identity(IdentityKind.PHONE, message.phone))
        if customer is None or not _logged(customer, message.message_id):
            return False
        if _unstarted_switch(customer, message.message_id) is not None:
            return False  # answered, but the handoff the customer asked for may never have started
        return not any(delivery.owed(s) for s in _whatsapp_sessions(customer))

    async def _receive(self, message: InboundMessage) -> Received:
        customer, created = await self.customers.get_or_create(Identity(IdentityKind.PHONE, message.phone))
        if created:
            log.info("WhatsApp from a new number: customer %s", customer.customer_id)
        # A message already on the record is finished in the session that logged it: that session may have been
        # handed over meanwhile (this is a redelivery racing the handoff), and opening a new one for it would answer
        # a message twice.
        logged_in = _session_that_logged(customer, message.message_id)
        session_id = logged_in.session_id if logged_in else _whatsapp_session(customer)
        continued = None
        if session_id not in customer.sessions:
            # The customer wrote first: the answer to their message is the first thing they get, not a greeting
            # asking what they want (which would arrive just before that answer). A customer handed over from
            # another channel is the exception: the core opens with what they were doing, and that goes first.
            # WhatsApp vouches for the sender's number: the session starts verified for it (docs/security.md).
            opened = await self.conversation.open(Channel.WHATSAPP, session_id, customer.customer_id, greet=False,
                                                  proven=Identity(IdentityKind.PHONE, message.phone))
            customer, continued = opened.customer, opened.continued

        switch_to, outcome = None, None
        with telemetry.turn("whatsapp", continues=continued.traceparent if continued else None,
                            session_id=session_id, customer_id=customer.customer_id):
            if _logged(customer, message.message_id):
                log.info("message %s is already answered on the record; sending whatever is still owed",
                         message.message_id)
                switch_to = _unstarted_switch(customer, message.message_id)
                outcome = answered_before(customer)
            elif message.text:
                outcome = await self._converse(customer.customer_id, session_id, message)
                switch_to = outcome.switch_to if outcome else None
            else:
                await self._acknowledge(customer.customer_id, session_id, message)
            await self._deliver(customer.customer_id, session_id)
        return Received(customer.customer_id, session_id, continued, switch_to,
                        promised=bool(outcome and outcome.promised),
                        callbacks_changed=bool(outcome and outcome.callbacks_changed))

    async def _converse(self, customer_id: str, session_id: str, message: InboundMessage) -> TurnOutcome | None:
        now = _now()
        template = self._template_name()

        def log_exchange(session: ChannelSession, replies: list[Reply], switch_to: str | None) -> None:
            # The opening is read from the session being written, not from an earlier read: of two messages racing
            # to be the first, only the one whose write lands first carries it.
            preface = _unsent_opening(session)
            delivery.record_exchange(session, message, preface + [r.text for r in replies], template, now)
            session.message(key=message.message_id).switch_to = switch_to  # type: ignore[union-attr]

        # The message id is the turn's idempotency key: a duplicate delivery running at the same time (without the
        # Redis mark, as in an outage, nothing else stops it) loses the write and runs no second turn.
        outcome = await self.conversation.turn(
            session_id, customer_id, message.text, on_save=log_exchange, key=message.message_id
        )
        if outcome.replayed:
            log.info("message %s was answered by a concurrent delivery; sending whatever is still owed",
                     message.message_id)
            return None
        return outcome

    async def _acknowledge(self, customer_id: str, session_id: str, message: InboundMessage) -> None:
        """Media, locations, reactions: recorded, and answered politely unless no answer is due (a reaction)."""
        now = _now()
        template = self._template_name()
        reply = [] if message.kind in SILENT else [self.scenario.whatsapp.non_text_reply]
        said = f"[{message.kind}{': ' + message.detail if message.detail else ''}]"

        def record(customer: Customer) -> None:
            session = customer.sessions[session_id]
            if session.message(key=message.message_id) is not None:
                return
            agent = session.active_agent or self.scenario.start_agent
            session.add_turn(Turn(role="customer", text=said, agent=agent))
            for text in reply:
                session.add_turn(Turn(role="agent", text=text, agent=agent))
            delivery.record_exchange(session, message, reply, template, now)

        await self.customers.update(customer_id, record)

    # A person at the desk ----------------------------------------------------------------------------------------

    def on_person_say(self, session: ChannelSession, texts: list[str]) -> None:
        """The desk's OnSay (shared/desk.py): log a person's texts to a WhatsApp customer, inside the write that saves
        them as the session's turns, to go out now or when the window reopens. Other channels' sessions are left as
        they are, so the desk may pass this for every customer.

        Each text's key is derived from its turn (its place in the transcript and its time), so the write being
        applied again logs the same keys, and a send repeated after a crash is recognised by ACS.
        """
        if session.channel is not Channel.WHATSAPP or not texts:
            return
        turns = session.turns[-len(texts):]
        first = len(session.turns) - len(turns)
        keys = [delivery.send_key(session.session_id, "person", str(first + i), turn.at)
                for i, turn in enumerate(turns)]
        delivery.record_person(session, texts, keys, self._template_name(), _now())

    async def deliver_owed(self, customer_id: str, session_id: str) -> None:
        """Send whatever the session owes the customer (a person's messages), oldest first, under the customer's lock
        so it never races a message's own sends. Safe to repeat: what went out is no longer owed.

        Raises Unavailable if the store or ACS is out past the retries; what is owed stays owed, and goes out on the
        next call or with the answer to the customer's next message.
        """
        customer = await self.customers.get(customer_id)
        session = customer.sessions.get(session_id)
        if session is None or session.channel is not Channel.WHATSAPP or not delivery.owed(session):
            return
        async with self._customer_lock(_phone(customer) or customer_id):
            await self._deliver(customer_id, session_id)

    # Delivery status -------------------------------------------------------------------------------------------

    async def _report(self, update: DeliveryStatus) -> None:
        customer = await self.customers.find_by_identity(Identity(IdentityKind.PHONE, update.phone))
        session = _session_that_sent(customer, update.message_id) if customer else None
        handoff = customer.handoff if customer is not None else None
        if customer is not None and session is None and handoff is not None \
                and update.message_id in handoff.whatsapp_sent:
            await self._handoff_status(customer, update)
            return
        if customer is None or session is None:
            if customer is not None and update.status == "failed" and handoff is not None \
                    and handoff.status is HandoffStatus.STARTED:
                # Perhaps the handoff's invite, whose send returned but whose id is not on the record yet.
                raise Unavailable(f"status for {update.message_id} arrived while a handoff's invite was going out")
            if customer is not None and any(delivery.owed(s) for s in _whatsapp_sessions(customer)):
                # Our send returned, but its receipt is not on the record yet: let Event Grid bring this back.
                raise Unavailable(f"status for {update.message_id} arrived before its send was recorded")
            log.warning("delivery status %s for message %s to %s matches nothing we sent; dropped",
                        update.status, update.message_id, redact.phone(update.phone))
            return
        now, template = _now(), self._template_name()
        customer, _ = await self.customers.update(
            customer.customer_id,
            lambda c: delivery.record_status(c.sessions[session.session_id], update, template, now),
        )
        if update.status == "failed":
            log.warning("WhatsApp message %s to %s failed: %s",
                        update.message_id, redact.phone(update.phone), update.error)
            # A closed window queues the template (or a resend). Sent under the customer's lock: a message's own
            # sends, or another failed status, may be sending at this moment, and each must see what the other sent.
            async with self._customer_lock(update.phone):
                await self._deliver(customer.customer_id, session.session_id)

    async def _handoff_status(self, customer: Customer, update: DeliveryStatus) -> None:
        """A status about a handoff's invite or reminder: a failure is the handoff's to recover from."""
        if update.status != "failed":
            return
        log.warning("the handoff's WhatsApp message %s to %s failed: %s", update.message_id,
                    redact.phone(update.phone), update.error)
        if self.on_handoff_failed is not None:
            async with self._customer_lock(update.phone):
                await self.on_handoff_failed(customer.customer_id, update)

    # Sending ---------------------------------------------------------------------------------------------------

    async def _deliver(self, customer_id: str, session_id: str) -> None:
        """Send every message the session owes, oldest first, writing each receipt (or failure) as it comes."""
        customer = await self.customers.get(customer_id)
        for message in delivery.owed(customer.sessions[session_id]):
            outbound = self._outbound(customer, message)
            if isinstance(outbound, str):
                message_id, error = None, outbound
            else:
                try:
                    message_id, error = await self.messenger.send(
                        outbound, repeatability_id=message.key, first_sent=datetime.fromisoformat(message.at)
                    ), None
                except SendFailed as exc:
                    message_id, error = None, str(exc)
            if error:
                log.warning("WhatsApp %s to %s not sent: %s", message.kind, redact.phone(_phone(customer)), error)
            await self._record_send(customer_id, session_id, message.key, message_id, error)

    async def _record_send(
        self, customer_id: str, session_id: str, key: str, message_id: str | None, error: str | None
    ) -> None:
        now = _now()

        def record(customer: Customer) -> None:
            delivery.record_send(customer.sessions[session_id], key, message_id, error, now)

        await self.customers.update(customer_id, record)

    def _outbound(self, customer: Customer, message: ChannelMessage) -> OutboundMessage | str:
        """What to send for a logged message, or why it cannot be sent."""
        to = _phone(customer)
        if to is None:
            return "the customer has no phone number to send to"
        if message.kind == "text":
            return TextMessage(to, message.text)
        template = self.scenario.whatsapp.template
        if template is None:
            return "outside the 24-hour window only a template may be sent, and the scenario has no whatsapp.template"
        values = tuple(template.values(self.scenario.company, customer.collected))
        return TemplateMessage(to, template.name, template.language, values)

    def _template_name(self) -> str:
        template = self.scenario.whatsapp.template
        return template.name if template else ""


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _phone(customer: Customer) -> str | None:
    return next((i.value for i in customer.identities if i.kind is IdentityKind.PHONE), None)


def _whatsapp_sessions(customer: Customer) -> list[ChannelSession]:
    """The WhatsApp sessions whose delivery log came with the record: the active ones and those closed in the last
    two days (shared/stores/records.py), which is as long as statuses and redeliveries keep naming their messages."""
    return [s for s in customer.sessions.values() if s.channel is Channel.WHATSAPP and s.loaded]


def _whatsapp_session(customer: Customer) -> str:
    """The customer's one active WhatsApp session, or the id the next one gets.

    The id is derived from the record (the count of WhatsApp sessions so far), so two messages racing to open a
    session for the same customer agree on its id, and the second `open` finds it instead of opening another.
    """
    sessions = _whatsapp_sessions(customer)
    active = [s for s in sessions if s.status is SessionStatus.ACTIVE]
    if active:
        return max(active, key=lambda s: s.updated_at).session_id
    return f"wa_{customer.customer_id.removeprefix('cus_')}_{customer.session_count(Channel.WHATSAPP) + 1}"


def _logged(customer: Customer, message_id: str) -> bool:
    return _session_that_logged(customer, message_id) is not None


def _session_that_logged(customer: Customer, message_id: str) -> ChannelSession | None:
    return next((s for s in _whatsapp_sessions(customer) if s.message(key=message_id) is not None), None)


def _session_that_sent(customer: Customer, message_id: str) -> ChannelSession | None:
    return next((s for s in _whatsapp_sessions(customer) if s.message(message_id=message_id) is not None), None)


def _unstarted_switch(customer: Customer, message_id: str) -> str | None:
    """The channel this message asked to move to, if its handoff may not have started (a crash between saving the
    turn and starting it). Starting a handoff is idempotent per session, so answering "maybe" costs one status read."""
    for session in _whatsapp_sessions(customer):
        logged = session.message(key=message_id)
        if logged is not None and logged.switch_to is not None:
            handoff = customer.handoff
            started = handoff is not None and handoff.from_session_id == session.session_id
            return None if started else logged.switch_to
    return None
