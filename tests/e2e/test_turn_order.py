"""One turn at a time per session: messages sent faster than the agent answers are answered in order, each turn
seeing the ones before it (defect 3 of the lost-state issue).

The local host runs the OpenAI policy against the OpenAI-compatible test server (a fake at the network boundary: the
real service cannot run here), which answers each request only after a delay, so five messages sent 50 ms apart are
all in flight at once. Before turns were serialised, each read the session before the others saved and answered from
stale history; the recorded model requests show what history each turn saw.
"""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest

from local.acs.messages import CHANNEL_ID

MESSAGES = [f"note {n}: {word}" for n, word in enumerate(("apples", "pears", "plums", "figs", "kiwis"), start=1)]
ANSWER_DELAY = 0.3  # seconds the model takes per answer: longer than the gap between messages
GAP = 0.05


@pytest.fixture
async def slow_llm_host(local_host_factory, openai_server, tmp_path):
    host = local_host_factory(
        SWITCHBOARD_POLICY="openai", OPENAI_BASE_URL=openai_server.base_url, OPENAI_API_KEY="k",
        WHATSAPP_CHANNEL_ID=CHANNEL_ID,
    )
    for n in range(1, len(MESSAGES) + 1):
        openai_server.reply_text(f"answer {n}", delay=ANSWER_DELAY)
    yield host
    host.stop()


def _customer_texts(request) -> list[str]:
    return [m["content"] for m in request.messages if m["role"] == "user"]


def _assert_each_turn_saw_the_ones_before(openai_server) -> None:
    requests = openai_server.requests
    assert len(requests) == len(MESSAGES), [_customer_texts(r) for r in requests]
    for n, request in enumerate(requests):
        said = " ".join(_customer_texts(request))
        answered = " ".join(m["content"] or "" for m in request.messages if m["role"] == "assistant")
        assert MESSAGES[n] in said, f"request {n} is not for message {n}: {said!r}"
        for earlier in range(n):
            assert MESSAGES[earlier] in said, f"turn {n + 1} did not see message {earlier + 1} in its history"
            assert f"answer {earlier + 1}" in answered, f"turn {n + 1} did not see answer {earlier + 1}"


async def _staggered(send, count: int):
    async def later(n: int):
        await asyncio.sleep(n * GAP)
        return await send(n)

    return await asyncio.gather(*(later(n) for n in range(count)))


async def test_web_chat_messages_50ms_apart_are_answered_in_order_each_seeing_the_last(slow_llm_host, openai_server):
    async with httpx.AsyncClient(base_url=slow_llm_host.url, timeout=60) as client:
        created = (await client.post("/api/webchat/sessions")).json()
        auth = {"Authorization": f"Bearer {created['token']}"}
        url = f"/api/webchat/sessions/{created['session_id']}/messages"

        async def send(n: int) -> httpx.Response:
            return await client.post(url, json={"text": MESSAGES[n]}, headers=auth)

        responses = await _staggered(send, len(MESSAGES))
        for n, response in enumerate(responses):
            assert response.status_code == 200, response.text
            assert response.json()["replies"][-1]["text"] == f"answer {n + 1}"

        turns = (await client.get(f"/api/webchat/sessions/{created['session_id']}", headers=auth)).json()["turns"]
    spoken = [(t["role"], t["text"]) for t in turns if t["role"] == "customer" or t["text"].startswith("answer")]
    expected = [pair for n, text in enumerate(MESSAGES) for pair in (("customer", text), ("agent", f"answer {n + 1}"))]
    assert spoken == expected
    _assert_each_turn_saw_the_ones_before(openai_server)


async def test_whatsapp_messages_50ms_apart_are_answered_in_order_each_seeing_the_last(slow_llm_host, openai_server):
    phone = f"+1444{uuid.uuid4().int % 10**7:07d}"
    async with httpx.AsyncClient(timeout=60) as client:

        async def send(n: int) -> httpx.Response:  # the emulator posts each to the host's Event Grid webhook
            return await client.post(f"{slow_llm_host.acs_url}/_emulator/inbound",
                                     json={"from": phone, "text": MESSAGES[n]})

        for response in await _staggered(send, len(MESSAGES)):
            assert response.status_code == 200, response.text
        outbox = (await client.get(f"{slow_llm_host.acs_url}/_emulator/messages", params={"to": phone})).json()
    texts = [m["content"] for m in outbox if m["kind"] == "text"]
    assert texts == [f"answer {n}" for n in range(1, len(MESSAGES) + 1)]
    _assert_each_turn_saw_the_ones_before(openai_server)
