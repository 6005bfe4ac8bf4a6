"""The offline policy: deterministic agents driven by the scenario's own words. The default; no network.

Per turn, for the active agent:
1. small talk (thanks, goodbye) gets the scenario's phrase;
2. a message about another agent's intent is handed over along the agent's handoff edge;
3. otherwise the agent picks one of its tools (by the tool's keywords, else the tool it was collecting for, else its
   first tool when the message is about its own intent), asks for the first missing requirement if any, or runs it
   and says the result.
What the record already knows is never asked: TurnContext fills known slots into every tool call.
"""

from __future__ import annotations

from typing import AsyncIterator

from shared.policies.base import (
    EscalateRequest, HandoffRequest, Policy, PolicyEvent, SwitchRequest, TextDelta, TurnContext,
)
from shared.policies.nlu import affirm, classifier_for, deny, dont_know, requested_channel, small_talk, tokens
from shared.scenario import ToolSpec

_PENDING = "pending"  # scratch key: {"agent", "tool", "slots"} while the agent waits for an answer
_OFFERED = "switch_offered"  # scratch key: the channel we offered to continue on
_DECLINED = "switch_declined"  # scratch key: the customer said no to a switch; don't ask again

CHANNEL_NAMES = {"whatsapp": "WhatsApp", "webchat": "web chat", "voice": "the phone"}


class OfflinePolicy(Policy):
    name = "offline"

    async def respond(self, ctx: TurnContext) -> AsyncIterator[PolicyEvent]:
        events = self._switch(ctx)
        if events is None:
            events = self._decide(ctx)
            if ctx.switch.offer and not any(isinstance(e, HandoffRequest) for e in events):
                events += self._offer(ctx)
        for event in events:
            yield event

    def _switch(self, ctx: TurnContext) -> list[PolicyEvent] | None:
        """Moving channel: the customer asks for it, or answers the offer we made. None when it is not about that."""
        scenario = ctx.scenario
        asked = requested_channel(ctx.text)
        offered = ctx.scratch.get(_OFFERED)
        if asked is None and offered and not ctx.learned:
            if affirm(ctx.text):
                asked = offered
            elif deny(ctx.text):
                ctx.scratch.pop(_OFFERED, None)
                ctx.scratch[_DECLINED] = True
                return [TextDelta(scenario.phrase("switch_declined"))]
        if asked is None:
            return None
        name = CHANNEL_NAMES.get(asked, asked)
        if asked not in ctx.switch.channels:
            return [TextDelta(scenario.phrase("switch_unavailable", channel=name))]
        ctx.scratch.pop(_OFFERED, None)
        return [TextDelta(scenario.phrase("switch_accepted", channel=name)), SwitchRequest(asked)]

    def _offer(self, ctx: TurnContext) -> list[PolicyEvent]:
        """Offer the best alternate channel once per session, when the router says the queue is bad."""
        if ctx.scratch.get(_OFFERED) or ctx.scratch.get(_DECLINED) or not ctx.switch.channels:
            return []
        channel = ctx.switch.channels[0]
        ctx.scratch[_OFFERED] = channel
        return [TextDelta(" " + ctx.scenario.phrase("switch_offer", channel=CHANNEL_NAMES.get(channel, channel)))]

    def _decide(self, ctx: TurnContext) -> list[PolicyEvent]:
        scenario, agent = ctx.scenario, ctx.agent
        pending = ctx.scratch.get(_PENDING)
        if pending and pending.get("agent") != agent.name:
            pending = None
        self._take_pending_answer(ctx, pending)

        chat = small_talk(ctx.text)
        if chat in ("thanks", "farewell") and not ctx.learned:
            ctx.scratch.pop(_PENDING, None)
            return [TextDelta(scenario.phrase(chat))]
        if chat == "human":
            return [EscalateRequest("asked for a person")]
        if chat == "greeting" and not pending:
            return [TextDelta(scenario.phrase("clarify" if agent.name == scenario.start_agent else "anything_else"))]
        if pending and dont_know(ctx.text) and not ctx.learned:
            return [TextDelta(self._ask_alternative(ctx, pending))]

        match = classifier_for(scenario).classify(ctx.text)
        if match is not None and match.intent not in agent.intents:
            owner = scenario.agent_for_intent(match.intent)
            if owner is not None and agent.edge_to(owner.name):
                ctx.scratch.pop(_PENDING, None)
                return [HandoffRequest(owner.name, reason=f"intent {match.intent}")]

        tool = self._pick_tool(ctx, pending, about_me=match is not None and match.intent in agent.intents)
        if tool is None:
            if pending or ctx.learned:  # they answered something, but we have nothing to run: acknowledge
                return [TextDelta("Thanks, I've noted that. " + scenario.phrase("anything_else"))]
            return [TextDelta(scenario.phrase("clarify" if agent.name == scenario.start_agent else "anything_else"))]

        missing = ctx.missing_requirement(tool.name)
        if missing is not None:
            ctx.scratch[_PENDING] = {"agent": agent.name, "tool": tool.name, "slots": list(missing.any_of)}
            return [TextDelta(missing.ask)]

        ctx.scratch.pop(_PENDING, None)
        call = ctx.call_tool(tool.name)
        assert call.result is not None
        return [TextDelta(call.result.say)]

    @staticmethod
    def _ask_alternative(ctx: TurnContext, pending: dict) -> str:
        """They can't give what we asked: ask for the next way of identifying the same thing, if there is one."""
        alternatives = pending.get("slots", [])[1:]  # the first is what we just asked for
        tried = pending.get("tried", 0)
        if tried < len(alternatives):
            pending["tried"] = tried + 1
            return f"No problem. {ctx.scenario.slots[alternatives[tried]].ask}"
        ctx.scratch.pop(_PENDING, None)
        return f"No problem, we can leave that for now. {ctx.scenario.phrase('anything_else')}"

    @staticmethod
    def _take_pending_answer(ctx: TurnContext, pending: dict | None) -> None:
        """A short free-text answer to a question about a text slot (a date, say) is that slot's value."""
        if not pending:
            return
        slots = [ctx.scenario.slots[s] for s in pending.get("slots", []) if s in ctx.scenario.slots]
        if any(ctx.known(s.name) for s in slots):
            return
        free = [s for s in slots if s.kind in ("text", "title") and not s.pattern and not s.choices]
        if len(free) == 1 and 0 < len(ctx.text.split()) <= 8:
            ctx.learn(free[0].name, ctx.text.strip().rstrip(".!"))

    @staticmethod
    def _pick_tool(ctx: TurnContext, pending: dict | None, *, about_me: bool) -> ToolSpec | None:
        tools = [ctx.scenario.tools[name] for name in ctx.agent.tools]
        if not tools:
            return None
        words = set(tokens(ctx.text, keep_stopwords=True))
        scored = [(sum(stem_all(k) <= words for k in t.keywords), i, t) for i, t in enumerate(tools)]
        best_hits, _, best = max(scored, key=lambda s: (s[0], -s[1]))
        if pending and pending.get("tool") in ctx.agent.tools and (best_hits == 0 or best.name == pending["tool"]):
            return ctx.scenario.tools[pending["tool"]]
        if best_hits:
            return best
        if about_me or ctx.learned:
            return tools[0]
        return None


def stem_all(keyword: str) -> set[str]:
    return set(tokens(keyword, keep_stopwords=True))
