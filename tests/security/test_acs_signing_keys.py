"""ACS's callback signing keys (shared/calls/callback_auth.py on jwt.PyJWKClient): cached, rotated, rate-limited.

The peer is a real HTTP server on a free port serving the emulator's OpenID metadata (local/acs/oidc.py) and a key
set the test changes as ACS would when it rotates: the emulator's `CallbackSigner`s sign the callbacks, as they do
for the local host.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections import Counter
from typing import Any

import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from local.acs.oidc import ISSUER, KEYS_PATH, METADATA_PATH, CallbackSigner
from shared.calls.callback_auth import JWKS_MIN_REFRESH_SECONDS, AcsJwtVerifier
from shared.errors import Unauthorized, Unavailable
from tests.peers import free_port

AUDIENCE = "resource-immutable-id"
COOLDOWN = 0.5  # the refetch limit, short here so the test can wait it out


class AcsKeys:
    """What ACS publishes: metadata naming the key set, and the public keys of the signers in `published`."""

    def __init__(self) -> None:
        self.published: list[CallbackSigner] = [CallbackSigner(AUDIENCE)]
        self.fetches: Counter[str] = Counter()
        self.failing = False
        self.metadata_url = ""

    async def keys(self, request: web.Request) -> web.Response:
        self.fetches[request.path] += 1
        if self.failing:
            return web.Response(status=503)
        return web.json_response({"keys": [_public_jwk(s) for s in self.published]})

    async def metadata(self, request: web.Request) -> web.Response:
        self.fetches[request.path] += 1
        return await self.published[0]._metadata(request)


def _public_jwk(signer: CallbackSigner) -> dict[str, Any]:
    public = jwt.algorithms.RSAAlgorithm.to_jwk(signer._private_key().public_key(), as_dict=True)
    return {**public, "kid": signer.kid, "use": "sig", "alg": "RS256"}


def _b64(data: str | bytes) -> str:
    return base64.urlsafe_b64encode(data.encode() if isinstance(data, str) else data).rstrip(b"=").decode()


@pytest.fixture
async def acs():
    keys = AcsKeys()
    app = web.Application()
    app.router.add_get(METADATA_PATH, keys.metadata)
    app.router.add_get(KEYS_PATH, keys.keys)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    keys.metadata_url = f"http://127.0.0.1:{port}{METADATA_PATH}"
    yield keys
    await runner.cleanup()


async def test_a_key_acs_rotates_to_is_accepted_after_one_refetch(acs: AcsKeys) -> None:
    verifier = AcsJwtVerifier(AUDIENCE, acs.metadata_url, min_refresh_seconds=COOLDOWN)
    old = acs.published[0]
    for _ in range(3):
        assert (await verifier.verify(old.authorization()))["iss"] == ISSUER
    assert acs.fetches == {METADATA_PATH: 1, KEYS_PATH: 1}, "metadata and keys fetched once, then cached"

    new = CallbackSigner(AUDIENCE)
    acs.published.append(new)  # ACS rotates: the new key is published, then callbacks are signed with it
    with pytest.raises(Unauthorized, match="does not publish"):  # within the refetch limit of the last fetch
        await verifier.verify(new.authorization())
    assert acs.fetches[KEYS_PATH] == 1
    await asyncio.sleep(COOLDOWN + 0.1)
    assert (await verifier.verify(new.authorization()))["aud"] == AUDIENCE
    assert (await verifier.verify(old.authorization()))["aud"] == AUDIENCE
    assert acs.fetches == {METADATA_PATH: 1, KEYS_PATH: 2}, "one refetch for the new key, none for the old"


async def test_made_up_key_ids_cannot_make_us_hammer_acs(acs: AcsKeys) -> None:
    assert JWKS_MIN_REFRESH_SECONDS >= 30
    verifier = AcsJwtVerifier(AUDIENCE, acs.metadata_url)  # the deployed limit
    await verifier.verify(acs.published[0].authorization())
    strangers = [CallbackSigner(AUDIENCE) for _ in range(20)]
    outcomes = await asyncio.gather(*(verifier.verify(s.authorization()) for s in strangers), return_exceptions=True)
    assert all(isinstance(o, Unauthorized) and "does not publish" in str(o) for o in outcomes), outcomes
    assert acs.fetches[KEYS_PATH] == 1


async def test_a_forged_token_naming_a_published_key_is_refused(acs: AcsKeys) -> None:
    verifier = AcsJwtVerifier(AUDIENCE, acs.metadata_url)
    published = acs.published[0]
    now = int(time.time())
    claims = {"aud": AUDIENCE, "iss": ISSUER, "iat": now, "exp": now + 300}
    forger = CallbackSigner(AUDIENCE)
    forged = jwt.encode(claims, forger._private_key(), algorithm="RS256", headers={"kid": published.kid})
    with pytest.raises(Unauthorized, match="not valid"):
        await verifier.verify(f"Bearer {forged}")
    # The published public key used as an HMAC secret: the classic algorithm confusion (signed by hand: PyJWT
    # itself refuses to make one), refused since only RS* are accepted.
    public_pem = published._private_key().public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    signed = f"{_b64(json.dumps({'alg': 'HS256', 'typ': 'JWT', 'kid': published.kid}))}.{_b64(json.dumps(claims))}"
    confused = f"{signed}.{_b64(hmac.new(public_pem, signed.encode(), hashlib.sha256).digest())}"
    with pytest.raises(Unauthorized, match="not valid"):
        await verifier.verify(f"Bearer {confused}")
    assert (await verifier.verify(published.authorization()))["aud"] == AUDIENCE


async def test_keys_already_fetched_keep_working_while_acs_cannot_be_reached(acs: AcsKeys) -> None:
    verifier = AcsJwtVerifier(AUDIENCE, acs.metadata_url, min_refresh_seconds=COOLDOWN)
    await verifier.verify(acs.published[0].authorization())
    acs.failing = True
    await asyncio.sleep(COOLDOWN + 0.1)
    with pytest.raises(Unavailable):  # a key we cannot look up: ACS retries the callback later
        await verifier.verify(CallbackSigner(AUDIENCE).authorization())
    assert (await verifier.verify(acs.published[0].authorization()))["aud"] == AUDIENCE
