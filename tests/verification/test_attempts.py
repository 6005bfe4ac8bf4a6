"""Wrong answers count against the account holder, wherever they are given, until the lock lifts.

A fresh session (a reloaded chat page, another channel) must not reset them, or the limit would be a speed bump: a
guesser would open a new chat every second try.
"""

from __future__ import annotations

import asyncio
import time

from shared.models import Channel, Verification
from tests.verification.conftest import JORDAN, Rig, scenario_copy

LOCKED = "I can't check who you are right now: there have been too many tries. Please try again later, or ask for a person."
WRONG = "That doesn't match what we have. Please try again."
LOCK_SECONDS = 2


async def test_the_lock_counts_wrong_answers_across_sessions_and_channels_and_then_lifts(make_rig, tmp_path) -> None:
    rig: Rig = await make_rig(scenario_copy(tmp_path, lock_seconds=LOCK_SECONDS))
    assert rig.scenario.verification.attempts == 3

    first = await rig.web_chat()
    await first.say("what's my balance? account 100200300")
    assert [await first.say("000001"), await first.say("000002")] == [WRONG, WRONG]

    # A new session, on another channel even: the third wrong answer for Jordan's account is the last.
    caller = await rig.from_phone(Channel.VOICE, JORDAN)
    await caller.say("what's my balance?")
    assert await caller.say("0 0 0 0 0 3") == LOCKED
    locked_at = time.monotonic()

    # While locked, nobody gets a code or a check for that holder, with the right code neither.
    codes_before = len(await rig.codes(JORDAN))
    second = await rig.web_chat()
    assert (await second.say("what's my balance? account 100200300")).endswith(LOCKED)  # after Billing's hello
    assert await caller.say("what's my balance?") == LOCKED
    assert len(await rig.codes(JORDAN)) == codes_before  # no code goes out while locked
    assert (await second.session()).verification is Verification.UNVERIFIED

    # The lock lifts after lock_seconds: then the right code works again.
    await asyncio.sleep(max(0.0, LOCK_SECONDS + 0.2 - (time.monotonic() - locked_at)))
    third = await rig.web_chat()
    assert "code" in await third.say("what's my balance? account 100200300")
    answer = await third.say(await rig.code(JORDAN))
    assert "$127.45" in answer


async def test_a_right_answer_wipes_the_slate(rig: Rig) -> None:
    # Two wrong tries, then the right one: the holder starts again from nothing, so a later typo does not lock.
    visitor = await rig.web_chat()
    await visitor.say("what's my balance? account 100200300")
    assert [await visitor.say("000001"), await visitor.say("000002")] == [WRONG, WRONG]
    assert "$127.45" in await visitor.say(await rig.code(JORDAN))

    later = await rig.web_chat()
    await later.say("what's my balance? account 100200300")
    assert [await later.say("000001"), await later.say("000002")] == [WRONG, WRONG]
    assert "$127.45" in await later.say(await rig.code(JORDAN))


async def test_a_code_misheard_short_is_asked_for_again_without_counting_against_the_holder(rig: Rig) -> None:
    # Speech-to-text can drop or mangle a digit of a spoken code ("A30 583" for "eight three zero five eight three").
    # That is a number given in answer, not the caller moving on: the check stays open and is asked again, and
    # nothing was compared, so no try is counted. A made-up account is answered the same way.
    again = "Sorry, I didn't get the whole code: it has 6 digits. Could you give it to me again?"
    caller = await rig.from_phone(Channel.VOICE, JORDAN)
    assert "code" in await caller.say("what's my balance?")
    code = await rig.code(JORDAN)
    for misheard in ["A30 583", "eight three five", "1234567 8"]:
        assert await caller.say(misheard) == again
    assert [await caller.say("000001"), await caller.say("000002")] == [WRONG, WRONG]  # two real tries left
    assert "$127.45" in await caller.say(code)
    customer_turns = [t.text for t in (await caller.session()).turns if t.role == "customer"]
    assert "A30 583" not in customer_turns and customer_turns.count("[verification code]") == 6

    nobody = await rig.web_chat()
    assert "code" in await nobody.say("what's my balance? account 999999999")
    assert await nobody.say("12345") == again
    assert await nobody.say("can I pay by card?") != again, "a question is the customer moving on"
