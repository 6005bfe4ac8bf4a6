"""Who is signed in at the desk, read from the headers App Service built-in authentication injects.

When built-in authentication is on, the platform signs the person in (Microsoft Entra ID), removes any
`X-MS-CLIENT-PRINCIPAL*` header a client sent, and adds its own: `X-MS-CLIENT-PRINCIPAL` is base64 JSON
`{"auth_typ", "name_typ", "role_typ", "claims": [{"typ", "val"}, ...]}`, and `-ID`, `-NAME`, `-IDP` carry the
person's id, display name and identity provider. It also sets WEBSITE_AUTH_ENABLED=True in the app's environment.

So these headers are trusted only when WEBSITE_AUTH_ENABLED is true: with authentication off, nothing stands between
a client and the app, and anyone could write them. Locally, `python -m local` plays the platform's part (local/auth.py)
and sets the same variable. The desk sees a DeskAgent, never headers (docs/desk.md, "Signing in").
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Mapping
from typing import Any

from shared.desk import AGENT_ROLE, SUPERVISOR_ROLE, DeskAgent

PRINCIPAL = "X-MS-CLIENT-PRINCIPAL"
PRINCIPAL_ID = "X-MS-CLIENT-PRINCIPAL-ID"
PRINCIPAL_NAME = "X-MS-CLIENT-PRINCIPAL-NAME"
PRINCIPAL_IDP = "X-MS-CLIENT-PRINCIPAL-IDP"
AUTH_ENABLED = "WEBSITE_AUTH_ENABLED"

#: The roles that open the desk (Entra app roles of the desk's app registration; the local sign-in grants them too).
DESK_ROLES = frozenset({AGENT_ROLE, SUPERVISOR_ROLE})
#: Claim types Entra ID puts a person's object id, display name and roles under.
_OBJECT_ID = ("http://schemas.microsoft.com/identity/claims/objectidentifier", "oid")
_NAME = ("name",)
_ROLES = ("roles", "http://schemas.microsoft.com/ws/2008/06/identity/claims/role")
#: A header bigger than this is not one the platform wrote (its principal of a few claims is well under 16 KB).
MAX_PRINCIPAL_BYTES = 32 * 1024
MAX_NAME_CHARS = 120


def auth_enabled(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the platform (or the local host standing in for it) owns the principal headers."""
    return (os.environ if environ is None else environ).get(AUTH_ENABLED, "").strip().lower() == "true"


def desk_agent(headers: Mapping[str, str], environ: Mapping[str, str] | None = None) -> DeskAgent | None:
    """The person the platform signed in, or None: not signed in, authentication off, or headers it did not write."""
    if not auth_enabled(environ):
        return None
    raw = headers.get(PRINCIPAL)
    if not raw:
        return None
    principal = _decode(raw)
    if principal is None:
        return None
    claims = _claims(principal)
    role_type = principal.get("role_typ")
    name_type = principal.get("name_typ")

    agent_id = (headers.get(PRINCIPAL_ID) or _first(claims, _OBJECT_ID) or "").strip()
    name = (_first(claims, _NAME) or headers.get(PRINCIPAL_NAME) or _first(claims, (name_type,)) or agent_id).strip()
    if not agent_id:
        return None
    role_types = {*_ROLES, role_type} if isinstance(role_type, str) else set(_ROLES)
    roles = frozenset(value for typ, value in claims if typ in role_types)
    return DeskAgent(agent_id, name[:MAX_NAME_CHARS], roles)


def encode(principal: dict[str, Any]) -> str:
    """The `X-MS-CLIENT-PRINCIPAL` value for a principal (what the local host injects)."""
    return base64.b64encode(json.dumps(principal, separators=(",", ":")).encode()).decode("ascii")


def _decode(raw: str) -> dict[str, Any] | None:
    if len(raw) > MAX_PRINCIPAL_BYTES:
        return None
    try:
        principal = json.loads(base64.b64decode(raw.strip(), validate=True))
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError):
        return None
    return principal if isinstance(principal, dict) else None


def _claims(principal: dict[str, Any]) -> list[tuple[str, str]]:
    claims = principal.get("claims")
    if not isinstance(claims, list):
        return []
    return [(c["typ"], c["val"]) for c in claims
            if isinstance(c, dict) and isinstance(c.get("typ"), str) and isinstance(c.get("val"), str)]


def _first(claims: list[tuple[str, str]], types: tuple[Any, ...]) -> str | None:
    return next((value for typ, value in claims if typ in types and value.strip()), None)
