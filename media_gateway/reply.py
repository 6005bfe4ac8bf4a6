"""A reply on its way to the caller, as a handle (LiveKit's SpeechHandle).

The agent stage creates one per reply (the greeting, each answer). The TTS stage records each clause it synthesizes
on it, the output stage records how much of each clause has been played, and whoever holds the handle can
`interrupt()` it or `wait_for_playout()`. After an interruption, `heard()` says what the caller actually heard,
which is what the transcript keeps.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass

from media_gateway.metrics import TurnMetrics
from shared.conversation import Reply

#: Marks where the caller cut a reply short in the transcript.
CUT = "—"

_ids = itertools.count(1)


@dataclass
class Clause:
    """One piece of a reply sent to TTS, and how far its audio has got."""

    text: str
    agent: str
    queued_samples: int = 0  # synthesized and handed to the output
    played_samples: int = 0  # sent to the caller
    synthesized: bool = False  # all of its audio has been queued

    @property
    def played_out(self) -> bool:
        return self.synthesized and self.played_samples >= self.queued_samples

    def heard_text(self) -> str:
        """The whole clause once played; otherwise the words in proportion to the audio played, then a cut mark."""
        if self.played_out:
            return self.text
        if not self.played_samples or not self.queued_samples:
            return ""
        words = self.text.split()
        fraction = self.played_samples / self.queued_samples
        if not self.synthesized:  # more audio was coming: what we queued is an upper bound
            fraction = min(fraction, 0.5)
        kept = words[: int(len(words) * fraction)]
        return " ".join(kept) + CUT if kept else ""


class ReplyHandle:
    def __init__(self, metrics: TurnMetrics | None = None) -> None:
        self.id = next(_ids)
        self.metrics = metrics  # None for the greeting: no caller turn led to it
        self.clauses: list[Clause] = []
        self._interrupted = False
        self._done = asyncio.Event()

    def __repr__(self) -> str:
        state = "interrupted" if self._interrupted else "done" if self.done else "active"
        return f"<ReplyHandle {self.id} {state}>"

    @property
    def interrupted(self) -> bool:
        return self._interrupted

    @property
    def done(self) -> bool:
        """Played out or interrupted: nothing more of it will reach the caller."""
        return self._done.is_set()

    def interrupt(self) -> bool:
        """Stop this reply; True if it was still going."""
        if self.done:
            return False
        self._interrupted = True
        if self.metrics is not None:
            self.metrics.interrupted = True
        self._done.set()
        return True

    async def wait_for_playout(self) -> None:
        """Return once the reply has been played to the end or interrupted."""
        await self._done.wait()

    def begin_clause(self, text: str, agent: str) -> Clause:
        clause = Clause(text, agent)
        self.clauses.append(clause)
        return clause

    def played_out(self) -> None:
        """Called by the output stage when the last of the reply's audio has been sent."""
        self._done.set()

    def heard(self) -> list[Reply]:
        """What reached the caller, one Reply per run of clauses from the same agent (empty if nothing did)."""
        replies: list[Reply] = []
        for clause in self.clauses:
            text = clause.heard_text()
            if not text:
                break
            if replies and replies[-1].agent == clause.agent:
                replies[-1] = Reply(f"{replies[-1].text} {text}", clause.agent)
            else:
                replies.append(Reply(text, clause.agent))
            if not clause.played_out:
                break
        return replies
