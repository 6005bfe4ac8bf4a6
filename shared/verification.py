"""Proving who you are before account data is shown: one-time codes to the number on record, and knowledge answers.

The conversation core asks for verification when a tool needs more than the session holds (shared/conversation.py),
and hands the customer's next message here to check. What this module guarantees, whichever channel asks:

* a code goes only to the phone number on record for the account (the scenario's HOLDER says which), never to a
  number the customer just typed; it is 6 digits (by default), lives 5 minutes, and only its digest is stored;
* wrong answers are counted per account holder, across channels and sessions (a fresh session resets nothing); past
  the scenario's limit the holder is locked for a while, and no answer says which part was wrong;
* one number receives at most `codes_per_hour` codes an hour, however often they are asked for;
* codes and answers are compared in constant time and never logged: callers log outcomes, not what was said.

docs/security.md ("Verifying customers") explains the levels and why each channel starts where it does.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import time
import unicodedata
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import StrEnum
from typing import TYPE_CHECKING, Awaitable, Callable

from shared.messenger.base import Messenger, TemplateMessage
from shared.models import Verification
from shared.scenario import Holder, Scenario
from shared.stores.base import SessionState

if TYPE_CHECKING:
    from shared.sms.outbox import SmsOutbox

log = logging.getLogger(__name__)

#: Sends a code to a phone number; returns the channel it went by ("sms", "whatsapp"). Raises when it cannot go.
CodeSender = Callable[[str, str], Awaitable[str]]

_CODE = "verify:code:"  # + session id: {"digest", "phone", "expires"}
# Sets with one member per event, each expiring on its own: a sliding window that needs no reset.
_FAILURES = "verify:failures:"  # + phone: wrong answers, each counted for lock_seconds
_SENT = "verify:sent:"  # + phone: codes sent, each counted for an hour
_NOBODY = "nobody:"  # + what a customer named that is no account: counted as a holder's number would be
_HELD = "verify:held:"  # + session id: {"digest"} of the digits given apart from the rest of a knowledge answer
_SPOKEN_DIGITS = {"zero": "0", "oh": "0", "o": "0", "one": "1", "two": "2", "to": "2", "too": "2", "three": "3",
                  "four": "4", "for": "4", "five": "5", "six": "6", "seven": "7", "eight": "8", "ate": "8",
                  "nine": "9"}
# The spoken digits joined up in an answer ("to" and "for" are everyday words more often than digits).
_DIGIT_WORDS = {"zero", "oh", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"}


class Checked(StrEnum):
    VERIFIED = "verified"
    WRONG = "wrong"  # not right; more tries left
    LOCKED = "locked"  # too many wrong answers for this holder: nothing is checked until the lock lifts
    EXPIRED = "expired"  # the code's time is up (or none was sent): ask for a new one
    MISHEARD = "misheard"  # a number, but not a code's length: asked again, nothing compared or counted
    NOT_AN_ANSWER = "not_an_answer"  # the message is about something else


@dataclass(frozen=True)
class Challenge:
    """What the agent asked for: the method, for whom, and how it went out."""

    method: str  # "code" or "knowledge"
    phone: str  # the holder's number on record: what the session is verified for when the answer is right
    sent_by: str | None = None  # the code's channel, when one went out
    refused: str | None = None  # why no code went (too many this hour, locked, no way to send): say so


class Verifier:
    def __init__(self, scenario: Scenario, state: SessionState, send_code: CodeSender | None,
                 *, sends_sms: bool = False, clock: Callable[[], float] = time.time) -> None:
        self.spec = scenario.verification
        self.state = state
        self.send_code = send_code
        self.sends_sms = sends_sms  # codes go by text message (else by WhatsApp)
        self.clock = clock

    def methods_for(self, channel: str) -> tuple[str, ...]:
        """The scenario's methods this channel can use: a code needs a way to send one."""
        return tuple(m for m in self.spec.methods if m != "code" or self.send_code is not None)

    async def locked(self, phone: str) -> bool:
        return await self.state.count_members(_FAILURES + phone) >= self.spec.attempts

    async def challenge(self, session_id: str, holder: Holder, method: str) -> Challenge:
        """Start a verification for `holder`: send a code to their number on record, or get ready to check
        knowledge answers. A locked holder, or a number sent too many codes this hour, gets no new code."""
        if await self.locked(holder.phone):
            return Challenge(method, holder.phone, refused="locked")
        if method != "code":
            return Challenge(method, holder.phone)
        if self.send_code is None:
            return Challenge(method, holder.phone, refused="unavailable")
        if await self.state.count_members(_SENT + holder.phone) >= self.spec.codes_per_hour:
            log.warning("verification codes for %s: over %d this hour, none sent", _masked(holder.phone),
                        self.spec.codes_per_hour)
            return Challenge(method, holder.phone, refused="too_many")
        await self.state.add_member(_SENT + holder.phone, secrets.token_hex(8), 3600)
        code = "".join(secrets.choice("0123456789") for _ in range(self.spec.code_length))
        expires = self.clock() + self.spec.code_ttl_seconds
        await self.state.put(_CODE + session_id, {"digest": _digest(session_id, code), "phone": holder.phone,
                                                  "expires": expires}, self.spec.code_ttl_seconds)
        try:
            channel = await self.send_code(holder.phone, code)
        except Exception as exc:  # noqa: BLE001 - the customer is told it could not go; the reason goes to the log
            log.warning("verification code to %s not sent: %s", _masked(holder.phone), type(exc).__name__)
            await self.state.delete(_CODE + session_id)
            return Challenge(method, holder.phone, refused="unavailable")
        log.info("verification code sent to %s by %s", _masked(holder.phone), channel)
        return Challenge(method, holder.phone, sent_by=channel)

    async def check_code(self, session_id: str, phone: str, text: str) -> Checked:
        code = _code_in(text, self.spec.code_length)
        if code is None:
            return Checked.MISHEARD if _number_shaped(text) else Checked.NOT_AN_ANSWER
        if await self.locked(phone):
            return Checked.LOCKED
        stored = await self.state.get(_CODE + session_id)
        if stored is None or stored.get("phone") != phone or stored.get("expires", 0) < self.clock():
            return Checked.EXPIRED
        if hmac.compare_digest(stored["digest"], _digest(session_id, code)):
            await self.state.delete(_CODE + session_id)  # a code works once
            await self._forgive(phone)
            return Checked.VERIFIED
        return await self._failed(phone)

    async def challenge_nobody(self, session_id: str, named: str, method: str) -> Challenge:
        """A challenge about an account that does not exist, `named` by what the customer gave (the account number
        they typed). Nothing is sent, but it is locked and capped exactly as a real holder's would be, under that
        name, across sessions, and its pretend code expires as a real one does: no reply, the first or the tenth,
        quick or late, tells a made-up account from a real one."""
        key = _NOBODY + named
        if await self.locked(key):
            return Challenge(method, "", refused="locked")
        if method != "code":
            return Challenge(method, "")
        if self.send_code is None:
            return Challenge(method, "", refused="unavailable")
        if await self.state.count_members(_SENT + key) >= self.spec.codes_per_hour:
            return Challenge(method, "", refused="too_many")
        await self.state.add_member(_SENT + key, secrets.token_hex(8), 3600)
        # No code, but its lifetime: an answer after it must hear "expired" as it would about a real account.
        await self.state.put(_CODE + session_id, {"named": named, "expires": self.clock() + self.spec.code_ttl_seconds},
                             self.spec.code_ttl_seconds)
        return Challenge(method, "", sent_by="sms" if self.sends_sms else "whatsapp")

    async def forget_held(self, session_id: str) -> None:
        """The check the held digits were for has ended: they join no other answer."""
        await self.state.delete(_HELD + session_id)

    async def check_nobody(self, session_id: str, named: str, text: str, method: str | None) -> Checked:
        """An answer about an account that does not exist: wrong (or, for a code, expired when its time is up),
        counted and locked like any other, in the order `check_code` decides, so that the replies are the same as
        for a real account."""
        shaped = _code_in(text, self.spec.code_length) if method == "code" else _answer_shaped(text)
        if not shaped:
            return Checked.MISHEARD if method == "code" and _number_shaped(text) else Checked.NOT_AN_ANSWER
        key = _NOBODY + named
        if await self.locked(key):
            return Checked.LOCKED
        if method == "code":
            stored = await self.state.get(_CODE + session_id)
            if stored is None or stored.get("named") != named or stored.get("expires", 0) < self.clock():
                return Checked.EXPIRED
        return await self._failed(key)

    async def hold_digits(self, session_id: str, text: str) -> bool:
        """Whether `text` is only the number part of a knowledge answer (a ZIP code keyed on the phone and ended
        with `#`, or said or typed alone) while the scenario also asks what digits cannot say (a last name). Then it
        is held, as a digest salted like a code's, for the rest of the answer to join: checking half an answer would
        count it wrong. The decision rests on the shape of what was said and the scenario's questions, never on the
        account, so a made-up one is answered the same."""
        keyable = [q.digits for q in self.spec.knowledge]
        digits = _digits_alone(text)
        if digits is None or all(keyable) or not any(keyable):  # a whole answer, or no number asked for
            return False
        await self.state.put(_HELD + session_id, {"digest": _digest(session_id, digits)}, self.spec.code_ttl_seconds)
        return True

    async def check_knowledge(self, holder: Holder, text: str, session_id: str = "") -> Checked:
        """All of the scenario's questions answered right, in one message ("62701, Lee") or with the number held
        from the one before (`hold_digits`), or not: never which."""
        if not _answer_shaped(text):
            return Checked.NOT_AN_ANSWER
        held = (await self.state.get(_HELD + session_id) or {}).get("digest", "") if session_id else ""
        if await self.locked(holder.phone):
            return Checked.LOCKED
        said = _said_words(text)
        right = True
        for question in self.spec.knowledge:
            expected = _words(holder.answers.get(question.answer, ""))
            # Every expected word must be among the words said, or a number the held digits; each comparison runs
            # in full, right or wrong.
            in_words = bool(expected) and all(
                any(hmac.compare_digest(w.encode(), s.encode()) for s in said) for w in expected)
            in_held = question.digits and bool(expected) and hmac.compare_digest(
                held.encode(), _digest(session_id, "".join(expected)).encode())
            right &= in_words | in_held
        if right:
            await self._forgive(holder.phone)
            return Checked.VERIFIED
        return await self._failed(holder.phone)

    async def _failed(self, phone: str) -> Checked:
        await self.state.add_member(_FAILURES + phone, secrets.token_hex(8), self.spec.lock_seconds)
        failures = await self.state.count_members(_FAILURES + phone)
        log.info("a verification answer for %s was wrong (%d of %d)", _masked(phone), failures, self.spec.attempts)
        return Checked.LOCKED if failures >= self.spec.attempts else Checked.WRONG

    async def _forgive(self, phone: str) -> None:
        """The holder got it right: earlier wrong answers stop counting towards a lock."""
        for failure in await self.state.members(_FAILURES + phone):
            await self.state.remove_member(_FAILURES + phone, failure)


