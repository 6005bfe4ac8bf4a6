import pytest

from shared.errors import Unauthorized
from shared.tokens import TokenSigner, load_secret

SECRET = b"s" * 32


def test_a_token_round_trips_its_claims() -> None:
    signer = TokenSigner(SECRET)
    claims = signer.verify(signer.issue("webchat", 60, sid="web_1", cid="cus_1"), "webchat")
    assert (claims["sid"], claims["cid"], claims["aud"]) == ("web_1", "cus_1", "webchat")


def test_a_forged_or_tampered_token_is_refused() -> None:
    token = TokenSigner(SECRET).issue("webchat", 60, sid="web_1")
    with pytest.raises(Unauthorized, match="signature"):
        TokenSigner(b"x" * 32).verify(token, "webchat")
    header, payload, signature = token.split(".")
    with pytest.raises(Unauthorized):
        TokenSigner(SECRET).verify(f"{header}.{payload[:-2]}xx.{signature}", "webchat")
    with pytest.raises(Unauthorized, match="malformed"):
        TokenSigner(SECRET).verify("not-a-token", "webchat")
    for garbage in ("é" + token, token + "é", "é.ü"):  # found by schemathesis: these raised, a 500
        with pytest.raises(Unauthorized, match="malformed"):
            TokenSigner(SECRET).verify(garbage, "webchat")


def test_an_expired_token_is_refused() -> None:
    now = [1_000_000.0]
    signer = TokenSigner(SECRET, clock=lambda: now[0])
    token = signer.issue("webchat", 60)
    now[0] += 61
    with pytest.raises(Unauthorized, match="expired"):
        signer.verify(token, "webchat")


def test_a_token_for_another_purpose_is_refused() -> None:
    signer = TokenSigner(SECRET)
    with pytest.raises(Unauthorized, match="not valid here"):
        signer.verify(signer.issue("handoff", 60), "webchat")


def test_the_local_secret_is_made_once_and_kept(tmp_path) -> None:
    first = load_secret("", tmp_path)
    assert len(first) >= 32 and load_secret("", tmp_path) == first
    assert load_secret("configured-secret-configured-secret!", tmp_path) == b"configured-secret-configured-secret!"
