"""A web chat message that asks for no callback and cancels none costs the callbacks nothing: the turn's outcome says
what changed, so the web chat function reads no callback state for it (it used to read a per-customer flag on every
message). Through a real `python -m local` whose session state is a real Redis, watched with MONITOR: every command
the host sends is seen, so a read of anything about callbacks would show.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tests.peers import free_port


@pytest.fixture
def host(local_host_factory: Callable[..., object], redis_url: str, tmp_path: Path) -> Iterator[object]:
    started = local_host_factory(PORT=str(free_port()), ACS_EMULATOR_PORT=str(free_port()),
                                 GATEWAY_PORT=str(free_port()), SWITCHBOARD_DATA_DIR=str(tmp_path / "data"),
                                 SESSION_STATE="redis", REDIS_URL=redis_url)
    yield started


class Monitor:
    """Every command Redis runs while it is on (MONITOR), from a thread of its own."""

    def __init__(self, url: str) -> None:
        self._client = redis.Redis.from_url(url)
        self._monitor = self._client.monitor().__enter__()
        self.commands: list[str] = []
        self._thread = threading.Thread(target=self._listen, daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        try:
            while True:
                self.commands.append(self._monitor.next_command()["command"])
        except Exception:  # the connection closed: stop()
            return

    def stop(self) -> list[str]:
        self._client.ping()  # a last command of our own, so everything the host sent before it has been read
        self._monitor.connection.disconnect()
        self._thread.join(5)
        self._client.close()
        return self.commands


def test_a_message_that_changes_no_callback_reads_no_callback_state(host, redis_url: str) -> None:
    with httpx.Client(base_url=host.url, timeout=60) as app:
        opened = app.post("/api/webchat/sessions")
        assert opened.status_code == 201, opened.text
        chat = opened.json()
        headers = {"Authorization": f"Bearer {chat['token']}"}

        watching = Monitor(redis_url)
        answer = app.post(f"/api/webchat/sessions/{chat['session_id']}/messages",
                          json={"text": "what are your opening hours?"}, headers=headers)
        commands = watching.stop()

    assert answer.status_code == 200 and answer.json()["replies"], answer.text
    assert any(chat["session_id"] in c for c in commands), commands  # the turn's own state was seen going by
    assert [c for c in commands if "callback" in c.lower()] == []
