"""The emulator signs Call Automation callbacks with a JWT, as ACS does
(docs/protocols.md, "Call Automation callbacks").

An RSA key made on first use signs each callback (RS256, 5-minute lifetime, audience = the emulated resource's
immutable id), and the OpenID metadata and key set are served under `/_emulator/calling/`, so the app's JWT check
runs against the emulator exactly as it runs against ACS (point ACS_OPENID_CONFIGURATION_URL here).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

ISSUER = "https://acscallautomation.communication.azure.com"
METADATA_PATH = "/_emulator/calling/.well-known/acsopenidconfiguration"
KEYS_PATH = "/_emulator/calling/keys"
TOKEN_LIFETIME_SECONDS = 300


class CallbackSigner:
    def __init__(self, resource_id: str) -> None:
        self.resource_id = resource_id
        self.kid = uuid.uuid4().hex
        self._key: rsa.RSAPrivateKey | None = None

    def install(self, app: web.Application) -> None:
        app.router.add_get(METADATA_PATH, self._metadata)
        app.router.add_get(KEYS_PATH, self._keys)

    def authorization(self) -> str:
        now = int(time.time())
        claims = {"aud": self.resource_id, "iss": ISSUER, "iat": now, "nbf": now, "exp": now + TOKEN_LIFETIME_SECONDS}
        token = jwt.encode(claims, self._private_key(), algorithm="RS256", headers={"kid": self.kid})
        return f"Bearer {token}"

    def _private_key(self) -> rsa.RSAPrivateKey:
        if self._key is None:
            self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return self._key

    async def _metadata(self, request: web.Request) -> web.Response:
        base = f"{request.scheme}://{request.host}"
        return web.json_response(
            {"issuer": ISSUER, "jwks_uri": f"{base}{KEYS_PATH}", "id_token_signing_alg_values_supported": ["RS256"]}
        )

    async def _keys(self, request: web.Request) -> web.Response:
        public: dict[str, Any] = jwt.algorithms.RSAAlgorithm.to_jwk(self._private_key().public_key(), as_dict=True)
        return web.json_response({"keys": [{**public, "kid": self.kid, "use": "sig", "alg": "RS256"}]})
