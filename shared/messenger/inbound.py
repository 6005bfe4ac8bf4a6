"""One inbound event, handled once: the part of the SMS and WhatsApp services (shared/sms/service.py,
shared/whatsapp/service.py) that is the same for both channels.

Event Grid delivers at least once, and a handler can fail halfway; shared/whatsapp/service.py has the whole argument.
Here is its frame: the event's mark (`mark_processed`) turns away repeated and concurrent deliveries fast, a marked
message is still finished when the record shows it unanswered (a crashed host cannot release its mark), a customer's
message runs under that customer's lock, and a failure releases the mark and propagates so Event Grid redelivers.
What a channel does with a message or a delivery report, and how it tells one answered, is the channel's.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Generic, Protocol, TypeGuard, TypeVar

from shared import telemetry
from shared.errors import Unavailable
from shared.models import Handoff

if TYPE_CHECKING:
    from shared.conversation import Conversation
    from shared.stores.base import SessionState

log = logging.getLogger(__name__)

#: How long an event id stays marked. Event Grid gives up redelivering after 24 hours; past the mark, the delivery
#: log on the record still recognises an inbound message.
DEDUP_TTL_SECONDS = 48 * 3600


@dataclass(frozen=True)
class Received:
    """What a customer's message changed that the handoff orchestration must hear about."""

    customer_id: str
    session_id: str
    continued: Handoff | None  # this message opened the session that continues a handoff
    switch_to: str | None  # the customer agreed to move on to this channel
    # What the turn set going, for the channel function to start (TurnOutcome.promised / .callbacks_changed).
    promised: bool = False
    callbacks_changed: bool = False


class Event(Protocol):
    @property
    def dedup_key(self) -> str: ...


class Message(Event, Protocol):
    """A customer's message: from a phone, under the channel's id for it."""

    @property
    def message_id(self) -> str: ...

    @property
    def phone(self) -> str: ...


M = TypeVar("M", bound=Message)
R = TypeVar("R", bound=Event)


class InboundService(ABC, Generic[M, R]):
    """A channel's service, as far as taking its events in: `handle` each one once."""

    channel: ClassVar[str]  # "sms": the customer's lock and the telemetry say it
    label: ClassVar[str]  # "SMS": the log says it
    noun: ClassVar[str]  # "text": what the log calls a customer's message
    message_type: ClassVar[type]  # the event type that is a customer's message (the other is a delivery report)

    state: SessionState
    conversation: Conversation

    async def handle(self, event: M | R) -> Received | None:
        """Process one event once. Raises only when a redelivery can succeed where this attempt failed.

        For a customer's message that went through the conversation, returns what the function must tell the handoff
        orchestration (a handoff this message continued, or one the customer just asked for).
        """
        if self._is_message(event) and not self._ours(event):
            return None
        try:
            marked = await self.state.mark_processed(event.dedup_key, DEDUP_TTL_SECONDS)
        except Unavailable as exc:
            # The mark is a fast path, not the guarantee: the record still tells a repeat, so the customer is
            # answered rather than their message bounced back to Event Grid for as long as the outage lasts.
            log.warning("cannot mark %s event %s (%s); deduplicating on the record alone", self.label,
                        event.dedup_key, exc)
            marked = None
        if marked is False:
            if not self._is_message(event) or await self._answered(event):
                log.info("%s event %s was already processed; ignoring the redelivery", self.label, event.dedup_key)
                telemetry.dedup_hit(self.channel)
                return None
            # Marked, yet not answered on the record: the delivery that marked it died mid-way (a crashed host
            # cannot release its mark), or is still running. Finishing it is safe: the record keeps it once.
            log.info("%s %s is marked but not answered yet; handling it", self.noun, event.message_id)
        try:
            if self._is_message(event):
                # One message per customer at a time, in the order they reached us, from before the session is
                # even resolved: the next message's turn then sees this one's reply (shared/session_lock.py), and a
                # duplicate delivery waits, then finds the message answered and nothing owed.
                async with self._customer_lock(event.phone):
                    return await self._receive(event)
            await self._report(event)  # type: ignore[arg-type]  # not a message, so a report
            return None
        except BaseException:
            if marked:
                try:
                    await self.state.release_processed(event.dedup_key)
                except Exception:  # the original error matters more; this one only costs the redelivery
                    log.exception("could not release %s: its redelivery will be ignored", event.dedup_key)
            raise

    def _customer_lock(self, phone: str) -> AbstractAsyncContextManager[int | None]:
        """One customer's traffic on this channel that can send: a message's turn and its sends, and whatever else
        sends to them here (a person's texts, a resend)."""
        return self.conversation.session_lock(f"{self.channel}:{phone}")

    def _is_message(self, event: M | R) -> TypeGuard[M]:
        return isinstance(event, self.message_type)

    def _ours(self, message: M) -> bool:
        """Whether the message was sent to us, not to another registration on the same ACS resource; a message that
        is not is logged and dropped before anything is marked or written. Every message, unless a channel says."""
        return True

    @abstractmethod
    async def _answered(self, message: M) -> bool:
        """Whether the record holds this message and everything it owes the customer has gone out."""

    @abstractmethod
    async def _receive(self, message: M) -> Received | None:
        """The message through the conversation and its answer out, under the customer's lock."""

    @abstractmethod
    async def _report(self, report: R) -> None:
        """How far one of our messages got, on the record."""
