"""The customer's durable record and the pieces it is made of.

A customer is keyed by `customer_id` (the Cosmos partition key). Everything the agent learned (collected slots, the
conversation summary, the channel sessions) hangs off that one record, so a customer who moves from the phone to
WhatsApp or web chat finds it all there: nothing lives only on a session.

The record stays small however often the customer comes back: it lists its recent sessions by their headers (channel,
status, agent, timestamps), and each session's transcript and delivery log (its *body*) is stored beside it, in the
same partition. A session whose body was not loaded with the record (a closed one; see CustomerStore in
shared/stores/base.py for which are loaded and how to read the others) refuses any use of its `turns` or `messages`
with TranscriptNotLoaded, rather than passing for a session where nothing was said.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from enum import StrEnum
from typing import Any

#: Sessions keep their most recent turns; older ones are folded into the summary.
MAX_TURNS_PER_SESSION = 200
#: Messaging sessions keep the delivery log of their most recent messages (in and out).
MAX_MESSAGES_PER_SESSION = 400

_E164 = re.compile(r"^\+[1-9]\d{6,14}$")


class TranscriptNotLoaded(LookupError):
    """A closed session's transcript was used, but only its header came with the record: read the session with
    `CustomerStore.get_session`. A bug in the caller, never the customer's doing."""


class _NotLoaded(list):  # type: ignore[type-arg]
    """Stands in for the turns or the delivery log of a session whose body the record does not carry.

    Every use raises, so a caller that forgot to load the session finds out at once instead of reading "nothing was
    said" (which would, say, repeat a greeting, or skip a message as never received).
    """

    def __init__(self, session_id: str, what: str) -> None:
        self._session_id, self._what = session_id, what  # a record lists many: keep building one cheap

    @property
    def _where(self) -> str:
        return f"the {self._what} of session {self._session_id!r}"

    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise TranscriptNotLoaded(f"{self._where} did not come with the record; read the session with get_session")

    __iter__ = __len__ = __bool__ = __getitem__ = __setitem__ = __delitem__ = __contains__ = _refuse
    __reversed__ = __iadd__ = __eq__ = append = extend = insert = pop = remove = index = count = clear = _refuse
    copy = sort = reverse = __add__ = __mul__ = _refuse

    def __repr__(self) -> str:
        return f"<{self._where}: not loaded>"


def utcnow() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


class Channel(StrEnum):
    VOICE = "voice"
    WHATSAPP = "whatsapp"
    WEBCHAT = "webchat"
    SMS = "sms"


class SessionStatus(StrEnum):
    ACTIVE = "active"
    TRANSFERRED = "transferred"  # handed to another channel; the new session continues it
    COMPLETED = "completed"
    EXPIRED = "expired"


#: Enum lookups by value, for reading the many session headers a record lists (calling the enum is slower).
_CHANNELS: dict[str, Channel] = {c.value: c for c in Channel}
_STATUSES: dict[str, SessionStatus] = {s.value: s for s in SessionStatus}


class IdentityKind(StrEnum):
    PHONE = "phone"  # E.164, e.g. +15555550100
    WEBCHAT = "webchat"  # a browser session id, until the customer says who they are
    ACCOUNT = "account"  # the business's own account number


@dataclass(frozen=True)
class Identity:
    kind: IdentityKind
    value: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", IdentityKind(self.kind))
        if self.kind is IdentityKind.PHONE and not _E164.match(self.value):
            raise ValueError(f"phone identity must be E.164 (+ and 7-15 digits), got {self.value!r}")
        if not self.value:
            raise ValueError("identity value must not be empty")

    @property
    def key(self) -> str:
        """One string per identity; stores index on it."""
        return f"{self.kind.value}:{self.value}"

    @classmethod
    def parse(cls, key: str) -> Identity:
        kind, _, value = key.partition(":")
        return cls(IdentityKind(kind), value)


class Verification(StrEnum):
    """How sure we are who a session's customer is (docs/security.md, "Verifying customers")."""

    UNVERIFIED = "unverified"  # nothing says who it is (a new web chat)
    IDENTIFIED = "identified"  # we believe who it is (caller ID, an SMS sender): both can be spoofed
    VERIFIED = "verified"  # a second factor passed, or a channel that authenticates its sender (WhatsApp)

    @property
    def rank(self) -> int:
        return _VERIFICATION_RANK[self]

    def at_least(self, other: Verification) -> bool:
        return self.rank >= other.rank


