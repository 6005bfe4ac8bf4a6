"""Our signed tokens (shared/tokens.py) as JWTs: what they carry, what is refused, and the tokens issued before.

The unit checks use the real signer and PyJWT; the deploy checks run against the security tests' `python -m local`
(tests/security/conftest.py), whose secret we know, so a web chat token and a handoff link in the format the
previous release issued can be made exactly as it made them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
import pytest

from shared.conversation import Conversation
from shared.errors import Unauthorized
from shared.models import Channel, Identity, IdentityKind, new_id
from shared.policies.offline import OfflinePolicy
from shared.scenario import load_scenario
from shared.stores.embedded_customers import SqliteCustomerStore
from shared.stores.embedded_state import InProcessSessionState
from shared.tokens import LEEWAY_SECONDS, TokenSigner
from tests.handoff_links import sent_link
from tests.security.conftest import TOKEN_SECRET, SecureStack
from tests.waiting import eventually

SECRET = b"s" * 64  # long enough for HS512 too, which a forger may pick


def pre_jwt_token(secret: bytes, audience: str, ttl: int, *, issued_at: float | None = None, **claims: Any) -> str:
    """A token exactly as the release before the JWT format issued it: base64url(claims JSON).base64url(HMAC)."""
    now = int(time.time() if issued_at is None else issued_at)
    body = json.dumps({**claims, "aud": audience, "iat": now, "exp": now + ttl}, separators=(",", ":"), sort_keys=True)
    payload = base64.urlsafe_b64encode(body.encode()).rstrip(b"=").decode()
    signature = base64.urlsafe_b64encode(hmac.new(secret, payload.encode(), hashlib.sha256).digest()).rstrip(b"=")
    return f"{payload}.{signature.decode()}"


def test_tokens_are_hs256_jwts_with_audience_issue_time_and_expiry() -> None:
    token = TokenSigner(SECRET).issue("handoff", 600, cid="cus_1", hid="handoff-1", jti="handoff-1")
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    claims = jwt.decode(token, SECRET, algorithms=["HS256"], audience="handoff")  # any JWT library can check them
    assert (claims["cid"], claims["jti"], claims["exp"] - claims["iat"]) == ("cus_1", "handoff-1", 600)
    assert abs(claims["iat"] - time.time()) < 5


@pytest.mark.parametrize("header_alg", ["none", "HS512"])
def test_a_token_in_another_algorithm_is_refused_even_with_our_claims(header_alg: str) -> None:
    claims = {"aud": "webchat", "iat": int(time.time()), "exp": int(time.time()) + 600, "sid": "web_1"}
    forged = jwt.encode(claims, None if header_alg == "none" else SECRET, algorithm=header_alg)
    with pytest.raises(Unauthorized, match="signature"):
        TokenSigner(SECRET).verify(forged, "webchat")


@pytest.mark.parametrize("missing", ["aud", "exp", "iat"])
def test_a_token_without_its_audience_or_times_is_refused(missing: str) -> None:
    now = int(time.time())
    claims = {"aud": "webchat", "iat": now, "exp": now + 600, "sid": "web_1"}
    del claims[missing]
    with pytest.raises(Unauthorized, match="malformed"):
        TokenSigner(SECRET).verify(jwt.encode(claims, SECRET, algorithm="HS256"), "webchat")


def test_clocks_apart_by_less_than_the_leeway_are_tolerated_and_no_more() -> None:
    """The function app's instances and the media gateway issue and check each other's tokens on their own clocks."""
    verifier = TokenSigner(SECRET)

    def issued(offset: float, ttl: int = 60) -> str:
        return TokenSigner(SECRET, clock=lambda: time.time() + offset).issue("media", ttl, sid="voice_1")

    assert LEEWAY_SECONDS < 60, "a small leeway: a token lives minutes past its expiry at most"
    assert verifier.verify(issued(+15), "media")["sid"] == "voice_1"  # the issuer's clock 15 s ahead
    assert verifier.verify(issued(-60 - 15), "media")["sid"] == "voice_1"  # the checker's 15 s ahead: just expired
    with pytest.raises(Unauthorized, match="not valid yet"):
        verifier.verify(issued(+120), "media")
    with pytest.raises(Unauthorized, match="expired"):
        verifier.verify(issued(-60 - 120), "media")


def test_tokens_issued_before_the_jwt_format_are_checked_as_before_until_they_expire() -> None:
    signer = TokenSigner(SECRET)
    old = pre_jwt_token(SECRET, "webchat", 600, sid="web_1", cid="cus_1")
    assert signer.verify(old, "webchat")["sid"] == "web_1"
    with pytest.raises(Unauthorized, match="not valid here"):
        signer.verify(old, "handoff")
    with pytest.raises(Unauthorized, match="signature"):
        signer.verify(pre_jwt_token(b"x" * 32, "webchat", 600, sid="web_1"), "webchat")
    payload, signature = old.split(".")
    with pytest.raises(Unauthorized, match="signature"):
        signer.verify(f"{payload[:-2]}xx.{signature}", "webchat")
    with pytest.raises(Unauthorized, match="expired"):
        signer.verify(pre_jwt_token(SECRET, "webchat", 600, issued_at=time.time() - 601), "webchat")


def test_a_web_chat_opened_before_the_deploy_goes_on_with_its_old_token(secure: SecureStack) -> None:
    started = secure.client.post(secure.url("/api/webchat/sessions"))
    assert started.status_code == 201, started.text
    session_id = started.json()["session_id"]
    claims = secure.signer.verify(started.json()["token"], "webchat")
    old = pre_jwt_token(TOKEN_SECRET.encode(), "webchat", 3600, sid=session_id, cid=claims["cid"])
    said = secure.client.post(secure.url(f"/api/webchat/sessions/{session_id}/messages"),
                              headers={"Authorization": f"Bearer {old}"}, json={"text": "what is my balance?"})
    assert said.status_code == 200, said.text
    assert said.json()["replies"]
    expired = pre_jwt_token(TOKEN_SECRET.encode(), "webchat", 60, issued_at=time.time() - 3600, sid=session_id,
                            cid=claims["cid"])
    refused = secure.client.get(secure.url(f"/api/webchat/sessions/{session_id}"),
                                headers={"Authorization": f"Bearer {expired}"})
    assert refused.status_code == 401, refused.text


async def test_a_handoff_link_sent_before_the_deploy_opens_its_chat_once(secure: SecureStack) -> None:
    store = SqliteCustomerStore(secure.data_dir / "customers.sqlite3")
    try:
        conversation = Conversation(load_scenario("utilities"), store, InProcessSessionState(), OfflinePolicy())
        session_id = new_id("voice")
        opened = await conversation.open_for_identity(
            Channel.VOICE, session_id, Identity(IdentityKind.PHONE, f"+1333{int(time.time() * 1000) % 10**7:07d}")
        )
        customer_id = opened.customer.customer_id
    finally:
        await store.close()
    control = secure.token("call-control", sid=session_id, cid=customer_id, call=session_id)
    started = secure.client.post(secure.url("/api/handoffs"), headers={"Authorization": f"Bearer {control}"},
                                 json={"customer_id": customer_id, "session_id": session_id, "to_channel": "webchat"})
    assert started.status_code == 202, started.text
    instance_id = started.json()["id"]
    link = eventually(lambda: sent_link(secure.client.get(secure.acs("/_emulator/messages")).json(), instance_id),
                      timeout=30)
    claims = secure.signer.verify(link.split("handoff=", 1)[1], "handoff")
    # The same link as the previous release sent it to the customer's phone, before the deploy.
    old = pre_jwt_token(TOKEN_SECRET.encode(), "handoff", claims["exp"] - claims["iat"],
                        **{k: claims[k] for k in ("cid", "hid", "jti")})

    def redeem() -> Any:
        return secure.client.post(secure.url("/api/webchat/sessions"), json={"handoff_token": old})

    first = redeem()
    assert first.status_code == 201, first.text
    assert secure.signer.verify(first.json()["token"], "webchat")["cid"] == customer_id, "the customer, carried over"
    again = redeem()
    assert again.status_code == 401 and "link" in again.json()["error"], "single use holds for the old format too"
