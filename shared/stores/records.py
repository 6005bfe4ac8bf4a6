"""How a customer record is split for storage, written once for every CustomerStore adapter.

A record is one small document (identities, collected slots, summary, handoff, and the headers of its recent
sessions) plus one *body* per session (the transcript and the delivery log, with a copy of the header), stored
beside it in the same partition. This module decides, as pure functions of the record and the clock:

* which bodies come with the record when it is read (`bodies_to_load`): those a turn, a send or a delivery status
  can still touch. Other sessions come as headers whose turns refuse to be read (see shared/models.py);
* what a write sends (`plan_write`): the record, and only the bodies that changed since they were read, each with
  the version it was read at, so the adapter can make the whole write conditional and atomic;
* how the record stays bounded (at most `session_index_max` sessions listed; older closed ones age out of the list,
  their bodies kept for `session_retention_seconds`), and when an anonymous visitor's record expires.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from shared.models import Channel, ChannelSession, Customer, SessionStatus, TranscriptNotLoaded

#: After a WhatsApp session closes (handed to another channel), delivery statuses and Event Grid redeliveries still
#: name its messages for up to two days (Event Grid retries for 24 hours; the dedup mark lasts 48), so its body keeps
#: coming with the record that long.
DELIVERY_GRACE_SECONDS = 48 * 3600
#: Cosmos deletes expired items itself: records and bodies outlive their identity claims by this much, so an
#: identity is never left pointing at a record that is already gone.
EXPIRY_MARGIN_SECONDS = 3600


class SessionIdTaken(RuntimeError):
    """A new session's id already has a stored body for this customer: writing it would overwrite a transcript."""


@dataclass(frozen=True)
class RecordLimits:
    """How big a customer record may grow and how long what leaves it is kept (settings: shared/settings.py)."""

    #: Sessions a record lists at most. Active sessions always stay listed; the oldest closed ones age out.
    session_index_max: int = 20
    #: How long a closed session's body is kept after its last write (0: for ever).
    session_retention_seconds: float = 365 * 86400
    #: How long a web chat visitor who never says anything (and has no other identity) keeps a record.
    anonymous_ttl_seconds: float = 86400
    #: A voice or web chat session left active this long after its last turn is marked expired on the record's next
    #: write (nobody closes a browser tab for us). WhatsApp sessions stay open: the customer may write back any day.
    idle_session_seconds: float = 86400


@dataclass(frozen=True)
class Stored:
    """What a read (or the last write) saw of one session: its body's version and the JSON it held, or only its
    header when the body was not read."""

    version: str | None  # the body's version; None while only its header was read
    text: str | None = None  # the whole session's JSON, when the body was read
    header: tuple[Any, ...] | None = None  # the header's changeable fields (`_changeable`), when only it was read


@dataclass(frozen=True)
class BodyWrite:
    session_id: str
    doc: dict[str, Any]  # ChannelSession.to_dict()
    version: str | None  # replace only if the stored body is still at this version; None: create it
    expires_at: float | None  # epoch seconds after which the body may be deleted; None: kept


@dataclass
class WritePlan:
    record: dict[str, Any]  # Customer.to_dict()
    expires_at: float | None  # epoch seconds: an anonymous visitor's record expiry
    bodies: list[BodyWrite] = field(default_factory=list)
    texts: dict[str, str] = field(default_factory=dict)  # each listed loaded session's JSON, for `written`


def epoch(moment: str) -> float:
    return datetime.fromisoformat(moment).timestamp()


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="milliseconds")


def _text(doc: dict[str, Any]) -> str:
    return json.dumps(doc, sort_keys=True, ensure_ascii=False)


def expired(customer: Customer, now: float) -> bool:
    return customer.expires_at is not None and epoch(customer.expires_at) <= now


# Reading ----------------------------------------------------------------------------------------------------------


def bodies_to_load(customer: Customer, now: float) -> list[str]:
    """Ids of the listed sessions whose bodies a read fetches with the record: the ones still in use.

    Active sessions (turns, sends); the session the latest handoff left (its summary, and a client retrying the turn
    that asked for the handoff replays from it); WhatsApp sessions closed less than DELIVERY_GRACE_SECONDS ago (late
    delivery statuses and redeliveries). Anything older is read with `CustomerStore.get_session`.
    """
    handed_from = customer.handoff.from_session_id if customer.handoff else None
    wanted = []
    for session_id, session in customer.sessions.items():
        if session.loaded:
            continue  # written whole into an old-format record: it came with it
        if session.status is SessionStatus.ACTIVE or session_id == handed_from or (
            session.channel is Channel.WHATSAPP and now - epoch(session.updated_at) < DELIVERY_GRACE_SECONDS
        ):
            wanted.append(session_id)
    return wanted


def attach(customer: Customer, bodies: dict[str, tuple[dict[str, Any], str]]) -> Customer:
    """Put the bodies read (`session_id -> (doc, version)`) into the record and remember what was read.

    The record's header wins over the copy in the body: the record is written with every change, a body only when
    the session changed. A listed session sent for whose body is missing (never, with an atomic write) comes back
    empty rather than stopping the customer's conversation for good.
    """
    for session_id, session in list(customer.sessions.items()):
        if session.loaded:
            customer.stored.setdefault("sessions", {})  # an old-format record: its sessions are not stored apart yet
            continue
        if session_id in bodies:
            doc, version = bodies[session_id]
            whole = ChannelSession.from_dict({**doc, **session.header()})
            customer.sessions[session_id] = whole
            _remember(customer, session_id, Stored(version, _text(whole.to_dict())))
        else:
            _remember(customer, session_id, Stored(None, header=_changeable(session)))
    customer.stored["expires_at"] = customer.expires_at
    return customer


