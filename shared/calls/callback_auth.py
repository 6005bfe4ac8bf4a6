"""Who may post Call Automation callbacks.

Every callback URL we hand to ACS carries a signed per-call token (audience "acs-callback"): it says which call,
session and customer the events belong to, and a forged or foreign one is refused. In Azure, ACS also signs every
callback with a short-lived JWT (docs/protocols.md, "Call Automation callbacks"); when ACS_RESOURCE_IMMUTABLE_ID is set that JWT is required and
checked against the keys ACS publishes: its OpenID metadata names the issuer and the key set (`jwks_uri`), read once
per verifier, and `jwt.PyJWKClient` keeps the key set, refetching it when it is JWKS_TTL_SECONDS old, and once when a
token names a key it has not seen (ACS rotated its keys), at most once per JWKS_MIN_REFRESH_SECONDS, so tokens with
made-up key ids cannot make us hammer ACS.
"""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.request
from typing import Any

from shared.errors import Unauthorized, Unavailable

log = logging.getLogger(__name__)

#: How long a fetched key set is trusted before it is fetched again, and the least time between two fetches that a
#: token naming an unknown key may cause.
JWKS_TTL_SECONDS = 6 * 3600
JWKS_MIN_REFRESH_SECONDS = 60
FETCH_TIMEOUT_SECONDS = 5
ALGORITHMS = ["RS256", "RS384", "RS512"]
#: Clock skew tolerated between ACS and us.
LEEWAY_SECONDS = 30


class AcsJwtVerifier:
    """Validates the `Authorization: Bearer <JWT>` ACS puts on each callback: signature, audience, issuer, expiry."""

    def __init__(self, audience: str, openid_configuration_url: str, *,
                 min_refresh_seconds: float = JWKS_MIN_REFRESH_SECONDS) -> None:
        if not audience:
            raise ValueError("the audience (the ACS resource's immutable id) is required")
        self.audience = audience
        self.openid_configuration_url = openid_configuration_url
        self._min_refresh_seconds = min_refresh_seconds
        self._issuer: str | None = None
        self._keys: Any = None  # jwt.PyJWKClient, once the metadata has been read
        self._lock = asyncio.Lock()

    async def verify(self, authorization: str) -> dict[str, Any]:
        import jwt  # PyJWT: only deployments that check ACS's JWT pay for the import

        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("callbacks must carry ACS's Authorization: Bearer <JWT>")
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError:
            raise Unauthorized("the callback's JWT is malformed") from None
        if not kid:
            raise Unauthorized("the callback's JWT names no signing key (kid)")
        keys = await self._key_set()
        try:
            key = await asyncio.to_thread(keys.get_signing_key, kid)
        except (jwt.PyJWKClientConnectionError, jwt.PyJWKSetError) as exc:
            log.warning("could not fetch ACS signing keys from %s: %s", keys.uri, exc)
            raise Unavailable("cannot fetch ACS's signing keys to check the callback") from None
        except jwt.PyJWKClientError:  # not in the set, even after the refetch it allows
            raise Unauthorized("the callback's JWT is signed with a key ACS does not publish") from None
        try:
            return jwt.decode(token, key.key, algorithms=ALGORITHMS, audience=self.audience, issuer=self._issuer,
                              options={"require": ["exp", "aud", "iss"]}, leeway=LEEWAY_SECONDS)
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"the callback's JWT is not valid: {exc}") from None

    async def _key_set(self) -> Any:
        """The PyJWKClient for the key set ACS's metadata names, reading the metadata on first use."""
        async with self._lock:
            if self._keys is None:
                import jwt

                try:
                    metadata = await asyncio.to_thread(_get_json, self.openid_configuration_url)
                    jwks_uri = _checked_url(str(metadata["jwks_uri"]))
                except (OSError, ValueError, KeyError, TypeError) as exc:
                    log.warning("could not read ACS's OpenID metadata at %s: %s", self.openid_configuration_url, exc)
                    raise Unavailable("cannot fetch ACS's signing keys to check the callback") from None
                self._issuer = metadata.get("issuer") or None
                self._keys = jwt.PyJWKClient(jwks_uri, lifespan=JWKS_TTL_SECONDS, timeout=FETCH_TIMEOUT_SECONDS,
                                             cooldown_duration=self._min_refresh_seconds)
            return self._keys


def _checked_url(url: str) -> str:
    """Keys come over https (or from the local emulator): a metadata document cannot point us anywhere else."""
    if not url.startswith(("https://", "http://127.0.0.1", "http://localhost")):
        raise ValueError(f"refusing to fetch signing keys over {url!r}")
    return url


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(_checked_url(url), timeout=FETCH_TIMEOUT_SECONDS) as response:  # noqa: S310 - checked
        return json.loads(response.read())
