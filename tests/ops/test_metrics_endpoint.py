"""GET /api/ops/metrics reports the design's success figures from real traffic.

Three WhatsApp customers with a power cut each accept to continue on web chat, through the real path: their messages
go through the ACS emulator to the local host, the handoff runs in the host's Durable engine, and the link arrives
on their phone (the emulator's outbox). One opens the link and writes there; one never opens it; one opens it and
is asked again for the service address the record already holds. The endpoint then reports exactly that.

The agents' words come from the OpenAI policy against the scripted OpenAI-compatible server (tests/peers): a fake
at the network boundary, because no model runs here, and because only a model's reply can be scripted to re-ask.
The host runs on each state store the fixtures give us: the embedded SQLite state and a Redis of the test's own.
"""

from __future__ import annotations

import asyncio
import uuid
from functools import partial
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.peers.local_host import LocalHost
from tests.peers.openai_server import OpenAITestServer
from tests.waiting import eventually as wait_until

eventually = partial(wait_until, timeout=30)
REASK = "What's the service address?"  # the scenario's own question for the service_address slot


class Customer:
    """A WhatsApp customer, writing through the ACS emulator and reading their phone's outbox."""

    def __init__(self, host: LocalHost, client: httpx.AsyncClient) -> None:
        self.host, self.client = host, client
        self.phone = f"+1333{uuid.uuid4().int % 10**7:07d}"

    async def outbox(self) -> list[dict[str, Any]]:
        response = await self.client.get(f"{self.host.acs_url}/_emulator/messages", params={"to": self.phone})
        response.raise_for_status()
        return response.json()

    async def whatsapp(self, text: str) -> list[str]:
        before = len(await self.outbox())
        sent = await self.client.post(f"{self.host.acs_url}/_emulator/inbound", json={"from": self.phone, "text": text})
        assert sent.status_code == 200, sent.text
        replies = await _eventually(lambda: self._texts_after(before))
        return replies

    async def link_token(self) -> str:
        async def token() -> str | None:
            for message in reversed(await self.outbox()):
                for value in (message.get("templateValues") or {}).values():
                    if isinstance(value, str) and "handoff=" in value:
                        return parse_qs(urlsplit(value).query)["handoff"][0]
            return None

        return await _eventually(token)

    async def _texts_after(self, before: int) -> list[str] | None:
        texts = [m["content"] for m in (await self.outbox())[before:] if m["kind"] == "text"]
        return texts or None


async def _eventually(probe, timeout: float = 30.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        found = await probe()
        if found:
            return found
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"nothing after {timeout} s: {probe}")
        await asyncio.sleep(0.1)


async def accept_web_chat(customer: Customer, llm: OpenAITestServer) -> None:
    """Report the outage on WhatsApp (the service address goes on the record), then say yes to web chat."""
    llm.reply_tool_calls(("handoff_to_OutageAgent", {"reason": "power cut"}))
    llm.reply_tool_calls(("check_outage", {"service_address": "123 Oak St, Springfield"}))
    llm.reply_text("There's an outage on Oak St; crews expect power back by 4:00 PM.")
    replies = await customer.whatsapp("my power is out at 123 Oak St, Springfield")
    assert any("4:00 PM" in r for r in replies), replies
    llm.reply_tool_calls(("switch_channel", {"channel": "webchat"}))
    await customer.whatsapp("can we continue on web chat instead?")


async def write_on_web_chat(customer: Customer, llm: OpenAITestServer, reply: str) -> None:
    """Open the link from the phone and write: the continuing session's agent answers with `reply`."""
    token = await customer.link_token()
    opened = await customer.client.post(f"{customer.host.url}/api/webchat/sessions", json={"handoff_token": token})
    assert opened.status_code == 201, opened.text
    session = opened.json()
    llm.reply_text(reply)
    said = await customer.client.post(f"{customer.host.url}/api/webchat/sessions/{session['session_id']}/messages",
                                      headers={"Authorization": f"Bearer {session['token']}"},
                                      json={"text": "is the power back yet?"})
    assert said.status_code == 200, said.text
    assert reply in " ".join(r["text"] for r in said.json()["replies"])


async def figures(host: LocalHost, client: httpx.AsyncClient, **params: str) -> dict[str, Any]:
    response = await client.get(f"{host.url}/api/ops/metrics", params=params)
    assert response.status_code == 200, host.stderr()[-3000:]
    return response.json()


@pytest.fixture(params=["sqlite", "redis"])
def state_env(request) -> dict[str, str]:
    if request.param == "redis":
        server = request.getfixturevalue("redis_server")  # its own Redis: the ledger's keys are the host's alone
        return {"REDIS_URL": server.url}
    return {"SESSION_STATE": "sqlite"}


