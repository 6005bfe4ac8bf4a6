"""The WhatsApp delivery log on a ChannelSession: what we owe the customer, what went out, and the 24-hour window.

WhatsApp lets a business send free text only within 24 hours of the customer's last message
(docs/protocols.md, "24-hour window"). Replies decided outside that window are *held*, and one approved template goes
out instead to invite the customer back; their next message reopens the window and releases what was held, before the
answer to that message.

One inbound message never sends the same words twice. What it queues (the held replies it releases, then its own
answer) holds each text once: held answers to an earlier question and the answer to the customer asking it again
would say the same thing. A text refused for the window is not resent if the same words went out after it was
decided. The copy that is not sent stays on the log as SUPERSEDED, naming the one that went instead.

Every function here is a pure function of the session and the clock passed in: they run inside optimistic-
concurrency writes, which may apply them more than once.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

from shared.models import ChannelMessage, ChannelSession, Delivery
from shared.whatsapp.events import DeliveryStatus, InboundMessage

WINDOW = timedelta(hours=24)
#: The channel code of a free-form message sent outside the window ("Re-engagement message").
OUTSIDE_WINDOW = "131047"
#: Outbound statuses only move forward; FAILED is final.
_RANK = {Delivery.PENDING: 0, Delivery.HELD: 0, Delivery.ACCEPTED: 1, Delivery.SENT: 2, Delivery.DELIVERED: 3,
         Delivery.READ: 4}
#: An outbound message in one of these is with the customer, or will be.
_GOING = (Delivery.PENDING, Delivery.ACCEPTED, Delivery.SENT, Delivery.DELIVERED, Delivery.READ)
#: Namespace of our repeatability ids, so the same inbound message and reply index always give the same id.
_SEND_IDS = uuid.UUID("5f1d3c2e-8a47-4f0e-9d61-2b7c4e9a0f13")


def send_key(*parts: str) -> str:
    """A deterministic UUID for one send: a retried handler sends under the same id, which ACS recognises."""
    return str(uuid.uuid5(_SEND_IDS, ":".join(parts)))


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds")


def window_open(session: ChannelSession, now: datetime) -> bool:
    """Whether free text may go out now: the customer wrote less than 24 hours ago."""
    if session.last_inbound_at is None:
        return False
    return now - datetime.fromisoformat(session.last_inbound_at) < WINDOW


def owed(session: ChannelSession) -> list[ChannelMessage]:
    """Outbound messages decided but not yet accepted by the channel, oldest first."""
    return [m for m in session.messages if m.direction == "out" and m.status is Delivery.PENDING]


def record_exchange(
    session: ChannelSession, inbound: InboundMessage, replies: list[str], template: str, now: datetime
) -> None:
    """Log an inbound message and the replies it earned (to go out now, or held until the window reopens)."""
    if session.message(key=inbound.message_id) is not None:
        return  # logged by an earlier write of this same message
    stamp = iso(now)
    received = iso(inbound.received_at)
    session.add_message(ChannelMessage(
        key=inbound.message_id, direction="in", kind=inbound.kind, text=inbound.text or inbound.detail,
        status=Delivery.RECEIVED, message_id=inbound.message_id, at=received, updated_at=stamp,
    ))
    if session.last_inbound_at is None or inbound.received_at > datetime.fromisoformat(session.last_inbound_at):
        session.last_inbound_at = received  # a late redelivery of an older message must not move the window back

    in_window = window_open(session, now)
    queued: dict[str, ChannelMessage] = {}  # text -> the message this inbound one sends it in
    if in_window:  # what was held goes first, oldest first, then this message's answer
        for message in [m for m in session.messages if m.direction == "out" and m.status is Delivery.HELD]:
            _queue_once(message, queued, stamp)
    for index, text in enumerate(replies):
        reply = ChannelMessage(
            key=send_key(inbound.message_id, str(index)), direction="out", kind="text", text=text,
            status=Delivery.HELD, reply_to=inbound.message_id, at=stamp, updated_at=stamp,
        )
        session.add_message(reply)
        if in_window:
            _queue_once(reply, queued, stamp)
    if replies and not in_window:
        _invite_back(session, inbound.message_id, template, stamp)


def record_person(session: ChannelSession, texts: list[str], keys: list[str], template: str, now: datetime) -> None:
    """Log what a person at the desk wrote to the customer, one text per key (the sends' repeatability ids).

    Inside the window the texts go out now; outside it they are held and the template invites the customer back, as
    for the AI's replies: the customer's next message releases them. A key already logged is not logged again.
    """
    stamp = iso(now)
    in_window = window_open(session, now)
    logged = []
    for key, text in zip(keys, texts, strict=True):
        if session.message(key=key) is not None:
            continue
        session.add_message(ChannelMessage(
            key=key, direction="out", kind="text", text=text,
            status=Delivery.PENDING if in_window else Delivery.HELD, at=stamp, updated_at=stamp,
        ))
        logged.append(key)
    if logged and not in_window:
        _invite_back(session, logged[0], template, stamp)


def record_send(session: ChannelSession, key: str, message_id: str | None, error: str | None, now: datetime) -> None:
    """The outcome of sending the pending message `key`: accepted with the channel's id, or failed for good."""
    message = session.message(key=key)
    if message is None or message.status is not Delivery.PENDING:
        return
    if message_id is not None:
        message.status, message.message_id = Delivery.ACCEPTED, message_id
    else:
        message.status, message.error = Delivery.FAILED, error
    message.updated_at = iso(now)


def record_status(session: ChannelSession, update: DeliveryStatus, template: str, now: datetime) -> bool:
    """Apply a delivery status to the message it is about. False if this session never sent that message.

    A text that fails because the window had closed (by WhatsApp's clock, if not ours) is sent again under a new
    key: at once if the customer has written since it was decided (their message reopened the window), otherwise
    held, with the template going out in its place.
    """
    message = session.message(message_id=update.message_id)
    if message is None or message.direction != "out":
        return False
    if message.status is Delivery.FAILED or update.status in ("warning", "unknown"):
        return True  # final already, or nothing to change
    stamp = iso(now)
    if update.status == "failed":
        message.status, message.error, message.updated_at = Delivery.FAILED, update.error or "failed", stamp
        if update.error_code == OUTSIDE_WINDOW and message.kind == "text":
            again = send_key(message.key, "again")
            if session.message(key=again) is None:
                resend = ChannelMessage(
                    key=again, direction="out", kind="text", text=message.text, status=Delivery.HELD,
                    reply_to=message.reply_to, at=stamp, updated_at=stamp,
                )
                session.add_message(resend)
                if (twin := _sent_since(session, message)) is not None:
                    _supersede(resend, twin, stamp)
                elif (session.last_inbound_at or "") > message.at:
                    resend.status, resend.updated_at = Delivery.PENDING, stamp
                else:
                    _invite_back(session, message.key, template, stamp)
        return True
    new = Delivery(update.status)
    if _RANK[new] > _RANK.get(message.status, 0):
        message.status, message.updated_at = new, stamp
    return True


def _queue_once(message: ChannelMessage, queued: dict[str, ChannelMessage], stamp: str) -> None:
    """Let a held text go out with what this inbound message sends, unless the same words already go with it."""
    twin = queued.get(message.text) if message.kind == "text" else None
    if twin is not None:
        _supersede(message, twin, stamp)
        return
    message.status, message.updated_at = Delivery.PENDING, stamp
    queued[message.text] = message


def _sent_since(session: ChannelSession, failed: ChannelMessage) -> ChannelMessage | None:
    """A text with the failed one's words, decided after it and with the customer (or on its way)."""
    for other in session.messages:
        if (other is not failed and other.direction == "out" and other.kind == "text" and other.text == failed.text
                and other.status in _GOING and other.at > failed.at):
            return other
    return None


def _supersede(message: ChannelMessage, twin: ChannelMessage, stamp: str) -> None:
    message.status, message.error = Delivery.SUPERSEDED, f"the same text went out as {twin.key}"
    message.updated_at = stamp


def _invite_back(session: ChannelSession, cause: str, template: str, stamp: str) -> None:
    """Queue the approved template, unless one is already on its way since the customer last wrote."""
    since = session.last_inbound_at or ""
    for message in session.messages:
        if message.kind == "template" and message.status is not Delivery.FAILED and message.at >= since:
            return
    key = send_key(cause, "template")
    if session.message(key=key) is None:
        session.add_message(ChannelMessage(
            key=key, direction="out", kind="template", text=template, status=Delivery.PENDING, reply_to=cause,
            at=stamp, updated_at=stamp,
        ))
