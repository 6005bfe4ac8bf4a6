"""Whether an agent asked the customer again for something the record already held.

One definition, used by the evaluation suite (evals/runner.py, per turn of a journey) and by the success figures
from real traffic (shared/ops_metrics.py, on the turns a continuing channel's session recorded): a reply asks for a
slot when it contains one of the scenario's own questions for it (the slot's `ask`, or the `ask` of a tool
requirement naming it), and asks *again* when the record held that slot. It judges by the scenario's wording, so a
model that paraphrases the question is not caught: the figure is a floor on re-asking, never an invention.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from shared.scenario import Scenario

#: A question an agent asks, and the slots any of which would have answered it.
SlotQuestion = tuple[str, tuple[str, ...]]


def slot_questions(scenario: Scenario) -> list[SlotQuestion]:
    """Each question the scenario's agents ask for a slot (the slot's own, and each tool requirement's)."""
    asks = [(s.ask, (s.name,)) for s in scenario.slots.values()]
    asks += [(r.ask, tuple(r.any_of)) for t in scenario.tools.values() for r in t.requires]
    return [(ask, slots) for ask, slots in asks if ask]


def reasked(reply: str, asks: Sequence[SlotQuestion], known: Collection[str] | dict[str, str]) -> list[str]:
    """The slots `reply` asks for although `known` (slot names, or the record's slot -> value) already has them."""
    held = {name for name in known if not isinstance(known, dict) or known[name]}
    found = {next(s for s in slots if s in held) for ask, slots in asks
             if ask in reply and any(s in held for s in slots)}
    return sorted(found)
