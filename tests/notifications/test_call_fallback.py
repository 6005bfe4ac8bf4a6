"""The outage promise kept by a call: a customer reports the outage on web chat and gives the number to reach them
on, a number with no WhatsApp conversation, on a deployment with no SMS number. When the outage is over (reported
three times at once, and once more later) their phone rings once, from our number, and the call opens with the
promised words.

The ACS emulator runs here on its own loop with WhatsApp and Call Automation but no SMS module, and the host is
pointed at it (ACS_ENDPOINT) with no ACS_SMS_FROM: `python -m local` would give it the emulator's SMS number. The
customer's phone is the emulator's scripted persona, who lets it ring out: what they notice is the ringing call, and
what the call opens with is the first line of its session on their record (what the media gateway says to a person
who picks up; the spoken call is tested in tests/callbacks/).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from local.acs.calls import DEFAULT_CALLEE, CallsApi
from local.acs.messages import CHANNEL_ID, MessagesApi
from local.acs.server import AcsEmulator, EmulatorService
from shared.models import Channel
from tests.notifications.conftest import ACCESS_KEY, RESTORED, Stack, eventually, new_number, start_stack
from tests.peers import free_port
from tests.peers.local_host import LocalHost

OUTAGE = "OUT-4471"  # Oak St, Birch Rd, Cedar Ln
OUR_NUMBER = DEFAULT_CALLEE  # the emulated resource's number: the caller id a placed call may show


@pytest.fixture(scope="module")
def no_sms(local_host_factory: Callable[..., LocalHost], tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[Stack, str]]:
    """A host with WhatsApp and calls but no SMS channel, and the URL of its ACS emulator."""
    host_port = free_port()
    emulator = EmulatorService(AcsEmulator(access_key=ACCESS_KEY, functions_url=f"http://127.0.0.1:{host_port}",
                                           modules=[MessagesApi(CHANNEL_ID), CallsApi()]), free_port())
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(emulator.start(), loop).result(10)
    try:
        yield from (
            (stack, emulator.url) for stack in start_stack(
                local_host_factory, tmp_path_factory.mktemp("no-sms-data"), PORT=str(host_port),
                ACS_ENDPOINT=emulator.url, WHATSAPP_CHANNEL_ID=CHANNEL_ID, ACS_SMS_FROM="",
                ACS_CALL_FROM=OUR_NUMBER))
    finally:
        asyncio.run_coroutine_threadsafe(emulator.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


def say(stack: Stack, chat: dict[str, str], text: str) -> str:
    answer = stack.client.post(f"{stack.host.url}/api/webchat/sessions/{chat['session_id']}/messages",
                               json={"text": text}, headers={"Authorization": f"Bearer {chat['token']}"})
    assert answer.status_code == 200, answer.text
    return " ".join(reply["text"] for reply in answer.json()["replies"])


def calls_to(client: httpx.Client, acs: str, phone: str) -> list[dict[str, Any]]:
    calls = client.get(f"{acs}/_emulator/calls").json()["calls"]
    return [c for c in calls if c["to"] == phone and c.get("direction") == "outbound"]


def test_without_whatsapp_or_sms_the_restoration_comes_as_one_call(no_sms: tuple[Stack, str]) -> None:
    stack, acs = no_sms
    phone = new_number()
    persona = stack.client.post(f"{acs}/_emulator/personas",
                                json={"number": phone, "answers": "no_answer", "ring_seconds": 1})
    assert persona.status_code == 201, persona.text
    chat = stack.client.post(f"{stack.host.url}/api/webchat/sessions").json()
    said = say(stack, chat, "my power is out at 12 Oak St, Springfield")
    assert "we'll text you when it's restored" in said, said
    say(stack, chat, f"you can reach me on {phone}")
    record = stack.webchat_customer(chat["session_id"])
    assert record.collected.get("contact_number") == phone, record.collected
    assert [p["kind"] for p in record.promises] == ["outage_restored"]
    assert calls_to(stack.client, acs, phone) == []  # nothing before its moment

    with concurrent.futures.ThreadPoolExecutor(3) as pool:  # the outage system says it three times at once
        answers = list(pool.map(lambda _: stack.restore(OUTAGE), range(3)))
    assert [a.status_code for a in answers] == [200] * 3, [a.text for a in answers]

    eventually(lambda: calls_to(stack.client, acs, phone))
    eventually(lambda: stack.webchat_customer(chat["session_id"]).promises[-1].get("sent_at"))
    assert stack.restore(OUTAGE).json()["already_sent"] == 1  # and once more, later: nothing goes again
    time.sleep(2)  # a second call would have been placed by now

    placed = calls_to(stack.client, acs, phone)
    assert len(placed) == 1 and placed[0]["from"] == OUR_NUMBER, placed
    record = stack.webchat_customer(chat["session_id"])
    kept = record.promises[-1]
    assert kept["kept_by"] == "call" and kept["message_id"].startswith("out-"), kept
    call = next(s for s in record.sessions.values() if s.channel is Channel.VOICE)
    opening = stack.session(record.customer_id, call.session_id).turns[0].text
    assert opening == (
        "Hello, this is Springfield Power & Water, calling as promised: power is back on at 12 Oak St, Springfield. "
        "Thanks for your patience.")
    assert RESTORED in opening
