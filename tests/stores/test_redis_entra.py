"""Redis sign-in with Microsoft Entra ID, against a real redis-server whose ACL plays Azure Managed Redis' part.

Azure Managed Redis takes `AUTH <object id> <Entra access token>` for an identity assigned its access policy. Here a
Redis ACL user named after the object id, whose password is the current token, stands in for that check. Entra ID
itself cannot run here: the credential is a fake at that network boundary (it hands out unsigned tokens carrying
an `oid`, as a managed identity's would); everything on our side of it is the real adapter and the real client.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator

import pytest
import redis

from shared.errors import Unavailable
from shared.stores.azure_redis import RedisSessionState, signs_in_with_entra
from tests.peers.redis_server import RedisServer

OBJECT_ID = "5f1c9a7e-0000-4000-8000-00000000f00d"


def _token(oid: str | None, serial: int) -> str:
    """An access token's shape (header.payload.signature), unsigned: only Redis' stand-in reads it."""
    claims = {"aud": "https://redis.azure.com", "serial": serial, **({"oid": oid} if oid else {})}

    def part(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none'})}.{part(claims)}.fake-tests-signature"


class FakeEntraCredential:
    """Hands out the current token, as azure-identity's async credentials do (`get_token(scope)`)."""

    def __init__(self, oid: str | None = OBJECT_ID) -> None:
        self.oid, self.serial, self.scopes = oid, 1, []

    @property
    def token(self) -> str:
        return _token(self.oid, self.serial)

    async def get_token(self, *scopes: str, **_: object):
        from azure.core.credentials import AccessToken

        self.scopes.append(scopes)
        return AccessToken(self.token, int(time.time()) + 3600)

    async def close(self) -> None:
        pass


@pytest.fixture
def server(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """An admin connection (the default user) to a Redis of this test's own."""
    admin = redis.Redis(host="127.0.0.1", port=redis_server.port)
    yield admin
    admin.close()


def _allow(admin: redis.Redis, token: str) -> None:
    """What the access policy assignment does in Azure: this object id, with this (current) token, may do anything."""
    admin.execute_command("ACL", "SETUSER", OBJECT_ID, "on", "resetpass", f">{token}", "~*", "&*", "+@all")


async def test_the_adapter_signs_in_as_the_identity_with_its_token(server: redis.Redis, redis_server) -> None:
    credential = FakeEntraCredential()
    _allow(server, credential.token)
    state = RedisSessionState(f"redis://127.0.0.1:{redis_server.port}/0", credential)  # type: ignore[arg-type]
    try:
        await state.put("k", {"v": 1}, 60)
        assert await state.get("k") == {"v": 1}
        users = {client["user"] for client in server.client_list()}
        assert OBJECT_ID in users  # the adapter's connection is signed in as the identity, not as `default`
        assert credential.scopes and credential.scopes[0] == ("https://redis.azure.com/.default",)
    finally:
        await state.close()


async def test_a_connection_closed_when_its_token_expired_comes_back_with_a_fresh_token(
    server: redis.Redis, redis_server
) -> None:
    credential = FakeEntraCredential()
    _allow(server, credential.token)
    state = RedisSessionState(f"redis://127.0.0.1:{redis_server.port}/0", credential)  # type: ignore[arg-type]
    try:
        await state.put("k", {"v": 1}, 60)
        # The token expires: Entra hands out the next one, Redis accepts only that, and drops the old connection.
        credential.serial += 1
        _allow(server, credential.token)
        server.execute_command("CLIENT", "KILL", "USER", OBJECT_ID)
        assert await state.get("k") == {"v": 1}  # reconnected and signed in again, without an error to the caller
        assert len(credential.scopes) >= 2
    finally:
        await state.close()


async def test_a_token_without_an_object_id_is_a_clear_unavailable(server: redis.Redis, redis_server) -> None:
    credential = FakeEntraCredential(oid=None)
    state = RedisSessionState(f"redis://127.0.0.1:{redis_server.port}/0", credential)  # type: ignore[arg-type]
    try:
        with pytest.raises(Unavailable, match="object id"):
            await state.get("k")
    finally:
        await state.close()


@pytest.mark.parametrize(("url", "entra"), [
    ("rediss://switchboard.eastus.redis.azure.net:10000/0", True),  # what infra/ sets: TLS, no key
    ("rediss://:a-password@host:10000/0", False),
    ("redis://127.0.0.1:6379/0", False),
])
def test_only_a_tls_url_without_a_password_signs_in_with_entra(url: str, entra: bool) -> None:
    assert signs_in_with_entra(url) is entra
