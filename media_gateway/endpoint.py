"""Has the caller finished? The VAD hears a short pause; this decides whether it ends the turn (media_gateway/vad.py).

Two opinions, asked at once when the pause begins:

- the end-of-turn model (turn_model.py) on the turn's audio: does it *sound* finished? It hears intonation: a
  question that falls at the end is finished, a sentence stopped after "and also about" is not;
- the words so far (the speech-to-text stream's partial transcript of the same audio): do they *read* finished? A
  number still being read out is not ("my account number is 100 200": the scenario's account numbers have nine
  digits), nor is a sentence that ends on "and", "the" or "um", nor one the recogniser ended with a comma (Whisper
  hears the voice carry on: "6-2-7-0-1," before the last name). A caller reading digit groups sounds finished after
  each group, so the model alone would cut them off.

Finished only if both agree. Otherwise the VAD waits for the longer silence (GATEWAY_TURN_WAIT_MS) or for the caller
to go on. The transcript asked for here is the one the turn then uses when nothing but silence followed, so the
answer starts as soon as the verdict is in: speech-to-text ran during the pause, not after it (docs/voice.md).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np

from media_gateway.turn_model import SmartTurnModel
from media_gateway.vad import VadParams

log = logging.getLogger(__name__)

#: Words a finished sentence does not end on: the caller has more to say.
CONNECTORS = frozenset(
    "and or but so because um uh er erm the a an my our your to of for from is are was at in on with about like if "
    "then than that which who whose".split()
)
#: Words that open what a caller is about to say; said alone, with nothing after them yet, the turn has not begun:
#: "Sorry, ... I'm at 12 Lakeview" loses everything after the apology if the pause after it ends the turn.
OPENERS = frozenset("sorry well actually oh hmm wait hold on".split())
_TRAILING_NUMBER = re.compile(r"(\+?[\d(][\d ,.()-]*)$")
_END_PUNCTUATION = " .?!"


@dataclass(frozen=True)
class NumberShapes:
    """The numbers a scenario collects, which a caller reads out in pieces: its digit slots' patterns (account and
    phone numbers), and the lengths of answers that are digits alone and whole when said in one breath (a one-time
    code)."""

    patterns: tuple[re.Pattern[str], ...] = ()
    whole_lengths: frozenset[int] = frozenset()

    @classmethod
    def of(cls, patterns: Iterable[str], whole_lengths: Iterable[int]) -> NumberShapes:
        return cls(tuple(re.compile(p, re.IGNORECASE) for p in patterns), frozenset(whole_lengths))


def vad_params(settings: object, model: SmartTurnModel) -> VadParams:
    """The VAD's turn-taking from the settings: a short pause and a judge (GATEWAY_TURN_DETECTION=model, when the
    model's file is there), else a fixed silence."""
    if getattr(settings, "gateway_turn_detection") == "model":
        if model.available:
            pause = getattr(settings, "gateway_turn_pause_ms")
            return VadParams(pause_ms=pause, ask_ms=min(200, pause),
                             end_of_turn_ms=getattr(settings, "gateway_turn_wait_ms"))
        log.warning("the end-of-turn model is missing at %s (`make setup`, or `python -m media_gateway.turn_model "
                    "fetch`): turns end after %d ms of silence", model.path, getattr(settings, "gateway_end_of_turn_ms"))
    return VadParams(end_of_turn_ms=getattr(settings, "gateway_end_of_turn_ms"))


def number_shapes(scenario: object) -> NumberShapes:
    """A scenario's numbers: its digit and phone slots' patterns, and its one-time code's length. A ZIP code is not
    taken as whole: the scenario asks for it with the last name ("62701, Lee"), so five digits read on."""
    slots = getattr(scenario, "slots", {}).values()
    patterns = [slot.pattern for slot in slots if slot.pattern and slot.kind in ("digits", "phone")]
    verification = getattr(scenario, "verification", None)
    return NumberShapes.of(patterns, {verification.code_length} if verification is not None else set())


def unfinished(text: str, shapes: NumberShapes) -> bool:
    """Whether these words stop in the middle: on a connecting word, or partway through a number the scenario
    collects (a prefix of one of its patterns that is not yet a whole one)."""
    text = text.strip()
    if text.endswith((",", "...", "-")):
        return True  # the recogniser heard the voice carry on: "6-2-7-0-1," before the last name
    asked = text.endswith("?")
    text = text.rstrip(_END_PUNCTUATION).lower()
    if not text:
        return False
    words = [word.strip(",.") for word in text.split()]
    if words[-1] in CONNECTORS:
        return True
    if all(word in OPENERS for word in words) and not asked:  # "Sorry." ("Sorry?" asks us to say it again)
        return True
    found = _TRAILING_NUMBER.search(text)
    if found is None:
        return False
    number = re.sub(r"\s+", " ", re.sub(r"[,.]", " ", found.group(1))).strip()
    digits = re.sub(r"\D", "", number)
    if not digits:
        return False
    groups = number.split(" ")
    if len(digits) in shapes.whole_lengths and (len(groups) == 1 or all(len(g) == 1 for g in groups)):
        return False  # "123456", "1 2 3 4 5 6": a code said whole
    # As written, and as one run of digits: a caller saying digits one by one gets "8, 5, 6" from the recogniser.
    forms = (number, digits)
    if any(p.fullmatch(form) for p in shapes.patterns for form in forms):
        return False
    return any(p.fullmatch(form + tail) for p in shapes.patterns for form in forms for tail in _tails(15 - len(digits)))


def _tails(most: int) -> Iterable[str]:
    for count in range(1, max(most, 0) + 1):
        yield "0" * count
        yield " " + "0" * count


@dataclass(frozen=True)
class Verdict:
    finished: bool
    probability: float | None  # the model's, that the turn sounds complete; None: not asked (the words said no)
    text: str  # the partial transcript the words were judged on ("" when the engine gives none)


class EndOfTurn:
    """Asks both opinions at a pause. `finished(audio, transcript)` is what the VAD stage awaits."""

    def __init__(self, model: SmartTurnModel, executor: Executor, shapes: NumberShapes,
                 threshold: float = 0.5) -> None:
        self.model = model
        self._executor = executor
        self._shapes = shapes
        self._threshold = threshold

    async def judge(self, audio: np.ndarray, transcript: Callable[[], Awaitable[str]]) -> Verdict:
        """The words first: when they say the caller is not done ("my account number is 100 200"), that is the
        verdict, and the model is not run. It runs at every pause of every call otherwise, and was half the
        gateway's CPU (docs/cost.md, "Media gateway CPU"); asked after the words it adds its ~12 ms to a pause
        that waits 400 ms anyway."""
        text = await transcript()
        if unfinished(text, self._shapes):
            log.debug("pause: words %r -> not finished (model not asked)", text)
            return Verdict(False, None, text)
        loop = asyncio.get_running_loop()
        probability = await loop.run_in_executor(self._executor, self.model.complete, audio)
        finished = probability >= self._threshold
        log.debug("pause: sounds %.2f finished, words %r -> %s", probability, text, finished)
        return Verdict(finished, probability, text)