_VERIFICATION_RANK = {Verification.UNVERIFIED: 0, Verification.IDENTIFIED: 1, Verification.VERIFIED: 2}
#: How many audit entries a session keeps (the latest last). They live in the session's body, stored apart from the
#: record, so a customer's long history does not weigh on every turn; a session of 200 turns writes far fewer.
MAX_AUDIT_PER_SESSION = 400
#: How many promised texts a record remembers (the latest last); the sent ones go first when it is full.
MAX_PROMISES = 20
#: How many post-conversation syntheses a record keeps (the latest last; shared/synthesis.py).
MAX_SYNTHESES = 20


@dataclass
class Turn:
    role: str  # "customer" or "agent"
    text: str
    agent: str | None = None  # which agent spoke (or was active when the customer spoke)
    at: str = field(default_factory=utcnow)
    tool: str | None = None  # agent turns: the tool whose result this reply gives (summaries quote these)
    # Customer turns, and a person's at the desk: the client's idempotency key, so a retried request runs no second
    # turn (or saves the person's message once).
    key: str | None = None
    # Customer turns: the channel they accepted to move to, so a retried request starts the handoff the first one
    # promised but may have failed to start.
    switch_to: str | None = None
    # Agent turns written by a person at the desk (`agent` is then their display name), not by an AI agent.
    person: bool = False

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for optional in ("tool", "key", "switch_to"):
            if data[optional] is None:
                del data[optional]
        if not self.person:
            del data["person"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Turn:
        return cls(
            role=data["role"], text=data["text"], agent=data.get("agent"), at=data.get("at") or utcnow(),
            tool=data.get("tool"), key=data.get("key"), switch_to=data.get("switch_to"),
            person=bool(data.get("person", False)),
        )


class Delivery(StrEnum):
    """Where a message on a messaging channel (WhatsApp) stands. Outbound ones move forward, never back."""

    RECEIVED = "received"  # inbound: the customer's message reached us
    PENDING = "pending"  # outbound: decided, not yet accepted by the channel
    HELD = "held"  # outbound: outside the customer-service window; goes out when the customer writes again
    ACCEPTED = "accepted"  # the channel took it and gave it an id
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    FAILED = "failed"  # `error` says why; a permanent send failure or the channel's failed status
    SUPERSEDED = "superseded"  # outbound: never sent, because the same text was already on its way (`error` says which)


@dataclass
class ChannelMessage:
    """One message on a messaging channel, in the session's delivery log.

    The turns say what was said; the log says what travelled: the channel's message ids (which delivery status
    events refer to), the repeatability key of each send, and how far each message got.
    """

    key: str  # inbound: the channel's message id; outbound: our repeatability id for the send
    direction: str  # "in" or "out"
    kind: str  # text, template, image, audio, button, ...
    text: str  # the text, caption, template name or button title ("" when there is none)
    status: Delivery
    message_id: str | None = None  # the channel's id: the inbound message's, or the receipt of an outbound send
    reply_to: str | None = None  # outbound: the inbound message id it answers
    error: str | None = None
    switch_to: str | None = None  # inbound: the channel the customer agreed, in answer to it, to move to
    at: str = field(default_factory=utcnow)
    updated_at: str = field(default_factory=utcnow)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "status": self.status.value}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ChannelMessage:
        return cls(**{**data, "status": Delivery(data["status"])})


