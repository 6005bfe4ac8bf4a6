"""A promise made on web chat is started by the web chat function itself, with its Durable client, once the answer is
ready: the turn asks nothing of `POST /api/notifications/start` (that route is the media gateway's, which has no
Durable client), yet the notification's orchestration is there as soon as the answer is; the message sent twice at
once (a page retrying under the same Idempotency-Key) starts it once.

Through a real `python -m local` with its access log on: every request the host serves is a line there, so a start
asked over HTTP would show.
"""

from __future__ import annotations

import concurrent.futures
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from shared.notifications import notification_id
from tests.notifications.conftest import ACCESS_KEY, Stack, new_number
from tests.notifications.test_webchat_promise import chat, say
from tests.peers import free_port

INSTANCES = "/runtime/webhooks/durabletask/instances"
START_ROUTE = "/api/notifications/start"


@pytest.fixture
def logged(local_host_factory: Callable[..., object], tmp_path: Path) -> Iterator[Stack]:
    """A host of its own that logs every request it serves."""
    from local.acs.sms import SMS_NUMBER

    data_dir = tmp_path / "data"
    host = local_host_factory("--access-log", PORT=str(free_port()), ACS_EMULATOR_PORT=str(free_port()),
                              GATEWAY_PORT=str(free_port()), SWITCHBOARD_DATA_DIR=str(data_dir),
                              ACS_ACCESS_KEY=ACCESS_KEY, ACS_SMS_FROM=SMS_NUMBER, LOG_LEVEL="INFO")
    with httpx.Client(timeout=60) as client:
        client.get(f"{host.url}/api/ops/queue").raise_for_status()
        yield Stack(host, data_dir, client)


def served(stack: Stack, path: str) -> list[str]:
    """The access log's lines for requests to `path`."""
    log = stack.host.stdout() + stack.host.stderr()
    return [line for line in log.splitlines() if re.search(rf'"[A-Z]+ {re.escape(path)}[ ?"]', line)]


def orchestration(stack: Stack, instance_id: str) -> dict | None:
    """The orchestration's status, None if there is none (the Durable status API answers 202 while it runs)."""
    answer = stack.client.get(f"{stack.host.url}{INSTANCES}/{instance_id}")
    return answer.json() if answer.status_code in (200, 202) else None


def say_twice_at_once(stack: Stack, session: dict[str, str], text: str) -> list[str]:
    """The page sends the message, and sends it again (same Idempotency-Key) before the first is answered."""
    def send(_: int) -> str:
        answer = stack.client.post(f"{stack.host.url}/api/webchat/sessions/{session['session_id']}/messages",
                                   json={"text": text}, headers={"Authorization": f"Bearer {session['token']}",
                                                                 "Idempotency-Key": "promise-1"})
        assert answer.status_code == 200, answer.text
        return " ".join(reply["text"] for reply in answer.json()["replies"])

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        return list(pool.map(send, range(2)))


def test_a_promise_on_web_chat_is_started_without_asking_the_start_route(logged: Stack) -> None:
    session = chat(logged)
    first, again = say_twice_at_once(logged, session, "my power is out at 3 Lakeview Dr, Shelbyville")
    assert "we'll text you when it's restored" in first and again == first, (first, again)
    say(logged, session, f"you can reach me on {new_number()}")
    record = logged.webchat_customer(session["session_id"])
    [promise] = record.promises

    # Right after the answer, no waiting: the function started it before it answered.
    started = orchestration(logged, notification_id(record.customer_id, promise["kind"], promise["ref"]))
    assert started is not None and started["runtimeStatus"] in ("Pending", "Running"), started
    assert json.loads(started["input"])["ref"] == promise["ref"], started

    everything = logged.client.get(f"{logged.host.url}{INSTANCES}", params={"instanceIdPrefix": "ntf-"}).json()
    assert [i["instanceId"] for i in everything] == [started["instanceId"]]  # one, for the message sent twice

    messages = f"/api/webchat/sessions/{session['session_id']}/messages"
    assert len(served(logged, messages)) == 3  # the log does show what the host served
    assert served(logged, START_ROUTE) == []
