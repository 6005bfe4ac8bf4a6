"""A caller hanging up ends the conversation, and its synthesis is written once: through `python -m local` (Functions
host, its Durable engine and the ACS emulator, which places the call and posts Call Automation's callbacks), with the
scripted media gateway peer of the call tests at the end of the media WebSocket (tests/calls/gateway_peer.py)."""

from __future__ import annotations

import asyncio

import pytest

from shared.models import Identity, IdentityKind
from shared.stores.embedded_customers import SqliteCustomerStore
from shared.tokens import TokenSigner
from tests.e2e.test_calls import SECRET, System, _event, callback_url, eventually, media_token
from tests.voice_rig import gateway_peer_system

CALLER = "+15555550133"


@pytest.fixture(scope="module")
async def system(local_host_factory, tmp_path_factory):
    async with gateway_peer_system(local_host_factory, tmp_path_factory.mktemp("hang-up-data")) as system:
        yield system


async def test_a_hang_up_delivered_twice_at_once_writes_one_synthesis(system: System) -> None:
    call = await system.connected(CALLER)
    claims = TokenSigner(SECRET).verify(media_token(call), "media")
    url = "/api" + callback_url(call).split("/api", 1)[1]

    # The caller hangs up (the emulator posts CallDisconnected) and ACS delivers a second CallDisconnected at once.
    hang_up = system.acs.post(f"/_emulator/calls/{call['id']}/hangup")
    again = system.app.post(url, json=[_event(call, "CallDisconnected")])
    hung, delivered = await asyncio.gather(hang_up, again)
    assert hung.status_code < 300 and delivered.status_code == 204, (hung.text, delivered.text)

    store = SqliteCustomerStore(system.data_dir / "customers.sqlite3")
    try:
        async def written() -> list[dict] | None:
            customer = await store.find_by_identity(Identity(IdentityKind.PHONE, CALLER))
            return customer.syntheses if customer is not None and customer.syntheses else None

        [synthesis] = await eventually(written, timeout=30, what="the synthesis of the call")
        await asyncio.sleep(1)  # a second write, had there been one, would have landed by now
        customer = await store.find_by_identity(Identity(IdentityKind.PHONE, CALLER))
        assert customer is not None and len(customer.syntheses) == 1
    finally:
        await store.close()
    assert (synthesis["session_id"], synthesis["channel"], synthesis["ended_by"]) == (claims["sid"], "voice", "hung_up")
    assert synthesis["goal_met"] is False and synthesis["next_action"] is None  # the caller said nothing
