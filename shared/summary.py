"""The handoff summary: what the customer was doing, in a line the next channel can say back to them.

The extractive summary needs no model: the topic comes from the scenario's intent summaries ("You were reporting
the power outage at {service_address}") for the latest thing the customer asked about, and "where we got to" is the
last reply that gave a tool's answer. It is what the offline policy uses.

A policy with a model (OpenAI; Foundry when it lands) has the model write the summary instead (`model_summary`):
from the transcript and the collected data, short, factual, in the scenario's voice. A model can leave things out or
make them up, and this line is what the customer reads in the invitation and what the next agent starts from, so it
is checked before it is used (`check_summary`): it must name what the customer asked for, as the scenario's own
classifier reads it, and every collected slot the conversation relied on (the topic's and those of the tools that
answered). A summary that fails, or a model that fails to answer, gives way to the extractive one, and the fallback is
counted (switchboard.summary.fallbacks, by reason).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from opentelemetry import metrics

from shared.models import Customer, Turn
from shared.policies.nlu import classifier_for
from shared.scenario import Scenario

log = logging.getLogger(__name__)

SUMMARY_FALLBACKS = "switchboard.summary.fallbacks"
_fallbacks = metrics.get_meter("switchboard").create_counter(
    SUMMARY_FALLBACKS, description="Model-written summaries (and syntheses) rejected or not written; the rule-based one was used"
)
#: The transcript the model reads: the session's latest turns (a summary is about where the customer got to).
SUMMARY_TURNS = 30
#: Longer than this is no longer a summary a customer reads in a WhatsApp message.
MAX_SUMMARY_CHARS = 400

#: A policy's way to ask its model: the chat messages in, the model's text out (raises on failure).
Complete = Callable[[list[dict[str, str]]], Awaitable[str]]


def count_fallback(what: str, reason: str) -> None:
    """A model-written `what` (summary, synthesis) was not used: `reason` is rejected, error or empty."""
    _fallbacks.add(1, {"what": what, "reason": reason})


def extractive_summary(scenario: Scenario, customer: Customer, session_id: str) -> str:
    session = customer.sessions.get(session_id)
    if session is None:
        return customer.summary
    topic = ""
    if asked := asked_for(scenario, session.turns, customer.collected):
        topic = fill(scenario.intents[asked[0]].summary, scenario, customer.collected)
    answer = next((t.text for t in reversed(session.turns) if t.role == "agent" and t.tool), "")
    for channel in ("WhatsApp", "web chat"):  # the switch offer rode on that reply; it is not part of the answer
        answer = answer.replace(scenario.phrase("switch_offer", channel=channel), "").strip()
    parts = [p.rstrip(".") + "." for p in (topic, f"Where we got to: {answer}" if answer else "") if p]
    return " ".join(parts) or customer.summary


def asked_for(scenario: Scenario, turns: list[Turn], collected: dict[str, str]) -> tuple[str, int] | None:
    """The intent of the latest customer turn that names one whose summary can be said, and that turn's index."""
    classifier = classifier_for(scenario)
    for index in range(len(turns) - 1, -1, -1):
        turn = turns[index]
        if turn.role == "customer" and (match := classifier.classify(turn.text)):
            if fill(scenario.intents[match.intent].summary, scenario, collected):
                return match.intent, index
    return None


# Written by a model -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Needs:
    """What a summary of this session must mention: the intent asked for, and groups of collected slots, each group
    satisfied by any one of its values (a tool that needs an account number or a phone number relied on either)."""

    intent: str | None
    slot_groups: tuple[tuple[str, ...], ...]

    def slots(self) -> list[str]:
        return [slot for group in self.slot_groups for slot in group]


def needs(scenario: Scenario, customer: Customer, turns: list[Turn]) -> Needs:
    asked = asked_for(scenario, turns, customer.collected)
    intent = asked[0] if asked else None
    groups: list[tuple[str, ...]] = []
    if intent is not None:
        groups += [(slot,) for slot in _placeholders(scenario.intents[intent].summary) if customer.collected.get(slot)]
    for tool in dict.fromkeys(t.tool for t in turns if t.role == "agent" and t.tool):
        spec = scenario.tools.get(tool)
        if spec is None:
            continue
        grouped: set[str] = set()
        for requirement in spec.requires:
            slots = spec_slots(spec, requirement.any_of)
            grouped |= set(slots)
            if known := tuple(s for s in slots if customer.collected.get(s)):
                groups.append(known)
        for slot in spec.slot_parameters().values():
            if slot not in grouped and customer.collected.get(slot):
                groups.append((slot,))
    unique = tuple(dict.fromkeys(groups))
    return Needs(intent, unique)


def spec_slots(spec, names: tuple[str, ...]) -> tuple[str, ...]:  # type: ignore[no-untyped-def]
    """A requirement names parameters; the slots behind them."""
    by_param = spec.slot_parameters()
    return tuple(by_param.get(name, name) for name in names)


