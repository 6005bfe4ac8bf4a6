"""The keys a caller presses on their phone, gathered into what they meant to say.

With DTMF tones enabled on the media stream (shared/calls/acs.py), ACS sends each key the caller presses as a
`DtmfData` message (serializer.py makes it a `DtmfFrame`). A caller keys a code, or an account number, one key at a
time; the agent stage hands the whole entry to the conversation as the caller's turn, as if they had said it, when:

* the conversation is waiting on a code (the agent asked for one) and the entry has as many digits as a code; or
* the caller presses `#`, the usual "that's it" key, whatever they keyed before it (an account number, say).

The `#` itself is never part of the entry. A ZIP code keyed this way while the agent asked for the knowledge answers
is only their number half: the conversation core keeps it for the last name the caller says next, and checks the two
as one answer (shared/verification.py, `hold_digits`), so ending the entry does not make it a wrong answer.

`*` starts the entry again, as phone menus have taught people. Keys left alone for `ENTRY_TIMEOUT` seconds are
forgotten, so a stray key pressed long ago does not end up in front of the next entry. An entry may be a code: the
keys are never logged, only how many there were.
"""

from __future__ import annotations

import time
from typing import Callable

#: How long an unfinished entry waits for its next key.
ENTRY_TIMEOUT = 10.0
#: Longer than any code or account number: a caller leaning on the keypad does not grow an entry without end.
MAX_ENTRY = 32
#: ACS sends the key itself ("5", "#"); its tone names ("five", "pound") are taken too, as Call Automation's
#: recognize events spell them.
_NAMES = {"zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6", "seven": "7",
          "eight": "8", "nine": "9", "pound": "#", "asterisk": "*", "star": "*", "hash": "#"}


def keys_in(data: str) -> str:
    """The keys a DtmfData message carries (one, as ACS sends them; a few, joined up, are taken as well). Letters
    A-D and anything else no phone sends are dropped."""
    named = _NAMES.get(data.strip().lower())
    if named is not None:
        return named
    return "".join(key for key in data if key in "0123456789*#")


class Keypad:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._entry = ""
        self._last = 0.0
        self._code_length: int | None = None

    def expect_code(self, length: int | None) -> None:
        """The conversation is waiting on a code of `length` digits (None: it is not)."""
        self._code_length = length

    @property
    def pending(self) -> int:
        """How many keys of an unfinished entry are held."""
        return len(self._entry)

    def press(self, key: str) -> str | None:
        """One key; the finished entry when this key finishes one (`#` on nothing finishes nothing)."""
        now = self._clock()
        if self._entry and now - self._last > ENTRY_TIMEOUT:
            self._entry = ""
        self._last = now
        if key == "*":
            self._entry = ""
            return None
        if key == "#":
            entry, self._entry = self._entry, ""
            return entry or None
        if key.isdigit() and len(self._entry) < MAX_ENTRY:
            self._entry += key
        if self._code_length is not None and len(self._entry) == self._code_length:
            entry, self._entry = self._entry, ""
            return entry
        return None
