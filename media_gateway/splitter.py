"""Cuts streamed reply text into pieces worth speaking, so TTS can start before the reply is complete.

The first piece of a reply is cut at the first clause boundary (a comma, semicolon, colon or dash followed by a
space) once it is long enough to sound natural, because the caller is waiting for it; later pieces are whole
sentences, which TTS voices best, unless a sentence runs long. A boundary needs whitespace after it, so "4:00",
"2,400" and "$127.45" stay whole, and a full stop after a common abbreviation ("St.", "Dr.") is not a sentence end.
"""

from __future__ import annotations

import re

#: The first clause must be at least this long (shorter ones, like "Yes,", sound clipped on their own).
FIRST_MIN_CHARS = 20
#: Later pieces are cut at a clause boundary only once they are this long; otherwise at sentence ends.
LONG_CHARS = 120

_SENTENCE_END = re.compile(r"[.!?…]+[\"')\]]*(?=\s)")
_CLAUSE_END = re.compile(r"(?:[,;:]|\s[—–-])(?=\s)")
_ABBREVIATION = re.compile(
    r"\b(?:Mr|Mrs|Ms|Dr|St|Ave|Rd|Blvd|Ln|Ct|Mt|No|Jr|Sr|vs|etc|e\.g|i\.e|a\.m|p\.m"
    r"|Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sept?|Oct|Nov|Dec)\.$",
    re.I,
)


class ClauseSplitter:
    def __init__(self, first_min_chars: int = FIRST_MIN_CHARS, long_chars: int = LONG_CHARS) -> None:
        self._first_min = first_min_chars
        self._long = long_chars
        self._buffer = ""
        self._emitted = 0

    def feed(self, text: str) -> list[str]:
        """Add streamed text; returns the pieces that are complete."""
        self._buffer += text
        pieces: list[str] = []
        while (cut := self._next_cut()) is not None:
            piece, self._buffer = self._buffer[:cut].strip(), self._buffer[cut:].lstrip()
            if piece:
                pieces.append(piece)
                self._emitted += 1
        return pieces

    def flush(self) -> list[str]:
        """Whatever is left, at the end of the reply."""
        piece, self._buffer = self._buffer.strip(), ""
        if piece:
            self._emitted += 1
            return [piece]
        return []

    def _next_cut(self) -> int | None:
        for match in _SENTENCE_END.finditer(self._buffer):
            if not _ABBREVIATION.search(self._buffer[: match.end()]):
                sentence_end = match.end()
                break
        else:
            sentence_end = None
        min_clause = self._first_min if self._emitted == 0 else self._long
        for match in _CLAUSE_END.finditer(self._buffer):
            if sentence_end is not None and match.end() >= sentence_end:
                break
            if match.end() >= min_clause:
                return match.end()
        return sentence_end
