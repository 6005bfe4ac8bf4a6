"""Callbacks (issue 17 item 1), through every real piece: `python -m local` (the Functions host, its Durable engine,
the ACS emulator and the media gateway with offline engines). Jordan calls on a busy line with the phone
simulator's code (local/phone.py) or writes on WhatsApp through the emulator; the callback's orchestration runs in
the host's engine on a sped-up clock (LOCAL_DURABLE_TIME_SCALE: its polls and retry delay are minutes by design),
while the calls themselves run in real time. Jordan's phone is `wait_for_call` (`python -m local.phone
--wait-for-call`) or a scripted persona of the emulator. What he hears is transcribed with faster-whisper.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from local.phone import Engines, Line, converse, wait_for_call
from tests.e2e.test_calls_audio import wait_warm
from tests.e2e.test_handoff import _kill_hard
from tests.peers import free_port

JORDAN = "+15555550100"  # on record in the utilities scenario: Jordan Lee
BUSY = {"set": {"waiting": 70, "estimated_wait_seconds": 480}}
CLEAR = {"set": {"waiting": 0, "estimated_wait_seconds": 30}}
INSTANCES = "/runtime/webhooks/durabletask/instances"


def _args(emulator: str, *lines: Line, **extra: Any) -> argparse.Namespace:
    return argparse.Namespace(emulator=emulator, caller=JORDAN, target=JORDAN, lines=list(lines), barge_after=1.5,
                              quiet_ms=900, reply_timeout=25.0, answer_timeout=15.0, transcribe=True,
                              answer_after=0.5, hello="Hello?", **extra)


async def _until(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (found := await check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.3)
    return found


async def _callbacks(app: httpx.AsyncClient) -> list[dict]:
    response = await app.get(INSTANCES, params={"instanceIdPrefix": "callback-"})
    response.raise_for_status()
    return response.json()


async def _placed_to(acs: httpx.AsyncClient, number: str) -> list[dict]:
    calls = (await acs.get("/_emulator/calls")).json()["calls"]
    return [c for c in calls if c["to"] == number and c.get("direction") == "outbound"]


async def _whatsapp(acs: httpx.AsyncClient, text: str) -> str:
    """Jordan writes on WhatsApp; the texts he got back for it."""
    before = len((await acs.get("/_emulator/messages", params={"to": JORDAN})).json())
    response = await acs.post("/_emulator/inbound", json={"from": JORDAN, "text": text})
    assert response.status_code == 200, response.text

    async def replies():
        sent = (await acs.get("/_emulator/messages", params={"to": JORDAN})).json()[before:]
        return [m["content"] for m in sent if m["kind"] == "text"]

    return " ".join(await _until(replies, 30, f"the answer to {text!r}"))


async def _ended(app: httpx.AsyncClient, timeout: float) -> dict:
    async def done():
        found = await _callbacks(app)
        return found[0] if found and found[0]["runtimeStatus"] in ("Completed", "Failed") else None

    return await _until(done, timeout, "the callback's orchestration to end")


@pytest.fixture(scope="module")
def line(local_host_factory):
    """A host whose Durable timers run 20 times faster, with the gateway's speech engines warm."""
    gateway_port = free_port()
    host = local_host_factory(GATEWAY_PORT=str(gateway_port), GATEWAY_PRELOAD_MODELS="true",
                              LOCAL_DURABLE_TIME_SCALE="20")
    engines = Engines(transcribe=True)
    engines.load(need_voice=True)
    wait_warm(f"http://127.0.0.1:{gateway_port}")
    return host, engines


async def test_jordan_asks_on_a_busy_line_and_is_called_back_with_his_context_once(line) -> None:
    host, engines = line
    async with httpx.AsyncClient(base_url=host.url, timeout=30) as app, \
            httpx.AsyncClient(base_url=host.acs_url, timeout=30) as acs:
        (await app.post("/api/ops/queue", json=BUSY)).raise_for_status()
        # Every call callback comes twice (the hang-up too): a redelivered request must start nothing new.
        (await acs.post("/_emulator/calls/redelivery", json={"rate": 1.0, "seed": 7})).raise_for_status()
        asked = await asyncio.wait_for(converse(_args(host.acs_url, Line("say", "I have a question about my bill"),
                                                      Line("say", "please call me back when it's my turn")),
                                                engines), 180)
        heard = asked.bot_text().lower()
        assert "call you back" in heard and "0100" in heard.replace(" ", ""), heard
        instance = (await _until(lambda: _callbacks(app), 30, "the callback to start"))
        assert len(instance) == 1 and instance[0]["customStatus"]["step"] == "waiting", instance

        registered = asyncio.Event()
        phone = asyncio.create_task(wait_for_call(_args(host.acs_url), engines, registered=registered))
        await asyncio.wait_for(registered.wait(), 10)
        await asyncio.sleep(2)  # polls see the busy line: nobody is called yet
        assert await _placed_to(acs, JORDAN) == []
        (await app.post("/api/ops/queue", json=CLEAR)).raise_for_status()  # the queue clears
        called = await asyncio.wait_for(phone, 120)
        (await acs.post("/_emulator/calls/redelivery", json={"rate": 0.0})).raise_for_status()

        opening = next(text for who, text in called.lines if who == "bot").lower()
        assert "jordan" in opening and "calling you back" in opening, opening
        assert "bill" in opening and "billing" in opening, f"why we call and what he was doing: {opening!r}"
        status = await _ended(app, 60)
        assert status["output"]["outcome"] == "answered", status
        assert len(await _placed_to(acs, JORDAN)) == 1, "one call, however often the hang-up was delivered"


