"""Callbacks asked for and cancelled on web chat, through `python -m local` (the host, its Durable engine on a sped-up
clock, the ACS emulator): Jordan's call moves to web chat through the link the handoff sends him (the voice leg runs
the conversation core on the host's record store, as the media gateway would), and on the chat he asks to be called
back while the line is busy. The phone that rings is the emulator's scripted persona.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from shared.conversation import Conversation
from shared.models import Channel, Identity, IdentityKind, new_id
from shared.policies.offline import OfflinePolicy
from shared.scenario import load_scenario
from shared.stores.embedded_customers import SqliteCustomerStore
from shared.stores.embedded_state import InProcessSessionState
from shared.tokens import TokenSigner, load_secret
from tests.callbacks.test_callbacks import BUSY, JORDAN, _callbacks, _ended, _persona, _placed_to, _until
from tests.handoff_links import sent_link
from tests.peers import free_port


@pytest.fixture
def host(local_host_factory, tmp_path: Path):
    """A host whose durable timers run 60 times faster, on a data dir this test can read."""
    data_dir = tmp_path / "data"
    started = local_host_factory(PORT=str(free_port()), ACS_EMULATOR_PORT=str(free_port()),
                                 GATEWAY_PORT=str(free_port()), SWITCHBOARD_DATA_DIR=str(data_dir),
                                 LOCAL_DURABLE_TIME_SCALE="60")
    started.data_dir = data_dir
    return started


async def _jordan_on_web_chat(host, app: httpx.AsyncClient, acs: httpx.AsyncClient) -> dict[str, str]:
    """Jordan calls, asks to carry on by web chat and opens the link he is sent: the chat's session and token."""
    store = SqliteCustomerStore(host.data_dir / "customers.sqlite3")
    try:
        conversation = Conversation(load_scenario("utilities"), store, InProcessSessionState(), OfflinePolicy())
        call = new_id("call")
        opened = await conversation.open_for_identity(Channel.VOICE, call, Identity(IdentityKind.PHONE, JORDAN))
        customer_id = opened.customer.customer_id
        await conversation.turn(call, customer_id, "I have a question about my bill")
        moved = await conversation.turn(call, customer_id, "can we continue on web chat instead?")
        assert moved.switch_to == "webchat", moved.replies
    finally:
        await store.close()
    control = TokenSigner(load_secret("", host.data_dir)).issue("call-control", 600, sid=call, cid=customer_id)
    started = await app.post("/api/handoffs", headers={"Authorization": f"Bearer {control}"},
                             json={"customer_id": customer_id, "session_id": call, "to_channel": "webchat"})
    assert started.status_code == 202, started.text

    async def link():
        return sent_link((await acs.get("/_emulator/messages", params={"to": JORDAN})).json(), started.json()["id"])

    token = parse_qs(urlsplit(await _until(link, 30, "the web chat link")).query)["handoff"][0]
    chat = await app.post("/api/webchat/sessions", json={"handoff_token": token})
    assert chat.status_code == 201, chat.text
    return chat.json()


async def _say(app: httpx.AsyncClient, chat: dict[str, str], text: str, key: str | None = None) -> str:
    headers = {"Authorization": f"Bearer {chat['token']}", **({"Idempotency-Key": key} if key else {})}
    answer = await app.post(f"/api/webchat/sessions/{chat['session_id']}/messages", json={"text": text},
                            headers=headers)
    assert answer.status_code == 200, answer.text
    return " ".join(reply["text"] for reply in answer.json()["replies"])


async def test_a_callback_asked_on_web_chat_is_placed_once(host) -> None:
    async with httpx.AsyncClient(base_url=host.url, timeout=30) as app, \
            httpx.AsyncClient(base_url=host.acs_url, timeout=30) as acs:
        chat = await _jordan_on_web_chat(host, app, acs)
        (await app.post("/api/ops/queue", json=BUSY)).raise_for_status()
        await _persona(acs, "person", say="Hello?")
        asked = "can you call me back in 5 minutes?"
        said = await _say(app, chat, asked, key="ask-1")
        assert "call you back" in said and "in about 5 minutes" in said, said
        assert await _say(app, chat, asked, key="ask-1") == said  # the page retried: the same answer, no new turn

        (instance,) = await _until(lambda: _callbacks(app), 30, "the callback to start")
        status = await _ended(app, 60)
        assert status["instanceId"] == instance["instanceId"] and status["output"]["outcome"] == "answered", status
        assert len(await _placed_to(acs, JORDAN)) == 1
        assert len(await _callbacks(app)) == 1


async def test_a_callback_cancelled_on_web_chat_calls_nobody(host) -> None:
    async with httpx.AsyncClient(base_url=host.url, timeout=30) as app, \
            httpx.AsyncClient(base_url=host.acs_url, timeout=30) as acs:
        chat = await _jordan_on_web_chat(host, app, acs)
        (await app.post("/api/ops/queue", json=BUSY)).raise_for_status()
        await _persona(acs, "person", say="Hello?")
        assert "call you back" in await _say(app, chat, "please call me back in 10 minutes")
        await _until(lambda: _callbacks(app), 30, "the callback to start")
        assert "cancelled your callback" in await _say(app, chat, "actually, cancel my callback")

        status = await _ended(app, 30)
        assert status["output"]["outcome"] == "cancelled", status
        await asyncio.sleep(12)  # past the time he named (10 minutes at 60 times speed)
        assert await _placed_to(acs, JORDAN) == []
