"""App Service built-in authentication, as far as the desk needs it, standing in on the local host.

In Azure the platform signs people in with Microsoft Entra ID, keeps their session in the `AppServiceAuthSession`
cookie, strips every `X-MS-CLIENT-PRINCIPAL*` header a client sends and injects its own for a signed-in request.
Here the host does the same with one difference: nobody is asked for a password. With dev sign-in on (`python -m
local` turns it on), `GET /.auth/login/dev?agent=NAME[&role=supervisor]` signs this machine's user in as NAME, and
only a client on this machine (loopback) may ask. The session cookie is signed with a key made at startup, so a
restart signs everyone out. The host strips client-sent principal headers whether or not this is installed
(local/host.py); this adds the injection and the sign-in routes.

`FunctionKeys` is the other half of what the platform checks: the function keys of routes declared
`AuthLevel.FUNCTION` (or ADMIN). Off unless LOCAL_FUNCTION_KEY is set, as Core Tools checks none.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import re
import secrets
from html import escape
from typing import Any
from urllib.parse import quote

from aiohttp import web

from shared import principal
from shared.desk import AGENT_ROLE, SUPERVISOR_ROLE
from shared.errors import Unauthorized
from shared.tokens import TokenSigner

log = logging.getLogger("local.auth")

COOKIE = "AppServiceAuthSession"  # the platform's own session cookie name
LOGIN_DEV = "/.auth/login/dev"
LOGIN_AAD = "/.auth/login/aad"
LOGOUT = "/.auth/logout"
SESSION_SECONDS = 8 * 3600  # a shift
MAX_NAME_CHARS = 60
#: Where a client puts a function key, as in Azure: this header, or the `code` query parameter.
KEY_HEADER = "x-functions-key"
KEY_QUERY = "code"
_AUDIENCE = "local-sign-in"
_IDP = "dev"
_OBJECT_ID = "http://schemas.microsoft.com/identity/claims/objectidentifier"
_NAME = re.compile(r"[^\x00-\x1f\x7f]+")
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


def is_loopback(remote: str | None) -> bool:
    """Whether a peer address is this machine (127.0.0.0/8, ::1, or IPv4 loopback written as IPv6)."""
    if not remote:
        return False
    try:
        address = ipaddress.ip_address(remote.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


def sign_in_link(name: str, *, supervisor: bool = False) -> str:
    """The path that signs `name` in locally: what `make run` prints and the desk's 401 points to."""
    return f"{LOGIN_DEV}?agent={quote(name)}" + ("&role=supervisor" if supervisor else "")


