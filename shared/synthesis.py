"""The post-conversation synthesis: what a conversation came to, written on the customer record once it ends.

A conversation ends when the caller hangs up, a web chat is closed, a channel handoff expires with nobody coming, or
a person at the desk closes it with a disposition. Each end starts the Durable activity that calls `write` (the
orchestration is functions/synthesis.py; an expired handoff calls the activity from its own orchestration), which
puts one synthesis per ended conversation on the record: the summary, the customer's goal and whether it was met,
the next action and its due date if any, the customer's sentiment, and the follow-ups we promised (the text when the
power is back).

Once per ended conversation, whatever the deliveries: the synthesis is keyed by the session that ended, the write
adds it only if the record has none for that session (inside the record's optimistic-concurrency update, so two ends
written at once leave one), and a conversation that is not over after all (a caller who hung up on their way to
WhatsApp, a customer still with a person) gets none.

Who writes it is the policy's business (`Policy.synthesise`): offline, `rule_based` reads the turns and the tools'
outcomes; a policy with a model has it write the words (`model_synthesis`), checked like the handoff summary, while
the facts (the follow-ups on the record, the person's disposition) always come from the record.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from shared import telemetry
from shared.errors import NotFound
from shared.models import (
    MAX_SYNTHESES, ChannelSession, Customer, Escalation, EscalationStatus, HandoffStatus, SessionStatus, Turn, utcnow,
)
from shared.scenario import Scenario
from shared.summary import Complete, asked_for, check_summary, count_fallback, extractive_summary, fill, needs

if TYPE_CHECKING:
    from shared.bootstrap import Services

log = logging.getLogger(__name__)

#: How a conversation ended: the caller hung up, the web chat was closed, nobody came after a channel handoff, a
#: person at the desk closed it with a disposition.
HUNG_UP, CLOSED, HANDOFF_EXPIRED, DESK_DISPOSITION = "hung_up", "closed", "handoff_expired", "desk_disposition"
ENDINGS = (HUNG_UP, CLOSED, HANDOFF_EXPIRED, DESK_DISPOSITION)
SENTIMENTS = ("positive", "neutral", "negative")
#: The transcript a model reads for a synthesis: the conversation's latest turns.
SYNTHESIS_TURNS = 40

# Words that tell how the customer felt, by their stems. Rough, and meant to be: the model does better when there is
# one, and a person reads the transcript for anything that matters.
_NEGATIVE = ("angry", "annoy", "frustrat", "ridiculous", "unacceptable", "terrible", "awful", "worst", "useless",
             "fed up", "sick of", "complain", "disappoint", "upset", "furious", "waste of time", "not happy", "rubbish")
_POSITIVE = ("thank", "great", "perfect", "awesome", "appreciate", "helpful", "brilliant", "excellent", "lovely",
             "wonderful", "that's all i needed", "sorted")
#: What a person's disposition says about the goal and what happens next.
_DISPOSITIONS = {
    "resolved": (True, None),
    "follow_up": (False, "Follow up with the customer"),
    "callback": (False, "Call the customer back"),
    "not_resolved": (False, "Find another way to help the customer"),
}


@dataclass
class Synthesis:
    session_id: str  # the session that ended: one synthesis per ended conversation
    channel: str
    ended_by: str  # one of ENDINGS
    summary: str
    goal: str  # what the customer wanted, in words ("reporting the power outage at 123 Oak St")
    goal_met: bool
    sentiment: str  # one of SENTIMENTS
    next_action: str | None = None
    due: str | None = None  # when the next action is due, as the conversation said it ("next Monday"), if it did
    follow_ups: list[dict[str, Any]] = field(default_factory=list)  # texts we promised: {"kind", "ref", "text", "sent"}
    intent: str | None = None  # the scenario's intent for the goal, when one matched
    escalation_id: str | None = None  # DESK_DISPOSITION: the escalation the person closed, and how
    disposition: str | None = None
    written_by: str = "rules"  # "rules" or the policy whose model wrote the words ("openai")
    at: str = field(default_factory=utcnow)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Ended:
    """One ended conversation, as the synthesis sees it: the record, the ended session and every turn of the
    conversation (those of a session it continued after a channel handoff first), and how it ended."""

    customer: Customer
    session: ChannelSession
    turns: list[Turn]
    ended_by: str
    escalation: Escalation | None = None


# The activity ------------------------------------------------------------------------------------------------------


async def write(services: Services, customer_id: str, session_id: str, ended_by: str,
                escalation_id: str | None = None) -> dict[str, Any]:
    """Write the synthesis of the conversation that ended in `session_id`, once. Safe to run again and at once:
    returns {"written": bool, "synthesis": ... | None, "reason": ... when not written}."""
    if ended_by not in ENDINGS:
        raise ValueError(f"a conversation ends by one of {', '.join(ENDINGS)}, not {ended_by!r}")
    try:
        customer = await services.customers.get(customer_id)
    except NotFound:
        return {"written": False, "synthesis": None, "reason": "no such customer"}
    if earlier := synthesis_of(customer, session_id):
        telemetry.dedup_hit("synthesis")
        return {"written": False, "synthesis": earlier, "reason": "already written"}
    if session_id not in customer.sessions:
        return {"written": False, "synthesis": None, "reason": "no such session on the record"}
    escalation = customer.find_escalation(escalation_id) if escalation_id else None
    if why := still_going(customer, session_id, ended_by, escalation):
        log.info("synthesis of %s: not written, %s", session_id, why)
        return {"written": False, "synthesis": None, "reason": why}
    ended = await _ended(services, customer, session_id, ended_by, escalation)
    synthesis = (await services.policy.synthesise(services.scenario, ended)).to_dict()

    def add(record: Customer) -> tuple[bool, dict[str, Any]]:
        if existing := synthesis_of(record, session_id):  # another delivery wrote it meanwhile
            return False, existing
        record.syntheses.append(synthesis)
        del record.syntheses[:-MAX_SYNTHESES]
        return True, synthesis

    _, (written, kept) = await services.customers.update(customer_id, add)
    if written:
        log.info("synthesis of %s written (%s, by %s)", session_id, ended_by, synthesis["written_by"])
    else:
        telemetry.dedup_hit("synthesis")
    return {"written": written, "synthesis": kept, **({} if written else {"reason": "already written"})}


def synthesis_of(customer: Customer, session_id: str) -> dict[str, Any] | None:
    return next((s for s in customer.syntheses if s.get("session_id") == session_id), None)


def still_going(customer: Customer, session_id: str, ended_by: str, escalation: Escalation | None) -> str | None:
    """Why the conversation in `session_id` is not over, or None when it is."""
    session = customer.sessions[session_id]
    if customer.open_escalation(session_id) is not None:
        return "the customer is with the desk"
    handoff = customer.handoff
    if handoff is not None and handoff.from_session_id == session_id:
        if handoff.open:
            return "it is moving to another channel"
        if handoff.status in (HandoffStatus.ENGAGED, HandoffStatus.MOVED):
            return "it continues on another channel"
    if ended_by == DESK_DISPOSITION:
        if escalation is None or escalation.status is not EscalationStatus.CLOSED or escalation.session_id != session_id:
            return "no closed escalation on this session"
        return None
    if ended_by == HANDOFF_EXPIRED:
        expired = handoff is not None and handoff.from_session_id == session_id and handoff.status is HandoffStatus.EXPIRED
        return None if expired else "no expired handoff from this session"
    if session.status is SessionStatus.ACTIVE:
        return "the session is still open"
    if session.status is SessionStatus.TRANSFERRED:
        return "it went on elsewhere (a transfer or a handoff)"
    return None


async def _ended(services: Services, customer: Customer, session_id: str, ended_by: str,
                 escalation: Escalation | None) -> Ended:
    session = await _loaded(services, customer, session_id)
    turns = list(session.turns)
    handoff = customer.handoff
    if handoff is not None and handoff.to_session_id == session_id and handoff.from_session_id in customer.sessions:
        try:  # the conversation began on the channel the customer came from
            turns = list((await _loaded(services, customer, handoff.from_session_id)).turns) + turns
        except NotFound:
            pass
    return Ended(customer, session, turns, ended_by, escalation)


async def _loaded(services: Services, customer: Customer, session_id: str) -> ChannelSession:
    session = customer.sessions[session_id]
    return session if session.loaded else await services.customers.get_session(customer.customer_id, session_id)


# Rule-based ----------------------------------------------------------------------------------------------------------


def rule_based(scenario: Scenario, ended: Ended) -> Synthesis:
    """The synthesis from the turns, the tools' outcomes and the record alone (no model)."""
    customer, turns = ended.customer, ended.turns
    asked = asked_for(scenario, turns, customer.collected)
    intent, goal_turn = asked if asked else (None, -1)
    goal_met = any(t.role == "agent" and t.tool for t in turns[goal_turn + 1:]) if asked else False
    next_action, due = _booked(scenario, customer, turns)
    if ended.escalation is not None and ended.escalation.disposition in _DISPOSITIONS:
        goal_met, next_action = _from_disposition(ended.escalation, next_action)
    follow_ups = promised(customer, ended)
    if next_action is None and (waiting := [f for f in follow_ups if not f["sent"]]):
        next_action = waiting[0]["text"]
    spoke = any(t.role == "customer" for t in turns)
    if next_action is None and not goal_met and ended.escalation is None and spoke:
        next_action = f"Get back to the customer: {_goal(scenario, customer, intent, turns)}"
    return Synthesis(
        session_id=ended.session.session_id, channel=ended.session.channel.value, ended_by=ended.ended_by,
        summary=_summary(scenario, ended), goal=_goal(scenario, customer, intent, turns), goal_met=goal_met,
        sentiment=sentiment(turns), next_action=next_action, due=due, follow_ups=follow_ups, intent=intent,
        escalation_id=ended.escalation.escalation_id if ended.escalation else None,
        disposition=ended.escalation.disposition if ended.escalation else None,
    )


