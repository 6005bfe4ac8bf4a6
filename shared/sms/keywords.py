"""The words that manage SMS consent: a text that is only one of them is an instruction, not a question.

US carriers and the CTIA handbook expect a sender to honour these (toll-free and 10DLC numbers alike): an opt-out
word stops every text to that number until an opt-in word, and HELP is answered with who we are and how to stop.
The carrier (or ACS) sends its own confirmation of STOP and START; we record the choice and send nothing for them.
"""

from __future__ import annotations

import re
from enum import StrEnum

STOP_WORDS = frozenset({"stop", "stopall", "unsubscribe", "cancel", "end", "quit", "optout", "opt out", "revoke"})
START_WORDS = frozenset({"start", "unstop", "subscribe", "optin", "opt in"})
HELP_WORDS = frozenset({"help", "info"})


class Keyword(StrEnum):
    STOP = "stop"
    START = "start"
    HELP = "help"


def keyword_in(text: str) -> Keyword | None:
    """The consent keyword the whole message is ("STOP", "stop.", " Help! "), or None for anything else: "stop
    texting me about my bill" is a sentence for the agent, not an opt-out (carriers match the whole message too)."""
    word = re.sub(r"[^a-z ]", "", text.lower()).strip()
    word = re.sub(r"\s+", " ", word)
    if word in STOP_WORDS:
        return Keyword.STOP
    if word in START_WORDS:
        return Keyword.START
    if word in HELP_WORDS:
        return Keyword.HELP
    return None
