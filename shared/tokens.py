"""Signed, expiring tokens: web chat session tokens now, handoff links later.

A token is `base64url(claims JSON).base64url(HMAC-SHA256)`. Claims always hold an audience (`aud`, what the token
is for), an issue time and an expiry; verification checks the signature in constant time first, then audience and
expiry. No external JWT library: the format is ours end to end and short enough to read whole.
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


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenSigner:
    def __init__(self, secret: bytes, clock=time.time) -> None:
        if len(secret) < 32:
            raise ValueError("token secret must be at least 32 bytes")
        self._secret = secret
        self._clock = clock

    def issue(self, audience: str, ttl_seconds: float, **claims: Any) -> str:
        now = int(self._clock())
        body = {**claims, "aud": audience, "iat": now, "exp": now + int(ttl_seconds)}
        payload = _b64(json.dumps(body, separators=(",", ":"), sort_keys=True).encode())
        return f"{payload}.{self._sign(payload)}"

    def verify(self, token: str, audience: str) -> dict[str, Any]:
        """The token's claims, or Unauthorized saying why it is refused."""
        payload, dot, signature = token.strip().partition(".")
        if not dot or not payload or not signature or not token.isascii():  # ours are base64url: never anything else
            raise Unauthorized("malformed token")
        if not hmac.compare_digest(signature, self._sign(payload)):
            raise Unauthorized("invalid token signature")
        try:
            claims = json.loads(_unb64(payload))
        except ValueError:
            raise Unauthorized("malformed token") from None
        if not isinstance(claims, dict) or claims.get("aud") != audience:
            raise Unauthorized("token is not valid here")
        if not isinstance(claims.get("exp"), int) or claims["exp"] <= self._clock():
            raise Unauthorized("token has expired")
        return claims

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self._secret, payload.encode("ascii"), hashlib.sha256).digest())


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
