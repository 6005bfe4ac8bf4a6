"""Who may post Call Automation callbacks.

Every callback URL we hand to ACS carries a signed per-call token (audience "acs-callback"): it says which call,
session and customer the events belong to, and a forged or foreign one is refused. In Azure, ACS also signs every
callback with a short-lived JWT (PROTOCOLS.md B.3); when ACS_RESOURCE_IMMUTABLE_ID is set that JWT is required and
checked against the keys ACS publishes through OpenID metadata (fetched once and cached, refreshed when a token
names a key we have not seen, at most once a minute).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.request
from typing import Any

from shared.errors import Unauthorized, Unavailable

log = logging.getLogger(__name__)

#: How long fetched signing keys are trusted before being fetched again, and the least time between two fetches.
JWKS_TTL_SECONDS = 6 * 3600
JWKS_MIN_REFRESH_SECONDS = 60
FETCH_TIMEOUT_SECONDS = 5
ALGORITHMS = ["RS256", "RS384", "RS512"]


class AcsJwtVerifier:
    """Validates the `Authorization: Bearer <JWT>` ACS puts on each callback: signature, audience, issuer, expiry."""

    def __init__(self, audience: str, openid_configuration_url: str, clock=time.time) -> None:
        if not audience:
            raise ValueError("the audience (the ACS resource's immutable id) is required")
        self.audience = audience
        self.openid_configuration_url = openid_configuration_url
        self._clock = clock
        self._issuer: str | None = None
        self._keys: dict[str, Any] = {}  # kid -> PyJWK
        self._fetched_at = 0.0
        self._lock = asyncio.Lock()

    async def verify(self, authorization: str) -> dict[str, Any]:
        import jwt  # PyJWT: only deployments that check ACS's JWT pay for the import

        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("callbacks must carry ACS's Authorization: Bearer <JWT>")
        try:
            kid = jwt.get_unverified_header(token.strip()).get("kid")
        except jwt.PyJWTError:
            raise Unauthorized("the callback's JWT is malformed") from None
        key = await self._key(kid)
        try:
            return jwt.decode(
                token.strip(),
                key.key,
                algorithms=ALGORITHMS,
                audience=self.audience,
                issuer=self._issuer,
                options={"require": ["exp", "aud", "iss"]},
                leeway=30,
            )
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"the callback's JWT is not valid: {exc}") from None

    async def _key(self, kid: str | None) -> Any:
        if not kid:
            raise Unauthorized("the callback's JWT names no signing key (kid)")
        stale = self._clock() - self._fetched_at > JWKS_TTL_SECONDS
        if kid not in self._keys or stale:
            async with self._lock:
                recently = self._clock() - self._fetched_at < JWKS_MIN_REFRESH_SECONDS
                if (kid not in self._keys and not recently) or stale:
                    await self._refresh()
        if kid not in self._keys:
            raise Unauthorized("the callback's JWT is signed with a key ACS does not publish")
        return self._keys[kid]

    async def _refresh(self) -> None:
        import jwt

        try:
            metadata = await asyncio.to_thread(_get_json, self.openid_configuration_url)
            jwks = await asyncio.to_thread(_get_json, str(metadata["jwks_uri"]))
            keys = {k.key_id: k for k in jwt.PyJWKSet.from_dict(jwks).keys if k.key_id}
        except (OSError, ValueError, KeyError, TypeError, jwt.PyJWTError) as exc:
            log.warning("could not fetch ACS signing keys from %s: %s", self.openid_configuration_url, exc)
            if self._keys:  # keep serving with the keys we have
                return
            raise Unavailable("cannot fetch ACS's signing keys to check the callback") from None
        self._issuer = metadata.get("issuer") or None
        self._keys = keys
        self._fetched_at = self._clock()
        log.info("fetched %d ACS signing key(s) from %s", len(keys), self.openid_configuration_url)


def _get_json(url: str) -> Any:
    if not url.startswith(("https://", "http://127.0.0.1", "http://localhost")):
        raise ValueError(f"refusing to fetch signing keys over {url!r}")
    with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT_SECONDS) as response:  # noqa: S310 - checked above
        return json.loads(response.read())