@dataclass
class ChannelSession:
    session_id: str
    channel: Channel
    status: SessionStatus = SessionStatus.ACTIVE
    active_agent: str | None = None
    started_at: str = field(default_factory=utcnow)
    updated_at: str = field(default_factory=utcnow)
    turns: list[Turn] = field(default_factory=list)
    # Messaging channels only: when the customer last wrote (opens WhatsApp's 24-hour window) and the delivery log.
    last_inbound_at: str | None = None
    messages: list[ChannelMessage] = field(default_factory=list)
    # The fencing token of the last turn lease that wrote here (shared/session_lock.py): a stale holder's write,
    # one whose token is lower, is refused.
    fence: int = 0
    # Who the customer has shown they are: the level, for whose phone number on record, and how (shared/verification).
    verification: Verification = Verification.UNVERIFIED
    verified_phone: str | None = None
    verified_by: str | None = None
    # A verification the agent asked for and is waiting on: {"method", "phone", "question", "agent", "tool"}.
    pending_verification: dict[str, Any] | None = None
    # Body: each disclosure of account data and each verification step in this session (add_audit). Kept with the
    # transcript, not on the record, so the record a turn reads stays small however many sessions came before.
    audit: list[dict[str, Any]] = field(default_factory=list)

    def verified_for(self, phone: str | None, level: Verification) -> bool:
        """Whether this session may see what needs `level` about the account whose number on record is `phone`."""
        if not level.at_least(Verification.IDENTIFIED):
            return True
        return phone is not None and self.verified_phone == phone and self.verification.at_least(level)

    def raise_verification(self, level: Verification, phone: str, by: str) -> None:
        """Record what the customer proved; never lowers what this session already holds for the same number."""
        if self.verified_phone == phone and self.verification.at_least(level):
            return
        self.verification, self.verified_phone, self.verified_by = level, phone, by

    def add_turn(self, turn: Turn) -> None:
        self.turns.append(turn)
        del self.turns[:-MAX_TURNS_PER_SESSION]
        self.updated_at = turn.at

    def answered(self, key: str) -> list[Turn] | None:
        """The agent turns that answered the customer turn sent under idempotency `key`; None if no turn has it."""
        for index, turn in enumerate(self.turns):
            if turn.role == "customer" and turn.key == key:
                replies = []
                for later in self.turns[index + 1:]:
                    if later.role != "agent":
                        break
                    replies.append(later)
                return replies
        return None

    def add_audit(self, event: str, **details: Any) -> None:
        # `who`: the number the session stood for when it happened, and how it was shown (caller ID, a code, ...):
        # what a person at the desk needs to tell the account holder from someone who only knew their number.
        entry = {"at": utcnow(), "event": event, "channel": self.channel.value, "session_id": self.session_id,
                 "who": self.verified_phone, "shown_by": self.verified_by, **details}
        self.audit.append({k: v for k, v in entry.items() if v is not None})
        del self.audit[:-MAX_AUDIT_PER_SESSION]

    def add_message(self, message: ChannelMessage) -> None:
        self.messages.append(message)
        del self.messages[:-MAX_MESSAGES_PER_SESSION]

    def message(self, *, key: str | None = None, message_id: str | None = None) -> ChannelMessage | None:
        """The logged message with this key or channel message id, newest first."""
        for message in reversed(self.messages):
            if key is not None and message.key == key:
                return message
            if message_id is not None and message.message_id == message_id:
                return message
        return None

    @property
    def loaded(self) -> bool:
        """Whether the body (transcript, delivery log, audit) came with the record (always, for a session made here)."""
        return not isinstance(self.turns, _NotLoaded)

    def header(self) -> dict[str, Any]:
        """What the customer record lists about this session: everything but the body (transcript, delivery log,
        audit)."""
        return {  # the enums as they are: they are strings, and a record lists many headers, so this stays cheap
            "session_id": self.session_id,
            "channel": self.channel,
            "status": self.status,
            "active_agent": self.active_agent,
            "started_at": self.started_at,
            "updated_at": self.updated_at,
            "last_inbound_at": self.last_inbound_at,
            "fence": self.fence,
            "verification": self.verification,
            "verified_phone": self.verified_phone,
            "verified_by": self.verified_by,
            "pending_verification": self.pending_verification,
        }

    def to_dict(self) -> dict[str, Any]:
        """The whole session, header and body (raises TranscriptNotLoaded if the body was not loaded)."""
        return {
            **self.header(),
            "turns": [t.to_dict() for t in self.turns],
            "messages": [m.to_dict() for m in self.messages],
            "audit": list(self.audit),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ChannelSession:
        session = cls.from_header(data)
        session.turns = [Turn.from_dict(t) for t in data.get("turns", [])]
        session.messages = [ChannelMessage.from_dict(m) for m in data.get("messages", [])]
        session.audit = list(data.get("audit") or [])
        return session

    @classmethod
    def from_header(cls, data: dict[str, Any]) -> ChannelSession:
        """A session known by its header only: its turns and messages refuse to be used until a store loads them."""
        session_id = data["session_id"]
        # Filled in directly rather than through __init__: a record lists many sessions, and each read makes them all.
        session = cls.__new__(cls)
        session.__dict__.update(
            session_id=session_id,
            channel=_CHANNELS.get(data["channel"]) or Channel(data["channel"]),
            status=_STATUSES.get(data.get("status", "active")) or SessionStatus(data["status"]),
            active_agent=data.get("active_agent"),
            started_at=data.get("started_at") or utcnow(),
            updated_at=data.get("updated_at") or utcnow(),
            turns=_NotLoaded(session_id, "turns"),
            last_inbound_at=data.get("last_inbound_at"),
            messages=_NotLoaded(session_id, "delivery log"),
            audit=_NotLoaded(session_id, "audit"),
            fence=int(data.get("fence", 0)),
            verification=Verification(data.get("verification") or Verification.UNVERIFIED),
            verified_phone=data.get("verified_phone"),
            verified_by=data.get("verified_by"),
            pending_verification=data.get("pending_verification"),
        )
        return session


class HandoffStatus(StrEnum):
    STARTED = "started"  # the customer accepted; the orchestration is summarising and saving the context
    INVITED = "invited"  # the invitation went out on the new channel; waiting for the customer
    REMINDED = "reminded"
    ENGAGED = "engaged"  # the customer wrote on the new channel: the conversation continues there
    EXPIRED = "expired"  # nobody came; the context stays on the record for next time
    FAILED = "failed"  # a step kept failing past its retries (the invite could not go out); the context stays
    MOVED = "moved"  # it continues on another record (`moved_to`, the phone number's owner), which drives it from now


@dataclass
class Handoff:
    """A move from one channel to another, as the customer record remembers it (the orchestration drives it)."""

    instance_id: str  # the Durable orchestration's id
    from_session_id: str
    from_channel: Channel
    to_channel: Channel
    status: HandoffStatus = HandoffStatus.STARTED
    started_at: str = field(default_factory=utcnow)
    updated_at: str = field(default_factory=utcnow)
    to_session_id: str | None = None  # the session that continued it, once engaged
    traceparent: str | None = None  # W3C trace context of the handoff's start: the new channel's turn continues it
    moved_to: str | None = None  # MOVED: the customer record the handoff continues on
    # WhatsApp's message id of each step sent there (invite, reminder) -> the step: a `failed` status that arrives
    # later names the message, and a web chat link whose WhatsApp message failed then goes by SMS instead.
    whatsapp_sent: dict[str, str] = field(default_factory=dict)
    texted: list[str] = field(default_factory=list)  # the steps whose link went by SMS after WhatsApp failed late

    @property
    def open(self) -> bool:
        return self.status in (HandoffStatus.STARTED, HandoffStatus.INVITED, HandoffStatus.REMINDED)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "from_channel": self.from_channel.value, "to_channel": self.to_channel.value,
                "status": self.status.value}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Handoff:
        return cls(**{**data, "from_channel": Channel(data["from_channel"]), "to_channel": Channel(data["to_channel"]),
                      "status": HandoffStatus(data["status"])})


