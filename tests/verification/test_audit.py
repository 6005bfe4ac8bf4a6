"""Every verification attempt and every disclosure of account data goes on the customer record: what happened, on
which channel and session, for which tool, at what level, and when. The desk reads it there."""

from __future__ import annotations

from datetime import datetime

from shared.models import Channel
from tests.verification.conftest import JORDAN, Rig


async def test_the_record_lists_each_request_wrong_answer_verification_and_disclosure(rig: Rig) -> None:
    visitor = await rig.web_chat()
    await visitor.say("what's my balance? account 100200300")
    await visitor.say("000000" if await rig.code(JORDAN) != "000000" else "111111")
    await visitor.say(await rig.code(JORDAN))
    await visitor.say("and how much energy did I use?")

    audit = (await visitor.record()).audit
    assert [e["event"] for e in audit] == ["verification_requested", "verification_wrong", "verification_verified",
                                           "disclosed", "disclosed"]
    requested, wrong, verified, balance, usage = audit
    assert {k: requested[k] for k in ("channel", "session_id", "tool", "method", "level")} == {
        "channel": "webchat", "session_id": visitor.session_id, "tool": "get_balance", "method": "code",
        "level": "unverified"}
    assert (wrong["method"], wrong["level"]) == ("code", "unverified")
    assert (verified["method"], verified["level"]) == ("code", "verified")
    assert [(d["tool"], d["level"], d["channel"]) for d in (balance, usage)] == [
        ("get_balance", "verified", "webchat"), ("get_usage", "verified", "webchat")]
    times = [datetime.fromisoformat(e["at"]) for e in audit]
    assert times == sorted(times)


async def test_a_refused_request_and_an_identified_callers_disclosure_are_recorded(rig: Rig) -> None:
    caller = await rig.from_phone(Channel.VOICE, JORDAN)
    await caller.say("is there a power outage at my house?")  # the caller ID is enough for the outage at his address
    for _ in range(rig.scenario.verification.codes_per_hour):
        await (await rig.web_chat()).say("what's my balance? account 100200300")
    await caller.say("what's my balance?")  # codes used up this hour: asked the other way

    audit = [e for e in (await caller.record()).audit if e["session_id"] == caller.session_id]
    assert [(e["event"], e.get("tool"), e["level"], e["channel"]) for e in audit] == [
        ("disclosed", "check_outage", "identified", "voice"),
        ("verification_requested", "get_balance", "identified", "voice"),
    ]
    assert audit[1]["method"] == "knowledge"
