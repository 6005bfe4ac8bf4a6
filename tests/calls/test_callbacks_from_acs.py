"""Calls survive their callbacks arriving as ACS delivers them (issue 19): concurrently, ParticipantsUpdated beside
CallConnected in either order while the media stream starts, and each one posted twice.

Everything is real: `python -m local` (the Functions host, the ACS emulator posting the callbacks itself, and the
media gateway with its offline engines, which speaks the greeting). The emulator is told to post every callback
twice (`POST /_emulator/calls/redelivery`, seeded). Three calls ring at once, so their callbacks interleave too. The
record of each must end whole (its connection id, its media, ended, the session completed), and each caller must
hear the greeting once: what the emulator played to them is transcribed with faster-whisper.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from shared.models import Identity, IdentityKind, SessionStatus
from shared.stores.embedded_customers import SqliteCustomerStore
from shared.tokens import TokenSigner
from tests.voice_rig import warm_voice_host

SECRET = b"callbacks-from-acs-secret-" + b"x" * 40
GREETING = re.compile(r"thanks for (contacting|calling)", re.IGNORECASE)
CALLS = 3
WARM_SECONDS = 120


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 30.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while not (result := await check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)
    return result


@pytest.fixture(scope="module")
async def line(local_host_factory, tmp_path_factory):
    """(host, data dir, faster-whisper): the whole local system with its real media gateway, warm."""
    data_dir = tmp_path_factory.mktemp("callbacks-from-acs")
    host, engines = await warm_voice_host(local_host_factory, need_voice=False, warm_seconds=WARM_SECONDS,
                                          SWITCHBOARD_TOKEN_SECRET=SECRET.decode(), SWITCHBOARD_DATA_DIR=str(data_dir))
    return host, data_dir, engines


def _control_token(call: dict[str, Any]) -> str:
    """The call-control token the media gateway mints for a call, from the media token the app answered with."""
    media = parse_qs(urlsplit(call["answer"]["mediaStreamingOptions"]["transportUrl"]).query)["token"][0]
    claims = TokenSigner(SECRET).verify(media, "media")
    return TokenSigner(SECRET).issue("call-control", 600, **{k: claims[k] for k in ("call", "sid", "cid")})


def _delivered(call: dict[str, Any], event_type: str) -> list[dict[str, Any]]:
    return [c for c in call["callbacks"] if c["type"] == event_type]


async def test_callbacks_posted_together_in_any_order_and_twice_leave_each_call_whole_greeted_once(line) -> None:
    host, data_dir, engines = line
    phones = [f"+1888{uuid.uuid4().int % 10**7:07d}" for _ in range(CALLS)]
    async with httpx.AsyncClient(base_url=host.acs_url, timeout=30) as acs, \
            httpx.AsyncClient(base_url=host.url, timeout=30) as app:
        forced = await acs.post("/_emulator/calls/redelivery", json={"rate": 1.0, "seed": 19})
        assert forced.status_code == 200, forced.text
        placed = await asyncio.gather(*(acs.post("/_emulator/calls", json={"from": phone}) for phone in phones))
        assert all(p.status_code == 201 for p in placed), [p.text for p in placed]
        ids = [p.json()["id"] for p in placed]

        async def details(call_id: str) -> dict[str, Any]:
            return (await acs.get(f"/_emulator/calls/{call_id}")).json()

        async def greeted(call_id: str) -> dict[str, Any] | None:
            """Connected, every callback so far posted twice, and the greeting played to its end."""
            call = await details(call_id)
            posted = [_delivered(call, t) for t in ("CallConnected", "ParticipantsUpdated", "MediaStreamingStarted")]
            audio = call["audio"]
            done = all(len(p) == 1 and p[0]["deliveries"] == 2 for p in posted) and audio["played_ms"] > 1000 \
                and audio["queued_ms"] == 0 and audio["received_ms"] == audio["played_ms"]
            last[call_id] = {"callbacks": call["callbacks"], "audio": audio, "state": call["state"]}
            return call if done else None

        last: dict[str, Any] = {}
        answered = [await eventually(lambda: greeted(call_id), timeout=60,
                                     what=f"call {call_id} greeted: {last.get(call_id)}") for call_id in ids]
        await asyncio.sleep(1.5)  # nothing more is said to a caller who says nothing yet
        for call in answered:
            view = await app.get(f"/api/calls/{call['id']}", headers={"Authorization": f"Bearer {_control_token(call)}"})
            assert view.status_code == 200, view.text
            record = view.json()
            assert (record["state"], record["media"], record["connection_id"]) == (
                "connected", "streaming", call["call_connection_id"]), record

        await asyncio.gather(*(acs.post(f"/_emulator/calls/{call_id}/hangup") for call_id in ids))

        async def over(call: dict[str, Any]) -> dict[str, Any] | None:
            emulated = await details(call["id"])
            disconnected = _delivered(emulated, "CallDisconnected")
            if not disconnected or disconnected[0]["deliveries"] < 2:
                return None
            view = await app.get(f"/api/calls/{call['id']}", headers={"Authorization": f"Bearer {_control_token(call)}"})
            return view.json() if view.status_code == 200 and view.json()["state"] == "ended" else None

        ended = [await eventually(lambda: over(call), what=f"call {call['id']} ended") for call in answered]
        played = [(await acs.get(f"/_emulator/calls/{call_id}/audio/played")).content for call_id in ids]

    for call, record in zip(answered, ended):
        assert (record["state"], record["media"], record["connection_id"]) == (
            "ended", "stopped", call["call_connection_id"]), record
        assert all(c["status"] == 204 and c.get("redelivery_status") == 204 for c in call["callbacks"]), call
    store = SqliteCustomerStore(data_dir / "customers.sqlite3")
    try:
        for phone, call in zip(phones, answered):
            customer = await store.find_by_identity(Identity(IdentityKind.PHONE, phone))
            assert customer is not None
            session = await store.get_session(customer.customer_id, f"voice_{call['id']}")
            assert session.status is SessionStatus.COMPLETED
            assert [t.role for t in session.turns] == ["agent"]  # the greeting, and nothing else was said
    finally:
        await store.close()
    for pcm in played:
        heard = await asyncio.to_thread(engines.transcribe, pcm, 16000)
        assert len(GREETING.findall(heard)) == 1, heard
