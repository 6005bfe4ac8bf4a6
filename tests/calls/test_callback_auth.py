"""ACS callback JWTs checked against published signing keys, with the emulator's OpenID endpoint as the peer."""

from __future__ import annotations

import time

import jwt
import pytest
from aiohttp import web

from local.acs.oidc import ISSUER, METADATA_PATH, CallbackSigner
from shared.calls.callback_auth import AcsJwtVerifier
from shared.errors import Unauthorized, Unavailable
from tests.peers import free_port

AUDIENCE = "resource-immutable-id"


@pytest.fixture
async def oidc():
    """The emulator's signer served on a real port: (signer, metadata URL, request counter)."""
    signer = CallbackSigner(AUDIENCE)
    hits: list[str] = []

    @web.middleware
    async def count(request: web.Request, handler):
        hits.append(request.path)
        return await handler(request)

    app = web.Application(middlewares=[count])
    signer.install(app)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield signer, f"http://127.0.0.1:{port}{METADATA_PATH}", hits
    await runner.cleanup()


async def test_a_callback_signed_by_acs_is_accepted_and_keys_are_cached(oidc) -> None:
    signer, url, hits = oidc
    verifier = AcsJwtVerifier(AUDIENCE, url)
    for _ in range(3):
        claims = await verifier.verify(signer.authorization())
        assert claims["aud"] == AUDIENCE and claims["iss"] == ISSUER
    assert len(hits) == 2, "metadata and keys are fetched once, then cached"


def _token(signer: CallbackSigner, **overrides) -> str:
    now = int(time.time())
    claims = {"aud": AUDIENCE, "iss": ISSUER, "iat": now, "exp": now + 300, **overrides}
    return "Bearer " + jwt.encode(claims, signer._private_key(), algorithm="RS256", headers={"kid": signer.kid})


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (lambda s: "", "Authorization: Bearer"),
        (lambda s: "Basic abc", "Authorization: Bearer"),
        (lambda s: "Bearer not.a.jwt", "malformed"),
        (lambda s: _token(s, aud="another-resource"), "not valid"),
        (lambda s: _token(s, iss="https://evil.example"), "not valid"),
        (lambda s: _token(s, exp=int(time.time()) - 120), "not valid"),
        (lambda s: s.authorization()[:-6] + "AAAAAA", "not valid"),  # signature tampered
    ],
)
async def test_a_bad_jwt_is_refused(oidc, make, says: str) -> None:
    signer, url, _ = oidc
    with pytest.raises(Unauthorized, match=says):
        await AcsJwtVerifier(AUDIENCE, url).verify(make(signer))


async def test_a_key_acs_does_not_publish_is_refused(oidc) -> None:
    signer, url, _ = oidc
    stranger = CallbackSigner(AUDIENCE)  # same kid format, different key and kid
    with pytest.raises(Unauthorized, match="does not publish"):
        await AcsJwtVerifier(AUDIENCE, url).verify(stranger.authorization())


async def test_unreachable_keys_are_a_retryable_failure_not_a_pass() -> None:
    verifier = AcsJwtVerifier(AUDIENCE, f"http://127.0.0.1:{free_port()}/nothing-here")
    with pytest.raises(Unavailable):
        await verifier.verify(_token(CallbackSigner(AUDIENCE)))