def sentiment(turns: list[Turn]) -> str:
    said = " ".join(t.text.lower() for t in turns if t.role == "customer")
    score = sum(said.count(w) for w in _POSITIVE) - sum(said.count(w) for w in _NEGATIVE) - said.count("!!")
    return "positive" if score > 0 else "negative" if score < 0 else "neutral"


def promised(customer: Customer, ended: Ended) -> list[dict[str, Any]]:
    """The texts promised in this conversation (on the record, whoever writes the synthesis)."""
    sessions = {ended.session.session_id}
    if customer.handoff is not None and customer.handoff.to_session_id == ended.session.session_id:
        sessions.add(customer.handoff.from_session_id)
    return [
        {"kind": p["kind"], "ref": p["ref"], "sent": bool(p.get("sent_at")),
         "text": f"Text the customer when the {p['kind'].replace('_', ' ')} happens ({p['ref']})"
         if p["kind"] != "outage_restored" else f"Text the customer when outage {p['ref']} is restored"}
        for p in customer.promises if p.get("session_id") in sessions
    ]


def _summary(scenario: Scenario, ended: Ended) -> str:
    customer = ended.customer
    # The extractive summary reads the record's copy of the session: give it the whole conversation.
    view = Customer(customer.customer_id, sessions={ended.session.session_id: ChannelSession(
        ended.session.session_id, ended.session.channel, turns=ended.turns)}, collected=dict(customer.collected),
        summary=customer.summary)
    return extractive_summary(scenario, view, ended.session.session_id)


