"""Whether a phrase is in what the customer heard. Text channels compare exactly (case aside); a call compares on the
transcript of the agent's audio, which the offline speech-to-text gets nearly right: "4 p.m." for "4:00 PM", "Ok
Street" for "Oak St", "$127.45" or "127.45 dollars". So both sides are normalised (numbers in words to digits, times
and money to one form, punctuation gone) and the phrase may match a stretch of the transcript approximately.
"""

from __future__ import annotations

import re
from difflib import SequenceMatcher

#: How alike the phrase and a stretch of the transcript must be, after normalising (1.0: identical).
TOLERANCE = 0.8

_NUMBERS = {w: str(i) for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve".split())} | {"oh": "0"}
#: What the offline ear (tiny.en) has heard for a name the agent said, on recorded runs: a listener hears the name.
_HEARD_AS = {r"\bwhat'?s\s*(?:happened|up|app)\b": "whatsapp"}
_SHORT = {"street": "st", "avenue": "ave", "road": "rd", "drive": "dr", "o'clock": "", "dollars": "", "dollar": ""}


def words(text: str) -> list[str]:
    """Lower-case words with times ("4:00 PM", "4 p.m.") as "4 pm", money without its sign, numbers as digits."""
    text = text.lower().replace("p.m.", "pm").replace("a.m.", "am")
    for heard, meant in _HEARD_AS.items():
        text = re.sub(heard, meant, text)
    text = re.sub(r"(\d{1,2}):00\b", r"\1", text)  # "4:00 pm" and "4 pm" are the same time to a listener
    text = re.sub(r"\b(\d{1,2})[:.](\d{2})(?=\s*[ap]m\b)", r"\1\2", text)  # "7:30 PM", "7.30pm" and "730pm"
    text = re.sub(r"[$,]", "", text)
    tokens = re.findall(r"[a-z']+|\d+(?:\.\d+)?", text)
    out = [_NUMBERS.get(t, _SHORT.get(t, t)) for t in tokens]
    return [t for t in out if t]


def contains(heard: str, phrase: str, *, exact: bool = True) -> bool:
    """`phrase` is in `heard`: as a substring (exact), or a stretch of about its length that is alike enough, spaces
    and apostrophes aside ("WhatsApp" is heard as "what's up", "4:00 PM" as "4pm")."""
    if phrase.lower() in heard.lower():
        return True
    if exact:
        return False
    want, got = _joined(words(phrase)), words(heard)
    if not want or want in _joined(got):
        return True
    size, numbers = len(words(phrase)), _numbers(words(phrase))
    spans = (got[i:i + n] for n in {max(size - 1, 1), size, size + 1} for i in range(max(len(got) - n + 1, 1)))
    # A number is heard or not: "5 pm" is not "4 pm" however alike the letters around it are.
    return any(_numbers(span) == numbers and SequenceMatcher(None, want, _joined(span)).ratio() >= TOLERANCE
               for span in spans)


def _numbers(tokens: list[str]) -> list[str]:
    return [t for t in tokens if t[0].isdigit()]


def _joined(tokens: list[str]) -> str:
    return "".join(tokens).replace("'", "")
