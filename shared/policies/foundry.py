"""The Foundry policy: Azure AI Foundry agents write the replies, in one conversation per customer across channels.

Each scenario agent is a Foundry prompt agent (versions made by `python -m shared.foundry sync`, not here). A customer's
engagement is one OpenAI Conversation in the Foundry project, its id on the customer record (`foundry_thread_id`):
the phone, WhatsApp, SMS and web chat turns all go into it, so the agent on WhatsApp reads what was said on the phone,
not only the summary. Our record stays the system of record (identities, slots, handoffs, verification); Foundry
holds the transcript the model reads.

A turn is one streamed `responses.create` on that conversation naming the active agent (`agent_reference`), with the
customer's words as input; Foundry adds the input and the reply to the conversation itself. Function calls come back
to us and run through `TurnContext.call_tool`, the same gate as every other policy (never ask twice, verification);
their results go back in the next request of the same turn. What changes each turn and cannot live in an agent
version (what the record knows, the channel, a long queue) is a developer message, sent only when it changed.

Nothing extra waits on the hot path: the conversation is created once per engagement (its first turn), outputs of
calls that end a turn (handoff, escalation, channel switch) are appended in the background, and turns Foundry missed
ride along in the input of the next request. When Foundry is unreachable the fallback policy (OpenAI if configured,
else offline) answers from the record's history; the missed turn is kept on the record (`foundry_backlog`), sent with
the next turn Foundry answers, and counted (`switchboard.foundry.fallbacks`). A turn sending the backlog claims it on
the record first, so two turns racing after an outage send it once; a claim whose turn died (or failed) is taken over
after a check of the conversation's last items for what already arrived (see `_claim_backlog`). A redelivered message
whose first run's host died after Foundry answered, before the record saved the turn, finds its words there and does
not send them again (see `_earlier_run`). Turns the conversation core writes itself (greetings, verification
questions, a person at the desk) are not in the conversation; the summary and the facts in the developer message carry
what they settled.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any, AsyncIterator

import openai
from opentelemetry import metrics

from shared.foundry.agents import agent_name
from shared.foundry.client import Foundry, build_foundry
from shared.models import Customer, Turn
from shared.policies.base import (
    EscalateRequest, HandoffRequest, Policy, PolicyEvent, SwitchRequest, TextDelta, TurnContext, VerificationNeeded,
)
from shared.policies.openai_policy import (
    ESCALATE, ESCALATE_REASON, HANDOFF_PREFIX, HISTORY_TURNS, MAX_ROUNDS, SWITCH_CHANNEL, _channel_name, switch_guidance,
    _parse_arguments, run_tool,
)
from shared.settings import Settings
from shared.stores.base import CustomerStore

log = logging.getLogger(__name__)

FALLBACKS = "switchboard.foundry.fallbacks"
_fallbacks = metrics.get_meter("switchboard").create_counter(
    FALLBACKS, description="Turns the fallback policy answered because Foundry was unreachable")
#: After a failure, turns go straight to the fallback for this long instead of each waiting out a timeout.
RETRY_AFTER_SECONDS = 30.0
#: Items the Conversations API takes per create or append.
ITEMS_PER_REQUEST = 20
#: The most missed items a record keeps for Foundry (the oldest go first); the record must stay small.
MAX_BACKLOG = 60
#: The latest items a retried turn reads to find its earlier run's words: more than one turn's worth.
TURN_ITEMS = 20
#: How long a turn holds the backlog it is sending; a claim older than this belongs to a turn that died.
CLAIM_SECONDS = 120.0
_CLAIM, _UNTIL = "_claim", "_claim_until"  # on a backlog item: the turn sending it, and until when (epoch seconds)
_CONTEXT_KEY = "foundry_context"  # scratch: digest of the developer message last sent in this session
_ROLES = {"customer": "user", "agent": "assistant"}


class FoundryUnavailable(Exception):
    """Foundry did not answer (connection, timeout, 5xx, an error event): the fallback policy takes the turn."""


class FoundryPolicy(Policy):
    name = "foundry"

    def __init__(self, settings: Settings, customers: CustomerStore, fallback: Policy,
                 foundry: Foundry | None = None) -> None:
        self._foundry = foundry or build_foundry(settings)
        self._customers = customers
        self._fallback = fallback
        self._prefix = settings.foundry_agent_prefix
        self._timeout = settings.llm_timeout_seconds
        self._engagement = timedelta(seconds=settings.session_ttl_seconds)
        self._down_until = 0.0
        self._appends: dict[str, asyncio.Task[None]] = {}  # conversation id -> its latest background append

    async def close(self) -> None:
        await self.drain()
        await self._foundry.close()
        await self._fallback.close()

    async def drain(self) -> None:
        """Wait for the background appends (shutdown, tests)."""
        while self._appends:
            await asyncio.gather(*self._appends.values(), return_exceptions=True)
            self._appends = {k: t for k, t in self._appends.items() if not t.done()}

    async def summarise(self, scenario: Any, customer: Customer, session_id: str) -> str:
        return await self._fallback.summarise(scenario, customer, session_id)

    async def synthesise(self, scenario: Any, ended: Any) -> Any:
        # Like the summary: one request, written by the fallback's model (OpenAI) or its rules (offline); the
        # conversation in Foundry holds nothing the record does not.
        return await self._fallback.synthesise(scenario, ended)

    # A turn ---------------------------------------------------------------------------------------------------

    async def respond(self, ctx: TurnContext) -> AsyncIterator[PolicyEvent]:
        customer = ctx.customer
        if customer is None or time.monotonic() < self._down_until:
            async for event in self._fall_back(ctx, "unreachable recently" if customer else "no record"):
                yield event
            return
        said = ""
        token, sent = "", False
        try:
            token, backlog = await self._claim_backlog(customer)
            conversation, seeded = await self._conversation(ctx, customer, [item for _, item in backlog])
            unsent = [] if seeded else await self._unsent(conversation, backlog)
            # A retry is looked for on a keyed turn's first agent (a handed-on agent's words are there by design),
            # and not with backlog to send: it goes in before the turn, so the words would no longer be the last.
            retry = ctx.retried and not ctx.hops and not seeded and not unsent
            earlier = await self._earlier_run(ctx, conversation) if retry else None
            if answer := _answer(earlier or []):
                # This turn ran before: Foundry answered, and its host died before the record saved the turn. That
                # answer is the turn's; generating another would leave two in the conversation.
                said = answer
                yield TextDelta(answer)
            else:
                items = self._opening(ctx, unsent, seeded, asked=earlier is None)
                async for event in self._rounds(ctx, conversation, items):
                    if isinstance(event, TextDelta):
                        said += event.text
                    yield event
            sent = True
        except VerificationNeeded:
            sent = True  # the first request was answered (its calls came back): the backlog is in the conversation
            raise
        except FoundryUnavailable as exc:
            self._down_until = time.monotonic() + RETRY_AFTER_SECONDS
            if said:
                # The customer heard part of a reply: end it as the OpenAI policy does, rather than start another.
                yield TextDelta((" " if not said[-1].isspace() else "") + ctx.scenario.phrase("fallback"))
                self._keep_missed(customer.customer_id, ctx, said)
                return
            async for event in self._fall_back(ctx, str(exc)):
                yield event
            return
        finally:
            if token:
                self._background(f"record:{customer.customer_id}", self._settle(customer.customer_id, token, sent))
        self._down_until = 0.0

    async def _rounds(self, ctx: TurnContext, conversation: str, items: list[dict[str, Any]]
                      ) -> AsyncIterator[PolicyEvent]:
        """Model requests until the agent answers in words or ends the turn; tool results feed the next one."""
        for round_no in range(MAX_ROUNDS):
            calls: list[Any] = []
            text = ""
            async for kind, value in self._request(ctx, conversation, items):
                if kind == "text":
                    text += value
                    yield TextDelta(value)
                else:
                    calls.append(value)
            if not calls:
                if not text:
                    yield TextDelta(ctx.scenario.phrase("fallback"))
                return
            ending = _ending(ctx, calls)
            if ending is not None or round_no == MAX_ROUNDS - 1:
                # No request follows: the calls' outputs go in the background, so the conversation never holds a
                # call without its output (the next request on it would be refused).
                self._append_later(ctx, conversation, [_output(c, _ended_output(c, ending)) for c in calls])
                if ending is None:
                    log.warning("foundry policy: still calling tools after %d rounds; falling back", MAX_ROUNDS)
                    yield TextDelta(ctx.scenario.phrase("fallback"))
                    return
                if isinstance(ending, SwitchRequest) and not text:
                    yield TextDelta(ctx.scenario.phrase("switch_accepted", channel=_channel_name(ending.channel)))
                yield ending
                return
            items = []
            for call in calls:
                try:
                    result = run_tool(ctx, call.name, call.arguments)
                except VerificationNeeded:
                    self._append_later(ctx, conversation, [_output(c, _VERIFYING) for c in calls])
                    raise
                items.append(_output(call, result))

    async def _request(self, ctx: TurnContext, conversation: str, items: list[dict[str, Any]]
                       ) -> AsyncIterator[tuple[str, Any]]:
        """One streamed response: ("text", delta) as it comes, then ("call", item) for each function call."""
        await self._settled(conversation)
        agent = agent_name(self._prefix, ctx.scenario, ctx.agent.name)
        try:
            # The SDK retries a request that timed out: the answer must begin within LLM_TIMEOUT_SECONDS, retries
            # included, as with the OpenAI policy.
            async with asyncio.timeout(self._timeout):
                stream = await self._foundry.openai.responses.create(
                    conversation=conversation, input=items, stream=True,
                    extra_body={"agent_reference": {"name": agent, "type": "agent_reference"}},
                )
            async with stream:
                async for event in stream:
                    if event.type == "response.output_text.delta":
                        yield "text", event.delta
                    elif event.type == "response.output_item.done" and event.item.type == "function_call":
                        yield "call", event.item
                    elif event.type in ("response.failed", "error"):
                        raise FoundryUnavailable(f"the response failed: {event.type}")
        except openai.APIStatusError as exc:
            if exc.status_code < 500 and exc.status_code not in (408, 409, 429):
                # Refused, not unavailable (no such agent: sync not run; a bad request): the fallback answers, and
                # the log says what to check.
                log.error("foundry policy: %s (%s) for agent %s: is `python -m shared.foundry sync` done, and does"
                          " the identity hold Azure AI User on the project?", type(exc).__name__, exc.status_code,
                          agent)
            raise FoundryUnavailable(f"{type(exc).__name__} ({exc.status_code})") from exc
        except (openai.APIError, TimeoutError, OSError) as exc:
            raise FoundryUnavailable(type(exc).__name__) from exc

    # The conversation -----------------------------------------------------------------------------------------

    async def _conversation(self, ctx: TurnContext, customer: Customer, backlog: list[dict[str, Any]]
                            ) -> tuple[str, bool]:
        """The engagement's conversation id, created (with the claimed `backlog`) and put on the record when there is
        none or the last one went quiet; and whether the backlog went into that new conversation already."""
        if customer.foundry_thread_id and not self._engagement_over(ctx, customer):
            return customer.foundry_thread_id, False
        # The session so far, for a record that had turns before it had a conversation; those Foundry missed are
        # in the backlog already.
        missed = {(i.get("role"), i.get("content")) for i in customer.foundry_backlog}
        earlier = [i for i in _history_items(ctx.history) if (i["role"], i["content"]) not in missed]
        seed = [*earlier, *backlog][-ITEMS_PER_REQUEST:]
        try:
            async with asyncio.timeout(self._timeout):
                created = await self._foundry.openai.conversations.create(
                    items=seed, metadata={"customer_id": customer.customer_id})
        except (openai.APIError, TimeoutError, OSError) as exc:
            raise FoundryUnavailable(f"creating the conversation: {type(exc).__name__}") from exc
        previous = customer.foundry_thread_id

        def keep(c: Customer) -> str:
            # Another channel may have started the engagement meanwhile: then both turns continue in theirs.
            if c.foundry_thread_id in (None, previous):
                c.foundry_thread_id = created.id
            return c.foundry_thread_id or created.id

        _, conversation = await self._customers.update(customer.customer_id, keep)
        customer.foundry_thread_id = conversation
        # Lost the race to another channel's turn: the backlog went into a conversation nobody continues.
        return conversation, conversation == created.id

    def _engagement_over(self, ctx: TurnContext, customer: Customer) -> bool:
        """A new engagement starts on a session's first turn when none of the customer's other sessions was in use
        within SESSION_TTL_SECONDS: a customer coming back next month starts a fresh conversation."""
        if any(t.role == "customer" for t in ctx.history):
            return False
        cutoff = datetime.now(timezone.utc) - self._engagement
        others = [s for sid, s in customer.sessions.items() if sid != ctx.session_id]
        return bool(others) and all(datetime.fromisoformat(s.updated_at) < cutoff for s in others)

    def _opening(self, ctx: TurnContext, backlog: list[dict[str, Any]], seeded: bool, asked: bool = True
                 ) -> list[dict[str, Any]]:
        """The first request's input: what Foundry missed, the turn's context when it changed, the customer's words
        (unless an earlier run of the turn left them in the conversation: `asked` False)."""
        items = list(backlog)
        context = _context(ctx)
        digest = hashlib.sha256(context.encode()).hexdigest()[:16]
        if seeded or ctx.scratch.get(_CONTEXT_KEY) != digest:
            items.append({"type": "message", "role": "developer", "content": context})
            ctx.scratch[_CONTEXT_KEY] = digest
        if ctx.hops:
            # Handed on mid-turn: the customer's words are in the conversation already, with the handoff's call.
            items.append({"type": "message", "role": "developer",
                          "content": f"The customer was just handed to you ({ctx.agent.name}): answer their last "
                                     "message above."})
        elif not asked:
            items.append({"type": "message", "role": "developer",
                          "content": "Answer the customer's last message above."})
        else:
            items.append({"type": "message", "role": "user", "content": ctx.text})
        return items

    # Appends off the hot path ---------------------------------------------------------------------------------

    def _append_later(self, ctx: TurnContext, conversation: str, items: list[dict[str, Any]]) -> None:
        customer_id = ctx.customer.customer_id if ctx.customer else ""
        self._background(conversation, self._append(customer_id, conversation, items))

    def _background(self, conversation: str, work: Any) -> None:
        previous = self._appends.get(conversation)

        async def after_previous() -> None:
            if previous is not None:  # appends to one conversation keep their order
                await asyncio.gather(previous, return_exceptions=True)
            try:
                await work
            except Exception:
                log.exception("foundry policy: a background append failed")

        self._appends[conversation] = asyncio.get_running_loop().create_task(after_previous())

    async def _settled(self, conversation: str) -> None:
        """A request waits for appends to its conversation still in flight (a handoff's output, mid-turn)."""
        if (task := self._appends.get(conversation)) is not None:
            await asyncio.gather(task, return_exceptions=True)

    async def _append(self, customer_id: str, conversation: str, items: list[dict[str, Any]]) -> None:
        try:
            for start in range(0, len(items), ITEMS_PER_REQUEST):
                await self._foundry.openai.conversations.items.create(
                    conversation, items=items[start:start + ITEMS_PER_REQUEST])
        except (openai.APIError, OSError) as exc:
            log.warning("foundry policy: appending to the conversation failed (%s); kept for the next turn",
                        type(exc).__name__)
            if customer_id:
                await self._keep(customer_id, items)

    def _keep_missed(self, customer_id: str, ctx: TurnContext, reply: str) -> None:
        """The turn Foundry missed goes on the record in the background: the reply is out, and a turn on another
        channel later sends it to Foundry."""
        self._background(f"record:{customer_id}", self._keep(customer_id, [
            {"type": "message", "role": "user", "content": ctx.text},
            {"type": "message", "role": "assistant", "content": reply},
        ]))

    async def _keep(self, customer_id: str, items: list[dict[str, Any]]) -> None:
        def add(c: Customer) -> None:
            c.foundry_backlog = [*c.foundry_backlog, *items][-MAX_BACKLOG:]

        await self._customers.update(customer_id, add)

    # The backlog: sent once -----------------------------------------------------------------------------------

    async def _claim_backlog(self, customer: Customer) -> tuple[str, list[tuple[str | None, dict[str, Any]]]]:
        """Claim on the record the backlog items no live turn is sending: two turns racing after an outage (two
        channels, two processes) then send each item once. Returns this turn's token and the items it took, each with
        the token of the turn that held it before (None: never sent; else it may have reached Foundry)."""
        if not customer.foundry_backlog:
            return "", []
        token, now = uuid.uuid4().hex, time.time()

        def claim(c: Customer) -> list[tuple[str | None, dict[str, Any]]]:
            taken: list[tuple[str | None, dict[str, Any]]] = []
            backlog = []
            for item in c.foundry_backlog:
                if float(item.get(_UNTIL) or 0.0) <= now:
                    taken.append((item.get(_CLAIM), _public(item)))
                    item = {**item, _CLAIM: token, _UNTIL: now + CLAIM_SECONDS}
                backlog.append(item)
            c.foundry_backlog = backlog
            return taken

        _, taken = await self._customers.update(customer.customer_id, claim)
        return (token if taken else ""), taken

    async def _unsent(self, conversation: str, taken: list[tuple[str | None, dict[str, Any]]]
                      ) -> list[dict[str, Any]]:
        """The claimed items to send. Those an earlier turn held (it died after Foundry took them, or failed without
        knowing whether Foundry had) are dropped when they already stand in the conversation's last items, in their
        order: one extra round trip, only on this recovery path."""
        if all(before is None for before, _ in taken):
            return [item for _, item in taken]
        there = [_said(item) for item in reversed(await self._latest(conversation, 100))]
        unsent: list[dict[str, Any]] = []
        for before, run in _runs(taken):
            if before is None or not _contains(there, [_said(item) for item in run]):
                unsent.extend(run)
        return unsent

    async def _latest(self, conversation: str, limit: int) -> list[Any]:
        """The conversation's latest `limit` items, newest first."""
        try:
            async with asyncio.timeout(self._timeout):
                page = await self._foundry.openai.conversations.items.list(conversation, limit=limit, order="desc")
        except (openai.APIError, TimeoutError, OSError) as exc:
            raise FoundryUnavailable(f"reading the conversation: {type(exc).__name__}") from exc
        return list(page.data)

    # A retried turn: its words once ---------------------------------------------------------------------------

    async def _earlier_run(self, ctx: TurnContext, conversation: str) -> list[Any] | None:
        """The items after the customer's words when an earlier run of this turn put them in the conversation (its
        host died after Foundry took them, before the record saved the turn); None when it did not.

        Only a retried keyed turn can be one (`ctx.retried`: the core saw its key tried before and not saved; one the
        record holds under its key the core replays without us). Items carry no metadata in the Conversations API, so
        the words are matched: the conversation's latest user message is this turn's words, and no reply after it is
        on the record (a saved turn in the same words has its reply there). One round trip, on retries only."""
        tail: list[Any] = []
        for item in await self._latest(conversation, TURN_ITEMS):
            role, text = _said(item)
            if role == "user":
                break
            tail.append(item)
        else:
            return None  # no customer words among the latest items: nothing to match
        if text.strip() != ctx.text.strip():
            return None
        saved = _replies_on_record(ctx.customer)
        replies = [text.strip() for role, text in map(_said, tail) if role == "assistant" and text.strip()]
        # A cut-short voice reply is on the record as far as the caller heard it: a prefix of Foundry's.
        if any(reply.startswith(s) for reply in replies for s in saved):
            return None
        return tail[::-1]

    async def _settle(self, customer_id: str, token: str, sent: bool) -> None:
        """After the turn: drop the items this turn sent, or give them back for the next turn to send. Items kept
        meanwhile (another channel's missed turn) stay for the next; given-back items keep the token, so whoever
        takes them next checks the conversation first (a failed request may still have reached Foundry)."""

        def settle(c: Customer) -> None:
            if sent:
                c.foundry_backlog = [i for i in c.foundry_backlog if i.get(_CLAIM) != token]
            else:
                c.foundry_backlog = [{**i, _UNTIL: 0.0} if i.get(_CLAIM) == token else i for i in c.foundry_backlog]

        await self._customers.update(customer_id, settle)

    # Fallback -------------------------------------------------------------------------------------------------

    async def _fall_back(self, ctx: TurnContext, reason: str) -> AsyncIterator[PolicyEvent]:
        log.warning("foundry policy: Foundry unavailable (%s); the %s policy answers", reason, self._fallback.name)
        _fallbacks.add(1, {"fallback": self._fallback.name, "channel": ctx.channel})
        said = ""
        async for event in self._fallback.respond(ctx):
            if isinstance(event, TextDelta):
                said += event.text
            yield event
        if ctx.customer is not None and said:
            self._keep_missed(ctx.customer.customer_id, ctx, said)


_VERIFYING = {"ok": False, "error": "The customer must verify who they are first; they are being asked now. When"
              " they have, answer the question they asked."}


def _ending(ctx: TurnContext, calls: list[Any]) -> PolicyEvent | None:
    """The call that ends the turn, in the OpenAI policy's order: a channel switch, a person, another agent."""
    by_name = {c.name: c for c in calls}
    if switch := by_name.get(SWITCH_CHANNEL):
        channel = str((_parse_arguments(switch.arguments) or {}).get("channel") or "")
        if channel in ctx.switch.channels:
            return SwitchRequest(channel)
    if escalate := by_name.get(ESCALATE):
        reason = str((_parse_arguments(escalate.arguments) or {}).get("reason") or "").strip()
        return EscalateRequest(reason[:200] or ESCALATE_REASON)
    targets = {f"{HANDOFF_PREFIX}{edge.target}": edge.target for edge in ctx.agent.handoffs}
    if handoff := next((c for c in calls if c.name in targets), None):
        reason = str((_parse_arguments(handoff.arguments) or {}).get("reason") or "")
        return HandoffRequest(targets[handoff.name], reason)
    return None


def _ended_output(call: Any, ending: PolicyEvent | None) -> dict[str, Any]:
    if isinstance(ending, HandoffRequest) and call.name == f"{HANDOFF_PREFIX}{ending.target}":
        return {"ok": True, "data": f"{ending.target} has taken over the conversation"}
    if isinstance(ending, EscalateRequest) and call.name == ESCALATE:
        return {"ok": True, "data": "queued for a person at the desk"}
    if isinstance(ending, SwitchRequest) and call.name == SWITCH_CHANNEL:
        return {"ok": True, "data": f"the customer is continuing on {ending.channel}"}
    return {"ok": False, "error": "Not run: the turn ended first."}


def _output(call: Any, result: dict[str, Any]) -> dict[str, Any]:
    return {"type": "function_call_output", "call_id": call.call_id, "output": json.dumps(result, default=str)}


def _public(item: dict[str, Any]) -> dict[str, Any]:
    """A backlog item as Foundry takes it: without our claim."""
    return {k: v for k, v in item.items() if k not in (_CLAIM, _UNTIL)}


def _runs(taken: list[tuple[str | None, dict[str, Any]]]) -> list[tuple[str | None, list[dict[str, Any]]]]:
    """Claimed items grouped into runs by the turn that held them before: each run went out in one request."""
    runs: list[tuple[str | None, list[dict[str, Any]]]] = []
    for before, item in taken:
        if runs and runs[-1][0] == before:
            runs[-1][1].append(item)
        else:
            runs.append((before, [item]))
    return runs


def _said(item: Any) -> tuple[str, str]:
    """(role, text) of a message item, as we send it (a dict, text content) or as Foundry lists it (parts)."""
    get = item.get if isinstance(item, dict) else lambda key: getattr(item, key, None)
    content = get("content")
    if not isinstance(content, str):
        content = "".join((p.get("text") if isinstance(p, dict) else getattr(p, "text", None)) or ""
                          for p in content or [])
    return str(get("role") or get("type") or ""), content


def _answer(tail: list[Any]) -> str:
    """The reply an earlier run of the turn got, when that is all it left (no tool calls to run again), else ''."""
    said = [_said(item) for item in tail]
    if not said or any(role != "assistant" for role, _ in said):
        return ""
    return " ".join(text.strip() for _, text in said if text.strip())


def _replies_on_record(customer: Customer | None) -> set[str]:
    """The agents' replies the record holds, in every session it has loaded."""
    sessions = customer.sessions.values() if customer is not None else []
    return {t.text.strip() for s in sessions for t in s.turns if t.role == "agent" and t.text.strip()}


def _contains(there: list[tuple[str, str]], run: list[tuple[str, str]]) -> bool:
    """Whether `run` stands in `there` as a contiguous stretch, in order: a single 'yes' said earlier is no match."""
    return any(there[i:i + len(run)] == run for i in range(len(there) - len(run) + 1))


def _history_items(history: list[Turn]) -> list[dict[str, Any]]:
    return [
        {"type": "message", "role": _ROLES[turn.role], "content": turn.text}
        for turn in history[-HISTORY_TURNS:]
        if turn.role in _ROLES and turn.text
    ]


def _context(ctx: TurnContext) -> str:
    """What the agent versions cannot know: this turn's channel, the record's facts and summary, a queue offer."""
    scenario = ctx.scenario
    lines = [f"The customer is on {_channel_name(ctx.channel)} now."]
    if ctx.collected:
        lines.append("Facts already known about this customer (tools receive them; never ask for them again):")
        for slot, value in ctx.collected.items():
            spec = scenario.slots.get(slot)
            lines.append(f"- {slot} ({spec.description if spec else slot}): {value}")
    else:
        lines.append("Nothing is known about this customer yet.")
    if ctx.summary:
        lines.append(f"Summary of earlier sessions: {ctx.summary}")
    # The agent's version always has the switch function: say when it must not be used.
    lines.append(switch_guidance(ctx) or f"Do not call {SWITCH_CHANNEL}: no other channel is open to this customer now.")
    if ctx.channel == "voice":
        lines.append("Your reply is spoken aloud: short plain sentences, no lists, no markdown.")
    else:
        lines.append("Keep replies short and conversational.")
    return "\n".join(lines)
