"""The customer's durable record and the pieces it is made of.

A customer is keyed by `customer_id` (the Cosmos partition key). Everything the agent learned (collected slots, the
conversation summary, every channel session with its transcript) hangs off that one record, so a customer who moves
from the phone to WhatsApp or web chat finds it all there: nothing lives only on a session.
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

_E164 = re.compile(r"^\+[1-9]\d{6,14}$")


def utcnow() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


class Channel(StrEnum):
    VOICE = "voice"
    WHATSAPP = "whatsapp"
    WEBCHAT = "webchat"


class SessionStatus(StrEnum):
    ACTIVE = "active"
    TRANSFERRED = "transferred"  # handed to another channel; the new session continues it
    COMPLETED = "completed"
    EXPIRED = "expired"


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


@dataclass
class Turn:
    role: str  # "customer" or "agent"
    text: str
    agent: str | None = None  # which agent spoke (or was active when the customer spoke)
    at: str = field(default_factory=utcnow)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Turn:
        return cls(role=data["role"], text=data["text"], agent=data.get("agent"), at=data.get("at") or utcnow())


@dataclass
class ChannelSession:
    session_id: str
    channel: Channel
    status: SessionStatus = SessionStatus.ACTIVE
    active_agent: str | None = None
    started_at: str = field(default_factory=utcnow)
    updated_at: str = field(default_factory=utcnow)
    turns: list[Turn] = field(default_factory=list)

    def add_turn(self, turn: Turn) -> None:
        self.turns.append(turn)
        del self.turns[:-MAX_TURNS_PER_SESSION]
        self.updated_at = turn.at

    def to_dict(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "channel": self.channel.value,
            "status": self.status.value,
            "active_agent": self.active_agent,
            "started_at": self.started_at,
            "updated_at": self.updated_at,
            "turns": [t.to_dict() for t in self.turns],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ChannelSession:
        return cls(
            session_id=data["session_id"],
            channel=Channel(data["channel"]),
            status=SessionStatus(data.get("status", SessionStatus.ACTIVE)),
            active_agent=data.get("active_agent"),
            started_at=data.get("started_at") or utcnow(),
            updated_at=data.get("updated_at") or utcnow(),
            turns=[Turn.from_dict(t) for t in data.get("turns", [])],
        )


@dataclass
class Customer:
    customer_id: str
    identities: list[Identity] = field(default_factory=list)
    sessions: dict[str, ChannelSession] = field(default_factory=dict)
    collected: dict[str, str] = field(default_factory=dict)  # slot name -> value, e.g. account_number
    summary: str = ""
    created_at: str = field(default_factory=utcnow)
    updated_at: str = field(default_factory=utcnow)
    # Concurrency token owned by the store: an integer version in SQLite, the ETag in Cosmos. Callers never set it.
    version: str | None = None

    @classmethod
    def new(cls, *identities: Identity) -> Customer:
        return cls(customer_id=new_id("cus"), identities=list(identities))

    def has_identity(self, identity: Identity) -> bool:
        return identity in self.identities

    def add_identity(self, identity: Identity) -> None:
        if identity not in self.identities:
            self.identities.append(identity)

    def session(self, session_id: str) -> ChannelSession:
        return self.sessions[session_id]

    def to_dict(self) -> dict[str, Any]:
        """The stored document (also what Cosmos keeps; `id` doubles the key because Cosmos needs one)."""
        return {
            "id": self.customer_id,
            "customer_id": self.customer_id,
            "identities": [i.key for i in self.identities],
            "sessions": {sid: s.to_dict() for sid, s in self.sessions.items()},
            "collected": dict(self.collected),
            "summary": self.summary,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], version: str | None = None) -> Customer:
        return cls(
            customer_id=data["customer_id"],
            identities=[Identity.parse(k) for k in data.get("identities", [])],
            sessions={sid: ChannelSession.from_dict(s) for sid, s in data.get("sessions", {}).items()},
            collected=dict(data.get("collected", {})),
            summary=data.get("summary", ""),
            created_at=data.get("created_at") or utcnow(),
            updated_at=data.get("updated_at") or utcnow(),
            version=version,
        )