def _goal(scenario: Scenario, customer: Customer, intent: str | None, turns: list[Turn]) -> str:
    if intent is not None:
        said = fill(scenario.intents[intent].summary, scenario, customer.collected)
        return re.sub(r"^you were\s+", "", said, flags=re.IGNORECASE).rstrip(".")
    first = next((t.text for t in turns if t.role == "customer" and t.text.strip()), "")
    return first[:200] or "not stated"


def _booked(scenario: Scenario, customer: Customer, turns: list[Turn]) -> tuple[str | None, str | None]:
    """A tool that answered with a date it booked (a technician visit next Monday) is the next action, due then."""
    for turn in reversed(turns):
        spec = scenario.tools.get(turn.tool or "") if turn.role == "agent" else None
        if spec is None:
            continue
        dated = [s for s in spec.slot_parameters().values() if "date" in s and customer.collected.get(s)]
        if dated:
            return spec.description.rstrip("."), customer.collected[dated[0]]
    return None, None


def _from_disposition(escalation: Escalation, booked: str | None) -> tuple[bool, str | None]:
    met, action = _DISPOSITIONS[escalation.disposition or ""]
    if action and escalation.note:
        action = f"{action}: {escalation.note}"
    return met, action or booked


# Written by a model ---------------------------------------------------------------------------------------------------


