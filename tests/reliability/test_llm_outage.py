"""The language model goes down under a running host, then comes back: the customer hears the scenario's fallback
line promptly on web chat and WhatsApp, the turn is on the transcript, and the next turn after recovery is answered.

The host runs the OpenAI policy (SWITCHBOARD_POLICY=openai) against tests/peers/openai_server.py, an OpenAI-compatible
server at the network boundary (the real service cannot run here) driven through the real `openai` SDK. It is
scripted to fail each way an endpoint fails: HTTP 500s, a dropped connection, and a stall past LLM_TIMEOUT_SECONDS.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from shared.scenario import load_scenario
from tests.peers.openai_server import OpenAITestServer

TIMEOUT_SECONDS = 2.0
FALLBACK = load_scenario("utilities").phrase("fallback")
RECOVERED = "Your balance is $42.10, due on the 15th."
#: Each outage, scripted for the first request and the SDK's two retries.
OUTAGES = {
    "HTTP 500": lambda server: server.fail(500, times=3),
    "connection dropped": lambda server: server.drop(times=3),
    "stalled past the timeout": lambda server: server.stall(times=3),
}


@pytest.fixture(scope="module")
async def llm():
    server = OpenAITestServer()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture(scope="module")
async def host(local_host_factory, llm):
    host = await asyncio.to_thread(
        local_host_factory,
        SWITCHBOARD_POLICY="openai", OPENAI_BASE_URL=llm.base_url, OPENAI_API_KEY="k",
        LLM_TIMEOUT_SECONDS=str(TIMEOUT_SECONDS),
    )
    yield host
    await asyncio.to_thread(host.stop)


async def test_web_chat_falls_back_on_each_outage_records_the_turn_and_recovers(host, llm):
    async with httpx.AsyncClient(base_url=host.url, timeout=120) as app:
        created = (await app.post("/api/webchat/sessions")).json()
        auth = {"Authorization": f"Bearer {created['token']}"}
        url = f"/api/webchat/sessions/{created['session_id']}/messages"
        for outage, script in OUTAGES.items():
            llm.clear_script()
            script(llm)
            asked = len(llm.requests)
            started = time.monotonic()
            response = await app.post(url, json={"text": f"what do I owe? ({outage})"}, headers=auth)
            took = time.monotonic() - started
            print(f"\nweb chat, LLM {outage:26} -> {response.status_code} in {took:4.1f} s after "
                  f"{len(llm.requests) - asked} LLM request(s) (LLM_TIMEOUT_SECONDS={TIMEOUT_SECONDS:g}): "
                  f"{response.json()['replies'][-1]['text'] if response.status_code == 200 else response.text}", end="")
            assert response.status_code == 200, response.text
            assert [r["text"] for r in response.json()["replies"]] == [FALLBACK]
            assert took < TIMEOUT_SECONDS + 2.5, f"the customer waited {took:.1f} s for the fallback line"
            turns = (await app.get(f"/api/webchat/sessions/{created['session_id']}", headers=auth)).json()["turns"]
            assert [(t["role"], t["text"]) for t in turns[-2:]] == [
                ("customer", f"what do I owe? ({outage})"), ("agent", FALLBACK)], "the turn is on the transcript"

        llm.clear_script()
        llm.reply_text(RECOVERED)
        started = time.monotonic()
        response = await app.post(url, json={"text": "and now?"}, headers=auth)
        print(f"\nweb chat, LLM back -> {response.status_code} in {time.monotonic() - started:.1f} s: "
              f"{response.json()['replies'][-1]['text']}")
        assert response.status_code == 200 and response.json()["replies"][-1]["text"] == RECOVERED


async def test_whatsapp_falls_back_on_each_outage_records_the_turn_and_recovers(host, llm):
    phone = "+15555550177"
    async with httpx.AsyncClient(base_url=host.acs_url, timeout=120) as acs:
        async def texts() -> list[str]:
            outbox = (await acs.get("/_emulator/messages", params={"to": phone})).json()
            return [m["content"] for m in outbox if m["kind"] == "text"]

        async def write(text: str) -> tuple[list[str], float]:
            before, started = len(await texts()), time.monotonic()
            delivered = await acs.post("/_emulator/inbound", json={"from": phone, "text": text})
            assert delivered.json()["status"] == 202, delivered.text  # the event is handled, not left to redeliver
            deadline = time.monotonic() + 30
            while len(sent := (await texts())[before:]) == 0:
                assert time.monotonic() < deadline, f"no WhatsApp answer to {text!r}"
                await asyncio.sleep(0.05)
            return sent, time.monotonic() - started

        for outage, script in OUTAGES.items():
            llm.clear_script()
            script(llm)
            sent, took = await write(f"what do I owe? ({outage})")
            print(f"\nWhatsApp, LLM {outage:26} -> answered in {took:4.1f} s: {sent}", end="")
            assert sent == [FALLBACK]
            assert took < TIMEOUT_SECONDS + 2.5, f"the customer waited {took:.1f} s for the fallback line"
        llm.clear_script()
        llm.reply_text(RECOVERED)
        sent, took = await write("and now?")
        print(f"\nWhatsApp, LLM back -> answered in {took:.1f} s: {sent}")
        assert sent == [RECOVERED]
    # The turns are on the customer's record: the web chat transcript of a WhatsApp customer is not reachable over
    # HTTP, so read it from the LLM's own view: the recovered request carried the earlier turns as history.
    history = [m.get("content") for m in llm.requests[-1].messages]
    for outage in OUTAGES:
        assert f"what do I owe? ({outage})" in history
    assert history.count(FALLBACK) >= len(OUTAGES)