class EscalationStatus(StrEnum):
    WAITING = "waiting"  # in the queue for a person
    CONNECTING = "connecting"  # voice: being transferred to the person it was routed to
    WITH_PERSON = "with_person"  # a person claimed it and is talking with the customer
    RETURNED = "returned"  # the person handed the customer back to the AI
    CLOSED = "closed"  # the person closed it, with a disposition
    ABANDONED = "abandoned"  # the customer left before a person came
    WITHDRAWN = "withdrawn"  # the customer took another way (another channel, a callback) instead of waiting


#: The statuses in which the customer is the desk's, not the AI's.
OPEN_ESCALATION = frozenset({EscalationStatus.WAITING, EscalationStatus.CONNECTING, EscalationStatus.WITH_PERSON})
#: How many escalations a record remembers (the latest last).
MAX_ESCALATIONS = 10


@dataclass
class Escalation:
    """A customer handed to the people at the desk, as the customer record remembers it (shared/desk.py)."""

    escalation_id: str
    session_id: str  # the session the customer asked from; the person talks to them there
    channel: Channel
    reason: str  # in words a person reads: "asked for a person", "safety: gas smell", ...
    summary: str = ""  # what the AI had done so far, one paragraph
    status: EscalationStatus = EscalationStatus.WAITING
    created_at: str = field(default_factory=utcnow)
    updated_at: str = field(default_factory=utcnow)
    agent_id: str | None = None  # the person who has it (claimed, or the call was routed to)
    agent_name: str | None = None
    claimed_at: str | None = None
    ended_at: str | None = None  # returned, closed, abandoned or withdrawn
    disposition: str | None = None  # CLOSED: the outcome the person chose ("resolved", "follow_up", ...)
    note: str | None = None  # CLOSED or RETURNED: the person's note for the record
    callback: str | None = None  # WITHDRAWN for a callback: the number to call (the outbound work places it)

    @property
    def open(self) -> bool:
        return self.status in OPEN_ESCALATION

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "channel": self.channel.value, "status": self.status.value}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Escalation:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**{**known, "channel": Channel(data["channel"]), "status": EscalationStatus(data["status"])})


