"""Codes and knowledge answers are secrets: they reach the customer's phone and the comparison, and nothing else.

Not the transcript (people at the desk read it, and it is kept for months), not the logs (shipped to a workspace
many can query), not the state store in clear (a code is kept as a digest, salted with its session).
"""

from __future__ import annotations

import json
import logging

import pytest
import redis.asyncio as aioredis

from shared.stores.azure_redis import RedisSessionState
from tests.verification.conftest import JORDAN, SAM, Rig
from tests.verifying import knowledge_answers


async def test_a_code_is_in_no_transcript_record_or_log_line(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # everything any library logs, too
    visitor = await rig.web_chat()
    await visitor.say("what's my balance? account 100200300")
    wrong_code = "987654" if await rig.code(JORDAN) != "987654" else "987655"
    await visitor.say(wrong_code)
    code = await rig.code(JORDAN)
    assert "$127.45" in await visitor.say(f"the code is {code}")

    session = await visitor.session()
    said = [t.text for t in session.turns if t.role == "customer"]
    assert said == ["what's my balance? account 100200300", "[verification code]", "[verification code]"]
    record = json.dumps((await visitor.record()).to_dict())
    for secret in (code, wrong_code):
        assert secret not in record
        assert secret not in caplog.text
    assert "verification code sent to …0100" in caplog.text  # the log says what happened, to whom, masked


async def test_knowledge_answers_are_in_no_transcript_or_log_line(make_rig, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    rig: Rig = await make_rig(codes=False)
    visitor = await rig.web_chat()
    await visitor.say("what's my balance? my number is 555 555 0111")
    await visitor.say("62799, Riviera")
    assert "$42.10" in await visitor.say(knowledge_answers(SAM))
    said = [t.text for t in (await visitor.session()).turns if t.role == "customer"]
    assert said[1:] == ["[verification answer]", "[verification answer]"]
    record = json.dumps((await visitor.record()).to_dict())
    for secret in ("62704", "62799", "Riviera"):
        assert secret not in record and secret not in caplog.text


@pytest.mark.parametrize("state", ["redis"], indirect=True)  # read back from Redis, as anyone with its key could
async def test_the_state_store_keeps_digests_not_codes(rig: Rig, request: pytest.FixtureRequest) -> None:
    assert isinstance(rig.state, RedisSessionState)
    visitor = await rig.web_chat()
    await visitor.say("what's my balance? account 100200300")
    code = await rig.code(JORDAN)
    # The test's own Redis: everything in it is this test's.
    client = aioredis.from_url(request.getfixturevalue("redis_server").url)
    try:
        stored = []
        async for key in client.scan_iter():
            kind = await client.type(key)
            value = await (client.get(key) if kind == b"string" else client.smembers(key) if kind == b"set"
                           else client.hgetall(key) if kind == b"hash" else client.zrange(key, 0, -1)
                           if kind == b"zset" else client.lrange(key, 0, -1))
            stored.append(f"{key!r}={value!r}")
    finally:
        await client.aclose()
    assert stored and not [s for s in stored if code in s]
    assert "$127.45" in await visitor.say(code)  # and the code still works: the digest is what it is checked against