@pytest.fixture
def whatsapp_host(local_host_factory, tmp_path: Path):
    """A host on fixed ports and data dir (so it can be killed and started again), timers 60 times faster."""
    env = {"PORT": str(free_port()), "ACS_EMULATOR_PORT": str(free_port()), "GATEWAY_PORT": str(free_port()),
           "SWITCHBOARD_DATA_DIR": str(tmp_path / "data"), "LOCAL_DURABLE_TIME_SCALE": "60"}
    return lambda: local_host_factory(**env)


async def _persona(acs: httpx.AsyncClient, answers: str, **extra: Any) -> None:
    response = await acs.post("/_emulator/personas", json={"number": JORDAN, "answers": answers, **extra})
    assert response.status_code == 201, response.text


async def test_nobody_answers_twice_one_retry_then_one_whatsapp_message(whatsapp_host) -> None:
    host = whatsapp_host()
    async with httpx.AsyncClient(base_url=host.url, timeout=30) as app, \
            httpx.AsyncClient(base_url=host.acs_url, timeout=30) as acs:
        (await app.post("/api/ops/queue", json=BUSY)).raise_for_status()
        await _persona(acs, "no_answer", ring_seconds=0.5)
        said = await _whatsapp(acs, "I have a question about my bill, can you call me back in 5 minutes?")
        assert "call you back" in said and "in about 5 minutes" in said, said

        status = await _ended(app, 90)
        assert status["output"] == {"outcome": "missed", "attempts": ["no_answer", "no_answer"],
                                    "told_by": "whatsapp"}, status
        assert len(await _placed_to(acs, JORDAN)) == 2, "the call and one retry"
        texts = [m["content"] for m in (await acs.get("/_emulator/messages", params={"to": JORDAN})).json()
                 if m["kind"] == "text"]
        assert sum("We tried to call you back" in t for t in texts) == 1, texts


async def test_cancelled_on_whatsapp_nobody_is_called(whatsapp_host) -> None:
    host = whatsapp_host()
    async with httpx.AsyncClient(base_url=host.url, timeout=30) as app, \
            httpx.AsyncClient(base_url=host.acs_url, timeout=30) as acs:
        (await app.post("/api/ops/queue", json=BUSY)).raise_for_status()
        await _persona(acs, "person", say="Hello?")
        assert "call you back" in await _whatsapp(acs, "my bill looks wrong, please call me back in 10 minutes")
        await _until(lambda: _callbacks(app), 30, "the callback to start")
        assert "cancelled your callback" in await _whatsapp(acs, "actually, cancel my callback")

        status = await _ended(app, 30)
        assert status["output"]["outcome"] == "cancelled", status
        await asyncio.sleep(12)  # past the time he named (10 minutes at 60 times speed)
        assert await _placed_to(acs, JORDAN) == []


async def test_a_host_killed_mid_wait_calls_once_after_restart(whatsapp_host) -> None:
    first = whatsapp_host()
    async with httpx.AsyncClient(base_url=first.url, timeout=30) as app, \
            httpx.AsyncClient(base_url=first.acs_url, timeout=30) as acs:
        (await app.post("/api/ops/queue", json=BUSY)).raise_for_status()
        assert "call you back" in await _whatsapp(acs, "question about my bill: call me back when it's my turn")
        (instance,) = await _until(lambda: _callbacks(app), 30, "the callback to start")
        await asyncio.sleep(1.5)  # a few polls of the busy queue
    await asyncio.to_thread(_kill_hard, first)

    second = await asyncio.to_thread(whatsapp_host)  # same data dir: the orchestration survives, waiting
    async with httpx.AsyncClient(base_url=second.url, timeout=30) as app, \
            httpx.AsyncClient(base_url=second.acs_url, timeout=30) as acs:
        await _persona(acs, "person", say="Hello?")
        (await app.post("/api/ops/queue", json=CLEAR)).raise_for_status()  # a restarted host's queue is live
        status = await _ended(app, 90)
        assert status["instanceId"] == instance["instanceId"] and status["output"]["outcome"] == "answered", status
        assert len(await _placed_to(acs, JORDAN)) == 1