def level_of_channel(channel: str) -> Verification:
    """Where a session on a channel starts, for the phone number it comes from (docs/security.md)."""
    return {"whatsapp": Verification.VERIFIED, "voice": Verification.IDENTIFIED,
            "sms": Verification.IDENTIFIED}.get(channel, Verification.UNVERIFIED)


def _digest(session_id: str, code: str) -> str:
    # Salted with the session, so a digest read from the state store says nothing without a brute force per session,
    # and a code asked for in one session does not work in another.
    return hashlib.sha256(f"{session_id}:{code}".encode()).hexdigest()


def _code_in(text: str, length: int) -> str | None:
    """The code in what the customer wrote or said: "123 456", "1-2-3-4-5-6", "one two three four five six"."""
    words = _code_words(text)
    digits = "".join(w if w.isdigit() else _SPOKEN_DIGITS.get(w, " ") for w in words)
    runs = [run for run in digits.split() if run]
    joined = "".join(runs) if len(runs) > 1 and all(len(r) < length for r in runs) else None
    for candidate in [*runs, joined]:
        if candidate is not None and len(candidate) == length:
            return candidate
    return None


def _code_words(text: str) -> list[str]:
    """The words of a message and each of its digits alone: "123 four5" -> 1, 2, 3, four, 5."""
    return re.findall(r"[a-z]+|\d", unicodedata.normalize("NFKC", text).lower())