async def test_the_figures_count_handoffs_taken_up_abandoned_and_reasked(
    local_host_factory, openai_server: OpenAITestServer, state_env: dict[str, str]
) -> None:
    host: LocalHost = await asyncio.to_thread(
        local_host_factory, SWITCHBOARD_POLICY="openai", OPENAI_BASE_URL=openai_server.base_url,
        OPENAI_API_KEY="test-key", HANDOFF_REMIND_AFTER_SECONDS="600", **state_env,
    )
    async with httpx.AsyncClient(timeout=30) as client:
        empty = await figures(host, client)
        for name in ("context_preservation", "handoff_success", "channel_switch_seconds", "resolution",
                     "escalations", "abandonment"):
            assert empty[name]["n"] == 0, (name, empty[name])
            assert empty[name].get("rate") is None and empty[name].get("met") is None, (name, empty[name])

        taken_up, never, reasked = (Customer(host, client) for _ in range(3))
        started = asyncio.get_running_loop().time()
        await accept_web_chat(taken_up, openai_server)
        await write_on_web_chat(taken_up, openai_server, "Not yet: crews still expect 4:00 PM.")
        await accept_web_chat(never, openai_server)
        await never.link_token()  # the link reached their phone; they never open it
        await accept_web_chat(reasked, openai_server)
        await write_on_web_chat(reasked, openai_server, REASK)
        elapsed = asyncio.get_running_loop().time() - started

        seen = await figures(host, client, hours="1")
    assert seen["window"]["hours"] == 1
    assert seen["handoff_success"] | {"target": ""} == {
        "n": 3, "succeeded": 2, "rate": 0.667, "target_rate": 0.9, "met": False, "target": ""}
    assert seen["context_preservation"] | {"target": ""} == {
        "n": 2, "preserved": 1, "rate": 0.5, "target_rate": 0.95, "met": False, "reasked_slots": ["service_address"],
        "target": ""}
    switch = seen["channel_switch_seconds"]
    assert switch["n"] == 2 and 0 < switch["p50"] <= switch["p95"] < elapsed and switch["met"] is True, switch
    # Three conversations (each WhatsApp session with the web chat one continuing it), each resolved by the outage
    # answer on its first message; nobody was escalated.
    resolution = seen["resolution"]
    assert (resolution["n"], resolution["resolved"], resolution["rate"]) == (3, 3, 1.0), resolution
    assert resolution["turns"] == {"p50": 1, "p95": 1}, resolution
    assert seen["escalations"] == {"n": 3, "escalated": 0, "rate": 0.0}
    assert seen["abandonment"] == {"n": 0, "abandoned": 0, "rate": None}


@pytest.mark.parametrize(("query", "named"), [("hours=0", "hours"), ("hours=169", "hours"), ("hours=1.5", "hours"),
                                             ("hours=day", "hours"), ("window=24", "window")])
def test_a_bad_window_is_refused_naming_the_parameter(live_host: str, query: str, named: str) -> None:
    response = httpx.get(f"{live_host}/api/ops/metrics?{query}", timeout=30)
    assert response.status_code == 400, response.text
    assert named in response.json()["error"]


def test_an_empty_window_reads_as_the_default_day(live_host: str) -> None:
    """As on every route that takes a query (functions/api/parsing.py): `hours=` is the parameter left out."""
    response = httpx.get(f"{live_host}/api/ops/metrics?hours=", timeout=30)
    assert response.status_code == 200, response.text
    assert response.json()["window"]["hours"] == 24


def test_without_the_function_key_the_figures_are_refused_with_401(local_host_factory) -> None:
    """On a host started with LOCAL_FUNCTION_KEY, which checks function keys as the Functions host in Azure does:
    no key or a wrong one is 401 before the app runs; the key, in the header or as ?code=, reaches the app."""
    key = "ops-test-key/with+base64=="
    metrics = f"{local_host_factory(LOCAL_FUNCTION_KEY=key).url}/api/ops/metrics"

    refused = [httpx.get(metrics, timeout=30),
               httpx.get(metrics, headers={"x-functions-key": "not-the-key"}, timeout=30),
               httpx.get(metrics, params={"code": key[:-1]}, timeout=30)]
    assert [r.status_code for r in refused] == [401, 401, 401], [r.text for r in refused]
    assert "function key" in refused[0].json()["error"]

    by_header = httpx.get(metrics, headers={"x-functions-key": key}, timeout=30)
    assert by_header.status_code == 200, by_header.text
    assert by_header.json()["window"]["hours"] == 24
    by_code = httpx.get(metrics, params={"code": key, "hours": "0"}, timeout=30)
    assert by_code.status_code == 400 and "hours" in by_code.json()["error"], by_code.text
