"""Signed, expiring tokens: web chat sessions, handoff links, a call's tokens, the local desk sign-in cookie.

A token is a JWT signed with HS256 (PyJWT) keyed with SWITCHBOARD_TOKEN_SECRET. Its claims always hold an audience
(`aud`: what the token is for), an issue time (`iat`) and an expiry (`exp`); a single-use link also carries a token
id (`jti`), which the route that redeems it marks used (functions/webchat.py). Verification accepts HS256 only (an
`alg: none` or RS256-with-our-secret token is refused before its claims are read), then the audience, then the
times, with LEEWAY_SECONDS for clocks that differ between the function app's instances and the media gateway.

Tokens issued before the JWT format, `base64url(claims JSON).base64url(HMAC-SHA256)` (two parts where a JWT has
three), stay valid until they expire, so a deploy neither ends live web chats nor breaks handoff links already on
customers' phones; see `_verify_pre_jwt` for when that path can go.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import secrets
import time
from pathlib import Path
from typing import Any

from shared.errors import Unauthorized

log = logging.getLogger(__name__)

ALGORITHM = "HS256"
#: Clock skew tolerated between the instance that issued a token and the one checking it.
LEEWAY_SECONDS = 30


class TokenSigner:
    """Issues and verifies our tokens. `clock` dates the tokens it issues (tests back-date them with it); expiry is
    checked against the wall clock, as PyJWT does."""

    def __init__(self, secret: bytes, clock=time.time) -> None:
        if len(secret) < 32:
            raise ValueError("token secret must be at least 32 bytes")
        self._secret = secret
        self._clock = clock

    def issue(self, audience: str, ttl_seconds: float, **claims: Any) -> str:
        import jwt  # PyJWT, with `cryptography`: imported on first use, not at the function app's cold start

        now = int(self._clock())
        return jwt.encode({**claims, "aud": audience, "iat": now, "exp": now + int(ttl_seconds)},
                          self._secret, algorithm=ALGORITHM)

    def verify(self, token: str, audience: str) -> dict[str, Any]:
        """The token's claims, or Unauthorized saying why it is refused."""
        import jwt

        token = token.strip()
        if not token.isascii():  # ours are base64url: anything else is not one of them
            raise Unauthorized("malformed token")
        if token.count(".") == 1:
            return _verify_pre_jwt(self._secret, token, audience)
        try:
            return jwt.decode(token, self._secret, algorithms=[ALGORITHM], audience=audience, leeway=LEEWAY_SECONDS,
                              options={"require": ["aud", "iat", "exp"], "strict_aud": True})
        except (jwt.InvalidSignatureError, jwt.InvalidAlgorithmError):
            raise Unauthorized("invalid token signature") from None
        except jwt.ExpiredSignatureError:
            raise Unauthorized("token has expired") from None
        except jwt.InvalidAudienceError:
            raise Unauthorized("token is not valid here") from None
        except jwt.ImmatureSignatureError:  # issued further ahead than the leeway: a clock far off, or a forgery
            raise Unauthorized("token is not valid yet") from None
        except jwt.InvalidTokenError:  # not a JWT, a claim missing or of the wrong type
            raise Unauthorized("malformed token") from None


def _verify_pre_jwt(secret: bytes, token: str, audience: str) -> dict[str, Any]:
    """A token in the format used before PyJWT, checked as it was then (constant-time HMAC, audience, expiry).

    The longest-lived of them is a web chat session token (WEBCHAT_TOKEN_TTL_SECONDS, a day by default; handoff
    links live HANDOFF_REMIND_AFTER_SECONDS + HANDOFF_EXPIRE_AFTER_SECONDS, call tokens CALL_TOKEN_TTL_SECONDS):
    once every deployment has run the JWT format for longer than that, no valid one is left and this can be deleted.
    """
    payload, _, signature = token.partition(".")
    expected = base64.urlsafe_b64encode(hmac.new(secret, payload.encode(), hashlib.sha256).digest()).rstrip(b"=")
    if not payload or not hmac.compare_digest(signature.encode(), expected):
        raise Unauthorized("invalid token signature")
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except ValueError:
        raise Unauthorized("malformed token") from None
    if not isinstance(claims, dict) or claims.get("aud") != audience:
        raise Unauthorized("token is not valid here")
    if not isinstance(claims.get("exp"), int) or claims["exp"] <= time.time():
        raise Unauthorized("token has expired")
    return claims


def load_secret(configured: str, data_dir: Path) -> bytes:
    """The configured secret; or, outside Azure, a random one kept in the data folder so restarts keep sessions."""
    if configured:
        return configured.encode()
    if os.environ.get("WEBSITE_INSTANCE_ID") or os.environ.get("CONTAINER_APP_NAME"):  # Functions, or Container Apps
        raise RuntimeError("SWITCHBOARD_TOKEN_SECRET must be set in Azure (a Key Vault reference): refusing a random one")
    path = data_dir / "token-secret"
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # made earlier, or just now by another process
        pass
    else:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(48))
        log.info("created a local token secret at %s", path)
    for _ in range(50):  # another process may be between create and write
        if secret := path.read_text().strip():
            return secret.encode()
        time.sleep(0.01)
    raise RuntimeError(f"{path} is empty: delete it and start again")
