"""The gateway's door: tokens checked before the WebSocket is accepted, and a bad peer dropped without harming the
calls next to it."""

from __future__ import annotations

import asyncio
import base64
import json
import time

import aiohttp
import pytest

from shared.calls import tokens as call_tokens
from tests.media_gateway.caller import AcsCaller, bad_peer
from tests.media_gateway.conftest import RunningGateway

METADATA = json.dumps({"kind": "AudioMetadata", "audioMetadata": {"sampleRate": 16000, "channels": 1, "encoding": "PCM"}})
SILENT_FRAME = json.dumps({"kind": "AudioData", "audioData": {"data": base64.b64encode(bytes(640)).decode(), "silent": True}})


async def refused(url: str) -> int:
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as error:
            await http.ws_connect(url)
    return error.value.status


async def test_a_connection_without_a_valid_token_is_refused_before_it_is_accepted(
    gateway: RunningGateway, caplog
) -> None:
    call = await gateway.open_call("+15555550201")
    tokens = gateway.services.tokens
    payload, _, signature = call.token.partition(".")
    base = f"{gateway.base_url}/media"

    assert await refused(base) == 401
    assert await refused(f"{base}?token=") == 401
    assert await refused(f"{base}?token={payload}.{signature[::-1]}") == 403  # forged
    expired = tokens.issue('media', -120, sid=call.session_id, cid=call.customer_id)  # past the 30 s leeway
    assert await refused(f"{base}?token={expired}") == 403
    assert await refused(f"{base}?token={tokens.issue('webchat', 600, sid=call.session_id, cid=call.customer_id)}") == 403
    control = tokens.issue("call-control", 600, sid=call.session_id, cid=call.customer_id, call=call.call_id)
    assert await refused(f"{base}?token={control}") == 403  # the call's own control token opens no socket
    assert await refused(f"{base}?token={tokens.issue('media', 600, call='x')}") == 403  # names no session
    assert await refused(f"{base}?token={tokens.issue('media', 600, sid='voice_gone', cid=call.customer_id)}") == 404
    assert sum("refused" in r.getMessage() for r in caplog.records) == 8

    async with aiohttp.ClientSession() as http:  # and it goes on serving the call that has a good token
        caller = await AcsCaller.connect(http, call.url)
        await caller.wait_audio(time.monotonic(), timeout=10)
        await caller.close()


async def test_a_call_has_one_media_socket_however_often_and_with_whatever_token_it_is_opened(
    gateway: RunningGateway,
) -> None:
    call = await gateway.open_call("+15555550211")
    async with aiohttp.ClientSession() as http:
        # The same URL opened five times at once (a replay racing ACS): one socket, the others refused.
        attempts = await asyncio.gather(*(AcsCaller.connect(http, call.url) for _ in range(5)), return_exceptions=True)
        callers = [a for a in attempts if isinstance(a, AcsCaller)]
        assert len(callers) == 1, attempts
        assert [a.status for a in attempts if not isinstance(a, AcsCaller)] == [409] * 4, attempts
        first = callers[0]
        await first.wait_audio(time.monotonic(), timeout=10)

        # A second genuine media token for the call (the function app would never mint one) opens nothing either.
        again = call_tokens.issue(gateway.services.tokens, gateway.services.settings, "media", call=call.call_id,
                                  sid=call.session_id, cid=call.customer_id, tp="another")
        assert await refused(f"{gateway.base_url}/media?token={again}") == 409
        during = time.monotonic()
        await first.wait_audio(during, timeout=5)  # and the first socket kept its greeting flowing
        assert not first.closed.is_set()
        await first.close()

    for _ in range(100):  # the gateway lets the call go
        if not any(c.ref.call_id == call.call_id for c in gateway.gateway.calls):
            break
        await asyncio.sleep(0.05)
    assert await refused(call.url) == 409, "the URL, replayed once its socket has closed, opens nothing"


async def test_the_gateway_holds_a_call_control_token_for_the_call_and_the_media_token_lives_minutes(
    gateway: RunningGateway,
) -> None:
    settings, tokens = gateway.services.settings, gateway.services.tokens
    call = await gateway.open_call("+15555550212")
    media = tokens.verify(call.token, "media")
    assert media["exp"] - media["iat"] == settings.call_media_token_ttl_seconds == 300
    async with aiohttp.ClientSession() as http:
        caller = await AcsCaller.connect(http, call.url)
        await caller.wait_audio(time.monotonic(), timeout=10)
        (held,) = [c.ref for c in gateway.gateway.calls if c.ref.call_id == call.call_id]
        await caller.close()
    control = tokens.verify(held.token, "call-control")  # what the hooks send to the function app
    assert (control["call"], control["sid"], control["cid"]) == (call.call_id, call.session_id, call.customer_id)
    assert control["exp"] - control["iat"] == settings.call_token_ttl_seconds == 7200
    assert held.token != call.token


async def test_health_says_what_the_gateway_runs(gateway: RunningGateway) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{gateway.base_url}/healthz") as response:
            assert response.status == 200
            health = await response.json()
    assert health["status"] == "ok"
    assert health["engines"] == {"kind": "offline", "stt": "faster-whisper", "tts": "piper", "vad": "silero",
                                 "turn": "smart-turn-v3", "warm": True}


async def test_garbage_and_floods_drop_that_call_while_another_call_keeps_going(gateway: RunningGateway) -> None:
    good = await gateway.open_call("+15555550202")
    bad = [await gateway.open_call(f"+1555555030{i}") for i in range(5)]
    async with aiohttp.ClientSession() as http:
        caller = await AcsCaller.connect(http, good.url)
        await caller.wait_audio(time.monotonic(), timeout=10)  # the greeting is playing
        during = time.monotonic()

        codes = await asyncio.gather(
            bad_peer(http, bad[0].url, METADATA, "this is not json"),
            bad_peer(http, bad[1].url, METADATA, b"\x00\x01binary"),
            bad_peer(http, bad[2].url, SILENT_FRAME),  # audio before its metadata
            bad_peer(http, bad[3].url, METADATA, *[SILENT_FRAME] * 3000),  # a minute of audio at once
            bad_peer(http, bad[4].url, METADATA, *['{"kind": "MarkData", "markData": {}}'] * 3000),
        )
        assert codes == [1007, 1003, 1007, 1008, 1008]

        await asyncio.sleep(0.5)
        until = time.monotonic()
        frames = [r.at for r in caller.received if r.kind == "audio" and r.at >= during]
        assert not caller.closed.is_set()
        # The greeting kept flowing at its pace while the others were dropped.
        assert len(frames) >= 0.8 * (until - during) / 0.02
        assert max(b - a for a, b in zip(frames, frames[1:])) < 0.5
        async with http.get(f"{gateway.base_url}/healthz") as response:
            assert (await response.json())["calls"] == 1
        await caller.close()
    assert gateway.gateway.stats.calls_dropped >= 5
