"""The offline policy: deterministic agents driven by the scenario's own words. The default; no network.

Per turn, for the active agent:
1. small talk (thanks, goodbye) gets the scenario's phrase;
2. a message about another agent's intent is handed over along the agent's handoff edge;
3. otherwise the agent picks one of its tools (by the tool's keywords, else the tool it was collecting for, else its
   first tool when the message is about its own intent), asks for the first missing requirement if any, or runs it
   and says the result.
What the record already knows is never asked: TurnContext fills known slots into every tool call.

A conversation, not single questions (docs/evals.md): a slot the agent collects, stated with its name ("my policy
number is ..." to Claims), is an answer and not another agent's intent, and the rest of the message still routes; a
follow-up
about what the agent just answered ("how long until it comes back?") is answered again from the tool, in the
scenario's `follow_up_<tool>` words rather than the same sentence; a message that only tells us something new (a
phone number after the outage answer) is acknowledged, not answered with the previous result again; a correction of
what the answer was based on ("no, 77 Elm Ave") runs the tool again with it.
"""

from __future__ import annotations

import re
from typing import AsyncIterator

from shared.policies.base import (
    EscalateRequest, HandoffRequest, Policy, PolicyEvent, SwitchRequest, TextDelta, TurnContext,
)
from shared.policies.nlu import (
    affirm, asks_about_it, classifier_for, deny, dont_know, requested_channel, small_talk, spoken_digits, tokens,
)
from shared.scenario import ToolSpec

_PENDING = "pending"  # scratch key: {"agent", "tool", "slots"} while the agent waits for an answer
_OFFERED = "switch_offered"  # scratch key: the channel we offered to continue on
_DECLINED = "switch_declined"  # scratch key: the customer said no to a switch; don't ask again
_NUMBER_FOR = "switch_number"  # scratch key: the channel the customer asked for, while we wait for their number
_ANSWERED = "answered"  # scratch key: {"agent", "tool", "say", "known"}: the last tool result the customer was given
# scratch key: {tool: {"say", "said"}}: each tool's last result and the words we gave it in, so a question asked again,
# even after another topic ("and when is the bill due?" after usage), gets the short answer and other words each time
_TOLD = "told"

#: What the agent says unless the scenario's phrases say it their way.
DEFAULT_PHRASES = {
    "noted": "Thanks, I've noted that.",
    "switch_ask_number": "Sure. What's the mobile number I should message you on {channel}?",
    "switch_confirm_number": "Thanks. Shall I send you a {channel} message at the number ending {last4}?",
    "unchanged": "Nothing has changed since I checked.",
    "ask_again": "Sorry, I didn't catch that. {ask}",
    "ask_again_told": "Thanks, I have that. {ask}",
}

CHANNEL_NAMES = {"whatsapp": "WhatsApp", "webchat": "web chat", "voice": "the phone"}