def _number_shaped(text: str) -> bool:
    """Whether a message that holds no code of the right length is still a number given in answer: a code that
    speech-to-text got a digit wrong in ("A30 583" for "eight three zero five eight three"), or one typed short. It
    is asked for again, not taken as the customer moving on (which would drop the check they are in the middle of),
    and not counted as a wrong try (nothing was compared)."""
    words = _code_words(text)
    digits = sum(w.isdigit() or w in _SPOKEN_DIGITS for w in words)
    return digits >= 3 and len(words) - digits <= 4 and not text.rstrip().endswith("?")


def _digits_alone(text: str) -> str | None:
    """The number a message is made of and nothing else ("62701", "6 2 7 0 1", "six two seven oh one"), or None."""
    words = _words(text)
    if not words or not all(w.isdigit() or w in _DIGIT_WORDS for w in words):
        return None
    return "".join(w if w.isdigit() else _SPOKEN_DIGITS[w] for w in words)


def _answer_shaped(text: str) -> bool:
    """Whether a message looks like answers ("62701, Lee") rather than the customer moving on to something else:
    a question ("what's my balance?") is not one, and must not count as a wrong answer towards a lock."""
    words = _words(text)
    asking = text.rstrip().endswith("?")
    return bool(words) and not asking and (len(words) <= 6 or any(w.isdigit() for w in words))


