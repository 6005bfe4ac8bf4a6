"""The Policy port: who decides what the active agent says and does on a customer turn.

A policy sees a TurnContext (the scenario, the active agent, what the record already knows, the transcript) and
yields events: text deltas of the agent's reply, and at most one handoff request, after which it stops. Streaming
is the contract so voice can speak the first clause before the reply is finished; text channels just join deltas.

Tools run only through `TurnContext.call_tool`, which is where "never ask twice" is enforced for every policy: known
slots are filled in from the record, slots a tool learns are written back, and a tool whose requirement is still
unmet is not run; the policy gets the question to ask instead.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, AsyncIterator

from shared.models import Customer, Turn, Verification
from shared.router import SwitchDecision
from shared.scenario import AgentSpec, Holder, Requirement, Scenario, ScenarioData, ToolResult

if TYPE_CHECKING:
    from shared.synthesis import Ended, Synthesis


class VerificationNeeded(Exception):
    """A tool needs the customer to prove who they are first. Raised by `TurnContext.call_tool` before the tool
    runs; policies let it pass, and the conversation core asks the customer to verify, then answers the question
    they asked (shared/conversation.py). `holder` is None when the account named does not exist: the customer is
    asked the same way, so nobody learns whether an account exists by asking about it."""

    def __init__(self, tool: str, holder: Holder | None, level: Verification, named: str = "",
                 account: dict[str, Any] | None = None) -> None:
        super().__init__(f"{tool} needs a {level.value} customer")
        self.tool, self.holder, self.level = tool, holder, level
        self.named = named  # what the arguments name the account by, for one that does not exist
        # The arguments that name the account ({"policy_number": "LM-482913"}): the scenario's HOLDER finds its
        # holder again from them when the customer answers.
        self.account = dict(account or {})
        self.said: list[Any] = []  # the replies the turn had given before the check (the core fills it in)


@dataclass(frozen=True)
class TextDelta:
    """A piece of the active agent's reply. Consecutive deltas join into one message."""

    text: str


@dataclass(frozen=True)
class HandoffRequest:
    """Hand the customer to `target`; the runtime checks the edge exists and switches agents."""

    target: str
    reason: str = ""


@dataclass(frozen=True)
class SwitchRequest:
    """The customer agreed to continue on another channel; the channel starts the handoff, then the turn ends."""

    channel: str


@dataclass(frozen=True)
class EscalateRequest:
    """The customer needs a person (they asked, or the agent judged so): the runtime queues them for the desk and
    tells them their place and wait, then the turn ends."""

    reason: str


PolicyEvent = TextDelta | HandoffRequest | SwitchRequest | EscalateRequest


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict[str, Any]
    result: ToolResult | None  # None when the tool did not run because a requirement is missing
    missing: Requirement | None = None