def dev_agent_id(name: str) -> str:
    """A stable id for a name: the same person signing in again is the same person at the desk."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.casefold()).strip("-")[:40]
    return f"dev-{slug or hashlib.sha256(name.casefold().encode()).hexdigest()[:16]}"


class LocalSignIn:
    """An extension of local.host.Host: injects principal headers for a valid session cookie, serves the sign-in."""

    def __init__(self, *, dev_sign_in: bool, desk_path: str = "/api/desk",
                 session_seconds: int = SESSION_SECONDS) -> None:
        self.dev_sign_in = dev_sign_in
        self.desk_path = desk_path
        self._seconds = session_seconds
        self._signer = TokenSigner(secrets.token_bytes(32))  # per process: a restart signs everyone out

    def install(self, host: Any) -> None:
        host.set_principal_source(self.principal_headers)
        host.web.router.add_get(LOGOUT, self._logout)
        if self.dev_sign_in:
            host.web.router.add_get(LOGIN_DEV, self._login_dev)
            host.web.router.add_get(LOGIN_AAD, self._login_page)

    def principal_headers(self, request: web.Request) -> dict[str, str]:
        """The headers the platform would inject for this request: none without a valid session cookie."""
        cookie = request.cookies.get(COOKIE)
        if not cookie:
            return {}
        try:
            claims = self._signer.verify(cookie, _AUDIENCE)
        except Unauthorized:
            return {}
        agent_id, name, roles = str(claims["sub"]), str(claims["name"]), [str(r) for r in claims.get("roles", [])]
        document = {
            "auth_typ": _IDP, "name_typ": "name", "role_typ": "roles",
            "claims": [{"typ": _OBJECT_ID, "val": agent_id}, {"typ": "name", "val": name},
                       *({"typ": "roles", "val": role} for role in roles)],
        }
        return {
            principal.PRINCIPAL: principal.encode(document),
            principal.PRINCIPAL_ID: agent_id,
            principal.PRINCIPAL_NAME: name,
            principal.PRINCIPAL_IDP: _IDP,
        }

    async def _login_dev(self, request: web.Request) -> web.StreamResponse:
        if not is_loopback(request.remote):
            log.warning("refused a dev sign-in from %s: only this machine may use it", request.remote)
            return _error(403, "the dev sign-in only answers requests from this machine")
        name = " ".join(request.query.get("agent", "").split())
        if not name:
            return _error(400, "say who is signing in: /.auth/login/dev?agent=Your%20Name")
        if len(name) > MAX_NAME_CHARS or not _NAME.fullmatch(name):
            return _error(400, f"agent must be a name of at most {MAX_NAME_CHARS} printable characters")
        role = request.query.get("role", "agent")
        if role not in ("agent", "supervisor"):
            return _error(400, 'role must be "agent" or "supervisor"')
        roles = [AGENT_ROLE, SUPERVISOR_ROLE] if role == "supervisor" else [AGENT_ROLE]
        token = self._signer.issue(_AUDIENCE, self._seconds, sub=dev_agent_id(name), name=name, roles=roles)
        response = web.HTTPFound(self._redirect(request, "post_login_redirect_uri"))
        response.set_cookie(COOKIE, token, max_age=self._seconds, path="/", httponly=True, samesite="Lax")
        log.info("%s signed in at the desk (%s)", name, role)
        return response

    async def _logout(self, request: web.Request) -> web.StreamResponse:
        response = web.HTTPFound(self._redirect(request, "post_logout_redirect_uri"))
        response.del_cookie(COOKIE, path="/")
        return response

    async def _login_page(self, request: web.Request) -> web.StreamResponse:
        """Locally, "sign in with Entra ID" asks for a name instead."""
        back = escape(self._redirect(request, "post_login_redirect_uri"), quote=True)
        page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Sign in · Switchboard (local)</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font: 16px/1.5 system-ui, sans-serif; max-width: 32em; margin: 3em auto; padding: 0 1em">
<h1>Sign in to the desk</h1>
<p>This is the local stand-in for Microsoft Entra ID sign-in: say who you are. It only works on this machine.</p>
<form method="get" action="{LOGIN_DEV}">
<p><label>Your name <input name="agent" required maxlength="{MAX_NAME_CHARS}" autofocus></label></p>
<p><label><input type="checkbox" name="role" value="supervisor"> Supervisor</label></p>
<input type="hidden" name="post_login_redirect_uri" value="{back}">
<p><button type="submit">Sign in</button></p>
</form></body></html>"""
        return web.Response(text=page, content_type="text/html", headers=_PAGE_HEADERS)

    def _redirect(self, request: web.Request, parameter: str) -> str:
        """Where to go next: a path on this host the request names, else the desk (never another site)."""
        target = request.query.get(parameter, "")
        if target.startswith("/") and not target.startswith(("//", "/\\")) and target.isprintable():
            return target
        return self.desk_path


class FunctionKeys:
    """The Functions host's key check, as in Azure: a function-level route answers only a request that carries the
    function key (x-functions-key header or ?code=); an anonymous route answers anyone. Admin-level routes take the
    master key only, which the local host does not have, so they refuse every request while keys are checked."""

    def __init__(self, function_key: str) -> None:
        if not function_key:
            raise ValueError("FunctionKeys needs a key; leave it out to check none")
        self._key = function_key.encode("utf-8")

    def refusal(self, auth_level: str, request: web.Request) -> str | None:
        """Why the host must answer 401 before the function runs, or None when the request may go on."""
        if auth_level == "anonymous":
            return None
        if auth_level == "admin":
            return "this route needs the master key, which the local host does not have"
        sent = request.headers.get(KEY_HEADER) or request.query.get(KEY_QUERY)
        if not sent:
            return f"this route needs a function key: send it in the {KEY_HEADER} header or as ?{KEY_QUERY}="
        # compare_digest takes as long whatever the first wrong character, so timing does not spell out the key
        if not hmac.compare_digest(sent.encode("utf-8", "surrogatepass"), self._key):
            return "the function key is not valid"
        return None


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers={"Cache-Control": "no-store"})