class OfflinePolicy(Policy):
    name = "offline"

    async def respond(self, ctx: TurnContext) -> AsyncIterator[PolicyEvent]:
        _take_spoken_numbers(ctx)
        _keep_contact_number(ctx)
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
        waiting_for = ctx.scratch.pop(_NUMBER_FOR, None)
        if asked is None and waiting_for and (number := _phone_given(ctx)):
            return self._confirm_number(ctx, waiting_for, number)
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
        if asked not in ctx.switch.channels and _needs_number(ctx, asked):
            if number := _phone_given(ctx):
                return self._confirm_number(ctx, asked, number)
            ctx.scratch[_NUMBER_FOR] = asked
            return [TextDelta(_phrase(ctx, "switch_ask_number", channel=name))]
        if asked not in ctx.switch.channels:
            return [TextDelta(scenario.phrase("switch_unavailable", channel=name))]
        ctx.scratch.pop(_OFFERED, None)
        return [TextDelta(scenario.phrase("switch_accepted", channel=name)), SwitchRequest(asked)]

    @staticmethod
    def _confirm_number(ctx: TurnContext, channel: str, number: str) -> list[PolicyEvent]:
        """The number to reach them on is on the record once this turn saves: the customer's yes starts the switch
        (and they hear which number, in case we heard it wrong)."""
        ctx.scratch[_OFFERED] = channel
        ctx.scratch.pop(_DECLINED, None)
        name = CHANNEL_NAMES.get(channel, channel)
        return [TextDelta(_phrase(ctx, "switch_confirm_number", channel=name, last4=number[-4:]))]

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

        # What the customer states for this agent is an answer, not a request ("my policy number is LM-482913" to
        # Claims is not a question for Policy Services): intents are read from the rest of the message.
        match = classifier_for(scenario).classify(_routing_text(ctx))
        if match is not None and match.intent not in agent.intents:
            owner = scenario.agent_for_intent(match.intent)
            if owner is not None and agent.edge_to(owner.name):
                ctx.scratch.pop(_PENDING, None)
                return [HandoffRequest(owner.name, reason=f"intent {match.intent}")]

        previous = ctx.scratch.get(_ANSWERED)
        if previous and previous.get("agent") != agent.name:
            previous = None
        if previous and not pending and self._only_tells(ctx, previous):
            return [TextDelta(f"{_phrase(ctx, 'noted')} {scenario.phrase('anything_else')}")]

        tool = self._pick_tool(ctx, pending, about_me=match is not None and match.intent in agent.intents)
        if tool is None and previous and not pending and asks_about_it(ctx.text):
            tool = ctx.scenario.tools[previous["tool"]]  # "so what's happening with it?": about what we just answered
        if tool is None:
            if pending or set(ctx.learned) & set(agent.slots):  # they told us something, nothing to run: acknowledge
                return [TextDelta("Thanks, I've noted that. " + scenario.phrase("anything_else"))]
            return [TextDelta(scenario.phrase("clarify" if agent.name == scenario.start_agent else "anything_else"))]

        missing = ctx.missing_requirement(tool.name)
        if missing is not None:
            ctx.scratch[_PENDING] = {"agent": agent.name, "tool": tool.name, "slots": list(missing.any_of)}
            if pending and pending.get("tool") == tool.name and pending.get("slots") == list(missing.any_of):
                return [TextDelta(self._ask_again(ctx, missing.ask))]
            return [TextDelta(missing.ask)]

        ctx.scratch.pop(_PENDING, None)
        call = ctx.call_tool(tool.name)
        assert call.result is not None
        say = call.result.say
        told = ctx.scratch.setdefault(_TOLD, {})
        if told.get(tool.name, {}).get("say") == say:
            say = self._follow_up(ctx, tool.name, call.result.data, say, told[tool.name].get("said", ""))
        elif say in ctx.summary and not told:  # the new channel's opening just read it out: a follow-up on it
            say = self._follow_up(ctx, tool.name, call.result.data, say, say)
        told[tool.name] = {"say": call.result.say, "said": say}
        ctx.scratch[_ANSWERED] = {"agent": agent.name, "tool": tool.name, "say": call.result.say,
                                  "known": dict(ctx.collected)}
        return [TextDelta(say)]

    def _only_tells(self, ctx: TurnContext, previous: dict) -> bool:
        """The message states slot values and asks for nothing a tool does, and changes nothing the last answer
        rested on: it is information to note ("my phone number is ..."), not a question to answer again."""
        stated = [s for s in ctx.scenario.slots.values() if s.pattern and s.extract(ctx.text)]
        if not stated and not ctx.learned:
            return False
        known = previous.get("known") or {}
        if any(slot in known and known[slot] != value for slot, value in ctx.learned.items()):
            return False  # a correction: the answer changes with it
        return self._keyword_hits(ctx)[0] == 0

    @staticmethod
    def _follow_up(ctx: TurnContext, tool: str, data: dict, result: str, last: str) -> str:
        """A follow-up about what the agent just answered, when the tool says the same: the scenario's short answer
        for it (`follow_up_<tool>`, from the result's facts), so the customer is not read the same sentence again;
        asked once more, its other words (`follow_up_again_<tool>`), never the sentence just said word for word."""
        answers = []
        for key in (f"follow_up_{tool}", f"follow_up_again_{tool}"):
            template = ctx.scenario.phrases.get(key)
            try:
                if template:
                    answers.append(template.format(company=ctx.scenario.company, **data))
            except (KeyError, IndexError, ValueError):
                pass  # this result lacks a fact the phrase names (an outage over has no ETA)
        answers = (answers or [result]) + [f"{_phrase(ctx, 'unchanged')} {(answers or [result])[0]}"]
        return next(a for a in answers if a != last)

    @staticmethod
    def _ask_again(ctx: TurnContext, ask: str) -> str:
        """The question we just asked is still unanswered: not the same words again. A message that told us something
        we knew already ("a car accident", said twice) is thanked for; one we could not read is said so. A customer
        only saying they are there ("ok, I'm here") did not try to answer, and may not have seen the question (a
        WhatsApp reply held outside the 24-hour window goes out just before this one): the question itself, whose
        held twin the delivery log then sends once."""
        if _only_present(ctx.text):
            return ask
        told = any(s.extract(ctx.text) for s in ctx.scenario.slots.values() if s.pattern or s.choices)
        return _phrase(ctx, "ask_again_told" if told else "ask_again", ask=ask)

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
    def _keyword_hits(ctx: TurnContext) -> tuple[int, ToolSpec | None]:
        """The agent's tool whose keywords the message names most (the first on a tie), and how many it names."""
        tools = [ctx.scenario.tools[name] for name in ctx.agent.tools]
        if not tools:
            return 0, None
        words = set(tokens(ctx.text, keep_stopwords=True))
        scored = [(sum(stem_all(k) <= words for k in t.keywords), i, t) for i, t in enumerate(tools)]
        best_hits, _, best = max(scored, key=lambda s: (s[0], -s[1]))
        return best_hits, best

    def _pick_tool(self, ctx: TurnContext, pending: dict | None, *, about_me: bool) -> ToolSpec | None:
        best_hits, best = self._keyword_hits(ctx)
        if best is None:
            return None
        tools = [ctx.scenario.tools[name] for name in ctx.agent.tools]
        answers = any(slot in ctx.learned for slot in (pending or {}).get("slots", []))  # "the charge is $42.50"
        if pending and pending.get("tool") in ctx.agent.tools and (best_hits == 0 or best.name == pending["tool"]
                                                                   or answers):
            return ctx.scenario.tools[pending["tool"]]
        if best_hits:
            return best
        if about_me or ctx.learned:
            return tools[0]
        return None