@dataclass
class TurnContext:
    scenario: Scenario
    agent: AgentSpec
    text: str  # what the customer just said
    collected: dict[str, str]  # slots known for this customer; call_tool adds to it
    summary: str  # the conversation summary carried over from earlier sessions or channels
    history: list[Turn]  # this session's turns before this one, oldest first
    scratch: dict[str, Any]  # the policy's own hot per-session state (survives across turns, expires)
    channel: str = "webchat"
    # Whether to offer another channel now (a long phone queue) and which ones this customer can take.
    switch: SwitchDecision = field(default_factory=lambda: SwitchDecision(False))
    learned: dict[str, str] = field(default_factory=dict)  # slots learned during this turn
    tool_calls: list[ToolCall] = field(default_factory=list)
    # Who the customer has shown they are in this session, and for whose number on record (shared/verification.py).
    verification: Verification = Verification.UNVERIFIED
    verified_phone: str | None = None
    # The back-office data the tools read this turn: the scenario's, with what has happened since (an outage restored);
    # None: the scenario's as shipped.
    data: ScenarioData | None = None
    # The customer's record as the turn read it, and the session's id: the Foundry policy keeps the customer's
    # conversation id there (shared/policies/foundry.py). None when the core answers without a session.
    customer: Customer | None = None
    session_id: str = ""
    # Agents that answered this turn before the one answering now (each handed the customer on: a handoff mid-turn).
    hops: int = 0
    # This keyed turn (a redelivered event's message id, a web chat Idempotency-Key) ran before and was not saved: its
    # host died mid-turn. A policy with a conversation of its own checks whether that one already took the words.
    retried: bool = False

    def known(self, slot: str) -> str | None:
        return self.collected.get(slot)

    def learn(self, slot: str, value: str) -> None:
        if slot in self.scenario.slots and value and self.collected.get(slot) != value:
            self.collected[slot] = value
            self.learned[slot] = value

    def missing_requirement(self, tool: str, arguments: dict[str, Any] | None = None) -> Requirement | None:
        """The first requirement of `tool` that neither the arguments nor the record satisfy."""
        spec = self.scenario.tools[tool]
        filled = self._fill(tool, arguments or {})
        return next((r for r in spec.requires if not any(filled.get(p) for p in r.any_of)), None)

    def call_tool(self, tool: str, arguments: dict[str, Any] | None = None) -> ToolCall:
        """Run one of the active agent's tools with known slots filled in; record what it learned."""
        if tool not in self.agent.tools:
            raise KeyError(f"{self.agent.name} has no tool {tool!r}")
        spec = self.scenario.tools[tool]
        filled = self._fill(tool, arguments or {})
        for param, slot in spec.slot_parameters().items():
            if filled.get(param):
                self.learn(slot, str(filled[param]))
        missing = self.missing_requirement(tool, filled)
        if missing is None and spec.verification.at_least(Verification.IDENTIFIED) and \
                self.scenario.names_account(tool, filled):
            self._check_verified(tool, filled)
        result = None if missing else spec.function(filled, self.data or self.scenario.data)
        if result is not None:
            for slot, value in result.slots.items():
                self.learn(slot, value)
        call = ToolCall(tool, filled, result, missing)
        self.tool_calls.append(call)
        return call

    def _check_verified(self, tool: str, filled: dict[str, Any]) -> None:
        """Raise VerificationNeeded unless this session has shown it is the holder of the account named."""
        level = self.scenario.tools[tool].verification
        holder = self.scenario.holder(filled)
        if holder is None or holder.phone != self.verified_phone or not self.verification.at_least(level):
            raise VerificationNeeded(tool, holder, level, self.scenario.account_named(tool, filled),
                                     self.scenario.account_arguments(tool, filled))

    def _fill(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        spec = self.scenario.tools[tool]
        filled = {k: v for k, v in arguments.items() if k in spec.parameters and v not in (None, "")}
        for param, slot in spec.slot_parameters().items():
            if not filled.get(param) and self.collected.get(slot):
                filled[param] = self.collected[slot]
        return filled


class Policy(ABC):
    """Decides the active agent's reply for one customer turn."""

    name: str = "policy"

    @abstractmethod
    def respond(self, ctx: TurnContext) -> AsyncIterator[PolicyEvent]:
        """Yield TextDelta events, then at most one HandoffRequest, SwitchRequest or EscalateRequest (and stop)."""

    async def summarise(self, scenario: Scenario, customer: Customer, session_id: str) -> str:
        """What the customer was doing in a session, said to them, for the channel they move to. No model needed.

        A policy with a model overrides this with `shared.summary.model_summary(..., its own completion)`, which
        checks what the model wrote and falls back to this extractive summary (the OpenAI policy does; a Foundry
        policy should too)."""
        from shared.summary import extractive_summary  # summary imports the offline NLU; only handoffs need it

        return extractive_summary(scenario, customer, session_id)

    async def synthesise(self, scenario: Scenario, ended: Ended) -> Synthesis:
        """What an ended conversation came to, for the record (shared/synthesis.py): rule-based, from the turns and
        the tools' outcomes. A policy with a model overrides this with `shared.synthesis.model_synthesis`."""
        from shared.synthesis import rule_based

        return rule_based(scenario, ended)

    async def close(self) -> None:
        """Release clients. The default holds none."""
