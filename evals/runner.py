"""Run one journey on a driver's stack and score it (docs/evals.md says what each figure means).

The driver is the real stack as processes (live.py, the default) or the conversation core in this process (rig.py,
`--fast`); the play and the scoring are the same for both. With a simulated customer (simulate.py) a model words
each line from the persona and the line's intent; with a judge (judge.py) a model grades the transcript, and its
"failed" verdict fails the journey.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import Any

from shared.reasking import reasked as _reasked, slot_questions as _slot_questions
from shared.scenario import load_scenario

from evals import hearing
from evals.exchange import Driver, Leg
from evals.journeys import Journey
from local.verifying import ASKS_TO_VERIFY


@dataclass
class Result:
    journey: Journey
    turns: int = 0  # customer messages
    reasked: list[str] = field(default_factory=list)  # "slot (turn n)": a slot asked for while the record had it
    failures: list[str] = field(default_factory=list)  # why the task did not succeed
    handoff: bool | None = None  # None: the journey moves no channel; else whether the move reached a first reply
    switch_seconds: float | None = None  # from the customer's acceptance to the first message on the new channel
    transcript: list[tuple[str, str]] = field(default_factory=list)  # (who, text)
    verdict: dict[str, Any] | None = None  # the judge's, when a model graded the transcript
    seconds: float = 0.0  # wall time of the journey, its stack's start and stop included
    error: str = ""

    @property
    def success(self) -> bool:
        return not self.failures and not self.error


async def run(driver: Driver, journey: Journey, seed: int = 0, customer: Any = None, judge: Any = None) -> Result:
    """Play `journey` on a fresh stage of `driver`; `customer` words the lines (else the scripted paraphrase drawn
    by `seed`), `judge` grades the transcript."""
    result = Result(journey)
    rng = random.Random(f"{seed}:{journey.id}")
    started = time.monotonic()
    try:
        async with driver.stage(journey) as stage:
            await _play(stage, journey, rng, result, customer)
    except Exception as exc:  # a crash is a failed journey with its reason, not the end of the suite
        result.error = f"{type(exc).__name__}: {exc}"
    if judge is not None and not result.error:
        result.verdict = await judge.grade(journey, result.transcript)
        if not result.verdict.get("passed"):
            result.failures.append(f"judge: {result.verdict.get('reasons', 'failed')}")
    result.seconds = time.monotonic() - started
    return result


async def run_all(driver: Driver, journeys: list[Journey], seed: int = 0, customer: Any = None, judge: Any = None,
                  parallel: int = 1, done: Any = None) -> list[Result]:
    """Every journey, up to `parallel` at a time (each on its own stage, so they cannot meet), in their order."""
    gate = asyncio.Semaphore(max(parallel, 1))

    async def one(journey: Journey) -> Result:
        async with gate:
            result = await run(driver, journey, seed, customer, judge)
        if done is not None:
            done(result)
        return result

    return list(await asyncio.gather(*(one(j) for j in journeys)))


async def _play(stage: Any, journey: Journey, rng: random.Random, result: Result, customer: Any) -> None:
    scenario = load_scenario(journey.scenario)
    leg: Leg = await stage.open(journey)
    asks = _slot_questions(scenario)
    known = await leg.known()
    tools: set[str] = set()
    escalated, switched, accepted_at = False, "", 0.0
    heard: list[tuple[str, bool]] = [(leg.opening, leg.exact)]  # all the agent said, and whether word for word
    if leg.opening:
        result.transcript.append(("agent", leg.opening))
    last_said = leg.opening
    for index, line in enumerate(journey.lines):
        if line.follow:
            if switched != line.follow:
                result.failures.append(f"no switch to {line.follow} to follow")
                result.handoff = False
                return
            moved = await stage.follow(leg, line.follow, journey, accepted_at)
            result.handoff, result.switch_seconds = moved.leg is not None, moved.seconds
            if moved.leg is None:
                result.failures.append(f"the handoff to {line.follow} did not continue: {moved.why}")
                return
            leg = moved.leg
            result.transcript.append(("agent", moved.first))
            heard.append((moved.first, leg.exact))
            last_said = moved.first
            continue
        if line.verify:
            if not ASKS_TO_VERIFY.search(last_said):
                continue  # the channel vouched enough, or the agent did not need it yet: nothing to answer
            text = await stage.proof(last_said, line.verify, scenario.name)
        elif customer is not None:
            text = await customer.line(journey, line, rng.choice(line.say), result.transcript)
        else:
            text = rng.choice(line.say)
        sent_at = time.monotonic()
        got = await leg.say(text)
        result.turns += 1
        shown = text if not line.verify else "[verification answer]"
        if got.understood and not line.verify and _plain(got.understood) != _plain(text):
            shown += f"  [understood: {got.understood}]"  # a call's speech-to-text got it otherwise
        result.transcript += [("customer", shown), ("agent", got.heard)]
        heard.append((got.heard, leg.exact))
        for slot in _reasked(got.said, asks, known):
            result.reasked.append(f"{slot} (turn {result.turns})")
        known = got.collected
        tools |= got.tools
        escalated = escalated or got.escalated
        if got.switch_to:
            switched, accepted_at = got.switch_to, sent_at
        if _repeats(got.said, last_said) and not line.verify:  # the customer said something new: answer it anew
            result.failures.append(f"turn {result.turns}: the previous reply again, word for word")
        result.failures += [f"turn {result.turns}: reply lacks {e!r}" for e in line.expect
                            if not hearing.contains(got.heard, e, exact=leg.exact)]
        result.failures += [f"turn {result.turns}: reply has {r!r}" for r in line.reject
                            if hearing.contains(got.heard, r, exact=True)]
        last_said = got.said
    _score(journey, result, heard, tools, escalated, switched)


def _score(journey: Journey, result: Result, heard: list[tuple[str, bool]], tools: set[str], escalated: bool,
           switched: str) -> None:
    goal = journey.success
    result.failures += [f"no {t} result" for t in goal.tools if t not in tools]
    result.failures += [f"never said {s!r}" for s in goal.says
                        if not any(hearing.contains(text, s, exact=exact) for text, exact in heard)]
    result.failures += [f"said {s!r}" for s in goal.never if any(s.lower() in text.lower() for text, _ in heard)]
    if goal.escalated is not None and goal.escalated != escalated:
        result.failures.append("not escalated" if goal.escalated else "escalated")
    if goal.switch and goal.switch != switched and result.handoff is None:
        result.failures.append(f"no switch to {goal.switch}")
    if result.turns > goal.max_turns:
        result.failures.append(f"{result.turns} turns > {goal.max_turns}")


def _plain(text: str) -> str:
    return " ".join(hearing.words(text))


def _repeats(reply: str, previous: str) -> bool:
    """The reply is the previous one again, or a sentence of it read out whole once more (a long answer the new
    channel's opening already gave); a short stock line ("Is there anything else ...?") may come back."""
    return bool(reply) and (reply == previous or (len(reply) > 80 and reply in previous))
