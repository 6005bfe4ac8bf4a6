"""The handoff summary: what the customer was doing, in a line the next channel can say back to them.

The extractive summary needs no model: the topic comes from the scenario's intent summaries ("You were reporting
the power outage at {service_address}") for the latest thing the customer asked about, and "where we got to" is the
last reply that gave a tool's answer. The OpenAI policy writes its own summary and falls back to this one.
"""

from __future__ import annotations

from shared.models import Customer
from shared.policies.nlu import classifier_for
from shared.scenario import Scenario


def extractive_summary(scenario: Scenario, customer: Customer, session_id: str) -> str:
    session = customer.sessions.get(session_id)
    if session is None:
        return customer.summary
    classifier = classifier_for(scenario)
    topic = ""
    for turn in reversed(session.turns):
        if turn.role == "customer" and (match := classifier.classify(turn.text)):
            topic = _fill(scenario.intents[match.intent].summary, scenario, customer.collected)
            if topic:
                break
    answer = next((t.text for t in reversed(session.turns) if t.role == "agent" and t.tool), "")
    for channel in ("WhatsApp", "web chat"):  # the switch offer rode on that reply; it is not part of the answer
        answer = answer.replace(scenario.phrase("switch_offer", channel=channel), "").strip()
    parts = [p.rstrip(".") + "." for p in (topic, f"Where we got to: {answer}" if answer else "") if p]
    return " ".join(parts) or customer.summary


def _fill(template: str, scenario: Scenario, collected: dict[str, str]) -> str:
    """The template with known slots filled; a clause naming an unknown slot is cut at the placeholder."""
    try:
        return template.format(company=scenario.company, **collected)
    except KeyError:
        head = template.split("{", 1)[0].rstrip()
        for preposition in (" at", " for", " on", " with", " about"):
            if head.endswith(preposition):
                return head[: -len(preposition)]
        return head
