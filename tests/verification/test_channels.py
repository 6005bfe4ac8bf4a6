"""Where each channel starts: a caller is identified by caller ID, a WhatsApp sender verified, a web chat nobody.

Caller ID can be spoofed, so it lets the agent greet the caller by name and skip "what's your number", and one factor
more makes them verified. WhatsApp authenticates its sender's number, so a code sent to that same conversation
would prove nothing: a message from the number on record is verified as it stands (docs/security.md).
"""

from __future__ import annotations

from shared.models import Channel, Verification
from tests.verification.conftest import JORDAN, SAM, Rig
from tests.verifying import CONFIRMED


async def test_a_caller_is_identified_greeted_by_name_and_verified_by_the_code_they_say(rig: Rig) -> None:
    caller = await rig.from_phone(Channel.VOICE, JORDAN)
    assert caller.greeting.startswith("Welcome back, Jordan.")
    assert (await caller.session()).verification is Verification.IDENTIFIED

    asked = await caller.say("what's my balance?")
    assert "code" in asked and "$" not in asked and "account number" not in asked  # his number is known
    spoken = " ".join({"0": "zero", "1": "one", "2": "two", "3": "three", "4": "four", "5": "five", "6": "six",
                       "7": "seven", "8": "eight", "9": "nine"}[d] for d in await rig.code(JORDAN))
    answer = await caller.say(spoken)  # said aloud, as the speech recogniser writes it
    assert answer.startswith(CONFIRMED) and "$127.45" in answer
    session = await caller.session()
    assert (session.verification, session.verified_phone) == (Verification.VERIFIED, JORDAN)


async def test_an_identified_caller_hears_the_outage_at_their_address_without_a_code(rig: Rig) -> None:
    caller = await rig.from_phone(Channel.VOICE, JORDAN)
    answer = await caller.say("is there a power outage at my house?")
    assert "123 Oak St" in answer and "4:00 PM" in answer
    assert await rig.codes(JORDAN) == []


async def test_a_caller_is_identified_for_their_own_number_only(rig: Rig) -> None:
    caller = await rig.from_phone(Channel.VOICE, "+15555550999")  # a number on no account
    assert (await caller.session()).verification is Verification.IDENTIFIED
    asked = await caller.say("what's the balance on account 100200311?")  # Sam's: this caller ID says nothing of it
    assert "code" in asked and "$" not in asked
    assert len(await rig.codes(SAM)) == 1 and await rig.codes("+15555550999") == []
    assert "$42.10" in await caller.say(await rig.code(SAM))


async def test_a_whatsapp_message_from_the_number_on_record_is_verified_as_it_stands(rig: Rig) -> None:
    sender = await rig.from_phone(Channel.WHATSAPP, JORDAN)
    assert (await sender.session()).verification is Verification.VERIFIED
    assert "$127.45" in await sender.say("what's my balance?")
    assert await rig.codes(JORDAN) == []  # nothing sent to the phone that just wrote


async def test_a_whatsapp_sender_asking_about_someone_elses_account_proves_it(rig: Rig) -> None:
    sender = await rig.from_phone(Channel.WHATSAPP, "+15555550999")  # verified, for a number on no account
    asked = await sender.say("what's the balance on account 100200311?")
    assert "code" in asked and "$" not in asked
    assert await rig.codes("+15555550999") == []  # the code goes to Sam's phone, not to the one that wrote
    assert "$42.10" in await sender.say(await rig.code(SAM))


async def test_a_caller_can_say_the_knowledge_answers_as_the_recogniser_writes_them(make_rig) -> None:
    rig: Rig = await make_rig(codes=False)  # no code can go: the scenario's questions
    for heard in ("six two seven zero one, Lee", "62,701. Lee.", "my zip is 6-2-7-0-1 and my last name is Lee"):
        caller = await rig.from_phone(Channel.VOICE, "+15555550999")
        asked = await caller.say("what's the balance on account 100200300?")
        assert "ZIP code" in asked
        assert "$127.45" in await caller.say(heard), heard


async def test_what_the_caller_heard_before_the_check_is_in_the_transcript(rig: Rig) -> None:
    # An announced handoff's greeting is spoken as it is produced: when the tool behind it asks for a code, the
    # transcript keeps the greeting too, and nothing is spoken twice.
    caller = await rig.from_phone(Channel.VOICE, JORDAN)
    spoken: list[str] = []

    async def speak(text: str, agent: str) -> None:
        spoken.append(text)

    outcome = await rig.conversation.turn(caller.session_id, caller.customer_id, "what's my balance?", speak)
    replies = [r.text for r in outcome.replies]
    assert replies[0] == "Hi, you're through to Billing." and "code" in replies[-1]
    assert spoken == replies
    turns = [t.text for t in (await caller.session()).turns if t.role == "agent"]
    assert turns[-2:] == replies


async def test_a_zip_code_keyed_on_its_own_joins_the_spoken_last_name_and_counts_once(make_rig) -> None:
    # On the phone a caller can key the ZIP code and # but not a last name: the keypad sends "62701" as a turn of
    # its own (media_gateway/keypad.py). That is half an answer, kept for the rest, and never counted as a wrong one;
    # a made-up account is answered with the same words, and counted the same.
    rig: Rig = await make_rig(codes=False)  # no way to send a code: the knowledge questions
    caller = await rig.from_phone(Channel.VOICE, JORDAN)
    assert "ZIP code" in await caller.say("what's my balance?")
    assert await caller.say("62701") == "Thanks. And the account holder's last name?"
    answer = await caller.say("Lee")
    assert answer.startswith(CONFIRMED) and "$127.45" in answer
    assert [t.text for t in (await caller.session()).turns if t.role == "customer"][-2:] == [
        "[verification answer]", "[verification answer]"]

    replies = {}
    for number in ("100200311", "100200399"):  # Sam's account, and one that does not exist
        visitor = await rig.web_chat()
        said = [await visitor.say(f"what's my balance? account {number}")]
        for _ in range(rig.scenario.verification.attempts - 1):  # a wrong ZIP code keyed, then a name: one try each
            said += [await visitor.say("6 2 7 9 9"), await visitor.say("Rivera")]
        said += [await visitor.say("62704"), await visitor.say("Rivera")]  # the last try: right for Sam
        replies[number] = said
    assert replies["100200311"][:-1] == replies["100200399"][:-1]
    assert replies["100200311"][1::2][:-1] == ["Thanks. And the account holder's last name?"] * 2
    assert replies["100200311"][2] == "That doesn't match what we have. Please try again."
    assert replies["100200311"][-1].startswith(CONFIRMED) and "$42.10" in replies["100200311"][-1]
    assert "too many tries" in replies["100200399"][-1]  # the made-up one ran out as a real one would have