def stem_all(keyword: str) -> set[str]:
    return set(tokens(keyword, keep_stopwords=True))


def _routing_text(ctx: TurnContext) -> str:
    """The message without the slots of this agent's that it states, and their names: "my policy number is
    LM-482913" to Claims (after a move to WhatsApp, where the question it answers was asked in another session) says
    nothing about Policy Services, while "my account number is 100200300, what's my bill?" still asks Billing."""
    text = ctx.text
    for name in ctx.agent.slots:
        slot = ctx.scenario.slots.get(name)
        if slot is None or not slot.pattern or not (found := re.search(slot.pattern, text, re.IGNORECASE)):
            continue
        text = text[: found.start()] + " " + text[found.end():]
        for word in name.split("_"):  # "policy LM 482913" names the slot as surely as "policy number" does
            text = re.sub(rf"\b{re.escape(word)}\b", " ", text, flags=re.IGNORECASE)
    return text


def _phrase(ctx: TurnContext, key: str, **values: object) -> str:
    template = ctx.scenario.phrases.get(key, DEFAULT_PHRASES[key])
    return template.format(company=ctx.scenario.company, **values)


def _phone_slots(ctx: TurnContext) -> list[str]:
    return [s.name for s in ctx.scenario.slots.values() if s.kind == "phone"]


def _contact_slot(ctx: TurnContext) -> str | None:
    """The phone slot that names no account (not one of verification.account_slots): where a number to reach the
    customer on is kept. Insurance's phone_number is one; utilities' phone_number names an account, its
    contact_number does not."""
    accounts = set(ctx.scenario.verification.account_slots)
    return next((s for s in _phone_slots(ctx) if s not in accounts), None)


def _keep_contact_number(ctx: TurnContext) -> None:
    """A number the customer gives to be reached on is not a claim to the account it might belong to: "text me on
    555 555 0177", or a number answering our "what number should I message you on?", goes to the contact slot, and
    the account's phone slot, which the core took it as too, forgets it this turn (the record keeps what it had), so
    no tool names an account by it and nobody is asked to prove they hold it."""
    contact = _contact_slot(ctx)
    if contact is None:
        return
    number = ctx.learned.get(contact)
    if number is None and (ctx.scratch.get(_NUMBER_FOR) or _needs_number(ctx, requested_channel(ctx.text) or "")):
        number = _phone_given(ctx)
        if number:
            ctx.learn(contact, number)
    if not number:
        return
    for slot in _phone_slots(ctx):
        if slot != contact and ctx.learned.get(slot) == number:
            del ctx.learned[slot]
            ctx.collected.pop(slot, None)


def _phone_given(ctx: TurnContext) -> str | None:
    """A phone number the customer gave in this message (E.164, as the slot keeps it), in digits or in words."""
    for text in (ctx.text, spoken_digits(ctx.text)):
        for slot in _phone_slots(ctx) if text else ():
            if (value := ctx.scenario.slots[slot].extract(text)) and value.startswith("+"):
                return value
    return None


def _take_spoken_numbers(ctx: TurnContext) -> None:
    """A number said in words ("one zero zero, two zero zero, three zero zero") is the number: the core took only
    what the message states in digits."""
    written = spoken_digits(ctx.text)
    if written is None:
        return
    for slot in ctx.scenario.slots.values():
        if slot.pattern and slot.kind in ("digits", "phone") and not slot.extract(ctx.text) \
                and (value := slot.extract(written)):
            ctx.learn(slot.name, value)


def _needs_number(ctx: TurnContext, channel: str) -> bool:
    """The scenario offers `channel`, and only a number to reach the customer on is missing (WhatsApp goes to a
    phone number: shared/router.py); the scenario must have a phone slot to keep the number they give."""
    omni = ctx.scenario.omnichannel
    return channel == "whatsapp" and channel in omni.alternate_channels and channel != ctx.channel \
        and bool(_phone_slots(ctx))


_PRESENT = frozenset("ok okay k hi hello hey yes yeah yep sure i im i'm am here back still there go ahead".split())


def _only_present(text: str) -> bool:
    """Whether a message only says the customer is there ("ok, I'm here", "hi", "still here")."""
    words = re.findall(r"[a-z']+", text.lower())
    return bool(words) and all(word in _PRESENT for word in words)
