"""A promise made on a call: the media gateway has no Durable client, so once the reply with the promise has played it
asks the function app to start the notification (POST /api/notifications/start, in a task of its own that hanging up
does not cancel). The caller hears the promise, the orchestration is there soon after, and when the outage is
restored the caller's phone gets the text once.

Through a real `python -m local` with its media gateway and offline speech engines, and the phone simulator's code
as the caller (piper speaks, faster-whisper hears): slow by nature, about a minute.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from local.acs.sms import SMS_NUMBER
from local.phone import Line
from shared.notifications import notification_id
from tests import voice_rig
from tests.notifications.conftest import ACCESS_KEY, Stack, new_number
from tests.peers.host_records import customer_by_phone
from tests.peers.local_host import LocalHost

INSTANCES = "/runtime/webhooks/durabletask/instances"
RESTORED = "power is back on"


@pytest.fixture
async def line(local_host_factory: Callable[..., LocalHost], tmp_path: Path) -> AsyncIterator[voice_rig.VoiceLine]:
    data_dir = tmp_path / "data"
    host, engines = await voice_rig.warm_voice_host(local_host_factory, SWITCHBOARD_DATA_DIR=str(data_dir),
                                                    ACS_ACCESS_KEY=ACCESS_KEY, ACS_SMS_FROM=SMS_NUMBER)
    voice = voice_rig.VoiceLine(host, data_dir, engines)
    yield voice
    await voice.close()


async def test_a_promise_made_on_a_call_is_started_by_the_gateway_and_kept_once(line: voice_rig.VoiceLine) -> None:
    caller = new_number()
    dialogue = await line.converse(caller, [Line("say", "my power is out at 45 Birch Road")], timeout=180)
    heard = " ".join(text for who, text in dialogue.lines if who == "bot").lower()
    assert "text you when" in heard, dialogue.lines

    with httpx.Client(timeout=60) as client:
        stack = Stack(line.host, line.data_dir, client)
        customer = await customer_by_phone(line.data_dir, caller)
        assert customer is not None
        [promise] = customer.promises
        instance = notification_id(customer.customer_id, promise["kind"], promise["ref"])

        deadline = time.monotonic() + 30  # the gateway's task asks once the reply has played
        while client.get(f"{line.host.url}{INSTANCES}/{instance}").status_code not in (200, 202):
            assert time.monotonic() < deadline, f"the notification {instance} was not started after the call"
            await asyncio.sleep(0.2)

        with concurrent.futures.ThreadPoolExecutor(2) as pool:  # the outage system says it twice at once
            answers = list(pool.map(lambda _: stack.restore(promise["ref"]), range(2)))
        assert all(answer.status_code == 200 for answer in answers), [a.text for a in answers]
        deadline = time.monotonic() + 30
        while not any(RESTORED in text for text in stack.sms_outbox(caller)):
            assert time.monotonic() < deadline, f"no restoration text: {stack.sms_outbox(caller)}"
            await asyncio.sleep(0.2)
        await asyncio.sleep(2)  # time enough for a second text, if one were coming
        assert len([t for t in stack.sms_outbox(caller) if RESTORED in t]) == 1, stack.sms_outbox(caller)
