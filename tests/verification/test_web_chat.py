"""A web chat visitor proves they hold an account before they see anything of it.

Nothing vouches for who types in a browser, so a number typed there says which account is meant, never that the
visitor holds it: the code goes to the number on record, and only the one who can read it there gets the answer.
"""

from __future__ import annotations

import re

import pytest

from shared.models import Verification
from shared.verification import Checked
from tests.verification.conftest import JORDAN, SAM, Rig
from tests.verifying import ASKS_TO_VERIFY, CONFIRMED, knowledge_answers

# What Sam's account would give away (scenarios/utilities/data.yaml): balance, last payment, usage, name, address.
SAMS_ACCOUNT = re.compile(r"\$\d|42\.10|45\.00|kWh|\bSam\b|Rivera|Elm Ave|62704|100200311", re.I)
CODE_SENT = "I've sent a 6-digit code by WhatsApp to the phone number on the account"
WRONG = "That doesn't match what we have. Please try again."


async def test_a_visitor_who_types_someones_number_learns_nothing_about_that_account(rig: Rig) -> None:
    visitor = await rig.web_chat()
    said = [await visitor.say("my phone number is 555 555 0111, what's my balance?")]
    assert CODE_SENT in said[0]
    for question in ("how much energy did I use last month?", "how can I pay my bill?",
                     "is there a power outage at my address?", "I want to stop my service next Friday",
                     "what's the name on the account?", "what's my address?", "123456", "62701, Lee"):  # guesses: wrong
        said.append(await visitor.say(question))
    leaked = [s for s in said if SAMS_ACCOUNT.search(s)]
    assert not leaked, leaked
    assert all(ASKS_TO_VERIFY.search(s) for s in said[:5]), said  # each account question asks for proof
    assert (await visitor.session()).verification is Verification.UNVERIFIED
    assert await rig.codes("+15555550111") == await rig.codes(SAM) != []  # codes went to Sam's phone only


async def test_the_code_from_the_number_on_record_answers_the_question_without_asking_again(rig: Rig) -> None:
    visitor = await rig.web_chat()
    assert CODE_SENT in await visitor.say("my phone number is 555 555 0111, what's my balance?")
    assert len(await rig.codes(SAM)) == 1  # to the number on record, where only Sam reads it

    answer = await visitor.say(await rig.code(SAM))
    assert answer.startswith(CONFIRMED) and "$42.10" in answer and "November 12" in answer
    session = await visitor.session()
    assert (session.verification, session.verified_phone, session.verified_by) == (Verification.VERIFIED, SAM, "code")
    assert "kWh" in await visitor.say("and my usage last month?")  # verified for the rest of the session
    assert len(await rig.codes(SAM)) == 1


async def test_a_wrong_code_then_the_right_one(rig: Rig) -> None:
    visitor = await rig.web_chat()
    assert CODE_SENT in await visitor.say("what do I owe? my account number is 100200300")
    code = await rig.code(JORDAN)
    wrong = "000000" if code != "000000" else "111111"
    assert await visitor.say(wrong) == WRONG
    answer = await visitor.say(" ".join(code))  # typed with spaces: still the code
    assert answer.startswith(CONFIRMED) and "$127.45" in answer


async def test_knowledge_answers_wrong_then_right_never_say_which_part_was_wrong(make_rig) -> None:
    rig: Rig = await make_rig(codes=False)  # no way to send a code: the scenario's questions instead
    visitor = await rig.web_chat()
    asked = await visitor.say("what's my balance? account 100200300")
    assert "ZIP code of the service address" in asked and "last name" in asked
    replies = [await visitor.say("62701, Smith"), await visitor.say("90210, Lee")]  # each with one part wrong
    assert replies == [WRONG, WRONG]  # the same words: nothing says which part was off
    answer = await visitor.say(knowledge_answers("100200300"))
    assert answer.startswith(CONFIRMED) and "$127.45" in answer
    assert (await visitor.session()).verified_by == "knowledge"


async def test_an_unknown_account_gets_the_same_words_as_a_real_one(rig: Rig) -> None:
    real, unknown = await rig.web_chat(), await rig.web_chat()
    replies = {}
    for visitor, number in ((real, "555 555 0111"), (unknown, "555 555 0177")):
        replies[number] = [await visitor.say(f"what's my balance? my number is {number}"),
                           await visitor.say("123456"), await visitor.say("654321")]
    assert replies["555 555 0111"][0] == replies["555 555 0177"][0]  # "I've sent a code..." to both
    assert replies["555 555 0111"][1:] == replies["555 555 0177"][1:] == [WRONG, WRONG]
    assert await rig.codes("+15555550177") == []  # nothing went anywhere for an account that does not exist
    # The third wrong answer locks either way, with the same words.
    assert await real.say("111111") == await unknown.say("111111")


