"""Calls the AI cannot take yet: a gateway at its capacity holds the next caller with hold music, counts them as
waiting on the desk, and greets them as soon as a conversation ends.

A gateway with room for one call, two callers: the second hears the hold tune (the gateway's own, byte for byte), is
counted in the desk's HELD_CALLS (so the queue estimate and the supervisor see them), and when the first hangs up
hears the greeting, transcribed here with faster-whisper.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from media_gateway.audio import frame_bytes
from media_gateway.hold import CallSlots, hold_music
from media_gateway.hooks import CallHooks
from media_gateway.server import Gateway, create_app
from shared.desk import HELD_CALLS
from tests.media_gateway.caller import AcsCaller
from tests.media_gateway.conftest import RunningGateway
from tests.media_gateway.test_gateway import transcribe
from tests.peers import serving


@pytest.fixture
async def small_gateway(services, offline_engines) -> AsyncIterator[RunningGateway]:
    running = Gateway(services, offline_engines, hooks=CallHooks(), max_calls=1)
    async with serving(create_app(running)) as url:
        yield RunningGateway(running, url, services, [], [])


async def health(base_url: str) -> dict:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base_url}/healthz") as response:
            return await response.json()


async def test_a_caller_over_capacity_hears_hold_music_is_counted_waiting_and_is_greeted_when_a_slot_frees(
    small_gateway: RunningGateway, offline_engines
) -> None:
    gateway, state, desk = small_gateway, small_gateway.services.state, small_gateway.services.desk
    first_call = await gateway.open_call("+15555550301")
    second_call = await gateway.open_call("+15555550100")  # Jordan Lee: the greeting names them
    async with aiohttp.ClientSession() as http:
        first = await AcsCaller.connect(http, first_call.url)
        await first.wait_audio(time.monotonic(), timeout=10)  # the first caller's greeting

        second = await AcsCaller.connect(http, second_call.url)
        await second.wait_audio(time.monotonic(), timeout=10)
        await asyncio.sleep(1.5)
        held = second.audio_since(0)
        music = hold_music(16000)
        assert len(held) >= 50 * frame_bytes(16000), "a second of hold music"
        assert held == (music * 2)[: len(held)], "the hold tune, paced, from its start"
        assert await state.count_members(HELD_CALLS) == 1
        assert (await desk.metrics())["calls_on_hold"] == 1
        assert (await gateway.services.queue.snapshot()).waiting >= 1, "a held call waits like an escalation"
        assert (await health(gateway.base_url))["calls"] == 2, "a held call is one the gateway carries"
        assert gateway.gateway.slots.waiting == 1
        session = await gateway.services.conversation.transcript(second_call.session_id, second_call.customer_id)
        assert all(turn.role == "agent" for turn in session.turns), "nobody has talked to the held caller"

        await first.close()  # the first caller hangs up: the slot goes to the one on hold
        freed = time.monotonic()
        stop = await _wait_for(lambda: second.first("stop", freed), timeout=10)
        await second.wait_audio(stop.at, timeout=15)
        await second.wait_quiet(0.6, timeout=30)
        greeting = await transcribe(offline_engines, second.audio_since(stop.at))
        assert not second.closed.is_set()
        await second.close()

    assert re.search(r"Spring\w* Power", greeting) and "jordan" in greeting.lower(), greeting
    assert await state.count_members(HELD_CALLS) == 0
    assert (await desk.metrics())["calls_on_hold"] == 0


async def test_slots_go_to_the_longest_waiting_and_a_caller_who_gives_up_loses_their_place() -> None:
    slots = CallSlots(1)
    assert slots.try_take() and not slots.try_take()
    first, second, third = (asyncio.create_task(slots.take()) for _ in range(3))
    await asyncio.sleep(0)
    assert slots.waiting == 3
    second.cancel()  # that caller hung up while on hold
    await asyncio.gather(second, return_exceptions=True)
    slots.release()
    await asyncio.wait_for(first, 1)
    assert not third.done() and slots.in_use == 1
    slots.release()
    await asyncio.wait_for(third, 1)
    slots.release()
    assert slots.in_use == 0 and slots.try_take()


async def _wait_for(found, timeout: float):
    deadline = time.monotonic() + timeout
    while (result := found()) is None:
        assert time.monotonic() < deadline, "the held call never came off hold"
        await asyncio.sleep(0.02)
    return result
