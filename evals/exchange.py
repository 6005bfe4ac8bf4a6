"""What one customer message got back, as the runner scores it, whichever stack and channel carried it."""

from __future__ import annotations

from dataclasses import dataclass, field
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from evals.journeys import Journey


@dataclass
class Exchange:
    heard: str  # what reached the customer: the reply's text, or on a call its audio transcribed
    said: str  # the agent's words as the record keeps them (on a call: what the speech synthesis was given)
    tools: set[str] = field(default_factory=set)  # tools whose result a reply gave
    switch_to: str | None = None  # the channel the customer accepted to move to in this turn
    escalated: bool = False  # the customer is with (or queued for) a person
    collected: dict[str, str] = field(default_factory=dict)  # the record's slots after the turn
    answered_at: float = 0.0  # monotonic time the reply reached the customer
    understood: str = ""  # what the agent took the customer to say (on a call: the gateway's speech-to-text)


class Leg(Protocol):
    """The customer's side of one channel session."""

    channel: str
    exact: bool  # False on a call: compare what was heard with a tolerance for speech-to-text errors
    opening: str  # what the agent said when the session opened (a greeting, a continuation)

    async def say(self, text: str) -> Exchange: ...

    async def known(self) -> dict[str, str]: ...

    async def close(self) -> None: ...


@dataclass
class Follow:
    """The customer picked up an accepted channel move on the new channel."""

    leg: Leg | None  # None: the new channel did not continue the conversation
    first: str = ""  # the first thing the agent said there
    seconds: float | None = None  # from the customer's acceptance to that first message
    why: str = ""  # when it failed


class Stage(Protocol):
    """One journey's stack, fresh for it: opens its sessions, follows its channel moves, proves who the customer is."""

    async def open(self, journey: Journey) -> Leg: ...

    async def follow(self, leg: Leg, to: str, journey: Journey, accepted_at: float) -> Follow: ...

    async def proof(self, asked: str, account: str, scenario: str) -> str: ...


class Driver(Protocol):
    """Builds a fresh stage per journey: the real stack as processes, or the conversation core in-process."""

    name: str

    def stage(self, journey: Journey) -> AbstractAsyncContextManager[Stage]: ...