def check_summary(summary: str, scenario: Scenario, customer: Customer, wanted: Needs) -> list[str]:
    """What is wrong with a model's summary; empty when it may be used."""
    problems = []
    if not summary.strip():
        return ["it is empty"]
    if len(summary) > MAX_SUMMARY_CHARS:
        problems.append(f"it is longer than {MAX_SUMMARY_CHARS} characters")
    if wanted.intent is not None:
        scores = {m.intent: m.score for m in classifier_for(scenario).scores(summary)}
        if scores.get(wanted.intent, 0.0) < classifier_for(scenario).THRESHOLD:
            problems.append(f"it does not say what the customer asked for ({wanted.intent})")
    for group in wanted.slot_groups:
        if not any(mentions(summary, scenario, slot, customer.collected[slot]) for slot in group):
            problems.append(f"it leaves out {' or '.join(group)}")
    return problems


def mentions(text: str, scenario: Scenario, slot: str, value: str) -> bool:
    """Whether `text` states the slot's `value`, however it is written (digits with or without separators, a phone
    number without its country code, "Street" for "St", one of a choice's words)."""
    spec = scenario.slots.get(slot)
    if spec is not None and spec.choices and value in spec.choices:
        words = (value, *spec.choices[value])
        return any(re.search(rf"\b{re.escape(w)}", text, re.IGNORECASE) for w in words)
    digits = re.sub(r"\D", "", value)
    if spec is not None and spec.kind in ("digits", "phone") and digits:
        run = re.sub(r"(?<=\d)[\s.\-()]+(?=\d)", "", text.replace("(", " "))
        return (digits[-10:] if spec.kind == "phone" else digits) in re.sub(r"[^\d ]", " ", run)
    return _plain(value) in _plain(text)


async def model_summary(scenario: Scenario, customer: Customer, session_id: str, complete: Complete) -> str:
    """The summary the model writes, if it passes `check_summary`; else the extractive one (and the fallback counted).

    The hook every policy with a model uses: it passes its own `complete` (one chat request, the text back)."""
    fallback = extractive_summary(scenario, customer, session_id)
    session = customer.sessions.get(session_id)
    if session is None or not session.turns:
        return fallback
    wanted = needs(scenario, customer, session.turns)
    try:
        written = " ".join((await complete(summary_messages(scenario, customer, session.turns, wanted))).split())
    except Exception as exc:  # any failure of the model is a summary we do not have, never a failed handoff
        log.warning("summary: the model did not write one (%s); using the extractive summary", type(exc).__name__)
        count_fallback("summary", "error")
        return fallback
    if problems := check_summary(written, scenario, customer, wanted):
        log.warning("summary: the model's was rejected (%s); using the extractive summary", "; ".join(problems))
        count_fallback("summary", "rejected")
        return fallback
    return written


def summary_messages(scenario: Scenario, customer: Customer, turns: list[Turn], wanted: Needs) -> list[dict[str, str]]:
    facts = [f"- {slot}: {value}" for slot, value in customer.collected.items()]
    required = [f"- {slot}: {customer.collected[slot]}" for slot in wanted.slots()]
    system = "\n".join([
        f"You write the handoff summary for {scenario.company}'s contact center. The customer is moving to another"
        " channel; the summary is sent to them there and read by the agent who carries on.",
        "Write one or two short sentences addressed to the customer (\"You were ...\"), in the company's voice:"
        " what they asked for and where we got to. Only facts from the transcript and the data below; no greeting,"
        " no promises, no markdown.",
        *(["It must state each of these exactly as given:", *required] if required else []),
        "Data collected:" if facts else "No data was collected.",
        *facts,
    ])
    transcript = "\n".join(_line(t) for t in turns[-SUMMARY_TURNS:] if t.text)
    return [{"role": "system", "content": system}, {"role": "user", "content": f"Transcript:\n{transcript}"}]


def _line(turn: Turn) -> str:
    who = "Customer" if turn.role == "customer" else ("Person at the desk" if turn.person else "Agent")
    return f"{who}: {turn.text}"


_ABBREVIATIONS = {"street": "st", "avenue": "ave", "road": "rd", "boulevard": "blvd", "lane": "ln", "drive": "dr",
                  "court": "ct", "place": "pl"}


def _plain(text: str) -> str:
    words = re.findall(r"[a-z0-9]+(?:\.[0-9]+)?", text.lower())
    return " " + " ".join(_ABBREVIATIONS.get(w, w) for w in words) + " "


def _placeholders(template: str) -> list[str]:
    return [name for name in re.findall(r"{(\w+)}", template) if name != "company"]


def fill(template: str, scenario: Scenario, collected: dict[str, str]) -> str:
    """The template with known slots filled; a clause naming an unknown slot is cut at the placeholder."""
    try:
        return template.format(company=scenario.company, **collected)
    except KeyError:
        head = template.split("{", 1)[0].rstrip()
        for preposition in (" at", " for", " on", " with", " about"):
            if head.endswith(preposition):
                return head[: -len(preposition)]
        return head