def _remember(customer: Customer, session_id: str, stored: Stored) -> None:
    customer.stored.setdefault("sessions", {})[session_id] = stored


def stored_sessions(customer: Customer) -> dict[str, Stored]:
    return customer.stored.get("sessions", {})


def headers_changed_unloaded(customer: Customer) -> list[str]:
    """Listed sessions whose body was not read but whose header a mutation changed: their bodies must be read (and
    rewritten with the new header) before the write, or the body's copy of the header would go stale."""
    stored = stored_sessions(customer)
    return [
        sid for sid, s in customer.sessions.items()
        if not s.loaded and sid in stored and stored[sid].header is not None and stored[sid].header != _changeable(s)
    ]


def _changeable(session: ChannelSession) -> tuple[Any, ...]:
    # A tuple, not the header dict: a record lists many sessions and every read snapshots them all.
    return (session.status, session.active_agent, session.updated_at, session.last_inbound_at, session.fence,
            session.verification, session.verified_phone, session.pending_verification)


def load_body(customer: Customer, session_id: str, doc: dict[str, Any], version: str) -> None:
    """Attach a body read after the record (for `headers_changed_unloaded`): its old JSON is what was stored, so
    the write sees the session as changed."""
    header = customer.sessions[session_id].header()
    customer.sessions[session_id] = ChannelSession.from_dict({**doc, **header})
    _remember(customer, session_id, Stored(version, _text(doc)))


# Writing ----------------------------------------------------------------------------------------------------------


def expire_idle(customer: Customer, limits: RecordLimits, now: float) -> None:
    """Mark voice and web chat sessions left active past `idle_session_seconds` expired (see RecordLimits)."""
    for session in customer.sessions.values():
        if session.status is not SessionStatus.ACTIVE or session.channel is Channel.WHATSAPP:
            continue
        if now - epoch(session.updated_at) > limits.idle_session_seconds:
            session.status, session.updated_at = SessionStatus.EXPIRED, iso(now)


def plan_write(customer: Customer, limits: RecordLimits, now: float, *, new: bool = False) -> WritePlan:
    """The record and the bodies to write, after settling the anonymous expiry and bounding the session list.

    Mutates `customer`: its expiry, its list of sessions (the oldest closed ones age out, counted in
    `archived_sessions`). Bodies are planned before the list is bounded, so a session that closes and ages out in
    the same write still has its body written.
    """
    _settle_expiry(customer, limits, now, new=new)
    record_expiry = epoch(customer.expires_at) if customer.expires_at else None
    forced = customer.stored.get("expires_at") is not None and customer.expires_at is None  # drop the bodies' TTL
    stored = stored_sessions(customer)
    plan = WritePlan(record={}, expires_at=record_expiry)
    for session_id, session in customer.sessions.items():
        prior = stored.get(session_id)
        if not session.loaded:
            if prior is None:  # a header-only session moved here from another record: its body is not ours to copy
                raise TranscriptNotLoaded(f"session {session_id!r} joined this record without its body")
            continue
        doc = session.to_dict()
        text = plan.texts[session_id] = _text(doc)
        if prior is not None and prior.version is not None and prior.text == text and not forced:
            continue
        plan.bodies.append(BodyWrite(
            session_id, doc, prior.version if prior is not None else None, _body_expiry(session, record_expiry, limits, now)
        ))
    _bound(customer, limits)
    plan.record = customer.to_dict()
    return plan


def written(customer: Customer, plan: WritePlan, version: str, body_versions: dict[str, str]) -> Customer:
    """Record a successful write on the customer: its new version, and what is now stored of each session."""
    customer.version = version
    stored = stored_sessions(customer)
    for session_id in list(stored):
        if session_id not in customer.sessions:
            del stored[session_id]  # aged out of the list
    for session_id, text in plan.texts.items():
        if session_id in customer.sessions:
            prior = stored.get(session_id)
            _remember(customer, session_id, Stored(body_versions.get(session_id, prior.version if prior else None), text))
    customer.stored["expires_at"] = customer.expires_at
    return customer


def _settle_expiry(customer: Customer, limits: RecordLimits, now: float, *, new: bool) -> None:
    if new and customer.anonymous and limits.anonymous_ttl_seconds > 0:
        customer.expires_at = iso(now + limits.anonymous_ttl_seconds)
    elif customer.expires_at is not None and not customer.anonymous:
        customer.expires_at = None  # they said something, or told us who they are: kept like any customer


def _body_expiry(session: ChannelSession, record_expiry: float | None, limits: RecordLimits, now: float) -> float | None:
    if record_expiry is not None:
        return record_expiry
    if session.status is not SessionStatus.ACTIVE and limits.session_retention_seconds > 0:
        return now + limits.session_retention_seconds
    return None


def _bound(customer: Customer, limits: RecordLimits) -> None:
    """Keep at most `session_index_max` sessions listed: every active one, the latest handoff's two, then the most
    recently updated closed ones. The rest age out; their bodies stay stored until their retention ends."""
    handoff = customer.handoff
    pinned = {handoff.from_session_id, handoff.to_session_id} if handoff else set()
    keep = {sid for sid, s in customer.sessions.items() if s.status is SessionStatus.ACTIVE or sid in pinned}
    closed = sorted((s for sid, s in customer.sessions.items() if sid not in keep), key=lambda s: s.updated_at,
                    reverse=True)
    for session in closed[max(0, limits.session_index_max - len(keep)):]:
        del customer.sessions[session.session_id]
        channel = session.channel.value
        customer.archived_sessions[channel] = customer.archived_sessions.get(channel, 0) + 1