@dataclass
class Customer:
    customer_id: str
    identities: list[Identity] = field(default_factory=list)
    # The sessions the record lists (the recent ones; see CustomerStore for which come with their bodies), by id.
    sessions: dict[str, ChannelSession] = field(default_factory=dict)
    collected: dict[str, str] = field(default_factory=dict)  # slot name -> value, e.g. account_number
    summary: str = ""
    # The Foundry policy's conversation for this customer's engagement, across channels (shared/policies/foundry.py),
    # and the items it has not received yet (turns answered while Foundry was unreachable), oldest first.
    foundry_thread_id: str | None = None
    foundry_backlog: list[dict[str, Any]] = field(default_factory=list)
    handoff: Handoff | None = None  # the latest channel move, if any
    escalations: list[Escalation] = field(default_factory=list)  # to people at the desk, the latest last
    # Audit entries of records written before the audit moved into the session bodies (ChannelSession.audit): kept
    # as read, never added to. CustomerStore.audit merges them with the sessions'.
    legacy_audit: list[dict[str, Any]] = field(default_factory=list)
    # Texts an agent promised to send when something happens (shared/sms/promises.py): {"kind", "ref", "at",
    # "session_id", "sent_at", "message_id", "error"}; e.g. kind "outage_restored", ref "OUT-4471".
    promises: list[dict[str, Any]] = field(default_factory=list)
    # The customer texted STOP (or another opt-out word): when, and in which message. No SMS goes to them until they
    # text START. None: they may be texted.
    sms_opt_out: dict[str, str] | None = None
    # What each ended conversation came to, one per ended session (shared/synthesis.py), the latest last.
    syntheses: list[dict[str, Any]] = field(default_factory=list)
    # Calls back the customer asked for instead of waiting (shared/callbacks.py), the latest last.
    callbacks: list[dict[str, Any]] = field(default_factory=list)
    created_at: str = field(default_factory=utcnow)
    updated_at: str = field(default_factory=utcnow)
    # Sessions per channel that have aged out of `sessions` (their bodies are archived, then expire). Store-owned.
    archived_sessions: dict[str, int] = field(default_factory=dict)
    # An anonymous visitor's record (a web chat identity only, nothing said yet) is deleted at this time (ISO UTC);
    # None once the customer says something or gains another identity. Store-owned.
    expires_at: str | None = None
    # Concurrency token owned by the store: an integer version in SQLite, the ETag in Cosmos. Callers never set it.
    version: str | None = None
    # What the store read, so that a write sends only the session bodies that changed. Store-owned.
    stored: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def new(cls, *identities: Identity) -> Customer:
        return cls(customer_id=new_id("cus"), identities=list(identities))

    def has_identity(self, identity: Identity) -> bool:
        return identity in self.identities

    def add_identity(self, identity: Identity) -> None:
        if identity not in self.identities:
            self.identities.append(identity)

    @property
    def escalation(self) -> Escalation | None:
        """The latest escalation, if any."""
        return self.escalations[-1] if self.escalations else None

    def open_escalation(self, session_id: str) -> Escalation | None:
        """The escalation that has this session's customer with the desk now, if any."""
        latest = self.escalation
        return latest if latest is not None and latest.open and latest.session_id == session_id else None

    def find_escalation(self, escalation_id: str) -> Escalation | None:
        return next((e for e in self.escalations if e.escalation_id == escalation_id), None)

    def add_promise(self, kind: str, ref: str, session: ChannelSession) -> bool:
        """Remember a text we promised; False if the same one is already waiting to go (a customer asking twice
        about one outage is texted once)."""
        if any(p["kind"] == kind and p["ref"] == ref and not (p.get("sent_at") or p.get("error"))
               for p in self.promises):
            return False
        self.promises.append({"kind": kind, "ref": ref, "at": utcnow(), "channel": session.channel.value,
                              "session_id": session.session_id})
        while len(self.promises) > MAX_PROMISES:
            done = next((i for i, p in enumerate(self.promises) if p.get("sent_at") or p.get("error")), 0)
            del self.promises[done]
        return True

    def promise(self, kind: str, ref: str) -> dict[str, Any] | None:
        """The latest promise of this kind about `ref`, sent or not."""
        return next((p for p in reversed(self.promises) if p["kind"] == kind and p["ref"] == ref), None)

    def add_escalation(self, escalation: Escalation) -> None:
        self.escalations.append(escalation)
        del self.escalations[:-MAX_ESCALATIONS]

    def session(self, session_id: str) -> ChannelSession:
        return self.sessions[session_id]

    def session_count(self, channel: Channel) -> int:
        """How many sessions this customer has had on `channel`, those aged out of the record included."""
        listed = sum(1 for s in self.sessions.values() if s.channel is channel)
        return listed + self.archived_sessions.get(channel.value, 0)

    @property
    def anonymous(self) -> bool:
        """A web chat visitor we know nothing about: no identity but a browser session, and no word said yet."""
        if not self.identities or any(i.kind is not IdentityKind.WEBCHAT for i in self.identities):
            return False
        return not any(s.loaded and any(t.role == "customer" for t in s.turns) for s in self.sessions.values())

    def to_dict(self) -> dict[str, Any]:
        """The stored record (also what Cosmos keeps; `id` doubles the key because Cosmos needs one): the sessions
        by their headers only, their bodies being stored apart."""
        return {
            "id": self.customer_id,
            "customer_id": self.customer_id,
            "identities": [i.key for i in self.identities],
            "sessions": {sid: s.header() for sid, s in self.sessions.items()},
            "archived_sessions": dict(self.archived_sessions),
            "collected": dict(self.collected),
            "summary": self.summary,
            **({"foundry_thread_id": self.foundry_thread_id} if self.foundry_thread_id else {}),
            **({"foundry_backlog": list(self.foundry_backlog)} if self.foundry_backlog else {}),
            "handoff": self.handoff.to_dict() if self.handoff else None,
            "escalations": [e.to_dict() for e in self.escalations],
            **({"audit": list(self.legacy_audit)} if self.legacy_audit else {}),
            "promises": list(self.promises),
            "sms_opt_out": self.sms_opt_out,
            **({"syntheses": list(self.syntheses)} if self.syntheses else {}),
            **({"callbacks": list(self.callbacks)} if self.callbacks else {}),
            "expires_at": self.expires_at,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], version: str | None = None) -> Customer:
        """Read a stored record. A record written before sessions had bodies of their own carries each session
        whole (with "turns"): those come back loaded, and the store splits them off on the record's next write."""
        sessions = {
            sid: ChannelSession.from_dict(s) if "turns" in s else ChannelSession.from_header(s)
            for sid, s in data.get("sessions", {}).items()
        }
        return cls(
            customer_id=data["customer_id"],
            identities=[Identity.parse(k) for k in data.get("identities", [])],
            sessions=sessions,
            collected=dict(data.get("collected", {})),
            summary=data.get("summary", ""),
            foundry_thread_id=data.get("foundry_thread_id"),
            foundry_backlog=list(data.get("foundry_backlog") or []),
            handoff=Handoff.from_dict(data["handoff"]) if data.get("handoff") else None,
            escalations=[Escalation.from_dict(e) for e in data.get("escalations") or []],
            legacy_audit=list(data.get("audit") or []),
            promises=list(data.get("promises") or []),
            sms_opt_out=data.get("sms_opt_out"),
            syntheses=list(data.get("syntheses") or []),
            callbacks=list(data.get("callbacks") or []),
            archived_sessions=dict(data.get("archived_sessions") or {}),
            expires_at=data.get("expires_at"),
            created_at=data.get("created_at") or utcnow(),
            updated_at=data.get("updated_at") or utcnow(),
            version=version,
        )
