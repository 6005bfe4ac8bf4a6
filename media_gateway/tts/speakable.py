"""Text as the offline voice should read it.

Piper voices text through espeak-ng's rules, which read "4:00 PM" as "four zero zero PM", "Oak St" as "Oak Saint"
and an account number as one enormous number. Azure neural voices normalise text themselves, so only the piper
adapter uses this.
"""

from __future__ import annotations

import re

_STREETS = {
    "St": "Street", "Ave": "Avenue", "Rd": "Road", "Ln": "Lane", "Ct": "Court", "Blvd": "Boulevard", "Dr": "Drive"
}
# "Oak St" but not "St. John" or "Dr. Smith"; a full stop stays when it ends the sentence.
_STREET = re.compile(r"\b([A-Z][a-z]+) (St|Ave|Rd|Ln|Ct|Blvd|Dr)\b(?:\.(?=\s+[a-z]))?(?!\.? [A-Z][a-z])")
_ON_THE_HOUR = re.compile(r"\b(\d{1,2}):00\b")
_CLOCK = re.compile(r"\b(\d{1,2}):(\d{2})\b")
_LONG_NUMBER = re.compile(r"\+?\d{6,}")
_UNITS = {"kWh": "kilowatt hours", "&": "and"}


def _digits(match: re.Match[str]) -> str:
    digits = match.group(0).lstrip("+")
    groups = [digits[max(0, i - 3) : i] for i in range(len(digits), 0, -3)][::-1]
    if len(digits) == 11 and digits.startswith("1"):  # +1 555 555 0100
        groups = ["1", digits[1:4], digits[4:7], digits[7:]]
    return ", ".join(" ".join(group) for group in groups)


def speakable(text: str) -> str:
    text = _STREET.sub(lambda m: f"{m.group(1)} {_STREETS[m.group(2)]}", text)
    text = _ON_THE_HOUR.sub(r"\1", text)
    text = _CLOCK.sub(r"\1 \2", text)
    text = _LONG_NUMBER.sub(_digits, text)
    for written, spoken in _UNITS.items():
        text = text.replace(written, spoken)
    return text
