"""The insurance scenario keeps policies and claims to their holders, as utilities keeps accounts.

A policy number says which policy is meant, never that whoever typed it holds it: what it covers, its deductible and
premium, and the state of a claim on it are told only after a code sent to the phone number on the policy, or the
policy's ZIP code with the holder's last name (scenarios/insurance/scenario.yaml, `verification`).
"""

from __future__ import annotations

import re

from shared.models import Verification
from shared.scenario import load_scenario
from tests.verification.conftest import Rig
from tests.verifying import ASKS_TO_VERIFY, CONFIRMED, knowledge_answers

ALEX = "+15555550200"  # the holder of auto policy LM-482913 (scenarios/insurance/data.yaml)
# What Alex's policy and claim would give away: the car, the deductible, the premium, the renewal, the claim.
ALEXS_POLICY = re.compile(r"Honda|Civic|\$500|88\.40|March 3|CLM-20931|adjuster will call", re.I)
WRONG = "That doesn't match what we have. Please try again."


async def test_a_policy_number_alone_shows_nothing_until_the_code_from_the_phone_on_the_policy(make_rig) -> None:
    rig: Rig = await make_rig(load_scenario("insurance"))
    visitor = await rig.web_chat()
    said = [await visitor.say("what's my deductible? my policy is LM-482913")]
    for question in ("what's the status of my claim?", "123456"):  # each question asks again (a code each)
        said.append(await visitor.say(question))
    assert not [s for s in said if ALEXS_POLICY.search(s)], said
    assert ASKS_TO_VERIFY.search(said[0]) and "phone number on the policy" in said[0]
    assert said[-1] == WRONG
    assert (await visitor.session()).verification is Verification.UNVERIFIED

    caller = await rig.web_chat()  # the third code this hour, the last before the knowledge questions
    assert ASKS_TO_VERIFY.search(await caller.say("what's my deductible? my policy is LM-482913"))
    answer = await caller.say(await rig.code(ALEX))  # the code went to Alex's phone, where only Alex reads it
    assert answer.startswith(CONFIRMED) and "$500" in answer and "2021 Honda Civic" in answer
    assert "CLM-20931" in await caller.say("and what's the status of my claim?")  # verified for this policy now


async def test_the_policy_zip_and_the_holders_last_name_verify_without_saying_which_was_wrong(make_rig) -> None:
    rig: Rig = await make_rig(load_scenario("insurance"), codes=False)  # no way to send a code: the questions
    visitor = await rig.web_chat()
    asked = await visitor.say("what is the status of my claim? policy LM-482913")
    assert "ZIP code on the policy" in asked and "last name" in asked and not ALEXS_POLICY.search(asked)
    assert [await visitor.say("62702, Smith"), await visitor.say("90210, Morgan")] == [WRONG, WRONG]
    answer = await visitor.say(knowledge_answers("LM-482913", "insurance"))
    assert answer.startswith(CONFIRMED) and "CLM-20931" in answer
    assert (await visitor.session()).verified_by == "knowledge"
