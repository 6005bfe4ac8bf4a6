"""The callback's timings are settings (CALLBACK_*), read by the running host: on a line that never clears, a "when
it's my turn" callback still rings Jordan once CALLBACK_MAX_TURN_WAIT_SECONDS have passed, not before, and the one
retry follows CALLBACK_RETRY_AFTER_SECONDS later. Seconds instead of hours, on the host's real clock (no
LOCAL_DURABLE_TIME_SCALE); Jordan's phone is the emulator's persona, who lets it ring out.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx

from tests.callbacks.test_callbacks import BUSY, JORDAN, _ended, _persona, _placed_to, _until, _whatsapp
from tests.peers import free_port

MAX_TURN_WAIT = 6.0


async def test_a_busy_line_still_gets_its_callback_after_the_set_wait_and_one_retry(local_host_factory,
                                                                                      tmp_path: Path) -> None:
    host = local_host_factory(PORT=str(free_port()), ACS_EMULATOR_PORT=str(free_port()), GATEWAY_PORT=str(free_port()),
                              SWITCHBOARD_DATA_DIR=str(tmp_path / "data"), CALLBACK_POLL_SECONDS="1",
                              CALLBACK_MAX_TURN_WAIT_SECONDS=str(MAX_TURN_WAIT), CALLBACK_RETRY_AFTER_SECONDS="2")
    async with httpx.AsyncClient(base_url=host.url, timeout=30) as app, \
            httpx.AsyncClient(base_url=host.acs_url, timeout=30) as acs:
        (await app.post("/api/ops/queue", json=BUSY)).raise_for_status()  # and it stays busy
        await _persona(acs, "no_answer", ring_seconds=0.5)
        asked = time.monotonic()
        said = await _whatsapp(acs, "question about my bill: call me back when it's my turn")
        assert "call you back" in said, said

        await asyncio.sleep(MAX_TURN_WAIT / 2)
        assert await _placed_to(acs, JORDAN) == [], "called before the set wait, with the line still busy"
        await _until(lambda: _placed_to(acs, JORDAN), 30, "the callback after the set wait")
        assert time.monotonic() - asked >= MAX_TURN_WAIT
        first = time.monotonic()
        await _until(lambda: _two(acs), 30, "the one retry")
        # Within 30 s, not the default 3 minutes; and not at once (1 s of slack for when the first was seen).
        assert time.monotonic() - first >= 1.0, "the retry came sooner than CALLBACK_RETRY_AFTER_SECONDS"

        status = await _ended(app, 30)
        assert status["output"] == {"outcome": "missed", "attempts": ["no_answer", "no_answer"],
                                    "told_by": "whatsapp"}, status
        assert len(await _placed_to(acs, JORDAN)) == 2


async def _two(acs: httpx.AsyncClient) -> bool:
    return len(await _placed_to(acs, JORDAN)) >= 2
