"""The caller's silence: when the line has waited on them long enough, the agent asks whether they are still there,
and after a second silence says goodbye and the call ends, recorded as abandoned (docs/voice.md, "Silence").

The timer counts only while the line waits on the caller:

- it starts when the agent's last audio has been played (`listening`), not when the reply's text was decided: a
  long answer is not the caller's silence;
- any speech (the VAD's UserStartedSpeaking) or key they press stops it and forgets the silences so far
  (`heard_caller`): a caller who answers the reprompt starts afresh;
- it is held (`hold`/`release`, or `with timer.held_for(reason)`) while the caller is not the one expected to speak: on
  hold, waiting in the desk queue, being transferred, while a turn (and its tool calls) is in progress. When the last
  hold lifts, a wait that was running starts over: the caller gets the whole time once the line is theirs again.

It is pure: it reads the clock it is given and says when it is due (`deadline`); the agent stage (agent.py) sleeps
until then and asks `expire` what to do, so the rules are tested with a fake clock (tests/media_gateway/test_silence.py).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import Enum


class Silence(Enum):
    """What a silence calls for."""

    REPROMPT = "reprompt"  # the first: "Are you still there?"
    GOODBYE = "goodbye"  # the second in a row: a polite goodbye, then the call ends


class SilenceTimer:
    def __init__(
        self, seconds: float, clock: Callable[[], float] = time.monotonic, on_change: Callable[[], None] | None = None
    ) -> None:
        if seconds <= 0:
            raise ValueError("a silence lasts a positive number of seconds")
        self.seconds = seconds
        self._clock = clock
        self._on_change = on_change  # the deadline may have moved: whoever sleeps until it looks again
        self._since: float | None = None  # when the line began waiting on the caller; None: it is not
        self._holds: Counter[str] = Counter()
        self.silences = 0  # silences in a row since the caller last spoke or pressed a key

    @property
    def held(self) -> bool:
        return bool(+self._holds)

    def deadline(self) -> float | None:
        """When the caller's silence is up (on the timer's clock); None while nothing is counting."""
        if self._since is None or self.held:
            return None
        return self._since + self.seconds

    def listening(self) -> None:
        """The agent's audio has been played to the end: from now the line waits on the caller."""
        self._since = self._clock()
        self._changed()

    def heard_caller(self) -> None:
        """The caller spoke or pressed a key: nothing counts until the agent has had its say again."""
        self._since = None
        self.silences = 0
        self._changed()

    def hold(self, reason: str) -> None:
        """Stop counting while `reason` lasts (on hold, in the desk queue, being transferred, a turn running)."""
        self._holds[reason] += 1
        self._changed()

    def release(self, reason: str) -> None:
        """`reason` is over; once nothing holds the timer, a wait that was running starts over from now."""
        if self._holds[reason] > 0:
            self._holds[reason] -= 1
        if not self.held and self._since is not None:
            self._since = self._clock()
        self._changed()

    @contextmanager
    def held_for(self, reason: str) -> Iterator[None]:
        self.hold(reason)
        try:
            yield
        finally:
            self.release(reason)

    def expire(self) -> Silence | None:
        """If the caller's silence is up, what it calls for (and the wait stops: the agent speaks next); else None."""
        deadline = self.deadline()
        if deadline is None or self._clock() < deadline:
            return None
        self._since = None
        self.silences += 1
        self._changed()
        return Silence.REPROMPT if self.silences == 1 else Silence.GOODBYE

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change()