async def test_an_unknown_account_runs_out_of_codes_and_locks_like_a_real_one(rig: Rig) -> None:
    # Nothing is sent for an account that does not exist, but it is capped and locked under the number named, across
    # sessions, as a real holder is: the tenth reply gives no more away than the first.
    async def replies_for(number: str) -> list[str]:
        said = []
        for _ in range(rig.scenario.verification.codes_per_hour + 1):  # fresh visitors: codes, then the questions
            visitor = await rig.web_chat()
            said.append(await visitor.say(f"what's my balance? my number is {number}"))
        said += [await visitor.say("11111, Nobody") for _ in range(rig.scenario.verification.attempts)]
        said.append(await (await rig.web_chat()).say(f"what's my balance? my number is {number}"))  # locked
        return said

    real, unknown = await replies_for("555 555 0111"), await replies_for("555 555 0177")
    assert real == unknown
    assert "ZIP code" in real[3] and real[-1].endswith("too many tries. Please try again later, or ask for a person.")


async def test_a_flood_of_code_requests_sends_at_most_the_hourly_cap(rig: Rig) -> None:
    cap = rig.scenario.verification.codes_per_hour
    replies = []
    for _ in range(cap + 4):  # each a fresh visitor, as a script hammering the chat would be
        visitor = await rig.web_chat()
        replies.append(await visitor.say("what's my balance? account 100200300"))
    assert len(await rig.codes(JORDAN)) == cap
    assert all(CODE_SENT in r for r in replies[:cap])
    # Past the cap no text goes, and the holder can still prove it's them another way: nobody who knows the
    # number can keep them from their account by using up its codes.
    assert all("ZIP code of the service address" in r for r in replies[cap:])
    answer = await visitor.say(knowledge_answers("100200300"))
    assert answer.startswith(CONFIRMED) and "$127.45" in answer
    assert len(await rig.codes(JORDAN)) == cap


async def test_a_code_works_once_and_only_in_the_session_it_was_sent_for(rig: Rig) -> None:
    first, second, third = await rig.web_chat(), await rig.web_chat(), await rig.web_chat()
    await first.say("what's my balance? account 100200300")
    first_code = await rig.code(JORDAN)
    await second.say("what's my balance? account 100200300")
    if await rig.code(JORDAN) == first_code:
        pytest.skip("two random codes matched (one time in a million): nothing to tell apart")
    assert await second.say(first_code) == WRONG  # another session's code is no good here
    assert "$127.45" in await first.say(first_code)

    await third.say("what's my balance? account 100200300")
    assert await third.say(first_code) == WRONG  # used once: no good again, anywhere

    # The same rule at the Verifier: a code checks once, then it is gone.
    verifier, holder = rig.conversation.verifier, rig.scenario.holder({"phone_number": SAM})
    challenge = await verifier.challenge("ses_direct", holder, "code")
    assert challenge.sent_by == "whatsapp"
    code = await rig.code(SAM)
    assert await verifier.check_code("ses_direct", SAM, code) is Checked.VERIFIED
    assert await verifier.check_code("ses_direct", SAM, code) is Checked.EXPIRED


async def test_an_expired_code_gets_the_same_words_for_a_made_up_account_as_for_a_real_one(make_rig) -> None:
    # Someone patient enough to wait out a code's lifetime before each try must learn no more than someone quick:
    # a late code about a made-up account is "expired, I've sent a new one" as about a real one, and those new
    # (pretend) codes run out at the same hourly cap.
    now = [1_700_000_000.0]
    rig: Rig = await make_rig(clock=lambda: now[0])
    spec = rig.scenario.verification
    real, unknown = await rig.web_chat(), await rig.web_chat()
    replies: dict[str, list[str]] = {}
    for visitor, number in ((real, "555 555 0111"), (unknown, "555 555 0177")):
        replies[number] = [await visitor.say(f"what's my balance? my number is {number}")]
    for _ in range(spec.codes_per_hour):  # each try a moment after the code's time is up
        now[0] += spec.code_ttl_seconds + 1
        for visitor, number in ((real, "555 555 0111"), (unknown, "555 555 0177")):
            replies[number].append(await visitor.say("123456"))
    assert replies["555 555 0111"] == replies["555 555 0177"]
    expired = replies["555 555 0177"][1:]
    assert expired[:-1] == ["That code has expired, so I've sent a new one. What's the new code?"] * (
        spec.codes_per_hour - 1)
    assert expired[-1].startswith("I've already sent several codes")  # the hour's codes used up, for both alike
    assert len(await rig.codes(SAM)) == spec.codes_per_hour  # the real holder's phone got the new codes
    assert await rig.codes("+15555550177") == []  # and nothing went anywhere for the made-up one