async def model_synthesis(scenario: Scenario, ended: Ended, complete: Complete, written_by: str) -> Synthesis:
    """The model writes the words (summary, goal, next action, sentiment), checked; the facts come from the record.
    A failure or a rejected answer gives the rule-based synthesis, and the fallback is counted."""
    rules = rule_based(scenario, ended)
    if not ended.turns:
        return rules
    try:
        raw = await complete(synthesis_messages(scenario, ended, rules))
    except Exception as exc:
        log.warning("synthesis: the model did not write one (%s); using the rule-based one", type(exc).__name__)
        count_fallback("synthesis", "error")
        return rules
    answer = _json_object(raw)
    problems = check_synthesis(answer, scenario, ended) if answer is not None else ["it is not a JSON object"]
    if problems:
        log.warning("synthesis: the model's was rejected (%s); using the rule-based one", "; ".join(problems))
        count_fallback("synthesis", "rejected")
        return rules
    assert answer is not None
    goal_met = bool(answer["goal_met"])
    if ended.escalation is not None and ended.escalation.disposition in _DISPOSITIONS:
        goal_met = rules.goal_met  # the person's disposition says whether it was met, not the model
    return Synthesis(
        **{**rules.to_dict(), "summary": " ".join(answer["summary"].split()), "goal": answer["goal"].strip(),
           "goal_met": goal_met, "sentiment": answer["sentiment"],
           "next_action": (answer.get("next_action") or "").strip() or rules.next_action,
           "due": (answer.get("due") or "").strip() or rules.due, "written_by": written_by, "at": utcnow()}
    )


def check_synthesis(answer: dict[str, Any], scenario: Scenario, ended: Ended) -> list[str]:
    problems = []
    for key, kind in (("summary", str), ("goal", str), ("goal_met", bool), ("sentiment", str)):
        if not isinstance(answer.get(key), kind):
            problems.append(f"{key} is missing or not a {kind.__name__}")
    for key in ("next_action", "due"):
        if answer.get(key) is not None and not isinstance(answer[key], str):
            problems.append(f"{key} is not a string")
    if problems:
        return problems
    if answer["sentiment"] not in SENTIMENTS:
        problems.append(f"sentiment is not one of {', '.join(SENTIMENTS)}")
    if not answer["goal"].strip():
        problems.append("goal is empty")
    wanted = needs(scenario, ended.customer, ended.turns)
    problems += [f"summary: {p}" for p in check_summary(answer["summary"], scenario, ended.customer, wanted)]
    return problems


def synthesis_messages(scenario: Scenario, ended: Ended, rules: Synthesis) -> list[dict[str, str]]:
    wanted = needs(scenario, ended.customer, ended.turns)
    required = [f"- {slot}: {ended.customer.collected[slot]}" for slot in wanted.slots()]
    facts = [f"- {slot}: {value}" for slot, value in ended.customer.collected.items()]
    known = [f"- promised: {f['text']}" for f in rules.follow_ups]
    if ended.escalation is not None:
        known.append(f"- a person at the desk closed it as {ended.escalation.disposition}"
                     + (f" with the note: {ended.escalation.note}" if ended.escalation.note else ""))
    system = "\n".join([
        f"You write the record of a finished {ended.session.channel.value} conversation for {scenario.company}'s"
        " contact center, for the people who pick the customer up next time.",
        "Answer with one JSON object and nothing else: {\"summary\": one or two factual sentences about the"
        " customer (\"The customer ...\"), \"goal\": what the customer wanted, a few words, \"goal_met\": true or"
        " false, \"next_action\": what we still have to do, or null, \"due\": when that is due as the conversation"
        " said it, or null, \"sentiment\": \"positive\", \"neutral\" or \"negative\"}.",
        "Only facts from the transcript and the data below.",
        *(["The summary must state each of these exactly as given:", *required] if required else []),
        *(["Data collected:", *facts] if facts else []),
        *(["Known facts:", *known] if known else []),
    ])
    transcript = "\n".join(
        f"{'Customer' if t.role == 'customer' else 'Person at the desk' if t.person else 'Agent'}: {t.text}"
        for t in ended.turns[-SYNTHESIS_TURNS:] if t.text
    )
    return [{"role": "system", "content": system}, {"role": "user", "content": f"Transcript:\n{transcript}"}]


def _json_object(raw: str) -> dict[str, Any] | None:
    text = raw.strip()
    if text.startswith("```"):  # models wrap JSON in a fence though asked not to
        text = re.sub(r"^```(?:json)?\s*|\s*```$", "", text)
    try:
        parsed = json.loads(text)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None