def _said_words(text: str) -> list[str]:
    """The words of an answer, plus each run of digits joined up: a ZIP code comes as "6 2 7 0 1", "62,701" or "six
    two seven oh one" from a caller's speech recogniser as often as "62701"."""
    words = _words(text)
    runs, run = [], ""
    for word in [*words, ""]:
        digit = word if word.isdigit() else _SPOKEN_DIGITS.get(word) if word in _DIGIT_WORDS else None
        if digit is not None:
            run += digit
        elif run:
            runs.append(run)
            run = ""
    return words + runs


def _words(text: str) -> list[str]:
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    return re.findall(r"[a-z0-9]+", folded)


def _masked(phone: str) -> str:
    return f"…{phone[-4:]}" if phone else "?"


def whatsapp_code_sender(scenario: Scenario, messenger: Messenger) -> CodeSender | None:
    """Codes by WhatsApp, with the scenario's authentication template (`whatsapp.code`); None without one."""
    template = scenario.whatsapp.code
    if template is None:
        return None

    async def send(phone: str, code: str) -> str:
        values = tuple(template.values(scenario.company, {"code": code}))
        message = TemplateMessage(phone, template.name, template.language, values)
        await messenger.send(message, repeatability_id=str(uuid.uuid4()), first_sent=datetime.now(timezone.utc))
        return "whatsapp"

    return send


def sms_code_sender(scenario: Scenario, outbox: SmsOutbox, fallback: CodeSender | None = None) -> CodeSender:
    """Codes by text message to the number on record. A number that opted out of texts (STOP) gets its code the
    `fallback` way (WhatsApp) when there is one; otherwise the code cannot go, and the customer is told so."""
    from shared.sms.outbox import OptedOut, send_key, sms_phrase

    minutes = max(1, round(scenario.verification.code_ttl_seconds / 60))

    async def send(phone: str, code: str) -> str:
        text = sms_phrase(scenario, "sms_code", code=code, minutes=minutes)
        try:
            await outbox.text(phone, text, key=send_key("code", str(uuid.uuid4())),
                              first_sent=datetime.now(timezone.utc), tag="verification")
        except OptedOut:
            if fallback is None:
                raise
            return await fallback(phone, code)
        return "sms"

    return send
